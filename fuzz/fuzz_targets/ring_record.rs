//! Arbitrary bytes as the eBPF ring's records (each: a 2-byte little-endian length, then that
//! many bytes; the length's top bit ends a drain round first) → `ring_record::split_record`,
//! `segment_from_event` and the `chunks::ChunkJoiner`, as the daemon's ring reader does. Checks
//! that a decoded record's chunk is exactly the length its header announces and encodes back to
//! the same bytes, that a rejected record really is too short, that the segment names its flow
//! from the client's side, and that the joiner never yields more payload than it was fed and
//! holds nothing after a flush.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shadow_common::{DIR_REQUEST, SEGMENT_EVENT_SIZE, SegmentEvent};
use shadow_core::chunks::ChunkJoiner;
use shadow_core::ring_record::{encode_record, segment_from_event, split_record};
use shadow_core::segment::Direction;
use std::mem::offset_of;

/// Header bytes that are fields (the rest, up to `SEGMENT_EVENT_SIZE`, is padding).
const FIELD_BYTES: usize = offset_of!(SegmentEvent, ifindex) + 4;
/// Where the header says how long its chunk is.
const CHUNK_LEN: usize = offset_of!(SegmentEvent, chunk_len);
/// Monotonic → Unix time, as the reader computes it (any value: the sum is clamped).
const CLOCK_OFFSET_NS: i128 = 1_700_000_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    let mut joiner = ChunkJoiner::default();
    let mut out = Vec::new();
    let (mut fed, mut delivered) = (0usize, 0usize);
    let mut rest = data;
    while let Some((length, tail)) = rest.split_first_chunk::<2>() {
        let length = u16::from_le_bytes(*length);
        if length & 0x8000 != 0 {
            joiner.end_round(&mut out);
        }
        let (record, tail) = tail.split_at(usize::from(length & 0x7fff).min(tail.len()));
        rest = tail;
        let Some((event, payload)) = split_record(record) else {
            let announced = record
                .get(CHUNK_LEN..CHUNK_LEN + 4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize);
            assert!(
                record.len() < SEGMENT_EVENT_SIZE
                    || announced.is_some_and(|n| n > record.len() - SEGMENT_EVENT_SIZE),
                "a whole record was rejected"
            );
            continue;
        };
        assert_eq!(payload.len(), event.chunk_len as usize);
        assert_eq!(payload, &record[SEGMENT_EVENT_SIZE..][..payload.len()]);
        let encoded = encode_record(&event, payload);
        assert_eq!(encoded.len(), SEGMENT_EVENT_SIZE + payload.len());
        assert_eq!(encoded[..FIELD_BYTES], record[..FIELD_BYTES]);
        assert_eq!(encoded[SEGMENT_EVENT_SIZE..], *payload);

        let segment = segment_from_event(&event, payload, CLOCK_OFFSET_NS);
        assert_eq!(segment.payload, payload);
        let (dir, server_port) = if event.direction == DIR_REQUEST {
            (Direction::Request, event.dport)
        } else {
            (Direction::Response, event.sport)
        };
        assert_eq!(
            (segment.dir, segment.flow.server.port()),
            (dir, server_port)
        );

        fed += payload.len();
        joiner.push(&event, payload, CLOCK_OFFSET_NS, &mut out);
        delivered += out
            .drain(..)
            .map(|s| s.segment.payload.len())
            .sum::<usize>();
        assert!(delivered <= fed, "{delivered} bytes out of {fed} fed");
    }
    joiner.flush(&mut out);
    delivered += out
        .drain(..)
        .map(|s| s.segment.payload.len())
        .sum::<usize>();
    assert!(delivered <= fed, "{delivered} bytes out of {fed} fed");
    joiner.flush(&mut out);
    joiner.end_round(&mut out);
    assert!(out.is_empty(), "a flush leaves nothing pending");
});
