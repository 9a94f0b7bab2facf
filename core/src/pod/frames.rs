//! Reading the runner's frames back from a container log, whole ([`parse_log`], as the operator does when it reads
//! the log at the end) or piece by piece as a followed log arrives ([`FrameDecoder`], as the API server does for
//! `/events` and the operator's follower does for results). Lines without the Pod's nonce are not frames and are
//! ignored. Each frame carries its sequence number ([`Numbered`]), so a reader that follows the log again after a
//! dropped stream can skip what it has and notice what it missed; frames of runners that wrote none (before
//! sequence numbers existed) are still read, with no number.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::protocol::{
    EndFrame, FRAME_END, FRAME_FILES, FRAME_PRE_OUTPUT, FRAME_START, FRAME_STDERR, FRAME_STDOUT, RESULT_LIMIT_BYTES,
    frame_prefix,
};

/// What the runner reported, read back from the container log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodLog {
    /// The program's standard output.
    pub stdout: Vec<u8>,
    /// The program's standard error.
    pub stderr: Vec<u8>,
    /// The pre-commands' output.
    pub pre_output: Vec<u8>,
    /// The tar of the files the program created or changed, as far as its frames were read
    /// ([`EndFrame::files_bytes`] says how long it is whole; [`crate::pod::harvest`] reads it).
    pub files: Vec<u8>,
    /// The final summary; `None` when the runner did not get to write it (the container was killed).
    pub end: Option<EndFrame>,
    /// The runner's start frame was read: the log has its beginning.
    pub started: bool,
    /// How many frames were read before the end frame (the start frame included).
    pub frames_read: u64,
}

impl PodLog {
    /// Frames the runner wrote are missing: the kubelet rotated the container log while the program wrote, and the
    /// log read back holds only its end. Judged by the end frame's count ([`EndFrame::frames`]) and the start frame;
    /// a log without an end frame that says how many it follows cannot be judged, and is not.
    pub fn output_lost(&self) -> bool {
        let Some(written) = self.end.as_ref().and_then(|e| e.frames) else { return false };
        !self.started || self.frames_read < written
    }
}

/// Reads the frames carrying `nonce` out of a container log; every other line is ignored.
pub fn parse_log(log: &[u8], nonce: &str) -> PodLog {
    let mut out = PodLog::default();
    let mut decoder = FrameDecoder::new(nonce);
    let frames = decoder.push(log);
    for frame in frames.into_iter().chain(decoder.finish()) {
        if !matches!(frame, Frame::End(_)) {
            out.frames_read += 1;
        }
        match frame {
            Frame::Stdout(data) => out.stdout.extend_from_slice(&data),
            Frame::Stderr(data) => out.stderr.extend_from_slice(&data),
            Frame::PreOutput(data) => out.pre_output.extend_from_slice(&data),
            Frame::Files(data) => out.files.extend_from_slice(&data),
            Frame::End(end) => out.end = Some(*end),
            Frame::Start => out.started = true,
        }
    }
    out
}

/// One of the runner's frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The runner's first frame, before any output.
    Start,
    /// A piece of the program's standard output.
    Stdout(Vec<u8>),
    /// A piece of the program's standard error.
    Stderr(Vec<u8>),
    /// A piece of the pre-commands' output.
    PreOutput(Vec<u8>),
    /// A piece of the tar of the files the program created or changed (only results use it; live output skips it).
    Files(Vec<u8>),
    /// The final summary.
    End(Box<EndFrame>),
}

/// A frame and its sequence number: the runner numbers its frames from 0 (the start frame) in the order it writes
/// them, so the end frame's number is [`EndFrame::frames`]. `None` for a runner that did not number them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numbered {
    /// The frame's sequence number.
    pub seq: Option<u64>,
    /// The frame.
    pub frame: Frame,
}

/// The longest line kept while waiting for its end. The runner's longest frame is its summary, which holds an eval
/// result of at most [`RESULT_LIMIT_BYTES`] (4/3 of it as base64); anything longer is not a frame, and may be a
/// program's attempt to make a reader buffer without bound.
const MAX_LINE: usize = 4 * RESULT_LIMIT_BYTES;

/// Decodes the frames carrying one nonce from a container log read piece by piece, as a followed log arrives.
#[derive(Debug)]
pub struct FrameDecoder {
    prefix: Vec<u8>,
    /// The start of a line whose end has not arrived.
    partial: Vec<u8>,
    /// The current line outgrew [`MAX_LINE`]: the rest of it is dropped.
    skipping: bool,
}

impl FrameDecoder {
    /// A decoder for the frames of the runner started with `nonce`.
    pub fn new(nonce: &str) -> Self {
        Self { prefix: frame_prefix(nonce).into_bytes(), partial: Vec::new(), skipping: false }
    }

