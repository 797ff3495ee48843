//! Segments → stream events, one TCP situation per test, with hand-written expectations.

use super::*;
use crate::segment::{Segment, TcpFlags};
use bytes::Bytes;

fn flow(n: u16) -> FlowKey {
    FlowKey {
        client: format!("10.0.0.1:{n}").parse().unwrap(),
        server: "10.0.0.2:8080".parse().unwrap(),
    }
}

fn seg(f: FlowKey, dir: Direction, seq: u32, flags: u8, ts: u64, payload: &[u8]) -> Segment {
    Segment {
        flow: f,
        dir,
        seq,
        ack: 1,
        // A client's SYN carries no ACK.
        flags: TcpFlags(if dir == Direction::Request && flags & TcpFlags::SYN != 0 {
            flags
        } else {
            flags | TcpFlags::ACK
        }),
        ts_ns: ts,
        payload: Bytes::copy_from_slice(payload),
    }
}

const D: u8 = 0;
const REQ: Direction = Direction::Request;
const RESP: Direction = Direction::Response;

/// Simplified event: (kind, dir, bytes or length).
#[derive(Debug, PartialEq, Eq)]
enum E {
    Joined(Direction),
    Data(Direction, Vec<u8>),
    Gap(Direction, u64),
    Fin(Direction),
    Closed(CloseReason),
}

fn simple(events: &[StreamEvent]) -> Vec<E> {
    events
        .iter()
        .map(|e| match e {
            StreamEvent::Joined { dir, .. } => E::Joined(*dir),
            StreamEvent::Data { dir, bytes, .. } => E::Data(*dir, bytes.to_vec()),
            StreamEvent::Gap { dir, len, .. } => E::Gap(*dir, *len),
            StreamEvent::Fin { dir, .. } => E::Fin(*dir),
            StreamEvent::Closed { reason, .. } => E::Closed(*reason),
        })
        .collect()
}

fn push_all(r: &mut Reassembler, segs: Vec<Segment>) -> Vec<StreamEvent> {
    let mut out = Vec::new();
    for s in segs {
        r.push(s, &mut out);
    }
    out
}

/// Concatenated Data bytes of one direction.
fn stream(events: &[StreamEvent], want: Direction) -> Vec<u8> {
    let mut v = Vec::new();
    for e in events {
        if let StreamEvent::Data { dir, bytes, .. } = e
            && *dir == want
        {
            v.extend_from_slice(bytes);
        }
    }
    v
}

#[test]
fn in_order_with_handshake_and_fin() {
    let f = flow(1);
    let mut r = Reassembler::default();
    let ev = push_all(
        &mut r,
        vec![
            seg(f, REQ, 99, TcpFlags::SYN, 1, b""),
            seg(f, RESP, 499, TcpFlags::SYN, 2, b""),
            seg(f, REQ, 100, D, 3, b"abc"),
            seg(f, RESP, 500, D, 4, b"xy"),
            seg(f, REQ, 103, TcpFlags::FIN, 5, b"d"),
            seg(f, RESP, 502, TcpFlags::FIN, 6, b""),
            seg(f, REQ, 105, D, 7, b""),
        ],
    );
    assert_eq!(
        simple(&ev),
        vec![
            E::Data(REQ, b"abc".to_vec()),
            E::Data(RESP, b"xy".to_vec()),
            E::Data(REQ, b"d".to_vec()),
            E::Fin(REQ),
            E::Fin(RESP),
            E::Closed(CloseReason::Fin),
        ]
    );
    let st = r.stats();
    assert_eq!(st.flows_active, 0);
    assert_eq!(st.flows_total, 1);
    assert_eq!(st.bytes_delivered, 6);
    assert_eq!(
        st.ignored_segments, 1,
        "the final ACK of a closed connection"
    );
}

#[test]
fn out_of_order_is_buffered_then_delivered_with_seq_and_ts() {
    let f = flow(2);
    let mut r = Reassembler::default();
    let mut out = Vec::new();
    r.push(seg(f, REQ, 9, TcpFlags::SYN, 1, b""), &mut out);
    r.push(seg(f, REQ, 14, D, 2, b"fghij"), &mut out);
    r.push(seg(f, REQ, 20, D, 3, b"pq"), &mut out);
    assert_eq!(r.stats().bytes_buffered, 7);
    assert!(simple(&out).is_empty());
    r.push(seg(f, REQ, 19, D, 4, b"k"), &mut out);
    assert!(simple(&out).is_empty());
    r.push(seg(f, REQ, 10, D, 5, b"abcd"), &mut out);
    assert_eq!(
        simple(&out),
        vec![
            E::Data(REQ, b"abcd".to_vec()),
            E::Data(REQ, b"fghij".to_vec()),
            E::Data(REQ, b"k".to_vec()),
            E::Data(REQ, b"pq".to_vec()),
        ]
    );
    let seqs_ts: Vec<(u32, u64)> = out
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Data { seq, ts_ns, .. } => Some((*seq, *ts_ns)),
            _ => None,
        })
        .collect();
    assert_eq!(seqs_ts, vec![(10, 5), (14, 2), (19, 4), (20, 3)]);
    assert_eq!(r.stats().bytes_buffered, 0);
}

