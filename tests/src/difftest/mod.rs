//! The differential tester: random tables, random queries over them, each run on a Faísca
//! cluster (`local[3]`: three executors over gRPC, several shuffle partitions) and in
//! single-process DataFusion, compared as multisets (in order where the query orders).
//!
//! * [`data`] generates the tables (Parquet files and a table in the driver's memory),
//! * [`generate`] the queries (as [`ast`] trees, so that [`shrink`] can take a failing one
//!   apart into a minimal one),
//! * [`compare`] compares two results.
//!
//! Query `i` of a run with seed `S` is reproducible on its own: its tables come from
//! `(S, i / per_dataset)`, its text from `(S, i)`. The test command runs a fixed seed; a longer
//! run is `scripts/difftest.sh --queries N --seed S`, which prints the seed, index and minimal
//! form of every mismatch (`--only I` re-runs one query).

mod ast;
mod compare;
mod data;
mod generate;
mod shrink;

use std::collections::BTreeMap;
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use faisca::Session;

use ast::Statement;
use data::Rng;

/// What a run does: `FAISCA_DIFFTEST_SEED`, `FAISCA_DIFFTEST_QUERIES`, `FAISCA_DIFFTEST_ONLY`
/// (one query index), `FAISCA_DIFFTEST_PER_DATASET` (queries per generated set of tables);
/// with `FAISCA_DIFFTEST_ONLY`, `FAISCA_DIFFTEST_SQL` runs that SQL over the query's tables
/// instead, printing both results.
#[derive(Debug, Clone)]
struct Options {
    seed: u64,
    queries: usize,
    only: Option<usize>,
    per_dataset: usize,
}

impl Options {
    fn from_env() -> Options {
        let number = |key: &str| std::env::var(key).ok().and_then(|v| v.parse::<u64>().ok());
        Options {
            seed: number("FAISCA_DIFFTEST_SEED").unwrap_or(20_261_202),
            queries: number("FAISCA_DIFFTEST_QUERIES").unwrap_or(300) as usize,
            only: number("FAISCA_DIFFTEST_ONLY").map(|i| i as usize),
            per_dataset: number("FAISCA_DIFFTEST_PER_DATASET").unwrap_or(100).max(1) as usize,
        }
    }
}

fn mix(a: u64, b: u64) -> u64 {
    Rng::new(a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b).next_u64()
}

/// How a query fared.
#[derive(Debug)]
enum Verdict {
    /// Same answer.
    Same,
    /// DataFusion rejects it (not a test of anything; Faísca failed too).
    Invalid,
    /// A different answer, or a failure of one engine only.
    Differs { faisca_failed: bool, what: String },
}

/// The two engines, with the tables of the current dataset.
struct Engines {
    session: Session,
    reference: SessionContext,
    /// DataFusion in one partition: asked when the reference fails a query Faísca runs (some
    /// of DataFusion's planning bugs show with several partitions only).
    single_partition: SessionContext,
    dataset: Option<(usize, data::Dataset, tempfile::TempDir)>,
    seed: u64,
}

const QUERY_TIMEOUT: Duration = Duration::from_secs(120);

