//! A streaming query's checkpoint, laid out as Spark's:
//!
//! * `metadata`: the query's id (stable across restarts) and what identifies the query — its
//!   sources and its number of state partitions — so that a checkpoint of another query is
//!   refused rather than resumed;
//! * `offsets/<batch>`: written **before** batch `batch` runs: `v1`, then a JSON line with the
//!   batch's watermark and timestamp, then one line per source with the offsets the batch ends
//!   at (each source's own JSON);
//! * `commits/<batch>`: written **after** the batch's sink committed: `v1`, then the watermark
//!   the next batch uses;
//! * `state/`: the stateful operators' versioned files (written by executors).
//!
//! A restart reads the last `offsets` entry: committed, so the next batch is new; not
//! committed, so the driver stopped between the two writes and the batch runs again with exactly
//! its recorded offsets. Offsets entries are created with a conditional write, so two runs of
//! one query cannot both plan a batch. The directory of a Kafka batch source's checkpoint has
//! `offsets/` and `commits/` but no `metadata`: it is refused here (and a streaming checkpoint
//! is refused there), because the two logs mean different things.

use std::sync::Arc;

use bytes::Bytes;
use faisca_common::{Error, Result};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

const METADATA: &str = "metadata";
const OFFSETS: &str = "offsets";
const COMMITS: &str = "commits";
const LOG_VERSION: &str = "v1";

/// What identifies a query in its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryMetadata {
    /// The query's id, kept across restarts.
    pub id: String,
    /// Each source's identity (its kind and what it reads, never credentials), in order.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Partitions of the query's state, fixed when the checkpoint is created.
    #[serde(default)]
    pub state_partitions: u32,
}

/// The batch-level line of an `offsets` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchMetadata {
    /// The watermark the batch runs with (ms since the epoch; 0 before any).
    pub batch_watermark_ms: i64,
    /// When the batch was planned (ms since the epoch): its processing time.
    pub batch_timestamp_ms: i64,
}

/// One `offsets/<batch>` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetsEntry {
    /// The batch number, from 0.
    pub batch_id: u64,
    /// Its watermark and timestamp.
    pub metadata: BatchMetadata,
    /// Where each source's part of the batch ends (each source's JSON), in source order.
    pub sources: Vec<String>,
}

/// Where a query resumes, from its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The query's id and identity.
    pub metadata: QueryMetadata,
    /// The last batch that committed and the watermark it handed on, if any.
    pub last_committed: Option<(OffsetsEntry, i64)>,
    /// A batch planned but never committed: it runs again with exactly these offsets.
    pub redo: Option<OffsetsEntry>,
}

impl Resume {
    /// The number of the batch the query runs next (a redo's, or the one after the last).
    pub fn next_batch_id(&self) -> u64 {
        match (&self.redo, &self.last_committed) {
            (Some(redo), _) => redo.batch_id,
            (None, Some((last, _))) => last.batch_id + 1,
            (None, None) => 0,
        }
    }
}

/// A streaming query's checkpoint directory.
#[derive(Debug, Clone)]
pub struct StreamCheckpoint {
    url: String,
    store: Arc<dyn ObjectStore>,
    root: Path,
}

impl StreamCheckpoint {
    /// The checkpoint under `root` of `store`; `url` names it in messages.
    pub fn new(url: &str, store: Arc<dyn ObjectStore>, root: Path) -> Self {
        StreamCheckpoint {
            url: url.to_string(),
            store,
            root,
        }
    }

    /// The location as the user gave it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The store the checkpoint is in.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// A directory of the checkpoint (`sources/0`, …).
    pub fn dir(&self, relative: &str) -> Path {
        relative
            .split('/')
            .fold(self.root.clone(), |path, part| path.join(part))
    }

    fn file(&self, dir: &str, batch: u64) -> Path {
        self.root.clone().join(dir).join(batch.to_string())
    }

    fn store_error(&self, what: &str, e: object_store::Error) -> Error {
        Error::external(format!(
            "streaming checkpoint at '{}': {what}: {e}",
            self.url
        ))
    }

    fn foreign(&self, what: &str, why: &str) -> Error {
        Error::user(format!(
            "streaming checkpoint at '{}': {what} {why}; expected a checkpoint that this query wrote — give each streaming query a 'checkpointLocation' of its own",
            self.url
        ))
    }

