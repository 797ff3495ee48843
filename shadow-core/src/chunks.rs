//! Rejoins the bounded chunks the eBPF tap emits for one large segment (GSO/GRO packets up to
//! 128 KiB, see `shadow_common::MAX_CHUNKS`) into the segment that was on the wire, so that
//! downstream stages and pcap files see real packets, and a retransmitted packet counts once.
//!
//! Chunks of one segment are written consecutively by one CPU, but records of different CPUs
//! interleave in the ring, also for one connection (the packets of one flow can be processed by
//! two CPUs at once, e.g. on `lo` when the sender migrates): pending segments are kept per
//! segment, named by connection direction and capture time (one program run stamps all the
//! chunks of its packet with the same nanosecond). A chunk lost to
//! a full ring leaves its segment short: what arrived is delivered as it is, never padded or
//! guessed, with the number of bytes known lost right after it
//! ([`CapturedSegment::missing`]), so that reassembly marks the gap at once instead of waiting
//! for bytes that will never come.

use crate::ring_record::segment_from_event;
use crate::segment::{CapturedSegment, Direction, FlowKey, Segment, TcpFlags};
use bytes::BytesMut;
use shadow_common::{CHUNK_SIZE, MAX_CHUNKS, SegmentEvent};
use std::collections::HashMap;

/// The most payload the kernel sends for one segment: what a pending segment reserves at most,
/// whatever length its header announces.
const MAX_SEGMENT_BYTES: usize = MAX_CHUNKS as usize * CHUNK_SIZE;

/// A segment whose chunks are still arriving.
struct Pending {
    segment: Segment,
    body: BytesMut,
    next_seq: u32,
    segment_len: usize,
    /// Drain round in which the segment was started.
    round: u64,
}

/// Names one segment: its chunks share the connection direction and the capture time.
type SegmentKey = (FlowKey, Direction, u64);

/// Joins chunk records into segments.
#[derive(Default)]
pub struct ChunkJoiner {
    pending: HashMap<SegmentKey, Pending>,
    round: u64,
}

impl ChunkJoiner {
    /// Takes one record (header and its payload chunk); completed segments go to `out`.
    pub fn push(
        &mut self,
        event: &SegmentEvent,
        payload: &[u8],
        clock_offset_ns: i128,
        out: &mut Vec<CapturedSegment>,
    ) {
        let chunk = segment_from_event(event, payload, clock_offset_ns);
        let key = (chunk.flow, chunk.dir, event.ts_ns);
        if event.chunk_index == 0 {
            if payload.len() >= event.segment_len as usize {
                out.push(chunk.into());
                return;
            }
            let mut body =
                BytesMut::with_capacity((event.segment_len as usize).min(MAX_SEGMENT_BYTES));
            body.extend_from_slice(payload);
            self.pending.insert(
                key,
                Pending {
                    next_seq: chunk.seq.wrapping_add(payload.len() as u32),
                    segment_len: event.segment_len as usize,
                    segment: chunk,
                    body,
                    round: self.round,
                },
            );
            return;
        }
        match self.pending.get_mut(&key) {
            Some(p) if p.next_seq == chunk.seq => {
                p.body.extend_from_slice(payload);
                p.next_seq = p.next_seq.wrapping_add(payload.len() as u32);
                p.segment.flags = TcpFlags(p.segment.flags.0 | chunk.flags.0);
                if p.body.len() >= p.segment_len
                    && let Some(done) = self.pending.remove(&key)
                {
                    out.push(done.finish());
                }
            }
            _ => {
                // Chunks of this segment were lost: deliver what came, as it came, the part
                // before the hole with the hole's length.
                if let Some(stale) = self.pending.remove(&key) {
                    let hole = chunk.seq.wrapping_sub(stale.next_seq);
                    let hole = if hole <= stale.remaining() { hole } else { 0 };
                    out.push(stale.cut(hole));
                }
                out.push(chunk.into());
            }
        }
    }

    /// Ends a drain of the ring: segments that were already incomplete at the end of the
    /// previous drain will get no more chunks (a segment's chunks are submitted within one
    /// program run) and are delivered short, their lost tail as missing.
    pub fn end_round(&mut self, out: &mut Vec<CapturedSegment>) {
        let round = self.round;
        let stale: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, p)| p.round < round)
            .map(|(k, _)| *k)
            .collect();
        for key in stale {
            if let Some(p) = self.pending.remove(&key) {
                out.push(p.finish());
            }
        }
        self.round += 1;
    }

    /// Delivers everything pending (at shutdown), their missing tails as missing.
    pub fn flush(&mut self, out: &mut Vec<CapturedSegment>) {
        out.extend(self.pending.drain().map(|(_, p)| p.finish()));
    }
}

