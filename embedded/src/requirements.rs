//! What an execution needs installed: the request's `requirements_txt`, else the project's own
//! `requirements.txt`, merged (for `/eval`) with the third-party imports of its code.

use std::path::Path;

use pyexec_core::imports::{detect_requirements, merge_requirements};
use pyexec_core::{ExecutionSpec, Requirements};

use crate::interpreters::Interpreter;

/// Largest `requirements.txt` read from a project.
const MAX_REQUIREMENTS_BYTES: u64 = 64 << 10;
/// Import detection reads at most this much code (eval projects are at most 100 KB).
const MAX_SCANNED_BYTES: u64 = 4 << 20;

/// The requirements to install, or `None` when there are none.
pub fn resolve(spec: &ExecutionSpec, workspace: &Path, interpreter: &Interpreter) -> Option<String> {
    let user = match &spec.requirements {
        Requirements::Nothing => return None,
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
        detect_requirements(files.iter().map(|(p, c)| (p.as_str(), c.as_str())), &entry_dir, |m| {
            interpreter.stdlib.contains(m)
        })
    } else {
        Vec::new()
    };
    let merged = merge_requirements(&detected, &user);
    (!crate::environments::normalize(&merged).is_empty()).then_some(merged)
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
    use std::collections::BTreeSet;
    use std::sync::Arc;

    fn interpreter() -> Interpreter {
        Interpreter {
            version: pyexec_core::PythonVersion { minor: 12 },
            full_version: "3.12.0".into(),
            executable: "/usr/bin/python3.12".into(),
            binds: Vec::new(),
            source: "config",
            stdlib: Arc::new(["os", "json", "sys"].iter().map(|s| s.to_string()).collect::<BTreeSet<_>>()),
        }
    }

    fn spec(json: &str) -> ExecutionSpec {
        pyexec_core::Policy::default().spec_from_eval(serde_json::from_str(json).unwrap()).unwrap().0
    }

    #[test]
    fn detected_imports_merge_with_the_request() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.py"), "import os, numpy\nfrom helper import x\nimport yaml").unwrap();
        std::fs::write(dir.path().join("helper.py"), "import json").unwrap();
        let s = spec(r#"{"code":"x","requirements_txt":"numpy==2.0"}"#);
        assert_eq!(resolve(&s, dir.path(), &interpreter()).as_deref(), Some("numpy==2.0\nPyYAML"));
        let s = spec(r#"{"code":"x","requirements_txt":"-"}"#);
        assert_eq!(resolve(&s, dir.path(), &interpreter()), None, "\"-\" turns detection off");
    }

    #[test]
    fn a_projects_requirements_txt_is_used_when_the_request_has_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.py"), "import requests").unwrap();
        std::fs::write(dir.path().join("requirements.txt"), "requests==2.32.3\n").unwrap();
        let exec = pyexec_core::Policy::default().spec_from_metadata(Default::default()).unwrap();
        assert_eq!(resolve(&exec, dir.path(), &interpreter()).as_deref(), Some("requests==2.32.3"));
        let mut exec = exec;
        exec.requirements = Requirements::Listed("six".into());
        assert_eq!(resolve(&exec, dir.path(), &interpreter()).as_deref(), Some("six"), "the request wins");
        exec.requirements = Requirements::Nothing;
        assert_eq!(resolve(&exec, dir.path(), &interpreter()), None, "\"-\" installs nothing");
    }
}
