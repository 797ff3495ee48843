//! End to end over the back half: synthetic exchanges → `Mirror` → a scripted fake shadow on
//! 127.0.0.1:0 → comparison → `/metrics` (scraped over 127.0.0.1 from the admin server), the
//! discrepancy log and the run summary.
//!
//! Expected values come from the test's own script (which requests the shadow disagrees on,
//! how it fails), never from the code under test. Waits are on observed state, bounded in time.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shadow_core::compare::Comparison;
use shadow_core::grpc::GrpcCode;
use shadow_core::http::{
    Exchange, ExchangeTiming, Header, HttpRequest, HttpResponse, Outcome, Protocol,
};
use shadow_core::segment::FlowKey;
use shadow_core::vocabulary::{
    AgreementUnit, DiscrepancyKind, DropStage, ErrorClass, KernelPacketResult, MirrorResult, Model,
    ShadowFailure, SkipReason,
};
use shadow_daemon::config::{Config, Pacing, RawConfig, Setting};
use shadow_daemon::mirror::{Mirror, RunSummary};
use shadow_daemon::shutdown::{self, Shutdown, ShutdownTrigger};
use shadow_daemon::sinks::admin::{AdminState, bind_admin, serve_admin};
use shadow_daemon::sinks::discrepancy_log::DiscrepancyLog;
use shadow_daemon::sinks::metrics::Metrics;
use shadow_daemon::telemetry::{
    BreakerCause, BreakerChange, BreakerState, Event, GrpcStatusLabel, Recorder, ReplayLoad,
    RollbackDone, RollbackFired, RollbackHeld, Telemetry, Warning,
};
use shadowtap_test_support::prom;
use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

// ---------- the fake shadow ----------

/// What the fake shadow does with each request.
#[derive(Clone)]
enum Behaviour {
    /// Answer like production (tiny numeric noise, other model_version), except for these
    /// request ids, where it predicts another class.
    Script { disagree: HashSet<u64> },
    /// 500 with a JSON error body.
    ServerError,
    /// Accept, read the request, never answer.
    Hang,
    /// Answer bytes that are not HTTP, then close.
    Garbage,
    /// `GET /` answers 501 (as the production server of [`root_exchange`] does); inference
    /// requests are answered like production.
    RootNotImplemented,
    /// Hold every request until the gate opens (the test sends `true`), then answer like
    /// production after `delay`.
    Gated {
        open: watch::Receiver<bool>,
        delay: Duration,
    },
}

/// One request as the shadow received it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    target: String,
    headers: BTreeMap<String, String>,
    body_sha256: String,
    /// The request's JSON `id`.
    id: Option<u64>,
    received: Instant,
}

