//! The Kafka source in a streaming query (issue 19, being built): its options and each
//! micro-batch's ranges.
//!
//! The batch source's options apply, with streaming's rules:
//!
//! * the query's checkpoint wins after its first batch: every batch starts where the one before
//!   it ended (a partition that appeared since starts at its first offset, as in Spark);
//! * on a new checkpoint `earliest` and `latest` both start at each partition's first offset —
//!   Faísca's `latest` means "from where the last run stopped", which on a first run is
//!   everything; Spark's streaming `latest` starts at the log's end, which JSON offsets with `-1`
//!   ask for here;
//! * `maxOffsetsPerTrigger`, `minOffsetsPerTrigger` and `maxTriggerDelay` size the batches
//!   ([`super::trigger`]);
//! * `endingOffsets`, `endingTimestamp`, `endingOffsetsByTimestamp` and a source-level
//!   `checkpointLocation` are refused (Spark refuses the first three; the checkpoint is the
//!   query's), and so is `asTable` (a batch read).

use std::time::Duration;

use faisca_common::{Error, Redaction, Result};

use super::OffsetRange;
use super::options::{KafkaOptions, SourceOptions, StartingOffsets};
use super::resolve::{OffsetSource, plan_ranges};
use super::trigger::limit_ranges;

/// Options only a streaming read takes.
pub const STREAM_OPTION_NAMES: &[&str] = &[
    "maxOffsetsPerTrigger",
    "minOffsetsPerTrigger",
    "maxTriggerDelay",
];

/// `maxTriggerDelay` unless set (Spark's default).
pub const DEFAULT_MAX_TRIGGER_DELAY: Duration = Duration::from_secs(15 * 60);

/// A streaming Kafka source's options.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// The batch source's options (`startingOffsets` as the first batch uses it).
    pub source: KafkaOptions,
    /// Most offsets a batch reads (about: small partitions are not starved).
    pub max_offsets_per_trigger: Option<u64>,
    /// Fewest offsets a batch waits for, until `max_trigger_delay` passed.
    pub min_offsets_per_trigger: Option<u64>,
    /// Longest wait for `min_offsets_per_trigger`.
    pub max_trigger_delay: Duration,
}

fn count(name: &str, value: &str) -> Result<u64> {
    match value.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Error::user(format!(
            "Kafka option '{name}' is '{value}': expected a positive whole number"
        ))),
    }
}

impl StreamOptions {
    /// Parse a streaming source's options (`location` as [`KafkaOptions::parse`] takes it).
    pub fn parse(
        location: &str,
        options: &SourceOptions,
        redaction: &Redaction,
    ) -> Result<StreamOptions> {
        for (name, why) in [
            (
                "endingOffsets",
                "ending offset not valid in streaming queries",
            ),
            (
                "endingTimestamp",
                "ending timestamp not valid in streaming queries",
            ),
            (
                "endingOffsetsByTimestamp",
                "ending timestamp not valid in streaming queries",
            ),
            (
                "checkpointLocation",
                "a streaming query keeps its offsets in its own checkpoint: set 'checkpointLocation' on write_stream(), not on the source",
            ),
            (
                "asTable",
                "a topic read as a table is a batch read: use read(), not read_stream()",
            ),
        ] {
            if options.get(name).is_some() {
                return Err(Error::user(format!(
                    "Kafka option '{name}' is not supported in a streaming read: {why}"
                )));
            }
        }
        let stream = |name: &str| options.get(name).map(str::to_string);
        let max = stream("maxOffsetsPerTrigger")
            .map(|v| count("maxOffsetsPerTrigger", &v))
            .transpose()?;
        let min = stream("minOffsetsPerTrigger")
            .map(|v| count("minOffsetsPerTrigger", &v))
            .transpose()?;
        if let (Some(min), Some(max)) = (min, max)
            && min > max
        {
            return Err(Error::user(format!(
                "Kafka option 'minOffsetsPerTrigger' ({min}) is more than 'maxOffsetsPerTrigger' ({max}): expected at most the maximum"
            )));
        }
        let delay = match stream("maxTriggerDelay") {
            None => DEFAULT_MAX_TRIGGER_DELAY,
            Some(v) => faisca_common::config::parse_duration(&v).map_err(|_| {
                Error::user(format!(
                    "Kafka option 'maxTriggerDelay' is '{v}': expected a duration such as 15m, 30s or 500ms"
                ))
            })?,
        };
        // On a new checkpoint `earliest` and `latest` both read from the first offset; later
        // batches start where the previous ended whatever the option says.
        let first_offset = options
            .get("startingOffsets")
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|v| v == "earliest" || v == "latest");
        let streaming_only = |name: &str| {
            STREAM_OPTION_NAMES
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name))
                || (first_offset && name.eq_ignore_ascii_case("startingOffsets"))
        };
        let batch_options =
            SourceOptions::normalize(options.iter().filter(|(name, _)| !streaming_only(name)))?;
        let mut source = KafkaOptions::parse(location, &batch_options, redaction)?;
        // A consumer kept positioned between micro-batches fetches ahead until it holds this
        // many records, then waits. librdkafka's default (100 000 per partition) keeps it
        // fetching at the log's end after a broker sent the whole remaining log at once (as
        // noida-db does), and a broker that does not hold empty fetches answers those at once,
        // again and again. Spark's consumers fetch nothing ahead at all.
        // `kafka.queued.min.messages` overrides it.
        source
            .read
            .kafka_params
            .entry("queued.min.messages".to_string())
            .or_insert_with(|| STREAM_QUEUED_MIN_MESSAGES.to_string());
        Ok(StreamOptions {
            source,
            max_offsets_per_trigger: max,
            min_offsets_per_trigger: min,
            max_trigger_delay: delay,
        })
    }
}

