//! Synthetic captures for tests, benchmarks and fuzzing: TCP connections carrying given bytes,
//! as [`Segment`]s or as pcap/pcapng files of any supported link type.
//!
//! ```
//! use shadow_core::testkit::Conn;
//! let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:8080");
//! c.handshake()
//!     .request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
//!     .response(b"HTTP/1.1 204 No Content\r\n\r\n")
//!     .close();
//! assert_eq!(c.segments().len(), 8); // 3 handshake, 1 request, 1 response, 3 closing
//! ```

pub mod h2;

use crate::frame::{LinkType, encode_ethernet};
use crate::pcap_writer::SegmentPcapWriter;
use crate::segment::{Direction, FlowKey, Segment, TcpFlags};
use bytes::Bytes;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::{DataLink, Endianness, TsResolution};
use std::borrow::Cow;
use std::time::Duration;

/// Capture time of the first segment of a [`Conn`] unless set otherwise.
pub const START_NS: u64 = 1_700_000_000_000_000_000;

/// One TCP connection being written segment by segment, with consistent sequence and
/// acknowledgment numbers. Each segment is 1 µs after the previous one.
#[derive(Clone, Debug)]
pub struct Conn {
    flow: FlowKey,
    /// Next sequence number of the client and of the server.
    client_seq: u32,
    server_seq: u32,
    ts_ns: u64,
    mss: usize,
    segments: Vec<Segment>,
}

impl Conn {
    /// A connection from `client` to `server` (socket addresses, IPv4 or IPv6).
    pub fn new(client: &str, server: &str) -> Self {
        Self {
            flow: FlowKey {
                client: client.parse().expect("client address"),
                server: server.parse().expect("server address"),
            },
            client_seq: 1_000,
            server_seq: 500_000,
            ts_ns: START_NS,
            mss: 1448,
            segments: Vec::new(),
        }
    }

    /// Initial sequence numbers (e.g. near 2³² to test wrap-around).
    pub fn isn(mut self, client: u32, server: u32) -> Self {
        self.client_seq = client;
        self.server_seq = server;
        self
    }

    /// Largest payload per segment.
    pub fn mss(mut self, mss: usize) -> Self {
        self.mss = mss.max(1);
        self
    }

    /// Capture time of the next segment.
    pub fn at(mut self, ts_ns: u64) -> Self {
        self.ts_ns = ts_ns;
        self
    }

    /// The connection's addresses.
    pub fn flow(&self) -> FlowKey {
        self.flow
    }

    /// Next sequence number of `dir`'s sender.
    pub fn next_seq(&self, dir: Direction) -> u32 {
        match dir {
            Direction::Request => self.client_seq,
            Direction::Response => self.server_seq,
        }
    }

    /// Lets capture time pass.
    pub fn wait(&mut self, ns: u64) -> &mut Self {
        self.ts_ns += ns;
        self
    }

    fn push(&mut self, dir: Direction, flags: u8, payload: Bytes) {
        let (seq, ack) = match dir {
            Direction::Request => (self.client_seq, self.server_seq),
            Direction::Response => (self.server_seq, self.client_seq),
        };
        self.segments.push(Segment {
            flow: self.flow,
            dir,
            seq,
            ack,
            flags: TcpFlags(flags),
            ts_ns: self.ts_ns,
            payload,
        });
        self.ts_ns += 1_000;
    }

    /// SYN, SYN-ACK, ACK.
    pub fn handshake(&mut self) -> &mut Self {
        self.client_seq = self.client_seq.wrapping_sub(1);
        self.server_seq = self.server_seq.wrapping_sub(1);
        self.push(Direction::Request, TcpFlags::SYN, Bytes::new());
        self.client_seq = self.client_seq.wrapping_add(1);
        self.push(
            Direction::Response,
            TcpFlags::SYN | TcpFlags::ACK,
            Bytes::new(),
        );
        self.server_seq = self.server_seq.wrapping_add(1);
        self.push(Direction::Request, TcpFlags::ACK, Bytes::new());
        self
    }

