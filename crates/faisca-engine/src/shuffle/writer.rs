//! The shuffle writer: one task's batches → its output partitions, kept in executor memory when
//! the task's memory reservation allows ([`super::memory`]), otherwise one data file + one index file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use arrow::compute::BatchCoalescer;
use arrow::datatypes::SchemaRef;
use arrow::ipc::CompressionType;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::record_batch::RecordBatch;
use datafusion::error::Result as DfResult;
use datafusion::physical_plan::metrics::Time;
use datafusion::physical_plan::repartition::BatchPartitioner;
use datafusion::physical_plan::{Partitioning, SendableRecordBatchStream};
use faisca_common::{Error, Result};
use futures::StreamExt;
use futures::stream::BoxStream;

use datafusion::execution::memory_pool::MemoryReservation;

use super::ShuffleFiles;
use super::memory::{MemoryShuffleStore, OutputKey, StoredOutput};

/// How a task's output is split into partitions.
#[derive(Debug, Clone)]
pub enum OutputPartitioning {
    /// Everything goes to partition 0 (passthrough and result stages).
    Single,
    /// Rows are split by DataFusion's partitioning (hash or round-robin), the same function
    /// `RepartitionExec` applies.
    Repartition(Partitioning),
}

impl OutputPartitioning {
    /// Number of output partitions.
    pub fn partition_count(&self) -> usize {
        match self {
            OutputPartitioning::Single => 1,
            OutputPartitioning::Repartition(p) => p.partition_count(),
        }
    }
}

/// Knobs of the writer (from `faisca.shuffle.*` and `faisca.batchSize`).
#[derive(Debug, Clone)]
pub struct ShuffleWriteOptions {
    /// IPC buffer compression.
    pub compression: Option<CompressionType>,
    /// Buffered bytes above which buffered partitions are moved to a spill file.
    pub spill_bytes: u64,
    /// Target rows per written batch (small partitioned slices are coalesced up to it).
    pub batch_size: usize,
    /// The task's counters, where the bytes moved to the spill file are counted
    /// (`spill.bytes`); none outside a task.
    pub task_metrics: Option<std::sync::Arc<crate::task_metrics::TaskMetrics>>,
}

impl ShuffleWriteOptions {
    /// Options from a session configuration.
    pub fn from_config(config: &faisca_common::FaiscaConfig) -> Self {
        let compression = match config.shuffle_compression().to_ascii_lowercase().as_str() {
            "zstd" => Some(CompressionType::ZSTD),
            "none" => None,
            _ => Some(CompressionType::LZ4_FRAME),
        };
        ShuffleWriteOptions {
            compression,
            spill_bytes: config.shuffle_spill_bytes(),
            batch_size: config.batch_size(),
            task_metrics: None,
        }
    }
}

/// Rows and bytes of one output partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionStats {
    /// Rows written.
    pub rows: u64,
    /// Bytes in the data file (compressed IPC).
    pub bytes: u64,
}

struct PartitionBuffer {
    coalescer: BatchCoalescer,
    writer: Option<StreamWriter<Vec<u8>>>,
    /// Parts of this partition's IPC stream already moved to the spill file.
    spilled: Vec<Range<u64>>,
    /// Batches kept in memory (memory mode).
    kept: Vec<RecordBatch>,
    rows: u64,
}

struct Writer {
    schema: SchemaRef,
    options: ShuffleWriteOptions,
    ipc: IpcWriteOptions,
    partitions: Vec<PartitionBuffer>,
    spill_path: PathBuf,
    spill: Option<File>,
    spill_len: u64,
    /// Memory mode: the reservation covering the kept batches. `None`: files.
    memory: Option<MemoryReservation>,
}

impl Writer {
    /// Hand a finished batch of `partition` to memory or to the partition's IPC stream.
    fn emit(&mut self, partition: usize, batch: RecordBatch) -> Result<()> {
        if let Some(reservation) = self.memory.as_mut() {
            if reservation.try_grow(batch.get_array_memory_size()).is_ok() {
                self.partitions[partition].kept.push(batch);
                return Ok(());
            }
            self.switch_to_files()?;
        }
        write_batch(
            &mut self.partitions[partition],
            &self.schema,
            &self.ipc,
            &batch,
        )
    }

