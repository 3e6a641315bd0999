//! Each micro-batch's part of a streaming source: its offsets (as recorded in the checkpoint's
//! `offsets/<batch>` lines), how the next batch's offsets are chosen, and the bounded table a
//! batch's plan reads instead of the source.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use datafusion::datasource::TableProvider;
use faisca_common::locations::AllowedLocations;
use faisca_common::{Error, Result};
use faisca_connectors::kafka::broker::Broker;
use faisca_connectors::kafka::splits::pack_ranges;
use faisca_connectors::kafka::stream::{StreamOptions, plan_micro_batch};
use faisca_connectors::kafka::trigger::limit_ranges;
use faisca_connectors::kafka::{KnownEnds, OffsetRange};
use faisca_engine::kafka::KafkaTable;
use faisca_engine::streaming_source::{StreamSource, rate_table};
use serde::{Deserialize, Serialize};

/// Where one source's part of a batch starts and ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "camelCase")]
pub enum SourceOffsets {
    /// Kafka: the offset range of every partition (empty ones too).
    Kafka {
        /// The ranges.
        ranges: Vec<OffsetRange>,
    },
    /// Files: the URLs of the files the batch reads.
    Files {
        /// The files.
        files: Vec<String>,
    },
    /// Rate: seconds `[start, end)` since the source started at `started_ms`.
    #[serde(rename_all = "camelCase")]
    Rate {
        /// First second.
        start: u64,
        /// First second not in the batch.
        end: u64,
        /// When the source started (ms since the epoch).
        started_ms: i64,
    },
}

impl SourceOffsets {
    /// The line recorded in `offsets/<batch>`.
    pub fn to_line(&self) -> Result<String> {
        serde_json::to_string(self)
            .map_err(|e| Error::internal(format!("encoding a source's offsets: {e}")))
    }

    /// A recorded line.
    pub fn from_line(line: &str) -> Result<Self> {
        serde_json::from_str(line).map_err(|e| {
            Error::user(format!(
                "a streaming checkpoint's offsets line '{line}' is not a source's offsets ({e}); expected a checkpoint this query wrote"
            ))
        })
    }

    /// Rows (Kafka: offsets) the batch covers.
    pub fn rows(&self, source: &StreamSource) -> u64 {
        match (self, source) {
            (SourceOffsets::Kafka { ranges }, _) => ranges.iter().map(OffsetRange::len).sum(),
            (SourceOffsets::Rate { start, end, .. }, StreamSource::Rate(options)) => {
                options.value_at_second(*end) - options.value_at_second(*start)
            }
            // Files: counted by the scan, not known before.
            _ => 0,
        }
    }

    /// Whether the batch reads nothing of this source.
    pub fn is_empty(&self) -> bool {
        match self {
            SourceOffsets::Kafka { ranges } => ranges.iter().all(OffsetRange::is_empty),
            SourceOffsets::Rate { start, end, .. } => end <= start,
            SourceOffsets::Files { files } => files.is_empty(),
        }
    }

    /// Spark's progress JSON for where the batch starts (`start`) or ends.
    pub fn progress_json(&self, start: bool) -> String {
        match self {
            SourceOffsets::Kafka { ranges } => {
                let mut topics: BTreeMap<&str, BTreeMap<String, i64>> = BTreeMap::new();
                for r in ranges {
                    topics
                        .entry(&r.topic)
                        .or_default()
                        .insert(r.partition.to_string(), if start { r.start } else { r.end });
                }
                serde_json::to_string(&topics).unwrap_or_default()
            }
            SourceOffsets::Rate {
                start: s, end: e, ..
            } => (if start { *s } else { *e }).to_string(),
            SourceOffsets::Files { files } => {
                serde_json::json!({ "files": if start { 0 } else { files.len() } }).to_string()
            }
        }
    }
}

/// What the next batch of a source reads, and how far the source reaches now.
#[derive(Debug, Clone)]
pub struct NextOffsets {
    /// The batch's part.
    pub batch: SourceOffsets,
    /// Everything available now (Spark's `latestOffset`).
    pub latest: SourceOffsets,
}

