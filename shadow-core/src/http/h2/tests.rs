//! HTTP/2 conversations written frame by frame (every frame type and flag), through the real
//! reassembly and protocol detection: what each becomes, and what is counted.

use crate::http::{
    Exchange, ExchangeAssembler, Header, HttpConfig, HttpStats, Outcome, Protocol, Refusal,
    StreamLoss,
};
use crate::reassembly::ReassemblyConfig;
use crate::segment::{Direction, Segment};
use crate::testkit::Conn;
use crate::testkit::h2::{self, Framing, H2Writer, Indexing, Style};

fn run_with(segments: Vec<Segment>, http: HttpConfig) -> (Vec<Exchange>, HttpStats) {
    let mut assembler = ExchangeAssembler::new(ReassemblyConfig::default(), http);
    let mut out = Vec::new();
    for s in segments {
        assembler.push(s, &mut out);
    }
    assembler.finish(&mut out);
    (out, assembler.http_stats())
}

fn run(segments: Vec<Segment>) -> (Vec<Exchange>, HttpStats) {
    run_with(segments, HttpConfig::default())
}

fn conn() -> Conn {
    let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:50051");
    c.handshake();
    c
}

const GET: [(&str, &str); 4] = [
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/v1/models/m"),
    (":authority", "model:8080"),
];

fn post(path: &str) -> Vec<(&str, &str)> {
    vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "model:50051"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
}

const OK: [(&str, &str); 2] = [(":status", "200"), ("content-type", "application/json")];

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: bytes::Bytes::copy_from_slice(value.as_bytes()),
    }
}

/// Client preface and SETTINGS; server SETTINGS and both acknowledgments.
fn open(c: &mut Conn) {
    c.request(&h2::client_preface());
    let mut server = h2::settings(&[(3, 100)]);
    server.extend(h2::settings_ack());
    c.response(&server);
    c.request(&h2::settings_ack());
}

fn plain() -> Style {
    Style::default()
}

#[test]
fn prior_knowledge_streams_become_exchanges() {
    let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
    let mut c = conn();
    open(&mut c);
    c.request(&cw.headers(1, &GET, true, plain(), Framing::default()));
    let mut body = cw.headers(3, &post("/p"), false, plain(), Framing::default());
    body.extend(cw.data(3, b"hello ", false, Framing::default()));
    body.extend(cw.data(3, b"world", false, Framing::default()));
    body.extend(cw.headers(
        3,
        &[("x-checksum", "abc")],
        true,
        plain(),
        Framing::default(),
    ));
    c.request(&body);
    let mut resp = sw.headers(3, &OK, false, plain(), Framing::default());
    resp.extend(sw.data(3, b"{}", false, Framing::default()));
    resp.extend(sw.headers(
        3,
        &[("grpc-status", "0")],
        true,
        plain(),
        Framing::default(),
    ));
    resp.extend(sw.headers(1, &OK, false, plain(), Framing::default()));
    resp.extend(sw.data(1, b"[1]", true, Framing::default()));
    c.response(&resp).close();
    let (x, stats) = run(c.into_segments());
    assert_eq!(x.len(), 2);
    // Stream 3 ended first, but both end in the same segment: id order.
    let get = &x[0];
    assert_eq!(get.protocol, Protocol::H2);
    assert_eq!(get.outcome, Outcome::Complete);
    let req = get.request.as_ref().unwrap();
    assert_eq!(
        (req.method.as_str(), req.target.as_str()),
        ("GET", "/v1/models/m")
    );
    assert!(req.headers.is_empty(), "pseudo-headers are not headers");
    let resp = get.prod_response.as_ref().unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.headers,
        vec![header("content-type", "application/json")]
    );
    assert_eq!(&resp.body[..], b"[1]");
    let grpc = &x[1];
    assert_eq!(grpc.protocol, Protocol::Grpc);
    assert_eq!(grpc.outcome, Outcome::Complete);
    let req = grpc.request.as_ref().unwrap();
    assert_eq!(&req.body[..], b"hello world");
    assert_eq!(req.trailers, vec![header("x-checksum", "abc")]);
    assert_eq!(
        req.headers,
        vec![
            header("content-type", "application/grpc"),
            header("te", "trailers")
        ]
    );
    let resp = grpc.prod_response.as_ref().unwrap();
    assert_eq!(resp.trailers, vec![header("grpc-status", "0")]);
    assert_eq!(&resp.body[..], b"{}");
    let t = grpc.timing;
    assert!(t.request_first_byte <= t.request_last_byte);
    assert!(t.response_first_byte.unwrap() > t.request_last_byte);
    assert!(t.latency_ns().unwrap() > 0);
    assert_eq!(stats.complete, 2);
    assert_eq!(stats.refused(Refusal::H2Frame), 0);
}