    /// Leave memory mode: encode what was kept into the partitions' IPC streams.
    fn switch_to_files(&mut self) -> Result<()> {
        let reservation = self.memory.take();
        for buffer in &mut self.partitions {
            for batch in std::mem::take(&mut buffer.kept) {
                write_batch(buffer, &self.schema, &self.ipc, &batch)?;
            }
        }
        drop(reservation);
        Ok(())
    }

    /// Push out what the coalescers still hold.
    fn flush(&mut self) -> Result<()> {
        for p in 0..self.partitions.len() {
            self.partitions[p].coalescer.finish_buffered_batch()?;
            while let Some(done) = self.partitions[p].coalescer.next_completed_batch() {
                self.emit(p, done)?;
            }
        }
        Ok(())
    }
    fn push(&mut self, partition: usize, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let buffer = &mut self.partitions[partition];
        buffer.rows += batch.num_rows() as u64;
        buffer.coalescer.push_batch(batch)?;
        while let Some(done) = self.partitions[partition].coalescer.next_completed_batch() {
            self.emit(partition, done)?;
        }
        Ok(())
    }

    fn buffered_bytes(&self) -> u64 {
        self.partitions
            .iter()
            .filter_map(|p| p.writer.as_ref())
            .map(|w| w.get_ref().len() as u64)
            .sum()
    }

    /// Move the partitions' encoded bytes to the spill file once they pass
    /// `faisca.shuffle.spillBytes`. The file is written on a blocking thread, not on the
    /// runtime's workers.
    async fn maybe_spill(&mut self) -> Result<()> {
        if self.buffered_bytes() < self.options.spill_bytes {
            return Ok(());
        }
        let chunks: Vec<(usize, Vec<u8>)> = self
            .partitions
            .iter_mut()
            .enumerate()
            .filter_map(|(i, buffer)| {
                let bytes = std::mem::take(buffer.writer.as_mut()?.get_mut());
                (!bytes.is_empty()).then_some((i, bytes))
            })
            .collect();
        let (file, path) = (self.spill.take(), self.spill_path.clone());
        let (file, chunks) = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut file = match file {
                Some(f) => f,
                None => create_parent(&path).and_then(|()| {
                    File::options()
                        .create(true)
                        .truncate(true)
                        .read(true)
                        .write(true)
                        .open(&path)
                        .map_err(|e| {
                            Error::external(format!(
                                "cannot create shuffle spill file {}: {e}",
                                path.display()
                            ))
                        })
                })?,
            };
            for (_, bytes) in &chunks {
                file.write_all(bytes).map_err(|e| {
                    Error::external(format!(
                        "cannot write shuffle spill file {}: {e}",
                        path.display()
                    ))
                })?;
            }
            Ok((file, chunks))
        })
        .await
        .map_err(|e| Error::internal(format!("shuffle spill thread: {e}")))??;
        self.spill = Some(file);
        for (i, bytes) in chunks {
            let len = bytes.len() as u64;
            self.partitions[i]
                .spilled
                .push(self.spill_len..self.spill_len + len);
            self.spill_len += len;
            if let Some(metrics) = &self.options.task_metrics {
                metrics.add(crate::task_metrics::SPILL_BYTES, len);
            }
        }
        Ok(())
    }

    /// Write the data file and index; returns per-partition stats.
    fn finish(mut self, files: &ShuffleFiles) -> Result<Vec<PartitionStats>> {
        let mut tails = Vec::with_capacity(self.partitions.len());
        for buffer in &mut self.partitions {
            let tail = match buffer.writer.take() {
                Some(mut w) => {
                    w.finish()?;
                    w.into_inner()?
                }
                None => Vec::new(),
            };
            tails.push(tail);
        }
        let tmp_data = tmp_path(&files.data);
        let tmp_index = tmp_path(&files.index);
        create_parent(&tmp_data)?;
        let mut data = std::io::BufWriter::new(File::create(&tmp_data).map_err(|e| {
            Error::external(format!(
                "cannot create shuffle file {}: {e}",
                tmp_data.display()
            ))
        })?);
        let mut offsets = Vec::with_capacity(self.partitions.len() + 1);
        let mut stats = Vec::with_capacity(self.partitions.len());
        let mut offset = 0u64;
        for (buffer, tail) in self.partitions.iter().zip(&tails) {
            offsets.push(offset);
            let start = offset;
            for range in &buffer.spilled {
                let spill = self
                    .spill
                    .as_mut()
                    .ok_or_else(|| Error::internal("spilled ranges without a spill file"))?;
                spill.seek(SeekFrom::Start(range.start))?;
                let copied =
                    std::io::copy(&mut (&mut *spill).take(range.end - range.start), &mut data)?;
                offset += copied;
            }
            data.write_all(tail)?;
            offset += tail.len() as u64;
            stats.push(PartitionStats {
                rows: buffer.rows,
                bytes: offset - start,
            });
        }
        offsets.push(offset);
        data.flush()?;
        drop(data);
        let index: Vec<u8> = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
        std::fs::write(&tmp_index, index)?;
        // Index first: a reader that finds the data file finds its index.
        std::fs::rename(&tmp_index, &files.index)?;
        std::fs::rename(&tmp_data, &files.data)?;
        if self.spill.take().is_some() {
            let _ = std::fs::remove_file(&self.spill_path);
        }
        Ok(stats)
    }
}

