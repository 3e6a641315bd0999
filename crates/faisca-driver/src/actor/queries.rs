//! Streaming queries in the actor: each active query's runner task (owned here, so it ends with
//! the driver), its status and recent progress, stopping one, and the recently ended ones.

use std::collections::{HashMap, VecDeque};

use faisca_common::{Error, Result};
use faisca_proto::StreamingQueryInfo;
use tokio::sync::{oneshot, watch};
use tracing::info;

use super::{DriverState, Message};
use crate::streaming::runner::{QueryRun, QueryUpdate};

/// Answers a stop request once the query ended.
pub type StopWaiter = oneshot::Sender<Result<StreamingQueryInfo>>;

/// An active query.
struct ActiveQuery {
    info: StreamingQueryInfo,
    /// The session that started it (a client sink's query stops when it closes).
    owner: faisca_common::ids::SessionId,
    /// Whether its sink runs in the client.
    client_sink: bool,
    /// Where a client sink's acknowledgements go.
    acks: tokio::sync::mpsc::UnboundedSender<(u64, Option<String>)>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    stop_waiters: Vec<StopWaiter>,
    recent_limit: usize,
}

impl Drop for ActiveQuery {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The driver's streaming queries.
#[derive(Default)]
pub(super) struct Queries {
    /// Active queries by run id.
    active: HashMap<String, ActiveQuery>,
    /// Ended runs, oldest first.
    ended: VecDeque<StreamingQueryInfo>,
}

impl Queries {
    /// The active query with this id or run id.
    fn by_id(&self, id: &str) -> Option<&ActiveQuery> {
        self.active
            .values()
            .find(|q| q.info.id == id || q.info.run_id == id)
    }
}

fn unknown_query(id: &str) -> Error {
    Error::user(format!(
        "unknown streaming query '{id}': expected the id of a query this driver runs or ran recently (faisca status lists them)"
    ))
}

impl DriverState {
    /// Starts `query`'s runner, unless a run of the same query is active.
    pub(super) fn start_query(
        &mut self,
        mut query: Box<QueryRun>,
        reply: oneshot::Sender<Result<StreamingQueryInfo>>,
    ) {
        if let Some(other) = self.queries.active.values().find(|q| q.info.id == query.id) {
            let _ = reply.send(Err(Error::user(format!(
                "Cannot start query with id {} as another query with same id is already active (run {}); stop it first, or give this query a checkpointLocation of its own",
                query.id, other.info.run_id
            ))));
            return;
        }
        if let Some(name) = (!query.name.is_empty()).then_some(&query.name)
            && self.queries.active.values().any(|q| &q.info.name == name)
        {
            let _ = reply.send(Err(Error::user(format!(
                "Cannot start query with name {name} as a query with that name is already active; stop it first or choose another query_name"
            ))));
            return;
        }
        let Some(weak) = &self.myself else {
            let _ = reply.send(Err(Error::internal(
                "the driver cannot run streaming queries before it started",
            )));
            return;
        };
        let handle = super::WeakDriverHandle {
            sender: weak.clone(),
        };
        let info = StreamingQueryInfo {
            id: query.id.clone(),
            run_id: query.run_id.clone(),
            name: query.name.clone(),
            active: true,
            status_message: "Initializing sources".to_string(),
            is_data_available: false,
            is_trigger_active: false,
            exception: String::new(),
            recent_progress: Vec::new(),
            sink: query.sink.describe(),
            checkpoint: query.checkpoint.url().to_string(),
            has_pending_batch: false,
            pending_batch_id: 0,
            pending_table: String::new(),
            user: query.session.owner.clone().unwrap_or_default(),
        };
        info!(query = %info.id, run = %info.run_id, name = %info.name, "starting streaming query");
        // The query's jobs belong to a session of its own (sharing the client session's catalog,
        // so a memory sink's table shows there), which lives as long as the query: the query
        // outlives its client.
        let session_id = faisca_common::ids::SessionId(format!("streaming-{}", query.run_id));
        self.sessions
            .insert(session_id.clone(), query.session.clone());
        let owner = std::mem::replace(&mut query.session_id, session_id);
        let client_sink = matches!(query.sink, crate::streaming::runner::Sink::Client { .. });
        let (acks, received) = tokio::sync::mpsc::unbounded_channel();
        query.acks = Some(received);
        let recent_limit = query.session.config.streaming_recent_progress();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(crate::streaming::runner::run(*query, handle, stopped));
        let _ = reply.send(Ok(info.clone()));
        self.post_query(|| faisca_ui::events::QueryEvent::Started {
            id: info.id.clone(),
            run_id: info.run_id.clone(),
            name: info.name.clone(),
            sink: info.sink.clone(),
            user: info.user.clone(),
            time: faisca_ui::events::now_ms(),
        });
        self.queries.active.insert(
            info.run_id.clone(),
            ActiveQuery {
                info,
                owner,
                client_sink,
                acks,
                stop,
                task,
                stop_waiters: Vec::new(),
                recent_limit,
            },
        );
    }

