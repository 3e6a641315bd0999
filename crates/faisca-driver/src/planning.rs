//! SQL → what the driver does with it: a command run on the driver, or a distributed job.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::physical_optimizer::PhysicalOptimizerRule;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::logical_expr::{LogicalPlan, Statement};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use faisca_common::ids::SessionId;
use faisca_common::{Error, Result};
use faisca_connectors::parquet_layout::row_group_ranges;
use faisca_connectors::splits::{FileInput, max_split_bytes, plan_splits};
use faisca_engine::codec::encode_stage_plan;
use faisca_engine::codec::guard::check_round_trip;
use faisca_planner::kafka_scans::{ApplyKafkaTasks, kafka_sources};
use faisca_planner::scans::{ApplySplits, FileScan, file_scans};
use faisca_planner::stages::{StageGraph, StageOutput, cut_stages};
use futures::future::try_join_all;

use crate::scheduler::{PlannedJob, PlannedStage};
use crate::session::Session;
use faisca_connectors::kafka::run::KafkaRun;

/// What a statement turned into.
#[derive(Debug)]
pub enum Planned {
    /// Rows computed on the driver (DDL results, `EXPLAIN`, catalog queries).
    Inline {
        /// Their schema.
        schema: SchemaRef,
        /// The rows.
        batches: Vec<RecordBatch>,
    },
    /// A query that was only analyzed: its schema and logical plan.
    Analyzed {
        /// Result schema.
        schema: SchemaRef,
        /// The plan, for a DataFrame to build on.
        plan: LogicalPlan,
    },
    /// A `SET key = value` whose value the session must record.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// A distributed job to run.
    Job(PlannedJob),
}

/// What the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Run it.
    Run,
    /// Plan queries without running them; run commands.
    Analyze,
    /// Show the distributed plan.
    Explain,
}

/// Plan one SQL statement of `session`. `total_cores` is the cluster's size right now.
pub async fn plan_sql(
    session: &Session,
    session_id: &SessionId,
    sql: &str,
    mode: Mode,
    total_cores: usize,
) -> Result<Planned> {
    let state = session.ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    // Before anything parses it: a statement's tree is as deep as its operator chains.
    if let Some(tokenizing) = datafusion::sql::sqlparser::dialect::dialect_from_str(dialect) {
        faisca_common::depth::check_sql(sql, tokenizing.as_ref(), session.max_plan_depth)?;
    }
    let statement = state.sql_to_statement(sql, &dialect)?;
    let check = |plan: &LogicalPlan| {
        faisca_common::depth::check_plan(plan, "the statement's plan", session.max_plan_depth)
    };
    if let Some((request, source)) = crate::write::kafka::copy_to_kafka(&statement)? {
        let input = state.statement_to_plan(source).await?;
        check(&input)?;
        return plan_write(session, session_id, request, input, total_cores).await;
    }
    let plan = state.statement_to_plan(statement).await?;
    check(&plan)?;
    plan_statement(session, session_id, plan, mode, total_cores).await
}

