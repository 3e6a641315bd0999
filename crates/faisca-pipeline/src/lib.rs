//! The stage compiler: a chain of narrow operators run as one compiled program.
//!
//! This crate knows DataFusion and Arrow only: the planner (`faisca-planner`) builds pipelines,
//! the engine (`faisca-engine`'s codec) puts them on the wire, and executors run them.
//!
//! The planner (`faisca-planner`'s fusion pass) replaces each maximal chain of filters and
//! projections in a stage, and the partial aggregate on top of it, with a
//! [`exec::PipelineExec`] holding a [`PipelineSpec`]: the steps, each with DataFusion physical
//! expressions and its output schema. The spec travels to
//! executors in the engine's stage codec (expressions in datafusion-proto's encoding). Each executor
//! compiles a spec once ([`CompiledPipeline::compile`], cached per process by the spec's bytes in
//! [`cache`]) into typed kernels ([`kernel`]) and runs every batch of the task through it:
//!
//! * a filter narrows a [`selection::Selection`] of the batch's rows: nothing is copied;
//! * a projection of plain columns renames and reorders columns, keeping the selection;
//! * a computed projection evaluates its expressions for the selected rows only, densely (when
//!   most rows survive, for every row, keeping the selection: no kernel can fail on a row the
//!   filter dropped, and a dense pass beats gathering);
//! * at the end, columns still under a selection are gathered once, straight into batches of
//!   `datafusion.execution.batch_size` rows (small batches from selective filters are
//!   coalesced, as DataFusion's `FilterExec` does);
//! * or, when the last step is a partial aggregate ([`aggregate`]), the selected rows update
//!   the aggregate's states directly and the states come out when the input ends;
//! * and when the stage's shuffle write is hash-partitioned, a final partition step
//!   ([`partition`]) splits the selected rows (or the aggregate's states) by the hash of their
//!   keys in the same pass, taking each partition's rows straight from the batch under its
//!   selection ([`exec::PipelineExec::execute_split`], which the executor's shuffle writer
//!   reads; a plain `execute` ignores the step).
//!
//! Whatever the kernels cannot compile stays a plain DataFusion operator: the planner asks
//! [`CompiledPipeline::compile`] before it fuses, so a fused plan never runs a step that the
//! executor would have to refuse.

pub mod aggregate;
pub mod cache;
pub mod exec;
pub mod kernel;
pub mod partition;
pub mod selection;

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use datafusion::error::Result as DfResult;
use datafusion::physical_expr::PhysicalExpr;

use kernel::{Predicate, Unsupported, Value};
use selection::Selection;

/// One step of a pipeline.
#[derive(Debug, Clone)]
pub enum Step {
    /// Keep the rows for which `predicate` is true.
    Filter {
        /// A boolean expression over the step's input.
        predicate: Arc<dyn PhysicalExpr>,
    },
    /// Compute `exprs` (named by the output schema's fields).
    Project {
        /// One expression per output column, over the step's input.
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        /// The step's output schema.
        schema: SchemaRef,
    },
    /// A partial aggregate of the rows (last but for a partition step, when present).
    Aggregate(aggregate::AggregateStep),
    /// The hash partitioning of the stage's shuffle write (the last step, when present): it
    /// changes no row, only how [`exec::PipelineExec::execute_split`] hands them on.
    Partition(partition::PartitionStep),
}

impl Step {
    /// A short rendering for `EXPLAIN`.
    pub fn describe(&self) -> String {
        match self {
            Step::Filter { predicate } => format!("filter({predicate})"),
            Step::Project { exprs, schema } => {
                let items: Vec<String> = exprs
                    .iter()
                    .zip(schema.fields())
                    .map(|(e, f)| {
                        let shown = e.to_string();
                        let plain = shown.split('@').next() == Some(f.name().as_str());
                        if plain {
                            shown
                        } else {
                            format!("{shown} as {}", f.name())
                        }
                    })
                    .collect();
                format!("project({})", items.join(", "))
            }
            Step::Aggregate(a) => a.describe(),
            Step::Partition(p) => p.describe(),
        }
    }
}

/// What a pipeline does: its input's schema and its steps, in order.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// The schema of the batches the pipeline reads.
    pub input_schema: SchemaRef,
    /// The steps.
    pub steps: Vec<Step>,
}

