//! `shadowd run` end to end, as a user runs it: the real binary taps `lo` of a throw-away
//! network namespace with the real eBPF program, while a production model server (port 8080)
//! and a fake shadow (port 8081), both inside that namespace, serve KServe v2 JSON.
//! Clients send keep-alive, pipelined and chunked requests (some with 4 MiB bodies).
//!
//! Expected values come from the test's own plan (which ids the shadow disagrees on, which
//! methods are sent, how the shadow fails), never from the code under test. Waits poll
//! `/metrics` until the mirror has accounted for every request, bounded in time; the
//! assertions are on counts and outcomes only.
//!
//! Needs root; skipped (with a message) otherwise.

use serde_json::{Value, json};
use shadow_core::vocabulary::{
    DiscrepancyKind, ErrorClass, MirrorResult, Model, Outcome, SkipReason,
};
use shadowtap_tests::admin::{
    self, accounted, discrepancies, errors, exchanges, metric, mirrored, skipped, sum_of,
};
use shadowtap_tests::model::{ModelServer, Req, Role, disagrees, label, shadow_label};
use shadowtap_tests::netns::NetNs;
use shadowtap_tests::require_root;
use shadowtap_tests::sha256_hex;
use shadowtap_tests::shadowd::Daemon;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

/// Production model server, fake shadow and admin address, all on `lo` of the test's namespace.
const PROD: SocketAddr = local(8080);
const SHADOW: SocketAddr = local(8081);
const ADMIN: SocketAddr = local(9464);
/// Circuit breaker `min_requests` (the default): with every replay failing, at least this many
/// are tried before the breaker opens.
const MIN_REQUESTS: f64 = 10.0;

const fn local(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// A fresh temporary directory (removed on drop) for the files of one test.
fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// A path as a command-line argument.
fn arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

/// A namespace with production (and maybe a shadow) serving, and `shadowd run` tapping its
/// `lo`, healthy (tap attached).
struct Setup {
    ns: NetNs,
    prod: ModelServer,
    shadow: Option<ModelServer>,
    daemon: Daemon,
}

/// Starts production, the shadow in `role` (none: nothing listens on the shadow port) and
/// `shadowd run --preset kserve-v2 <extra>`, and waits until `/healthz` answers.
fn start(tag: &str, shadow: Option<Role>, extra: &[&str]) -> Setup {
    let ns = NetNs::new(tag).expect("netns");
    let prod = ModelServer::start(
        ns.run(|| TcpListener::bind(PROD)).unwrap(),
        Role::Production,
    )
    .unwrap();
    let shadow = shadow.map(|role| {
        ModelServer::start(ns.run(|| TcpListener::bind(SHADOW)).unwrap(), role).unwrap()
    });
    let mut args = vec!["--preset", "kserve-v2"];
    args.extend_from_slice(extra);
    let daemon = admin::run_daemon(&ns, PROD, SHADOW, ADMIN, &args);
    Setup {
        ns,
        prod,
        shadow,
        daemon,
    }
}

impl Setup {
    /// Sends every connection's requests (concurrently, one client thread per connection;
    /// `true` = pipelined) to production and returns how many were answered correctly.
    fn drive(&self, conns: &[(Vec<Req>, bool)]) -> usize {
        self.drive_to(PROD, conns)
    }

    /// [`Setup::drive`] to another production address.
    fn drive_to(&self, prod: SocketAddr, conns: &[(Vec<Req>, bool)]) -> usize {
        let streams: Vec<TcpStream> = conns
            .iter()
            .map(|_| self.ns.run(|| TcpStream::connect(prod)).unwrap())
            .collect();
        std::thread::scope(|scope| {
            let clients: Vec<_> = streams
                .into_iter()
                .zip(conns)
                .map(|(stream, (reqs, pipelined))| {
                    scope.spawn(move || shadowtap_tests::model::send(stream, reqs, *pipelined))
                })
                .collect();
            clients
                .into_iter()
                .map(|c| c.join().unwrap().expect("production answers correctly"))
                .sum()
        })
    }

    /// Waits until the mirror has replayed or skipped `n` exchanges; returns that scrape.
    fn wait_accounted(&mut self, n: usize) -> String {
        let text = admin::wait_metrics(
            &self.ns,
            &mut self.daemon,
            ADMIN,
            "every request accounted",
            |t| accounted(t) >= n as f64,
        );
        assert_eq!(accounted(&text), n as f64, "nothing counted twice:\n{text}");
        text
    }

    /// SIGTERM: the daemon must stop cleanly (exit 0).
    fn stop(&mut self) {
        let status = self.daemon.stop(Duration::from_secs(30)).unwrap();
        assert!(
            status.success(),
            "shadowd run stopped with {status}:\n{}",
            self.daemon.output()
        );
    }
}

/// Asserts every mirror result and skip reason is 0 except those listed.
fn assert_only(text: &str, results: &[MirrorResult], reasons: &[SkipReason]) {
    for r in MirrorResult::ALL
        .into_iter()
        .filter(|r| !results.contains(r))
    {
        assert_eq!(mirrored(text, r), 0.0, "mirrored {r:?}:\n{text}");
    }
    for r in SkipReason::ALL.into_iter().filter(|r| !reasons.contains(r)) {
        assert_eq!(skipped(text, r), 0.0, "skipped {r:?}:\n{text}");
    }
}

/// The mixed plan: three keep-alive connections of 10 small requests, one connection of 10
/// pipelined requests (3 of them chunked), one of 6 chunked requests (up to 70 kB), one of
/// three 4 MiB requests (Content-Length, chunked, Content-Length). Ids 0..49, consecutive.
fn mixed_plan() -> Vec<(Vec<Req>, bool)> {
    let mut ids = 0u64..;
    let mut next = || ids.next().expect("ids");
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(((0..10).map(|_| Req::post(next())).collect(), false));
    }
    let pipelined = (0..10)
        .map(|i| {
            let r = Req::post(next());
            if i % 3 == 1 { r.chunked() } else { r }
        })
        .collect();
    conns.push((pipelined, true));
    let chunked = [0, 1000, 5000, 70_000, 200, 0]
        .into_iter()
        .map(|len| Req::post(next()).sized(len).chunked())
        .collect();
    conns.push((chunked, false));
    let big = (0..3)
        .map(|i| {
            let r = Req::post(next()).sized(4 << 20);
            if i == 1 { r.chunked() } else { r }
        })
        .collect();
    conns.push((big, false));
    conns
}

