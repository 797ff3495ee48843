//! The decision end to end, as a user runs it: the real `shadowd run` taps `lo` of a throw-away
//! network namespace with the real eBPF program, in front of a production classifier (port
//! 8080) and a shadow classifier (port 8081) whose accuracies the test chose (see
//! [`shadowtap_tests::classifier`]: the true class of input `x` is `x mod 3`; production is
//! wrong exactly on `x ≡ 0 (mod 5)`, i.e. right on 80 %; the better shadow is wrong exactly on
//! `x ≡ 1 (mod 20)`, right on 95 %; the worse one on odd `x`, right on 50 %). Every request
//! carries `x-request-id: req-<x>`; the ground truth is posted to `POST /api/labels`, and the
//! real `shadowd verdict` binary judges the running daemon (`--from`) or its state file
//! (`--state`) by its exit code.
//!
//! Expected values come from that plan, never from the code under test. Waits poll the admin
//! API until a condition holds, bounded in time; the assertions are on outcomes and counts
//! only (the one sleep, in the late-label tests, only makes labels arrive later).
//!
//! Needs root; skipped (with a message) otherwise.

use serde_json::Value;
use shadowtap_tests::admin::{self, labelled, metric};
use shadowtap_tests::classifier::{Classifier, ClassifierServer, drive, label_lines, request_id};
use shadowtap_tests::netns::NetNs;
use shadowtap_tests::require_root;
use shadowtap_tests::shadowd::{self, Daemon, Finished};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Production and shadow classifiers and the admin address, all on `lo` of the test's
/// namespace.
const PROD: SocketAddr = local(8080);
const SHADOW: SocketAddr = local(8081);
const ADMIN: SocketAddr = local(9464);
/// Production's accuracy in every test.
const PRODUCTION: Classifier = Classifier::RIGHT_80;
/// Concurrent keep-alive client connections the requests are spread over.
const CONNECTIONS: u64 = 4;
/// Bound on a `shadowd verdict` run (it has its own 10 s network timeouts).
const VERDICT_LIMIT: Duration = Duration::from_secs(30);

/// The criteria of the verdict tests.
///
/// With 200 requests (inputs 0..200) and every label posted, production is right on 160 and
/// wrong on the 40 multiples of 5. The better shadow is wrong on the 10 inputs ≡ 1 (mod 20),
/// never where production is: paired counts both right 150, production only 10, shadow only
/// 40, neither 0; accuracy difference shadow − production = (40 − 10) / 200 = +0.15. Newcombe's
/// paired interval is built from the Wilson intervals of 160/200 (0.7391, 0.8495) and 190/200
/// (0.9104, 0.9726) with φ = (150·0 − 10·40) / √(160·40·190·10) = −0.115: lower bound
/// 0.15 − √(0.0396² + 2·0.115·0.0396·0.0495 + 0.0495²) ≈ +0.083 ≥ −0.02 → pass. The worse
/// shadow is wrong on the 100 odd inputs, 20 of them (≡ 5 mod 10) where production is too:
/// both right 80, production only 80, shadow only 20, neither 20; difference (20 − 80) / 200
/// = −0.30, φ = 0, interval ≈ (−0.385, −0.208), whose upper bound is below −0.02 → fail.
/// Neither model ever errs: error rates 0/200 and 0/200, difference 0 with interval
/// ±(Wilson upper bound of 0/200 = 1.96² / (200 + 1.96²) = 0.0188), within 0.05 → pass.
/// With 20 requests, `min_samples` and `min_labeled` are not reached: every criterion is
/// not-enough-data and the verdict holds.
const CRITERIA: &str = "min_samples = 200\nmin_labeled = 200\naccuracy_margin = 0.02\n\
                        max_error_rate_delta = 0.05\n";

