//! What every live capture source shares: the tap specification, the running capture handed
//! to the daemon, and the counters it keeps. Backends depend on this module, never on each
//! other or on the dispatch in [`crate::capture`].

use shadow_core::segment::CapturedSegment;
use shadow_core::vocabulary::{DropStage, FrameSkip, KernelPacketResult};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::mpsc;

/// Counters every live capture source updates while it runs (shared with the reader).
#[derive(Debug, Default)]
pub struct SharedStats {
    pub segments: AtomicU64,
    pub bytes: AtomicU64,
    pub dropped: AtomicU64,
    pub truncated: AtomicU64,
    pub kernel_matched: AtomicU64,
    pub kernel_malformed: AtomicU64,
    pub kernel_too_long: AtomicU64,
    pub frame_fragment: AtomicU64,
    pub frame_truncated: AtomicU64,
    pub frame_malformed: AtomicU64,
    /// The tap is off its interface (deleted, or re-created and not re-attachable): nothing
    /// is captured until it is back.
    pub tap_lost: AtomicBool,
    /// Payload bytes on the segment channel: sent, not taken by the exchange source yet (at
    /// most [`LIVE_CHANNEL_BYTES`]).
    pub queued_bytes: AtomicU64,
}

impl SharedStats {
    /// A consistent-enough copy of the counters.
    pub fn snapshot(&self) -> CaptureStats {
        CaptureStats {
            segments: self.segments.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            truncated: self.truncated.load(Ordering::Relaxed),
            kernel: KernelPackets {
                matched: self.kernel_matched.load(Ordering::Relaxed),
                malformed: self.kernel_malformed.load(Ordering::Relaxed),
                too_long: self.kernel_too_long.load(Ordering::Relaxed),
            },
            undecodable: UndecodableFrames {
                fragment: self.frame_fragment.load(Ordering::Relaxed),
                truncated: self.frame_truncated.load(Ordering::Relaxed),
                malformed: self.frame_malformed.load(Ordering::Relaxed),
            },
            tap_lost: self.tap_lost.load(Ordering::Relaxed),
        }
    }

