//! The program's live output and the spinner that shows the elapsed time while waiting.
//!
//! The spinner is drawn on stderr, only when stderr is a terminal (and the output is text, not quiet). Program
//! output and the spinner go through one lock: the spinner is cleared before any output is written, and drawn again
//! only when the output of both streams ends with a line end, so that it never lands inside a line of output
//! (where a terminal would show `step⠐ running 2s`).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cli::{Cli, OutputFormat};

const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// Time between two frames, and before the first (quick commands never show it).
const TICK: Duration = Duration::from_millis(100);

/// Erases the current terminal line and returns to its start.
const CLEAR_LINE: &str = "\r\x1b[2K";

type Sink = Box<dyn Write + Send>;

/// Which stream a piece of the program's output belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// From the event stream's name (`stdout` or `stderr`; anything else is shown as stdout).
    pub fn of(name: &str) -> Stream {
        if name == "stderr" { Stream::Stderr } else { Stream::Stdout }
    }
}

/// What is on the screen.
struct Screen {
    /// Where the spinner is drawn (stderr).
    term: Sink,
    stdout: Sink,
    stderr: Sink,
    message: String,
    started: Instant,
    frame: usize,
    /// The spinner is on the screen now.
    drawn: bool,
    /// The spinner may be drawn (it is not stopped).
    spinning: bool,
    /// The output written to each stream ends with a line end (or there was none).
    line_start: [bool; 2],
}

impl Screen {
    fn new(spinning: bool, message: &str, term: Sink, stdout: Sink, stderr: Sink) -> Screen {
        Screen {
            term,
            stdout,
            stderr,
            message: message.to_owned(),
            started: Instant::now(),
            frame: 0,
            drawn: false,
            spinning,
            line_start: [true, true],
        }
    }

    /// Draws the next frame, unless that would split a line of output.
    fn draw(&mut self) {
        if !self.spinning || !self.line_start.iter().all(|at| *at) {
            return;
        }
        let frame = FRAMES[self.frame % FRAMES.len()];
        self.frame += 1;
        let elapsed = self.started.elapsed().as_secs();
        // A terminal that went away is not a reason to stop the command: drawing is best effort.
        let _ = write!(self.term, "{CLEAR_LINE}{frame} {} {elapsed}s", self.message);
        let _ = self.term.flush();
        self.drawn = true;
    }

    fn clear(&mut self) {
        if self.drawn {
            let _ = write!(self.term, "{CLEAR_LINE}");
            let _ = self.term.flush();
            self.drawn = false;
        }
    }

    fn output(&mut self, stream: Stream, data: &str) {
        if data.is_empty() {
            return;
        }
        self.clear();
        let (sink, index) = match stream {
            Stream::Stdout => (&mut self.stdout, 0),
            Stream::Stderr => (&mut self.stderr, 1),
        };
        let _ = sink.write_all(data.as_bytes());
        let _ = sink.flush();
        self.line_start[index] = data.ends_with('\n');
    }

    fn stop(&mut self) {
        self.clear();
        self.spinning = false;
    }
}

type Shared = Arc<(Mutex<Screen>, Condvar)>;

fn lock(shared: &Shared) -> MutexGuard<'_, Screen> {
    // A panic while holding the lock leaves the screen usable: keep going.
    shared.0.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The program's output as it arrives, with a spinner (on terminals) while nothing new comes.
pub struct Spinner {
    shared: Shared,
    ticker: Option<JoinHandle<()>>,
}

impl Spinner {
    /// A spinner with `message` for people: on a terminal, with text output, not quiet. Otherwise nothing is drawn
    /// and [`Spinner::output`] only writes the output.
    pub fn start(cli: &Cli, message: &str) -> Spinner {
        let shown = !cli.quiet && cli.output == OutputFormat::Text && std::io::stderr().is_terminal();
        Spinner::with_sinks(
            shown,
            message,
            Box::new(std::io::stderr()),
            Box::new(std::io::stdout()),
            Box::new(std::io::stderr()),
        )
    }

    fn with_sinks(shown: bool, message: &str, term: Sink, stdout: Sink, stderr: Sink) -> Spinner {
        let shared: Shared = Arc::new((Mutex::new(Screen::new(shown, message, term, stdout, stderr)), Condvar::new()));
        let ticker = shown.then(|| {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let mut screen = lock(&shared);
                loop {
                    screen = match shared.1.wait_timeout(screen, TICK) {
                        Ok((screen, _)) => screen,
                        Err(poisoned) => poisoned.into_inner().0,
                    };
                    if !screen.spinning {
                        return;
                    }
                    screen.draw();
                }
            })
        });
        Spinner { shared, ticker }
    }

    /// Writes a piece of the program's output to its stream (and flushes it), the spinner cleared first.
    pub fn output(&self, stream: Stream, data: &str) {
        lock(&self.shared).output(stream, data);
    }

    /// Clears the spinner for good (before printing what is not the program's output).
    pub fn finish(&self) {
        lock(&self.shared).stop();
        self.shared.1.notify_all();
    }

    /// Clears the spinner for good, and ends its thread.
    pub fn stop(self) {
        // Drop does it.
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.finish();
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One buffer for the spinner and both streams, as a terminal shows them.
    #[derive(Clone, Default)]
    struct Tty(Arc<Mutex<Vec<u8>>>);

    impl Write for Tty {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Tty {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
        }
    }

    fn screen(tty: &Tty) -> Screen {
        Screen::new(true, "running", Box::new(tty.clone()), Box::new(tty.clone()), Box::new(tty.clone()))
    }

    #[test]
    fn the_spinner_never_splits_a_line() {
        let tty = Tty::default();
        let mut s = screen(&tty);
        s.draw();
        assert_eq!(tty.text(), "\r\x1b[2K⠋ running 0s");
        s.output(Stream::Stdout, "step");
        assert_eq!(tty.text(), "\r\x1b[2K⠋ running 0s\r\x1b[2Kstep", "cleared before the output");
        s.draw();
        s.output(Stream::Stderr, "warning\n");
        s.draw();
        assert!(tty.text().ends_with("stepwarning\n"), "no spinner while stdout is mid-line: {:?}", tty.text());
        s.output(Stream::Stdout, " 1\n");
        s.draw();
        assert!(tty.text().ends_with(" 1\n\r\x1b[2K⠙ running 0s"), "back at a line start: {:?}", tty.text());
        s.stop();
        s.draw();
        assert!(tty.text().ends_with("⠙ running 0s\r\x1b[2K"), "cleared, and never drawn again: {:?}", tty.text());
    }

    #[test]
    fn output_goes_to_its_stream_and_nothing_else_without_a_terminal() {
        let (term, out, err) = (Tty::default(), Tty::default(), Tty::default());
        let spinner =
            Spinner::with_sinks(false, "running", Box::new(term.clone()), Box::new(out.clone()), Box::new(err.clone()));
        spinner.output(Stream::Stdout, "a");
        std::thread::sleep(TICK * 3);
        spinner.output(Stream::of("stderr"), "b\n");
        spinner.output(Stream::of("stdout"), "c\n");
        spinner.stop();
        assert_eq!((term.text(), out.text(), err.text()), (String::new(), "ac\n".into(), "b\n".into()));

        let term = Tty::default();
        let spinner =
            Spinner::with_sinks(true, "running", Box::new(term.clone()), Box::new(out.clone()), Box::new(err.clone()));
        std::thread::sleep(TICK * 3);
        drop(spinner);
        let drawn = term.text();
        assert!(drawn.starts_with("\r\x1b[2K⠋ running 0s") && drawn.ends_with("\r\x1b[2K"), "{drawn:?}");
    }
}
