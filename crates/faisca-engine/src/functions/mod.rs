//! Built-in functions Faísca adds to DataFusion's, in every session and executor.
//!
//! * [`from_json`]: Spark's `from_json(value, 'a INT, b STRING')` → a struct; the schema is
//!   Spark's DDL ([`ddl`]).
//! * [`from_avro`]: Spark's `from_avro(value, avro_schema_json [, options])` → a struct, from
//!   raw Avro datums or the Confluent Schema Registry wire format ([`schema_registry`]).
//! * [`to_json`]: Spark's `to_json(struct)` → JSON text (e.g. a Kafka record's value).

pub mod ddl;
pub mod from_avro;
pub mod from_json;
pub mod schema_registry;
pub mod to_json;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StructArray, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::ScalarUDF;

/// The built-in scalar functions.
pub fn builtin_scalar() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::from(from_json::FromJson::new())),
        Arc::new(ScalarUDF::from(from_avro::FromAvro::new())),
        Arc::new(ScalarUDF::from(to_json::ToJson::new())),
    ]
}

/// The struct column of `len` rows whose rows `present[k]` are row `k` of `decoded` and whose
/// other rows (null or empty inputs) are null.
pub(crate) fn spread_rows(
    decoded: RecordBatch,
    present: &[usize],
    len: usize,
) -> DfResult<ArrayRef> {
    let structs: ArrayRef = Arc::new(StructArray::from(decoded));
    let mut next = 0usize;
    let indices: UInt32Array = (0..len)
        .map(|i| {
            (present.get(next) == Some(&i)).then(|| {
                next += 1;
                (next - 1) as u32
            })
        })
        .collect();
    Ok(take(&structs, &indices, None)?)
}
