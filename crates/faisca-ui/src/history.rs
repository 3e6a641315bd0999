//! `faisca history`: the same pages and REST API, read-only, for the runs an event log holds.
//!
//! A loader task lists the runs under the event log directory every refresh interval and reads
//! the segments it has not read yet; an actor owns one [`AppStore`] per run, built from those
//! events exactly as the live UI built its own, and answers requests. Runs are listed newest
//! first; a run without `appstatus.complete` (its driver still runs, or was killed) is marked
//! incomplete and shows what its closed segments hold.
//!
//! Paths: `/` lists the runs; `/history/<appId>/jobs/` and the other pages of one run;
//! `/api/v1/applications` lists every run and `/api/v1/applications/<appId>/…` answers as the
//! live driver did.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use faisca_common::config::UiSettings;
use faisca_common::{Error, Result};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::eventlog::{COMPLETE, segment_number};
use crate::events::Event;
use crate::format::{html, spark_time};
use futures::FutureExt;

use crate::server::{Answer, Ask, Viewer, answer, bind, serve, viewed};
use crate::store::{AppStore, StoreLimits};

/// What the loader found in one run's directory.
struct Loaded {
    run: String,
    events: Vec<Event>,
    complete: bool,
}

enum Message {
    Loaded(Loaded),
    Request {
        path: String,
        query: String,
        viewer: Viewer,
        reply: oneshot::Sender<Answer>,
    },
}

/// A run read back.
struct Run {
    store: AppStore,
    complete: bool,
}

/// A running history server. It stops when dropped.
#[derive(Debug)]
pub struct HistoryServer {
    address: std::net::SocketAddr,
    https: bool,
    server: JoinHandle<()>,
    actor: JoinHandle<()>,
    loader: JoinHandle<()>,
}

impl HistoryServer {
    /// Serve the runs under `dir` of `store` (`location` names it in messages), re-reading it
    /// every `refresh`.
    pub async fn start(
        store: Arc<dyn ObjectStore>,
        dir: Path,
        location: &str,
        settings: &UiSettings,
        refresh: Duration,
        tls: Option<Arc<faisca_common::tls::ServerTls>>,
        access: crate::access::Access,
    ) -> Result<Self> {
        // The directory must be readable now: a wrong URL is an error at start, not an empty list.
        store.list_with_delimiter(Some(&dir)).await.map_err(|e| {
            Error::user(format!(
                "cannot list the event log directory {location}: {e}"
            ))
        })?;
        let listener = bind(
            settings.bind,
            settings.port,
            settings.max_retries,
            "history server",
        )
        .await?;
        let address = listener.local_addr()?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let limits = StoreLimits::from_settings(settings);
        let actor = tokio::spawn(run_actor(receiver, limits));
        let loader = tokio::spawn(load(
            store,
            dir,
            location.to_string(),
            refresh,
            sender.clone(),
        ));
        let ask: Ask = Arc::new(move |path, query, viewer| {
            let (reply, answer) = oneshot::channel();
            let _ = sender.send(Message::Request {
                path,
                query,
                viewer,
                reply,
            });
            async move {
                answer
                    .await
                    .unwrap_or_else(|_| Answer::text(503, "the server is stopping".to_string()))
            }
            .boxed()
        });
        let https = tls.is_some();
        let access = crate::access::Access { https, ..access };
        let server = tokio::spawn(serve(listener, ask, tls, access));
        Ok(HistoryServer {
            address,
            https,
            server,
            actor,
            loader,
        })
    }

    /// Its URL.
    pub fn url(&self) -> String {
        crate::server::url_of(self.address, self.https)
    }
}

impl Drop for HistoryServer {
    fn drop(&mut self) {
        self.server.abort();
        self.loader.abort();
        self.actor.abort();
    }
}