#[test]
fn padding_priority_and_continuation_change_nothing() {
    let framings = [
        Framing::default(),
        Framing {
            padding: Some(0),
            ..Framing::default()
        },
        Framing {
            padding: Some(17),
            priority: true,
            fragment: Some(3),
        },
        Framing {
            priority: true,
            fragment: Some(1),
            ..Framing::default()
        },
    ];
    let mut results = Vec::new();
    for framing in framings {
        let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
        let mut c = conn();
        open(&mut c);
        let mut req = cw.headers(1, &post("/svc/M"), false, plain(), framing);
        req.extend(cw.data(1, b"abc", true, framing));
        c.request(&req);
        let mut resp = sw.headers(1, &OK, false, plain(), framing);
        resp.extend(sw.data(1, b"xyz", false, framing));
        resp.extend(sw.headers(1, &[("grpc-status", "0")], true, plain(), framing));
        c.response(&resp).close();
        let (x, stats) = run(c.into_segments());
        assert_eq!(x.len(), 1, "{framing:?}");
        assert_eq!(x[0].outcome, Outcome::Complete, "{framing:?}");
        assert_eq!(stats.refused(Refusal::H2Frame), 0);
        let mut x = x.into_iter().next().unwrap();
        x.timing = Default::default();
        results.push(x);
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(&results[0].request.as_ref().unwrap().body[..], b"abc");
}

#[test]
fn padding_longer_than_the_frame_makes_the_direction_unreadable() {
    let mut cw = H2Writer::default();
    let mut c = conn();
    open(&mut c);
    c.request(&cw.headers(1, &post("/p"), false, plain(), Framing::default()));
    // DATA, PADDED, pad length 5 in a 3-byte payload.
    c.request(&h2::frame(0x0, 0x8 | 0x1, 1, &[5, b'a', b'b']));
    c.response(&H2Writer::default().headers(1, &OK, true, plain(), Framing::default()))
        .close();
    let (x, stats) = run(c.into_segments());
    assert_eq!(x.len(), 1);
    assert_eq!(x[0].outcome, Outcome::Unparsable);
    assert_eq!(stats.refused(Refusal::H2Frame), 1);
}

#[test]
fn interim_responses_are_skipped() {
    let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
    let mut c = conn();
    open(&mut c);
    let mut head = post("/upload");
    head.push(("expect", "100-continue"));
    c.request(&cw.headers(1, &head, false, plain(), Framing::default()));
    c.response(&sw.headers(1, &[(":status", "100")], false, plain(), Framing::default()));
    c.request(&cw.data(1, b"body", true, Framing::default()));
    let mut resp = sw.headers(
        1,
        &[(":status", "103"), ("link", "</a>")],
        false,
        plain(),
        Framing::default(),
    );
    resp.extend(sw.headers(1, &[(":status", "201")], true, plain(), Framing::default()));
    c.response(&resp).close();
    let (x, stats) = run(c.into_segments());
    assert_eq!(x[0].outcome, Outcome::Complete);
    let resp = x[0].prod_response.as_ref().unwrap();
    assert_eq!(resp.status, 201);
    assert!(resp.headers.is_empty());
    assert_eq!(stats.interim_responses, 2);
    // The final response's first byte, not the interim one's.
    assert!(x[0].timing.response_first_byte.unwrap() > x[0].timing.request_last_byte);
}

#[test]
fn grpc_trailers_only_response() {
    let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
    let mut c = conn();
    open(&mut c);
    let mut req = cw.headers(
        1,
        &post("/inference.GRPCInferenceService/ModelInfer"),
        false,
        plain(),
        Framing::default(),
    );
    req.extend(cw.data(1, &h2::grpc_message(b"\x0a\x01m"), true, Framing::default()));
    c.request(&req);
    let status = [
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("grpc-status", "5"),
        ("grpc-message", "model not found"),
    ];
    c.response(&sw.headers(1, &status, true, plain(), Framing::default()))
        .close();
    let (x, _) = run(c.into_segments());
    assert_eq!(x[0].protocol, Protocol::Grpc);
    assert_eq!(x[0].outcome, Outcome::Complete);
    let resp = x[0].prod_response.as_ref().unwrap();
    assert!(resp.trailers.is_empty() && resp.body.is_empty());
    assert!(resp.headers.contains(&header("grpc-status", "5")));
}

#[test]
fn rst_stream_ends_a_stream_early_and_is_counted() {
    let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
    let mut c = conn();
    open(&mut c);
    // Stream 1: the client cancels mid-request. Stream 3: the server refuses it after the
    // request ended. Stream 5: completes.
    c.request(&cw.headers(1, &post("/a"), false, plain(), Framing::default()));
    c.request(&cw.data(1, b"part", false, Framing::default()));
    c.request(&h2::rst_stream(1, 8));
    c.request(&cw.headers(3, &post("/b"), true, plain(), Framing::default()));
    c.response(&h2::rst_stream(3, 7));
    c.request(&cw.headers(5, &GET, true, plain(), Framing::default()));
    c.response(&sw.headers(5, &OK, true, plain(), Framing::default()));
    // A late frame of the reset stream opens nothing.
    c.request(&cw.data(1, b"late", true, Framing::default()));
    c.close();
    let (x, stats) = run(c.into_segments());
    let got: Vec<_> = x
        .iter()
        .map(|e| (e.request.as_ref().unwrap().target.clone(), e.outcome))
        .collect();
    assert_eq!(
        got,
        vec![
            ("/a".to_string(), Outcome::Incomplete),
            ("/b".to_string(), Outcome::NoResponse),
            ("/v1/models/m".to_string(), Outcome::Complete),
        ]
    );
    assert_eq!(stats.lost(StreamLoss::Reset), 2);
}

#[test]
fn goaway_leaves_higher_streams_without_response() {
    let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
    let mut c = conn();
    open(&mut c);
    c.request(&cw.headers(1, &GET, true, plain(), Framing::default()));
    c.request(&cw.headers(3, &GET, true, plain(), Framing::default()));
    let mut resp = h2::goaway(1, 0);
    resp.extend(sw.headers(1, &OK, true, plain(), Framing::default()));
    c.response(&resp);
    // Sent by the client before it read the GOAWAY.
    c.request(&cw.headers(5, &GET, true, plain(), Framing::default()));
    c.close();
    let (x, stats) = run(c.into_segments());
    let outcomes: Vec<_> = x.iter().map(|e| e.outcome).collect();
    assert_eq!(
        outcomes,
        vec![Outcome::Complete, Outcome::NoResponse, Outcome::NoResponse]
    );
    assert_eq!(stats.lost(StreamLoss::GoAway), 2);
}

#[test]
fn connection_close_mid_stream() {
    let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
    let mut c = conn();
    open(&mut c);
    c.request(&cw.headers(1, &post("/a"), true, plain(), Framing::default()));
    c.request(&cw.headers(3, &post("/b"), true, plain(), Framing::default()));
    c.request(&cw.headers(5, &post("/c"), false, plain(), Framing::default()));
    c.response(&sw.headers(1, &OK, false, plain(), Framing::default()));
    c.response(&sw.data(1, b"cut", false, Framing::default()));
    c.rst(Direction::Response);
    let (x, _) = run(c.into_segments());
    let outcomes: Vec<_> = x.iter().map(|e| e.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            Outcome::Incomplete,
            Outcome::NoResponse,
            Outcome::Incomplete
        ]
    );
    assert_eq!(x[0].timing.response_last_byte, None);
}

