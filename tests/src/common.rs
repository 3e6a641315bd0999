//! Shared helpers: TPC-H data generated once per test run, result normalization, the CLI binary.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use datafusion::arrow::array::{Array, ArrayRef, Float32Array, Float64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::array_value_to_string;

/// TPC-H SF 0.01, generated once into the build's temporary directory and kept there for the
/// next run (a temporary directory in `/tmp` would outlive every run: statics are never dropped).
pub fn tpch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tpch");
        let dir = base.join("sf0.01");
        if dir.join("_SUCCESS").exists() {
            return dir;
        }
        std::fs::create_dir_all(&base).expect("creating the TPC-H test data directory");
        // Generated aside and renamed into place, so that test binaries running at the same
        // time never see (or remove) each other's half-written data.
        let scratch = tempfile::Builder::new()
            .prefix("sf0.01-")
            .tempdir_in(&base)
            .expect("temp dir");
        let generated = scratch.path().join("sf0.01");
        faisca_bench::tpch::data::ensure(&generated, 0.01, 2).expect("TPC-H data generation");
        if let Err(e) = std::fs::rename(&generated, &dir) {
            assert!(
                dir.join("_SUCCESS").exists(),
                "moving TPC-H data to {}: {e}",
                dir.display()
            );
        }
        dir
    })
}

fn cell(array: &ArrayRef, row: usize) -> String {
    if array.is_null(row) {
        return "NULL".into();
    }
    // Floating-point sums depend on the order rows are added in; compare 9 significant digits.
    match array.data_type() {
        DataType::Float64 => format!(
            "{:.8e}",
            array
                .as_any()
                .downcast_ref::<Float64Array>()
                .expect("f64")
                .value(row)
        ),
        DataType::Float32 => format!(
            "{:.5e}",
            array
                .as_any()
                .downcast_ref::<Float32Array>()
                .expect("f32")
                .value(row)
        ),
        _ => array_value_to_string(array, row).expect("displayable"),
    }
}

/// Rows as strings, sorted (so results are compared as multisets).
pub fn normalized_rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut rows = ordered_rows(batches);
    rows.sort();
    rows
}

/// A session on `master` with `config`, once `executors` executors registered (a minute at
/// most), with the TPC-H test tables.
pub async fn tpch_session(
    master: &str,
    config: &[(&str, &str)],
    executors: usize,
) -> faisca::Session {
    let mut builder = faisca::Session::builder().master(master);
    for (key, value) in config {
        builder = builder.config(*key, *value);
    }
    let session = builder.build().await.unwrap();
    session
        .wait_for_executors(executors, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    for ddl in faisca_bench::tpch::data::create_tables_sql(tpch_dir()) {
        session.execute_sql(&ddl).await.unwrap();
    }
    session
}

/// What single-process DataFusion answers to `sql` over the TPC-H test tables, normalized.
pub async fn tpch_expected(sql: &str) -> Vec<String> {
    let ctx = datafusion::prelude::SessionContext::new();
    for ddl in faisca_bench::tpch::data::create_tables_sql(tpch_dir()) {
        ctx.sql(&ddl).await.unwrap().collect().await.unwrap();
    }
    normalized_rows(&ctx.sql(sql).await.unwrap().collect().await.unwrap())
}

/// Rows as strings, in the order they came (for results a query orders).
pub fn ordered_rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut rows = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            rows.push(
                b.columns()
                    .iter()
                    .map(|c| cell(c, r))
                    .collect::<Vec<_>>()
                    .join("|"),
            );
        }
    }
    rows
}

/// The `faisca` binary next to this test binary (`cargo build -p faisca-cli` builds it; the
/// README's test command does).
pub fn faisca_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("faisca");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p faisca-cli` (scripts/test.sh does)",
        bin.display()
    );
    bin
}