const fn local(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// A path as a command-line argument.
fn arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

/// A namespace with both classifiers serving, and the files of one test.
struct Setup {
    ns: NetNs,
    dir: TempDir,
    _prod: ClassifierServer,
    shadow: ClassifierServer,
    /// The daemons' admin token (`POST /api/labels` needs it) and its file.
    token: String,
    token_file: PathBuf,
}

impl Setup {
    /// Starts production ([`PRODUCTION`]) and the shadow (`shadow`) in a fresh namespace.
    fn new(tag: &str, shadow: Classifier) -> Setup {
        let ns = NetNs::new(tag).expect("netns");
        let listen = |addr| ns.run(|| TcpListener::bind(addr)).expect("bind");
        let prod = ClassifierServer::start(listen(PROD), PRODUCTION).expect("production");
        let shadow = ClassifierServer::start(listen(SHADOW), shadow).expect("shadow");
        let dir = tempfile::tempdir().expect("temporary directory");
        let (token_file, token) = admin::token_file(dir.path());
        Setup {
            ns,
            dir,
            _prod: prod,
            shadow,
            token,
            token_file,
        }
    }

    /// Writes `text` to the file `name` of the test's directory.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write a test file");
        path
    }

    /// Starts `shadowd run --preset kserve-v2 --admin-token-file <the token> <extra>`; returns
    /// once the tap is attached.
    fn daemon(&self, admin: SocketAddr, extra: &[&str]) -> Daemon {
        let mut args = vec![
            "--preset",
            "kserve-v2",
            "--admin-token-file",
            arg(&self.token_file),
        ];
        args.extend_from_slice(extra);
        admin::run_daemon(&self.ns, PROD, SHADOW, admin, &args)
    }

    /// Sends the requests for `xs` to production; returns once `/api/summary` has compared
    /// `compared` requests in all (exactly).
    fn traffic(&self, daemon: &mut Daemon, admin: SocketAddr, xs: Range<u64>, compared: u64) {
        let n = (xs.end - xs.start) as usize;
        assert_eq!(drive(&self.ns, PROD, xs, CONNECTIONS, PRODUCTION), n);
        let summary = admin::wait_summary(&self.ns, daemon, admin, "every request compared", |s| {
            s["compared"].as_u64() >= Some(compared)
        });
        assert_eq!(summary["compared"], compared, "nothing compared twice");
    }

    /// `POST /api/labels` to the daemon with the token (see [`admin::post_labels`]).
    fn post_labels(&self, daemon: &Daemon, lines: &str) -> Value {
        admin::post_labels(&self.ns, daemon, ADMIN, &self.token, lines)
    }

    /// Runs `shadowd verdict <args>` inside the namespace.
    fn verdict(&self, args: &[&str]) -> Finished {
        let mut full = vec!["verdict"];
        full.extend_from_slice(args);
        shadowd::run_to_end(Some(&self.ns), &full, VERDICT_LIMIT).expect("shadowd verdict")
    }
}

/// Labeled rows in a summary's `measurements` (0 before the first label is judged).
fn labeled(measurements: &Value) -> u64 {
    let c = &measurements["correctness"];
    ["both", "first_only", "second_only", "neither"]
        .iter()
        .filter_map(|k| c[k].as_u64())
        .sum()
}

/// Waits until the daemon's decision loop has judged `samples` comparisons and `labels` labeled
/// rows (it judges once a second; `shadowd verdict --from` reads what it judged last).
fn wait_judged(s: &Setup, daemon: &mut Daemon, samples: u64, labels: u64) -> Value {
    admin::wait_summary(&s.ns, daemon, ADMIN, "the labels judged", |v| {
        let m = &v["measurements"];
        m["samples"].as_u64() == Some(samples) && labeled(m) == labels
    })
}

/// The entry of `criterion` for all traffic in a verdict's JSON.
fn criterion<'a>(verdict: &'a Value, criterion: &str) -> &'a Value {
    verdict["criteria"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|c| c["criterion"] == criterion && c.get("segment").is_none())
        })
        .unwrap_or_else(|| panic!("no {criterion} in {verdict:#}"))
}