impl Pending {
    /// Segment bytes not received yet.
    fn remaining(&self) -> u32 {
        u32::try_from(self.segment_len.saturating_sub(self.body.len())).unwrap_or(u32::MAX)
    }

    /// The segment as received; what did not arrive is its lost tail.
    fn finish(self) -> CapturedSegment {
        let missing = self.remaining();
        self.cut(missing)
    }

    /// The segment as received, `missing` bytes lost right after it.
    fn cut(mut self, missing: u32) -> CapturedSegment {
        self.segment.payload = self.body.freeze();
        CapturedSegment {
            segment: self.segment,
            missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadow_common::{DIR_REQUEST, FAMILY_IPV4, tcp_flags};

    fn event(
        sport: u16,
        index: u8,
        seq: u32,
        segment_len: u32,
        chunk_len: u32,
        flags: u8,
    ) -> SegmentEvent {
        let mut saddr = [0u8; 16];
        saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        let mut daddr = [0u8; 16];
        daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        SegmentEvent {
            ts_ns: 1000 + u64::from(sport),
            saddr,
            daddr,
            sport,
            dport: 8080,
            family: FAMILY_IPV4,
            direction: DIR_REQUEST,
            tcp_flags: flags,
            chunk_index: index,
            seq,
            segment_len,
            chunk_len,
            ..Default::default()
        }
    }

    #[test]
    fn interleaved_chunks_of_two_connections_are_rejoined() {
        let mut j = ChunkJoiner::default();
        let mut out = Vec::new();
        let a: Vec<u8> = (0..10).collect();
        let b: Vec<u8> = (100..106).collect();
        j.push(
            &event(1, 0, 500, 10, 4, tcp_flags::ACK),
            &a[..4],
            0,
            &mut out,
        );
        j.push(
            &event(2, 0, 900, 6, 3, tcp_flags::ACK),
            &b[..3],
            0,
            &mut out,
        );
        j.push(
            &event(1, 1, 504, 10, 4, tcp_flags::ACK),
            &a[4..8],
            0,
            &mut out,
        );
        j.push(
            &event(2, 1, 903, 6, 3, tcp_flags::ACK | tcp_flags::FIN),
            &b[3..],
            0,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].segment.payload, b[..]);
        assert!(out[0].segment.flags.fin());
        assert_eq!(out[0].missing, 0);
        j.push(
            &event(1, 2, 508, 10, 2, tcp_flags::ACK),
            &a[8..],
            0,
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[1].segment.seq, &out[1].segment.payload[..]),
            (500, &a[..])
        );
    }

    #[test]
    fn two_segments_of_one_connection_interleaved_by_two_cpus_are_rejoined() {
        let mut j = ChunkJoiner::default();
        let mut out = Vec::new();
        let data: Vec<u8> = (0..16).collect();
        let ack = tcp_flags::ACK;
        // One connection, two packets captured at different times by two CPUs, their chunk
        // records interleaved in the ring.
        let s1 = [event(1, 0, 0, 8, 4, ack), event(1, 1, 4, 8, 4, ack)];
        let mut s2 = [event(1, 0, 8, 8, 4, ack), event(1, 1, 12, 8, 4, ack)];
        for e in &mut s2 {
            e.ts_ns += 1;
        }
        j.push(&s1[0], &data[0..4], 0, &mut out);
        j.push(&s2[0], &data[8..12], 0, &mut out);
        j.push(&s1[1], &data[4..8], 0, &mut out);
        j.push(&s2[1], &data[12..16], 0, &mut out);
        let got: Vec<_> = out
            .iter()
            .map(|s| (s.segment.seq, &s.segment.payload[..], s.missing))
            .collect();
        assert_eq!(got, vec![(0, &data[0..8], 0), (8, &data[8..16], 0)]);
    }

