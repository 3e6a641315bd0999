//! Each micro-batch's part of a streaming source: its offsets (as recorded in the checkpoint's
//! `offsets/<batch>` lines), how the next batch's offsets are chosen, and the bounded table a
//! batch's plan reads instead of the source.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use datafusion::datasource::TableProvider;
use faisca_common::{Error, Result};
use faisca_connectors::kafka::OffsetRange;
use faisca_connectors::kafka::broker::Broker;
use faisca_connectors::kafka::splits::split_ranges;
use faisca_connectors::kafka::stream::{StreamOptions, plan_micro_batch};
use faisca_connectors::kafka::trigger::limit_ranges;
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
            _ => 0,
        }
    }

    /// Whether the batch reads nothing of this source.
    pub fn is_empty(&self) -> bool {
        match self {
            SourceOffsets::Kafka { ranges } => ranges.iter().all(OffsetRange::is_empty),
            SourceOffsets::Rate { start, end, .. } => end <= start,
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
    /// When a rate source with no batch yet was first looked at: its start.
    rate_started_ms: Option<i64>,
}

impl SourceCursor {
    /// A cursor for `source` after `last`.
    pub fn new(source: StreamSource, last: Option<SourceOffsets>) -> Self {
        SourceCursor {
            source,
            last,
            cap: None,
            broker: None,
            rate_started_ms: None,
        }
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
        let broker = tokio::task::spawn_blocking(move || Broker::connect(&source, timeout))
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

    /// The table a batch reads for this source, and (Kafka) the scan's tasks by source key.
    pub fn bound_table(
        &self,
        offsets: &SourceOffsets,
        default_max_records: u64,
        kafka_tasks: &mut HashMap<String, Vec<Vec<OffsetRange>>>,
    ) -> Result<Arc<dyn TableProvider>> {
        match (&self.source, offsets) {
            (StreamSource::Kafka(options), SourceOffsets::Kafka { ranges }) => {
                let table = KafkaTable::new(options.source.clone())?;
                kafka_tasks.insert(
                    options.source.key.clone(),
                    split_ranges(
                        ranges,
                        options.source.min_partitions,
                        options
                            .source
                            .max_records_per_partition
                            .unwrap_or(default_max_records),
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
            (source, offsets) => Err(Error::user(format!(
                "the checkpoint records {offsets:?} for a {} source; expected a checkpoint of this query",
                source.format()
            ))),
        }
    }
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
