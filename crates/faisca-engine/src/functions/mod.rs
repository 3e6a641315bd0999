//! Built-in functions Faísca adds to DataFusion's, in every session and executor.
//!
//! * [`from_json`]: Spark's `from_json(value, 'a INT, b STRING')` → a struct; the schema is
//!   Spark's DDL ([`ddl`]).
//! * [`from_avro`]: Spark's `from_avro(value, avro_schema_json)` → a struct.

pub mod ddl;
pub mod from_avro;
pub mod from_json;

use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;

/// The built-in scalar functions.
pub fn builtin_scalar() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::from(from_json::FromJson::new())),
        Arc::new(ScalarUDF::from(from_avro::FromAvro::new())),
    ]
}