/// Whether two numbers from JSON are equal up to float rounding.
fn close(v: &Value, expected: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - expected).abs() < 1e-9)
}

/// One verdict scenario: `n` requests (inputs 0..n) against `shadow`, every label posted, the
/// daemon judging [`CRITERIA`]; returns the setup, the running daemon and what
/// `shadowd verdict --from --criteria --json` said.
fn judged(tag: &str, shadow: Classifier, n: u64) -> (Setup, Daemon, Finished, Value) {
    let s = Setup::new(tag, shadow);
    let criteria = s.file("criteria.toml", CRITERIA);
    let mut daemon = s.daemon(ADMIN, &["--criteria", arg(&criteria)]);
    s.traffic(&mut daemon, ADMIN, 0..n, n);
    assert_eq!(s.shadow.served(), n as usize, "each request replayed once");
    let report = s.post_labels(&daemon, &label_lines(0..n));
    assert_eq!(report["joined"], n, "{report}");
    assert_eq!(report["unknown"], 0, "{report}");
    let summary = wait_judged(&s, &mut daemon, n, n);
    assert_eq!(summary["ground_truth"]["labeled_requests"], n);
    let from = format!("http://{ADMIN}");
    let out = s.verdict(&["--from", &from, "--criteria", arg(&criteria), "--json"]);
    let verdict: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("verdict --json printed no JSON ({e}): {out:?}"));
    (s, daemon, out, verdict)
}

