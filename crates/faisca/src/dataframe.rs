//! DataFrames with Spark's vocabulary.
//!
//! A [`DataFrame`] is a DataFusion logical plan over sources the driver resolved (see
//! [`crate::Session::read`], [`crate::Session::table`], [`crate::Session::sql`]). Transformations
//! build a new plan here, in the client, without touching data; actions (`collect`, `show`,
//! `count`, `execute_stream`, `explain`) send the plan to the driver, which plans it into stages
//! and runs it on the executors. Commands (DDL, `SET`) given to `Session::sql` run at once, as in
//! Spark; their DataFrame holds the rows they returned.

use std::sync::Arc;

use crate::logical_codec::encode_logical_plan;
use datafusion::arrow::array::{Array, Int64Array, StringArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::common::{Column, JoinType};
use datafusion::dataframe::DataFrame as DfDataFrame;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, Partitioning, SortExpr};
use datafusion::prelude::coalesce as coalesce_expr;
use faisca_common::{Error, Result};
use faisca_proto::ExecuteMode;

use crate::Session;
use crate::client::{BatchStream, collect};
use crate::columns::{IntoColumns, IntoCondition, IntoSorts};
use crate::grouped::GroupedData;

/// A distributed query of a session. Cheap to clone; transformations return new DataFrames.
#[derive(Clone)]
pub struct DataFrame {
    session: Session,
    plan: LogicalPlan,
    /// Rows of a command that already ran when the DataFrame was made.
    ran: Option<Arc<Vec<RecordBatch>>>,
}

impl std::fmt::Debug for DataFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataFrame")
            .field("plan", &self.plan.display_indent().to_string())
            .finish()
    }
}

/// How two DataFrames are joined: Spark's names (`inner`, `left`/`left_outer`, `right`,
/// `full`/`outer`/`full_outer`, `semi`/`left_semi`, `anti`/`left_anti`, `cross`).
fn join_type(how: &str) -> Result<Option<JoinType>> {
    Ok(Some(
        match how.to_ascii_lowercase().replace('_', "").as_str() {
            "inner" => JoinType::Inner,
            "left" | "leftouter" => JoinType::Left,
            "right" | "rightouter" => JoinType::Right,
            "full" | "outer" | "fullouter" => JoinType::Full,
            "semi" | "leftsemi" => JoinType::LeftSemi,
            "anti" | "leftanti" => JoinType::LeftAnti,
            "cross" => return Ok(None),
            _ => {
                return Err(Error::user(format!(
                    "unknown join type '{how}': expected inner, left, right, full, semi, anti or cross"
                )));
            }
        },
    ))
}

impl DataFrame {
    pub(crate) fn from_plan(session: Session, plan: LogicalPlan) -> Self {
        DataFrame {
            session,
            plan,
            ran: None,
        }
    }

