//! Bad input gives an error that names the thing and says what was expected; the CLI exits ≠ 0.

use faisca::Session;
use faisca_common::Fault;

use crate::cli::{Processes, faisca_sql, start_driver, start_executor};

async fn local() -> Session {
    Session::builder().master("local[1]").build().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sql_and_unknown_tables_are_user_errors() {
    let session = local().await;
    let e = session.sql("SELEC 1").await.unwrap_err();
    assert_eq!(e.fault(), Fault::User, "{e}");
    assert!(e.to_string().contains("SELEC"), "{e}");
    let e = session
        .sql("SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    assert_eq!(e.fault(), Fault::User);
    assert!(
        e.to_string().contains("no_such_table") && e.to_string().contains("not found"),
        "{e}"
    );
    // The session still works afterwards.
    let rows = session
        .sql("SELECT 1 AS x")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(rows[0].num_rows(), 1);
    session.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_corrupt_files_are_named() {
    let session = local().await;
    let missing = "/nonexistent-faisca-dir/t.parquet";
    let e = session.register_parquet("t", missing).await.unwrap_err();
    assert!(e.to_string().contains("nonexistent-faisca-dir"), "{e}");
    // A directory with a good file and a truncated one: the error names the bad file's URL,
    // whether the schema is inferred (footers read at CREATE) or given (footers read at planning).
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(crate::common::tpch_dir().join("nation/part-1.parquet")).unwrap();
    std::fs::write(dir.path().join("good.parquet"), &good).unwrap();
    std::fs::write(
        dir.path().join("truncated.parquet"),
        &good[..good.len() / 2],
    )
    .unwrap();
    let bad_url = format!("file://{}/truncated.parquet", dir.path().display());
    let e = session
        .sql(&format!(
            "CREATE EXTERNAL TABLE c STORED AS PARQUET LOCATION '{}/'",
            dir.path().display()
        ))
        .await
        .unwrap_err();
    assert!(e.to_string().contains(&bad_url), "{e}");
    assert!(!e.is_retryable(), "a corrupt file is not retried: {e}");
    let sql = format!(
        "CREATE EXTERNAL TABLE c2 (n_nationkey BIGINT, n_name VARCHAR, n_regionkey BIGINT, n_comment VARCHAR) \
         STORED AS PARQUET LOCATION '{}/'; SELECT count(*) FROM c2",
        dir.path().display()
    );
    let (code, _, stderr) = crate::cli::faisca_sql(&["--master", "local[1]", "-e", &sql]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&bad_url),
        "the CLI shows the file: {stderr}"
    );

    // A file whose footer is fine but whose pages are garbage fails in the task; the error
    // names the file too, and the job is not retried.
    let pages = tempfile::tempdir().unwrap();
    let mut bytes =
        std::fs::read(crate::common::tpch_dir().join("lineitem/part-1.parquet")).unwrap();
    let end = bytes.len() - 200_000;
    bytes[1000..end].fill(0xff);
    std::fs::write(pages.path().join("garbled.parquet"), &bytes).unwrap();
    session
        .sql(&format!(
            "CREATE EXTERNAL TABLE garbled STORED AS PARQUET LOCATION '{}/'",
            pages.path().display()
        ))
        .await
        .unwrap();
    let result = session
        .execute_sql("SELECT sum(l_quantity), max(l_comment) FROM garbled")
        .await
        .unwrap();
    let job = result.job_id.clone().unwrap();
    let e = faisca::client::collect(result.batches).await.unwrap_err();
    let garbled_url = format!("file://{}/garbled.parquet", pages.path().display());
    assert!(e.to_string().contains(&garbled_url), "{e}");
    let info = session.client().job(&job).await.unwrap();
    assert!(
        info.stages.iter().all(|s| s.attempts <= s.tasks),
        "not retried: {info:?}"
    );
    session.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_disagree_on_a_column_type_are_named() {
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use std::sync::Arc;
    let session = local().await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, batch: RecordBatch| {
        let file = std::fs::File::create(dir.path().join(name)).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    };
    let ints = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let strings = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
    write(
        "a.parquet",
        RecordBatch::try_new(ints, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap(),
    );
    write(
        "b.parquet",
        RecordBatch::try_new(strings, vec![Arc::new(StringArray::from(vec!["x"]))]).unwrap(),
    );
    let location = format!("{}/", dir.path().display());
    let by_sql = session
        .sql(&format!(
            "CREATE EXTERNAL TABLE mixed STORED AS PARQUET LOCATION '{location}'"
        ))
        .await
        .unwrap_err()
        .to_string();
    let by_reader = session
        .read()
        .parquet(&location)
        .await
        .unwrap_err()
        .to_string();
    for e in [by_sql, by_reader] {
        assert!(e.contains("'id'"), "{e}");
        assert!(e.contains("a.parquet") && e.contains("b.parquet"), "{e}");
        assert!(e.contains("Int64") && e.contains("Utf8"), "{e}");
    }
    session.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_name_the_key() {
    let e = Session::builder()
        .master("local[1]")
        .config("faisca.no.such.key", "1")
        .build()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("faisca.no.such.key"), "{e}");
    let e = Session::builder()
        .master("local[1]")
        .config("faisca.files.maxPartitionBytes", "lots")
        .build()
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("faisca.files.maxPartitionBytes")
            && e.to_string().contains("expected"),
        "{e}"
    );
    let e = Session::builder()
        .master("local[0]")
        .build()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("local[0]"), "{e}");
    // SET is validated too.
    let session = local().await;
    let e = session
        .sql("SET faisca.shuffle.partitions = many")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("faisca.shuffle.partitions"), "{e}");
    session
        .sql("SET faisca.shuffle.partitions = 3")
        .await
        .unwrap();
    session.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_over_the_message_limit_is_a_clear_error() {
    let session = Session::builder()
        .master("local[1]")
        .config("faisca.rpc.maxMessageSize", "16k")
        .build()
        .await
        .unwrap();
    let e = session
        .sql("SELECT 1")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("faisca.rpc.maxMessageSize"), "{e}");
    session.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_wider_than_its_limit_is_refused() {
    let session = Session::builder()
        .master("local[1]")
        .config("faisca.stage.maxTasks", "8")
        .config("faisca.shuffle.partitions", "16")
        .build()
        .await
        .unwrap();
    let query = "SELECT x % 5, count(*) FROM generate_series(1, 100) AS t(x) GROUP BY x % 5";
    let e = session
        .sql(query)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("faisca.stage.maxTasks (8)") && text.contains("16"),
        "{text}"
    );
    session
        .execute_sql("SET faisca.shuffle.partitions = 4")
        .await
        .unwrap();
    let rows = session.sql(query).await.unwrap().collect().await.unwrap();
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 5);
    session.stop().await;
}

