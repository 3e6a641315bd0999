//! Map outputs kept in executor memory.
//!
//! A task whose output fits its memory reservation (from the executor's DataFusion memory pool)
//! leaves it here as Arrow batches instead of in files: a reader on the same executor takes the
//! batches as they are (no encoding, no files, no copies), and the executor's Flight server encodes
//! them for remote readers. The reservation is held until the job's outputs are removed; an output
//! that does not fit goes to files (see `writer`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::execution::memory_pool::MemoryReservation;

/// `(job, stage, map partition, attempt)`.
pub type OutputKey = (String, u32, u32, u32);

/// One task attempt's output, by output partition.
#[derive(Debug)]
pub struct StoredOutput {
    /// Schema of every batch.
    pub schema: SchemaRef,
    /// Batches of each output partition.
    pub partitions: Vec<Vec<RecordBatch>>,
    /// Memory held for the batches (released when the output is dropped).
    pub reservation: MemoryReservation,
}

/// The in-memory map outputs of one executor.
#[derive(Debug, Default)]
pub struct MemoryShuffleStore {
    outputs: Mutex<HashMap<OutputKey, Arc<StoredOutput>>>,
}

impl MemoryShuffleStore {
    /// Keep an output.
    pub fn insert(&self, key: OutputKey, output: StoredOutput) {
        if let Ok(mut outputs) = self.outputs.lock() {
            outputs.insert(key, Arc::new(output));
        }
    }

    /// An output, if it is in memory.
    pub fn get(&self, key: &OutputKey) -> Option<Arc<StoredOutput>> {
        self.outputs.lock().ok()?.get(key).cloned()
    }

    /// Drop every output of `job` (their memory returns to the pool once no reader holds them).
    pub fn remove_job(&self, job: &str) {
        if let Ok(mut outputs) = self.outputs.lock() {
            outputs.retain(|(j, _, _, _), _| j != job);
        }
    }

    /// Bytes of memory the outputs held hold.
    pub fn held_bytes(&self) -> u64 {
        self.outputs
            .lock()
            .map(|o| o.values().map(|out| out.reservation.size() as u64).sum())
            .unwrap_or(0)
    }

    /// Number of outputs held.
    pub fn len(&self) -> usize {
        self.outputs.lock().map(|o| o.len()).unwrap_or(0)
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
