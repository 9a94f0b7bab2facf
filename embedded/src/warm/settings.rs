//! How big the warm pools may grow and what their interpreters import ahead of time.

use std::time::Duration;

/// Settings of the warm pools (`PYEXEC_WARM_*`, see `docs/configuration.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmSettings {
    /// Whether sandboxes are built ahead of demand at all.
    pub enabled: bool,
    /// Idle sandboxes always kept for the default kind of request (the default interpreter, no packages, no
    /// network, default disk size).
    pub min_idle: usize,
    /// Most idle sandboxes of one kind.
    pub max_idle: usize,
    /// Most idle (or being built) sandboxes in all.
    pub max_total: usize,
    /// Sandboxes built at the same time.
    pub build_parallelism: usize,
    /// What an environment's warm interpreters import before they are claimed.
    pub preimport: Preimport,
    /// A kind of request unseen for this long loses its pool (the default kind keeps `min_idle`).
    pub class_idle: Duration,
    /// An idle sandbox older than this is replaced by a fresh one.
    pub max_age: Duration,
    /// Longest a sandbox may take to be ready; slower ones are thrown away.
    pub ready_timeout: Duration,
    /// Largest workspace handed over to a warm sandbox; larger uploads run cold (copied in by the kernel).
    pub max_workspace_bytes: u64,
}

impl Default for WarmSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            min_idle: 2,
            max_idle: 8,
            max_total: 16,
            build_parallelism: 1,
            preimport: Preimport::Auto,
            class_idle: Duration::from_secs(600),
            max_age: Duration::from_secs(1800),
            ready_timeout: Duration::from_secs(60),
            max_workspace_bytes: 8 << 20,
        }
    }
}

impl WarmSettings {
    /// No warm pools: every run is built when it is needed.
    pub fn disabled() -> Self {
        Self { enabled: false, ..Self::default() }
    }
}

/// What warm interpreters import before they are claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preimport {
    /// In environments with packages, every top-level module the packages install; nothing otherwise.
    Auto,
    /// Nothing.
    Off,
    /// These modules, in every warm interpreter (those that fail to import are skipped).
    Modules(Vec<String>),
}

impl Preimport {
    /// Parses `auto`, `off` or a comma-separated list of module names.
    pub fn parse(text: &str) -> Result<Preimport, String> {
        match text.trim() {
            "auto" => Ok(Preimport::Auto),
            "off" | "none" | "" => Ok(Preimport::Off),
            list => {
                let modules: Vec<String> =
                    list.split(',').map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()).collect();
                if let Some(bad) = modules.iter().find(|m| !m.split('.').all(is_identifier)) {
                    return Err(format!(
                        "{bad:?} is not a module name (expected auto, off or a list like numpy,pandas)"
                    ));
                }
                Ok(Preimport::Modules(modules))
            }
        }
    }

    /// The runner's `PYEXEC_PREIMPORT` for a sandbox with (or without) an environment of packages.
    pub(crate) fn runner_value(&self, with_environment: bool) -> String {
        match self {
            Preimport::Auto if with_environment => "*".into(),
            Preimport::Auto | Preimport::Off => String::new(),
            Preimport::Modules(modules) => modules.join(","),
        }
    }
}

fn is_identifier(part: &str) -> bool {
    let mut chars = part.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preimport_values() {
        assert_eq!(Preimport::parse("auto"), Ok(Preimport::Auto));
        assert_eq!(Preimport::parse("off"), Ok(Preimport::Off));
        assert_eq!(
            Preimport::parse(" numpy, pandas ,os.path"),
            Ok(Preimport::Modules(vec!["numpy".into(), "pandas".into(), "os.path".into()]))
        );
        assert!(Preimport::parse("numpy;rm -rf").is_err());
        assert!(Preimport::parse("1abc").is_err());
        assert_eq!(Preimport::Auto.runner_value(true), "*");
        assert_eq!(Preimport::Auto.runner_value(false), "");
        assert_eq!(Preimport::Off.runner_value(true), "");
        assert_eq!(Preimport::Modules(vec!["a".into(), "b".into()]).runner_value(false), "a,b");
    }
}
