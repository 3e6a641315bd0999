//! The driver side of a write: check the destination, publish one attempt per task through a
//! manifest, resume a publication that stopped, clean up after a failed job, and tell readers
//! which files are not committed.
//!
//! A job's temporary directory `_temporary/<job>/` holds, besides the attempt directories:
//! * `_manifest.json` — written before anything becomes visible: the files to publish
//!   (temporary and final names) and, for `overwrite`, the files being replaced;
//! * `_COMMITTED` — written once every file is at its final name: from then on the new files are
//!   the data and the replaced ones are not.
//!
//! Every step is idempotent, so [`resume_pending`] simply runs the publication again.

use std::collections::{BTreeSet, HashSet};

use bytes::Bytes;
use faisca_common::{Error, Result};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use faisca_engine::sink::{Destination, SUCCESS_FILE, SaveMode, TEMPORARY_DIR, is_temporary};

const MANIFEST: &str = "_manifest.json";
const COMMITTED: &str = "_COMMITTED";

/// One file to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Where the task attempt wrote it, relative to the destination root.
    pub temporary: String,
    /// Its final path, relative to the destination root.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// Bytes in the file.
    pub bytes: u64,
}

/// What a job's commit publishes and replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of this record.
    pub version: u32,
    /// The job.
    pub job: String,
    /// The save mode.
    pub mode: String,
    /// Files to publish.
    pub files: Vec<ManifestFile>,
    /// Files (relative paths) that the new ones replace.
    pub replaced: Vec<String>,
    /// The job wrote one named file (a SQL `COPY` to a file path): no `_SUCCESS` marker.
    #[serde(default)]
    pub single_file: bool,
}

impl Manifest {
    /// Rows the job wrote.
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }
}

/// A file a task attempt wrote, as the driver learned it.
#[derive(Debug, Clone)]
pub struct TaskFile {
    /// The task.
    pub partition: u32,
    /// Its successful attempt.
    pub attempt: u32,
    /// The file.
    pub file: faisca_proto::WrittenFile,
}

/// Knobs of a commit.
#[derive(Debug, Clone, Copy)]
pub struct CommitOptions {
    /// Overwrite replaces only the partition directories written (`partitionOverwriteMode=dynamic`).
    pub dynamic_overwrite: bool,
    /// Files moved at once.
    pub concurrency: usize,
    /// Test only: stop after the manifest is written, as if the driver died there.
    pub stop_after_manifest: bool,
}

fn relative<'a>(root: &Path, path: &'a Path) -> Option<&'a str> {
    let full = path.as_ref();
    if root.as_ref().is_empty() {
        return Some(full);
    }
    full.strip_prefix(root.as_ref())?.strip_prefix('/')
}

fn store_error(what: &str, dest: &Destination, e: object_store::Error) -> Error {
    let retryable = !matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    );
    let message = format!("{what} in {}: {e}", dest.url);
    if retryable {
        Error::external(message)
    } else {
        Error::external_final(message)
    }
}

/// Every object below the destination root except temporary ones, as relative paths.
async fn list_data(dest: &Destination) -> Result<Vec<String>> {
    let prefix = (!dest.root.as_ref().is_empty()).then_some(&dest.root);
    let objects: Vec<_> = dest
        .store
        .list(prefix)
        .try_collect()
        .await
        .map_err(|e| store_error("listing the destination", dest, e))?;
    Ok(objects
        .iter()
        .filter_map(|o| relative(&dest.root, &o.location))
        .filter(|p| !is_temporary(p))
        .map(str::to_string)
        .collect())
}

/// Whether the destination holds anything besides temporary files.
pub async fn has_data(dest: &Destination) -> Result<bool> {
    Ok(!list_data(dest).await?.is_empty())
}

