//! Building an execution's workspace on disk: from an uploaded tar stream (plain or gzip) or from `/eval` files.
//!
//! Archives are untrusted. Entries are streamed straight to their files (the archive is never held in memory), and
//! every entry is checked before anything is written: no absolute paths, no `..`, nothing through a symbolic link,
//! no link whose target resolves outside the workspace (checked again once the whole archive is in, so a later
//! link cannot change where an earlier one points), no devices or FIFOs, and caps on total size and entry count.
//! Written files get modes 0644/0755 and directories 0755 whatever the archive says (no set-id bits, and readable
//! by the unprivileged sandbox user).

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::rc::Rc;

use crate::model::CodeFile;
use crate::paths::{RelativePathError, normalize_relative_path};

/// Caps on what one archive may put into a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// Sum of the sizes of all files, bytes.
    pub max_bytes: u64,
    /// Number of entries (files, directories and links).
    pub max_entries: u64,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self { max_bytes: 1 << 30, max_entries: 100_000 }
    }
}

/// What was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestSummary {
    /// Regular files (hard links included).
    pub files: u64,
    /// Directories.
    pub directories: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// Why a workspace could not be built.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// The archive or a file is unacceptable (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// Over a size or count cap (HTTP 413).
    #[error("{0}")]
    TooLarge(String),
    /// The server could not write the workspace (HTTP 500).
    #[error("writing the workspace: {0}")]
    Io(#[from] io::Error),
}

/// Metadata (headers, long names, PAX records) one entry may carry; real archives use a few hundred bytes.
const MAX_ENTRY_METADATA_BYTES: u64 = 1 << 20;
/// Symbolic-link hops followed when checking where a link resolves (as the kernel's limit).
const MAX_LINK_HOPS: usize = 40;

/// What every refusal of an upload that is not a tar archive asks for instead.
pub const ACCEPTED_ARCHIVES: &str = "upload a tar archive (.tar, or gzip-compressed .tar.gz)";

/// Bytes read ahead to recognise the upload's format (the longest signature below).
const SIGNATURE_BYTES: usize = 6;

/// Streams a tar archive (gzip-compressed or not, detected from its first bytes) into `dest`, an existing empty
/// directory. Other formats (zip, 7z, RAR, bzip2, xz, zstd) and data that is not a tar archive are refused with a
/// message that names what to upload instead ([`ACCEPTED_ARCHIVES`]).
pub fn ingest_tar<R: Read>(mut reader: R, dest: &Path, limits: IngestLimits) -> Result<IngestSummary, WorkspaceError> {
    // Read ahead until the signature is complete: an upload's first chunk may be shorter than it.
    let mut head = Vec::with_capacity(SIGNATURE_BYTES);
    (&mut reader).take(SIGNATURE_BYTES as u64).read_to_end(&mut head)?;
    if let Some(format) = other_format(&head) {
        return Err(WorkspaceError::Invalid(format!("the archive is {format}; {ACCEPTED_ARCHIVES}")));
    }
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    let buffered = BufReader::with_capacity(64 * 1024, io::Cursor::new(head).chain(reader));
    let budget = Rc::new(Cell::new(None));
    if gzip {
        let decoder = flate2::bufread::MultiGzDecoder::new(buffered);
        extract(Budgeted { inner: decoder, budget: budget.clone() }, budget, dest, limits, Format::Gzip)
    } else {
        extract(Budgeted { inner: buffered, budget: budget.clone() }, budget, dest, limits, Format::Plain)
    }
}

