//! The offset log of a Kafka source at `checkpointLocation`, laid out as Spark's:
//! `offsets/<batch>` holds the ranges a run planned (written before the run starts) and
//! `commits/<batch>` marks that run's output as delivered (written after its sink committed, or
//! after the client received the whole result).
//!
//! The next run looks at the last planned batch: committed, so it plans a new batch (from where
//! that one stopped, for `startingOffsets = latest`); not committed, so the run that planned it
//! died between the two writes and this run redoes exactly its ranges — nothing lost, nothing
//! read twice into one output.

use std::sync::Arc;

use bytes::Bytes;
use faisca_common::{Error, Result};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::OffsetRange;

const OFFSETS: &str = "offsets";
const COMMITS: &str = "commits";
const VERSION: u32 = 1;

/// The offset log at one checkpoint location.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    url: String,
    store: Arc<dyn ObjectStore>,
    root: Path,
}

/// One `offsets/<batch>` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OffsetsEntry {
    /// Format version.
    pub version: u32,
    /// The batch (run) number, from 0.
    pub batch_id: u64,
    /// What the source reads (`subscribe=…`, `subscribePattern=…` or `assign=…`), for people
    /// reading the log: never its brokers or credentials.
    pub source: String,
    /// Every planned range, empty ones included.
    pub ranges: Vec<OffsetRange>,
}

/// The last planned batch and whether it was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedBatch {
    /// What was planned.
    pub entry: OffsetsEntry,
    /// Whether `commits/<batch>` exists.
    pub committed: bool,
}

/// What the next run does, from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextRun {
    /// The last run died before its commit: redo its ranges under its batch number.
    Redo(OffsetsEntry),
    /// Plan a new batch; `previous` are the ranges of the last committed one, if any.
    Fresh {
        /// The new batch's number.
        batch_id: u64,
        /// The last committed batch's ranges.
        previous: Option<Vec<OffsetRange>>,
    },
}

impl Checkpoint {
    /// The log under `root` of `store`; `url` names it in messages.
    pub fn new(url: &str, store: Arc<dyn ObjectStore>, root: Path) -> Self {
        Checkpoint {
            url: url.to_string(),
            store,
            root,
        }
    }