/// Plan one statement (from SQL text or a DataFrame) of `session`.
pub async fn plan_statement(
    session: &Session,
    session_id: &SessionId,
    plan: LogicalPlan,
    mode: Mode,
    total_cores: usize,
) -> Result<Planned> {
    if mode == Mode::Explain {
        return explain(session, &plan, total_cores).await;
    }
    match &plan {
        LogicalPlan::Statement(Statement::SetVariable(set)) => {
            let key = set.variable.clone();
            let value = set.value.clone();
            if !key.to_ascii_lowercase().starts_with("faisca.") {
                // DataFusion validates and applies its own keys; tasks get them through the session config.
                session.ctx.execute_logical_plan(plan.clone()).await?;
            }
            Ok(Planned::Set { key, value })
        }
        LogicalPlan::Explain(e) => explain(session, &e.plan, total_cores).await,
        // Writes are commands: they run now in every mode (as `session.sql("INSERT …")` does in Spark).
        LogicalPlan::Copy(copy) => {
            let request = crate::write::copy_request(copy);
            plan_write(
                session,
                session_id,
                request,
                copy.input.as_ref().clone(),
                total_cores,
            )
            .await
        }
        LogicalPlan::Dml(dml) => {
            match crate::write::insert_request(dml)? {
                Some(request) => {
                    plan_write(
                        session,
                        session_id,
                        request,
                        dml.input.as_ref().clone(),
                        total_cores,
                    )
                    .await
                }
                // An in-memory table lives in this driver's catalog: DataFusion inserts into it here.
                None => {
                    let df = session.ctx.execute_logical_plan(plan.clone()).await?;
                    let schema = Arc::new(df.schema().as_arrow().clone());
                    let batches = df.collect().await?;
                    Ok(Planned::Inline { schema, batches })
                }
            }
        }
        LogicalPlan::Ddl(_) | LogicalPlan::Statement(_) | LogicalPlan::DescribeTable(_) => {
            let df = match session.ctx.execute_logical_plan(plan.clone()).await {
                Ok(df) => df,
                Err(e) => {
                    let e = crate::diagnose::name_bad_parquet_file(session, &plan, e.into()).await;
                    let e = match &plan {
                        LogicalPlan::Ddl(
                            datafusion::logical_expr::DdlStatement::CreateExternalTable(create),
                        ) => {
                            crate::diagnose::name_mismatched_files(session, &create.locations, e)
                                .await
                        }
                        _ => e,
                    };
                    return Err(e);
                }
            };
            let schema = Arc::new(df.schema().as_arrow().clone());
            let batches = df.collect().await?;
            Ok(Planned::Inline { schema, batches })
        }
        _ if mode == Mode::Analyze => Ok(Planned::Analyzed {
            schema: Arc::new(plan.schema().as_arrow().clone()),
            plan,
        }),
        _ => {
            let (physical, runs) = physical_plan(session, &plan, total_cores).await?;
            match build_job(session, session_id, physical.clone(), runs) {
                Ok(job) => {
                    record_kafka_starts(&job).await?;
                    Ok(Planned::Job(job))
                }
                // Catalog queries (information_schema, SHOW TABLES) read tables that live only in the
                // driver; they are small and run here.
                Err(e) if !reads_files(&physical)? && e.is_not_distributable() => {
                    let batches = datafusion::physical_plan::collect(
                        physical.clone(),
                        session.ctx.task_ctx(),
                    )
                    .await?;
                    Ok(Planned::Inline {
                        schema: physical.schema(),
                        batches,
                    })
                }
                Err(e) => Err(e),
            }
        }
    }
}

/// Plan a write of `input`: a job whose last stage writes files, or nothing (`ignore` mode and the
/// destination holds data).
pub async fn plan_write(
    session: &Session,
    session_id: &SessionId,
    request: crate::write::WriteRequest,
    input: LogicalPlan,
    total_cores: usize,
) -> Result<Planned> {
    match crate::write::plan_write(session, request, input).await? {
        crate::write::PlannedWrite::Skip => Ok(Planned::Inline {
            schema: crate::write::count_schema(),
            batches: vec![crate::write::count_batch(0)?],
        }),
        crate::write::PlannedWrite::Job { input, write } => {
            let (mut physical, runs) = physical_plan(session, &input, total_cores).await?;
            if write.single_file() && physical.output_partitioning().partition_count() > 1 {
                // One file: the last stage is one task.
                physical = Arc::new(CoalescePartitionsExec::new(physical));
            }
            let mut job = build_job(session, session_id, physical, runs)?;
            job.schema = crate::write::count_schema();
            job.write = Some(write);
            job.stop_before_source_commit = session.config.test_stop_before_source_commit();
            if let Some(last) = job.stages.last_mut() {
                last.output_description = "write".to_string();
            }
            record_kafka_starts(&job).await?;
            Ok(Planned::Job(job))
        }
    }
}

/// Before a job reading Kafka starts: record its runs' ranges in their checkpoints.
async fn record_kafka_starts(job: &PlannedJob) -> Result<()> {
    for run in &job.kafka {
        run.record_start().await?;
    }
    Ok(())
}

fn reads_files(plan: &Arc<dyn ExecutionPlan>) -> Result<bool> {
    Ok(!file_scans(plan)?.is_empty())
}