#[test]
fn server_fin_leaves_later_requests_without_response() {
    let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
    let mut c = conn();
    open(&mut c);
    c.request(&cw.headers(1, &GET, true, plain(), Framing::default()));
    c.response(&sw.headers(1, &OK, true, plain(), Framing::default()));
    c.fin(Direction::Response);
    c.request(&cw.headers(3, &GET, true, plain(), Framing::default()));
    c.fin(Direction::Request);
    let (x, _) = run(c.into_segments());
    let outcomes: Vec<_> = x.iter().map(|e| e.outcome).collect();
    assert_eq!(outcomes, vec![Outcome::Complete, Outcome::NoResponse]);
}

#[test]
fn bodies_over_the_cap_are_truncated() {
    let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
    let mut c = conn();
    open(&mut c);
    let mut req = cw.headers(1, &post("/big"), false, plain(), Framing::default());
    req.extend(cw.data(1, &[7; 40], false, Framing::default()));
    req.extend(cw.data(1, &[7; 40], true, Framing::default()));
    c.request(&req);
    c.request(&cw.headers(3, &post("/small"), true, plain(), Framing::default()));
    let mut resp = sw.headers(1, &OK, true, plain(), Framing::default());
    resp.extend(sw.headers(3, &OK, false, plain(), Framing::default()));
    resp.extend(sw.data(3, &[1; 51], true, Framing::default()));
    c.response(&resp).close();
    let http = HttpConfig {
        max_body: 50,
        ..HttpConfig::default()
    };
    let (x, stats) = run_with(c.into_segments(), http);
    assert_eq!(x[0].outcome, Outcome::Truncated);
    assert!(x[0].request.as_ref().unwrap().body.is_empty());
    assert_eq!(x[1].outcome, Outcome::Truncated);
    assert!(x[1].prod_response.as_ref().unwrap().body.is_empty());
    assert_eq!(stats.truncated, 2);
}