/// Shadow better (95 % vs 80 %, 200 labeled requests): `shadowd verdict --from` exits 0
/// (PROMOTE) with the accuracy difference +0.15 passing; the daemon's own verdict, exported as
/// metrics for Flagger / Argo Rollouts, is PROMOTE with `accuracy_margin` passing; both models'
/// quality against the truth and McNemar's discordant pairs are the plan's.
#[test]
fn shadow_better_is_promoted_and_exported() {
    if !require_root("shadow_better_is_promoted_and_exported") {
        return;
    }
    let (s, mut daemon, out, verdict) = judged("dpr", Classifier::RIGHT_95, 200);
    assert_eq!(out.code, Some(0), "PROMOTE: {out:?}");
    assert_eq!(verdict["decision"], "PROMOTE", "{verdict:#}");
    let accuracy = criterion(&verdict, "accuracy_margin");
    assert_eq!(accuracy["status"], "pass", "{accuracy}");
    assert!(close(&accuracy["measured"], 0.15), "{accuracy}");
    assert!(close(&accuracy["threshold"], -0.02), "{accuracy}");
    assert!(
        accuracy["interval"]["lo"].as_f64() > Some(-0.02),
        "{accuracy}"
    );
    for name in ["min_samples", "min_labeled"] {
        let c = criterion(&verdict, name);
        assert_eq!(
            (c["status"].as_str(), c["measured"].as_f64()),
            (Some("pass"), Some(200.0))
        );
    }
    let errors = criterion(&verdict, "max_error_rate_delta");
    assert_eq!(errors["status"], "pass", "{errors}");
    assert!(close(&errors["measured"], 0.0), "{errors}");

    // Quality against the truth: production 160/200, shadow 190/200, on the same rows.
    let (_, summary) = admin::get(&s.ns, ADMIN, "/api/summary").unwrap();
    let summary: Value = serde_json::from_str(&summary).unwrap();
    let truth = &summary["ground_truth"];
    let accuracy_of = |model: &str| truth[model]["classification"]["accuracy"]["value"].clone();
    assert!(close(&accuracy_of("production"), 0.8), "{truth:#}");
    assert!(close(&accuracy_of("shadow"), 0.95), "{truth:#}");
    let paired = &truth["paired"];
    let counts = ["both", "first_only", "second_only", "neither"].map(|k| paired[k].as_u64());
    assert_eq!(
        counts,
        [Some(150), Some(10), Some(40), Some(0)],
        "{truth:#}"
    );
    assert_eq!(
        (
            truth["mcnemar"]["b"].as_u64(),
            truth["mcnemar"]["c"].as_u64()
        ),
        (Some(10), Some(40))
    );
    assert!(
        close(&truth["accuracy_difference"]["value"], 0.15),
        "{truth:#}"
    );
    assert_eq!(summary["labels"]["waiting"], 0, "every request labeled");

    // The daemon's own verdict (judged once a second, so it may trail the labels by one round)
    // and its metrics.
    admin::wait_summary(&s.ns, &mut daemon, ADMIN, "the daemon's verdict", |v| {
        v["verdict"]["decision"] == "PROMOTE"
    });
    let (status, api) = admin::get(&s.ns, ADMIN, "/api/verdict").unwrap();
    assert_eq!(status, 200, "{api}");
    let api: Value = serde_json::from_str(&api).unwrap();
    assert_eq!(api["decision"], "PROMOTE", "{api:#}");
    let text = admin::wait_metrics(&s.ns, &mut daemon, ADMIN, "the verdict metrics", |t| {
        metric(t, "shadowtap_verdict{decision=\"PROMOTE\"}") == 1.0
    });
    assert_eq!(
        metric(&text, "shadowtap_verdict{decision=\"HOLD\"}"),
        0.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "shadowtap_verdict{decision=\"REJECT\"}"),
        0.0,
        "{text}"
    );
    let status_of = |name: &str| {
        labelled(
            &text,
            "shadowtap_criterion_status",
            &[("criterion", name), ("segment", "all")],
        )
    };
    for name in [
        "accuracy_margin",
        "min_samples",
        "min_labeled",
        "max_error_rate_delta",
    ] {
        assert_eq!(status_of(name), 1.0, "{name}:\n{text}");
    }
    assert_eq!(
        metric(
            &text,
            "shadowtap_criterion_measured{criterion=\"min_labeled\",segment=\"all\"}"
        ),
        200.0,
        "{text}"
    );
    assert!((metric(&text, "shadowtap_accuracy{model=\"production\"}") - 0.8).abs() < 1e-9);
    assert!((metric(&text, "shadowtap_accuracy{model=\"shadow\"}") - 0.95).abs() < 1e-9);
    assert_eq!(
        metric(&text, "shadowtap_labels_total{result=\"joined\"}"),
        200.0
    );
    assert_eq!(metric(&text, "shadowtap_labels_waiting"), 0.0, "{text}");
    // McNemar on 10 vs 40 discordant pairs: far below 0.05.
    assert!(metric(&text, "shadowtap_mcnemar_p_value") < 0.001, "{text}");
    stop(&mut daemon);
}

/// Shadow worse (50 % vs 80 %): `shadowd verdict --from` exits 4 (REJECT), the accuracy
/// difference −0.30 failing; the daemon exports REJECT and the failing criterion.
#[test]
fn shadow_worse_is_rejected() {
    if !require_root("shadow_worse_is_rejected") {
        return;
    }
    let (s, mut daemon, out, verdict) = judged("drj", Classifier::RIGHT_50, 200);
    assert_eq!(out.code, Some(4), "REJECT: {out:?}");
    assert_eq!(verdict["decision"], "REJECT", "{verdict:#}");
    let accuracy = criterion(&verdict, "accuracy_margin");
    assert_eq!(accuracy["status"], "fail", "{accuracy}");
    assert!(close(&accuracy["measured"], -0.30), "{accuracy}");
    assert!(
        accuracy["interval"]["hi"].as_f64() < Some(-0.02),
        "{accuracy}"
    );
    // Nothing else fails: the rejection is the accuracy's.
    let failing: Vec<&Value> = verdict["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .collect();
    assert_eq!(failing, vec![accuracy], "{verdict:#}");
    let (_, summary) = admin::get(&s.ns, ADMIN, "/api/summary").unwrap();
    let summary: Value = serde_json::from_str(&summary).unwrap();
    let paired = &summary["ground_truth"]["paired"];
    let counts = ["both", "first_only", "second_only", "neither"].map(|k| paired[k].as_u64());
    assert_eq!(counts, [Some(80), Some(80), Some(20), Some(20)], "{paired}");
    let text = admin::wait_metrics(&s.ns, &mut daemon, ADMIN, "the verdict metrics", |t| {
        metric(t, "shadowtap_verdict{decision=\"REJECT\"}") == 1.0
    });
    assert_eq!(
        metric(&text, "shadowtap_verdict{decision=\"PROMOTE\"}"),
        0.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "shadowtap_criterion_status{criterion=\"accuracy_margin\",segment=\"all\"}"
        ),
        -1.0,
        "{text}"
    );
    stop(&mut daemon);
}

