//! Types shared by the kernel side (`shadow-ebpf`) and the daemon (`shadow-daemon`).
//!
//! Everything here is `#[repr(C)]` and plain data so that the eBPF program can write it into
//! a ring buffer and the daemon can read it back byte for byte. The `user` feature adds
//! `aya::Pod` impls for the daemon side.
#![no_std]

/// How many production ports the tap can watch at once.
pub const MAX_PORTS: u32 = 8;

/// Entries of the kernel's `PORTS` array: one per TCP port number.
pub const PORT_SLOTS: u32 = 65_536;

/// Payload bytes carried by one ring-buffer record.
pub const CHUNK_SIZE: usize = 2048;

/// Records emitted for one segment at most: `MAX_CHUNKS * CHUNK_SIZE` = 128 KiB, enough for a
/// GSO/GRO super-segment on loopback.
pub const MAX_CHUNKS: u32 = 64;

/// Ring buffer size in bytes (a power of two multiple of the page size).
pub const RING_BYTES: u32 = 16 * 1024 * 1024;

/// `SegmentEvent::family` for IPv4 (addresses in the first 4 bytes of the 16-byte fields).
pub const FAMILY_IPV4: u8 = 4;
/// `SegmentEvent::family` for IPv6.
pub const FAMILY_IPV6: u8 = 6;

/// `SegmentEvent::direction`: client → production server (destination port is watched).
pub const DIR_REQUEST: u8 = 0;
/// `SegmentEvent::direction`: production server → client (source port is watched).
pub const DIR_RESPONSE: u8 = 1;

/// TCP flag bits as they appear in `SegmentEvent::tcp_flags` (the TCP header's flag byte).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// `log` target of the kernel-side trace (aya-log records of the eBPF program). The daemon
/// turns the trace on when its log filter enables this target at `debug`, e.g.
/// `--log info,shadowtap::ebpf=debug`.
pub const KERNEL_TRACE_TARGET: &str = "shadowtap::ebpf";

/// Index of the per-CPU counters in the `COUNTERS` map.
pub mod counter {
    /// A ring-buffer reservation failed: one chunk of payload was lost.
    pub const RING_FULL: u32 = 0;
    /// A segment was longer than `MAX_CHUNKS * CHUNK_SIZE`: its tail was not captured.
    pub const TOO_LONG: u32 = 1;
    /// A packet's headers (or payload) could not be read: malformed or truncated packet. The
    /// port is not known before the headers are read, so packets of any port count here.
    pub const MALFORMED: u32 = 2;
    /// Segments seen that matched a watched port.
    pub const MATCHED: u32 = 3;
    /// IP fragments of TCP that were not tapped (fragments are not reassembled): every later
    /// fragment (no TCP header, so its port cannot be known: any port counts here) and first
    /// fragments of a watched port (also counted in `MATCHED`).
    pub const FRAGMENT: u32 = 4;
    /// Number of counters.
    pub const COUNT: u32 = 5;
}

/// One ring-buffer record: a header followed by `chunk_len` payload bytes.
///
/// A segment whose payload exceeds `CHUNK_SIZE` is emitted as several records, each a valid
/// TCP segment of its own: `seq` is already advanced by the chunk's offset, SYN is kept on the
/// first chunk only and FIN/RST on the last only. A segment without payload (SYN, FIN, bare ACK
/// carrying a flag) is one record with `chunk_len == 0`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentEvent {
    /// `bpf_ktime_get_ns()` when the packet passed the hook (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// Source address; IPv4 uses the first 4 bytes in network order.
    pub saddr: [u8; 16],
    /// Destination address; IPv4 uses the first 4 bytes in network order.
    pub daddr: [u8; 16],
    /// Source port (host order).
    pub sport: u16,
    /// Destination port (host order).
    pub dport: u16,
    /// `FAMILY_IPV4` or `FAMILY_IPV6`.
    pub family: u8,
    /// `DIR_REQUEST` or `DIR_RESPONSE`.
    pub direction: u8,
    /// TCP flag byte (see [`tcp_flags`]).
    pub tcp_flags: u8,
    /// Index of this chunk within its segment (0 for the first).
    pub chunk_index: u8,
    /// Sequence number of the first payload byte of this chunk (host order).
    pub seq: u32,
    /// Acknowledgement number (host order).
    pub ack: u32,
    /// Payload bytes of the whole segment.
    pub segment_len: u32,
    /// Payload bytes that follow this header in the record.
    pub chunk_len: u32,
    /// Interface the packet was seen on.
    pub ifindex: u32,
}

/// Size of [`SegmentEvent`] in bytes.
pub const SEGMENT_EVENT_SIZE: usize = core::mem::size_of::<SegmentEvent>();

/// One record as reserved in the ring buffer: header plus the largest chunk.
#[repr(C)]
pub struct SegmentRecord {
    pub event: SegmentEvent,
    pub payload: [u8; CHUNK_SIZE],
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for SegmentEvent {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_layout_has_no_hidden_padding() {
        // 8 + 16 + 16 + 2 + 2 + 4 * 1 + 5 * 4 = 68, rounded up to the u64 alignment.
        assert_eq!(SEGMENT_EVENT_SIZE, 72);
        assert_eq!(core::mem::align_of::<SegmentEvent>(), 8);
    }

    #[test]
    fn record_fits_the_ring() {
        assert!(core::mem::size_of::<SegmentRecord>() < RING_BYTES as usize);
    }
}
