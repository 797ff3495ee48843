//! Property: random HTTP/2 conversations (several concurrent streams with interleaved frames,
//! CONTINUATION, padding, priority, every HPACK representation, dynamic table evictions and
//! size updates, interim responses, trailers), cut into random segments, reordered within a
//! window and with random duplicates, yield exactly the exchanges of the in-order capture,
//! and those are the streams that were generated.

use crate::http::proptests::{merge, perturb};
use crate::http::{Exchange, Header, Outcome, Protocol, exchanges_from_segments};
use crate::segment::Segment;
use crate::testkit::Conn;
use crate::testkit::h2::{self, Framing, H2Writer, Indexing, Style};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct GenMessage {
    extra: Vec<(String, String)>,
    body: Vec<u8>,
    /// DATA frames of at most this many bytes.
    chunk: usize,
    trailers: Option<(String, String)>,
    framing: Framing,
    style: Style,
    /// A dynamic table size update before the head's fields.
    size_update: Option<usize>,
}

#[derive(Clone, Debug)]
struct GenStream {
    grpc: bool,
    request: GenMessage,
    status: u16,
    interim: bool,
    response: GenMessage,
}

fn gen_message() -> impl Strategy<Value = GenMessage> {
    let field = (
        prop::sample::select(vec![
            "x-request-id",
            "x-model",
            "accept",
            "user-agent",
            "x-long-header-name",
        ]),
        prop::sample::select(vec![
            "1",
            "abc",
            "model-v2",
            "gzip, deflate",
            "\u{e9}t\u{e9}",
            "",
        ]),
    );
    (
        prop::collection::vec(field, 0..4),
        prop::collection::vec(any::<u8>(), 0..300),
        1usize..120,
        prop::option::of((Just("x-trailer".to_string()), "[a-z]{0,8}")),
        (
            prop::option::of(0u8..20),
            any::<bool>(),
            prop::option::of(1usize..16),
        ),
        (0u8..3, any::<bool>()),
        prop::option::weighted(0.2, prop::sample::select(vec![0usize, 64, 150, 4096])),
    )
        .prop_map(
            |(
                extra,
                body,
                chunk,
                trailers,
                (padding, priority, fragment),
                (ix, huffman),
                size_update,
            )| {
                GenMessage {
                    extra: extra
                        .into_iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect(),
                    body,
                    chunk,
                    trailers,
                    framing: Framing {
                        padding,
                        priority,
                        fragment,
                    },
                    style: Style {
                        indexing: [Indexing::Incremental, Indexing::Without, Indexing::Never]
                            [ix as usize],
                        huffman,
                    },
                    size_update,
                }
            },
        )
}

fn gen_stream() -> impl Strategy<Value = GenStream> {
    (
        any::<bool>(),
        gen_message(),
        prop::sample::select(vec![200u16, 204, 404, 500]),
        prop::bool::weighted(0.15),
        gen_message(),
    )
        .prop_map(|(grpc, request, status, interim, response)| GenStream {
            grpc,
            request,
            status,
            interim,
            response,
        })
}

/// One frame group of a stream, written when picked (HPACK state follows write order).
enum Unit {
    Interim,
    Head,
    Data(usize),
    Trailers,
}

fn units(msg: &GenMessage, response: bool, interim: bool) -> Vec<Unit> {
    let mut v = Vec::new();
    if response && interim {
        v.push(Unit::Interim);
    }
    v.push(Unit::Head);
    let chunks = msg.body.len().div_ceil(msg.chunk);
    v.extend((0..chunks).map(Unit::Data));
    if msg.trailers.is_some() {
        v.push(Unit::Trailers);
    }
    v
}

fn path(flow: usize, i: usize) -> String {
    format!("/f{flow}/s{i}")
}

