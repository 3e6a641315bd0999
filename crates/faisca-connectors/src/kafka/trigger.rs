//! How much a streaming micro-batch reads from Kafka, as Spark's Kafka source decides it:
//!
//! * `maxOffsetsPerTrigger` caps a batch's offsets, split across partitions in proportion to
//!   each one's backlog ([`limit_ranges`]): a partition gets `limit × backlog / total`, rounded
//!   down, except that a share below one offset is rounded up so that no partition with a
//!   backlog starves (so a batch may read a few offsets over the limit, as Spark's does);
//! * `minOffsetsPerTrigger` holds a batch back until that many offsets are available, unless
//!   `maxTriggerDelay` has passed since the last batch ([`ready_to_run`]).

use std::time::Duration;

use super::OffsetRange;

/// The ranges a batch reads when `available` are the partitions' unread ranges (from where the
/// last batch ended to the log's end), at most about `max_offsets` offsets in all.
pub fn limit_ranges(available: &[OffsetRange], max_offsets: Option<u64>) -> Vec<OffsetRange> {
    let total: u64 = available.iter().map(OffsetRange::len).sum();
    let Some(limit) = max_offsets.filter(|limit| *limit < total) else {
        return available.to_vec();
    };
    available
        .iter()
        .map(|range| {
            let backlog = range.len();
            // `limit × backlog / total` in exact integers (Spark computes it in floating point).
            let product = limit as u128 * backlog as u128;
            let share = match (product / total as u128) as u64 {
                0 if backlog > 0 => 1,
                share => share,
            };
            OffsetRange {
                end: range.start.saturating_add(share.min(backlog) as i64),
                ..range.clone()
            }
        })
        .collect()
}

/// Whether a batch runs now with `available` offsets: always, unless `min_offsets` asks for more
/// and less than `max_delay` passed since the last batch (`since_last`; `None` before the first).
pub fn ready_to_run(
    available: u64,
    min_offsets: Option<u64>,
    since_last: Option<Duration>,
    max_delay: Duration,
) -> bool {
    match (min_offsets, since_last) {
        (Some(min), Some(since)) if available < min => since >= max_delay,
        _ => true,
    }
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

    fn lens(ranges: &[OffsetRange]) -> Vec<u64> {
        ranges.iter().map(OffsetRange::len).collect()
    }

    #[test]
    fn the_limit_splits_in_proportion_to_backlog() {
        let available = [range(0, 100, 700), range(1, 0, 300), range(2, 5, 105)];
        // 1000 available, 100 allowed: 60, 30, 10.
        let limited = limit_ranges(&available, Some(100));
        assert_eq!(lens(&limited), [60, 30, 10]);
        assert_eq!(limited[0].start, 100);
        assert_eq!(limited[0].end, 160);
        // No limit, or one above what is there: everything.
        assert_eq!(limit_ranges(&available, None), available);
        assert_eq!(limit_ranges(&available, Some(5000)), available);
        // A small partition is not starved: its share below one offset rounds up.
        let skewed = [range(0, 0, 10_000), range(1, 0, 3)];
        assert_eq!(lens(&limit_ranges(&skewed, Some(100))), [99, 1]);
        // Empty partitions stay empty.
        let some_empty = [range(0, 7, 7), range(1, 0, 50)];
        assert_eq!(lens(&limit_ranges(&some_empty, Some(10))), [0, 10]);
    }

    #[test]
    fn batches_wait_for_enough_offsets_until_the_delay() {
        let delay = Duration::from_secs(60);
        assert!(ready_to_run(5, None, Some(Duration::ZERO), delay));
        assert!(!ready_to_run(
            5,
            Some(10),
            Some(Duration::from_secs(1)),
            delay
        ));
        assert!(ready_to_run(
            10,
            Some(10),
            Some(Duration::from_secs(1)),
            delay
        ));
        assert!(ready_to_run(5, Some(10), Some(delay), delay));
        // The first batch does not wait.
        assert!(ready_to_run(5, Some(10), None, delay));
    }
}
