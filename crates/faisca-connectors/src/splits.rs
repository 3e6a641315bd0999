//! Size-based file splits: Spark's `FilePartition.maxSplitBytes` and next-fit packing.
//!
//! `maxSplitBytes = min(maxPartitionBytes, max(openCostInBytes, bytesPerCore))` where
//! `bytesPerCore = Σ(file size + openCostInBytes) / parallelism`. A file larger than
//! `maxSplitBytes` is cut into pieces of at most that size; with known row groups the cuts fall on
//! row-group boundaries (a row group larger than the limit stays whole). Pieces are sorted by size,
//! largest first, and packed next-fit into tasks, each piece counting its size plus the open cost.
//! All ranges are half-open `[start, end)` byte ranges.

use std::ops::Range;

/// A file to be scanned.
#[derive(Debug, Clone, PartialEq)]
pub struct FileInput {
    /// Location, as the scan names it.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Byte ranges of the file's row groups in file order, when known. Splits fall only on their
    /// boundaries; without them a large file is read whole by one task.
    pub row_groups: Option<Vec<Range<u64>>>,
}

/// A part of one file read by a task: `[range.start, range.end)`. A range covering the whole file
/// means "the whole file".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePiece {
    /// Location of the file.
    pub path: String,
    /// Size of the whole file.
    pub file_size: u64,
    /// The bytes of this piece.
    pub range: Range<u64>,
}

impl FilePiece {
    /// Whether the piece is the whole file.
    pub fn is_whole_file(&self) -> bool {
        self.range.start == 0 && self.range.end == self.file_size
    }

    fn len(&self) -> u64 {
        self.range.end - self.range.start
    }
}

/// Spark's `maxSplitBytes`.
pub fn max_split_bytes(
    files: &[FileInput],
    max_partition_bytes: u64,
    open_cost: u64,
    parallelism: usize,
) -> u64 {
    let total: u64 = files.iter().map(|f| f.size + open_cost).sum();
    let per_core = total / parallelism.max(1) as u64;
    max_partition_bytes.min(open_cost.max(per_core)).max(1)
}

/// Cut one file into pieces of at most `max_split` bytes (on row-group boundaries when known).
pub fn split_file(file: &FileInput, max_split: u64) -> Vec<FilePiece> {
    let piece = |range: Range<u64>| FilePiece {
        path: file.path.clone(),
        file_size: file.size,
        range,
    };
    if file.size <= max_split {
        return vec![piece(0..file.size)];
    }
    let Some(groups) = file.row_groups.as_ref().filter(|g| g.len() > 1) else {
        return vec![piece(0..file.size)];
    };
    // Cut points are row-group starts; the first piece starts at 0 and the last ends at the file
    // size, so the footer and magic bytes belong to some piece and every row group to exactly one.
    let mut pieces = Vec::new();
    let mut start = 0u64;
    for next in groups.iter().skip(1) {
        let cut = next.start;
        if cut - start >= max_split || (cut > start && next.end - start > max_split) {
            pieces.push(piece(start..cut));
            start = cut;
        }
    }
    pieces.push(piece(start..file.size));
    pieces
}

