//! A run's ranges cut into tasks: one task per non-empty range, then ranges over the record
//! limit cut into equal pieces, then (with `minPartitions`) the largest ranges cut further until
//! there are about that many tasks, as Spark's `KafkaOffsetRangeCalculator` does.

use super::OffsetRange;

/// Cut `range` into `parts` contiguous pieces of near-equal size.
fn cut(range: &OffsetRange, parts: u64) -> Vec<OffsetRange> {
    let parts = parts.clamp(1, range.len().max(1));
    let len = range.len();
    (0..parts)
        .map(|i| OffsetRange {
            topic: range.topic.clone(),
            partition: range.partition,
            start: range.start + (len * i / parts) as i64,
            end: range.start + (len * (i + 1) / parts) as i64,
        })
        .collect()
}

/// The tasks of a run: each task reads one range. `max_records` caps the offsets of a task
/// (`maxRecordsPerPartition`, else the configured default); `min_partitions` asks for at least
/// that many tasks. With nothing to read, one task that reads nothing.
pub fn split_ranges(
    ranges: &[OffsetRange],
    min_partitions: Option<usize>,
    max_records: u64,
) -> Vec<Vec<OffsetRange>> {
    let max_records = max_records.max(1);
    let mut pieces: Vec<OffsetRange> = ranges
        .iter()
        .filter(|r| !r.is_empty())
        .flat_map(|r| cut(r, r.len().div_ceil(max_records)))
        .collect();
    if let Some(min) = min_partitions
        && min > pieces.len()
    {
        let total: u64 = pieces.iter().map(OffsetRange::len).sum();
        let ideal = total as f64 / min as f64;
        pieces = pieces
            .iter()
            .flat_map(|r| {
                if r.len() as f64 > ideal && ideal > 0.0 {
                    cut(r, (r.len() as f64 / ideal).ceil() as u64)
                } else {
                    vec![r.clone()]
                }
            })
            .collect();
    }
    if pieces.is_empty() {
        return vec![Vec::new()];
    }
    pieces.into_iter().map(|r| vec![r]).collect()
}