    /// Sends `bytes` in `dir`, split into segments of at most the MSS.
    pub fn send(&mut self, dir: Direction, bytes: &[u8]) -> &mut Self {
        let all = Bytes::copy_from_slice(bytes);
        let mut offset = 0;
        while offset < all.len() {
            let end = (offset + self.mss).min(all.len());
            self.push(dir, TcpFlags::ACK | TcpFlags::PSH, all.slice(offset..end));
            let len = (end - offset) as u32;
            match dir {
                Direction::Request => self.client_seq = self.client_seq.wrapping_add(len),
                Direction::Response => self.server_seq = self.server_seq.wrapping_add(len),
            }
            offset = end;
        }
        self
    }

    /// Client → server bytes.
    pub fn request(&mut self, bytes: &[u8]) -> &mut Self {
        self.send(Direction::Request, bytes)
    }

    /// Server → client bytes.
    pub fn response(&mut self, bytes: &[u8]) -> &mut Self {
        self.send(Direction::Response, bytes)
    }

    /// A FIN from `dir`'s sender.
    pub fn fin(&mut self, dir: Direction) -> &mut Self {
        self.push(dir, TcpFlags::FIN | TcpFlags::ACK, Bytes::new());
        match dir {
            Direction::Request => self.client_seq = self.client_seq.wrapping_add(1),
            Direction::Response => self.server_seq = self.server_seq.wrapping_add(1),
        }
        self
    }

    /// Orderly close: client FIN, server FIN, final ACK.
    pub fn close(&mut self) -> &mut Self {
        self.fin(Direction::Request);
        self.fin(Direction::Response);
        self.push(Direction::Request, TcpFlags::ACK, Bytes::new());
        self
    }

    /// A RST from `dir`'s sender.
    pub fn rst(&mut self, dir: Direction) -> &mut Self {
        self.push(dir, TcpFlags::RST | TcpFlags::ACK, Bytes::new());
        self
    }

    /// The segments so far.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Takes the segments.
    pub fn into_segments(self) -> Vec<Segment> {
        self.segments
    }
}

/// Round-robin merge of several connections' segments, each keeping its own order; capture
/// times are rewritten to increase by 1 µs per segment from [`START_NS`].
pub fn interleave(conns: Vec<Vec<Segment>>) -> Vec<Segment> {
    let mut iters: Vec<_> = conns.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::new();
    loop {
        let mut any = false;
        for it in &mut iters {
            if let Some(mut s) = it.next() {
                s.ts_ns = START_NS + out.len() as u64 * 1_000;
                out.push(s);
                any = true;
            }
        }
        if !any {
            return out;
        }
    }
}

/// A pcap file (Ethernet, ns timestamps) holding `segments`.
pub fn pcap_bytes(segments: &[Segment]) -> Vec<u8> {
    let mut writer = SegmentPcapWriter::new(Vec::new()).expect("in-memory writer");
    for s in segments {
        writer.write(s).expect("in-memory write");
    }
    writer.finish().expect("in-memory flush")
}

/// `segment` framed for `link`.
pub fn frame(link: LinkType, segment: &Segment) -> Vec<u8> {
    let eth = encode_ethernet(segment);
    let ethertype = [eth[12], eth[13]];
    let ip = &eth[14..];
    let mut out = Vec::with_capacity(eth.len() + 8);
    match link {
        LinkType::Ethernet => out.extend_from_slice(&eth),
        LinkType::RawIp => out.extend_from_slice(ip),
        LinkType::LinuxSll => {
            // packet type, ARPHRD_LOOPBACK, address length, address, protocol
            out.extend_from_slice(&[0, 0, 0x03, 0x04, 0, 6]);
            out.extend_from_slice(&[0u8; 8]);
            out.extend_from_slice(&ethertype);
            out.extend_from_slice(ip);
        }
        LinkType::LinuxSll2 => {
            // protocol, reserved, ifindex, ARPHRD_LOOPBACK, packet type, address length, address
            out.extend_from_slice(&ethertype);
            out.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0x03, 0x04, 0, 6]);
            out.extend_from_slice(&[0u8; 8]);
            out.extend_from_slice(ip);
        }
        LinkType::Null => {
            // Address family in the capturing host's byte order (little-endian here).
            let family: u32 = if ethertype == [0x08, 0x00] { 2 } else { 30 };
            out.extend_from_slice(&family.to_le_bytes());
            out.extend_from_slice(ip);
        }
        LinkType::Nflog => {
            // Header (family, version, resource id), then the NFULA_PAYLOAD TLV
            // (length and type in host byte order, little-endian here), padded to 4 bytes.
            let family = if ethertype == [0x08, 0x00] { 2 } else { 10 };
            out.extend_from_slice(&[family, 0, 0, 0]);
            out.extend_from_slice(&((ip.len() + 4) as u16).to_le_bytes());
            out.extend_from_slice(&9u16.to_le_bytes());
            out.extend_from_slice(ip);
            out.resize(out.len().div_ceil(4) * 4, 0);
        }
    }
    out
}