#[test]
fn streams_over_the_concurrency_cap_are_counted_not_kept() {
    let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
    let mut c = conn();
    open(&mut c);
    for id in [1, 3, 5] {
        c.request(&cw.headers(id, &GET, true, plain(), Framing::default()));
    }
    for id in [1, 3, 5] {
        c.response(&sw.headers(id, &OK, true, plain(), Framing::default()));
    }
    // Once streams ended, new ones are followed again.
    c.request(&cw.headers(7, &GET, true, plain(), Framing::default()));
    c.response(&sw.headers(7, &OK, true, plain(), Framing::default()));
    c.close();
    let mut http = HttpConfig::default();
    http.h2.max_concurrent_streams = 2;
    let (x, stats) = run_with(c.into_segments(), http);
    assert_eq!(x.len(), 3, "stream 5 is not kept");
    assert!(x.iter().all(|e| e.outcome == Outcome::Complete));
    assert_eq!(stats.lost(StreamLoss::OverLimit), 1);
}

#[test]
fn push_promises_are_counted_and_keep_the_table_in_step() {
    let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
    let mut c = conn();
    open(&mut c);
    c.request(&cw.headers(1, &GET, true, plain(), Framing::default()));
    // The promise's block adds `x-pushed` to the server's dynamic table...
    let block = sw.encoder.block(
        &[
            (":method", "GET"),
            (":path", "/style.css"),
            ("x-pushed", "yes"),
        ],
        plain(),
    );
    let mut promise = 2u32.to_be_bytes().to_vec();
    promise.extend_from_slice(&block);
    let mut resp = h2::frame(0x5, 0x4, 1, &promise);
    // ...which the response then uses by index.
    resp.extend(sw.headers(
        1,
        &[(":status", "200"), ("x-pushed", "yes")],
        false,
        plain(),
        Framing::default(),
    ));
    resp.extend(sw.headers(2, &OK, false, plain(), Framing::default()));
    resp.extend(sw.data(2, b"body{}", true, Framing::default()));
    resp.extend(sw.data(1, b"<html>", true, Framing::default()));
    c.response(&resp).close();
    let (x, stats) = run(c.into_segments());
    assert_eq!(x.len(), 1);
    assert_eq!(x[0].outcome, Outcome::Complete);
    let resp = x[0].prod_response.as_ref().unwrap();
    assert_eq!(resp.headers, vec![header("x-pushed", "yes")]);
    assert_eq!(&resp.body[..], b"<html>");
    assert_eq!(stats.lost(StreamLoss::PushPromise), 1);
}

#[test]
fn ignored_frames_change_nothing() {
    let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
    let mut c = conn();
    open(&mut c);
    let mut req = h2::ping(false);
    req.extend(h2::priority(1));
    req.extend(cw.headers(1, &post("/p"), false, plain(), Framing::default()));
    req.extend(h2::window_update(0, 1000));
    req.extend(h2::frame(0xfa, 0xff, 1, b"extension"));
    req.extend(cw.data(1, b"x", true, Framing::default()));
    c.request(&req);
    let mut resp = h2::ping(true);
    resp.extend(h2::window_update(1, 1));
    resp.extend(sw.headers(1, &OK, true, plain(), Framing::default()));
    c.response(&resp).close();
    let (x, stats) = run(c.into_segments());
    assert_eq!(x[0].outcome, Outcome::Complete);
    assert_eq!(
        Refusal::ALL.iter().map(|&r| stats.refused(r)).sum::<u64>(),
        0
    );
}

