//! Task logs: the stage page links each task attempt's log lines, which its executor keeps in
//! memory (`faisca.ui.taskLogLines`). The store says where the attempt ran; the driver fetches
//! the lines from that executor on demand through a [`TaskLogFetcher`] (a Flight call the driver
//! supplies), outside the store's actor, and the answer is rendered from what came back.
//!
//! Two paths: the page `/stages/stage/log/?id=STAGE&taskId=TASK` and the REST endpoint
//! `/api/v1/applications/{appId}/stages/{stageId}/{attempt}/tasks/{taskId}/log`
//! (`{"taskId", "executorId", "lines", "linesDropped"}`). A run read back from an event log has
//! no task logs, nor has an attempt whose executor left (its memory went with it).

use std::fmt::Write;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::json;

use crate::format::html;
use crate::pages::PageContext;
use crate::server::Answer;
use crate::store::{AppStore, StageView, TaskView};

/// Which attempt's lines to fetch, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLogRequest {
    /// The executor's id.
    pub executor_id: String,
    /// The executor's Flight address.
    pub executor_address: String,
    /// The job's id (as the executor knows it).
    pub job_uuid: String,
    /// The stage within the job.
    pub stage: u32,
    /// The task (partition).
    pub partition: u32,
    /// The attempt.
    pub attempt: u32,
}

/// The lines an executor kept of one attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskLogLines {
    /// Oldest first.
    pub lines: Vec<String>,
    /// Earlier lines not kept.
    pub dropped: u64,
}

/// Fetches an attempt's lines from its executor; the error says why it could not.
pub type TaskLogFetcher =
    Arc<dyn Fn(TaskLogRequest) -> BoxFuture<'static, Result<TaskLogLines, String>> + Send + Sync>;

/// Renders the answer once the lines (or why there are none) are known.
pub type RenderTaskLog = Box<dyn FnOnce(Result<TaskLogLines, String>) -> Answer + Send>;

/// What the store's actor answers: a whole answer, or a fetch to make first.
pub enum Reply {
    /// The answer.
    Done(Answer),
    /// Fetch these lines, then render the answer from them.
    Fetch {
        /// What to fetch.
        request: TaskLogRequest,
        /// How to answer with what came back.
        render: RenderTaskLog,
    },
}

/// A task log path, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The HTML page.
    Page {
        stage: Option<u32>,
        task: Option<u64>,
    },
    /// The REST endpoint (after checking the application id).
    Rest {
        stage: Option<u32>,
        task: Option<u64>,
    },
}

/// The task log path `path` (with `query`) asks for, if it is one; `app_id` is the
/// application's (a REST path for another application is not a task log path here).
pub(crate) fn target(path: &str, query: &str, app_id: &str) -> Option<Target> {
    if path == "/stages/stage/log/" {
        let value = |name: &str| {
            query
                .split('&')
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v)
        };
        return Some(Target::Page {
            stage: value("id").and_then(|v| v.parse().ok()),
            task: value("taskId").and_then(|v| v.parse().ok()),
        });
    }
    let rest = path.strip_prefix("/api/v1/applications/")?;
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        [app, "stages", stage, _attempt, "tasks", task, "log"] if *app == app_id => {
            Some(Target::Rest {
                stage: stage.parse().ok(),
                task: task.parse().ok(),
            })
        }
        _ => None,
    }
}

/// Where the attempt ran, or why its lines cannot be had (status and reason).
/// The stage, the attempt and the request for its lines.
type Located<'a> = (&'a StageView, &'a TaskView, TaskLogRequest);

fn locate(
    store: &AppStore,
    stage: Option<u32>,
    task: Option<u64>,
) -> Result<Located<'_>, (u16, String)> {
    let stage_view = stage.and_then(|id| store.stages.get(&id)).ok_or_else(|| {
        (
            404,
            format!(
                "no stage {}: expected the id of a running or retained stage",
                stage.map_or("(missing)".to_string(), |s| s.to_string())
            ),
        )
    })?;
    let task_view = task
        .and_then(|id| stage_view.attempts.values().find(|t| t.task_id == id))
        .ok_or_else(|| {
            (
                404,
                format!(
                    "stage {} has no task {}: expected the taskId of one of its retained attempts",
                    stage_view.id,
                    task.map_or("(missing)".to_string(), |t| t.to_string())
                ),
            )
        })?;
    let job = store.jobs.get(&stage_view.job).ok_or_else(|| {
        (
            404,
            format!("the job of stage {} is no longer retained", stage_view.id),
        )
    })?;
    let executor_id = &task_view.start.executor;
    let executor = store.executors.get(executor_id).ok_or_else(|| {
        (
            404,
            format!("executor {executor_id} is not known: its task logs cannot be fetched"),
        )
    })?;
    if let Some(removed) = &executor.removed {
        return Err((
            410,
            format!(
                "executor {executor_id} left ({}): the task logs it kept went with it",
                removed.reason
            ),
        ));
    }
    let request = TaskLogRequest {
        executor_id: executor_id.clone(),
        executor_address: executor.added.address.clone(),
        job_uuid: job.start.job_uuid.clone(),
        stage: stage_view.plan.stage,
        partition: task_view.start.partition,
        attempt: task_view.start.attempt,
    };
    Ok((stage_view, task_view, request))
}