/// The tasks of a streaming micro-batch: [`split_ranges`]'s pieces, packed into at most
/// `max_tasks` tasks (several ranges to a task, read one after the other by one consumer) unless
/// that would put more than `max_records` offsets in a task. Micro-batches are small and frequent:
/// a task per partition would pay a consumer's start for every partition of every batch.
pub fn pack_ranges(
    ranges: &[OffsetRange],
    min_partitions: Option<usize>,
    max_records: u64,
    max_tasks: usize,
) -> Vec<Vec<OffsetRange>> {
    let pieces: Vec<OffsetRange> = split_ranges(ranges, min_partitions, max_records)
        .into_iter()
        .flatten()
        .collect();
    let total: u64 = pieces.iter().map(OffsetRange::len).sum();
    let tasks = max_tasks
        .max(min_partitions.unwrap_or(1))
        .max(total.div_ceil(max_records.max(1)) as usize)
        .max(1);
    if pieces.len() <= tasks {
        return if pieces.is_empty() {
            vec![Vec::new()]
        } else {
            pieces.into_iter().map(|r| vec![r]).collect()
        };
    }
    // Largest first, each into the task holding the fewest offsets so far.
    let mut order = pieces;
    order.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    let mut bins: Vec<(u64, Vec<OffsetRange>)> = vec![(0, Vec::new()); tasks];
    for piece in order {
        let (load, bin) = bins
            .iter_mut()
            .min_by_key(|(load, _)| *load)
            .expect("at least one task");
        *load += piece.len();
        bin.push(piece);
    }
    bins.into_iter()
        .map(|(_, mut bin)| {
            bin.sort();
            bin
        })
        .filter(|bin| !bin.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(partition: i32, start: i64, end: i64) -> OffsetRange {
        OffsetRange {
            topic: "t".into(),
            partition,
            start,
            end,
        }
    }

    fn flat(tasks: &[Vec<OffsetRange>]) -> Vec<String> {
        tasks
            .iter()
            .map(|t| {
                t.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .collect()
    }

    #[test]
    fn one_task_per_range_and_none_for_empty_ones() {
        let tasks = split_ranges(&[r(0, 0, 10), r(1, 5, 5), r(2, 3, 4)], None, 1_000);
        assert_eq!(flat(&tasks), ["t-0 [0, 10)", "t-2 [3, 4)"]);
        assert_eq!(
            split_ranges(&[r(0, 5, 5)], Some(4), 1_000),
            vec![Vec::new()]
        );
        assert_eq!(split_ranges(&[], None, 1_000), vec![Vec::new()]);
    }

    #[test]
    fn record_limit_cuts_ranges_into_equal_pieces() {
        let tasks = split_ranges(&[r(0, 0, 10), r(1, 0, 3)], None, 4);
        assert_eq!(
            flat(&tasks),
            ["t-0 [0, 3)", "t-0 [3, 6)", "t-0 [6, 10)", "t-1 [0, 3)"]
        );
    }

    #[test]
    fn min_partitions_cuts_the_large_ranges() {
        let tasks = split_ranges(&[r(0, 0, 90), r(1, 0, 10)], Some(4), 1_000);
        // Ideal size 25: the 90-offset range becomes 4 pieces, the small one stays.
        assert_eq!(
            flat(&tasks),
            [
                "t-0 [0, 22)",
                "t-0 [22, 45)",
                "t-0 [45, 67)",
                "t-0 [67, 90)",
                "t-1 [0, 10)"
            ]
        );
        // Pieces never get smaller than one offset.
        let tasks = split_ranges(&[r(0, 0, 2)], Some(8), 1_000);
        assert_eq!(flat(&tasks), ["t-0 [0, 1)", "t-0 [1, 2)"]);
    }

    #[test]
    fn micro_batch_ranges_are_packed_into_a_few_balanced_tasks() {
        let ranges: Vec<OffsetRange> = (0..20).map(|p| r(p, 0, 250)).collect();
        let tasks = pack_ranges(&ranges, None, 1_000_000, 2);
        assert_eq!(tasks.len(), 2);
        assert!(tasks.iter().all(|t| t.len() == 10));
        let mut all: Vec<OffsetRange> = tasks.into_iter().flatten().collect();
        all.sort();
        assert_eq!(all, ranges);
        // The record limit still holds: more tasks when the batch is large.
        let tasks = pack_ranges(&ranges, None, 1_000, 2);
        assert_eq!(tasks.len(), 5);
        assert!(
            tasks
                .iter()
                .all(|t| t.iter().map(OffsetRange::len).sum::<u64>() <= 1_000)
        );
        // Few ranges: one task each; none: one empty task.
        assert_eq!(pack_ranges(&ranges[..1], None, 1_000, 4).len(), 1);
        assert_eq!(pack_ranges(&[], None, 1_000, 4), vec![Vec::new()]);
    }

    #[test]
    fn pieces_cover_every_offset_once() {
        let ranges = [r(0, 7, 1_000), r(1, 0, 333), r(2, 100, 101)];
        for (min, max) in [(None, 7), (Some(13), 1_000), (Some(50), 64)] {
            let tasks = split_ranges(&ranges, min, max);
            for range in &ranges {
                let mut pieces: Vec<&OffsetRange> = tasks
                    .iter()
                    .flatten()
                    .filter(|p| p.partition == range.partition)
                    .collect();
                pieces.sort();
                assert_eq!(pieces.first().unwrap().start, range.start);
                assert_eq!(pieces.last().unwrap().end, range.end);
                for w in pieces.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                assert!(pieces.iter().all(|p| !p.is_empty() && p.len() <= max));
            }
        }
    }
}