/// Requests the shadow holds (received, not yet answered): now and the most ever.
#[derive(Default)]
struct Holding {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl Holding {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

struct FakeShadow {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    holding: Arc<Holding>,
    /// Read per connection (garbage) and per request (the rest): switchable mid-test.
    behaviour: Arc<Mutex<Behaviour>>,
    task: JoinHandle<()>,
}

impl FakeShadow {
    fn set(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap() = b;
    }
}

impl Drop for FakeShadow {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn probs(class: usize, noise: f64) -> Vec<f64> {
    (0..3)
        .map(|c| if c == class { 0.8 } else { 0.1 } + noise)
        .collect()
}

fn infer_response(id: u64, class: usize, version: &str, noise: f64) -> Value {
    json!({
        "model_name": "m",
        "model_version": version,
        "id": id.to_string(),
        "outputs": [{"name": "probabilities", "shape": [1, 3], "datatype": "FP64",
                     "data": probs(class, noise)}]
    })
}

/// The class production predicts for request `id`.
fn prod_class(id: u64) -> usize {
    (id % 3) as usize
}

async fn start_shadow(behaviour: Behaviour) -> FakeShadow {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let holding = Arc::new(Holding::default());
    let h = holding.clone();
    let behaviour = Arc::new(Mutex::new(behaviour));
    let shared = behaviour.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = s.clone();
            let holding = h.clone();
            let behaviour = shared.clone();
            tokio::spawn(async move {
                let garbage_mode = matches!(*behaviour.lock().unwrap(), Behaviour::Garbage);
                if garbage_mode {
                    garbage(stream).await;
                    return;
                }
                let service = service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    let holding = holding.clone();
                    let behaviour = behaviour.lock().unwrap().clone();
                    async move {
                        holding.enter();
                        let response = answer(req, &seen, &behaviour).await;
                        holding.leave();
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    FakeShadow {
        addr,
        seen,
        holding,
        behaviour,
        task,
    }
}

async fn answer(
    req: Request<Incoming>,
    seen: &Mutex<Vec<Seen>>,
    behaviour: &Behaviour,
) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let target = req.uri().to_string();
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_str()?.parse().ok());
    seen.lock().unwrap().push(Seen {
        method,
        target,
        headers,
        body_sha256: sha256_hex(&body),
        id,
        received: Instant::now(),
    });
    match behaviour {
        Behaviour::Gated { open, delay } => {
            let mut open = open.clone();
            open.wait_for(|o| *o).await.unwrap();
            tokio::time::sleep(*delay).await;
            let id = id.unwrap();
            let out = infer_response(id, prod_class(id), "v2", 0.0);
            Response::new(Full::new(Bytes::from(out.to_string())))
        }
        Behaviour::Script { disagree } => {
            let v: Value = serde_json::from_slice(&body).unwrap();
            let id: u64 = v["id"].as_str().unwrap().parse().unwrap();
            let class = if disagree.contains(&id) {
                (prod_class(id) + 1) % 3
            } else {
                prod_class(id)
            };
            // Noise well inside the default 1e-6 tolerance; model_version is an ignored path.
            let out = infer_response(id, class, "v2", 1e-9);
            Response::new(Full::new(Bytes::from(out.to_string())))
        }
        Behaviour::ServerError => Response::builder()
            .status(500)
            .body(Full::new(Bytes::from_static(b"{\"error\":\"boom\"}")))
            .unwrap(),
        Behaviour::Hang => {
            // Longer than any test; the server task is aborted when the test ends.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Response::new(Full::new(Bytes::new()))
        }
        Behaviour::RootNotImplemented if body.is_empty() => Response::builder()
            .status(501)
            .body(Full::new(Bytes::from_static(b"Not Implemented")))
            .unwrap(),
        Behaviour::RootNotImplemented => {
            let id = id.unwrap();
            let out = infer_response(id, prod_class(id), "v2", 0.0);
            Response::new(Full::new(Bytes::from(out.to_string())))
        }
        Behaviour::Garbage => unreachable!("handled on the raw socket"),
    }
}

async fn garbage(mut stream: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < buf.len() {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream
        .write_all(b"\x00\x01 SURPRISE not http at all\r\n\r\n")
        .await;
    let _ = stream.shutdown().await;
}

// ---------- synthetic exchanges ----------

fn request_body(id: u64) -> String {
    json!({"id": id.to_string(),
           "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [id as f64, 1.5, -2.0]}]})
    .to_string()
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: Bytes::from(value.to_string()),
    }
}

fn exchange(id: u64, method: &str, outcome: Outcome) -> Exchange {
    let body = request_body(id);
    Exchange {
        protocol: shadow_core::http::Protocol::Http1,
        flow: FlowKey {
            client: SocketAddr::from(([127, 0, 0, 1], 40_000 + id as u16)),
            server: SocketAddr::from(([127, 0, 0, 1], 8080)),
        },
        request: Some(HttpRequest {
            trailers: Vec::new(),
            method: method.into(),
            target: "/v2/models/m/infer".into(),
            version: 1,
            headers: vec![
                header("Host", "prod.example:8080"),
                header("Content-Type", "application/json"),
                header("Content-Length", &body.len().to_string()),
                header("Authorization", "Bearer prod-secret"),
                header("Keep-Alive", "timeout=5"),
                header("X-Request-Id", &id.to_string()),
            ],
            body: Bytes::from(body),
        }),
        prod_response: Some(HttpResponse {
            trailers: Vec::new(),
            status: 200,
            version: 1,
            headers: vec![header("Content-Type", "application/json")],
            body: Bytes::from(infer_response(id, prod_class(id), "v1", 0.0).to_string()),
        }),
        timing: ExchangeTiming {
            request_first_byte: 1_000_000_000,
            request_last_byte: 1_000_000_000,
            response_first_byte: Some(1_004_000_000),
            response_last_byte: Some(1_005_000_000),
        },
        outcome,
    }
}

/// Stray traffic production fails: `GET /` (client port `40_000 + id`) answered 501.
fn root_exchange(id: u64) -> Exchange {
    let mut ex = exchange(id, "GET", Outcome::Complete);
    let request = ex.request.as_mut().unwrap();
    request.target = "/".into();
    request.headers = vec![header("Host", "prod.example:8080")];
    request.body = Bytes::new();
    let response = ex.prod_response.as_mut().unwrap();
    response.status = 501;
    response.headers = vec![header("Content-Length", "15")];
    response.body = Bytes::from_static(b"Not Implemented");
    ex
}

/// Exchange `id` as production served it: its request started on the wire `start_ms` after an
/// arbitrary origin and its response ended `took_ms` later.
fn timed_exchange(id: u64, start_ms: u64, took_ms: u64) -> Exchange {
    let mut ex = exchange(id, "POST", Outcome::Complete);
    let ms = 1_000_000;
    let start = 1_700_000_000_000_000_000 + start_ms * ms;
    ex.timing = ExchangeTiming {
        request_first_byte: start,
        request_last_byte: start,
        response_first_byte: Some(start + took_ms * ms),
        response_last_byte: Some(start + took_ms * ms),
    };
    ex
}

// ---------- harness ----------

fn config(shadow: SocketAddr, log: Option<&Path>) -> Config {
    let mut raw = RawConfig::default();
    raw.capture.interface = Setting::builtin("lo".into());
    raw.capture.ports = Setting::builtin_list([8080]);
    raw.shadow.url = Some(Setting::builtin(format!("http://{shadow}")));
    raw.admin.addr = Setting::builtin(SocketAddr::from(([127, 0, 0, 1], 0)));
    raw.compare.ignore_paths = Setting::builtin_list(["/model_version".to_string()]);
    raw.discrepancy_log.path = log.map(|p| Setting::builtin(p.to_path_buf()));
    // Request bodies are logged only when asked for (the tests read their ids from them).
    raw.discrepancy_log.body_max_bytes = Setting::builtin(4096);
    Config::try_from(raw).expect("test config is valid")
}

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("not zero")
}

struct Running {
    feed: mpsc::Sender<Exchange>,
    run: JoinHandle<RunSummary>,
    metrics: Metrics,
    /// Every event the metrics saw, too (warnings are only logged by the metrics).
    events: Arc<Recorder>,
    admin: SocketAddr,
    trigger: ShutdownTrigger,
    _admin_task: JoinHandle<()>,
}

/// Telemetry to the metrics and a recorder.
struct Tee(Metrics, Arc<Recorder>);

impl Telemetry for Tee {
    fn segments_captured(&self, n: u64) {
        self.0.segments_captured(n);
        self.1.segments_captured(n);
    }
    fn dropped(&self, stage: DropStage, n: u64) {
        self.0.dropped(stage, n);
        self.1.dropped(stage, n);
    }
    fn h2_streams_lost(&self, reason: shadow_core::vocabulary::StreamLoss, n: u64) {
        self.0.h2_streams_lost(reason, n);
        self.1.h2_streams_lost(reason, n);
    }
    fn kernel_packets(&self, result: KernelPacketResult, n: u64) {
        self.0.kernel_packets(result, n);
        self.1.kernel_packets(result, n);
    }
    fn tap_attached(&self, attached: bool) {
        self.0.tap_attached(attached);
        self.1.tap_attached(attached);
    }
    fn reassembly_load(&self, flows: u64, bytes: u64) {
        self.0.reassembly_load(flows, bytes);
        self.1.reassembly_load(flows, bytes);
    }
    fn memory(&self, stage: shadow_core::vocabulary::MemoryStage, bytes: u64) {
        self.0.memory(stage, bytes);
        self.1.memory(stage, bytes);
    }
    fn exchange_seen(&self, protocol: Protocol, outcome: Outcome) {
        self.0.exchange_seen(protocol, outcome);
        self.1.exchange_seen(protocol, outcome);
    }
    fn production_answered(&self, latency_ns: Option<u64>, error: Option<ErrorClass>) {
        self.0.production_answered(latency_ns, error);
        self.1.production_answered(latency_ns, error);
    }
    fn skipped(&self, reason: SkipReason) {
        self.0.skipped(reason);
        self.1.skipped(reason);
    }
    fn breaker_changed(&self, change: &BreakerChange) {
        self.0.breaker_changed(change);
        self.1.breaker_changed(change);
    }
    fn breaker_outcome(&self, counted_as: shadow_core::vocabulary::BreakerOutcome) {
        self.0.breaker_outcome(counted_as);
        self.1.breaker_outcome(counted_as);
    }
    fn replay_load(&self, load: ReplayLoad) {
        self.0.replay_load(load);
        self.1.replay_load(load);
    }
    fn queue_waited(&self, wait: Duration) {
        self.0.queue_waited(wait);
        self.1.queue_waited(wait);
    }
    fn replayed(&self, protocol: Protocol, result: MirrorResult) {
        self.0.replayed(protocol, result);
        self.1.replayed(protocol, result);
    }
    fn shadow_http_error(&self, status: u16) {
        self.0.shadow_http_error(status);
        self.1.shadow_http_error(status);
    }
    fn compared(&self, protocol: Protocol, comparison: &Comparison) {
        self.0.compared(protocol, comparison);
        self.1.compared(protocol, comparison);
    }
    fn grpc_status(&self, model: Model, code: GrpcStatusLabel) {
        self.0.grpc_status(model, code);
        self.1.grpc_status(model, code);
    }
    fn baseline_replayed(&self, result: MirrorResult) {
        self.0.baseline_replayed(result);
        self.1.baseline_replayed(result);
    }
    fn noise_discrepancy(&self, kind: DiscrepancyKind) {
        self.0.noise_discrepancy(kind);
        self.1.noise_discrepancy(kind);
    }
    fn agreement(&self, unit: AgreementUnit, ratio: f64) {
        self.0.agreement(unit, ratio);
        self.1.agreement(unit, ratio);
    }
    fn warning(&self, warning: &Warning) {
        self.0.warning(warning);
        self.1.warning(warning);
    }
    fn rollback_fired(&self, fired: &RollbackFired) {
        self.0.rollback_fired(fired);
        self.1.rollback_fired(fired);
    }
    fn rollback_action(&self, done: &RollbackDone) {
        self.0.rollback_action(done);
        self.1.rollback_action(done);
    }
    fn rollback_suppressed(&self, held: &RollbackHeld) {
        self.0.rollback_suppressed(held);
        self.1.rollback_suppressed(held);
    }
    fn discrepancy_log_dropped(&self, why: &str) {
        self.0.discrepancy_log_dropped(why);
        self.1.discrepancy_log_dropped(why);
    }
}

/// Wires the mirror to the sinks as `shadowd run` does: metrics as its telemetry, the
/// discrepancy log (when configured) as its discrepancy sink, the admin server reading both.
async fn start(config: Config) -> Running {
    let (trigger, shutdown): (ShutdownTrigger, Shutdown) = shutdown::channel();
    let metrics = Metrics::new();
    let events = Arc::new(Recorder::new());
    let telemetry: Arc<dyn Telemetry> = Arc::new(Tee(metrics.clone(), events.clone()));
    let log = DiscrepancyLog::from_config(&config.discrepancy_log, telemetry.clone()).unwrap();
    let mut mirror = Mirror::new(Arc::new(config), telemetry);
    if let Some(log) = &log {
        mirror = mirror.with_discrepancy_sink(log.writer());
    }
    let listener = bind_admin(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let admin = listener.local_addr().unwrap();
    let admin_task = tokio::spawn(serve_admin(
        listener,
        AdminState::new(metrics.clone(), mirror.status()),
        trigger.subscribe(),
    ));
    let (feed, rx) = mpsc::channel(256);
    // The run ends once the log is written out, so tests read it complete.
    let run = tokio::spawn(async move {
        let summary = mirror.run(rx, shutdown).await;
        if let Some(log) = log {
            log.close().await;
        }
        summary
    });
    Running {
        feed,
        run,
        metrics,
        events,
        admin,
        trigger,
        _admin_task: admin_task,
    }
}

/// GET over 127.0.0.1 with a bare HTTP/1.1 client; returns the body.
async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("admin server answers")
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{path}: {text}");
    text.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// Value of one series in Prometheus text (`name{labels}` as rendered), 0 if absent.
fn metric(text: &str, series: &str) -> f64 {
    prom::Metrics::parse(text).value(series)
}

/// Polls `cond` on the rendered metrics every 10 ms for at most 20 s.
async fn wait_for(metrics: &Metrics, what: &str, cond: impl Fn(&str) -> bool) {
    for _ in 0..2000 {
        if cond(&metrics.render()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}:\n{}", metrics.render());
}

/// Waits (bounded) until the shadow has received exactly `n` requests, and checks it stays at
/// `n` meanwhile (no more may be sent).
async fn wait_seen(shadow: &FakeShadow, n: usize) {
    for _ in 0..2000 {
        let seen = shadow.seen.lock().unwrap().len();
        assert!(
            seen <= n,
            "the shadow received {seen} requests, more than {n}"
        );
        if seen == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the shadow never received {n} requests");
}

/// Requests the shadow has received but the mirror has not finished (timeouts counted):
/// read the shadow's count first, so the difference never overstates what is in flight.
fn in_flight(shadow: &FakeShadow, metrics: &Metrics) -> f64 {
    let received = shadow.seen.lock().unwrap().len() as f64;
    let done = metric(
        &metrics.render(),
        "shadowtap_mirrored_requests_total{protocol=\"http1\",result=\"timeout\"}",
    );
    received - done
}

fn handled(text: &str) -> f64 {
    let m = prom::Metrics::parse(text);
    let mirrored: f64 = MirrorResult::ALL
        .iter()
        .map(|r| {
            m.sum(
                "shadowtap_mirrored_requests_total",
                &[("result", r.as_str())],
            )
        })
        .sum();
    let skipped: f64 = SkipReason::ALL
        .iter()
        .map(|r| m.sum("shadowtap_mirror_skipped_total", &[("reason", r.as_str())]))
        .sum();
    mirrored + skipped
}

// ---------- tests ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agreeing_and_disagreeing_shadow_end_to_end() {
    const N: u64 = 20;
    let disagree: HashSet<u64> = [3, 7, 11].into_iter().collect();
    let shadow = start_shadow(Behaviour::Script {
        disagree: disagree.clone(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("discrepancies.jsonl");
    let r = start(config(shadow.addr, Some(&log_path))).await;

    let mut sent_bodies = Vec::new();
    for id in 0..N {
        let ex = exchange(id, "POST", Outcome::Complete);
        sent_bodies.push(sha256_hex(&ex.request.as_ref().unwrap().body));
        r.feed.send(ex).await.unwrap();
    }
    // Not replayed: a DELETE (filtered), a truncated and a gapped exchange.
    r.feed
        .send(exchange(100, "DELETE", Outcome::Complete))
        .await
        .unwrap();
    r.feed
        .send(exchange(101, "POST", Outcome::Truncated))
        .await
        .unwrap();
    r.feed
        .send(exchange(102, "POST", Outcome::Gap))
        .await
        .unwrap();

    // All three are accounted for as skipped, the gap too (as not replayable).
    wait_for(&r.metrics, "every exchange handled", |t| {
        handled(t) == (N + 3) as f64
            && metric(
                t,
                "shadowtap_exchanges_total{protocol=\"http1\",outcome=\"gap\"}",
            ) == 1.0
    })
    .await;
    let text = http_get(r.admin, "/metrics").await;
    drop(r.feed);
    let summary = r.run.await.unwrap();

    // The shadow got exactly the N production bodies, method, target, end-to-end headers.
    let seen = shadow.seen.lock().unwrap().clone();
    let mut got: Vec<String> = seen.iter().map(|s| s.body_sha256.clone()).collect();
    got.sort();
    sent_bodies.sort();
    assert_eq!(got, sent_bodies);
    for s in &seen {
        assert_eq!(s.method, "POST");
        assert_eq!(s.target, "/v2/models/m/infer");
        assert_eq!(s.headers["host"], "prod.example:8080");
        assert_eq!(s.headers["authorization"], "Bearer prod-secret");
        assert_eq!(s.headers["content-type"], "application/json");
        assert!(s.headers.contains_key("x-request-id"));
        assert!(!s.headers.contains_key("keep-alive"), "hop-by-hop dropped");
    }

    let m = |series: &str| metric(&text, series);
    assert_eq!(
        m("shadowtap_exchanges_total{protocol=\"http1\",outcome=\"complete\"}"),
        21.0
    );
    assert_eq!(
        m("shadowtap_exchanges_total{protocol=\"http1\",outcome=\"truncated\"}"),
        1.0
    );
    assert_eq!(
        m("shadowtap_exchanges_total{protocol=\"http1\",outcome=\"gap\"}"),
        1.0
    );
    assert_eq!(
        m("shadowtap_mirrored_requests_total{protocol=\"http1\",result=\"ok\"}"),
        N as f64
    );
    assert_eq!(
        m("shadowtap_mirror_skipped_total{reason=\"filtered\"}"),
        1.0
    );
    assert_eq!(
        m("shadowtap_mirror_skipped_total{reason=\"truncated\"}"),
        1.0
    );
    assert_eq!(m("shadowtap_mirror_skipped_total{reason=\"gap\"}"), 1.0);
    assert_eq!(
        m("shadowtap_mirror_skipped_total{reason=\"queue_full\"}"),
        0.0
    );
    assert_eq!(
        m("shadowtap_discrepancies_total{protocol=\"http1\",kind=\"label\"}"),
        3.0
    );
    assert_eq!(
        m("shadowtap_discrepancies_total{protocol=\"http1\",kind=\"body\"}"),
        0.0
    );
    assert_eq!(
        m("shadowtap_discrepancies_total{protocol=\"http1\",kind=\"status\"}"),
        0.0
    );
    assert_eq!(
        m("shadowtap_agreement_ratio{unit=\"request\"}"),
        17.0 / 20.0
    );
    // One label per request: rows agree as requests do.
    assert_eq!(m("shadowtap_agreement_ratio{unit=\"row\"}"), 17.0 / 20.0);
    // Production latency for every exchange seen with a whole answer, the three skipped ones
    // too; the shadow's for the N it answered.
    assert_eq!(
        m("shadowtap_latency_seconds_count{model=\"production\"}"),
        (N + 3) as f64
    );
    assert_eq!(
        m("shadowtap_latency_seconds_count{model=\"shadow\"}"),
        N as f64
    );
    // Production latency from wire timestamps: 5 ms each.
    assert!((m("shadowtap_latency_seconds_sum{model=\"production\"}") - 0.115).abs() < 1e-9);
    assert_eq!(m("shadowtap_circuit_state"), 0.0);

    assert_eq!(summary.admission.queued, N);
    assert_eq!(summary.replayed, N);
    assert_eq!(summary.evaluation.overall.agreement.request.agreed, 17);
    assert_eq!(summary.evaluation.overall.compared, N);

    // Discrepancy log: one line per disagreeing request, secrets redacted, mode 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&log_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let lines: Vec<Value> = std::fs::read_to_string(&log_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), disagree.len());
    let mut ids = HashSet::new();
    for line in &lines {
        let id: u64 = line["request"]["body"]["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        ids.insert(id);
        assert_eq!(
            line["request"]["body_sha256"],
            sha256_hex(request_body(id).as_bytes())
        );
        assert_eq!(line["request"]["method"], "POST");
        assert_eq!(line["request"]["path"], "/v2/models/m/infer");
        assert_eq!(line["protocol"], "http1");
        let auth = line["request"]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == "Authorization")
            .unwrap();
        assert_eq!(auth[1], "[REDACTED]");
        assert_eq!(line["production"]["status"], 200);
        assert_eq!(line["shadow"]["status"], 200);
        assert_eq!(line["production"]["latency_ms"], 5.0);
        assert!(line["shadow"]["latency_ms"].as_f64().unwrap() > 0.0);
        assert_eq!(
            line["production"]["prediction"]["labels"],
            json!([prod_class(id).to_string()])
        );
        assert_eq!(
            line["shadow"]["prediction"]["labels"],
            json!([((prod_class(id) + 1) % 3).to_string()])
        );
        assert_eq!(line["agreement"], false);
        assert_eq!(line["discrepancies"], json!(["label"]));
        assert!(line["time"].as_str().unwrap().ends_with('Z'));
        // Two of three scores moved beyond tolerance, the ignored model_version is absent.
        let paths: Vec<&str> = line["diff"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["path"].as_str().unwrap())
            .collect();
        assert!(paths.contains(&"/outputs/0/data/0") || paths.contains(&"/outputs/0/data/1"));
        assert!(!paths.contains(&"/model_version"));
    }
    assert_eq!(ids, disagree);
    let _ = r.trigger;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_summary_and_healthz() {
    let shadow = start_shadow(Behaviour::Script {
        disagree: [1].into_iter().collect(),
    })
    .await;
    let r = start(config(shadow.addr, None)).await;
    for id in 0..4 {
        r.feed
            .send(exchange(id, "POST", Outcome::Complete))
            .await
            .unwrap();
    }
    wait_for(&r.metrics, "4 replays", |t| handled(t) == 4.0).await;
    assert_eq!(http_get(r.admin, "/healthz").await, "ok\n");
    let summary: Value = serde_json::from_str(&http_get(r.admin, "/api/summary").await).unwrap();
    assert_eq!(summary["compared"], 4);
    assert_eq!(summary["agreement"]["request"]["agreed"], 3);
    assert_eq!(summary["agreement"]["request"]["ratio"], 0.75);
    assert_eq!(summary["agreement"]["row"]["samples"], 4);
    assert_eq!(summary["replay"]["pacing"], "production");
    assert_eq!(summary["replay"]["queued"], 0);
    for model in ["latency_production", "latency_shadow"] {
        assert_eq!(summary[model]["count"], 4, "{summary}");
        assert!(
            summary[model]["p99_ms"].as_f64().unwrap() > 0.0,
            "{summary}"
        );
    }
    // Production answered in 5 ms (wire timestamps): every quantile says so.
    assert_eq!(summary["latency_production"]["p50_ms"], 5.0);
    assert_eq!(summary["discrepancies"]["label"], 1);
    assert_eq!(summary["circuit_state"], "closed");
    assert_eq!(
        summary["noise"],
        Value::Null,
        "no baseline, no noise summary"
    );
    // Production said class 1 for id 1; the shadow said 2.
    assert_eq!(summary["confusion"]["1"]["2"], 1);
    r.trigger.trigger();
    r.run.await.unwrap();
}

/// Feeds exchanges one at a time, each handled before the next, so breaker decisions are
/// deterministic: with window 10, min_requests 4, ratio 0.5, the first 4 failures open it and
/// the rest are skipped as circuit_open. The mirror keeps running throughout.
async fn failing_shadow(behaviour: Behaviour, timeout_ms: u64) -> (String, FakeShadowStats) {
    let shadow = match behaviour {
        Behaviour::Script { .. } => unreachable!(),
        b => start_shadow(b).await,
    };
    let mut c = config(shadow.addr, None);
    c.shadow.timeout = Duration::from_millis(timeout_ms);
    c.circuit_breaker.window = nz(10);
    c.circuit_breaker.min_requests = nz(4);
    c.circuit_breaker.failure_ratio = 0.5;
    c.circuit_breaker.open_for = Duration::from_millis(600_000);
    let r = start(c).await;
    for id in 0..10u64 {
        r.feed
            .send(exchange(id, "POST", Outcome::Complete))
            .await
            .unwrap();
        wait_for(&r.metrics, "exchange handled", |t| {
            handled(t) == (id + 1) as f64
        })
        .await;
        assert!(!r.run.is_finished(), "the mirror keeps running");
    }
    let text = http_get(r.admin, "/metrics").await;
    drop(r.feed);
    let summary = r.run.await.unwrap();
    assert_eq!(summary.admission.exchanges, 10);
    let stats = FakeShadowStats {
        requests: shadow.seen.lock().unwrap().len(),
    };
    (text, stats)
}

struct FakeShadowStats {
    requests: usize,
}

fn assert_breaker_opened_after_four(text: &str, result: &str) {
    let m = |s: &str| metric(text, s);
    assert_eq!(
        m(&format!(
            "shadowtap_mirrored_requests_total{{protocol=\"http1\",result=\"{result}\"}}"
        )),
        4.0,
        "{text}"
    );
    assert_eq!(
        m("shadowtap_mirror_skipped_total{reason=\"circuit_open\"}"),
        6.0
    );
    assert_eq!(
        m("shadowtap_exchanges_total{protocol=\"http1\",outcome=\"complete\"}"),
        10.0
    );
    assert_eq!(m("shadowtap_circuit_state"), 1.0);
    assert_eq!(
        m("shadowtap_discrepancies_total{protocol=\"http1\",kind=\"label\"}"),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_down_counts_connect_errors_then_opens_the_breaker() {
    // A port nobody listens on: bind, note the port, close.
    let shadow = start_shadow(Behaviour::ServerError).await;
    let addr = shadow.addr;
    drop(shadow);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut c = config(addr, None);
    c.circuit_breaker.window = nz(10);
    c.circuit_breaker.min_requests = nz(4);
    c.circuit_breaker.open_for = Duration::from_millis(600_000);
    let r = start(c).await;
    for id in 0..10u64 {
        r.feed
            .send(exchange(id, "POST", Outcome::Complete))
            .await
            .unwrap();
        wait_for(&r.metrics, "exchange handled", |t| {
            handled(t) == (id + 1) as f64
        })
        .await;
        assert!(!r.run.is_finished());
    }
    let text = http_get(r.admin, "/metrics").await;
    assert_breaker_opened_after_four(&text, "connect_error");
    assert_eq!(
        metric(
            &text,
            "shadowtap_errors_total{class=\"connect\",model=\"shadow\"}"
        ),
        4.0
    );
    drop(r.feed);
    assert_eq!(r.run.await.unwrap().admission.exchanges, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_shadow_counts_timeouts() {
    let (text, stats) = failing_shadow(Behaviour::Hang, 200).await;
    assert_breaker_opened_after_four(&text, "timeout");
    assert_eq!(
        metric(
            &text,
            "shadowtap_errors_total{class=\"timeout\",model=\"shadow\"}"
        ),
        4.0
    );
    assert_eq!(
        stats.requests, 4,
        "the shadow saw only the admitted requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_answers_count_as_protocol_errors() {
    let (text, _) = failing_shadow(Behaviour::Garbage, 2_000).await;
    assert_breaker_opened_after_four(&text, "protocol_error");
    assert_eq!(
        metric(
            &text,
            "shadowtap_errors_total{class=\"protocol\",model=\"shadow\"}"
        ),
        4.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_answers_with_status_discrepancies() {
    let (text, stats) = failing_shadow(Behaviour::ServerError, 2_000).await;
    // A 500 is an answer (result ok) but counts as a shadow failure for the breaker.
    assert_breaker_opened_after_four(&text, "ok");
    assert_eq!(
        metric(
            &text,
            "shadowtap_errors_total{class=\"5xx\",model=\"shadow\"}"
        ),
        4.0
    );
    assert_eq!(
        metric(
            &text,
            "shadowtap_discrepancies_total{protocol=\"http1\",kind=\"status\"}"
        ),
        4.0
    );
    assert_eq!(
        metric(
            &text,
            "shadowtap_discrepancies_total{protocol=\"http1\",kind=\"missing_prediction\"}"
        ),
        4.0
    );
    // Every answer lacked a prediction: agreement is defined and 0 (not absent).
    assert_eq!(
        metric(&text, "shadowtap_agreement_ratio{unit=\"request\"}"),
        0.0
    );
    assert!(
        text.contains("shadowtap_agreement_ratio{unit=\"request\"} 0"),
        "{text}"
    );
    assert_eq!(stats.requests, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_shadow_fills_the_queue_without_blocking_the_feed() {
    // Breaker off, one replay at a time, queue of 2, a shadow that never answers: the feed of
    // 10 exchanges must go through at once, the overflow counted as queue_full.
    let shadow = start_shadow(Behaviour::Hang).await;
    let mut c = config(shadow.addr, None);
    c.circuit_breaker.enabled = false;
    c.shadow.concurrency = nz(1);
    c.shadow.timeout = Duration::from_millis(1_000);
    c.mirror.queue = nz(2);
    let r = start(c).await;
    for id in 0..10u64 {
        r.feed
            .send(exchange(id, "POST", Outcome::Complete))
            .await
            .unwrap();
    }
    wait_for(&r.metrics, "10 exchanges counted", |t| {
        metric(
            t,
            "shadowtap_exchanges_total{protocol=\"http1\",outcome=\"complete\"}",
        ) == 10.0
    })
    .await;
    let text = r.metrics.render();
    let full = metric(
        &text,
        "shadowtap_mirror_skipped_total{reason=\"queue_full\"}",
    );
    // At most 1 in flight + 1 waiting for a permit + 2 queued were accepted.
    assert!((6.0..=8.0).contains(&full), "queue_full = {full}");
    assert!(in_flight(&shadow, &r.metrics) <= 1.0);
    r.trigger.trigger();
    let summary = r.run.await.unwrap();
    assert_eq!(
        summary.admission.queued + summary.admission.skipped["queue_full"],
        10
    );
    assert_eq!(
        summary.replayed + summary.abandoned,
        summary.admission.queued
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_cap_holds_with_a_hanging_shadow() {
    let shadow = start_shadow(Behaviour::Hang).await;
    let mut c = config(shadow.addr, None);
    c.circuit_breaker.enabled = false;
    c.shadow.concurrency = nz(2);
    c.shadow.timeout = Duration::from_millis(150);
    let r = start(c).await;
    for id in 0..6u64 {
        r.feed
            .send(exchange(id, "POST", Outcome::Complete))
            .await
            .unwrap();
    }
    // Until all six time out, the shadow never holds more than two of them at once.
    let mut done = false;
    for _ in 0..2000 {
        let busy = in_flight(&shadow, &r.metrics);
        assert!(busy <= 2.0, "{busy} requests in flight with concurrency 2");
        let t = r.metrics.render();
        if metric(
            &t,
            "shadowtap_mirrored_requests_total{protocol=\"http1\",result=\"timeout\"}",
        ) == 6.0
        {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(done, "six timeouts within the bound");
    assert_eq!(shadow.seen.lock().unwrap().len(), 6);
    drop(r.feed);
    assert_eq!(r.run.await.unwrap().replayed, 6);
}

/// The reported bug: stray traffic that production and the shadow both fail (300 `GET /`,
/// both answering 501) is agreement, compared like any request and never held against the
/// shadow: the breaker (default settings) stays closed and the next inference request is
/// mirrored, not skipped as `circuit_open`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_production_shares_never_open_the_breaker() {
    const STRAY: u64 = 300;
    let shadow = start_shadow(Behaviour::RootNotImplemented).await;
    let mut c = config(shadow.addr, None);
    c.mirror.pacing = Pacing::Asap;
    c.mirror.queue = nz(512);
    let r = start(c).await;
    for id in 0..STRAY {
        r.feed.send(root_exchange(id)).await.unwrap();
    }
    wait_for(&r.metrics, "the stray requests handled", |t| {
        handled(t) == STRAY as f64
    })
    .await;
    r.feed
        .send(exchange(STRAY, "POST", Outcome::Complete))
        .await
        .unwrap();
    wait_for(&r.metrics, "the inference request handled", |t| {
        handled(t) == (STRAY + 1) as f64
    })
    .await;
    let text = http_get(r.admin, "/metrics").await;
    let m = |s: &str| metric(&text, s);
    assert_eq!(
        m("shadowtap_mirrored_requests_total{protocol=\"http1\",result=\"ok\"}"),
        (STRAY + 1) as f64,
        "{text}"
    );
    assert_eq!(
        m("shadowtap_mirror_skipped_total{reason=\"circuit_open\"}"),
        0.0
    );
    assert_eq!(m("shadowtap_circuit_state"), 0.0);
    assert_eq!(
        m("shadowtap_breaker_outcomes_total{counted_as=\"shared_failure\"}"),
        STRAY as f64
    );
    assert_eq!(
        m("shadowtap_breaker_outcomes_total{counted_as=\"success\"}"),
        1.0
    );
    assert_eq!(
        m("shadowtap_breaker_outcomes_total{counted_as=\"failure\"}"),
        0.0
    );
    // Compared: both errors are counted per model, and the statuses agree.
    assert_eq!(
        m("shadowtap_errors_total{class=\"5xx\",model=\"shadow\"}"),
        STRAY as f64
    );
    assert_eq!(
        m("shadowtap_errors_total{class=\"5xx\",model=\"production\"}"),
        STRAY as f64
    );
    assert_eq!(
        m("shadowtap_discrepancies_total{protocol=\"http1\",kind=\"status\"}"),
        0.0
    );
    // The inference request reached the shadow; no shadow failure was warned about.
    let seen = shadow.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), (STRAY + 1) as usize);
    assert!(seen.iter().any(|s| s.id == Some(STRAY)), "{seen:?}");
    assert!(
        !r.events
            .warnings()
            .iter()
            .any(|w| matches!(w, Warning::ReplayFailed { .. })),
        "{:?}",
        r.events.warnings()
    );
    drop(r.feed);
    assert_eq!(r.run.await.unwrap().admission.exchanges, STRAY + 1);
}

/// Replays in flight count: with `slow_call_ms` set, four replays hanging at the shadow for
/// longer than it are four slow calls, and the breaker opens at the next admission, long
/// before any of them times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_hanging_past_slow_call_open_the_breaker_before_they_time_out() {
    let shadow = start_shadow(Behaviour::Hang).await;
    let mut c = config(shadow.addr, None);
    c.mirror.pacing = Pacing::Asap;
    c.shadow.timeout = Duration::from_secs(2);
    c.circuit_breaker.window = nz(10);
    c.circuit_breaker.min_requests = nz(4);
    c.circuit_breaker.open_for = Duration::from_millis(600_000);
    c.circuit_breaker.slow_call = Some(Duration::from_millis(100));
    let r = start(c).await;
    for id in 0..4u64 {
        r.feed
            .send(exchange(id, "POST", Outcome::Complete))
            .await
            .unwrap();
    }
    wait_seen(&shadow, 4).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    r.feed
        .send(exchange(4, "POST", Outcome::Complete))
        .await
        .unwrap();
    wait_for(&r.metrics, "the fifth exchange skipped", |t| {
        metric(t, "shadowtap_mirror_skipped_total{reason=\"circuit_open\"}") == 1.0
    })
    .await;
    let text = r.metrics.render();
    assert_eq!(metric(&text, "shadowtap_circuit_state"), 1.0);
    assert_eq!(
        metric(
            &text,
            "shadowtap_mirrored_requests_total{protocol=\"http1\",result=\"timeout\"}"
        ),
        0.0,
        "opened before any replay ended"
    );
    let opened = r
        .events
        .events()
        .into_iter()
        .find_map(|e| match e {
            Event::BreakerChanged(c) if c.state == BreakerState::Open => Some(c),
            _ => None,
        })
        .expect("the breaker opened");
    assert_eq!(
        opened.cause,
        BreakerCause::Failures {
            failed: vec![(ShadowFailure::Slow, 4)],
            outcomes: 4,
            in_flight: 4,
            paused_for: Duration::from_millis(600_000),
        }
    );
    // The four time out later: answers to requests admitted before the breaker opened.
    drop(r.feed);
    let summary = r.run.await.unwrap();
    assert_eq!(summary.replayed, 4);
    let text = r.metrics.render();
    assert_eq!(
        metric(
            &text,
            "shadowtap_breaker_outcomes_total{counted_as=\"late\"}"
        ),
        4.0
    );
    assert_eq!(shadow.seen.lock().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_pauses_probes_and_resumes_when_the_shadow_recovers() {
    let shadow = start_shadow(Behaviour::ServerError).await;
    let mut c = config(shadow.addr, None);
    c.circuit_breaker.window = nz(10);
    c.circuit_breaker.min_requests = nz(4);
    c.circuit_breaker.open_for = Duration::from_millis(100);
    c.circuit_breaker.probes = nz(2);
    let r = start(c).await;
    let mut fed = 0u64;
    let feed_one = |id: u64| r.feed.send(exchange(id, "POST", Outcome::Complete));
    for _ in 0..4 {
        feed_one(fed).await.unwrap();
        fed += 1;
        wait_for(&r.metrics, "handled", |t| handled(t) == fed as f64).await;
    }
    let text = r.metrics.render();
    assert_eq!(
        metric(&text, "shadowtap_circuit_state"),
        1.0,
        "opened after 4 x 500"
    );

    // The shadow recovers; keep feeding until the probes have closed the breaker.
    shadow.set(Behaviour::Script {
        disagree: HashSet::new(),
    });
    let mut closed = false;
    for _ in 0..500 {
        feed_one(fed).await.unwrap();
        fed += 1;
        wait_for(&r.metrics, "handled", |t| handled(t) == fed as f64).await;
        if metric(&r.metrics.render(), "shadowtap_circuit_state") == 0.0 {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(closed, "breaker closed again after successful probes");
    let text = r.metrics.render();
    let m = |s: &str| metric(&text, s);
    // Every exchange is accounted for: 4 failures, 2 successful probes, the rest paused.
    assert_eq!(
        m("shadowtap_mirrored_requests_total{protocol=\"http1\",result=\"ok\"}"),
        6.0
    );
    assert_eq!(
        m("shadowtap_mirror_skipped_total{reason=\"circuit_open\"}"),
        (fed - 6) as f64
    );
    assert_eq!(shadow.seen.lock().unwrap().len(), 6);
    // Mirroring resumed: the next request goes to the shadow.
    feed_one(fed).await.unwrap();
    fed += 1;
    wait_for(&r.metrics, "handled", |t| handled(t) == fed as f64).await;
    assert_eq!(shadow.seen.lock().unwrap().len(), 7);
    drop(r.feed);
    assert_eq!(r.run.await.unwrap().admission.exchanges, fed);
}

/// Production pacing: wire starts 50 ms apart, production answering each in 5 ms, all handed to
/// the mirror at once (as after a burst). The shadow receives them in wire order, none before
/// its wire offset from the first (the pacing never sends early), and never more at once than
/// production had (one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_pacing_sends_at_production_spacing_and_order() {
    const N: u64 = 8;
    const SPACING_MS: u64 = 50;
    let shadow = start_shadow(Behaviour::Script {
        disagree: HashSet::new(),
    })
    .await;
    let r = start(config(shadow.addr, None)).await;
    let fed = Instant::now();
    for id in 0..N {
        r.feed
            .send(timed_exchange(id, id * SPACING_MS, 5))
            .await
            .unwrap();
    }
    wait_for(&r.metrics, "every replay", |t| handled(t) == N as f64).await;
    let seen = shadow.seen.lock().unwrap().clone();
    let order: Vec<u64> = seen.iter().map(|s| s.id.unwrap()).collect();
    assert_eq!(order, (0..N).collect::<Vec<_>>(), "wire order");
    for s in &seen {
        let offset = Duration::from_millis(s.id.unwrap() * SPACING_MS);
        assert!(
            s.received.duration_since(fed) >= offset,
            "request {} reached the shadow {:?} after the feed, before its wire offset {offset:?}",
            s.id.unwrap(),
            s.received.duration_since(fed)
        );
    }
    assert_eq!(shadow.holding.most.load(Ordering::SeqCst), 1);
    let text = r.metrics.render();
    assert_eq!(metric(&text, "shadowtap_production_in_flight"), 1.0);
    assert_eq!(
        metric(&text, "shadowtap_replay_queue_wait_seconds_count"),
        N as f64
    );
    drop(r.feed);
    r.run.await.unwrap();
}

/// Three production connections, each sending one request after another (production never has
/// more than 3 in flight), handed over at once, to a shadow that holds every request until the
/// test opens its gate. With production pacing (and the default concurrency of 32) the shadow
/// never holds more than 3; with asap it gets all of them at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_pacing_never_exceeds_production_concurrency() {
    const CONNS: u64 = 3;
    const EACH: u64 = 6;
    let n = CONNS * EACH;
    // Connection c's k-th request: starts at 5c + 45k ms, answered in 40 ms.
    let mut plan: Vec<Exchange> = (0..n)
        .map(|id| timed_exchange(id, (id % CONNS) * 5 + (id / CONNS) * 45, 40))
        .collect();
    // The mirror receives exchanges as their responses end.
    plan.sort_by_key(|e| e.timing.response_last_byte);
    for (pacing, most) in [("production", CONNS as usize), ("asap", n as usize)] {
        let (open, gate) = watch::channel(false);
        let shadow = start_shadow(Behaviour::Gated {
            open: gate,
            delay: Duration::ZERO,
        })
        .await;
        let mut c = config(shadow.addr, None);
        c.mirror.pacing = Pacing::parse(pacing).unwrap();
        c.circuit_breaker.enabled = false;
        let r = start(c).await;
        for ex in &plan {
            r.feed.send(ex.clone()).await.unwrap();
        }
        // Wait until the shadow holds as many as the pacing lets through, the rest queued.
        wait_for(&r.metrics, "the replays the pacing allows", |t| {
            metric(t, "shadowtap_replays_in_flight") == most as f64
                && metric(t, "shadowtap_replay_queue_length") == (n as usize - most) as f64
        })
        .await;
        // The gauge counts replays sent; wait until the shadow holds them all.
        wait_seen(&shadow, most).await;
        open.send(true).unwrap();
        wait_for(&r.metrics, "every replay", |t| handled(t) == n as f64).await;
        assert_eq!(
            shadow.holding.most.load(Ordering::SeqCst),
            most,
            "{pacing}: the most the shadow held at once"
        );
        let text = r.metrics.render();
        assert_eq!(
            metric(
                &text,
                "shadowtap_mirrored_requests_total{protocol=\"http1\",result=\"ok\"}"
            ),
            n as f64
        );
        if pacing == "production" {
            assert_eq!(
                metric(&text, "shadowtap_production_in_flight"),
                CONNS as f64
            );
        }
        drop(r.feed);
        r.run.await.unwrap();
    }
}

/// A slow shadow (one replay at a time, each held until the test opens the gate, then 50 ms):
/// the gauges show one in flight and the rest queued, the saturation warning is given once,
/// and the shadow's latency is its own answer time, without the time its replays waited in the
/// queue (which grows with each one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_shadow_shows_in_the_gauges_and_its_latency_excludes_the_queue_wait() {
    const N: u64 = 6;
    const DELAY: Duration = Duration::from_millis(50);
    let (open, gate) = watch::channel(false);
    let shadow = start_shadow(Behaviour::Gated {
        open: gate,
        delay: DELAY,
    })
    .await;
    let mut c = config(shadow.addr, None);
    c.shadow.concurrency = nz(1);
    c.mirror.queue = nz(8);
    let r = start(c).await;
    for id in 0..N {
        r.feed
            .send(exchange(id, "POST", Outcome::Complete))
            .await
            .unwrap();
    }
    wait_for(&r.metrics, "one in flight, the rest queued", |t| {
        metric(t, "shadowtap_replays_in_flight") == 1.0
            && metric(t, "shadowtap_replay_queue_length") == (N - 1) as f64
    })
    .await;
    wait_seen(&shadow, 1).await;
    let summary: Value = serde_json::from_str(&http_get(r.admin, "/api/summary").await).unwrap();
    assert_eq!(summary["replay"]["in_flight"], 1, "{summary}");
    assert_eq!(summary["replay"]["queued"], N - 1, "{summary}");
    assert_eq!(summary["replay"]["queue_capacity"], 8, "{summary}");
    assert!(summary["latency_shadow"]["p50_ms"].is_null(), "{summary}");
    assert!(
        summary["agreement"]["request"]["ratio"].is_null(),
        "no comparison yet: {summary}"
    );
    let text = r.metrics.render();
    assert!(
        !text.contains("shadowtap_agreement_ratio{"),
        "no ratio before the first comparison:\n{text}"
    );
    // Five of eight queued behind a replay that cannot finish: saturated, said once.
    let saturated: Vec<Warning> = r
        .events
        .warnings()
        .into_iter()
        .filter(|w| matches!(w, Warning::ShadowSaturated { .. }))
        .collect();
    // (Said when the queue was at least half full: 4 or 5 of 8, as the feed and the
    // dispatcher raced.)
    assert_eq!(saturated.len(), 1, "{saturated:?}");
    let Warning::ShadowSaturated {
        in_flight,
        limit,
        concurrency,
        queued,
        capacity,
        admission_waits,
        suppressed,
    } = saturated[0]
    else {
        unreachable!()
    };
    assert_eq!(
        (
            in_flight,
            limit,
            concurrency,
            capacity,
            admission_waits,
            suppressed
        ),
        (1, 1, 1, 8, false, 0)
    );
    assert!((4..N as usize).contains(&queued), "{queued}");

    open.send(true).unwrap();
    wait_for(&r.metrics, "every replay", |t| {
        handled(t) == N as f64 && metric(t, "shadowtap_replays_in_flight") == 0.0
    })
    .await;
    let text = r.metrics.render();
    let m = |s: &str| metric(&text, s);
    assert_eq!(m("shadowtap_replay_queue_length"), 0.0);
    assert_eq!(
        m("shadowtap_latency_seconds_count{model=\"shadow\"}"),
        N as f64
    );
    assert_eq!(m("shadowtap_replay_queue_wait_seconds_count"), N as f64);
    let latency = m("shadowtap_latency_seconds_sum{model=\"shadow\"}");
    let waited = m("shadowtap_replay_queue_wait_seconds_sum");
    // Each answer took at least DELAY; replay i waited for the i before it (one at a time),
    // so the waits add up to far more than the answers, unless the answers included them.
    assert!(latency >= N as f64 * DELAY.as_secs_f64(), "{latency}");
    assert!(
        latency < waited,
        "shadow latency {latency} s includes the queue wait ({waited} s)"
    );
    let summary: Value = serde_json::from_str(&http_get(r.admin, "/api/summary").await).unwrap();
    let p99_wait = summary["queue_wait"]["p99_ms"].as_f64().unwrap();
    let p50_shadow = summary["latency_shadow"]["p50_ms"].as_f64().unwrap();
    assert!(p50_shadow >= 50.0 * 0.99, "{summary}");
    assert!(
        p99_wait >= 4.0 * 50.0 * 0.99,
        "the last waited for four answers: {summary}"
    );
    drop(r.feed);
    r.run.await.unwrap();
}

// ---------- gRPC over h2c ----------

/// The gRPC `ModelInfer` path (Open Inference Protocol).
const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

/// Call `id`'s request message: length-prefixed, uncompressed, not text.
fn grpc_request(id: u8) -> Bytes {
    Bytes::from(vec![0, 0, 0, 0, 3, 0x10, id, 0xff])
}

/// Call `id`'s answer message, as production gave it.
fn grpc_answer(id: u8) -> Bytes {
    Bytes::from(vec![0, 0, 0, 0, 2, 0x08, id])
}

/// A gRPC call as the HTTP/2 parser hands it on: pseudo-headers in method and target, the
/// status in the response's trailers.
fn grpc_exchange(id: u8) -> Exchange {
    let mut ex = exchange(u64::from(id), "POST", Outcome::Complete);
    ex.protocol = Protocol::Grpc;
    ex.request = Some(HttpRequest {
        method: "POST".into(),
        target: MODEL_INFER.into(),
        version: 1,
        headers: vec![
            header("content-type", "application/grpc"),
            header("te", "trailers"),
            header("grpc-timeout", "2S"),
        ],
        body: grpc_request(id),
        trailers: Vec::new(),
    });
    ex.prod_response = Some(HttpResponse {
        status: 200,
        version: 1,
        headers: vec![header("content-type", "application/grpc")],
        body: grpc_answer(id),
        trailers: vec![header("grpc-status", "0"), header("grpc-message", "")],
    });
    ex
}

/// One call as the gRPC shadow received it.
#[derive(Clone, Debug)]
struct GrpcSeen {
    version: hyper::Version,
    path: String,
    authority: Option<String>,
    headers: hyper::HeaderMap,
    body: Bytes,
}

type GrpcBody = http_body_util::Either<
    Full<Bytes>,
    http_body_util::combinators::WithTrailers<
        Full<Bytes>,
        std::future::Ready<Option<Result<hyper::HeaderMap, Infallible>>>,
    >,
>;

/// A gRPC-looking shadow speaking only HTTP/2 with prior knowledge (hyper's server): answers
/// each call with production's answer and `grpc-status: 0` in the trailers, except call
/// `unavailable`, answered trailers-only with `grpc-status: 14`.
async fn start_grpc_shadow(unavailable: u8) -> (SocketAddr, Arc<Mutex<Vec<GrpcSeen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = s.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let seen = seen.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.unwrap().to_bytes();
                    let id = body.get(6).copied().unwrap_or_default();
                    seen.lock().unwrap().push(GrpcSeen {
                        version: parts.version,
                        path: parts.uri.path().to_string(),
                        authority: parts.uri.authority().map(|a| a.to_string()),
                        headers: parts.headers,
                        body,
                    });
                    let response = Response::builder()
                        .status(200)
                        .header("content-type", "application/grpc");
                    let response: Response<GrpcBody> = if id == unavailable {
                        response
                            .header("grpc-status", "14")
                            .body(http_body_util::Either::Left(Full::new(Bytes::new())))
                            .unwrap()
                    } else {
                        let mut trailers = hyper::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        let body = Full::new(grpc_answer(id))
                            .with_trailers(std::future::ready(Some(Ok(trailers))));
                        response.body(http_body_util::Either::Right(body)).unwrap()
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(async move {
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_are_replayed_over_h2c_and_labelled_grpc() {
    const N: u8 = 6;
    const UNAVAILABLE: u8 = 4;
    let (shadow, seen) = start_grpc_shadow(UNAVAILABLE).await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("discrepancies.jsonl");
    let r = start(config(shadow, Some(&log_path))).await;
    for id in 0..N {
        r.feed.send(grpc_exchange(id)).await.unwrap();
    }
    wait_for(&r.metrics, "every call replayed", |t| {
        handled(t) == f64::from(N)
    })
    .await;
    let text = http_get(r.admin, "/metrics").await;
    drop(r.feed);
    let summary = r.run.await.unwrap();
    assert_eq!(summary.replayed, u64::from(N));

    // The shadow got every call over HTTP/2, byte for byte, with its gRPC fields.
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by_key(|s| s.body.get(6).copied());
    assert_eq!(seen.len(), usize::from(N));
    for (id, s) in (0..N).zip(&seen) {
        assert_eq!(s.version, hyper::Version::HTTP_2);
        assert_eq!(s.path, MODEL_INFER);
        assert_eq!(s.authority.as_deref(), Some(&*shadow.to_string()));
        assert_eq!(s.body, grpc_request(id));
        assert_eq!(s.headers["te"], "trailers");
        assert_eq!(s.headers["content-type"], "application/grpc");
        assert_eq!(s.headers["grpc-timeout"], "2S");
        assert!(s.headers.get("host").is_none(), "{:?}", s.headers);
    }

    // Every series says grpc.
    let m = |series: &str| metric(&text, series);
    let n = f64::from(N);
    assert_eq!(
        m("shadowtap_exchanges_total{outcome=\"complete\",protocol=\"grpc\"}"),
        n
    );
    assert_eq!(
        m("shadowtap_exchanges_total{outcome=\"complete\",protocol=\"http1\"}"),
        0.0
    );
    assert_eq!(
        m("shadowtap_mirrored_requests_total{protocol=\"grpc\",result=\"ok\"}"),
        n
    );
    let all = prom::Metrics::parse(&text);
    assert_eq!(
        all.sum(
            "shadowtap_mirrored_requests_total",
            &[("protocol", "http1")]
        ),
        0.0
    );
    assert_eq!(
        all.sum("shadowtap_mirrored_requests_total", &[("protocol", "h2")]),
        0.0
    );
    // The shadow's trailers-only UNAVAILABLE is the one call that differs.
    let differing = all.sum("shadowtap_discrepancies_total", &[]);
    assert!(differing > 0.0, "{text}");
    assert_eq!(
        all.sum("shadowtap_discrepancies_total", &[("protocol", "grpc")]),
        differing
    );
    let code = |model: Model, code: GrpcStatusLabel| {
        m(&format!(
            "shadowtap_grpc_status_total{{code=\"{}\",model=\"{}\"}}",
            code.as_str(),
            model.as_str()
        ))
    };
    assert_eq!(
        code(Model::Production, GrpcStatusLabel::Code(GrpcCode::Ok)),
        n
    );
    assert_eq!(
        code(Model::Shadow, GrpcStatusLabel::Code(GrpcCode::Ok)),
        n - 1.0
    );
    assert_eq!(
        code(Model::Shadow, GrpcStatusLabel::Code(GrpcCode::Unavailable)),
        1.0
    );
    assert_eq!(code(Model::Shadow, GrpcStatusLabel::Missing), 0.0);
    assert_eq!(
        r.events.count(&Event::GrpcStatus(
            Model::Shadow,
            GrpcStatusLabel::Code(GrpcCode::Unavailable)
        )),
        1
    );

    // The discrepancy log line names the protocol.
    let lines: Vec<Value> = std::fs::read_to_string(&log_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["protocol"], "grpc");
    assert_eq!(lines[0]["request"]["path"], MODEL_INFER);
}