/// The reply to a task log path on a running driver: a fetch from the executor, or why not.
pub(crate) fn live_reply(cx: &PageContext, target: Target) -> Reply {
    match target {
        Target::Page { stage, task } => match locate(cx.store, stage, task) {
            Ok((stage, task, request)) => {
                let head = page_head(cx, stage, task);
                let executor = request.executor_id.clone();
                Reply::Fetch {
                    request,
                    render: Box::new(move |lines| page(head, &executor, lines)),
                }
            }
            Err((status, reason)) => Reply::Done(missing_page(cx, status, &reason)),
        },
        Target::Rest { stage, task } => match locate(cx.store, stage, task) {
            Ok((_, task, request)) => {
                let (task_id, executor) = (task.task_id, request.executor_id.clone());
                Reply::Fetch {
                    request,
                    render: Box::new(move |lines| rest(task_id, &executor, lines)),
                }
            }
            Err((status, reason)) => Reply::Done(Answer::json(status, &json!({"error": reason}))),
        },
    }
}

/// The answer to a task log path where no executor can be asked (a run read back).
pub(crate) fn unavailable(cx: &PageContext, target: Target) -> Answer {
    let reason = "a run read back from its event log has no task logs: executors keep them in memory only while their driver runs";
    match target {
        Target::Page { .. } => missing_page(cx, 404, reason),
        Target::Rest { .. } => Answer::json(404, &json!({ "error": reason })),
    }
}

fn page_head(cx: &PageContext, stage: &StageView, task: &TaskView) -> String {
    let mut out = crate::pages::header(
        cx,
        &format!(
            "Log of task {} (stage {}, index {}, attempt {})",
            task.task_id, stage.id, task.start.partition, task.start.attempt
        ),
        "task-log",
        "",
    );
    let _ = write!(
        out,
        "<p><a href=\"{}/stages/stage/?id={}\">Back to stage {}</a></p>",
        cx.base, stage.id, stage.id
    );
    out
}

fn page(mut head: String, executor: &str, lines: Result<TaskLogLines, String>) -> Answer {
    match lines {
        Ok(lines) => {
            let _ = write!(
                head,
                "<p>The last {} lines executor <code>{}</code> kept (faisca.ui.taskLogLines){}.</p><pre class=\"log\" id=\"task-log\">",
                lines.lines.len(),
                html(executor),
                if lines.dropped > 0 {
                    format!("; {} earlier lines were not kept", lines.dropped)
                } else {
                    String::new()
                }
            );
            for line in &lines.lines {
                head.push_str(&html(line));
                head.push('\n');
            }
            head.push_str("</pre>");
            head.push_str(crate::pages::FOOTER);
            Answer::html(200, head)
        }
        Err(reason) => {
            let _ = write!(head, "<p class=\"error\">{}</p>", html(&reason));
            head.push_str(crate::pages::FOOTER);
            Answer::html(502, head)
        }
    }
}

fn rest(task_id: u64, executor: &str, lines: Result<TaskLogLines, String>) -> Answer {
    match lines {
        Ok(lines) => Answer::json(
            200,
            &json!({
                "taskId": task_id,
                "executorId": executor,
                "lines": lines.lines,
                "linesDropped": lines.dropped,
            }),
        ),
        Err(reason) => Answer::json(502, &json!({ "error": reason })),
    }
}

fn missing_page(cx: &PageContext, status: u16, reason: &str) -> Answer {
    let mut out = crate::pages::header(cx, "No task log", "missing", "");
    let _ = write!(out, "<p class=\"error\">{}</p>", html(reason));
    out.push_str(crate::pages::FOOTER);
    Answer::html(status, out)
}
