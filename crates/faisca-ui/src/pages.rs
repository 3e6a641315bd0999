//! The UI's HTML pages, at Spark's paths. Each page is complete when served (no script needed
//! to read it); its script then polls the REST API and redraws what changes, so a running job
//! moves to succeeded without a reload.
//!
//! Every link is `base` + a Spark path: `base` is empty on a driver, `/history/<appId>` when
//! the history server serves a run.

use std::fmt::Write;

use crate::dag::job_dag;
use crate::events::now_ms;
use crate::format::{bytes, clock, duration, html, spark_time};
use crate::store::{AppStore, JobStatus, JobView, StageStatus, StageView};
use crate::summary::TaskSummary;

/// What every page needs.
pub struct PageContext<'a> {
    /// The application.
    pub store: &'a AppStore,
    /// Prefix of every link.
    pub base: &'a str,
    /// Whether the run is read back from an event log (no live updates once complete).
    pub history: bool,
}

/// The pages the UI serves, by the path after `base`.
pub fn page(cx: &PageContext, path: &str, query: &str) -> Option<(u16, String)> {
    let id = query_id(query);
    let body = match path {
        "/jobs/" => jobs_page(cx),
        "/jobs/job/" => match id.and_then(|id| cx.store.jobs.get(&id)) {
            Some(job) => job_page(cx, job),
            None => return Some(missing(cx, "job", query)),
        },
        "/stages/" => stages_page(cx),
        "/stages/stage/" => match id
            .and_then(|id| u32::try_from(id).ok())
            .and_then(|id| cx.store.stages.get(&id))
        {
            Some(stage) => stage_page(cx, stage),
            None => return Some(missing(cx, "stage", query)),
        },
        "/executors/" => executors_page(cx),
        "/streaming/" => streaming_page(cx),
        "/environment/" => environment_page(cx),
        _ => return None,
    };
    Some((200, body))
}

fn query_id(query: &str) -> Option<u64> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == "id")
        .and_then(|(_, v)| v.parse().ok())
}

fn missing(cx: &PageContext, what: &str, query: &str) -> (u16, String) {
    let mut out = header(cx, &format!("No such {what}"), "missing", "");
    let _ = write!(
        out,
        "<p class=\"error\">There is no {what} with {}: expected the id of a running {what} or of a retained finished one.</p>",
        html(query)
    );
    out.push_str(FOOTER);
    (404, out)
}

pub(crate) const FOOTER: &str = "</main></body></html>";

pub(crate) fn header(cx: &PageContext, title: &str, page: &str, data: &str) -> String {
    let app = cx.store.app.as_ref();
    let app_id = app.map(|a| a.app_id.as_str()).unwrap_or("");
    let app_name = app.map(|a| a.app_name.as_str()).unwrap_or("faisca");
    let mut nav = String::new();
    let mut links = vec![
        ("/jobs/", "Jobs"),
        ("/stages/", "Stages"),
        ("/executors/", "Executors"),
    ];
    if !cx.store.queries.is_empty() {
        links.push(("/streaming/", "Structured Streaming"));
    }
    links.push(("/environment/", "Environment"));
    for (path, name) in links {
        let _ = write!(nav, "<a href=\"{}{path}\">{name}</a>", cx.base);
    }
    let state = if cx.store.app_end.is_some() {
        "<span class=\"badge\">completed</span>"
    } else if cx.history {
        "<span class=\"badge incomplete\">incomplete</span>"
    } else {
        ""
    };
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · {}</title>\
         <link rel=\"stylesheet\" href=\"/static/faisca.css\"><script src=\"/static/faisca.js\" defer></script></head>\
         <body data-page=\"{page}\" data-api=\"/api/v1/applications/{}\" data-base=\"{}\" data-live=\"{}\" {data}>\
         <header><span class=\"brand\">Faísca</span>{nav}<span class=\"app\">{} {state}</span></header><main><h1>{}</h1>",
        html(title),
        html(app_name),
        html(app_id),
        html(cx.base),
        cx.store.app_end.is_none(),
        html(app_name),
        html(title),
    )
}

