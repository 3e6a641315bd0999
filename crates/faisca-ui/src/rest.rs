//! The REST API under `/api/v1/`, in the shape of Spark's monitoring API: the same paths, field
//! names and time format, so scripts written for Spark's work here. Fields Spark does not have
//! are Faísca's own (`faiscaJobId`, `jobStageIndex`, `metrics`, …); `docs/openapi.json` describes
//! every answer.
//!
//! One application per driver: `applications/{appId}` takes the driver's id (an unknown one is
//! a 404 naming the known one).

use serde_json::{Value, json};

use crate::format::spark_time;
use crate::store::{AppStore, ExecutorView, JobView, StageView, TaskView};

/// An answer: status code and JSON body.
pub type Answer = (u16, Value);

/// Answer `GET /api/v1/<path>` (`path` without the prefix, `query` the raw query string).
pub fn answer(store: &AppStore, path: &str, query: &str) -> Answer {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let Some(app) = &store.app else {
        return not_found("the application has not started yet");
    };
    match parts.as_slice() {
        ["applications"] => (200, json!([application(store)])),
        ["applications", id, rest @ ..] => {
            if *id != app.app_id {
                return not_found(&format!(
                    "unknown application '{id}': expected '{}'",
                    app.app_id
                ));
            }
            application_part(store, rest, query)
        }
        _ => not_found(&format!(
            "no endpoint /api/v1/{}: expected applications[/{{appId}}/…]",
            path.trim_matches('/')
        )),
    }
}

fn application_part(store: &AppStore, rest: &[&str], query: &str) -> Answer {
    match rest {
        [] => (200, application(store)),
        ["jobs"] => {
            let wanted = query_values(query, "status");
            let jobs: Vec<Value> = store
                .jobs
                .values()
                .rev()
                .filter(|j| {
                    wanted.is_empty()
                        || wanted
                            .iter()
                            .any(|w| w.eq_ignore_ascii_case(j.status().name()))
                })
                .map(|j| job(store, j))
                .collect();
            (200, Value::Array(jobs))
        }
        ["jobs", id] => match id.parse::<u64>().ok().and_then(|id| store.jobs.get(&id)) {
            Some(j) => (200, job(store, j)),
            None => not_found(&format!(
                "unknown job '{id}': expected the number of a running job or of a retained finished one (faisca.ui.retainedJobs)"
            )),
        },
        ["stages"] => {
            let wanted = query_values(query, "status");
            // Spark lists stages without their tasks unless asked.
            let details = query_values(query, "details").contains(&"true");
            let stages: Vec<Value> = store
                .stages
                .values()
                .rev()
                .filter(|s| {
                    wanted.is_empty()
                        || wanted
                            .iter()
                            .any(|w| w.eq_ignore_ascii_case(s.status.name()))
                })
                .map(|s| stage(s, details))
                .collect();
            (200, Value::Array(stages))
        }
        ["stages", id, more @ ..] => {
            let Some(s) = id.parse::<u32>().ok().and_then(|id| store.stages.get(&id)) else {
                return not_found(&format!(
                    "unknown stage '{id}': expected the id of a stage of a retained job (faisca.ui.retainedStages)"
                ));
            };
            let details = !query_values(query, "details").contains(&"false");
            match more {
                [] => (200, json!([stage(s, details)])),
                [attempt, tail @ ..] => {
                    if *attempt != "0" {
                        return not_found(&format!(
                            "unknown attempt '{attempt}' of stage {id}: expected 0 (a stage runs once; tasks are retried instead)"
                        ));
                    }
                    match tail {
                        [] => (200, stage(s, details)),
                        ["taskList"] => (200, Value::Array(task_list(s, query))),
                        ["taskSummary"] => (200, task_summary(s, query)),
                        _ => not_found("expected taskList or taskSummary"),
                    }
                }
            }
        }
        ["executors"] => (200, executors(store, true)),
        ["allexecutors"] => (200, executors(store, false)),
        ["environment"] => (200, environment(store)),
        ["streaming", "queries"] => (
            200,
            Value::Array(store.queries.values().rev().map(query_json).collect()),
        ),
        _ => not_found(&format!(
            "no endpoint {}: expected jobs, stages, executors, allexecutors, environment or streaming/queries",
            rest.join("/")
        )),
    }
}