/// Plan the tasks of one scan: each inner `Vec` is what one task reads.
pub fn plan_splits(
    files: &[FileInput],
    max_partition_bytes: u64,
    open_cost: u64,
    parallelism: usize,
) -> Vec<Vec<FilePiece>> {
    let max_split = max_split_bytes(files, max_partition_bytes, open_cost, parallelism);
    let mut pieces: Vec<FilePiece> = files
        .iter()
        .flat_map(|f| split_file(f, max_split))
        .collect();
    // Largest first; ties keep input order so that plans are deterministic.
    pieces.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut tasks: Vec<Vec<FilePiece>> = Vec::new();
    let mut current: Vec<FilePiece> = Vec::new();
    let mut current_size = 0u64;
    for piece in pieces {
        if !current.is_empty() && current_size + piece.len() > max_split {
            tasks.push(std::mem::take(&mut current));
            current_size = 0;
        }
        current_size += piece.len() + open_cost;
        current.push(piece);
    }
    if !current.is_empty() {
        tasks.push(current);
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn file_with_row_groups(path: &str, size: u64, group: u64) -> FileInput {
        let groups = (0..size.div_ceil(group))
            .map(|i| (4 + i * group).min(size)..(4 + (i + 1) * group).min(size - 8))
            .collect();
        FileInput {
            path: path.into(),
            size,
            row_groups: Some(groups),
        }
    }

    #[test]
    fn a_300_mb_file_gives_3_tasks_at_128_mib() {
        let file = file_with_row_groups("big.parquet", 300_000_000, MIB);
        let tasks = plan_splits(&[file], 128 * MIB, 4 * MIB, 2);
        assert_eq!(tasks.len(), 3);
        // Every byte is read exactly once, in half-open ranges.
        let mut ranges: Vec<_> = tasks.iter().flatten().map(|p| p.range.clone()).collect();
        ranges.sort_by_key(|r| r.start);
        assert_eq!(ranges.first().unwrap().start, 0);
        assert_eq!(ranges.last().unwrap().end, 300_000_000);
        for w in ranges.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        assert!(
            tasks
                .iter()
                .flatten()
                .all(|p| p.range.end - p.range.start <= 128 * MIB)
        );
    }

    #[test]
    fn cuts_fall_on_row_group_starts() {
        let file = file_with_row_groups("f", 50 * MIB, 3 * MIB);
        let starts: Vec<u64> = file
            .row_groups
            .as_ref()
            .unwrap()
            .iter()
            .map(|r| r.start)
            .collect();
        for piece in split_file(&file, 10 * MIB) {
            assert!(
                piece.range.start == 0 || starts.contains(&piece.range.start),
                "{piece:?}"
            );
        }
    }

    #[test]
    fn a_large_file_without_row_groups_stays_whole() {
        let file = FileInput {
            path: "x.parquet".into(),
            size: 500 * MIB,
            row_groups: None,
        };
        assert_eq!(plan_splits(&[file], 128 * MIB, 4 * MIB, 2).len(), 1);
    }

    #[test]
    fn a_single_huge_row_group_is_not_split() {
        let file = FileInput {
            path: "x".into(),
            size: 400 * MIB,
            row_groups: Some(std::iter::once(4..400 * MIB - 100).collect()),
        };
        assert_eq!(split_file(&file, 128 * MIB).len(), 1);
    }

    #[test]
    fn one_hundred_small_files_pack_into_few_tasks() {
        let files: Vec<FileInput> = (0..100)
            .map(|i| FileInput {
                path: format!("part-{i}.parquet"),
                size: 100_000,
                row_groups: None,
            })
            .collect();
        let tasks = plan_splits(&files, 128 * MIB, 4 * MIB, 2);
        // Each small file costs its size + 4 MiB open cost: ~410 MiB in all, 205 MiB per core,
        // so maxSplitBytes = 128 MiB and 31 files fit in one task.
        assert_eq!(tasks.len(), 4, "{}", tasks.len());
        assert_eq!(tasks.iter().map(Vec::len).sum::<usize>(), 100);
    }

    #[test]
    fn parallelism_spreads_small_inputs() {
        let files: Vec<FileInput> = (0..8)
            .map(|i| FileInput {
                path: format!("f{i}"),
                size: 10 * MIB,
                row_groups: None,
            })
            .collect();
        // 8 × (10 + 4) MiB / 4 cores = 28 MiB per task.
        let tasks = plan_splits(&files, 128 * MIB, 4 * MIB, 4);
        assert_eq!(tasks.len(), 4);
    }

    #[test]
    fn max_split_bytes_follows_spark() {
        let f = |size| FileInput {
            path: "f".into(),
            size,
            row_groups: None,
        };
        assert_eq!(max_split_bytes(&[f(1000)], 128 * MIB, 4 * MIB, 8), 4 * MIB);
        assert_eq!(
            max_split_bytes(&[f(10_000 * MIB)], 128 * MIB, 4 * MIB, 8),
            128 * MIB
        );
        assert_eq!(
            max_split_bytes(&[f(96 * MIB)], 128 * MIB, 4 * MIB, 4),
            25 * MIB
        );
    }

    #[test]
    fn no_files_no_tasks() {
        assert!(plan_splits(&[], 128 * MIB, 4 * MIB, 2).is_empty());
    }
}
