//! The ConfigMap of an execution: the runner, the eval runner, `run.json` (what the runner does, a
//! `pyexec_core::pod::RunConfig`), and the inline sources, stdin and requirements. ConfigMap keys cannot hold `/`,
//! so inline files are `src-N` keys that `run.json` maps to their paths.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use pyexec_core::eval::EVAL_RUNNER_SOURCE;
use pyexec_core::pod::RUNNER_SOURCE;
use pyexec_core::pod::protocol::{
    EVAL_RUNNER_FILE, Fence, FenceTarget, KUBERNETES_API_NAME, METADATA_HOST, REQUIREMENTS_FILE, RUN_CONFIG_FILE,
    RUNNER_FILE, RunConfig, STDIN_FILE, source_key,
};
use pyexec_crds::{NetworkMode, PythonExecution};

use super::child_meta;
use crate::admission::Admitted;
use crate::config::OperatorConfig;

/// The execution's ConfigMap.
pub fn config_map(cr: &PythonExecution, admitted: &Admitted, config: &OperatorConfig) -> ConfigMap {
    let spec = &cr.spec;
    let mut data = BTreeMap::from([
        (RUNNER_FILE.to_string(), RUNNER_SOURCE.to_string()),
        (EVAL_RUNNER_FILE.to_string(), EVAL_RUNNER_SOURCE.to_string()),
    ]);
    let mut files = BTreeMap::new();
    for (i, file) in spec.source.files.iter().enumerate() {
        let key = source_key(i);
        files.insert(key.clone(), file.name.clone());
        data.insert(key, file.content.clone());
    }
    if let Some(stdin) = &spec.stdin {
        data.insert(STDIN_FILE.into(), stdin.clone());
    }
    if let Some(requirements) = &admitted.requirements {
        data.insert(REQUIREMENTS_FILE.into(), requirements.clone());
    }
    data.insert(RUN_CONFIG_FILE.into(), serde_json::to_string(&run_config(cr, config, files)).unwrap_or_default());
    ConfigMap { metadata: child_meta(cr), data: Some(data), immutable: Some(true), ..ConfigMap::default() }
}

/// What the runner does: the program, its arguments and pre-commands, the timeout, the output cap, the workspace's
/// size limit, where the inline files (ConfigMap key → path) go, and the caps of the files it reports (none without
/// a log store to keep them).
fn run_config(cr: &PythonExecution, config: &OperatorConfig, files: BTreeMap<String, String>) -> RunConfig {
    let spec = &cr.spec;
    let caps = config.files_caps();
    RunConfig {
        entrypoint: spec.entrypoint.clone(),
        args: spec.args.clone(),
        eval_last_expr: spec.eval_last_expr,
        pre_commands: spec.pre_commands.clone(),
        timeout_seconds: spec.limits.timeout_seconds,
        output_limit_bytes: config.output_limit_bytes,
        files,
        fence: fence(cr, api_address()),
        disk_mb: spec.limits.disk_mb,
        files_max_bytes: caps.map_or(0, |c| c.max_bytes),
        files_max_count: caps.map_or(0, |c| u64::try_from(c.max_count).unwrap_or(u64::MAX)),
    }
}

/// What the program must not reach, checked by the runner before it runs anything: the cloud metadata endpoint, the
/// Kubernetes API (by the address the operator itself reaches it at, and, where the program has DNS, by its
/// in-cluster name), and without network the Pod's DNS servers.
fn fence(cr: &PythonExecution, api: Option<(String, u16)>) -> Fence {
    let target = |what: &str, host: &str, port: u16| FenceTarget { what: what.into(), host: host.into(), port };
    let mut tcp = vec![target("the cloud metadata endpoint", METADATA_HOST, 80)];
    if let Some((host, port)) = api {
        tcp.push(target("the Kubernetes API", &host, port));
    }
    let none = cr.spec.network == NetworkMode::None;
    if !none {
        tcp.push(target("the Kubernetes API", KUBERNETES_API_NAME, 443));
    }
    Fence { tcp, resolv_conf: none.then(|| "/etc/resolv.conf".to_string()) }
}

/// The fence the runner of `cr`'s Pod checks (see [`fence`]); a session's runner checks its class's.
pub fn runner_fence(cr: &PythonExecution) -> Fence {
    fence(cr, api_address())
}

/// The Kubernetes API's service address as the operator's own Pod sees it (its service links).
fn api_address() -> Option<(String, u16)> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").ok().filter(|h| !h.is_empty())?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT").ok().and_then(|p| p.parse().ok())?;
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::admit;
    use crate::desired::fixtures::simple;

    #[test]
    fn sources_stdin_and_run_settings_are_in_it() {
        let cr = simple(
            serde_json::json!({"stdin": "in", "args": ["-v"], "evalLastExpr": true, "preCommands": ["echo hi"]}),
        );
        let config = OperatorConfig::default();
        let cm = config_map(&cr, &admit(&cr, &config, None).unwrap(), &config);
        let data = cm.data.unwrap();
        assert_eq!(data[&source_key(0)], "print(1)");
        assert_eq!(data[STDIN_FILE], "in");
        assert!(data[RUNNER_FILE].contains("def run()"));
        let run: RunConfig = serde_json::from_str(&data[RUN_CONFIG_FILE]).unwrap();
        assert_eq!(
            run,
            RunConfig {
                entrypoint: Some("main.py".into()),
                args: vec!["-v".into()],
                eval_last_expr: true,
                pre_commands: vec!["echo hi".into()],
                timeout_seconds: 300,
                output_limit_bytes: 1 << 20,
                files: [(source_key(0), "main.py".to_string())].into(),
                fence: fence(&cr, api_address()),
                disk_mb: cr.spec.limits.disk_mb,
                files_max_bytes: 0,
                files_max_count: 0,
            }
        );
        // With a log store, the runner reports the files the program writes, under the operator's caps.
        let stored = OperatorConfig {
            logs: crate::config::LogsConfig {
                dir: Some("/logs".into()),
                url: Some("http://op:8081".into()),
                ..Default::default()
            },
            ..OperatorConfig::default()
        };
        let cm = config_map(&cr, &admit(&cr, &stored, None).unwrap(), &stored);
        let run: RunConfig = serde_json::from_str(&cm.data.unwrap()[RUN_CONFIG_FILE]).unwrap();
        assert_eq!((run.files_max_bytes, run.files_max_count), (8 << 20, 1000));
        assert_eq!(cm.immutable, Some(true));
        assert_eq!(run.fence.tcp[0].host, METADATA_HOST);
        assert_eq!(cm.metadata.owner_references.unwrap()[0].kind, "PythonExecution");
    }

    #[test]
    fn the_fence_names_the_metadata_endpoint_the_api_and_without_network_dns() {
        let api = Some(("10.96.0.1".to_string(), 443));
        let none = fence(&simple(serde_json::json!({})), api.clone());
        let hosts: Vec<(&str, u16)> = none.tcp.iter().map(|t| (t.host.as_str(), t.port)).collect();
        assert_eq!(hosts, [(METADATA_HOST, 80), ("10.96.0.1", 443)]);
        assert_eq!(none.resolv_conf.as_deref(), Some("/etc/resolv.conf"), "no network: DNS must not answer");
        let egress = fence(&simple(serde_json::json!({"network": "egress"})), None);
        let hosts: Vec<(&str, u16)> = egress.tcp.iter().map(|t| (t.host.as_str(), t.port)).collect();
        assert_eq!(hosts, [(METADATA_HOST, 80), (KUBERNETES_API_NAME, 443)]);
        assert_eq!(egress.resolv_conf, None, "DNS is allowed with egress");
    }
}
