//! Live capture: where TCP segments of the production port come from while the daemon runs.
//!
//! Two live sources produce the same [`shadow_core::segment::Segment`]: the eBPF tap
//! ([`ebpf`], default) and an AF_PACKET socket ([`afpacket`], for hosts where eBPF cannot
//! load). Capture files (pcap read/write, frame decoding) are pure and live in `shadow-core`.

pub mod afpacket;
pub mod chunks;
pub mod ebpf;

use shadow_core::segment::Segment;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// Counters every live capture source updates while it runs (shared with the reader).
#[derive(Debug, Default)]
pub struct SharedStats {
    pub segments: AtomicU64,
    pub bytes: AtomicU64,
    pub dropped: AtomicU64,
    pub truncated: AtomicU64,
}

impl SharedStats {
    /// A consistent-enough copy of the counters.
    pub fn snapshot(&self) -> CaptureStats {
        CaptureStats {
            segments: self.segments.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            truncated: self.truncated.load(Ordering::Relaxed),
        }
    }

    /// Counts one delivered segment.
    pub fn delivered(&self, payload_len: usize) {
        self.segments.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(payload_len as u64, Ordering::Relaxed);
    }
}

/// Segments per channel of a live source: deep enough to ride out bursts; when full, segments
/// are dropped and counted rather than slowing the capture.
pub const LIVE_CHANNEL_DEPTH: usize = 1 << 16;

/// A running live capture: segments arrive on `segments` until it is dropped or the shutdown
/// fires. Dropping it detaches the tap.
pub struct LiveCapture {
    pub segments: mpsc::Receiver<Segment>,
    pub stats: Arc<SharedStats>,
    /// Keeps the backend alive (attached programs, reader tasks, sockets).
    pub(crate) _guard: Box<dyn Send>,
}

/// What to tap.
#[derive(Clone, Debug)]
pub struct TapSpec {
    /// Interface name (e.g. `lo`, `eth0`).
    pub interface: String,
    /// Production ports (1 to `shadow_common::MAX_PORTS` of them).
    pub ports: Vec<u16>,
}

impl TapSpec {
    /// Checks ports before any privileged work.
    pub fn validate(&self) -> Result<(), crate::error::CaptureError> {
        use crate::error::CaptureError;
        if self.ports.is_empty() {
            return Err(CaptureError::InvalidPort(0));
        }
        if let Some(&p) = self.ports.iter().find(|&&p| p == 0) {
            return Err(CaptureError::InvalidPort(p));
        }
        if self.ports.len() > shadow_common::MAX_PORTS as usize {
            return Err(CaptureError::TooManyPorts(self.ports.len()));
        }
        Ok(())
    }
}

/// Starts the live capture backend `kind` on `spec`.
pub fn open_live(
    kind: CaptureKind,
    spec: &TapSpec,
    shutdown: crate::shutdown::Shutdown,
) -> Result<LiveCapture, crate::error::CaptureError> {
    match kind {
        CaptureKind::Ebpf => ebpf::open(spec, shutdown),
        CaptureKind::Afpacket => afpacket::open(spec, shutdown),
    }
}

/// Counters every live capture source reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Segments delivered to the daemon.
    pub segments: u64,
    /// Payload bytes delivered.
    pub bytes: u64,
    /// Segments (or chunks) lost before userspace saw them: ring full, socket buffer overrun.
    pub dropped: u64,
    /// Segments whose tail was cut because they exceeded the per-segment capture size.
    pub truncated: u64,
}

/// Which live capture backend to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureKind {
    /// eBPF TC/TCX classifier feeding a ring buffer (default).
    #[default]
    Ebpf,
    /// AF_PACKET socket (libc, classic BPF port filter): for hosts where eBPF cannot be loaded.
    Afpacket,
}
