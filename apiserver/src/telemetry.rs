//! Structured logs with `tracing`, set up by `pyexec_core::logging` as the operator's are: text for people, JSON
//! for collectors. Every request's log lines carry its `request_id` (also returned in the `x-request-id` header).

use pyexec_core::logging::{self, LogFormat as Format};

use crate::config::{LogFormat, LogLevel};

/// Installs the global subscriber. `RUST_LOG`, when set, refines the level per module.
pub fn init(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    let format = match format {
        LogFormat::Text => Format::Text,
        LogFormat::Json => Format::Json,
    };
    logging::init(level, format);
}