    async fn read(&self, path: &Path, what: &str) -> Result<Option<Bytes>> {
        match self.store.get(path).await {
            Ok(result) => {
                Ok(Some(result.bytes().await.map_err(|e| {
                    self.store_error(&format!("reading {what}"), e)
                })?))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.store_error(&format!("reading {what}"), e)),
        }
    }

    /// Batch numbers present in `dir`, ascending (files with other names are ignored).
    async fn batches(&self, dir: &str) -> Result<Vec<u64>> {
        faisca_connectors::log_dir::entry_numbers(self.store.as_ref(), &self.root.clone().join(dir))
            .await
            .map_err(|e| self.store_error(&format!("listing {dir}/"), e))
    }

    /// Opens the checkpoint for a query reading `sources` with `state_partitions`: creates its
    /// `metadata` (with a new id) when the directory is new, refuses a checkpoint of another
    /// query or of a Kafka batch source, and says where the query resumes.
    pub async fn open(&self, sources: &[String], state_partitions: u32) -> Result<Resume> {
        let metadata_path = self.root.clone().join(METADATA);
        let metadata = match self.read(&metadata_path, METADATA).await? {
            Some(bytes) => {
                let metadata: QueryMetadata = serde_json::from_slice(&bytes).map_err(|e| {
                    self.foreign("'metadata'", &format!("is not a query's metadata ({e})"))
                })?;
                self.check_identity(&metadata, sources, state_partitions)?;
                metadata
            }
            None => {
                if !self.batches(OFFSETS).await?.is_empty() {
                    return Err(self.foreign(
                        "the directory",
                        "has an offset log but no 'metadata': it is a Kafka batch source's checkpoint (its 'checkpointLocation' option), not a streaming query's",
                    ));
                }
                let metadata = QueryMetadata {
                    id: uuid::Uuid::new_v4().to_string(),
                    sources: sources.to_vec(),
                    state_partitions,
                };
                self.create_metadata(&metadata_path, &metadata).await?
            }
        };
        let offsets = self.batches(OFFSETS).await?;
        let commits = self.batches(COMMITS).await?;
        let Some(&last) = offsets.last() else {
            return Ok(Resume {
                metadata,
                last_committed: None,
                redo: None,
            });
        };
        let last_entry = self.read_offsets(last).await?;
        if commits.contains(&last) {
            if last == u64::MAX {
                return Err(self.foreign(
                    &format!("batch {last}"),
                    "is committed and is the last batch number there is; a query counts its batches from 0",
                ));
            }
            let watermark = self.read_commit(last).await?;
            return Ok(Resume {
                metadata,
                last_committed: Some((last_entry, watermark)),
                redo: None,
            });
        }
        // The last batch never committed: it runs again; the one before it did commit.
        let previous = match offsets.iter().rev().nth(1) {
            Some(&before) if commits.contains(&before) => Some((
                self.read_offsets(before).await?,
                self.read_commit(before).await?,
            )),
            Some(&before) => {
                return Err(self.foreign(
                    &format!("batches {before} and {last}"),
                    "are both planned and not committed; a query plans a batch only after the one before it committed",
                ));
            }
            None => None,
        };
        Ok(Resume {
            metadata,
            last_committed: previous,
            redo: Some(last_entry),
        })
    }

    fn check_identity(
        &self,
        metadata: &QueryMetadata,
        sources: &[String],
        state_partitions: u32,
    ) -> Result<()> {
        if metadata.sources != sources {
            return Err(self.foreign(
                &format!("query {}", metadata.id),
                &format!(
                    "read {:?}, and this query reads {sources:?}",
                    metadata.sources
                ),
            ));
        }
        if metadata.state_partitions != state_partitions {
            return Err(self.foreign(
                &format!("query {}", metadata.id),
                &format!(
                    "keeps its state in {} partitions, and this query asks for {state_partitions} (the number is fixed by the checkpoint: set faisca.streaming.statePartitions back, or start a new checkpoint)",
                    metadata.state_partitions
                ),
            ));
        }
        Ok(())
    }

