//! The frames spoken with the session runner (`core/python/session_runner.py`) and the splitting of its output
//! streams into calls.
//!
//! A frame is a line with the byte length of a JSON header, the header, then as many raw bytes as the header's
//! `n` says. A call's output ends with a marker that names the call's random nonce; everything before it belongs
//! to the call (up to the output cap), anything after it to what comes next. In mux mode (where the runner has
//! one output stream only, a Pod's attached standard output) every piece of output travels in a frame too, its
//! header naming the stream: `{"s": "out" | "err" | "ctl", "n": N}`.

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

/// Largest JSON header accepted from the runner.
const MAX_HEADER: usize = 16 << 20;

/// A request: the header (with `n` set to the payload's length) as a frame, then the payload.
pub(crate) fn frame(mut header: Value, payload_len: usize) -> Vec<u8> {
    if let Value::Object(map) = &mut header {
        map.insert("n".into(), Value::from(payload_len));
    }
    let body = header.to_string();
    let mut out = format!("{}\n", body.len()).into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Why a reply could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The runner closed its side (it exited).
    #[error("the session's interpreter is gone")]
    Closed,
    /// It wrote something that is not a frame.
    #[error("the session's interpreter answered garbage: {0}")]
    Garbage(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Frames read from a stream of them (the runner's control descriptor, or its muxed output).
pub(crate) struct Replies<R> {
    reader: BufReader<R>,
}

impl<R: AsyncRead + Unpin> Replies<R> {
    pub(crate) fn new(rx: R) -> Self {
        Self { reader: BufReader::new(rx) }
    }

    /// The next reply's header, as `T`, and the length of the payload that follows it.
    pub(crate) async fn header<T: DeserializeOwned>(&mut self) -> Result<(T, u64), FrameError> {
        let mut line = String::new();
        let read = (&mut self.reader).take(24).read_line(&mut line).await?;
        if read == 0 {
            return Err(FrameError::Closed);
        }
        let len: usize = line.trim_end().parse().map_err(|_| FrameError::Garbage(format!("length {line:?}")))?;
        if len > MAX_HEADER {
            return Err(FrameError::Garbage(format!("a header of {len} bytes")));
        }
        let mut body = vec![0u8; len];
        self.reader.read_exact(&mut body).await.map_err(closed)?;
        let value: Value = serde_json::from_slice(&body).map_err(|e| FrameError::Garbage(e.to_string()))?;
        let n = value.get("n").and_then(Value::as_u64).unwrap_or(0);
        let header = serde_json::from_value(value).map_err(|e| FrameError::Garbage(e.to_string()))?;
        Ok((header, n))
    }

    /// The payload of the last reply, read whole (at most `max` bytes: more is garbage).
    pub(crate) async fn payload(&mut self, n: u64, max: u64) -> Result<Vec<u8>, FrameError> {
        if n > max {
            return Err(FrameError::Garbage(format!("a payload of {n} bytes")));
        }
        // Grown as bytes arrive: a header that announces more than it sends costs nothing.
        let mut data = Vec::new();
        (&mut self.reader).take(n).read_to_end(&mut data).await?;
        if (data.len() as u64) < n {
            return Err(FrameError::Closed);
        }
        Ok(data)
    }
}

fn closed(e: std::io::Error) -> FrameError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof { FrameError::Closed } else { FrameError::Io(e) }
}

/// The end marker of the call with `nonce`.
pub(crate) fn marker(nonce: &str) -> Vec<u8> {
    format!("___PYEXEC_CALL_END_{nonce}___").into_bytes()
}

/// One output stream of a call: everything up to the call's end marker, kept up to a cap.
#[derive(Debug)]
pub(crate) struct CallOutput {
    marker: Vec<u8>,
    cap: usize,
    /// Kept bytes.
    pub(crate) kept: Vec<u8>,
    /// Bytes not yet known not to start the marker.
    pending: Vec<u8>,
    /// Output beyond the cap was dropped.
    pub(crate) truncated: bool,
}

impl CallOutput {
    pub(crate) fn new(marker: Vec<u8>, cap: usize) -> Self {
        Self { marker, cap, kept: Vec::new(), pending: Vec::new(), truncated: false }
    }

    /// Takes a chunk; once the marker is complete returns what followed it (output of whatever comes next).
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Option<Vec<u8>> {
        self.pending.extend_from_slice(chunk);
        if let Some(at) = find(&self.pending, &self.marker) {
            let rest = self.pending.split_off(at + self.marker.len());
            self.pending.truncate(at);
            let before = std::mem::take(&mut self.pending);
            self.keep(&before);
            return Some(rest);
        }
        // All but the last marker-length bytes cannot be the start of a marker.
        let safe = self.pending.len().saturating_sub(self.marker.len() - 1);
        let done: Vec<u8> = self.pending.drain(..safe).collect();
        self.keep(&done);
        None
    }

    /// What is still held back (the stream ended without the marker).
    pub(crate) fn flush(&mut self) {
        let rest = std::mem::take(&mut self.pending);
        self.keep(&rest);
    }

    fn keep(&mut self, bytes: &[u8]) {
        let room = self.cap.saturating_sub(self.kept.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_their_payload_length() {
        let f = frame(serde_json::json!({"op": "get", "path": "a"}), 5);
        let text = String::from_utf8(f).unwrap();
        let (len, body) = text.split_once('\n').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), body.len());
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["n"], 5);
        assert_eq!(v["op"], "get");
    }

    #[test]
    fn output_ends_at_the_marker_even_split_across_chunks() {
        let m = marker("abc");
        let mut whole = b"hello\nworld".to_vec();
        whole.extend_from_slice(&m);
        whole.extend_from_slice(b"later");
        for split in 0..whole.len() {
            let mut out = CallOutput::new(m.clone(), 1 << 20);
            let first = out.push(&whole[..split]);
            let rest = first.or_else(|| out.push(&whole[split..])).expect("marker found");
            assert_eq!(out.kept, b"hello\nworld", "split at {split}");
            // What followed the marker in the same chunk is handed back.
            if split < whole.len() - 5 {
                assert_eq!(rest, b"later");
            }
        }
    }

    #[test]
    fn output_is_capped_but_the_marker_is_still_found() {
        let m = marker("n");
        let mut out = CallOutput::new(m.clone(), 4);
        assert!(out.push(b"0123456789").is_none());
        let mut tail = b"more".to_vec();
        tail.extend_from_slice(&m);
        assert_eq!(out.push(&tail), Some(Vec::new()));
        assert_eq!(out.kept, b"0123");
        assert!(out.truncated);
    }

    #[test]
    fn a_near_marker_is_output() {
        let m = marker("n");
        let mut out = CallOutput::new(m.clone(), 100);
        assert!(out.push(&m[..m.len() - 1]).is_none());
        out.flush();
        assert_eq!(out.kept, &m[..m.len() - 1]);
    }
}