/// Save-mode check before a job starts. Returns whether the job should run (`false` for
/// `ignore` when data is there); `error` mode with data is an error naming the destination.
pub async fn check_destination(dest: &Destination, mode: SaveMode) -> Result<bool> {
    if matches!(mode, SaveMode::Overwrite | SaveMode::Append) {
        return Ok(true);
    }
    let exists = has_data(dest).await?;
    match (mode, exists) {
        (SaveMode::ErrorIfExists, true) => Err(Error::user(format!(
            "the write destination {} already holds data; save mode 'error' (the default) writes only to an empty destination: choose overwrite, append or ignore",
            dest.url
        ))),
        (SaveMode::Ignore, true) => Ok(false),
        _ => Ok(true),
    }
}

/// The manifest for the successful attempts' `files`: final names are the attempt's names
/// without the temporary prefix; `overwrite` replaces what the destination holds now.
pub async fn plan_manifest(
    dest: &Destination,
    job: &str,
    mode: SaveMode,
    files: &[TaskFile],
    options: &CommitOptions,
) -> Result<Manifest> {
    let files: Vec<ManifestFile> = files
        .iter()
        .map(|f| ManifestFile {
            temporary: format!(
                "{}/{}",
                Destination::attempt_dir(job, f.partition, f.attempt),
                f.file.path
            ),
            path: f.file.path.clone(),
            rows: f.file.rows,
            bytes: f.file.bytes,
        })
        .collect();
    let replaced = if mode == SaveMode::Overwrite {
        let existing = list_data(dest).await?;
        let new: HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
        let written_dirs: HashSet<&str> = files.iter().map(|f| parent(&f.path)).collect();
        existing
            .into_iter()
            .filter(|p| !new.contains(p.as_str()))
            .filter(|p| !options.dynamic_overwrite || written_dirs.contains(parent(p)))
            .filter(|p| p != SUCCESS_FILE)
            .collect()
    } else {
        Vec::new()
    };
    Ok(Manifest {
        version: 1,
        job: job.to_string(),
        mode: mode.name().to_string(),
        files,
        replaced,
        single_file: false,
    })
}

/// Save-mode check of a write of the single file `name` in `dest` (a SQL `COPY` to a file path).
/// Returns whether the job should run; `append` to an existing file is an error (a COPY writes
/// a whole file).
pub async fn check_file_destination(
    dest: &Destination,
    name: &str,
    mode: SaveMode,
) -> Result<bool> {
    let path = dest.child(name)?;
    let exists = match dest.store.head(&path).await {
        Ok(_) => true,
        Err(object_store::Error::NotFound { .. }) => false,
        Err(e) => return Err(store_error(&format!("looking for {name}"), dest, e)),
    };
    match (mode, exists) {
        (_, false) | (SaveMode::Overwrite, true) => Ok(true),
        (SaveMode::Ignore, true) => Ok(false),
        (SaveMode::ErrorIfExists, true) => Err(Error::user(format!(
            "the write destination {name} in {} already exists; save mode 'error' (the default) writes only a new file: choose overwrite or ignore",
            dest.url
        ))),
        (SaveMode::Append, true) => Err(Error::user(format!(
            "cannot append to the file {name} in {}: a COPY to a file path writes a whole file; choose overwrite, or COPY to a directory (a path ending in /)",
            dest.url
        ))),
    }
}

