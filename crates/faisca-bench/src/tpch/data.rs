//! TPC-H tables as Parquet, generated in-process with `tpchgen-arrow` and cached on disk.
//!
//! Layout: `<dir>/<table>/part-<i>.parquet`. Large tables are generated in several parts in
//! parallel; a `_SUCCESS` marker says the directory is complete (a half-written directory from an
//! interrupted run is generated again).

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow,
    SupplierArrow,
};

/// The eight TPC-H tables.
pub const TABLES: [&str; 8] = [
    "nation", "region", "part", "supplier", "partsupp", "customer", "orders", "lineitem",
];

/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 1 << 19;

type Batches = Box<
    dyn Iterator<Item = std::result::Result<RecordBatch, datafusion::arrow::error::ArrowError>>
        + Send,
>;

fn generator(table: &str, sf: f64, part: i32, parts: i32) -> (SchemaRef, Batches) {
    match table {
        "nation" => (
            NationArrow::schema_ref(),
            Box::new(NationArrow::new(NationGenerator::new(sf, part, parts))),
        ),
        "region" => (
            RegionArrow::schema_ref(),
            Box::new(RegionArrow::new(RegionGenerator::new(sf, part, parts))),
        ),
        "part" => (
            PartArrow::schema_ref(),
            Box::new(PartArrow::new(PartGenerator::new(sf, part, parts))),
        ),
        "supplier" => (
            SupplierArrow::schema_ref(),
            Box::new(SupplierArrow::new(SupplierGenerator::new(sf, part, parts))),
        ),
        "partsupp" => (
            PartSuppArrow::schema_ref(),
            Box::new(PartSuppArrow::new(PartSuppGenerator::new(sf, part, parts))),
        ),
        "customer" => (
            CustomerArrow::schema_ref(),
            Box::new(CustomerArrow::new(CustomerGenerator::new(sf, part, parts))),
        ),
        "orders" => (
            OrderArrow::schema_ref(),
            Box::new(OrderArrow::new(OrderGenerator::new(sf, part, parts))),
        ),
        _ => (
            LineItemArrow::schema_ref(),
            Box::new(LineItemArrow::new(LineItemGenerator::new(sf, part, parts))),
        ),
    }
}

/// How many parts (files) a table is generated in.
fn parts_of(table: &str, sf: f64) -> i32 {
    let weight = match table {
        "lineitem" => 6.0,
        "orders" => 1.5,
        "partsupp" => 0.8,
        "part" | "customer" => 0.2,
        _ => 0.0,
    };
    ((weight * sf).ceil() as i32).clamp(1, 64)
}

/// Make sure TPC-H SF `sf` exists in `dir` (default: the cache directory's dataset), generating
/// it on a blocking thread with all cores if needed. Returns the directory and whether it was
/// generated now (a line on stderr says so, with the time it took).
pub async fn prepare(dir: Option<PathBuf>, sf: f64) -> Result<(PathBuf, bool)> {
    let dir = dir.unwrap_or_else(|| dataset_dir(&crate::cache_dir(), sf));
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let started = std::time::Instant::now();
    let gen_dir = dir.clone();
    let generated = tokio::task::spawn_blocking(move || ensure(&gen_dir, sf, threads)).await??;
    if generated {
        eprintln!(
            "generated TPC-H SF{sf} into {} in {:.1} s",
            dir.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok((dir, generated))
}

/// The directory for scale factor `sf` under `root`.
pub fn dataset_dir(root: &Path, sf: f64) -> PathBuf {
    root.join(format!("tpch-sf{sf}"))
}

/// Make sure TPC-H data at `sf` exists in `dir`; generates it (with `threads` threads) if not.
/// Returns whether data was generated.
pub fn ensure(dir: &Path, sf: f64, threads: usize) -> Result<bool> {
    if dir.join("_SUCCESS").exists() {
        return Ok(false);
    }
    if !(sf > 0.0 && sf.is_finite()) {
        anyhow::bail!(
            "invalid TPC-H scale factor {sf}: expected a positive number such as 0.1 or 1"
        );
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("removing incomplete data in {}", dir.display()))?;
    }
    let mut jobs: Vec<(&str, i32, i32)> = Vec::new();
    for table in TABLES {
        let parts = parts_of(table, sf);
        std::fs::create_dir_all(dir.join(table))
            .with_context(|| format!("creating {}", dir.join(table).display()))?;
        jobs.extend((1..=parts).map(|p| (table, p, parts)));
    }
    // Biggest first so that the threads finish together.
    jobs.sort_by_key(|(t, _, _)| std::cmp::Reverse(TABLES.iter().position(|x| x == t)));
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(table, part, parts)) = jobs.get(i) else {
                            return Ok(());
                        };
                        write_part(dir, table, sf, part, parts)?;
                    }
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("a TPC-H generator thread panicked"))??;
        }
        Ok(())
    })?;
    File::create(dir.join("_SUCCESS"))?;
    Ok(true)
}

fn write_part(dir: &Path, table: &str, sf: f64, part: i32, parts: i32) -> Result<()> {
    let (schema, batches) = generator(table, sf, part, parts);
    let path = dir.join(table).join(format!("part-{part}.parquet"));
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let mut writer = ArrowWriter::try_new(file, schema, Some(props))?;
    for batch in batches {
        writer.write(&batch?)?;
    }
    writer.close()?;
    Ok(())
}

/// `CREATE EXTERNAL TABLE` statements for the tables in `dir`.
pub fn create_tables_sql(dir: &Path) -> Vec<String> {
    TABLES
        .iter()
        .map(|t| {
            let location = dir.join(t);
            format!(
                "CREATE EXTERNAL TABLE IF NOT EXISTS {t} STORED AS PARQUET LOCATION '{}/'",
                location.display().to_string().replace('\'', "''")
            )
        })
        .collect()
}
