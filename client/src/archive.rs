//! Building the `tar` part of an upload: from code, from files (by base name), from a directory (streamed while it
//! is sent, so a large project never sits whole in memory) or from an existing `.tar` (sent as is).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::{Error, Result};

/// An archive ready to upload, with the entrypoint detected in it (when there is a Python file).
pub struct Archive {
    pub(crate) body: reqwest::Body,
    /// `main.py` > `__main__.py` > the first `.py`, as the original CLI chose.
    pub entrypoint: Option<String>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").field("entrypoint", &self.entrypoint).finish_non_exhaustive()
    }
}

/// The original's `DetectEntrypoint`: the first regular `.py` whose base name is `main.py`, else the first
/// `__main__.py`, else the first `.py`.
pub fn detect_entrypoint<'a>(paths: impl IntoIterator<Item = &'a str> + Clone) -> Option<String> {
    let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_owned();
    let clean = |p: &str| p.trim_start_matches("./").to_owned();
    let pys: Vec<&str> = paths.into_iter().filter(|p| p.ends_with(".py")).collect();
    pys.iter()
        .find(|p| base(p) == "main.py")
        .or_else(|| pys.iter().find(|p| base(p) == "__main__.py"))
        .or_else(|| pys.first())
        .map(|p| clean(p))
}

fn header(size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_cksum();
    h
}

impl Archive {
    /// A raw archive in memory (plain or gzip).
    pub fn from_bytes(tar: Vec<u8>) -> Result<Archive> {
        let entrypoint = entrypoint_of_tar(&tar[..])?;
        Ok(Archive { body: reqwest::Body::from(tar), entrypoint })
    }

    /// Files given by name: `(archive path, content)`.
    pub fn from_memory(files: &[(&str, &[u8])]) -> Result<Archive> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, content) in files {
            builder.append_data(&mut header(content.len() as u64, 0o644), name, *content)?;
        }
        let tar = builder.into_inner()?;
        let entrypoint = detect_entrypoint(files.iter().map(|(n, _)| *n));
        Ok(Archive { body: reqwest::Body::from(tar), entrypoint })
    }

    /// Local files, stored under their base names (directories flattened), as the original `--file` did.
    pub fn from_files(paths: &[PathBuf]) -> Result<Archive> {
        let mut names = Vec::new();
        for p in paths {
            let meta = std::fs::metadata(p).map_err(|e| Error::Input(format!("{}: {e}", p.display())))?;
            if !meta.is_file() {
                return Err(Error::Input(format!("{} is not a file", p.display())));
            }
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| Error::Input(format!("bad file name {}", p.display())))?;
            names.push((name.to_owned(), p.clone()));
        }
        let entrypoint = detect_entrypoint(names.iter().map(|(n, _)| n.as_str()));
        let body = stream_tar(move |builder| {
            for (name, path) in &names {
                let mut file = std::fs::File::open(path)?;
                let meta = file.metadata()?;
                let mode = if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0 {
                    0o755
                } else {
                    0o644
                };
                builder.append_data(&mut header(meta.len(), mode), name, &mut file)?;
            }
            Ok(())
        });
        Ok(Archive { body, entrypoint })
    }

    /// A directory, recursively, with relative paths, directory entries and hidden files; the archive is built
    /// while it is uploaded.
    pub fn from_dir(dir: &Path) -> Result<Archive> {
        if !dir.is_dir() {
            return Err(Error::Input(format!("{} is not a directory", dir.display())));
        }
        let mut files = Vec::new();
        list_files(dir, Path::new(""), &mut files)?;
        let entrypoint = detect_entrypoint(files.iter().map(String::as_str));
        let dir = dir.to_owned();
        let body = stream_tar(move |builder| {
            builder.follow_symlinks(false);
            builder.append_dir_all(".", &dir)
        });
        Ok(Archive { body, entrypoint })
    }

    /// An existing `.tar` (or `.tar.gz`) file, sent as is; its entrypoint is read from its entries.
    pub async fn from_tar_file(path: &Path) -> Result<Archive> {
        let read = |e: io::Error| Error::Input(format!("{}: {e}", path.display()));
        let file = std::fs::File::open(path).map_err(read)?;
        let entrypoint = entrypoint_of_tar(io::BufReader::new(file))
            .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
        let file = tokio::fs::File::open(path).await.map_err(read)?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        Ok(Archive { body, entrypoint })
    }
}

