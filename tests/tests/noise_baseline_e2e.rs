//! The noise baseline end to end, as a user runs it: `shadowd run --baseline` taps `lo` of a
//! throw-away network namespace with the real eBPF program, while production (port 8080), its
//! twin the baseline (8082) and a shadow (8081), all inside that namespace, answer Open
//! Inference Protocol requests.
//!
//! Every instance fills `/request_id` and `/timestamp` at random and sometimes jitters
//! `/meta/jitter`; the shadow also predicts differently on a known subset of requests. What
//! differs between production and its twin must come out as noise (in `/api/summary`, in
//! `shadowtap_noise_discrepancies_total` and in the discrepancy log), the shadow's prediction
//! differences as real. Expected values come from the test's script, never from the code under
//! test; one client sends the requests one at a time and the daemon replays one at a time, so
//! each request's baseline answer is learned before the next shadow answer is judged.
//!
//! Needs root; skipped (with a message) otherwise.

use serde_json::{Value, json};
use shadow_core::vocabulary::{DiscrepancyKind, MirrorResult, Outcome};
use shadowtap_test_support::accept::spawn_accept_loop;
use shadowtap_test_support::http::{Message, read_message};
use shadowtap_test_support::noise_script::{
    Role, answer, jitters, request_body, scores, shadow_flips_label, shadow_moves_score,
};
use shadowtap_tests::admin::{self, accounted, discrepancies, exchanges, labelled, mirrored};
use shadowtap_tests::netns::NetNs;
use shadowtap_tests::require_root;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const PROD: SocketAddr = local(8080);
const SHADOW: SocketAddr = local(8081);
const BASELINE: SocketAddr = local(8082);
const ADMIN: SocketAddr = local(9464);
/// Requests sent: ids 0..N on one keep-alive connection.
const N: u64 = 30;
const TARGET: &str = "/v2/models/m/infer";

const fn local(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// The request id of a body.
fn id_of(body: &[u8]) -> Option<u64> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v["id"].as_str()?.parse().ok()
}

// ---------- the model servers ----------

/// One model server in the namespace, stopped when dropped; keeps the targets it was sent.
struct ModelServer {
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    targets: Arc<Mutex<Vec<String>>>,
}

impl ModelServer {
    fn start(listener: TcpListener, role: Role) -> Self {
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let targets = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&targets);
        let what = format!("{role:?} server");
        let accept = spawn_accept_loop(listener, Arc::clone(&stop), &what, move |stream| {
            serve(stream, role, &seen)
        });
        ModelServer {
            stop,
            accept: Some(accept),
            targets,
        }
    }

    fn targets(&self) -> Vec<String> {
        self.targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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

fn serve(mut stream: TcpStream, role: Role, seen: &Mutex<Vec<String>>) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(shadowtap_tests::IO_TIMEOUT))?;
    let mut buf = Vec::new();
    while let Some(request) = read_message(&mut stream, &mut buf)? {
        let target = request.start_line.split(' ').nth(1).unwrap_or_default();
        seen.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(target.to_string());
        let (status, body) = match id_of(&request.body) {
            Some(id) => ("200 OK", answer(role, id).to_string()),
            None => ("400 Bad Request", "{\"error\":\"no id\"}".to_string()),
        };
        let out = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(out.as_bytes())?;
    }
    Ok(())
}

/// Production's answer as the client checks it: 200, the class of `id`.
fn check_answer(id: u64, response: &Message) -> io::Result<()> {
    let v: Value = serde_json::from_slice(&response.body)
        .map_err(|e| io::Error::other(format!("request {id}: answer not JSON: {e}")))?;
    if response.status() == Some(200)
        && v["outputs"][0]["data"] == json!(scores(Role::Production, id))
    {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "request {id}: wrong answer `{}` {v}",
            response.start_line
        )))
    }
}

/// Sends ids 0..N on one keep-alive connection, one at a time, each answer checked.
fn send(mut stream: TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(shadowtap_tests::IO_TIMEOUT))?;
    let mut buf = Vec::new();
    for id in 0..N {
        let body = request_body(id);
        let mut out = format!(
            "POST {TARGET} HTTP/1.1\r\nHost: prod.example:8080\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        stream.write_all(&out)?;
        let response = read_message(&mut stream, &mut buf)?
            .ok_or_else(|| io::Error::other(format!("request {id}: connection closed")))?;
        check_answer(id, &response)?;
    }
    shadowtap_tests::close_after_last_response(&mut stream, &buf)
}

// ---------- the test ----------

