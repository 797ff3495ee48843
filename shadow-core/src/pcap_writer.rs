//! Writes captured segments to a standard pcap file (Ethernet link type, nanosecond
//! timestamps) that `tcpdump -r` and Wireshark read and reassemble.

use crate::frame::encode_ethernet;
use crate::segment::Segment;
use pcap_file::pcap::PcapHeader;
use pcap_file::{DataLink, Endianness, TsResolution};
use std::io::Write;

/// Largest TCP payload written in one packet: the most an IPv4 datagram can carry (65535
/// minus 20-byte IP and TCP headers), so every real packet, GSO super-packets on loopback
/// included, is written as one. Bigger segments are split with advanced `seq`.
pub const MAX_PACKET_PAYLOAD: usize = 65_535 - 20 - 20;

/// Snap length announced in the file header: every packet is written whole.
const SNAPLEN: u32 = 262_144;

/// A pcap file being written segment by segment. The file header comes from `pcap-file`;
/// packet records (16-byte header + frame, native byte order as the file header declares)
/// are written here so that the output can be flushed while recording goes on.
pub struct SegmentPcapWriter<W: Write> {
    out: W,
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
        let mut out = writer;
        header.write_to(&mut out)?;
        Ok(Self { out, packets: 0 })
    }

    /// Appends `segment` as one packet (or several, if its payload exceeds
    /// [`MAX_PACKET_PAYLOAD`]).
    pub fn write(&mut self, segment: &Segment) -> std::io::Result<()> {
        if segment.payload.len() <= MAX_PACKET_PAYLOAD {
            return self.write_one(segment);
        }
        let mut offset = 0;
        while offset < segment.payload.len() {
            let end = (offset + MAX_PACKET_PAYLOAD).min(segment.payload.len());
            let mut piece = segment.clone();
            piece.seq = segment.seq.wrapping_add(offset as u32);
            piece.payload = segment.payload.slice(offset..end);
            self.write_one(&piece)?;
            offset = end;
        }
        Ok(())
    }

    fn write_one(&mut self, segment: &Segment) -> std::io::Result<()> {
        let frame = encode_ethernet(segment);
        let len = frame.len() as u32;
        let mut record = [0u8; 16];
        record[0..4].copy_from_slice(&((segment.ts_ns / 1_000_000_000) as u32).to_ne_bytes());
        record[4..8].copy_from_slice(&((segment.ts_ns % 1_000_000_000) as u32).to_ne_bytes());
        record[8..12].copy_from_slice(&len.to_ne_bytes()); // captured length
        record[12..16].copy_from_slice(&len.to_ne_bytes()); // original length
        self.out.write_all(&record)?;
        self.out.write_all(&frame)?;
        self.packets += 1;
        Ok(())
    }

    /// Pushes buffered packets to the underlying writer (a recording in progress stays
    /// readable, and a crash loses at most what was written since).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// Packets written so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{LinkType, decode};
    use crate::segment::{Direction, FlowKey, TcpFlags};
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
            read.push(
                decode(LinkType::Ethernet, &packet.data, &[8080], ts)
                    .unwrap()
                    .segment,
            );
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
            let s = decode(LinkType::Ethernet, &packet.unwrap().data, &[8080], 0)
                .unwrap()
                .segment;
            assert_eq!(s.seq, expected_seq);
            expected_seq = expected_seq.wrapping_add(s.payload.len() as u32);
            joined.extend_from_slice(&s.payload);
        }
        assert_eq!(joined, payload);
    }
}
