//! Sessions, what every backend shares: the link to a session runner (requests, output split into calls,
//! replies; over separate pipes or one muxed stream) and the result of a call.

mod link;
mod protocol;
mod result;

pub use link::{
    CallCaps, CallObserved, CapturedText, FileOpError, INTERRUPT_GRACE, Requests, SessionControl, SessionLink,
};
pub use protocol::FrameError;
pub use result::{call_result, mark_killed};
