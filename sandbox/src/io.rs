//! The parent's side of the child's pipes: feeding standard input, capturing output under a cap (the rest is read
//! and dropped, so a chatty program never blocks and the server's memory stays flat), streaming it live.

use std::os::fd::OwnedFd;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use crate::spec::{Captured, OutputChunk, Stream};

const READ_CHUNK: usize = 64 * 1024;

/// Writes `preamble`, then `data`, then closes the pipe (end-of-file). A program that exits without reading is
/// not an error. Two parts, so that a large standard input is never copied to be prefixed.
pub(crate) async fn feed_stdin(fd: OwnedFd, preamble: Vec<u8>, data: Vec<u8>) {
    let Ok(mut tx) = pipe::Sender::from_owned_fd(fd) else { return };
    for part in [preamble, data] {
        if !part.is_empty() && tx.write_all(&part).await.is_err() {
            return;
        }
    }
}

/// Reads a stream to its end, keeping the first `cap` bytes and forwarding what is kept to `events`.
pub(crate) async fn capture(
    fd: OwnedFd,
    cap: usize,
    stream: Stream,
    events: Option<mpsc::Sender<OutputChunk>>,
) -> std::io::Result<Captured> {
    let mut rx = pipe::Receiver::from_owned_fd(fd)?;
    let mut out = Captured::default();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match rx.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.total += n as u64;
        let room = cap.saturating_sub(out.bytes.len());
        let kept = &buf[..n.min(room)];
        if kept.len() < n {
            out.truncated = true;
        }
        if !kept.is_empty() {
            out.bytes.extend_from_slice(kept);
            if let Some(tx) = &events {
                // A slow or gone listener must not hold the program up.
                let _ = tx.try_send(OutputChunk { stream, bytes: kept.to_vec() });
            }
        }
    }
    Ok(out)
}

/// Reads a small pipe to its end (failure reports, wait status, eval result), up to `cap` bytes.
pub(crate) async fn read_small(fd: OwnedFd, cap: usize) -> Vec<u8> {
    match capture(fd, cap, Stream::Stdout, None).await {
        Ok(c) => c.bytes,
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn capture_caps_and_drains() {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let reader = tokio::spawn(capture(r, 10, Stream::Stderr, Some(tx)));
        let writer = tokio::task::spawn_blocking(move || {
            let w = std::fs::File::from(w);
            let mut w = std::io::BufWriter::new(w);
            for _ in 0..1000 {
                std::io::Write::write_all(&mut w, b"0123456789").unwrap();
            }
        });
        writer.await.unwrap();
        let captured = reader.await.unwrap().unwrap();
        assert_eq!(captured.bytes, b"0123456789");
        assert!(captured.truncated);
        assert_eq!(captured.total, 10_000);
        let mut streamed = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            assert_eq!(chunk.stream, Stream::Stderr);
            streamed.extend(chunk.bytes);
        }
        assert_eq!(streamed, b"0123456789");
    }
}
