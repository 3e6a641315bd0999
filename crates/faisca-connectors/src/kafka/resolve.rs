//! One run's ranges: from the options, the brokers' offsets and the previous run's checkpoint.
//!
//! Pure logic over an [`OffsetSource`] (the brokers, or a table in tests). Every planned range is
//! returned, empty ones too: the checkpoint records where each partition stopped.

use std::collections::BTreeMap;

use faisca_common::{Error, Result};

use super::options::{
    EARLIEST, EndingOffsets, KafkaOptions, LATEST, PartitionOffsets, StartingOffsets, Subscription,
    TimestampStrategy,
};
use super::{OffsetRange, TopicPartition};

/// The offsets a partition holds now: `[earliest, latest)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionBounds {
    /// The first offset still in the log.
    pub earliest: i64,
    /// The offset the next record will get (under `read_committed`: the last stable offset).
    pub latest: i64,
}

/// What the planner asks the brokers. Blocking calls: run them off the async runtime.
pub trait OffsetSource {
    /// The partitions a subscription names; a named topic that does not exist is an error.
    fn partitions(&self, subscription: &Subscription) -> Result<Vec<TopicPartition>>;
    /// The bounds of each partition.
    fn bounds(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, PartitionBounds>>;
    /// For each partition, the first offset whose record time is at or after the given
    /// milliseconds since the epoch; `None` when no record is that recent.
    fn offsets_for_times(
        &self,
        query: &[(TopicPartition, i64)],
    ) -> Result<BTreeMap<TopicPartition, Option<i64>>>;
}

/// Every partition in `offsets`, and only those, must be the `partitions` of the source.
fn check_named(
    option: &str,
    offsets: &PartitionOffsets,
    partitions: &[TopicPartition],
) -> Result<()> {
    let named: Vec<TopicPartition> = offsets
        .iter()
        .flat_map(|(t, ps)| {
            ps.keys().map(|p| TopicPartition {
                topic: t.clone(),
                partition: *p,
            })
        })
        .collect();
    let missing: Vec<String> = partitions
        .iter()
        .filter(|tp| !named.contains(tp))
        .map(ToString::to_string)
        .collect();
    let unknown: Vec<String> = named
        .iter()
        .filter(|tp| !partitions.contains(tp))
        .map(ToString::to_string)
        .collect();
    if missing.is_empty() && unknown.is_empty() {
        return Ok(());
    }
    let mut why = Vec::new();
    if !missing.is_empty() {
        why.push(format!("it does not name {}", missing.join(", ")));
    }
    if !unknown.is_empty() {
        why.push(format!(
            "{} {} not read by this source",
            unknown.join(", "),
            if unknown.len() == 1 { "is" } else { "are" }
        ));
    }
    Err(Error::user(format!(
        "Kafka option '{option}': {}; it must give an offset for every partition read (-2 earliest, -1 latest)",
        why.join(" and ")
    )))
}

fn lookup(offsets: &PartitionOffsets, tp: &TopicPartition) -> i64 {
    offsets[&tp.topic][&tp.partition]
}

/// Times (ms) to look offsets up for, per partition.
type TimeQueries = Vec<(TopicPartition, i64)>;

/// Timestamps to look up, per partition, for the options' starting and ending points.
fn timestamp_queries(
    options: &KafkaOptions,
    partitions: &[TopicPartition],
) -> (TimeQueries, TimeQueries) {
    let per = |single: Option<i64>, by: Option<&PartitionOffsets>| -> TimeQueries {
        partitions
            .iter()
            .filter_map(|tp| match (single, by) {
                (Some(t), _) => Some((tp.clone(), t)),
                (None, Some(by)) => Some((tp.clone(), lookup(by, tp))),
                _ => None,
            })
            .collect()
    };
    let start = match &options.starting {
        StartingOffsets::Timestamp(t) => per(Some(*t), None),
        StartingOffsets::TimestampByPartition(by) => per(None, Some(by)),
        _ => Vec::new(),
    };
    let end = match &options.ending {
        EndingOffsets::Timestamp(t) => per(Some(*t), None),
        EndingOffsets::TimestampByPartition(by) => per(None, Some(by)),
        _ => Vec::new(),
    };
    (start, end)
}

/// Plan one run: a range per partition read. `previous` holds the ranges of the last successful
/// run recorded in the checkpoint (used by `startingOffsets = latest`).
pub fn plan_ranges(
    options: &KafkaOptions,
    source: &dyn OffsetSource,
    previous: Option<&[OffsetRange]>,
) -> Result<Vec<OffsetRange>> {
    let mut partitions = source.partitions(&options.subscription)?;
    partitions.sort();
    partitions.dedup();
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    check_options_name(options, &partitions)?;
    let facts = Facts::gather(options, source, &partitions, previous)?;
    partitions
        .into_iter()
        .map(|tp| plan_partition(options, &facts, tp))
        .collect()
}

/// Offset options that name partitions must name every partition read.
fn check_options_name(options: &KafkaOptions, partitions: &[TopicPartition]) -> Result<()> {
    match &options.starting {
        StartingOffsets::Specific(o) => check_named("startingOffsets", o, partitions)?,
        StartingOffsets::TimestampByPartition(o) => {
            check_named("startingOffsetsByTimestamp", o, partitions)?
        }
        _ => {}
    }
    match &options.ending {
        EndingOffsets::Specific(o) => check_named("endingOffsets", o, partitions),
        EndingOffsets::TimestampByPartition(o) => {
            check_named("endingOffsetsByTimestamp", o, partitions)
        }
        _ => Ok(()),
    }
}

/// What the brokers and the checkpoint say about the partitions of a run.
struct Facts {
    bounds: BTreeMap<TopicPartition, PartitionBounds>,
    /// The starting time asked for each partition, and the offset found for it.
    start_times: BTreeMap<TopicPartition, i64>,
    start_found: BTreeMap<TopicPartition, Option<i64>>,
    end_found: BTreeMap<TopicPartition, Option<i64>>,
    /// Where the last successful run stopped, per partition.
    previous_end: BTreeMap<TopicPartition, i64>,
}

impl Facts {
    fn gather(
        options: &KafkaOptions,
        source: &dyn OffsetSource,
        partitions: &[TopicPartition],
        previous: Option<&[OffsetRange]>,
    ) -> Result<Self> {
        let bounds = source.bounds(partitions)?;
        let (start_times, end_times) = timestamp_queries(options, partitions);
        let found = |times: &[(TopicPartition, i64)]| {
            if times.is_empty() {
                Ok(BTreeMap::new())
            } else {
                source.offsets_for_times(times)
            }
        };
        Ok(Facts {
            bounds,
            start_found: found(&start_times)?,
            end_found: found(&end_times)?,
            start_times: start_times.into_iter().collect(),
            previous_end: previous
                .unwrap_or_default()
                .iter()
                .map(|r| (r.topic_partition(), r.end))
                .collect(),
        })
    }
}

/// Where a partition's range starts as the options ask, and whether that is where the last run
/// stopped.
fn requested_start(
    options: &KafkaOptions,
    facts: &Facts,
    tp: &TopicPartition,
    b: PartitionBounds,
) -> Result<(i64, bool)> {
    Ok(match &options.starting {
        StartingOffsets::Earliest => (b.earliest, false),
        StartingOffsets::Latest => match facts.previous_end.get(tp) {
            Some(end) => (*end, true),
            // A partition new since the last run (or a first run) is read from its start.
            None => (b.earliest, false),
        },
        StartingOffsets::Specific(o) => match lookup(o, tp) {
            EARLIEST => (b.earliest, false),
            LATEST => (b.latest, false),
            n => (n, false),
        },
        StartingOffsets::Timestamp(_) | StartingOffsets::TimestampByPartition(_) => {
            match facts.start_found.get(tp).copied().flatten() {
                Some(offset) => (offset, false),
                None if options.timestamp_strategy == TimestampStrategy::Latest => {
                    (b.latest, false)
                }
                None => {
                    let at = facts.start_times.get(tp).copied().unwrap_or_default();
                    return Err(Error::user(format!(
                        "Kafka partition {tp} has no record at or after the starting timestamp {at} ms: set 'startingOffsetsByTimestampStrategy' to 'latest' to start at its end instead"
                    )));
                }
            }
        }
    })
}

/// Where a partition's range ends as the options ask.
fn requested_end(
    options: &KafkaOptions,
    facts: &Facts,
    tp: &TopicPartition,
    b: PartitionBounds,
) -> i64 {
    match &options.ending {
        EndingOffsets::Latest => b.latest,
        EndingOffsets::Specific(o) => match lookup(o, tp) {
            LATEST => b.latest,
            n => n,
        },
        EndingOffsets::Timestamp(_) | EndingOffsets::TimestampByPartition(_) => facts
            .end_found
            .get(tp)
            .copied()
            .flatten()
            .unwrap_or(b.latest),
    }
}

/// One partition's range: what the options ask, checked against the log (the data-loss rules).
fn plan_partition(
    options: &KafkaOptions,
    facts: &Facts,
    tp: TopicPartition,
) -> Result<OffsetRange> {
    let b = *facts
        .bounds
        .get(&tp)
        .ok_or_else(|| Error::external(format!("the brokers returned no offsets for {tp}")))?;
    let fail = options.read.fail_on_data_loss;
    let (mut start, from_checkpoint) = requested_start(options, facts, &tp, b)?;
    let end = requested_end(options, facts, &tp, b);
    if start < b.earliest {
        if fail {
            return Err(Error::user(format!(
                "Kafka partition {tp}: offsets [{start}, {}) are no longer in the log (it now starts at {}; deleted by retention?), so records would be lost: set 'failOnDataLoss' to 'false' to skip them",
                b.earliest, b.earliest
            )));
        }
        start = b.earliest;
    }
    if start > b.latest {
        if !from_checkpoint {
            return Err(Error::user(format!(
                "Kafka partition {tp}: the starting offset {start} is past its end ({}): a run reads only records that exist when it starts",
                b.latest
            )));
        }
        // The log is shorter than what an earlier run read: the topic was re-created.
        if fail {
            return Err(Error::user(format!(
                "Kafka partition {tp}: the last run stopped at offset {start}, but the partition now ends at {} (was the topic deleted and re-created?), so records may be lost: set 'failOnDataLoss' to 'false' to read it from its first offset",
                b.latest
            )));
        }
        start = b.earliest;
    }
    if end > b.latest {
        return Err(Error::user(format!(
            "Kafka partition {tp}: the ending offset {end} is past its end ({}): a run reads only records that exist when it starts",
            b.latest
        )));
    }
    if end < start && !from_checkpoint {
        return Err(Error::user(format!(
            "Kafka partition {tp}: the ending offset {end} is before the starting offset {start}"
        )));
    }
    Ok(OffsetRange {
        topic: tp.topic,
        partition: tp.partition,
        start,
        // From a checkpoint, nothing new up to the requested end is an empty range.
        end: end.max(start),
    })
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::kafka::options::SourceOptions;

    /// Partitions with `[earliest, latest)` and one record time per offset (ms = offset * 10).
    struct Table(BTreeMap<TopicPartition, PartitionBounds>);

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    impl OffsetSource for Table {
        fn partitions(&self, subscription: &Subscription) -> Result<Vec<TopicPartition>> {
            Ok(self
                .0
                .keys()
                .filter(|tp| match subscription {
                    Subscription::Topics(ts) => ts.contains(&tp.topic),
                    Subscription::Pattern(p) => regex::Regex::new(&format!("^(?:{p})$"))
                        .unwrap()
                        .is_match(&tp.topic),
                    Subscription::Assign(a) => a
                        .get(&tp.topic)
                        .is_some_and(|ps| ps.contains(&tp.partition)),
                })
                .cloned()
                .collect())
        }
        fn bounds(
            &self,
            partitions: &[TopicPartition],
        ) -> Result<BTreeMap<TopicPartition, PartitionBounds>> {
            Ok(partitions
                .iter()
                .map(|tp| (tp.clone(), self.0[tp]))
                .collect())
        }
        fn offsets_for_times(
            &self,
            query: &[(TopicPartition, i64)],
        ) -> Result<BTreeMap<TopicPartition, Option<i64>>> {
            Ok(query
                .iter()
                .map(|(tp, ms)| {
                    let b = self.0[tp];
                    let first = (ms + 9) / 10;
                    let offset = first.max(b.earliest);
                    (tp.clone(), (offset < b.latest).then_some(offset))
                })
                .collect())
        }
    }

    fn table() -> Table {
        Table(
            [
                (
                    tp("a", 0),
                    PartitionBounds {
                        earliest: 0,
                        latest: 100,
                    },
                ),
                (
                    tp("a", 1),
                    PartitionBounds {
                        earliest: 10,
                        latest: 50,
                    },
                ),
                (
                    tp("b", 0),
                    PartitionBounds {
                        earliest: 0,
                        latest: 0,
                    },
                ),
            ]
            .into(),
        )
    }

    fn options(location: &str, pairs: &[(&str, &str)]) -> KafkaOptions {
        let servers = [("kafka.bootstrap.servers", "127.0.0.1:1")];
        let options =
            SourceOptions::normalize(pairs.iter().chain(&servers).map(|(k, v)| (*k, *v))).unwrap();
        KafkaOptions::parse(location, &options, &faisca_common::Redaction::default()).unwrap()
    }

    fn spans(ranges: &[OffsetRange]) -> Vec<String> {
        ranges.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn earliest_reads_the_whole_log_every_run() {
        let o = options("a,b", &[("checkpointLocation", "memory:///cp")]);
        let previous = plan_ranges(&o, &table(), None).unwrap();
        assert_eq!(
            spans(&previous),
            ["a-0 [0, 100)", "a-1 [10, 50)", "b-0 [0, 0)"]
        );
        let again = plan_ranges(&o, &table(), Some(&previous)).unwrap();
        assert_eq!(again, previous);
    }

    #[test]
    fn latest_continues_where_the_last_run_stopped() {
        let o = options(
            "a,b",
            &[
                ("startingOffsets", "latest"),
                ("checkpointLocation", "memory:///cp"),
            ],
        );
        // First run: everything.
        let first = plan_ranges(&o, &table(), None).unwrap();
        assert_eq!(
            spans(&first),
            ["a-0 [0, 100)", "a-1 [10, 50)", "b-0 [0, 0)"]
        );
        // A previous run that stopped earlier, without partition a-1 (new since then).
        let previous = vec![
            OffsetRange {
                topic: "a".into(),
                partition: 0,
                start: 0,
                end: 60,
            },
            OffsetRange {
                topic: "b".into(),
                partition: 0,
                start: 0,
                end: 0,
            },
        ];
        let next = plan_ranges(&o, &table(), Some(&previous)).unwrap();
        assert_eq!(
            spans(&next),
            ["a-0 [60, 100)", "a-1 [10, 50)", "b-0 [0, 0)"]
        );
    }

    #[test]
    fn specific_offsets_must_name_every_partition() {
        let o = options(
            "a",
            &[
                ("startingOffsets", r#"{"a":{"0":5,"1":-2}}"#),
                ("endingOffsets", r#"{"a":{"0":20,"1":-1}}"#),
            ],
        );
        assert_eq!(
            spans(&plan_ranges(&o, &table(), None).unwrap()),
            ["a-0 [5, 20)", "a-1 [10, 50)"]
        );
        let o = options("a", &[("startingOffsets", r#"{"a":{"0":5,"7":1}}"#)]);
        let e = plan_ranges(&o, &table(), None).unwrap_err().to_string();
        assert!(
            e.contains("'startingOffsets'")
                && e.contains("does not name a-1")
                && e.contains("a-7 is not read"),
            "{e}"
        );
        let o = options("a", &[("endingOffsets", r#"{"a":{"0":500,"1":-1}}"#)]);
        let e = plan_ranges(&o, &table(), None).unwrap_err().to_string();
        assert!(e.contains("ending offset 500 is past its end (100)"), "{e}");
        let o = options(
            "a",
            &[
                ("startingOffsets", r#"{"a":{"0":50,"1":-2}}"#),
                ("endingOffsets", r#"{"a":{"0":20,"1":-1}}"#),
            ],
        );
        let e = plan_ranges(&o, &table(), None).unwrap_err().to_string();
        assert!(
            e.contains("ending offset 20 is before the starting offset 50"),
            "{e}"
        );
    }

    #[test]
    fn data_loss_fails_or_skips() {
        // a-1 starts at 10: offsets 0..10 are gone.
        let o = options("a", &[("startingOffsets", r#"{"a":{"0":0,"1":0}}"#)]);
        let e = plan_ranges(&o, &table(), None).unwrap_err().to_string();
        assert!(
            e.contains("a-1: offsets [0, 10) are no longer in the log")
                && e.contains("'failOnDataLoss'"),
            "{e}"
        );
        let o = options(
            "a",
            &[
                ("startingOffsets", r#"{"a":{"0":0,"1":0}}"#),
                ("failOnDataLoss", "false"),
            ],
        );
        assert_eq!(
            spans(&plan_ranges(&o, &table(), None).unwrap()),
            ["a-0 [0, 100)", "a-1 [10, 50)"]
        );
        // A checkpoint past the end: the topic was re-created.
        let o = options(
            "a",
            &[
                ("startingOffsets", "latest"),
                ("checkpointLocation", "memory:///cp"),
            ],
        );
        let previous = vec![OffsetRange {
            topic: "a".into(),
            partition: 1,
            start: 0,
            end: 70,
        }];
        let e = plan_ranges(&o, &table(), Some(&previous))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("stopped at offset 70") && e.contains("re-created"),
            "{e}"
        );
    }

    #[test]
    fn timestamps() {
        let o = options(
            "a",
            &[("startingTimestamp", "200"), ("endingTimestamp", "455")],
        );
        assert_eq!(
            spans(&plan_ranges(&o, &table(), None).unwrap()),
            ["a-0 [20, 46)", "a-1 [20, 46)"]
        );
        // No record that recent in a-1 (ends at 50, i.e. 490 ms).
        let o = options("a", &[("startingTimestamp", "600")]);
        let e = plan_ranges(&o, &table(), None).unwrap_err().to_string();
        assert!(
            e.contains("no record at or after the starting timestamp 600"),
            "{e}"
        );
        let o = options(
            "a",
            &[
                ("startingOffsetsByTimestamp", r#"{"a":{"0":600,"1":600}}"#),
                ("startingOffsetsByTimestampStrategy", "latest"),
            ],
        );
        assert_eq!(
            spans(&plan_ranges(&o, &table(), None).unwrap()),
            ["a-0 [60, 100)", "a-1 [50, 50)"]
        );
    }

    #[test]
    fn patterns_and_assignments() {
        let o = options("", &[("subscribePattern", "a|b")]);
        assert_eq!(plan_ranges(&o, &table(), None).unwrap().len(), 3);
        let o = options("", &[("subscribePattern", "nothing.*")]);
        assert!(plan_ranges(&o, &table(), None).unwrap().is_empty());
        let o = options("", &[("assign", r#"{"a":[1]}"#)]);
        assert_eq!(
            spans(&plan_ranges(&o, &table(), None).unwrap()),
            ["a-1 [10, 50)"]
        );
    }
}
