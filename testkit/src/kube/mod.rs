//! A small in-memory Kubernetes API behind kube's `tower-test` mock service: enough of the API's semantics for the
//! operator's reconciler and the API server's Kubernetes backend to run scenario after scenario against it, and
//! strict where a real API server is strict, so that scenarios catch the bugs a cluster would:
//!
//! - create (409 `AlreadyExists`, `generateName`), get (404), list with label and field selectors, watch;
//! - replace (PUT), merge and JSON patches (RFC 6902, `test` included) and server-side apply; a write carrying a
//!   `metadata.resourceVersion` other than the current one answers 409 `Conflict`; a write that changes nothing
//!   keeps the resourceVersion and makes no watch event; a change of `spec` increments `metadata.generation`;
//! - the status subresource of Pods and PythonExecutions: a write to `.../status` changes only `status`, a write
//!   to the object itself leaves `status` as it was (and a create drops it);
//! - server-side apply by field manager ([`fields`]): fields owned by other managers are kept, changing one
//!   without `force` answers 409, and `metadata.managedFields` says who owns what;
//! - delete with `preconditions` (409 on a uid or resourceVersion mismatch) and owner-reference garbage
//!   collection: the objects an object owns (by uid) go with it, unless the propagation policy is `Orphan`;
//! - watch history that can be compacted ([`FakeApi::compact`]): a watch from before it answers an `ERROR` event
//!   with a 410 `Expired` status, on which kube's watcher lists again;
//! - admission of PythonExecutions ([`schema`]): a create, replace, patch or apply is pruned and validated
//!   against the CRD's OpenAPI v3 schema and its CEL rules (`oldSelf` too), and refused with 422 `Invalid`
//!   naming the fields, as the API server does with the CRD installed;
//! - fault injection ([`FakeApi::fail_next`]): the next requests matching a method and path prefix answer an
//!   error status, or hang, or answer late, as an overloaded or misconfigured API server would.
//!
//! Every change gets the next resourceVersion and is kept as a watch event; a watch answers the events after the
//! version it asks for, waiting briefly for one when there is none yet (a short long poll: kube's watcher then
//! watches again from where it was). Container logs ([`FakeApi::set_log`], [`FakeApi::append_log`]) are served
//! as the kubelet serves them: a plain read returns the current log file (honouring `limitBytes`), a `follow=true`
//! read streams what is written until the container ends (a Pod status saying it terminated, or
//! [`FakeApi::end_log`]); a test can rotate the file ([`FakeApi::rotate_log`], or [`FakeApi::rotate_log_after`]
//! to rotate whenever it outgrows a size: later readers no longer see what was written before, a connected
//! follower goes on reading) and cut open follow streams ([`FakeApi::cut_log_follows`]), as a dropped connection
//! would. Every request is recorded ([`Call`]) for assertions. Attach answers 400, as a broken attach would, unless
//! a test asks for it ([`FakeApi::serve_attach`]): then it is a real WebSocket upgrade speaking the
//! `v5.channel.k8s.io` protocol ([`attach`]), and what was written to a container's stdin is kept
//! ([`FakeApi::attached`]); a container can have a real process behind it ([`FakeApi::run_container`]), which
//! attaches then talk to. The test's own changes ([`FakeApi::put`], [`FakeApi::set_status`]) bypass all checks,
//! as a kubelet or another controller with its own rights would.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

mod attach;
pub mod fields;
pub mod schema;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

use fields::Owners;

/// One request the fake API answered.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
    /// The status code it was answered with (0 while unanswered, or when it hung).
    pub code: u16,
}

/// What an injected fault does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers this status code with a Kubernetes `Status` body (reason as the API server gives it: 403
    /// `Forbidden`, 409 `Conflict`, 422 `Invalid`, 429 `TooManyRequests`, 500 `InternalError`, ...).
    Status(u16),
    /// Answers this status code with a `Status` body carrying this message (a quota refusal: 403 with
    /// `exceeded quota: ...`).
    StatusWithMessage(u16, &'static str),
    /// Never answers (past any client timeout); nothing is changed.
    Hang,
    /// Answers normally, after this long.
    Delay(Duration),
}

struct FaultRule {
    method: String,
    prefix: String,
    remaining: usize,
    fault: Fault,
}

