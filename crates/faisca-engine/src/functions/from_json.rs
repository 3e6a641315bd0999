//! `from_json(value, schema)`: JSON text (a string, or the binary `value` of a Kafka record) to a
//! struct of the given Spark DDL schema, as Spark's `from_json` in PERMISSIVE mode: a null or empty
//! value gives a null struct; malformed JSON gives a struct whose fields are all null; fields the
//! JSON lacks are null; fields the schema lacks are ignored.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{exec_err, plan_err};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::ddl::parse_schema;

/// The `from_json` function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FromJson {
    signature: Signature,
}

impl Default for FromJson {
    fn default() -> Self {
        Self::new()
    }
}

impl FromJson {
    /// The function.
    pub fn new() -> Self {
        FromJson {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::Null
    )
}

/// The bytes of each row of a string or binary array.
fn row_bytes(array: &ArrayRef) -> DfResult<Vec<Option<&[u8]>>> {
    Ok(match array.data_type() {
        DataType::Utf8 => array
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::as_bytes))
            .collect(),
        DataType::LargeUtf8 => array
            .as_string::<i64>()
            .iter()
            .map(|v| v.map(str::as_bytes))
            .collect(),
        DataType::Utf8View => array
            .as_string_view()
            .iter()
            .map(|v| v.map(str::as_bytes))
            .collect(),
        DataType::Binary => array.as_binary::<i32>().iter().collect(),
        DataType::LargeBinary => array.as_binary::<i64>().iter().collect(),
        DataType::BinaryView => array.as_binary_view().iter().collect(),
        DataType::Null => vec![None; array.len()],
        other => return exec_err!("from_json expects a string or binary value, got {other}"),
    })
}

/// Decode `text` (newline-separated JSON values) into rows of `schema`.
fn decode(schema: &Arc<Schema>, text: &[u8], rows: usize) -> Option<RecordBatch> {
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.max(1))
        .build_decoder()
        .ok()?;
    let mut done = 0;
    while done < text.len() {
        let read = decoder.decode(&text[done..]).ok()?;
        if read == 0 {
            break;
        }
        done += read;
    }
    let batch = decoder.flush().ok()??;
    (done == text.len() && batch.num_rows() == rows).then_some(batch)
}

/// Rows of `fields` from JSON values; `None` and empty values give null rows.
fn from_json(fields: &Fields, values: &[Option<&[u8]>]) -> DfResult<ArrayRef> {
    let schema = Arc::new(Schema::new(fields.clone()));
    let present: Vec<usize> = (0..values.len())
        .filter(|i| values[*i].is_some_and(|v| !v.trim_ascii().is_empty()))
        .collect();
    let mut text = Vec::new();
    for i in &present {
        text.extend_from_slice(values[*i].unwrap_or_default());
        text.push(b'\n');
    }
    let batch = match decode(&schema, &text, present.len()) {
        Some(batch) => batch,
        None => {
            // Some value is malformed (or holds more than one JSON value): decode each alone, and
            // put an empty object (every field null) in place of those that fail.
            text.clear();
            for i in &present {
                let value = values[*i].unwrap_or_default();
                if decode(&schema, value, 1).is_some() {
                    text.extend_from_slice(value);
                } else {
                    text.extend_from_slice(b"{}");
                }
                text.push(b'\n');
            }
            match decode(&schema, &text, present.len()) {
                Some(batch) => batch,
                None => {
                    return exec_err!(
                        "from_json could not decode values even one by one (a field declared NOT NULL that a value lacks?)"
                    );
                }
            }
        }
    };
    super::spread_rows(batch, &present, values.len())
}

impl ScalarUDFImpl for FromJson {
    fn name(&self) -> &str {
        "from_json"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        plan_err!("from_json's type comes from its schema argument")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        if let Some(f) = args.arg_fields.first()
            && !is_text(f.data_type())
        {
            return plan_err!(
                "from_json(value, schema): value must be a string or binary (e.g. a Kafka record's value), got {}",
                f.data_type()
            );
        }
        let schema = match args
            .scalar_arguments
            .get(1)
            .and_then(|v| v.and_then(|v| v.try_as_str().flatten()))
        {
            Some(s) => s,
            None => {
                return plan_err!(
                    "from_json(value, schema): schema must be a string literal in Spark's DDL, e.g. 'id BIGINT, name STRING'"
                );
            }
        };
        let fields = parse_schema(schema)?;
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::Struct(fields),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let DataType::Struct(fields) = args.return_field.data_type() else {
            return exec_err!("from_json without a struct return type");
        };
        let input = args.args[0].to_array(args.number_rows)?;
        let values = row_bytes(&input)?;
        Ok(ColumnarValue::Array(from_json(fields, &values)?))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::util::display::array_value_to_string;

    use super::*;

    fn run(values: &[Option<&str>], schema: &str) -> Vec<String> {
        let fields = parse_schema(schema).unwrap();
        let bytes: Vec<Option<&[u8]>> = values.iter().map(|v| v.map(str::as_bytes)).collect();
        let out = from_json(&fields, &bytes).unwrap();
        (0..out.len())
            .map(|i| {
                if out.is_null(i) {
                    "NULL".to_string()
                } else {
                    array_value_to_string(&out, i).unwrap()
                }
            })
            .collect()
    }

    #[test]
    fn permissive_like_spark() {
        let got = run(
            &[
                Some(r#"{"id": 1, "name": "ana", "extra": true}"#),
                None,
                Some("not json"),
                Some(""),
                Some(r#"{"id": 2}"#),
                Some("{\"id\":\n 3}"),
                Some(r#"{"id": 4}{"id": 5}"#),
            ],
            "id BIGINT, name STRING",
        );
        assert_eq!(
            got,
            [
                "{id: 1, name: ana}",
                "NULL",
                "{id: , name: }",
                "NULL",
                "{id: 2, name: }",
                "{id: 3, name: }",
                "{id: , name: }",
            ]
        );
    }

    #[test]
    fn nested_types() {
        let got = run(
            &[Some(
                r#"{"tags": ["a", "b"], "pos": {"x": 1.5}, "price": "12.30", "day": "2024-02-29"}"#,
            )],
            "tags ARRAY<STRING>, pos STRUCT<x: DOUBLE, y: DOUBLE>, price DECIMAL(10,2), day DATE",
        );
        assert_eq!(
            got,
            ["{tags: [a, b], pos: {x: 1.5, y: }, price: 12.30, day: 2024-02-29}"]
        );
    }
}