/// Happy path ([`mixed_plan`]; production answers every 5th id with a chunked body): every
/// production request is answered, mirrored once and compared. The shadow receives exactly the
/// production request bodies (decoded: chunked framing removed), the label discrepancies are
/// exactly the ids divisible by 7, and the discrepancy log (mode 0600) holds exactly those
/// requests, flushed on SIGTERM.
#[test]
fn run_mirrors_every_request_and_logs_known_discrepancies() {
    if !require_root("run_mirrors_every_request_and_logs_known_discrepancies") {
        return;
    }
    let dir = temp_dir();
    let log = dir.path().join("discrepancies.jsonl");
    // Request bodies are logged only when asked for (the default keeps their sha256 alone).
    let config = dir.path().join("bodies.toml");
    std::fs::write(&config, "[discrepancy_log]\nbody_max_bytes = 4096\n").unwrap();
    let mut s = start(
        "rok",
        Some(Role::Shadow),
        &["--discrepancy-log", arg(&log), "--config", arg(&config)],
    );
    let plan = mixed_plan();
    let reqs: Vec<&Req> = plan.iter().flat_map(|(r, _)| r).collect();
    let n = reqs.len();
    let disagreeing: BTreeSet<u64> = reqs
        .iter()
        .map(|r| r.id)
        .filter(|&id| disagrees(id))
        .collect();
    assert_eq!((n, disagreeing.len()), (49, 7), "the plan");

    assert_eq!(
        s.drive(&plan),
        n,
        "production answered every request correctly"
    );
    assert_eq!(s.prod.seen().len(), n);
    let text = s.wait_accounted(n);

    assert_eq!(exchanges(&text, Outcome::Complete), n as f64, "{text}");
    assert_eq!(
        sum_of(&text, "shadowtap_exchanges_total"),
        n as f64,
        "{text}"
    );
    assert_eq!(
        sum_of(&text, "shadowtap_capture_dropped_total"),
        0.0,
        "{text}"
    );
    assert_eq!(mirrored(&text, MirrorResult::Ok), n as f64);
    assert_only(&text, &[MirrorResult::Ok], &[]);
    assert_eq!(
        discrepancies(&text, DiscrepancyKind::Label),
        disagreeing.len() as f64
    );
    assert_eq!(
        sum_of(&text, "shadowtap_discrepancies_total"),
        disagreeing.len() as f64,
        "{text}"
    );
    assert_eq!(sum_of(&text, "shadowtap_errors_total"), 0.0, "{text}");
    assert_eq!(
        metric(&text, "shadowtap_agreement_ratio{unit=\"request\"}"),
        (n - disagreeing.len()) as f64 / n as f64
    );
    let (status, summary) = admin::get(&s.ns, ADMIN, "/api/summary").unwrap();
    assert_eq!(status, 200);
    let summary: Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["compared"], n);
    assert_eq!(
        summary["agreement"]["request"]["agreed"],
        n - disagreeing.len()
    );
    // Both model servers are threads of this test process, listening in the namespace shadowd
    // taps: the resource monitor finds this process by their ports.
    let resources = &summary["resources"];
    for model in ["production", "shadow"] {
        assert_eq!(
            resources[model]["pids"],
            json!([std::process::id()]),
            "{resources}"
        );
        assert!(
            resources[model]["rss_bytes"].as_u64() > Some(0),
            "{resources}"
        );
    }
    assert!(
        metric(
            &text,
            "shadowtap_resource_memory_bytes{process=\"production\"}"
        ) > 0.0,
        "{text}"
    );

    // The shadow got exactly the production bodies (a multiset), decoded, each once, with the
    // production method and target, framed by Content-Length.
    let seen = s.shadow.as_ref().unwrap().seen();
    let mut got: Vec<String> = seen.iter().map(|x| x.body_sha256.clone()).collect();
    let mut sent: Vec<String> = reqs.iter().map(|r| sha256_hex(&r.body)).collect();
    let bodies: BTreeMap<String, &Req> = reqs.iter().map(|r| (sha256_hex(&r.body), *r)).collect();
    assert_eq!(
        bodies.len(),
        n,
        "distinct bodies, so a hash names its request"
    );
    got.sort_unstable();
    sent.sort_unstable();
    assert_eq!(got, sent);
    for x in &seen {
        let req = bodies[&x.body_sha256];
        assert_eq!(
            (x.method.as_str(), x.target.clone()),
            ("POST", req.target())
        );
        assert_eq!(x.id, Some(req.id));
        assert_eq!(x.header("transfer-encoding"), None, "request {}", req.id);
        assert_eq!(
            x.header("content-length"),
            Some(req.body.len().to_string().as_str())
        );
        assert_eq!(x.header("host"), Some("prod.example:8080"));
    }

    // The log is complete once the daemon has stopped.
    s.stop();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), disagreeing.len());
    let mut logged = BTreeSet::new();
    for line in &lines {
        let req = bodies[line["request"]["body_sha256"].as_str().unwrap()];
        logged.insert(req.id);
        assert_eq!(line["request"]["method"], "POST");
        assert_eq!(line["request"]["path"], req.target());
        assert_eq!(line["request"]["body_len"], req.body.len());
        // Bodies up to body_max_bytes (4096 here) are logged parsed, longer ones cut.
        let whole = req.body.len() <= 4096;
        assert_eq!(line["request"]["body_truncated"], !whole);
        if whole {
            assert_eq!(line["request"]["body"]["id"], req.id);
        }
        let flow = line["flow"].as_str().unwrap();
        assert!(flow.ends_with(" -> 127.0.0.1:8080"), "{flow}");
        assert_eq!(line["production"]["status"], 200);
        assert_eq!(line["shadow"]["status"], 200);
        assert_eq!(
            line["production"]["prediction"]["labels"],
            json!([label(req.id).to_string()])
        );
        assert_eq!(
            line["shadow"]["prediction"]["labels"],
            json!([shadow_label(req.id).to_string()])
        );
        assert_eq!(line["agreement"], false);
        assert_eq!(line["discrepancies"], json!(["label"]));
    }
    assert_eq!(logged, disagreeing);
}

