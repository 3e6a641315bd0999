//! The one error type of Faísca: whose fault, and whether a retry can help.

use datafusion::error::DataFusionError;

/// Who caused a failure. Decides how the scheduler reacts and how the CLI reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Bad SQL, a bad option, a missing table or file, a corrupt input: retrying cannot help.
    User,
    /// A service or resource outside Faísca failed (network, object store, disk).
    External,
    /// A bug or broken invariant inside Faísca.
    Internal,
}

/// Faísca's error. Each variant carries a message meant for a person: it names the thing that was
/// wrong and says what was expected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's fault; never retryable.
    #[error("{0}")]
    User(String),
    /// An external system failed; `retryable` says whether trying again may succeed.
    #[error("{message}")]
    External {
        /// What failed, naming the resource.
        message: String,
        /// Whether another attempt may succeed.
        retryable: bool,
    },
    /// An internal invariant broke; `retryable` says whether another attempt may succeed (a
    /// transient state surfacing oddly) or not (a planning bug: the same plan fails the same way).
    #[error("internal error: {message}")]
    Internal {
        /// What broke.
        message: String,
        /// Whether another attempt may succeed.
        retryable: bool,
    },
    /// A plan that cannot be sent to executors: one of its operators cannot be encoded (a
    /// catalog table that lives only in the driver, say). The user's; never retryable. The
    /// driver runs such a plan itself when it reads no files.
    #[error("this query cannot be distributed: {0}")]
    NotDistributable(String),
    /// An error raised by DataFusion (planning or execution); classified by [`Error::fault`].
    #[error("{0}")]
    DataFusion(Box<DataFusionError>),
    /// A task could not read a finished map task's shuffle output: the output (or the executor
    /// holding it) is gone. Not the reading task's fault: the scheduler re-runs the map task.
    #[error("{}", .0.message)]
    FetchFailed(Box<FetchFailure>),
}

