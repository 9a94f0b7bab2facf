//! The fake Kubernetes API answers as a real API server would, seen through a real `kube::Client`: stale writes
//! conflict, the status subresource separates status from the rest, owners take their dependents with them,
//! injected faults reach the client, compacted watches make kube's watcher list again, and server-side apply
//! merges by field manager.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::StreamExt;
use json_patch::Patch as JsonPatch;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use kube::{Api, Client};
use pyexec_crds::{Phase, PythonExecution};
use pyexec_testkit::kube::*;
use serde_json::{Value, json};

fn config_map(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}))
        .unwrap()
}

fn api_error<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(e)) => *e,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn ops(value: Value) -> JsonPatch {
    serde_json::from_value(value).unwrap()
}

fn hello() -> Value {
    json!({"source": {"files": [{"name": "main.py", "content": "print('hi')"}]}, "entrypoint": "main.py"})
}

fn maps() -> (Api<ConfigMap>, FakeApi, Client) {
    let (client, fake) = FakeApi::start();
    (Api::namespaced(client.clone(), NS), fake, client)
}

#[tokio::test]
async fn stale_writes_conflict() {
    let (maps, fake, _) = maps();
    let created = maps.create(&PostParams::default(), &config_map("m", json!({"a": "1"}))).await.unwrap();
    let first_rv = created.metadata.resource_version.clone().unwrap();

    // A replace from the version read succeeds, and moves the version on.
    let mut edit = created.clone();
    edit.data.as_mut().unwrap().insert("a".into(), "2".into());
    let replaced = maps.replace("m", &PostParams::default(), &edit).await.unwrap();
    assert_ne!(replaced.metadata.resource_version.as_deref(), Some(first_rv.as_str()));

    // The same replace again carries the old version: 409 Conflict, as a Status.
    let e = api_error(maps.replace("m", &PostParams::default(), &edit).await);
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(e.message.contains("the object has been modified"), "{}", e.message);

    // Merge and JSON patches carrying a stale resourceVersion conflict too; without one they apply.
    let stale = json!({"metadata": {"resourceVersion": first_rv}, "data": {"b": "x"}});
    assert_eq!(api_error(maps.patch("m", &PatchParams::default(), &Patch::Merge(&stale)).await).code, 409);
    let stale = ops(json!([{"op": "replace", "path": "/metadata/resourceVersion", "value": first_rv},
                           {"op": "add", "path": "/data/b", "value": "x"}]));
    assert_eq!(api_error(maps.patch("m", &PatchParams::default(), &Patch::<()>::Json(stale)).await).code, 409);
    assert!(fake.get(CONFIG_MAPS, "m").unwrap()["data"].get("b").is_none(), "a refused write changes nothing");
    let patched = maps.patch("m", &PatchParams::default(), &Patch::Merge(json!({"data": {"b": "x"}}))).await.unwrap();
    assert_eq!(patched.data.unwrap()["b"], "x");

    // A failed JSON-patch `test` is 422, and changes nothing.
    let failing = ops(json!([{"op": "test", "path": "/data/a", "value": "9"}, {"op": "remove", "path": "/data/a"}]));
    assert_eq!(api_error(maps.patch("m", &PatchParams::default(), &Patch::<()>::Json(failing)).await).code, 422);
    assert_eq!(fake.get(CONFIG_MAPS, "m").unwrap()["data"]["a"], "2");

    // A write that changes nothing keeps the version (and makes no watch event).
    let rv = fake.resource_version();
    maps.patch("m", &PatchParams::default(), &Patch::Merge(json!({"data": {"b": "x"}}))).await.unwrap();
    assert_eq!(fake.resource_version(), rv);
}

