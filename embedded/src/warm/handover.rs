//! The work a warm interpreter reads from its standard input when it is claimed (see the eval runner's `--warm`
//! mode): one line with the byte length of a JSON header, the header, then the files' bytes; the program's own
//! standard input follows. The header carries the environment and arguments the cold run would have had, whether
//! to evaluate the last expression, and the workspace as entries (`d` directories, `f` files with mode and size,
//! `l` symbolic links, recreated as links exactly as the cold path's copy does), parents before children.

use std::path::Path;

use serde::Serialize;

/// One entry of the workspace.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "t")]
enum Entry {
    #[serde(rename = "d")]
    Dir { p: String },
    #[serde(rename = "f")]
    File { p: String, m: u32, n: u64 },
    #[serde(rename = "l")]
    Link { p: String, to: String },
}

#[derive(Serialize)]
struct Header<'a> {
    env: &'a [(String, String)],
    argv: &'a [String],
    eval: bool,
    files: Vec<Entry>,
}

/// Why a workspace is not handed over (the run goes cold instead).
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandoverError {
    /// More bytes than a hand-over carries.
    #[error("the workspace is larger than a warm hand-over carries")]
    TooLarge,
    /// Deeper than the sandbox copies.
    #[error("the workspace is nested too deeply")]
    TooDeep,
    /// The entrypoint is not a regular file of the workspace.
    #[error("the entrypoint is not a regular file")]
    Entrypoint,
    /// A name that is not UTF-8 (the header is JSON).
    #[error("a workspace name is not UTF-8")]
    Name,
    /// Reading the workspace failed.
    #[error("reading the workspace: {0}")]
    Io(#[from] std::io::Error),
}

/// The message for a run over `workspace` (the program's standard input follows it on the pipe). At most
/// `max_bytes` of files are read.
pub(crate) fn message(
    workspace: &Path,
    env: &[(String, String)],
    argv: &[String],
    evaluate: bool,
    max_bytes: u64,
) -> Result<Vec<u8>, HandoverError> {
    let mut entries = Vec::new();
    let mut contents = Vec::new();
    walk(workspace, "", 0, max_bytes, &mut entries, &mut contents)?;
    let header = serde_json::to_vec(&Header { env, argv, eval: evaluate, files: entries })
        .map_err(|e| HandoverError::Io(std::io::Error::other(e)))?;
    let mut out = Vec::with_capacity(header.len() + contents.len() + 24);
    out.extend_from_slice(format!("{}\n", header.len()).as_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&contents);
    Ok(out)
}

fn walk(
    dir: &Path,
    prefix: &str,
    depth: u32,
    max_bytes: u64,
    entries: &mut Vec<Entry>,
    contents: &mut Vec<u8>,
) -> Result<(), HandoverError> {
    if depth > pyexec_sandbox::MAX_WORKSPACE_DEPTH {
        return Err(HandoverError::TooDeep);
    }
    let mut children: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    children.sort_by_key(std::fs::DirEntry::file_name);
    for child in children {
        let name = child.file_name().into_string().map_err(|_| HandoverError::Name)?;
        let path = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let meta = std::fs::symlink_metadata(child.path())?;
        let kind = meta.file_type();
        if kind.is_dir() {
            entries.push(Entry::Dir { p: path.clone() });
            walk(&child.path(), &path, depth + 1, max_bytes, entries, contents)?;
        } else if kind.is_symlink() {
            let to =
                std::fs::read_link(child.path())?.into_os_string().into_string().map_err(|_| HandoverError::Name)?;
            entries.push(Entry::Link { p: path, to });
        } else if kind.is_file() {
            if contents.len() as u64 + meta.len() > max_bytes {
                return Err(HandoverError::TooLarge);
            }
            let bytes = std::fs::read(child.path())?;
            if contents.len() as u64 + bytes.len() as u64 > max_bytes {
                return Err(HandoverError::TooLarge);
            }
            use std::os::unix::fs::PermissionsExt;
            // The cold path's copy keeps the owner's execute bit and makes files readable (see the sandbox's copy).
            let m = (meta.permissions().mode() & 0o755) | 0o644;
            entries.push(Entry::File { p: path, m, n: bytes.len() as u64 });
            contents.extend_from_slice(&bytes);
        }
        // Other kinds (sockets, devices, fifos) are skipped, as the cold path's copy skips them.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(msg: &[u8]) -> (serde_json::Value, &[u8]) {
        let nl = msg.iter().position(|&b| b == b'\n').unwrap();
        let len: usize = std::str::from_utf8(&msg[..nl]).unwrap().parse().unwrap();
        let header = serde_json::from_slice(&msg[nl + 1..nl + 1 + len]).unwrap();
        (header, &msg[nl + 1 + len..])
    }

    #[test]
    fn files_links_and_dirs_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.py"), "print(1)").unwrap();
        std::fs::create_dir(dir.path().join("pkg")).unwrap();
        std::fs::write(dir.path().join("pkg/data.csv"), "a,b\n").unwrap();
        std::os::unix::fs::symlink("main.py", dir.path().join("alias.py")).unwrap();
        let env = vec![("A".to_string(), "1".to_string())];
        let argv = vec!["/work/main.py".to_string(), "x".to_string()];
        let msg = message(dir.path(), &env, &argv, true, 1 << 20).unwrap();
        let (header, rest) = split(&msg);
        assert_eq!(header["env"], serde_json::json!([["A", "1"]]));
        assert_eq!(header["argv"], serde_json::json!(["/work/main.py", "x"]));
        assert_eq!(header["eval"], true);
        assert_eq!(
            header["files"],
            serde_json::json!([
                {"t": "l", "p": "alias.py", "to": "main.py"},
                {"t": "f", "p": "main.py", "m": 0o644, "n": 8},
                {"t": "d", "p": "pkg"},
                {"t": "f", "p": "pkg/data.csv", "m": 0o644, "n": 4},
            ])
        );
        assert_eq!(rest, b"print(1)a,b\n");
    }

    #[test]
    fn large_workspaces_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), vec![0u8; 2048]).unwrap();
        assert!(matches!(message(dir.path(), &[], &[], false, 1024), Err(HandoverError::TooLarge)));
        assert!(message(dir.path(), &[], &[], false, 4096).is_ok());
    }
}
