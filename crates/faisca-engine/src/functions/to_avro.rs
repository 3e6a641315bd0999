//! `to_avro(value [, avro_schema_json [, options]])`: a column as binary Avro datums (e.g. Kafka
//! record values), as Spark's `to_avro(data, jsonFormatSchema)`. A null value gives null (a
//! Kafka tombstone when written as a record's value), as in Spark.
//!
//! The schema is any Avro schema in JSON: a record schema takes a struct whose fields it matches
//! by name (a field the struct lacks is written as null when the Avro type allows null; a struct
//! field the schema lacks is an error), another schema (`"long"`, an array…) takes a value that
//! casts to it. Without a schema, one is derived from the column's type as Spark does (a
//! struct becomes a record named `topLevelRecord`; nullable fields become unions with null).
//!
//! Options (a map of strings; keys match case-insensitively):
//!
//! * `schemaRegistryAddress` and `subject`: write the Confluent Schema Registry wire format (a
//!   zero byte, the 4-byte schema id, the datum). The schema is registered under the subject
//!   (registering a schema the subject already has gives its id), or only looked up when
//!   `autoRegisterSchemas` is `false` — Confluent's serializer setting `auto.register.schemas`.
//!   Each executor asks the registry once per subject and schema ([`super::schema_registry`]).
//! * `basic.auth.user.info`: `user:password` for the registry.
//! * `schemaRegistryTimeout`: timeout of each registry request (`30s` by default).
//!
//! Encoding is arrow-avro's row encoder; the input is first cast to the Arrow types the schema
//! decodes to (what `from_avro` gives back), so what `to_avro` writes `from_avro` reads.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_avro::schema::{AvroSchema, FingerprintStrategy, SCHEMA_METADATA_KEY};
use arrow_avro::writer::WriterBuilder;
use arrow_avro::writer::format::{AvroBinaryFormat, AvroSoeFormat};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, RecordBatch, StructArray, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::{can_cast_types, cast, take};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use super::from_avro::avro_fields;
use super::schema_registry::{DEFAULT_TIMEOUT, Registry, parse_address, parse_timeout};

/// The name of the one field of the record a non-record schema is wrapped in: a record of one
/// field encodes exactly as that field's value.
const WRAPPED: &str = "value";

/// The `to_avro` function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToAvro {
    signature: Signature,
}

impl Default for ToAvro {
    fn default() -> Self {
        Self::new()
    }
}

