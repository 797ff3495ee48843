//! Live capture: where TCP segments of the production port come from while the daemon runs.
//!
//! Two live sources produce the same [`shadow_core::segment::Segment`]: the eBPF tap
//! ([`ebpf`], default) and an AF_PACKET socket ([`afpacket`], for hosts where eBPF cannot
//! load), both built on [`live`]. Capture files (pcap read/write, frame decoding) are pure and
//! live in `shadow-core`; [`file`] reads one as if it were a live tap (`shadowd replay`), at the
//! recorded pace or as fast as the daemon takes it.

pub mod afpacket;
pub mod ebpf;
pub mod file;
pub mod live;

pub use live::{
    CaptureStats, KernelPackets, LIVE_CHANNEL_BYTES, LIVE_CHANNEL_DEPTH, LiveCapture, SharedStats,
    TapSpec, UndecodableFrames,
};

/// Starts the live capture backend `kind` on `spec`; `ring_bytes` sizes the eBPF tap's ring
/// (`None`: its default; AF_PACKET has no such ring).
pub fn open_live(
    kind: CaptureKind,
    spec: &TapSpec,
    ring_bytes: Option<u32>,
    shutdown: crate::shutdown::Shutdown,
) -> Result<LiveCapture, crate::error::CaptureError> {
    match kind {
        CaptureKind::Ebpf => {
            let options = ebpf::Options {
                ring_bytes,
                ..ebpf::Options::from_log_filter()
            };
            ebpf::open_with(spec, shutdown, options)
        }
        CaptureKind::Afpacket => afpacket::open(spec, shutdown),
    }
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