impl PipelineSpec {
    /// The schema of the batches the pipeline produces.
    pub fn output_schema(&self) -> SchemaRef {
        self.steps
            .iter()
            .rev()
            .find_map(|s| match s {
                Step::Project { schema, .. } => Some(schema.clone()),
                Step::Aggregate(a) => Some(a.schema.clone()),
                Step::Filter { .. } | Step::Partition(_) => None,
            })
            .unwrap_or_else(|| self.input_schema.clone())
    }
}

/// A step ready to run.
#[derive(Debug)]
enum CompiledStep {
    Filter(Predicate),
    /// A projection of plain columns: picks them, keeps the selection.
    Pick(Vec<usize>, SchemaRef),
    /// A projection with computed values: evaluates them for the selected rows.
    Compute(Computed, SchemaRef),
}

/// A computed projection's values, also in a form over only the columns they read (for
/// batches under a selection, whose read columns are filtered first).
#[derive(Debug)]
struct Computed {
    values: Vec<Value>,
    /// The input columns read, ascending.
    narrow: Vec<usize>,
    /// `values` reading column `k` of the narrowed batch where they read `narrow[k]`.
    narrowed: Vec<Value>,
    /// The schema of the narrowed batch.
    narrow_schema: SchemaRef,
}

impl Computed {
    fn new(values: Vec<Value>, input: &SchemaRef) -> Computed {
        let mut used = vec![false; input.fields().len()];
        values.iter().for_each(|v| v.columns(&mut used));
        let narrow: Vec<usize> = (0..used.len()).filter(|i| used[*i]).collect();
        let mut map = vec![usize::MAX; used.len()];
        for (k, i) in narrow.iter().enumerate() {
            map[*i] = k;
        }
        let narrowed = values.iter().map(|v| v.remap(&map)).collect();
        let narrow_schema = Arc::new(input.project(&narrow).expect("columns of the input"));
        Computed {
            values,
            narrow,
            narrowed,
            narrow_schema,
        }
    }
}

/// A pipeline compiled into kernels.
#[derive(Debug)]
pub struct CompiledPipeline {
    steps: Vec<CompiledStep>,
    /// The partial aggregate the steps feed, if any.
    aggregate: Option<Arc<aggregate::CompiledAggregate>>,
    /// The partitioning of the output, if any.
    partition: Option<partition::PartitionStep>,
    output_schema: SchemaRef,
}

impl CompiledPipeline {
    /// Compiles `spec`; `Err` names the first expression no kernel exists for.
    pub fn compile(spec: &PipelineSpec) -> Result<CompiledPipeline, Unsupported> {
        let mut schema = spec.input_schema.clone();
        let mut steps = Vec::with_capacity(spec.steps.len());
        let mut aggregate = None;
        let mut partition = None;
        for step in &spec.steps {
            if partition.is_some() {
                return Err("a pipeline's partition step must be its last step".into());
            }
            if aggregate.is_some() && !matches!(step, Step::Partition(_)) {
                return Err(
                    "only a partition step may follow a pipeline's partial aggregate".into(),
                );
            }
            match step {
                Step::Partition(p) => {
                    check_partition(p, &schema)?;
                    partition = Some(p.clone());
                }
                Step::Aggregate(a) => {
                    let compiled = aggregate::CompiledAggregate::compile(a, &schema)?;
                    schema = compiled.schema();
                    aggregate = Some(Arc::new(compiled));
                }
                Step::Filter { predicate } => {
                    steps.push(CompiledStep::Filter(kernel::compile_predicate(
                        predicate, &schema,
                    )?));
                }
                Step::Project { exprs, schema: out } => {
                    let values: Vec<Value> = exprs
                        .iter()
                        .map(|e| kernel::compile_value(e, &schema))
                        .collect::<Result<_, _>>()?;
                    let columns: Option<Vec<usize>> = values
                        .iter()
                        .map(|v| match v {
                            Value::Column(i) => Some(*i),
                            _ => None,
                        })
                        .collect();
                    steps.push(match columns {
                        Some(c) => CompiledStep::Pick(c, out.clone()),
                        None => CompiledStep::Compute(Computed::new(values, &schema), out.clone()),
                    });
                    schema = out.clone();
                }
            }
        }
        Ok(CompiledPipeline {
            steps,
            aggregate,
            partition,
            output_schema: schema,
        })
    }

    /// The partitioning of the output, if the pipeline computes it.
    pub fn partition(&self) -> Option<&partition::PartitionStep> {
        self.partition.as_ref()
    }