impl ToAvro {
    /// The function.
    pub fn new() -> Self {
        ToAvro {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Any(1),
                    TypeSignature::Any(2),
                    TypeSignature::Any(3),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

/// Where encoded values go: raw datums, or the registry wire format under a subject.
#[derive(Debug, Clone, PartialEq)]
pub struct ToAvroOptions {
    /// The registry, subject and whether to register, for the Confluent wire format.
    pub registry: Option<(Registry, String, bool)>,
}

const OPTION_NAMES: &str = "'schemaRegistryAddress', 'subject', 'autoRegisterSchemas', 'basic.auth.user.info', 'schemaRegistryTimeout'";

impl ToAvroOptions {
    /// Options from `(key, value)` pairs.
    pub fn parse(pairs: &[(String, String)]) -> DfResult<ToAvroOptions> {
        let (mut address, mut subject, mut user_info) = (None, None, None);
        let (mut timeout, mut register) = (DEFAULT_TIMEOUT, true);
        for (key, value) in pairs {
            match key.to_ascii_lowercase().as_str() {
                "schemaregistryaddress" => address = Some(parse_address("to_avro", value)?),
                "subject" if value.trim().is_empty() => {
                    return plan_err!(
                        "to_avro option 'subject' is empty; expected the registry subject, e.g. 'orders-value'"
                    );
                }
                "subject" => subject = Some(value.clone()),
                "autoregisterschemas" => {
                    register = match value.trim().to_ascii_lowercase().as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return plan_err!(
                                "to_avro option 'autoRegisterSchemas' is '{value}'; expected true or false"
                            );
                        }
                    }
                }
                "basic.auth.user.info" => user_info = Some(value.clone()),
                "schemaregistrytimeout" => timeout = parse_timeout("to_avro", value)?,
                _ => {
                    return plan_err!(
                        "to_avro has no option '{key}'; expected one of {OPTION_NAMES}"
                    );
                }
            }
        }
        let registry = match (address, subject) {
            (Some(address), Some(subject)) => Some((
                Registry {
                    address,
                    user_info,
                    timeout,
                },
                subject,
                register,
            )),
            (Some(_), None) => {
                return plan_err!(
                    "to_avro option 'schemaRegistryAddress' needs 'subject' (the subject the schema is registered under, e.g. 'orders-value')"
                );
            }
            (None, Some(_)) => {
                return plan_err!(
                    "to_avro option 'subject' needs 'schemaRegistryAddress' (the registry's URL)"
                );
            }
            (None, None) if user_info.is_some() => {
                return plan_err!(
                    "to_avro option 'basic.auth.user.info' needs 'schemaRegistryAddress'"
                );
            }
            (None, None) => None,
        };
        Ok(ToAvroOptions { registry })
    }

    fn from_scalar(value: Option<&ScalarValue>) -> DfResult<ToAvroOptions> {
        ToAvroOptions::parse(&super::option_pairs(
            "to_avro(value, schema, options)",
            "map('schemaRegistryAddress', 'http://registry:8081', 'subject', 'orders-value')",
            value,
        )?)
    }
}

/// How a call encodes its input.
#[derive(Debug, Clone)]
struct Plan {
    /// The Avro schema written (and registered): the given one or the one derived.
    schema: String,
    /// The record schema the encoder runs: `schema`, or a record wrapping it.
    record: String,
    /// The record's fields as Arrow fields: what the input is cast to.
    fields: Fields,
    /// Whether the input is the wrapping record's one field rather than a struct of its fields.
    wrapped: bool,
}

/// A record of one field of type `schema` (Avro JSON).
fn wrap(schema: &str) -> String {
    format!(
        r#"{{"type":"record","name":"faisca_to_avro","fields":[{{"name":"{WRAPPED}","type":{schema}}}]}}"#
    )
}

fn is_record(schema: &serde_json::Value) -> bool {
    schema.get("type").and_then(|t| t.as_str()) == Some("record")
}

fn bad_schema(schema: &str, why: &str) -> DataFusionError {
    DataFusionError::Plan(format!(
        "to_avro: '{schema}' is not a usable Avro schema ({why}); expected an Avro schema in JSON, e.g. {{\"type\":\"record\",\"name\":\"r\",\"fields\":[{{\"name\":\"id\",\"type\":\"long\"}}]}} or \"long\""
    ))
}

/// The plan for input of type `input` with the given schema, or one derived from `input`.
fn plan(input: &DataType, schema: Option<&str>) -> DfResult<Plan> {
    let schema = match schema {
        Some(schema) => schema.to_string(),
        None => derive_schema(input)?,
    };
    let json: serde_json::Value = serde_json::from_str(&schema)
        .map_err(|e| bad_schema(&schema, &format!("not JSON: {e}")))?;
    let wrapped = !is_record(&json);
    let record = if wrapped {
        wrap(&schema)
    } else {
        schema.clone()
    };
    let fields = avro_fields(&record).map_err(|e| bad_schema(&schema, &e.to_string()))?;
    if wrapped {
        check_castable(input, fields[0].data_type(), "the value")?;
    } else {
        match input {
            DataType::Struct(given) => check_struct(given, &fields, "the value")?,
            DataType::Null => {}
            other => {
                return plan_err!(
                    "to_avro: the schema is an Avro record, which takes a struct (e.g. named_struct('id', id, 'name', name)); got {other}"
                );
            }
        }
    }
    Ok(Plan {
        schema,
        record,
        fields,
        wrapped,
    })
}

/// The Avro schema Spark derives for a column of type `input`.
fn derive_schema(input: &DataType) -> DfResult<String> {
    let why = |e: &dyn std::fmt::Display| {
        DataFusionError::Plan(format!(
            "to_avro cannot derive an Avro schema for {input} ({e}); give the schema as the second argument"
        ))
    };
    match input {
        DataType::Struct(fields) => AvroSchema::try_from(&Schema::new(fields.clone()))
            .map(|s| s.json_string)
            .map_err(|e| why(&e)),
        DataType::Null => plan_err!(
            "to_avro cannot derive an Avro schema for a NULL literal; give the schema as the second argument"
        ),
        other => {
            let record = AvroSchema::try_from(&Schema::new(vec![Field::new(
                WRAPPED,
                other.clone(),
                false,
            )]))
            .map_err(|e| why(&e))?;
            let json: serde_json::Value =
                serde_json::from_str(&record.json_string).map_err(|e| why(&e))?;
            json.get("fields")
                .and_then(|f| f.get(0))
                .and_then(|f| f.get("type"))
                .map(|t| t.to_string())
                .ok_or_else(|| why(&"no field type in the derived record"))
        }
    }
}

fn check_castable(given: &DataType, wanted: &DataType, what: &str) -> DfResult<()> {
    match (given, wanted) {
        (DataType::Struct(given), DataType::Struct(wanted)) => check_struct(given, wanted, what),
        _ if given == wanted || can_cast_types(given, wanted) => Ok(()),
        _ => plan_err!(
            "to_avro: {what} is {given}, which does not convert to the Avro schema's type ({wanted} in Arrow terms)"
        ),
    }
}

/// Checks that a struct of `given` fields fills a record of `wanted` fields, by name.
fn check_struct(given: &Fields, wanted: &Fields, what: &str) -> DfResult<()> {
    for field in given {
        if wanted.find(field.name()).is_none() {
            return plan_err!(
                "to_avro: {what} has a field '{}' that the Avro record schema lacks; expected only the record's fields ({})",
                field.name(),
                names(wanted)
            );
        }
    }
    for field in wanted {
        match given.find(field.name()) {
            Some((_, found)) => check_castable(
                found.data_type(),
                field.data_type(),
                &format!("field '{}'", field.name()),
            )?,
            None if field.is_nullable() => {}
            None => {
                return plan_err!(
                    "to_avro: {what} lacks the Avro record's field '{}', whose type has no null; expected a field of that name",
                    field.name()
                );
            }
        }
    }
    Ok(())
}

fn names(fields: &Fields) -> String {
    fields
        .iter()
        .map(|f| format!("'{}'", f.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `array` as type `wanted`: structs field by field by name (absent fields null), others cast.
/// A null where the Avro type has none is an error naming the field `path` and the input row
/// (`rows[k]` is row `k`'s row in the function's input).
fn conform(array: &ArrayRef, wanted: &DataType, path: &str, rows: &[u32]) -> DfResult<ArrayRef> {
    if array.data_type() == wanted {
        return Ok(array.clone());
    }
    match (array.data_type(), wanted) {
        (DataType::Struct(given), DataType::Struct(fields)) => {
            let structs = array.as_struct();
            let mut columns = Vec::with_capacity(fields.len());
            for field in fields {
                let inner = format!("{path}.{}", field.name());
                let column = match given.find(field.name()) {
                    Some((i, _)) => conform(structs.column(i), field.data_type(), &inner, rows)?,
                    None => new_null_array(field.data_type(), array.len()),
                };
                if !field.is_nullable()
                    && let Some(k) =
                        (0..column.len()).find(|k| column.is_null(*k) && structs.is_valid(*k))
                {
                    return exec_err!(
                        "to_avro: field '{}' is null at row {} of this batch, but its Avro type has no null; expected a union with \"null\" in the schema for it",
                        inner.trim_start_matches('.'),
                        rows.get(k).copied().unwrap_or(k as u32)
                    );
                }
                columns.push(column);
            }
            Ok(Arc::new(StructArray::try_new(
                fields.clone(),
                columns,
                structs.nulls().cloned(),
            )?))
        }
        _ => Ok(cast(array, wanted)?),
    }
}

/// The non-null rows of `values` encoded with `plan`, prefixed with the registry's frame when
/// `schema_id` is given; null rows stay null.
fn encode(values: &ArrayRef, plan: &Plan, schema_id: Option<u32>) -> DfResult<ArrayRef> {
    let present: Vec<u32> = (0..values.len() as u32)
        .filter(|i| values.is_valid(*i as usize))
        .collect();
    let mut out = BinaryBuilder::with_capacity(values.len(), present.len() * 32);
    if present.is_empty() {
        out.append_nulls(values.len());
        return Ok(Arc::new(out.finish()));
    }
    let arrow_schema = Schema::new_with_metadata(
        plan.fields.clone(),
        HashMap::from([(SCHEMA_METADATA_KEY.to_string(), plan.record.clone())]),
    );
    let builder = WriterBuilder::new(arrow_schema);
    let mut encoder = match schema_id {
        Some(id) => builder
            .with_fingerprint_strategy(FingerprintStrategy::Id(id))
            .build_encoder::<AvroSoeFormat>(),
        None => builder.build_encoder::<AvroBinaryFormat>(),
    }
    .map_err(|e| DataFusionError::Execution(format!("to_avro: {e}")))?;
    let rows = take(values, &UInt32Array::from(present.clone()), None)?;
    // The wrapped value as a struct of one field, so that both shapes conform alike.
    let rows: ArrayRef = if plan.wrapped {
        Arc::new(StructArray::try_new(
            Fields::from(vec![Field::new(WRAPPED, rows.data_type().clone(), true)]),
            vec![rows],
            None,
        )?)
    } else {
        rows
    };
    let record = conform(&rows, &DataType::Struct(plan.fields.clone()), "", &present).map_err(
        |e| match plan.wrapped {
            true => DataFusionError::Execution(
                e.to_string()
                    .replace(&format!("field '{WRAPPED}'"), "the value"),
            ),
            false => e,
        },
    )?;
    let batch = RecordBatch::try_new(encoder.schema(), record.as_struct().columns().to_vec())?;
    encoder
        .encode(&batch)
        .map_err(|e| DataFusionError::Execution(format!("to_avro: {e}")))?;
    let encoded = encoder.flush();
    let mut next = 0usize;
    for row in 0..values.len() {
        if present.get(next) == Some(&(row as u32)) {
            let bytes = encoded
                .row(next)
                .map_err(|e| DataFusionError::Internal(format!("to_avro: {e}")))?;
            out.append_value(&bytes);
            next += 1;
        } else {
            out.append_null();
        }
    }
    Ok(Arc::new(out.finish()))
}

/// The schema argument: a string literal, or none.
fn schema_argument(value: Option<&ScalarValue>) -> DfResult<Option<String>> {
    match value {
        None => Ok(None),
        Some(v) => match v.try_as_str() {
            Some(Some(s)) => Ok(Some(s.to_string())),
            _ => plan_err!(
                "to_avro(value, schema): schema must be a string literal holding an Avro schema in JSON"
            ),
        },
    }
}

impl ScalarUDFImpl for ToAvro {
    fn name(&self) -> &str {
        "to_avro"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Binary)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let input = args.arg_fields[0].data_type();
        if args.arg_fields.len() > 1 {
            let Some(schema) = args.scalar_arguments.get(1).copied().flatten() else {
                return plan_err!(
                    "to_avro(value, schema): schema must be a string literal holding an Avro schema in JSON"
                );
            };
            plan(input, schema_argument(Some(schema))?.as_deref())?;
        } else {
            plan(input, None)?;
        }
        if let Some(Some(options)) = args.scalar_arguments.get(2) {
            ToAvroOptions::from_scalar(Some(options))?;
        }
        Ok(Arc::new(Field::new(self.name(), DataType::Binary, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let schema = match args.args.get(1) {
            None => None,
            Some(ColumnarValue::Scalar(v)) => schema_argument(Some(v))?,
            Some(ColumnarValue::Array(_)) => {
                return exec_err!("to_avro: the schema argument must be a string literal");
            }
        };
        let options = match args.args.get(2) {
            None => ToAvroOptions { registry: None },
            Some(ColumnarValue::Scalar(v)) => ToAvroOptions::from_scalar(Some(v))?,
            Some(ColumnarValue::Array(_)) => {
                return exec_err!(
                    "to_avro: the options argument must be a constant map, e.g. map('schemaRegistryAddress', 'http://registry:8081', 'subject', 'orders-value')"
                );
            }
        };
        let values = args.args[0].to_array(args.number_rows)?;
        let plan = plan(values.data_type(), schema.as_deref())?;
        let schema_id = match &options.registry {
            Some((registry, subject, register)) if values.null_count() < values.len() => {
                Some(registry.id_of(subject, &plan.schema, *register)?)
            }
            _ => None,
        };
        Ok(ColumnarValue::Array(encode(&values, &plan, schema_id)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::util::display::array_value_to_string;
    use datafusion::prelude::SessionContext;

    fn context() -> SessionContext {
        let ctx = SessionContext::new();
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::from(ToAvro::new()));
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::from(
            super::super::from_avro::FromAvro::new(),
        ));
        ctx
    }

    async fn strings(sql: &str) -> Vec<String> {
        let batches = context().sql(sql).await.unwrap().collect().await.unwrap();
        let column = batches[0].column(0);
        (0..column.len())
            .map(|i| {
                if column.is_null(i) {
                    "NULL".to_string()
                } else {
                    array_value_to_string(column, i).unwrap()
                }
            })
            .collect()
    }

    async fn error(sql: &str) -> String {
        match context().sql(sql).await {
            Ok(df) => df.collect().await.unwrap_err().to_string(),
            Err(e) => e.to_string(),
        }
    }

    const PERSON: &str = r#"{"type":"record","name":"person","fields":[{"name":"id","type":"long"},{"name":"name","type":["null","string"]}]}"#;

    #[tokio::test]
    async fn records_and_primitives_encode_as_avro() {
        // id 7 → zig-zag 14; name: union branch 1, length 3 (6), "ana".
        assert_eq!(
            strings(&format!(
                "SELECT to_avro(named_struct('id', 7, 'name', 'ana'), '{PERSON}')"
            ))
            .await,
            ["0e0206616e61"]
        );
        // A field the struct lacks is null when the type allows it (branch 0).
        assert_eq!(
            strings(&format!(
                "SELECT to_avro(named_struct('id', -1), '{PERSON}')"
            ))
            .await,
            ["0100"]
        );
        assert_eq!(strings("SELECT to_avro(5, '\"long\"')").await, ["0a"]);
        assert_eq!(
            strings("SELECT to_avro(CAST(NULL AS BIGINT), '\"long\"')").await,
            ["NULL"]
        );
        // Without a schema, one derived from the type (a non-null long).
        assert_eq!(strings("SELECT to_avro(CAST(5 AS BIGINT))").await, ["0a"]);
    }

    #[tokio::test]
    async fn from_avro_reads_what_to_avro_wrote() {
        let nested = r#"{"type":"record","name":"r","fields":[{"name":"id","type":"int"},{"name":"tags","type":{"type":"array","items":"string"}},{"name":"at","type":{"type":"record","name":"at","fields":[{"name":"x","type":"double"}]}}]}"#;
        let sql = format!(
            "SELECT from_avro(to_avro(s, '{nested}'), '{nested}') FROM (VALUES (named_struct('id', 1, 'tags', make_array('a', 'b'), 'at', named_struct('x', 1.5))), (named_struct('id', 2, 'tags', make_array('c'), 'at', named_struct('x', -2.0)))) AS t(s)"
        );
        assert_eq!(
            strings(&sql).await,
            [
                "{id: 1, tags: [a, b], at: {x: 1.5}}",
                "{id: 2, tags: [c], at: {x: -2.0}}"
            ]
        );
        // Derived: named_struct's fields are nullable, so each is a union with null.
        let derived = "SELECT from_avro(to_avro(named_struct('id', CAST(3 AS BIGINT), 'name', 'x')), '{\"type\":\"record\",\"name\":\"topLevelRecord\",\"fields\":[{\"name\":\"id\",\"type\":[\"null\",\"long\"]},{\"name\":\"name\",\"type\":[\"null\",\"string\"]}]}')";
        assert_eq!(strings(derived).await, ["{id: 3, name: x}"]);
    }

    #[tokio::test]
    async fn mismatches_are_named() {
        let e = error(&format!(
            "SELECT to_avro(named_struct('id', 1, 'age', 3), '{PERSON}')"
        ))
        .await;
        assert!(e.contains("field 'age'") && e.contains("lacks"), "{e}");
        let e = error(&format!(
            "SELECT to_avro(named_struct('name', 'x'), '{PERSON}')"
        ))
        .await;
        assert!(e.contains("'id'") && e.contains("no null"), "{e}");
        let e = error(&format!("SELECT to_avro(1, '{PERSON}')")).await;
        assert!(e.contains("takes a struct"), "{e}");
        let e = error("SELECT to_avro(1, '{\"type\": \"nope\"}')").await;
        assert!(e.contains("not a usable Avro schema"), "{e}");
        let e = error(&format!(
            "SELECT to_avro(named_struct('id', CAST(NULL AS BIGINT)), '{PERSON}')"
        ))
        .await;
        assert!(e.contains("field 'id' is null at row 0"), "{e}");
        let e = error("SELECT to_avro(1, '\"long\"', map('subject', 's'))").await;
        assert!(e.contains("needs 'schemaRegistryAddress'"), "{e}");
        let e =
            error("SELECT to_avro(1, '\"long\"', map('schemaRegistryAddress', 'http://x'))").await;
        assert!(e.contains("needs 'subject'"), "{e}");
        let e = error("SELECT to_avro(1, '\"long\"', map('mode', 'x'))").await;
        assert!(e.contains("no option 'mode'"), "{e}");
    }

    #[tokio::test]
    async fn the_driver_finds_every_registry_a_plan_contacts() {
        let plan = context()
            .sql(
                r#"SELECT to_avro(1, '"long"', map('schemaRegistryAddress', 'http://one:8081', 'subject', 's')) AS a
                 WHERE EXISTS (SELECT from_avro(CAST(NULL AS BYTEA), '{"type":"record","name":"r","fields":[{"name":"id","type":"long"}]}', map('SchemaRegistryAddress', 'http://two:8081')))"#,
            )
            .await
            .unwrap()
            .into_unoptimized_plan();
        let mut found = super::super::schema_registry::registry_addresses(&plan).unwrap();
        found.sort();
        assert_eq!(found, ["http://one:8081", "http://two:8081"]);
    }
}
