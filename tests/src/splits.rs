//! Scan tasks sized like Spark's, on real Parquet files.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::Int64Array;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use faisca::Session;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

fn write_file(path: &Path, rows: i64, row_group_rows: usize) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("v", DataType::Int64, false),
        Field::new("w", DataType::Int64, false),
    ]));
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_dictionary_enabled(false)
        .build();
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        schema.clone(),
        Some(props),
    )
    .unwrap();
    let mut start = 0;
    while start < rows {
        let end = (start + 8192).min(rows);
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(start..end)),
                Arc::new(Int64Array::from_iter_values(
                    (start..end).map(|x| x * 7919 % 1000),
                )),
            ],
        )
        .unwrap();
        writer.write(&batch).unwrap();
        start = end;
    }
    writer.close().unwrap();
}

async fn scan_tasks(session: &Session, sql: &str) -> (u32, Vec<RecordBatch>) {
    let result = session.execute_sql(sql).await.unwrap();
    let stages = result.stages.clone().unwrap();
    let batches = faisca::client::collect(result.batches).await.unwrap();
    (stages[0].tasks, batches)
}

fn single_i64(batches: &[RecordBatch]) -> Vec<i64> {
    let b = &batches[0];
    (0..b.num_columns())
        .map(|c| {
            b.column(c)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(0)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_is_split_at_row_groups_and_every_row_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    // 400k rows of two i64 columns in row groups of 20k rows: ~6.4 MB in 20 row groups.
    write_file(&dir.path().join("big.parquet"), 400_000, 20_000);
    let session = Session::builder()
        .master("local[2]")
        .config("faisca.files.maxPartitionBytes", "2m")
        .build()
        .await
        .unwrap();
    session
        .register_parquet("big", &dir.path().join("big.parquet").display().to_string())
        .await
        .unwrap();
    let (tasks, batches) = scan_tasks(
        &session,
        "SELECT count(*) AS n, sum(v) AS s, count(DISTINCT v) AS d FROM big WHERE w >= 0",
    )
    .await;
    let size = std::fs::metadata(dir.path().join("big.parquet"))
        .unwrap()
        .len();
    let expected_tasks = size.div_ceil(2 << 20) as u32;
    assert!(
        tasks >= expected_tasks.max(3),
        "{tasks} scan tasks for a {size}-byte file at 2 MiB per task"
    );
    let plan = session
        .explain_sql(
            "SELECT count(*) AS n, sum(v) AS s, count(DISTINCT v) AS d FROM big WHERE w >= 0",
        )
        .await
        .unwrap();
    assert_eq!(
        single_i64(&batches),
        vec![400_000, (0..400_000i64).sum(), 400_000],
        "{plan}"
    );
    session.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_small_files_pack_into_few_tasks() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..100 {
        write_file(&dir.path().join(format!("part-{i:03}.parquet")), 100, 100);
    }
    let session = Session::builder().master("local[2]").build().await.unwrap();
    session
        .register_parquet("small", &format!("{}/", dir.path().display()))
        .await
        .unwrap();
    let (tasks, batches) = scan_tasks(
        &session,
        "SELECT count(*) AS n, sum(v) AS s FROM small WHERE w >= 0",
    )
    .await;
    // 100 × (≈1 KB + 4 MiB open cost) / 2 cores ≈ 200 MiB per core → 128 MiB splits → 32 files a task.
    assert_eq!(tasks, 4);
    assert_eq!(
        single_i64(&batches),
        vec![10_000, 100 * (0..100i64).sum::<i64>()]
    );
    session.stop().await;
}