#[tokio::test]
async fn the_status_subresource_changes_only_status() {
    let (client, fake) = FakeApi::start();
    let api: Api<PythonExecution> = Api::namespaced(client.clone(), NS);
    let mut cr = execution("job", hello());
    cr["status"] = json!({"phase": "Completed"});
    let created = api.create(&PostParams::default(), &serde_json::from_value(cr).unwrap()).await.unwrap();
    assert!(created.status.is_none(), "a create's status is dropped");
    assert_eq!(created.metadata.generation, Some(1));

    // Status writes ignore the spec and metadata.
    let patch =
        json!({"metadata": {"labels": {"x": "y"}}, "spec": {"entrypoint": "other.py"}, "status": {"phase": "Running"}});
    let after = api.patch_status("job", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    assert_eq!(after.spec.entrypoint.as_deref(), Some("main.py"));
    assert!(after.metadata.labels.is_none());
    assert_eq!(fake.get(EXECUTIONS, "job").unwrap()["status"]["phase"], "Running");

    // Writes of the object ignore the status (the spec of an execution is immutable: see the admission test).
    let patch = json!({"metadata": {"labels": {"x": "y"}}, "status": {"phase": "Failed"}});
    let after = api.patch("job", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    assert_eq!(after.metadata.labels.as_ref().unwrap()["x"], "y");
    assert_eq!(after.metadata.generation, Some(1), "no spec change");
    assert_eq!(fake.get(EXECUTIONS, "job").unwrap()["status"]["phase"], "Running");
    let mut whole = after.clone();
    whole.status.as_mut().unwrap().phase = Some(Phase::Killed);
    let replaced = api.replace("job", &PostParams::default(), &whole).await.unwrap();
    assert_eq!(replaced.metadata.generation, Some(1), "no spec change");
    assert_eq!(fake.get(EXECUTIONS, "job").unwrap()["status"]["phase"], "Running");

    // A status replace from a stale version conflicts; from the current one it writes the status.
    whole.metadata.resource_version = created.metadata.resource_version.clone();
    let e = api_error(api.replace_status("job", &PostParams::default(), &whole).await);
    assert_eq!(e.code, 409);
    whole.metadata.resource_version = replaced.metadata.resource_version.clone();
    let replaced = api.replace_status("job", &PostParams::default(), &whole).await.unwrap();
    assert_eq!(replaced.status.unwrap().phase, Some(Phase::Killed));

    // Pods have one too.
    let pods: Api<Pod> = Api::namespaced(client, NS);
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]},
                                                 "status": {"phase": "Running"}}))
    .unwrap();
    assert!(pods.create(&PostParams::default(), &pod).await.unwrap().status.is_none());
    pods.patch_status("p", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Running"}})))
        .await
        .unwrap();
    pods.patch("p", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Failed"}}))).await.unwrap();
    assert_eq!(fake.get(PODS, "p").unwrap()["status"]["phase"], "Running");

    // A spec change moves the generation on; a change elsewhere does not.
    let after =
        pods.patch("p", &PatchParams::default(), &Patch::Merge(json!({"spec": {"activeDeadlineSeconds": 5}}))).await;
    assert_eq!(after.unwrap().metadata.generation, Some(2));
    let labels = Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}));
    let after = pods.patch("p", &PatchParams::default(), &labels).await.unwrap();
    assert_eq!(after.metadata.generation, Some(2));
}

