//! The noise baseline over the back half: three model servers on 127.0.0.1:0 (production, its
//! twin the baseline, and the shadow) → synthetic exchanges carrying production's real answers
//! → `Mirror` → `/metrics`, `/api/summary` and the discrepancy log.
//!
//! Every instance fills `/request_id` and `/timestamp` at random and sometimes jitters
//! `/meta/jitter`; the shadow also predicts differently on a known subset of requests. Expected
//! values come from that script, never from the code under test: the nondeterministic paths
//! are reported as noise, the shadow's prediction differences are not.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use shadow_core::http::{Exchange, ExchangeTiming, Header, HttpRequest, HttpResponse, Outcome};
use shadow_core::segment::FlowKey;
use shadow_core::vocabulary::{DiscrepancyKind, MirrorResult};
use shadow_daemon::config::{Config, RawConfig, Setting};
use shadow_daemon::mirror::Mirror;
use shadow_daemon::shutdown;
use shadow_daemon::sinks::admin::{AdminState, bind_admin, serve_admin};
use shadow_daemon::sinks::discrepancy_log::DiscrepancyLog;
use shadow_daemon::sinks::metrics::Metrics;
use shadow_daemon::telemetry::Telemetry;
use shadowtap_test_support::noise_script::{
    Role, answer, jitters, request_body, shadow_flips_label, shadow_moves_score,
};
use shadowtap_test_support::prom;
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Requests replayed.
const N: u64 = 30;

// ---------- the model servers ----------

struct ModelServer {
    addr: SocketAddr,
    /// Targets received, in order.
    targets: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_server(role: Role) -> ModelServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let targets = Arc::new(Mutex::new(Vec::new()));
    let seen = targets.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        seen.lock().unwrap().push(req.uri().to_string());
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let v: Value = serde_json::from_slice(&body).unwrap();
                        let id: u64 = v["id"].as_str().unwrap().parse().unwrap();
                        let out = answer(role, id).to_string();
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(out))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    ModelServer {
        addr,
        targets,
        task,
    }
}

const TARGET: &str = "/v2/models/m/infer";

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: Bytes::from(value.to_string()),
    }
}

