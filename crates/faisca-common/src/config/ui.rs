//! Keys of the driver's web UI and REST API (`faisca.ui.*`, with Spark's names under `faisca.`).

use std::net::IpAddr;

use super::{FaiscaConfig, KeySpec, ValueKind};

fn optional_bool(text: &str) -> bool {
    text.is_empty() || text.parse::<bool>().is_ok()
}

fn ip_address(text: &str) -> bool {
    text.parse::<IpAddr>().is_ok()
}

fn port(text: &str) -> bool {
    text.parse::<u16>().is_ok()
}

/// `faisca.ui.enabled`.
pub const UI_ENABLED: KeySpec = KeySpec {
    name: "faisca.ui.enabled",
    default: "",
    kind: ValueKind::Rule {
        expected: "true or false",
        valid: optional_bool,
    },
    doc: "Serve the web UI, the REST API (/api/v1) and /metrics from the driver. Unset: on for `faisca driver`, off for local[N] sessions.",
};
/// `faisca.ui.port`.
pub const UI_PORT: KeySpec = KeySpec {
    name: "faisca.ui.port",
    default: "4040",
    kind: ValueKind::Rule {
        expected: "a port number from 0 to 65535",
        valid: port,
    },
    doc: "Port of the web UI; when taken, the next ones are tried (faisca.port.maxRetries). 0: any free port.",
};
/// `faisca.ui.bind`.
pub const UI_BIND: KeySpec = KeySpec {
    name: "faisca.ui.bind",
    default: "127.0.0.1",
    kind: ValueKind::Rule {
        expected: "an IP address such as 127.0.0.1 or 0.0.0.0",
        valid: ip_address,
    },
    doc: "Interface the web UI listens on. It has no authentication yet: keep it on loopback unless the network is trusted.",
};
/// `faisca.port.maxRetries`.
pub const PORT_MAX_RETRIES: KeySpec = KeySpec {
    name: "faisca.port.maxRetries",
    default: "16",
    kind: ValueKind::Count,
    doc: "Further ports tried, one after another, when a port to bind is taken (Spark's spark.port.maxRetries).",
};
/// `faisca.ui.retainedJobs`.
pub const UI_RETAINED_JOBS: KeySpec = KeySpec {
    name: "faisca.ui.retainedJobs",
    default: "1000",
    kind: ValueKind::Count,
    doc: "Finished jobs the UI and REST API remember (the oldest are forgotten first, with their stages).",
};
/// `faisca.ui.retainedStages`.
pub const UI_RETAINED_STAGES: KeySpec = KeySpec {
    name: "faisca.ui.retainedStages",
    default: "1000",
    kind: ValueKind::Count,
    doc: "Finished stages the UI and REST API remember.",
};
/// `faisca.ui.retainedTasks`.
pub const UI_RETAINED_TASKS: KeySpec = KeySpec {
    name: "faisca.ui.retainedTasks",
    default: "100000",
    kind: ValueKind::Count,
    doc: "Task attempts of one stage the UI and REST API remember (the oldest finished ones are forgotten first; counts stay exact).",
};
/// `faisca.ui.retainedExecutors`.
pub const UI_RETAINED_DEAD_EXECUTORS: KeySpec = KeySpec {
    name: "faisca.ui.retainedDeadExecutors",
    default: "100",
    kind: ValueKind::Count,
    doc: "Executors that left that the UI and REST API still list, with why they left.",
};
/// `faisca.ui.taskLogLines`.
pub const UI_TASK_LOG_LINES: KeySpec = KeySpec {
    name: "faisca.ui.taskLogLines",
    default: "200",
    kind: ValueKind::Count,
    doc: "Log lines an executor keeps per task attempt (the last ones), shown from the stage page. 0: none.",
};
/// `faisca.ui.taskLogMaxBytes`.
pub const UI_TASK_LOG_MAX_BYTES: KeySpec = KeySpec {
    name: "faisca.ui.taskLogMaxBytes",
    default: "8m",
    kind: ValueKind::Bytes,
    doc: "Bytes of task log lines an executor keeps in all; the oldest tasks' lines are dropped first.",
};
/// `faisca.ui.taskLogMaxLineBytes`.
pub const UI_TASK_LOG_MAX_LINE_BYTES: KeySpec = KeySpec {
    name: "faisca.ui.taskLogMaxLineBytes",
    default: "4k",
    kind: ValueKind::Bytes,
    doc: "The longest task log line an executor keeps; longer ones are cut and marked.",
};
/// `faisca.ui.taskLogTimeout`.
pub const UI_TASK_LOG_TIMEOUT: KeySpec = KeySpec {
    name: "faisca.ui.taskLogTimeout",
    default: "10s",
    kind: ValueKind::Duration,
    doc: "How long the web UI waits for an executor to send a task's log lines before the page says it did not answer.",
};