/// librdkafka's `queued.min.messages` for a streaming query's range readers unless the query
/// sets `kafka.queued.min.messages`.
pub const STREAM_QUEUED_MIN_MESSAGES: u32 = 2_000;

/// The ranges of a micro-batch: from where `previous` (the last planned batch's ranges, from
/// the query's checkpoint) ended — or from the starting offsets for the first batch — to each
/// partition's end, capped by `maxOffsetsPerTrigger`.
pub fn plan_micro_batch(
    options: &StreamOptions,
    source: &dyn OffsetSource,
    previous: Option<&[OffsetRange]>,
) -> Result<Vec<OffsetRange>> {
    let available = match previous {
        None => plan_ranges(&options.source, source, None)?,
        Some(previous) => {
            let resume = KafkaOptions {
                starting: StartingOffsets::Latest,
                ..options.source.clone()
            };
            plan_ranges(&resume, source, Some(previous))?
        }
    };
    Ok(limit_ranges(&available, options.max_offsets_per_trigger))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::kafka::TopicPartition;
    use crate::kafka::options::Subscription;
    use crate::kafka::resolve::PartitionBounds;

    /// Partitions of topic `t` with `[earliest, latest)` bounds.
    struct Log(Vec<(i64, i64)>);

    impl OffsetSource for Log {
        fn partitions(&self, _: &Subscription) -> Result<Vec<TopicPartition>> {
            Ok((0..self.0.len() as i32)
                .map(|partition| TopicPartition {
                    topic: "t".into(),
                    partition,
                })
                .collect())
        }

        fn bounds(
            &self,
            partitions: &[TopicPartition],
        ) -> Result<BTreeMap<TopicPartition, PartitionBounds>> {
            Ok(partitions
                .iter()
                .map(|tp| {
                    let (earliest, latest) = self.0[tp.partition as usize];
                    (tp.clone(), PartitionBounds { earliest, latest })
                })
                .collect())
        }

        fn offsets_for_times(
            &self,
            _: &[(TopicPartition, i64)],
        ) -> Result<BTreeMap<TopicPartition, Option<i64>>> {
            Ok(BTreeMap::new())
        }
    }

    fn options(pairs: &[(&str, &str)]) -> Result<StreamOptions> {
        let mut all = vec![("kafka.bootstrap.servers", "127.0.0.1:9092")];
        all.extend_from_slice(pairs);
        StreamOptions::parse("t", &SourceOptions::normalize(all)?, &Redaction::default())
    }

    fn spans(ranges: &[OffsetRange]) -> Vec<(i64, i64)> {
        ranges.iter().map(|r| (r.start, r.end)).collect()
    }

    #[test]
    fn batches_follow_each_other_capped_by_the_trigger_limit() {
        let log = Log(vec![(10, 110), (0, 50)]);
        for starting in ["earliest", "latest"] {
            let o = options(&[
                ("startingOffsets", starting),
                ("maxOffsetsPerTrigger", "30"),
            ])
            .unwrap();
            // 150 available: 2/3 and 1/3 of 30.
            let first = plan_micro_batch(&o, &log, None).unwrap();
            assert_eq!(spans(&first), [(10, 30), (0, 10)], "{starting}");
            let second = plan_micro_batch(&o, &log, Some(&first)).unwrap();
            assert_eq!(spans(&second), [(30, 50), (10, 20)], "{starting}");
        }
        // JSON -1: from the log's end, as Spark's streaming `latest`.
        let o = options(&[("startingOffsets", r#"{"t":{"0":-1,"1":-2}}"#)]).unwrap();
        assert_eq!(
            spans(&plan_micro_batch(&o, &log, None).unwrap()),
            [(110, 110), (0, 50)]
        );
        // A partition new since the last batch starts at its first offset.
        let grown = Log(vec![(10, 120), (0, 50), (5, 8)]);
        let previous = plan_micro_batch(&options(&[]).unwrap(), &log, None).unwrap();
        assert_eq!(
            spans(&plan_micro_batch(&options(&[]).unwrap(), &grown, Some(&previous)).unwrap()),
            [(110, 120), (50, 50), (5, 8)]
        );
    }

    #[test]
    fn batch_only_options_are_refused_with_sparks_reason() {
        let e = options(&[("endingOffsets", "latest")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ending offset not valid in streaming queries"),
            "{e}"
        );
        let e = options(&[("checkpointLocation", "file:///x")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("write_stream()"), "{e}");
        let e = options(&[("asTable", "true")]).unwrap_err().to_string();
        assert!(e.contains("batch read"), "{e}");
        let e = options(&[
            ("minOffsetsPerTrigger", "10"),
            ("maxOffsetsPerTrigger", "5"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("more than 'maxOffsetsPerTrigger'"), "{e}");
        let e = options(&[("maxOffsetsPerTrigger", "0")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("positive whole number"), "{e}");
        let o = options(&[("maxTriggerDelay", "2m"), ("MINOFFSETSPERTRIGGER", "7")]).unwrap();
        assert_eq!(o.max_trigger_delay, Duration::from_secs(120));
        assert_eq!(o.min_offsets_per_trigger, Some(7));
        assert_eq!(
            options(&[]).unwrap().max_trigger_delay,
            DEFAULT_MAX_TRIGGER_DELAY
        );
    }
}
