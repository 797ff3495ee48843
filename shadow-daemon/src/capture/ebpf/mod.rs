//! eBPF capture source: the embedded TC classifier, attached to the interface (TCX on kernels
//! ≥ 6.6, netlink clsact before), feeding segment records through a ring buffer.
//!
//! One job per module, each using only the modules listed above it:
//! - [`link`]: the link-layer header length in front of IP, from the interface's link type;
//! - `attach`: loading the object (told that length), attaching and (by drop) detaching,
//!   RLIMIT_MEMLOCK, the kernel-side trace;
//! - `reader`: the reader thread (ring polling, kernel counters, delivery); ring records are
//!   decoded by `shadow_core::ring_record` and their chunks rejoined by `shadow_core::chunks`
//!   (pure, fuzzed).
//!
//! A killed daemon leaves nothing behind with TCX (links die with their file descriptors); with
//! the netlink fallback the next start removes stale filters of the same name.

mod attach;
pub mod link;
mod reader;

pub use attach::{ATTACH_MODE_ENV, EBPF_OBJECT, Options, PROGRAM_NAME};

use super::live::{LiveCapture, TapSpec};
use crate::error::CaptureError;
use crate::shutdown::Shutdown;

/// Loads and attaches the tap described by `spec` and starts reading it; the kernel-side trace
/// follows the log filter ([`Options::from_log_filter`]).
pub fn open(spec: &TapSpec, shutdown: Shutdown) -> Result<LiveCapture, CaptureError> {
    open_with(spec, shutdown, Options::from_log_filter())
}

/// [`open`] with explicit options.
pub fn open_with(
    spec: &TapSpec,
    shutdown: Shutdown,
    options: Options,
) -> Result<LiveCapture, CaptureError> {
    spec.resolve()?;
    let tap = attach::attach(spec, options)?;
    reader::start(tap, shutdown)
}