#[tokio::test]
async fn owners_take_their_dependents_and_preconditions_hold() {
    let (maps, fake, _) = maps();
    let owner = maps.create(&PostParams::default(), &config_map("owner", json!({}))).await.unwrap();
    let uid = owner.metadata.uid.clone().unwrap();
    let owned = |name: &str, owner_uid: &str| {
        let mut m = config_map(name, json!({}));
        m.metadata.owner_references = Some(vec![
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": owner_uid}))
                .unwrap(),
        ]);
        m
    };
    maps.create(&PostParams::default(), &owned("child", &uid)).await.unwrap();
    maps.create(&PostParams::default(), &owned("grandchild", "uid-child")).await.unwrap();
    maps.create(&PostParams::default(), &owned("unrelated", "uid-elsewhere")).await.unwrap();

    // Preconditions that do not hold: 409, nothing deleted.
    let wrong_uid = DeleteParams {
        preconditions: Some(Preconditions { uid: Some("nope".into()), resource_version: None }),
        ..DeleteParams::default()
    };
    assert_eq!(api_error(maps.delete("owner", &wrong_uid).await).code, 409);
    let stale = DeleteParams {
        preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: Some("999".into()) }),
        ..DeleteParams::default()
    };
    let e = api_error(maps.delete("owner", &stale).await);
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(fake.get(CONFIG_MAPS, "owner").is_some());

    let right = DeleteParams {
        preconditions: Some(Preconditions { uid: Some(uid), resource_version: owner.metadata.resource_version }),
        ..DeleteParams::background()
    };
    maps.delete("owner", &right).await.unwrap();
    for gone in ["owner", "child", "grandchild"] {
        assert!(fake.get(CONFIG_MAPS, gone).is_none(), "{gone} was collected");
    }
    assert!(fake.get(CONFIG_MAPS, "unrelated").is_some());

    // Orphaning keeps the dependents, without the reference.
    maps.create(&PostParams::default(), &config_map("parent", json!({}))).await.unwrap();
    maps.create(&PostParams::default(), &owned("orphan", "uid-parent")).await.unwrap();
    maps.delete("parent", &DeleteParams::orphan()).await.unwrap();
    assert_eq!(fake.get(CONFIG_MAPS, "orphan").unwrap()["metadata"]["ownerReferences"], json!([]));

    // The test's own deletes collect too.
    fake.delete(CONFIG_MAPS, "unrelated");
    maps.create(&PostParams::default(), &owned("dependent", "uid-orphan")).await.unwrap();
    fake.delete(CONFIG_MAPS, "orphan");
    assert!(fake.get(CONFIG_MAPS, "dependent").is_none());
}

#[tokio::test]
async fn injected_faults_reach_the_client_and_calls_are_recorded() {
    let (maps, fake, _) = maps();
    fake.fail_next("POST", CONFIG_MAPS, 2, Fault::Status(429));
    fake.fail_next("", CONFIG_MAPS, 1, Fault::Status(403));
    for _ in 0..2 {
        let e = api_error(maps.create(&PostParams::default(), &config_map("m", json!({}))).await);
        assert_eq!((e.code, e.reason.as_str()), (429, "TooManyRequests"));
    }
    assert_eq!(api_error(maps.get("m").await).code, 403);
    maps.create(&PostParams::default(), &config_map("m", json!({"k": "v"}))).await.unwrap();
    for (code, reason) in [(409, "Conflict"), (422, "Invalid"), (500, "InternalError")] {
        fake.fail_next("PATCH", CONFIG_MAPS, 1, Fault::Status(code));
        let e = api_error(maps.patch("m", &PatchParams::default(), &Patch::Merge(json!({}))).await);
        assert_eq!((e.code, e.reason.as_str()), (code, reason));
    }

    // A hung request outlives the caller's timeout and changes nothing; a delayed one answers late.
    fake.fail_next("DELETE", CONFIG_MAPS, 1, Fault::Hang);
    let hung = tokio::time::timeout(Duration::from_millis(200), maps.delete("m", &DeleteParams::default())).await;
    assert!(hung.is_err(), "timed out");
    assert!(fake.get(CONFIG_MAPS, "m").is_some());
    fake.fail_next("GET", CONFIG_MAPS, 1, Fault::Delay(Duration::from_millis(100)));
    let started = std::time::Instant::now();
    maps.get("m").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(100));

    let posts = fake.calls_matching("POST", "/configmaps");
    assert_eq!(posts.iter().map(|c| c.code).collect::<Vec<_>>(), [429, 429, 201]);
    assert_eq!(posts[2].body["data"]["k"], "v");
    assert_eq!(fake.calls_matching("DELETE", "/configmaps/m")[0].code, 0, "never answered");
    assert_eq!(fake.calls_matching("", "/configmaps/m").len(), 6, "GET, 3 PATCH, DELETE, GET");
}