    /// Writes `metadata` unless another run wrote one first; the one that is there wins.
    async fn create_metadata(
        &self,
        path: &Path,
        metadata: &QueryMetadata,
    ) -> Result<QueryMetadata> {
        let body = serde_json::to_vec(metadata)
            .map_err(|e| Error::internal(format!("encoding a query's metadata: {e}")))?;
        match self.create(path, body).await {
            Ok(()) => Ok(metadata.clone()),
            Err(Created::Exists) => {
                let bytes = self.read(path, METADATA).await?.unwrap_or_default();
                let theirs: QueryMetadata = serde_json::from_slice(&bytes).map_err(|e| {
                    self.foreign("'metadata'", &format!("is not a query's metadata ({e})"))
                })?;
                self.check_identity(&theirs, &metadata.sources, metadata.state_partitions)?;
                Ok(theirs)
            }
            Err(Created::Failed(e)) => Err(self.store_error("writing metadata", e)),
        }
    }

    /// Creates `path` with `body`, failing if it exists.
    async fn create(&self, path: &Path, body: Vec<u8>) -> std::result::Result<(), Created> {
        match faisca_connectors::log_dir::create_once(self.store.as_ref(), path, body).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Created::Exists),
            Err(e) => Err(Created::Failed(e)),
        }
    }

    async fn read_offsets(&self, batch: u64) -> Result<OffsetsEntry> {
        let what = format!("{OFFSETS}/{batch}");
        let bytes = self
            .read(&self.file(OFFSETS, batch), &what)
            .await?
            .ok_or_else(|| Error::external(format!("{what} disappeared while being read")))?;
        parse_offsets(batch, &bytes).map_err(|why| self.foreign(&what, &why))
    }

    async fn read_commit(&self, batch: u64) -> Result<i64> {
        let what = format!("{COMMITS}/{batch}");
        let bytes = self
            .read(&self.file(COMMITS, batch), &what)
            .await?
            .ok_or_else(|| Error::external(format!("{what} disappeared while being read")))?;
        parse_commit(&bytes).map_err(|why| self.foreign(&what, &why))
    }

    /// Checks that the query's stateful operator keeps state of the shape `schema` (one field a
    /// line): recorded in `state/_schema` by the checkpoint's first run, refused when a later
    /// run's differs (its state files could not be read as this query's state).
    pub async fn check_state_schema(&self, schema: &str) -> Result<()> {
        let path = self.root.clone().join("state").join("_schema");
        match self.read(&path, "state/_schema").await? {
            Some(recorded) if recorded.as_ref() == schema.as_bytes() => Ok(()),
            Some(recorded) => Err(self.foreign(
                "the state",
                &format!(
                    "was written by an aggregation with state [{}], and this query's is [{}] (a changed grouping or aggregate)",
                    String::from_utf8_lossy(&recorded).replace('\n', ", "),
                    schema.replace('\n', ", ")
                ),
            )),
            None => match self.create(&path, schema.as_bytes().to_vec()).await {
                Ok(()) | Err(Created::Exists) => Ok(()),
                Err(Created::Failed(e)) => Err(self.store_error("writing state/_schema", e)),
            },
        }
    }

    /// Records a batch's offsets before it runs. Fails if another run recorded that batch.
    pub async fn write_offsets(&self, entry: &OffsetsEntry) -> Result<()> {
        let body = render_offsets(entry)?;
        match self.create(&self.file(OFFSETS, entry.batch_id), body).await {
            Ok(()) => Ok(()),
            Err(Created::Exists) => Err(Error::external_final(format!(
                "streaming checkpoint at '{}': batch {} was planned by another run of this query; one query runs at a time per checkpoint",
                self.url, entry.batch_id
            ))),
            Err(Created::Failed(e)) => {
                Err(self.store_error(&format!("writing {OFFSETS}/{}", entry.batch_id), e))
            }
        }
    }

    /// Records that a batch's sink committed, with the watermark the next batch uses.
    /// Idempotent: a driver that stopped after the sink's commit writes it again.
    pub async fn write_commit(&self, batch_id: u64, next_watermark_ms: i64) -> Result<()> {
        let body = format!(
            "{LOG_VERSION}\n{}",
            serde_json::json!({ "nextBatchWatermarkMs": next_watermark_ms })
        );
        self.store
            .put(
                &self.file(COMMITS, batch_id),
                PutPayload::from(Bytes::from(body)),
            )
            .await
            .map_err(|e| self.store_error(&format!("writing {COMMITS}/{batch_id}"), e))?;
        Ok(())
    }

    /// Removes log entries of batches before `first_kept` (`minBatchesToRetain`).
    pub async fn purge_before(&self, first_kept: u64) -> Result<()> {
        for dir in [OFFSETS, COMMITS] {
            for batch in self.batches(dir).await? {
                if batch >= first_kept {
                    break;
                }
                match self.store.delete(&self.file(dir, batch)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.store_error(&format!("removing {dir}/{batch}"), e)),
                }
            }
        }
        Ok(())
    }
}

