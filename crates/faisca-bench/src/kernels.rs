//! `faisca bench kernels`: the stage compiler's fused pipelines against DataFusion's operator
//! chain on the same in-memory batches, one thread, no cluster.
//!
//! TPC-H `lineitem` is generated in memory; DataFusion plans a Q1-shaped and a Q6-shaped query
//! over it, and the benchmark times the subtree below the first exchange (scan of the batches →
//! `FilterExec` → `ProjectionExec` → partial `AggregateExec`) as DataFusion built it, and the
//! same subtree after Faísca's fusion pass. Both produce the same partial aggregate states
//! (checked) from the same batches, so the ratio is the pipeline's gain alone.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use datafusion::datasource::MemTable;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::{SessionConfig, SessionContext};
use serde::Serialize;
use tpchgen::generators::LineItemGenerator;
use tpchgen_arrow::LineItemArrow;

use crate::cluster::{machine, median};

/// `faisca bench kernels`.
#[derive(Debug, clap::Args)]
pub struct KernelsBenchArgs {
    /// Scale factor of the generated lineitem batches.
    #[arg(long, default_value_t = 0.5)]
    pub sf: f64,
    /// Timed runs per variant (after one warm-up run).
    #[arg(long, default_value_t = 10)]
    pub iterations: usize,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/faisca-bench/kernels.json")]
    pub output: PathBuf,
}

/// The two query shapes: (name, SQL over `lineitem`).
const SHAPES: &[(&str, &str)] = &[
    (
        "q1",
        "SELECT l_returnflag, l_linestatus, sum(l_quantity), sum(l_extendedprice), \
         sum(l_extendedprice * (1 - l_discount)), sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)), \
         avg(l_quantity), avg(l_extendedprice), avg(l_discount), count(*) \
         FROM lineitem WHERE l_shipdate <= DATE '1998-09-02' GROUP BY l_returnflag, l_linestatus",
    ),
    (
        "q6",
        "SELECT sum(l_extendedprice * l_discount) FROM lineitem \
         WHERE l_shipdate >= DATE '1994-01-01' AND l_shipdate < DATE '1995-01-01' \
         AND l_discount >= 0.05 AND l_discount <= 0.07 AND l_quantity < 24",
    ),
];

#[derive(Serialize)]
struct ShapeReport {
    shape: String,
    rows_in: usize,
    unfused_ms: Vec<f64>,
    fused_ms: Vec<f64>,
    unfused_median_ms: f64,
    fused_median_ms: f64,
    speedup: f64,
    fused_plan: String,
}

#[derive(Serialize)]
struct KernelsReport {
    scale_factor: f64,
    machine: String,
    shapes: Vec<ShapeReport>,
}

/// The partial aggregate of `plan` (the work below its first exchange).
fn partial_aggregate(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    if let Some(agg) = plan.downcast_ref::<AggregateExec>()
        && *agg.mode() == AggregateMode::Partial
    {
        return Some(plan.clone());
    }
    plan.children().into_iter().find_map(partial_aggregate)
}

async fn run(
    plan: &Arc<dyn ExecutionPlan>,
    ctx: &SessionContext,
) -> Result<(Duration, Vec<String>)> {
    let started = Instant::now();
    let batches = collect(plan.clone(), ctx.task_ctx()).await?;
    let elapsed = started.elapsed();
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
    let mut rows: Vec<String> = text.lines().map(str::to_string).collect();
    rows.sort();
    Ok((elapsed, rows))
}

/// One query shape's partial-aggregate subtree, as DataFusion built it and fused.
pub struct ShapePlans {
    /// `q1` or `q6`.
    pub name: &'static str,
    /// DataFusion's chain (`FilterExec` → `ProjectionExec` → partial `AggregateExec`).
    pub unfused: Arc<dyn ExecutionPlan>,
    /// The same subtree after Faísca's fusion pass.
    pub fused: Arc<dyn ExecutionPlan>,
    /// The fused subtree, rendered.
    pub fused_plan: String,
}