    pub(crate) fn from_command(
        session: Session,
        schema: SchemaRef,
        rows: Vec<RecordBatch>,
    ) -> Result<Self> {
        let dfschema = datafusion::common::DFSchema::try_from(schema.as_ref().clone())?;
        let plan = LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation {
            produce_one_row: false,
            schema: Arc::new(dfschema),
        });
        Ok(DataFrame {
            session,
            plan,
            ran: Some(Arc::new(rows)),
        })
    }

    /// The DataFusion logical plan (the escape hatch: build on it with DataFusion's API and come
    /// back with [`Session::data_frame`]).
    pub fn logical_plan(&self) -> &LogicalPlan {
        &self.plan
    }

    /// The session this DataFrame belongs to.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The result schema.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(self.plan.schema().as_arrow().clone())
    }

    /// Column names, in order.
    pub fn columns(&self) -> Vec<String> {
        self.plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    fn df(&self) -> DfDataFrame {
        DfDataFrame::new(self.session.planner_state(), self.plan.clone())
    }

    fn derive(&self, df: datafusion::error::Result<DfDataFrame>) -> Result<DataFrame> {
        Ok(DataFrame::from_plan(
            self.session.clone(),
            df?.into_unoptimized_plan(),
        ))
    }

    fn derive_plan(&self, plan: datafusion::error::Result<LogicalPlan>) -> Result<DataFrame> {
        Ok(DataFrame::from_plan(self.session.clone(), plan?))
    }

    // ---- transformations ----

    /// Columns or expressions: `select(["a", "b"])`, `select(vec![col("a"), col("b") + lit(1)])`.
    pub fn select(&self, columns: impl IntoColumns) -> Result<DataFrame> {
        let exprs = columns.into_exprs()?;
        self.derive(self.df().select(exprs))
    }

    /// SQL expressions: `select_expr(&["a", "b * 2 AS double_b", "upper(c)"])`.
    pub fn select_expr(&self, exprs: &[&str]) -> Result<DataFrame> {
        let df = self.df();
        let parsed = exprs
            .iter()
            .map(|text| crate::columns::parse_aliased(&df, text))
            .collect::<Result<Vec<_>>>()?;
        self.derive(df.select(parsed))
    }

    /// Rows for which `condition` holds: an expression or SQL text (`"a > 1 AND b IS NOT NULL"`).
    pub fn filter(&self, condition: impl IntoCondition) -> Result<DataFrame> {
        let df = self.df();
        let condition = condition.into_condition(&df)?;
        self.derive(df.filter(condition))
    }

    /// [`DataFrame::filter`] (Spark's `where`; `where` is a Rust keyword).
    pub fn where_(&self, condition: impl IntoCondition) -> Result<DataFrame> {
        self.filter(condition)
    }

    /// Add or replace column `name`.
    pub fn with_column(&self, name: &str, expr: Expr) -> Result<DataFrame> {
        self.derive(self.df().with_column(name, expr))
    }

    /// Rename column `existing` to `new` (no-op when there is no such column, as in Spark).
    pub fn with_column_renamed(&self, existing: &str, new: &str) -> Result<DataFrame> {
        self.derive(self.df().with_column_renamed(existing, new))
    }

    /// Drop the named columns (names that do not exist are ignored, as in Spark).
    pub fn drop(&self, columns: &[&str]) -> Result<DataFrame> {
        let present: Vec<&str> = columns
            .iter()
            .copied()
            .filter(|c| self.plan.schema().has_column_with_unqualified_name(c))
            .collect();
        self.derive(self.df().drop_columns(&present))
    }

    /// Give the DataFrame a name to qualify its columns with (`a.x` after `alias("a")`), e.g. to
    /// join a DataFrame with itself.
    pub fn alias(&self, name: &str) -> Result<DataFrame> {
        self.derive(self.df().alias(name))
    }

    /// Group rows for aggregation: `group_by(["k"])?.agg(vec![sum(col("v"))])`. A hopping
    /// [`crate::functions::window`] among the keys puts each row in every window it falls in.
    pub fn group_by(&self, columns: impl IntoColumns) -> Result<GroupedData> {
        let mut df = self.clone();
        let mut keys = Vec::new();
        for key in columns.into_exprs()? {
            match hopping_window(&key) {
                Some((name, time, duration, slide)) => {
                    df = df.explode_hopping_window(&name, time, duration, slide)?;
                    keys.push(datafusion::prelude::col(name.as_str()));
                }
                None => keys.push(key),
            }
        }
        Ok(GroupedData::new(df, keys))
    }

    /// One row per (row, hopping window it falls in), with the window as struct column `name`.
    fn explode_hopping_window(
        &self,
        name: &str,
        time: Expr,
        duration: i64,
        slide: i64,
    ) -> Result<DataFrame> {
        use crate::functions::{interval, window_start, window_struct};
        const STARTS: &str = "__faisca_window_start";
        let windows = (duration + slide - 1) / slide;
        let last = window_start(time.clone(), slide);
        let first = last.clone() - interval((windows - 1) * slide);
        let series = self
            .session
            .planner_state()
            .scalar_functions()
            .get("generate_series")
            .cloned()
            .ok_or_else(|| Error::internal("generate_series is not available"))?;
        let starts = series.call(vec![first, last, interval(slide)]);
        let start = datafusion::prelude::col(STARTS);
        let df = self
            .df()
            .with_column(STARTS, starts)?
            .unnest_columns(&[STARTS])?
            .filter((start.clone() + interval(duration)).gt(time))?
            .with_column(name, window_struct(start, duration))?
            .drop_columns(&[STARTS])?;
        Ok(DataFrame::from_plan(
            self.session.clone(),
            df.into_unoptimized_plan(),
        ))
    }

    /// Aggregate over all rows (no grouping).
    pub fn agg(&self, aggregates: Vec<Expr>) -> Result<DataFrame> {
        self.derive(self.df().aggregate(vec![], aggregates))
    }

    /// Join with `other` on columns of the same name in both (`on`, Spark's `USING` semantics:
    /// each key appears once), with join type `how` (see [`join_type`] for the names).
    pub fn join(&self, other: &DataFrame, on: &[&str], how: &str) -> Result<DataFrame> {
        let Some(join_type) = join_type(how)? else {
            return self.cross_join(other);
        };
        for key in on {
            for (side, df) in [("left", self), ("right", other)] {
                if !df.plan.schema().has_column_with_unqualified_name(key) {
                    return Err(Error::user(format!(
                        "join key '{key}' is not a column of the {side} DataFrame: expected one of {}",
                        df.columns().join(", ")
                    )));
                }
            }
        }
        let left = self.plan.clone();
        let right = other.plan.clone();
        let joined = LogicalPlanBuilder::from(left.clone())
            .join_using(
                right.clone(),
                join_type,
                on.iter().map(|k| Column::from_name(*k)).collect::<Vec<_>>(),
            )
            .and_then(|b| b.build())
            .map_err(same_name_hint)?;
        // Each key once (from the side that has it, either for a full join), then the other
        // columns of the left, then those of the right.
        let left_col = |name: &str| column_of(&left, name);
        let right_col = |name: &str| column_of(&right, name);
        let mut projection = Vec::new();
        for key in on {
            let l = left_col(key)?;
            let key_expr = match join_type {
                JoinType::Right => right_col(key)?,
                JoinType::Full => coalesce_expr(vec![l, right_col(key)?]).alias(*key),
                _ => l,
            };
            projection.push(key_expr);
        }
        let rest = |plan: &LogicalPlan| -> Vec<Expr> {
            plan.schema()
                .iter()
                .filter(|(_, f)| !on.contains(&f.name().as_str()))
                .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
                .collect()
        };
        projection.extend(rest(&left));
        if !matches!(join_type, JoinType::LeftSemi | JoinType::LeftAnti) {
            projection.extend(rest(&right));
        }
        self.derive_plan(
            LogicalPlanBuilder::from(joined)
                .project(projection)
                .and_then(|b| b.build()),
        )
    }

    /// Join with `other` where `condition` holds (both sides' columns stay), with join type `how`.
    pub fn join_on(&self, other: &DataFrame, condition: Expr, how: &str) -> Result<DataFrame> {
        let Some(join_type) = join_type(how)? else {
            return self.cross_join(other)?.filter(condition);
        };
        self.derive(
            self.df()
                .join_on(other.df(), join_type, [condition])
                .map_err(|e| DataFusionError::External(Box::new(same_name_hint(e)))),
        )
    }

    /// Every row of this DataFrame with every row of `other`.
    pub fn cross_join(&self, other: &DataFrame) -> Result<DataFrame> {
        self.derive_plan(
            LogicalPlanBuilder::from(self.plan.clone())
                .cross_join(other.plan.clone())
                .and_then(|b| b.build()),
        )
    }

    /// Sort: `order_by(["a"])`, `order_by(vec![desc(col("b")), asc(col("a"))])`.
    pub fn order_by(&self, sorts: impl IntoSorts) -> Result<DataFrame> {
        let sorts: Vec<SortExpr> = sorts.into_sorts()?;
        self.derive(self.df().sort(sorts))
    }

    /// [`DataFrame::order_by`].
    pub fn sort(&self, sorts: impl IntoSorts) -> Result<DataFrame> {
        self.order_by(sorts)
    }

    /// The first `n` rows.
    pub fn limit(&self, n: usize) -> Result<DataFrame> {
        self.derive(self.df().limit(0, Some(n)))
    }

    /// Distinct rows.
    pub fn distinct(&self) -> Result<DataFrame> {
        self.derive(self.df().distinct())
    }

    /// One row per distinct value of `subset` (all columns when empty); which row is kept is
    /// unspecified, as in Spark.
    pub fn drop_duplicates(&self, subset: &[&str]) -> Result<DataFrame> {
        if subset.is_empty() {
            return self.distinct();
        }
        let on = subset
            .iter()
            .map(|c| column_of(&self.plan, c))
            .collect::<Result<Vec<_>>>()?;
        let all = self
            .plan
            .schema()
            .iter()
            .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
            .collect();
        self.derive(self.df().distinct_on(on, all, None))
    }

    /// Rows of both, matched by position (Spark's `union`: duplicates kept).
    pub fn union(&self, other: &DataFrame) -> Result<DataFrame> {
        self.derive(self.df().union(other.df()))
    }

    /// Rows of both, matched by column name (duplicates kept).
    pub fn union_by_name(&self, other: &DataFrame) -> Result<DataFrame> {
        self.derive(self.df().union_by_name(other.df()))
    }

    /// Redistribute rows into `n` partitions, by hash of `columns` (round-robin when empty).
    /// DataFusion plans exchanges itself (it keeps a hash exchange only where an operator needs
    /// one), so the request sets how many partitions — tasks — the query's shuffles have.
    pub fn repartition(&self, n: usize, columns: impl IntoColumns) -> Result<DataFrame> {
        if n == 0 {
            return Err(Error::user("repartition needs at least 1 partition"));
        }
        let exprs = columns.into_exprs()?;
        let partitioning = if exprs.is_empty() {
            Partitioning::RoundRobinBatch(n)
        } else {
            Partitioning::Hash(exprs, n)
        };
        self.derive(self.df().repartition(partitioning))
    }

    /// Fewer partitions: the query's shuffles have `n` partitions (see
    /// [`DataFrame::repartition`]).
    pub fn coalesce(&self, n: usize) -> Result<DataFrame> {
        self.repartition(n, Vec::<Expr>::new())
    }

    // ---- actions ----

    pub(crate) fn encoded(&self) -> Result<Vec<u8>> {
        encode_logical_plan(&self.plan)
    }

    /// Write the rows to files: `df.write().mode("overwrite").parquet(url)`.
    pub fn write(&self) -> crate::DataFrameWriter {
        crate::DataFrameWriter::new(self.clone())
    }

    // ---- streaming ----

    /// Whether the DataFrame reads a streaming source (`session.read_stream()`): it runs only
    /// as a streaming query, through [`DataFrame::write_stream`].
    pub fn is_streaming(&self) -> bool {
        crate::logical_codec::is_streaming(&self.plan)
    }

    /// An event-time watermark on the timestamp column `column`, `delay` (`"10 seconds"`,
    /// `"1 minute"`, `"30s"`) behind the largest event time seen, as Spark's `withWatermark`:
    /// stateful operators above it drop rows older than the watermark, and append mode emits a
    /// window once the watermark passes its end. The watermark moves when a batch ends and
    /// applies from the next batch.
    pub fn with_watermark(&self, column: &str, delay: &str) -> Result<DataFrame> {
        let delay = crate::streaming::parse_delay(delay)?;
        let plan = faisca_engine::streaming_plan::EventTimeWatermark::try_new(
            self.plan.clone(),
            column,
            delay,
        )?;
        Ok(DataFrame::from_plan(self.session.clone(), plan))
    }

    /// Starts a streaming query of this DataFrame: `df.write_stream().format(..)…start()`.
    pub fn write_stream(&self) -> crate::streaming::DataStreamWriter {
        crate::streaming::DataStreamWriter::new(self.clone())
    }

    /// Run the query on the cluster; stream its rows. Dropping the stream cancels the job.
    pub async fn execute_stream(&self) -> Result<BatchStream> {
        if let Some(rows) = &self.ran {
            let rows = rows.as_ref().clone();
            return Ok(Box::pin(futures::stream::iter(rows.into_iter().map(Ok))));
        }
        Ok(self.run_on_cluster().await?.batches)
    }

    /// Send the plan to the driver to run.
    async fn run_on_cluster(&self) -> Result<crate::client::StatementResult> {
        self.session
            .client()
            .execute_plan(
                self.session.id(),
                self.encoded()?,
                ExecuteMode::Run,
                "",
                None,
            )
            .await
    }

    /// Run the query on the cluster; collect its rows.
    pub async fn collect(&self) -> Result<Vec<RecordBatch>> {
        collect(self.execute_stream().await?).await
    }

    /// [`DataFrame::collect`], telling `on_progress` how the job is doing: every
    /// `faisca.client.progressInterval` while it runs (its stages with their tasks done and
    /// running, its counters), and once more when it ended. A DataFrame that needs no job (rows
    /// already computed) reports nothing.
    ///
    /// ```no_run
    /// # async fn example(df: faisca::DataFrame) -> faisca::Result<()> {
    /// let rows = df
    ///     .collect_with_progress(|job| {
    ///         let done: u32 = job.stages.iter().map(|s| s.done).sum();
    ///         let tasks: u32 = job.stages.iter().map(|s| s.tasks).sum();
    ///         eprintln!("job {}: {done}/{tasks} tasks", job.job_id);
    ///     })
    ///     .await?;
    /// # let _ = rows; Ok(()) }
    /// ```
    pub async fn collect_with_progress(
        &self,
        mut on_progress: impl FnMut(&crate::jobs::JobInfo),
    ) -> Result<Vec<RecordBatch>> {
        use futures::StreamExt;
        if self.ran.is_some() {
            return self.collect().await;
        }
        let result = self.run_on_cluster().await?;
        let Some(job) = result.job_id.clone() else {
            return collect(result.batches).await;
        };
        let client = self.session.client();
        let mut rows = result.batches;
        let mut batches = Vec::new();
        let mut ticker = tokio::time::interval(self.session.config().progress_interval());
        let outcome = loop {
            tokio::select! {
                batch = rows.next() => match batch {
                    Some(Ok(b)) => batches.push(b),
                    Some(Err(e)) => break Err(e),
                    None => break Ok(()),
                },
                _ = ticker.tick() => {
                    if let Ok(info) = client.job(&job).await {
                        on_progress(&info);
                    }
                }
            }
        };
        drop(rows);
        if let Ok(info) = client.job(&job).await {
            on_progress(&info);
        }
        outcome.map(|()| batches)
    }

    /// Number of rows (computed on the cluster).
    pub async fn count(&self) -> Result<u64> {
        let counted = self.derive(self.df().aggregate(
            vec![],
            vec![datafusion::functions_aggregate::expr_fn::count(
                    datafusion::prelude::lit(1),
                )
                .alias("count")],
        ))?;
        let batches = counted.collect().await?;
        let value = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .map(|a| a.value(0))
            })
            .ok_or_else(|| Error::internal("count returned no row"))?;
        Ok(value as u64)
    }

    /// Print up to 20 rows as a table.
    pub async fn show(&self) -> Result<()> {
        self.show_n(20).await
    }

    /// Print up to `n` rows as a table (only `n` rows are computed and sent).
    pub async fn show_n(&self, n: usize) -> Result<()> {
        let batches = if self.ran.is_some() {
            self.collect().await?
        } else {
            self.limit(n)?.collect().await?
        };
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

    /// The optimized logical plan and the distributed plan: stages with their task counts, and
    /// each stage's operators.
    pub async fn explain(&self) -> Result<String> {
        let result = self
            .session
            .client()
            .execute_plan(
                self.session.id(),
                self.encoded()?,
                ExecuteMode::Explain,
                "",
                None,
            )
            .await?;
        explain_text(&collect(result.batches).await?)
    }

    /// Register this DataFrame as the temporary view `name` of the session (replacing one of
    /// that name), for SQL: `session.sql("SELECT … FROM name")`.
    pub async fn create_or_replace_temp_view(&self, name: &str) -> Result<()> {
        self.session
            .client()
            .create_view(self.session.id(), name, self.encoded()?, true)
            .await
    }

    /// Register this DataFrame as the temporary view `name`; an error if the name is taken.
    pub async fn create_temp_view(&self, name: &str) -> Result<()> {
        self.session
            .client()
            .create_view(self.session.id(), name, self.encoded()?, false)
            .await
    }
}

