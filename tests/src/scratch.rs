#[tokio::test]
async fn scratch() {
    use datafusion::prelude::*;
    for tp in [1, 2, 4] {
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(tp));
        ctx.sql("CREATE TABLE f (g INT, x DOUBLE) AS VALUES (1, CAST('NaN' AS DOUBLE)), (1, CAST('inf' AS DOUBLE)), (1, 1.5), (2, CAST('-inf' AS DOUBLE)), (2, CAST('NaN' AS DOUBLE)), (2, 1e10)").await.unwrap().collect().await.unwrap();
        for q in ["SELECT g, max(x), min(x) FROM f GROUP BY g ORDER BY g", "SELECT max(x), min(x) FROM f WHERE g = 2", "SELECT x, CAST(x AS VARCHAR) FROM f"] {
            let b = ctx.sql(q).await.unwrap().collect().await.unwrap();
            println!("tp={tp} {q}\n{}", datafusion::arrow::util::pretty::pretty_format_batches(&b).unwrap());
        }
    }
}
