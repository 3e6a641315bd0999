//! `from_avro(value, avro_schema_json [, options])`: binary Avro datums (e.g. Kafka record
//! values) to a struct, as Spark's `from_avro(data, jsonFormatSchema, options)`. The schema is an
//! Avro record schema in JSON; a null value gives a null struct.
//!
//! Options (a map of strings, e.g. `map('mode', 'PERMISSIVE')`; keys match case-insensitively):
//!
//! * `mode`: `FAILFAST` (the default, as in Spark) fails the query at a value that is not one
//!   datum of its schema, naming the row; `PERMISSIVE` gives a null struct for it.
//! * `schemaRegistryAddress`: the values are in the Confluent Schema Registry wire format (a
//!   zero byte, a 4-byte schema id, the datum). Each value is decoded with the writer schema its
//!   id names, fetched from this registry ([`super::schema_registry`]), and resolved against the
//!   given schema as the reader schema (Avro schema evolution: added fields take their defaults).
//! * `basic.auth.user.info`: `user:password` for the registry (Confluent's client setting).
//! * `schemaRegistryTimeout`: timeout of each registry request (`30s` by default; `500ms`, `2m`
//!   or plain milliseconds).
//!
//! Decoding uses arrow-avro's streaming decoder, which reads framed messages: raw values get a
//! frame (magic byte, schema id 0) in front, so no copy of the Avro logic lives here.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use super::schema_registry::{
    DEFAULT_TIMEOUT, HEADER_LEN, MAGIC, Registry, parse_address, parse_timeout, schema_id,
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
            signature: Signature::one_of(
                vec![TypeSignature::Any(2), TypeSignature::Any(3)],
                Volatility::Immutable,
            ),
        }
    }
}

/// How values are read, from the options map.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AvroOptions {
    /// `mode` is `PERMISSIVE`: malformed values give null structs.
    pub permissive: bool,
    /// `schemaRegistryAddress` and its settings: values are Confluent-framed.
    pub registry: Option<Registry>,
}

const OPTION_NAMES: &str =
    "'mode', 'schemaRegistryAddress', 'basic.auth.user.info', 'schemaRegistryTimeout'";

impl AvroOptions {
    /// Options from `(key, value)` pairs.
    pub fn parse(pairs: &[(String, String)]) -> DfResult<AvroOptions> {
        let mut options = AvroOptions::default();
        let (mut address, mut user_info, mut timeout) = (None, None, DEFAULT_TIMEOUT);
        for (key, value) in pairs {
            match key.to_ascii_lowercase().as_str() {
                "mode" => {
                    options.permissive = match value.to_ascii_uppercase().as_str() {
                        "FAILFAST" => false,
                        "PERMISSIVE" => true,
                        _ => {
                            return plan_err!(
                                "from_avro option 'mode' is '{value}'; expected FAILFAST or PERMISSIVE"
                            );
                        }
                    }
                }
                "schemaregistryaddress" => address = Some(parse_address("from_avro", value)?),
                "basic.auth.user.info" => user_info = Some(value.clone()),
                "schemaregistrytimeout" => timeout = parse_timeout("from_avro", value)?,
                _ => {
                    return plan_err!(
                        "from_avro has no option '{key}'; expected one of {OPTION_NAMES}"
                    );
                }
            }
        }
        if let Some(address) = address {
            options.registry = Some(Registry {
                address,
                user_info,
                timeout,
            });
        } else if user_info.is_some() {
            return plan_err!(
                "from_avro option 'basic.auth.user.info' needs 'schemaRegistryAddress'"
            );
        }
        Ok(options)
    }

    /// Options from the function's third argument: a map of strings (or null: the defaults).
    pub fn from_scalar(value: Option<&ScalarValue>) -> DfResult<AvroOptions> {
        AvroOptions::parse(&super::option_pairs(
            "from_avro(value, schema, options)",
            "map('mode', 'PERMISSIVE')",
            value,
        )?)
    }
}

fn bad_schema(schema: &str, why: &str) -> DataFusionError {
    DataFusionError::Plan(format!(
        "from_avro: '{schema}' is not a usable Avro schema ({why}); expected an Avro record schema in JSON, e.g. {{\"type\":\"record\",\"name\":\"r\",\"fields\":[{{\"name\":\"id\",\"type\":\"long\"}}]}}"
    ))
}