/// The formats people upload by mistake, recognised by their first bytes: archives of other kinds, and tars
/// compressed with something other than gzip.
fn other_format(magic: &[u8]) -> Option<&'static str> {
    const SIGNATURES: [(&[u8], &str); 8] = [
        (b"PK\x03\x04", "a zip file"),
        // An empty zip, and one written in spanned mode.
        (b"PK\x05\x06", "a zip file"),
        (b"PK\x07\x08", "a zip file"),
        (b"7z\xbc\xaf\x27\x1c", "a 7z file"),
        (b"Rar!\x1a\x07", "a RAR file"),
        (b"BZh", "bzip2-compressed"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz-compressed"),
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd-compressed"),
    ];
    SIGNATURES.iter().find(|(signature, _)| magic.starts_with(signature)).map(|(_, format)| *format)
}

/// How the tar stream reached the parser, for the message when it is not a tar archive at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Plain,
    Gzip,
}

/// A reader that limits how many bytes the tar parser may consume on its own (headers and extension records,
/// which it buffers in memory) between two entries. File content is read by us, with the budget lifted.
struct Budgeted<R> {
    inner: R,
    budget: Rc<Cell<Option<u64>>>,
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(left) = self.budget.get() {
            let left = left.checked_sub(n as u64).ok_or_else(|| io::Error::other(MetadataTooLarge))?;
            self.budget.set(Some(left));
        }
        Ok(n)
    }
}

#[derive(Debug)]
struct MetadataTooLarge;

impl std::fmt::Display for MetadataTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "an archive entry carries more than {MAX_ENTRY_METADATA_BYTES} bytes of headers")
    }
}

impl std::error::Error for MetadataTooLarge {}

/// The state of one extraction: what exists so far, by normalised relative path.
#[derive(Default)]
struct Extraction {
    dirs: HashSet<String>,
    files: HashSet<String>,
    symlinks: HashMap<String, String>,
    summary: IngestSummary,
}

fn extract<R: Read>(
    reader: R,
    budget: Rc<Cell<Option<u64>>>,
    dest: &Path,
    limits: IngestLimits,
    format: Format,
) -> Result<IngestSummary, WorkspaceError> {
    let mut archive = tar::Archive::new(reader);
    let mut state = Extraction::default();
    let mut entries = archive.entries().map_err(corrupt)?;
    let mut count = 0u64;
    loop {
        budget.set(Some(MAX_ENTRY_METADATA_BYTES));
        let next = entries.next();
        budget.set(None);
        let Some(entry) = next else { break };
        // A first header that does not parse means the upload is not a tar archive at all: the parser's own words
        // would then quote bytes of whatever it is.
        let mut entry = entry.map_err(|e| if count == 0 { not_a_tar(e, format) } else { corrupt(e) })?;
        count += 1;
        if count > limits.max_entries {
            return Err(WorkspaceError::TooLarge(format!("the archive has more than {} entries", limits.max_entries)));
        }
        let raw_path = entry.path().map_err(corrupt)?;
        let raw_path = raw_path
            .to_str()
            .ok_or_else(|| invalid(&raw_path.to_string_lossy(), "file names must be UTF-8"))?
            .to_owned();
        let kind = entry.header().entry_type();
        let path = match normalize_relative_path(&raw_path) {
            Ok(p) => p,
            // `tar -C dir .` writes a "./" entry for the root itself.
            Err(RelativePathError::Empty) if kind.is_dir() => continue,
            Err(e) => return Err(invalid(&raw_path, &e.to_string())),
        };
        state.check_not_through_symlink(&path)?;
        match kind {
            k if k.is_file() || k == tar::EntryType::Continuous => {
                let size = entry.header().size().map_err(corrupt)?;
                if state.summary.bytes.saturating_add(size) > limits.max_bytes {
                    return Err(WorkspaceError::TooLarge(format!(
                        "the archive unpacks to more than {} bytes",
                        limits.max_bytes
                    )));
                }
                let executable = entry.header().mode().map(|m| m & 0o111 != 0).unwrap_or(false);
                let written = state.write_file(dest, &path, executable, &mut entry)?;
                state.summary.bytes += written;
            }
            k if k.is_dir() => state.make_dir(dest, &path)?,
            k if k.is_symlink() => {
                let target = link_target(&entry, &raw_path)?;
                state.make_symlink(dest, &path, &target)?;
            }
            k if k.is_hard_link() => {
                let target = link_target(&entry, &raw_path)?;
                state.make_hard_link(dest, &path, &target)?;
            }
            k if k.is_pax_global_extensions() => {}
            k if k.is_character_special() || k.is_block_special() || k.is_fifo() => {
                return Err(invalid(&raw_path, "device and FIFO entries are not allowed"));
            }
            other => return Err(invalid(&raw_path, &format!("unsupported entry type {other:?}"))),
        }
    }
    // A link added later may have changed where an earlier one resolves: check them all against the final tree.
    for (path, target) in &state.symlinks {
        state.resolve_inside(path, target)?;
    }
    Ok(state.summary)
}

