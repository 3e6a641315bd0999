//! The log of a streaming file sink, `<path>/_faisca_metadata/<batch>`, as Spark's
//! `_spark_metadata`: each committed micro-batch lists the files it added. The log, not the
//! directory, says what the output holds: a file written by a batch that never committed (a
//! driver stopped between publishing files and logging them) is not in it, and readers of the
//! directory that know the log read only logged files — so every batch's rows appear exactly
//! once however often the batch ran.
//!
//! Committing a batch creates its entry with a conditional write; a batch whose entry exists was
//! committed by an earlier attempt, and committing it again changes nothing (the driver's
//! `commit(batch_id, reports)` may run again after a crash).

use std::sync::Arc;

use faisca_common::{Error, Result};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

/// The log's directory under the sink's path.
pub const LOG_DIR: &str = "_faisca_metadata";
const VERSION: &str = "v1";

/// One file a batch added, relative to the sink's path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedFile {
    /// The file's path under the sink's directory (e.g. `day=1/part-00000-….parquet`).
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// `add` (files are only ever added for now; compaction will remove).
    pub action: String,
}

impl LoggedFile {
    /// A file added.
    pub fn added(path: impl Into<String>, size: u64) -> Self {
        LoggedFile {
            path: path.into(),
            size,
            action: "add".to_string(),
        }
    }
}

/// The log of one sink directory.
#[derive(Debug, Clone)]
pub struct FileSinkLog {
    url: String,
    store: Arc<dyn ObjectStore>,
    dir: Path,
}

impl FileSinkLog {
    /// The log of the sink whose directory is `root` in `store`; `url` names it in messages.
    pub fn new(url: &str, store: Arc<dyn ObjectStore>, root: &Path) -> Self {
        FileSinkLog {
            url: url.to_string(),
            store,
            dir: root.clone().join(LOG_DIR),
        }
    }

    /// Whether the sink directory at `root` has a log (so its readers read only logged files).
    pub async fn exists(store: &dyn ObjectStore, root: &Path) -> Result<bool> {
        let mut listing = store.list(Some(&root.clone().join(LOG_DIR)));
        match listing.try_next().await {
            Ok(first) => Ok(first.is_some()),
            Err(e) => Err(Error::external(format!("listing {root}/{LOG_DIR}: {e}"))),
        }
    }

    fn store_error(&self, what: &str, e: object_store::Error) -> Error {
        Error::external(format!(
            "file sink log at '{}/{LOG_DIR}': {what}: {e}",
            self.url
        ))
    }

    /// Records that `batch` added `files`. Returns `false` when the batch was committed before
    /// (its entry stays as it was).
    pub async fn commit(&self, batch: u64, files: &[LoggedFile]) -> Result<bool> {
        let mut body = String::from(VERSION);
        for file in files {
            body.push('\n');
            body.push_str(
                &serde_json::to_string(file)
                    .map_err(|e| Error::internal(format!("encoding a file sink log line: {e}")))?,
            );
        }
        let path = self.dir.clone().join(batch.to_string());
        faisca_connectors::log_dir::create_once(self.store.as_ref(), &path, body.into_bytes())
            .await
            .map_err(|e| self.store_error(&format!("writing {batch}"), e))
    }

    /// Whether `batch` is committed.
    pub async fn is_committed(&self, batch: u64) -> Result<bool> {
        match self
            .store
            .head(&self.dir.clone().join(batch.to_string()))
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.store_error(&format!("reading {batch}"), e)),
        }
    }

    /// Every logged file, in batch order.
    pub async fn files(&self) -> Result<Vec<LoggedFile>> {
        let batches = faisca_connectors::log_dir::entry_numbers(self.store.as_ref(), &self.dir)
            .await
            .map_err(|e| self.store_error("listing", e))?;
        let mut files = Vec::new();
        for batch in batches {
            let bytes = self
                .store
                .get(&self.dir.clone().join(batch.to_string()))
                .await
                .map_err(|e| self.store_error(&format!("reading {batch}"), e))?
                .bytes()
                .await
                .map_err(|e| self.store_error(&format!("reading {batch}"), e))?;
            files.extend(parse_entry(&bytes).map_err(|why| {
                Error::user(format!(
                    "file sink log at '{}/{LOG_DIR}': entry {batch} {why}; expected the log a Faísca streaming query wrote",
                    self.url
                ))
            })?);
        }
        Ok(files)
    }
}

/// The files of one log entry, or why it is not one.
fn parse_entry(bytes: &[u8]) -> std::result::Result<Vec<LoggedFile>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "is not text".to_string())?;
    let mut lines = text.lines();
    if lines.next() != Some(VERSION) {
        return Err(format!("does not start with \"{VERSION}\""));
    }
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|e| format!("has a line that is not a file ({e})"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use object_store::PutPayload;
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn a_batch_is_logged_once_and_the_log_lists_every_batch_in_order() {
        let store = Arc::new(InMemory::new());
        let root = Path::from("out");
        assert!(!FileSinkLog::exists(store.as_ref(), &root).await.unwrap());
        let log = FileSinkLog::new("memory:///out", store.clone(), &root);
        let first = [LoggedFile::added("part-0-a.parquet", 10)];
        assert!(log.commit(0, &first).await.unwrap());
        // A second commit of batch 0 (after a crash) keeps the first one's files.
        assert!(
            !log.commit(0, &[LoggedFile::added("part-0-b.parquet", 11)])
                .await
                .unwrap()
        );
        assert!(log.commit(2, &[]).await.unwrap());
        for b in [1, 10] {
            log.commit(b, &[LoggedFile::added(format!("part-{b}.parquet"), b)])
                .await
                .unwrap();
        }
        assert!(log.is_committed(2).await.unwrap() && !log.is_committed(3).await.unwrap());
        let paths: Vec<String> = log
            .files()
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(
            paths,
            ["part-0-a.parquet", "part-1.parquet", "part-10.parquet"]
        );
        assert!(FileSinkLog::exists(store.as_ref(), &root).await.unwrap());
    }

    #[tokio::test]
    async fn a_damaged_entry_is_named() {
        let store = Arc::new(InMemory::new());
        store
            .put(
                &Path::from("out/_faisca_metadata/4"),
                PutPayload::from_static(b"v1\nnot json"),
            )
            .await
            .unwrap();
        let log = FileSinkLog::new("memory:///out", store, &Path::from("out"));
        let e = log.files().await.unwrap_err().to_string();
        assert!(e.contains("entry 4") && e.contains("not a file"), "{e}");
    }
}