fn job_duration(job: &JobView) -> f64 {
    let end = job.end.as_ref().map(|e| e.time).unwrap_or_else(now_ms);
    end.saturating_sub(job.start.time) as f64
}

fn progress(done: u64, total: u64) -> String {
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    format!(
        "<span class=\"progress\"><span class=\"bar\" style=\"width:{percent}%\"></span><span class=\"label\">{done}/{total}</span></span>"
    )
}

fn job_row(cx: &PageContext, job: &JobView) -> String {
    let stages: Vec<&StageView> = job
        .stage_ids
        .iter()
        .filter_map(|id| cx.store.stages.get(id))
        .collect();
    let complete = stages
        .iter()
        .filter(|s| s.status == StageStatus::Complete)
        .count() as u64;
    let description = if job.start.description.is_empty() {
        job.start.name.clone()
    } else {
        job.start.description.clone()
    };
    format!(
        "<tr data-job-id=\"{id}\"><td><a href=\"{base}/jobs/job/?id={id}\">{id}</a></td><td class=\"description\" title=\"{desc}\">{desc}</td>\
         <td>{submitted}</td><td class=\"duration\">{dur}</td><td class=\"status\">{status}</td><td class=\"stages\">{stages}</td><td class=\"tasks\">{tasks}</td></tr>",
        id = job.start.job,
        base = cx.base,
        desc = html(&description),
        submitted = clock(job.start.time),
        dur = duration(job_duration(job)),
        status = job.status().name(),
        stages = progress(complete, job.stage_ids.len() as u64),
        tasks = progress(job.tasks.completed, job.num_tasks()),
    )
}

const JOB_COLUMNS: &str = "<thead><tr><th>Job</th><th>Description</th><th>Submitted (UTC)</th><th>Duration</th><th>Status</th><th>Stages</th><th>Tasks (succeeded/total)</th></tr></thead>";

fn jobs_page(cx: &PageContext) -> String {
    let mut out = header(cx, "Jobs", "jobs", "");
    for (status, title) in [
        (JobStatus::Running, "Running jobs"),
        (JobStatus::Succeeded, "Succeeded jobs"),
        (JobStatus::Failed, "Failed jobs"),
    ] {
        let rows: String = cx
            .store
            .jobs
            .values()
            .rev()
            .filter(|j| j.status() == status)
            .map(|j| job_row(cx, j))
            .collect();
        let key = status.name().to_ascii_lowercase();
        let _ = write!(
            out,
            "<section><h2>{title} (<span class=\"count\" id=\"count-{key}\">{}</span>)</h2><table class=\"jobs\" id=\"jobs-{key}\">{JOB_COLUMNS}<tbody>{rows}</tbody></table></section>",
            cx.store
                .jobs
                .values()
                .filter(|j| j.status() == status)
                .count()
        );
    }
    out.push_str(FOOTER);
    out
}

fn stage_row(cx: &PageContext, stage: &StageView) -> String {
    let elapsed = match (stage.submission_time, stage.completion_time) {
        (Some(start), Some(end)) => duration(end.saturating_sub(start) as f64),
        (Some(start), None) => duration(now_ms().saturating_sub(start) as f64),
        _ => String::new(),
    };
    format!(
        "<tr data-stage-id=\"{id}\"><td><a href=\"{base}/stages/stage/?id={id}\">{id}</a></td><td><a href=\"{base}/jobs/job/?id={job}\">{job}</a> / {index}</td>\
         <td class=\"status\">{status}</td><td class=\"tasks\">{tasks}</td><td class=\"duration\">{elapsed}</td><td class=\"rows\">{rows}</td><td class=\"bytes\">{out_bytes}</td><td>{output}</td></tr>",
        id = stage.id,
        base = cx.base,
        job = stage.job,
        index = stage.plan.stage,
        status = stage.status.name(),
        tasks = progress(stage.succeeded.len() as u64, stage.plan.tasks as u64),
        rows = stage.totals.rows_written,
        out_bytes = bytes(stage.totals.bytes_written),
        output = html(&stage.plan.output),
    )
}

