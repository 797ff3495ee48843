//! Decoding of the ring-buffer records the kernel side writes (`shadow_common::SegmentEvent`
//! followed by a payload chunk) into [`Segment`]s. Pure: no kernel, no I/O.

use bytes::Bytes;
use shadow_common::{DIR_REQUEST, FAMILY_IPV4, SEGMENT_EVENT_SIZE, SegmentEvent};
use shadow_core::segment::{Direction, FlowKey, Segment, TcpFlags};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Splits one ring record into its header and payload chunk; `None` when the record is shorter
/// than its header or than the chunk the header announces.
pub fn split_record(bytes: &[u8]) -> Option<(SegmentEvent, &[u8])> {
    if bytes.len() < SEGMENT_EVENT_SIZE {
        return None;
    }
    // SAFETY: the length is checked above; SegmentEvent is plain old data, read unaligned.
    let event: SegmentEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let end = SEGMENT_EVENT_SIZE.checked_add(event.chunk_len as usize)?;
    let payload = bytes.get(SEGMENT_EVENT_SIZE..end)?;
    Some((event, payload))
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

    fn record(event: &SegmentEvent, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; SEGMENT_EVENT_SIZE];
        // SAFETY: the buffer is exactly the size of the header.
        unsafe { std::ptr::write_unaligned(bytes.as_mut_ptr().cast(), *event) };
        bytes.extend_from_slice(payload);
        bytes
    }

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
        let seg = parse_record(&record(&event, b"hello"), 5_000).unwrap();
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
        let seg = parse_record(&record(&event, b""), 0).unwrap();
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
        assert!(parse_record(&record(&event, b"short"), 0).is_none());
        assert!(parse_record(&[0u8; 8], 0).is_none());
        let huge = SegmentEvent {
            chunk_len: u32::MAX,
            ..Default::default()
        };
        assert!(parse_record(&record(&huge, b"x"), 0).is_none());
    }
}
