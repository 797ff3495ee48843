//! What real model servers do that the plain test servers do not, end to end with the real eBPF
//! tap (`shadowd run` on `lo` of a throw-away namespace, production on 8080, shadow on 8081):
//!
//! - they compress answers the client accepts (gzip, deflate, br, zstd; chunked too), each
//!   server in its own way: agreement must be exactly that of the uncompressed run;
//! - the shadow is served under its own model name: with `--shadow-model` the agreement is
//!   exact, without it every replay is a 404, said in a warning and counted in
//!   `shadowtap_shadow_http_errors_total{status="404"}`;
//! - every answer carries a fresh `id` and its server's `model_name` (as MLServer's do): no
//!   discrepancy with the kserve-v2 preset's defaults, a `body` discrepancy per answer without.
//!
//! The servers here answer Open Inference Protocol requests with `[R, 1]` INT64 labels; the
//! truth comes from the test's plan (the shadow disagrees on ids divisible by 7), never from
//! the code under test. Needs root; skipped (with a message) otherwise.

use serde_json::{Value, json};
use shadow_core::vocabulary::{DiscrepancyKind, MirrorResult, Outcome};
use shadowtap_test_support::accept::spawn_accept_loop;
use shadowtap_test_support::http::{Message, read_message};
use shadowtap_tests::admin::{
    self, accounted, discrepancies, exchanges, labelled, mirrored, sum_of,
};
use shadowtap_tests::netns::NetNs;
use shadowtap_tests::require_root;
use shadowtap_tests::shadowd::Daemon;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const PROD: SocketAddr = local(8080);
const SHADOW: SocketAddr = local(8081);
const ADMIN: SocketAddr = local(9464);
/// Rows per request: answers of a few hundred bytes, as a batch client sends.
const ROWS: u64 = 24;
/// Requests of every run: ids 1..=N on four keep-alive connections.
const N: u64 = 42;
/// `Accept-Encoding` of a client that takes compressed answers (`requests` sends the first
/// three).
const ACCEPT_ALL: &str = "gzip, deflate, br, zstd";

const fn local(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// Whether the shadow predicts differently from production for request `id` (row 0).
fn disagrees(id: u64) -> bool {
    id.is_multiple_of(7)
}

/// The labels a model predicts for request `id`.
fn labels(production: bool, id: u64) -> Vec<u64> {
    (0..ROWS)
        .map(|row| {
            let label = (id + row) % 3;
            if !production && row == 0 && disagrees(id) {
                (label + 1) % 3
            } else {
                label
            }
        })
        .collect()
}

/// An Open Inference Protocol request without an `id` (the server then makes one up); the
/// request's number is the first input value.
fn request_body(id: u64) -> Vec<u8> {
    let data: Vec<f64> = (0..ROWS * 3)
        .map(|i| {
            if i == 0 {
                id as f64
            } else {
                (i % 5) as f64 * 0.5
            }
        })
        .collect();
    json!({"inputs": [{"name": "x", "datatype": "FP64", "shape": [ROWS, 3], "data": data}]})
        .to_string()
        .into_bytes()
}

/// The request number of a request body.
fn id_of(body: &[u8]) -> Option<u64> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v["inputs"][0]["data"][0].as_f64().map(|x| x as u64)
}

/// How a server codes its answers: which coding it prefers for request `id` (if the client
/// accepts it) and whether it sends the answer chunked.
#[derive(Clone, Copy)]
struct Habits {
    /// Offset into [`CODINGS`]: production and shadow prefer different codings for one id.
    offset: u64,
    /// Answers to ids divisible by this are chunked.
    chunk_every: u64,
}

const CODINGS: [&str; 5] = ["gzip", "br", "zstd", "deflate", "identity"];

impl Habits {
    fn coding(self, id: u64, accepted: Option<&str>) -> &'static str {
        let preferred = CODINGS[((id + self.offset) % CODINGS.len() as u64) as usize];
        let accepts = accepted.is_some_and(|a| a.split(',').any(|c| c.trim() == preferred));
        if accepts { preferred } else { "identity" }
    }
}

fn encode(coding: &str, body: &[u8]) -> Vec<u8> {
    match coding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(body).expect("gzip");
            e.finish().expect("gzip")
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(body).expect("deflate");
            e.finish().expect("deflate")
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                w.write_all(body).expect("br");
            }
            out
        }
        "zstd" => {
            ruzstd::encoding::compress_to_vec(body, ruzstd::encoding::CompressionLevel::Fastest)
        }
        _ => body.to_vec(),
    }
}

