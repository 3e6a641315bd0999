//! Rendering a stage graph for `EXPLAIN`.

use datafusion::physical_plan::displayable;

use crate::stages::StageGraph;

/// One block per stage, inputs first:
///
/// ```text
/// Stage 0 (tasks=2, output=hash(4))
///   AggregateExec: mode=Partial, ...
///     DataSourceExec: ...
/// Stage 1 (tasks=4, output=result, inputs=[0])
///   ...
/// ```
pub fn render(graph: &StageGraph) -> String {
    let mut out = String::new();
    for stage in &graph.stages {
        out.push_str(&format!(
            "Stage {} (tasks={}, output={}",
            stage.id,
            stage.tasks(),
            stage.output.describe()
        ));
        if !stage.inputs.is_empty() {
            let inputs: Vec<String> = stage.inputs.iter().map(u32::to_string).collect();
            out.push_str(&format!(", inputs=[{}]", inputs.join(",")));
        }
        out.push_str(")\n");
        for line in displayable(stage.plan.as_ref())
            .indent(false)
            .to_string()
            .lines()
        {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
