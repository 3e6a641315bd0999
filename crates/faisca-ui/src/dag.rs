//! A job's stage graph as SVG, drawn on the server: one `<g class="stage">` box per stage with
//! its operators (fused pipelines as the planner shows them), laid out left to right by depth,
//! and one edge per shuffle with the rows and bytes its map stage wrote.

use std::fmt::Write;

use crate::format::{bytes, html};
use crate::store::{AppStore, JobView, StageView};

const BOX_WIDTH: u32 = 300;
const H_GAP: u32 = 150;
const V_GAP: u32 = 24;
const LINE: u32 = 14;
const HEADER: u32 = 38;
const MAX_LINES: usize = 14;
const MAX_CHARS: usize = 44;

/// The operator lines shown in a stage's box: each line of the plan display shortened to the
/// operator and the start of its details, indentation kept.
fn operator_lines(operators: &str) -> Vec<String> {
    let mut lines: Vec<String> = operators
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let depth = l.len() - l.trim_start().len();
            let text = l.trim();
            let indent = " ".repeat(depth.min(12));
            let mut shown: String = format!("{indent}{text}").chars().take(MAX_CHARS).collect();
            if shown.chars().count() < format!("{indent}{text}").chars().count() {
                shown.push('…');
            }
            shown
        })
        .collect();
    if lines.len() > MAX_LINES {
        let more = lines.len() - (MAX_LINES - 1);
        lines.truncate(MAX_LINES - 1);
        lines.push(format!("… {more} more operators"));
    }
    lines
}

/// The SVG of `job`'s stages as they ran (their state and counts as of now).
pub fn job_dag(store: &AppStore, job: &JobView) -> String {
    let stages: Vec<&StageView> = job
        .stage_ids
        .iter()
        .filter_map(|id| store.stages.get(id))
        .collect();
    // Depth: the longest chain of inputs below a stage (inputs come first in a job's order).
    let mut depth = vec![0usize; job.start.stages.len()];
    for (i, plan) in job.start.stages.iter().enumerate() {
        depth[i] = plan
            .inputs
            .iter()
            .filter_map(|input| depth.get(*input as usize))
            .map(|d| d + 1)
            .max()
            .unwrap_or(0);
    }
    let mut column_height: Vec<u32> = Vec::new();
    let mut boxes: Vec<(u32, u32, u32, &StageView, Vec<String>)> = Vec::new();
    for stage in &stages {
        let index = stage.plan.stage as usize;
        let column = depth.get(index).copied().unwrap_or(0);
        if column_height.len() <= column {
            column_height.resize(column + 1, V_GAP);
        }
        let lines = operator_lines(&stage.plan.operators);
        let height = HEADER + LINE * lines.len() as u32 + 10;
        let x = 20 + column as u32 * (BOX_WIDTH + H_GAP);
        let y = column_height[column];
        column_height[column] += height + V_GAP;
        boxes.push((x, y, height, stage, lines));
    }
    let width = 40 + column_height.len().max(1) as u32 * (BOX_WIDTH + H_GAP) - H_GAP;
    let height = column_height.iter().copied().max().unwrap_or(V_GAP) + 10;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="dag" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="stage graph of job {}">"#,
        job.start.job
    );
    svg.push_str(r#"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead"/></marker></defs>"#);
    let position = |index: u32| boxes.iter().find(|b| b.3.plan.stage == index);
    for (x, y, h, stage, _) in &boxes {
        for input in &stage.plan.inputs {
            let Some((ix, iy, ih, from, _)) = position(*input) else {
                continue;
            };
            let (x1, y1) = (ix + BOX_WIDTH, iy + ih / 2);
            let (x2, y2) = (*x, y + h / 2);
            let label = format!(
                "{} rows · {}",
                from.totals.rows_written,
                bytes(from.totals.bytes_written)
            );
            let _ = write!(
                svg,
                r#"<g class="edge" data-from="{}" data-to="{}"><path d="M {x1} {y1} C {} {y1}, {} {y2}, {x2} {y2}" marker-end="url(#arrow)"/><text x="{}" y="{}" text-anchor="middle">{}</text></g>"#,
                from.id,
                stage.id,
                x1 + H_GAP / 2,
                x2 - H_GAP / 2,
                (x1 + x2) / 2,
                (y1 + y2) / 2 - 6,
                html(&label)
            );
        }
    }
    for (x, y, h, stage, lines) in &boxes {
        let status = stage.status.name().to_ascii_lowercase();
        let _ = write!(
            svg,
            r#"<g class="stage {status}" data-stage-id="{}" data-job-stage="{}"><a href="../../stages/stage/?id={}"><rect x="{x}" y="{y}" width="{BOX_WIDTH}" height="{h}" rx="6"/><text class="title" x="{}" y="{}">Stage {} · id {} · {}</text><text class="counts" x="{}" y="{}">{}/{} tasks · out {}</text></a>"#,
            stage.id,
            stage.plan.stage,
            stage.id,
            x + 10,
            y + 16,
            stage.plan.stage,
            stage.id,
            html(&status),
            x + 10,
            y + 31,
            stage.succeeded.len(),
            stage.plan.tasks,
            html(&stage.plan.output),
        );
        for (i, line) in lines.iter().enumerate() {
            let _ = write!(
                svg,
                r#"<text class="op" x="{}" y="{}" xml:space="preserve">{}</text>"#,
                x + 10,
                y + HEADER + 8 + LINE * i as u32,
                html(line)
            );
        }
        svg.push_str("</g>");
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_plans_are_shortened() {
        let plan = (0..30)
            .map(|i| format!("{}Exec{i}: {}", "  ".repeat(i % 3), "x".repeat(80)))
            .collect::<Vec<_>>()
            .join("\n");
        let lines = operator_lines(&plan);
        assert_eq!(lines.len(), MAX_LINES);
        assert!(lines.last().unwrap().contains("17 more"));
        assert!(lines[0].ends_with('…'));
    }
}
