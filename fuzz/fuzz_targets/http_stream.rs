//! Arbitrary bytes as the two streams of one connection, cut at arbitrary points, with gaps
//! and mid-stream joins sprinkled in. Checks that nothing panics, bodies stay within the cap
//! and every request seen is accounted for when the connection closes.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shadow_core::http::{ConnectionParser, HttpConfig, HttpStats};
use shadow_core::reassembly::{CloseReason, StreamEvent};
use shadow_core::segment::{Direction, FlowKey};

fuzz_target!(|data: &[u8]| {
    let flow = FlowKey {
        client: "10.0.0.1:40000".parse().unwrap(),
        server: "10.0.0.2:8080".parse().unwrap(),
    };
    let config = HttpConfig {
        max_body: 512,
        max_head: 512,
        ..HttpConfig::default()
    };
    let mut parser = ConnectionParser::new(flow, config);
    let mut stats = HttpStats::default();
    let mut out = Vec::new();
    let mut seq = [0u32; 2];
    // Each record: [control, len] then `len` bytes. Control bit 0: direction; bits 1-2:
    // 1 = gap before the bytes, 2 = joined mid-stream, 3 = FIN after them.
    let mut rest = data;
    let mut ts = 0;
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
        let event = |e| e;
        match (control >> 1) & 3 {
            1 => parser.handle(
                &event(StreamEvent::Gap {
                    flow,
                    dir,
                    len: 3,
                    ts_ns: ts,
                }),
                &mut stats,
                &mut out,
            ),
            2 => parser.handle(
                &event(StreamEvent::Joined { flow, dir }),
                &mut stats,
                &mut out,
            ),
            _ => {}
        }
        let ack = seq[1 - d];
        parser.handle(
            &StreamEvent::Data {
                flow,
                dir,
                seq: seq[d],
                ack: (control & 0x80 == 0).then_some(ack),
                ts_ns: ts,
                bytes: bytes.clone(),
            },
            &mut stats,
            &mut out,
        );
        seq[d] = seq[d].wrapping_add(bytes.len() as u32);
        if (control >> 1) & 3 == 3 {
            parser.handle(
                &StreamEvent::Fin {
                    flow,
                    dir,
                    ts_ns: ts,
                },
                &mut stats,
                &mut out,
            );
        }
    }
    parser.handle(
        &StreamEvent::Closed {
            flow,
            reason: CloseReason::EndOfCapture,
            ts_ns: ts,
        },
        &mut stats,
        &mut out,
    );
    assert_eq!(parser.pending(), 0, "every request is emitted at close");
    for exchange in &out {
        if let Some(req) = &exchange.request {
            assert!(req.body.len() <= config.max_body);
        }
        if let Some(resp) = &exchange.prod_response {
            assert!(resp.body.len() <= config.max_body);
        }
    }
});