impl GenStream {
    fn head(&self, flow: usize, i: usize, response: bool) -> Vec<(String, String)> {
        let mut fields: Vec<(String, String)> = if response {
            vec![(":status".into(), self.status.to_string())]
        } else {
            vec![
                (":method".into(), "POST".into()),
                (":scheme".into(), "http".into()),
                (":path".into(), path(flow, i)),
                (":authority".into(), "model:50051".into()),
            ]
        };
        if self.grpc && !response {
            fields.push(("content-type".into(), "application/grpc".into()));
        }
        let msg = if response {
            &self.response
        } else {
            &self.request
        };
        fields.extend(msg.extra.iter().cloned());
        fields
    }

    /// The frames of `unit`.
    fn write(
        &self,
        w: &mut H2Writer,
        flow: usize,
        i: usize,
        response: bool,
        unit: &Unit,
    ) -> Vec<u8> {
        let id = 2 * i as u32 + 1;
        let msg = if response {
            &self.response
        } else {
            &self.request
        };
        let has_data = !msg.body.is_empty();
        let block = |w: &mut H2Writer, fields: &[(String, String)], size_update: Option<usize>| {
            let mut block = Vec::new();
            if let Some(size) = size_update {
                w.encoder.size_update(size, &mut block);
            }
            for (n, v) in fields {
                w.encoder
                    .field(n.as_bytes(), v.as_bytes(), msg.style, &mut block);
            }
            block
        };
        match unit {
            Unit::Interim => {
                let b = block(w, &[(":status".into(), "100".into())], None);
                w.header_block(id, &b, false, Framing::default())
            }
            Unit::Head => {
                let b = block(w, &self.head(flow, i, response), msg.size_update);
                let end = !has_data && msg.trailers.is_none();
                w.header_block(id, &b, end, msg.framing)
            }
            Unit::Data(k) => {
                let chunk = &msg.body[k * msg.chunk..((k + 1) * msg.chunk).min(msg.body.len())];
                let last = (k + 1) * msg.chunk >= msg.body.len();
                w.data(id, chunk, last && msg.trailers.is_none(), msg.framing)
            }
            Unit::Trailers => {
                let (n, v) = msg.trailers.clone().unwrap_or_default();
                let b = block(w, &[(n, v)], None);
                w.header_block(id, &b, true, msg.framing)
            }
        }
    }

    /// What the exchange must hold: target, request headers, body, trailers, status,
    /// response headers, body, trailers, protocol.
    fn expected(&self, flow: usize, i: usize) -> Expected {
        let regular = |fields: Vec<(String, String)>| -> Vec<(String, Vec<u8>)> {
            fields
                .into_iter()
                .filter(|(n, _)| !n.starts_with(':'))
                .map(|(n, v)| (n, v.into_bytes()))
                .collect()
        };
        let trailers = |m: &GenMessage| {
            m.trailers
                .iter()
                .map(|(n, v)| (n.clone(), v.clone().into_bytes()))
                .collect::<Vec<_>>()
        };
        (
            path(flow, i),
            regular(self.head(flow, i, false)),
            self.request.body.clone(),
            trailers(&self.request),
            self.status,
            regular(self.head(flow, i, true)),
            self.response.body.clone(),
            trailers(&self.response),
            if self.grpc {
                Protocol::Grpc
            } else {
                Protocol::H2
            },
        )
    }
}

type Expected = (
    String,
    Vec<(String, Vec<u8>)>,
    Vec<u8>,
    Vec<(String, Vec<u8>)>,
    u16,
    Vec<(String, Vec<u8>)>,
    Vec<u8>,
    Vec<(String, Vec<u8>)>,
    Protocol,
);

fn fields(headers: &[Header]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|h| (h.name.clone(), h.value.to_vec()))
        .collect()
}

fn observed(e: &Exchange) -> Expected {
    let req = e.request.as_ref().expect("request");
    let resp = e.prod_response.as_ref().expect("response");
    (
        req.target.clone(),
        fields(&req.headers),
        req.body.to_vec(),
        fields(&req.trailers),
        resp.status,
        fields(&resp.headers),
        resp.body.to_vec(),
        fields(&resp.trailers),
        e.protocol,
    )
}

