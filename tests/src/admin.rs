//! Talking to a running `shadowd run` through its admin address from inside its namespace:
//! `GET` a path, read one Prometheus series, and bounded waits on `/healthz` and `/metrics`.

use crate::netns::NetNs;
use crate::shadowd::Daemon;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Bound on every wait of this module (not a timing assertion: on expiry the test fails with
/// what it was waiting for and the daemon's output).
pub const WAIT: Duration = Duration::from_secs(60);
/// Pause between polls.
const POLL: Duration = Duration::from_millis(100);

/// Every `result` label of `shadowtap_mirrored_requests_total`.
pub const MIRROR_RESULTS: [&str; 5] = [
    "ok",
    "connect_error",
    "timeout",
    "protocol_error",
    "request_error",
];
/// Every `reason` label of `shadowtap_mirror_skipped_total`.
pub const SKIP_REASONS: [&str; 6] = [
    "sampled_out",
    "rate_limited",
    "queue_full",
    "circuit_open",
    "filtered",
    "truncated",
];

/// `GET path` on `addr` from inside `ns` (`Connection: close`, bounded reads); returns the
/// status code and the body.
pub fn get(ns: &NetNs, addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    ns.run(|| {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
        )?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        let text = String::from_utf8_lossy(&out);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| io::Error::other(format!("{path}: no response head in {text:?}")))?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("{path}: bad status line {head:?}")))?;
        Ok((status, body.to_owned()))
    })
}

/// Value of one series in Prometheus text (`name{labels}` exactly as rendered), 0 if absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().expect("numeric sample"))
}

/// `shadowtap_mirrored_requests_total{result}`.
pub fn mirrored(text: &str, result: &str) -> f64 {
    metric(
        text,
        &format!("shadowtap_mirrored_requests_total{{result=\"{result}\"}}"),
    )
}

/// `shadowtap_mirror_skipped_total{reason}`.
pub fn skipped(text: &str, reason: &str) -> f64 {
    metric(
        text,
        &format!("shadowtap_mirror_skipped_total{{reason=\"{reason}\"}}"),
    )
}

/// Exchanges the mirror has finished with: replayed (any result) plus skipped (any reason).
pub fn accounted(text: &str) -> f64 {
    MIRROR_RESULTS
        .iter()
        .map(|r| mirrored(text, r))
        .sum::<f64>()
        + SKIP_REASONS.iter().map(|r| skipped(text, r)).sum::<f64>()
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