#[test]
fn duplicates_and_overlaps_are_trimmed() {
    let f = flow(3);
    let mut r = Reassembler::default();
    let ev = push_all(
        &mut r,
        vec![
            seg(f, REQ, 0, TcpFlags::SYN, 1, b""),
            seg(f, REQ, 1, D, 2, b"hello"),
            seg(f, REQ, 1, D, 3, b"hello"),  // exact duplicate
            seg(f, REQ, 4, D, 4, b"lo wor"), // overlaps 2, adds 4
            seg(f, REQ, 11, D, 5, b"d!"),    // ahead
            seg(f, REQ, 11, D, 6, b"d"),     // shorter duplicate of buffered
            seg(f, REQ, 8, D, 7, b"orld"),   // overlaps delivered and buffered
        ],
    );
    assert_eq!(stream(&ev, REQ), b"hello world!");
    // 5 (hello again) + 2 ("lo") + 1 (short "d") + 2 ("or" of "orld") + 1 (buffered "d" of "d!")
    assert_eq!(r.stats().duplicate_bytes, 11);
}

#[test]
fn sequence_wrap_around() {
    let f = flow(4);
    let mut r = Reassembler::default();
    let isn = u32::MAX - 2;
    let ev = push_all(
        &mut r,
        vec![
            seg(f, REQ, isn, TcpFlags::SYN, 1, b""),
            seg(f, REQ, 4, D, 3, b"6789"), // after the wrap, early
            seg(f, REQ, u32::MAX - 1, D, 2, b"0123"), // crosses the wrap
            seg(f, REQ, 0, D, 4, b"2345"), // overlapping retransmission
        ],
    );
    assert_eq!(stream(&ev, REQ), b"0123456789");
}

#[test]
fn midstream_join_and_rst() {
    let f = flow(5);
    let mut r = Reassembler::default();
    let ev = push_all(
        &mut r,
        vec![
            seg(f, REQ, 7_000, D, 1, b"GET"),
            seg(f, RESP, 9_000, D, 2, b"HTTP"),
            seg(f, REQ, 7_003, TcpFlags::RST, 3, b""),
            seg(f, REQ, 7_003, D, 4, b""), // after the reset: ignored
        ],
    );
    assert_eq!(
        simple(&ev),
        vec![
            E::Joined(REQ),
            E::Data(REQ, b"GET".to_vec()),
            E::Joined(RESP),
            E::Data(RESP, b"HTTP".to_vec()),
            E::Closed(CloseReason::Reset),
        ]
    );
    assert_eq!(r.stats().midstream_joins, 2);
}

#[test]
fn retransmission_after_close_does_not_reopen() {
    let f = flow(6);
    let mut r = Reassembler::default();
    let ev = push_all(
        &mut r,
        vec![
            seg(f, REQ, 0, TcpFlags::SYN, 1, b""),
            seg(f, RESP, 0, TcpFlags::SYN, 1, b""),
            seg(f, REQ, 1, TcpFlags::FIN, 2, b"last"),
            seg(f, RESP, 1, TcpFlags::FIN, 3, b""),
            seg(f, REQ, 1, TcpFlags::FIN, 4, b"last"),
        ],
    );
    assert_eq!(
        simple(&ev),
        vec![
            E::Data(REQ, b"last".to_vec()),
            E::Fin(REQ),
            E::Fin(RESP),
            E::Closed(CloseReason::Fin)
        ]
    );
    assert_eq!(r.stats().flows_total, 1);
}

#[test]
fn hole_flushed_as_gap_at_end_of_capture() {
    let f = flow(7);
    let mut r = Reassembler::default();
    let mut ev = push_all(
        &mut r,
        vec![
            seg(f, REQ, 0, TcpFlags::SYN, 1, b""),
            seg(f, REQ, 1, D, 2, b"ab"),
            seg(f, REQ, 6, D, 3, b"fg"),
            seg(f, REQ, 8, TcpFlags::FIN, 4, b""),
        ],
    );
    r.finish(&mut ev);
    assert_eq!(
        simple(&ev),
        vec![
            E::Data(REQ, b"ab".to_vec()),
            E::Gap(REQ, 3),
            E::Data(REQ, b"fg".to_vec()),
            E::Fin(REQ),
            E::Closed(CloseReason::EndOfCapture),
        ]
    );
    assert_eq!((r.stats().gaps, r.stats().gap_bytes), (1, 3));
}

