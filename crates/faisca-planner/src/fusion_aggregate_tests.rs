//! Fused partial aggregates against DataFusion's: the same queries over the same random
//! batches (nulls, wrapping integer sums, decimals, dates, short and long strings, few and many
//! groups, several batches per partition) planned by DataFusion, then run as planned and after
//! fusion. The fused plans must contain the aggregate in a pipeline (or the test proves
//! nothing), and the answers must be identical. Floats are multiples of 1/4 so that their sums
//! are exact in any order.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Date32Array, Decimal128Array, Float64Array, Int64Array, RecordBatch, StringArray,
    StringViewArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use datafusion::physical_plan::{ExecutionPlan, collect, displayable};
use datafusion::prelude::{SessionConfig, SessionContext};

use super::fuse;

/// xorshift64*: failures reproduce from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k_small", DataType::Int64, true),
        Field::new("k_str", DataType::Utf8View, true),
        Field::new("k_utf8", DataType::Utf8, true),
        Field::new("k_long", DataType::Utf8, true),
        Field::new("k_many", DataType::Int64, true),
        Field::new("v_int", DataType::Int64, true),
        Field::new("v_dec", DataType::Decimal128(15, 2), true),
        Field::new("v_f", DataType::Float64, true),
        Field::new("d", DataType::Date32, true),
        Field::new("v_big", DataType::Decimal128(20, 2), true),
    ]))
}

fn batch(rng: &mut Rng, rows: usize, many: u64) -> RecordBatch {
    let maybe = |rng: &mut Rng| !rng.chance(10);
    let mut columns: Vec<ArrayRef> = Vec::new();
    let k_small: Int64Array = (0..rows)
        .map(|_| maybe(rng).then(|| rng.below(4) as i64 - 1))
        .collect();
    columns.push(Arc::new(k_small));
    let short = ["a", "bb", "", "twelve bytes"];
    let k_str: StringViewArray = (0..rows)
        .map(|_| maybe(rng).then(|| short[rng.below(4) as usize]))
        .collect();
    columns.push(Arc::new(k_str));
    let k_utf8: StringArray = (0..rows)
        .map(|_| maybe(rng).then(|| short[rng.below(3) as usize]))
        .collect();
    columns.push(Arc::new(k_utf8));
    let k_long: StringArray = (0..rows)
        .map(|_| maybe(rng).then(|| format!("a rather long key number {}", rng.below(300))))
        .collect();
    columns.push(Arc::new(k_long));
    let k_many: Int64Array = (0..rows)
        .map(|_| maybe(rng).then(|| rng.below(many) as i64))
        .collect();
    columns.push(Arc::new(k_many));
    let v_int: Int64Array = (0..rows)
        .map(|_| {
            maybe(rng).then(|| {
                if rng.chance(5) {
                    i64::MAX - rng.below(10) as i64
                } else {
                    rng.below(2000) as i64 - 1000
                }
            })
        })
        .collect();
    columns.push(Arc::new(v_int));
    let v_dec = (0..rows)
        .map(|_| maybe(rng).then(|| rng.below(2_000_000) as i128 - 1_000_000))
        .collect::<Decimal128Array>()
        .with_precision_and_scale(15, 2)
        .unwrap();
    columns.push(Arc::new(v_dec));
    let v_f: Float64Array = (0..rows)
        .map(|_| maybe(rng).then(|| (rng.below(400) as f64 - 200.0) / 4.0))
        .collect();
    columns.push(Arc::new(v_f));
    let d: Date32Array = (0..rows)
        .map(|_| maybe(rng).then(|| 8000 + rng.below(3000) as i32))
        .collect();
    columns.push(Arc::new(d));
    // Small values, except in some batches a few beyond 64 bits (64-bit sums must widen).
    let huge = rng.chance(30);
    let v_big = (0..rows)
        .map(|_| {
            maybe(rng).then(|| match rng.below(40) {
                0 if huge => 9 * 10i128.pow(19) + rng.below(1000) as i128,
                1 if huge => -5 * 10i128.pow(18),
                _ => rng.below(20_000) as i128 - 10_000,
            })
        })
        .collect::<Decimal128Array>()
        .with_precision_and_scale(20, 2)
        .unwrap();
    columns.push(Arc::new(v_big));
    RecordBatch::try_new(schema(), columns).unwrap()
}