fn write_batch(
    buffer: &mut PartitionBuffer,
    schema: &SchemaRef,
    ipc: &IpcWriteOptions,
    batch: &RecordBatch,
) -> Result<()> {
    if buffer.writer.is_none() {
        buffer.writer = Some(StreamWriter::try_new_with_options(
            Vec::new(),
            schema,
            ipc.clone(),
        )?);
    }
    buffer.writer.as_mut().expect("just created").write(batch)?;
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".inprogress");
    path.with_file_name(name)
}

/// Where an output may be kept in memory.
#[derive(Debug)]
pub struct MemoryTarget<'a> {
    /// The executor's store.
    pub store: &'a MemoryShuffleStore,
    /// The output's key in it.
    pub key: OutputKey,
    /// An empty reservation of the task, grown batch by batch; when it cannot grow, the output
    /// goes to files.
    pub reservation: MemoryReservation,
}

/// Drain `stream` (partition `input_partition` of `input_partitions`) into shuffle output: in
/// `memory` while its reservation grows, otherwise into `files`.
///
/// Files appear only when the stream ended without error; on error or when the returned future
/// is dropped, partial files are removed.
pub async fn write_shuffle(
    stream: SendableRecordBatchStream,
    partitioning: OutputPartitioning,
    input_partition: usize,
    input_partitions: usize,
    files: &ShuffleFiles,
    options: ShuffleWriteOptions,
    memory: Option<MemoryTarget<'_>>,
) -> Result<Vec<PartitionStats>> {
    let schema = stream.schema();
    let count = partitioning.partition_count();
    let mut partitioner = match &partitioning {
        OutputPartitioning::Single => None,
        OutputPartitioning::Repartition(p) => Some(BatchPartitioner::try_new(
            p.clone(),
            Time::new(),
            input_partition,
            input_partitions.max(1),
        )?),
    };
    let split = stream
        .map(move |batch| match partitioner.as_mut() {
            None => Ok(vec![(0, batch?)]),
            Some(p) => p.partition_iter(batch?)?.collect(),
        })
        .boxed();
    write_split_shuffle(schema, split, count, files, options, memory).await
}