/// The state of one source between batches on the driver.
pub struct SourceCursor {
    /// What it reads.
    pub source: StreamSource,
    /// Where the last batch ended (`None` before the first batch).
    pub last: Option<SourceOffsets>,
    /// For `AvailableNow`: the end of what was available when the query started.
    pub cap: Option<SourceOffsets>,
    broker: Option<Arc<Broker>>,
    /// The driver's rule for the brokers the source connects to.
    allowed: AllowedLocations,
    /// When a rate source with no batch yet was first looked at: its start.
    rate_started_ms: Option<i64>,
    /// A file source's files read so far, and where they are recorded.
    files: Option<FileCursor>,
}

/// A file source's side of a cursor: the files already read (each is read once), recorded per
/// batch in the checkpoint's `sources/<i>/<batch>` (never purged, unlike `offsets/`).
pub struct FileCursor {
    /// The session's runtime (the source directory's store).
    pub runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
    /// The checkpoint's store.
    pub log_store: Arc<dyn object_store::ObjectStore>,
    /// `sources/<i>` in the checkpoint.
    pub log_dir: object_store::path::Path,
    seen: std::collections::HashSet<String>,
    loaded: bool,
}

impl FileCursor {
    /// A cursor whose log is `log_dir` in `log_store`.
    pub fn new(
        runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
        log_store: Arc<dyn object_store::ObjectStore>,
        log_dir: object_store::path::Path,
    ) -> Self {
        FileCursor {
            runtime,
            log_store,
            log_dir,
            seen: Default::default(),
            loaded: false,
        }
    }

    async fn load(&mut self) -> Result<()> {
        if self.loaded {
            return Ok(());
        }
        let store = self.log_store.as_ref();
        let what = |e: object_store::Error| {
            Error::external(format!(
                "reading the file source log {} of a streaming checkpoint: {e}",
                self.log_dir
            ))
        };
        for batch in faisca_connectors::log_dir::entry_numbers(store, &self.log_dir)
            .await
            .map_err(what)?
        {
            let path = self.log_dir.clone().join(batch.to_string());
            let bytes = object_store::ObjectStoreExt::get(store, &path)
                .await
                .map_err(what)?
                .bytes()
                .await
                .map_err(what)?;
            let files: Vec<String> = serde_json::from_slice(&bytes).map_err(|e| {
                Error::user(format!(
                    "the file source log entry {path} of a streaming checkpoint is damaged ({e}); expected the JSON list of a batch's files"
                ))
            })?;
            self.seen.extend(files);
        }
        self.loaded = true;
        Ok(())
    }

    /// Records that batch `batch` reads `files` (before it runs; again on a redo).
    pub async fn record(&mut self, batch: u64, files: &[String]) -> Result<()> {
        let body = serde_json::to_vec(files)
            .map_err(|e| Error::internal(format!("encoding a file source log entry: {e}")))?;
        faisca_connectors::log_dir::create_once(
            self.log_store.as_ref(),
            &self.log_dir.clone().join(batch.to_string()),
            body,
        )
        .await
        .map_err(|e| {
            Error::external(format!(
                "writing the file source log {} of a streaming checkpoint: {e}",
                self.log_dir
            ))
        })?;
        self.seen.extend(files.iter().cloned());
        Ok(())
    }

