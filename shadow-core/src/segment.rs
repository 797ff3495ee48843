//! The unit every capture source produces: one TCP segment of a tapped connection, with the
//! connection named from the client's side.

use bytes::Bytes;
use std::fmt;
use std::net::SocketAddr;

/// One TCP connection, named from the client's side: `client` → `server` (the production port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// The peer that sent the request (ephemeral port).
    pub client: SocketAddr,
    /// The production model server (watched port).
    pub server: SocketAddr,
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.client, self.server)
    }
}

/// Which way a segment travelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → production server: request bytes.
    Request,
    /// Production server → client: response bytes.
    Response,
}

/// TCP flag bits of a segment (the TCP header's flag byte).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from the sender.
    pub const FIN: u8 = shadow_common::tcp_flags::FIN;
    /// Opens a connection; carries the initial sequence number.
    pub const SYN: u8 = shadow_common::tcp_flags::SYN;
    /// Aborts the connection.
    pub const RST: u8 = shadow_common::tcp_flags::RST;
    /// Push: the sender asks for the data to be delivered now.
    pub const PSH: u8 = shadow_common::tcp_flags::PSH;
    /// The acknowledgement number is valid.
    pub const ACK: u8 = shadow_common::tcp_flags::ACK;

    /// Whether FIN is set.
    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    /// Whether SYN is set.
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    /// Whether RST is set.
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    /// Whether ACK is set.
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
}

/// One TCP segment of a tapped connection, as every capture source produces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The connection it belongs to.
    pub flow: FlowKey,
    /// Request (client → server) or response bytes.
    pub dir: Direction,
    /// Sequence number of the first payload byte.
    pub seq: u32,
    /// Acknowledgement number (meaningful when [`TcpFlags::ack`]).
    pub ack: u32,
    /// TCP flags.
    pub flags: TcpFlags,
    /// When the segment was seen, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The TCP payload (may be shorter than on the wire if the capture cut it).
    pub payload: Bytes,
}

impl Segment {
    /// Source and destination socket addresses as they were on the wire.
    pub fn endpoints(&self) -> (SocketAddr, SocketAddr) {
        match self.dir {
            Direction::Request => (self.flow.client, self.flow.server),
            Direction::Response => (self.flow.server, self.flow.client),
        }
    }
}

/// A segment as a live capture delivers it: `missing` payload bytes right after its payload
/// were on the wire but not captured (the capture cut the segment; 0 when it came whole).
/// Reassembly makes them a gap at once (`push_cut`) instead of waiting for bytes that will
/// never come.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedSegment {
    /// The segment, with the payload as far as it was captured.
    pub segment: Segment,
    /// Payload bytes lost after it.
    pub missing: u32,
}

impl From<Segment> for CapturedSegment {
    /// A segment captured whole.
    fn from(segment: Segment) -> Self {
        CapturedSegment {
            segment,
            missing: 0,
        }
    }
}