/// Too few samples (20 requests, all labeled, with `min_samples = 200`): `shadowd verdict
/// --from` exits 3 (HOLD), every criterion not-enough-data, though the shadow is better.
#[test]
fn too_few_samples_hold() {
    if !require_root("too_few_samples_hold") {
        return;
    }
    let (s, mut daemon, out, verdict) = judged("dho", Classifier::RIGHT_95, 20);
    assert_eq!(out.code, Some(3), "HOLD: {out:?}");
    assert_eq!(verdict["decision"], "HOLD", "{verdict:#}");
    let all = verdict["criteria"].as_array().unwrap();
    assert_eq!(all.len(), 4, "{verdict:#}");
    assert!(
        all.iter().all(|c| c["status"] == "not_enough_data"),
        "{verdict:#}"
    );
    assert_eq!(criterion(&verdict, "min_samples")["measured"], 20.0);
    assert_eq!(criterion(&verdict, "min_labeled")["measured"], 20.0);
    // The table (without --json) says the same, with the same exit code.
    let from = format!("http://{ADMIN}");
    let criteria = s.dir.path().join("criteria.toml");
    let table = s.verdict(&["--from", &from, "--criteria", arg(&criteria)]);
    assert_eq!(table.code, Some(3), "{table:?}");
    assert!(table.stdout.ends_with("verdict: HOLD\n"), "{table:?}");
    stop(&mut daemon);
}

/// SIGTERM: the daemon stops cleanly (exit 0).
fn stop(daemon: &mut Daemon) {
    let status = daemon.stop(Duration::from_secs(30)).unwrap();
    assert!(
        status.success(),
        "shadowd run stopped with {status}:\n{}",
        daemon.output()
    );
}

