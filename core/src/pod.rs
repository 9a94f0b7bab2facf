//! Executions in Kubernetes Pods: the in-Pod runner ([`RUNNER_SOURCE`]), the protocol between it and its readers
//! ([`protocol`]), and the reading of what it reports ([`frames`]) into the same result the embedded backend gives
//! ([`finish()`]).
//!
//! The runner writes the program's stdout and stderr, the pre-commands' output, the tar of the files the program
//! wrote (read back by [`harvest`]) and a final summary as framed lines on the main container's log. The operator reads them back once the program ended ([`parse_log`]) and finishes the
//! result with [`finish()`] (through [`crate::finalize`], as the embedded backend does); the API server follows the
//! same log for live output with a [`FrameDecoder`].

pub mod finish;
pub mod frames;
pub mod protocol;

pub use finish::{Ending, FilesCaps, Finished, Harvest, OUTPUT_LOST, PodEnd, finish, harvest};
pub use frames::{Frame, FrameDecoder, Numbered, PodLog, parse_log};
pub use protocol::{EndFrame, RUNNER_FILE, RunConfig};

/// The runner's source, placed in every execution's ConfigMap as [`RUNNER_FILE`].
pub const RUNNER_SOURCE: &str = include_str!("../python/pod_runner.py");