/// A small plan for the failure modes: 24 requests (ids 1 to 24, every 4th chunked) on two
/// keep-alive connections and one pipelined one.
fn small_plan() -> Vec<(Vec<Req>, bool)> {
    let conn = |first: u64, pipelined: bool| {
        let reqs = (first..first + 8)
            .map(|id| {
                if id % 4 == 0 {
                    Req::post(id).chunked()
                } else {
                    Req::post(id)
                }
            })
            .collect();
        (reqs, pipelined)
    };
    vec![conn(1, false), conn(9, false), conn(17, true)]
}

/// Drives [`small_plan`] against a failing shadow and checks: production answered every
/// request; every request is accounted for as `result` or `circuit_open`, with at least
/// `min_requests` tried before the breaker opened (it stays open: `open_ms` is long); each
/// failure is an `errors_total{model="shadow",class}`; nothing is compared; the daemon is still
/// running and healthy afterwards (two more requests: production fine, both `circuit_open`),
/// and stops cleanly.
fn failing_shadow(
    tag: &str,
    role: Option<Role>,
    extra: &[&str],
    result: MirrorResult,
    class: ErrorClass,
) {
    let dir = temp_dir();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[circuit_breaker]\nopen_ms = 600000\n").unwrap();
    let mut args = vec!["--config", arg(&config)];
    args.extend_from_slice(extra);
    let mut s = start(tag, role, &args);
    let plan = small_plan();
    let n = plan.iter().map(|(r, _)| r.len()).sum::<usize>();
    assert_eq!(
        s.drive(&plan),
        n,
        "production answered every request correctly"
    );
    assert_eq!(s.prod.seen().len(), n);
    let text = s.wait_accounted(n);

    let failed = mirrored(&text, result);
    let circuit_open = skipped(&text, SkipReason::CircuitOpen);
    println!("{tag}: {failed} {result:?}, {circuit_open} circuit_open of {n}");
    assert_eq!(failed + circuit_open, n as f64, "{text}");
    assert!(
        failed >= MIN_REQUESTS,
        "{failed} {result:?} before the breaker opened:\n{text}"
    );
    assert_only(&text, &[result], &[SkipReason::CircuitOpen]);
    assert_eq!(
        metric(&text, "shadowtap_circuit_state"),
        1.0,
        "breaker open:\n{text}"
    );
    assert_eq!(errors(&text, Model::Shadow, class), failed, "{text}");
    assert_eq!(sum_of(&text, "shadowtap_errors_total"), failed, "{text}");
    assert_eq!(
        sum_of(&text, "shadowtap_discrepancies_total"),
        0.0,
        "{text}"
    );
    assert_eq!(exchanges(&text, Outcome::Complete), n as f64);
    if let Some(shadow) = &s.shadow {
        // Only admitted requests reach the shadow, each at most once.
        assert!(shadow.seen().len() as f64 <= failed, "{:?}", shadow.seen());
    }

    // Still running and healthy; production still fine with the breaker open.
    admin::assert_running(&mut s.daemon);
    assert_eq!(
        admin::get(&s.ns, ADMIN, "/healthz").unwrap(),
        (200, "ok\n".into())
    );
    let more = vec![(vec![Req::post(100), Req::post(101)], false)];
    assert_eq!(s.drive(&more), 2);
    let text = s.wait_accounted(n + 2);
    assert_eq!(
        skipped(&text, SkipReason::CircuitOpen),
        n as f64 - failed + 2.0,
        "{text}"
    );
    s.stop();
}