/// Labels posted seconds after their requests were compared (well within the default hour's
/// wait) are joined and scored; labels for ids never seen are counted as unknown (in the
/// answer, the summary and `shadowtap_labels_total{result="unknown"}`), and a second label for
/// an already labeled request as a duplicate; none of them is scored.
#[test]
fn late_labels_are_joined_and_unknown_ids_counted() {
    if !require_root("late_labels_are_joined_and_unknown_ids_counted") {
        return;
    }
    let s = Setup::new("dlj", Classifier::RIGHT_95);
    let mut daemon = s.daemon(ADMIN, &[]);
    let n = 40;
    s.traffic(&mut daemon, ADMIN, 0..n, n);
    let waiting = admin::wait_summary(&s.ns, &mut daemon, ADMIN, "every request waiting", |v| {
        v["labels"]["waiting"] == n
    });
    assert_eq!(waiting["ground_truth"]["labeled_requests"], 0);
    // The ground truth comes later than the answers.
    std::thread::sleep(Duration::from_secs(3));
    let unknown = 6;
    let mut lines = label_lines(0..n);
    lines.push_str(&label_lines(1000..1000 + unknown));
    // Ground truth needs the admin token, also on loopback: without it, nothing is joined.
    for bearer in [None, Some("not-the-token-0123456789")] {
        let (status, _) = admin::post(&s.ns, ADMIN, "/api/labels", &lines, bearer).unwrap();
        assert_eq!(status, 401, "{bearer:?}");
    }
    let report = s.post_labels(&daemon, &lines);
    assert_eq!(report["joined"], n, "{report}");
    assert_eq!(report["unknown"], unknown, "{report}");
    assert_eq!(
        (report["late"].as_u64(), report["malformed"].as_u64()),
        (Some(0), Some(0))
    );
    let again = format!("{{\"id\": \"{}\", \"label\": 0}}\n", request_id(3));
    let report = s.post_labels(&daemon, &again);
    assert_eq!(report["duplicate"], 1, "{report}");

    let (_, summary) = admin::get(&s.ns, ADMIN, "/api/summary").unwrap();
    let summary: Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(
        summary["ground_truth"]["labeled_requests"], n,
        "{summary:#}"
    );
    // Inputs 0..40: production wrong on the 8 multiples of 5, the shadow on 1, 21.
    let truth = &summary["ground_truth"];
    assert!(close(
        &truth["production"]["classification"]["accuracy"]["value"],
        32.0 / 40.0
    ));
    assert!(close(
        &truth["shadow"]["classification"]["accuracy"]["value"],
        38.0 / 40.0
    ));
    let labels = &summary["labels"];
    assert_eq!(labels["enabled"], true);
    assert_eq!(labels["waiting"], 0, "{labels:#}");
    let join = &labels["counters"]["join"];
    assert_eq!(join["joined"], n, "{labels:#}");
    assert_eq!(join["unknown_labels"], unknown, "{labels:#}");
    assert_eq!(join["duplicate_labels"], 1, "{labels:#}");
    assert_eq!(
        (join["expired"].as_u64(), join["late_labels"].as_u64()),
        (Some(0), Some(0))
    );

    let text = admin::wait_metrics(&s.ns, &mut daemon, ADMIN, "labels waiting 0", |t| {
        metric(t, "shadowtap_labels_waiting") == 0.0
    });
    let result = |r| metric(&text, &format!("shadowtap_labels_total{{result=\"{r}\"}}"));
    assert_eq!(result("joined"), n as f64, "{text}");
    assert_eq!(result("unknown"), unknown as f64, "{text}");
    assert_eq!(result("duplicate"), 1.0, "{text}");
    assert_eq!(result("late"), 0.0, "{text}");
    assert_eq!(
        metric(
            &text,
            "shadowtap_labels_unlabeled_total{reason=\"expired\"}"
        ),
        0.0,
        "{text}"
    );
    stop(&mut daemon);
}

/// With `[ground_truth] max_wait_ms = 1000`, requests whose label has not come within a second
/// stop waiting (`shadowtap_labels_unlabeled_total{reason="expired"}`), and their labels,
/// posted 3 s after the traffic, are `late`: counted, not scored.
#[test]
fn labels_after_the_wait_are_late_and_requests_expire() {
    if !require_root("labels_after_the_wait_are_late_and_requests_expire") {
        return;
    }
    let s = Setup::new("dlt", Classifier::RIGHT_95);
    let config = s.file("config.toml", "[ground_truth]\nmax_wait_ms = 1000\n");
    let mut daemon = s.daemon(ADMIN, &["--config", arg(&config)]);
    let n = 30;
    s.traffic(&mut daemon, ADMIN, 0..n, n);
    let sent = Instant::now();
    let text = admin::wait_metrics(&s.ns, &mut daemon, ADMIN, "every request expired", |t| {
        metric(t, "shadowtap_labels_unlabeled_total{reason=\"expired\"}") >= n as f64
    });
    assert_eq!(
        metric(
            &text,
            "shadowtap_labels_unlabeled_total{reason=\"expired\"}"
        ),
        n as f64,
        "{text}"
    );
    assert_eq!(metric(&text, "shadowtap_labels_waiting"), 0.0, "{text}");
    std::thread::sleep(Duration::from_secs(3).saturating_sub(sent.elapsed()));

    let report = s.post_labels(&daemon, &label_lines(0..n));
    assert_eq!(report["late"], n, "{report}");
    assert_eq!(
        (report["joined"].as_u64(), report["unknown"].as_u64()),
        (Some(0), Some(0))
    );
    let (_, summary) = admin::get(&s.ns, ADMIN, "/api/summary").unwrap();
    let summary: Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(
        summary["ground_truth"]["labeled_requests"], 0,
        "{summary:#}"
    );
    let join = &summary["labels"]["counters"]["join"];
    assert_eq!(join["expired"], n, "{join}");
    assert_eq!(join["late_labels"], n, "{join}");
    assert_eq!(join["joined"], 0, "{join}");
    let (_, text) = admin::get(&s.ns, ADMIN, "/metrics").unwrap();
    assert_eq!(
        metric(&text, "shadowtap_labels_total{result=\"late\"}"),
        n as f64,
        "{text}"
    );
    assert_eq!(
        metric(&text, "shadowtap_labels_total{result=\"joined\"}"),
        0.0,
        "{text}"
    );
    stop(&mut daemon);
}

