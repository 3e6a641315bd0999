//! Criterion benchmarks of the stage compiler's fused pipelines against DataFusion's operator
//! chain, on the same in-memory TPC-H `lineitem` batches, one thread.
//!
//! For each of a Q1- and a Q6-shaped query, `datafusion_chain` runs the subtree DataFusion
//! plans below the first exchange (`FilterExec` → `ProjectionExec` → partial `AggregateExec`)
//! and `fused` the same subtree after Faísca's fusion pass (one `PipelineExec`); both give the
//! same partial states (checked before timing). The ratio of the two is the figure that
//! matters (`docs/benchmarks.md`); `faisca bench kernels` measures the same with medians.
//!
//! `FAISCA_KERNELS_SF` sets the scale factor (default 0.1: 600 k rows).

use criterion::{Criterion, criterion_group, criterion_main};
use datafusion::physical_plan::collect;
use faisca_bench::kernels::prepare;

fn kernels(c: &mut Criterion) {
    let sf = std::env::var("FAISCA_KERNELS_SF")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let plans = runtime
        .block_on(prepare(sf))
        .expect("the shapes plan, fuse and agree");
    for shape in &plans.shapes {
        let mut group = c.benchmark_group(shape.name);
        group.sample_size(10);
        for (label, plan) in [
            ("datafusion_chain", &shape.unfused),
            ("fused", &shape.fused),
        ] {
            group.bench_function(label, |b| {
                b.iter(|| {
                    runtime
                        .block_on(collect(plan.clone(), plans.ctx.task_ctx()))
                        .expect("the plan runs")
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
