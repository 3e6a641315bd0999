//! Selection vectors: which rows of a batch are still alive after the predicates so far.

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::error::Result as DfResult;

/// The rows of a batch that later steps work on, in ascending order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every row of an `n`-row batch.
    All(usize),
    /// These rows (ascending, no repeats).
    Rows(Vec<u32>),
}

impl Selection {
    /// Number of rows selected.
    pub fn len(&self) -> usize {
        match self {
            Selection::All(n) => *n,
            Selection::Rows(r) => r.len(),
        }
    }

    /// Whether no row is selected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The selected row numbers, in order.
    pub fn rows(&self) -> SelectedRows<'_> {
        match self {
            Selection::All(n) => SelectedRows::All(0..*n as u32),
            Selection::Rows(r) => SelectedRows::Rows(r.iter()),
        }
    }

    /// The selected rows of `array`, densely (the array itself when every row is selected).
    pub fn gather(&self, array: &ArrayRef) -> DfResult<ArrayRef> {
        match self {
            Selection::All(_) => Ok(array.clone()),
            Selection::Rows(rows) => {
                let indices = UInt32Array::from(rows.clone());
                Ok(take(array.as_ref(), &indices, None)?)
            }
        }
    }

    /// The selection as a filter mask over a batch of `rows` rows.
    pub fn mask(&self, rows: usize) -> arrow::array::BooleanArray {
        let bits = match self {
            Selection::All(_) => arrow::buffer::BooleanBuffer::new_set(rows),
            Selection::Rows(selected) => {
                let mut words = vec![0u64; rows.div_ceil(64)];
                for r in selected {
                    words[*r as usize / 64] |= 1 << (r % 64);
                }
                arrow::buffer::BooleanBuffer::new(arrow::buffer::Buffer::from_vec(words), 0, rows)
            }
        };
        arrow::array::BooleanArray::new(bits, None)
    }

    /// The selected rows of `batch`.
    pub fn gather_batch(&self, batch: &RecordBatch) -> DfResult<RecordBatch> {
        if let Selection::All(_) = self {
            return Ok(batch.clone());
        }
        let columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| self.gather(c))
            .collect::<DfResult<_>>()?;
        Ok(RecordBatch::try_new_with_options(
            batch.schema(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(self.len())),
        )?)
    }

    /// Rows of this selection whose position `i` in it has `keep(i)`.
    pub fn narrow(&self, mut keep: impl FnMut(usize) -> bool) -> Selection {
        // Branch-free: every row is written, and the cursor moves only past kept ones.
        let mut out = vec![0u32; self.len() + 1];
        let mut n = 0;
        for (i, row) in self.rows().enumerate() {
            out[n] = row;
            n += usize::from(keep(i));
        }
        out.truncate(n);
        Selection::Rows(out)
    }

    /// The union of two selections of the same batch.
    pub fn union(&self, other: &Selection) -> Selection {
        match (self, other) {
            (Selection::All(n), _) | (_, Selection::All(n)) => Selection::All(*n),
            (Selection::Rows(a), Selection::Rows(b)) => {
                let mut out = Vec::with_capacity(a.len() + b.len());
                let (mut i, mut j) = (0, 0);
                while i < a.len() && j < b.len() {
                    match a[i].cmp(&b[j]) {
                        std::cmp::Ordering::Less => {
                            out.push(a[i]);
                            i += 1;
                        }
                        std::cmp::Ordering::Greater => {
                            out.push(b[j]);
                            j += 1;
                        }
                        std::cmp::Ordering::Equal => {
                            out.push(a[i]);
                            i += 1;
                            j += 1;
                        }
                    }
                }
                out.extend_from_slice(&a[i..]);
                out.extend_from_slice(&b[j..]);
                Selection::Rows(out)
            }
        }
    }
}

/// Iterator over selected row numbers.
pub enum SelectedRows<'a> {
    /// `0..n`.
    All(std::ops::Range<u32>),
    /// Listed rows.
    Rows(std::slice::Iter<'a, u32>),
}

impl Iterator for SelectedRows<'_> {
    type Item = u32;

    #[inline]
    fn next(&mut self) -> Option<u32> {
        match self {
            SelectedRows::All(r) => r.next(),
            SelectedRows::Rows(r) => r.next().copied(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            SelectedRows::All(r) => r.size_hint(),
            SelectedRows::Rows(r) => r.size_hint(),
        }
    }
}

impl ExactSizeIterator for SelectedRows<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_set_the_selected_rows() {
        let rows = vec![0u32, 5, 63, 64, 65, 127, 128, 199];
        let mask = Selection::Rows(rows.clone()).mask(200);
        let set: Vec<u32> = (0..200u32).filter(|r| mask.value(*r as usize)).collect();
        assert_eq!((set, mask.len()), (rows, 200));
        let all = Selection::All(70).mask(70);
        assert_eq!((all.true_count(), all.len()), (70, 70));
    }

    #[test]
    fn unions_and_narrowing() {
        let a = Selection::Rows(vec![1, 3, 5]);
        let b = Selection::Rows(vec![2, 3, 6]);
        assert_eq!(a.union(&b), Selection::Rows(vec![1, 2, 3, 5, 6]));
        assert_eq!(a.union(&Selection::All(7)), Selection::All(7));
        assert_eq!(
            Selection::All(4).narrow(|i| i % 2 == 1),
            Selection::Rows(vec![1, 3])
        );
        assert_eq!(a.narrow(|i| i == 2), Selection::Rows(vec![5]));
    }
}
