//! What an execution needs installed, the same for every backend: the request's `requirements_txt`, else the
//! project's own `requirements.txt`, merged (for `/eval`) with the third-party imports of its code; `"-"`:
//! nothing at all.
//!
//! The two kinds are installed differently ([`InstallPlan`]). What the user listed is *required*: when the package
//! index lacks it, the run fails and says so. What detection found is installed only when the index has it: a name
//! the index does not have (an import the program handles with `except ImportError`, or a name a model invented) is
//! skipped with a note in the result, instead of failing a program that may not need it. Detected names are also
//! checked against the server's auto-install allow-list ([`AutoInstall`]) before anything is installed, so that a
//! name someone registered to catch invented imports (typosquatting, "slopsquatting") is not installed unasked.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::imports::{Detected, detect_imports, mapped_distributions, normalize_name, requirement_name};
use crate::model::SkippedPackage;
use crate::spec::{ExecutionSpec, Requirements};

/// Largest `requirements.txt` read from a project.
const MAX_REQUIREMENTS_BYTES: u64 = 64 << 10;
/// Import detection reads at most this much code (eval projects are at most 100 KB).
const MAX_SCANNED_BYTES: u64 = 4 << 20;

/// Marks a detected distribution in a requirements text ([`InstallPlan::requirements_txt`]): installed when the
/// package index has it, skipped otherwise. A trailing comment to pip and uv, so the line installs as before.
pub const DETECTED_MARKER: &str = "# pyexec: detected";
/// Marks a detected distribution that the program imports only under an `ImportError` handler: also skipped when
/// the index has no release of it that installs here (no wheel for the interpreter).
pub const OPTIONAL_MARKER: &str = "# pyexec: optional";
/// Starts a comment line of a requirements text that records a distribution left out before installing:
/// `# pyexec: skipped NAME: REASON`.
pub const SKIPPED_MARKER: &str = "# pyexec: skipped";

/// Why a detected distribution was skipped: the package index does not have it.
pub const NOT_FOUND: &str = "not found in the package index";
/// Why an optional distribution was skipped: the index has it, but no release that installs here.
pub const NOT_INSTALLABLE: &str = "no release of it installs on this interpreter (no binary wheel for it)";
/// Why a detected distribution was skipped: the server's allow-list does not name it.
pub const NOT_ALLOWED: &str = "not on the auto-install allow-list (PYEXEC_AUTO_INSTALL_ALLOW)";
/// Why a detected distribution was skipped: its name cannot be a distribution's (a non-ASCII module name).
pub const NOT_A_NAME: &str = "not a valid package name";

/// Which detected distributions may be installed automatically (`PYEXEC_AUTO_INSTALL_ALLOW`). Requirements a
/// user lists are never restricted by it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "AutoInstallRepr", into = "AutoInstallRepr")]
pub enum AutoInstall {
    /// Any distribution the index has (the original service's behaviour).
    #[default]
    Any,
    /// Only these distributions (PEP 503-normalised names).
    Only(Arc<BTreeSet<String>>),
}

/// How [`AutoInstall`] is stored with a spec (a queued execution keeps the rule it was accepted under).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum AutoInstallRepr {
    Any,
    Only(Vec<String>),
}

impl From<AutoInstallRepr> for AutoInstall {
    fn from(repr: AutoInstallRepr) -> Self {
        match repr {
            AutoInstallRepr::Any => AutoInstall::Any,
            AutoInstallRepr::Only(names) => AutoInstall::only(names.iter().map(String::as_str)),
        }
    }
}

impl From<AutoInstall> for AutoInstallRepr {
    fn from(rule: AutoInstall) -> Self {
        match rule {
            AutoInstall::Any => AutoInstallRepr::Any,
            AutoInstall::Only(names) => AutoInstallRepr::Only(names.iter().cloned().collect()),
        }
    }
}

/// Why an allow-list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AllowListError {
    /// The file cannot be read.
    #[error("cannot read the allow-list {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What reading it said.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a distribution name.
    #[error("{path}, line {line}: {text:?} is not a distribution name (one name per line, `#` comments, `@builtin`)")]
    BadName {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
}