/// [`write_shuffle`] for rows already split into `count` partitions: each item of `split` is
/// one batch's `(partition, rows)` pieces (a fused pipeline's partition step makes them).
pub async fn write_split_shuffle(
    schema: SchemaRef,
    mut split: BoxStream<'static, DfResult<Vec<(usize, RecordBatch)>>>,
    count: usize,
    files: &ShuffleFiles,
    options: ShuffleWriteOptions,
    memory: Option<MemoryTarget<'_>>,
) -> Result<Vec<PartitionStats>> {
    let ipc = IpcWriteOptions::default().try_with_compression(options.compression)?;
    let mut writer = Writer {
        partitions: (0..count)
            .map(|_| PartitionBuffer {
                coalescer: BatchCoalescer::new(schema.clone(), options.batch_size),
                writer: None,
                spilled: Vec::new(),
                kept: Vec::new(),
                rows: 0,
            })
            .collect(),
        schema: schema.clone(),
        ipc,
        spill_path: tmp_path(&files.data).with_extension("spill"),
        spill: None,
        spill_len: 0,
        options,
        memory: None,
    };
    let mut target = None;
    if let Some(m) = memory {
        writer.memory = Some(m.reservation);
        target = Some((m.store, m.key));
    }
    let cleanup = CleanupGuard {
        paths: vec![
            tmp_path(&files.data),
            tmp_path(&files.index),
            writer.spill_path.clone(),
        ],
        armed: true,
    };
    while let Some(pieces) = split.next().await {
        for (partition, rows) in pieces? {
            if partition >= count {
                return Err(Error::internal(format!(
                    "a shuffle piece for partition {partition} of a {count}-partition output"
                )));
            }
            writer.push(partition, rows)?;
        }
        writer.maybe_spill().await?;
    }
    writer.flush()?;
    if let (Some(reservation), Some((store, key))) = (writer.memory.take(), target) {
        let stats = writer
            .partitions
            .iter()
            .map(|p| PartitionStats {
                rows: p.rows,
                bytes: p
                    .kept
                    .iter()
                    .map(|b| b.get_array_memory_size() as u64)
                    .sum(),
            })
            .collect();
        let partitions = writer.partitions.into_iter().map(|p| p.kept).collect();
        store.insert(
            key,
            StoredOutput {
                schema,
                partitions,
                reservation,
            },
        );
        cleanup.disarm();
        return Ok(stats);
    }
    // The data file is assembled (spilled ranges copied, tails appended) on a blocking thread.
    let owned = files.clone();
    let stats = tokio::task::spawn_blocking(move || writer.finish(&owned))
        .await
        .map_err(|e| Error::internal(format!("shuffle file writer thread: {e}")))??;
    cleanup.disarm();
    Ok(stats)
}

/// Create the directory `path` goes in (on a blocking thread: a task's shuffle directory is made
/// only when a file is written, so an output kept in memory costs no directory).
fn create_parent(path: &std::path::Path) -> Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::external(format!(
            "cannot create shuffle directory {}: {e}",
            dir.display()
        ))
    })
}

/// Removes in-progress files unless disarmed (the write finished).
struct CleanupGuard {
    paths: Vec<PathBuf>,
    armed: bool,
}