#[derive(Default)]
struct State {
    /// Objects by collection path (`/api/v1/namespaces/ns/pods`) and name.
    objects: BTreeMap<(String, String), Value>,
    /// Field ownership of the objects written through the API.
    owners: BTreeMap<(String, String), Owners>,
    /// Every change, oldest first, for watches.
    changes: Vec<Change>,
    /// Changes up to this resourceVersion are forgotten: a watch from before it is answered 410.
    compacted: u64,
    /// Container logs by (pod, container).
    logs: BTreeMap<(String, String), LogFile>,
    calls: Vec<Call>,
    faults: Vec<FaultRule>,
    next_rv: u64,
    generated: u64,
    /// Attach is emulated ([`FakeApi::serve_attach`]).
    attach: bool,
    /// What each attach wrote to a container's stdin, by (pod, container), in order.
    attached: BTreeMap<(String, String), Vec<Vec<u8>>>,
    /// The processes behind containers ([`FakeApi::run_container`]), by (pod, container).
    processes: BTreeMap<(String, String), attach::Process>,
}

/// A container's log as the kubelet keeps it: everything written, of which the current file is what follows the
/// rotated head.
#[derive(Debug, Default)]
struct LogFile {
    /// Everything the container wrote, oldest first.
    text: Vec<u8>,
    /// Bytes at the start of `text` that were rotated away: a new reader starts after them.
    head: usize,
    /// The file is rotated whenever it grows past this many bytes.
    max_bytes: Option<usize>,
    /// The container ended: follow streams end once they have sent everything.
    closed: bool,
    /// Bumped to cut the follow streams open now.
    cuts: u64,
}

impl LogFile {
    fn append(&mut self, text: &[u8]) {
        self.text.extend_from_slice(text);
        if self.max_bytes.is_some_and(|max| self.text.len() - self.head > max) {
            self.head = self.text.len();
        }
    }
}

/// The body of the fake's answers: whole, or streamed (a followed log).
pub type FakeBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn whole(response: Response<Body>) -> Response<FakeBody> {
    use http_body_util::BodyExt;
    response.map(|body| body.map_err(Into::into).boxed_unsync())
}

/// How often a follow stream looks for more of the log.
const FOLLOW_POLL: Duration = Duration::from_millis(10);

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
        let key = (collection.to_owned(), name.to_owned());
        let mut object = self.objects.remove(&key)?;
        self.owners.remove(&key);
        self.record(collection, "DELETED", &mut object);
        Some(object)
    }

    /// Deletes an object and, as the garbage collector would, everything it owns (transitively); with `orphan`
    /// its dependents stay and lose their owner reference instead.
    fn delete(&mut self, collection: &str, name: &str, orphan: bool) -> Option<Value> {
        let object = self.remove(collection, name)?;
        if collection.ends_with("/pods") {
            // A deleted Pod's containers stop (their processes are killed when dropped), which ends their attaches.
            self.processes.retain(|(pod, _), _| pod != name);
        }
        let uid = object["metadata"]["uid"].clone();
        let dependents: Vec<(String, String)> = self
            .objects
            .iter()
            .filter(|(_, o)| owner_refs(o).iter().any(|r| r["uid"] == uid))
            .map(|(key, _)| key.clone())
            .collect();
        for (c, n) in dependents {
            if orphan {
                let mut dependent = self.objects.remove(&(c.clone(), n.clone())).unwrap();
                let refs: Vec<Value> = owner_refs(&dependent).into_iter().filter(|r| r["uid"] != uid).collect();
                dependent["metadata"]["ownerReferences"] = Value::Array(refs);
                self.record(&c, "MODIFIED", &mut dependent);
                self.objects.insert((c, n), dependent);
            } else {
                self.delete(&c, &n, false);
            }
        }
        Some(object)
    }

    /// Stores `object` (already checked), stamped with managedFields and a new resourceVersion unless it is
    /// unchanged; the object as stored.
    fn store(&mut self, collection: &str, name: &str, mut object: Value, owners: Owners) -> Value {
        let key = (collection.to_owned(), name.to_owned());
        let sub = has_status_subresource(collection);
        let fields = owners.managed_fields(&object["apiVersion"], &|p: &[String]| {
            (sub && p.first().is_some_and(|k| k == "status")).then_some("status")
        });
        let meta = object["metadata"].as_object_mut().unwrap();
        if owners.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), fields);
        }
        let before = self.objects.get(&key);
        let unchanged = before.is_some_and(|b| without_rv(b) == without_rv(&object));
        self.owners.insert(key.clone(), owners);
        if unchanged {
            return before.unwrap().clone();
        }
        let kind = if before.is_some() { "MODIFIED" } else { "ADDED" };
        self.record(collection, kind, &mut object);
        self.objects.insert(key, object.clone());
        object
    }
}

/// Admission of a write to an object of this collection: a PythonExecution is pruned and validated against the
/// CRD ([`schema`]); other kinds pass as they are.
fn admit(collection: &str, name: &str, object: &mut Value, old: Option<&Value>) -> Result<(), Box<Response<Body>>> {
    if !schema::is_executions(collection) {
        return Ok(());
    }
    schema::prune(object);
    let errors = schema::validate(object, old);
    if errors.is_empty() {
        return Ok(());
    }
    let body = schema::invalid_status("PythonExecution", "pyexec.io", name, &errors);
    Err(Box::new(reply(StatusCode::UNPROCESSABLE_ENTITY, body)))
}