impl Extraction {
    fn check_not_through_symlink(&self, path: &str) -> Result<(), WorkspaceError> {
        for (i, _) in path.match_indices('/') {
            if self.symlinks.contains_key(&path[..i]) {
                return Err(invalid(path, "the path goes through a symbolic link"));
            }
        }
        Ok(())
    }

    fn ensure_parent(&mut self, dest: &Path, path: &str) -> Result<(), WorkspaceError> {
        if let Some((parent, _)) = path.rsplit_once('/')
            && !self.dirs.contains(parent)
        {
            self.make_dir(dest, parent)?;
        }
        Ok(())
    }

    fn make_dir(&mut self, dest: &Path, path: &str) -> Result<(), WorkspaceError> {
        if self.dirs.contains(path) {
            return Ok(());
        }
        if self.files.contains(path) || self.symlinks.contains_key(path) {
            return Err(invalid(path, "a directory conflicts with an earlier file or link"));
        }
        self.ensure_parent(dest, path)?;
        let full = dest.join(path);
        fs::create_dir(&full)?;
        fs::set_permissions(&full, fs::Permissions::from_mode(0o755))?;
        self.dirs.insert(path.to_owned());
        self.summary.directories += 1;
        Ok(())
    }

    /// Removes an earlier file or link at `path` (later entries replace earlier ones, as `tar -x` does).
    fn replace(&mut self, dest: &Path, path: &str) -> Result<(), WorkspaceError> {
        if self.dirs.contains(path) {
            return Err(invalid(path, "a file conflicts with an earlier directory"));
        }
        if self.files.remove(path) {
            self.summary.files -= 1;
            fs::remove_file(dest.join(path))?;
        } else if self.symlinks.remove(path).is_some() {
            self.summary.symlinks -= 1;
            fs::remove_file(dest.join(path))?;
        }
        Ok(())
    }

