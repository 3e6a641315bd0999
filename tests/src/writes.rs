//! Writes: DataFrame writers, `COPY … TO` and `INSERT INTO` on local files and on a real
//! S3-compatible server, with save modes, partitioning, row limits per file, and the commit
//! protocol under faults (retried tasks, failed and killed jobs, a commit stopped after its
//! manifest and resumed by the next write).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use faisca::functions::*;
use faisca::{DataFrame, Session};
use object_store::ObjectStore;
use object_store::path::Path as StorePath;

use crate::cli::wait_until;
use crate::common::{normalized_rows, tpch_dir};
use crate::s3::Moto;

async fn session(extra: &[(&str, &str)]) -> Session {
    let mut builder = Session::builder()
        .master("local[2]")
        .config("faisca.files.maxPartitionBytes", "256k");
    for (k, v) in extra {
        builder = builder.config(*k, *v);
    }
    builder.build().await.unwrap()
}

async fn lineitem(session: &Session) -> DataFrame {
    session
        .read()
        .parquet(&format!("{}/", tpch_dir().join("lineitem").display()))
        .await
        .unwrap()
        .select(["l_orderkey", "l_linenumber", "l_quantity", "l_shipmode"])
        .unwrap()
}

/// Files below `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn data_files(dir: &Path) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|f| !f.starts_with('_') && !f.contains("/_"))
        .collect()
}

async fn rows(df: &DataFrame) -> Vec<String> {
    normalized_rows(&df.collect().await.unwrap())
}