/// A decoder of raw datums of `schema` (framed with id [`FRAME_ID`]).
fn raw_decoder(schema: &str, batch_size: usize) -> DfResult<Decoder> {
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    store
        .set(
            Fingerprint::Id(FRAME_ID),
            AvroSchema::new(schema.to_string()),
        )
        .map_err(|e| bad_schema(schema, &e.to_string()))?;
    ReaderBuilder::new()
        .with_writer_schema_store(store)
        .with_active_fingerprint(Fingerprint::Id(FRAME_ID))
        .with_batch_size(batch_size)
        .build_decoder()
        .map_err(|e| bad_schema(schema, &e.to_string()))
}

/// A decoder of Confluent-framed values written with the schemas `writers` (id, JSON), read as
/// `reader`.
fn registry_decoder(
    reader: &str,
    writers: &[(u32, Arc<str>)],
    batch_size: usize,
) -> DfResult<Decoder> {
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    for (id, schema) in writers {
        store
            .set(Fingerprint::Id(*id), AvroSchema::new(schema.to_string()))
            .map_err(|e| {
                DataFusionError::Execution(format!(
                    "from_avro: the registry's schema {id} is not a usable Avro schema ({e}): {schema}"
                ))
            })?;
    }
    ReaderBuilder::new()
        .with_writer_schema_store(store)
        .with_reader_schema(AvroSchema::new(reader.to_string()))
        .with_batch_size(batch_size)
        .build_decoder()
        .map_err(|e| {
            DataFusionError::Execution(format!(
                "from_avro: the given schema cannot read values written with the registry's schemas {:?} ({e})",
                writers.iter().map(|(id, _)| id).collect::<Vec<_>>()
            ))
        })
}

/// The struct fields an Avro record schema decodes to.
pub fn avro_fields(schema: &str) -> DfResult<Fields> {
    Ok(raw_decoder(schema, 1)?.schema().fields().clone())
}

/// Feeds one framed value to `decoder`, flushing into `batches` when a change of writer schema
/// asks for it (`since_flush` then starts over).
fn feed(
    decoder: &mut Decoder,
    framed: &[u8],
    batches: &mut Vec<RecordBatch>,
    since_flush: &mut Vec<usize>,
) -> Result<(), String> {
    let mut used = 0;
    while used < framed.len() {
        let n = decoder.decode(&framed[used..]).map_err(|e| e.to_string())?;
        used += n;
        if used == framed.len() {
            break;
        }
        if decoder.capacity() == 0 && !decoder.batch_is_empty() {
            if let Some(batch) = decoder.flush().map_err(|e| e.to_string())? {
                batches.push(batch);
            }
            since_flush.clear();
        } else {
            let datum = framed.len() - HEADER_LEN;
            return Err(if used <= HEADER_LEN {
                format!("its {datum} bytes end before the datum does")
            } else {
                format!(
                    "{} of its {datum} bytes were left over",
                    framed.len() - used
                )
            });
        }
    }
    Ok(())
}

fn flush(decoder: &mut Decoder) -> DfResult<Option<RecordBatch>> {
    decoder
        .flush()
        .map_err(|e| DataFusionError::Execution(format!("from_avro: {e}")))
}