    fn write_file(
        &mut self,
        dest: &Path,
        path: &str,
        executable: bool,
        content: &mut impl Read,
    ) -> Result<u64, WorkspaceError> {
        self.replace(dest, path)?;
        self.ensure_parent(dest, path)?;
        let mode = if executable { 0o755 } else { 0o644 };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            // Never write through a link planted at the final component.
            .custom_flags(libc::O_NOFOLLOW)
            .open(dest.join(path))?;
        let written = io::copy(content, &mut file).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData => corrupt(e),
            _ => WorkspaceError::Io(e),
        })?;
        // The process umask may have cleared bits of `mode`.
        fs::set_permissions(dest.join(path), fs::Permissions::from_mode(mode))?;
        self.files.insert(path.to_owned());
        self.summary.files += 1;
        Ok(written)
    }

    fn make_symlink(&mut self, dest: &Path, path: &str, target: &str) -> Result<(), WorkspaceError> {
        self.resolve_inside(path, target)?;
        self.replace(dest, path)?;
        self.ensure_parent(dest, path)?;
        std::os::unix::fs::symlink(target, dest.join(path))?;
        self.symlinks.insert(path.to_owned(), target.to_owned());
        self.summary.symlinks += 1;
        Ok(())
    }

    fn make_hard_link(&mut self, dest: &Path, path: &str, target: &str) -> Result<(), WorkspaceError> {
        let target =
            normalize_relative_path(target).map_err(|e| invalid(path, &format!("hard link target {target:?}: {e}")))?;
        if !self.files.contains(&target) {
            return Err(invalid(path, &format!("hard link target {target:?} is not a file of the archive")));
        }
        if target == path {
            return Ok(());
        }
        self.replace(dest, path)?;
        self.ensure_parent(dest, path)?;
        fs::hard_link(dest.join(&target), dest.join(path))?;
        self.files.insert(path.to_owned());
        self.summary.files += 1;
        Ok(())
    }

    /// Resolves `target` as the kernel would from the link at `link`'s directory, following the archive's own
    /// links, and fails if any step leaves the workspace.
    fn resolve_inside(&self, link: &str, target: &str) -> Result<(), WorkspaceError> {
        let escape = || invalid(link, &format!("symbolic link target {target:?} leaves the workspace"));
        if target.is_empty() || target.starts_with('/') || target.contains('\0') {
            return Err(escape());
        }
        let mut current: Vec<String> = link.split('/').map(str::to_owned).collect();
        current.pop();
        let mut pending: Vec<String> = target.split('/').rev().map(str::to_owned).collect();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                "" | "." => {}
                ".." => {
                    current.pop().ok_or_else(escape)?;
                }
                name => {
                    current.push(name.to_owned());
                    if let Some(next) = self.symlinks.get(&current.join("/")) {
                        hops += 1;
                        if hops > MAX_LINK_HOPS || next.starts_with('/') {
                            return Err(escape());
                        }
                        current.pop();
                        pending.extend(next.split('/').rev().map(str::to_owned));
                    }
                }
            }
        }
        Ok(())
    }
}

fn link_target<R: Read>(entry: &tar::Entry<'_, R>, raw_path: &str) -> Result<String, WorkspaceError> {
    let target = entry.link_name().map_err(corrupt)?.ok_or_else(|| invalid(raw_path, "link without a target"))?;
    target.to_str().map(str::to_owned).ok_or_else(|| invalid(raw_path, "link targets must be UTF-8"))
}

fn invalid(path: &str, why: &str) -> WorkspaceError {
    WorkspaceError::Invalid(format!("invalid archive entry {path:?}: {why}"))
}

/// The upload's first block is not a tar header.
fn not_a_tar(e: io::Error, format: Format) -> WorkspaceError {
    if e.get_ref().is_some_and(|inner| inner.is::<MetadataTooLarge>()) {
        return WorkspaceError::TooLarge(MetadataTooLarge.to_string());
    }
    let what = match format {
        Format::Plain => "the upload does not start with a tar header",
        Format::Gzip => "the gzip-compressed upload does not hold a tar archive (or is corrupt)",
    };
    WorkspaceError::Invalid(format!("invalid tar archive: {what}; {ACCEPTED_ARCHIVES}"))
}

fn corrupt(e: io::Error) -> WorkspaceError {
    if e.get_ref().is_some_and(|inner| inner.is::<MetadataTooLarge>()) {
        return WorkspaceError::TooLarge(MetadataTooLarge.to_string());
    }
    WorkspaceError::Invalid(format!("invalid tar archive: {e}"))
}

