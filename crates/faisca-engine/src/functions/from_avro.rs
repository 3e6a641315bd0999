//! `from_avro(value, avro_schema_json)`: binary Avro datums (e.g. Kafka record values written
//! without framing) to a struct, as Spark's `from_avro(data, jsonFormatSchema)`: the schema is an
//! Avro record schema in JSON; a null value gives a null struct; a value that is not exactly one
//! datum of the schema fails the query naming the row (Spark's default FAILFAST mode).
//!
//! Decoding uses arrow-avro's streaming decoder, which reads framed messages: each value gets a
//! Confluent-style frame (magic byte, schema id 0) in front, so no copy of the Avro logic lives
//! here.

use std::sync::Arc;

use arrow_avro::reader::ReaderBuilder;
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{exec_err, plan_err};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

const FRAME_ID: u32 = 0;

/// The `from_avro` function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FromAvro {
    signature: Signature,
}

impl Default for FromAvro {
    fn default() -> Self {
        Self::new()
    }
}

impl FromAvro {
    /// The function.
    pub fn new() -> Self {
        FromAvro {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

fn store(schema: &str) -> DfResult<SchemaStore> {
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    store
        .set(
            Fingerprint::Id(FRAME_ID),
            AvroSchema::new(schema.to_string()),
        )
        .map_err(|e| bad_schema(schema, &e.to_string()))?;
    Ok(store)
}

fn bad_schema(schema: &str, why: &str) -> DataFusionError {
    DataFusionError::Plan(format!(
        "from_avro: '{schema}' is not a usable Avro schema ({why}); expected an Avro record schema in JSON, e.g. {{\"type\":\"record\",\"name\":\"r\",\"fields\":[{{\"name\":\"id\",\"type\":\"long\"}}]}}"
    ))
}

/// The struct fields an Avro record schema decodes to.
pub fn avro_fields(schema: &str) -> DfResult<Fields> {
    let decoder = ReaderBuilder::new()
        .with_writer_schema_store(store(schema)?)
        .with_active_fingerprint(Fingerprint::Id(FRAME_ID))
        .build_decoder()
        .map_err(|e| bad_schema(schema, &e.to_string()))?;
    Ok(decoder.schema().fields().clone())
}

fn decode(schema: &str, values: &[Option<&[u8]>]) -> DfResult<ArrayRef> {
    let present: Vec<usize> = (0..values.len()).filter(|i| values[*i].is_some()).collect();
    let mut decoder = ReaderBuilder::new()
        .with_writer_schema_store(store(schema)?)
        .with_active_fingerprint(Fingerprint::Id(FRAME_ID))
        .with_batch_size(present.len().max(1))
        .build_decoder()
        .map_err(|e| bad_schema(schema, &e.to_string()))?;
    for (n, i) in present.iter().enumerate() {
        let mut framed = Vec::with_capacity(5 + values[*i].map_or(0, <[u8]>::len));
        framed.push(0u8);
        framed.extend_from_slice(&FRAME_ID.to_be_bytes());
        framed.extend_from_slice(values[*i].unwrap_or_default());
        let malformed = |why: String| {
            DataFusionError::Execution(format!(
                "from_avro: value {n} of this batch is not one Avro datum of the given schema ({why})"
            ))
        };
        let used = decoder
            .decode(&framed)
            .map_err(|e| malformed(e.to_string()))?;
        if used != framed.len() {
            return Err(malformed(format!(
                "{} of its {} bytes were left over",
                framed.len() - used,
                framed.len() - 5
            )));
        }
    }
    let batch = decoder
        .flush()
        .map_err(|e| DataFusionError::Execution(format!("from_avro: {e}")))?;
    let Some(batch) = batch else {
        let fields = avro_fields(schema)?;
        return Ok(datafusion::arrow::array::new_null_array(
            &DataType::Struct(fields),
            values.len(),
        ));
    };
    if batch.num_rows() != present.len() {
        return exec_err!(
            "from_avro decoded {} rows from {} values",
            batch.num_rows(),
            present.len()
        );
    }
    super::spread_rows(batch, &present, values.len())
}

impl ScalarUDFImpl for FromAvro {
    fn name(&self) -> &str {
        "from_avro"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        plan_err!("from_avro's type comes from its schema argument")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        if let Some(f) = args.arg_fields.first()
            && !matches!(
                f.data_type(),
                DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::Null
            )
        {
            return plan_err!(
                "from_avro(value, schema): value must be binary (e.g. a Kafka record's value), got {}",
                f.data_type()
            );
        }
        let Some(schema) = args
            .scalar_arguments
            .get(1)
            .and_then(|v| v.and_then(|v| v.try_as_str().flatten()))
        else {
            return plan_err!(
                "from_avro(value, schema): schema must be a string literal holding an Avro record schema in JSON"
            );
        };
        let fields = avro_fields(schema)?;
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::Struct(fields),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let schema = match args.args.get(1) {
            Some(ColumnarValue::Scalar(v)) => v.try_as_str().flatten().map(str::to_string),
            _ => None,
        };
        let Some(schema) = schema else {
            return exec_err!("from_avro: the schema argument must be a string literal");
        };
        let input = args.args[0].to_array(args.number_rows)?;
        let values: Vec<Option<&[u8]>> = match input.data_type() {
            DataType::Binary => input.as_binary::<i32>().iter().collect(),
            DataType::LargeBinary => input.as_binary::<i64>().iter().collect(),
            DataType::BinaryView => input.as_binary_view().iter().collect(),
            DataType::Null => vec![None; input.len()],
            other => return exec_err!("from_avro expects binary values, got {other}"),
        };
        Ok(ColumnarValue::Array(decode(&schema, &values)?))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::util::display::array_value_to_string;

    use super::*;

    const SCHEMA: &str = r#"{"type":"record","name":"person","fields":[{"name":"id","type":"long"},{"name":"name","type":["null","string"]}]}"#;

    /// Avro's zig-zag varint of `n`.
    fn long(n: i64, out: &mut Vec<u8>) {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }

    fn person(id: i64, name: Option<&str>) -> Vec<u8> {
        let mut out = Vec::new();
        long(id, &mut out);
        match name {
            None => long(0, &mut out),
            Some(s) => {
                long(1, &mut out);
                long(s.len() as i64, &mut out);
                out.extend_from_slice(s.as_bytes());
            }
        }
        out
    }

    #[test]
    fn datums_to_structs() {
        let a = person(7, Some("ana"));
        let b = person(-3, None);
        let out = decode(SCHEMA, &[Some(&a), None, Some(&b)]).unwrap();
        let shown: Vec<String> = (0..out.len())
            .map(|i| {
                if out.is_null(i) {
                    "NULL".into()
                } else {
                    array_value_to_string(&out, i).unwrap()
                }
            })
            .collect();
        assert_eq!(shown, ["{id: 7, name: ana}", "NULL", "{id: -3, name: }"]);
        assert_eq!(avro_fields(SCHEMA).unwrap().len(), 2);
    }

    #[test]
    fn malformed_input_and_schemas_are_named() {
        let mut extra = person(1, None);
        extra.push(9);
        let e = decode(SCHEMA, &[Some(&extra)]).unwrap_err().to_string();
        assert!(
            e.contains("value 0") && e.contains("not one Avro datum"),
            "{e}"
        );
        let e = avro_fields("{\"type\": \"nope\"}").unwrap_err().to_string();
        assert!(e.contains("not a usable Avro schema"), "{e}");
    }
}
