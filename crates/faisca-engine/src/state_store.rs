//! The state a streaming query's stateful operator keeps for one shuffle partition between
//! micro-batches, and its versioned files in the query's checkpoint (issue 19, being built).
//!
//! State is a map from key to value (both rows of Arrow columns, kept as arrow-row bytes, looked
//! up by those bytes without copying them). Version
//! `v` is the state after batch `v - 1` committed (version 0 is empty). Each commit writes what
//! the batch changed as `<dir>/<v>.delta` (an Arrow IPC file: the key and value columns and a
//! `__deleted` flag), and every `snapshot_interval` versions the whole state as `<v>.snapshot` in
//! the same format; files older than the newest snapshot the last `min_versions_to_retain`
//! versions need are removed. Any process can rebuild version `v` from the newest snapshot at or
//! before it and the deltas after that snapshot ([`PartitionState::load`]), so a partition's task
//! can run on another executor after the one holding the state is lost.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, new_null_array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::arrow::row::{RowConverter, RowParser, SortField};
use faisca_common::{Error, Result};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const DELETED: &str = "__deleted";
const DELTA: &str = "delta";
const SNAPSHOT: &str = "snapshot";

/// Where a partition's state files live and how many are kept.
#[derive(Debug, Clone)]
pub struct StateLocation {
    /// The checkpoint's URL, for messages.
    pub url: String,
    /// The checkpoint's store.
    pub store: Arc<dyn ObjectStore>,
    /// `state/<operator>/<partition>` under the checkpoint.
    pub dir: Path,
    /// A snapshot every this many versions (`faisca.streaming.stateSnapshotInterval`).
    pub snapshot_interval: u64,
    /// Versions that stay loadable (`faisca.streaming.minBatchesToRetain`).
    pub min_versions_to_retain: u64,
}

/// One partition's state at one version, with the changes of the batch being run.
pub struct PartitionState {
    location: StateLocation,
    schema: SchemaRef,
    key_columns: usize,
    keys: RowConverter,
    values: RowConverter,
    key_parser: RowParser,
    value_parser: RowParser,
    /// Key bytes to value bytes.
    rows: HashMap<Box<[u8]>, Box<[u8]>>,
    /// Keys the running batch changed (set, or removed when `rows` no longer holds them).
    changed: HashSet<Box<[u8]>>,
    version: u64,
}

impl std::fmt::Debug for PartitionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionState")
            .field("dir", &self.location.dir)
            .field("version", &self.version)
            .field("rows", &self.rows.len())
            .finish()
    }
}

/// Sets `key`'s value in `rows`, reusing the held value's allocation when it fits.
fn set(rows: &mut HashMap<Box<[u8]>, Box<[u8]>>, key: &[u8], value: &[u8]) {
    match rows.get_mut(key) {
        Some(held) if held.len() == value.len() => held.copy_from_slice(value),
        Some(held) => *held = value.into(),
        None => {
            rows.insert(key.into(), value.into());
        }
    }
}

fn converter(fields: &[Arc<Field>]) -> Result<RowConverter> {
    RowConverter::new(
        fields
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect(),
    )
    .map_err(|e| Error::internal(format!("state rows of {fields:?}: {e}")))
}

/// The files' schema: the key and value columns (values nullable) and the deletion flag.
fn file_schema(schema: &Schema, key_columns: usize) -> SchemaRef {
    let mut fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let f = f.as_ref().clone();
            if i < key_columns {
                f
            } else {
                f.with_nullable(true)
            }
        })
        .collect();
    fields.push(Field::new(DELETED, DataType::Boolean, false));
    Arc::new(Schema::new(fields))
}