/// The client's side: an answer body with its `Content-Encoding` undone (independent
/// decoders, not shadowtap's).
fn decode(coding: Option<&str>, body: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    match coding.unwrap_or("identity") {
        "gzip" => flate2::read::GzDecoder::new(body).read_to_end(&mut out)?,
        "deflate" => flate2::read::ZlibDecoder::new(body).read_to_end(&mut out)?,
        "br" => brotli::Decompressor::new(body, 4096).read_to_end(&mut out)?,
        "zstd" => ruzstd::decoding::StreamingDecoder::new(body)
            .map_err(io::Error::other)?
            .read_to_end(&mut out)?,
        "identity" => {
            out.extend_from_slice(body);
            out.len()
        }
        other => return Err(io::Error::other(format!("unexpected coding {other}"))),
    };
    Ok(out)
}

/// An Open Inference Protocol model server (MLServer's answer shape) serving one model name;
/// any other path is a 404 as MLServer answers it. Stopped when dropped.
struct ModelServer {
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    /// Answers sent per coding (and `chunked`).
    sent: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

/// Makes every answer's `id` fresh: never the same twice, on either server.
static FRESH: AtomicU64 = AtomicU64::new(1);

impl ModelServer {
    fn start(listener: TcpListener, production: bool, name: &'static str, habits: Habits) -> Self {
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(BTreeMap::new()));
        let counts = Arc::clone(&sent);
        let what = if production { "production" } else { "shadow" };
        let accept = spawn_accept_loop(listener, Arc::clone(&stop), what, move |stream| {
            serve(stream, production, name, habits, &counts)
        });
        ModelServer {
            stop,
            accept: Some(accept),
            sent,
        }
    }

    fn sent(&self, what: &str) -> u64 {
        let sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.get(what).copied().unwrap_or(0)
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn serve(
    mut stream: TcpStream,
    production: bool,
    name: &str,
    habits: Habits,
    sent: &Mutex<BTreeMap<&'static str, u64>>,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(shadowtap_tests::IO_TIMEOUT))?;
    let mut buf = Vec::new();
    while let Some(request) = read_message(&mut stream, &mut buf)? {
        let target = request.start_line.split(' ').nth(1).unwrap_or_default();
        let id = id_of(&request.body);
        let (status, body, coding, chunked) = match id {
            Some(id) if target == format!("/v2/models/{name}/infer") => {
                let fresh = FRESH.fetch_add(1, Ordering::Relaxed);
                let answer = json!({
                    "model_name": name,
                    "model_version": if production { "1" } else { "2" },
                    "id": format!("{fresh:08x}-4a1e-4e7b-9c1d-{:012x}", fresh * 7919),
                    "parameters": {},
                    "outputs": [{"name": "predict", "shape": [ROWS, 1], "datatype": "INT64",
                                 "parameters": {"content_type": "np"}, "data": labels(production, id)}]
                });
                let coding = habits.coding(id, request.header("accept-encoding"));
                let chunked = id.is_multiple_of(habits.chunk_every);
                (
                    "200 OK",
                    encode(coding, answer.to_string().as_bytes()),
                    coding,
                    chunked,
                )
            }
            _ => (
                "404 Not Found",
                format!("{{\"error\":\"Model {target} not found\"}}").into_bytes(),
                "identity",
                false,
            ),
        };
        {
            let mut sent = sent.lock().unwrap_or_else(|e| e.into_inner());
            *sent.entry(coding).or_default() += 1;
            if chunked {
                *sent.entry("chunked").or_default() += 1;
            }
        }
        let mut out = format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\n");
        if coding != "identity" {
            out.push_str(&format!(
                "content-encoding: {coding}\r\nvary: Accept-Encoding\r\n"
            ));
        }
        let mut out = out.into_bytes();
        if chunked {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
            let (a, b) = body.split_at(body.len() / 2);
            for part in [a, b] {
                out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                out.extend_from_slice(part);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        } else {
            out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
            out.extend_from_slice(&body);
        }
        stream.write_all(&out)?;
    }
    Ok(())
}

/// Production's answer as the client checks it: 200, the labels of `id`.
fn check_answer(id: u64, response: &Message) -> io::Result<()> {
    let body = decode(response.header("content-encoding"), &response.body)?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| io::Error::other(format!("request {id}: answer not JSON: {e}")))?;
    let expected: Vec<Value> = labels(true, id).into_iter().map(Value::from).collect();
    if response.status() == Some(200) && v["outputs"][0]["data"] == Value::Array(expected) {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "request {id}: wrong answer `{}` {v}",
            response.start_line
        )))
    }
}

