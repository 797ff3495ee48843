//! The global cap on what the HTTP parsers hold ([`HttpConfig::max_buffered`]): hostile traffic
//! (half-sent heads, bodies held open, endless pipelining, HTTP/2 streams with bodies, a body
//! far over `max_body`) stays within it, the connections dropped are counted, the accounting
//! matches the parsers, and traffic under the cap is not changed by it.

use super::*;
use crate::reassembly::ReassemblyConfig;
use crate::segment::Segment;
use crate::testkit::{Conn, interleave};
use proptest::prelude::*;

const SERVER: &str = "10.0.0.2:8080";

fn assembler(max_buffered: usize, max_body: usize) -> ExchangeAssembler {
    let http = HttpConfig {
        max_buffered,
        max_body,
        ..HttpConfig::default()
    };
    ExchangeAssembler::new(ReassemblyConfig::default(), http)
}

/// What feeding a capture segment by segment showed.
struct Run {
    out: Vec<Exchange>,
    /// Largest `bytes_held` after any segment.
    peak: u64,
    stats: HttpStats,
}

/// Pushes every segment, checking after each that the assembler holds no more than its cap
/// and that its running total is what the parsers hold; then finishes the capture.
fn run(a: &mut ExchangeAssembler, segments: Vec<Segment>, cap: usize) -> Run {
    let mut out = Vec::new();
    let mut peak = 0;
    for segment in segments {
        a.push(segment, &mut out);
        let held = a.http_stats().bytes_held;
        assert!(held <= cap as u64, "{held} bytes held over the cap {cap}");
        assert_eq!(held, a.recount_held() as u64, "running total drifted");
        peak = peak.max(held);
    }
    let stats = a.http_stats();
    a.finish(&mut out);
    assert_eq!(
        a.http_stats().bytes_held,
        0,
        "closed connections hold nothing"
    );
    Run { out, peak, stats }
}

fn client(i: usize) -> String {
    format!("10.0.{}.{}:{}", i / 250, i % 250 + 1, 40000 + i % 1000)
}

/// `n` connections, each sending `per_conn` bytes of a request head that never ends.
fn slowloris(n: usize, per_conn: usize) -> Vec<Vec<Segment>> {
    (0..n)
        .map(|i| {
            let mut c = Conn::new(&client(i), SERVER);
            c.handshake()
                .request(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\n");
            let line = format!("X-Pad: {}\r\n", "a".repeat(990));
            let mut sent = 0;
            while sent < per_conn {
                c.request(line.as_bytes());
                sent += line.len();
            }
            c.into_segments()
        })
        .collect()
}

#[test]
fn half_sent_heads_are_dropped_largest_first_and_counted() {
    let cap = 256 << 10;
    let mut a = assembler(cap, 1 << 20);
    let mut segments = interleave(slowloris(200, 8 << 10));
    // A normal exchange after the abuse is still rebuilt whole.
    let mut normal = Conn::new("10.9.9.9:50000", SERVER);
    normal
        .handshake()
        .request(b"GET /ok HTTP/1.1\r\nHost: m\r\n\r\n")
        .response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    segments.extend(normal.into_segments());
    let r = run(&mut a, segments, cap);
    // Each connection kept whole holds its 8 KiB or more: at most 32 fit under 256 KiB.
    assert!(
        r.stats.memory_evictions >= 200 - 32,
        "{} evictions",
        r.stats.memory_evictions
    );
    assert!(r.peak > (cap - (16 << 10)) as u64, "the cap was reached");
    let ok: Vec<_> = r
        .out
        .iter()
        .filter(|x| x.request.as_ref().is_some_and(|q| q.target == "/ok"))
        .collect();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].outcome, Outcome::Complete);
    // No half-sent head ever became a request.
    assert!(
        r.out.iter().all(|x| x.outcome != Outcome::Complete
            || x.request.as_ref().is_some_and(|q| q.target == "/ok"))
    );
}

#[test]
fn bodies_held_open_are_dropped_and_their_exchanges_end_as_gaps() {
    let cap = 1 << 20;
    let conns: Vec<Vec<Segment>> = (0..100)
        .map(|i| {
            let mut c = Conn::new(&client(i), SERVER);
            c.handshake()
                .request(b"POST /p HTTP/1.1\r\nContent-Length: 65536\r\n\r\n")
                .request(&[b'x'; 48 << 10]);
            c.into_segments()
        })
        .collect();
    let mut a = assembler(cap, 1 << 20);
    let mut out = Vec::new();
    for segment in interleave(conns) {
        a.push(segment, &mut out);
        assert!(a.http_stats().bytes_held <= cap as u64);
    }
    let evicted = a.http_stats().memory_evictions;
    // An evicted request comes out at once, as a gap (its body was dropped), once: the rest of
    // its body is read as a connection joined mid-way, and may be dropped again.
    let flows: std::collections::HashSet<_> = out.iter().map(|x| x.flow).collect();
    assert_eq!(flows.len(), out.len());
    assert!(out.iter().all(|x| x.outcome == Outcome::Gap));
    assert!(out.len() as u64 <= evicted);
    // 48 KiB each: at most 21 requests are still held under 1 MiB.
    assert!(out.len() >= 100 - 21, "{} requests dropped", out.len());
}