impl AutoInstall {
    /// The built-in list: the distributions of the import-name table (core/data/import_map.tsv), the packages
    /// programs use most.
    pub fn builtin() -> Self {
        AutoInstall::only(mapped_distributions())
    }

    /// Only `names` (normalised here).
    pub fn only<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        AutoInstall::Only(Arc::new(names.into_iter().map(normalize_name).collect()))
    }

    /// The setting's value: `any`, `builtin`, or the path of a file with one distribution per line (`#` starts a
    /// comment; a line `@builtin` adds the built-in list).
    pub fn load(value: &str) -> Result<Self, AllowListError> {
        match value.trim() {
            "" | "any" => Ok(AutoInstall::Any),
            "builtin" => Ok(AutoInstall::builtin()),
            path => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| AllowListError::Read { path: path.to_owned(), source })?;
                Self::parse_list(&text, path)
            }
        }
    }

    /// An allow-list file's content; `path` names it in errors.
    pub fn parse_list(text: &str, path: &str) -> Result<Self, AllowListError> {
        let mut names: BTreeSet<String> = BTreeSet::new();
        for (index, line) in text.lines().enumerate() {
            let name = line.split('#').next().unwrap_or_default().trim();
            if name.is_empty() {
                continue;
            }
            if name == "@builtin" {
                names.extend(mapped_distributions().into_iter().map(normalize_name));
            } else if is_distribution_name(name) {
                names.insert(normalize_name(name));
            } else {
                return Err(AllowListError::BadName { path: path.to_owned(), line: index + 1, text: name.to_owned() });
            }
        }
        Ok(AutoInstall::Only(Arc::new(names)))
    }

    /// Whether the distribution `name` may be installed automatically.
    pub fn allows(&self, name: &str) -> bool {
        match self {
            AutoInstall::Any => true,
            AutoInstall::Only(names) => names.contains(&normalize_name(name)),
        }
    }

    /// For logs: `any`, or how many names the list holds.
    pub fn describe(&self) -> String {
        match self {
            AutoInstall::Any => "any".to_owned(),
            AutoInstall::Only(names) => format!("{} allowed distributions", names.len()),
        }
    }
}

/// Whether `name` can be a distribution's name (PEP 508: ASCII letters and digits, with `.`, `_` and `-` inside).
pub fn is_distribution_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    edge(bytes.first())
        && edge(bytes.last())
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What an execution installs, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallPlan {
    /// The user's requirements (the request's `requirements_txt`, else the project's file), as written: they must
    /// install, or the run fails.
    pub required: String,
    /// Detected distributions that the user did not name and the allow-list allows: installed when the package
    /// index has them, skipped (with a note) otherwise.
    pub detected: Vec<Detected>,
    /// Detected distributions left out before installing (allow-list, invalid names), with why.
    pub skipped: Vec<SkippedPackage>,
}

impl InstallPlan {
    /// Whether the plan names anything to install.
    pub fn installs_anything(&self) -> bool {
        !self.detected.is_empty() || self.required.lines().any(is_requirement_line)
    }

    /// The plan as one requirements text, for a backend that installs elsewhere (the Kubernetes install container,
    /// `pod_runner.py`): the required lines as written, each detected distribution with [`DETECTED_MARKER`] or
    /// [`OPTIONAL_MARKER`], each skipped one as a [`SKIPPED_MARKER`] comment line. pip and uv read the markers as
    /// comments, so an installer that does not know them installs every name, as before. `None` when there is
    /// nothing to install and nothing to report.
    pub fn requirements_txt(&self) -> Option<String> {
        let mut lines: Vec<String> = self.required.trim_end().lines().filter_map(user_line).collect();
        for d in &self.detected {
            lines.push(format!("{}  {}", d.name, if d.optional { OPTIONAL_MARKER } else { DETECTED_MARKER }));
        }
        for s in &self.skipped {
            lines.push(format!("{SKIPPED_MARKER} {}: {}", s.name, s.reason.replace('\n', " ")));
        }
        let reports = !self.skipped.is_empty();
        (self.installs_anything() || reports).then(|| lines.join("\n"))
    }
}