    /// The files of `source` not read yet, oldest first (as its options choose).
    async fn listing(
        &mut self,
        source: &faisca_engine::streaming_source::FileSource,
    ) -> Result<Vec<faisca_connectors::file_stream::ListedFile>> {
        use futures::TryStreamExt;
        self.load().await?;
        let url =
            datafusion::datasource::listing::ListingTableUrl::parse(&source.path).map_err(|e| {
                Error::user(format!(
                    "streaming {} source path '{}': {e}; expected a directory URL",
                    source.format, source.path
                ))
            })?;
        let store = self.runtime.object_store(url.object_store())?;
        let root = url.prefix().clone();
        // A directory a Faísca file sink writes: only the files its log lists are its data.
        let logged: Option<std::collections::HashSet<String>> =
            if super::file_sink_log::FileSinkLog::exists(store.as_ref(), &root).await? {
                let log =
                    super::file_sink_log::FileSinkLog::new(&source.path, store.clone(), &root);
                Some(
                    log.files()
                        .await?
                        .into_iter()
                        .map(|f| format!("{root}/{}", f.path))
                        .collect(),
                )
            } else {
                None
            };
        let objects: Vec<object_store::ObjectMeta> =
            store.list(Some(&root)).try_collect().await.map_err(|e| {
                Error::external(format!(
                    "listing the streaming {} source at '{}': {e}",
                    source.format, source.path
                ))
            })?;
        let base = url.object_store();
        Ok(objects
            .into_iter()
            .filter(|o| {
                let relative = o
                    .location
                    .as_ref()
                    .strip_prefix(root.as_ref())
                    .unwrap_or(o.location.as_ref());
                !relative
                    .split('/')
                    .any(|part| part.starts_with('_') || part.starts_with('.'))
            })
            .filter(|o| {
                logged
                    .as_ref()
                    .is_none_or(|logged| logged.contains(o.location.as_ref()))
            })
            .map(|o| faisca_connectors::file_stream::ListedFile {
                path: format!("{}{}", base.as_str(), o.location),
                modified_ms: o.last_modified.timestamp_millis(),
            })
            .collect())
    }
}

impl SourceCursor {
    /// A cursor for `source` after `last` (`files`: a file source's log).
    pub fn new(
        source: StreamSource,
        last: Option<SourceOffsets>,
        files: Option<FileCursor>,
        allowed: AllowedLocations,
    ) -> Self {
        SourceCursor {
            source,
            last,
            cap: None,
            broker: None,
            allowed,
            rate_started_ms: None,
            files,
        }
    }

    /// Before batch `batch` runs: a file source records the files it reads.
    pub async fn record(&mut self, batch: u64, offsets: &SourceOffsets) -> Result<()> {
        if let (Some(cursor), SourceOffsets::Files { files }) = (&mut self.files, offsets) {
            cursor.record(batch, files).await?;
        }
        Ok(())
    }

    async fn broker(
        &mut self,
        options: &Arc<StreamOptions>,
        timeout: Duration,
    ) -> Result<Arc<Broker>> {
        if let Some(broker) = &self.broker {
            return Ok(broker.clone());
        }
        let source = options.source.clone();
        let allowed = self.allowed.clone();
        let broker =
            tokio::task::spawn_blocking(move || Broker::connect(&source, timeout, &allowed))
                .await
                .map_err(|e| Error::internal(format!("Kafka connection task: {e}")))??;
        let broker = Arc::new(broker);
        self.broker = Some(broker.clone());
        Ok(broker)
    }