/// Shuffle partitions of a query: `faisca.shuffle.partitions`, or the cluster's cores.
pub fn shuffle_partitions(session: &Session, total_cores: usize) -> usize {
    session
        .config
        .shuffle_partitions()
        .unwrap_or(total_cores)
        .max(1)
}

/// The partition count a DataFrame's `repartition(n, …)` asked for (the largest, if several).
/// DataFusion re-plans exchanges to the session's target partitions and drops explicit ones, so
/// the request becomes the query's shuffle partitions.
fn requested_partitions(plan: &LogicalPlan) -> Result<Option<usize>> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Partitioning;
    let mut requested: Option<usize> = None;
    plan.apply(|node| {
        if let LogicalPlan::Repartition(r) = node {
            let n = match &r.partitioning_scheme {
                Partitioning::Hash(_, n) | Partitioning::RoundRobinBatch(n) => *n,
                _ => 0,
            };
            if n > 0 {
                requested = Some(requested.map_or(n, |r| r.max(n)));
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(requested)
}

/// DataFusion's physical plan with Faísca's task splits applied to its file scans and the planned
/// offset ranges to its Kafka scans (with those runs); a Parquet error names the file.
///
/// Planned twice: the first plan shows which files each scan reads and which Kafka sources it
/// reads; the second applies the splits and ranges before DataFusion's distribution rules run
/// (see `faisca_planner::scans::ApplySplits`, `faisca_planner::kafka_scans::ApplyKafkaTasks`).
pub async fn physical_plan(
    session: &Session,
    plan: &LogicalPlan,
    total_cores: usize,
) -> Result<(Arc<dyn ExecutionPlan>, Vec<Arc<KafkaRun>>)> {
    match split_physical_plan(session, plan, total_cores, None).await {
        Ok(physical) => Ok(physical),
        Err(e) => Err(crate::diagnose::name_bad_parquet_file(session, plan, e).await),
    }
}

/// What a streaming micro-batch's physical plan is given instead of planning it: its shuffle
/// (state) partitions and each Kafka source's tasks, by source key.
pub struct MicroBatchPlanning {
    /// The query's state partitions.
    pub partitions: usize,
    /// The batch's Kafka tasks.
    pub kafka_tasks: HashMap<String, Vec<Vec<faisca_connectors::kafka::OffsetRange>>>,
    /// Where each Kafka source's partitions ended when the batch was planned.
    pub kafka_known_ends: HashMap<String, Arc<faisca_connectors::kafka::KnownEnds>>,
}

/// The physical plan of a streaming micro-batch (see [`MicroBatchPlanning`]).
pub async fn micro_batch_physical_plan(
    session: &Session,
    plan: &LogicalPlan,
    total_cores: usize,
    batch: MicroBatchPlanning,
) -> Result<Arc<dyn ExecutionPlan>> {
    match split_physical_plan(session, plan, total_cores, Some(batch)).await {
        Ok((physical, _)) => Ok(physical),
        Err(e) => Err(crate::diagnose::name_bad_parquet_file(session, plan, e).await),
    }
}

/// The configuration a job's tasks run with: the session's, with the driver's
/// `faisca.sql.allowedLocations` in place of whatever the session set (executors check their
/// `http(s)` store requests against it).
fn task_config(session: &Session) -> Vec<faisca_proto::ConfigEntry> {
    let rule = faisca_common::config::security::SQL_ALLOWED_LOCATIONS.name;
    let mut entries = faisca_proto::config_entries(&session.config);
    entries.retain(|e| e.key != rule);
    entries.push(faisca_proto::ConfigEntry {
        key: rule.to_string(),
        value: session.allowed.to_config_value(),
    });
    entries
}

/// Refuse the plan when a schema registry its `from_avro`/`to_avro` calls contact is outside the
/// driver's `faisca.sql.allowedLocations`, or resolves to a metadata address.
async fn check_registries(session: &Session, plan: &LogicalPlan) -> Result<()> {
    let addresses = faisca_engine::functions::schema_registry::registry_addresses(plan)?;
    if addresses.is_empty() {
        return Ok(());
    }
    let allowed = session.allowed.clone();
    tokio::task::spawn_blocking(move || {
        addresses
            .iter()
            .try_for_each(|address| allowed.check_url(address, "schemaRegistryAddress"))
    })
    .await
    .map_err(|e| Error::internal(format!("the registry address check: {e}")))?
}

async fn split_physical_plan(
    session: &Session,
    plan: &LogicalPlan,
    total_cores: usize,
    micro_batch: Option<MicroBatchPlanning>,
) -> Result<(Arc<dyn ExecutionPlan>, Vec<Arc<KafkaRun>>)> {
    check_registries(session, plan).await?;
    let mut state = session.ctx.state();
    state.config_mut().options_mut().execution.target_partitions = match &micro_batch {
        Some(batch) => batch.partitions,
        None => {
            requested_partitions(plan)?.unwrap_or_else(|| shuffle_partitions(session, total_cores))
        }
    };
    let first = state.create_physical_plan(plan).await?;
    let scans = file_scans(&first)?;
    let kafka = kafka_sources(&first)?;
    if scans.is_empty() && kafka.is_empty() {
        return Ok((first, Vec::new()));
    }
    let mut rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> = Vec::new();
    if !scans.is_empty() {
        let parallelism = total_cores.max(1);
        let mut splits = HashMap::with_capacity(scans.len());
        for scan in &scans {
            splits.insert(
                scan.key(),
                scan_splits(session, &state, scan, parallelism).await?,
            );
        }
        rules.push(Arc::new(ApplySplits::new(splits)));
    }
    let runs = if kafka.is_empty() {
        Vec::new()
    } else if let Some(batch) = micro_batch {
        rules.push(Arc::new(
            ApplyKafkaTasks::new(batch.kafka_tasks).with_known_ends(batch.kafka_known_ends),
        ));
        Vec::new()
    } else {
        let runs = faisca_connectors::kafka::run::plan_runs(
            state.runtime_env(),
            kafka,
            session.config.kafka_request_timeout(),
            &session.allowed,
        )
        .await?;
        let max_records = session.config.kafka_max_records_per_task();
        let tasks = runs
            .iter()
            .map(|run| (run.options.key.clone(), run.tasks(max_records)))
            .collect();
        rules.push(Arc::new(ApplyKafkaTasks::new(tasks)));
        runs
    };
    rules.extend(state.physical_optimizers().iter().cloned());
    let state = SessionStateBuilder::new_from_existing(state)
        .with_physical_optimizer_rules(rules)
        .build();
    Ok((state.create_physical_plan(plan).await?, runs))
}

async fn scan_splits(
    session: &Session,
    state: &datafusion::execution::SessionState,
    scan: &FileScan,
    parallelism: usize,
) -> Result<Vec<Vec<faisca_connectors::splits::FilePiece>>> {
    let max_partition = session.config.max_partition_bytes();
    let open_cost = session.config.open_cost_in_bytes();
    let visible = crate::write::committed_files(state, scan).await?;
    if visible.is_empty() {
        // One task that reads nothing: the scan must not fall back to the files it listed.
        return Ok(vec![Vec::new()]);
    }
    let scan = &FileScan {
        files: visible,
        ..scan.clone()
    };
    let mut inputs: Vec<FileInput> = scan
        .files
        .iter()
        .map(|f| FileInput {
            path: f.object_meta.location.to_string(),
            size: f.object_meta.size,
            row_groups: None,
        })
        .collect();
    let max_split = max_split_bytes(&inputs, max_partition, open_cost, parallelism);
    if scan.file_type == "parquet" {
        let store = state.runtime_env().object_store(&scan.object_store_url)?;
        let reads = scan
            .files
            .iter()
            .zip(&inputs)
            .filter(|(_, input)| input.size > max_split)
            .map(|(f, input)| {
                let url = format!(
                    "{}{}",
                    scan.object_store_url.as_str(),
                    f.object_meta.location
                );
                let store = store.clone();
                let location = f.object_meta.location.clone();
                let size = input.size;
                async move {
                    row_group_ranges(store, &location, size, &url)
                        .await
                        .map(|r| (location.to_string(), r))
                }
            });
        for (path, groups) in try_join_all(reads).await? {
            if let Some(input) = inputs.iter_mut().find(|i| i.path == path) {
                input.row_groups = Some(groups);
            }
        }
    }
    Ok(plan_splits(&inputs, max_partition, open_cost, parallelism))
}

/// The stages of `physical`, their operator chains fused into pipelines unless
/// `faisca.codegen.enabled` is off.
fn stage_graph(session: &Session, physical: Arc<dyn ExecutionPlan>) -> Result<StageGraph> {
    let mut graph = cut_stages(physical)?;
    if session.config.codegen_enabled() {
        faisca_planner::fusion::fuse_stages(&mut graph)?;
    }
    Ok(graph)
}

/// Cut stages and encode each stage's plan.
pub fn build_job(
    session: &Session,
    session_id: &SessionId,
    physical: Arc<dyn ExecutionPlan>,
    kafka: Vec<Arc<KafkaRun>>,
) -> Result<PlannedJob> {
    let schema = physical.schema();
    let graph = stage_graph(session, physical)?;
    let limit = session.config.max_message_size();
    let max_tasks = session.config.stage_max_tasks();
    let mut stages = Vec::with_capacity(graph.stages.len());
    for stage in &graph.stages {
        let widest = stage.tasks().max(stage.output.partitions());
        if widest > max_tasks {
            return Err(Error::user(format!(
                "stage {} would have {widest} tasks or output partitions, more than faisca.stage.maxTasks ({max_tasks}): lower faisca.shuffle.partitions (or the plan's repartitioning), or raise the limit",
                stage.id
            )));
        }
        let hash = match &stage.output {
            StageOutput::Repartition(p) => Some(p),
            _ => None,
        };
        let plan = encode_stage_plan(stage.plan.clone(), hash)?;
        if session.config.check_plan_encoding() {
            check_round_trip(&stage.plan, hash, &plan, &session.ctx.task_ctx())?;
        }
        if plan.len() + 64 * 1024 > limit {
            return Err(Error::user(format!(
                "the plan of stage {} is {} bytes, too large for faisca.rpc.maxMessageSize ({limit} bytes); raise that limit or simplify the query",
                stage.id,
                plan.len()
            )));
        }
        stages.push(PlannedStage {
            id: stage.id,
            plan,
            hash_partitioned: hash.is_some(),
            output_partitions: stage.output.partitions() as u32,
            tasks: stage.tasks() as u32,
            inputs: stage.inputs.clone(),
            output_description: stage.output.describe(),
            stateful: runs_stateful_operator(&stage.plan),
            reads_kafka: reads_kafka(&stage.plan),
            preferred: Vec::new(),
            operators: datafusion::physical_plan::displayable(stage.plan.as_ref())
                .indent(false)
                .to_string(),
        });
    }
    Ok(PlannedJob {
        session: session_id.clone(),
        user: session.owner.clone(),
        stages,
        schema,
        task_config: Arc::new(task_config(session)),
        max_attempts: session.config.task_max_attempts(),
        stage_max_attempts: session.config.stage_max_attempts(),
        name: String::new(),
        sql: String::new(),
        write: None,
        stop_before_source_commit: false,
        kafka,
    })
}

/// Whether `plan` holds a streaming stateful operator.
fn runs_stateful_operator(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<faisca_engine::streaming_exec::StatefulAggregateExec>()
        .is_some()
        || plan.children().into_iter().any(runs_stateful_operator)
}

fn reads_kafka(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<faisca_engine::kafka::KafkaScanExec>()
        .is_some()
        || plan.children().into_iter().any(reads_kafka)
}

/// `EXPLAIN`: the logical plan and the distributed plan (stages, tasks, operators).
async fn explain(session: &Session, plan: &LogicalPlan, total_cores: usize) -> Result<Planned> {
    let optimized = session.ctx.state().optimize(plan)?;
    let (physical, _) = physical_plan(session, plan, total_cores).await?;
    let graph: StageGraph = stage_graph(session, physical)?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("plan_type", DataType::Utf8, false),
        Field::new("plan", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["logical_plan", "distributed_plan"])),
            Arc::new(StringArray::from(vec![
                optimized.display_indent().to_string(),
                faisca_planner::explain::render(&graph),
            ])),
        ],
    )?;
    Ok(Planned::Inline {
        schema,
        batches: vec![batch],
    })
}
