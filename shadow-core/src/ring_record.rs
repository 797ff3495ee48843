//! Decoding of the ring-buffer records the eBPF tap writes (`shadow_common::SegmentEvent`
//! followed by a payload chunk) into [`Segment`]s. Pure: no kernel, no I/O.
//!
//! The header is read field by field at its `#[repr(C)]` offsets, in the host's byte order (the
//! kernel writes the struct as it lies in memory), so no `unsafe` is needed; the daemon checks
//! that this agrees with the struct's in-memory layout.

use crate::segment::{Direction, FlowKey, Segment, TcpFlags};
use bytes::Bytes;
use shadow_common::{DIR_REQUEST, FAMILY_IPV4, SEGMENT_EVENT_SIZE, SegmentEvent};
use std::mem::offset_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Splits one ring record into its header and payload chunk; `None` when the record is shorter
/// than its header or than the chunk the header announces.
pub fn split_record(bytes: &[u8]) -> Option<(SegmentEvent, &[u8])> {
    let header = bytes.first_chunk::<SEGMENT_EVENT_SIZE>()?;
    let event = decode_event(header);
    let end = SEGMENT_EVENT_SIZE.checked_add(event.chunk_len as usize)?;
    let payload = bytes.get(SEGMENT_EVENT_SIZE..end)?;
    Some((event, payload))
}

/// One record as the kernel writes it: `event`'s header bytes (padding zeroed) followed by
/// `payload`. The inverse of [`split_record`] when `event.chunk_len` is `payload.len()`; for
/// tests, benchmarks and fuzz seeds.
pub fn encode_record(event: &SegmentEvent, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0u8; SEGMENT_EVENT_SIZE];
    let mut put = |offset: usize, field: &[u8]| {
        bytes[offset..offset + field.len()].copy_from_slice(field);
    };
    put(offset_of!(SegmentEvent, ts_ns), &event.ts_ns.to_ne_bytes());
    put(offset_of!(SegmentEvent, saddr), &event.saddr);
    put(offset_of!(SegmentEvent, daddr), &event.daddr);
    put(offset_of!(SegmentEvent, sport), &event.sport.to_ne_bytes());
    put(offset_of!(SegmentEvent, dport), &event.dport.to_ne_bytes());
    put(offset_of!(SegmentEvent, family), &[event.family]);
    put(offset_of!(SegmentEvent, direction), &[event.direction]);
    put(offset_of!(SegmentEvent, tcp_flags), &[event.tcp_flags]);
    put(offset_of!(SegmentEvent, chunk_index), &[event.chunk_index]);
    put(offset_of!(SegmentEvent, seq), &event.seq.to_ne_bytes());
    put(offset_of!(SegmentEvent, ack), &event.ack.to_ne_bytes());
    put(
        offset_of!(SegmentEvent, segment_len),
        &event.segment_len.to_ne_bytes(),
    );
    put(
        offset_of!(SegmentEvent, chunk_len),
        &event.chunk_len.to_ne_bytes(),
    );
    put(
        offset_of!(SegmentEvent, ifindex),
        &event.ifindex.to_ne_bytes(),
    );
    bytes.extend_from_slice(payload);
    bytes
}

/// The header fields at their `#[repr(C)]` offsets.
fn decode_event(header: &[u8; SEGMENT_EVENT_SIZE]) -> SegmentEvent {
    // The offsets are those of the struct, all inside its size: the slices cannot fail.
    fn field<const N: usize>(header: &[u8; SEGMENT_EVENT_SIZE], offset: usize) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&header[offset..offset + N]);
        out
    }
    let byte = |offset: usize| header[offset];
    SegmentEvent {
        ts_ns: u64::from_ne_bytes(field(header, offset_of!(SegmentEvent, ts_ns))),
        saddr: field(header, offset_of!(SegmentEvent, saddr)),
        daddr: field(header, offset_of!(SegmentEvent, daddr)),
        sport: u16::from_ne_bytes(field(header, offset_of!(SegmentEvent, sport))),
        dport: u16::from_ne_bytes(field(header, offset_of!(SegmentEvent, dport))),
        family: byte(offset_of!(SegmentEvent, family)),
        direction: byte(offset_of!(SegmentEvent, direction)),
        tcp_flags: byte(offset_of!(SegmentEvent, tcp_flags)),
        chunk_index: byte(offset_of!(SegmentEvent, chunk_index)),
        seq: u32::from_ne_bytes(field(header, offset_of!(SegmentEvent, seq))),
        ack: u32::from_ne_bytes(field(header, offset_of!(SegmentEvent, ack))),
        segment_len: u32::from_ne_bytes(field(header, offset_of!(SegmentEvent, segment_len))),
        chunk_len: u32::from_ne_bytes(field(header, offset_of!(SegmentEvent, chunk_len))),
        ifindex: u32::from_ne_bytes(field(header, offset_of!(SegmentEvent, ifindex))),
    }
}