    /// Counts a packet of a watched port (or of an unknown one) that yielded no segment;
    /// traffic that is not ours is not counted.
    pub fn skipped_frame(&self, reason: FrameSkip) {
        let counter = match reason {
            FrameSkip::Fragment => &self.frame_fragment,
            FrameSkip::Truncated => &self.frame_truncated,
            FrameSkip::Malformed => &self.frame_malformed,
            FrameSkip::NotIp | FrameSkip::NotTcp | FrameSkip::OtherPort => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a segment of `payload_len` bytes fits on the segment channel; if it does, its
    /// bytes are counted as queued until [`SharedStats::taken`].
    pub fn reserve(&self, payload_len: usize) -> bool {
        let len = payload_len as u64;
        let before = self.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if before + len > LIVE_CHANNEL_BYTES as u64 {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// A segment of `payload_len` bytes left the channel (or was not sent after all).
    pub fn taken(&self, payload_len: usize) {
        self.queued_bytes
            .fetch_sub(payload_len as u64, Ordering::Relaxed);
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
/// Payload bytes on a live source's segment channel at most (`memory_bytes{stage="capture"}`):
/// a full channel of 64 KiB segments would otherwise hold 4 GiB. Over it, segments are
/// dropped and counted like on a full channel (`capture_dropped_total{stage="capture"}`).
pub const LIVE_CHANNEL_BYTES: usize = 64 << 20;

/// A running live capture: segments arrive on `segments` until it is dropped or the shutdown
/// fires. Dropping it detaches the tap.
pub struct LiveCapture {
    /// Each with the payload bytes the capture knows it lost right after it (then a gap).
    pub segments: mpsc::Receiver<CapturedSegment>,
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

    /// Validates the spec and resolves the interface's index: what every backend does first.
    pub fn resolve(&self) -> Result<u32, crate::error::CaptureError> {
        self.validate()?;
        nix::net::if_::if_nametoindex(self.interface.as_str()).map_err(|errno| {
            crate::error::CaptureError::UnknownInterface {
                name: self.interface.clone(),
                source: errno.into(),
            }
        })
    }
}

/// Starts a backend's reader thread, named `name` (as `top -H` shows it). Reading an attached
/// tap needs no privilege: when the process drops its capabilities after the attach
/// (`shadowd run`), the thread drops every capability it inherited first.
pub(super) fn spawn_reader(
    name: String,
    run: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, crate::error::CaptureError> {
    let thread_name = name.clone();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            crate::privileges::drop_in_helper_thread(&thread_name);
            run()
        })
        .map_err(|source| crate::error::CaptureError::Io {
            step: "start its reader thread",
            source,
        })
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
    /// What the kernel-side program counted per packet (eBPF tap only: all zero with
    /// AF_PACKET, whose classic BPF filter counts nothing).
    pub kernel: KernelPackets,
    /// Packets that yielded no segment, by reason. Both backends count IP fragments here (the
    /// eBPF tap from its kernel counter `FRAGMENT`); truncated and malformed frames are the
    /// AF_PACKET frame decoder's (the eBPF tap counts those in [`KernelPackets::malformed`]).
    pub undecodable: UndecodableFrames,
    /// The tap is off its interface: nothing is captured ([`SharedStats::tap_lost`]).
    pub tap_lost: bool,
}

/// Packets that could not be turned into a segment, by reason (running totals), exported as
/// `shadowtap_capture_dropped_total{stage}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UndecodableFrames {
    /// IP fragments of TCP, not reassembled ([`DropStage::IpFragment`]): later fragments of
    /// any port (theirs cannot be known) and first fragments of a watched port. Counted by
    /// both backends.
    pub fragment: u64,
    /// Headers cut before the TCP header ended ([`DropStage::FrameTruncated`]).
    pub truncated: u64,
    /// Impossible header fields ([`DropStage::FrameMalformed`]).
    pub malformed: u64,
}

impl UndecodableFrames {
    /// The counts added since `earlier`, each with its drop stage.
    pub fn since(&self, earlier: &UndecodableFrames) -> [(DropStage, u64); 3] {
        [
            (
                DropStage::IpFragment,
                self.fragment.saturating_sub(earlier.fragment),
            ),
            (
                DropStage::FrameTruncated,
                self.truncated.saturating_sub(earlier.truncated),
            ),
            (
                DropStage::FrameMalformed,
                self.malformed.saturating_sub(earlier.malformed),
            ),
        ]
    }
}

/// Packets counted by the kernel-side eBPF program (running totals), exported as
/// `shadowtap_kernel_packets_total{result}`. Chunks lost to a full ring are counted in chunks,
/// not packets, and are part of [`CaptureStats::dropped`] instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelPackets {
    /// TCP segments to or from a watched port.
    pub matched: u64,
    /// Packets whose headers (or payload) could not be read; any port, since the port is not
    /// known before the headers are read.
    pub malformed: u64,
    /// Matched segments longer than the tap copies (`MAX_CHUNKS * CHUNK_SIZE`): their tail was
    /// not captured.
    pub too_long: u64,
}

impl KernelPackets {
    /// The counts added since `earlier` (a counter that went backwards counts 0).
    pub fn since(&self, earlier: &KernelPackets) -> KernelPackets {
        KernelPackets {
            matched: self.matched.saturating_sub(earlier.matched),
            malformed: self.malformed.saturating_sub(earlier.malformed),
            too_long: self.too_long.saturating_sub(earlier.too_long),
        }
    }

    /// Each count with its metric label.
    pub fn by_result(&self) -> [(KernelPacketResult, u64); 3] {
        [
            (KernelPacketResult::Matched, self.matched),
            (KernelPacketResult::Malformed, self.malformed),
            (KernelPacketResult::TooLong, self.too_long),
        ]
    }
}