impl Engines {
    /// Make dataset `d` of the run current (generating its tables and settings).
    async fn use_dataset(&mut self, d: usize) -> &data::Dataset {
        if self
            .dataset
            .as_ref()
            .is_none_or(|(current, ..)| *current != d)
        {
            let mut rng = Rng::new(mix(self.seed, d as u64 + 1_000_000));
            let dir = tempfile::tempdir().expect("a data directory");
            let dataset = data::generate(&mut rng, dir.path(), 4);
            let partitions = 1 + rng.below(4);
            let target = *rng.pick(&[1usize, 2, 4]);
            self.reference = reference_context(target);
            self.single_partition = reference_context(1);
            let mut settings = vec![
                format!("SET faisca.shuffle.partitions = {partitions}"),
                format!("SET faisca.codegen.enabled = {}", rng.chance(0.8)),
                format!(
                    "SET datafusion.optimizer.hash_join_single_partition_threshold = {}",
                    if rng.chance(0.5) { 0 } else { 1024 * 1024 }
                ),
            ];
            settings.push(format!(
                "SET datafusion.optimizer.hash_join_single_partition_threshold_rows = {}",
                if settings[2].ends_with(" 0") {
                    0
                } else {
                    128 * 1024
                }
            ));
            for table in &dataset.tables {
                let drop = format!("DROP TABLE IF EXISTS {}", table.name);
                self.session
                    .execute_sql(&drop)
                    .await
                    .expect("dropping a table");
            }
            for sql in settings.iter().chain(&dataset.ddl) {
                self.session
                    .execute_sql(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            for ctx in [&self.reference, &self.single_partition] {
                for sql in &dataset.ddl {
                    let created = match ctx.sql(sql).await {
                        Ok(df) => df.collect().await.map(|_| ()),
                        Err(e) => Err(e),
                    };
                    created.unwrap_or_else(|e| panic!("{sql}: {e}"));
                }
            }
            self.dataset = Some((d, dataset, dir));
        }
        &self.dataset.as_ref().expect("just set").1
    }

    async fn reference_rows(&self, sql: &str) -> Result<Vec<RecordBatch>, String> {
        reference_rows(&self.reference, sql).await
    }

    async fn faisca_rows(&self, sql: &str) -> Result<Vec<RecordBatch>, String> {
        let run = async {
            let result = self
                .session
                .execute_sql(sql)
                .await
                .map_err(|e| e.to_string())?;
            faisca::client::collect(result.batches)
                .await
                .map_err(|e| e.to_string())
        };
        tokio::time::timeout(QUERY_TIMEOUT, run)
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
    }

    async fn verdict(&self, statement: &Statement) -> Verdict {
        let sql = statement.to_string();
        let mut expected = self.reference_rows(&sql).await;
        let actual = self.faisca_rows(&sql).await;
        if expected.is_err() && actual.is_ok() {
            expected = reference_rows(&self.single_partition, &sql)
                .await
                .map_err(|e| {
                    format!(
                        "{}; in one partition: {e}",
                        expected.err().unwrap_or_default()
                    )
                });
        }
        match (expected, actual) {
            (Err(_), Err(_)) => Verdict::Invalid,
            // A bug of DataFusion's own (an operator that panics, a plan that fails its own
            // checks): nothing to compare with.
            (Err(e), Ok(_)) if datafusion_bug(&e) => {
                println!("DataFusion panics on: {sql}\n  {e}");
                Verdict::Invalid
            }
            (Err(e), Ok(_)) => Verdict::Differs {
                faisca_failed: false,
                what: format!("DataFusion fails ({e}), Faísca does not"),
            },
            (Ok(_), Err(e)) => Verdict::Differs {
                faisca_failed: true,
                what: format!("Faísca fails: {e}"),
            },
            (Ok(e), Ok(a)) => match compare::difference(&e, &a, statement.order_all) {
                None => Verdict::Same,
                Some(what) => Verdict::Differs {
                    faisca_failed: false,
                    what,
                },
            },
        }
    }

    /// `statement` reduced while it keeps failing the way it does (a different answer, or
    /// Faísca failing with the same kind of error as `what` says).
    async fn shrink(
        &self,
        statement: Statement,
        faisca_failed: bool,
        what: &str,
    ) -> (Statement, String) {
        const BUDGET: usize = 400;
        let signature = failure_signature(what);
        let mut current = statement;
        let mut what = String::new();
        let mut tries = 0;
        'outer: while tries < BUDGET {
            for candidate in shrink::candidates(&current) {
                tries += 1;
                if tries >= BUDGET {
                    break 'outer;
                }
                if let Verdict::Differs {
                    faisca_failed: failed,
                    what: w,
                } = self.verdict(&candidate).await
                    && failed == faisca_failed
                    && (!failed || failure_signature(&w) == signature)
                {
                    current = candidate;
                    what = w;
                    continue 'outer;
                }
            }
            break;
        }
        (current, what)
    }
}

/// Single-process DataFusion with `partitions` partitions: its defaults, but for dynamic
/// filters, which Faísca runs without (in DataFusion 55 a join's dynamic filter compares keys in
/// total order, -0.0 < 0.0, while the join matches -0.0 = 0.0: the filter changes the join's
/// answer), and with Faísca's guard on the physical filter pushdown (which in DataFusion 55 can
/// move a filter onto another column of the same name); see docs/correctness.md.
pub(crate) fn reference_context(partitions: usize) -> SessionContext {
    let mut config = SessionConfig::new().with_target_partitions(partitions);
    for kind in ["", "join_", "topk_", "aggregate_"] {
        let key = format!("datafusion.optimizer.enable_{kind}dynamic_filter_pushdown");
        config
            .options_mut()
            .set(&key, "false")
            .expect("a DataFusion setting");
    }
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_physical_optimizer_rules(faisca_engine::filter_pushdown::physical_optimizer_rules())
        .build();
    SessionContext::new_with_state(state)
}

/// `sql`'s rows in `reference`, or why not (a panic of DataFusion's, a timeout).
async fn reference_rows(reference: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, String> {
    let (reference, sql) = (reference.clone(), sql.to_string());
    // In a task of its own: DataFusion re-raises a panic of its operators in the caller.
    let run = tokio::spawn(async move {
        reference
            .sql(&sql)
            .await
            .map_err(|e| e.to_string())?
            .collect()
            .await
            .map_err(|e| e.to_string())
    });
    let abort = run.abort_handle();
    match tokio::time::timeout(QUERY_TIMEOUT, run).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(format!("DataFusion panicked: {e}")),
        Err(_) => {
            abort.abort();
            Err("timed out".into())
        }
    }
}

/// Whether DataFusion failed because of a bug of its own rather than the query: a panic, a
/// plan its sanity check rejects, an internal error.
fn datafusion_bug(error: &str) -> bool {
    ["DataFusion panicked", "SanityCheckPlan", "Internal error"]
        .iter()
        .any(|marker| error.contains(marker))
}

/// What kind of failure a message describes: its first words, without numbers and paths.
fn failure_signature(what: &str) -> String {
    what.lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .filter(|w| !w.contains('/'))
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .take(60)
        .collect()
}

/// A mismatch, for the report.
struct Mismatch {
    index: usize,
    sql: String,
    minimal: String,
    what: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_queries_give_datafusions_answers() {
    let options = Options::from_env();
    let session = Session::builder()
        .master("local[3]")
        .config("faisca.shuffle.partitions", "3")
        .config("faisca.planner.checkEncoding", "true")
        .build()
        .await
        .unwrap();
    let mut engines = Engines {
        session,
        reference: reference_context(1),
        single_partition: reference_context(1),
        dataset: None,
        seed: options.seed,
    };
    let indexes: Vec<usize> = match options.only {
        Some(i) => vec![i],
        None => (0..options.queries).collect(),
    };
    let (mut same, mut invalid) = (0usize, 0usize);
    let mut features: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut mismatches = Vec::new();
    for &i in &indexes {
        let dataset = engines.use_dataset(i / options.per_dataset).await.clone();
        let generated = generate::statement(mix(options.seed, i as u64), &dataset);
        let sql = generated.statement.to_string();
        if let (Some(_), Ok(given)) = (options.only, std::env::var("FAISCA_DIFFTEST_SQL")) {
            // Another query over query I's tables, to look into a mismatch by hand.
            println!("query: {given}");
            if let Ok(explained) = engines.session.explain_sql(&given).await {
                println!("{explained}");
            }
            let show = |r: Result<Vec<RecordBatch>, String>| match r {
                Ok(b) => datafusion::arrow::util::pretty::pretty_format_batches(&b)
                    .map(|t| t.to_string())
                    .unwrap_or_else(|e| e.to_string()),
                Err(e) => e,
            };
            println!(
                "DataFusion's plan:\n{}",
                show(engines.reference_rows(&format!("EXPLAIN {given}")).await)
            );
            println!(
                "DataFusion:\n{}",
                show(engines.reference_rows(&given).await)
            );
            println!("Faísca:\n{}", show(engines.faisca_rows(&given).await));
            engines.session.stop().await;
            return;
        }
        if options.only.is_some() {
            println!("query {i}: {sql}");
            for ddl in &dataset.ddl {
                println!("  table: {ddl}");
            }
            if let Ok(explained) = engines.session.explain_sql(&sql).await {
                println!("{explained}");
            }
        }
        match engines.verdict(&generated.statement).await {
            Verdict::Same => {
                same += 1;
                for f in &generated.features {
                    *features.entry(f).or_default() += 1;
                }
            }
            Verdict::Invalid => invalid += 1,
            Verdict::Differs {
                faisca_failed,
                what,
            } => {
                println!(
                    "MISMATCH seed={} query={i}: {what}\n  query: {sql}",
                    options.seed
                );
                let (minimal, minimal_what) = engines
                    .shrink(generated.statement.clone(), faisca_failed, &what)
                    .await;
                let minimal = minimal.to_string();
                println!(
                    "  minimal: {minimal}\n  minimal differs: {minimal_what}\n  again: scripts/difftest.sh --seed {} --only {i}",
                    options.seed
                );
                mismatches.push(Mismatch {
                    index: i,
                    sql,
                    minimal,
                    what,
                });
            }
        }
        let done = same + invalid + mismatches.len();
        if done % 500 == 0 {
            println!(
                "{done} queries: {same} same, {invalid} rejected by DataFusion, {} mismatches",
                mismatches.len()
            );
        }
    }
    engines.session.stop().await;
    println!(
        "seed {}: {} queries, {same} same, {invalid} rejected by DataFusion, {} mismatches; features of the compared queries: {features:?}",
        options.seed,
        indexes.len(),
        mismatches.len()
    );
    let report: Vec<String> = mismatches
        .iter()
        .map(|m| {
            format!(
                "query {} (seed {}): {}\n  query:   {}\n  minimal: {}",
                m.index, options.seed, m.what, m.sql, m.minimal
            )
        })
        .collect();
    assert!(report.is_empty(), "{}", report.join("\n"));
    if options.only.is_none() {
        // The run means something only if most queries were valid and every feature was tried.
        assert!(
            same * 10 >= indexes.len() * 6,
            "only {same} of {} queries ran in DataFusion",
            indexes.len()
        );
        if indexes.len() >= 300 {
            for feature in EVERY_FEATURE {
                assert!(
                    features.contains_key(feature),
                    "no compared query used {feature}: {features:?}"
                );
            }
        }
    }
}

/// What a run of a few hundred queries must have compared at least once.
const EVERY_FEATURE: &[&str] = &[
    "inner join",
    "left join",
    "right join",
    "full join",
    "cross join",
    "semi join",
    "anti join",
    "aggregate",
    "grouping sets",
    "rollup",
    "cube",
    "distinct aggregate",
    "aggregate filter",
    "window",
    "window frame",
    "range frame",
    "ignore nulls",
    "window filter",
    "reversed window",
    "scalar subquery",
    "in subquery",
    "exists subquery",
    "correlated subquery",
    "cte",
    "recursive cte",
    "union",
    "intersect",
    "except",
    "order by",
    "limit",
    "offset",
    "distinct",
    "derived table",
];