/// Builds a [`Segment`] from a record header and its payload chunk. `clock_offset_ns` turns the
/// kernel's monotonic capture time into Unix time.
pub fn segment_from_event(event: &SegmentEvent, payload: &[u8], clock_offset_ns: i128) -> Segment {
    let ip = |raw: [u8; 16]| -> IpAddr {
        if event.family == FAMILY_IPV4 {
            IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(raw))
        }
    };
    let src = SocketAddr::new(ip(event.saddr), event.sport);
    let dst = SocketAddr::new(ip(event.daddr), event.dport);
    let (dir, flow) = if event.direction == DIR_REQUEST {
        (
            Direction::Request,
            FlowKey {
                client: src,
                server: dst,
            },
        )
    } else {
        (
            Direction::Response,
            FlowKey {
                client: dst,
                server: src,
            },
        )
    };
    Segment {
        flow,
        dir,
        seq: event.seq,
        ack: event.ack,
        flags: TcpFlags(event.tcp_flags),
        ts_ns: (event.ts_ns as i128 + clock_offset_ns).max(0) as u64,
        payload: Bytes::copy_from_slice(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadow_common::{DIR_RESPONSE, FAMILY_IPV6};

    fn parse_record(bytes: &[u8], clock_offset_ns: i128) -> Option<Segment> {
        split_record(bytes)
            .map(|(event, payload)| segment_from_event(&event, payload, clock_offset_ns))
    }

    #[test]
    fn ipv4_request_record() {
        let mut saddr = [0u8; 16];
        saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        let mut daddr = [0u8; 16];
        daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        let event = SegmentEvent {
            ts_ns: 1_000,
            saddr,
            daddr,
            sport: 40000,
            dport: 8080,
            family: FAMILY_IPV4,
            direction: DIR_REQUEST,
            tcp_flags: TcpFlags::ACK | TcpFlags::PSH,
            seq: 123,
            ack: 456,
            segment_len: 5,
            chunk_len: 5,
            ..Default::default()
        };
        let seg = parse_record(&encode_record(&event, b"hello"), 5_000).unwrap();
        assert_eq!(seg.flow.client, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(seg.flow.server, "10.0.0.2:8080".parse().unwrap());
        assert_eq!(seg.dir, Direction::Request);
        assert_eq!((seg.seq, seg.ack, seg.ts_ns), (123, 456, 6_000));
        assert_eq!(seg.payload, "hello");
    }

    #[test]
    fn ipv6_response_record_names_the_flow_from_the_client() {
        let server: Ipv6Addr = "fd00::1".parse().unwrap();
        let client: Ipv6Addr = "fd00::2".parse().unwrap();
        let event = SegmentEvent {
            saddr: server.octets(),
            daddr: client.octets(),
            sport: 8080,
            dport: 50000,
            family: FAMILY_IPV6,
            direction: DIR_RESPONSE,
            chunk_len: 0,
            ..Default::default()
        };
        let seg = parse_record(&encode_record(&event, b""), 0).unwrap();
        assert_eq!(seg.flow.client, "[fd00::2]:50000".parse().unwrap());
        assert_eq!(seg.flow.server, "[fd00::1]:8080".parse().unwrap());
        assert_eq!(seg.dir, Direction::Response);
    }

    #[test]
    fn short_or_inconsistent_records_are_rejected() {
        let event = SegmentEvent {
            chunk_len: 10,
            ..Default::default()
        };
        assert!(parse_record(&encode_record(&event, b"short"), 0).is_none());
        assert!(parse_record(&[0u8; 8], 0).is_none());
        let huge = SegmentEvent {
            chunk_len: u32::MAX,
            ..Default::default()
        };
        assert!(parse_record(&encode_record(&huge, b"x"), 0).is_none());
    }

    #[test]
    fn every_header_field_survives_encoding_and_decoding() {
        // Distinct bytes in every field: a wrong offset or width shows as a mismatch.
        let event = SegmentEvent {
            ts_ns: 0x0102_0304_0506_0708,
            saddr: core::array::from_fn(|i| 0x10 + i as u8),
            daddr: core::array::from_fn(|i| 0x30 + i as u8),
            sport: 0x4142,
            dport: 0x4344,
            family: 0x45,
            direction: 0x46,
            tcp_flags: 0x47,
            chunk_index: 0x48,
            seq: 0x5152_5354,
            ack: 0x5556_5758,
            segment_len: 0x6162_6364,
            chunk_len: 3,
            ifindex: 0x7172_7374,
        };
        let bytes = encode_record(&event, b"abcdef");
        assert_eq!(bytes.len(), SEGMENT_EVENT_SIZE + 6);
        let (decoded, payload) = split_record(&bytes).unwrap();
        assert_eq!(decoded, event);
        assert_eq!(payload, b"abc", "the chunk is what the header announces");
    }
}
