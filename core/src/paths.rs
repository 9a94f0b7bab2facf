//! Paths inside the workspace: relative, normalised, never escaping it.

use std::path::{Component, Path};

/// Where the workspace is mounted in every sandbox and Pod.
pub const WORKSPACE_DIR: &str = "/work";

/// Longest path accepted inside the workspace (Linux `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;

/// Most components a workspace path may have (`a/b/c.py` has 3). The sandbox copies the workspace recursively to
/// a bounded depth (`pyexec_sandbox::MAX_WORKSPACE_DEPTH` directories, more than this), so whatever is accepted
/// here is also copied; a test of the embedded backend keeps the two in step.
pub const MAX_PATH_DEPTH: usize = 100;

/// Why a path is not a safe workspace-relative path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelativePathError {
    /// Empty, or only `.` components.
    #[error("path is empty")]
    Empty,
    /// Starts with `/`.
    #[error("absolute paths are not allowed")]
    Absolute,
    /// Contains a `..` component.
    #[error("'..' is not allowed")]
    ParentDir,
    /// Contains a NUL byte.
    #[error("path contains a NUL character")]
    Nul,
    /// Longer than [`MAX_PATH_BYTES`].
    #[error("path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    /// More than [`MAX_PATH_DEPTH`] components.
    #[error("path is nested deeper than {MAX_PATH_DEPTH} levels")]
    TooDeep,
}

/// Normalises `a/./b//c` to `a/b/c`, rejecting absolute paths, `..` and NUL.
pub fn normalize_relative_path(path: &str) -> Result<String, RelativePathError> {
    if path.contains('\0') {
        return Err(RelativePathError::Nul);
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(RelativePathError::TooLong);
    }
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str().ok_or(RelativePathError::Nul)?),
            Component::CurDir => {}
            Component::ParentDir => return Err(RelativePathError::ParentDir),
            Component::RootDir | Component::Prefix(_) => return Err(RelativePathError::Absolute),
        }
    }
    if parts.is_empty() {
        return Err(RelativePathError::Empty);
    }
    if parts.len() > MAX_PATH_DEPTH {
        return Err(RelativePathError::TooDeep);
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_rejects() {
        assert_eq!(normalize_relative_path("./a//b/./c.py").unwrap(), "a/b/c.py");
        assert_eq!(normalize_relative_path("main.py/").unwrap(), "main.py");
        assert_eq!(normalize_relative_path("/etc/passwd"), Err(RelativePathError::Absolute));
        assert_eq!(normalize_relative_path("a/../b"), Err(RelativePathError::ParentDir));
        assert_eq!(normalize_relative_path("."), Err(RelativePathError::Empty));
        assert_eq!(normalize_relative_path(""), Err(RelativePathError::Empty));
        assert_eq!(normalize_relative_path("a\0b"), Err(RelativePathError::Nul));
        assert_eq!(normalize_relative_path(&"a".repeat(5000)), Err(RelativePathError::TooLong));
        let deepest = vec!["d"; MAX_PATH_DEPTH].join("/");
        assert_eq!(normalize_relative_path(&deepest).unwrap(), deepest);
        assert_eq!(normalize_relative_path(&format!("{deepest}/x")), Err(RelativePathError::TooDeep));
        assert_eq!(normalize_relative_path(&format!("./{deepest}/.")).unwrap(), deepest, "only real components count");
    }
}