async fn run_actor(mut receiver: mpsc::UnboundedReceiver<Message>, limits: StoreLimits) {
    let mut runs: BTreeMap<String, Run> = BTreeMap::new();
    while let Some(message) = receiver.recv().await {
        match message {
            Message::Loaded(loaded) => {
                let run = runs.entry(loaded.run).or_insert_with(|| Run {
                    store: AppStore::new(limits),
                    complete: false,
                });
                for event in &loaded.events {
                    run.store.apply(event);
                }
                run.complete = loaded.complete;
            }
            Message::Request {
                path,
                query,
                viewer,
                reply,
            } => {
                let _ = reply.send(respond(&runs, &path, &query, &viewer));
            }
        }
    }
}

/// Runs with an application start, newest first.
fn listed(runs: &BTreeMap<String, Run>) -> Vec<(&String, &Run)> {
    let mut listed: Vec<(&String, &Run)> =
        runs.iter().filter(|(_, r)| r.store.app.is_some()).collect();
    listed.sort_by_key(|(_, r)| std::cmp::Reverse(r.store.app.as_ref().map(|a| a.time)));
    listed
}

/// The answer to a request for `path` as `viewer` may see the runs (a user: their own jobs and
/// streaming queries in each).
fn respond(runs: &BTreeMap<String, Run>, path: &str, query: &str, viewer: &Viewer) -> Answer {
    if path == "/" || path == "/history/" || path == "/history" {
        return Answer::html(200, runs_page(runs));
    }
    if path == "/api/v1/applications" || path == "/api/v1/applications/" {
        let apps: Vec<Value> = listed(runs)
            .into_iter()
            .map(|(_, r)| crate::rest::application(&r.store))
            .collect();
        return Answer::json(200, &Value::Array(apps));
    }
    if let Some(rest) = path.strip_prefix("/api/v1/applications/") {
        let id = rest.split('/').next().unwrap_or_default();
        return match find(runs, id) {
            Some(run) => answer(viewed(&run.store, viewer, &mut None), path, query, "", true),
            None => unknown(runs, id),
        };
    }
    if let Some(rest) = path.strip_prefix("/history/") {
        let (id, page) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        return match find(runs, id) {
            Some(run) if page != "/metrics" => {
                // A complete run's pages do not poll: it ended, and the header says so.
                let mut copy = None;
                let store = viewed(&run.store, viewer, &mut copy);
                answer(store, page, query, &format!("/history/{id}"), true)
            }
            Some(_) => Answer::text(404, "a run read back has no /metrics".to_string()),
            None => unknown(runs, id),
        };
    }
    Answer::text(
        404,
        format!(
            "no page {path}: expected /, /history/<appId>/jobs/ or /api/v1/applications[/<appId>/…]"
        ),
    )
}

fn find<'a>(runs: &'a BTreeMap<String, Run>, id: &str) -> Option<&'a Run> {
    runs.values()
        .find(|r| r.store.app.as_ref().is_some_and(|a| a.app_id == id))
}

fn unknown(runs: &BTreeMap<String, Run>, id: &str) -> Answer {
    let known: Vec<String> = listed(runs)
        .into_iter()
        .filter_map(|(_, r)| r.store.app.as_ref().map(|a| a.app_id.clone()))
        .collect();
    Answer::json(
        404,
        &serde_json::json!({ "error": format!("unknown application '{id}': expected one of {known:?}") }),
    )
}

