//! Files out: the files a run created or changed under `/work`, as the eval runner reports them.
//!
//! When the host sets [`FILES_FD_ENV`] (and optionally [`FILES_MAX_BYTES_ENV`], [`FILES_MAX_COUNT_ENV`]), the eval
//! runner writes a tar of the regular files that changed to that descriptor when the program ends (by itself or by
//! an exception), and closes it; a run killed (timeout, `os._exit`, out of memory) writes nothing. The tar comes
//! from inside the sandbox, where the program could have written its own: [`read_tar`] trusts nothing in it.

use std::collections::HashMap;
use std::io::{self, Read};

use sha2::{Digest, Sha256};

use crate::model::OutputFile;
use crate::paths::normalize_relative_path;

/// Environment variable naming the descriptor the runner writes the tar of changed files to.
pub const FILES_FD_ENV: &str = "PYEXEC_FILES_FD";
/// Environment variable: most bytes of file content the runner puts in the tar.
pub const FILES_MAX_BYTES_ENV: &str = "PYEXEC_FILES_MAX_BYTES";
/// Environment variable: most files the runner puts in the tar.
pub const FILES_MAX_COUNT_ENV: &str = "PYEXEC_FILES_MAX_COUNT";
/// Environment variable: the directory whose files are collected (default `/work`; set by tests run outside a
/// sandbox).
pub const FILES_ROOT_ENV: &str = "PYEXEC_FILES_ROOT";
/// Default of `PYEXEC_FILES_MAX_BYTES` (docs/sessions.md).
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
/// Default of `PYEXEC_FILES_MAX_COUNT` (docs/sessions.md).
pub const DEFAULT_MAX_COUNT: usize = 1000;
/// The empty member the runner adds last when it left files out.
pub const TRUNCATED_MEMBER: &str = ".pyexec-truncated";

/// Tar overhead one file may add to its content: its header, a PAX header carrying a path of up to
/// [`crate::paths::MAX_PATH_BYTES`], and padding of both to 512-byte blocks. Public because the Pod runner bounds
/// what it reads with the same formula ([`max_archive_bytes`], `pyexec_core::pod::protocol`).
pub const ENTRY_OVERHEAD_BYTES: u64 = 8 << 10;
/// The end-of-archive blocks and the padding of the last record (Python's `tarfile` writes 10 KiB records).
pub const ARCHIVE_OVERHEAD_BYTES: u64 = 20 << 10;

/// The most bytes an honest runner writes for these caps: what a host reading the descriptor should accept
/// before giving up on the tar (anything longer was not written by the runner).
pub fn max_archive_bytes(max_bytes: u64, max_count: usize) -> u64 {
    let entries = u64::try_from(max_count).unwrap_or(u64::MAX).saturating_add(1);
    max_bytes.saturating_add(entries.saturating_mul(ENTRY_OVERHEAD_BYTES)).saturating_add(ARCHIVE_OVERHEAD_BYTES)
}

/// The files of a run, with their content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilesOut {
    /// Each file (path relative to `/work`, size, SHA-256) and its bytes, in the order of the tar.
    pub files: Vec<(OutputFile, Vec<u8>)>,
    /// Some files were left out: by the runner (its marker) or here (over the caps, or an unacceptable path).
    pub truncated: bool,
}

/// Why the tar could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FilesOutError {
    /// Not a tar, or one cut short.
    #[error("invalid files archive: {0}")]
    Invalid(#[from] io::Error),
}