#[test]
fn cli_errors_exit_non_zero_with_the_reason_on_stderr() {
    let (code, stdout, stderr) = faisca_sql(&["--master", "local[1]", "-e", "SELEC 1"]);
    assert_ne!(code, 0);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("error:") && stderr.contains("SELEC"),
        "{stderr}"
    );

    let (code, _, stderr) = faisca_sql(&["--master", "local[1]", "-e", "SELECT * FROM nowhere"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("nowhere"), "{stderr}");

    // Nothing listens on port 1.
    let (code, _, stderr) = faisca_sql(&["--master", "faisca://127.0.0.1:1", "-e", "SELECT 1"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("127.0.0.1:1") && stderr.contains("cannot connect"),
        "{stderr}"
    );

    let (code, _, stderr) = faisca_sql(&["--master", "ftp://x", "-e", "SELECT 1"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("ftp://x"), "{stderr}");

    let (code, _, stderr) =
        faisca_sql(&["--master", "local[1]", "--conf", "oops", "-e", "SELECT 1"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("oops") && stderr.contains("KEY=VALUE"),
        "{stderr}"
    );
}

/// `faisca.plan.maxDepth` on the driver: a SQL statement whose text may nest deeper is refused
/// before it is parsed, a plan that does nest deeper (`WITH` tables reading each other, a
/// DataFrame's chain of filters) once planned or decoded; a session's `SET` cannot lift it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_deeper_than_the_drivers_limit_are_refused() {
    use faisca::functions::{col, lit};
    let session = Session::builder()
        .master("local[1]")
        .config("faisca.plan.maxDepth", "200")
        .build()
        .await
        .unwrap();
    let chain = |n: usize| format!("SELECT {} AS x", vec!["1"; n].join(" + "));
    let rows = session
        .sql(&chain(100))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(crate::common::normalized_rows(&rows), vec!["100"]);
    let error = session.sql(&chain(300)).await.unwrap_err().to_string();
    assert!(
        error.contains("SQL statement 1 may nest") && error.contains("faisca.plan.maxDepth (200)"),
        "{error}"
    );
    session
        .sql("SET faisca.plan.maxDepth = '1000000'")
        .await
        .unwrap();
    let error = session.sql(&chain(300)).await.unwrap_err().to_string();
    assert!(error.contains("faisca.plan.maxDepth (200)"), "{error}");
    // Each WITH table is short; reading each other, they nest.
    let ctes: Vec<String> = (1..120)
        .map(|i| format!("a{i} AS (SELECT x + 1 AS x FROM a{})", i - 1))
        .collect();
    let sql = format!(
        "WITH a0 AS (SELECT 1 AS x), {} SELECT x FROM a119",
        ctes.join(", ")
    );
    let error = session.sql(&sql).await.unwrap_err().to_string();
    assert!(
        error.contains("the statement's plan nests") && error.contains("faisca.plan.maxDepth"),
        "{error}"
    );
    session.stop().await;

    // A DataFrame's plan is checked where the driver decodes it. (Protobuf refuses plans
    // nested past 100 messages, about 50 operations, before that: a lower limit shows it.)
    let session = Session::builder()
        .master("local[1]")
        .config("faisca.plan.maxDepth", "20")
        .build()
        .await
        .unwrap();
    let mut df = session.sql("SELECT 1 AS x").await.unwrap();
    for _ in 0..30 {
        df = df.filter(col("x").gt(lit(0))).unwrap();
    }
    let error = df.count().await.unwrap_err().to_string();
    assert!(
        error.contains("the DataFrame plan nests") && error.contains("faisca.plan.maxDepth (20)"),
        "{error}"
    );
    session.stop().await;
}

/// With the default limit, a statement as deep as it allows runs in the `faisca` binary, whose
/// threads have the stack such plans need (tokio's default 2 MiB ended the process at about
/// 2000 chained operators); one past the limit is refused with the setting's name.
#[test]
fn the_default_depth_limit_fits_the_binarys_stacks() {
    let dir = tempfile::tempdir().unwrap();
    let chain = |n: usize| format!("SELECT {} AS x", vec!["1"; n].join(" + "));
    let within = dir.path().join("within.sql");
    std::fs::write(&within, chain(2400)).unwrap();
    let (code, stdout, stderr) =
        faisca_sql(&["--master", "local[1]", "-f", within.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("2400"), "{stdout}");
    let over = dir.path().join("over.sql");
    std::fs::write(&over, chain(4000)).unwrap();
    let (code, _, stderr) = faisca_sql(&["--master", "local[1]", "-f", over.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(stderr.contains("faisca.plan.maxDepth (3000)"), "{stderr}");
}

#[test]
fn sql_waits_for_an_executor_then_gives_up_clearly() {
    let (driver, address) = start_driver();
    let _procs = Processes(vec![driver]);
    let (code, _, stderr) = faisca_sql(&[
        "--master",
        &address,
        "--conf",
        "faisca.client.executorWaitTimeout=300ms",
        "-e",
        "SELECT 1",
    ]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("no executor registered") && stderr.contains("executorWaitTimeout"),
        "{stderr}"
    );
}

#[test]
fn sql_runs_once_a_late_executor_registers() {
    let (driver, address) = start_driver();
    let mut procs = Processes(vec![driver]);
    let work = tempfile::tempdir().unwrap();
    let mut sql = std::process::Command::new(crate::common::faisca_bin())
        .args([
            "sql",
            "--master",
            &address,
            "--format",
            "csv",
            "-e",
            "SELECT 7 AS x",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The executor starts once the client says it waits for one.
    let mut stderr = String::new();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(sql.stderr.take().unwrap()));
    for line in lines.by_ref() {
        let line = line.unwrap();
        stderr.push_str(&line);
        stderr.push('\n');
        if line.contains("waiting up to") {
            break;
        }
    }
    assert!(stderr.contains("for an executor to register"), "{stderr}");
    std::thread::spawn(move || for _ in lines {});
    procs.0.push(start_executor(&address, 1, work.path()));
    let out = sql.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "x\n7\n");
}

#[test]
fn an_executor_without_a_driver_gives_up_clearly() {
    let work = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::common::faisca_bin())
        .args([
            "executor",
            "--driver",
            "faisca://127.0.0.1:1",
            "--cores",
            "1",
            "--conf",
            "faisca.executor.registrationTimeout=300ms",
            "--work-dir",
        ])
        .arg(work.path())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach the driver") && stderr.contains("registrationTimeout"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_speaking_another_protocol_version_is_refused() {
    use faisca_proto::driver_service_client::DriverServiceClient;
    use faisca_proto::{ExecutorMessage, RegisterExecutor, executor_message};
    let (driver, address) = start_driver();
    let _procs = Processes(vec![driver]);
    let url = faisca_proto::endpoint_url(&address).unwrap();
    let mut client = DriverServiceClient::connect(url).await.unwrap();
    let register = ExecutorMessage {
        message: Some(executor_message::Message::Register(RegisterExecutor {
            protocol_version: 999,
            executor_id: "old-one".into(),
            flight_address: "127.0.0.1:9".into(),
            cores: 1,
            memory_bytes: 1 << 30,
        })),
    };
    let status = client
        .executor_connect(futures::stream::iter(vec![register]))
        .await
        .unwrap_err();
    let message = status.message();
    assert!(
        message.contains("999")
            && message.contains(&format!("version {}", faisca_common::PROTOCOL_VERSION)),
        "{message}"
    );
    assert!(message.contains("old-one"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locations_outside_the_allowed_ones_are_refused_naming_the_rule() {
    let tpch = crate::common::tpch_dir();
    let out = tempfile::tempdir().unwrap();
    let allowed = format!("file://{}/,kafka://127.0.0.1:9", tpch.display());
    let session = Session::builder()
        .master("local[1]")
        .config("faisca.sql.allowedLocations", allowed.as_str())
        .build()
        .await
        .unwrap();
    let inside = format!(
        "CREATE EXTERNAL TABLE nation STORED AS PARQUET LOCATION '{}/nation/'",
        tpch.display()
    );
    session.execute_sql(&inside).await.unwrap();
    let outside = out.path().join("t.csv");
    std::fs::write(&outside, "a\n1\n").unwrap();
    // A session cannot lift the driver's rule.
    session
        .execute_sql("SET faisca.sql.allowedLocations = ''")
        .await
        .unwrap();
    let cases = [
        (
            format!(
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
                outside.display()
            ),
            "faisca.sql.allowedLocations",
        ),
        (
            "CREATE EXTERNAL TABLE m STORED AS CSV LOCATION 'http://169.254.169.254/latest/meta-data/'"
                .to_string(),
            "metadata",
        ),
        (
            format!(
                "COPY (SELECT 1 AS a) TO '{}/copy.csv' STORED AS CSV",
                out.path().display()
            ),
            "write destination",
        ),
        (
            "CREATE EXTERNAL TABLE k STORED AS KAFKA LOCATION 'topic' OPTIONS ('kafka.bootstrap.servers' 'evil.example:9092', 'subscribe' 'topic')"
                .to_string(),
            "kafka://evil.example:9092",
        ),
        (
            // A secret file is a local file the driver and executors read.
            "CREATE EXTERNAL TABLE k2 STORED AS KAFKA LOCATION 'topic' OPTIONS ('kafka.bootstrap.servers' '127.0.0.1:9', 'kafka.sasl.password.file' '/etc/hostname')"
                .to_string(),
            "Kafka secret file 'kafka.sasl.password.file' '/etc/hostname' is outside",
        ),
        (
            r#"SELECT from_avro(CAST(NULL AS BYTEA), '{"type":"record","name":"r","fields":[{"name":"id","type":"long"}]}', map('schemaRegistryAddress', 'http://registry.outside:8081'))"#
                .to_string(),
            "schemaRegistryAddress 'http://registry.outside:8081' is outside",
        ),
        (
            "SELECT to_avro(1, '\"long\"', map('schemaRegistryAddress', 'http://169.254.169.254', 'subject', 's'))"
                .to_string(),
            "metadata",
        ),
    ];
    for (sql, says) in cases {
        let error = match session.execute_sql(&sql).await {
            Ok(result) => faisca::client::collect(result.batches)
                .await
                .expect_err(&sql),
            Err(e) => e,
        }
        .to_string();
        assert!(error.contains(says), "{sql}: {error}");
    }
    assert!(!out.path().join("copy.csv").exists());
    session.stop().await;
}