impl PartitionState {
    /// The state of `schema` (its first `key_columns` columns are the key) at `version`,
    /// rebuilt from the files under `location`. Version 0 is empty and reads nothing.
    pub async fn load(
        location: StateLocation,
        schema: SchemaRef,
        key_columns: usize,
        version: u64,
    ) -> Result<Self> {
        if key_columns == 0 || key_columns > schema.fields().len() {
            return Err(Error::internal(format!(
                "state of {} columns with {key_columns} key columns",
                schema.fields().len()
            )));
        }
        let (key_fields, value_fields) = schema.fields().split_at(key_columns);
        let (keys, values) = (converter(key_fields)?, converter(value_fields)?);
        let mut state = PartitionState {
            key_parser: keys.parser(),
            value_parser: values.parser(),
            keys,
            values,
            location,
            schema,
            key_columns,
            rows: HashMap::new(),
            changed: HashSet::new(),
            version: 0,
        };
        if version == 0 {
            return Ok(state);
        }
        let files = state.files().await?;
        let base = files
            .iter()
            .filter(|(v, kind)| *kind == SNAPSHOT && *v <= version)
            .map(|(v, _)| *v)
            .max()
            .unwrap_or(0);
        if base > 0 {
            state.apply_file(base, SNAPSHOT).await?;
        }
        for v in base + 1..=version {
            if !files.contains(&(v, DELTA)) {
                return Err(Error::external_final(format!(
                    "the streaming state at '{}' ({}) cannot be rebuilt at version {version}: {v}.{DELTA} is missing (the newest snapshot at or before it is {}); expected the checkpoint this query wrote, with faisca.streaming.minBatchesToRetain covering the batch it resumes at",
                    state.location.url,
                    state.location.dir,
                    if base == 0 {
                        "none".to_string()
                    } else {
                        format!("{base}.{SNAPSHOT}")
                    }
                )));
            }
            state.apply_file(v, DELTA).await?;
        }
        state.changed.clear();
        state.version = version;
        Ok(state)
    }

    /// The version loaded (or last committed).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Bytes the keys and values take in memory (their row encodings).
    pub fn memory_bytes(&self) -> usize {
        self.rows.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// Sets the value of each row's key (`batch` has the state's columns).
    pub fn upsert(&mut self, batch: &RecordBatch) -> Result<()> {
        let (keys, values) = self.to_rows(batch.columns())?;
        for i in 0..keys.num_rows() {
            let (key, value) = (keys.row(i).data(), values.row(i).data());
            self.set(key, value);
            self.mark_changed(key);
        }
        Ok(())
    }

    fn set(&mut self, key: &[u8], value: &[u8]) {
        set(&mut self.rows, key, value);
    }

    fn mark_changed(&mut self, key: &[u8]) {
        if !self.changed.contains(key) {
            self.changed.insert(key.into());
        }
    }

    /// Removes each row's key (`keys` are the key columns).
    pub fn remove(&mut self, keys: &[ArrayRef]) -> Result<()> {
        let rows = self
            .keys
            .convert_columns(keys)
            .map_err(|e| Error::internal(format!("state keys: {e}")))?;
        for row in rows.iter() {
            if self.rows.remove(row.data()).is_some() {
                self.mark_changed(row.data());
            }
        }
        Ok(())
    }

    /// Removes the rows `choose` picks from the whole state (given as [`Self::rows`] gives it)
    /// and returns them.
    pub fn remove_where(
        &mut self,
        choose: impl FnOnce(&RecordBatch) -> Result<BooleanArray>,
    ) -> Result<RecordBatch> {
        let held: Vec<(&[u8], &[u8])> = self
            .rows
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        let all = self.batch_of(&held)?;
        let chosen = choose(&all)?;
        let gone: Vec<Box<[u8]>> = held
            .iter()
            .zip(chosen.iter())
            .filter(|(_, c)| *c == Some(true))
            .map(|((k, _), _)| Box::<[u8]>::from(*k))
            .collect();
        let rows = datafusion::arrow::compute::filter_record_batch(&all, &chosen)
            .map_err(|e| Error::internal(format!("state rows removed: {e}")))?;
        for key in gone {
            self.rows.remove(&key);
            self.changed.insert(key);
        }
        Ok(rows)
    }

    /// `held` (key and value bytes) as a batch of the state's columns.
    fn batch_of(&self, held: &[(&[u8], &[u8])]) -> Result<RecordBatch> {
        let mut columns = self
            .keys
            .convert_rows(held.iter().map(|(k, _)| self.key_parser.parse(k)))
            .map_err(|e| Error::internal(format!("state keys: {e}")))?;
        columns.extend(
            self.values
                .convert_rows(held.iter().map(|(_, v)| self.value_parser.parse(v)))
                .map_err(|e| Error::internal(format!("state values: {e}")))?,
        );
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| Error::internal(format!("state rows: {e}")))
    }

