//! What an execution needs installed, the same for every backend: the request's `requirements_txt`, else the
//! project's own `requirements.txt`, merged (for `/eval`) with the third-party imports of its code; `"-"`:
//! nothing at all.

use std::path::Path;

use crate::imports::{detect_requirements, merge_requirements};
use crate::spec::{ExecutionSpec, Requirements};

/// Largest `requirements.txt` read from a project.
const MAX_REQUIREMENTS_BYTES: u64 = 64 << 10;
/// Import detection reads at most this much code (eval projects are at most 100 KB).
const MAX_SCANNED_BYTES: u64 = 4 << 20;

/// The requirements to install for `spec` over the files in `workspace`, or `None` when there are none.
/// `is_stdlib` says whether a top-level module belongs to the target interpreter's standard library.
pub fn resolve(spec: &ExecutionSpec, workspace: &Path, is_stdlib: impl Fn(&str) -> bool) -> Option<String> {
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
        detect_requirements(files.iter().map(|(p, c)| (p.as_str(), c.as_str())), &entry_dir, is_stdlib)
    } else {
        Vec::new()
    };
    let merged = merge_requirements(&detected, &user);
    let named = merged.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    named.then_some(merged)
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
        assert_eq!(resolve(&s, dir.path(), stdlib).as_deref(), Some("numpy==2.0\nPyYAML"));
        let s = spec(r#"{"code":"x","requirements_txt":"-"}"#);
        assert_eq!(resolve(&s, dir.path(), stdlib), None, "\"-\" turns detection off");
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
