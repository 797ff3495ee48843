//! Segments → exchanges, one HTTP/TCP situation per test, on captures built by
//! [`crate::testkit`]. Expected values are written out by hand.

use super::*;
use crate::reassembly::ReassemblyConfig;
use crate::segment::{Direction, Segment};
use crate::testkit::{Conn, interleave};

const CLIENT: &str = "10.0.0.1:40000";
const SERVER: &str = "10.0.0.2:8080";

fn conn() -> Conn {
    let mut c = Conn::new(CLIENT, SERVER);
    c.handshake();
    c
}

fn run(segments: Vec<Segment>) -> Vec<Exchange> {
    exchanges_from_segments(segments)
}

fn run_with(
    segments: Vec<Segment>,
    r: ReassemblyConfig,
    h: HttpConfig,
) -> (Vec<Exchange>, ExchangeAssembler) {
    let mut a = ExchangeAssembler::new(r, h);
    let mut out = Vec::new();
    for s in segments {
        a.push(s, &mut out);
    }
    a.finish(&mut out);
    (out, a)
}

/// (method, target, request body, status, response body, outcome)
type Summary = (String, String, Vec<u8>, Option<u16>, Vec<u8>, Outcome);

fn summary(x: &Exchange) -> Summary {
    let req = x.request.as_ref();
    (
        req.map_or(String::new(), |r| r.method.clone()),
        req.map_or(String::new(), |r| r.target.clone()),
        req.map_or(Vec::new(), |r| r.body.to_vec()),
        x.prod_response.as_ref().map(|r| r.status),
        x.prod_response
            .as_ref()
            .map_or(Vec::new(), |r| r.body.to_vec()),
        x.outcome,
    )
}

fn s(
    method: &str,
    target: &str,
    req: &[u8],
    status: Option<u16>,
    resp: &[u8],
    o: Outcome,
) -> Summary {
    (
        method.into(),
        target.into(),
        req.to_vec(),
        status,
        resp.to_vec(),
        o,
    )
}

const GET: &[u8] = b"GET /v1/models/m HTTP/1.1\r\nHost: m\r\n\r\n";
const OK_HELLO: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