fn owner_refs(object: &Value) -> Vec<Value> {
    object["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default()
}

fn without_rv(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
    }
    object
}

/// Whether the kind in this collection has a status subresource (Pods, and the CRDs).
fn has_status_subresource(collection: &str) -> bool {
    collection.ends_with("/pods")
        || collection.ends_with("/pythonexecutions")
        || collection.ends_with("/pythonexecutionpools")
        || collection.ends_with("/pythonsessions")
}

/// Whether the kind in this collection has a scale subresource (the PythonExecutionPool CRD: `.spec.replicas`,
/// `.status.replicas`, `.status.selector`).
fn has_scale_subresource(collection: &str) -> bool {
    collection.ends_with("/pythonexecutionpools")
}

/// The `autoscaling/v1` Scale of an object with a scale subresource.
fn scale_of(object: &Value) -> Value {
    json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": object["metadata"]["name"], "namespace": object["metadata"]["namespace"],
                     "resourceVersion": object["metadata"]["resourceVersion"], "uid": object["metadata"]["uid"]},
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": object["status"]["replicas"].as_i64().unwrap_or(0),
                   "selector": object["status"]["selector"].as_str().unwrap_or("")},
    })
}

/// How long a watch waits for a change before it answers with none.
const WATCH_POLL: Duration = Duration::from_millis(200);

