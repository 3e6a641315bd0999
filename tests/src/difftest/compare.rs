//! Comparing two results: as multisets of rows (or in order, where the query orders), floats
//! within a relative tolerance of 1e-9 (or both within 1e-12 of zero: a sum of variances can
//! cancel to 0 one way and to 1e-17 another), NaN equal to NaN, and the column types equal.

use std::cmp::Ordering;

use datafusion::arrow::array::{Array, ArrayRef, Float32Array, Float64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::array_value_to_string;

/// One cell.
#[derive(Debug, Clone)]
enum Cell {
    Null,
    Float(f64),
    Other(String),
}

impl Cell {
    fn of(array: &ArrayRef, row: usize) -> Cell {
        if array.is_null(row) {
            return Cell::Null;
        }
        match array.data_type() {
            DataType::Float64 => Cell::Float(
                array
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .map_or(f64::NAN, |a| a.value(row)),
            ),
            DataType::Float32 => Cell::Float(
                array
                    .as_any()
                    .downcast_ref::<Float32Array>()
                    .map_or(f64::NAN, |a| f64::from(a.value(row))),
            ),
            _ => {
                Cell::Other(array_value_to_string(array, row).unwrap_or_else(|e| format!("<{e}>")))
            }
        }
    }

    fn same(&self, other: &Cell) -> bool {
        match (self, other) {
            (Cell::Null, Cell::Null) => true,
            (Cell::Float(a), Cell::Float(b)) => close(*a, *b),
            (Cell::Other(a), Cell::Other(b)) => a == b,
            _ => false,
        }
    }

    /// A total order: nulls, then floats (IEEE total order), then the rest as text.
    fn order(&self, other: &Cell) -> Ordering {
        match (self, other) {
            (Cell::Null, Cell::Null) => Ordering::Equal,
            (Cell::Null, _) => Ordering::Less,
            (_, Cell::Null) => Ordering::Greater,
            (Cell::Float(a), Cell::Float(b)) => a.total_cmp(b),
            (Cell::Float(_), _) => Ordering::Less,
            (_, Cell::Float(_)) => Ordering::Greater,
            (Cell::Other(a), Cell::Other(b)) => a.cmp(b),
        }
    }

    fn show(&self) -> String {
        match self {
            Cell::Null => "NULL".into(),
            Cell::Float(f) => format!("{f:?}"),
            Cell::Other(s) => s.clone(),
        }
    }
}

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    if a.is_infinite() || b.is_infinite() {
        return false;
    }
    let scale = a.abs().max(b.abs());
    (a - b).abs() <= 1e-9 * scale || scale < 1e-12
}

type Row = Vec<Cell>;

fn rows(batches: &[RecordBatch]) -> Vec<Row> {
    batches
        .iter()
        .flat_map(|b| {
            (0..b.num_rows()).map(move |r| b.columns().iter().map(|c| Cell::of(c, r)).collect())
        })
        .collect()
}

fn types(batches: &[RecordBatch]) -> Option<Vec<DataType>> {
    batches.first().map(|b| {
        b.schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect()
    })
}

fn show_rows(rows: &[Row]) -> String {
    let shown: Vec<String> = rows
        .iter()
        .take(8)
        .map(|r| r.iter().map(Cell::show).collect::<Vec<_>>().join("|"))
        .collect();
    let more = if rows.len() > 8 {
        format!(" … ({} rows)", rows.len())
    } else {
        String::new()
    };
    format!("[{}]{more}", shown.join(", "))
}

/// `None` when `actual` is `expected`; otherwise what differs.
pub fn difference(
    expected: &[RecordBatch],
    actual: &[RecordBatch],
    ordered: bool,
) -> Option<String> {
    if let (Some(e), Some(a)) = (types(expected), types(actual))
        && e != a
    {
        return Some(format!(
            "column types differ: DataFusion {e:?}, Faísca {a:?}"
        ));
    }
    let (mut expected, mut actual) = (rows(expected), rows(actual));
    if expected.len() != actual.len() {
        return Some(format!(
            "{} rows from DataFusion, {} from Faísca: DataFusion {}, Faísca {}",
            expected.len(),
            actual.len(),
            show_rows(&expected),
            show_rows(&actual)
        ));
    }
    let same = |a: &Row, b: &Row| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y));
    if ordered {
        return expected
            .iter()
            .zip(&actual)
            .position(|(e, a)| !same(e, a))
            .map(|i| {
                format!(
                    "row {i} differs: DataFusion {}, Faísca {}",
                    show_rows(&expected[i..=i]),
                    show_rows(&actual[i..=i])
                )
            });
    }
    let by_cells = |a: &Row, b: &Row| {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.order(y))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    };
    expected.sort_by(by_cells);
    actual.sort_by(by_cells);
    if expected.iter().zip(&actual).all(|(e, a)| same(e, a)) {
        return None;
    }
    // Floats within the tolerance may sort differently: match rows one by one.
    let mut unmatched: Vec<Option<&Row>> = actual.iter().map(Some).collect();
    for e in &expected {
        match unmatched.iter_mut().find(|a| a.is_some_and(|a| same(e, a))) {
            Some(slot) => *slot = None,
            None => {
                return Some(format!(
                    "DataFusion has a row Faísca lacks: {}; DataFusion {}, Faísca {}",
                    show_rows(std::slice::from_ref(e)),
                    show_rows(&expected),
                    show_rows(&actual)
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(ints: Vec<Option<i64>>, floats: Vec<Option<f64>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int64, true),
            Field::new("f", DataType::Float64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ints)),
                Arc::new(Float64Array::from(floats)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn multisets_compare_regardless_of_order_and_within_the_tolerance() {
        let a = batch(
            vec![Some(1), Some(2), None],
            vec![Some(0.3), Some(f64::NAN), None],
        );
        let b = batch(
            vec![None, Some(2), Some(1)],
            vec![None, Some(f64::NAN), Some(0.1 + 0.2)],
        );
        assert_eq!(
            difference(std::slice::from_ref(&a), std::slice::from_ref(&b), false),
            None
        );
        assert!(difference(std::slice::from_ref(&a), &[b], true).is_some());
        let c = batch(
            vec![Some(1), Some(2), None],
            vec![Some(0.31), Some(f64::NAN), None],
        );
        assert!(difference(std::slice::from_ref(&a), &[c], false).is_some());
        let d = batch(
            vec![Some(1), Some(2), Some(2)],
            vec![Some(0.3), Some(f64::NAN), None],
        );
        assert!(difference(&[a], &[d], false).is_some());
    }
}