    /// For each key row, the row of `values` holding its value, or `None`; `values` holds the
    /// value columns of the keys found, in order.
    pub fn lookup(&self, keys: &[ArrayRef]) -> Result<(Vec<Option<usize>>, Vec<ArrayRef>)> {
        let rows = self
            .keys
            .convert_columns(keys)
            .map_err(|e| Error::internal(format!("state keys: {e}")))?;
        let mut found = Vec::with_capacity(rows.num_rows());
        let mut hits = Vec::new();
        for row in rows.iter() {
            match self.rows.get(row.data()) {
                Some(value) => {
                    found.push(Some(hits.len()));
                    hits.push(self.value_parser.parse(value));
                }
                None => found.push(None),
            }
        }
        let values = self
            .values
            .convert_rows(hits)
            .map_err(|e| Error::internal(format!("state values: {e}")))?;
        Ok((found, values))
    }

    /// Every key and value, as one batch of the state's columns (in no particular order).
    pub fn rows(&self) -> Result<RecordBatch> {
        let held: Vec<(&[u8], &[u8])> = self
            .rows
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        self.batch_of(&held)
    }

    /// Writes the running batch's changes as version `version` (the loaded one plus one), a
    /// snapshot when it is due, and removes files no retained version needs. Writing a version
    /// again (a re-run batch) replaces its files.
    pub async fn commit(&mut self, version: u64) -> Result<()> {
        if version != self.version + 1 {
            return Err(Error::internal(format!(
                "state at version {} committed as version {version}",
                self.version
            )));
        }
        let changed = std::mem::take(&mut self.changed);
        let delta = self.encode(
            changed
                .iter()
                .map(|k| (k.as_ref(), self.rows.get(k).map(AsRef::as_ref))),
        )?;
        self.put(version, DELTA, delta).await?;
        if version.is_multiple_of(self.location.snapshot_interval.max(1)) {
            let snapshot = self.encode(
                self.rows
                    .iter()
                    .map(|(k, v)| (k.as_ref(), Some(v.as_ref()))),
            )?;
            self.put(version, SNAPSHOT, snapshot).await?;
        }
        self.version = version;
        self.clean_up().await
    }

    fn to_rows(
        &self,
        columns: &[ArrayRef],
    ) -> Result<(datafusion::arrow::row::Rows, datafusion::arrow::row::Rows)> {
        let (key_columns, value_columns) = columns.split_at(self.key_columns);
        let keys = self
            .keys
            .convert_columns(key_columns)
            .map_err(|e| Error::internal(format!("state keys: {e}")))?;
        let values = self
            .values
            .convert_columns(value_columns)
            .map_err(|e| Error::internal(format!("state values: {e}")))?;
        Ok((keys, values))
    }