/// `shadowd run --state FILE` saves its aggregates while it runs (every `state.interval_ms`)
/// and at stop; `shadowd verdict --state FILE` judges them without a daemon (samples and
/// labeled rows = what was compared and labeled); a restart with the same file continues the
/// counts: after `n` + `m` requests, `compared` = n + m, with the first run's labels carried.
#[test]
fn state_survives_a_restart() {
    if !require_root("state_survives_a_restart") {
        return;
    }
    let s = Setup::new("dst", Classifier::RIGHT_95);
    let config = s.file("config.toml", "[state]\ninterval_ms = 200\n");
    // Never reached: the verdict holds and reports what it measured.
    let criteria = s.file("criteria.toml", "min_samples = 1000\nmin_labeled = 1000\n");
    let state = s.dir.path().join("state.json");
    let run_args = ["--config", arg(&config), "--state", arg(&state)];
    let (n, m) = (30, 20);

    let mut first = s.daemon(ADMIN, &run_args);
    s.traffic(&mut first, ADMIN, 0..n, n);
    let report = s.post_labels(&first, &label_lines(0..n));
    assert_eq!(report["joined"], n, "{report}");
    // Saved while running (bounded wait), not only at stop.
    let deadline = Instant::now() + admin::WAIT;
    while !state.exists() && Instant::now() < deadline {
        admin::assert_running(&mut first);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        state.exists(),
        "no state file while running:\n{}",
        first.output()
    );
    stop(&mut first);
    assert!(state.exists());

    let judge = || {
        let out = s.verdict(&[
            "--state",
            arg(&state),
            "--criteria",
            arg(&criteria),
            "--json",
        ]);
        assert_eq!(out.code, Some(3), "HOLD: {out:?}");
        let v: Value = serde_json::from_str(&out.stdout).expect("verdict JSON");
        let measured = |name| criterion(&v, name)["measured"].as_f64();
        (measured("min_samples"), measured("min_labeled"))
    };
    assert_eq!(judge(), (Some(n as f64), Some(n as f64)));

    let mut second = s.daemon(ADMIN, &run_args);
    let resumed = admin::wait_summary(&s.ns, &mut second, ADMIN, "the resumed counts", |v| {
        v["compared"].as_u64().is_some()
    });
    assert_eq!(resumed["compared"], n, "resumed before any traffic");
    s.traffic(&mut second, ADMIN, n..n + m, n + m);
    let (_, summary) = admin::get(&s.ns, ADMIN, "/api/summary").unwrap();
    let summary: Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["compared"], n + m, "{summary:#}");
    assert_eq!(
        summary["ground_truth"]["labeled_requests"], n,
        "carried over"
    );
    assert_eq!(summary["labels"]["counters"]["join"]["joined"], n);
    assert_eq!(summary["labels"]["waiting"], m, "the new requests wait");
    let report = s.post_labels(&second, &label_lines(n..n + m));
    assert_eq!(report["joined"], m, "{report}");
    let summary = wait_judged(&s, &mut second, n + m, n + m);
    assert_eq!(summary["ground_truth"]["labeled_requests"], n + m);
    assert_eq!(summary["labels"]["counters"]["join"]["joined"], n + m);
    stop(&mut second);
    assert_eq!(judge(), (Some((n + m) as f64), Some((n + m) as f64)));
}