/// The manifest of a single-file write: the one file the one task wrote becomes `name` (over
/// the file of that name, if any).
pub fn plan_single_file_manifest(
    job: &str,
    mode: SaveMode,
    files: &[TaskFile],
    name: &str,
) -> Result<Manifest> {
    let [file] = files else {
        return Err(Error::internal(format!(
            "a write of the single file {name} left {} files",
            files.len()
        )));
    };
    Ok(Manifest {
        version: 1,
        job: job.to_string(),
        mode: mode.name().to_string(),
        files: vec![ManifestFile {
            temporary: format!(
                "{}/{}",
                Destination::attempt_dir(job, file.partition, file.attempt),
                file.file.path
            ),
            path: name.to_string(),
            rows: file.file.rows,
            bytes: file.file.bytes,
        }],
        replaced: Vec::new(),
        single_file: true,
    })
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// Record `manifest` and publish it. Returns the rows written.
pub async fn commit(
    dest: &Destination,
    manifest: &Manifest,
    options: &CommitOptions,
) -> Result<u64> {
    let job_dir = Destination::job_dir(&manifest.job);
    let body = serde_json::to_vec_pretty(manifest)
        .map_err(|e| Error::internal(format!("encoding a commit manifest: {e}")))?;
    put(dest, &format!("{job_dir}/{MANIFEST}"), body).await?;
    if options.stop_after_manifest {
        return Err(Error::external_final(format!(
            "the commit of job {} stopped after writing its manifest (faisca.test.stopCommitAfterManifest); the next write to {} resumes it",
            manifest.job, dest.url
        )));
    }
    publish(dest, manifest, options.concurrency).await?;
    Ok(manifest.rows())
}

async fn put(dest: &Destination, relative: &str, body: Vec<u8>) -> Result<()> {
    let path = dest.child(relative)?;
    dest.store
        .put(&path, PutPayload::from(Bytes::from(body)))
        .await
        .map_err(|e| store_error(&format!("writing {relative}"), dest, e))?;
    Ok(())
}

/// Make the manifest's files visible and finish the job's commit. Idempotent.
async fn publish(dest: &Destination, manifest: &Manifest, concurrency: usize) -> Result<()> {
    let job_dir = Destination::job_dir(&manifest.job);
    let moves: Vec<BoxFuture<'_, Result<()>>> = manifest
        .files
        .iter()
        .map(|f| move_file(dest, f).boxed())
        .collect();
    run_all(moves, concurrency).await?;
    put(dest, &format!("{job_dir}/{COMMITTED}"), Vec::new()).await?;
    let deletes: Vec<BoxFuture<'_, Result<()>>> = manifest
        .replaced
        .iter()
        .map(|p| delete_if_present(dest, p).boxed())
        .collect();
    run_all(deletes, concurrency).await?;
    if !manifest.single_file {
        let success = serde_json::json!({
            "job": manifest.job,
            "mode": manifest.mode,
            "files": manifest.files.len(),
            "rows": manifest.rows(),
        });
        put(dest, SUCCESS_FILE, success.to_string().into_bytes()).await?;
    }
    remove_dir(dest, &job_dir).await
}

/// Run `operations`, at most `concurrency` at a time; the first error stops the rest.
async fn run_all(operations: Vec<BoxFuture<'_, Result<()>>>, concurrency: usize) -> Result<()> {
    futures::stream::iter(operations)
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn move_file(dest: &Destination, file: &ManifestFile) -> Result<()> {
    let from = dest.child(&file.temporary)?;
    let to = dest.child(&file.path)?;
    match dest.store.rename(&from, &to).await {
        Ok(()) => Ok(()),
        // Moved by an earlier run of this commit.
        Err(object_store::Error::NotFound { .. }) => match dest.store.head(&to).await {
            Ok(_) => Ok(()),
            Err(e) => Err(Error::external_final(format!(
                "the commit of job {} cannot finish: {} is neither at its temporary nor at its final path in {} ({e})",
                file.path, file.temporary, dest.url
            ))),
        },
        Err(e) => Err(store_error(&format!("moving {}", file.temporary), dest, e)),
    }
}

async fn delete_if_present(dest: &Destination, relative: &str) -> Result<()> {
    match dest.store.delete(&dest.child(relative)?).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(store_error(&format!("deleting {relative}"), dest, e)),
    }
}

/// Delete every object below `relative`, and the directories a local file system leaves.
async fn remove_dir(dest: &Destination, relative: &str) -> Result<()> {
    let prefix = dest.child(relative)?;
    let locations = dest
        .store
        .list(Some(&prefix))
        .map_ok(|meta| meta.location)
        .boxed();
    dest.store
        .delete_stream(locations)
        .try_collect::<Vec<Path>>()
        .await
        .map_err(|e| store_error(&format!("removing {relative}"), dest, e))?;
    // Listings skip `_` names (see faisca_connectors::hidden): the markers go by name, the
    // manifest last, so that an interrupted clean-up is still a recognisable commit.
    for marker in [COMMITTED, MANIFEST] {
        delete_if_present(dest, &format!("{relative}/{marker}")).await?;
    }
    if let Some(local) = local_directory(dest, relative) {
        let _ = tokio::fs::remove_dir_all(&local).await;
        if let Some(temporary) = local.parent() {
            // Only succeeds when no other job is writing there.
            let _ = tokio::fs::remove_dir(temporary).await;
        }
    }
    Ok(())
}

fn local_directory(dest: &Destination, relative: &str) -> Option<std::path::PathBuf> {
    let url = datafusion::datasource::listing::ListingTableUrl::parse(&dest.url).ok()?;
    if url.scheme() != "file" {
        return None;
    }
    Some(std::path::PathBuf::from(format!(
        "/{}/{relative}",
        dest.root.as_ref()
    )))
}

/// Jobs with a directory under `_temporary/`.
async fn temporary_jobs(dest: &Destination) -> Result<Vec<String>> {
    let prefix = dest.child(TEMPORARY_DIR)?;
    let listing = dest
        .store
        .list_with_delimiter(Some(&prefix))
        .await
        .map_err(|e| store_error("listing _temporary", dest, e))?;
    Ok(listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .collect())
}

async fn read_manifest(dest: &Destination, job: &str) -> Result<Option<Manifest>> {
    let path = dest.child(&format!("{}/{MANIFEST}", Destination::job_dir(job)))?;
    let bytes = match dest.store.get(&path).await {
        Ok(r) => r
            .bytes()
            .await
            .map_err(|e| store_error("reading a commit manifest", dest, e))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(store_error("reading a commit manifest", dest, e)),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::external_final(format!(
            "the commit manifest {path} is corrupt ({e}); expected the JSON a Faísca commit writes"
        ))
    })
}

