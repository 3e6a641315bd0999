//! A Kubernetes API server for the tests: the one stand-in allowed, as no real one runs here.
//!
//! It speaks the real API for what Faísca uses, so the `kube` client runs unchanged: pods
//! (create with `dryRun=All`, get, list and delete by label selector, deletecollection, `watch=true`
//! streams from a resourceVersion with bookmarks, and 410 Gone for a compacted one) and
//! ConfigMaps (create, get). Objects are JSON values with a resourceVersion from one counter, as
//! etcd gives. Deleting a pod with a process marks it terminating; the [`crate::kubelet`]
//! stand-in stops the process and then removes the pod. Deleting a pod also deletes the pods
//! whose ownerReferences name it (the garbage collector's cascade). Tests can make requests
//! fail with 403 (RBAC) by verb.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// A change to a stored object, as a watch reports it.
#[derive(Debug, Clone)]
pub struct Change {
    /// Its resourceVersion.
    pub version: u64,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    /// The resource (`pods`, `configmaps`).
    pub resource: &'static str,
    /// The object after the change.
    pub object: Value,
}

/// The stored objects.
#[derive(Debug, Default)]
pub struct Store {
    version: u64,
    /// `(resource, namespace, name)` → object.
    objects: BTreeMap<(&'static str, String, String), Value>,
    /// Changes kept for watches, oldest first; older ones are compacted (410 Gone).
    history: Vec<Change>,
    /// Verbs answered with 403 (`create`, `list`, `delete`, ...).
    pub forbidden: BTreeSet<&'static str>,
    /// Every request as `VERB PATH?QUERY`, for assertions.
    pub requests: Vec<String>,
    /// When each pod was created (not dry runs), by name.
    pub pods_created: Vec<(std::time::Instant, String)>,
    /// When the kubelet started each pod's process, by name.
    pub pods_started: Vec<(std::time::Instant, String)>,
}

/// The server's state, shared with the kubelet stand-in.
#[derive(Debug, Clone)]
pub struct KubeApi {
    store: Arc<Mutex<Store>>,
    changes: broadcast::Sender<Change>,
}

impl Default for KubeApi {
    fn default() -> Self {
        KubeApi {
            store: Arc::default(),
            changes: broadcast::channel(4096).0,
        }
    }
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

fn full(value: Value) -> Body {
    Full::new(Bytes::from(value.to_string())).boxed_unsync()
}

fn respond(status: StatusCode, value: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(value))
        .unwrap()
}

fn status(code: StatusCode, reason: &str, message: String) -> Response<Body> {
    respond(
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

/// Whether `labels` match a selector of `k=v`, `k==v`, `k!=v`, `k` and `!k` terms.
pub fn matches(selector: &str, labels: &Value) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let label = |k: &str| labels.get(k.trim()).and_then(Value::as_str);
        if let Some((k, v)) = term.split_once("!=") {
            label(k) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            label(k) == Some(v.trim())
        } else if let Some(k) = term.strip_prefix('!') {
            label(k).is_none()
        } else {
            label(term).is_some()
        }
    })
}