    /// The next batch's offsets (capped by `maxOffsetsPerTrigger`, and by [`Self::cap`] when
    /// set); `now_ms` is the trigger's time.
    pub async fn next(&mut self, now_ms: i64, timeout: Duration) -> Result<NextOffsets> {
        match self.source.clone() {
            StreamSource::Kafka(options) => {
                let previous = match &self.last {
                    Some(SourceOffsets::Kafka { ranges }) => Some(ranges.clone()),
                    Some(other) => {
                        return Err(Error::user(format!(
                            "the checkpoint records {other:?} for a Kafka source; expected a checkpoint of this query"
                        )));
                    }
                    None => None,
                };
                let broker = self.broker(&options, timeout).await?;
                let unlimited = Arc::new(StreamOptions {
                    max_offsets_per_trigger: None,
                    ..options.as_ref().clone()
                });
                let available = tokio::task::spawn_blocking(move || {
                    plan_micro_batch(&unlimited, broker.as_ref(), previous.as_deref())
                })
                .await
                .map_err(|e| Error::internal(format!("Kafka offset planning task: {e}")))?;
                let available = match available {
                    Ok(available) => available,
                    Err(e) => {
                        // A broker that went away is reconnected on the next trigger.
                        self.broker = None;
                        return Err(e);
                    }
                };
                let capped = match &self.cap {
                    Some(SourceOffsets::Kafka { ranges: cap }) => clip(&available, cap),
                    _ => available.clone(),
                };
                Ok(NextOffsets {
                    batch: SourceOffsets::Kafka {
                        ranges: limit_ranges(&capped, options.max_offsets_per_trigger),
                    },
                    latest: SourceOffsets::Kafka { ranges: available },
                })
            }
            StreamSource::Files(source) => {
                let cursor = self.files.as_mut().ok_or_else(|| {
                    Error::internal("a streaming file source without its checkpoint log")
                })?;
                let listing = cursor.listing(&source).await?;
                let unread: Vec<_> = listing
                    .iter()
                    .filter(|f| !cursor.seen.contains(&f.path))
                    .map(|f| f.path.clone())
                    .collect();
                let allowed: Vec<_> = match &self.cap {
                    Some(SourceOffsets::Files { files }) => listing
                        .into_iter()
                        .filter(|f| files.contains(&f.path))
                        .collect(),
                    _ => listing,
                };
                let chosen = faisca_connectors::file_stream::next_files(
                    &allowed,
                    &cursor.seen,
                    &source.batches,
                );
                Ok(NextOffsets {
                    batch: SourceOffsets::Files {
                        files: chosen.into_iter().map(|f| f.path).collect(),
                    },
                    latest: SourceOffsets::Files { files: unread },
                })
            }
            StreamSource::Rate(_) => {
                let (start, started_ms) = match &self.last {
                    Some(SourceOffsets::Rate {
                        end, started_ms, ..
                    }) => (*end, *started_ms),
                    _ => (0, *self.rate_started_ms.get_or_insert(now_ms)),
                };
                let elapsed = ((now_ms - started_ms).max(0) / 1000) as u64;
                let mut end = elapsed.max(start);
                if let Some(SourceOffsets::Rate { end: cap, .. }) = &self.cap {
                    end = end.min(*cap).max(start);
                }
                let latest = SourceOffsets::Rate {
                    start,
                    end: elapsed.max(start),
                    started_ms,
                };
                Ok(NextOffsets {
                    batch: SourceOffsets::Rate {
                        start,
                        end,
                        started_ms,
                    },
                    latest,
                })
            }
        }
    }

    /// The table a batch reads for this source, and (Kafka) the scan's tasks and where its
    /// partitions ended (`latest`, what the source had when the batch was planned) by source
    /// key. (`cores`: the cluster's task slots, the most Kafka tasks a small batch is packed
    /// into).
    pub fn bound_table(
        &self,
        offsets: &SourceOffsets,
        latest: &SourceOffsets,
        default_max_records: u64,
        cores: usize,
        kafka: &mut KafkaBatchScans,
    ) -> Result<Arc<dyn TableProvider>> {
        match (&self.source, offsets) {
            (StreamSource::Kafka(options), SourceOffsets::Kafka { ranges }) => {
                let table = KafkaTable::new(options.source.clone())?;
                if let SourceOffsets::Kafka { ranges: latest } = latest {
                    let ends: KnownEnds = latest
                        .iter()
                        .map(|r| (r.topic_partition(), r.end))
                        .collect();
                    kafka
                        .known_ends
                        .insert(options.source.key.clone(), Arc::new(ends));
                }
                let kafka_tasks = &mut kafka.tasks;
                kafka_tasks.insert(
                    options.source.key.clone(),
                    pack_ranges(
                        ranges,
                        options.source.min_partitions,
                        options
                            .source
                            .max_records_per_partition
                            .unwrap_or(default_max_records),
                        cores,
                    ),
                );
                Ok(Arc::new(table))
            }
            (
                StreamSource::Rate(options),
                SourceOffsets::Rate {
                    start,
                    end,
                    started_ms,
                },
            ) => rate_table(&options.batch(*start, *end, *started_ms)),
            (StreamSource::Files(source), SourceOffsets::Files { files }) => {
                file_table(source, files, self.files.as_ref())
            }
            (source, offsets) => Err(Error::user(format!(
                "the checkpoint records {offsets:?} for a {} source; expected a checkpoint of this query",
                source.format()
            ))),
        }
    }
}

