//! `CASE WHEN … THEN … ELSE … END` values: each branch is computed for the selected rows and
//! the branches are merged with Arrow's `zip`, the last `WHEN` first, so that the first `WHEN`
//! that is true decides a row (a null condition counts as false, as in SQL). Value kernels
//! cannot fail, so computing a branch for rows it does not choose is harmless; DataFusion
//! computes each branch only for its rows, which matters only for expressions that can fail,
//! and those are not compiled.

use arrow::array::ArrayRef;
use arrow::compute::kernels::zip::zip;
use arrow::record_batch::RecordBatch;
use datafusion::error::Result as DfResult;

use super::super::selection::Selection;
use super::{Dense, Predicate, Value};

/// A compiled searched `CASE`.
#[derive(Debug, Clone)]
pub struct Case {
    /// `(condition, value)` pairs, in order.
    pub(super) whens: Vec<(Predicate, Value)>,
    /// The `ELSE` value (a typed null when there is none); every branch has the type of the
    /// `CASE`.
    pub(super) otherwise: Value,
}

impl Case {
    /// Marks the input columns this value reads.
    pub fn columns(&self, used: &mut [bool]) {
        for (when, then) in &self.whens {
            when.columns(used);
            then.columns(used);
        }
        self.otherwise.columns(used);
    }

    /// This value reading column `map[i]` where it read column `i`.
    pub fn remap(&self, map: &[usize]) -> Case {
        Case {
            whens: self
                .whens
                .iter()
                .map(|(w, t)| (w.remap(map), t.remap(map)))
                .collect(),
            otherwise: self.otherwise.remap(map),
        }
    }

    /// The value for every selected row of `batch`.
    pub fn eval(&self, batch: &RecordBatch, sel: &Selection) -> DfResult<ArrayRef> {
        let n = sel.len();
        let mut result = self.otherwise.eval(batch, sel)?;
        for (when, then) in self.whens.iter().rev() {
            let mask = when.truth(batch, sel)?;
            let chosen = then.eval(batch, sel)?;
            let merged = zip(&mask, datum(&chosen)?.as_ref(), datum(&result)?.as_ref())?;
            result = Dense::Array(merged);
        }
        result.into_array(n)
    }
}

fn datum(d: &Dense) -> DfResult<Box<dyn arrow::array::Datum>> {
    Ok(match d {
        Dense::Array(a) => Box::new(a.clone()),
        Dense::Scalar(s) => Box::new(s.to_scalar()?),
    })
}