#[test]
fn invalid_frames_end_the_direction() {
    for bad in [
        h2::frame(0x6, 0, 0, &[0; 7]),   // PING of 7 bytes
        h2::frame(0x0, 0, 0, b"data"),   // DATA on stream 0
        h2::frame(0x4, 0, 1, &[]),       // SETTINGS on a stream
        h2::frame(0x3, 0, 1, &[0; 5]),   // RST_STREAM of 5 bytes
        h2::frame(0x9, 0x4, 1, &[0x82]), // CONTINUATION without HEADERS
        // Over `max_frame_size`: refused from its header on.
        [&0x10_0001u32.to_be_bytes()[1..], &[0, 0, 0, 0, 0, 1]].concat(),
    ] {
        let mut cw = H2Writer::default();
        let mut c = conn();
        open(&mut c);
        c.request(&cw.headers(1, &post("/p"), false, plain(), Framing::default()));
        c.request(&bad);
        c.close();
        let (x, stats) = run(c.into_segments());
        assert_eq!(x.len(), 1);
        assert_eq!(x[0].outcome, Outcome::Unparsable);
        assert_eq!(stats.refused(Refusal::H2Frame), 1);
    }
}

#[test]
fn a_frame_interrupting_a_header_block_is_an_error() {
    let mut cw = H2Writer::default();
    let mut c = conn();
    open(&mut c);
    let block = cw.encoder.block(&post("/p"), plain());
    let (a, b) = block.split_at(4);
    let mut req = h2::frame(0x1, 0, 1, a);
    req.extend(h2::ping(false));
    req.extend(h2::frame(0x9, 0x4, 1, b));
    c.request(&req).close();
    let (x, stats) = run(c.into_segments());
    assert!(x.is_empty(), "the stream never opened");
    assert_eq!(stats.refused(Refusal::H2Frame), 1);
}

#[test]
fn frames_above_the_default_size_are_read_whatever_settings_say() {
    let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
    let mut c = conn();
    // The client allows 64 KiB frames and a 16 KiB HPACK table.
    c.request(h2::PREFACE);
    c.request(&h2::settings(&[(0x5, 65_536), (0x1, 16_384)]));
    c.response(&h2::settings(&[]));
    c.request(&cw.headers(1, &GET, true, plain(), Framing::default()));
    sw.max_frame = 65_536;
    let mut block = Vec::new();
    sw.encoder.size_update(16_384, &mut block);
    sw.encoder.field(b":status", b"200", plain(), &mut block);
    let mut resp = sw.header_block(1, &block, false, Framing::default());
    resp.extend(sw.data(1, &[9; 40_000], true, Framing::default()));
    c.response(&resp).close();
    let (x, stats) = run(c.into_segments());
    assert_eq!(x[0].outcome, Outcome::Complete, "{stats:?}");
    assert_eq!(x[0].prod_response.as_ref().unwrap().body.len(), 40_000);
}

#[test]
fn a_table_size_update_above_the_limit_loses_the_hpack_state() {
    let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
    let mut c = conn();
    open(&mut c);
    c.request(&cw.headers(1, &GET, true, plain(), Framing::default()));
    c.request(&cw.headers(3, &GET, true, plain(), Framing::default()));
    let mut block = Vec::new();
    sw.encoder
        .size_update(crate::http::h2::hpack::MAX_TABLE_SIZE + 1, &mut block);
    sw.encoder.field(b":status", b"200", plain(), &mut block);
    let mut resp = sw.header_block(1, &block, true, Framing::default());
    resp.extend(sw.headers(3, &OK, true, plain(), Framing::default()));
    c.response(&resp).close();
    let (x, stats) = run(c.into_segments());
    let outcomes: Vec<_> = x.iter().map(|e| e.outcome).collect();
    assert_eq!(outcomes, vec![Outcome::Unparsable, Outcome::Gap]);
    assert_eq!(stats.refused(Refusal::Hpack), 1);
    assert_eq!(stats.lost(StreamLoss::HpackUnknown), 1);
    assert!(x[1].request.is_some(), "the request side was decoded");
    assert!(x[1].prod_response.is_none());
}