/// A line of the user's requirements as the plan's text carries it: a user's own marker comments are dropped, so
/// that only detection decides what may be skipped.
fn user_line(line: &str) -> Option<String> {
    if !line.contains("# pyexec:") {
        return Some(line.to_owned());
    }
    if line.trim_start().starts_with('#') {
        return None;
    }
    // pip's rule: whitespace then `#` starts a comment.
    let cut = line.find(" #").or_else(|| line.find("\t#")).unwrap_or(line.len());
    Some(line[..cut].trim_end().to_owned())
}

/// Whether a requirements line names something to install (not blank, not a comment).
fn is_requirement_line(line: &str) -> bool {
    let line = line.trim();
    !line.is_empty() && !line.starts_with('#')
}

/// The distributions a requirements text ([`InstallPlan::requirements_txt`]) records as skipped before installing.
pub fn skipped_in(requirements: &str) -> Vec<SkippedPackage> {
    requirements
        .lines()
        .filter_map(|l| l.trim().strip_prefix(SKIPPED_MARKER))
        .filter_map(|rest| rest.trim().split_once(": "))
        .map(|(name, reason)| SkippedPackage { name: name.trim().to_owned(), reason: reason.trim().to_owned() })
        .collect()
}

/// What to install for `spec` over the files in `workspace`. `is_stdlib` says whether a top-level module belongs to
/// the target interpreter's standard library.
pub fn plan(spec: &ExecutionSpec, workspace: &Path, is_stdlib: impl Fn(&str) -> bool) -> InstallPlan {
    let required = match &spec.requirements {
        Requirements::Nothing => return InstallPlan::default(),
        Requirements::Listed(text) => text.clone(),
        Requirements::FromProject => project_requirements(workspace).unwrap_or_default(),
    };
    let detected = if spec.auto_detect_imports {
        let files = python_files(workspace);
        let entry_dir = spec
            .entrypoint
            .as_deref()
            .and_then(|e| e.rsplit_once('/').map(|(dir, _)| dir.to_owned()))
            .unwrap_or_default();
        detect_imports(files.iter().map(|(p, c)| (p.as_str(), c.as_str())), &entry_dir, is_stdlib)
    } else {
        Vec::new()
    };
    // The user's entry for a distribution wins over detection (docs/compatibility.md, C71).
    let named: HashSet<String> = required.lines().filter_map(requirement_name).collect();
    let mut plan = InstallPlan { required, ..InstallPlan::default() };
    for d in detected {
        if named.contains(&normalize_name(&d.name)) {
            continue;
        }
        let reason = if !is_distribution_name(&d.name) {
            NOT_A_NAME
        } else if !spec.auto_install.allows(&d.name) {
            NOT_ALLOWED
        } else {
            plan.detected.push(d);
            continue;
        };
        tracing::debug!(package = %d.name, reason, "a detected import is not installed");
        plan.skipped.push(SkippedPackage { name: d.name, reason: reason.to_owned() });
    }
    plan
}

/// The requirements text to install for `spec` over the files in `workspace` ([`InstallPlan::requirements_txt`]),
/// or `None` when there is nothing to install or report.
pub fn resolve(spec: &ExecutionSpec, workspace: &Path, is_stdlib: impl Fn(&str) -> bool) -> Option<String> {
    plan(spec, workspace, is_stdlib).requirements_txt()
}

