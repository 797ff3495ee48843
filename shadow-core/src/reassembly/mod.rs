//! TCP reassembly: per connection and direction, ordered byte streams from
//! [`crate::segment::Segment`]s. Pure and synchronous (no I/O), so it can be fuzzed.
//!
//! [`Reassembler::push`] takes segments in capture order and appends [`StreamEvent`]s:
//! in-order [`StreamEvent::Data`] (zero-copy slices of the segment payloads), a
//! [`StreamEvent::Gap`] when a hole is declared permanent (never guessed), half-close
//! [`StreamEvent::Fin`] and [`StreamEvent::Closed`] when a connection ends (FIN both ways, RST,
//! idle eviction, memory pressure or end of capture).
//!
//! Out-of-order bytes wait in a per-direction buffer until the hole before them is filled by a
//! retransmission. A hole becomes a gap when the flow's buffer exceeds
//! [`ReassemblyConfig::max_flow_buffer`], the global buffer exceeds
//! [`ReassemblyConfig::max_buffered`], the hole is older than
//! [`ReassemblyConfig::hole_timeout_ns`], or the connection ends.
//!
//! Sequence numbers are compared modulo 2³² (relative to the next expected byte), so streams
//! that wrap around are handled like any other.

mod stream;
mod table;

pub use table::Reassembler;

use crate::segment::{Direction, FlowKey};
use bytes::Bytes;

/// Limits of the reassembler. Over a limit it declares gaps and evicts; it never grows
/// without bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// Out-of-order bytes buffered per connection (both directions) before the oldest hole is
    /// declared a gap.
    pub max_flow_buffer: usize,
    /// Out-of-order bytes buffered over all connections before holes are declared gaps,
    /// largest buffers first.
    pub max_buffered: usize,
    /// Connections silent for longer than this (capture time) are closed.
    pub idle_timeout_ns: u64,
    /// A hole still open this long after the first byte past it arrived is declared a gap.
    pub hole_timeout_ns: u64,
    /// Tracked connections; the least recently seen one is evicted to make room.
    pub max_flows: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        Self {
            max_flow_buffer: 4 << 20,
            max_buffered: 256 << 20,
            idle_timeout_ns: 60_000_000_000,
            hole_timeout_ns: 5_000_000_000,
            max_flows: 100_000,
        }
    }
}

/// Why a connection's streams ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Both directions sent FIN and every byte before them was delivered.
    Fin,
    /// A RST was seen.
    Reset,
    /// Silent for longer than [`ReassemblyConfig::idle_timeout_ns`].
    Idle,
    /// Evicted to stay within [`ReassemblyConfig::max_flows`].
    Evicted,
    /// A new SYN reused the connection's addresses.
    Reused,
    /// [`Reassembler::finish`]: the capture ended.
    EndOfCapture,
}

impl CloseReason {
    /// True when every byte of both streams was seen up to a clean or abortive end, so an
    /// unfinished message is the peer's doing, not a capture loss.
    pub fn is_connection_end(self) -> bool {
        matches!(self, CloseReason::Fin | CloseReason::Reset)
    }
}

/// What the reassembler tells its consumer, in stream order per direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// The first bytes of a direction whose start (SYN) was not seen: the stream is observed
    /// from the middle, the consumer must resync.
    Joined {
        /// The connection.
        flow: FlowKey,
        /// The direction joined.
        dir: Direction,
    },
    /// The next in-order bytes of one direction.
    Data {
        /// The connection.
        flow: FlowKey,
        /// The direction the bytes travelled.
        dir: Direction,
        /// Sequence number of `bytes[0]`.
        seq: u32,
        /// The acknowledgment number of the segment that carried the bytes, if its ACK flag
        /// was set.
        ack: Option<u32>,
        /// Capture time of that segment.
        ts_ns: u64,
        /// The bytes, in stream order.
        bytes: Bytes,
    },
    /// `len` bytes of one direction will never be seen; the stream continues after them.
    Gap {
        /// The connection.
        flow: FlowKey,
        /// The direction with the hole.
        dir: Direction,
        /// Bytes missing.
        len: u64,
        /// When the bytes were declared lost.
        ts_ns: u64,
    },
    /// The direction sent FIN and every byte before it was delivered.
    Fin {
        /// The connection.
        flow: FlowKey,
        /// The direction that finished.
        dir: Direction,
        /// When the last byte before the FIN was delivered.
        ts_ns: u64,
    },
    /// The connection is gone; no further event names it (until a new SYN).
    Closed {
        /// The connection.
        flow: FlowKey,
        /// Why it was closed.
        reason: CloseReason,
        /// When it was closed (capture time of the deciding segment or check).
        ts_ns: u64,
    },
}

impl StreamEvent {
    /// The connection the event belongs to.
    pub fn flow(&self) -> FlowKey {
        match self {
            StreamEvent::Joined { flow, .. }
            | StreamEvent::Data { flow, .. }
            | StreamEvent::Gap { flow, .. }
            | StreamEvent::Fin { flow, .. }
            | StreamEvent::Closed { flow, .. } => *flow,
        }
    }
}

/// Reassembly counters, read by the metrics layer (`flows_active`, `reassembly_bytes`,
/// `capture_dropped_total{stage="reassembly"}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Segments pushed.
    pub segments: u64,
    /// Segments ignored: no payload and no known connection, or RST of an unknown one.
    pub ignored_segments: u64,
    /// Payload bytes delivered in order.
    pub bytes_delivered: u64,
    /// Payload bytes dropped as already delivered or already buffered (retransmissions).
    pub duplicate_bytes: u64,
    /// Connections currently tracked (`flows_active`).
    pub flows_active: u64,
    /// Connections seen in total.
    pub flows_total: u64,
    /// Directions first seen in the middle of the stream (no SYN).
    pub midstream_joins: u64,
    /// Out-of-order bytes currently buffered (`reassembly_bytes`).
    pub bytes_buffered: u64,
    /// Holes declared permanent.
    pub gaps: u64,
    /// Bytes lost in those holes.
    pub gap_bytes: u64,
    /// Holes declared early because a flow or the global buffer was over its cap
    /// (`capture_dropped_total{stage="reassembly"}`).
    pub memory_evictions: u64,
    /// Connections closed for inactivity.
    pub idle_evictions: u64,
    /// Connections evicted to stay within `max_flows`.
    pub flow_evictions: u64,
}

#[cfg(test)]
mod tests;