    /// An IPC file of `entries` (a key and its value, or `None` for a removed key).
    fn encode<'a>(
        &'a self,
        entries: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) -> Result<Vec<u8>> {
        let (mut kept, mut removed) = (Vec::new(), Vec::new());
        for (key, value) in entries {
            match value {
                Some(value) => {
                    kept.push((self.key_parser.parse(key), self.value_parser.parse(value)))
                }
                None => removed.push(self.key_parser.parse(key)),
            }
        }
        let schema = file_schema(&self.schema, self.key_columns);
        let internal = |e: &dyn std::fmt::Display| Error::internal(format!("state file: {e}"));
        let mut writer = FileWriter::try_new(Vec::new(), &schema).map_err(|e| internal(&e))?;
        let mut columns = self
            .keys
            .convert_rows(kept.iter().map(|(k, _)| *k))
            .map_err(|e| internal(&e))?;
        columns.extend(
            self.values
                .convert_rows(kept.iter().map(|(_, v)| *v))
                .map_err(|e| internal(&e))?,
        );
        columns.push(Arc::new(BooleanArray::from(vec![false; kept.len()])));
        let cast = |columns: Vec<ArrayRef>| -> Result<RecordBatch> {
            RecordBatch::try_new(schema.clone(), columns).map_err(|e| internal(&e))
        };
        writer.write(&cast(columns)?).map_err(|e| internal(&e))?;
        if !removed.is_empty() {
            let mut columns = self
                .keys
                .convert_rows(removed.iter().copied())
                .map_err(|e| internal(&e))?;
            for field in &schema.fields()[self.key_columns..schema.fields().len() - 1] {
                columns.push(new_null_array(field.data_type(), removed.len()));
            }
            columns.push(Arc::new(BooleanArray::from(vec![true; removed.len()])));
            writer.write(&cast(columns)?).map_err(|e| internal(&e))?;
        }
        writer.finish().map_err(|e| internal(&e))?;
        writer.into_inner().map_err(|e| internal(&e))
    }

    fn file(&self, version: u64, kind: &str) -> Path {
        self.location.dir.clone().join(format!("{version}.{kind}"))
    }

    fn store_error(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::external(format!(
            "streaming state at '{}' ({}): {what}: {e}",
            self.location.url, self.location.dir
        ))
    }

    async fn put(&self, version: u64, kind: &str, body: Vec<u8>) -> Result<()> {
        self.location
            .store
            .put(
                &self.file(version, kind),
                PutPayload::from(Bytes::from(body)),
            )
            .await
            .map_err(|e| self.store_error(&format!("writing {version}.{kind}"), e))?;
        Ok(())
    }

    /// The state files present: (version, kind).
    async fn files(&self) -> Result<Vec<(u64, &'static str)>> {
        let listing: Vec<_> = self
            .location
            .store
            .list(Some(&self.location.dir))
            .try_collect()
            .await
            .map_err(|e| self.store_error("listing", e))?;
        Ok(listing
            .iter()
            .filter_map(|m| {
                let name = m.location.filename()?;
                let (version, kind) = name.split_once('.')?;
                let kind = match kind {
                    DELTA => DELTA,
                    SNAPSHOT => SNAPSHOT,
                    _ => return None,
                };
                Some((version.parse().ok()?, kind))
            })
            .collect())
    }

    /// Applies one file's rows to the state.
    async fn apply_file(&mut self, version: u64, kind: &str) -> Result<()> {
        let what = format!("{version}.{kind}");
        let bytes = self
            .location
            .store
            .get(&self.file(version, kind))
            .await
            .map_err(|e| self.store_error(&format!("reading {what}"), e))?
            .bytes()
            .await
            .map_err(|e| self.store_error(&format!("reading {what}"), e))?;
        let damaged = |why: String| {
            Error::external_final(format!(
                "streaming state at '{}' ({}): {what} is not a state file of this operator ({why}); expected the checkpoint this query wrote",
                self.location.url, self.location.dir
            ))
        };
        let reader = FileReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|e| damaged(e.to_string()))?;
        let expected = file_schema(&self.schema, self.key_columns);
        if reader.schema().fields() != expected.fields() {
            return Err(damaged(format!(
                "its columns are {:?}, the operator's state has {:?}",
                reader.schema().fields(),
                expected.fields()
            )));
        }
        for batch in reader {
            let batch = batch.map_err(|e| damaged(e.to_string()))?;
            let columns = batch.columns();
            let deleted = columns[columns.len() - 1]
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| damaged(format!("{DELETED} is not boolean")))?;
            let (keys, values) = self.to_rows(&columns[..columns.len() - 1])?;
            for i in 0..batch.num_rows() {
                let key = keys.row(i).data();
                if deleted.value(i) {
                    self.rows.remove(key);
                } else {
                    set(&mut self.rows, key, values.row(i).data());
                }
            }
        }
        Ok(())
    }

    /// Removes files that no version from `version - min_versions_to_retain + 1` on needs: all
    /// before the newest snapshot at or before that version.
    async fn clean_up(&self) -> Result<()> {
        let oldest_kept = self
            .version
            .saturating_sub(self.location.min_versions_to_retain.saturating_sub(1));
        let files = self.files().await?;
        let Some(base) = files
            .iter()
            .filter(|(v, kind)| *kind == SNAPSHOT && *v <= oldest_kept)
            .map(|(v, _)| *v)
            .max()
        else {
            return Ok(());
        };
        for (version, kind) in files.into_iter().filter(|(v, _)| *v < base) {
            match self.location.store.delete(&self.file(version, kind)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.store_error(&format!("removing {version}.{kind}"), e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::Int64Type;
    use object_store::memory::InMemory;

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("count", DataType::Int64, false),
        ]))
    }

    fn location(store: &Arc<InMemory>, snapshot_interval: u64, retain: u64) -> StateLocation {
        StateLocation {
            url: "memory:///cp".into(),
            store: store.clone(),
            dir: Path::from("cp/state/0/3"),
            snapshot_interval,
            min_versions_to_retain: retain,
        }
    }

    fn batch(rows: &[(&str, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap()
    }

    fn keys(names: &[&str]) -> Vec<ArrayRef> {
        vec![Arc::new(StringArray::from_iter_values(
            names.iter().copied(),
        ))]
    }

    fn contents(state: &PartitionState) -> Vec<(String, i64)> {
        let rows = state.rows().unwrap();
        let mut out: Vec<(String, i64)> = (0..rows.num_rows())
            .map(|i| {
                (
                    rows.column(0).as_string::<i32>().value(i).to_string(),
                    rows.column(1).as_primitive::<Int64Type>().value(i),
                )
            })
            .collect();
        out.sort();
        out
    }

    async fn files(store: &Arc<InMemory>) -> Vec<String> {
        let mut names: Vec<String> = store
            .list(Some(&Path::from("cp/state/0/3")))
            .map_ok(|m| m.location.filename().unwrap_or_default().to_string())
            .try_collect()
            .await
            .unwrap();
        names.sort();
        names
    }

    #[tokio::test]
    async fn any_version_is_rebuilt_from_a_snapshot_and_the_deltas_after_it() {
        let store = Arc::new(InMemory::new());
        let mut state = PartitionState::load(location(&store, 3, 100), schema(), 1, 0)
            .await
            .unwrap();
        let mut expected: Vec<Vec<(String, i64)>> = vec![vec![]];
        for v in 1..=7u64 {
            state
                .upsert(&batch(&[("a", v as i64), (&format!("k{v}"), 1)]))
                .unwrap();
            if v % 2 == 0 {
                state
                    .remove(&keys(&[&format!("k{}", v - 1), "nobody"]))
                    .unwrap();
            }
            state.commit(v).await.unwrap();
            expected.push(contents(&state));
        }
        assert_eq!(state.len(), 5);
        assert!(state.memory_bytes() > 0);
        for v in 0..=7u64 {
            let loaded = PartitionState::load(location(&store, 3, 100), schema(), 1, v)
                .await
                .unwrap();
            assert_eq!(contents(&loaded), expected[v as usize], "version {v}");
            assert_eq!(loaded.version(), v);
        }
        let (found, values) = state.lookup(&keys(&["k7", "k1", "a"])).unwrap();
        assert_eq!(found, [Some(0), None, Some(1)]);
        assert_eq!(values[0].as_primitive::<Int64Type>().values(), &[1, 7]);
        // A re-run batch writes its version again: replaced, not duplicated.
        let mut again = PartitionState::load(location(&store, 3, 100), schema(), 1, 6)
            .await
            .unwrap();
        again.upsert(&batch(&[("a", 70)])).unwrap();
        again.commit(7).await.unwrap();
        let reloaded = PartitionState::load(location(&store, 3, 100), schema(), 1, 7)
            .await
            .unwrap();
        assert!(contents(&reloaded).contains(&("a".to_string(), 70)));
        assert!(!contents(&reloaded).contains(&("k7".to_string(), 1)));
    }

    #[tokio::test]
    async fn old_files_go_once_no_retained_version_needs_them() {
        let store = Arc::new(InMemory::new());
        let mut state = PartitionState::load(location(&store, 2, 3), schema(), 1, 0)
            .await
            .unwrap();
        for v in 1..=9u64 {
            state.upsert(&batch(&[("a", v as i64)])).unwrap();
            state.commit(v).await.unwrap();
        }
        // Versions 7..=9 must load: snapshot 6 and the deltas after it stay.
        assert_eq!(
            files(&store).await,
            [
                "6.delta",
                "6.snapshot",
                "7.delta",
                "8.delta",
                "8.snapshot",
                "9.delta"
            ]
        );
        for v in 7..=9 {
            PartitionState::load(location(&store, 2, 3), schema(), 1, v)
                .await
                .unwrap();
        }
        let e = PartitionState::load(location(&store, 2, 3), schema(), 1, 5)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("1.delta is missing"), "{e}");
    }

    #[tokio::test]
    async fn state_files_of_another_shape_are_refused() {
        let store = Arc::new(InMemory::new());
        let mut state = PartitionState::load(location(&store, 10, 10), schema(), 1, 0)
            .await
            .unwrap();
        state.upsert(&batch(&[("a", 1)])).unwrap();
        state.commit(1).await.unwrap();
        let other = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("sum", DataType::Float64, false),
        ]));
        let e = PartitionState::load(location(&store, 10, 10), other, 1, 1)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("1.delta is not a state file of this operator"),
            "{e}"
        );
    }
}
