//! The one logging setup of the project's long-running binaries (the API server and the operator): the same
//! `tracing` subscriber, so that their lines look alike and a collector parses both the same way. Text is for
//! people; JSON is one object per line with the event's fields flattened and the current span's fields (the
//! operator's reconcile span names the execution) under `span`. `RUST_LOG`, when set, replaces the default filter.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber, writing to standard error (colored only on a terminal). `default_filter` is an
/// `EnvFilter` directive (`info`, `info,kube=warn`), used unless `RUST_LOG` is set. A second call changes nothing.
pub fn init(default_filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let colors = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing::subscriber::set_global_default(subscriber(filter, format, colors, std::io::stderr));
}

/// The subscriber [`init`] installs, writing to `writer`.
fn subscriber<W>(
    filter: EnvFilter,
    format: LogFormat,
    colors: bool,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(colors).with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(builder.json().flatten_event(true).with_current_span(true).finish()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(format: LogFormat) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = subscriber(EnvFilter::new("info,noisy=warn"), format, false, move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("reconcile", execution = "job-1", namespace = "team-a");
            let _entered = span.enter();
            tracing::info!(phase = "Running", "status written");
            tracing::info!(target: "noisy", "filtered out");
            tracing::debug!("below the level");
        });
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn json_lines_carry_the_event_and_its_span() {
        let out = capture(LogFormat::Json);
        let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 1, "{out}");
        let line = &lines[0];
        assert_eq!((line["message"].as_str(), line["phase"].as_str()), (Some("status written"), Some("Running")));
        assert_eq!(line["level"], "INFO");
        assert_eq!(
            (line["span"]["execution"].as_str(), line["span"]["namespace"].as_str()),
            (Some("job-1"), Some("team-a"))
        );
    }

    #[test]
    fn text_lines_name_the_span() {
        let out = capture(LogFormat::Text);
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(
            out.contains("reconcile{execution=\"job-1\" namespace=\"team-a\"}") && out.contains("status written"),
            "{out}"
        );
    }
}