/// Why a conditional create did not happen.
enum Created {
    Exists,
    Failed(object_store::Error),
}

fn render_offsets(entry: &OffsetsEntry) -> Result<Vec<u8>> {
    let mut out = String::from(LOG_VERSION);
    out.push('\n');
    out.push_str(
        &serde_json::to_string(&entry.metadata)
            .map_err(|e| Error::internal(format!("encoding a batch's metadata: {e}")))?,
    );
    for source in &entry.sources {
        if source.contains('\n') {
            return Err(Error::internal(format!(
                "a source's offsets must be one line of JSON, got {source:?}"
            )));
        }
        out.push('\n');
        out.push_str(source);
    }
    Ok(out.into_bytes())
}

/// An `offsets/<batch>` entry from its text, or why it is not one.
fn parse_offsets(batch_id: u64, bytes: &[u8]) -> std::result::Result<OffsetsEntry, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "is not text".to_string())?;
    let mut lines = text.lines();
    match lines.next() {
        Some(LOG_VERSION) => {}
        other => {
            return Err(format!(
                "starts with {other:?}, not \"{LOG_VERSION}\" (a streaming offset log entry)"
            ));
        }
    }
    let metadata: BatchMetadata = lines
        .next()
        .ok_or("has no batch metadata line")
        .map_err(str::to_string)
        .and_then(|l| {
            serde_json::from_str(l)
                .map_err(|e| format!("has a batch metadata line that is not ({e})"))
        })?;
    Ok(OffsetsEntry {
        batch_id,
        metadata,
        sources: lines.map(str::to_string).collect(),
    })
}