    /// The frames completed by `chunk`.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Frame> {
        self.push_numbered(chunk).into_iter().map(|n| n.frame).collect()
    }

    /// The frames completed by `chunk`, with their sequence numbers.
    pub fn push_numbered(&mut self, chunk: &[u8]) -> Vec<Numbered> {
        let mut frames = Vec::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            let (line, after) = rest.split_at(end);
            rest = &after[1..];
            if std::mem::take(&mut self.skipping) {
                continue;
            }
            let frame = if self.partial.is_empty() {
                self.decode(line)
            } else {
                self.partial.extend_from_slice(line);
                let whole = std::mem::take(&mut self.partial);
                self.decode(&whole)
            };
            frames.extend(frame);
        }
        if !self.skipping {
            self.partial.extend_from_slice(rest);
            if self.partial.len() > MAX_LINE {
                self.partial = Vec::new();
                self.skipping = true;
            }
        }
        frames
    }

    /// The frame on a last line that ended without a newline.
    pub fn finish(self) -> Option<Frame> {
        self.finish_numbered().map(|n| n.frame)
    }

    /// [`FrameDecoder::finish`], with the frame's sequence number.
    pub fn finish_numbered(self) -> Option<Numbered> {
        if self.skipping { None } else { self.decode(&self.partial) }
    }

    /// `<kind> <seq> <base64>` after the prefix, or `<kind> <base64>` from a runner without sequence numbers
    /// (base64 has no space, so the two cannot be confused).
    fn decode(&self, line: &[u8]) -> Option<Numbered> {
        let rest = line.strip_prefix(self.prefix.as_slice())?;
        let space = rest.iter().position(|b| *b == b' ')?;
        let (kind, rest) = (&rest[..space], &rest[space + 1..]);
        let (seq, data) = match rest.iter().position(|b| *b == b' ') {
            Some(space) => {
                let seq = std::str::from_utf8(&rest[..space]).ok()?;
                // Digits only: `str::parse` would also take a leading `+`.
                if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (Some(seq.parse().ok()?), &rest[space + 1..])
            }
            None => (None, rest),
        };
        let frame = Self::frame(kind, STANDARD.decode(data).ok()?)?;
        Some(Numbered { seq, frame })
    }

    fn frame(kind: &[u8], data: Vec<u8>) -> Option<Frame> {
        match kind {
            k if k == FRAME_STDOUT.as_bytes() => Some(Frame::Stdout(data)),
            k if k == FRAME_STDERR.as_bytes() => Some(Frame::Stderr(data)),
            k if k == FRAME_PRE_OUTPUT.as_bytes() => Some(Frame::PreOutput(data)),
            k if k == FRAME_START.as_bytes() => Some(Frame::Start),
            k if k == FRAME_FILES.as_bytes() => Some(Frame::Files(data)),
            k if k == FRAME_END.as_bytes() => serde_json::from_slice(&data).ok().map(|end| Frame::End(Box::new(end))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::protocol::{encode_frame, encode_unnumbered_frame};

    /// A frame line; its number does not matter to [`parse_log`].
    fn frame(nonce: &str, kind: &str, data: &[u8]) -> String {
        encode_frame(nonce, 7, kind, data)
    }

    #[test]
    fn frames_carry_their_numbers_and_unnumbered_ones_still_decode() {
        let mut d = FrameDecoder::new("n1");
        let mut log = encode_frame("n1", 0, FRAME_START, b"");
        log += &encode_frame("n1", 1, FRAME_STDOUT, b"hi");
        log += &encode_unnumbered_frame("n1", FRAME_STDERR, b"old");
        log += "\x1fpyexec n1 o +2 aGk=\n";
        log += "\x1fpyexec n1 o x2 aGk=\n";
        log += "\x1fpyexec n1 o 99999999999999999999999 aGk=\n";
        let frames = d.push_numbered(log.as_bytes());
        assert_eq!(
            frames,
            vec![
                Numbered { seq: Some(0), frame: Frame::Start },
                Numbered { seq: Some(1), frame: Frame::Stdout(b"hi".to_vec()) },
                Numbered { seq: None, frame: Frame::Stderr(b"old".to_vec()) },
            ],
            "a number that is not plain digits, or too large, is not a frame"
        );
        let mut d = FrameDecoder::new("n1");
        assert_eq!(d.push(encode_frame("n1", 4, FRAME_STDOUT, b"x").as_bytes()), vec![Frame::Stdout(b"x".to_vec())]);
    }

    #[test]
    fn only_frames_with_the_nonce_count() {
        let mut log = String::from("runner noise\n");
        log += &frame("n1", FRAME_STDOUT, b"hello ");
        log += &frame("forged", FRAME_STDOUT, b"FORGED");
        log += &frame("n1", FRAME_STDERR, b"oops\n");
        log += &frame("n1", FRAME_STDOUT, b"world\n");
        log += &frame("n1", FRAME_PRE_OUTPUT, b"pre\n");
        log += "\x1fpyexec n1 o !!!not base64\n";
        log += &frame("n1", "?", b"unknown kind");
        log += &frame("n1", FRAME_END, br#"{"exit":3,"installed":["six==1.17.0"]}"#);
        let parsed = parse_log(log.as_bytes(), "n1");
        assert_eq!(parsed.stdout, b"hello world\n");
        assert_eq!((parsed.stderr.as_slice(), parsed.pre_output.as_slice()), (&b"oops\n"[..], &b"pre\n"[..]));
        assert_eq!(parsed.end.map(|e| (e.exit, e.installed)), Some((3, vec!["six==1.17.0".to_string()])));
    }

    #[test]
    fn frames_split_anywhere_decode_the_same() {
        let mut log = String::from("noise\n");
        log += &frame("n1", FRAME_STDOUT, b"hello ");
        log += &frame("forged", FRAME_STDOUT, b"FORGED");
        log += &frame("n1", FRAME_STDERR, b"oops\n");
        log += &frame("n1", FRAME_END, br#"{"exit":0}"#);
        let whole = {
            let mut d = FrameDecoder::new("n1");
            let mut frames = d.push(log.as_bytes());
            frames.extend(d.finish());
            frames
        };
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0], Frame::Stdout(b"hello ".to_vec()));
        for size in [1, 2, 7, 50] {
            let mut d = FrameDecoder::new("n1");
            let mut frames: Vec<Frame> = log.as_bytes().chunks(size).flat_map(|c| d.push(c)).collect();
            frames.extend(d.finish());
            assert_eq!(frames, whole, "chunks of {size} bytes");
        }
    }

    #[test]
    fn the_largest_summary_frame_is_kept() {
        let result = STANDARD.encode(vec![b'x'; RESULT_LIMIT_BYTES]);
        let log = frame("n1", FRAME_END, format!(r#"{{"exit":0,"result":"{result}"}}"#).as_bytes());
        let parsed = parse_log(log.as_bytes(), "n1");
        assert_eq!(parsed.end.and_then(|e| e.result).map(|r| r.len()), Some(result.len()));
    }

    #[test]
    fn a_log_that_lost_frames_says_so() {
        let body = frame("n1", FRAME_START, b"") + &frame("n1", FRAME_STDOUT, b"head\n");
        let tail = frame("n1", FRAME_STDOUT, b"end of it\n") + &frame("n1", FRAME_END, br#"{"exit":0,"frames":3}"#);
        let whole = parse_log((body.clone() + &tail).as_bytes(), "n1");
        assert!(whole.started && !whole.output_lost());
        assert_eq!((whole.stdout.as_slice(), whole.frames_read), (&b"head\nend of it\n"[..], 3));
        let rotated = parse_log(tail.as_bytes(), "n1");
        assert!(!rotated.started && rotated.output_lost(), "the head rotated away");
        let middle = frame("n1", FRAME_START, b"") + &tail;
        assert!(parse_log(middle.as_bytes(), "n1").output_lost(), "a frame in the middle is missing");
        let forged = frame("other", FRAME_START, b"") + &frame("other", FRAME_STDOUT, b"x") + &tail;
        assert!(parse_log(forged.as_bytes(), "n1").output_lost(), "only the nonce's frames count");
        let uncounted = frame("n1", FRAME_STDOUT, b"x") + &frame("n1", FRAME_END, br#"{"exit":0}"#);
        assert!(!parse_log(uncounted.as_bytes(), "n1").output_lost(), "no count: not judged");
    }

    #[test]
    fn file_frames_join_into_the_tar_and_count_as_frames() {
        let mut log = encode_frame("n1", 0, FRAME_START, b"");
        log += &encode_frame("n1", 1, FRAME_STDOUT, b"out\n");
        log += &encode_frame("n1", 2, FRAME_FILES, b"first half ");
        log += &encode_frame("forged", 3, FRAME_FILES, b"FORGED");
        log += &encode_frame("n1", 3, FRAME_FILES, b"second half");
        log += &encode_frame("n1", 4, FRAME_END, br#"{"exit":0,"frames":4,"files_bytes":22}"#);
        let parsed = parse_log(log.as_bytes(), "n1");
        assert_eq!(
            (parsed.files.as_slice(), parsed.stdout.as_slice()),
            (&b"first half second half"[..], &b"out\n"[..])
        );
        assert_eq!(parsed.end.as_ref().and_then(|e| e.files_bytes), Some(22));
        assert!(parsed.started && !parsed.output_lost(), "{parsed:?}");
        let mut d = FrameDecoder::new("n1");
        let kinds = d.push(log.as_bytes());
        assert_eq!(kinds[2], Frame::Files(b"first half ".to_vec()));
    }

    #[test]
    fn an_endless_line_is_dropped_not_buffered() {
        let mut d = FrameDecoder::new("n1");
        let junk = vec![b'a'; 64 << 10];
        for _ in 0..100 {
            assert!(d.push(&junk).is_empty());
        }
        assert!(d.partial.len() <= MAX_LINE, "the decoder holds {} bytes", d.partial.len());
        let frames = d.push(format!("tail\n{}", frame("n1", FRAME_STDOUT, b"after")).as_bytes());
        assert_eq!(frames, vec![Frame::Stdout(b"after".to_vec())]);
    }
}