#[tokio::test]
async fn a_watch_from_compacted_history_is_gone_and_the_watcher_lists_again() {
    let (maps, fake, _) = maps();
    maps.create(&PostParams::default(), &config_map("first", json!({}))).await.unwrap();

    // A raw watch from before the compaction: an ERROR event, 410 Expired.
    fake.put(CONFIG_MAPS, serde_json::to_value(config_map("second", json!({}))).unwrap());
    fake.compact();
    let mut events = maps.watch(&kube::api::WatchParams::default(), "1").await.unwrap().boxed();
    match events.next().await.unwrap().unwrap() {
        kube::api::WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected a 410, got {other:?}"),
    }

    // kube's watcher: listed, then history compacted before it watches; it gets the 410 and lists again.
    let mut stream = watcher(maps.clone(), watcher::Config::default()).boxed();
    let mut names = Vec::new();
    loop {
        match stream.next().await.unwrap().unwrap() {
            watcher::Event::InitApply(m) => names.push(m.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(names, ["first", "second"]);
    fake.put(CONFIG_MAPS, serde_json::to_value(config_map("third", json!({}))).unwrap());
    fake.compact();
    let mut saw_error = false;
    let mut relisted = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap() {
            Err(_) => saw_error = true,
            Ok(watcher::Event::InitApply(m)) => relisted.push(m.metadata.name.unwrap()),
            Ok(watcher::Event::InitDone) => break,
            Ok(_) => {}
        }
    }
    assert!(saw_error, "the 410 surfaced");
    assert_eq!(relisted, ["first", "second", "third"], "and the watcher listed again");
    let watches: Vec<Call> =
        fake.calls_matching("GET", "/configmaps").into_iter().filter(|c| c.query.contains("watch=")).collect();
    assert!(watches.iter().any(|c| c.code == 200));
}

#[tokio::test]
async fn server_side_apply_merges_by_field_manager() {
    let (maps, fake, _) = maps();
    let apply = |manager: &'static str| PatchParams::apply(manager);
    let mine = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m", "labels": {"team": "a"}},
                      "data": {"a": "1", "b": "1"}});
    // Apply creates.
    maps.patch("m", &apply("alice"), &Patch::Apply(&mine)).await.unwrap();
    let theirs = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}, "data": {"c": "2"}});
    maps.patch("m", &apply("bob"), &Patch::Apply(&theirs)).await.unwrap();

    // alice re-applies without `b`: her `b` goes, bob's `c` stays.
    let less = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m", "labels": {"team": "a"}}, "data": {"a": "1"}});
    let after = maps.patch("m", &apply("alice"), &Patch::Apply(&less)).await.unwrap();
    assert_eq!(after.data.unwrap(), [("a".to_owned(), "1".to_owned()), ("c".to_owned(), "2".to_owned())].into());

    // alice changing bob's field: 409 with the field and its manager; forced, she takes it over.
    let grab =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}, "data": {"a": "1", "c": "3"}});
    let e = api_error(maps.patch("m", &apply("alice"), &Patch::Apply(&grab)).await);
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(e.message.contains("bob") && e.message.contains(".data.c"), "{}", e.message);
    // The same value is no conflict: shared ownership.
    let same = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}, "data": {"c": "2"}});
    maps.patch("m", &apply("carol"), &Patch::Apply(&same)).await.unwrap();
    let forced = maps.patch("m", &apply("alice").force(), &Patch::Apply(&grab)).await.unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["c"], "3");

    // managedFields say who owns what; updates own what they change.
    maps.patch(
        "m",
        &PatchParams { field_manager: Some("dave".into()), ..PatchParams::default() },
        &Patch::Merge(json!({"data": {"d": "4"}})),
    )
    .await
    .unwrap();
    let stored = fake.get(CONFIG_MAPS, "m").unwrap();
    let entries = stored["metadata"]["managedFields"].as_array().unwrap();
    let owner = |manager: &str| entries.iter().find(|e| e["manager"] == manager).cloned();
    let alice = owner("alice").unwrap();
    assert_eq!(alice["operation"], "Apply");
    assert!(alice["fieldsV1"]["f:data"].get("f:c").is_some() && alice["fieldsV1"].get("f:metadata").is_none());
    assert!(stored["metadata"].get("labels").is_none_or(|l| l.get("team").is_none()), "alice left her label out");
    assert!(owner("bob").is_none() && owner("carol").is_none(), "forced away");
    assert_eq!(owner("dave").unwrap()["operation"], "Update");
    assert!(owner("dave").unwrap()["fieldsV1"]["f:data"].get("f:d").is_some());

    // Apply without a field manager is refused.
    let e = api_error(maps.patch("m", &PatchParams::default(), &Patch::Apply(&same)).await);
    assert_eq!(e.code, 422);

    // The status subresource applies to the status only.
    let (client, fake) = FakeApi::start();
    let api: Api<PythonExecution> = Api::namespaced(client, NS);
    fake.put(EXECUTIONS, execution("job", hello()));
    let status = json!({"apiVersion": "pyexec.io/v1alpha1", "kind": "PythonExecution", "spec": {"entrypoint": "x.py"},
                        "status": {"phase": "Running"}});
    api.patch_status("job", &apply("op").force(), &Patch::Apply(&status)).await.unwrap();
    let stored = fake.get(EXECUTIONS, "job").unwrap();
    assert_eq!(
        (stored["spec"]["entrypoint"].as_str(), stored["status"]["phase"].as_str()),
        (Some("main.py"), Some("Running"))
    );
    assert_eq!(stored["metadata"]["managedFields"][0]["subresource"], "status");
}

