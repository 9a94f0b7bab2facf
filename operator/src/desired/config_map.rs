//! The ConfigMap of an execution: the runner, the eval runner, `run.json` (what the runner does), and the inline
//! sources, stdin and requirements. ConfigMap keys cannot hold `/`, so inline files are `src-N` keys that
//! `run.json` maps to their paths.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use pyexec_core::eval::EVAL_RUNNER_SOURCE;
use pyexec_core::pod::{RUNNER_FILE, RUNNER_SOURCE};
use pyexec_crds::PythonExecution;

use super::child_meta;
use crate::admission::Admitted;
use crate::config::OperatorConfig;

/// The execution's ConfigMap.
pub fn config_map(cr: &PythonExecution, admitted: &Admitted, config: &OperatorConfig) -> ConfigMap {
    let spec = &cr.spec;
    let mut data = BTreeMap::from([
        (RUNNER_FILE.to_string(), RUNNER_SOURCE.to_string()),
        ("eval_runner.py".to_string(), EVAL_RUNNER_SOURCE.to_string()),
    ]);
    let mut files = serde_json::Map::new();
    for (i, file) in spec.source.files.iter().enumerate() {
        let key = format!("src-{i}");
        files.insert(key.clone(), file.name.clone().into());
        data.insert(key, file.content.clone());
    }
    if let Some(stdin) = &spec.stdin {
        data.insert("stdin".into(), stdin.clone());
    }
    if let Some(requirements) = &admitted.requirements {
        data.insert("requirements.txt".into(), requirements.clone());
    }
    let run = serde_json::json!({
        "entrypoint": spec.entrypoint,
        "args": spec.args,
        "eval_last_expr": spec.eval_last_expr,
        "pre_commands": spec.pre_commands,
        "timeout_seconds": spec.limits.timeout_seconds,
        "output_limit_bytes": config.output_limit_bytes,
        "files": files,
    });
    data.insert("run.json".into(), run.to_string());
    ConfigMap { metadata: child_meta(cr), data: Some(data), immutable: Some(true), ..ConfigMap::default() }
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
        assert_eq!(data["src-0"], "print(1)");
        assert_eq!(data["stdin"], "in");
        assert!(data[RUNNER_FILE].contains("def run()"));
        let run: serde_json::Value = serde_json::from_str(&data["run.json"]).unwrap();
        assert_eq!(run["files"]["src-0"], "main.py");
        assert_eq!((run["eval_last_expr"].as_bool(), run["timeout_seconds"].as_u64()), (Some(true), Some(300)));
        assert_eq!(run["pre_commands"][0], "echo hi");
        assert_eq!(cm.immutable, Some(true));
        assert_eq!(cm.metadata.owner_references.unwrap()[0].kind, "PythonExecution");
    }
}