/// A reverse-shadow run after a bad promotion: production now serves the new model (right on
/// 80 %), the shadow is the old one (right on 95 %). Judged with the roles swapped back, the
/// new model is 0.15 less accurate than the old (interval entirely below −0.02, the
/// arithmetic of [`CRITERIA`] with the models exchanged), so the `accuracy_margin` trigger fails
/// on every verdict, once a second. With a one-hour cooldown the command (`/usr/bin/tee -a`,
/// run without a shell, the firing JSON on stdin) runs exactly once; the later failing
/// verdicts are counted as suppressed.
#[test]
fn a_rollback_trigger_fires_its_action_once_per_cooldown() {
    if !require_root("a_rollback_trigger_fires_its_action_once_per_cooldown") {
        return;
    }
    let s = Setup::new("rollback", Classifier::RIGHT_95);
    let criteria = s.file("criteria.toml", CRITERIA);
    let fired = s.dir.path().join("fired.jsonl");
    let config = s.file(
        "reverse.toml",
        &format!(
            "[rollback]\ntriggers = [\"accuracy_margin\"]\ncooldown = \"1h\"\ndry_run = false\n\
             command = [\"/usr/bin/tee\", \"-a\", \"{}\"]\n",
            arg(&fired)
        ),
    );
    let mut daemon = s.daemon(
        ADMIN,
        &["--config", arg(&config), "--criteria", arg(&criteria)],
    );
    s.traffic(&mut daemon, ADMIN, 0..200, 200);
    let report = s.post_labels(&daemon, &label_lines(0..200));
    assert_eq!(report["joined"], 200, "{report}");
    let firings = |text: &str| {
        labelled(
            text,
            "shadowtap_rollback_firings_total",
            &[("action", "command"), ("result", "ok")],
        )
    };
    admin::wait_metrics(&s.ns, &mut daemon, ADMIN, "the rollback command", |t| {
        firings(t) == 1.0
    });
    // Three more failing verdicts (one a second) are held back by the cooldown.
    let text = admin::wait_metrics(&s.ns, &mut daemon, ADMIN, "suppressed firings", |t| {
        metric(t, "shadowtap_rollback_suppressed_total") >= 3.0
    });
    assert_eq!(firings(&text), 1.0, "one firing per cooldown:\n{text}");
    assert_eq!(
        labelled(&text, "shadowtap_verdict", &[("decision", "REJECT")]),
        1.0,
        "the promotion no longer holds:\n{text}"
    );
    let written = std::fs::read_to_string(&fired).expect("the command wrote its stdin");
    assert_eq!(
        written.matches("shadowtap.rollback").count(),
        1,
        "exactly one firing reached the command: {written}"
    );
    let firing: Value = serde_json::from_str(written.trim()).expect("the firing is JSON");
    assert_eq!(firing["decision"], "REJECT", "{firing}");
    assert_eq!(
        firing["failed"][0]["criterion"], "accuracy_margin",
        "{firing}"
    );
    assert!(
        firing["failed"][0]["measured"]
            .as_f64()
            .is_some_and(|d| (d + 0.15).abs() < 1e-9),
        "new − old accuracy is (160 − 190) / 200 = −0.15: {firing}"
    );
    stop(&mut daemon);
}
