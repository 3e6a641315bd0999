//! `to_json(value [, options])`: a struct, map or array as JSON text, as Spark's `to_json`
//! (e.g. to build Kafka record values). A null value gives null. Null fields are left out of
//! objects, as Spark's default `ignoreNullFields` = `true`; the options map (`map('ignoreNullFields',
//! 'false')`) writes them as `null`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::arrow::json::writer::{EncoderOptions, make_encoder};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

/// The `to_json` function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToJson {
    signature: Signature,
}

impl Default for ToJson {
    fn default() -> Self {
        Self::new()
    }
}

impl ToJson {
    /// The function.
    pub fn new() -> Self {
        ToJson {
            signature: Signature::one_of(
                vec![TypeSignature::Any(1), TypeSignature::Any(2)],
                Volatility::Immutable,
            ),
        }
    }
}

fn check_input(t: &DataType) -> DfResult<()> {
    match t {
        DataType::Struct(_)
        | DataType::Map(_, _)
        | DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(_, _)
        | DataType::Null => Ok(()),
        other => plan_err!(
            "to_json takes a struct, a map or an array (e.g. named_struct('id', id, 'name', name)); got {other}"
        ),
    }
}

/// `ignoreNullFields` from the options map (a map of strings, or null).
fn ignore_null_fields(options: Option<&ScalarValue>) -> DfResult<bool> {
    let Some(options) = options.filter(|o| !o.is_null()) else {
        return Ok(true);
    };
    let ScalarValue::Map(map) = options else {
        return plan_err!(
            "to_json's options are a map of strings, e.g. map('ignoreNullFields', 'false'); got {}",
            options.data_type()
        );
    };
    let mut ignore = true;
    if map.is_empty() {
        return Ok(ignore);
    }
    let entries = map.value(0);
    let keys = datafusion::arrow::compute::cast(entries.column(0), &DataType::Utf8)?;
    let values = datafusion::arrow::compute::cast(entries.column(1), &DataType::Utf8)?;
    let (keys, values) = (
        datafusion::arrow::array::AsArray::as_string::<i32>(&keys),
        datafusion::arrow::array::AsArray::as_string::<i32>(&values),
    );
    for i in 0..keys.len() {
        let (key, value) = (keys.value(i), values.value(i));
        if !key.eq_ignore_ascii_case("ignoreNullFields") {
            return plan_err!("to_json has no option '{key}'; expected 'ignoreNullFields'");
        }
        ignore = match value.trim().to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => {
                return plan_err!(
                    "to_json option 'ignoreNullFields' is '{value}'; expected true or false"
                );
            }
        };
    }
    Ok(ignore)
}

impl ScalarUDFImpl for ToJson {
    fn name(&self) -> &str {
        "to_json"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        check_input(&arg_types[0])?;
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let options = match args.args.get(1) {
            Some(ColumnarValue::Scalar(s)) => Some(s.clone()),
            Some(ColumnarValue::Array(_)) => {
                return exec_err!("to_json's options must be a constant map");
            }
            None => None,
        };
        let ignore_nulls = ignore_null_fields(options.as_ref())?;
        let rows = args.number_rows;
        let array = args.args[0].to_array(rows)?;
        let mut out = StringBuilder::with_capacity(array.len(), array.len() * 32);
        if array.data_type() == &DataType::Null {
            out.append_nulls(array.len());
            return Ok(ColumnarValue::Array(Arc::new(out.finish())));
        }
        let field = Arc::new(Field::new("value", array.data_type().clone(), true));
        let options = EncoderOptions::default().with_explicit_nulls(!ignore_nulls);
        let mut encoder = make_encoder(&field, array.as_ref(), &options)?;
        let mut buffer = Vec::with_capacity(64);
        for row in 0..array.len() {
            if array.is_null(row) {
                out.append_null();
                continue;
            }
            buffer.clear();
            encoder.encode(row, &mut buffer);
            match std::str::from_utf8(&buffer) {
                Ok(text) => out.append_value(text),
                Err(e) => return exec_err!("to_json produced invalid UTF-8 at row {row}: {e}"),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn rows(sql: &str) -> Vec<String> {
        let ctx = SessionContext::new();
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::from(ToJson::new()));
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let array =
            datafusion::arrow::compute::cast(batches[0].column(0), &DataType::Utf8).unwrap();
        let strings = datafusion::arrow::array::AsArray::as_string::<i32>(&array);
        (0..strings.len())
            .map(|i| {
                if strings.is_null(i) {
                    "NULL".to_string()
                } else {
                    strings.value(i).to_string()
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn structs_maps_and_arrays_like_spark() {
        assert_eq!(
            rows("SELECT to_json(named_struct('id', 1, 'name', 'a\"b', 'tags', make_array(1, 2)))")
                .await,
            [r#"{"id":1,"name":"a\"b","tags":[1,2]}"#]
        );
        assert_eq!(
            rows("SELECT to_json(named_struct('id', 1, 'name', CAST(NULL AS VARCHAR)))").await,
            [r#"{"id":1}"#]
        );
        assert_eq!(
            rows("SELECT to_json(named_struct('id', 1, 'name', CAST(NULL AS VARCHAR)), map('ignoreNullFields', 'false'))").await,
            [r#"{"id":1,"name":null}"#]
        );
        assert_eq!(rows("SELECT to_json(map('a', 1))").await, [r#"{"a":1}"#]);
        assert_eq!(
            rows("SELECT to_json(CASE WHEN false THEN named_struct('a', 1) END)").await,
            ["NULL"]
        );
    }

    #[tokio::test]
    async fn scalars_and_bad_options_are_refused() {
        let ctx = SessionContext::new();
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::from(ToJson::new()));
        let e = ctx.sql("SELECT to_json(1)").await.unwrap_err().to_string();
        assert!(e.contains("to_json takes a struct"), "{e}");
        let e = match ctx
            .sql("SELECT to_json(named_struct('a', 1), map('pretty', 'true'))")
            .await
        {
            Ok(df) => df.collect().await.unwrap_err().to_string(),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("no option 'pretty'"), "{e}");
    }
}
