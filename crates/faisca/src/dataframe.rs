//! DataFrames (the full Spark-style API arrives with its own issue; this is the core).

use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use faisca_common::{Error, Result};

use crate::Session;
use crate::client::{BatchStream, StatementResult, collect};

/// A query of a session. Its rows are computed by the cluster when asked for.
pub struct DataFrame {
    session: Session,
    sql: String,
    schema: SchemaRef,
    /// Rows of a command that already ran when the DataFrame was made.
    ran: Option<Vec<RecordBatch>>,
}

impl std::fmt::Debug for DataFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataFrame")
            .field("sql", &self.sql)
            .field("schema", &self.schema)
            .finish()
    }
}

impl DataFrame {
    pub(crate) async fn new(
        session: Session,
        sql: String,
        analyzed: StatementResult,
    ) -> Result<Self> {
        let schema = analyzed.schema.clone();
        // A command already ran on the driver; keep its rows so that collecting does not run it again.
        let ran = if analyzed.planned_only {
            None
        } else {
            Some(collect(analyzed.batches).await?)
        };
        Ok(DataFrame {
            session,
            sql,
            schema,
            ran,
        })
    }

    /// The result schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The SQL text.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Run the query; stream its rows.
    pub async fn execute_stream(&self) -> Result<BatchStream> {
        if let Some(rows) = &self.ran {
            return Ok(Box::pin(futures::stream::iter(
                rows.clone().into_iter().map(Ok),
            )));
        }
        Ok(self.session.execute_sql(&self.sql).await?.batches)
    }

    /// Run the query; collect its rows.
    pub async fn collect(&self) -> Result<Vec<RecordBatch>> {
        if let Some(rows) = &self.ran {
            return Ok(rows.clone());
        }
        collect(self.execute_stream().await?).await
    }

    /// Print up to `20` rows as a table.
    pub async fn show(&self) -> Result<()> {
        self.show_n(20).await
    }

    /// Print up to `n` rows as a table.
    pub async fn show_n(&self, n: usize) -> Result<()> {
        let batches = self.collect().await?;
        let mut left = n;
        let mut shown = Vec::new();
        for b in batches {
            if left == 0 {
                break;
            }
            let take = left.min(b.num_rows());
            shown.push(b.slice(0, take));
            left -= take;
        }
        println!("{}", pretty_format_batches(&shown)?);
        Ok(())
    }

    /// The distributed plan: stages with their task counts, and each stage's operators.
    pub async fn explain(&self) -> Result<String> {
        self.session.explain_sql(&self.sql).await
    }
}

/// The `plan` column of EXPLAIN rows, joined, with `plan_type` headers.
pub(crate) fn explain_text(batches: &[RecordBatch]) -> Result<String> {
    let mut out = String::new();
    for b in batches {
        let (Some(types), Some(plans)) = (
            b.column_by_name("plan_type")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>()),
            b.column_by_name("plan")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>()),
        ) else {
            return Err(Error::internal(
                "EXPLAIN returned rows without plan_type and plan columns",
            ));
        };
        for i in 0..b.num_rows() {
            if types.is_null(i) || plans.is_null(i) {
                continue;
            }
            out.push_str(&format!(
                "== {} ==\n{}\n",
                types.value(i),
                plans.value(i).trim_end()
            ));
        }
    }
    Ok(out)
}