    pub(super) fn query_update(&mut self, run_id: &str, update: QueryUpdate) {
        if let QueryUpdate::Progress(progress) = &update
            && self.queries.active.contains_key(run_id)
        {
            self.post_query(|| faisca_ui::events::QueryEvent::Progress {
                run_id: run_id.to_string(),
                progress: super::ui::progress_json(progress),
            });
        }
        let Some(query) = self.queries.active.get_mut(run_id) else {
            return;
        };
        match update {
            QueryUpdate::Status {
                message,
                data_available,
                trigger_active,
            } => {
                query.info.status_message = message;
                query.info.is_data_available = data_available;
                query.info.is_trigger_active = trigger_active;
            }
            QueryUpdate::Pending(pending) => {
                query.info.has_pending_batch = pending.is_some();
                let (batch, table) = pending.unwrap_or_default();
                query.info.pending_batch_id = batch;
                query.info.pending_table = table;
            }
            QueryUpdate::Progress(progress) => {
                let recent = &mut query.info.recent_progress;
                recent.push(*progress);
                let excess = recent.len().saturating_sub(query.recent_limit);
                recent.drain(..excess);
            }
        }
    }

    pub(super) fn query_ended(&mut self, run_id: &str, error: Option<String>) {
        let Some(mut query) = self.queries.active.remove(run_id) else {
            return;
        };
        self.sessions.remove(&faisca_common::ids::SessionId(format!(
            "streaming-{run_id}"
        )));
        self.post_query(|| faisca_ui::events::QueryEvent::Ended {
            run_id: run_id.to_string(),
            time: faisca_ui::events::now_ms(),
            exception: error.clone().unwrap_or_default(),
        });
        query.info.active = false;
        query.info.has_pending_batch = false;
        query.info.is_trigger_active = false;
        query.info.is_data_available = false;
        if let Some(error) = error {
            query.info.status_message = "Terminated with exception".to_string();
            query.info.exception = error;
        } else {
            query.info.status_message = "Stopped".to_string();
        }
        for waiter in query.stop_waiters.drain(..) {
            let _ = waiter.send(Ok(query.info.clone()));
        }
        self.queries.ended.push_back(query.info.clone());
        while self.queries.ended.len() > self.settings.retained_jobs.max(1) {
            self.queries.ended.pop_front();
        }
    }

    pub(super) fn list_queries(&self, active_only: bool) -> Vec<StreamingQueryInfo> {
        let mut queries: Vec<StreamingQueryInfo> = Vec::new();
        if !active_only {
            queries.extend(self.queries.ended.iter().cloned());
        }
        queries.extend(self.queries.active.values().map(|q| q.info.clone()));
        queries
    }

    pub(super) fn query_info(&self, id: &str) -> Result<StreamingQueryInfo> {
        if let Some(query) = self.queries.by_id(id) {
            return Ok(query.info.clone());
        }
        self.queries
            .ended
            .iter()
            .rev()
            .find(|q| q.id == id || q.run_id == id)
            .cloned()
            .ok_or_else(|| unknown_query(id))
    }

    pub(super) fn stop_query(&mut self, id: &str, reply: StopWaiter) {
        match self
            .queries
            .active
            .values_mut()
            .find(|q| q.info.id == id || q.info.run_id == id)
        {
            Some(query) => {
                let _ = query.stop.send(true);
                query.stop_waiters.push(reply);
            }
            None => {
                let _ = reply.send(self.query_info(id));
            }
        }
    }

    /// A client sink acknowledged a batch of the run `run_id`.
    pub(super) fn ack_query_batch(
        &mut self,
        run_id: &str,
        batch: u64,
        error: Option<String>,
    ) -> Result<()> {
        let query = self
            .queries
            .active
            .get(run_id)
            .ok_or_else(|| unknown_query(run_id))?;
        let _ = query.acks.send((batch, error));
        Ok(())
    }

    /// The session `session` closed: its queries with client sinks stop with it.
    pub(super) fn session_closed(&mut self, session: &faisca_common::ids::SessionId) {
        for query in self.queries.active.values() {
            if query.client_sink && &query.owner == session {
                info!(query = %query.info.id, "the client of a query with a client sink left: stopping it");
                let _ = query.stop.send(true);
            }
        }
    }

    /// Handles one streaming query message.
    pub(super) fn query_message(&mut self, message: Message) {
        match message {
            Message::StartQuery { query, reply } => self.start_query(query, reply),
            Message::QueryUpdate { run_id, update } => self.query_update(&run_id, update),
            Message::QueryEnded { run_id, error } => self.query_ended(&run_id, error),
            Message::ListQueries { active_only, reply } => {
                let _ = reply.send(self.list_queries(active_only));
            }
            Message::GetQuery { id, reply } => {
                let _ = reply.send(self.query_info(&id));
            }
            Message::StopQuery { id, reply } => self.stop_query(&id, reply),
            Message::AckQueryBatch {
                run_id,
                batch,
                error,
                reply,
            } => {
                let _ = reply.send(self.ack_query_batch(&run_id, batch, error));
            }
            _ => {}
        }
    }
}
