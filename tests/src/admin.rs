//! Talking to a running `shadowd run` through its admin address from inside its namespace:
//! `GET` a path, `POST` ground truth to `/api/labels`, read series of its Prometheus metrics
//! (labels named by the [`shadow_core::vocabulary`] enums), and bounded waits on `/healthz`,
//! `/metrics` and `/api/summary`.

use crate::netns::NetNs;
use crate::shadowd::Daemon;
use serde_json::Value;
use shadow_core::vocabulary::{
    DiscrepancyKind, ErrorClass, MirrorResult, Model, Outcome, SkipReason,
};
use shadowtap_test_support::http;
use shadowtap_test_support::prom::Metrics;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bound on every wait of this module (not a timing assertion: on expiry the test fails with
/// what it was waiting for and the daemon's output).
pub const WAIT: Duration = Duration::from_secs(60);
/// Pause between polls.
const POLL: Duration = Duration::from_millis(100);

/// `GET path` on `addr` from inside `ns` (`Connection: close`, bounded reads); returns the
/// status code and the body.
pub fn get(ns: &NetNs, addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    ns.run(|| http::get(addr, path))
}

/// Writes a bearer token for `shadowd run --admin-token-file` to `dir/admin.token` (mode 0600,
/// as shadowd requires); returns the file and the token.
pub fn token_file(dir: &Path) -> (PathBuf, String) {
    use std::os::unix::fs::PermissionsExt;
    let token = format!(
        "e2e-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let path = dir.join("admin.token");
    std::fs::write(&path, format!("{token}\n")).expect("write the admin token");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .expect("chmod the admin token");
    (path, token)
}

/// `POST path` with a JSON-lines `body` on `addr` from inside `ns` (`Connection: close`,
/// bounded reads), with `Authorization: Bearer <bearer>` when given; returns the status code
/// and the body.
pub fn post(
    ns: &NetNs,
    addr: SocketAddr,
    path: &str,
    body: &str,
    bearer: Option<&str>,
) -> io::Result<(u16, String)> {
    ns.run(|| {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        let authorization =
            bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-ndjson\r\n\
             {authorization}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let response = http::read_message(&mut stream, &mut Vec::new())?
            .ok_or_else(|| io::Error::other(format!("POST {path}: no answer")))?;
        let status = response
            .status()
            .ok_or_else(|| io::Error::other(format!("POST {path}: `{}`", response.start_line)))?;
        Ok((status, String::from_utf8_lossy(&response.body).into_owned()))
    })
}

/// `POST /api/labels` with JSON lines of ground truth and the daemon's admin `token` (its
/// `--admin-token-file`, see [`token_file`]); panics unless it answers 200, returns the report
/// (`joined`, `unknown`, `late`, `duplicate`, `malformed`, `errors`).
pub fn post_labels(
    ns: &NetNs,
    daemon: &Daemon,
    admin: SocketAddr,
    token: &str,
    lines: &str,
) -> Value {
    match post(ns, admin, "/api/labels", lines, Some(token)) {
        Ok((200, body)) => serde_json::from_str(&body).expect("a JSON label report"),
        other => panic!(
            "POST /api/labels answered {other:?}\nshadowd output:\n{}",
            daemon.output()
        ),
    }
}

/// Polls `/api/summary` (bounded) until `cond` holds on it; returns that summary.
pub fn wait_summary(
    ns: &NetNs,
    daemon: &mut Daemon,
    admin: SocketAddr,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        assert_running(daemon);
        if let Ok((200, text)) = get(ns, admin, "/api/summary") {
            let summary: Value = serde_json::from_str(&text).expect("/api/summary is JSON");
            if cond(&summary) {
                return summary;
            }
            last = summary;
        }
        std::thread::sleep(POLL);
    }
    panic!(
        "timed out waiting for {what}; last /api/summary:\n{last:#}\nshadowd output:\n{}",
        daemon.output()
    );
}

/// Value of one series in Prometheus text (`name{labels}` as rendered, labels in any order), 0
/// if absent.
pub fn metric(text: &str, series: &str) -> f64 {
    Metrics::parse(text).value(series)
}

/// Sum of every series of the metric `name`, whatever their labels.
pub fn sum_of(text: &str, name: &str) -> f64 {
    labelled(text, name, &[])
}

/// Sum of the series of `name` whose labels include every `(label, value)` of `matching`.
pub fn labelled(text: &str, name: &str, matching: &[(&str, &str)]) -> f64 {
    Metrics::parse(text).sum(name, matching)
}

/// `shadowtap_mirrored_requests_total{result}`.
pub fn mirrored(text: &str, result: MirrorResult) -> f64 {
    labelled(
        text,
        "shadowtap_mirrored_requests_total",
        &[("result", result.as_str())],
    )
}

/// `shadowtap_mirror_skipped_total{reason}`.
pub fn skipped(text: &str, reason: SkipReason) -> f64 {
    labelled(
        text,
        "shadowtap_mirror_skipped_total",
        &[("reason", reason.as_str())],
    )
}

/// `shadowtap_exchanges_total{outcome}`.
pub fn exchanges(text: &str, outcome: Outcome) -> f64 {
    labelled(
        text,
        "shadowtap_exchanges_total",
        &[("outcome", outcome.as_str())],
    )
}

/// `shadowtap_discrepancies_total{kind}`.
pub fn discrepancies(text: &str, kind: DiscrepancyKind) -> f64 {
    labelled(
        text,
        "shadowtap_discrepancies_total",
        &[("kind", kind.as_str())],
    )
}

/// `shadowtap_errors_total{class,model}`.
pub fn errors(text: &str, model: Model, class: ErrorClass) -> f64 {
    let matching = [("model", model.as_str()), ("class", class.as_str())];
    labelled(text, "shadowtap_errors_total", &matching)
}

/// Exchanges the mirror has finished with: replayed (any result) plus skipped (any reason).
pub fn accounted(text: &str) -> f64 {
    MirrorResult::ALL
        .iter()
        .map(|&r| mirrored(text, r))
        .sum::<f64>()
        + SkipReason::ALL
            .iter()
            .map(|&r| skipped(text, r))
            .sum::<f64>()
}

/// Panics with the daemon's output if it has exited.
pub fn assert_running(daemon: &mut Daemon) {
    if let Some(status) = daemon.wait_timeout(Duration::ZERO).expect("wait") {
        panic!("shadowd exited ({status}):\n{}", daemon.output());
    }
}

/// Waits (bounded) until `/healthz` answers 200, i.e. the tap is attached.
pub fn wait_healthy(ns: &NetNs, daemon: &mut Daemon, admin: SocketAddr) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        assert_running(daemon);
        if let Ok((200, _)) = get(ns, admin, "/healthz") {
            return;
        }
        std::thread::sleep(POLL);
    }
    panic!("/healthz never answered 200:\n{}", daemon.output());
}