/// Decodes `framed` (input row, framed bytes) into one batch and the input rows of its rows.
/// Malformed values fail unless `permissive`, where they are left out.
fn decode_framed(
    make: &dyn Fn() -> DfResult<Decoder>,
    framed: &[(usize, Cow<'_, [u8]>)],
    permissive: bool,
) -> DfResult<Option<(RecordBatch, Vec<usize>)>> {
    let mut decoder = make()?;
    let mut batches = Vec::new();
    let mut decoded: Vec<usize> = Vec::with_capacity(framed.len());
    let mut since_flush: Vec<usize> = Vec::new();
    for (k, (row, bytes)) in framed.iter().enumerate() {
        match feed(&mut decoder, bytes, &mut batches, &mut since_flush) {
            Ok(()) => {
                decoded.push(*row);
                since_flush.push(k);
            }
            Err(why) if !permissive => {
                return exec_err!(
                    "from_avro: value {row} of this batch is not one Avro datum of its schema ({why}); set the option 'mode' to 'PERMISSIVE' for a null instead"
                );
            }
            Err(_) => {
                // The rows since the last flush may be half-built: decode them again afresh.
                decoder = make()?;
                for j in since_flush.drain(..) {
                    let mut ignored = Vec::new();
                    feed(&mut decoder, &framed[j].1, &mut batches, &mut ignored).map_err(
                        |why| {
                            DataFusionError::Internal(format!(
                                "from_avro: value {} decoded once but not twice ({why})",
                                framed[j].0
                            ))
                        },
                    )?;
                }
                if let Some(batch) = flush(&mut decoder)? {
                    batches.push(batch);
                }
            }
        }
    }
    if let Some(batch) = flush(&mut decoder)? {
        batches.push(batch);
    }
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let batch = concat_batches(&first.schema(), &batches)?;
    if batch.num_rows() != decoded.len() {
        return exec_err!(
            "from_avro decoded {} rows from {} values",
            batch.num_rows(),
            decoded.len()
        );
    }
    Ok(Some((batch, decoded)))
}

fn decode(schema: &str, values: &[Option<&[u8]>], options: &AvroOptions) -> DfResult<ArrayRef> {
    let present: Vec<usize> = (0..values.len()).filter(|i| values[*i].is_some()).collect();
    // One more than the values: the decoder's capacity runs out only when the writer schema
    // changes, never at the last value.
    let batch_size = present.len() + 1;
    let decoded = match &options.registry {
        None => {
            let framed: Vec<(usize, Cow<[u8]>)> = present
                .iter()
                .map(|i| {
                    let datum = values[*i].unwrap_or_default();
                    let mut framed = Vec::with_capacity(HEADER_LEN + datum.len());
                    framed.push(MAGIC);
                    framed.extend_from_slice(&FRAME_ID.to_be_bytes());
                    framed.extend_from_slice(datum);
                    (*i, Cow::Owned(framed))
                })
                .collect();
            decode_framed(
                &|| raw_decoder(schema, batch_size),
                &framed,
                options.permissive,
            )?
        }
        Some(registry) => {
            let mut framed: Vec<(usize, Cow<[u8]>)> = Vec::with_capacity(present.len());
            let mut ids: Vec<u32> = Vec::new();
            for i in &present {
                let value = values[*i].unwrap_or_default();
                match schema_id(value) {
                    Some(id) => {
                        if !ids.contains(&id) {
                            ids.push(id);
                        }
                        framed.push((*i, Cow::Borrowed(value)));
                    }
                    None if options.permissive => {}
                    None => {
                        return exec_err!(
                            "from_avro: value {i} of this batch is not in the Confluent Schema Registry wire format (expected a zero byte and a 4-byte schema id before the Avro datum; it has {} bytes{}); set the option 'mode' to 'PERMISSIVE' for a null instead",
                            value.len(),
                            value
                                .first()
                                .map(|b| format!(", the first is {b}"))
                                .unwrap_or_default()
                        );
                    }
                }
            }
            if framed.is_empty() {
                None
            } else {
                let writers: Vec<(u32, Arc<str>)> = ids
                    .iter()
                    .map(|id| Ok((*id, registry.schema(*id)?)))
                    .collect::<DfResult<_>>()?;
                decode_framed(
                    &|| registry_decoder(schema, &writers, batch_size),
                    &framed,
                    options.permissive,
                )?
            }
        }
    };
    match decoded {
        Some((batch, rows)) => super::spread_rows(batch, &rows, values.len()),
        None => Ok(datafusion::arrow::array::new_null_array(
            &DataType::Struct(avro_fields(schema)?),
            values.len(),
        )),
    }
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
        if let Some(Some(options)) = args.scalar_arguments.get(2) {
            AvroOptions::from_scalar(Some(options))?;
        }
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
        let options = match args.args.get(2) {
            None => AvroOptions::default(),
            Some(ColumnarValue::Scalar(v)) => AvroOptions::from_scalar(Some(v))?,
            Some(ColumnarValue::Array(_)) => {
                return exec_err!(
                    "from_avro: the options argument must be a constant map, e.g. map('mode', 'PERMISSIVE')"
                );
            }
        };
        let input = args.args[0].to_array(args.number_rows)?;
        let values: Vec<Option<&[u8]>> = match input.data_type() {
            DataType::Binary => input.as_binary::<i32>().iter().collect(),
            DataType::LargeBinary => input.as_binary::<i64>().iter().collect(),
            DataType::BinaryView => input.as_binary_view().iter().collect(),
            DataType::Null => vec![None; input.len()],
            other => return exec_err!("from_avro expects binary values, got {other}"),
        };
        let decoded = decode(&schema, &values, &options)?;
        // Schema resolution annotates fields (e.g. with their defaults); the planned type has
        // no such metadata.
        let expected = args.return_field.data_type();
        Ok(ColumnarValue::Array(if decoded.data_type() == expected {
            decoded
        } else {
            cast(&decoded, expected)?
        }))
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
        let out = decode(SCHEMA, &[Some(&a), None, Some(&b)], &AvroOptions::default()).unwrap();
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
        let e = decode(SCHEMA, &[Some(&extra)], &AvroOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("value 0") && e.contains("not one Avro datum"),
            "{e}"
        );
        let e = avro_fields("{\"type\": \"nope\"}").unwrap_err().to_string();
        assert!(e.contains("not a usable Avro schema"), "{e}");
    }
}
