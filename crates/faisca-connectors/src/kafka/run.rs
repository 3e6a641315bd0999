//! A Kafka source's run, on the driver: each query plans the offsets of its Kafka sources once,
//! records them in the source's checkpoint before its job starts, and records the commit after
//! the output was delivered (a write's commit, or the whole result streamed to the client). The
//! driver keeps the runs with the job and calls [`KafkaRun::record_start`] and [`record_done`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use faisca_common::locations::AllowedLocations;
use faisca_common::{Error, Result};
use tracing::{debug, info};

use super::OffsetRange;
use super::broker::{Broker, commit_to_group};
use super::checkpoint::{Checkpoint, NextRun};
use super::options::KafkaOptions;
use super::resolve::plan_ranges;
use super::splits::split_ranges;

/// One Kafka source's part in one run of a query.
#[derive(Debug)]
pub struct KafkaRun {
    /// The source.
    pub options: Arc<KafkaOptions>,
    /// Its offset log, with `checkpointLocation`.
    pub checkpoint: Option<Checkpoint>,
    /// The batch number in the log.
    pub batch_id: u64,
    /// Whether this run planned a new batch (false: it redoes one that never committed).
    pub fresh: bool,
    /// The planned range of every partition (empty ones too).
    pub ranges: Vec<OffsetRange>,
    /// Bound of each request to the brokers.
    pub request_timeout: Duration,
    /// Where its clients may connect (the driver's `faisca.sql.allowedLocations`).
    pub allowed: AllowedLocations,
}

impl KafkaRun {
    /// The run's tasks.
    pub fn tasks(&self, default_max_records: u64) -> Vec<Vec<OffsetRange>> {
        split_ranges(
            &self.ranges,
            self.options.min_partitions,
            self.options
                .max_records_per_partition
                .unwrap_or(default_max_records),
        )
    }

    /// Before the job starts: record a new batch's ranges in the checkpoint.
    pub async fn record_start(&self) -> Result<()> {
        let Some(checkpoint) = &self.checkpoint else {
            return Ok(());
        };
        if self.fresh {
            checkpoint
                .record_offsets(self.batch_id, &self.options.source_identity(), &self.ranges)
                .await?;
        }
        debug!(
            checkpoint = checkpoint.url(),
            batch = self.batch_id,
            fresh = self.fresh,
            "Kafka run recorded"
        );
        Ok(())
    }

    /// After the output was delivered: record the commit, then (with `kafka.group.id`) commit
    /// the end offsets to the consumer group.
    pub async fn record_done(&self) -> Result<()> {
        if let Some(checkpoint) = &self.checkpoint {
            checkpoint.record_commit(self.batch_id).await?;
            info!(
                checkpoint = checkpoint.url(),
                batch = self.batch_id,
                "Kafka run committed"
            );
        }
        if self.options.read.kafka_params.contains_key("group.id") {
            let read = self.options.read.clone();
            let ranges = self.ranges.clone();
            let timeout = self.request_timeout;
            let allowed = self.allowed.clone();
            tokio::task::spawn_blocking(move || commit_to_group(&read, &ranges, timeout, &allowed))
                .await
                .map_err(|e| Error::internal(format!("group commit task: {e}")))??;
        }
        Ok(())
    }
}

/// Record the end of every run of a job; the first failure is returned after all were tried.
pub async fn record_done(runs: &[Arc<KafkaRun>]) -> Result<()> {
    let mut first = None;
    for run in runs {
        if let Err(e) = run.record_done().await {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Plan one run of each source (distinct by key) of a query.
pub async fn plan_runs(
    runtime: &RuntimeEnv,
    sources: Vec<Arc<KafkaOptions>>,
    request_timeout: Duration,
    allowed: &AllowedLocations,
) -> Result<Vec<Arc<KafkaRun>>> {
    let mut by_checkpoint: HashMap<String, String> = HashMap::new();
    let mut runs = Vec::with_capacity(sources.len());
    for options in sources {
        if let Some(location) = &options.checkpoint_location
            && let Some(other) = by_checkpoint.insert(location.clone(), options.key.clone())
            && other != options.key
        {
            return Err(Error::user(format!(
                "two Kafka sources of this query use the checkpointLocation '{location}': give each source its own"
            )));
        }
        runs.push(Arc::new(
            plan_run(runtime, options, request_timeout, allowed.clone()).await?,
        ));
    }
    Ok(runs)
}

/// The checkpoint at `url` (the `checkpointLocation` option), in the store the runtime has for it.
fn checkpoint_at(url: &str, runtime: &RuntimeEnv) -> Result<Checkpoint> {
    let what = || format!("Kafka option 'checkpointLocation' ('{url}')");
    let parsed = ListingTableUrl::parse(url).map_err(|e| {
        Error::user(format!(
            "{}: {e}; expected a directory URL such as s3://bucket/checkpoints/query or a local path",
            what()
        ))
    })?;
    let store = runtime
        .object_store(parsed.object_store())
        .map_err(|e| Error::from(e).context(what()))?;
    Ok(Checkpoint::new(url, store, parsed.prefix().clone()))
}

async fn plan_run(
    runtime: &RuntimeEnv,
    options: Arc<KafkaOptions>,
    request_timeout: Duration,
    allowed: AllowedLocations,
) -> Result<KafkaRun> {
    let checkpoint = match &options.checkpoint_location {
        Some(url) => Some(checkpoint_at(url, runtime)?),
        None => None,
    };
    let next = match &checkpoint {
        Some(cp) => cp.next_run().await?,
        None => NextRun::Fresh {
            batch_id: 0,
            previous: None,
        },
    };
    let (batch_id, previous) = match next {
        NextRun::Redo(entry) => {
            info!(
                batch = entry.batch_id,
                "Kafka run redoes a batch that never committed"
            );
            return Ok(KafkaRun {
                options,
                checkpoint,
                batch_id: entry.batch_id,
                fresh: false,
                ranges: entry.ranges,
                request_timeout,
                allowed,
            });
        }
        NextRun::Fresh { batch_id, previous } => (batch_id, previous),
    };
    let planning = options.clone();
    let planning_allowed = allowed.clone();
    let ranges = tokio::task::spawn_blocking(move || {
        let broker = Broker::connect(&planning, request_timeout, &planning_allowed)?;
        plan_ranges(&planning, &broker, previous.as_deref())
    })
    .await
    .map_err(|e| Error::internal(format!("Kafka offset planning task: {e}")))??;
    Ok(KafkaRun {
        options,
        checkpoint,
        batch_id,
        fresh: true,
        ranges,
        request_timeout,
        allowed,
    })
}
