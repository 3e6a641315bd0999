//! A data-lake job on S3: land raw TPC-H tables in a bucket, build a curated table partitioned by
//! year with the DataFrame API, add a late batch with `append`, read it back with partition
//! pruning, and query it with SQL — every read and write distributed over the executors, every
//! write committed through `_temporary/` and `_SUCCESS`.
//!
//! `cargo run --example s3_lake [s3://BUCKET/PREFIX]`
//!
//! With a bucket URL, credentials and endpoint come from the usual `AWS_*` environment
//! (`AWS_ENDPOINT_URL` for an S3-compatible server). Without one, the example starts a local moto
//! S3 server on 127.0.0.1 (the one the README's test command installs, or `FAISCA_MOTO_SERVER`)
//! and uses the bucket `lake` there.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use faisca::Session;
use faisca::functions::*;
use faisca_bench::tpch::data;

/// A moto server started for this run, stopped when dropped.
struct LocalS3(Child);

impl Drop for LocalS3 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_local_s3() -> anyhow::Result<(LocalS3, String)> {
    let program = std::env::var_os("FAISCA_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(std::env::temp_dir);
            cache.join("faisca-ci/venv/bin/moto_server")
        });
    if !program.exists() {
        bail!(
            "no bucket URL given and no moto server at {}: run the README's test command once (it installs moto), set FAISCA_MOTO_SERVER, or pass s3://BUCKET/PREFIX with AWS_* set",
            program.display()
        );
    }
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(&program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let server = LocalS3(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("moto did not start on port {port}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((server, format!("http://127.0.0.1:{port}")))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sf = 0.01;
    let dir = data::dataset_dir(&faisca_bench::cache_dir(), sf);
    data::ensure(&dir, sf, 2)?;

    let mut builder = Session::builder()
        .master("local[2]")
        .app_name("s3_lake example");
    let (_server, lake) = match std::env::args().nth(1) {
        Some(url) => (None, url.trim_end_matches('/').to_string()),
        None => {
            let (server, endpoint) = start_local_s3()?;
            for (key, value) in [
                ("endpoint", endpoint.as_str()),
                ("region", "us-east-1"),
                ("access_key_id", "example"),
                ("secret_access_key", "example"),
            ] {
                builder = builder.config(format!("faisca.store.s3.lake.{key}"), value);
            }
            create_bucket(&endpoint)?;
            (Some(server), "s3://lake".to_string())
        }
    };
    let session = builder.build().await?;
    let local = |table: &str| format!("{}/", dir.join(table).display());

    // 1. Land the raw tables in the lake (overwrite: the example can run again).
    for table in ["orders", "lineitem"] {
        let rows = session
            .read()
            .parquet(&local(table))
            .await?
            .write()
            .mode("overwrite")
            .parquet(&format!("{lake}/raw/{table}/"))
            .await?;
        println!("landed {rows} rows of {table} in {lake}/raw/{table}/");
    }

    // 2. Curated: revenue per order month and ship mode, partitioned by year.
    let orders = session
        .read()
        .parquet(&format!("{lake}/raw/orders/"))
        .await?;
    let lineitem = session
        .read()
        .parquet(&format!("{lake}/raw/lineitem/"))
        .await?;
    let revenue = lineitem
        .with_column_renamed("l_orderkey", "o_orderkey")?
        .join(&orders, &["o_orderkey"], "inner")?
        .with_column("year", year(col("o_orderdate")))?
        .with_column("month", month(col("o_orderdate")))?
        .with_column(
            "revenue",
            col("l_extendedprice") * (lit(1.0) - col("l_discount")),
        )?
        .group_by(["year", "month", "l_shipmode"])?
        .agg(vec![
            sum(col("revenue")).alias("revenue"),
            count(lit(1)).alias("lines"),
        ])?;
    let curated = format!("{lake}/curated/revenue/");
    let before_1997 = revenue.filter(col("year").lt(lit(1997)))?;
    let rows = before_1997
        .write()
        .mode("overwrite")
        .partition_by(["year"])
        .parquet(&curated)
        .await?;
    println!("wrote {rows} rows to {curated} (years before 1997)");

    // 3. A late batch: the later years, appended as new files next to the first ones.
    let rows = revenue
        .filter(col("year").gt_eq(lit(1997)))?
        .write()
        .mode("append")
        .partition_by(["year"])
        .parquet(&curated)
        .await?;
    println!("appended {rows} rows (1997 and later)");

    // 4. Read it back: `year` comes from the directory names; a filter on it reads one directory.
    let table = session.read().parquet(&curated).await?;
    table
        .filter(col("year").eq(lit(1995)))?
        .group_by(["l_shipmode"])?
        .agg(vec![round(sum(col("revenue")), 2).alias("revenue_1995")])?
        .order_by(vec![desc(col("revenue_1995"))])?
        .show()
        .await?;
    table.create_or_replace_temp_view("revenue").await?;
    session
        .sql("SELECT year, round(sum(revenue), 2) AS revenue, sum(lines) AS lines FROM revenue GROUP BY year ORDER BY year")
        .await?
        .show()
        .await?;
    session.stop().await;
    Ok(())
}

/// Create the bucket `lake` (moto creates a bucket on a plain PUT).
fn create_bucket(endpoint: &str) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let host = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host)?;
    write!(
        stream,
        "PUT /lake HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    if !answer.starts_with("HTTP/1.1 200") {
        bail!("creating the bucket lake at {endpoint}: {answer}");
    }
    Ok(())
}
