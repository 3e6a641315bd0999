//! The hash partitioning of a stage's shuffle write, computed in the pipeline's pass.
//!
//! A hash-partitioned stage whose plan ends in a pipeline leaves the split of its rows to the
//! pipeline ([`super::Step::Partition`]). The selected rows' key columns are hashed exactly as
//! DataFusion's `BatchPartitioner` (which the unfused shuffle writer runs) hashes them —
//! `create_hashes` seeded with `REPARTITION_RANDOM_STATE`, a row going to `hash % count` — so a
//! fused stage and an unfused one agree on every row's partition (a join may read one of each).
//! Each partition's rows are then taken from the batch under its selection in one pass: the
//! surviving rows are copied once, straight into their partitions, where the unfused plan
//! gathers them, coalesces them and takes them again per partition.

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{take, take_arrays};
use datafusion::common::hash_utils::create_hashes;
use datafusion::error::Result as DfResult;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::repartition::REPARTITION_RANDOM_STATE;

use super::selection::Selection;

/// The rows of one batch split by output partition: `(partition, rows)` pieces, partitions
/// ascending, each piece's rows in batch order.
pub type Pieces = Vec<(usize, RecordBatch)>;

/// The partitioning step: hash these output columns into `count` partitions.
#[derive(Debug, Clone)]
pub struct PartitionStep {
    /// The hashed columns of the pipeline's output, in order.
    pub columns: Vec<Column>,
    /// The number of output partitions.
    pub count: usize,
}

impl PartitionStep {
    /// A short rendering for `EXPLAIN`.
    pub fn describe(&self) -> String {
        let columns: Vec<String> = self.columns.iter().map(|c| c.to_string()).collect();
        format!("hash_partition([{}], {})", columns.join(", "), self.count)
    }
}

/// Partition counts up to which rows are ordered by one pass per partition.
const FEW_PARTITIONS: usize = 4;

/// Splits batches under a selection by the hash of their key columns.
#[derive(Debug)]
pub struct HashSplitter {
    columns: Vec<usize>,
    count: usize,
    hashes: Vec<u64>,
    /// The partition of each selected row, in selection order.
    partitions: Vec<u32>,
}

impl HashSplitter {
    /// A splitter for `step` (whose count is at least one: [`super::CompiledPipeline::compile`]
    /// checks it).
    pub fn new(step: &PartitionStep) -> HashSplitter {
        HashSplitter {
            columns: step.columns.iter().map(Column::index).collect(),
            count: step.count.max(1),
            hashes: Vec::new(),
            partitions: Vec::new(),
        }
    }

    /// The selected rows of `batch`, split by partition.
    pub fn split(&mut self, batch: &RecordBatch, sel: &Selection) -> DfResult<Pieces> {
        if sel.is_empty() {
            return Ok(Vec::new());
        }
        match sel {
            Selection::Rows(rows) if rows.len() * 2 <= batch.num_rows() => {
                // Few rows survive: hash only theirs.
                let positions = UInt32Array::from(rows.clone());
                let keys: Vec<ArrayRef> = self
                    .columns
                    .iter()
                    .map(|c| take(batch.column(*c).as_ref(), &positions, None))
                    .collect::<Result<_, _>>()?;
                self.hash(&keys, rows.len())?;
                assign(
                    &mut self.partitions,
                    self.count,
                    self.hashes.iter().copied(),
                );
            }
            _ => {
                // Most rows survive: hash every row in place, keep the selected ones.
                let keys: Vec<ArrayRef> = self
                    .columns
                    .iter()
                    .map(|c| batch.column(*c).clone())
                    .collect();
                self.hash(&keys, batch.num_rows())?;
                let (hashes, partitions) = (&self.hashes, &mut self.partitions);
                match sel {
                    Selection::All(_) => assign(partitions, self.count, hashes.iter().copied()),
                    Selection::Rows(rows) => assign(
                        partitions,
                        self.count,
                        rows.iter().map(|r| hashes[*r as usize]),
                    ),
                }
            }
        }
        self.take(batch, sel)
    }

    /// Hashes `keys` (of `rows` rows) into `self.hashes`.
    fn hash(&mut self, keys: &[ArrayRef], rows: usize) -> DfResult<()> {
        self.hashes.clear();
        self.hashes.resize(rows, 0);
        create_hashes(
            keys,
            REPARTITION_RANDOM_STATE.random_state(),
            &mut self.hashes,
        )?;
        Ok(())
    }

    /// One take of the selected rows in partition order, sliced into the partitions' pieces.
    fn take(&self, batch: &RecordBatch, sel: &Selection) -> DfResult<Pieces> {
        let (order, starts) = if self.count <= FEW_PARTITIONS {
            self.order_by_passes(sel)
        } else {
            self.order_by_counting(sel)
        };
        let order = UInt32Array::from(order);
        let columns = take_arrays(batch.columns(), &order, None)?;
        let taken = super::with_rows(&batch.schema(), columns, order.len())?;
        Ok((0..self.count)
            .filter(|p| starts[p + 1] > starts[*p])
            .map(|p| (p, taken.slice(starts[p], starts[p + 1] - starts[p])))
            .collect())
    }

