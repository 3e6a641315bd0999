//! Object stores: Parquet on a real S3-compatible server (moto, installed by the test command),
//! read through the driver and executors, with credentials from session keys or from each
//! process's `AWS_*` environment; Hive-style partitions discovered and pruned.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use faisca::Session;
use faisca::functions::*;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::cli::{Processes, faisca_sql, start_driver_from};
use crate::common::{faisca_bin, normalized_rows, tpch_dir};

/// A moto S3 server on a free port of 127.0.0.1, stopped when dropped.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_program() -> PathBuf {
    if let Some(p) = std::env::var_os("FAISCA_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
    let fallback = cache.join("faisca-ci/venv/bin/moto_server");
    assert!(
        fallback.exists(),
        "moto_server not found: run scripts/test.sh, which installs it (or set FAISCA_MOTO_SERVER)"
    );
    fallback
}

impl Moto {
    /// Start moto on a free port with extra environment `env`, and wait until it listens.
    fn spawn(env: &[(&str, &str)]) -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(moto_program())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Start moto and create `buckets`.
    pub fn start(buckets: &[&str]) -> Moto {
        let moto = Moto::spawn(&[]);
        let port: u16 = moto.endpoint.rsplit(':').next().unwrap().parse().unwrap();
        for bucket in buckets {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            write!(
                stream,
                "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            assert!(
                answer.starts_with("HTTP/1.1 200"),
                "creating bucket {bucket}: {answer}"
            );
        }
        moto
    }

    /// Start moto with IAM authentication and create `bucket`: requests must then be signed with
    /// the returned `(access key id, secret)` of a user allowed `s3:*`.
    pub fn start_with_auth(bucket: &str) -> (Moto, String, String) {
        // The four set-up requests below are the only unauthenticated ones.
        let moto = Moto::spawn(&[("INITIAL_NO_AUTH_ACTION_COUNT", "4")]);
        let script = r#"
import json, sys, boto3
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
boto3.client("s3", **kw).create_bucket(Bucket=sys.argv[2])
iam = boto3.client("iam", **kw)
iam.create_user(UserName="faisca")
policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
iam.put_user_policy(UserName="faisca", PolicyName="s3", PolicyDocument=json.dumps(policy))
key = iam.create_access_key(UserName="faisca")["AccessKey"]
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;
        let python = moto_program().parent().unwrap().join("python");
        let out = Command::new(python)
            .args(["-c", script, &moto.endpoint, bucket])
            .output()
            .expect("run the moto set-up script");
        assert!(
            out.status.success(),
            "moto set-up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut words = text.split_whitespace();
        let id = words.next().unwrap().to_string();
        let secret = words.next().unwrap().to_string();
        (moto, id, secret)
    }

    /// A client of bucket `bucket`.
    pub fn store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_bucket_name(bucket)
                .with_region("us-east-1")
                .with_access_key_id("test")
                .with_secret_access_key("test")
                .build()
                .unwrap(),
        )
    }

    /// Session keys that reach `bucket` on this server.
    pub fn session_keys(&self, bucket: &str) -> Vec<(String, String)> {
        [
            ("endpoint", self.endpoint.as_str()),
            ("region", "us-east-1"),
            ("access_key_id", "test"),
            ("secret_access_key", "test"),
        ]
        .iter()
        .map(|(k, v)| (format!("faisca.store.s3.{bucket}.{k}"), v.to_string()))
        .collect()
    }
}

/// Upload the local file `from` to `to` in `store`.
pub async fn upload(store: &Arc<dyn ObjectStore>, from: &std::path::Path, to: &str) {
    let bytes = std::fs::read(from).unwrap();
    store.put(&StorePath::from(to), bytes.into()).await.unwrap();
}

/// Parquet bytes of one batch.
fn parquet_bytes(batch: &RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
    out
}