/// Which shuffle output a task failed to read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchFailure {
    /// The stage that wrote the output.
    pub stage_id: u32,
    /// The map task (partition) that wrote it.
    pub map_partition: u32,
    /// The executor that held it.
    pub executor_id: String,
    /// What went wrong, naming the output and the executor.
    pub message: String,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A user error with this message.
    pub fn user(message: impl Into<String>) -> Self {
        Error::User(message.into())
    }

    /// A plan that cannot be sent to executors, and why.
    pub fn not_distributable(why: impl Into<String>) -> Self {
        Error::NotDistributable(why.into())
    }

    /// An external error that a retry may fix.
    pub fn external(message: impl Into<String>) -> Self {
        Error::External {
            message: message.into(),
            retryable: true,
        }
    }

    /// An external error that retrying will not fix (denied access, a corrupt record left by
    /// another run).
    pub fn external_final(message: impl Into<String>) -> Self {
        Error::External {
            message: message.into(),
            retryable: false,
        }
    }

    /// An internal error with this message that another attempt may not hit.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal {
            message: message.into(),
            retryable: true,
        }
    }

    /// An internal error that another attempt would hit again (a plan that cannot be built).
    pub fn internal_final(message: impl Into<String>) -> Self {
        Error::Internal {
            message: message.into(),
            retryable: false,
        }
    }

    /// A failed read of `stage_id`/`map_partition`'s output held by `executor_id`.
    pub fn fetch_failed(
        stage_id: u32,
        map_partition: u32,
        executor_id: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::FetchFailed(Box::new(FetchFailure {
            stage_id,
            map_partition,
            executor_id: executor_id.into(),
            message: message.into(),
        }))
    }

    /// The first of our errors, this one or one it wraps, for which `pick` gives a value,
    /// looking through DataFusion's wrappers (context, shared errors of operators that fan one
    /// error out to several partitions).
    fn find_ours<'a, T>(&'a self, pick: impl Fn(&'a Error) -> Option<T>) -> Option<T> {
        if let Some(found) = pick(self) {
            return Some(found);
        }
        let Error::DataFusion(inner) = self else {
            return None;
        };
        let mut current: &'a (dyn std::error::Error + 'static) = inner.as_ref();
        loop {
            if let Some(ours) = current.downcast_ref::<Error>() {
                if let Some(found) = pick(ours) {
                    return Some(found);
                }
                if let Error::DataFusion(inner) = ours {
                    current = inner.as_ref();
                    continue;
                }
            }
            current = current.source()?;
        }
    }

    /// The fetch failure this error is or wraps.
    pub fn fetch_failure(&self) -> Option<&FetchFailure> {
        self.find_ours(|e| match e {
            Error::FetchFailed(f) => Some(f.as_ref()),
            _ => None,
        })
    }

    /// Whether this error is, or wraps, a [`Error::NotDistributable`].
    pub fn is_not_distributable(&self) -> bool {
        self.find_ours(|e| matches!(e, Error::NotDistributable(_)).then_some(()))
            .is_some()
    }

    /// Whose fault this error is.
    pub fn fault(&self) -> Fault {
        match self {
            Error::User(_) | Error::NotDistributable(_) => Fault::User,
            Error::FetchFailed(_) => Fault::External,
            Error::External { .. } => Fault::External,
            Error::Internal { .. } => Fault::Internal,
            Error::DataFusion(e) => datafusion_fault(e),
        }
    }

    /// Whether running the same work again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::External { retryable, .. } => *retryable,
            Error::DataFusion(e) => datafusion_fault(e) == Fault::External,
            Error::User(_) | Error::NotDistributable(_) => false,
            Error::FetchFailed(_) => true,
            // An internal failure may be a transient state (e.g. a lost connection surfacing
            // oddly), unless whoever raised it knows better.
            Error::Internal { retryable, .. } => *retryable,
        }
    }

    /// An error of its own with `shared`'s message, fault and retryability (for one error
    /// that several waiters received).
    pub fn copy_of(shared: &Error) -> Self {
        let message = shared.to_string();
        match (shared.fault(), shared.is_retryable()) {
            (Fault::User, _) => Error::User(message),
            (Fault::External, retryable) => Error::External { message, retryable },
            (Fault::Internal, retryable) => Error::Internal {
                message: match shared {
                    Error::Internal { message, .. } => message.clone(),
                    _ => message,
                },
                retryable,
            },
        }
    }

    /// Prefix the message with context, keeping the fault and retryability.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        if let Some(f) = self.fetch_failure() {
            let mut f = f.clone();
            f.message = format!("{context}: {self}");
            return Error::FetchFailed(Box::new(f));
        }
        if let Error::NotDistributable(why) = self {
            return Error::NotDistributable(format!("{context}: {why}"));
        }
        let retryable = self.is_retryable();
        match self.fault() {
            Fault::User => Error::User(format!("{context}: {self}")),
            Fault::External => Error::External {
                message: format!("{context}: {self}"),
                retryable,
            },
            Fault::Internal => Error::Internal {
                message: format!("{context}: {}", self.message()),
                retryable,
            },
        }
    }

    /// The message without the `internal error:` prefix.
    pub fn message(&self) -> String {
        match self {
            Error::Internal { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

fn datafusion_fault(e: &DataFusionError) -> Fault {
    match e.find_root() {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::Configuration(_)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::ResourcesExhausted(_)
        | DataFusionError::Execution(_)
        | DataFusionError::ParquetError(_)
        | DataFusionError::ArrowError(..) => Fault::User,
        DataFusionError::IoError(_) | DataFusionError::ObjectStore(_) => Fault::External,
        DataFusionError::External(inner) => match inner.downcast_ref::<Error>() {
            Some(ours) => ours.fault(),
            None => Fault::External,
        },
        _ => Fault::Internal,
    }
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        // Unwrap our own errors that travelled through DataFusion as `External`.
        match e {
            DataFusionError::External(inner) => match inner.downcast::<Error>() {
                Ok(ours) => *ours,
                Err(other) => Error::DataFusion(Box::new(DataFusionError::External(other))),
            },
            DataFusionError::Context(context, inner) if matches!(inner.as_ref(), DataFusionError::External(b) if b.is::<Error>()) => {
                Error::from(*inner).context(context)
            }
            other => Error::DataFusion(Box::new(other)),
        }
    }
}

impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        match e {
            Error::DataFusion(inner) => *inner,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

impl From<datafusion::arrow::error::ArrowError> for Error {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        Error::from(DataFusionError::from(e))
    }
}

impl From<object_store::Error> for Error {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { path, .. } => Error::user(format!(
                "object not found: {path} (expected an existing file or directory)"
            )),
            other => Error::external(format!("object store: {other}")),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::external(format!("I/O: {e}"))
    }
}

/// Run `decode` on bytes from outside the process, turning a panic inside it into an error.
/// DataFusion's and arrow's decoders index and slice where the bytes say, and some panic on bytes
/// that lie (a field index past the schema, a buffer offset past its end); a peer's bad bytes
/// must fail the request, naming `what` was being decoded, not unwind a server's task.
/// `fault` makes the error (`Error::user` for a client's bytes, `Error::internal_final` for a
/// plan the driver sent).
pub fn decode_guarded<T>(
    what: &str,
    fault: fn(String) -> Error,
    decode: impl FnOnce() -> Result<T>,
) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)) {
        Ok(result) => result,
        Err(payload) => {
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            Err(fault(format!(
                "malformed {what}: its decoder failed on it ({why})"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_and_retries() {
        let sql = Error::from(DataFusionError::Plan("table 'x' not found".into()));
        assert_eq!(sql.fault(), Fault::User);
        assert!(!sql.is_retryable());
        let io = Error::from(std::io::Error::other("disk gone"));
        assert_eq!(io.fault(), Fault::External);
        assert!(io.is_retryable());
    }

    #[test]
    fn our_error_survives_a_trip_through_datafusion() {
        let ours = Error::user("bad option 'x'");
        let df: DataFusionError = ours.into();
        let back = Error::from(df);
        assert!(matches!(back, Error::User(ref m) if m == "bad option 'x'"));
    }

    #[test]
    fn fetch_failures_are_found_inside_datafusion_wrappers() {
        let fetch = Error::fetch_failed(1, 2, "e1", "connection refused");
        let wrapped = DataFusionError::Shared(std::sync::Arc::new(
            DataFusionError::from(fetch).context("hash join build side"),
        ));
        let e = Error::from(wrapped).context("task 3");
        let found = e.fetch_failure().expect("the fetch failure is found");
        assert_eq!((found.stage_id, found.map_partition), (1, 2));
        assert_eq!(found.executor_id, "e1");
        assert!(e.is_retryable());
        assert!(Error::user("x").fetch_failure().is_none());
        let direct = Error::fetch_failed(0, 0, "e", "gone").context("stage 4");
        assert_eq!(direct.fetch_failure().unwrap().message, "stage 4: gone");
    }

    #[test]
    fn planning_bugs_are_not_retried() {
        let bug = Error::from(DataFusionError::Internal("no ordering".into()));
        assert_eq!(bug.fault(), Fault::Internal);
        assert!(!bug.is_retryable());
        let last = Error::internal_final("plan cannot be built").context("stage 2");
        assert_eq!(last.fault(), Fault::Internal);
        assert!(!last.is_retryable());
        assert!(Error::internal("connection reset").is_retryable());
    }

    #[test]
    fn a_panicking_decoder_is_an_error_naming_the_input() {
        let e = decode_guarded::<u8>("DataFrame plan", Error::user, || {
            let empty: Vec<u8> = Vec::new();
            Ok(empty[3])
        })
        .unwrap_err();
        assert_eq!(e.fault(), Fault::User);
        assert!(e.to_string().contains("malformed DataFrame plan"), "{e}");
        assert!(e.to_string().contains("index out of bounds"), "{e}");
        assert_eq!(decode_guarded("x", Error::user, || Ok(5)).unwrap(), 5);
    }

    #[test]
    fn context_keeps_the_fault() {
        let e = Error::user("no such column").context("stage 2");
        assert_eq!(e.fault(), Fault::User);
        assert_eq!(e.to_string(), "stage 2: no such column");
    }

    #[test]
    fn a_plan_that_cannot_be_distributed_is_known_by_its_kind() {
        let e = Error::not_distributable("no codec for StreamingTableExec").context("stage 0");
        assert!(e.is_not_distributable());
        assert_eq!(e.fault(), Fault::User);
        assert!(!e.is_retryable());
        assert_eq!(
            e.to_string(),
            "this query cannot be distributed: stage 0: no codec for StreamingTableExec"
        );
        let wrapped = Error::from(DataFusionError::from(e));
        assert!(wrapped.is_not_distributable());
        // The words alone do not make the kind.
        assert!(!Error::user("this query cannot be distributed: x").is_not_distributable());
    }
}