/// Reads the runner's tar of changed files, treating it as hostile.
///
/// - only regular file entries are kept (links, directories, devices are skipped);
/// - a path must be a canonical workspace-relative path (no `..`, not absolute, no empty or `.` component, no NUL,
///   valid UTF-8, within the path limits): an entry with any other path is left out, and `truncated` set;
/// - a path that occurs twice keeps its last entry;
/// - at most `max_count` files and `max_bytes` of content: entries beyond are left out, and `truncated` set
///   (sizes are checked before anything is read, so a huge declared size costs nothing);
/// - the runner's [`TRUNCATED_MEMBER`] sets `truncated`.
///
/// Empty input is an empty result (the runner writes nothing when nothing changed). An error means the bytes are
/// not a well-formed tar.
pub fn read_tar(bytes: &[u8], max_bytes: u64, max_count: usize) -> Result<FilesOut, FilesOutError> {
    let mut truncated = false;
    // Slots rather than a plain list, so that a later entry of the same path can take the earlier one out.
    let mut slots: Vec<Option<(OutputFile, Vec<u8>)>> = Vec::new();
    let mut by_path: HashMap<String, usize> = HashMap::new();
    let (mut count, mut total) = (0usize, 0u64);
    if bytes.is_empty() {
        return Ok(FilesOut::default());
    }
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path_bytes();
        let Ok(raw) = std::str::from_utf8(&raw).map(str::to_owned) else {
            truncated = true;
            continue;
        };
        if raw == TRUNCATED_MEMBER {
            truncated = true;
            continue;
        }
        if !entry.header().entry_type().is_file() {
            continue;
        }
        // The runner writes canonical paths only: anything normalisation would change did not come from it.
        if normalize_relative_path(&raw).ok().as_deref() != Some(raw.as_str()) {
            truncated = true;
            continue;
        }
        if let Some(earlier) = by_path.remove(&raw).and_then(|slot| slots[slot].take()) {
            count -= 1;
            total -= earlier.0.size;
        }
        let size = entry.size();
        if count >= max_count || total.saturating_add(size) > max_bytes {
            truncated = true;
            continue;
        }
        // Never more than what is there, whatever the header declares.
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(usize::MAX).min(bytes.len()));
        (&mut entry).take(size).read_to_end(&mut data)?;
        if u64::try_from(data.len()).ok() != Some(size) {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{raw:?} is cut short")).into());
        }
        let file = OutputFile { path: raw.clone(), size, sha256: sha256_hex(&data) };
        count += 1;
        total += size;
        by_path.insert(raw, slots.len());
        slots.push(Some((file, data)));
    }
    Ok(FilesOut { files: slots.into_iter().flatten().collect(), truncated })
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(data);
    let mut out = String::with_capacity(2 * digest.len());
    for byte in digest.iter() {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    use crate::test_tar::RawTar;

    fn paths(out: &FilesOut) -> Vec<&str> {
        out.files.iter().map(|(f, _)| f.path.as_str()).collect()
    }

    #[test]
    fn reads_files_with_their_hashes() {
        let tar = RawTar::new().file("out/a.txt", "hello").file("b.bin", "").done();
        let out = read_tar(&tar, DEFAULT_MAX_BYTES, DEFAULT_MAX_COUNT).unwrap();
        assert!(!out.truncated);
        assert_eq!(paths(&out), ["out/a.txt", "b.bin"]);
        let (file, data) = &out.files[0];
        assert_eq!((file.size, data.as_slice()), (5, b"hello".as_slice()));
        assert_eq!(file.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(out.files[1].0.sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn empty_input_is_no_files() {
        assert_eq!(read_tar(b"", 10, 10).unwrap(), FilesOut::default());
        assert_eq!(read_tar(&[0u8; 1024], 10, 10).unwrap(), FilesOut::default());
    }

    #[test]
    fn hostile_paths_are_left_out() {
        for bad in ["../escape", "/etc/passwd", "a/../b", "./a", "a//b", "a/./b", "dir/", "."] {
            let tar = RawTar::new().file(bad, "x").file("ok.txt", "y").done();
            let out = read_tar(&tar, DEFAULT_MAX_BYTES, DEFAULT_MAX_COUNT).unwrap();
            assert_eq!(paths(&out), ["ok.txt"], "{bad:?}");
            assert!(out.truncated, "{bad:?}");
        }
        let mut tar = RawTar::new().file("placeholder", "x").done();
        tar[..11].copy_from_slice(b"bad\xffname\0\0\0");
        let sum: u32 =
            tar[..512].iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u32::from(b) }).sum();
        tar[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        let out = read_tar(&tar, DEFAULT_MAX_BYTES, DEFAULT_MAX_COUNT).unwrap();
        assert!(out.files.is_empty() && out.truncated, "names must be UTF-8");
    }

    #[test]
    fn only_regular_files_are_kept() {
        let tar = RawTar::new()
            .entry("link", b'2', "/etc/passwd", b"")
            .entry("hard", b'1', "ok.txt", b"")
            .entry("dir", b'5', "", b"")
            .entry("fifo", b'6', "", b"")
            .entry("dev", b'3', "", b"")
            .file("ok.txt", "y")
            .done();
        let out = read_tar(&tar, DEFAULT_MAX_BYTES, DEFAULT_MAX_COUNT).unwrap();
        assert_eq!(paths(&out), ["ok.txt"]);
        assert!(!out.truncated);
    }

    #[test]
    fn the_last_of_a_duplicate_wins() {
        let tar = RawTar::new().file("a", "first").file("b", "b").file("a", "second!").done();
        let out = read_tar(&tar, DEFAULT_MAX_BYTES, 2).unwrap();
        assert_eq!(paths(&out), ["b", "a"]);
        assert_eq!(out.files[1].1, b"second!");
        assert!(!out.truncated, "a replaced file does not count twice");
    }

    #[test]
    fn caps_leave_files_out() {
        let tar = RawTar::new().file("a", "1234").file("b", "123456").file("c", "12").done();
        let out = read_tar(&tar, 6, 10).unwrap();
        assert_eq!(paths(&out), ["a", "c"], "b does not fit, c still does");
        assert!(out.truncated);
        let out = read_tar(&tar, 100, 2).unwrap();
        assert_eq!(paths(&out), ["a", "b"]);
        assert!(out.truncated);
    }

    #[test]
    fn the_runners_marker_says_truncated() {
        let tar = RawTar::new().file("a", "1").file(TRUNCATED_MEMBER, "").done();
        let out = read_tar(&tar, 100, 10).unwrap();
        assert_eq!(paths(&out), ["a"]);
        assert!(out.truncated);
    }

    #[test]
    fn huge_declared_sizes_and_garbage_are_errors() {
        // A header that declares almost 8 GiB (the most 11 octal digits hold) and has 5 bytes after it.
        let mut tar = RawTar::header("big", b'0', "", (8 << 30) - 1).to_vec();
        tar.extend_from_slice(b"hello");
        assert!(read_tar(&tar, u64::MAX, 10).is_err(), "a declared size within the caps must be there");
        let out = read_tar(&tar, 1 << 20, 10);
        assert!(out.is_err(), "over the caps it is skipped, and the archive then ends inside it: {out:?}");
        assert!(read_tar(b"this is not a tar archive at all", 100, 10).is_err());
        let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        assert!(read_tar(&garbage, 100, 10).is_err());
        let mut cut = RawTar::new().file("a", &"x".repeat(2000)).done();
        cut.truncate(1000);
        assert!(read_tar(&cut, 1 << 20, 10).is_err());
    }

    #[test]
    fn long_names_are_read() {
        let long = format!("{}/file.txt", "d".repeat(150));
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(3);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, &long, b"abc".as_slice()).unwrap();
        let tar = builder.into_inner().unwrap();
        let out = read_tar(&tar, 100, 10).unwrap();
        assert_eq!(paths(&out), [long.as_str()]);
    }

    #[test]
    fn the_archive_cap_covers_the_overhead() {
        assert_eq!(max_archive_bytes(0, 0), ENTRY_OVERHEAD_BYTES + ARCHIVE_OVERHEAD_BYTES);
        assert_eq!(max_archive_bytes(u64::MAX, usize::MAX), u64::MAX);
    }
}