fn not_found(message: &str) -> Answer {
    (404, json!({ "error": message }))
}

/// The values of `key` in a query string (`status=running&status=failed`).
fn query_values<'a>(query: &'a str, key: &str) -> Vec<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .collect()
}

fn query_number(query: &str, key: &str) -> Option<usize> {
    query_values(query, key)
        .first()
        .and_then(|v| v.parse().ok())
}

/// The application (Spark's `ApplicationInfo`, one attempt).
pub fn application(store: &AppStore) -> Value {
    let app = store.app.as_ref().expect("checked by the caller");
    let last = store.app_end.unwrap_or_else(crate::events::now_ms);
    json!({
        "id": app.app_id,
        "name": app.app_name,
        "attempts": [{
            "startTime": spark_time(app.time),
            "endTime": store.app_end.map(spark_time).unwrap_or_else(|| spark_time(0)),
            "lastUpdated": spark_time(last),
            "duration": last.saturating_sub(app.time),
            "sparkUser": "",
            "completed": store.app_end.is_some(),
            "appSparkVersion": env!("CARGO_PKG_VERSION"),
            "startTimeEpoch": app.time,
            "endTimeEpoch": store.app_end.map(|t| t as i64).unwrap_or(-1),
            "lastUpdatedEpoch": last,
        }],
    })
}

/// A job (Spark's `JobData`).
pub fn job(store: &AppStore, j: &JobView) -> Value {
    let stages: Vec<&StageView> = j
        .stage_ids
        .iter()
        .filter_map(|id| store.stages.get(id))
        .collect();
    let count =
        |status: crate::store::StageStatus| stages.iter().filter(|s| s.status == status).count();
    use crate::store::StageStatus::*;
    let skipped_tasks: u64 = stages
        .iter()
        .filter(|s| s.status == Skipped)
        .map(|s| s.plan.tasks as u64)
        .sum();
    let completed_indices: u64 = stages.iter().map(|s| s.succeeded.len() as u64).sum();
    json!({
        "jobId": j.start.job,
        "faiscaJobId": j.start.job_uuid,
        "name": j.start.name,
        "description": j.start.description,
        "submissionTime": spark_time(j.start.time),
        "completionTime": j.end.as_ref().map(|e| spark_time(e.time)),
        "stageIds": j.stage_ids,
        "status": j.status().name(),
        "numTasks": j.num_tasks(),
        "numActiveTasks": j.tasks.active,
        "numCompletedTasks": j.tasks.completed,
        "numSkippedTasks": skipped_tasks,
        "numFailedTasks": j.tasks.failed,
        "numKilledTasks": j.tasks.killed,
        "numCompletedIndices": completed_indices,
        "numActiveStages": count(Active),
        "numCompletedStages": count(Complete),
        "numSkippedStages": count(Skipped),
        "numFailedStages": count(Failed),
        "killedTasksSummary": {},
        "errorMessage": j.end.as_ref().filter(|e| !e.error.is_empty()).map(|e| e.error.clone()),
    })
}