#[test]
fn hole_timeout_declares_gap() {
    let f = flow(8);
    let cfg = ReassemblyConfig {
        hole_timeout_ns: 100,
        ..ReassemblyConfig::default()
    };
    let mut r = Reassembler::new(cfg);
    let ev = push_all(
        &mut r,
        vec![
            seg(f, REQ, 0, TcpFlags::SYN, 1, b""),
            seg(f, REQ, 3, D, 10, b"cd"),
            seg(f, REQ, 5, D, 50, b"ef"),
            seg(f, REQ, 7, D, 200, b"gh"),
        ],
    );
    assert_eq!(
        simple(&ev),
        vec![
            E::Gap(REQ, 2),
            E::Data(REQ, b"cd".to_vec()),
            E::Data(REQ, b"ef".to_vec()),
            E::Data(REQ, b"gh".to_vec()),
        ]
    );
}

#[test]
fn per_flow_and_global_caps_bound_buffered_bytes() {
    let cfg = ReassemblyConfig {
        max_flow_buffer: 10,
        max_buffered: 15,
        ..ReassemblyConfig::default()
    };
    let mut r = Reassembler::new(cfg);
    let mut out = Vec::new();
    for n in 0..3u16 {
        let f = flow(100 + n);
        r.push(seg(f, REQ, 0, TcpFlags::SYN, 1, b""), &mut out);
        // 8 bytes behind a 1-byte hole: under the per-flow cap.
        r.push(seg(f, REQ, 2, D, 2, b"12345678"), &mut out);
        assert!(r.stats().bytes_buffered <= 15);
    }
    let st = r.stats();
    // Flow 0 and 1 buffered 16 > 15: flow 0 (largest, first) gave up its hole; then flow 1.
    assert_eq!(st.memory_evictions, 2);
    assert_eq!(st.bytes_buffered, 8);
    assert_eq!(st.gaps, 2);
    // Per-flow cap: 11 bytes behind a hole in one flow.
    let f = flow(200);
    r.push(seg(f, REQ, 0, TcpFlags::SYN, 1, b""), &mut out);
    r.push(seg(f, REQ, 5, D, 2, b"abcdefghijk"), &mut out);
    assert_eq!(r.stats().memory_evictions, 3);
}

#[test]
fn idle_flows_and_flow_limit_are_evicted() {
    let cfg = ReassemblyConfig {
        idle_timeout_ns: 1_000,
        max_flows: 2,
        ..ReassemblyConfig::default()
    };
    let mut r = Reassembler::new(cfg);
    let mut out = Vec::new();
    r.push(seg(flow(1), REQ, 0, D, 0, b"a"), &mut out);
    r.push(seg(flow(2), REQ, 0, D, 10, b"b"), &mut out);
    r.push(seg(flow(3), REQ, 0, D, 20, b"c"), &mut out);
    assert_eq!(r.stats().flow_evictions, 1);
    assert!(out.contains(&StreamEvent::Closed {
        flow: flow(1),
        reason: CloseReason::Evicted,
        ts_ns: 20
    }));
    r.expire(5_000, &mut out);
    assert_eq!(r.stats().idle_evictions, 2);
    assert_eq!(r.stats().flows_active, 0);
}

#[test]
fn cut_segment_becomes_gap() {
    let f = flow(9);
    let mut r = Reassembler::default();
    let mut out = Vec::new();
    r.push(seg(f, REQ, 0, TcpFlags::SYN, 1, b""), &mut out);
    r.push_cut(seg(f, REQ, 1, D, 2, b"abc"), 4, &mut out);
    r.push(seg(f, REQ, 8, D, 3, b"hi"), &mut out);
    assert_eq!(
        simple(&out),
        vec![
            E::Data(REQ, b"abc".to_vec()),
            E::Gap(REQ, 4),
            E::Data(REQ, b"hi".to_vec())
        ]
    );
}

#[test]
fn port_reuse_with_new_syn_starts_new_connection() {
    let f = flow(10);
    let mut r = Reassembler::default();
    let ev = push_all(
        &mut r,
        vec![
            seg(f, REQ, 0, TcpFlags::SYN, 1, b""),
            seg(f, REQ, 1, D, 2, b"one"),
            seg(f, REQ, 5_000, TcpFlags::SYN, 3, b""),
            seg(f, REQ, 5_001, D, 4, b"two"),
        ],
    );
    assert_eq!(
        simple(&ev),
        vec![
            E::Data(REQ, b"one".to_vec()),
            E::Closed(CloseReason::Reused),
            E::Data(REQ, b"two".to_vec()),
        ]
    );
}
