//! pcap bytes in memory → HTTP exchanges, on one core: throughput in MB/s of pcap bytes and
//! exchanges/s, for small JSON requests (~1 KiB) and for 1 MiB bodies, over HTTP/1.1 and the
//! same exchanges over HTTP/2 (`h2_*`: prior knowledge, one stream after another per
//! connection, HPACK with Huffman and the dynamic table, 16 KiB DATA frames). Baselines
//! measured in the same run: reading the same pcap with pcap-file alone, and copying the same
//! TCP payload bytes into one buffer (the least any reassembler must do).
//!
//! `cargo bench -p shadow-core --features testkit --bench parse`

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shadow_core::http::{ExchangeAssembler, Outcome};
use shadow_core::pcap::PcapSource;
use shadow_core::segment::Segment;
use shadow_core::testkit::h2::{self, Framing, H2Writer, Style};
use shadow_core::testkit::{self, Conn};
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

struct Workload {
    name: &'static str,
    pcap: Vec<u8>,
    payloads: Vec<Segment>,
    exchanges: u64,
}

/// The request body of `body` bytes.
fn json_body(body: usize) -> Vec<u8> {
    format!("{{\"instances\":[[{}]]}}", "0.1234567,".repeat(body / 10))
        .into_bytes()
        .into_iter()
        .take(body)
        .collect()
}

/// Which protocol a workload speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    Http1,
    H2,
}

/// `conns` keep-alive connections, `per_conn` exchanges each, request body of `body` bytes,
/// segments of at most `mss` bytes.
fn workload(
    name: &'static str,
    wire: Wire,
    conns: usize,
    per_conn: usize,
    body: usize,
    mss: usize,
) -> Workload {
    let mut all = Vec::new();
    for c in 0..conns {
        let mut conn = Conn::new(
            &format!("10.0.{}.{}:{}", c / 200, c % 200 + 1, 40000 + c),
            "10.0.0.2:8080",
        )
        .mss(mss);
        conn.handshake();
        if wire == Wire::H2 {
            h2_exchanges(&mut conn, c, per_conn, body);
            conn.close();
            all.push(conn.into_segments());
            continue;
        }
        for i in 0..per_conn {
            let json = json_body(body);
            let mut req = format!(
                "POST /v1/models/m:predict HTTP/1.1\r\nHost: model:8080\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                json.len()
            )
            .into_bytes();
            req.extend_from_slice(&json);
            let answer = format!("{{\"predictions\":[[{}, {}]]}}", i, c);
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                answer.len()
            );
            conn.request(&req).response(resp.as_bytes());
        }
        conn.close();
        all.push(conn.into_segments());
    }
    let segments = testkit::interleave(all);
    let pcap = testkit::pcap_bytes(&segments);
    let exchanges = parse(&pcap);
    assert_eq!(
        exchanges,
        (conns * per_conn) as u64,
        "{name}: every exchange complete"
    );
    let payloads = segments
        .into_iter()
        .filter(|s| !s.payload.is_empty())
        .collect();
    Workload {
        name,
        pcap,
        payloads,
        exchanges,
    }
}

/// The same exchanges as HTTP/2 streams 1, 3, 5, … (one after another).
fn h2_exchanges(conn: &mut Conn, c: usize, per_conn: usize, body: usize) {
    let (mut client, mut server) = (H2Writer::default(), H2Writer::default());
    let (style, framing) = (Style::default(), Framing::default());
    conn.request(&h2::client_preface());
    conn.response(&[h2::settings(&[]), h2::settings_ack()].concat());
    conn.request(&h2::settings_ack());
    for i in 0..per_conn {
        let id = 2 * i as u32 + 1;
        let json = json_body(body);
        let len = json.len().to_string();
        let head = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/v1/models/m:predict"),
            (":authority", "model:8080"),
            ("content-type", "application/json"),
            ("content-length", len.as_str()),
        ];
        let mut req = client.headers(id, &head, false, style, framing);
        req.extend(client.data(id, &json, true, framing));
        let answer = format!("{{\"predictions\":[[{}, {}]]}}", i, c);
        let answer_len = answer.len().to_string();
        let head = [
            (":status", "200"),
            ("content-type", "application/json"),
            ("content-length", answer_len.as_str()),
        ];
        let mut resp = server.headers(id, &head, false, style, framing);
        resp.extend(server.data(id, answer.as_bytes(), true, framing));
        conn.request(&req).response(&resp);
    }
}