/// The shapes' plans over one in-memory TPC-H `lineitem`, ready to run in `ctx`.
pub struct KernelPlans {
    /// The session holding `lineitem` (one partition of 8192-row batches).
    pub ctx: SessionContext,
    /// Rows of `lineitem`.
    pub rows_in: usize,
    /// Q1 and Q6.
    pub shapes: Vec<ShapePlans>,
}

/// Generates `lineitem` at scale factor `sf` in memory and plans both shapes, fused and not;
/// fails unless each shape fuses and both plans give the same partial states.
pub async fn prepare(sf: f64) -> Result<KernelPlans> {
    let batches: Vec<_> = LineItemArrow::new(LineItemGenerator::new(sf, 1, 1))
        .with_batch_size(8192)
        .collect::<std::result::Result<_, _>>()?;
    let rows_in: usize = batches.iter().map(|b| b.num_rows()).sum();
    let schema = batches
        .first()
        .map(|b| b.schema())
        .context("no lineitem rows generated")?;
    // Two target partitions make DataFusion split aggregates into partial and final; without
    // round-robin repartitioning the partial side stays one partition over the one batch list.
    let config = SessionConfig::new()
        .with_target_partitions(2)
        .with_round_robin_repartition(false)
        .with_batch_size(8192);
    let ctx = SessionContext::new_with_config(config);
    ctx.register_table(
        "lineitem",
        Arc::new(MemTable::try_new(schema, vec![batches])?),
    )?;
    let mut shapes = Vec::new();
    for (name, sql) in SHAPES {
        let physical = ctx.sql(sql).await?.create_physical_plan().await?;
        let unfused = partial_aggregate(&physical).context("no partial aggregate in the plan")?;
        let fused = faisca_planner::fusion::fuse(unfused.clone())?;
        let fused_plan = datafusion::physical_plan::displayable(fused.as_ref())
            .indent(false)
            .to_string();
        if !fused_plan.contains("PipelineExec") {
            bail!("{name}: nothing was fused:\n{fused_plan}");
        }
        // The answers must agree (this also warms both up).
        let (_, a) = run(&unfused, &ctx).await?;
        let (_, b) = run(&fused, &ctx).await?;
        if a != b {
            bail!("{name}: fused and unfused partial aggregates differ");
        }
        shapes.push(ShapePlans {
            name,
            unfused,
            fused,
            fused_plan,
        });
    }
    Ok(KernelPlans {
        ctx,
        rows_in,
        shapes,
    })
}

/// `faisca bench kernels`.
pub async fn kernels(args: KernelsBenchArgs) -> Result<()> {
    let KernelPlans {
        ctx,
        rows_in,
        shapes,
    } = prepare(args.sf).await?;
    eprintln!(
        "lineitem SF{} in memory ({rows_in} rows), one partition, {} iterations",
        args.sf, args.iterations
    );
    let mut reports = Vec::new();
    for ShapePlans {
        name,
        unfused,
        fused,
        fused_plan,
    } in shapes
    {
        let (mut u, mut f) = (Vec::new(), Vec::new());
        for i in 0..args.iterations.max(1) {
            for fused_first in [i % 2 == 0, i % 2 != 0] {
                if fused_first {
                    f.push(run(&fused, &ctx).await?.0);
                } else {
                    u.push(run(&unfused, &ctx).await?.0);
                }
            }
        }
        let (um, fm) = (median(&u), median(&f));
        let speedup = um.as_secs_f64() / fm.as_secs_f64().max(1e-9);
        println!(
            "{name}: unfused {:>8.1} ms  fused {:>8.1} ms  speedup {speedup:.2}",
            um.as_secs_f64() * 1e3,
            fm.as_secs_f64() * 1e3
        );
        let ms = |v: &[Duration]| v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        reports.push(ShapeReport {
            shape: name.to_string(),
            rows_in,
            unfused_ms: ms(&u),
            fused_ms: ms(&f),
            unfused_median_ms: um.as_secs_f64() * 1e3,
            fused_median_ms: fm.as_secs_f64() * 1e3,
            speedup,
            fused_plan,
        });
    }
    let report = KernelsReport {
        scale_factor: args.sf,
        machine: machine(),
        shapes: reports,
    };
    if let Some(dir) = args.output.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.output, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", args.output.display()))?;
    Ok(())
}
