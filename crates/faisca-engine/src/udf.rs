//! User-defined functions every process of a program knows.
//!
//! A Faísca program that has its own functions registers them once at start-up, before it
//! starts a session, a driver or an executor: `faisca::udf::register_scalar(my_udf)`. The client
//! plans with them, the driver plans with them, and executors decode stage plans with them, so a
//! user builds one binary (the `faisca` CLI crate as a library plus the functions) and runs it as
//! driver, executors and client. An executor started from a binary without a function a plan
//! uses fails the task with an error that names the function.

use std::sync::{Arc, RwLock};

use datafusion::execution::SessionState;
use datafusion::execution::registry::FunctionRegistry;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use faisca_common::{Error, Result};

#[derive(Default)]
struct Registered {
    scalar: Vec<Arc<ScalarUDF>>,
    aggregate: Vec<Arc<AggregateUDF>>,
}

static REGISTERED: RwLock<Registered> = RwLock::new(Registered {
    scalar: Vec::new(),
    aggregate: Vec::new(),
});

/// Register a scalar function for every session, driver and executor this process starts from
/// now on (a function of the same name is replaced).
pub fn register_scalar(udf: ScalarUDF) {
    if let Ok(mut r) = REGISTERED.write() {
        r.scalar.retain(|f| f.name() != udf.name());
        r.scalar.push(Arc::new(udf));
    }
}

/// Register an aggregate function (see [`register_scalar`]).
pub fn register_aggregate(udaf: AggregateUDF) {
    if let Ok(mut r) = REGISTERED.write() {
        r.aggregate.retain(|f| f.name() != udaf.name());
        r.aggregate.push(Arc::new(udaf));
    }
}

/// Names of the registered functions.
pub fn registered_names() -> Vec<String> {
    REGISTERED
        .read()
        .map(|r| {
            r.scalar
                .iter()
                .map(|f| f.name().to_string())
                .chain(r.aggregate.iter().map(|f| f.name().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Add the registered functions to `state`.
pub fn add_registered(state: &mut SessionState) -> Result<()> {
    let r = REGISTERED
        .read()
        .map_err(|_| Error::internal("function registry lock poisoned"))?;
    for f in &r.scalar {
        state.register_udf(f.clone())?;
    }
    for f in &r.aggregate {
        state.register_udaf(f.clone())?;
    }
    state.register_udf(Arc::new(ScalarUDF::new_from_impl(HoppingWindow::default())))?;
    for f in crate::functions::builtin_scalar() {
        state.register_udf(f)?;
    }
    Ok(())
}

/// When `message` says a plan used a function this process does not have, the error to report:
/// it names the function and says how to fix it.
pub fn missing_function_error(message: &str) -> Option<Error> {
    let markers = [
        "no UDF named",
        "no UDAF named",
        "no UDWF named",
        "not provided for scalar function",
        "not provided for aggregate function",
        "not provided for window function",
    ];
    let at = markers
        .iter()
        .find_map(|m| message.find(m).map(|at| at + m.len()))?;
    let name: String = message[at..]
        .trim_start()
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|c| !matches!(c, '"' | '\'' | ' ' | '\n'))
        .collect();
    Some(Error::user(format!(
        "this executor has no function '{name}', which the plan uses: start executors from a binary that registers it (faisca::udf::register_scalar / register_aggregate) like the driver's"
    )))
}

#[cfg(test)]
mod tests {
    use super::missing_function_error;

    #[test]
    fn missing_functions_are_named() {
        let e = missing_function_error(
            "Error during planning: There is no UDF named \"add_one\" in the registry",
        )
        .unwrap()
        .to_string();
        assert!(e.contains("'add_one'"), "{e}");
        assert!(missing_function_error("some other error").is_none());
        let e = missing_function_error(
            "PhysicalExtensionCodec is not provided for scalar function add_one",
        )
        .unwrap()
        .to_string();
        assert!(e.contains("'add_one'"), "{e}");
    }
}

/// The name of [`HoppingWindow`].
pub const HOPPING_WINDOW: &str = "faisca_hopping_window";

/// `window(ts, duration, slide)` with a slide shorter than the duration: each row belongs to
/// several windows, so the DataFrame API turns this marker (in `group_by`) into an explode of
/// window starts. Evaluated anywhere else it is an error that says so.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct HoppingWindow {
    signature: datafusion::logical_expr::Signature,
}

impl Default for HoppingWindow {
    fn default() -> Self {
        HoppingWindow {
            signature: datafusion::logical_expr::Signature::any(
                3,
                datafusion::logical_expr::Volatility::Immutable,
            ),
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for HoppingWindow {
    fn name(&self) -> &str {
        HOPPING_WINDOW
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(
        &self,
        args: &[arrow::datatypes::DataType],
    ) -> datafusion::error::Result<arrow::datatypes::DataType> {
        use arrow::datatypes::{DataType, Field};
        let time = args.first().cloned().unwrap_or(DataType::Null);
        Ok(DataType::Struct(
            vec![
                Field::new("start", time.clone(), true),
                Field::new("end", time, true),
            ]
            .into(),
        ))
    }

    fn invoke_with_args(
        &self,
        _args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::error::Result<datafusion::logical_expr::ColumnarValue> {
        Err(Error::user(
            "window(time, duration, slide) with a slide shorter than the duration puts a row in several windows: use it in group_by",
        )
        .into())
    }
}