    #[test]
    fn single_chunk_segments_pass_straight_through() {
        let mut j = ChunkJoiner::default();
        let mut out = Vec::new();
        j.push(&event(1, 0, 7, 3, 3, tcp_flags::ACK), b"abc", 0, &mut out);
        j.push(&event(1, 0, 0, 0, 0, tcp_flags::SYN), b"", 0, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].segment.payload, "abc");
        assert!(out[1].segment.flags.syn());
        assert!(out.iter().all(|s| s.missing == 0));
    }

    #[test]
    fn lost_chunks_leave_short_segments_never_padded_with_what_is_missing() {
        let mut j = ChunkJoiner::default();
        let mut out = Vec::new();
        let got = |out: &[CapturedSegment]| -> Vec<(u32, bytes::Bytes, u32)> {
            out.iter()
                .map(|s| (s.segment.seq, s.segment.payload.clone(), s.missing))
                .collect()
        };
        // Middle chunk lost: the first part is delivered short with the 3-byte hole after it,
        // the tail as its own segment.
        j.push(&event(1, 0, 0, 9, 3, tcp_flags::ACK), b"abc", 0, &mut out);
        j.push(&event(1, 2, 6, 9, 3, tcp_flags::ACK), b"ghi", 0, &mut out);
        assert_eq!(
            got(&out),
            vec![
                (0, bytes::Bytes::from_static(b"abc"), 3),
                (6, bytes::Bytes::from_static(b"ghi"), 0)
            ]
        );
        // Tail lost: delivered short after the next drain round at the latest, its six lost
        // bytes as missing.
        out.clear();
        j.push(&event(1, 0, 100, 9, 3, tcp_flags::ACK), b"xyz", 0, &mut out);
        j.end_round(&mut out);
        assert!(
            out.is_empty(),
            "still waiting for the rest within this round"
        );
        j.end_round(&mut out);
        assert_eq!(got(&out), vec![(100, bytes::Bytes::from_static(b"xyz"), 6)]);
    }

    /// The joiner's lost tail, handed to reassembly with `push_cut`, is a gap at once: the
    /// next segment's bytes come out right after it, with no hole timeout in between.
    #[test]
    fn a_lost_tail_is_a_gap_at_once_in_reassembly() {
        use crate::reassembly::{Reassembler, StreamEvent};
        let mut j = ChunkJoiner::default();
        let mut joined = Vec::new();
        // The handshake, then a 9-byte segment whose last two chunks were lost, then the next
        // segment (another packet, another capture time).
        let mut syn = event(1, 0, 99, 0, 0, tcp_flags::SYN);
        syn.ts_ns -= 1;
        j.push(&syn, b"", 0, &mut joined);
        j.push(
            &event(1, 0, 100, 9, 3, tcp_flags::ACK),
            b"abc",
            0,
            &mut joined,
        );
        j.end_round(&mut joined);
        j.end_round(&mut joined);
        let mut next = event(1, 0, 109, 2, 2, tcp_flags::ACK);
        next.ts_ns += 1;
        j.push(&next, b"hi", 0, &mut joined);
        let mut r = Reassembler::default();
        let mut events = Vec::new();
        for s in joined {
            r.push_cut(s.segment, s.missing, &mut events);
        }
        let stream: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Data { bytes, .. } => {
                    Some(String::from_utf8_lossy(bytes).into_owned())
                }
                StreamEvent::Gap { len, .. } => Some(format!("<gap {len}>")),
                _ => None,
            })
            .collect();
        assert_eq!(stream, vec!["abc", "<gap 6>", "hi"], "{events:?}");
    }

    #[test]
    fn an_announced_length_reserves_no_more_than_the_kernel_can_send() {
        // Found by fuzzing: a header announcing a 4 GiB segment reserved 4 GiB.
        let mut j = ChunkJoiner::default();
        let mut out = Vec::new();
        j.push(
            &event(1, 0, 0, u32::MAX, 3, tcp_flags::ACK),
            b"abc",
            0,
            &mut out,
        );
        let pending = j.pending.values().next().expect("waiting for more chunks");
        assert!(pending.body.capacity() <= MAX_SEGMENT_BYTES);
        j.flush(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].segment.payload, "abc");
    }

    #[test]
    fn flush_delivers_everything_pending() {
        let mut j = ChunkJoiner::default();
        let mut out = Vec::new();
        j.push(&event(1, 0, 0, 9, 3, tcp_flags::ACK), b"abc", 0, &mut out);
        j.push(&event(2, 0, 0, 9, 3, tcp_flags::ACK), b"def", 0, &mut out);
        j.flush(&mut out);
        assert_eq!(out.len(), 2);
    }
}