/// A stage attempt (Spark's `StageData`); with its tasks when `details`.
pub fn stage(s: &StageView, details: bool) -> Value {
    let metric = |name: &str| s.totals.metrics.get(name).copied().unwrap_or(0);
    let mut value = json!({
        "status": s.status.name(),
        "stageId": s.id,
        "attemptId": 0,
        "jobIds": [s.job],
        "jobStageIndex": s.plan.stage,
        "name": format!("job {} stage {}", s.job, s.plan.stage),
        "description": s.plan.output,
        "details": s.plan.operators,
        "inputStageIndexes": s.plan.inputs,
        "numTasks": s.plan.tasks,
        "numActiveTasks": s.tasks.active,
        "numCompleteTasks": s.tasks.completed,
        "numFailedTasks": s.tasks.failed,
        "numKilledTasks": s.tasks.killed,
        "numCompletedIndices": s.succeeded.len(),
        "submissionTime": s.submission_time.map(spark_time),
        "firstTaskLaunchedTime": s.submission_time.map(spark_time),
        "completionTime": s.completion_time.map(spark_time),
        "failureReason": (!s.failure_reason.is_empty()).then(|| s.failure_reason.clone()),
        "executorRunTime": s.totals.run_time_ms.round() as u64,
        "outputRecords": s.totals.rows_written,
        "outputBytes": s.totals.bytes_written,
        "shuffleWriteBytes": s.totals.bytes_written,
        "shuffleWriteRecords": s.totals.rows_written,
        "shuffleReadBytes": metric("shuffle.bytesFetched"),
        "shuffleFetchWaitTime": metric("shuffle.fetchWaitMicros") / 1000,
        "memoryBytesSpilled": metric("spill.bytes"),
        "diskBytesSpilled": metric("spill.bytes"),
        "schedulingPool": "default",
        "rddIds": [],
        "accumulatorUpdates": [],
        "killedTasksSummary": {},
        "metrics": s.totals.metrics,
        "tasksForgotten": s.attempts_forgotten,
    });
    if details {
        let tasks: serde_json::Map<String, Value> = s
            .attempts
            .values()
            .map(|t| (t.task_id.to_string(), task(t)))
            .collect();
        value["tasks"] = Value::Object(tasks);
    }
    value
}

/// A task attempt (Spark's `TaskData`).
pub fn task(t: &TaskView) -> Value {
    let status = match &t.end {
        None => "RUNNING",
        Some(end) => match end.outcome {
            crate::events::TaskOutcome::Success => "SUCCESS",
            crate::events::TaskOutcome::Failed => "FAILED",
            crate::events::TaskOutcome::Killed => "KILLED",
        },
    };
    let metric = |name: &str| {
        t.end
            .as_ref()
            .and_then(|e| e.metrics.get(name).copied())
            .unwrap_or(0)
    };
    let (rows, bytes, run_ms) = t
        .end
        .as_ref()
        .map(|e| (e.rows_written, e.bytes_written, e.duration_ms))
        .unwrap_or_default();
    json!({
        "taskId": t.task_id,
        "index": t.start.partition,
        "attempt": t.start.attempt,
        "partitionId": t.start.partition,
        "launchTime": spark_time(t.start.time),
        "resultFetchStart": null,
        "duration": t.end.as_ref().map(|e| e.duration_ms.round() as u64),
        "executorId": t.start.executor,
        "host": t.start.executor,
        "status": status,
        "taskLocality": "ANY",
        "speculative": false,
        "errorMessage": t.end.as_ref().filter(|e| !e.error.is_empty()).map(|e| e.error.clone()),
        "taskMetrics": {
            "executorRunTime": run_ms.round() as u64,
            "memoryBytesSpilled": metric("spill.bytes"),
            "diskBytesSpilled": metric("spill.bytes"),
            "inputMetrics": {
                "bytesRead": scan_total(t, ".bytes"),
                "recordsRead": scan_total(t, ".rows"),
            },
            "outputMetrics": { "bytesWritten": bytes, "recordsWritten": rows },
            "shuffleReadMetrics": {
                "remoteBytesRead": metric("shuffle.bytesFetched"),
                "fetchWaitTime": metric("shuffle.fetchWaitMicros") / 1000,
            },
            "shuffleWriteMetrics": { "bytesWritten": bytes, "recordsWritten": rows },
        },
        "metrics": t.end.as_ref().map(|e| e.metrics.clone()).unwrap_or_default(),
    })
}

fn scan_total(t: &TaskView, suffix: &str) -> u64 {
    t.end
        .as_ref()
        .map(|e| {
            e.metrics
                .iter()
                .filter(|(k, _)| k.starts_with("scan.") && k.ends_with(suffix))
                .map(|(_, v)| *v)
                .sum()
        })
        .unwrap_or(0)
}

