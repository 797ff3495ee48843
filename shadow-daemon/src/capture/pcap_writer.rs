//! Writes captured segments to a standard pcap file (Ethernet link type, nanosecond
//! timestamps) that `tcpdump -r` and Wireshark read and reassemble.

use super::Segment;
use super::frame::encode_ethernet;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};
use std::io::Write;
use std::time::Duration;

/// Largest TCP payload written in one packet: keeps the IPv4 total length within 16 bits.
/// Bigger segments (GSO on loopback) are split into consecutive packets with advanced `seq`.
pub const MAX_PACKET_PAYLOAD: usize = 65_000;

/// Snap length announced in the file header: every packet is written whole.
const SNAPLEN: u32 = 262_144;

/// A pcap file being written segment by segment.
pub struct SegmentPcapWriter<W: Write> {
    inner: PcapWriter<W>,
    packets: u64,
}

impl<W: Write> SegmentPcapWriter<W> {
    /// Writes the file header.
    pub fn new(writer: W) -> Result<Self, pcap_file::PcapError> {
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: SNAPLEN,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::NanoSecond,
            endianness: Endianness::native(),
        };
        Ok(Self {
            inner: PcapWriter::with_header(writer, header)?,
            packets: 0,
        })
    }

    /// Appends `segment` as one packet (or several, if its payload exceeds
    /// [`MAX_PACKET_PAYLOAD`]).
    pub fn write(&mut self, segment: &Segment) -> Result<(), pcap_file::PcapError> {
        let timestamp = Duration::from_nanos(segment.ts_ns);
        if segment.payload.len() <= MAX_PACKET_PAYLOAD {
            return self.write_one(segment, timestamp);
        }
        let mut offset = 0;
        while offset < segment.payload.len() {
            let end = (offset + MAX_PACKET_PAYLOAD).min(segment.payload.len());
            let mut piece = segment.clone();
            piece.seq = segment.seq.wrapping_add(offset as u32);
            piece.payload = segment.payload.slice(offset..end);
            self.write_one(&piece, timestamp)?;
            offset = end;
        }
        Ok(())
    }

    fn write_one(
        &mut self,
        segment: &Segment,
        timestamp: Duration,
    ) -> Result<(), pcap_file::PcapError> {
        let frame = encode_ethernet(segment);
        self.inner
            .write_packet(&PcapPacket::new(timestamp, frame.len() as u32, &frame))?;
        self.packets += 1;
        Ok(())
    }

    /// Packets written so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(self) -> std::io::Result<W> {
        let mut writer = self.inner.into_writer();
        writer.flush()?;
        Ok(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::frame::{LinkType, decode};
    use crate::capture::{Direction, FlowKey, TcpFlags};
    use bytes::Bytes;
    use pcap_file::pcap::PcapReader;

    fn seg(seq: u32, payload: Vec<u8>, ts_ns: u64) -> Segment {
        Segment {
            flow: FlowKey {
                client: "127.0.0.1:50000".parse().unwrap(),
                server: "127.0.0.1:8080".parse().unwrap(),
            },
            dir: Direction::Response,
            seq,
            ack: 9,
            flags: TcpFlags(TcpFlags::ACK),
            ts_ns,
            payload: Bytes::from(payload),
        }
    }

    #[test]
    fn written_file_reads_back_with_pcap_file() {
        let segments = vec![
            seg(1, b"hello".to_vec(), 1_000_000_001),
            seg(6, vec![], 2_500_000_000),
        ];
        let mut writer = SegmentPcapWriter::new(Vec::new()).unwrap();
        for s in &segments {
            writer.write(s).unwrap();
        }
        assert_eq!(writer.packets(), 2);
        let bytes = writer.finish().unwrap();

        let mut reader = PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(reader.header().datalink, DataLink::ETHERNET);
        assert_eq!(reader.header().ts_resolution, TsResolution::NanoSecond);
        let mut read = Vec::new();
        while let Some(packet) = reader.next_packet() {
            let packet = packet.unwrap();
            assert_eq!(packet.orig_len as usize, packet.data.len());
            let ts = packet.timestamp.as_nanos() as u64;
            read.push(decode(LinkType::Ethernet, &packet.data, &[8080], ts).unwrap());
        }
        assert_eq!(read, segments);
    }

    #[test]
    fn oversized_segment_is_split_with_advancing_seq() {
        let payload: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        let mut writer = SegmentPcapWriter::new(Vec::new()).unwrap();
        writer
            .write(&seg(u32::MAX - 10, payload.clone(), 7))
            .unwrap();
        let bytes = writer.finish().unwrap();
        let mut reader = PcapReader::new(&bytes[..]).unwrap();
        let mut joined = Vec::new();
        let mut expected_seq = u32::MAX - 10;
        while let Some(packet) = reader.next_packet() {
            let s = decode(LinkType::Ethernet, &packet.unwrap().data, &[8080], 0).unwrap();
            assert_eq!(s.seq, expected_seq);
            expected_seq = expected_seq.wrapping_add(s.payload.len() as u32);
            joined.extend_from_slice(&s.payload);
        }
        assert_eq!(joined, payload);
    }
}