/// The watermark a `commits/<batch>` entry hands on, or why it is not one.
fn parse_commit(bytes: &[u8]) -> std::result::Result<i64, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "is not text".to_string())?;
    let mut lines = text.lines();
    if lines.next() != Some(LOG_VERSION) {
        return Err(format!(
            "does not start with \"{LOG_VERSION}\" (a streaming commit log entry)"
        ));
    }
    let json: serde_json::Value = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or("has no JSON line after its version")?;
    json.get("nextBatchWatermarkMs")
        .and_then(|v| v.as_i64())
        .ok_or_else(|| "has no \"nextBatchWatermarkMs\"".to_string())
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    fn checkpoint(store: &Arc<InMemory>) -> StreamCheckpoint {
        StreamCheckpoint::new("memory:///cp", store.clone(), Path::from("cp"))
    }

    fn entry(batch_id: u64, offsets: &str) -> OffsetsEntry {
        OffsetsEntry {
            batch_id,
            metadata: BatchMetadata {
                batch_watermark_ms: batch_id as i64 * 10,
                batch_timestamp_ms: 1_700_000_000_000,
            },
            sources: vec![offsets.to_string()],
        }
    }

    fn sources() -> Vec<String> {
        vec!["kafka subscribe=events".to_string()]
    }

    #[tokio::test]
    async fn a_committed_last_batch_number_is_refused_not_overflowed() {
        let store = Arc::new(InMemory::new());
        let cp = checkpoint(&store);
        cp.open(&sources(), 8).await.unwrap();
        cp.write_offsets(&entry(u64::MAX, "{}")).await.unwrap();
        cp.write_commit(u64::MAX, 0).await.unwrap();
        let e = cp.open(&sources(), 8).await.unwrap_err().to_string();
        assert!(e.contains("the last batch number there is"), "{e}");
    }

    #[tokio::test]
    async fn a_query_resumes_at_its_first_uncommitted_batch_with_its_id() {
        let store = Arc::new(InMemory::new());
        let cp = checkpoint(&store);
        let fresh = cp.open(&sources(), 8).await.unwrap();
        assert_eq!(fresh.next_batch_id(), 0);
        let id = fresh.metadata.id.clone();
        cp.write_offsets(&entry(0, r#"{"events":{"0":5}}"#))
            .await
            .unwrap();
        cp.write_commit(0, 1_000).await.unwrap();
        cp.write_offsets(&entry(1, r#"{"events":{"0":9}}"#))
            .await
            .unwrap();
        // Stopped before batch 1's commit: it runs again with exactly its offsets.
        let resume = cp.open(&sources(), 8).await.unwrap();
        assert_eq!(resume.metadata.id, id);
        assert_eq!(resume.redo, Some(entry(1, r#"{"events":{"0":9}}"#)));
        assert_eq!(
            resume.last_committed,
            Some((entry(0, r#"{"events":{"0":5}}"#), 1_000))
        );
        assert_eq!(resume.next_batch_id(), 1);
        // A second run planning the same batch is refused; a commit written twice is fine.
        let e = cp
            .write_offsets(&entry(1, "{}"))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("batch 1 was planned by another run"), "{e}");
        cp.write_commit(1, 2_000).await.unwrap();
        cp.write_commit(1, 2_000).await.unwrap();
        let resume = cp.open(&sources(), 8).await.unwrap();
        assert_eq!(resume.redo, None);
        assert_eq!(resume.next_batch_id(), 2);
        assert_eq!(resume.last_committed.unwrap().1, 2_000);
        // Batches order as numbers; purging keeps the recent ones.
        for b in 2..=11 {
            cp.write_offsets(&entry(b, "{}")).await.unwrap();
            cp.write_commit(b, 0).await.unwrap();
        }
        cp.purge_before(9).await.unwrap();
        assert_eq!(cp.batches(OFFSETS).await.unwrap(), [9, 10, 11]);
        assert_eq!(cp.batches(COMMITS).await.unwrap(), [9, 10, 11]);
        assert_eq!(cp.open(&sources(), 8).await.unwrap().next_batch_id(), 12);
    }

    #[tokio::test]
    async fn a_changed_state_schema_is_refused() {
        let store = Arc::new(InMemory::new());
        let cp = checkpoint(&store);
        let counts = "window: Struct(start, end)\nkey: Utf8\ncount: Int64";
        cp.check_state_schema(counts).await.unwrap();
        cp.check_state_schema(counts).await.unwrap();
        let e = cp
            .check_state_schema("key: Utf8\nsum: Int64")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("key: Utf8, sum: Int64"), "{e}");
        assert!(e.contains("a changed grouping or aggregate"), "{e}");
    }

    #[tokio::test]
    async fn checkpoints_of_other_queries_are_refused() {
        let store = Arc::new(InMemory::new());
        let cp = checkpoint(&store);
        cp.open(&sources(), 8).await.unwrap();
        let e = cp
            .open(&["kafka subscribe=other".to_string()], 8)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("subscribe=other") && e.contains("of its own"),
            "{e}"
        );
        let e = cp.open(&sources(), 4).await.unwrap_err().to_string();
        assert!(e.contains("state in 8 partitions"), "{e}");

        // A Kafka batch source's checkpoint: offsets but no metadata.
        let batch = Arc::new(InMemory::new());
        batch
            .put(
                &Path::from("cp/offsets/0"),
                PutPayload::from_static(br#"{"version":1,"batchId":0,"source":"s","ranges":[]}"#),
            )
            .await
            .unwrap();
        let e = checkpoint(&batch)
            .open(&sources(), 8)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("Kafka batch source's checkpoint"), "{e}");

        // Damaged entries are named.
        let damaged = Arc::new(InMemory::new());
        let cp = checkpoint(&damaged);
        cp.open(&sources(), 8).await.unwrap();
        damaged
            .put(
                &Path::from("cp/offsets/0"),
                PutPayload::from_static(b"{\"not\": \"a log\"}"),
            )
            .await
            .unwrap();
        let e = cp.open(&sources(), 8).await.unwrap_err().to_string();
        assert!(e.contains("offsets/0") && e.contains("v1"), "{e}");
    }

    #[test]
    fn entries_round_trip_in_sparks_layout() {
        let e = entry(3, r#"{"events":{"0":5,"1":7}}"#);
        let text = String::from_utf8(render_offsets(&e).unwrap()).unwrap();
        assert_eq!(
            text,
            "v1\n{\"batchWatermarkMs\":30,\"batchTimestampMs\":1700000000000}\n{\"events\":{\"0\":5,\"1\":7}}"
        );
        assert_eq!(parse_offsets(3, text.as_bytes()).unwrap(), e);
        assert_eq!(
            parse_commit(b"v1\n{\"nextBatchWatermarkMs\":42}").unwrap(),
            42
        );
        assert!(render_offsets(&entry(0, "{\n}")).is_err());
    }
}