/// `faisca.eventLog.enabled`.
pub const EVENT_LOG_ENABLED: KeySpec = KeySpec {
    name: "faisca.eventLog.enabled",
    default: "false",
    kind: ValueKind::Bool,
    doc: "Write every job, stage, task, executor and streaming event of the driver to faisca.eventLog.dir, for `faisca history`.",
};
/// `faisca.eventLog.dir`.
pub const EVENT_LOG_DIR: KeySpec = KeySpec {
    name: "faisca.eventLog.dir",
    default: "",
    kind: ValueKind::Rule {
        expected: "a directory URL such as s3://bucket/events or a local path",
        valid: any_text,
    },
    doc: "Where event logs go (any object-store URL or local path): one directory per driver run.",
};
/// `faisca.eventLog.rolling.maxFileSize`.
pub const EVENT_LOG_MAX_FILE_SIZE: KeySpec = KeySpec {
    name: "faisca.eventLog.rolling.maxFileSize",
    default: "16m",
    kind: ValueKind::Bytes,
    doc: "An event log segment is closed (written) once it holds this many bytes.",
};
/// `faisca.eventLog.rolling.maxInterval`.
pub const EVENT_LOG_MAX_INTERVAL: KeySpec = KeySpec {
    name: "faisca.eventLog.rolling.maxInterval",
    default: "5s",
    kind: ValueKind::Duration,
    doc: "An event log segment is closed this long after its first event at the latest (and whenever a job ends).",
};
/// `faisca.history.updateInterval`.
pub const HISTORY_UPDATE_INTERVAL: KeySpec = KeySpec {
    name: "faisca.history.updateInterval",
    default: "10s",
    kind: ValueKind::Duration,
    doc: "How often `faisca history` looks for new runs and segments in the event log directory.",
};

fn any_text(_: &str) -> bool {
    true
}

/// What an executor keeps of its tasks' log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskLogLimits {
    /// The last lines kept per task attempt (`faisca.ui.taskLogLines`; 0: none).
    pub lines: usize,
    /// Bytes kept in all (`faisca.ui.taskLogMaxBytes`).
    pub bytes: usize,
    /// The longest line kept whole (`faisca.ui.taskLogMaxLineBytes`, 64 B to 1 MiB).
    pub line_bytes: usize,
}

/// What the UI keeps, and where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiSettings {
    /// The first port tried.
    pub port: u16,
    /// The interface.
    pub bind: IpAddr,
    /// Further ports tried.
    pub max_retries: u16,
    /// Finished jobs kept.
    pub retained_jobs: usize,
    /// Finished stages kept.
    pub retained_stages: usize,
    /// Task attempts kept per stage.
    pub retained_tasks: usize,
    /// Departed executors kept.
    pub retained_dead_executors: usize,
    /// How long a task log fetch from an executor may take.
    pub task_log_timeout: std::time::Duration,
}

impl FaiscaConfig {
    /// `faisca.ui.enabled`, or `default` when it is not set.
    pub fn ui_enabled(&self, default: bool) -> bool {
        match self.raw(&UI_ENABLED) {
            "" => default,
            raw => raw.eq_ignore_ascii_case("true"),
        }
    }