/// Sends `ids` on one keep-alive connection, one at a time, each answer checked.
fn send(mut stream: TcpStream, ids: &[u64], accept: Option<&str>) -> io::Result<usize> {
    stream.set_read_timeout(Some(shadowtap_tests::IO_TIMEOUT))?;
    let mut buf = Vec::new();
    for &id in ids {
        let body = request_body(id);
        let mut head = format!(
            "POST /v2/models/m/infer HTTP/1.1\r\nHost: prod.example:8080\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(accept) = accept {
            head.push_str(&format!("Accept-Encoding: {accept}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&body);
        stream.write_all(&out)?;
        let response = read_message(&mut stream, &mut buf)?
            .ok_or_else(|| io::Error::other(format!("request {id}: connection closed")))?;
        check_answer(id, &response)?;
    }
    shadowtap_tests::close_after_last_response(&mut stream, &buf)?;
    Ok(ids.len())
}

/// Production (model `m`), a shadow serving `shadow_name`, and `shadowd run <extra>` tapping
/// `lo`, healthy.
struct Setup {
    ns: NetNs,
    prod: ModelServer,
    shadow: ModelServer,
    daemon: Daemon,
}

fn start(tag: &str, shadow_name: &'static str, extra: &[&str]) -> Setup {
    let ns = NetNs::new(tag).expect("netns");
    let prod = ModelServer::start(
        ns.run(|| TcpListener::bind(PROD)).expect("bind production"),
        true,
        "m",
        Habits {
            offset: 0,
            chunk_every: 3,
        },
    );
    let shadow = ModelServer::start(
        ns.run(|| TcpListener::bind(SHADOW)).expect("bind shadow"),
        false,
        shadow_name,
        Habits {
            offset: 2,
            chunk_every: 4,
        },
    );
    let daemon = admin::run_daemon(&ns, PROD, SHADOW, ADMIN, extra);
    Setup {
        ns,
        prod,
        shadow,
        daemon,
    }
}

/// What a run's numbers say, for comparing runs.
#[derive(Debug, PartialEq)]
struct Verdict {
    compared: u64,
    agreed: u64,
    label: f64,
    body: f64,
    missing_prediction: f64,
    decode_failures: f64,
    shadow_http_errors: f64,
}

impl Setup {
    /// Drives ids 1..=N on four connections (asking for `accept`), waits until every request
    /// is accounted for, and returns the numbers and the final scrape.
    fn run(&mut self, accept: Option<&str>) -> (Verdict, String) {
        let ids: Vec<u64> = (1..=N).collect();
        let answered: usize = std::thread::scope(|scope| {
            let clients: Vec<_> = ids
                .chunks(ids.len().div_ceil(4))
                .map(|chunk| {
                    let stream = self.ns.run(|| TcpStream::connect(PROD)).expect("connect");
                    scope.spawn(move || send(stream, chunk, accept))
                })
                .collect();
            clients
                .into_iter()
                .map(|c| c.join().expect("client").expect("production answers"))
                .sum()
        });
        assert_eq!(answered as u64, N, "production answered every request");
        let n = N as f64;
        let text = admin::wait_metrics(
            &self.ns,
            &mut self.daemon,
            ADMIN,
            "every request accounted",
            |t| accounted(t) >= n,
        );
        assert_eq!(accounted(&text), n, "{text}");
        assert_eq!(exchanges(&text, Outcome::Complete), n, "{text}");
        assert_eq!(mirrored(&text, MirrorResult::Ok), n, "{text}");
        let (status, summary) = admin::get(&self.ns, ADMIN, "/api/summary").expect("summary");
        assert_eq!(status, 200);
        let summary: Value = serde_json::from_str(&summary).expect("summary JSON");
        let verdict = Verdict {
            compared: summary["compared"].as_u64().unwrap_or(0),
            agreed: summary["agreement"]["request"]["agreed"]
                .as_u64()
                .unwrap_or(0),
            label: discrepancies(&text, DiscrepancyKind::Label),
            body: discrepancies(&text, DiscrepancyKind::Body),
            missing_prediction: discrepancies(&text, DiscrepancyKind::MissingPrediction),
            decode_failures: sum_of(&text, "shadowtap_body_decode_failures_total"),
            shadow_http_errors: sum_of(&text, "shadowtap_shadow_http_errors_total"),
        };
        (verdict, text)
    }

    fn stop(&mut self) {
        let status = self.daemon.stop(Duration::from_secs(30)).expect("stop");
        assert!(status.success(), "{status}:\n{}", self.daemon.output());
    }
}

/// What the plan says: every request compared, all agree but the ids divisible by 7, whose
/// labels differ; nothing else differs.
fn truth() -> Verdict {
    let disagreeing = (1..=N).filter(|&id| disagrees(id)).count() as u64;
    Verdict {
        compared: N,
        agreed: N - disagreeing,
        label: disagreeing as f64,
        body: 0.0,
        missing_prediction: 0.0,
        decode_failures: 0.0,
        shadow_http_errors: 0.0,
    }
}

/// Compressed answers (gzip, deflate, br, zstd, some chunked; production and shadow choosing
/// differently for one request) give exactly the agreement of the uncompressed run.
#[test]
fn compressed_answers_agree_exactly_as_uncompressed_ones() {
    if !require_root("compressed_answers_agree_exactly_as_uncompressed_ones") {
        return;
    }
    let mut plain = start("cep", "m", &[]);
    let (uncompressed, _) = plain.run(None);
    assert_eq!(plain.prod.sent("identity"), N);
    assert_eq!(plain.shadow.sent("identity"), N);
    plain.stop();

    let mut coded = start("cec", "m", &[]);
    let (compressed, text) = coded.run(Some(ACCEPT_ALL));
    // Both servers really compressed, in every coding, chunked too (the shadow because the
    // client's Accept-Encoding was forwarded).
    for server in [&coded.prod, &coded.shadow] {
        for coding in ["gzip", "deflate", "br", "zstd", "chunked"] {
            assert!(
                server.sent(coding) >= 4,
                "{coding}: {}",
                server.sent(coding)
            );
        }
    }
    println!("uncompressed {uncompressed:?}\ncompressed {compressed:?}");
    assert_eq!(compressed, uncompressed, "{text}");
    assert_eq!(compressed, truth(), "{text}");
    coded.stop();

    // Asking the shadow for identity answers changes nothing but the shadow's codings.
    let mut identity = start("cei", "m", &["--accept-encoding", "identity"]);
    let (verdict, text) = identity.run(Some(ACCEPT_ALL));
    assert_eq!(identity.shadow.sent("identity"), N);
    assert!(identity.prod.sent("gzip") > 0);
    assert_eq!(verdict, truth(), "{text}");
    identity.stop();
}

/// A shadow served under its own model name: without a rewrite every replay is a 404, named in
/// one warning and counted by status; with `--shadow-model` the agreement is exact.
#[test]
fn a_shadow_under_another_model_name_needs_the_rewrite_and_says_so() {
    if !require_root("a_shadow_under_another_model_name_needs_the_rewrite_and_says_so") {
        return;
    }
    let mut lost = start("cm4", "m-v2", &[]);
    let (verdict, text) = lost.run(Some(ACCEPT_ALL));
    assert_eq!(lost.shadow.sent("identity"), N, "every replay was a 404");
    assert_eq!(
        labelled(
            &text,
            "shadowtap_shadow_http_errors_total",
            &[("status", "404")]
        ),
        N as f64,
        "{text}"
    );
    assert_eq!(verdict.agreed, 0, "{verdict:?}");
    assert_eq!(verdict.missing_prediction, N as f64, "{verdict:?}");
    let output = lost.daemon.output();
    let warnings: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("404/405"))
        .collect();
    assert_eq!(warnings.len(), 1, "{output}");
    for needle in ["--shadow-model", "/v2/models/m/infer", "check-config"] {
        assert!(warnings[0].contains(needle), "{needle} in {}", warnings[0]);
    }
    lost.stop();

    let mut found = start("cmr", "m-v2", &["--shadow-model", "m-v2"]);
    let (verdict, text) = found.run(Some(ACCEPT_ALL));
    assert_eq!(verdict, truth(), "{text}");
    assert_eq!(
        found.shadow.sent("identity")
            + found.shadow.sent("gzip")
            + found.shadow.sent("br")
            + found.shadow.sent("zstd")
            + found.shadow.sent("deflate"),
        N
    );
    assert!(!found.daemon.output().contains("404/405"));
    found.stop();
}

/// Every answer has a fresh `id`, and the two servers' `model_name` and `model_version`
/// differ: with the kserve-v2 preset's defaults that is no discrepancy; with them turned off
/// every agreeing answer differs in `body` (so the defaults are what hides them).
#[test]
fn fresh_response_ids_are_no_discrepancy_with_the_preset_defaults() {
    if !require_root("fresh_response_ids_are_no_discrepancy_with_the_preset_defaults") {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[compare]\npreset_ignores = false\n").expect("config");
    let config = config.to_str().expect("UTF-8 path");
    let mut off = start("cfo", "m", &["--config", config]);
    let (verdict, text) = off.run(None);
    let t = truth();
    assert_eq!(verdict.body, (N - t.label as u64) as f64, "{text}");
    assert_eq!(verdict.agreed, t.agreed, "labels still agree: {verdict:?}");
    off.stop();

    let mut defaults = start("cfd", "m", &[]);
    let (verdict, text) = defaults.run(None);
    assert_eq!(verdict, t, "{text}");
    defaults.stop();
}