async fn read_back(session: &Session, dir: &Path) -> DataFrame {
    session
        .read()
        .parquet(&format!("{}/", dir.display()))
        .await
        .unwrap()
        .select(["l_orderkey", "l_linenumber", "l_quantity", "l_shipmode"])
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_parquet_writes_read_back_under_every_save_mode() {
    let session = session(&[]).await;
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("lineitem");
    let url = dest.display().to_string();
    let source = lineitem(&session).await;
    let total = source.count().await.unwrap();
    let expected = rows(&source).await;

    let written = source
        .write()
        .partition_by(["l_shipmode"])
        .parquet(&url)
        .await
        .unwrap();
    assert_eq!(written, total);
    let all = files(&dest);
    assert!(all.contains(&"_SUCCESS".to_string()), "{all:?}");
    assert!(!dest.join("_temporary").exists(), "{all:?}");
    let modes: BTreeSet<String> = data_files(&dest)
        .iter()
        .map(|f| f.split('/').next().unwrap().to_string())
        .collect();
    assert_eq!(modes.len(), 7, "one directory per ship mode: {modes:?}");
    assert!(modes.contains("l_shipmode=AIR"), "{modes:?}");
    assert!(
        data_files(&dest).iter().all(|f| f.contains("/part-")),
        "{all:?}"
    );
    let back = read_back(&session, &dest).await;
    assert_eq!(rows(&back).await, expected);
    // The partition column is read back from the directories, and pruning works on it.
    let air = back.filter(col("l_shipmode").eq(lit("AIR"))).unwrap();
    let air_expected = source.filter(col("l_shipmode").eq(lit("AIR"))).unwrap();
    assert_eq!(
        air.count().await.unwrap(),
        air_expected.count().await.unwrap()
    );

    // error (the default): the destination holds data.
    let e = source.write().parquet(&url).await.unwrap_err().to_string();
    assert!(e.contains("already holds data") && e.contains(&url), "{e}");
    // ignore: nothing happens.
    let before = files(&dest);
    assert_eq!(
        source.write().mode("ignore").parquet(&url).await.unwrap(),
        0
    );
    assert_eq!(files(&dest), before);
    // append: the same rows again, in new files.
    let appended = source
        .write()
        .mode("append")
        .partition_by(["l_shipmode"])
        .parquet(&url)
        .await
        .unwrap();
    assert_eq!(appended, total);
    assert_eq!(
        read_back(&session, &dest).await.count().await.unwrap(),
        2 * total
    );
    // overwrite (static): only the new rows remain.
    let air_rows = air_expected.count().await.unwrap();
    let mail = source.filter(col("l_shipmode").eq(lit("MAIL"))).unwrap();
    let mail_rows = mail.count().await.unwrap();
    source
        .filter(col("l_shipmode").eq(lit("AIR")))
        .unwrap()
        .write()
        .mode("overwrite")
        .partition_by(["l_shipmode"])
        .parquet(&url)
        .await
        .unwrap();
    let back = read_back(&session, &dest).await;
    assert_eq!(back.count().await.unwrap(), air_rows);
    assert_eq!(
        data_files(&dest)
            .iter()
            .filter(|f| !f.starts_with("l_shipmode=AIR/"))
            .count(),
        0
    );
    // overwrite (dynamic): only the partitions written are replaced.
    mail.write()
        .mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .partition_by(["l_shipmode"])
        .parquet(&url)
        .await
        .unwrap();
    let back = read_back(&session, &dest).await;
    assert_eq!(back.count().await.unwrap(), air_rows + mail_rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_and_insert_write_csv_json_and_parquet_tables() {
    let session = session(&[]).await;
    let tmp = tempfile::tempdir().unwrap();
    let nation = tpch_dir().join("nation");
    session
        .sql(&format!(
            "CREATE EXTERNAL TABLE nation STORED AS PARQUET LOCATION '{}/'",
            nation.display()
        ))
        .await
        .unwrap();
    let csv_dir = tmp.path().join("nations_csv");
    let count = |df: DataFrame| async move {
        let batches = df.collect().await.unwrap();
        normalized_rows(&batches)
    };
    let copied = session
        .sql(&format!(
            "COPY (SELECT n_nationkey, n_name, n_regionkey FROM nation) TO '{}' STORED AS CSV \
             OPTIONS ('format.has_header' 'true', 'maxRecordsPerFile' '10')",
            csv_dir.display()
        ))
        .await
        .unwrap();
    assert_eq!(count(copied).await, vec!["25"]);
    let csv_files = data_files(&csv_dir);
    assert_eq!(csv_files.len(), 3, "10 + 10 + 5 rows: {csv_files:?}");
    let text = std::fs::read_to_string(csv_dir.join(&csv_files[0])).unwrap();
    assert!(
        text.starts_with("n_nationkey,n_name,n_regionkey\n"),
        "{text}"
    );

    // A second COPY to the same place needs a mode.
    let e = session
        .sql(&format!(
            "COPY (SELECT 1 AS x) TO '{}' STORED AS CSV",
            csv_dir.display()
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("already holds data"), "{e}");

    // INSERT INTO / INSERT OVERWRITE a CSV table over those files.
    session
        .sql(&format!(
            "CREATE EXTERNAL TABLE n2 (n_nationkey BIGINT, n_name VARCHAR, n_regionkey BIGINT) \
             STORED AS CSV LOCATION '{}/' OPTIONS ('format.has_header' 'true')",
            csv_dir.display()
        ))
        .await
        .unwrap();
    let table_count =
        || async { count(session.sql("SELECT count(*) FROM n2").await.unwrap()).await };
    assert_eq!(table_count().await, vec!["25"]);
    let inserted = session
        .sql("INSERT INTO n2 SELECT n_nationkey, n_name, n_regionkey FROM nation")
        .await
        .unwrap();
    assert_eq!(count(inserted).await, vec!["25"]);
    assert_eq!(table_count().await, vec!["50"]);
    session
        .sql("INSERT OVERWRITE n2 SELECT n_nationkey, n_name, n_regionkey FROM nation WHERE n_regionkey = 0")
        .await
        .unwrap();
    assert_eq!(table_count().await, vec!["5"]);

    // JSON, partitioned by region, read back.
    let json_dir = tmp.path().join("nations_json");
    session
        .sql(&format!(
            "COPY nation TO '{}' STORED AS JSON PARTITIONED BY (n_regionkey)",
            json_dir.display()
        ))
        .await
        .unwrap();
    assert_eq!(
        data_files(&json_dir)
            .iter()
            .filter(|f| f.starts_with("n_regionkey="))
            .count(),
        5
    );
    let back = session
        .read()
        .json(&format!("{}/", json_dir.display()))
        .await
        .unwrap();
    assert_eq!(back.count().await.unwrap(), 25);
    let by_region = back
        .filter(col("n_regionkey").eq(lit("3")))
        .unwrap()
        .count()
        .await
        .unwrap();
    assert_eq!(by_region, 5);

    // Bad options fail before anything is written.
    let bad_dir = tmp.path().join("bad");
    for (options, expected) in [
        ("'compression' 'gzip'", "compression"),
        ("'mode' 'sometimes'", "save mode"),
        ("'format.no_such_option' '1'", "no_such_option"),
    ] {
        let e = session
            .sql(&format!(
                "COPY nation TO '{}' STORED AS CSV OPTIONS ({options})",
                bad_dir.display()
            ))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected), "{options}: {e}");
    }
    let e = session
        .sql(&format!(
            "COPY nation TO '{}' STORED AS PARQUET PARTITIONED BY (no_such_column)",
            bad_dir.display()
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no_such_column"), "{e}");
    assert!(!bad_dir.exists(), "nothing written for a bad write");
}

/// SQL `COPY` to a file path writes that one file, as DataFusion does, so that DataFusion-style
/// readers of the folder find it; save modes still apply, and a failed COPY leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_a_file_path_writes_one_file_as_datafusion_does() {
    let session = session(&[]).await;
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("exports");
    let lineitem_dir = tpch_dir().join("lineitem");
    session
        .sql(&format!(
            "CREATE EXTERNAL TABLE li STORED AS PARQUET LOCATION '{}/'",
            lineitem_dir.display()
        ))
        .await
        .unwrap();
    let total = rows(&session.sql("SELECT count(*) FROM li").await.unwrap()).await;
    let copy = |target: &str, options: &str| {
        format!(
            "COPY (SELECT l_orderkey, l_linenumber, l_quantity FROM li) TO '{}/{target}' STORED AS {} {options}",
            folder.display(),
            if target.ends_with(".parquet") {
                "PARQUET"
            } else {
                "CSV"
            }
        )
    };
    // Several scan tasks, one file: the write is one task.
    let written = session.sql(&copy("all.csv", "")).await.unwrap();
    assert_eq!(rows(&written).await, total);
    assert_eq!(files(&folder), vec!["all.csv"]);
    let written = session.sql(&copy("all.parquet", "")).await.unwrap();
    assert_eq!(rows(&written).await, total);
    assert_eq!(files(&folder), vec!["all.csv", "all.parquet"]);
    // DataFusion reads the folder as a table of its Parquet files.
    let ctx = datafusion::prelude::SessionContext::new();
    ctx.sql(&format!(
        "CREATE EXTERNAL TABLE exports STORED AS PARQUET LOCATION '{}/'",
        folder.display()
    ))
    .await
    .unwrap();
    let from_datafusion = ctx
        .sql("SELECT count(*) FROM exports")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(normalized_rows(&from_datafusion), total);

    // Save modes: error (the default) keeps the file; ignore skips; append cannot; overwrite
    // replaces it.
    let e = session
        .sql(&copy("all.csv", ""))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("already exists") && e.contains("all.csv"), "{e}");
    let skipped = session
        .sql(&copy("all.csv", "OPTIONS ('mode' 'ignore')"))
        .await
        .unwrap();
    assert_eq!(rows(&skipped).await, vec!["0"]);
    let e = session
        .sql(&copy("all.csv", "OPTIONS ('mode' 'append')"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot append"), "{e}");
    let small = format!(
        "COPY (SELECT 1 AS x UNION ALL SELECT 2) TO '{}/all.csv' STORED AS CSV OPTIONS ('mode' 'overwrite', 'format.has_header' 'true')",
        folder.display()
    );
    session.sql(&small).await.unwrap();
    let text = std::fs::read_to_string(folder.join("all.csv")).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(lines, vec!["1", "2", "x"]);
    assert_eq!(
        files(&folder),
        vec!["all.csv", "all.parquet"],
        "no _SUCCESS, no _temporary"
    );

    // No rows: still the file, with its header.
    let empty = format!(
        "COPY (SELECT l_orderkey FROM li WHERE l_orderkey < 0) TO '{}/none.csv' STORED AS CSV OPTIONS ('format.has_header' 'true')",
        folder.display()
    );
    session.sql(&empty).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(folder.join("none.csv")).unwrap(),
        "l_orderkey\n"
    );

    // A directory when asked for one (a trailing /, or single_file_output false).
    session
        .sql(&copy("dir.csv", "OPTIONS ('single_file_output' 'false')"))
        .await
        .unwrap();
    assert!(folder.join("dir.csv").is_dir());
    assert!(folder.join("dir.csv").join("_SUCCESS").exists());

    // A COPY that fails leaves the folder as it was.
    let failing = self::session(&[("faisca.test.failTasks", "*:1:user")]).await;
    failing
        .sql(&format!(
            "CREATE EXTERNAL TABLE li STORED AS PARQUET LOCATION '{}/'",
            lineitem_dir.display()
        ))
        .await
        .unwrap();
    let before = files(&folder);
    let e = failing
        .sql(&copy("failed.csv", ""))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("injected failure"), "{e}");
    assert!(
        wait_until(|| files(&folder) == before),
        "a failed COPY leaves nothing: {:?}",
        files(&folder)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_write_tasks_leave_one_copy_and_failed_jobs_leave_the_destination_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let url = dest.display().to_string();

    // Every task's first attempt fails after the job started: one file per task, no duplicate.
    let flaky = session(&[("faisca.test.failTasks", "*:1")]).await;
    let source = lineitem(&flaky).await;
    let total = source.count().await.unwrap();
    assert_eq!(source.write().parquet(&url).await.unwrap(), total);
    let first = data_files(&dest);
    let tasks: BTreeSet<String> = first.iter().map(|f| f[..10].to_string()).collect();
    assert_eq!(tasks.len(), first.len(), "one file per task: {first:?}");
    assert_eq!(read_back(&flaky, &dest).await.count().await.unwrap(), total);

    // A write that fails (a non-retryable task error) changes nothing.
    let failing = session(&[("faisca.test.failTasks", "*:1:user")]).await;
    let e = lineitem(&failing)
        .await
        .write()
        .mode("overwrite")
        .parquet(&url)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("injected failure"), "{e}");
    assert_eq!(data_files(&dest), first);
    assert!(
        wait_until(|| !dest.join("_temporary").exists()),
        "the failed job's temporary files are removed"
    );

    // A write killed while its tasks run changes nothing either.
    let slow = session(&[("faisca.test.taskDelay", "*:2s")]).await;
    let writer = {
        let df = lineitem(&slow).await;
        let url = url.clone();
        tokio::spawn(async move { df.write().mode("overwrite").parquet(&url).await })
    };
    let client = slow.client().clone();
    let job = loop {
        let jobs = client.list_jobs().await.unwrap();
        if let Some(job) = jobs.iter().find(|j| j.state == faisca::JobState::Running) {
            break job.job_id.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    client.kill_job(&job).await.unwrap();
    let e = writer.await.unwrap().unwrap_err();
    assert!(e.to_string().contains("cancelled"), "{e}");
    assert_eq!(data_files(&dest), first);
    assert!(
        wait_until(|| !dest.join("_temporary").exists()),
        "the killed job's temporary files are removed"
    );
    assert_eq!(read_back(&slow, &dest).await.count().await.unwrap(), total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_stopped_after_its_manifest_is_invisible_until_the_next_write_resumes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let url = dest.display().to_string();
    let normal = session(&[]).await;
    let source = lineitem(&normal).await;
    let total = source.count().await.unwrap();
    let air = source.filter(col("l_shipmode").eq(lit("AIR"))).unwrap();
    let air_rows = air.count().await.unwrap();
    air.write()
        .partition_by(["l_shipmode"])
        .parquet(&url)
        .await
        .unwrap();

    let stopping = session(&[("faisca.test.stopCommitAfterManifest", "true")]).await;
    let e = lineitem(&stopping)
        .await
        .write()
        .mode("overwrite")
        .partition_by(["l_shipmode"])
        .parquet(&url)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("manifest"), "{e}");
    let pending: Vec<String> = files(&dest)
        .into_iter()
        .filter(|f| f.ends_with("_manifest.json"))
        .collect();
    assert_eq!(pending.len(), 1, "{:?}", files(&dest));
    // Readers still see the old data: the new files are not committed.
    assert_eq!(
        read_back(&normal, &dest).await.count().await.unwrap(),
        air_rows
    );

    // Simulate a driver that died half-way through the moves: one new file already at its final
    // name. Readers must not see it either.
    let temporary: Vec<String> = files(&dest)
        .into_iter()
        .filter(|f| f.starts_with("_temporary/") && f.ends_with(".parquet"))
        .collect();
    let moved = &temporary[0];
    let final_name = moved.splitn(4, '/').nth(3).unwrap().to_string();
    std::fs::create_dir_all(dest.join(&final_name).parent().unwrap()).unwrap();
    std::fs::rename(dest.join(moved), dest.join(&final_name)).unwrap();
    assert_eq!(
        read_back(&normal, &dest).await.count().await.unwrap(),
        air_rows
    );

    // The next write to the destination finishes the commit first, then appends.
    let appended = air
        .write()
        .mode("append")
        .partition_by(["l_shipmode"])
        .parquet(&url)
        .await
        .unwrap();
    assert_eq!(appended, air_rows);
    assert_eq!(
        read_back(&normal, &dest).await.count().await.unwrap(),
        total + air_rows
    );
    assert!(!dest.join("_temporary").exists(), "{:?}", files(&dest));
}

async fn list(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let mut names: Vec<String> = store
        .list(Some(&StorePath::from(prefix)))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_writes_to_s3_read_back_overwrite_and_append() {
    let moto = Moto::start(&["lake"]);
    let store = moto.store("lake");
    let keys = moto.session_keys("lake");
    let keys: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let session = session(&keys).await;
    let source = lineitem(&session).await;
    let total = source.count().await.unwrap();
    let url = "s3://lake/warehouse/lineitem/";
    assert_eq!(
        source
            .write()
            .partition_by(["l_shipmode"])
            .parquet(url)
            .await
            .unwrap(),
        total
    );
    let objects = list(&store, "warehouse/lineitem").await;
    assert!(
        objects.contains(&"warehouse/lineitem/_SUCCESS".to_string()),
        "{objects:?}"
    );
    assert!(
        !objects.iter().any(|o| o.contains("_temporary")),
        "{objects:?}"
    );
    let back = session
        .read()
        .parquet(url)
        .await
        .unwrap()
        .select(["l_orderkey", "l_linenumber", "l_quantity", "l_shipmode"])
        .unwrap();
    assert_eq!(rows(&back).await, rows(&source).await);
    let truck = back
        .filter(col("l_shipmode").eq(lit("TRUCK")))
        .unwrap()
        .count()
        .await
        .unwrap();
    let truck_expected = source
        .filter(col("l_shipmode").eq(lit("TRUCK")))
        .unwrap()
        .count()
        .await
        .unwrap();
    assert_eq!(truck, truck_expected);

    source
        .write()
        .mode("append")
        .partition_by(["l_shipmode"])
        .parquet(url)
        .await
        .unwrap();
    assert_eq!(back.count().await.unwrap(), 2 * total);
    source
        .limit(100)
        .unwrap()
        .write()
        .mode("overwrite")
        .partition_by(["l_shipmode"])
        .parquet(url)
        .await
        .unwrap();
    assert_eq!(back.count().await.unwrap(), 100);
    // SQL over the same data: COPY to S3 and an external table on it.
    session
        .sql("CREATE EXTERNAL TABLE lake_lineitem STORED AS PARQUET LOCATION 's3://lake/warehouse/lineitem/'")
        .await
        .unwrap();
    session
        .sql("COPY (SELECT * FROM lake_lineitem WHERE l_quantity > 10) TO 's3://lake/warehouse/big/' STORED AS PARQUET")
        .await
        .unwrap();
    let big = session
        .read()
        .parquet("s3://lake/warehouse/big/")
        .await
        .unwrap()
        .count()
        .await
        .unwrap();
    let expected = back
        .filter(col("l_quantity").gt(lit(10)))
        .unwrap()
        .count()
        .await
        .unwrap();
    assert_eq!(big, expected);
}