#[test]
fn endless_pipelining_stays_within_the_cap() {
    let cap = 64 << 10;
    let mut c = Conn::new("10.0.0.1:40000", SERVER);
    c.handshake();
    let n = 5000;
    for i in 0..n {
        c.request(format!("GET /{i} HTTP/1.1\r\nHost: m\r\n\r\n").as_bytes());
    }
    let mut a = assembler(cap, 1 << 20);
    let r = run(&mut a, c.into_segments(), cap);
    assert!(r.stats.memory_evictions > 0);
    let requests = r.out.iter().filter(|x| x.request.is_some()).count() as u64;
    // Each eviction loses at most the one request it cut in the middle; none is invented.
    assert!(requests <= n, "{requests}");
    assert!(
        requests + r.stats.memory_evictions >= n,
        "{requests} requests, {} evictions",
        r.stats.memory_evictions
    );
    assert!(r.out.iter().all(|x| x.outcome != Outcome::Complete));
}

#[test]
fn a_body_far_over_max_body_is_truncated_without_being_held() {
    let cap = 4 << 20;
    let len = 32 << 20;
    let mut c = Conn::new("10.0.0.1:40000", SERVER).mss(64 << 10);
    c.handshake()
        .request(format!("POST /big HTTP/1.1\r\nContent-Length: {len}\r\n\r\n").as_bytes())
        .request(&vec![b'z'; len])
        .response(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
        .close();
    let mut a = assembler(cap, 1 << 20);
    let r = run(&mut a, c.into_segments(), cap);
    assert_eq!(r.stats.memory_evictions, 0);
    assert!(r.peak <= 256 << 10, "{} bytes held", r.peak);
    assert_eq!(r.out.len(), 1);
    assert_eq!(r.out[0].outcome, Outcome::Truncated);
    assert_eq!(r.out[0].prod_response.as_ref().map(|p| p.status), Some(413));
}

#[test]
fn http2_streams_with_open_bodies_are_dropped_with_their_connection() {
    use crate::testkit::h2::{self, Framing, H2Writer, Style};
    let cap = 512 << 10;
    let conns: Vec<Vec<Segment>> = (0..4)
        .map(|i| {
            let mut w = H2Writer::default();
            let mut bytes = h2::client_preface();
            for stream in (1..40).step_by(2) {
                bytes.extend(w.headers(
                    stream,
                    &[
                        (":method", "POST"),
                        (":path", "/p"),
                        (":scheme", "http"),
                        (":authority", "m"),
                    ],
                    false,
                    Style::default(),
                    Framing::default(),
                ));
                bytes.extend(w.data(stream, &[b'y'; 16 << 10], false, Framing::default()));
            }
            let mut c = Conn::new(&client(i), SERVER);
            c.handshake().request(&bytes);
            c.into_segments()
        })
        .collect();
    let mut a = assembler(cap, 1 << 20);
    let r = run(&mut a, interleave(conns), cap);
    // 20 streams × 16 KiB per connection: two connections do not fit.
    assert!(
        r.stats.memory_evictions >= 2,
        "{}",
        r.stats.memory_evictions
    );
    assert!(r.out.iter().all(|x| x.outcome != Outcome::Complete));
}

/// One generated message exchange, possibly left unfinished.
#[derive(Clone, Debug)]
struct Msg {
    body: usize,
    answered: bool,
    /// Bytes of the request cut off at its end (never sent).
    cut: usize,
}

fn connection(i: usize, msgs: &[Msg]) -> Vec<Segment> {
    let mut c = Conn::new(&client(i), SERVER).mss(1 + (i * 397) % 1500);
    c.handshake();
    for (j, m) in msgs.iter().enumerate() {
        let mut request = format!(
            "POST /{i}/{j} HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            m.body
        )
        .into_bytes();
        request.extend(std::iter::repeat_n(b'b', m.body));
        let keep = request.len() - m.cut.min(request.len());
        c.request(&request[..keep]);
        if m.cut > 0 {
            break;
        }
        if m.answered {
            c.response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes");
        }
    }
    c.into_segments()
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        0usize..6000,
        any::<bool>(),
        prop_oneof![3 => Just(0usize), 1 => 1usize..3000],
    )
        .prop_map(|(body, answered, cut)| Msg {
            body,
            answered,
            cut,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any traffic: the cap holds after every segment, the running total is what the parsers
    /// hold, and with a cap nothing reaches the exchanges are those of an uncapped run.
    #[test]
    fn the_cap_holds_and_under_it_nothing_changes(
        conns in prop::collection::vec(prop::collection::vec(msg(), 1..6), 1..12),
        cap in 2048usize..200_000,
    ) {
        let segments = || interleave(
            conns.iter().enumerate().map(|(i, m)| connection(i, m)).collect(),
        );
        let capped = run(&mut assembler(cap, 1 << 20), segments(), cap);
        let roomy = run(&mut assembler(usize::MAX, 1 << 20), segments(), usize::MAX);
        prop_assert_eq!(roomy.stats.memory_evictions, 0);
        if capped.stats.memory_evictions == 0 {
            prop_assert_eq!(&capped.out, &roomy.out);
        }
        if roomy.peak <= cap as u64 {
            prop_assert_eq!(capped.stats.memory_evictions, 0);
        }
    }
}