fn now_rfc3339() -> String {
    // Seconds are enough for creation and deletion timestamps.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl KubeApi {
    /// Serve on 127.0.0.1; returns the base URL. The server stops when `shutdown` resolves.
    pub async fn serve(&self) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let api = self.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let api = api.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let api = api.clone();
                        async move { Ok::<_, Infallible>(api.handle(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (url, task)
    }

    /// Run `f` on the store.
    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        f(&mut self.store.lock().unwrap())
    }

    /// Changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// The pods of `namespace` matching `selector`.
    pub fn pods(&self, namespace: &str, selector: &str) -> Vec<Value> {
        self.with_store(|s| {
            s.objects
                .iter()
                .filter(|((r, ns, _), o)| {
                    *r == "pods" && ns == namespace && matches(selector, &o["metadata"]["labels"])
                })
                .map(|(_, o)| o.clone())
                .collect()
        })
    }

    /// One object.
    pub fn get(&self, resource: &'static str, namespace: &str, name: &str) -> Option<Value> {
        self.with_store(|s| {
            s.objects
                .get(&(resource, namespace.to_string(), name.to_string()))
                .cloned()
        })
    }

    /// Store `object` (created or changed) and tell the watchers.
    pub fn put(&self, resource: &'static str, mut object: Value, kind: &'static str) -> Value {
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let change = self.with_store(|s| {
            s.version += 1;
            object["metadata"]["resourceVersion"] = json!(s.version.to_string());
            s.objects.insert((resource, ns, name), object.clone());
            let change = Change {
                version: s.version,
                kind,
                resource,
                object: object.clone(),
            };
            s.history.push(change.clone());
            change
        });
        let _ = self.changes.send(change);
        object
    }

    /// Remove an object for good.
    pub fn remove(&self, resource: &'static str, namespace: &str, name: &str) {
        let change = self.with_store(|s| {
            let mut object =
                s.objects
                    .remove(&(resource, namespace.to_string(), name.to_string()))?;
            s.version += 1;
            object["metadata"]["resourceVersion"] = json!(s.version.to_string());
            let change = Change {
                version: s.version,
                kind: "DELETED",
                resource,
                object,
            };
            s.history.push(change.clone());
            Some(change)
        });
        if let Some(change) = change {
            let _ = self.changes.send(change);
        }
    }

    /// Every object of `resource` created since the last compaction, as created.
    pub fn created(&self, resource: &str) -> Vec<Value> {
        self.with_store(|s| {
            s.history
                .iter()
                .filter(|c| c.resource == resource && c.kind == "ADDED")
                .map(|c| c.object.clone())
                .collect()
        })
    }

    /// Forget the change history, as etcd's compaction does: watches from an older
    /// resourceVersion get 410 Gone. Then end every open watch (as an API server restart
    /// would), so that clients resume from where they were, and get the 410.
    pub fn compact_and_end_watches(&self) {
        self.with_store(|s| {
            s.history.clear();
            // A change after the compaction, so that every earlier version is too old.
            s.version += 1;
        });
        let _ = self.changes.send(Change {
            version: 0,
            kind: "CLOSE",
            resource: "",
            object: Value::Null,
        });
    }

    /// Delete a pod as the API does: one not running is removed; a running one gets a deletion
    /// timestamp (the kubelet stops it, then removes it). Pods it owns follow.
    pub fn delete_pod(&self, namespace: &str, name: &str) -> Option<Value> {
        let mut pod = self.get("pods", namespace, name)?;
        let uid = pod["metadata"]["uid"].clone();
        if pod["metadata"].get("deletionTimestamp").is_none() {
            if pod["status"]["phase"] == "Running" {
                pod["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                pod = self.put("pods", pod, "MODIFIED");
            } else {
                self.remove("pods", namespace, name);
            }
        }
        let owned: Vec<String> = self.with_store(|s| {
            s.objects
                .iter()
                .filter(|((r, ns, _), o)| {
                    *r == "pods"
                        && ns == namespace
                        && o["metadata"]["ownerReferences"]
                            .as_array()
                            .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
                })
                .map(|((_, _, n), _)| n.clone())
                .collect()
        });
        for child in owned {
            self.delete_pod(namespace, &child);
        }
        Some(pod)
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let query: BTreeMap<String, String> = request
            .uri()
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        self.with_store(|s| s.requests.push(format!("{method} {}", request.uri())));
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (namespace, resource, name) = match parts.as_slice() {
            ["api", "v1", "namespaces", ns, resource] => (*ns, *resource, None),
            ["api", "v1", "namespaces", ns, resource, name] => (*ns, *resource, Some(*name)),
            _ => {
                return status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("the server could not find the requested resource {path}"),
                );
            }
        };
        let resource: &'static str = match resource {
            "pods" => "pods",
            "configmaps" => "configmaps",
            other => {
                return status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("unknown resource {other}"),
                );
            }
        };
        let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
        let verb = match (&method, name, watching) {
            (&Method::GET, _, true) => "watch",
            (&Method::GET, Some(_), _) => "get",
            (&Method::GET, None, _) => "list",
            (&Method::POST, _, _) => "create",
            (&Method::DELETE, Some(_), _) => "delete",
            (&Method::DELETE, None, _) => "deletecollection",
            _ => {
                return status(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    format!("{method} is not supported here"),
                );
            }
        };
        if self.with_store(|s| s.forbidden.contains(verb)) {
            return status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "{resource} is forbidden: User \"system:serviceaccount:{namespace}:default\" cannot {verb} resource \"{resource}\" in API group \"\" in the namespace \"{namespace}\""
                ),
            );
        }
        let selector = query.get("labelSelector").cloned().unwrap_or_default();
        match verb {
            "watch" => self.watch(resource, namespace, &selector, &query),
            "list" => {
                let items: Vec<Value> = self.with_store(|s| {
                    s.objects
                        .iter()
                        .filter(|((r, ns, _), o)| {
                            *r == resource
                                && ns == namespace
                                && matches(&selector, &o["metadata"]["labels"])
                        })
                        .map(|(_, o)| o.clone())
                        .collect()
                });
                let version = self.with_store(|s| s.version);
                respond(
                    StatusCode::OK,
                    json!({"kind": list_kind(resource), "apiVersion": "v1",
                           "metadata": {"resourceVersion": version.to_string()}, "items": items}),
                )
            }
            "get" => match self.get(resource, namespace, name.unwrap()) {
                Some(object) => respond(StatusCode::OK, object),
                None => not_found(resource, name.unwrap()),
            },
            "create" => {
                let body = request.into_body().collect().await.map(|b| b.to_bytes());
                let Ok(Ok(mut object)) = body.map(|b| serde_json::from_slice::<Value>(&b)) else {
                    return status(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        "the body is not JSON".into(),
                    );
                };
                let Some(name) = object["metadata"]["name"].as_str().map(str::to_string) else {
                    return status(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        "metadata.name: Required value".into(),
                    );
                };
                if self.get(resource, namespace, &name).is_some() {
                    return status(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        format!("{resource} \"{name}\" already exists"),
                    );
                }
                object["metadata"]["namespace"] = json!(namespace);
                object["metadata"]["uid"] = json!(format!(
                    "uid-{namespace}-{name}-{}",
                    self.with_store(|s| s.version)
                ));
                object["metadata"]["creationTimestamp"] = json!(now_rfc3339());
                if resource == "pods" {
                    object["status"] = json!({"phase": "Pending"});
                }
                if query.get("dryRun").is_some_and(|d| d == "All") {
                    return respond(StatusCode::CREATED, object);
                }
                if resource == "pods" {
                    self.with_store(|s| {
                        s.pods_created
                            .push((std::time::Instant::now(), name.clone()))
                    });
                }
                respond(StatusCode::CREATED, self.put(resource, object, "ADDED"))
            }
            "delete" => {
                let name = name.unwrap();
                let deleted = if resource == "pods" {
                    self.delete_pod(namespace, name)
                } else {
                    let object = self.get(resource, namespace, name);
                    self.remove(resource, namespace, name);
                    object
                };
                match deleted {
                    Some(object) => respond(StatusCode::OK, object),
                    None => not_found(resource, name),
                }
            }
            _ => {
                // deletecollection
                let names: Vec<String> = self
                    .pods(namespace, &selector)
                    .iter()
                    .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
                    .collect();
                let items: Vec<Value> = names
                    .iter()
                    .filter_map(|n| self.delete_pod(namespace, n))
                    .collect();
                respond(
                    StatusCode::OK,
                    json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}),
                )
            }
        }
    }

    /// A `watch=true` stream: the changes after `resourceVersion` (410 Gone if compacted), then
    /// live ones, with a bookmark after the replay and then every second; it ends after
    /// `timeoutSeconds`.
    fn watch(
        &self,
        resource: &'static str,
        namespace: &str,
        selector: &str,
        query: &BTreeMap<String, String>,
    ) -> Response<Body> {
        let from: u64 = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let bookmarks = query
            .get("allowWatchBookmarks")
            .is_some_and(|b| b == "true");
        let timeout = std::time::Duration::from_secs(
            query
                .get("timeoutSeconds")
                .and_then(|t| t.parse().ok())
                .unwrap_or(300),
        );
        let mut live = self.subscribe();
        let (replay, gone, version) = self.with_store(|s| {
            let oldest = s.history.first().map(|c| c.version);
            let gone = from > 0 && from < s.version && oldest.is_none_or(|o| o > from + 1);
            let replay: Vec<Change> = s
                .history
                .iter()
                .filter(|c| c.version > from)
                .cloned()
                .collect();
            (replay, gone, s.version)
        });
        let (namespace, selector) = (namespace.to_string(), selector.to_string());
        let wanted = move |c: &Change| {
            c.resource == resource
                && c.object["metadata"]["namespace"] == namespace.as_str()
                && matches(&selector, &c.object["metadata"]["labels"])
        };
        let line = |kind: &str, object: &Value| -> Result<Frame<Bytes>, Infallible> {
            Ok(Frame::data(Bytes::from(format!(
                "{}\n",
                json!({"type": kind, "object": object})
            ))))
        };
        let bookmark = move |version: u64| json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": version.to_string()}});
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
        let deadline = tokio::time::Instant::now() + timeout;
        tokio::spawn(async move {
            if gone {
                let expired = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": format!("too old resource version: {from} ({version})"), "reason": "Expired", "code": 410});
                let _ = sender.send(line("ERROR", &expired)).await;
                return;
            }
            let mut last = from;
            for change in replay.iter().filter(|c| wanted(c)) {
                last = change.version;
                if sender
                    .send(line(change.kind, &change.object))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            last = last.max(version);
            if bookmarks
                && sender
                    .send(line("BOOKMARK", &bookmark(last)))
                    .await
                    .is_err()
            {
                return;
            }
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    change = live.recv() => match change {
                        Ok(change) if change.kind == "CLOSE" => return,
                        Ok(change) if change.version <= last => {}
                        Ok(change) => {
                            last = change.version;
                            if wanted(&change) && sender.send(line(change.kind, &change.object)).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tick.tick(), if bookmarks => {
                        if sender.send(line("BOOKMARK", &bookmark(last))).await.is_err() {
                            return;
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => return,
                    _ = sender.closed() => return,
                }
            }
        });
        let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(receiver));
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(BodyExt::boxed_unsync(body))
            .unwrap()
    }
}

fn list_kind(resource: &str) -> &'static str {
    if resource == "pods" {
        "PodList"
    } else {
        "ConfigMapList"
    }
}

fn not_found(resource: &str, name: &str) -> Response<Body> {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{resource} \"{name}\" not found"),
    )
}

/// A kubeconfig for a server at `url` (a bearer token, as a service account would have).
pub fn kubeconfig(url: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\nusers:\n- name: tester\n  user:\n    token: test-token\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: tester\n    namespace: {namespace}\ncurrent-context: test\n"
    )
}
