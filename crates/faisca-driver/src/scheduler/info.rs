//! What `faisca status` shows of a job: [`JobInfo`] built from a [`JobState`].

use std::time::UNIX_EPOCH;

use faisca_proto::{JobInfo, StageInfo};

use super::{JobState, JobStatus, TaskSlot};

/// Longest statement text kept for `faisca status`.
const SQL_SHOWN: usize = 200;

/// `sql` shortened to at most 200 characters, whitespace runs collapsed.
pub fn shorten_sql(sql: &str) -> String {
    let collapsed = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= SQL_SHOWN {
        return collapsed;
    }
    let mut short: String = collapsed.chars().take(SQL_SHOWN - 1).collect();
    short.push('…');
    short
}

impl JobState {
    /// The job as `faisca status` shows it.
    pub fn info(&self) -> JobInfo {
        let (state, error) = match &self.status {
            JobStatus::Running => (faisca_proto::JobState::Running, String::new()),
            JobStatus::Committing => (faisca_proto::JobState::Committing, String::new()),
            JobStatus::Succeeded => (faisca_proto::JobState::Succeeded, String::new()),
            JobStatus::Failed(e) => (faisca_proto::JobState::Failed, e.message()),
            JobStatus::Cancelled(e) => (faisca_proto::JobState::Cancelled, e.message()),
        };
        let elapsed = match self.ended {
            Some(end) => end.duration_since(self.started),
            None => self.started.elapsed(),
        };
        let stages = self
            .stages
            .iter()
            .zip(&self.planned.stages)
            .map(|(progress, planned)| StageInfo {
                stage_id: planned.id,
                tasks: planned.tasks,
                done: progress
                    .tasks
                    .iter()
                    .filter(|t| matches!(t.slot, TaskSlot::Done(_) | TaskSlot::Lost))
                    .count() as u32,
                running: progress.running,
                attempts: progress.tasks.iter().map(|t| t.launched).sum(),
                failed_attempts: progress.failed_attempts,
                rerun_tasks: progress.rerun_tasks,
                fetch_failures: progress.fetch_failures,
                output: planned.output_description.clone(),
                inputs: planned.inputs.clone(),
            })
            .collect();
        JobInfo {
            job_id: self.id.0.clone(),
            session_id: self.planned.session.0.clone(),
            name: self.planned.name.clone(),
            sql: self.planned.sql.clone(),
            state: state as i32,
            error,
            submitted_unix_ms: self
                .submitted
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            elapsed_ms: elapsed.as_millis() as u64,
            stages,
            failures: self.failures.iter().cloned().collect(),
            metrics: self.metrics().into_iter().collect(),
            user: self.planned.user.clone().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shorten_sql;

    #[test]
    fn long_statements_are_shortened() {
        assert_eq!(shorten_sql("SELECT  1\n FROM t"), "SELECT 1 FROM t");
        let long = format!("SELECT {}", "x, ".repeat(200));
        let short = shorten_sql(&long);
        assert_eq!(short.chars().count(), 200);
        assert!(short.ends_with('…'));
    }
}