fn runs_page(runs: &BTreeMap<String, Run>) -> String {
    let mut out = String::from(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Faísca history</title>\
         <link rel=\"stylesheet\" href=\"/static/faisca.css\"></head><body data-page=\"history\">\
         <header><span class=\"brand\">Faísca</span><span>History</span></header><main><h1>Runs</h1>\
         <table class=\"runs\" id=\"runs\"><thead><tr><th>Application</th><th>Started (UTC)</th><th>Ended (UTC)</th><th>Jobs</th><th>State</th></tr></thead><tbody>",
    );
    for (_, run) in listed(runs) {
        let app = run.store.app.as_ref().expect("listed runs have started");
        let state = if run.complete {
            "complete"
        } else {
            "incomplete"
        };
        let _ = write!(
            out,
            "<tr data-app-id=\"{id}\" class=\"{state}\"><td><a href=\"/history/{id}/jobs/\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td class=\"state\">{state}</td></tr>",
            spark_time(app.time),
            run.store.app_end.map(spark_time).unwrap_or_default(),
            run.store.counters.jobs_submitted,
            id = html(&app.app_id),
        );
    }
    out.push_str("</tbody></table></main></body></html>");
    out
}

/// The loader: every `refresh`, the runs' new segments, in order, as events.
async fn load(
    store: Arc<dyn ObjectStore>,
    dir: Path,
    location: String,
    refresh: Duration,
    actor: mpsc::UnboundedSender<Message>,
) {
    let mut read: BTreeMap<String, (u64, bool)> = BTreeMap::new();
    loop {
        match scan(&store, &dir, &mut read).await {
            Ok(found) => {
                for loaded in found {
                    if actor.send(Message::Loaded(loaded)).is_err() {
                        return;
                    }
                }
            }
            Err(e) => tracing::warn!("reading the event log {location}: {e}"),
        }
        tokio::time::sleep(refresh).await;
    }
}

/// New events of every run under `dir`; `read` holds, per run, the last segment read and
/// whether it was complete.
async fn scan(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
    read: &mut BTreeMap<String, (u64, bool)>,
) -> std::result::Result<Vec<Loaded>, object_store::Error> {
    let mut found = Vec::new();
    let listing = store.list_with_delimiter(Some(dir)).await?;
    for prefix in listing.common_prefixes {
        let Some(run) = prefix.filename().map(str::to_string) else {
            continue;
        };
        let (last, was_complete) = read.get(&run).copied().unwrap_or((0, false));
        if was_complete {
            continue;
        }
        let files: Vec<object_store::ObjectMeta> = store.list(Some(&prefix)).try_collect().await?;
        let names: BTreeSet<String> = files
            .iter()
            .filter_map(|f| f.location.filename().map(str::to_string))
            .collect();
        let complete = names.contains(COMPLETE);
        let mut segments: Vec<(u64, String)> = names
            .iter()
            .filter_map(|n| segment_number(n).map(|k| (k, n.clone())))
            .filter(|(k, _)| *k > last)
            .collect();
        segments.sort();
        let mut events = Vec::new();
        let mut newest = last;
        for (number, name) in segments {
            // Segments are read in order, with no gap: a missing one stops the reading here.
            if number != newest + 1 {
                break;
            }
            let bytes = store
                .get(&prefix.clone().join(name.as_str()))
                .await?
                .bytes()
                .await?;
            events.extend(parse_segment(&run, &name, &bytes));
            newest = number;
        }
        read.insert(run.clone(), (newest, complete));
        if !events.is_empty() || complete != was_complete {
            found.push(Loaded {
                run,
                events,
                complete,
            });
        }
    }
    Ok(found)
}

/// The events of one segment; a line that is not an event is skipped with a warning naming it.
pub fn parse_segment(run: &str, name: &str, bytes: &[u8]) -> Vec<Event> {
    let mut events = Vec::new();
    for (number, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Event>(line) {
            Ok(event) => events.push(event),
            Err(e) => tracing::warn!(
                "event log {run}/{name}, line {}: not an event ({e}); skipped",
                number + 1
            ),
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_skipped_not_fatal() {
        let good = serde_json::to_string(&Event::ApplicationEnd { time: 5 }).unwrap();
        let bytes = format!("{good}\n{{\"event\":\"nope\"}}\nnot json\n\n{good}\n");
        let events = parse_segment("app", "events_000001.jsonl", bytes.as_bytes());
        assert_eq!(events.len(), 2);
    }
}