    /// The location as the user gave it.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, dir: &str, batch: u64) -> Path {
        self.root.clone().join(dir).join(batch.to_string())
    }

    fn store_error(&self, what: &str, e: object_store::Error) -> Error {
        Error::external(format!("Kafka checkpoint at '{}': {what}: {e}", self.url))
    }

    /// Batch numbers present in `dir`, ascending.
    async fn batches(&self, dir: &str) -> Result<Vec<u64>> {
        crate::log_dir::entry_numbers(self.store.as_ref(), &self.root.clone().join(dir))
            .await
            .map_err(|e| self.store_error(&format!("listing {dir}/"), e))
    }

    async fn read_offsets(&self, batch: u64) -> Result<OffsetsEntry> {
        let path = self.path(OFFSETS, batch);
        let bytes = self
            .store
            .get(&path)
            .await
            .map_err(|e| self.store_error(&format!("reading {OFFSETS}/{batch}"), e))?
            .bytes()
            .await
            .map_err(|e| self.store_error(&format!("reading {OFFSETS}/{batch}"), e))?;
        let entry: OffsetsEntry = serde_json::from_slice(&bytes).map_err(|e| {
            Error::user(format!(
                "Kafka checkpoint at '{}': {OFFSETS}/{batch} is not an offsets entry ({e}); expected the JSON a Faísca run writes — point 'checkpointLocation' at a directory only this source uses",
                self.url
            ))
        })?;
        if entry.version != VERSION || entry.batch_id != batch {
            return Err(Error::user(format!(
                "Kafka checkpoint at '{}': {OFFSETS}/{batch} holds version {} batch {}; expected version {VERSION} batch {batch}",
                self.url, entry.version, entry.batch_id
            )));
        }
        Ok(entry)
    }

    /// The last planned batch, if any.
    pub async fn last_batch(&self) -> Result<Option<LoggedBatch>> {
        let Some(&last) = self.batches(OFFSETS).await?.last() else {
            return Ok(None);
        };
        let entry = self.read_offsets(last).await?;
        let committed = self.batches(COMMITS).await?.contains(&last);
        Ok(Some(LoggedBatch { entry, committed }))
    }

    /// What the next run does. A streaming query's checkpoint (it has a `metadata` file) is
    /// refused: its log means something else.
    pub async fn next_run(&self) -> Result<NextRun> {
        match self.store.head(&self.root.clone().join("metadata")).await {
            Ok(_) => {
                return Err(Error::user(format!(
                    "Kafka checkpoint at '{}' is a streaming query's checkpoint (it has a 'metadata' file), not a batch source's; give this source a 'checkpointLocation' of its own",
                    self.url
                )));
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.store_error("reading metadata", e)),
        }
        Ok(match self.last_batch().await? {
            None => NextRun::Fresh {
                batch_id: 0,
                previous: None,
            },
            Some(LoggedBatch {
                entry,
                committed: false,
            }) => NextRun::Redo(entry),
            Some(LoggedBatch {
                entry,
                committed: true,
            }) => NextRun::Fresh {
                batch_id: entry.batch_id.checked_add(1).ok_or_else(|| {
                    Error::user(format!(
                        "Kafka checkpoint at '{}': batch {} is committed and is the last batch number there is; expected a log a Faísca run wrote (batches count from 0)",
                        self.url, entry.batch_id
                    ))
                })?,
                previous: Some(entry.ranges),
            },
        })
    }

    /// Record a new batch's ranges before its run starts. Fails if another run recorded that
    /// batch first.
    pub async fn record_offsets(
        &self,
        batch_id: u64,
        source: &str,
        ranges: &[OffsetRange],
    ) -> Result<()> {
        let entry = OffsetsEntry {
            version: VERSION,
            batch_id,
            source: source.to_string(),
            ranges: ranges.to_vec(),
        };
        let body = serde_json::to_vec_pretty(&entry)
            .map_err(|e| Error::internal(format!("encoding a Kafka offsets entry: {e}")))?;
        let path = self.path(OFFSETS, batch_id);
        let created = crate::log_dir::create_once(self.store.as_ref(), &path, body)
            .await
            .map_err(|e| self.store_error(&format!("writing {OFFSETS}/{batch_id}"), e))?;
        if !created {
            return Err(Error::external_final(format!(
                "Kafka checkpoint at '{}': batch {batch_id} was planned by another run at the same time; runs sharing a checkpoint must not overlap",
                self.url
            )));
        }
        Ok(())
    }

    /// Mark a batch's output as delivered. Idempotent.
    pub async fn record_commit(&self, batch_id: u64) -> Result<()> {
        let body = serde_json::json!({ "version": VERSION, "batchId": batch_id }).to_string();
        self.store
            .put(
                &self.path(COMMITS, batch_id),
                PutPayload::from(Bytes::from(body)),
            )
            .await
            .map_err(|e| self.store_error(&format!("writing {COMMITS}/{batch_id}"), e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    fn range(start: i64, end: i64) -> OffsetRange {
        OffsetRange {
            topic: "t".into(),
            partition: 0,
            start,
            end,
        }
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint::new("memory:///cp", Arc::new(InMemory::new()), Path::from("cp"))
    }

    #[tokio::test]
    async fn a_committed_last_batch_number_is_refused_not_overflowed() {
        let cp = checkpoint();
        cp.record_offsets(u64::MAX, "src", &[range(0, 10)])
            .await
            .unwrap();
        cp.record_commit(u64::MAX).await.unwrap();
        let e = cp.next_run().await.unwrap_err().to_string();
        assert!(e.contains("the last batch number there is"), "{e}");
    }

    #[tokio::test]
    async fn runs_move_on_only_after_a_commit() {
        let cp = checkpoint();
        assert_eq!(
            cp.next_run().await.unwrap(),
            NextRun::Fresh {
                batch_id: 0,
                previous: None
            }
        );
        cp.record_offsets(0, "src", &[range(0, 10)]).await.unwrap();
        // Died before the commit: the next run redoes batch 0.
        let NextRun::Redo(entry) = cp.next_run().await.unwrap() else {
            panic!("expected a redo")
        };
        assert_eq!((entry.batch_id, entry.ranges), (0, vec![range(0, 10)]));
        cp.record_commit(0).await.unwrap();
        cp.record_commit(0).await.unwrap();
        assert_eq!(
            cp.next_run().await.unwrap(),
            NextRun::Fresh {
                batch_id: 1,
                previous: Some(vec![range(0, 10)])
            }
        );
        cp.record_offsets(1, "src", &[range(10, 12)]).await.unwrap();
        let e = cp
            .record_offsets(1, "src", &[range(10, 13)])
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("batch 1 was planned by another run"), "{e}");
        // Batches are ordered as numbers, not as text.
        for b in 2..=10 {
            cp.record_offsets(b, "src", &[range(b as i64, b as i64 + 1)])
                .await
                .unwrap();
            cp.record_commit(b).await.unwrap();
        }
        let last = cp.last_batch().await.unwrap().unwrap();
        assert_eq!(last.entry.batch_id, 10);
        assert!(last.committed);
    }

    #[tokio::test]
    async fn a_foreign_file_is_a_clear_error() {
        let cp = checkpoint();
        cp.store
            .put(
                &Path::from("cp/offsets/0"),
                PutPayload::from_static(b"v1\n{}"),
            )
            .await
            .unwrap();
        let e = cp.next_run().await.unwrap_err().to_string();
        assert!(e.contains("offsets/0 is not an offsets entry"), "{e}");
    }

    #[tokio::test]
    async fn a_streaming_querys_checkpoint_is_refused() {
        let cp = checkpoint();
        cp.store
            .put(
                &Path::from("cp/metadata"),
                PutPayload::from_static(br#"{"id":"q"}"#),
            )
            .await
            .unwrap();
        let e = cp.next_run().await.unwrap_err().to_string();
        assert!(e.contains("a streaming query's checkpoint"), "{e}");
    }
}