impl CleanupGuard {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        if self.armed {
            for p in &self.paths {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shuffle::read_local_partition;
    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::ipc::reader::StreamReader;
    use datafusion::physical_expr::expressions::Column;
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use std::sync::Arc;

    fn input(batches: usize, rows: i64) -> (SchemaRef, SendableRecordBatchStream) {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let s = schema.clone();
        let stream = futures::stream::iter((0..batches).map(move |b| {
            Ok(RecordBatch::try_new(
                s.clone(),
                vec![Arc::new(Int64Array::from_iter_values(
                    b as i64 * rows..(b as i64 + 1) * rows,
                ))],
            )
            .unwrap())
        }));
        (
            schema.clone(),
            Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
        )
    }

    fn read_all(files: &ShuffleFiles, p: u32) -> Vec<i64> {
        let bytes = read_local_partition(files, p).unwrap();
        if bytes.is_empty() {
            return vec![];
        }
        let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        reader
            .flat_map(|b| {
                b.unwrap()
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    async fn run(spill_bytes: u64) {
        let dir = tempfile::tempdir().unwrap();
        let files = ShuffleFiles::new(dir.path(), "job", 1, 0, 0);
        let (schema, stream) = input(20, 1000);
        let hash = Partitioning::Hash(
            vec![Arc::new(Column::new_with_schema("k", &schema).unwrap())],
            4,
        );
        let metrics = Arc::new(crate::task_metrics::TaskMetrics::default());
        let options = ShuffleWriteOptions {
            compression: Some(CompressionType::LZ4_FRAME),
            spill_bytes,
            batch_size: 512,
            task_metrics: Some(metrics.clone()),
        };
        let stats = write_shuffle(
            stream,
            OutputPartitioning::Repartition(hash),
            0,
            1,
            &files,
            options,
            None,
        )
        .await
        .unwrap();
        assert_eq!(stats.len(), 4);
        assert_eq!(stats.iter().map(|s| s.rows).sum::<u64>(), 20_000);
        let mut all: Vec<i64> = (0..4).flat_map(|p| read_all(&files, p)).collect();
        for p in 0..4 {
            assert_eq!(read_all(&files, p).len() as u64, stats[p as usize].rows);
        }
        all.sort();
        assert_eq!(all, (0..20_000).collect::<Vec<_>>());
        // Nothing but the data and index file is left.
        let left: Vec<_> = std::fs::read_dir(files.data.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        // The bytes moved to the spill file are the task's spill.
        let spilled = metrics
            .snapshot()
            .get(crate::task_metrics::SPILL_BYTES)
            .copied()
            .unwrap_or(0);
        assert_eq!(spilled > 0, spill_bytes == 1, "{spilled}");
    }

    #[tokio::test]
    async fn hash_partitions_without_spill() {
        run(u64::MAX).await;
    }

    #[tokio::test]
    async fn hash_partitions_with_spill() {
        run(1).await;
    }

    async fn run_with_memory(
        pool_bytes: usize,
    ) -> (
        ShuffleFiles,
        MemoryShuffleStore,
        Vec<PartitionStats>,
        tempfile::TempDir,
    ) {
        use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryConsumer, MemoryPool};
        let dir = tempfile::tempdir().unwrap();
        let files = ShuffleFiles::new(dir.path(), "job", 2, 0, 0);
        let (schema, stream) = input(20, 1000);
        let hash = Partitioning::Hash(
            vec![Arc::new(Column::new_with_schema("k", &schema).unwrap())],
            3,
        );
        let options = ShuffleWriteOptions {
            compression: None,
            spill_bytes: u64::MAX,
            batch_size: 512,
            task_metrics: None,
        };
        let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(pool_bytes));
        let store = MemoryShuffleStore::default();
        let target = MemoryTarget {
            store: &store,
            key: ("job".into(), 2, 0, 0),
            reservation: MemoryConsumer::new("test").register(&pool),
        };
        let stats = write_shuffle(
            stream,
            OutputPartitioning::Repartition(hash),
            0,
            1,
            &files,
            options,
            Some(target),
        )
        .await
        .unwrap();
        (files, store, stats, dir)
    }

    #[tokio::test]
    async fn output_that_fits_stays_in_memory() {
        let (files, store, stats, _dir) = run_with_memory(64 << 20).await;
        let stored = store.get(&("job".into(), 2, 0, 0)).expect("kept in memory");
        assert!(!files.data.exists() && !files.index.exists());
        let mut all: Vec<i64> = stored
            .partitions
            .iter()
            .flatten()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        all.sort();
        assert_eq!(all, (0..20_000).collect::<Vec<_>>());
        assert_eq!(stats.iter().map(|s| s.rows).sum::<u64>(), 20_000);
        assert!(stored.reservation.size() > 0);
        store.remove_job("job");
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn output_that_does_not_fit_goes_to_files_whole() {
        // Room for a couple of batches only: the writer switches to files midway.
        let (files, store, stats, _dir) = run_with_memory(10_000).await;
        assert!(store.is_empty());
        let mut all: Vec<i64> = (0..3).flat_map(|p| read_all(&files, p)).collect();
        all.sort();
        assert_eq!(all, (0..20_000).collect::<Vec<_>>());
        assert_eq!(stats.iter().map(|s| s.rows).sum::<u64>(), 20_000);
    }

    #[tokio::test]
    async fn empty_input_gives_empty_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let files = ShuffleFiles::new(dir.path(), "job", 0, 3, 1);
        let (_, stream) = input(0, 0);
        let options = ShuffleWriteOptions {
            compression: None,
            spill_bytes: u64::MAX,
            batch_size: 8,
            task_metrics: None,
        };
        let stats = write_shuffle(
            stream,
            OutputPartitioning::Single,
            3,
            4,
            &files,
            options,
            None,
        )
        .await
        .unwrap();
        assert_eq!(stats, vec![PartitionStats::default()]);
        assert!(read_all(&files, 0).is_empty());
    }
}