const STAGE_COLUMNS: &str = "<thead><tr><th>Stage</th><th>Job / stage</th><th>Status</th><th>Tasks</th><th>Duration</th><th>Rows out</th><th>Bytes out</th><th>Output</th></tr></thead>";

fn job_page(cx: &PageContext, job: &JobView) -> String {
    let mut out = header(
        cx,
        &format!("Job {}", job.start.job),
        "job",
        &format!("data-job-id=\"{}\"", job.start.job),
    );
    let _ = write!(
        out,
        "<dl class=\"summary\"><dt>Status</dt><dd id=\"job-status\">{}</dd><dt>Submitted</dt><dd>{}</dd><dt>Duration</dt><dd id=\"job-duration\">{}</dd>\
         <dt>Job id</dt><dd><code>{}</code></dd><dt>Tasks</dt><dd id=\"job-tasks\">{}</dd>",
        job.status().name(),
        spark_time(job.start.time),
        duration(job_duration(job)),
        html(&job.start.job_uuid),
        progress(job.tasks.completed, job.num_tasks()),
    );
    if let Some(end) = job.end.as_ref().filter(|e| !e.error.is_empty()) {
        let _ = write!(
            out,
            "<dt>Error</dt><dd class=\"error\">{}</dd>",
            html(&end.error)
        );
    }
    out.push_str("</dl>");
    if !job.start.description.is_empty() {
        let _ = write!(
            out,
            "<h2>Statement</h2><pre class=\"sql\">{}</pre>",
            html(&job.start.description)
        );
    }
    let _ = write!(
        out,
        "<h2>Stages</h2><div class=\"dag-box\" id=\"dag\">{}</div>",
        job_dag(cx.store, job)
    );
    let rows: String = job
        .stage_ids
        .iter()
        .filter_map(|id| cx.store.stages.get(id))
        .map(|s| stage_row(cx, s))
        .collect();
    let _ = write!(
        out,
        "<table class=\"stages\" id=\"stages\">{STAGE_COLUMNS}<tbody>{rows}</tbody></table>"
    );
    out.push_str("<h2>Plan</h2><pre class=\"plan\">");
    for plan in &job.start.stages {
        let _ = writeln!(
            out,
            "Stage {} (tasks={}, output={}{})",
            plan.stage,
            plan.tasks,
            html(&plan.output),
            if plan.inputs.is_empty() {
                String::new()
            } else {
                format!(
                    ", inputs=[{}]",
                    plan.inputs
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }
        );
        for line in plan.operators.lines() {
            let _ = writeln!(out, "  {}", html(line));
        }
    }
    out.push_str("</pre>");
    out.push_str(FOOTER);
    out
}

fn stages_page(cx: &PageContext) -> String {
    let mut out = header(cx, "Stages", "stages", "");
    let rows: String = cx
        .store
        .stages
        .values()
        .rev()
        .map(|s| stage_row(cx, s))
        .collect();
    let _ = write!(
        out,
        "<table class=\"stages\" id=\"stages\">{STAGE_COLUMNS}<tbody>{rows}</tbody></table>"
    );
    out.push_str(FOOTER);
    out
}

fn stage_page(cx: &PageContext, stage: &StageView) -> String {
    let mut out = header(
        cx,
        &format!(
            "Stage {} (job {} stage {})",
            stage.id, stage.job, stage.plan.stage
        ),
        "stage",
        &format!("data-stage-id=\"{}\"", stage.id),
    );
    let _ = write!(
        out,
        "<dl class=\"summary\"><dt>Status</dt><dd id=\"stage-status\">{}</dd><dt>Job</dt><dd><a href=\"{}/jobs/job/?id={}\">{}</a></dd>\
         <dt>Tasks</dt><dd id=\"stage-tasks\">{}</dd><dt>Output</dt><dd>{}</dd><dt>Rows out</dt><dd>{}</dd><dt>Bytes out</dt><dd>{}</dd>",
        stage.status.name(),
        cx.base,
        stage.job,
        stage.job,
        progress(stage.succeeded.len() as u64, stage.plan.tasks as u64),
        html(&stage.plan.output),
        stage.totals.rows_written,
        bytes(stage.totals.bytes_written),
    );
    if !stage.failure_reason.is_empty() {
        let _ = write!(
            out,
            "<dt>Failure</dt><dd class=\"error\">{}</dd>",
            html(&stage.failure_reason)
        );
    }
    if stage.attempts_forgotten > 0 {
        let _ = write!(
            out,
            "<dt>Tasks not shown</dt><dd>{} (faisca.ui.retainedTasks)</dd>",
            stage.attempts_forgotten
        );
    }
    out.push_str("</dl>");
    let _ = write!(
        out,
        "<h2>Operators</h2><pre class=\"plan\">{}</pre>",
        html(&stage.plan.operators)
    );
    out.push_str("<h2>Summary of successful tasks</h2>");
    out.push_str(&summary_table(stage));
    out.push_str("<h2>Task timeline</h2>");
    out.push_str(&timeline(stage));
    out.push_str("<h2>Tasks</h2><table class=\"tasks\" id=\"tasks\"><thead><tr><th>Task</th><th>Index</th><th>Attempt</th><th>Status</th><th>Executor</th><th>Launched (UTC)</th><th>Duration</th><th>Rows out</th><th>Bytes out</th><th>Bytes read</th><th>Shuffle read</th><th>Fetch wait</th><th>Spill</th><th>Error</th><th>Log</th></tr></thead><tbody>");
    for task in stage.attempts.values() {
        out.push_str(&task_row(cx, stage.id, task));
    }
    out.push_str("</tbody></table>");
    out.push_str(FOOTER);
    out
}

fn task_row(cx: &PageContext, stage: u32, task: &crate::store::TaskView) -> String {
    let value = crate::rest::task(task);
    let m = &value["taskMetrics"];
    let number = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    format!(
        "<tr data-task-id=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"status\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"error\">{}</td><td><a class=\"log\" href=\"{}/stages/stage/log/?id={stage}&amp;taskId={}\">log</a></td></tr>",
        task.task_id,
        task.task_id,
        task.start.partition,
        task.start.attempt,
        value["status"].as_str().unwrap_or(""),
        html(&task.start.executor),
        clock(task.start.time),
        task.end
            .as_ref()
            .map(|e| duration(e.duration_ms))
            .unwrap_or_default(),
        number(&m["outputMetrics"]["recordsWritten"]),
        bytes(number(&m["outputMetrics"]["bytesWritten"])),
        bytes(number(&m["inputMetrics"]["bytesRead"])),
        bytes(number(&m["shuffleReadMetrics"]["remoteBytesRead"])),
        duration(number(&m["shuffleReadMetrics"]["fetchWaitTime"]) as f64),
        bytes(number(&m["memoryBytesSpilled"])),
        html(value["errorMessage"].as_str().unwrap_or("")),
        cx.base,
        task.task_id,
    )
}

fn summary_table(stage: &StageView) -> String {
    let qs = [0.0, 0.25, 0.5, 0.75, 1.0];
    let s = TaskSummary::of(stage, &qs);
    if s.duration_ms.is_empty() {
        return "<p class=\"none\">No task has succeeded yet.</p>".to_string();
    }
    let mut out = String::from(
        "<table class=\"summary-quantiles\"><thead><tr><th>Metric</th><th>Min</th><th>25th percentile</th><th>Median</th><th>75th percentile</th><th>Max</th></tr></thead><tbody>",
    );
    type Row<'a> = (&'a str, &'a Vec<f64>, fn(f64) -> String);
    let rows: [Row; 5] = [
        ("Duration", &s.duration_ms, duration),
        ("Rows out", &s.rows_written, |v| format!("{v:.0}")),
        ("Bytes out", &s.bytes_written, |v| bytes(v as u64)),
        ("Shuffle read", &s.bytes_fetched, |v| bytes(v as u64)),
        ("Shuffle fetch wait", &s.fetch_wait_ms, duration),
    ];
    for (name, values, show) in rows {
        let _ = write!(out, "<tr><td>{name}</td>");
        for v in values {
            let _ = write!(out, "<td>{}</td>", show(*v));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// The stage's task attempts as bars on a time axis, one lane per executor.
fn timeline(stage: &StageView) -> String {
    let tasks: Vec<_> = stage.attempts.values().collect();
    let Some(first) = tasks.iter().map(|t| t.start.time).min() else {
        return "<p class=\"none\">No task has started yet.</p>".to_string();
    };
    let now = now_ms();
    let end_of = |t: &crate::store::TaskView| t.end.as_ref().map(|e| e.time).unwrap_or(now);
    let last = tasks
        .iter()
        .map(|t| end_of(t))
        .max()
        .unwrap_or(first)
        .max(first + 1);
    let mut lanes: Vec<&str> = tasks.iter().map(|t| t.start.executor.as_str()).collect();
    lanes.sort();
    lanes.dedup();
    let (width, lane_height, left) = (900.0, 22.0, 120.0);
    let scale = (width - left - 10.0) / (last - first) as f64;
    let height = lane_height * lanes.len() as f64 + 24.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">"
    );
    for (i, lane) in lanes.iter().enumerate() {
        let _ = write!(
            svg,
            "<text class=\"lane\" x=\"4\" y=\"{}\">{}</text>",
            lane_height * i as f64 + 15.0,
            html(lane)
        );
    }
    for t in &tasks {
        let lane = lanes
            .iter()
            .position(|l| *l == t.start.executor)
            .unwrap_or(0);
        let x = left + (t.start.time - first) as f64 * scale;
        let w = ((end_of(t) - t.start.time) as f64 * scale).max(2.0);
        let class = match &t.end {
            None => "running",
            Some(e) => match e.outcome {
                crate::events::TaskOutcome::Success => "success",
                crate::events::TaskOutcome::Failed => "failed",
                crate::events::TaskOutcome::Killed => "killed",
            },
        };
        let _ = write!(
            svg,
            "<rect class=\"task {class}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\"><title>task {} (index {}, attempt {}) on {}</title></rect>",
            lane_height * lane as f64 + 3.0,
            lane_height - 6.0,
            t.task_id,
            t.start.partition,
            t.start.attempt,
            html(&t.start.executor)
        );
    }
    let _ = write!(
        svg,
        "<text class=\"axis\" x=\"{left}\" y=\"{}\">0</text><text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text></svg>",
        height - 4.0,
        width - 10.0,
        height - 4.0,
        duration((last - first) as f64)
    );
    svg
}

fn executors_page(cx: &PageContext) -> String {
    let mut out = header(cx, "Executors", "executors", "");
    out.push_str("<table class=\"executors\" id=\"executors\"><thead><tr><th>Executor</th><th>Address</th><th>State</th><th>Cores</th><th>Memory used / limit</th><th>Running</th><th>Succeeded</th><th>Failed</th><th>Task time</th><th>Shuffle held</th><th>Last heartbeat (UTC)</th><th>Why it left</th></tr></thead><tbody>");
    for e in cx.store.executors.values() {
        let _ = write!(
            out,
            "<tr data-executor-id=\"{id}\"><td>{id}</td><td>{}</td><td class=\"state\">{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html(&e.added.address),
            if e.removed.is_some() {
                "dead"
            } else {
                "active"
            },
            e.added.cores,
            bytes(e.memory_used_bytes),
            bytes(e.added.memory_bytes),
            e.tasks.active,
            e.tasks.completed,
            e.tasks.failed,
            duration(e.task_time_ms),
            bytes(e.shuffle_bytes_held),
            clock(e.last_heartbeat),
            html(e.removed.as_ref().map(|r| r.reason.as_str()).unwrap_or("")),
            id = html(&e.added.id),
        );
    }
    out.push_str("</tbody></table>");
    out.push_str(FOOTER);
    out
}

fn streaming_page(cx: &PageContext) -> String {
    let mut out = header(cx, "Structured Streaming", "streaming", "");
    if cx.store.queries.is_empty() {
        out.push_str("<p class=\"none\">No streaming query has run on this driver.</p>");
    }
    for q in cx.store.queries.values().rev() {
        let last = q.recent_progress.back();
        let field = |name: &str| last.and_then(|p| p.get(name)).cloned().unwrap_or_default();
        let state = last
            .and_then(|p| p["stateOperators"].as_array())
            .map(|ops| {
                ops.iter()
                    .map(|o| {
                        format!(
                            "{} rows, {}",
                            o["numRowsTotal"].as_u64().unwrap_or(0),
                            bytes(o["memoryUsedBytes"].as_u64().unwrap_or(0))
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        let status = match &q.ended {
            None => "ACTIVE".to_string(),
            Some((_, e)) if e.is_empty() => "STOPPED".to_string(),
            Some(_) => "FAILED".to_string(),
        };
        let _ = write!(
            out,
            "<section class=\"query\" data-run-id=\"{}\"><h2>{}</h2><dl class=\"summary\"><dt>Status</dt><dd class=\"status\">{status}</dd><dt>Id</dt><dd><code>{}</code></dd><dt>Run</dt><dd><code>{}</code></dd>\
             <dt>Sink</dt><dd>{}</dd><dt>Started</dt><dd>{}</dd><dt>Last batch</dt><dd class=\"batch\">{}</dd><dt>Input rate</dt><dd class=\"input-rate\">{:.1} rows/s</dd><dt>Process rate</dt><dd class=\"process-rate\">{:.1} rows/s</dd><dt>Watermark</dt><dd class=\"watermark\">{}</dd><dt>State</dt><dd class=\"state\">{}</dd>",
            html(&q.run_id),
            html(if q.name.is_empty() { &q.id } else { &q.name }),
            html(&q.id),
            html(&q.run_id),
            html(&q.sink),
            spark_time(q.start_time),
            field("batchId"),
            field("inputRowsPerSecond").as_f64().unwrap_or(0.0),
            field("processedRowsPerSecond").as_f64().unwrap_or(0.0),
            html(
                field("eventTime")
                    .get("watermark")
                    .and_then(|w| w.as_str())
                    .unwrap_or("")
            ),
            html(&state),
        );
        if let Some((_, e)) = q.ended.as_ref().filter(|(_, e)| !e.is_empty()) {
            let _ = write!(
                out,
                "<dt>Exception</dt><dd class=\"error\">{}</dd>",
                html(e)
            );
        }
        out.push_str("</dl><table class=\"batches\"><thead><tr><th>Batch</th><th>Started</th><th>Input rows</th><th>Input rate</th><th>Process rate</th><th>Duration</th></tr></thead><tbody>");
        for p in q.recent_progress.iter().rev() {
            let _ = write!(
                out,
                "<tr data-batch-id=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td></tr>",
                p["batchId"],
                p["batchId"],
                html(p["timestamp"].as_str().unwrap_or("")),
                p["numInputRows"],
                p["inputRowsPerSecond"].as_f64().unwrap_or(0.0),
                p["processedRowsPerSecond"].as_f64().unwrap_or(0.0),
                duration(p["durationMs"]["triggerExecution"].as_f64().unwrap_or(0.0)),
            );
        }
        out.push_str("</tbody></table></section>");
    }
    out.push_str(FOOTER);
    out
}

fn environment_page(cx: &PageContext) -> String {
    let mut out = header(cx, "Environment", "environment", "");
    if let Some(app) = &cx.store.app {
        for (title, pairs) in [("Runtime", &app.runtime), ("Configuration", &app.config)] {
            let _ = write!(
                out,
                "<h2>{title}</h2><table class=\"environment\"><thead><tr><th>Name</th><th>Value</th></tr></thead><tbody>"
            );
            for (k, v) in pairs {
                let _ = write!(out, "<tr><td>{}</td><td>{}</td></tr>", html(k), html(v));
            }
            out.push_str("</tbody></table>");
        }
    }
    out.push_str(FOOTER);
    out
}