/// `(name, time, duration, slide)` of a hopping `window(..)` key.
fn hopping_window(key: &Expr) -> Option<(String, Expr, i64, i64)> {
    let (name, inner) = match key {
        Expr::Alias(a) => (a.name.clone(), a.expr.as_ref()),
        other => ("window".to_string(), other),
    };
    let Expr::ScalarFunction(call) = inner else {
        return None;
    };
    if call.func.name() != faisca_engine::udf::HOPPING_WINDOW {
        return None;
    }
    let nanos = |e: &Expr| match e {
        Expr::Literal(datafusion::common::ScalarValue::Int64(Some(n)), _) => Some(*n),
        _ => None,
    };
    match call.args.as_slice() {
        [time, d, s] => Some((name, time.clone(), nanos(d)?, nanos(s)?)),
        _ => None,
    }
}

/// A join of two DataFrames with the same name (a DataFrame with itself) needs an alias.
fn same_name_hint(e: DataFusionError) -> Error {
    let duplicate = matches!(
        e.find_root(),
        DataFusionError::SchemaError(s, _)
            if matches!(**s, datafusion::common::SchemaError::DuplicateQualifiedField { .. })
    );
    let e = Error::from(e);
    if duplicate {
        e.context("both sides of the join have the same name: give one side another with .alias(\"name\")")
    } else {
        e
    }
}

/// The column `name` of `plan`, qualified as the plan qualifies it.
fn column_of(plan: &LogicalPlan, name: &str) -> Result<Expr> {
    let (qualifier, field) = plan
        .schema()
        .qualified_field_with_unqualified_name(name)
        .map_err(|_| {
            Error::user(format!(
                "no column '{name}': expected one of {}",
                plan.schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    Ok(Expr::Column(Column::new(qualifier.cloned(), field.name())))
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
