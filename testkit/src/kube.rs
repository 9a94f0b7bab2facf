//! A small in-memory Kubernetes API behind kube's `tower-test` mock service: enough of the API's semantics
//! (create/409, get/404, list with label and field selectors, watch, merge and apply patches, status subresource,
//! delete, logs, events, JSON-patch finalizers) for the operator's reconciler and the API server's Kubernetes
//! backend to run scenario after scenario against it, while every request is recorded for assertions.
//!
//! Every change gets the next resourceVersion and is kept as a watch event; a watch answers the events after the
//! version it asks for, waiting briefly for one when there is none yet (a short long poll: kube's watcher then
//! watches again from where it was). Attach is not emulated (it needs a connection upgrade): it answers 400, as a
//! broken attach would.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// One request the fake API answered.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
}

#[derive(Default)]
struct State {
    /// Objects by collection path (`/api/v1/namespaces/ns/pods`) and name.
    objects: BTreeMap<(String, String), Value>,
    /// Every change, oldest first, for watches.
    changes: Vec<Change>,
    /// Container logs by (pod, container).
    logs: BTreeMap<(String, String), String>,
    calls: Vec<Call>,
    next_rv: u64,
}

/// One change of an object, as a watch reports it.
struct Change {
    rv: u64,
    collection: String,
    kind: &'static str,
    object: Value,
}

impl State {
    /// Stamps `object` with the next resourceVersion and keeps the change.
    fn record(&mut self, collection: &str, kind: &'static str, object: &mut Value) {
        self.next_rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.next_rv.to_string());
        self.changes.push(Change { rv: self.next_rv, collection: collection.to_owned(), kind, object: object.clone() });
    }

    fn remove(&mut self, collection: &str, name: &str) -> Option<Value> {
        let mut object = self.objects.remove(&(collection.to_owned(), name.to_owned()))?;
        self.record(collection, "DELETED", &mut object);
        Some(object)
    }
}

/// How long a watch waits for a change before it answers with none.
const WATCH_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// The fake API server.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

pub const NS: &str = "team-a";
pub const EXECUTIONS: &str = "/apis/pyexec.io/v1alpha1/namespaces/team-a/pythonexecutions";
pub const PODS: &str = "/api/v1/namespaces/team-a/pods";
pub const CONFIG_MAPS: &str = "/api/v1/namespaces/team-a/configmaps";
pub const POLICIES: &str = "/apis/networking.k8s.io/v1/namespaces/team-a/networkpolicies";