#[test]
fn the_noise_baseline_separates_nondeterministic_fields_from_real_differences() {
    if !require_root("the_noise_baseline_separates_nondeterministic_fields_from_real_differences") {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = dir.path().join("discrepancies.jsonl");
    let log_arg = log.to_str().expect("UTF-8 temporary path");
    // Request bodies are logged only when asked for; the ids are read from them.
    let config = dir.path().join("bodies.toml");
    std::fs::write(&config, "[discrepancy_log]\nbody_max_bytes = 4096\n").expect("config");
    let config_arg = config.to_str().expect("UTF-8 temporary path");
    let ns = NetNs::new("noise").expect("netns");
    let bind = |addr| ns.run(|| TcpListener::bind(addr)).expect("bind");
    let _production = ModelServer::start(bind(PROD), Role::Production);
    let baseline = ModelServer::start(bind(BASELINE), Role::Baseline);
    let shadow = ModelServer::start(bind(SHADOW), Role::Shadow);
    let baseline_url = format!("http://{BASELINE}");
    let mut daemon = admin::run_daemon(
        &ns,
        PROD,
        SHADOW,
        ADMIN,
        &[
            "--preset",
            "kserve-v2",
            "--baseline",
            &baseline_url,
            "--shadow-model",
            "m-v2",
            "--concurrency",
            "1",
            "--pacing",
            "asap",
            "--discrepancy-log",
            log_arg,
            "--config",
            config_arg,
        ],
    );
    let stream = ns.run(|| TcpStream::connect(PROD)).expect("connect");
    send(stream).expect("production answers every request");
    let n = N as f64;
    let text = admin::wait_metrics(&ns, &mut daemon, ADMIN, "every request accounted", |t| {
        accounted(t) >= n
    });
    let (status, summary) = admin::get(&ns, ADMIN, "/api/summary").expect("summary");
    assert_eq!(status, 200);
    let summary: Value = serde_json::from_str(&summary).expect("summary JSON");
    let stopped = daemon.stop(Duration::from_secs(30)).expect("stop");
    assert!(stopped.success(), "{stopped}:\n{}", daemon.output());

    // The script's expectations.
    let ids: Vec<u64> = (0..N).collect();
    let labels = ids.iter().filter(|&&i| shadow_flips_label(i)).count();
    let scores = ids.iter().filter(|&&i| shadow_moves_score(i)).count();
    let noise_only = N as usize - labels - scores;
    // Production and its twin differ on the jitter when either jittered.
    let jittered = ids
        .iter()
        .filter(|&&i| jitters(Role::Production, i) || jitters(Role::Baseline, i))
        .count() as u64;

    // Every request tapped, replayed to the shadow (under its name) and to the baseline (at
    // production's path), exactly once.
    assert_eq!(accounted(&text), n, "{text}");
    assert_eq!(exchanges(&text, Outcome::Complete), n, "{text}");
    assert_eq!(mirrored(&text, MirrorResult::Ok), n, "{text}");
    let baseline_replays = |r: MirrorResult| {
        labelled(
            &text,
            "shadowtap_baseline_replays_total",
            &[("result", r.as_str())],
        )
    };
    assert_eq!(baseline_replays(MirrorResult::Ok), n, "{text}");
    for r in MirrorResult::ALL
        .into_iter()
        .filter(|r| *r != MirrorResult::Ok)
    {
        assert_eq!(baseline_replays(r), 0.0, "{r:?}:\n{text}");
    }
    assert_eq!(shadow.targets(), vec!["/v2/models/m-v2/infer"; N as usize]);
    assert_eq!(baseline.targets(), vec![TARGET; N as usize]);

    // Metrics: every shadow answer differs (ids, times); only the script's are real.
    let noise = |kind: DiscrepancyKind| {
        labelled(
            &text,
            "shadowtap_noise_discrepancies_total",
            &[("kind", kind.as_str())],
        )
    };
    assert_eq!(
        discrepancies(&text, DiscrepancyKind::Body),
        noise_only as f64
    );
    assert_eq!(noise(DiscrepancyKind::Body), noise_only as f64, "{text}");
    assert_eq!(discrepancies(&text, DiscrepancyKind::Label), labels as f64);
    assert_eq!(noise(DiscrepancyKind::Label), 0.0);
    assert_eq!(
        discrepancies(&text, DiscrepancyKind::Prediction),
        scores as f64
    );
    assert_eq!(noise(DiscrepancyKind::Prediction), 0.0);

    // /api/summary's noise.
    let noise = &summary["noise"];
    assert_eq!(noise["baseline_compared"], N, "{noise}");
    assert_eq!(noise["baseline_failed"], 0);
    let paths: BTreeMap<&str, u64> = noise["noisy_paths"]
        .as_array()
        .expect("noisy_paths")
        .iter()
        .map(|p| {
            (
                p["path"].as_str().unwrap(),
                p["comparisons"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: BTreeMap<&str, u64> = [
        ("/request_id", N),
        ("/timestamp", N),
        ("/meta/jitter", jittered),
    ]
    .into_iter()
    .collect();
    assert_eq!(paths, expected, "{noise}");
    assert_eq!(noise["label_flips"], json!({"successes": 0, "trials": N}));
    assert_eq!(
        noise["shadow"],
        json!({"noise": noise_only, "real": labels + scores})
    );
    assert_eq!(
        noise["shadow_by_kind"],
        json!({
            "body": {"noise": noise_only, "real": 0},
            "label": {"noise": 0, "real": labels},
            "prediction": {"noise": 0, "real": scores},
        })
    );

    // The discrepancy log (flushed on SIGTERM): "noise" on exactly the script's requests.
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .expect("discrepancy log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), N as usize);
    let mut seen = BTreeSet::new();
    for line in &lines {
        let id = id_of(line["request"]["body"].to_string().as_bytes()).expect("request id");
        seen.insert(id);
        let real = shadow_flips_label(id) || shadow_moves_score(id);
        assert_eq!(line["noise"], !real, "request {id}: {line}");
        let noisy: BTreeSet<&str> = line["noisy_paths"]
            .as_array()
            .expect("noisy_paths")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            noisy.contains("/request_id") && noisy.contains("/timestamp"),
            "request {id}: {line}"
        );
        assert!(!noisy.contains("/outputs/*/data/*"), "request {id}: {line}");
    }
    assert_eq!(seen, ids.into_iter().collect::<BTreeSet<u64>>());
}