/// Shadow down (nothing listens on its port): connect errors, then the breaker opens.
#[test]
fn run_with_shadow_down_counts_connect_errors() {
    if require_root("run_with_shadow_down_counts_connect_errors") {
        failing_shadow(
            "rdn",
            None,
            &[],
            MirrorResult::ConnectError,
            ErrorClass::Connect,
        );
    }
}

/// Shadow accepts and reads but never answers: every replay ends at `--timeout-ms`, counted as
/// a timeout, then the breaker opens.
#[test]
fn run_with_hanging_shadow_counts_timeouts() {
    if require_root("run_with_hanging_shadow_counts_timeouts") {
        failing_shadow(
            "rhg",
            Some(Role::Hang),
            &["--timeout-ms", "300"],
            MirrorResult::Timeout,
            ErrorClass::Timeout,
        );
    }
}

/// Shadow answers bytes that are not HTTP: protocol errors, then the breaker opens.
#[test]
fn run_with_garbage_shadow_counts_protocol_errors() {
    if require_root("run_with_garbage_shadow_counts_protocol_errors") {
        failing_shadow(
            "rgb",
            Some(Role::Garbage),
            &[],
            MirrorResult::ProtocolError,
            ErrorClass::Protocol,
        );
    }
}

/// PUT and DELETE are not mirrored by default: counted as `filtered`, never sent to the shadow;
/// the POSTs around them are mirrored.
#[test]
fn run_does_not_mirror_put_or_delete_by_default() {
    if !require_root("run_does_not_mirror_put_or_delete_by_default") {
        return;
    }
    let mut s = start("rfl", Some(Role::Shadow), &[]);
    let methods = ["POST", "PUT", "DELETE", "POST", "PUT", "DELETE", "POST"];
    // Ids the shadow agrees on.
    let reqs: Vec<Req> = [1, 2, 3, 4, 5, 6, 8]
        .into_iter()
        .zip(methods)
        .map(|(id, m)| Req::post(id).method(m))
        .collect();
    assert_eq!(s.drive(&[(reqs.clone(), false)]), reqs.len());
    let text = s.wait_accounted(reqs.len());
    assert_eq!(mirrored(&text, MirrorResult::Ok), 3.0, "{text}");
    assert_eq!(skipped(&text, SkipReason::Filtered), 4.0, "{text}");
    assert_only(&text, &[MirrorResult::Ok], &[SkipReason::Filtered]);
    assert_eq!(
        sum_of(&text, "shadowtap_discrepancies_total"),
        0.0,
        "{text}"
    );
    let seen = s.shadow.as_ref().unwrap().seen();
    let mut got: Vec<(String, Option<u64>)> =
        seen.iter().map(|x| (x.method.clone(), x.id)).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("POST".into(), Some(1)),
            ("POST".into(), Some(4)),
            ("POST".into(), Some(8))
        ]
    );
    s.stop();
}

