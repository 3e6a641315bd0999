//! Built-in functions Faísca adds to DataFusion's, in every session and executor.
//!
//! * [`from_json`]: Spark's `from_json(value, 'a INT, b STRING')` → a struct; the schema is
//!   Spark's DDL ([`ddl`]).
//! * [`from_avro`]: Spark's `from_avro(value, avro_schema_json [, options])` → a struct, from
//!   raw Avro datums or the Confluent Schema Registry wire format ([`schema_registry`]).
//! * [`to_json`]: Spark's `to_json(struct)` → JSON text (e.g. a Kafka record's value).
//! * [`to_avro`]: Spark's `to_avro(value [, avro_schema_json [, options]])` → a binary Avro datum,
//!   raw or in the Confluent wire format with the schema registered under a subject.

pub mod ddl;
pub mod from_avro;
pub mod from_json;
pub mod schema_registry;
pub mod to_avro;
pub mod to_json;

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StructArray, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{ScalarValue, plan_err};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::ScalarUDF;

/// The built-in scalar functions.
pub fn builtin_scalar() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::from(from_json::FromJson::new())),
        Arc::new(ScalarUDF::from(from_avro::FromAvro::new())),
        Arc::new(ScalarUDF::from(to_json::ToJson::new())),
        Arc::new(ScalarUDF::from(to_avro::ToAvro::new())),
    ]
}

/// The `(key, value)` pairs of a function's options argument: a map of strings, or null (no
/// options). `call` names the function and its arguments, `example` shows an options map.
pub(crate) fn option_pairs(
    call: &str,
    example: &str,
    value: Option<&ScalarValue>,
) -> DfResult<Vec<(String, String)>> {
    match value {
        None => Ok(vec![]),
        Some(v) if v.is_null() => Ok(vec![]),
        Some(ScalarValue::Map(map)) => {
            if map.is_empty() {
                return Ok(vec![]);
            }
            let entries = map.value(0);
            let strings = |column: &ArrayRef| -> DfResult<Vec<Option<String>>> {
                let column = cast(column, &DataType::Utf8)?;
                Ok(column
                    .as_string::<i32>()
                    .iter()
                    .map(|s| s.map(str::to_string))
                    .collect())
            };
            let keys = strings(entries.column(0))?;
            let values = strings(entries.column(1))?;
            Ok(keys
                .into_iter()
                .zip(values)
                .map(|(k, v)| (k.unwrap_or_default(), v.unwrap_or_default()))
                .collect())
        }
        Some(other) => plan_err!(
            "{call}: options must be a map of strings, e.g. {example}; got {}",
            other.data_type()
        ),
    }
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