fn refused_field(status: &kube::core::Status) -> Vec<String> {
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"), "{}", status.message);
    status.details.as_ref().map(|d| d.causes.iter().map(|c| c.field.clone()).collect()).unwrap_or_default()
}

#[test]
fn every_cel_rule_of_the_crd_compiles() {
    schema::check_rules_compile();
    let rules = serde_json::to_string(&schema::execution_schema()).unwrap().matches("\"rule\"").count();
    assert!(rules >= 5, "the CRD's rules were not found in its schema: {rules}");
}

#[tokio::test]
async fn executions_are_admitted_against_the_crd_schema_and_rules() {
    let (client, fake) = FakeApi::start();
    let executions: Api<PythonExecution> = Api::namespaced(client, NS);
    let create = |name: &str, spec: Value| {
        let executions = executions.clone();
        let object: PythonExecution = serde_json::from_value(execution(name, spec)).unwrap();
        async move { executions.create(&PostParams::default(), &object).await }
    };

    // A valid object is accepted.
    create("ok", hello()).await.unwrap();
    let ok_spec = fake.get(EXECUTIONS, "ok").unwrap()["spec"].clone();

    // Writes that the typed client could not even express go through a raw JSON body (a merge patch, an apply).
    let raw_create = |name: &'static str, spec: Value| {
        let executions = executions.clone();
        async move {
            let body = execution(name, spec);
            executions.patch(name, &PatchParams::apply("test"), &Patch::Apply(&body)).await
        }
    };

    // A wrong type.
    let mut spec = hello();
    spec["docker"] = json!("yes");
    let e = api_error(raw_create("wrong-type", spec).await);
    assert_eq!(refused_field(&e), ["spec.docker"]);
    assert!(e.message.contains("spec.docker in body must be of type boolean"), "{}", e.message);
    assert!(fake.get(EXECUTIONS, "wrong-type").is_none());

    // A missing required field.
    let e = api_error(raw_create("no-source", json!({"entrypoint": "main.py"})).await);
    assert_eq!(refused_field(&e), ["spec.source"]);
    assert!(e.message.contains("spec.source: Required value"), "{}", e.message);
    let mut spec = hello();
    spec["source"]["files"][0].as_object_mut().unwrap().remove("content");
    let e = api_error(raw_create("no-content", spec).await);
    assert_eq!(refused_field(&e), ["spec.source.files[0].content"]);

    // Out of range limits, an unknown enum value, a pattern and a length.
    let mut spec = hello();
    spec["limits"] = json!({"memoryMB": 262145, "timeoutSeconds": 0});
    let e = api_error(raw_create("too-much", spec).await);
    assert_eq!(refused_field(&e), ["spec.limits.memoryMB", "spec.limits.timeoutSeconds"]);
    assert!(e.message.contains("spec.limits.memoryMB in body should be less than or equal to 262144"), "{}", e.message);
    let mut spec = hello();
    spec["network"] = json!("host");
    spec["pythonVersion"] = json!("2.7");
    spec["env"] = json!([{"name": "", "value": "x"}]);
    let e = api_error(raw_create("odd", spec).await);
    assert_eq!(refused_field(&e), ["spec.env[0].name", "spec.env[0].name", "spec.network", "spec.pythonVersion"]);
    assert!(e.message.contains("Unsupported value: \"host\": supported values: \"none\", \"egress\""), "{}", e.message);

    // CEL rules: a cross-field rule, a rule on a string, and a rule on an array item.
    let mut spec = hello();
    spec["source"]["configMap"] = json!({"name": "code"});
    let e = api_error(raw_create("two-sources", spec).await);
    assert_eq!(refused_field(&e), ["spec.source"]);
    assert!(e.message.contains("set exactly one of files, configMap, archive"), "{}", e.message);
    let mut spec = hello();
    spec["entrypoint"] = json!("../etc/passwd");
    let e = api_error(create("escape", spec).await);
    assert_eq!(refused_field(&e), ["spec.entrypoint"]);
    assert!(e.message.contains("entrypoint must be a relative path inside /work"), "{}", e.message);
    let e =
        api_error(raw_create("both", json!({"source": {"configMap": {"name": "c"}}, "env": [{"name": "A"}]})).await);
    assert_eq!(refused_field(&e), ["spec.env[0]"]);

    // Unknown fields are pruned, not refused.
    let mut spec = hello();
    spec["shiny"] = json!(true);
    raw_create("pruned", spec).await.unwrap();
    assert_eq!(fake.get(EXECUTIONS, "pruned").unwrap()["spec"], hello());

    // A transition rule: spec is immutable, by merge patch, JSON patch, replace and apply alike.
    let e = api_error(
        executions
            .patch("ok", &PatchParams::default(), &Patch::Merge(json!({"spec": {"entrypoint": "other.py"}})))
            .await,
    );
    assert_eq!(refused_field(&e), ["spec"]);
    assert!(e.message.contains("spec is immutable: create a new PythonExecution"), "{}", e.message);
    let e = api_error(
        executions
            .patch(
                "ok",
                &PatchParams::default(),
                &Patch::Json::<()>(ops(json!([{"op": "replace", "path": "/spec/entrypoint", "value": "x.py"}]))),
            )
            .await,
    );
    assert_eq!(refused_field(&e), ["spec"]);
    let mut edit = executions.get("ok").await.unwrap();
    edit.spec.stdin = Some("input".into());
    assert_eq!(refused_field(&api_error(executions.replace("ok", &PostParams::default(), &edit).await)), ["spec"]);
    let mut spec = hello();
    spec["stdin"] = json!("input");
    assert_eq!(refused_field(&api_error(raw_create("ok", spec).await)), ["spec"]);
    assert_eq!(fake.get(EXECUTIONS, "ok").unwrap()["spec"], ok_spec);

    // Changing what the rules allow (labels, finalizers, status) is fine.
    executions
        .patch("ok", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})))
        .await
        .unwrap();
    executions
        .patch_status("ok", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Running"}})))
        .await
        .unwrap();
    // ... but the status is validated too.
    let e = api_error(
        executions
            .patch_status("ok", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Sleeping"}})))
            .await,
    );
    assert_eq!(refused_field(&e), ["status.phase"]);
    assert_eq!(fake.get(EXECUTIONS, "ok").unwrap()["status"]["phase"], "Running");

    // The test's own writes stay unchecked.
    let mut raw = execution("raw", hello());
    raw["spec"]["limits"] = json!({"cpu": null});
    fake.put(EXECUTIONS, raw);
    assert!(fake.get(EXECUTIONS, "raw").unwrap()["spec"]["limits"]["cpu"].is_null());
}
