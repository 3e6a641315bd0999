//! Which files a streaming file source (`parquet`, `csv`, `json` over a directory) reads in a
//! micro-batch (issue 19, being built), as Spark's `FileStreamSource`: files not read before,
//! oldest first (`latestFirst` for newest first), at most `maxFilesPerTrigger` of them, and none
//! older than `maxFileAge` before the newest file seen (that limit is ignored when both
//! `latestFirst` and `maxFilesPerTrigger` are set, as in Spark, since old files would otherwise
//! never be read). Each file is read once: the query's checkpoint records the files of each
//! batch, and a file already recorded is never chosen again.

use std::collections::HashSet;
use std::time::Duration;

use faisca_common::{Error, Result};

/// `maxFileAge` unless set (Spark's default: a week).
pub const DEFAULT_MAX_FILE_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// A streaming file source's batch options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStreamOptions {
    /// Most files per batch.
    pub max_files_per_trigger: Option<usize>,
    /// Newest files first.
    pub latest_first: bool,
    /// Files older than this before the newest file are skipped.
    pub max_file_age: Duration,
}

impl Default for FileStreamOptions {
    fn default() -> Self {
        FileStreamOptions {
            max_files_per_trigger: None,
            latest_first: false,
            max_file_age: DEFAULT_MAX_FILE_AGE,
        }
    }
}

impl FileStreamOptions {
    /// The batch options among `(name, value)` pairs (names in any case); other names are left
    /// to the format.
    pub fn parse<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let mut options = FileStreamOptions::default();
        for (name, value) in pairs {
            match name.to_ascii_lowercase().as_str() {
                "maxfilespertrigger" => {
                    options.max_files_per_trigger = Some(
                        value
                            .trim()
                            .parse::<usize>()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| {
                                Error::user(format!(
                                    "file source option 'maxFilesPerTrigger' is '{value}': expected a positive whole number"
                                ))
                            })?,
                    )
                }
                "latestfirst" => {
                    options.latest_first = match value.trim().to_ascii_lowercase().as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(Error::user(format!(
                                "file source option 'latestFirst' is '{value}': expected true or false"
                            )));
                        }
                    }
                }
                "maxfileage" => {
                    options.max_file_age = faisca_common::config::parse_duration(value)
                        .map_err(|_| {
                            Error::user(format!(
                                "file source option 'maxFileAge' is '{value}': expected a duration such as 7d, 12h or 30m"
                            ))
                        })?
                }
                _ => {}
            }
        }
        Ok(options)
    }
}

/// A file in the source's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    /// Its URL or path.
    pub path: String,
    /// When it was last modified, in ms since the epoch.
    pub modified_ms: i64,
}

/// The files the next batch reads, in reading order: of `listing`, those not in `seen`, as
/// `options` choose them.
pub fn next_files(
    listing: &[ListedFile],
    seen: &HashSet<String>,
    options: &FileStreamOptions,
) -> Vec<ListedFile> {
    let newest = listing.iter().map(|f| f.modified_ms).max().unwrap_or(0);
    let age_applies = !(options.latest_first && options.max_files_per_trigger.is_some());
    let oldest_allowed =
        newest.saturating_sub(i64::try_from(options.max_file_age.as_millis()).unwrap_or(i64::MAX));
    let mut fresh: Vec<ListedFile> = listing
        .iter()
        .filter(|f| !seen.contains(&f.path))
        .filter(|f| !age_applies || f.modified_ms >= oldest_allowed)
        .cloned()
        .collect();
    fresh.sort_by(|a, b| (a.modified_ms, &a.path).cmp(&(b.modified_ms, &b.path)));
    if options.latest_first {
        fresh.reverse();
    }
    if let Some(max) = options.max_files_per_trigger {
        fresh.truncate(max);
    }
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, modified_ms: i64) -> ListedFile {
        ListedFile {
            path: path.into(),
            modified_ms,
        }
    }

    fn paths(files: &[ListedFile]) -> Vec<&str> {
        files.iter().map(|f| f.path.as_str()).collect()
    }

    #[test]
    fn each_file_once_oldest_first_limited_per_batch() {
        let listing = [file("c", 30), file("a", 10), file("b", 20), file("d", 30)];
        let options = FileStreamOptions::parse([("maxFilesPerTrigger", "2")]).unwrap();
        let mut seen = HashSet::new();
        let first = next_files(&listing, &seen, &options);
        assert_eq!(paths(&first), ["a", "b"]);
        seen.extend(first.into_iter().map(|f| f.path));
        assert_eq!(paths(&next_files(&listing, &seen, &options)), ["c", "d"]);
        let latest = FileStreamOptions::parse([("latestFirst", "true")]).unwrap();
        assert_eq!(
            paths(&next_files(&listing, &HashSet::new(), &latest)),
            ["d", "c", "b", "a"]
        );
    }

    #[test]
    fn old_files_are_skipped_unless_latest_first_with_a_limit() {
        let day = 24 * 3600 * 1000;
        let listing = [file("old", 0), file("new", 10 * day)];
        let week = FileStreamOptions::default();
        assert_eq!(
            paths(&next_files(&listing, &HashSet::new(), &week)),
            ["new"]
        );
        let both = FileStreamOptions::parse([("latestFirst", "true"), ("maxFilesPerTrigger", "5")])
            .unwrap();
        assert_eq!(
            paths(&next_files(&listing, &HashSet::new(), &both)),
            ["new", "old"]
        );
        let long = FileStreamOptions::parse([("maxFileAge", "30d")]).unwrap();
        assert_eq!(
            paths(&next_files(&listing, &HashSet::new(), &long)),
            ["old", "new"]
        );
        let e = FileStreamOptions::parse([("maxFilesPerTrigger", "0")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("'maxFilesPerTrigger' is '0'"), "{e}");
        let e = FileStreamOptions::parse([("latestFirst", "yes")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("true or false"), "{e}");
    }
}