/// Creates an empty workspace directory readable by everyone. Sandboxes copy the workspace as their unprivileged
/// user, so directories must be 0755 and files 0644 (what [`ingest_tar`] and [`write_files`] produce); keep the
/// workspace inside a directory only the server can enter if other host users must not read uploads.
pub fn create_dir(path: &Path) -> io::Result<()> {
    fs::create_dir(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

/// Writes `/eval` files (already validated names) into `dest`.
pub fn write_files(files: &[CodeFile], dest: &Path) -> Result<IngestSummary, WorkspaceError> {
    let mut state = Extraction::default();
    for file in files {
        let path = normalize_relative_path(&file.name).map_err(|e| invalid(&file.name, &e.to_string()))?;
        let written = state.write_file(dest, &path, false, &mut file.content.as_bytes())?;
        state.summary.bytes += written;
    }
    Ok(state.summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_tar::RawTar;

    fn ingest(bytes: &[u8]) -> (tempfile::TempDir, Result<IngestSummary, WorkspaceError>) {
        let dir = tempfile::tempdir().unwrap();
        let r = ingest_tar(bytes, dir.path(), IngestLimits::default());
        (dir, r)
    }

    fn rejected(bytes: &[u8], needle: &str) {
        let (_dir, r) = ingest(bytes);
        match r {
            Err(WorkspaceError::Invalid(msg)) => assert!(msg.contains(needle), "{msg:?} lacks {needle:?}"),
            other => panic!("expected rejection containing {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn extracts_files_dirs_and_inner_links() {
        let tar = RawTar::new()
            .entry("./", b'5', "", b"")
            .file("./main.py", "import pkg.util\n")
            .entry("pkg/", b'5', "", b"")
            .file("pkg/util.py", "X = 1\n")
            .entry("pkg/alias.py", b'2', "util.py", b"")
            .entry("copy.py", b'1', "pkg/util.py", b"")
            .done();
        let (dir, r) = ingest(&tar);
        let s = r.unwrap();
        assert_eq!((s.files, s.directories, s.symlinks, s.bytes), (3, 1, 1, 22));
        assert_eq!(fs::read_to_string(dir.path().join("pkg/alias.py")).unwrap(), "X = 1\n");
        assert_eq!(fs::read_to_string(dir.path().join("copy.py")).unwrap(), "X = 1\n");
        let mode = fs::metadata(dir.path().join("main.py")).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o644);
    }

    #[test]
    fn gzip_is_detected() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let tar = RawTar::new().file("main.py", "print(1)\n").done();
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&tar).unwrap();
        let (dir, r) = ingest(&gz.finish().unwrap());
        assert_eq!(r.unwrap().files, 1);
        assert_eq!(fs::read_to_string(dir.path().join("main.py")).unwrap(), "print(1)\n");
    }

    #[test]
    fn rejects_traversal_and_absolute_paths() {
        rejected(&RawTar::new().file("../evil.py", "x").done(), "'..' is not allowed");
        rejected(&RawTar::new().file("a/../../evil.py", "x").done(), "'..' is not allowed");
        rejected(&RawTar::new().file("/etc/cron.d/evil", "x").done(), "absolute paths");
    }

    #[test]
    fn rejects_links_out_and_writes_through_links() {
        rejected(&RawTar::new().entry("l", b'2', "/etc", b"").done(), "leaves the workspace");
        rejected(&RawTar::new().entry("l", b'2', "../../etc/passwd", b"").done(), "leaves the workspace");
        rejected(&RawTar::new().entry("d/l", b'2', "../..", b"").done(), "leaves the workspace");
        // A symlink to a directory inside, then a file through it.
        rejected(
            &RawTar::new().entry("sub/", b'5', "", b"").entry("l", b'2', "sub", b"").file("l/x.py", "x").done(),
            "goes through a symbolic link",
        );
        // An in-workspace link made to point outside by a later link.
        rejected(
            &RawTar::new().entry("x", b'2', "y/..", b"").entry("y", b'2', ".", b"").done(),
            "leaves the workspace",
        );
        rejected(&RawTar::new().entry("h", b'1', "/etc/passwd", b"").done(), "absolute paths");
        rejected(&RawTar::new().entry("h", b'1', "missing.py", b"").done(), "not a file of the archive");
    }

    #[test]
    fn rejects_devices_and_fifos() {
        rejected(&RawTar::new().entry("null", b'3', "", b"").done(), "device and FIFO");
        rejected(&RawTar::new().entry("disk", b'4', "", b"").done(), "device and FIFO");
        rejected(&RawTar::new().entry("fifo", b'6', "", b"").done(), "device and FIFO");
    }

    #[test]
    fn rejects_garbage_and_other_formats_naming_what_to_upload() {
        let refusal = |bytes: &[u8]| match ingest(bytes).1 {
            Err(WorkspaceError::Invalid(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(
            refusal(b"this is not a tar archive at all, just some text that is long enough......"),
            "invalid tar archive: the upload does not start with a tar header; upload a tar archive (.tar, or \
             gzip-compressed .tar.gz)"
        );
        assert_eq!(
            refusal(b"PK\x03\x04\x14\x00\x00\x00\x08\x00"),
            "the archive is a zip file; upload a tar archive (.tar, or gzip-compressed .tar.gz)"
        );
        assert!(refusal(b"PK\x05\x06").starts_with("the archive is a zip file; "), "an empty zip");
        assert!(refusal(b"7z\xbc\xaf\x27\x1c\x00\x04").starts_with("the archive is a 7z file; "));
        assert!(refusal(b"Rar!\x1a\x07\x01\x00").starts_with("the archive is a RAR file; "));
        assert_eq!(
            refusal(b"BZh91AY&SY"),
            "the archive is bzip2-compressed; upload a tar archive (.tar, or gzip-compressed .tar.gz)"
        );
        // Not a tar inside gzip either.
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&[b'x'; 600]).unwrap();
        assert!(refusal(&gz.finish().unwrap()).contains("the gzip-compressed upload does not hold a tar archive"));
        // A signature split over the upload's first reads is still recognised.
        let split = io::Cursor::new(b"P".to_vec()).chain(io::Cursor::new(b"K\x03\x04rest".to_vec()));
        let dir = tempfile::tempdir().unwrap();
        let r = ingest_tar(OneByteAtATime(split), dir.path(), IngestLimits::default());
        assert!(matches!(r, Err(WorkspaceError::Invalid(m)) if m.starts_with("the archive is a zip file")));
    }

    /// A reader that hands out one byte per read, as a slow upload may.
    struct OneByteAtATime<R>(R);

    impl<R: Read> Read for OneByteAtATime<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let end = buf.len().min(1);
            self.0.read(&mut buf[..end])
        }
    }

    #[test]
    fn caps_size_and_entries() {
        let dir = tempfile::tempdir().unwrap();
        let tar = RawTar::new().file("a", "12345").file("b", "67890").done();
        let r = ingest_tar(&tar[..], dir.path(), IngestLimits { max_bytes: 8, max_entries: 10 });
        assert!(matches!(r, Err(WorkspaceError::TooLarge(m)) if m.contains("more than 8 bytes")));
        let dir = tempfile::tempdir().unwrap();
        let r = ingest_tar(&tar[..], dir.path(), IngestLimits { max_bytes: 100, max_entries: 1 });
        assert!(matches!(r, Err(WorkspaceError::TooLarge(m)) if m.contains("more than 1 entries")));
    }

    #[test]
    fn later_entries_replace_earlier_files_but_not_directories() {
        let tar = RawTar::new().file("a.py", "old").file("a.py", "new").done();
        let (dir, r) = ingest(&tar);
        assert_eq!(r.unwrap().files, 1);
        assert_eq!(fs::read_to_string(dir.path().join("a.py")).unwrap(), "new");
        rejected(&RawTar::new().entry("d/", b'5', "", b"").file("d", "x").done(), "conflicts");
    }

    #[test]
    fn eval_files_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![
            CodeFile { name: "main.py".into(), content: "from pkg import a\n".into() },
            CodeFile { name: "pkg/a.py".into(), content: "".into() },
        ];
        let s = write_files(&files, dir.path()).unwrap();
        assert_eq!((s.files, s.directories), (2, 1));
        assert!(dir.path().join("pkg/a.py").is_file());
    }
}