/// IPv6 and `Expect: 100-continue`: production also listens on `[::1]:8080`; requests over
/// IPv6 (keep-alive and pipelined) and requests whose body follows a `100 Continue` (over both
/// families, up to 4 MiB) are all mirrored, with the decoded bodies, and compared.
#[test]
fn run_mirrors_ipv6_and_expect_continue() {
    if !require_root("run_mirrors_ipv6_and_expect_continue") {
        return;
    }
    let mut s = start("r6e", Some(Role::Shadow), &[]);
    let prod6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, PROD.port()));
    let _prod6 = ModelServer::start(
        s.ns.run(|| TcpListener::bind(prod6)).unwrap(),
        Role::Production,
    )
    .unwrap();
    let v6 = vec![
        (
            vec![
                Req::post(100),
                Req::post(101).chunked(),
                Req::post(102).sized(200_000).expect_continue(),
                Req::post(103).sized(5000).chunked().expect_continue(),
            ],
            false,
        ),
        ((104..109).map(Req::post).collect(), true),
    ];
    let v4 = vec![(
        vec![
            Req::post(109).expect_continue(),
            Req::post(110).sized(4 << 20).expect_continue(),
            Req::post(111).sized(70_000).chunked().expect_continue(),
            Req::post(112),
        ],
        false,
    )];
    let reqs: Vec<&Req> = v6.iter().chain(&v4).flat_map(|(r, _)| r).collect();
    let n = reqs.len();
    let disagreeing = reqs.iter().filter(|r| disagrees(r.id)).count();
    assert_eq!((n, disagreeing), (13, 2), "the plan: ids 105 and 112");
    let answered = std::thread::scope(|scope| {
        let v6 = scope.spawn(|| s.drive_to(prod6, &v6));
        s.drive(&v4) + v6.join().unwrap()
    });
    assert_eq!(answered, n, "production answered every request correctly");
    let text = s.wait_accounted(n);
    assert_eq!(mirrored(&text, MirrorResult::Ok), n as f64, "{text}");
    assert_only(&text, &[MirrorResult::Ok], &[]);
    assert_eq!(exchanges(&text, Outcome::Complete), n as f64);
    assert_eq!(
        discrepancies(&text, DiscrepancyKind::Label),
        disagreeing as f64
    );
    assert_eq!(
        sum_of(&text, "shadowtap_discrepancies_total"),
        disagreeing as f64,
        "{text}"
    );
    let seen = s.shadow.as_ref().unwrap().seen();
    let mut got: Vec<(Option<u64>, String)> =
        seen.iter().map(|x| (x.id, x.body_sha256.clone())).collect();
    let mut sent: Vec<(Option<u64>, String)> = reqs
        .iter()
        .map(|r| (Some(r.id), sha256_hex(&r.body)))
        .collect();
    got.sort();
    sent.sort();
    assert_eq!(got, sent);
    for x in &seen {
        assert_eq!(
            x.header("expect"),
            None,
            "Expect is not forwarded to the shadow"
        );
    }
    s.stop();
}