async fn is_committed(dest: &Destination, job: &str) -> Result<bool> {
    let path = dest.child(&format!("{}/{COMMITTED}", Destination::job_dir(job)))?;
    match dest.store.head(&path).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(store_error("checking a commit", dest, e)),
    }
}

/// Finish every commit of the destination that recorded its manifest but did not complete.
/// Returns the jobs whose commits were finished.
pub async fn resume_pending(dest: &Destination, concurrency: usize) -> Result<Vec<String>> {
    let mut resumed = Vec::new();
    for job in temporary_jobs(dest).await? {
        if let Some(manifest) = read_manifest(dest, &job).await? {
            publish(dest, &manifest, concurrency).await?;
            resumed.push(job);
        }
    }
    Ok(resumed)
}

/// Remove a failed job's temporary files. A job that recorded its manifest is left for
/// [`resume_pending`]: its commit had begun.
pub async fn abort(dest: &Destination, job: &str) -> Result<()> {
    if read_manifest(dest, job).await?.is_some() {
        return Ok(());
    }
    remove_dir(dest, &Destination::job_dir(job)).await
}

/// Paths (relative to the root) that readers must not see: new files of commits that have not
/// reached their committed mark, and files that committed overwrites replace.
pub async fn uncommitted_files(dest: &Destination) -> Result<BTreeSet<String>> {
    let mut hidden = BTreeSet::new();
    for job in temporary_jobs(dest).await? {
        let Some(manifest) = read_manifest(dest, &job).await? else {
            continue;
        };
        if is_committed(dest, &job).await? {
            hidden.extend(manifest.replaced);
        } else {
            hidden.extend(manifest.files.into_iter().map(|f| f.path));
        }
    }
    Ok(hidden)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use faisca_proto::WrittenFile;
    use object_store::memory::InMemory;

    fn dest() -> Destination {
        Destination {
            url: "memory:///out".into(),
            store: Arc::new(InMemory::new()),
            root: Path::from("out"),
        }
    }

    async fn write(dest: &Destination, relative: &str) {
        put(dest, relative, b"x".to_vec()).await.unwrap();
    }

    async fn listing(dest: &Destination) -> Vec<String> {
        let mut all = list_data(dest).await.unwrap();
        all.sort();
        all
    }

    fn task_file(partition: u32, attempt: u32, path: &str) -> TaskFile {
        TaskFile {
            partition,
            attempt,
            file: WrittenFile {
                path: path.into(),
                rows: 10,
                bytes: 1,
            },
        }
    }

    fn options() -> CommitOptions {
        CommitOptions {
            dynamic_overwrite: false,
            concurrency: 4,
            stop_after_manifest: false,
        }
    }

    #[tokio::test]
    async fn overwrite_publishes_chosen_attempts_and_replaces_old_files() {
        let d = dest();
        write(&d, "old.parquet").await;
        write(&d, "_temporary/j/0-0/part-0.parquet").await; // a failed attempt
        write(&d, "_temporary/j/0-1/part-0.parquet").await;
        write(&d, "_temporary/j/1-0/k=a/part-1.parquet").await;
        assert!(
            check_destination(&d, SaveMode::ErrorIfExists)
                .await
                .is_err()
        );
        assert!(!check_destination(&d, SaveMode::Ignore).await.unwrap());
        let files = [
            task_file(0, 1, "part-0.parquet"),
            task_file(1, 0, "k=a/part-1.parquet"),
        ];
        let m = plan_manifest(&d, "j", SaveMode::Overwrite, &files, &options())
            .await
            .unwrap();
        assert_eq!(m.replaced, vec!["old.parquet".to_string()]);
        assert_eq!(commit(&d, &m, &options()).await.unwrap(), 20);
        assert_eq!(
            listing(&d).await,
            vec!["_SUCCESS", "k=a/part-1.parquet", "part-0.parquet"]
        );
        assert!(temporary_jobs(&d).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_interrupted_commit_is_hidden_then_resumed() {
        let d = dest();
        write(&d, "old.parquet").await;
        write(&d, "_temporary/j/0-0/new.parquet").await;
        let stop = CommitOptions {
            stop_after_manifest: true,
            ..options()
        };
        let m = plan_manifest(
            &d,
            "j",
            SaveMode::Overwrite,
            &[task_file(0, 0, "new.parquet")],
            &stop,
        )
        .await
        .unwrap();
        assert!(commit(&d, &m, &stop).await.is_err());
        // Simulate a crash half-way through the moves: the new file is visible by name only.
        d.store
            .rename(
                &d.child("_temporary/j/0-0/new.parquet").unwrap(),
                &d.child("new.parquet").unwrap(),
            )
            .await
            .unwrap();
        let hidden = uncommitted_files(&d).await.unwrap();
        assert_eq!(hidden.into_iter().collect::<Vec<_>>(), vec!["new.parquet"]);
        // A failed job's clean-up leaves a started commit alone.
        abort(&d, "j").await.unwrap();
        assert_eq!(resume_pending(&d, 4).await.unwrap(), vec!["j".to_string()]);
        assert_eq!(listing(&d).await, vec!["_SUCCESS", "new.parquet"]);
        assert!(uncommitted_files(&d).await.unwrap().is_empty());
        assert!(resume_pending(&d, 4).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn dynamic_overwrite_replaces_only_written_partitions_and_abort_cleans_up() {
        let d = dest();
        write(&d, "k=a/old.parquet").await;
        write(&d, "k=b/old.parquet").await;
        write(&d, "_temporary/j/0-0/k=a/new.parquet").await;
        let dynamic = CommitOptions {
            dynamic_overwrite: true,
            ..options()
        };
        let m = plan_manifest(
            &d,
            "j",
            SaveMode::Overwrite,
            &[task_file(0, 0, "k=a/new.parquet")],
            &dynamic,
        )
        .await
        .unwrap();
        assert_eq!(m.replaced, vec!["k=a/old.parquet".to_string()]);
        write(&d, "_temporary/failed/0-0/x.parquet").await;
        abort(&d, "failed").await.unwrap();
        assert_eq!(temporary_jobs(&d).await.unwrap(), vec!["j".to_string()]);
    }
}