/// `events/year=Y/month=M/part-0.parquet` for 2023–2024 × months 1–3, `id` and `kind` columns,
/// 100 rows per file.
async fn upload_events(store: &Arc<dyn ObjectStore>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("kind", DataType::Utf8, false),
    ]));
    for year in [2023, 2024] {
        for month in 1..=3 {
            let base = (year * 100 + month) * 1000;
            let ids: Vec<i64> = (0..100).map(|i| base + i).collect();
            let kinds: Vec<&str> = (0..100)
                .map(|i| if i % 4 == 0 { "buy" } else { "view" })
                .collect();
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(StringArray::from(kinds)),
                ],
            )
            .unwrap();
            store
                .put(
                    &StorePath::from(format!("events/year={year}/month={month}/part-0.parquet")),
                    parquet_bytes(&batch).into(),
                )
                .await
                .unwrap();
        }
    }
}

async fn s3_session(moto: &Moto) -> Session {
    let mut builder = Session::builder()
        .master("local[2]")
        .config("faisca.files.maxPartitionBytes", "256k");
    for (k, v) in moto.session_keys("lake") {
        builder = builder.config(k, v);
    }
    builder.build().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_on_s3_reads_like_local_files_and_prunes_hive_partitions() {
    let moto = Moto::start(&["lake"]);
    let store = moto.store("lake");
    for table in ["nation", "region"] {
        upload(
            &store,
            &tpch_dir().join(table).join("part-1.parquet"),
            &format!("tpch/{table}/part-1.parquet"),
        )
        .await;
    }
    upload_events(&store).await;
    let session = s3_session(&moto).await;

    // The same rows from S3 as from the local files.
    let from_s3 = session
        .read()
        .parquet("s3://lake/tpch/nation/")
        .await
        .unwrap();
    let local = session
        .read()
        .parquet(&format!("{}/", tpch_dir().join("nation").display()))
        .await
        .unwrap();
    assert_eq!(
        normalized_rows(&from_s3.collect().await.unwrap()),
        normalized_rows(&local.collect().await.unwrap())
    );
    session
        .sql("CREATE EXTERNAL TABLE region STORED AS PARQUET LOCATION 's3://lake/tpch/region/'")
        .await
        .unwrap();
    let joined = session
        .sql("SELECT r_name, count(*) AS n FROM region JOIN (SELECT * FROM nation_src) ON r_regionkey = n_regionkey GROUP BY r_name")
        .await;
    assert!(joined.is_err(), "nation_src is not a table yet");
    from_s3
        .create_or_replace_temp_view("nation_src")
        .await
        .unwrap();
    let rows = session
        .sql("SELECT r_name, count(*) AS n FROM region JOIN nation_src ON r_regionkey = n_regionkey GROUP BY r_name")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(normalized_rows(&rows).len(), 5);

    // Hive partitions: year and month are columns; a filter on them reads only matching files.
    let events = session.read().parquet("s3://lake/events/").await.unwrap();
    assert_eq!(events.columns(), vec!["id", "kind", "year", "month"]);
    assert_eq!(events.count().await.unwrap(), 600);
    let feb = events
        .filter(col("year").eq(lit("2024")).and(col("month").eq(lit("2"))))
        .unwrap();
    assert_eq!(feb.count().await.unwrap(), 100);
    let plan = feb.explain().await.unwrap();
    assert!(plan.contains("year=2024/month=2"), "{plan}");
    assert!(
        !plan.contains("month=1/") && !plan.contains("year=2023"),
        "only matching partitions are read:\n{plan}"
    );
    let buys = feb
        .group_by(["kind"])
        .unwrap()
        .count()
        .unwrap()
        .order_by(["kind"])
        .unwrap();
    assert_eq!(
        normalized_rows(&buys.collect().await.unwrap()),
        vec!["buy|25", "view|75"]
    );

    // Store keys SET in a running session apply to the driver and the executors.
    let later = Session::builder().master("local[1]").build().await.unwrap();
    for (k, v) in moto.session_keys("lake") {
        later.sql(&format!("SET {k} = '{v}'")).await.unwrap();
    }
    let nation = later
        .read()
        .parquet("s3://lake/tpch/nation/")
        .await
        .unwrap();
    assert_eq!(nation.count().await.unwrap(), 25);
    later.stop().await;

    // A missing bucket or path: the error names it.
    let err = session.read().parquet("s3://lake/nothing-here/").await;
    let err = match err {
        Err(e) => e.to_string(),
        Ok(df) => df.count().await.unwrap_err().to_string(),
    };
    assert!(err.contains("nothing-here"), "{err}");
    session.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_and_executor_processes_use_their_aws_environment() {
    let moto = Moto::start(&["envlake"]);
    let store = moto.store("envlake");
    upload(
        &store,
        &tpch_dir().join("nation").join("part-1.parquet"),
        "nation/part-1.parquet",
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let common = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    // The driver gets the endpoint as AWS_ENDPOINT_URL, the executor as AWS_ENDPOINT.
    let (driver, address) = {
        let mut cmd = Command::new(faisca_bin());
        cmd.env("AWS_ENDPOINT_URL", &moto.endpoint).envs(common);
        start_driver_from(cmd, &[])
    };
    let executor = Command::new(faisca_bin())
        .args([
            "executor",
            "--driver",
            &address,
            "--cores",
            "2",
            "--memory",
            "1g",
            "--work-dir",
        ])
        .arg(work.path())
        .env("AWS_ENDPOINT", &moto.endpoint)
        .envs(common)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let procs = Processes(vec![driver, executor]);
    let (code, stdout, stderr) = faisca_sql(&[
        "--master",
        &address,
        "--format",
        "csv",
        "-e",
        "CREATE EXTERNAL TABLE nation STORED AS PARQUET LOCATION 's3://envlake/nation/';
         SELECT n_regionkey, count(*) AS n FROM nation GROUP BY n_regionkey ORDER BY n_regionkey",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "n_regionkey,n\n0,5\n1,5\n2,5\n3,5\n4,5\n");
    drop(procs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_a_clear_error_and_write_nothing() {
    let (moto, id, secret) = Moto::start_with_auth("secure");
    let keys = |id: &str, secret: &str| {
        [
            ("endpoint", moto.endpoint.clone()),
            ("region", "us-east-1".to_string()),
            ("access_key_id", id.to_string()),
            ("secret_access_key", secret.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("faisca.store.s3.secure.{k}"), v))
        .collect::<Vec<_>>()
    };
    let session_with = |keys: Vec<(String, String)>| async move {
        let mut builder = Session::builder().master("local[1]");
        for (k, v) in keys {
            builder = builder.config(k, v);
        }
        builder.build().await.unwrap()
    };
    let good = session_with(keys(&id, &secret)).await;
    let nation = good
        .read()
        .parquet(&format!("{}/", tpch_dir().join("nation").display()))
        .await
        .unwrap();
    assert_eq!(
        nation.write().parquet("s3://secure/nation/").await.unwrap(),
        25
    );
    let read = good.read().parquet("s3://secure/nation/").await.unwrap();
    assert_eq!(read.count().await.unwrap(), 25);

    let bad = session_with(keys(&id, "not-the-secret")).await;
    let e = bad
        .read()
        .parquet("s3://secure/nation/")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("s3://secure/nation/"), "names the location: {e}");
    assert!(
        e.contains("403") || e.contains("Forbidden") || e.contains("Signature"),
        "{e}"
    );
    let bad_nation = bad
        .read()
        .parquet(&format!("{}/", tpch_dir().join("nation").display()))
        .await
        .unwrap();
    let e = bad_nation
        .write()
        .mode("append")
        .parquet("s3://secure/nation/")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("s3://secure/nation/"),
        "names the destination: {e}"
    );
    // Nothing was written: still the 25 rows of the good write.
    assert_eq!(read.count().await.unwrap(), 25);
    good.stop().await;
    bad.stop().await;
}