#[test]
fn malformed_messages_are_refused() {
    let cases: [&[(&str, &str)]; 4] = [
        &[(":method", "GET"), (":scheme", "http")], // no :path
        &[(":method", "GET"), ("x", "1"), (":path", "/")], // pseudo after a field
        &[(":method", "GET"), (":path", "/"), (":path", "/again")], // repeated
        &[(":method", "GET"), (":path", "/"), (":bogus", "1")], // unknown
    ];
    for fields in cases {
        let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
        let mut c = conn();
        open(&mut c);
        c.request(&cw.headers(1, fields, true, plain(), Framing::default()));
        c.response(&sw.headers(1, &OK, true, plain(), Framing::default()))
            .close();
        let (x, stats) = run(c.into_segments());
        assert_eq!(x[0].outcome, Outcome::Unparsable, "{fields:?}");
        assert_eq!(stats.refused(Refusal::H2Malformed), 1, "{fields:?}");
    }
}

#[test]
fn a_header_list_over_the_cap_is_refused_and_the_table_stays_in_step() {
    let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
    let mut c = conn();
    open(&mut c);
    let big = "b".repeat(300);
    let mut fields = GET.to_vec();
    fields.push(("x-big", &big));
    c.request(&cw.headers(1, &fields, true, plain(), Framing::default()));
    // Stream 3 indexes `x-big` from the table.
    let mut small = GET.to_vec();
    small[2] = (":path", "/small");
    c.request(&cw.headers(3, &small, true, plain(), Framing::default()));
    let mut resp = sw.headers(1, &OK, true, plain(), Framing::default());
    resp.extend(sw.headers(3, &OK, true, plain(), Framing::default()));
    c.response(&resp).close();
    let http = HttpConfig {
        max_head: 256,
        ..HttpConfig::default()
    };
    let (x, stats) = run_with(c.into_segments(), http);
    let outcomes: Vec<_> = x.iter().map(|e| e.outcome).collect();
    assert_eq!(outcomes, vec![Outcome::Unparsable, Outcome::Complete]);
    assert_eq!(stats.refused(Refusal::HeadTooLarge), 1);
}