    /// `faisca.eventLog.dir` when `faisca.eventLog.enabled`; an error when it is enabled
    /// without a directory.
    pub fn event_log_dir(&self) -> crate::Result<Option<&str>> {
        if !self.flag(&EVENT_LOG_ENABLED) {
            return Ok(None);
        }
        match self.raw(&EVENT_LOG_DIR) {
            "" => Err(crate::Error::user(
                "faisca.eventLog.enabled is true but faisca.eventLog.dir is not set: expected a directory URL such as s3://bucket/events or a local path",
            )),
            dir => Ok(Some(dir)),
        }
    }

    /// `faisca.eventLog.rolling.*`: the most bytes of a segment (at least 1 KiB) and the most
    /// time it stays open.
    pub fn event_log_rolling(&self) -> (u64, std::time::Duration) {
        (
            self.bytes(&EVENT_LOG_MAX_FILE_SIZE).max(1024),
            self.duration(&EVENT_LOG_MAX_INTERVAL)
                .max(std::time::Duration::from_millis(10)),
        )
    }

    /// `faisca.ui.taskLog*`: what an executor keeps of its tasks' log lines.
    pub fn task_log_limits(&self) -> TaskLogLimits {
        TaskLogLimits {
            lines: self.count(&UI_TASK_LOG_LINES).min(1 << 20) as usize,
            bytes: self.bytes(&UI_TASK_LOG_MAX_BYTES).min(usize::MAX as u64) as usize,
            line_bytes: self.bytes(&UI_TASK_LOG_MAX_LINE_BYTES).clamp(64, 1 << 20) as usize,
        }
    }

    /// `faisca.history.updateInterval` (at least 10 ms).
    pub fn history_update_interval(&self) -> std::time::Duration {
        self.duration(&HISTORY_UPDATE_INTERVAL)
            .max(std::time::Duration::from_millis(10))
    }

    /// `faisca.ui.*` and `faisca.port.maxRetries`.
    pub fn ui_settings(&self) -> UiSettings {
        UiSettings {
            port: self.raw(&UI_PORT).parse().expect("validated when set"),
            bind: self.raw(&UI_BIND).parse().expect("validated when set"),
            max_retries: self.count(&PORT_MAX_RETRIES).min(u16::MAX as u64) as u16,
            retained_jobs: self.count(&UI_RETAINED_JOBS) as usize,
            retained_stages: self.count(&UI_RETAINED_STAGES) as usize,
            retained_tasks: self.count(&UI_RETAINED_TASKS) as usize,
            retained_dead_executors: self.count(&UI_RETAINED_DEAD_EXECUTORS) as usize,
            task_log_timeout: self.duration(&UI_TASK_LOG_TIMEOUT),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::FaiscaConfig;

    #[test]
    fn the_ui_is_on_by_the_commands_default_unless_set() {
        let config = FaiscaConfig::default();
        assert!(config.ui_enabled(true));
        assert!(!config.ui_enabled(false));
        let on = FaiscaConfig::from_pairs([("faisca.ui.enabled", "true")]).unwrap();
        assert!(on.ui_enabled(false));
        let off = FaiscaConfig::from_pairs([("faisca.ui.enabled", "false")]).unwrap();
        assert!(!off.ui_enabled(true));
        assert_eq!(config.ui_settings().port, 4040);
        assert_eq!(config.ui_settings().max_retries, 16);
        assert_eq!(config.event_log_dir().unwrap(), None);
        let no_dir = FaiscaConfig::from_pairs([("faisca.eventLog.enabled", "true")]).unwrap();
        let error = no_dir.event_log_dir().unwrap_err().to_string();
        assert!(error.contains("faisca.eventLog.dir"), "{error}");
    }

    #[test]
    fn bad_ui_values_name_the_key() {
        for (key, value) in [
            ("faisca.ui.enabled", "yes"),
            ("faisca.ui.port", "70000"),
            ("faisca.ui.bind", "localhost:1"),
            ("faisca.port.maxRetries", "-1"),
        ] {
            let error = FaiscaConfig::from_pairs([(key, value)])
                .unwrap_err()
                .to_string();
            assert!(error.contains(key), "{error}");
        }
    }
}