impl FakeApi {
    /// A client talking to a new fake API, and the fake.
    pub fn start() -> (Client, FakeApi) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = FakeApi::default();
        let server = fake.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                // Each request on its own: a watch waiting for changes must not hold up the others.
                let server = server.clone();
                tokio::spawn(async move { send.send_response(server.answer(request).await) });
            }
        });
        (Client::new(service, NS), fake)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Stores an object as if it had been created (uid, resourceVersion filled in when missing).
    pub fn put(&self, collection: &str, mut object: Value) {
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        let mut state = self.state();
        let meta = object["metadata"].as_object_mut().unwrap();
        meta.entry("namespace").or_insert(json!(NS));
        meta.entry("uid").or_insert(json!(format!("uid-{name}")));
        meta.entry("creationTimestamp").or_insert(json!(k8s_openapi::jiff::Timestamp::now().to_string()));
        let key = (collection.to_owned(), name);
        let kind = if state.objects.contains_key(&key) { "MODIFIED" } else { "ADDED" };
        state.record(collection, kind, &mut object);
        state.objects.insert(key, object);
    }

    /// An object, if it exists.
    pub fn get(&self, collection: &str, name: &str) -> Option<Value> {
        self.state().objects.get(&(collection.to_owned(), name.to_owned())).cloned()
    }

    /// Removes an object (as someone else's delete would).
    pub fn delete(&self, collection: &str, name: &str) {
        self.state().remove(collection, name);
    }

    /// Sets what a container's log holds.
    pub fn set_log(&self, pod: &str, container: &str, text: &str) {
        self.state().logs.insert((pod.into(), container.into()), text.into());
    }

    /// Changes a stored object's status (as the kubelet would for a Pod).
    pub fn set_status(&self, collection: &str, name: &str, status: Value) {
        let mut object = self.get(collection, name).unwrap();
        object["status"] = status;
        self.put(collection, object);
    }

    /// The requests answered so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_calls(&self) {
        self.state().calls.clear();
    }

    /// Requests with this method whose path starts with `prefix`.
    pub fn calls_to(&self, method: &str, prefix: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.method == method && c.path.starts_with(prefix)).collect()
    }

    /// An object deserialized, as a watch would deliver it.
    pub fn object<K: serde::de::DeserializeOwned>(&self, collection: &str, name: &str) -> Arc<K> {
        Arc::new(serde_json::from_value(self.get(collection, name).unwrap()).unwrap())
    }

    async fn answer(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or("").to_owned();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        self.state().calls.push(Call {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            body: body.clone(),
        });

        if path.starts_with("/apis/events.k8s.io/") {
            return reply(StatusCode::CREATED, body);
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // .../namespaces/{ns}/{plural}[/{name}[/{sub}]]
        let Some(at) = segments.iter().position(|s| *s == "namespaces") else { return not_found() };
        let collection = format!("/{}", segments[..at + 3].join("/"));
        let name = segments.get(at + 3).map(|s| s.to_string());
        let sub = segments.get(at + 4).copied();
        match (method.as_str(), name, sub) {
            ("POST", None, None) => {
                let name = body["metadata"]["name"].as_str().unwrap().to_owned();
                if self.get(&collection, &name).is_some() {
                    return status(StatusCode::CONFLICT, "AlreadyExists", &format!("{name} already exists"));
                }
                self.put(&collection, body);
                reply(StatusCode::CREATED, self.get(&collection, &name).unwrap())
            }
            ("GET", None, None) if matches!(param(&query, "watch").as_deref(), Some("true" | "1")) => {
                let since = param(&query, "resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
                let deadline = tokio::time::Instant::now() + WATCH_POLL;
                let lines = loop {
                    let lines: String = self
                        .state()
                        .changes
                        .iter()
                        .filter(|c| c.rv > since && c.collection == collection && selected(&c.object, &query))
                        .map(|c| format!("{}\n", json!({"type": c.kind, "object": c.object})))
                        .collect();
                    if !lines.is_empty() || tokio::time::Instant::now() >= deadline {
                        break lines;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                };
                Response::builder().status(200).body(Body::from(lines.into_bytes())).unwrap()
            }
            ("GET", None, None) => {
                let state = self.state();
                let items: Vec<Value> = state
                    .objects
                    .iter()
                    .filter(|((c, _), o)| *c == collection && selected(o, &query))
                    .map(|(_, o)| o.clone())
                    .collect();
                let rv = state.next_rv.to_string();
                reply(
                    StatusCode::OK,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": rv}, "items": items}),
                )
            }
            ("GET", Some(name), None) => match self.get(&collection, &name) {
                Some(object) => reply(StatusCode::OK, object),
                None => not_found(),
            },
            ("GET", Some(name), Some("log")) => {
                let container = query.split('&').find_map(|kv| kv.strip_prefix("container=")).unwrap_or("").to_owned();
                let text = self.state().logs.get(&(name, container)).cloned().unwrap_or_default();
                Response::builder().status(200).body(Body::from(text.into_bytes())).unwrap()
            }
            ("GET", Some(_), Some("attach")) | ("POST", Some(_), Some("attach")) => {
                status(StatusCode::BAD_REQUEST, "BadRequest", "attach is not emulated")
            }
            ("PATCH", Some(name), sub) => {
                let Some(mut object) = self.get(&collection, &name) else { return not_found() };
                match sub {
                    Some("status") => object["status"] = body["status"].clone(),
                    _ if body.is_array() => apply_json_patch(&mut object, &body),
                    _ => merge(&mut object, &body),
                }
                self.put(&collection, object);
                reply(StatusCode::OK, self.get(&collection, &name).unwrap())
            }
            ("DELETE", Some(name), None) => {
                let removed = self.state().remove(&collection, &name);
                match removed {
                    Some(object) => reply(StatusCode::OK, object),
                    None => not_found(),
                }
            }
            _ => not_found(),
        }
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A query parameter, decoded.
fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')).map(decode)
}

/// Whether `object` matches the query's label and field selectors (`key=value[,key=value]`; fields are dotted
/// paths such as `metadata.name`).
fn selected(object: &Value, query: &str) -> bool {
    let labels = param(query, "labelSelector").unwrap_or_default();
    let fields = param(query, "fieldSelector").unwrap_or_default();
    let terms = |selector: &str| -> Vec<(String, String)> {
        selector.split(',').filter_map(|t| t.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    };
    terms(&labels).iter().all(|(k, v)| object["metadata"]["labels"][k].as_str() == Some(v))
        && terms(&fields).iter().all(|(path, v)| path.split('.').fold(object, |o, p| &o[p]).as_str() == Some(v))
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// The finalizer helper's JSON patches: `test` (passes), `add` and `remove` of `/metadata/finalizers`.
fn apply_json_patch(object: &mut Value, ops: &Value) {
    for op in ops.as_array().unwrap() {
        let path = op["path"].as_str().unwrap_or("");
        match op["op"].as_str() {
            Some("add") if path == "/metadata/finalizers" => object["metadata"]["finalizers"] = op["value"].clone(),
            Some("add") if path == "/metadata/finalizers/-" => {
                let list = object["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
                object["metadata"]["finalizers"] = Value::Array([list, vec![op["value"].clone()]].concat());
            }
            Some("remove") if path.starts_with("/metadata/finalizers/") => {
                let index: usize = path.rsplit('/').next().unwrap().parse().unwrap();
                object["metadata"]["finalizers"].as_array_mut().unwrap().remove(index);
            }
            _ => {}
        }
    }
}

fn reply(code: StatusCode, body: Value) -> Response<Body> {
    Response::builder().status(code).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap()
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    reply(
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message, "code": code.as_u16()}),
    )
}

fn not_found() -> Response<Body> {
    status(StatusCode::NOT_FOUND, "NotFound", "not found")
}

/// A PythonExecution as `kubectl apply` would create it.
pub fn execution(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "pyexec.io/v1alpha1", "kind": "PythonExecution",
        "metadata": {"name": name, "namespace": NS, "generation": 1},
        "spec": spec,
    })
}

/// A container status.
pub fn container(name: &str, state: Value) -> Value {
    json!({"name": name, "ready": false, "restartCount": 0, "image": "python:3.12-slim", "imageID": "", "state": state})
}
