//! The operator's command line: every flag is also an environment variable.

use std::path::PathBuf;

use clap::Parser;

/// `pyexec-operator` flags.
#[derive(Parser)]
#[command(version, about = "Runs PythonExecution resources in locked-down Pods")]
pub struct Args {
    /// Configuration file (YAML; every field optional).
    #[arg(long, env = "PYEXEC_OPERATOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of the metrics, health and logs endpoint.
    #[arg(long, env = "PYEXEC_OPERATOR_LISTEN", default_value = "0.0.0.0:8081")]
    pub listen: String,
    /// Namespace of the leader-election Lease (default: the operator's own, from the service account).
    #[arg(long, env = "PYEXEC_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "PYEXEC_OPERATOR_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Name of this replica (default: the host name), for the Lease and Events.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Print the CRD and exit.
    #[arg(long)]
    pub print_crd: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every flag and variable of the operator is in docs/configuration.md.
    #[test]
    fn every_setting_is_documented() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md")).unwrap();
        let mut missing = Vec::new();
        for arg in Args::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            if !doc.contains(&format!("`--{long}`")) {
                missing.push(format!("--{long}"));
            }
            if let Some(env) = arg.get_env() {
                let env = env.to_string_lossy();
                if !doc.contains(&format!("`{env}`")) {
                    missing.push(env.into_owned());
                }
            }
        }
        assert!(missing.is_empty(), "undocumented in docs/configuration.md: {missing:?}");
    }
}
