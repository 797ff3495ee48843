//! Arbitrary segments of a few connections into the reassembler and on into the HTTP parsers.
//! Checks that nothing panics and that the buffer caps hold after every segment.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shadow_core::http::{ExchangeAssembler, HttpConfig};
use shadow_core::reassembly::ReassemblyConfig;
use shadow_core::segment::{Direction, FlowKey, Segment, TcpFlags};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

const CONFIG: ReassemblyConfig = ReassemblyConfig {
    max_flow_buffer: 4096,
    max_buffered: 8192,
    idle_timeout_ns: 1_000_000,
    hole_timeout_ns: 200_000,
    max_flows: 4,
};

fn flow(n: u8) -> FlowKey {
    FlowKey {
        client: SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            40_000 + u16::from(n),
        ),
        server: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 8080),
    }
}

fuzz_target!(|data: &[u8]| {
    let http = HttpConfig {
        max_body: 2048,
        max_head: 1024,
        ..HttpConfig::default()
    };
    let mut assembler = ExchangeAssembler::new(CONFIG, http);
    let mut out = Vec::new();
    let mut ts = 0u64;
    // Each record: [flow+dir+cut, flags, seq (4), ts step, len] then `len` payload bytes.
    let mut rest = data;
    while rest.len() >= 8 {
        let (head, tail) = rest.split_at(8);
        let len = usize::from(head[7]).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        ts += u64::from(head[6]) * 1_000;
        let segment = Segment {
            flow: flow(head[0] & 0x07),
            dir: if head[0] & 0x08 == 0 {
                Direction::Request
            } else {
                Direction::Response
            },
            seq: u32::from_be_bytes([head[2], head[3], head[4], head[5]]),
            ack: u32::from_be_bytes([head[5], head[4], head[3], head[2]]),
            flags: TcpFlags(head[1]),
            ts_ns: ts,
            payload: Bytes::copy_from_slice(payload),
        };
        let missing = u32::from(head[0] >> 6);
        assembler.push_cut(segment, missing, &mut out);
        let stats = assembler.reassembly_stats();
        assert!(stats.bytes_buffered <= CONFIG.max_buffered as u64);
        assert!(stats.flows_active <= CONFIG.max_flows as u64);
        for exchange in out.drain(..) {
            if let Some(req) = &exchange.request {
                assert!(req.body.len() <= http.max_body);
            }
        }
    }
    assembler.finish(&mut out);
    assert_eq!(assembler.reassembly_stats().flows_active, 0);
});
