//! Errors, one enum per boundary, each saying which side failed.

/// Failures of a live capture source (eBPF tap or AF_PACKET socket).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Loading eBPF or opening a raw socket needs privileges.
    #[error(
        "capture needs root or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON (AF_PACKET: CAP_NET_RAW); run with sudo"
    )]
    NotPermitted,
    /// The interface name does not exist on this host.
    #[error("unknown interface `{0}` (see `ip link`)")]
    UnknownInterface(String),
    /// No port, or port 0.
    #[error("invalid port {0}: give the production model server's TCP port (1-65535)")]
    InvalidPort(u16),
    /// More ports than the kernel-side map holds.
    #[error("too many ports ({0}); at most {max}", max = shadow_common::MAX_PORTS)]
    TooManyPorts(usize),
    /// Loading or verifying the eBPF program failed.
    #[error("loading the eBPF program failed: {0}")]
    Load(String),
    /// Attaching the classifier to the interface failed.
    #[error("attaching the tap to `{iface}` failed: {reason}")]
    Attach { iface: String, reason: String },
    /// Reading from the ring buffer or socket failed.
    #[error("reading captured packets failed: {0}")]
    Read(#[from] std::io::Error),
}