/// Regular files below `dir`, as archive paths, in a stable order.
fn list_files(dir: &Path, prefix: &Path, out: &mut Vec<String>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::Input(format!("{}: {e}", dir.display())))?
        .collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let kind = entry.file_type()?;
        let rel = prefix.join(entry.file_name());
        if kind.is_dir() {
            list_files(&entry.path(), &rel, out)?;
        } else if kind.is_file() {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// Entry paths of a tar (gzip or not), read without holding the data.
fn entrypoint_of_tar<R: Read>(reader: R) -> Result<Option<String>> {
    let mut buffered = io::BufReader::new(reader);
    let gz = io::BufRead::fill_buf(&mut buffered)?.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> =
        if gz { Box::new(flate2::bufread::MultiGzDecoder::new(buffered)) } else { Box::new(buffered) };
    let mut archive = tar::Archive::new(reader);
    let mut names = Vec::new();
    for entry in archive.entries().map_err(|e| Error::Input(format!("not a tar archive: {e}")))? {
        let entry = entry.map_err(|e| Error::Input(format!("not a tar archive: {e}")))?;
        if entry.header().entry_type().is_file() {
            names.push(entry.path()?.to_string_lossy().into_owned());
        }
    }
    Ok(detect_entrypoint(names.iter().map(String::as_str)))
}

/// Writes a tar on a blocking thread into a stream of chunks.
fn stream_tar<F>(build: F) -> reqwest::Body
where
    F: FnOnce(&mut tar::Builder<ChannelWriter>) -> io::Result<()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    std::thread::spawn(move || {
        let writer = ChannelWriter { tx: tx.clone(), buf: Vec::with_capacity(CHUNK) };
        let mut builder = tar::Builder::new(writer);
        let result = build(&mut builder).and_then(|()| builder.into_inner()).and_then(|mut w| w.flush());
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    reqwest::Body::wrap_stream(ReceiverStream::new(rx))
}

const CHUNK: usize = 256 << 10;

/// A `Write` that hands full chunks to the async side.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
            self.tx
                .blocking_send(Ok(chunk))
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "upload cancelled"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entrypoint_detection_follows_the_original() {
        assert_eq!(detect_entrypoint(["./lib/util.py", "./app/main.py", "./__main__.py"]), Some("app/main.py".into()));
        assert_eq!(detect_entrypoint(["a.py", "pkg/__main__.py"]), Some("pkg/__main__.py".into()));
        assert_eq!(detect_entrypoint(["readme.md", "tool.py", "b.py"]), Some("tool.py".into()));
        assert_eq!(detect_entrypoint(["readme.md"]), None);
    }

    #[test]
    fn directories_are_listed_recursively_with_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pkg")).unwrap();
        std::fs::write(dir.path().join("pkg/main.py"), "").unwrap();
        std::fs::write(dir.path().join(".env"), "").unwrap();
        let mut files = Vec::new();
        list_files(dir.path(), Path::new(""), &mut files).unwrap();
        assert_eq!(files, vec![".env", "pkg/main.py"]);
        assert_eq!(Archive::from_dir(dir.path()).unwrap().entrypoint.as_deref(), Some("pkg/main.py"));
    }

    #[test]
    fn tar_entrypoints_are_read_from_the_entries() {
        let a = Archive::from_memory(&[("helper.py", b""), ("main.py", b"print(1)")]).unwrap();
        assert_eq!(a.entrypoint.as_deref(), Some("main.py"));
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(&mut header(0, 0o644), "./src/main.py", &b""[..]).unwrap();
        let tar = b.into_inner().unwrap();
        assert_eq!(entrypoint_of_tar(&tar[..]).unwrap(), Some("src/main.py".into()));
    }
}