/// What a batch's Kafka scans are given, by source key: each scan's tasks, and where its
/// partitions ended when the batch was planned.
#[derive(Debug, Default)]
pub struct KafkaBatchScans {
    /// Each task's ranges.
    pub tasks: HashMap<String, Vec<Vec<OffsetRange>>>,
    /// Where the partitions ended.
    pub known_ends: HashMap<String, Arc<KnownEnds>>,
}

/// The files of one batch of a file source as a table.
fn file_table(
    source: &faisca_engine::streaming_source::FileSource,
    files: &[String],
    cursor: Option<&FileCursor>,
) -> Result<Arc<dyn TableProvider>> {
    use datafusion::datasource::listing::{
        ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
    };
    if files.is_empty() {
        return Ok(Arc::new(datafusion::datasource::MemTable::try_new(
            source.schema.clone(),
            vec![Vec::new()],
        )?));
    }
    let cursor = cursor
        .ok_or_else(|| Error::internal("a streaming file source without its checkpoint log"))?;
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_runtime_env(cursor.runtime.clone())
        .with_default_features()
        .build();
    let factory = state
        .get_file_format_factory(&source.format)
        .ok_or_else(|| Error::internal(format!("no file format {}", source.format)))?;
    let format = factory.create(&state, &source.format_options)?;
    let urls = files
        .iter()
        .map(|f| {
            ListingTableUrl::parse(f).map_err(|e| Error::internal(format!("file URL {f}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let options = ListingOptions::new(format).with_file_extension("");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(source.schema.clone());
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// `available` with each range ending no later than `cap` says (partitions `cap` lacks: nothing).
fn clip(available: &[OffsetRange], cap: &[OffsetRange]) -> Vec<OffsetRange> {
    available
        .iter()
        .map(|r| {
            let limit = cap
                .iter()
                .find(|c| c.topic == r.topic && c.partition == r.partition)
                .map_or(r.start, |c| c.end);
            OffsetRange {
                end: r.end.min(limit).max(r.start),
                ..r.clone()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(partition: i32, start: i64, end: i64) -> OffsetRange {
        OffsetRange {
            topic: "t".into(),
            partition,
            start,
            end,
        }
    }

    #[test]
    fn offsets_lines_round_trip_and_show_as_spark_progress() {
        let kafka = SourceOffsets::Kafka {
            ranges: vec![range(0, 0, 5), range(1, 3, 3)],
        };
        let line = kafka.to_line().unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(SourceOffsets::from_line(&line).unwrap(), kafka);
        assert_eq!(kafka.progress_json(true), r#"{"t":{"0":0,"1":3}}"#);
        assert_eq!(kafka.progress_json(false), r#"{"t":{"0":5,"1":3}}"#);
        assert!(!kafka.is_empty());
        let rate = SourceOffsets::Rate {
            start: 2,
            end: 2,
            started_ms: 7,
        };
        assert_eq!(
            SourceOffsets::from_line(&rate.to_line().unwrap()).unwrap(),
            rate
        );
        assert!(rate.is_empty());
        assert!(
            SourceOffsets::from_line("{\"source\":\"files\"}")
                .unwrap_err()
                .to_string()
                .contains("expected a checkpoint")
        );
    }

    #[test]
    fn available_now_clips_ranges_at_the_start_time_ends() {
        let available = vec![range(0, 10, 50), range(1, 0, 8), range(2, 4, 9)];
        let cap = vec![range(0, 0, 30), range(1, 0, 20)];
        assert_eq!(
            clip(&available, &cap),
            vec![range(0, 10, 30), range(1, 0, 8), range(2, 4, 4)]
        );
    }
}