/// SIGTERM while replays hang at a shadow that never answers: the daemon still stops cleanly
/// (in-flight replays end at their timeout, exit code 0), and production was never affected.
#[test]
fn run_stops_cleanly_with_replays_in_flight() {
    if !require_root("run_stops_cleanly_with_replays_in_flight") {
        return;
    }
    // As soon as possible: all twelve in flight at once, whatever production's concurrency was.
    let args = ["--timeout-ms", "3000", "--pacing", "asap"];
    let mut s = start("rsi", Some(Role::Hang), &args);
    let plan = vec![
        ((1..7).map(Req::post).collect(), false),
        ((8..14).map(Req::post).collect(), true),
    ];
    assert_eq!(
        s.drive(&plan),
        12,
        "production answered every request correctly"
    );
    // Bounded wait until every replay is in flight at the shadow.
    let shadow = s.shadow.as_ref().unwrap();
    for _ in 0..600 {
        if shadow.seen().len() == 12 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(shadow.seen().len(), 12, "{}", s.daemon.output());
    let (_, text) = admin::get(&s.ns, ADMIN, "/metrics").unwrap();
    s.stop();
    assert_eq!(exchanges(&text, Outcome::Complete), 12.0, "{text}");
    let out = s.daemon.output();
    assert!(out.contains("stopped exchanges=12 replayed=12"), "{out}");
}

/// A shadow that never answers, one replay at a time, a queue of 1, no breaker: requests beyond
/// what is in flight or queued are dropped as `queue_full` (capture and production never wait),
/// the others time out; together they account for every request.
#[test]
fn run_with_full_queue_drops_and_counts() {
    if !require_root("run_with_full_queue_drops_and_counts") {
        return;
    }
    let dir = temp_dir();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[circuit_breaker]\nenabled = false\n").unwrap();
    let args = [
        "--config",
        arg(&config),
        "--queue",
        "1",
        "--concurrency",
        "1",
        "--timeout-ms",
        "2000",
    ];
    let mut s = start("rqf", Some(Role::Hang), &args);
    let plan = vec![((1..13).map(Req::post).collect(), true)];
    assert_eq!(
        s.drive(&plan),
        12,
        "production answered every request correctly"
    );
    let text = s.wait_accounted(12);
    let timeouts = mirrored(&text, MirrorResult::Timeout);
    let full = skipped(&text, SkipReason::QueueFull);
    println!("rqf: {timeouts} timeout, {full} queue_full of 12");
    assert_eq!(timeouts + full, 12.0, "{text}");
    // The 12 exchanges of one pipelined burst reach the mirror within far less than the 2 s
    // timeout, and until the first replay times out at most 3 are taken: 1 in flight, 1 waiting
    // for the concurrency permit, 1 queued.
    assert!((1.0..=3.0).contains(&timeouts) && full >= 1.0, "{text}");
    assert_only(&text, &[MirrorResult::Timeout], &[SkipReason::QueueFull]);
    assert_eq!(
        metric(&text, "shadowtap_circuit_state"),
        0.0,
        "breaker disabled"
    );
    assert!(s.shadow.as_ref().unwrap().seen().len() as f64 <= timeouts);
    admin::assert_running(&mut s.daemon);
    s.stop();
}
