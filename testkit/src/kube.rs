//! A small in-memory Kubernetes API behind kube's `tower-test` mock service: enough of the API's semantics
//! (create/409, get/404, list with label selectors, merge and apply patches, status subresource, delete, logs,
//! events, JSON-patch finalizers) for the operator's reconciler and the API server's Kubernetes backend to run
//! scenario after scenario against it, while every request is recorded for assertions. Attach and watch are not
//! emulated (they need a connection upgrade or a long poll): attach answers 400, as a broken attach would.

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
    /// Container logs by (pod, container).
    logs: BTreeMap<(String, String), String>,
    calls: Vec<Call>,
    next_rv: u64,
}

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
                let response = server.answer(request).await;
                send.send_response(response);
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
        state.next_rv += 1;
        let rv = state.next_rv.to_string();
        let meta = object["metadata"].as_object_mut().unwrap();
        meta.entry("namespace").or_insert(json!(NS));
        meta.entry("uid").or_insert(json!(format!("uid-{name}")));
        meta.entry("creationTimestamp").or_insert(json!(k8s_openapi::jiff::Timestamp::now().to_string()));
        meta.insert("resourceVersion".into(), json!(rv));
        state.objects.insert((collection.to_owned(), name), object);
    }

    /// An object, if it exists.
    pub fn get(&self, collection: &str, name: &str) -> Option<Value> {
        self.state().objects.get(&(collection.to_owned(), name.to_owned())).cloned()
    }

    /// Removes an object (as someone else's delete would).
    pub fn delete(&self, collection: &str, name: &str) {
        self.state().objects.remove(&(collection.to_owned(), name.to_owned()));
    }

    /// Sets what a container's log holds.
    pub fn set_log(&self, pod: &str, container: &str, text: &str) {
        self.state().logs.insert((pod.into(), container.into()), text.into());
    }

    /// Changes a stored object's status (as the kubelet would for a Pod).
    pub fn set_status(&self, collection: &str, name: &str, status: Value) {
        let mut state = self.state();
        let object = state.objects.get_mut(&(collection.to_owned(), name.to_owned())).unwrap();
        object["status"] = status;
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
            ("GET", None, None) => {
                let selector = query.split('&').find_map(|kv| kv.strip_prefix("labelSelector=")).map(decode);
                let items: Vec<Value> = self
                    .state()
                    .objects
                    .iter()
                    .filter(|((c, _), _)| *c == collection)
                    .map(|(_, o)| o.clone())
                    .filter(|o| selector.as_deref().is_none_or(|s| matches_selector(o, s)))
                    .collect();
                reply(
                    StatusCode::OK,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
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
                let removed = self.state().objects.remove(&(collection, name));
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

/// `key=value[,key=value]` selectors.
fn matches_selector(object: &Value, selector: &str) -> bool {
    selector.split(',').all(|term| match term.split_once('=') {
        Some((k, v)) => object["metadata"]["labels"][k].as_str() == Some(v),
        None => true,
    })
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

/// A framed runner line.
pub fn frame(nonce: &str, kind: char, data: &[u8]) -> String {
    use base64::Engine;
    format!("\x1fpyexec {nonce} {kind} {}\n", base64::engine::general_purpose::STANDARD.encode(data))
}