    /// The selected rows in partition order and where each partition starts (one more start:
    /// the end), with one branch-free pass over the partitions per partition: no counter in
    /// memory that consecutive rows wait on.
    fn order_by_passes(&self, sel: &Selection) -> (Vec<u32>, Vec<usize>) {
        // One slot of slack: every row is written, and the cursor moves past the kept ones.
        let mut order = vec![0u32; self.partitions.len() + 1];
        let mut starts = Vec::with_capacity(self.count + 1);
        let mut n = 0;
        starts.push(0);
        for p in 0..self.count as u32 {
            for (part, row) in self.partitions.iter().zip(sel.rows()) {
                order[n] = row;
                n += usize::from(*part == p);
            }
            starts.push(n);
        }
        order.truncate(n);
        (order, starts)
    }

    /// [`Self::order_by_passes`] by a counting sort, for many partitions.
    fn order_by_counting(&self, sel: &Selection) -> (Vec<u32>, Vec<usize>) {
        let mut starts = vec![0usize; self.count + 1];
        for p in &self.partitions {
            starts[*p as usize + 1] += 1;
        }
        for p in 0..self.count {
            starts[p + 1] += starts[p];
        }
        let mut next = starts.clone();
        let mut order = vec![0u32; self.partitions.len()];
        for (p, row) in self.partitions.iter().zip(sel.rows()) {
            let at = &mut next[*p as usize];
            order[*at] = row;
            *at += 1;
        }
        (order, starts)
    }
}

/// Sets `partitions` to each selected row's partition, `hash % count` (a mask when `count` is a
/// power of two: the same partition without a division per row).
fn assign(partitions: &mut Vec<u32>, count: usize, hashes: impl Iterator<Item = u64>) {
    partitions.clear();
    let count = count as u64;
    if count.is_power_of_two() {
        let mask = count - 1;
        partitions.extend(hashes.map(|h| (h & mask) as u32));
    } else {
        partitions.extend(hashes.map(|h| (h % count) as u32));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::compute::concat_batches;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::Partitioning;
    use datafusion::physical_plan::metrics::Time;
    use datafusion::physical_plan::repartition::BatchPartitioner;

    use super::*;

    fn batch(rows: usize, seed: u64) -> RecordBatch {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let keys: Int64Array = (0..rows)
            .map(|_| {
                let v = next();
                (v % 7 != 0).then_some((v % 1000) as i64 - 500)
            })
            .collect();
        let names: StringArray = (0..rows)
            .map(|_| {
                let v = next();
                (v % 5 != 0).then(|| format!("name-{}", v % 37))
            })
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(schema, vec![Arc::new(keys), Arc::new(names)]).unwrap()
    }

    /// Every partition's rows, as DataFusion's partitioner splits the selected rows.
    fn reference(batch: &RecordBatch, sel: &Selection, keys: &[usize], n: usize) -> Vec<String> {
        let gathered = sel.gather_batch(batch).unwrap();
        let exprs = keys
            .iter()
            .map(|i| {
                Arc::new(Column::new(batch.schema().field(*i).name(), *i))
                    as Arc<dyn datafusion::physical_expr::PhysicalExpr>
            })
            .collect();
        let mut partitioner =
            BatchPartitioner::try_new(Partitioning::Hash(exprs, n), Time::new(), 0, 1).unwrap();
        let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); n];
        for item in partitioner.partition_iter(gathered).unwrap() {
            let (p, b) = item.unwrap();
            parts[p].push(b);
        }
        render(batch, parts)
    }

    fn render(batch: &RecordBatch, parts: Vec<Vec<RecordBatch>>) -> Vec<String> {
        parts
            .into_iter()
            .map(|p| {
                let all = concat_batches(&batch.schema(), &p).unwrap();
                arrow::util::pretty::pretty_format_batches(&[all])
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn splits_as_datafusions_partitioner_does() {
        for seed in 0..12u64 {
            let b = batch(1000, seed);
            let keys: Vec<usize> = match seed % 3 {
                0 => vec![0],
                1 => vec![1],
                _ => vec![1, 0],
            };
            let n = [1, 2, 3, 8][seed as usize % 4];
            let selections = [
                Selection::All(1000),
                Selection::All(1000).narrow(|r| r % 3 != 0),
                Selection::All(1000).narrow(|r| r % 17 == 1),
                Selection::Rows(vec![]),
            ];
            for sel in selections {
                let step = PartitionStep {
                    columns: keys
                        .iter()
                        .map(|i| Column::new(b.schema().field(*i).name(), *i))
                        .collect(),
                    count: n,
                };
                let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); n];
                let pieces = HashSplitter::new(&step).split(&b, &sel).unwrap();
                let mut last = None;
                for (p, piece) in pieces {
                    assert!(last < Some(p), "partitions ascending, each once");
                    last = Some(p);
                    parts[p].push(piece);
                }
                assert_eq!(
                    render(&b, parts),
                    reference(&b, &sel, &keys, n),
                    "seed {seed}, {n} partitions, {} rows selected",
                    sel.len()
                );
            }
        }
    }
}