/// How a request wants an object written.
enum Write<'a> {
    Replace(&'a Value),
    Merge(&'a Value),
    JsonPatch(&'a Value),
    Apply { patch: &'a Value, force: bool },
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
pub const POOLS: &str = "/apis/pyexec.io/v1alpha1/namespaces/team-a/pythonexecutionpools";

impl FakeApi {
    /// A client talking to a new fake API, and the fake.
    pub fn start() -> (Client, FakeApi) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<FakeBody>>();
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
        if collection.ends_with("/pods") {
            // The kubelet ends the log of a container that terminated (every container's, once the Pod is over):
            // its followers get the rest, then the end.
            let over = matches!(object["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
            let statuses = object["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
            for c in statuses.iter().filter(|c| over || c["state"]["terminated"].is_object()) {
                let container = c["name"].as_str().unwrap_or_default().to_owned();
                state.logs.entry((name.clone(), container)).or_default().closed = true;
            }
        }
        let key = (collection.to_owned(), name);
        let kind = if state.objects.contains_key(&key) { "MODIFIED" } else { "ADDED" };
        state.record(collection, kind, &mut object);
        state.objects.insert(key, object);
    }

    /// An object, if it exists.
    pub fn get(&self, collection: &str, name: &str) -> Option<Value> {
        self.state().objects.get(&(collection.to_owned(), name.to_owned())).cloned()
    }

    /// Removes an object (as someone else's delete would), and the objects it owns with it.
    pub fn delete(&self, collection: &str, name: &str) {
        self.state().delete(collection, name, false);
    }

    /// Sets what a container's log holds (nothing rotated away). Follow streams open now are cut: what they read
    /// was another log.
    pub fn set_log(&self, pod: &str, container: &str, text: &str) {
        let mut state = self.state();
        let log = state.logs.entry((pod.into(), container.into())).or_default();
        log.text = text.as_bytes().to_vec();
        log.head = 0;
        log.cuts += 1;
    }

    /// The container writes `text` to its log (rotating the file first when [`FakeApi::rotate_log_after`] says
    /// so); followers get it.
    pub fn append_log(&self, pod: &str, container: &str, text: &str) {
        self.state().logs.entry((pod.into(), container.into())).or_default().append(text.as_bytes());
    }

    /// The kubelet rotates the container's log file: readers from now on see only what is written after this;
    /// a follower already connected goes on reading (as the kubelet's follow does across a rotation).
    pub fn rotate_log(&self, pod: &str, container: &str) {
        let mut state = self.state();
        let log = state.logs.entry((pod.into(), container.into())).or_default();
        log.head = log.text.len();
    }

    /// The kubelet rotates the container's log file whenever a write makes it larger than `max_bytes` (its
    /// `containerLogMaxSize`): the file then loses everything written so far.
    pub fn rotate_log_after(&self, pod: &str, container: &str, max_bytes: usize) {
        self.state().logs.entry((pod.into(), container.into())).or_default().max_bytes = Some(max_bytes);
    }

    /// The container ended: follow streams of its log end once they have sent everything. (A Pod status that says
    /// the container terminated does the same.)
    pub fn end_log(&self, pod: &str, container: &str) {
        self.state().logs.entry((pod.into(), container.into())).or_default().closed = true;
    }

    /// Cuts the follow streams of the container's log open now (they fail mid-stream, as a dropped connection
    /// does); later ones are not affected.
    pub fn cut_log_follows(&self, pod: &str, container: &str) {
        self.state().logs.entry((pod.into(), container.into())).or_default().cuts += 1;
    }

    /// What a plain read of the container's log returns now: the current file.
    pub fn log_text(&self, pod: &str, container: &str) -> String {
        let state = self.state();
        let log = state.logs.get(&(pod.into(), container.into()));
        log.map(|l| String::from_utf8_lossy(&l.text[l.head..]).into_owned()).unwrap_or_default()
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

    /// Requests with this method (any method when empty) whose path contains `path_contains`.
    pub fn calls_matching(&self, method: &str, path_contains: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| (method.is_empty() || c.method == method) && c.path.contains(path_contains))
            .collect()
    }

    /// Makes the next `times` requests with this method (any method when empty) whose path starts with `prefix`
    /// meet `fault` instead of (or, for [`Fault::Delay`], before) their answer. Faults are consumed in the order
    /// they were added.
    pub fn fail_next(&self, method: &str, prefix: &str, times: usize, fault: Fault) {
        self.state().faults.push(FaultRule { method: method.into(), prefix: prefix.into(), remaining: times, fault });
    }

    /// Makes attach work: a WebSocket upgrade whose stdin is kept ([`FakeApi::attached`]), instead of a 400.
    pub fn serve_attach(&self) {
        self.state().attach = true;
    }

    /// Puts a real process behind the container `container` of the Pod `pod`, as its main process: `command` is
    /// started now (stdin and stdout piped, stderr inherited; what it sets up, such as arguments, environment and
    /// working directory, is kept) and runs as long as the fake (it is killed when the last clone of the fake is
    /// dropped), or until it exits. Attaches to that container ([`FakeApi::serve_attach`]; the attach must name the
    /// container, as `AttachParams::container` does) then talk to it: with `stdin=true`, what the client writes
    /// goes to the process's stdin, which the attaches share and none closes (closing an attach's stdin ends that
    /// attach only, as with `stdinOnce: false`); with `stdout=true`, what the process writes to stdout while the
    /// attach is open comes back on the stdout channel. Output written while no attach is open is dropped, as
    /// Kubernetes drops it. An attach ends when the client closes it or its stdin, or when the process's stdout
    /// ends. [`FakeApi::attached`] keeps what each attach wrote, as for a container without a process. A second
    /// call for the same container replaces the process (killing the first). Must be called within a Tokio
    /// runtime; panics when `command` cannot be started.
    pub fn run_container(&self, pod: &str, container: &str, command: std::process::Command) {
        let program = command.get_program().to_owned();
        let process = attach::Process::spawn(command)
            .unwrap_or_else(|e| panic!("cannot start {program:?} behind {pod}/{container}: {e}"));
        self.state().processes.insert((pod.to_owned(), container.to_owned()), process);
    }

    /// What the attaches to this Pod's container wrote to its stdin, one entry per attach that ended (for a
    /// container without a process, once it closed its stdin).
    pub fn attached(&self, pod: &str, container: &str) -> Vec<Vec<u8>> {
        self.state().attached.get(&(pod.to_owned(), container.to_owned())).cloned().unwrap_or_default()
    }

    /// Forgets the faults not met yet.
    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// Forgets the watch history up to now, as etcd's compaction does: a watch from an older resourceVersion is
    /// answered with a 410 `Expired` error event (and must list again).
    pub fn compact(&self) {
        let mut state = self.state();
        state.compacted = state.next_rv;
        state.changes.clear();
    }

    /// The current resourceVersion of the store (that of its last change).
    pub fn resource_version(&self) -> u64 {
        self.state().next_rv
    }

    /// An object deserialized, as a watch would deliver it.
    pub fn object<K: serde::de::DeserializeOwned>(&self, collection: &str, name: &str) -> Arc<K> {
        Arc::new(serde_json::from_value(self.get(collection, name).unwrap()).unwrap())
    }

    fn take_fault(&self, method: &str, path: &str) -> Option<Fault> {
        let mut state = self.state();
        let rule = state
            .faults
            .iter_mut()
            .find(|r| r.remaining > 0 && (r.method.is_empty() || r.method == method) && path.starts_with(&r.prefix))?;
        rule.remaining -= 1;
        let fault = rule.fault;
        state.faults.retain(|r| r.remaining > 0);
        Some(fault)
    }

    async fn answer(&self, request: Request<Body>) -> Response<FakeBody> {
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or("").to_owned();
        let content_type =
            request.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let upgrade = (request.headers().clone(), request.uri().clone());
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let index = {
            let mut state = self.state();
            state.calls.push(Call {
                method: method.clone(),
                path: path.clone(),
                query: query.clone(),
                body: body.clone(),
                code: 0,
            });
            state.calls.len() - 1
        };
        let follow = method == "GET"
            && path.ends_with("/log")
            && matches!(param(&query, "follow").as_deref(), Some("true" | "1"));
        let response = match self.take_fault(&method, &path) {
            Some(Fault::Status(code)) => {
                let code = StatusCode::from_u16(code).unwrap();
                whole(status(code, reason_of(code), &format!("injected fault: {code}")))
            }
            Some(Fault::StatusWithMessage(code, message)) => {
                let code = StatusCode::from_u16(code).unwrap();
                whole(status(code, reason_of(code), message))
            }
            Some(Fault::Hang) => std::future::pending().await,
            Some(Fault::Delay(delay)) => {
                tokio::time::sleep(delay).await;
                if follow {
                    self.follow_log(&path, &query)
                } else {
                    whole(self.dispatch(&method, &path, &query, &content_type, body, upgrade).await)
                }
            }
            None if follow => self.follow_log(&path, &query),
            None => whole(self.dispatch(&method, &path, &query, &content_type, body, upgrade).await),
        };
        // Calls may have been cleared meanwhile: record the code only on the call this was.
        if let Some(call) = self.state().calls.get_mut(index)
            && call.method == method
            && call.path == path
            && call.code == 0
        {
            call.code = response.status().as_u16();
        }
        response
    }

    /// An emulated attach ([`FakeApi::serve_attach`]) to an existing Pod, or [`FakeApi::route`].
    async fn dispatch(
        &self,
        method: &str,
        path: &str,
        query: &str,
        content_type: &str,
        body: Value,
        (headers, uri): (http::HeaderMap, http::Uri),
    ) -> Response<Body> {
        let attach = path.strip_suffix("/attach").and_then(|p| p.rsplit_once("/pods/"));
        if let Some((namespace, pod)) = attach
            && self.state().attach
        {
            if self.get(&format!("{namespace}/pods"), pod).is_none() {
                return not_found();
            }
            let key = (pod.to_owned(), param(query, "container").unwrap_or_default());
            let asks = |name| matches!(param(query, name).as_deref(), Some("true" | "1"));
            let bridge = self.state().processes.get(&key).map(|process| process.attach(asks("stdin"), asks("stdout")));
            let state = self.state.clone();
            let done = move |stdin: Vec<u8>| state.lock().unwrap().attached.entry(key).or_default().push(stdin);
            return attach::upgrade(headers, uri, bridge, done).await;
        }
        self.route(method, path, query, content_type, body).await
    }

    async fn route(&self, method: &str, path: &str, query: &str, content_type: &str, body: Value) -> Response<Body> {
        if path.starts_with("/apis/events.k8s.io/") {
            return reply(StatusCode::CREATED, body);
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // .../namespaces/{ns}/{plural}[/{name}[/{sub}]]
        let Some(at) = segments.iter().position(|s| *s == "namespaces") else { return not_found() };
        if segments.len() < at + 3 {
            return not_found();
        }
        let collection = format!("/{}", segments[..at + 3].join("/"));
        let name = segments.get(at + 3).map(|s| s.to_string());
        let sub = segments.get(at + 4).copied();
        let manager = param(query, "fieldManager");
        match (method, name, sub) {
            ("POST", None, None) => self.create(&collection, body, manager.as_deref().unwrap_or("unknown")),
            ("GET", None, None) if matches!(param(query, "watch").as_deref(), Some("true" | "1")) => {
                self.watch(&collection, query).await
            }
            ("GET", None, None) => {
                let state = self.state();
                let items: Vec<Value> = state
                    .objects
                    .iter()
                    .filter(|((c, _), o)| *c == collection && selected(o, query))
                    .map(|(_, o)| o.clone())
                    .collect();
                let rv = state.next_rv.to_string();
                reply(
                    StatusCode::OK,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": rv}, "items": items}),
                )
            }
            ("GET", Some(name), None | Some("status")) => match self.get(&collection, &name) {
                Some(object) => reply(StatusCode::OK, object),
                None => not_found(),
            },
            ("GET", Some(name), Some("log")) => {
                if self.get(&collection, &name).is_none() {
                    return not_found();
                }
                let container = param(query, "container").unwrap_or_default();
                let mut text = self.log_text(&name, &container).into_bytes();
                if let Some(limit) = param(query, "limitBytes").and_then(|l| l.parse().ok()) {
                    text.truncate(limit);
                }
                Response::builder().status(200).body(Body::from(text)).unwrap()
            }
            ("GET" | "POST", Some(_), Some("attach")) => {
                status(StatusCode::BAD_REQUEST, "BadRequest", "attach is not emulated")
            }
            ("GET", Some(name), Some("scale")) if has_scale_subresource(&collection) => {
                match self.get(&collection, &name) {
                    Some(object) => reply(StatusCode::OK, scale_of(&object)),
                    None => not_found(),
                }
            }
            // A write of the Scale changes `.spec.replicas` only (under its resourceVersion precondition, if any).
            ("PUT" | "PATCH", Some(name), Some("scale")) if has_scale_subresource(&collection) => {
                let replicas = &body["spec"]["replicas"];
                if !replicas.is_i64() {
                    return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", "spec.replicas: Required value");
                }
                let patch = json!({"metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                                   "spec": {"replicas": replicas}});
                let answer = self.write(&collection, &name, None, Write::Merge(&patch), "scale");
                if answer.status() != StatusCode::OK {
                    return answer;
                }
                reply(StatusCode::OK, scale_of(&self.get(&collection, &name).unwrap()))
            }
            ("PUT", Some(name), sub @ (None | Some("status"))) => {
                self.write(&collection, &name, sub, Write::Replace(&body), manager.as_deref().unwrap_or("unknown"))
            }
            ("PATCH", Some(name), sub @ (None | Some("status"))) => {
                let write = if content_type.starts_with("application/apply-patch") {
                    let Some(_) = manager else {
                        return status(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "Invalid",
                            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                        );
                    };
                    Write::Apply { patch: &body, force: matches!(param(query, "force").as_deref(), Some("true")) }
                } else if content_type.starts_with("application/json-patch") || body.is_array() {
                    Write::JsonPatch(&body)
                } else {
                    Write::Merge(&body)
                };
                self.write(&collection, &name, sub, write, manager.as_deref().unwrap_or("unknown"))
            }
            ("DELETE", Some(name), None) => self.remove(&collection, &name, &body),
            _ => not_found(),
        }
    }

    /// A `follow=true` read of a container's log: the current file, then whatever is written, until the
    /// container ends (or the Pod goes); a cut ([`FakeApi::cut_log_follows`]) fails the stream.
    fn follow_log(&self, path: &str, query: &str) -> Response<FakeBody> {
        use http_body_util::BodyExt;
        let Some(collection) = path.strip_suffix("/log").and_then(|p| p.rsplit_once('/')).map(|(c, _)| c.to_owned())
        else {
            return whole(not_found());
        };
        let pod = path.trim_end_matches("/log").rsplit('/').next().unwrap().to_owned();
        if self.get(&collection, &pod).is_none() {
            return whole(not_found());
        }
        let key = (pod.clone(), param(query, "container").unwrap_or_default());
        let (at, cuts) = {
            let mut state = self.state();
            let log = state.logs.entry(key.clone()).or_default();
            (log.head, log.cuts)
        };
        let fake = self.clone();
        // The state: how far the stream has sent, and whether it failed (then it ends).
        let stream = futures::stream::unfold((at, false), move |(mut at, failed)| {
            let (fake, key, collection) = (fake.clone(), key.clone(), collection.clone());
            async move {
                if failed {
                    return None;
                }
                loop {
                    let next = {
                        let state = fake.state();
                        let log = state.logs.get(&key).unwrap();
                        if log.cuts != cuts {
                            Some(Err("the connection was cut".into()))
                        } else if at < log.text.len() {
                            let chunk = bytes::Bytes::copy_from_slice(&log.text[at..]);
                            at = log.text.len();
                            Some(Ok(http_body::Frame::data(chunk)))
                        } else if log.closed || !state.objects.contains_key(&(collection.clone(), key.0.clone())) {
                            return None;
                        } else {
                            None
                        }
                    };
                    match next {
                        Some(item) => {
                            let failed = item.is_err();
                            return Some((item, (at, failed)));
                        }
                        None => tokio::time::sleep(FOLLOW_POLL).await,
                    }
                }
            }
        });
        let body: FakeBody = http_body_util::StreamBody::new(stream).boxed_unsync();
        Response::builder().status(200).body(body).unwrap()
    }

    fn create(&self, collection: &str, mut object: Value, manager: &str) -> Response<Body> {
        let mut state = self.state();
        if !object["metadata"]["name"].is_string() {
            let Some(prefix) = object["metadata"]["generateName"].as_str().map(str::to_owned) else {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "metadata.name: Required value: name or generateName is required",
                );
            };
            state.generated += 1;
            object["metadata"]["name"] = json!(format!("{prefix}{:05x}", state.generated));
        }
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        if state.objects.contains_key(&(collection.to_owned(), name.clone())) {
            let plural = collection.rsplit('/').next().unwrap();
            return status(StatusCode::CONFLICT, "AlreadyExists", &format!("{plural} \"{name}\" already exists"));
        }
        let meta = object["metadata"].as_object_mut().unwrap();
        meta.remove("resourceVersion");
        meta.remove("managedFields");
        meta.insert("namespace".into(), json!(collection.split('/').rev().nth(1).unwrap()));
        meta.entry("uid").or_insert(json!(format!("uid-{name}")));
        meta.entry("generation").or_insert(json!(1));
        meta.insert("creationTimestamp".into(), json!(k8s_openapi::jiff::Timestamp::now().to_string()));
        if has_status_subresource(collection)
            && let Some(o) = object.as_object_mut()
        {
            o.remove("status");
        }
        if let Err(refused) = admit(collection, &name, &mut object, None) {
            return *refused;
        }
        let mut owners = Owners::default();
        owners.update(&Value::Null, &object, manager, &|_: &[String]| true);
        reply(StatusCode::CREATED, state.store(collection, &name, object, owners))
    }

    /// A replace, patch or apply of an object or of its status.
    fn write(
        &self,
        collection: &str,
        name: &str,
        sub: Option<&str>,
        write: Write<'_>,
        manager: &str,
    ) -> Response<Body> {
        let mut state = self.state();
        let key = (collection.to_owned(), name.to_owned());
        let status_only = sub == Some("status");
        let has_sub = has_status_subresource(collection);
        // Which fields this write may change.
        let scope = move |p: &[String]| {
            let is_status = p.first().is_some_and(|k| k == "status");
            if status_only { is_status } else { !(has_sub && is_status) }
        };
        let Some(current) = state.objects.get(&key).cloned() else {
            if let Write::Apply { patch, .. } = write
                && !status_only
            {
                drop(state);
                return self.apply_create(collection, name, patch, manager);
            }
            return not_found();
        };
        let mut owners = state.owners.get(&key).cloned().unwrap_or_default();
        let current_rv = current["metadata"]["resourceVersion"].clone();
        let proposed = match write {
            Write::Replace(body) => body.clone(),
            Write::Merge(body) => {
                let mut object = current.clone();
                merge(&mut object, body);
                object
            }
            Write::JsonPatch(ops) => {
                let mut object = current.clone();
                if let Err(e) = apply_json_patch(&mut object, ops) {
                    return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &e);
                }
                object
            }
            Write::Apply { patch, force } => {
                let rv = &patch["metadata"]["resourceVersion"];
                if rv.is_string() && *rv != current_rv {
                    return conflict(collection, name);
                }
                match owners.apply(&current, patch, manager, force, &scope) {
                    Ok(object) => object,
                    Err(conflicts) => {
                        let list: Vec<String> = conflicts
                            .iter()
                            .map(|(path, other)| format!("conflict with \"{other}\": .{}", path.join(".")))
                            .collect();
                        return status(
                            StatusCode::CONFLICT,
                            "Conflict",
                            &format!("Apply failed with {} conflict(s): {}", list.len(), list.join(", ")),
                        );
                    }
                }
            }
        };
        let rv = &proposed["metadata"]["resourceVersion"];
        if rv.as_str().is_some_and(|v| !v.is_empty()) && *rv != current_rv {
            return conflict(collection, name);
        }
        // What the write may change, on top of what is.
        let mut result = current.clone();
        if status_only {
            match proposed.get("status") {
                Some(s) => result["status"] = s.clone(),
                None => {
                    result.as_object_mut().unwrap().remove("status");
                }
            }
        } else {
            let mut proposed = proposed;
            let meta = proposed["metadata"].as_object_mut().unwrap();
            for kept in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "generation",
                "resourceVersion",
                "managedFields",
            ] {
                match current["metadata"].get(kept) {
                    Some(v) => meta.insert(kept.into(), v.clone()),
                    None => meta.remove(kept),
                };
            }
            if has_sub {
                match current.get("status") {
                    Some(s) => proposed["status"] = s.clone(),
                    None => {
                        proposed.as_object_mut().unwrap().remove("status");
                    }
                }
            }
            if schema::is_executions(collection) {
                schema::prune(&mut proposed);
            }
            if proposed.get("spec") != current.get("spec") {
                let generation = current["metadata"]["generation"].as_i64().unwrap_or(0);
                proposed["metadata"]["generation"] = json!(generation + 1);
            }
            result = proposed;
        }
        if let Err(refused) = admit(collection, name, &mut result, Some(&current)) {
            return *refused;
        }
        if !matches!(write, Write::Apply { .. }) {
            owners.update(&current, &result, manager, &scope);
        }
        reply(StatusCode::OK, state.store(collection, name, result, owners))
    }

    /// Server-side apply of an object that does not exist yet: a create owned by the applier.
    fn apply_create(&self, collection: &str, name: &str, patch: &Value, manager: &str) -> Response<Body> {
        let mut object = patch.clone();
        object["metadata"]["name"] = json!(name);
        let response = self.create(collection, object, manager);
        if response.status() != StatusCode::CREATED {
            return response;
        }
        let mut state = self.state();
        let key = (collection.to_owned(), name.to_owned());
        let current = state.objects.get(&key).cloned().unwrap();
        let mut owners = Owners::default();
        let has_sub = has_status_subresource(collection);
        let scope = move |p: &[String]| !(has_sub && p.first().is_some_and(|k| k == "status"));
        owners.apply(&current, patch, manager, true, &scope).unwrap();
        reply(StatusCode::CREATED, state.store(collection, name, current, owners))
    }

    /// A delete, with the DeleteOptions in `options` (preconditions, propagation policy).
    fn remove(&self, collection: &str, name: &str, options: &Value) -> Response<Body> {
        let mut state = self.state();
        let Some(current) = state.objects.get(&(collection.to_owned(), name.to_owned())) else { return not_found() };
        let preconditions = &options["preconditions"];
        for (field, what) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
            let expected = &preconditions[field];
            if expected.is_string() && *expected != current["metadata"][field] {
                let message = format!(
                    "Precondition failed: {what} in precondition: {}, {what} in object meta: {}",
                    expected.as_str().unwrap(),
                    current["metadata"][field].as_str().unwrap_or("")
                );
                return status(StatusCode::CONFLICT, "Conflict", &message);
            }
        }
        let orphan = options["propagationPolicy"] == "Orphan" || options["orphanDependents"] == true;
        let object = state.delete(collection, name, orphan).unwrap();
        reply(StatusCode::OK, object)
    }

    async fn watch(&self, collection: &str, query: &str) -> Response<Body> {
        let since: u64 = param(query, "resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
        let deadline = tokio::time::Instant::now() + WATCH_POLL;
        let lines = loop {
            let lines: String = {
                let state = self.state();
                if since != 0 && since < state.compacted {
                    let gone = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": format!("too old resource version: {since} ({})", state.compacted),
                        "reason": "Expired", "code": 410});
                    break format!("{}\n", json!({"type": "ERROR", "object": gone}));
                }
                state
                    .changes
                    .iter()
                    .filter(|c| c.rv > since && c.collection == collection && selected(&c.object, query))
                    .map(|c| format!("{}\n", json!({"type": c.kind, "object": c.object})))
                    .collect()
            };
            if !lines.is_empty() || tokio::time::Instant::now() >= deadline {
                break lines;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        Response::builder().status(200).body(Body::from(lines.into_bytes())).unwrap()
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
    // A term without `=` asks only that the label exists.
    let exists = labels.split(',').filter(|t| !t.is_empty() && !t.contains('='));
    terms(&labels).iter().all(|(k, v)| object["metadata"]["labels"][k].as_str() == Some(v))
        && exists.clone().all(|k| object["metadata"]["labels"].get(k).is_some())
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

/// An RFC 6902 JSON patch. As the API server's implementation does, a `test` of a missing path for `null`
/// passes (kube's finalizer helper relies on it).
fn apply_json_patch(object: &mut Value, ops: &Value) -> Result<(), String> {
    let ops: Vec<Value> = ops
        .as_array()
        .ok_or("a JSON patch is a list of operations")?
        .iter()
        .filter(|op| {
            !(op["op"] == "test"
                && op["value"].is_null()
                && object.pointer(op["path"].as_str().unwrap_or("")).is_none())
        })
        .cloned()
        .collect();
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).map_err(|e| e.to_string())?;
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &patch).map_err(|e| e.to_string())?;
    *object = patched;
    Ok(())
}

fn reply(code: StatusCode, body: Value) -> Response<Body> {
    Response::builder().status(code).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap()
}

/// The reason the API server gives with a status code.
fn reason_of(code: StatusCode) -> &'static str {
    match code.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        422 => "Invalid",
        429 => "TooManyRequests",
        504 => "Timeout",
        503 => "ServiceUnavailable",
        _ => "InternalError",
    }
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    reply(
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": reason, "message": message, "code": code.as_u16()}),
    )
}

/// The answer to a write from a stale resourceVersion.
fn conflict(collection: &str, name: &str) -> Response<Body> {
    let plural = collection.rsplit('/').next().unwrap();
    let message = format!(
        "Operation cannot be fulfilled on {plural} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
    );
    status(StatusCode::CONFLICT, "Conflict", &message)
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