/// Request `id` sent to production for real; its answer becomes the exchange's production
/// response, as if tapped.
async fn exchange(production: SocketAddr, id: u64) -> Exchange {
    let body = request_body(id);
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::post(format!("http://{production}{TARGET}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    let answer = client.request(req).await.unwrap();
    assert_eq!(answer.status(), 200);
    let answer = answer.into_body().collect().await.unwrap().to_bytes();
    Exchange {
        protocol: shadow_core::http::Protocol::Http1,
        flow: FlowKey {
            client: SocketAddr::from(([127, 0, 0, 1], 40_000 + id as u16)),
            server: SocketAddr::from(([127, 0, 0, 1], 8080)),
        },
        request: Some(HttpRequest {
            trailers: Vec::new(),
            method: "POST".into(),
            target: TARGET.into(),
            version: 1,
            headers: vec![
                header("Host", "prod.example:8080"),
                header("Content-Type", "application/json"),
                header("Content-Length", &body.len().to_string()),
            ],
            body: Bytes::from(body),
        }),
        prod_response: Some(HttpResponse {
            trailers: Vec::new(),
            status: 200,
            version: 1,
            headers: vec![header("Content-Type", "application/json")],
            body: answer,
        }),
        timing: ExchangeTiming {
            request_first_byte: 1_000_000_000 + id * 1_000_000,
            request_last_byte: 1_000_000_000 + id * 1_000_000,
            response_first_byte: Some(1_002_000_000 + id * 1_000_000),
            response_last_byte: Some(1_002_000_000 + id * 1_000_000),
        },
        outcome: Outcome::Complete,
    }
}

// ---------- harness ----------

/// One replay at a time, in order: each request's baseline answer is learned before the next
/// request's shadow answer is judged, so the expected verdicts are exact.
fn config(shadow: SocketAddr, baseline: SocketAddr, log: &std::path::Path) -> Config {
    let mut raw = RawConfig::default();
    raw.capture.interface = Setting::builtin("lo".into());
    raw.capture.ports = Setting::builtin_list([8080]);
    raw.shadow.url = Some(Setting::builtin(format!("http://{shadow}")));
    raw.shadow.baseline = Some(Setting::builtin(format!("http://{baseline}")));
    // The shadow serves under another name; the baseline, production's twin, does not.
    raw.shadow.model = Some(Setting::builtin("m-v2".into()));
    raw.shadow.concurrency = Setting::builtin(1);
    raw.mirror.pacing = Setting::builtin("asap".into());
    raw.admin.addr = Setting::builtin(SocketAddr::from(([127, 0, 0, 1], 0)));
    raw.discrepancy_log.path = Some(Setting::builtin(log.to_path_buf()));
    // Request bodies are logged only when asked for (the tests read their ids from them).
    raw.discrepancy_log.body_max_bytes = Setting::builtin(4096);
    Config::try_from(raw).expect("test config is valid")
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

// ---------- the test ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nondeterministic_paths_are_noise_and_the_prediction_differences_are_not() {
    let production = start_server(Role::Production).await;
    let baseline = start_server(Role::Baseline).await;
    let shadow = start_server(Role::Shadow).await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("discrepancies.jsonl");

    let (trigger, shutdown) = shutdown::channel();
    let metrics = Metrics::new();
    let telemetry: Arc<dyn Telemetry> = Arc::new(metrics.clone());
    let config = config(shadow.addr, baseline.addr, &log_path);
    let log = DiscrepancyLog::from_config(&config.discrepancy_log, telemetry.clone())
        .unwrap()
        .unwrap();
    let mirror = Mirror::new(Arc::new(config), telemetry).with_discrepancy_sink(log.writer());
    let listener = bind_admin(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let admin = listener.local_addr().unwrap();
    let _admin_task = tokio::spawn(serve_admin(
        listener,
        AdminState::new(metrics.clone(), mirror.status()),
        trigger.subscribe(),
    ));
    let (feed, rx) = tokio::sync::mpsc::channel(64);
    let run = tokio::spawn(mirror.run(rx, shutdown));
    for id in 0..N {
        feed.send(exchange(production.addr, id).await)
            .await
            .unwrap();
    }
    drop(feed);
    // Wait (bounded) until every replay is counted, then read what an operator reads.
    let m = |text: &str, series: &str| prom::Metrics::parse(text).value(series);
    let mut text = String::new();
    for _ in 0..2000 {
        text = http_get(admin, "/metrics").await;
        if m(
            &text,
            "shadowtap_mirrored_requests_total{protocol=\"http1\",result=\"ok\"}",
        ) == N as f64
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let summary: Value = serde_json::from_str(&http_get(admin, "/api/summary").await).unwrap();
    let run_summary = run.await.unwrap();
    log.close().await;

    // The script's expectations.
    let ids: Vec<u64> = (0..N).collect();
    let labels: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|&i| shadow_flips_label(i))
        .collect();
    let scores: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|&i| shadow_moves_score(i))
        .collect();
    let noise_only = N as usize - labels.len() - scores.len();
    // Production and its twin differ on the jitter when either jittered.
    let jittered = ids
        .iter()
        .filter(|&&i| jitters(Role::Production, i) || jitters(Role::Baseline, i))
        .count();

    // Both were replayed to: the shadow under its model name, the baseline at production's path.
    assert_eq!(shadow.targets.lock().unwrap().len(), N as usize);
    assert!(
        shadow
            .targets
            .lock()
            .unwrap()
            .iter()
            .all(|t| t == "/v2/models/m-v2/infer")
    );
    let baseline_targets = baseline.targets.lock().unwrap().clone();
    assert_eq!(baseline_targets.len(), N as usize);
    assert!(baseline_targets.iter().all(|t| t == TARGET));

    // Metrics: every shadow answer differs (ids, times); only the script's are real.
    // Summed over protocols (discrepancies_total has one; every exchange here is HTTP/1).
    let count = |name: &str, k: DiscrepancyKind| {
        prom::Metrics::parse(&text).sum(name, &[("kind", k.as_str())])
    };
    assert_eq!(
        m(&text, "shadowtap_baseline_replays_total{result=\"ok\"}"),
        N as f64,
        "{text}"
    );
    for r in MirrorResult::ALL
        .into_iter()
        .filter(|r| *r != MirrorResult::Ok)
    {
        let series = format!(
            "shadowtap_baseline_replays_total{{result=\"{}\"}}",
            r.as_str()
        );
        assert_eq!(m(&text, &series), 0.0, "{series}");
    }
    let total = "shadowtap_discrepancies_total";
    let noise = "shadowtap_noise_discrepancies_total";
    assert_eq!(count(total, DiscrepancyKind::Body), noise_only as f64);
    assert_eq!(count(noise, DiscrepancyKind::Body), noise_only as f64);
    assert_eq!(count(total, DiscrepancyKind::Label), labels.len() as f64);
    assert_eq!(count(noise, DiscrepancyKind::Label), 0.0);
    assert_eq!(
        count(total, DiscrepancyKind::Prediction),
        scores.len() as f64
    );
    assert_eq!(count(noise, DiscrepancyKind::Prediction), 0.0);

    // /api/summary's noise: what the baseline taught, and the split.
    let n = &summary["noise"];
    assert_eq!(n["baseline_compared"], N);
    assert_eq!(n["baseline_failed"], 0);
    let paths: BTreeMap<String, u64> = n["noisy_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["path"].as_str().unwrap().to_string(),
                p["comparisons"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: BTreeMap<String, u64> = [
        ("/request_id".to_string(), N),
        ("/timestamp".to_string(), N),
        ("/meta/jitter".to_string(), jittered as u64),
    ]
    .into_iter()
    .collect();
    assert_eq!(paths, expected, "{n}");
    // Production never flipped its label against its twin: 0 of N, Wilson upper bound < 0.15.
    assert_eq!(n["label_flips"], json!({"successes": 0, "trials": N}));
    assert_eq!(n["label_flip_rate"]["value"], 0.0);
    assert!(n["label_flip_rate"]["interval"]["hi"].as_f64().unwrap() < 0.15);
    assert_eq!(n["shadow"]["noise"], noise_only);
    assert_eq!(n["shadow"]["real"], labels.len() + scores.len());
    assert_eq!(
        n["shadow_by_kind"]["label"],
        json!({"noise": 0, "real": labels.len()})
    );
    assert_eq!(
        n["shadow_by_kind"]["prediction"],
        json!({"noise": 0, "real": scores.len()})
    );
    assert_eq!(
        n["shadow_by_kind"]["body"],
        json!({"noise": noise_only, "real": 0})
    );
    assert_eq!(
        serde_json::to_value(run_summary.noise.unwrap()).unwrap()["shadow"],
        n["shadow"]
    );

    // The discrepancy log: one line per request, "noise" exactly where the script says.
    let lines: Vec<Value> = std::fs::read_to_string(&log_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), N as usize);
    let mut seen = BTreeSet::new();
    for line in &lines {
        let id: u64 = line["request"]["body"]["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        seen.insert(id);
        let real = shadow_flips_label(id) || shadow_moves_score(id);
        assert_eq!(line["noise"], !real, "request {id}: {line}");
        let noisy: BTreeSet<&str> = line["noisy_paths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert!(
            noisy.contains("/request_id") && noisy.contains("/timestamp"),
            "request {id}: {line}"
        );
        assert!(
            !noisy.contains("/outputs/*/data/*"),
            "the prediction never differs between production and its twin: {line}"
        );
        let diffs: BTreeSet<&str> = line["diff"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["path"].as_str().unwrap())
            .collect();
        if real {
            assert!(
                diffs.iter().any(|p| p.starts_with("/outputs/0/data/")),
                "request {id}: {line}"
            );
            let expected = if shadow_flips_label(id) {
                json!(["label"])
            } else {
                json!(["prediction"])
            };
            assert_eq!(line["discrepancies"], expected, "request {id}");
        } else {
            assert_eq!(line["discrepancies"], json!(["body"]), "request {id}");
        }
    }
    assert_eq!(seen.len(), N as usize);
    trigger.trigger();
}