/// One direction's bytes: the streams' units interleaved as `picks` says, each stream's
/// first unit (its HEADERS on the request side) in stream order.
fn direction(streams: &[GenStream], flow: usize, response: bool, picks: &[u8]) -> Vec<u8> {
    let mut w = H2Writer::default();
    let mut queues: Vec<(usize, Vec<Unit>)> = streams
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let msg = if response { &s.response } else { &s.request };
            let mut u = units(msg, response, s.interim);
            u.reverse();
            (i, u)
        })
        .collect();
    let mut out = Vec::new();
    let mut started = 0;
    let mut k = 0;
    loop {
        let active: Vec<usize> = (0..queues.len())
            .filter(|&q| !queues[q].1.is_empty() && q <= started)
            .collect();
        let Some(&q) = active.get(picks[k % picks.len()] as usize % active.len().max(1)) else {
            break;
        };
        k += 1;
        if q == started {
            started += 1;
        }
        let (i, queue) = &mut queues[q];
        if let Some(unit) = queue.pop() {
            out.extend(streams[*i].write(&mut w, flow, *i, response, &unit));
        }
        if k % 3 == 0 {
            out.extend(h2::window_update(0, 1024));
        }
    }
    out
}

fn build(flows: &[(Vec<GenStream>, Vec<u8>, usize)]) -> Vec<Vec<Segment>> {
    flows
        .iter()
        .enumerate()
        .map(|(f, (streams, picks, mss))| {
            let mut c = Conn::new(&format!("10.1.0.{}:{}", f + 1, 40000 + f), "10.0.0.2:50051")
                .mss(*mss)
                .isn(u32::MAX - 500 * f as u32, 11 + 1000 * f as u32);
            c.handshake();
            c.request(&h2::client_preface());
            let mut server = h2::settings(&[(0x3, 100)]);
            server.extend(h2::settings_ack());
            c.response(&server);
            c.request(&h2::settings_ack());
            c.request(&direction(streams, f, false, picks));
            c.response(&direction(streams, f, true, picks));
            c.close();
            c.into_segments()
        })
        .collect()
}

/// Exchanges keyed by target, sorted.
fn by_target(x: Vec<Exchange>) -> Vec<(String, Exchange)> {
    let mut v: Vec<_> = x
        .into_iter()
        .map(|e| {
            (
                e.request
                    .as_ref()
                    .map(|r| r.target.clone())
                    .unwrap_or_default(),
                e,
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn reordered_duplicated_h2_capture_yields_the_same_exchanges(
        flows in prop::collection::vec(
            (prop::collection::vec(gen_stream(), 1..6), prop::collection::vec(any::<u8>(), 1..16), 1usize..300),
            1..3,
        ),
        window in 1usize..8,
        noise in prop::collection::vec((any::<usize>(), prop::bool::weighted(0.2)), 16..64),
    ) {
        let per_conn = build(&flows);
        let in_order = exchanges_from_segments(merge(per_conn.clone()));

        let mut expected: Vec<Expected> = flows
            .iter()
            .enumerate()
            .flat_map(|(f, (streams, _, _))| streams.iter().enumerate().map(move |(i, s)| s.expected(f, i)))
            .collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        for e in &in_order {
            prop_assert_eq!(e.outcome, Outcome::Complete, "{:?}", e);
        }
        let got: Vec<Expected> = by_target(in_order.clone()).iter().map(|(_, e)| observed(e)).collect();
        prop_assert_eq!(got, expected);

        let noisy: Vec<Vec<Segment>> = per_conn.into_iter().map(|s| perturb(s, window, &noise)).collect();
        let perturbed = exchanges_from_segments(merge(noisy));
        prop_assert_eq!(by_target(perturbed), by_target(in_order));
    }
}