fn post(body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

fn ok(body: &[u8]) -> Vec<u8> {
    let mut v = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    v.extend_from_slice(body);
    v
}

#[test]
fn keep_alive_exchanges_with_timing() {
    let mut c = conn();
    c.request(GET).response(OK_HELLO);
    c.request(&post(br#"{"instances":[1]}"#))
        .response(&ok(br#"{"predictions":[2]}"#));
    c.close();
    let x = run(c.into_segments());
    assert_eq!(
        x.iter().map(summary).collect::<Vec<_>>(),
        vec![
            s(
                "GET",
                "/v1/models/m",
                b"",
                Some(200),
                b"hello",
                Outcome::Complete
            ),
            s(
                "POST",
                "/v1/models/m:predict",
                br#"{"instances":[1]}"#,
                Some(200),
                br#"{"predictions":[2]}"#,
                Outcome::Complete
            ),
        ]
    );
    // Segments are 1 µs apart: 3 handshake segments, then request (segment 3), response (4).
    let t = x[0].timing;
    let start = crate::testkit::START_NS;
    assert_eq!(t.request_first_byte, start + 3_000);
    assert_eq!(t.request_last_byte, start + 3_000);
    assert_eq!(t.response_first_byte, Some(start + 4_000));
    assert_eq!(t.response_last_byte, Some(start + 4_000));
    assert_eq!(t.latency_ns(), Some(1_000));
    let headers = &x[1].request.as_ref().unwrap().headers;
    assert_eq!(headers[1].name, "Content-Type");
    assert_eq!(&headers[1].value[..], b"application/json");
    assert_eq!(x[0].flow.to_string(), "10.0.0.1:40000 -> 10.0.0.2:8080");
}

#[test]
fn content_length_body_across_many_segments() {
    let body: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut c = Conn::new(CLIENT, SERVER).mss(97);
    c.handshake();
    c.request(&post(&body)).response(&ok(&body[..4000])).close();
    let segs = c.into_segments();
    let last_req_ts = segs
        .iter()
        .filter(|s| s.dir == Direction::Request && !s.payload.is_empty())
        .map(|s| s.ts_ns)
        .max()
        .unwrap();
    let last_resp_ts = segs
        .iter()
        .filter(|s| s.dir == Direction::Response && !s.payload.is_empty())
        .map(|s| s.ts_ns)
        .max()
        .unwrap();
    let x = run(segs);
    assert_eq!(x.len(), 1);
    assert_eq!(x[0].request.as_ref().unwrap().body, body);
    assert_eq!(x[0].prod_response.as_ref().unwrap().body, body[..4000]);
    assert_eq!(x[0].timing.request_last_byte, last_req_ts);
    assert_eq!(x[0].timing.latency_ns(), Some(last_resp_ts - last_req_ts));
}

#[test]
fn chunked_request_with_extensions_and_trailers_is_decoded() {
    let framed = b"4;x=y\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\nX-Checksum: 7\r\n\r\n";
    let mut req = b"POST /infer HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend_from_slice(framed);
    let mut c = Conn::new(CLIENT, SERVER).mss(5);
    c.handshake();
    c.request(&req)
        .response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n");
    c.request(GET).response(OK_HELLO).close();
    let segs = c.into_segments();
    // The request ends with the blank line after its trailers: its last 5-byte segment, sent
    // before the first response segment and after the one holding the last chunk.
    let first_response = segs
        .iter()
        .position(|s| s.dir == Direction::Response && !s.payload.is_empty())
        .unwrap();
    let trailers_end = &segs[..first_response]
        .iter()
        .rfind(|s| s.dir == Direction::Request && !s.payload.is_empty())
        .unwrap();
    assert_eq!(&trailers_end.payload[..], b"\r\n");
    let trailers_end_ts = trailers_end.ts_ns;
    let x = run(segs);
    assert_eq!(
        x.iter().map(summary).collect::<Vec<_>>(),
        vec![
            s(
                "POST",
                "/infer",
                b"{\"a\":1}",
                Some(200),
                b"ok",
                Outcome::Complete
            ),
            s(
                "GET",
                "/v1/models/m",
                b"",
                Some(200),
                b"hello",
                Outcome::Complete
            ),
        ]
    );
    assert_eq!(
        x[0].timing.request_last_byte, trailers_end_ts,
        "the request ends with its trailers, not with its last chunk"
    );
}

#[test]
fn pipelined_requests_pair_fifo() {
    let mut c = conn();
    let mut reqs = Vec::new();
    for p in ["/a", "/b", "/c"] {
        reqs.extend_from_slice(format!("GET {p} HTTP/1.1\r\nHost: m\r\n\r\n").as_bytes());
    }
    c.request(&reqs);
    let mut resps = Vec::new();
    for (code, body) in [(200, "A"), (404, "BB"), (500, "CCC")] {
        resps.extend_from_slice(
            format!(
                "HTTP/1.1 {code} X\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    c.response(&resps).close();
    let x = run(c.into_segments());
    assert_eq!(
        x.iter().map(summary).collect::<Vec<_>>(),
        vec![
            s("GET", "/a", b"", Some(200), b"A", Outcome::Complete),
            s("GET", "/b", b"", Some(404), b"BB", Outcome::Complete),
            s("GET", "/c", b"", Some(500), b"CCC", Outcome::Complete),
        ]
    );
}

#[test]
fn expect_continue_interim_response_does_not_pair() {
    let mut c = conn();
    c.request(b"POST /p HTTP/1.1\r\nHost: m\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    c.response(b"HTTP/1.1 100 Continue\r\n\r\n");
    c.request(b"data");
    c.response(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nid")
        .close();
    let (x, a) = run_with(
        c.into_segments(),
        ReassemblyConfig::default(),
        HttpConfig::default(),
    );
    assert_eq!(
        x.iter().map(summary).collect::<Vec<_>>(),
        vec![s(
            "POST",
            "/p",
            b"data",
            Some(201),
            b"id",
            Outcome::Complete
        )]
    );
    assert_eq!(a.http_stats().interim_responses, 1);
}

#[test]
fn head_204_304_have_no_body() {
    let mut c = conn();
    c.request(b"HEAD /h HTTP/1.1\r\nHost: m\r\n\r\n");
    c.response(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
    c.request(b"DELETE /d HTTP/1.1\r\nHost: m\r\n\r\n");
    c.response(b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n");
    c.request(b"GET /e HTTP/1.1\r\nIf-None-Match: \"x\"\r\n\r\n");
    c.response(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n");
    c.request(GET).response(OK_HELLO).close();
    let x = run(c.into_segments());
    assert_eq!(
        x.iter().map(summary).collect::<Vec<_>>(),
        vec![
            s("HEAD", "/h", b"", Some(200), b"", Outcome::Complete),
            s("DELETE", "/d", b"", Some(204), b"", Outcome::Complete),
            s("GET", "/e", b"", Some(304), b"", Outcome::Complete),
            s(
                "GET",
                "/v1/models/m",
                b"",
                Some(200),
                b"hello",
                Outcome::Complete
            ),
        ]
    );
}

#[test]
fn close_delimited_response_ends_at_fin() {
    let mut c = conn();
    c.request(b"GET /old HTTP/1.0\r\n\r\n");
    c.response(b"HTTP/1.0 200 OK\r\n\r\nall of it\nuntil close");
    c.fin(Direction::Response).fin(Direction::Request);
    let x = run(c.into_segments());
    assert_eq!(
        x.iter().map(summary).collect::<Vec<_>>(),
        vec![s(
            "GET",
            "/old",
            b"",
            Some(200),
            b"all of it\nuntil close",
            Outcome::Complete
        )]
    );
}

#[test]
fn close_delimited_response_cut_by_capture_end_is_a_gap() {
    let mut c = conn();
    c.request(b"GET /old HTTP/1.0\r\n\r\n");
    c.response(b"HTTP/1.0 200 OK\r\n\r\npartial");
    let x = run(c.into_segments());
    assert_eq!(x.len(), 1);
    assert_eq!(x[0].outcome, Outcome::Gap);
    assert_eq!(x[0].prod_response.as_ref().unwrap().status, 200);
}

#[test]
fn body_over_cap_is_truncated_and_parsing_continues() {
    let mut c = conn();
    c.request(&post(&[b'x'; 100])).response(&ok(b"r"));
    c.request(&post(b"small")).response(&ok(&[b'y'; 60]));
    c.request(GET).response(OK_HELLO).close();
    let http = HttpConfig {
        max_body: 50,
        ..HttpConfig::default()
    };
    let (x, a) = run_with(c.into_segments(), ReassemblyConfig::default(), http);
    assert_eq!(
        x.iter().map(|e| e.outcome).collect::<Vec<_>>(),
        vec![Outcome::Truncated, Outcome::Truncated, Outcome::Complete]
    );
    assert_eq!(
        x[0].request.as_ref().unwrap().body.len(),
        0,
        "a truncated body is never kept cut"
    );
    assert_eq!(x[0].prod_response.as_ref().unwrap().body, &b"r"[..]);
    assert_eq!(x[1].request.as_ref().unwrap().body, &b"small"[..]);
    assert_eq!(
        summary(&x[2]),
        s(
            "GET",
            "/v1/models/m",
            b"",
            Some(200),
            b"hello",
            Outcome::Complete
        )
    );
    assert_eq!(a.http_stats().truncated, 2);
}

fn reference() -> (Conn, Vec<Summary>) {
    let mut c = Conn::new(CLIENT, SERVER).mss(10);
    c.handshake();
    c.request(&post(b"0123456789abcdefghij"))
        .response(&ok(b"first response body"));
    c.request(GET).response(OK_HELLO).close();
    let expected = vec![
        s(
            "POST",
            "/v1/models/m:predict",
            b"0123456789abcdefghij",
            Some(200),
            b"first response body",
            Outcome::Complete,
        ),
        s(
            "GET",
            "/v1/models/m",
            b"",
            Some(200),
            b"hello",
            Outcome::Complete,
        ),
    ];
    (c, expected)
}

#[test]
fn out_of_order_segments() {
    let (c, expected) = reference();
    let mut segs = c.into_segments();
    // Reverse each run of 4 segments.
    for chunk in segs[3..].chunks_mut(4) {
        chunk.reverse();
    }
    assert_eq!(run(segs).iter().map(summary).collect::<Vec<_>>(), expected);
}

#[test]
fn duplicate_and_overlapping_retransmissions() {
    let (c, expected) = reference();
    let segs = c.into_segments();
    let mut noisy = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        noisy.push(seg.clone());
        if seg.payload.len() >= 4 && i % 2 == 0 {
            // An exact duplicate and a retransmission overlapping this and the next segment.
            noisy.push(seg.clone());
            let mut overlap = seg.clone();
            overlap.seq = seg.seq.wrapping_add(2);
            let next = segs[i + 1..]
                .iter()
                .find(|n| n.dir == seg.dir && !n.payload.is_empty());
            let mut bytes = seg.payload[2..].to_vec();
            if let Some(n) =
                next.filter(|n| n.seq == seg.seq.wrapping_add(seg.payload.len() as u32))
            {
                bytes.extend_from_slice(&n.payload[..n.payload.len().min(3)]);
                // A retransmission is sent after the bytes it repeats: it acknowledges at least
                // what their first transmission did.
                overlap.ack = n.ack;
            }
            overlap.payload = bytes.into();
            noisy.push(overlap);
        }
    }
    let (x, a) = run_with(noisy, ReassemblyConfig::default(), HttpConfig::default());
    assert_eq!(x.iter().map(summary).collect::<Vec<_>>(), expected);
    assert!(a.reassembly_stats().duplicate_bytes > 0);
    assert_eq!(a.reassembly_stats().gaps, 0);
}

#[test]
fn sequence_numbers_wrap_around() {
    let mut c = Conn::new(CLIENT, SERVER)
        .mss(7)
        .isn(u32::MAX - 20, u32::MAX - 3);
    c.handshake();
    c.request(&post(b"across the wrap of the sequence space"))
        .response(&ok(b"wrapped too"));
    c.request(GET).response(OK_HELLO).close();
    let x = run(c.into_segments());
    assert_eq!(
        x.iter().map(summary).collect::<Vec<_>>(),
        vec![
            s(
                "POST",
                "/v1/models/m:predict",
                b"across the wrap of the sequence space",
                Some(200),
                b"wrapped too",
                Outcome::Complete
            ),
            s(
                "GET",
                "/v1/models/m",
                b"",
                Some(200),
                b"hello",
                Outcome::Complete
            ),
        ]
    );
}

#[test]
fn connection_open_before_capture_resyncs_at_next_request() {
    let mut c = Conn::new(CLIENT, SERVER).mss(16);
    c.handshake();
    c.request(&post(b"the body of a request seen only partly"))
        .response(&ok(b"its response"));
    let seen_from = c.segments().len();
    c.request(GET).response(OK_HELLO);
    c.request(&post(b"x")).response(&ok(b"y")).close();
    let segs = c.into_segments();
    // Capture starts in the middle of the first request body.
    // The head is 99 bytes, so the 8th 16-byte segment is in the middle of the body.
    let first = segs
        .iter()
        .enumerate()
        .filter(|(_, s)| s.dir == Direction::Request && !s.payload.is_empty())
        .nth(7)
        .unwrap()
        .0;
    assert!(first < seen_from);
    let (x, a) = run_with(
        segs[first..].to_vec(),
        ReassemblyConfig::default(),
        HttpConfig::default(),
    );
    assert_eq!(
        x.iter().map(summary).collect::<Vec<_>>(),
        vec![
            s(
                "GET",
                "/v1/models/m",
                b"",
                Some(200),
                b"hello",
                Outcome::Complete
            ),
            s(
                "POST",
                "/v1/models/m:predict",
                b"x",
                Some(200),
                b"y",
                Outcome::Complete
            ),
        ]
    );
    assert_eq!(a.reassembly_stats().midstream_joins, 2);
    assert_eq!(
        a.http_stats().orphan_responses,
        1,
        "the response to the partly seen request"
    );
}

#[test]
fn request_gap_marks_exchange_and_resyncs() {
    // The POST head is 99 bytes, its body 20, in 10-byte segments: segment 10 is body bytes
    // 1..11, segment 9 holds the end of the head.
    for (lost_index, head_seen) in [(10, true), (9, false)] {
        let (c, _) = reference();
        let segs = c.into_segments();
        let lost = segs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.dir == Direction::Request && !s.payload.is_empty())
            .nth(lost_index)
            .unwrap()
            .0;
        let mut kept = segs.clone();
        kept.remove(lost);
        let (x, a) = run_with(kept, ReassemblyConfig::default(), HttpConfig::default());
        assert_eq!(x.len(), 2, "{x:#?}");
        assert_eq!(
            x[0].outcome,
            Outcome::Gap,
            "lost segment {lost_index}: {x:#?}"
        );
        assert_eq!(
            x[0].request.as_ref().map(|r| r.method.as_str()),
            head_seen.then_some("POST")
        );
        assert_eq!(
            summary(&x[1]),
            s(
                "GET",
                "/v1/models/m",
                b"",
                Some(200),
                b"hello",
                Outcome::Complete
            ),
            "lost segment {lost_index}: {:?}",
            a.http_stats()
        );
        assert_eq!(a.reassembly_stats().gaps, 1);
        assert_eq!(a.reassembly_stats().gap_bytes, 10);
        assert_eq!(a.http_stats().gap, 1);
        assert_eq!(a.http_stats().complete, 1);
    }
}

#[test]
fn response_gap_marks_exchange_and_resyncs() {
    let (c, _) = reference();
    let segs = c.into_segments();
    let lost = segs
        .iter()
        .enumerate()
        .filter(|(_, s)| s.dir == Direction::Response && !s.payload.is_empty())
        .nth(2)
        .unwrap()
        .0;
    let mut kept = segs.clone();
    kept.remove(lost);
    let x = run(kept);
    assert_eq!(
        x.iter().map(|e| e.outcome).collect::<Vec<_>>(),
        vec![Outcome::Gap, Outcome::Complete]
    );
    assert_eq!(
        summary(&x[1]),
        s(
            "GET",
            "/v1/models/m",
            b"",
            Some(200),
            b"hello",
            Outcome::Complete
        )
    );
}

#[test]
fn whole_response_lost_never_mispairs() {
    // Non-pipelined: the response to /a is lost entirely; /b's response must not be given to /a.
    let mut c = Conn::new(CLIENT, SERVER);
    c.handshake();
    c.request(b"GET /a HTTP/1.1\r\n\r\n")
        .response(&ok(b"for a"));
    c.request(b"GET /b HTTP/1.1\r\n\r\n")
        .response(&ok(b"for b"));
    c.request(b"GET /c HTTP/1.1\r\n\r\n")
        .response(&ok(b"for c"))
        .close();
    let mut segs = c.into_segments();
    let lost = segs
        .iter()
        .position(|s| s.payload.ends_with(b"for a"))
        .unwrap();
    segs.remove(lost);
    let x = run(segs);
    let got: Vec<_> = x
        .iter()
        .map(|e| {
            (
                e.request.as_ref().unwrap().target.clone(),
                e.prod_response.as_ref().map(|r| r.body.to_vec()),
                e.outcome,
            )
        })
        .collect();
    // The hole where /a's response should start loses it; /b's response acknowledges /b and
    // was sent after /b, so it is /b's own.
    assert_eq!(
        got,
        vec![
            ("/a".to_string(), None, Outcome::Gap),
            ("/b".to_string(), Some(b"for b".to_vec()), Outcome::Complete),
            ("/c".to_string(), Some(b"for c".to_vec()), Outcome::Complete),
        ]
    );
}

#[test]
fn no_response_and_reset() {
    let mut c = conn();
    c.request(GET).response(OK_HELLO);
    c.request(b"GET /never HTTP/1.1\r\n\r\n")
        .rst(Direction::Response);
    let x = run(c.into_segments());
    assert_eq!(
        x.iter().map(summary).collect::<Vec<_>>(),
        vec![
            s(
                "GET",
                "/v1/models/m",
                b"",
                Some(200),
                b"hello",
                Outcome::Complete
            ),
            s("GET", "/never", b"", None, b"", Outcome::NoResponse),
        ]
    );

    // Reset in the middle of a response body: the server stopped, nothing was lost.
    let mut c = conn();
    c.request(GET)
        .response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel")
        .rst(Direction::Response);
    let x = run(c.into_segments());
    assert_eq!(
        x.iter().map(|e| e.outcome).collect::<Vec<_>>(),
        vec![Outcome::Incomplete]
    );
}

#[test]
fn unparsable_request_then_valid_one() {
    let mut c = conn();
    c.request(b"\x16\x03\x01 binary junk\r\n\r\n");
    c.request(GET).response(OK_HELLO).close();
    let (x, a) = run_with(
        c.into_segments(),
        ReassemblyConfig::default(),
        HttpConfig::default(),
    );
    assert_eq!(
        x.iter().map(summary).collect::<Vec<_>>(),
        vec![
            s("", "", b"", None, b"", Outcome::Unparsable),
            s(
                "GET",
                "/v1/models/m",
                b"",
                Some(200),
                b"hello",
                Outcome::Complete
            ),
        ]
    );
    assert_eq!(a.http_stats().unparsable, 1);
}

#[test]
fn idle_connection_is_flushed_as_no_response() {
    let r = ReassemblyConfig {
        idle_timeout_ns: 1_000_000_000,
        ..ReassemblyConfig::default()
    };
    let mut a = ExchangeAssembler::new(r, HttpConfig::default());
    let mut out = Vec::new();
    let mut c = conn();
    c.request(GET);
    for seg in c.into_segments() {
        a.push(seg, &mut out);
    }
    assert!(out.is_empty());
    a.expire(crate::testkit::START_NS + 2_000_000_000, &mut out);
    assert_eq!(
        out.iter().map(summary).collect::<Vec<_>>(),
        vec![s(
            "GET",
            "/v1/models/m",
            b"",
            None,
            b"",
            Outcome::NoResponse
        )]
    );
    assert_eq!(a.reassembly_stats().idle_evictions, 1);
    assert_eq!(a.reassembly_stats().flows_active, 0);
    assert_eq!(a.http_stats().no_response, 1);
}

#[test]
fn many_interleaved_flows_ipv4_and_ipv6() {
    let mut conns = Vec::new();
    let mut expected = Vec::new();
    for i in 0..40u16 {
        let client = if i % 2 == 0 {
            format!("10.0.1.{}:{}", i + 1, 30000 + i)
        } else {
            format!("[2001:db8::{:x}]:{}", i + 1, 30000 + i)
        };
        let server = if i % 2 == 0 {
            "10.0.0.2:8080"
        } else {
            "[2001:db8::1]:8080"
        };
        let mut c = Conn::new(&client, server).mss(13 + usize::from(i));
        c.handshake();
        for j in 0..3u16 {
            let body = format!("{{\"flow\":{i},\"n\":{j}}}");
            let resp = format!("{{\"flow\":{i},\"answer\":{}}}", i * j);
            c.request(&post(body.as_bytes()))
                .response(&ok(resp.as_bytes()));
            expected.push((c.flow(), body.into_bytes(), resp.into_bytes()));
        }
        c.close();
        conns.push(c.into_segments());
    }
    let (x, a) = run_with(
        interleave(conns),
        ReassemblyConfig::default(),
        HttpConfig::default(),
    );
    assert_eq!(x.len(), 120);
    assert!(x.iter().all(|e| e.outcome == Outcome::Complete));
    for (flow, req, resp) in &expected {
        let mine: Vec<_> = x.iter().filter(|e| e.flow == *flow).collect();
        assert_eq!(mine.len(), 3);
        assert!(
            mine.iter()
                .any(|e| e.request.as_ref().unwrap().body == req[..]
                    && e.prod_response.as_ref().unwrap().body == resp[..])
        );
    }
    // Per flow, exchanges come out in request order.
    for flow in expected.iter().map(|e| e.0) {
        let bodies: Vec<_> = x
            .iter()
            .filter(|e| e.flow == flow)
            .map(|e| e.request.as_ref().unwrap().body.clone())
            .collect();
        let want: Vec<_> = expected
            .iter()
            .filter(|e| e.0 == flow)
            .map(|e| e.1.clone())
            .collect();
        assert_eq!(bodies, want);
    }
    assert_eq!(a.reassembly_stats().flows_total, 40);
    assert_eq!(a.reassembly_stats().flows_active, 0);
}

#[test]
fn per_flow_buffer_cap_declares_gap() {
    let (c, _) = reference();
    let mut segs = c.into_segments();
    // Hold back the first request payload segment until the end: everything after it piles up.
    let held = segs
        .iter()
        .position(|s| s.dir == Direction::Request && !s.payload.is_empty())
        .unwrap();
    let seg = segs.remove(held);
    segs.push(seg);
    let r = ReassemblyConfig {
        max_flow_buffer: 30,
        ..ReassemblyConfig::default()
    };
    let (x, a) = run_with(segs, r, HttpConfig::default());
    let st = a.reassembly_stats();
    assert_eq!(st.gaps, 1);
    assert_eq!(st.gap_bytes, 10);
    assert_eq!(st.memory_evictions, 1);
    assert!(
        x.iter()
            .all(|e| e.outcome != Outcome::Complete || e.request.as_ref().unwrap().method == "GET")
    );
}

#[test]
fn protocol_switch_ends_http_parsing() {
    // Found by fuzzing: a 101 while a pipelined request body was still being read.
    let mut c = conn();
    c.request(b"GET /ws HTTP/1.1\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\nPOST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    c.response(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n\x81\x05hello");
    c.request(b"GET /not-http HTTP/1.1\r\n\r\n").close();
    let x = run(c.into_segments());
    assert_eq!(
        x.iter()
            .map(|e| (
                e.request.as_ref().unwrap().target.clone(),
                e.prod_response.as_ref().map(|r| r.status),
                e.outcome
            ))
            .collect::<Vec<_>>(),
        vec![
            ("/ws".to_string(), Some(101), Outcome::Complete),
            ("/p".to_string(), None, Outcome::Unparsable)
        ]
    );
}

#[test]
fn response_captured_before_its_request_waits_for_it() {
    // Per-CPU rings can hand the response segments over before the request's.
    let mut c = conn();
    c.request(GET).response(OK_HELLO);
    c.request(&post(b"late")).response(&ok(b"early")).close();
    let mut segs = c.into_segments();
    let req = segs
        .iter()
        .position(|s| s.payload.ends_with(b"late"))
        .unwrap();
    let resp = segs
        .iter()
        .position(|s| s.payload.ends_with(b"early"))
        .unwrap();
    let moved = segs.remove(req);
    segs.insert(resp, moved); // now after the response
    let (x, a) = run_with(segs, ReassemblyConfig::default(), HttpConfig::default());
    assert_eq!(
        x.iter().map(summary).collect::<Vec<_>>(),
        vec![
            s(
                "GET",
                "/v1/models/m",
                b"",
                Some(200),
                b"hello",
                Outcome::Complete
            ),
            s(
                "POST",
                "/v1/models/m:predict",
                b"late",
                Some(200),
                b"early",
                Outcome::Complete
            ),
        ]
    );
    assert_eq!(a.http_stats().orphan_responses, 0);
}

#[test]
fn chunked_response_over_cap_is_truncated() {
    let mut c = conn();
    c.request(GET).response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n01234567\r\n8\r\n89abcdef\r\n0\r\n\r\n");
    c.request(GET).response(OK_HELLO).close();
    let http = HttpConfig {
        max_body: 10,
        ..HttpConfig::default()
    };
    let (x, _) = run_with(c.into_segments(), ReassemblyConfig::default(), http);
    assert_eq!(
        x.iter().map(|e| e.outcome).collect::<Vec<_>>(),
        vec![Outcome::Truncated, Outcome::Complete]
    );
    assert_eq!(x[0].prod_response.as_ref().unwrap().body.len(), 0);
    assert_eq!(
        summary(&x[1]),
        s(
            "GET",
            "/v1/models/m",
            b"",
            Some(200),
            b"hello",
            Outcome::Complete
        )
    );
}

/// The `(target, response body, outcome)` of each exchange, and whether its latency is > 0.
fn paired(x: &[Exchange]) -> Vec<(String, Option<Vec<u8>>, Outcome, bool)> {
    x.iter()
        .map(|e| {
            (
                e.request
                    .as_ref()
                    .map_or(String::new(), |r| r.target.clone()),
                e.prod_response.as_ref().map(|r| r.body.to_vec()),
                e.outcome,
                e.timing.latency_ns().is_some_and(|ns| ns > 0),
            )
        })
        .collect()
}

#[test]
fn extra_responses_are_orphans_never_answers_to_later_requests() {
    // zeek's http-desync-request-response: three responses to the first request in one
    // segment, before the second request was sent; then one response per request.
    let mut c = conn();
    let mut three = ok(b"r1");
    three.extend_from_slice(&ok(b"extra 1"));
    three.extend_from_slice(&ok(b"extra 2"));
    c.request(b"GET /1 HTTP/1.1\r\n\r\n").response(&three);
    for i in 2..=5 {
        c.wait(1_000_000);
        c.request(format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes());
        c.wait(100_000);
        c.response(&ok(format!("r{i}").as_bytes()));
    }
    c.close();
    let (x, a) = run_with(
        c.into_segments(),
        ReassemblyConfig::default(),
        HttpConfig::default(),
    );
    let want: Vec<_> = (1..=5)
        .map(|i| {
            (
                format!("/{i}"),
                Some(format!("r{i}").into_bytes()),
                Outcome::Complete,
                true,
            )
        })
        .collect();
    assert_eq!(paired(&x), want);
    assert_eq!(a.http_stats().orphan_responses, 2);
}

#[test]
fn without_acks_a_response_captured_before_a_request_never_answers_it() {
    // No ACK flags (as in some synthetic captures): capture times decide. The extra response
    // is held while no request waits, then refused for the request sent after it.
    let mut c = conn();
    let mut two = ok(b"r1");
    two.extend_from_slice(&ok(b"extra"));
    c.request(b"GET /1 HTTP/1.1\r\n\r\n").response(&two);
    c.wait(1_000_000);
    c.request(b"GET /2 HTTP/1.1\r\n\r\n").response(&ok(b"r2"));
    c.close();
    let segments: Vec<Segment> = c
        .into_segments()
        .into_iter()
        .map(|mut s| {
            s.flags.0 &= !crate::segment::TcpFlags::ACK;
            s
        })
        .collect();
    let (x, a) = run_with(segments, ReassemblyConfig::default(), HttpConfig::default());
    assert_eq!(
        paired(&x),
        vec![
            ("/1".into(), Some(b"r1".to_vec()), Outcome::Complete, true),
            ("/2".into(), Some(b"r2".to_vec()), Outcome::Complete, true),
        ]
    );
    assert_eq!(a.http_stats().orphan_responses, 1);
}

#[test]
fn a_response_that_does_not_acknowledge_the_request_is_an_orphan() {
    // A server that answers before the request head reached it (e.g. a 408 on a reused
    // connection) cannot be answering that request: counted, dropped, never paired.
    let mut c = conn();
    c.request(b"GET /1 HTTP/1.1\r\n\r\n").response(&ok(b"r1"));
    let ack_before = c.next_seq(Direction::Request);
    c.request(b"GET /2 HTTP/1.1\r\n\r\n");
    let mut segs = c.clone().into_segments();
    c.response(&ok(b"r2")).close();
    let mut rest = c.into_segments().split_off(segs.len());
    // An unsolicited 408 sent before /2 arrived, captured after /2.
    let mut early = rest[0].clone();
    early.ack = ack_before;
    early.payload =
        bytes::Bytes::from_static(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n");
    let shift = early.payload.len() as u32;
    for s in &mut rest {
        if s.dir == Direction::Response {
            s.seq = s.seq.wrapping_add(shift);
        }
    }
    segs.push(early);
    segs.extend(rest);
    let (x, a) = run_with(segs, ReassemblyConfig::default(), HttpConfig::default());
    assert_eq!(
        paired(&x),
        vec![
            ("/1".into(), Some(b"r1".to_vec()), Outcome::Complete, true),
            ("/2".into(), Some(b"r2".to_vec()), Outcome::Complete, true),
        ]
    );
    assert_eq!(a.http_stats().orphan_responses, 1);
}

#[test]
fn after_a_hole_inside_a_body_pipelined_requests_are_never_guessed() {
    // /0's response body loses a segment; /a and /b were pipelined, so the next response
    // acknowledges both and could answer either: both are gaps, /c pairs again.
    let mut c = conn().mss(8);
    c.request(b"GET /0 HTTP/1.1\r\n\r\n")
        .response(&ok(b"body of zero, long enough to span segments"));
    c.request(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
    let mut both = ok(b"A");
    both.extend_from_slice(&ok(b"B"));
    c.response(&both);
    c.request(b"GET /c HTTP/1.1\r\n\r\n")
        .response(&ok(b"C"))
        .close();
    let mut segs = c.into_segments();
    // A segment in the middle of /0's response body (its 42 bytes span 6 segments).
    let first_pipelined = segs
        .iter()
        .position(|s| s.payload.starts_with(b"GET /a"))
        .unwrap();
    let body: Vec<usize> = (0..first_pipelined)
        .filter(|&i| segs[i].dir == Direction::Response && !segs[i].payload.is_empty())
        .collect();
    segs.remove(body[body.len() - 3]);
    let x = run(segs);
    assert_eq!(
        paired(&x),
        vec![
            // The head was paired; the body is not kept.
            ("/0".into(), Some(Vec::new()), Outcome::Gap, false),
            ("/a".into(), None, Outcome::Gap, false),
            ("/b".into(), None, Outcome::Gap, false),
            ("/c".into(), Some(b"C".to_vec()), Outcome::Complete, true),
        ]
    );
}

#[test]
fn after_a_lost_request_its_lost_response_is_not_charged_to_the_next_request() {
    // zeek's zero-length-bodies-with-drops: a whole request and its whole response are not
    // captured; the next request keeps its own response.
    let mut c = conn();
    c.request(b"GET /1 HTTP/1.1\r\n\r\n").response(&ok(b"r1"));
    c.request(b"GET /lost HTTP/1.1\r\n\r\n")
        .response(&ok(b"lost"));
    c.request(b"GET /3 HTTP/1.1\r\n\r\n").response(&ok(b"r3"));
    c.request(b"GET /4 HTTP/1.1\r\n\r\n")
        .response(&ok(b"r4"))
        .close();
    let segs: Vec<Segment> = c
        .into_segments()
        .into_iter()
        .filter(|s| !s.payload.starts_with(b"GET /lost") && !s.payload.ends_with(b"lost"))
        .collect();
    let (x, a) = run_with(segs, ReassemblyConfig::default(), HttpConfig::default());
    assert_eq!(
        paired(&x),
        vec![
            ("/1".into(), Some(b"r1".to_vec()), Outcome::Complete, true),
            (String::new(), None, Outcome::Gap, false),
            ("/3".into(), Some(b"r3".to_vec()), Outcome::Complete, true),
            ("/4".into(), Some(b"r4".to_vec()), Outcome::Complete, true),
        ]
    );
    assert_eq!(a.http_stats().orphan_responses, 0);
}

#[test]
fn messages_cut_by_the_connection_closing_are_incomplete() {
    // zeek's content-length-overflow: the server announces more than it sends, then closes.
    let mut c = conn();
    c.request(GET)
        .response(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this much")
        .close();
    let (x, a) = run_with(
        c.into_segments(),
        ReassemblyConfig::default(),
        HttpConfig::default(),
    );
    assert_eq!(
        x.iter().map(summary).collect::<Vec<_>>(),
        vec![s(
            "GET",
            "/v1/models/m",
            b"",
            Some(200),
            b"",
            Outcome::Incomplete
        )]
    );
    assert_eq!(a.http_stats().incomplete, 1);
    assert_eq!(a.http_stats().unparsable, 0);

    // A request body cut by the client's FIN, and a request head cut by it.
    let post = post(b"0123456789");
    for partial in [&post[..post.len() - 4], b"GET /half HTTP/1.1\r\nHo"] {
        let mut c = conn();
        c.request(partial).close();
        let x = run(c.into_segments());
        assert_eq!(
            x.iter().map(|e| e.outcome).collect::<Vec<_>>(),
            vec![Outcome::Incomplete],
            "{partial:?}"
        );
    }

    // The same cut by the end of the capture (the connection may go on): a gap.
    let mut c = conn();
    c.request(GET)
        .response(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this much");
    let x = run(c.into_segments());
    assert_eq!(
        x.iter().map(|e| e.outcome).collect::<Vec<_>>(),
        vec![Outcome::Gap]
    );
}

#[test]
fn content_length_with_leading_zeros_frames_the_body() {
    // zeek's 261/variant-08: 30 leading zeros, value 50, then a second request.
    let mut c = conn();
    let mut wire = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}50\r\n\r\n",
        "0".repeat(30)
    )
    .into_bytes();
    wire.extend_from_slice(&[b'X'; 50]);
    wire.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n");
    c.request(&wire)
        .response(&ok(b"first"))
        .response(&ok(b"second"))
        .close();
    let (x, a) = run_with(
        c.into_segments(),
        ReassemblyConfig::default(),
        HttpConfig::default(),
    );
    assert_eq!(
        x.iter().map(summary).collect::<Vec<_>>(),
        vec![
            s(
                "POST",
                "/",
                &[b'X'; 50],
                Some(200),
                b"first",
                Outcome::Complete
            ),
            s("GET", "/next", b"", Some(200), b"second", Outcome::Complete),
        ]
    );
    assert_eq!(a.http_stats().refused(Refusal::InvalidContentLength), 0);
}

#[test]
fn ambiguous_requests_are_unparsable_and_counted_by_reason() {
    let mut c = conn();
    c.request(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 50\r\n\r\n0\r\n\r\n",
    )
    .response(&ok(b"a"));
    c.request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n\r\n")
        .response(&ok(b"b"));
    c.request(GET).response(OK_HELLO).close();
    let (x, a) = run_with(
        c.into_segments(),
        ReassemblyConfig::default(),
        HttpConfig::default(),
    );
    assert_eq!(
        x.iter().map(|e| e.outcome).collect::<Vec<_>>(),
        vec![Outcome::Unparsable, Outcome::Unparsable, Outcome::Complete]
    );
    let stats = a.http_stats();
    assert_eq!(stats.refused(Refusal::TransferEncodingWithContentLength), 1);
    assert_eq!(stats.refused(Refusal::SizeOverflow), 1);
    assert_eq!(
        x[2].prod_response.as_ref().map(|r| r.body.to_vec()),
        Some(b"hello".to_vec()),
        "the valid request after them keeps its own response"
    );
}

#[test]
fn responses_without_requests_are_each_counted_at_close() {
    // PcapPlusPlus's 650HttpResponses: only the server's side was captured.
    let mut c = conn();
    c.response(&ok(b"one"))
        .response(&ok(b"two"))
        .response(&ok(b"three"));
    c.close();
    let segs: Vec<Segment> = c
        .into_segments()
        .into_iter()
        .filter(|s| s.dir == Direction::Response || s.payload.is_empty())
        .collect();
    let (x, a) = run_with(segs, ReassemblyConfig::default(), HttpConfig::default());
    assert!(x.is_empty(), "{x:?}");
    assert_eq!(a.http_stats().orphan_responses, 3);
}