/// Starts `shadowd run` in `ns` tapping `lo` for the production server `prod`, mirroring to
/// `shadow` and serving its admin address on `admin`, with `extra` flags; returns once
/// `/healthz` says the tap is attached.
pub fn run_daemon(
    ns: &NetNs,
    prod: SocketAddr,
    shadow: SocketAddr,
    admin: SocketAddr,
    extra: &[&str],
) -> Daemon {
    let (port, shadow_url, admin_addr) = (
        prod.port().to_string(),
        format!("http://{shadow}"),
        admin.to_string(),
    );
    let mut args = vec![
        "run",
        "--interface",
        "lo",
        "--port",
        &port,
        "--shadow",
        &shadow_url,
        "--admin-addr",
        &admin_addr,
    ];
    args.extend_from_slice(extra);
    let mut daemon = Daemon::spawn(Some(ns), &args).expect("spawn shadowd");
    wait_healthy(ns, &mut daemon, admin);
    daemon
}

/// Polls `/metrics` (bounded) until `cond` holds on it; returns that scrape.
pub fn wait_metrics(
    ns: &NetNs,
    daemon: &mut Daemon,
    admin: SocketAddr,
    what: &str,
    cond: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + WAIT;
    let mut last = String::new();
    while Instant::now() < deadline {
        assert_running(daemon);
        if let Ok((200, text)) = get(ns, admin, "/metrics") {
            if cond(&text) {
                return text;
            }
            last = text;
        }
        std::thread::sleep(POLL);
    }
    panic!(
        "timed out waiting for {what}; last /metrics:\n{last}\nshadowd output:\n{}",
        daemon.output()
    );
}
