//! Property: any valid exchange sequence, cut into random segments, reordered within a window
//! and with random duplicates, yields exactly the exchanges of the in-order capture, and those
//! are the exchanges that were generated.

use super::*;
use crate::segment::Segment;
use crate::testkit::Conn;
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Gen {
    method: &'static str,
    path: String,
    req_body: Vec<u8>,
    req_chunked: Option<usize>,
    expect_continue: bool,
    status: u16,
    resp_body: Vec<u8>,
    resp_chunked: Option<usize>,
}

fn encode_body(out: &mut Vec<u8>, body: &[u8], chunked: Option<usize>) {
    match chunked {
        Some(size) => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            for chunk in body.chunks(size.max(1)) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
        None => {
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            out.extend_from_slice(body);
        }
    }
}

impl Gen {
    fn request(&self) -> Vec<u8> {
        let mut v =
            format!("{} {} HTTP/1.1\r\nHost: model\r\n", self.method, self.path).into_bytes();
        if self.expect_continue {
            v.extend_from_slice(b"Expect: 100-continue\r\n");
        }
        encode_body(&mut v, &self.req_body, self.req_chunked);
        v
    }

    fn response(&self) -> Vec<u8> {
        let mut v = Vec::new();
        if self.expect_continue {
            v.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        v.extend_from_slice(format!("HTTP/1.1 {} X\r\n", self.status).as_bytes());
        if self.status == 204 {
            v.extend_from_slice(b"\r\n");
        } else if self.method == "HEAD" {
            // Announces a body that a HEAD response never carries.
            v.extend_from_slice(
                format!("Content-Length: {}\r\n\r\n", self.resp_body.len() + 7).as_bytes(),
            );
        } else {
            encode_body(&mut v, &self.resp_body, self.resp_chunked);
        }
        v
    }

    /// What the parser must report.
    fn expected(&self) -> (String, String, Vec<u8>, u16, Vec<u8>) {
        let resp_body = if self.status == 204 || self.method == "HEAD" {
            Vec::new()
        } else {
            self.resp_body.clone()
        };
        (
            self.method.to_string(),
            self.path.clone(),
            self.req_body.clone(),
            self.status,
            resp_body,
        )
    }
}

fn gen_exchange() -> impl Strategy<Value = Gen> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "HEAD"]),
        "[a-z0-9/]{0,12}",
        prop::collection::vec(any::<u8>(), 0..400),
        prop::option::of(1usize..64),
        any::<bool>(),
        prop::sample::select(vec![200u16, 201, 204, 404, 500]),
        prop::collection::vec(any::<u8>(), 0..400),
        prop::option::of(1usize..64),
    )
        .prop_map(
            |(method, path, req_body, req_chunked, expect, status, resp_body, resp_chunked)| {
                let bodyless = method == "GET" || method == "HEAD";
                Gen {
                    method,
                    path: format!("/{path}"),
                    req_body: if bodyless { Vec::new() } else { req_body },
                    req_chunked: if bodyless { None } else { req_chunked },
                    expect_continue: expect && !bodyless,
                    status,
                    resp_body,
                    resp_chunked,
                }
            },
        )
}

/// A flow: groups of exchanges, each group's requests sent back to back (pipelined) before
/// their responses.
fn gen_flow() -> impl Strategy<Value = (Vec<Vec<Gen>>, usize)> {
    (
        prop::collection::vec(prop::collection::vec(gen_exchange(), 1..4), 1..4),
        1usize..300,
    )
}

fn build(flows: &[(Vec<Vec<Gen>>, usize)]) -> Vec<Vec<Segment>> {
    flows
        .iter()
        .enumerate()
        .map(|(i, (groups, mss))| {
            let mut c = Conn::new(&format!("10.1.0.{}:{}", i + 1, 40000 + i), "10.0.0.2:8080")
                .mss(*mss)
                .isn(u32::MAX - 300 * i as u32, 7 + 1000 * i as u32);
            c.handshake();
            for group in groups {
                for g in group {
                    c.request(&g.request());
                }
                for g in group {
                    c.response(&g.response());
                }
            }
            c.close();
            c.into_segments()
        })
        .collect()
}

/// Swaps each segment after the handshake with one up to `window` later and inserts
/// duplicates a few positions later, driven by `noise`.
pub(crate) fn perturb(
    mut segs: Vec<Segment>,
    window: usize,
    noise: &[(usize, bool)],
) -> Vec<Segment> {
    let n = segs.len();
    for i in 3..n {
        let (r, _) = noise[i % noise.len()];
        let j = (i + r % window).min(n - 1);
        segs.swap(i, j);
    }
    let mut out = Vec::with_capacity(n * 2);
    let mut dups: Vec<(usize, Segment)> = Vec::new();
    for (i, s) in segs.into_iter().enumerate() {
        let (r, dup) = noise[(i * 7 + 1) % noise.len()];
        if i >= 3 && dup {
            dups.push((i + r % window, s.clone()));
        }
        out.push(s);
        dups.retain(|(at, d)| {
            if *at <= i {
                out.push(d.clone());
                false
            } else {
                true
            }
        });
    }
    out.extend(dups.into_iter().map(|(_, d)| d));
    out
}

/// Round-robin merge keeping each segment's capture time (so that a segment keeps its time
/// wherever the perturbation moved it).
pub(crate) fn merge(conns: Vec<Vec<Segment>>) -> Vec<Segment> {
    let mut iters: Vec<_> = conns.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::new();
    loop {
        let before = out.len();
        out.extend(iters.iter_mut().filter_map(Iterator::next));
        if out.len() == before {
            return out;
        }
    }
}

/// Exchanges grouped per flow, in emission order within each flow.
fn per_flow(x: Vec<Exchange>) -> Vec<Vec<Exchange>> {
    let mut flows: Vec<Vec<Exchange>> = Vec::new();
    for e in x {
        match flows.iter_mut().find(|f| f[0].flow == e.flow) {
            Some(f) => f.push(e),
            None => flows.push(vec![e]),
        }
    }
    flows.sort_by_key(|f| f[0].flow);
    flows
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn reordered_duplicated_capture_yields_the_same_exchanges(
        flows in prop::collection::vec(gen_flow(), 1..4),
        window in 1usize..8,
        noise in prop::collection::vec((any::<usize>(), prop::bool::weighted(0.2)), 16..64),
    ) {
        let per_conn = build(&flows);
        let in_order = exchanges_from_segments(merge(per_conn.clone()));

        // The in-order capture yields what was generated.
        let expected: Vec<_> = flows.iter().flat_map(|(groups, _)| groups.iter().flatten().map(Gen::expected)).collect();
        let mut got = Vec::new();
        for f in per_flow(in_order.clone()) {
            for e in f {
                prop_assert_eq!(e.outcome, Outcome::Complete);
                let req = e.request.as_ref().unwrap();
                let resp = e.prod_response.as_ref().unwrap();
                got.push((req.method.clone(), req.target.clone(), req.body.to_vec(), resp.status, resp.body.to_vec()));
            }
        }
        let mut expected_sorted = expected.clone();
        let mut got_sorted = got.clone();
        expected_sorted.sort();
        got_sorted.sort();
        prop_assert_eq!(got_sorted, expected_sorted);

        // Reordered and duplicated: exactly the same exchanges, timing included.
        let noisy: Vec<Vec<Segment>> = per_conn.into_iter().map(|s| perturb(s, window, &noise)).collect();
        let perturbed = exchanges_from_segments(merge(noisy));
        prop_assert_eq!(per_flow(perturbed), per_flow(in_order));
    }
}
