//! Arbitrary bytes as the two streams of one HTTP/2 connection (the client's after its
//! preface), cut at arbitrary points, with gaps, mid-stream joins and FINs → `H2Connection`.
//! Checks that nothing panics, that no more streams are kept than the cap, that bodies stay
//! within the cap, and that every stream is emitted when the connection closes.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shadow_core::http::h2::{H2Connection, PREFACE};
use shadow_core::http::{H2Limits, HttpConfig, HttpStats};
use shadow_core::reassembly::{CloseReason, StreamEvent};
use shadow_core::segment::{Direction, FlowKey};

fuzz_target!(|data: &[u8]| {
    let flow = FlowKey {
        client: "10.0.0.1:40000".parse().unwrap(),
        server: "10.0.0.2:50051".parse().unwrap(),
    };
    let config = HttpConfig {
        max_body: 512,
        max_head: 512,
        h2: H2Limits {
            max_concurrent_streams: 8,
            max_header_block: 1024,
            max_frame_size: 4096,
        },
        ..HttpConfig::default()
    };
    let mut conn = H2Connection::new(flow, config);
    let mut stats = HttpStats::default();
    let mut out = Vec::new();
    let mut seq = [0u32; 2];
    let mut ts = 0;
    let preface = Bytes::from_static(PREFACE);
    conn.handle(
        &StreamEvent::Data {
            flow,
            dir: Direction::Request,
            seq: 0,
            ack: None,
            ts_ns: 0,
            bytes: preface,
        },
        &mut stats,
        &mut out,
    );
    seq[0] = PREFACE.len() as u32;
    // Each record: [control, len] then `len` bytes. Control bit 0: direction; bits 1-2:
    // 1 = gap before the bytes, 2 = joined mid-stream, 3 = FIN after them.
    let mut rest = data;
    while rest.len() >= 2 {
        let (control, len) = (rest[0], usize::from(rest[1]));
        let len = len.min(rest.len() - 2);
        let bytes = Bytes::copy_from_slice(&rest[2..2 + len]);
        rest = &rest[2 + len..];
        ts += 1;
        let d = usize::from(control & 1);
        let dir = if d == 0 {
            Direction::Request
        } else {
            Direction::Response
        };
        match (control >> 1) & 3 {
            1 => conn.handle(
                &StreamEvent::Gap {
                    flow,
                    dir,
                    len: 3,
                    ts_ns: ts,
                },
                &mut stats,
                &mut out,
            ),
            2 => conn.handle(&StreamEvent::Joined { flow, dir }, &mut stats, &mut out),
            _ => {}
        }
        conn.handle(
            &StreamEvent::Data {
                flow,
                dir,
                seq: seq[d],
                ack: None,
                ts_ns: ts,
                bytes: bytes.clone(),
            },
            &mut stats,
            &mut out,
        );
        seq[d] = seq[d].wrapping_add(bytes.len() as u32);
        if (control >> 1) & 3 == 3 {
            conn.handle(
                &StreamEvent::Fin {
                    flow,
                    dir,
                    ts_ns: ts,
                },
                &mut stats,
                &mut out,
            );
        }
        assert!(conn.pending() <= config.h2.max_concurrent_streams);
    }
    conn.handle(
        &StreamEvent::Closed {
            flow,
            reason: CloseReason::EndOfCapture,
            ts_ns: ts,
        },
        &mut stats,
        &mut out,
    );
    assert_eq!(conn.pending(), 0, "every stream is emitted at close");
    for exchange in &out {
        if let Some(req) = &exchange.request {
            assert!(req.body.len() <= config.max_body);
        }
        if let Some(resp) = &exchange.prod_response {
            assert!(resp.body.len() <= config.max_body);
        }
    }
});