    /// The schema of the batches [`CompiledPipeline::run`] returns.
    pub fn output_schema(&self) -> SchemaRef {
        self.output_schema.clone()
    }

    /// The partial aggregate at the end of the pipeline, if any ([`CompiledPipeline::run_parts`]
    /// stops before it: the caller feeds an [`aggregate::Aggregator`]).
    pub fn aggregate(&self) -> Option<&Arc<aggregate::CompiledAggregate>> {
        self.aggregate.as_ref()
    }

    /// Runs `batch` through every step but a final aggregate; `None` when no row is left.
    pub fn run(&self, batch: &RecordBatch) -> DfResult<Option<RecordBatch>> {
        match self.run_parts(batch)? {
            None => Ok(None),
            Some((batch, sel)) => Ok(Some(sel.gather_batch(&batch)?)),
        }
    }

    /// Runs `batch` through every step but a final aggregate, leaving the last selection to the caller (who may
    /// gather it straight into a larger output batch); `None` when no row is left.
    pub fn run_parts(&self, batch: &RecordBatch) -> DfResult<Option<(RecordBatch, Selection)>> {
        let mut batch = batch.clone();
        let mut sel = Selection::All(batch.num_rows());
        for step in &self.steps {
            match step {
                CompiledStep::Filter(p) => {
                    sel = p.select(&batch, &sel)?;
                    if sel.is_empty() {
                        return Ok(None);
                    }
                }
                CompiledStep::Pick(columns, schema) => {
                    let picked: Vec<ArrayRef> =
                        columns.iter().map(|i| batch.column(*i).clone()).collect();
                    batch = with_rows(schema, picked, batch.num_rows())?;
                }
                CompiledStep::Compute(values, schema) => {
                    if matches!(sel, Selection::Rows(_)) && sel.len() * 2 > batch.num_rows() {
                        // Most rows survive: compute over every row (the kernels cannot fail on
                        // the rows the filter dropped) and keep the selection for the end.
                        let all = Selection::All(batch.num_rows());
                        let computed: Vec<ArrayRef> = values
                            .values
                            .iter()
                            .map(|v| v.eval(&batch, &all)?.into_array(all.len()))
                            .collect::<DfResult<_>>()?;
                        batch = with_rows(schema, computed, all.len())?;
                        continue;
                    }
                    let n = sel.len();
                    let computed: Vec<ArrayRef> = if let Selection::Rows(_) = &sel {
                        // Arrow's filter kernel copies runs of selected rows faster than the
                        // kernels gather them one by one: filter the columns this step reads,
                        // once, and compute over every row of the result.
                        let mask = sel.mask(batch.num_rows());
                        let columns: Vec<ArrayRef> = values
                            .narrow
                            .iter()
                            .map(|i| Ok(arrow::compute::filter(batch.column(*i).as_ref(), &mask)?))
                            .collect::<DfResult<_>>()?;
                        let filtered = with_rows(&values.narrow_schema, columns, n)?;
                        let all = Selection::All(n);
                        values
                            .narrowed
                            .iter()
                            .map(|v| v.eval(&filtered, &all)?.into_array(n))
                            .collect::<DfResult<_>>()?
                    } else {
                        values
                            .values
                            .iter()
                            .map(|v| v.eval(&batch, &sel)?.into_array(n))
                            .collect::<DfResult<_>>()?
                    };
                    batch = with_rows(schema, computed, n)?;
                    sel = Selection::All(n);
                }
            }
        }
        if sel.is_empty() {
            return Ok(None);
        }
        Ok(Some((batch, sel)))
    }
}

/// Checks that `step` hashes columns of `schema` into at least one partition.
fn check_partition(step: &partition::PartitionStep, schema: &SchemaRef) -> Result<(), Unsupported> {
    if step.count == 0 {
        return Err("a partition step needs at least one partition".into());
    }
    for c in &step.columns {
        let named = schema.fields().get(c.index()).map(|f| f.name().as_str());
        if named != Some(c.name()) {
            return Err(format!(
                "partition column {c} is not a column of the pipeline's output"
            ));
        }
    }
    Ok(())
}

/// A batch of `columns` with `rows` rows (which a batch with no columns needs to be told).
pub(crate) fn with_rows(
    schema: &SchemaRef,
    columns: Vec<ArrayRef>,
    rows: usize,
) -> DfResult<RecordBatch> {
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )?)
}

#[cfg(test)]
mod tests;