/// A project's own `requirements.txt`, installed when the request names none.
fn project_requirements(workspace: &Path) -> Option<String> {
    let path = workspace.join("requirements.txt");
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.is_file() || meta.len() > MAX_REQUIREMENTS_BYTES {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// `(relative path, content)` of the project's `.py` files (and the names of its other entries, for local modules).
fn python_files(workspace: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut budget = MAX_SCANNED_BYTES;
    let mut stack = vec![(workspace.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                stack.push((entry.path(), rel.clone()));
                out.push((format!("{rel}/"), String::new()));
            } else if kind.is_file() && name.ends_with(".py") {
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                let content = if len <= budget {
                    std::fs::read_to_string(entry.path()).unwrap_or_default()
                } else {
                    String::new()
                };
                budget = budget.saturating_sub(len);
                out.push((rel, content));
            } else {
                out.push((rel, String::new()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stdlib(m: &str) -> bool {
        ["os", "json", "sys"].contains(&m)
    }

    fn spec(json: &str) -> ExecutionSpec {
        crate::Policy::default().spec_from_eval(serde_json::from_str(json).unwrap()).unwrap().0
    }

    #[test]
    fn detected_imports_merge_with_the_request() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.py"), "import os, numpy\nfrom helper import x\nimport yaml").unwrap();
        std::fs::write(dir.path().join("helper.py"), "import json").unwrap();
        let s = spec(r#"{"code":"x","requirements_txt":"numpy==2.0"}"#);
        assert_eq!(resolve(&s, dir.path(), stdlib).as_deref(), Some("numpy==2.0\nPyYAML  # pyexec: detected"));
        let s = spec(r#"{"code":"x","requirements_txt":"-"}"#);
        assert_eq!(resolve(&s, dir.path(), stdlib), None, "\"-\" turns detection off");
    }

    #[test]
    fn guarded_imports_are_optional_and_the_users_requirements_required() {
        let dir = tempfile::tempdir().unwrap();
        let code = "import numpy\ntry:\n    import surely_not_a_real_pkg_xyz\nexcept ImportError:\n    pass\n\
                    def f():\n    try:\n        import ujson\n    except (ImportError, AttributeError):\n        pass\n\
                    try:\n    import yaml\nexcept ValueError:\n    pass";
        std::fs::write(dir.path().join("main.py"), code).unwrap();
        let s = spec(r#"{"code":"x","requirements_txt":"six==1.17.0\n# pinned"}"#);
        let p = plan(&s, dir.path(), stdlib);
        assert_eq!(p.required, "six==1.17.0\n# pinned");
        let detected: Vec<(&str, bool)> = p.detected.iter().map(|d| (d.name.as_str(), d.optional)).collect();
        assert_eq!(
            detected,
            [("PyYAML", false), ("numpy", false), ("surely_not_a_real_pkg_xyz", true), ("ujson", true)],
            "ValueError guards nothing"
        );
        assert!(p.skipped.is_empty());
        assert_eq!(
            p.requirements_txt().unwrap(),
            "six==1.17.0\n# pinned\nPyYAML  # pyexec: detected\nnumpy  # pyexec: detected\n\
             surely_not_a_real_pkg_xyz  # pyexec: optional\nujson  # pyexec: optional"
        );
    }

    #[test]
    fn the_allow_list_restricts_detected_names_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.py"), "import numpy, reqeusts, sklearn\nimport café").unwrap();
        let policy = crate::Policy { auto_install: AutoInstall::builtin(), ..crate::Policy::default() };
        let body = r#"{"code":"x","requirements_txt":"not-on-any-list==1.0"}"#;
        let s = policy.spec_from_eval(serde_json::from_str(body).unwrap()).unwrap().0;
        let p = plan(&s, dir.path(), stdlib);
        assert_eq!(p.required, "not-on-any-list==1.0", "the user's requirements are never restricted");
        let names: Vec<&str> = p.detected.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["numpy", "scikit-learn"], "the built-in list: the import map's distributions");
        let skipped: Vec<(&str, &str)> = p.skipped.iter().map(|s| (s.name.as_str(), s.reason.as_str())).collect();
        assert_eq!(skipped, [("café", NOT_A_NAME), ("reqeusts", NOT_ALLOWED)]);
        let text = p.requirements_txt().unwrap();
        assert!(
            text.ends_with(
                "\n# pyexec: skipped reqeusts: not on the auto-install allow-list (PYEXEC_AUTO_INSTALL_ALLOW)"
            ),
            "{text}"
        );
        assert_eq!(skipped_in(&text), p.skipped, "the notes travel with the text");

        // Only skipped names: nothing to install, the notes still travel.
        let s = policy.spec_from_eval(serde_json::from_str(r#"{"code":"x"}"#).unwrap()).unwrap().0;
        std::fs::write(dir.path().join("main.py"), "import reqeusts").unwrap();
        let p = plan(&s, dir.path(), stdlib);
        assert!(!p.installs_anything());
        assert_eq!(
            p.requirements_txt().as_deref(),
            Some("# pyexec: skipped reqeusts: not on the auto-install allow-list (PYEXEC_AUTO_INSTALL_ALLOW)")
        );
        assert_eq!(spec(r#"{"code":"x"}"#).auto_install, AutoInstall::Any, "the default allows any name");
    }

    #[test]
    fn allow_lists_are_read_from_files() {
        let list =
            AutoInstall::parse_list("# ours\nMy_Package\n  other.pkg  # why\n\n@builtin\n", "allow.txt").unwrap();
        assert!(list.allows("my-package") && list.allows("Other-Pkg") && list.allows("numpy") && list.allows("Pillow"));
        assert!(!list.allows("reqeusts"));
        let e = AutoInstall::parse_list("six\nnot a name\n", "allow.txt").unwrap_err().to_string();
        assert!(e.contains("allow.txt, line 2") && e.contains("\"not a name\""), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("allow.txt");
        std::fs::write(&path, "six\n").unwrap();
        let loaded = AutoInstall::load(path.to_str().unwrap()).unwrap();
        assert!(loaded.allows("six") && !loaded.allows("numpy"));
        assert_eq!(AutoInstall::load("any").unwrap(), AutoInstall::Any);
        assert!(AutoInstall::load("builtin").unwrap().allows("scikit-learn"));
        assert!(
            AutoInstall::load("/nonexistent/allow.txt").unwrap_err().to_string().contains("/nonexistent/allow.txt")
        );
        let empty = AutoInstall::parse_list("# nothing\n", "x").unwrap();
        assert!(!empty.allows("six"), "an empty list allows nothing");
    }

    #[test]
    fn the_rule_is_stored_with_the_spec() {
        let list = AutoInstall::only(["Six", "numpy"]);
        let json = serde_json::to_string(&list).unwrap();
        assert_eq!(json, r#"{"only":["numpy","six"]}"#);
        assert_eq!(serde_json::from_str::<AutoInstall>(&json).unwrap(), list);
        assert_eq!(serde_json::to_string(&AutoInstall::Any).unwrap(), r#""any""#);
        let mut s = spec(r#"{"code":"x"}"#);
        s.auto_install = list.clone();
        let back: ExecutionSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back.auto_install, list);
        let mut old = serde_json::to_value(&s).unwrap();
        old.as_object_mut().unwrap().remove("auto_install");
        assert_eq!(serde_json::from_value::<ExecutionSpec>(old).unwrap().auto_install, AutoInstall::Any);
    }

    #[test]
    fn a_users_own_markers_do_not_make_requirements_skippable() {
        let p = InstallPlan {
            required: "six  # pyexec: optional\n# pyexec: skipped six: forged\nnumpy # keep".into(),
            ..InstallPlan::default()
        };
        assert_eq!(p.requirements_txt().as_deref(), Some("six\nnumpy # keep"));
        assert!(skipped_in(&p.requirements_txt().unwrap()).is_empty());
        assert!(is_distribution_name("a") && is_distribution_name("zope.interface") && is_distribution_name("A_b-2"));
        assert!(
            !is_distribution_name("café")
                && !is_distribution_name("-x")
                && !is_distribution_name("x.")
                && !is_distribution_name("")
        );
    }

    #[test]
    fn a_projects_requirements_txt_is_used_when_the_request_has_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.py"), "import requests").unwrap();
        std::fs::write(dir.path().join("requirements.txt"), "requests==2.32.3\n").unwrap();
        let exec = crate::Policy::default().spec_from_metadata(Default::default()).unwrap();
        assert_eq!(resolve(&exec, dir.path(), stdlib).as_deref(), Some("requests==2.32.3"));
        let mut exec = exec;
        exec.requirements = Requirements::Listed("six".into());
        assert_eq!(resolve(&exec, dir.path(), stdlib).as_deref(), Some("six"), "the request wins");
        exec.requirements = Requirements::Nothing;
        assert_eq!(resolve(&exec, dir.path(), stdlib), None, "\"-\" installs nothing");
    }
}