/// The measured path: pcap bytes → segments → reassembly → HTTP exchanges.
fn parse(pcap: &[u8]) -> u64 {
    let mut source = PcapSource::new(pcap, Path::new("bench.pcap"), &[8080]).unwrap();
    let mut assembler = ExchangeAssembler::default();
    let mut out = Vec::new();
    let mut complete = 0;
    while let Some(s) = source.next_segment() {
        let s = s.unwrap();
        assembler.push_cut(s.segment, s.missing, &mut out);
        complete += out
            .drain(..)
            .filter(|x| x.outcome == Outcome::Complete)
            .count() as u64;
    }
    assembler.finish(&mut out);
    complete
        + out
            .drain(..)
            .filter(|x| x.outcome == Outcome::Complete)
            .count() as u64
}

/// Baseline: pcap-file alone, touching every packet.
fn read_only(pcap: &[u8]) -> u64 {
    let mut reader = pcap_file::pcap::PcapReader::new(pcap).unwrap();
    let mut n = 0u64;
    while let Some(p) = reader.next_raw_packet() {
        n += p.unwrap().data.len() as u64;
    }
    n
}

/// Baseline: copy the same TCP payloads into one (reused, already allocated) buffer: memcpy
/// speed, the least any reassembler must do.
fn concat(payloads: &[Segment], buf: &mut BytesMut) -> usize {
    buf.clear();
    for s in payloads {
        buf.extend_from_slice(&s.payload);
    }
    buf.len()
}

fn bench(c: &mut Criterion) {
    let workloads = [
        workload("small_json_1KiB", Wire::Http1, 16, 256, 1024, 1448),
        workload("h2_small_json_1KiB", Wire::H2, 16, 256, 1024, 1448),
        workload("large_1MiB_mss1448", Wire::Http1, 4, 8, 1 << 20, 1448),
        workload("h2_large_1MiB_mss1448", Wire::H2, 4, 8, 1 << 20, 1448),
        workload("large_1MiB_gso64k", Wire::Http1, 4, 8, 1 << 20, 65_000),
        workload("h2_large_1MiB_gso64k", Wire::H2, 4, 8, 1 << 20, 65_000),
    ];
    for w in &workloads {
        eprintln!(
            "{}: {} pcap bytes, {} exchanges, {} segments with payload",
            w.name,
            w.pcap.len(),
            w.exchanges,
            w.payloads.len()
        );
        let mut bytes = c.benchmark_group(format!("{}/bytes", w.name));
        bytes.throughput(Throughput::Bytes(w.pcap.len() as u64));
        bytes.bench_function(BenchmarkId::from_parameter("pcap_to_exchanges"), |b| {
            b.iter(|| parse(black_box(&w.pcap)))
        });
        bytes.bench_function(
            BenchmarkId::from_parameter("baseline_pcap_file_read"),
            |b| b.iter(|| read_only(black_box(&w.pcap))),
        );
        let total: usize = w.payloads.iter().map(|s| s.payload.len()).sum();
        let mut buf = BytesMut::with_capacity(total);
        concat(&w.payloads, &mut buf);
        bytes.bench_function(
            BenchmarkId::from_parameter("baseline_payload_concat"),
            |b| b.iter(|| concat(black_box(&w.payloads), &mut buf)),
        );
        bytes.finish();
        let mut ex = c.benchmark_group(format!("{}/exchanges", w.name));
        ex.throughput(Throughput::Elements(w.exchanges));
        ex.bench_function(BenchmarkId::from_parameter("pcap_to_exchanges"), |b| {
            b.iter(|| parse(black_box(&w.pcap)))
        });
        ex.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
