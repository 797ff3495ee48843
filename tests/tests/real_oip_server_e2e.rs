//! Against a real Open Inference Protocol server nobody here wrote: two scikit-learn models
//! served by MLServer (with mlserver-sklearn, from PyPI), production as `wine` on 8080 and the
//! shadow as `wine-v2` on 8081, driven by Python `requests` sessions with default settings
//! (keep-alive, `Accept-Encoding: gzip, deflate`; MLServer gzips answers of 500 bytes or more).
//! `shadowd run` is given nothing but the shadow URL and `--shadow-model wine-v2`, and its
//! agreement must equal the offline truth (both models run in Python on the same rows) to the
//! request. The script `tests/real_oip/wine.py` trains the models and drives the traffic.
//!
//! The Python environment is a venv under cargo's target directory
//! (`target/tmp/real-oip-venv`, see [`shadowtap_tests::python`]), made on first use with
//! `python3 -m venv` and `pip install` of the pinned packages (about a minute, then reused).
//! When it cannot be made (no `python3`, no package index) the test says so and is skipped;
//! `SHADOWTAP_PYTHON` names another interpreter. Needs root (eBPF, namespaces); skipped otherwise.
//!
//! ```text
//! sudo -E cargo test -p shadowtap-tests --test real_oip_server_e2e -- --nocapture
//! ```

use serde_json::Value;
use shadow_core::vocabulary::{DiscrepancyKind, MirrorResult};
use shadowtap_test_support::http;
use shadowtap_tests::admin::{self, accounted, discrepancies, mirrored, sum_of};
use shadowtap_tests::netns::NetNs;
use shadowtap_tests::python;
use shadowtap_tests::require_root;
use shadowtap_tests::shadowd::Daemon;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the venv holds: MLServer and its scikit-learn runtime, and the client library.
const PACKAGES: &[&str] = &[
    "mlserver==1.7.1",
    "mlserver-sklearn==1.7.1",
    "requests==2.34.2",
];
/// Requests the client sends (1 to 400 rows each).
const REQUESTS: u64 = 60;

const PROD: SocketAddr = local(8080);
const SHADOW: SocketAddr = local(8081);
const ADMIN: SocketAddr = local(9464);

const fn local(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("real_oip/wine.py")
}

/// The venv with [`PACKAGES`], made if missing; `Err` says why it cannot be made.
fn venv() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("real-oip-venv");
    python::venv(&dir, PACKAGES, "real_oip_server_e2e")
}

/// Waits (bounded) until MLServer at `addr` says it is ready.
fn wait_ready(ns: &NetNs, server: &mut Daemon, addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        if let Some(status) = server.wait_timeout(Duration::ZERO).expect("wait") {
            panic!("MLServer on {addr} exited ({status}):\n{}", server.output());
        }
        if let Ok((200, _)) = ns.run(|| http::get(addr, "/v2/health/ready")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!(
        "MLServer on {addr} never became ready:\n{}",
        server.output()
    );
}

#[test]
fn mlserver_agreement_equals_the_offline_truth() {
    if !require_root("mlserver_agreement_equals_the_offline_truth") {
        return;
    }
    let venv = match venv() {
        Ok(v) => v,
        Err(why) => {
            python::skip_without_venv("mlserver_agreement_equals_the_offline_truth", &why);
            return;
        }
    };
    let python = python::python(&venv);
    let work = tempfile::tempdir().expect("temporary directory");
    let models = work.path().to_str().expect("UTF-8 temporary path");
    let script = script();
    let script = script.to_str().expect("UTF-8 path");
    python::run(&python, &[script, "train", models]).expect("train the models");

    let ns = NetNs::new("oip").expect("netns");
    let mlserver = venv.join("bin/mlserver");
    let serve = |role: &str| {
        let repo = work.path().join(role);
        Daemon::spawn_program(
            &mlserver,
            Some(&ns),
            &["start", repo.to_str().expect("UTF-8")],
        )
        .expect("start MLServer")
    };
    let (mut prod, mut shadow) = (serve("production"), serve("shadow"));
    wait_ready(&ns, &mut prod, PROD);
    wait_ready(&ns, &mut shadow, SHADOW);

    let mut daemon = admin::run_daemon(&ns, PROD, SHADOW, ADMIN, &["--shadow-model", "wine-v2"]);

    let requests = REQUESTS.to_string();
    let truth = ns
        .exec(
            python.to_str().expect("UTF-8 path"),
            &[
                script,
                "drive",
                models,
                &format!("http://{PROD}"),
                "--requests",
                &requests,
            ],
        )
        .expect("the client ran");
    let truth: Value = serde_json::from_str(truth.trim()).expect("truth JSON");
    let n = REQUESTS as f64;
    let text = admin::wait_metrics(&ns, &mut daemon, ADMIN, "every request accounted", |t| {
        accounted(t) >= n
    });
    let (_, summary) = admin::get(&ns, ADMIN, "/api/summary").expect("summary");
    let summary: Value = serde_json::from_str(&summary).expect("summary JSON");
    println!(
        "offline truth: {truth}\nshadowd: compared {} agreed {} (ratio {}), rows agreed {} of {}, \
         body discrepancies {}",
        summary["compared"],
        summary["agreement"]["request"]["agreed"],
        summary["agreement"]["request"]["ratio"],
        summary["agreement"]["row"]["agreed"],
        summary["agreement"]["row"]["samples"],
        discrepancies(&text, DiscrepancyKind::Body)
    );
    assert!(
        truth["gzipped"].as_u64().unwrap_or(0) >= REQUESTS / 2,
        "a gzip-heavy workload: {truth}"
    );
    assert_eq!(mirrored(&text, MirrorResult::Ok), n, "{text}");
    assert_eq!(summary["compared"], REQUESTS, "{summary}");
    let requests = &summary["agreement"]["request"];
    assert_eq!(requests["samples"], REQUESTS, "{summary}");
    assert_eq!(requests["agreed"], truth["agreed"], "{summary}\n{truth}");
    // Per row of the multi-row requests, too.
    let rows = &summary["agreement"]["row"];
    assert_eq!(rows["samples"], truth["rows"], "{summary}\n{truth}");
    assert_eq!(rows["agreed"], truth["rows_agreed"], "{summary}\n{truth}");
    assert_eq!(
        discrepancies(&text, DiscrepancyKind::Label),
        (REQUESTS - truth["agreed"].as_u64().unwrap_or(0)) as f64,
        "{text}"
    );
    for clean in [
        "shadowtap_body_decode_failures_total",
        "shadowtap_shadow_http_errors_total",
    ] {
        assert_eq!(sum_of(&text, clean), 0.0, "{clean}:\n{text}");
    }
    for kind in [
        DiscrepancyKind::Body,
        DiscrepancyKind::Status,
        DiscrepancyKind::MissingPrediction,
    ] {
        assert_eq!(discrepancies(&text, kind), 0.0, "{kind:?}:\n{text}");
    }
    let status = daemon.stop(Duration::from_secs(30)).expect("stop shadowd");
    assert!(status.success(), "{status}:\n{}", daemon.output());
    for server in [&mut prod, &mut shadow] {
        let _ = server.stop(Duration::from_secs(10));
    }
}
