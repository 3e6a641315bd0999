//! Typed identifiers. Jobs, sessions and executors are named by strings (UUIDs or
//! operator-given names); stages and task partitions are small integers inside their job.

use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub String);

        impl $name {
            /// A fresh random id.
            pub fn random() -> Self {
                $name(uuid::Uuid::new_v4().simple().to_string()[..12].to_string())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }
    };
}

string_id!(
    /// A job: one query submitted by a session.
    JobId
);
string_id!(
    /// A client session on the driver.
    SessionId
);
string_id!(
    /// An executor process (or in-process executor).
    ExecutorId
);

/// A stage inside a job, numbered from 0 in dependency order (inputs before consumers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StageId(pub u32);

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One attempt of one task: `(job, stage, partition, attempt)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskAttemptId {
    /// The job.
    pub job: JobId,
    /// The stage inside the job.
    pub stage: StageId,
    /// The stage partition this task computes.
    pub partition: u32,
    /// Attempt number, from 0.
    pub attempt: u32,
}

impl fmt::Display for TaskAttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "job {} stage {} task {} attempt {}",
            self.job, self.stage, self.partition, self.attempt
        )
    }
}