/// The stage's tasks, Spark's `taskList` (`offset`, `length` — 20 by default, `sortBy`).
fn task_list(s: &StageView, query: &str) -> Vec<Value> {
    let offset = query_number(query, "offset").unwrap_or(0);
    let length = query_number(query, "length").unwrap_or(20);
    let mut tasks: Vec<&TaskView> = s.attempts.values().collect();
    match query_values(query, "sortBy").first().copied() {
        Some("-runtime") | Some("-duration") => {
            tasks.sort_by(|a, b| duration_of(b).total_cmp(&duration_of(a)))
        }
        Some("runtime") | Some("duration") => {
            tasks.sort_by(|a, b| duration_of(a).total_cmp(&duration_of(b)))
        }
        _ => tasks.sort_by_key(|t| t.task_id),
    }
    tasks
        .into_iter()
        .skip(offset)
        .take(length)
        .map(task)
        .collect()
}

fn duration_of(t: &TaskView) -> f64 {
    t.end.as_ref().map(|e| e.duration_ms).unwrap_or(0.0)
}

/// Quantiles of the successful tasks' metrics (Spark's `taskSummary`; `quantiles` defaults to
/// Spark's 0.05,0.25,0.5,0.75,0.95).
fn task_summary(s: &StageView, query: &str) -> Value {
    let quantiles: Vec<f64> = query_values(query, "quantiles")
        .first()
        .map(|q| q.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![0.05, 0.25, 0.5, 0.75, 0.95]);
    let summary = crate::summary::TaskSummary::of(s, &quantiles);
    json!({
        "quantiles": quantiles,
        "executorRunTime": summary.duration_ms,
        "outputMetrics": {
            "recordsWritten": summary.rows_written,
            "bytesWritten": summary.bytes_written,
        },
        "shuffleReadMetrics": {
            "remoteBytesRead": summary.bytes_fetched,
            "fetchWaitTime": summary.fetch_wait_ms,
        },
    })
}

fn executor(e: &ExecutorView) -> Value {
    json!({
        "id": e.added.id,
        "hostPort": e.added.address,
        "isActive": e.removed.is_none(),
        "rddBlocks": 0,
        "memoryUsed": e.memory_used_bytes,
        "diskUsed": 0,
        "totalCores": e.added.cores,
        "maxTasks": e.added.cores,
        "activeTasks": e.tasks.active,
        "failedTasks": e.tasks.failed,
        "completedTasks": e.tasks.completed,
        "totalTasks": e.tasks.active + e.tasks.failed + e.tasks.completed + e.tasks.killed,
        "totalDuration": e.task_time_ms.round() as u64,
        "maxMemory": e.added.memory_bytes,
        "addTime": spark_time(e.added.time),
        "removeTime": e.removed.as_ref().map(|r| spark_time(r.time)),
        "removeReason": e.removed.as_ref().map(|r| r.reason.clone()),
        "lastHeartbeat": spark_time(e.last_heartbeat),
        "shuffleBytesHeld": e.shuffle_bytes_held,
        "isExcluded": false,
    })
}

fn executors(store: &AppStore, active_only: bool) -> Value {
    Value::Array(
        store
            .executors
            .values()
            .filter(|e| !active_only || e.removed.is_none())
            .map(executor)
            .collect(),
    )
}

fn pairs(pairs: &[(String, String)]) -> Value {
    Value::Array(pairs.iter().map(|(k, v)| json!([k, v])).collect())
}

/// The environment (Spark's `ApplicationEnvironmentInfo`): the driver's configuration as
/// `sparkProperties`, secrets already redacted by the driver.
pub fn environment(store: &AppStore) -> Value {
    let app = store.app.as_ref().expect("checked by the caller");
    let runtime: serde_json::Map<String, Value> = app
        .runtime
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "runtime": runtime,
        "sparkProperties": pairs(&app.config),
        "hadoopProperties": [],
        "systemProperties": [],
        "metricsProperties": [],
        "classpathEntries": [],
        "resourceProfiles": [],
    })
}

/// A streaming query run.
pub fn query_json(q: &crate::store::QueryView) -> Value {
    json!({
        "id": q.id,
        "runId": q.run_id,
        "name": q.name,
        "sink": q.sink,
        "isActive": q.ended.is_none(),
        "startTimestamp": q.start_time,
        "endTimestamp": q.ended.as_ref().map(|(t, _)| *t),
        "exception": q.ended.as_ref().filter(|(_, e)| !e.is_empty()).map(|(_, e)| e.clone()),
        "lastProgress": q.recent_progress.back(),
        "recentProgress": q.recent_progress,
    })
}