const QUERIES: &[&str] = &[
    // Few groups: the fast path (two columns: direct table).
    "SELECT k_small, k_str, sum(v_int), count(*), count(v_dec), avg(v_dec), min(v_f), max(d), \
     sum(v_dec), avg(v_f), max(v_int), min(v_dec), sum(v_big), avg(v_big) FROM t WHERE v_int > -500 \
     GROUP BY k_small, k_str",
    // Three and four key columns: the packed-key map.
    "SELECT k_small, k_str, k_utf8, sum(v_dec * 2), count(v_f) FROM t GROUP BY k_small, k_str, k_utf8",
    "SELECT k_utf8, k_small, d, k_str, count(*), min(v_int) FROM t WHERE v_f < 10 \
     GROUP BY k_utf8, k_small, d, k_str",
    // Many groups: moves to the general path mid-stream (more than 255 distinct keys).
    "SELECT k_many, sum(v_int), avg(v_dec), count(*), max(v_f), sum(v_big), avg(v_big) FROM t \
     GROUP BY k_many",
    // Long strings: the general path from the first batch.
    "SELECT k_long, k_small, sum(v_dec), min(d), count(v_int) FROM t GROUP BY k_long, k_small",
    // A computed key and argument, a selective filter.
    "SELECT k_small + 1, sum(v_int * 3 - 1), count(*) FROM t WHERE v_dec > 5000.00 AND d < DATE '2000-01-01' \
     GROUP BY k_small + 1",
    // No GROUP BY.
    "SELECT sum(v_dec * 2), avg(v_f), min(v_int), max(v_dec), count(*), sum(v_int), avg(v_big), \
     sum(v_big) FROM t WHERE v_int IS NOT NULL",
    // Nothing survives the filter, with and without groups.
    "SELECT k_small, sum(v_int), count(*) FROM t WHERE v_int > 5000 AND v_int < 4000 GROUP BY k_small",
    "SELECT sum(v_int), count(*), avg(v_dec), min(d) FROM t WHERE v_int > 5000 AND v_int < 4000",
];

fn context(batch_size: usize, probe_rows: usize) -> SessionContext {
    let mut config = SessionConfig::new()
        .with_target_partitions(2)
        .with_batch_size(batch_size);
    config
        .options_mut()
        .execution
        .skip_partial_aggregation_probe_rows_threshold = probe_rows;
    SessionContext::new_with_config(config)
}

async fn rows(plan: &Arc<dyn ExecutionPlan>, ctx: &SessionContext) -> Vec<String> {
    let batches = collect(plan.clone(), ctx.task_ctx()).await.unwrap();
    let text = pretty_format_batches(&batches).unwrap().to_string();
    let mut rows: Vec<String> = text.lines().map(str::to_string).collect();
    rows.sort();
    rows
}

async fn check(seed: u64, rows_per_batch: usize, many: u64, probe_rows: usize) {
    let mut rng = Rng(seed);
    let partitions: Vec<Vec<RecordBatch>> = (0..2)
        .map(|_| {
            (0..3)
                .map(|_| {
                    let rows = rows_per_batch + rng.below(50) as usize;
                    batch(&mut rng, rows, many)
                })
                .collect()
        })
        .collect();
    let ctx = context(1 + rng.below(600) as usize, probe_rows);
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(schema(), partitions).unwrap()),
    )
    .unwrap();
    for sql in QUERIES {
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let fused = fuse(plan.clone()).unwrap();
        let shown = displayable(fused.as_ref()).indent(false).to_string();
        assert!(
            shown.contains("partial_aggregate("),
            "seed {seed}: the aggregate was not fused: {sql}\n{shown}"
        );
        assert_eq!(
            rows(&fused, &ctx).await,
            rows(&plan, &ctx).await,
            "seed {seed}: {sql}\n{shown}"
        );
    }
}

#[tokio::test]
async fn fused_partial_aggregates_give_datafusions_answers() {
    for seed in 1..=12u64 {
        check(seed * 7919, 300, 2000, 100_000).await;
    }
}

#[tokio::test]
async fn grouping_given_up_as_datafusion_does_still_gives_its_answers() {
    // A probe after 50 rows: keys that are nearly unique stop grouping, and each row's own
    // state goes to the final aggregate.
    for seed in 1..=4u64 {
        check(seed * 104_729, 200, 1_000_000, 50).await;
    }
}
