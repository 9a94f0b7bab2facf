//! The ConfigMap of an execution: the runner, the eval runner, `run.json` (what the runner does, a
//! `pyexec_core::pod::RunConfig`), and the inline sources, stdin and requirements. ConfigMap keys cannot hold `/`,
//! so inline files are `src-N` keys that `run.json` maps to their paths.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use pyexec_core::eval::EVAL_RUNNER_SOURCE;
use pyexec_core::pod::RUNNER_SOURCE;
use pyexec_core::pod::protocol::{
    EVAL_RUNNER_FILE, REQUIREMENTS_FILE, RUN_CONFIG_FILE, RUNNER_FILE, RunConfig, STDIN_FILE, source_key,
};
use pyexec_crds::PythonExecution;

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

/// What the runner does: the program, its arguments and pre-commands, the timeout, the output cap, and where the
/// inline files (ConfigMap key → path) go.
fn run_config(cr: &PythonExecution, config: &OperatorConfig, files: BTreeMap<String, String>) -> RunConfig {
    let spec = &cr.spec;
    RunConfig {
        entrypoint: spec.entrypoint.clone(),
        args: spec.args.clone(),
        eval_last_expr: spec.eval_last_expr,
        pre_commands: spec.pre_commands.clone(),
        timeout_seconds: spec.limits.timeout_seconds,
        output_limit_bytes: config.output_limit_bytes,
        files,
    }
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
            }
        );
        assert_eq!(cm.immutable, Some(true));
        assert_eq!(cm.metadata.owner_references.unwrap()[0].kind, "PythonExecution");
    }
}