#[test]
fn every_hpack_representation_and_table_size_updates() {
    let styles = [
        Style {
            indexing: Indexing::Incremental,
            huffman: true,
        },
        Style {
            indexing: Indexing::Incremental,
            huffman: false,
        },
        Style {
            indexing: Indexing::Without,
            huffman: true,
        },
        Style {
            indexing: Indexing::Never,
            huffman: false,
        },
    ];
    let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
    let mut c = conn();
    open(&mut c);
    let mut expected = Vec::new();
    for (i, style) in styles.iter().cycle().take(12).enumerate() {
        let id = 2 * i as u32 + 1;
        let path = format!("/m/{}", i % 3);
        let value = format!("v{}", i % 2);
        let mut fields = post(&path);
        fields.push(("x-request-id", &value));
        let mut block = Vec::new();
        if i % 5 == 4 {
            // Shrink (evicting everything), then grow back.
            cw.encoder.size_update(64, &mut block);
            cw.encoder.size_update(4096, &mut block);
        }
        for (n, v) in &fields {
            cw.encoder
                .field(n.as_bytes(), v.as_bytes(), *style, &mut block);
        }
        c.request(&cw.header_block(id, &block, true, Framing::default()));
        c.response(&sw.headers(id, &OK, true, *style, Framing::default()));
        expected.push((path, value));
    }
    c.close();
    let (x, _) = run(c.into_segments());
    let got: Vec<_> = x
        .iter()
        .map(|e| {
            assert_eq!(e.outcome, Outcome::Complete);
            let r = e.request.as_ref().unwrap();
            let id = r.headers.iter().find(|h| h.name == "x-request-id").unwrap();
            (
                r.target.clone(),
                String::from_utf8(id.value.to_vec()).unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn the_preface_is_found_across_tiny_segments() {
    let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
    let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:50051").mss(5);
    c.handshake();
    open(&mut c);
    c.request(&cw.headers(1, &GET, true, plain(), Framing::default()));
    c.response(&sw.headers(1, &OK, true, plain(), Framing::default()))
        .close();
    let (x, _) = run(c.into_segments());
    assert_eq!(x.len(), 1);
    assert_eq!(x[0].outcome, Outcome::Complete);
}

/// A connection whose start the capture missed: HPACK state unknown.
fn joined_conversation() -> Vec<Segment> {
    let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
    // What happened before the capture started: the tables have entries.
    cw.headers(1, &GET, true, plain(), Framing::default());
    sw.headers(1, &OK, true, plain(), Framing::default());
    let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:50051");
    // The tail of a DATA frame of stream 1, then frames.
    let mut req = vec![0x17, 0x00, 0x42];
    req.extend(cw.headers(3, &post("/a"), false, plain(), Framing::default()));
    req.extend(cw.data(3, b"body", true, Framing::default()));
    req.extend(h2::window_update(0, 100));
    req.extend(cw.headers(5, &GET, true, plain(), Framing::default()));
    c.request(&req);
    let mut resp = sw.headers(3, &OK, false, plain(), Framing::default());
    resp.extend(sw.data(3, b"ok", true, Framing::default()));
    resp.extend(sw.headers(5, &OK, true, plain(), Framing::default()));
    c.response(&resp);
    c.close();
    c.into_segments()
}

#[test]
fn a_connection_joined_mid_way_counts_its_streams_as_gaps() {
    let (x, stats) = run(joined_conversation());
    assert_eq!(x.len(), 2, "streams 3 and 5");
    for e in &x {
        assert_eq!(e.outcome, Outcome::Gap);
        assert!(
            e.request.is_none() && e.prod_response.is_none(),
            "never guessed"
        );
        assert_eq!(e.protocol, Protocol::H2);
    }
    assert_eq!(stats.lost(StreamLoss::HpackUnknown), 2);
    assert_eq!(stats.gap, 2);
    assert_eq!(stats.unparsable, 0);
}

#[test]
fn a_gap_loses_the_hpack_state_until_the_connection_ends() {
    let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
    let mut c = conn();
    open(&mut c);
    c.request(&cw.headers(1, &GET, true, plain(), Framing::default()));
    c.response(&sw.headers(1, &OK, true, plain(), Framing::default()));
    // Stream 3's request is lost in the capture.
    let lost_at = c.segments().len();
    c.request(&cw.headers(3, &post("/lost"), false, plain(), Framing::default()));
    let mut rest = cw.data(3, b"x", true, Framing::default());
    rest.extend(cw.headers(5, &GET, true, plain(), Framing::default()));
    rest.extend(cw.headers(7, &GET, true, plain(), Framing::default()));
    c.request(&rest);
    let mut resp = sw.headers(3, &OK, true, plain(), Framing::default());
    resp.extend(sw.headers(5, &OK, true, plain(), Framing::default()));
    resp.extend(sw.headers(7, &OK, true, plain(), Framing::default()));
    c.response(&resp).close();
    let mut segments = c.into_segments();
    segments.remove(lost_at);
    let (x, stats) = run(segments);
    let outcomes: Vec<_> = x.iter().map(|e| e.outcome).collect();
    assert_eq!(outcomes.len(), 4, "streams 1, 3, 5, 7");
    assert_eq!(outcomes[0], Outcome::Complete);
    assert!(
        outcomes[1..].iter().all(|&o| o == Outcome::Gap),
        "{outcomes:?}"
    );
    assert!(x[1..].iter().all(|e| e.request.is_none()));
    assert!(stats.lost(StreamLoss::HpackUnknown) >= 2);
    // A new connection decodes again.
    let mut c2 = Conn::new("10.0.0.1:40001", "10.0.0.2:50051");
    c2.handshake();
    open(&mut c2);
    let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
    c2.request(&cw.headers(1, &GET, true, plain(), Framing::default()));
    c2.response(&sw.headers(1, &OK, true, plain(), Framing::default()))
        .close();
    let (x, _) = run(c2.into_segments());
    assert_eq!(x[0].outcome, Outcome::Complete);
}

/// An HTTP/1.1 request upgraded to h2c, answered on stream 1, then stream 3 in HTTP/2.
fn upgrade_conversation(accept: bool) -> Vec<Segment> {
    let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
    let mut c = conn();
    c.request(
        b"POST /v1/models/m:predict HTTP/1.1\r\nHost: model\r\nConnection: Upgrade, HTTP2-Settings\r\n\
          Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Length: 4\r\n\r\nabcd",
    );
    if !accept {
        c.response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno");
        c.request(b"GET /next HTTP/1.1\r\nHost: model\r\n\r\n");
        c.response(b"HTTP/1.1 204 No Content\r\n\r\n").close();
        return c.into_segments();
    }
    let mut resp =
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec();
    resp.extend(h2::settings(&[]));
    resp.extend(sw.headers(1, &OK, false, plain(), Framing::default()));
    resp.extend(sw.data(1, b"[0.5]", true, Framing::default()));
    c.response(&resp);
    let mut req = h2::client_preface();
    req.extend(h2::settings_ack());
    req.extend(cw.headers(3, &GET, true, plain(), Framing::default()));
    c.request(&req);
    c.response(&sw.headers(3, &OK, true, plain(), Framing::default()));
    c.close();
    c.into_segments()
}

#[test]
fn an_h2c_upgrade_continues_as_stream_1() {
    let (x, stats) = run(upgrade_conversation(true));
    assert_eq!(x.len(), 2, "no exchange for the 101: {x:?}");
    let first = &x[0];
    assert_eq!(first.protocol, Protocol::H2);
    assert_eq!(first.outcome, Outcome::Complete);
    let req = first.request.as_ref().unwrap();
    assert_eq!(
        (req.method.as_str(), req.target.as_str()),
        ("POST", "/v1/models/m:predict")
    );
    assert_eq!(&req.body[..], b"abcd");
    let names: Vec<_> = req.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["Host", "Content-Length"],
        "connection-specific fields dropped"
    );
    let resp = first.prod_response.as_ref().unwrap();
    assert_eq!((resp.status, &resp.body[..]), (200, &b"[0.5]"[..]));
    assert!(first.timing.response_first_byte.unwrap() > first.timing.request_last_byte);
    assert_eq!(x[1].outcome, Outcome::Complete);
    assert_eq!(x[1].request.as_ref().unwrap().target, "/v1/models/m");
    assert_eq!(stats.unparsable, 0);
    assert_eq!(
        Refusal::ALL.iter().map(|&r| stats.refused(r)).sum::<u64>(),
        0
    );
}

#[test]
fn a_declined_upgrade_stays_http1() {
    let (x, _) = run(upgrade_conversation(false));
    let got: Vec<_> = x
        .iter()
        .map(|e| {
            (
                e.protocol,
                e.outcome,
                e.prod_response.as_ref().map(|r| r.status),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (Protocol::Http1, Outcome::Complete, Some(200)),
            (Protocol::Http1, Outcome::Complete, Some(204)),
        ]
    );
}

#[test]
fn an_upgrade_segment_order_does_not_matter() {
    // The client's preface captured before the 101 (reordered capture): same exchanges.
    let segments = upgrade_conversation(true);
    let in_order = run(segments.clone()).0;
    let mut swapped = segments;
    let preface = swapped
        .iter()
        .position(|s| s.payload.starts_with(b"PRI"))
        .unwrap();
    let switching = swapped
        .iter()
        .position(|s| s.payload.starts_with(b"HTTP/1.1 101"))
        .unwrap();
    swapped.swap(preface, switching);
    assert_eq!(run(swapped).0, in_order);
}

#[test]
fn a_declined_upgrade_releases_the_requests_held_behind_it() {
    // The next request captured before the server's answer (it was sent after it): held
    // while the upgrade is unanswered, then read as HTTP/1.
    let mut c = conn();
    c.request(
        b"GET /a HTTP/1.1\r\nHost: m\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
          HTTP2-Settings: AAMAAABk\r\n\r\n",
    );
    c.request(b"GET /b HTTP/1.1\r\nHost: m\r\n\r\n");
    c.response(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb");
    c.close();
    let (x, stats) = run(c.into_segments());
    let got: Vec<_> = x
        .iter()
        .map(|e| {
            (
                e.protocol,
                e.outcome,
                e.request.as_ref().unwrap().target.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (Protocol::Http1, Outcome::Complete, "/a".to_string()),
            (Protocol::Http1, Outcome::Complete, "/b".to_string()),
        ]
    );
    assert_eq!(stats.orphan_responses, 0);
}

#[test]
fn a_capture_starting_after_the_handshake_reads_the_preface_whole() {
    // No SYN seen (both directions "joined"), but the client's first bytes are the preface:
    // the server could not have sent a header block before, so both HPACK states are known.
    let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
    let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:50051");
    open(&mut c);
    c.request(&cw.headers(1, &GET, true, plain(), Framing::default()));
    c.response(&sw.headers(1, &OK, true, plain(), Framing::default()))
        .close();
    let (x, stats) = run(c.into_segments());
    assert_eq!(x.len(), 1);
    assert_eq!(x[0].outcome, Outcome::Complete);
    assert_eq!(stats.lost(StreamLoss::HpackUnknown), 0);
}