fn datalink(link: LinkType) -> DataLink {
    match link {
        LinkType::Ethernet => DataLink::ETHERNET,
        LinkType::RawIp => DataLink::RAW,
        LinkType::LinuxSll => DataLink::LINUX_SLL,
        LinkType::LinuxSll2 => DataLink::LINUX_SLL2,
        LinkType::Null => DataLink::NULL,
        LinkType::Nflog => DataLink::NFLOG,
    }
}

/// A pcap file of `link` frames, microsecond timestamps, each packet cut to `snaplen` bytes
/// (as `tcpdump -s` does).
pub fn pcap_bytes_with(link: LinkType, segments: &[Segment], snaplen: u32) -> Vec<u8> {
    let header = PcapHeader {
        version_major: 2,
        version_minor: 4,
        ts_correction: 0,
        ts_accuracy: 0,
        snaplen,
        datalink: datalink(link),
        ts_resolution: TsResolution::MicroSecond,
        endianness: Endianness::Big,
    };
    let mut writer = PcapWriter::with_header(Vec::new(), header).expect("in-memory writer");
    for s in segments {
        let data = frame(link, s);
        let cut = &data[..data.len().min(snaplen as usize)];
        writer
            .write_packet(&PcapPacket::new(
                Duration::from_nanos(s.ts_ns),
                data.len() as u32,
                cut,
            ))
            .expect("in-memory write");
    }
    writer.into_writer()
}

/// A pcap file (microsecond timestamps 1 µs apart) of ready-made `link` frames, each cut to
/// `snaplen` bytes (its original length recorded, as `tcpdump -s` does).
pub fn pcap_of_frames(link: LinkType, frames: &[Vec<u8>], snaplen: usize) -> Vec<u8> {
    let header = PcapHeader {
        datalink: datalink(link),
        ts_resolution: TsResolution::MicroSecond,
        snaplen: snaplen.try_into().unwrap_or(u32::MAX),
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(Vec::new(), header).expect("in-memory writer");
    for (i, data) in frames.iter().enumerate() {
        let ts = Duration::from_nanos(START_NS) + Duration::from_micros(i as u64);
        let cut = &data[..data.len().min(snaplen)];
        writer
            .write_packet(&PcapPacket::new(ts, data.len() as u32, cut))
            .expect("in-memory write");
    }
    writer.into_writer()
}

/// A pcapng file of `link` frames. With `nanos`, the interface declares nanosecond
/// timestamps; otherwise the pcapng default (microseconds) applies.
pub fn pcapng_bytes(link: LinkType, segments: &[Segment], nanos: bool) -> Vec<u8> {
    let mut writer = PcapNgWriter::new(Vec::new()).expect("in-memory writer");
    let options = if nanos {
        vec![InterfaceDescriptionOption::IfTsResol(9)]
    } else {
        Vec::new()
    };
    writer
        .write_pcapng_block(InterfaceDescriptionBlock {
            linktype: datalink(link),
            snaplen: 0,
            options,
        })
        .expect("in-memory write");
    for s in segments {
        let data = frame(link, s);
        let units = if nanos { s.ts_ns } else { s.ts_ns / 1_000 };
        writer
            .write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                // pcap-file writes the raw value; the interface says what unit it is.
                timestamp: Duration::from_nanos(units),
                original_len: data.len() as u32,
                data: Cow::Owned(data),
                options: Vec::new(),
            })
            .expect("in-memory write");
    }
    writer.into_inner()
}
