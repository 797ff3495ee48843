//! Every exchange accounted for, end to end with the real tap: `shadowd run` taps `lo` of a
//! throw-away namespace (production on :8080, a fake shadow on :8081, as in `run_e2e.rs`).
//!
//! - Mirrored, filtered, truncated and TLS traffic on the production port: every exchange seen
//!   (`shadowtap_exchanges_total`) is replayed (`shadowtap_mirrored_requests_total`) or skipped
//!   by a reason (`shadowtap_mirror_skipped_total`, the unparsable TLS connection included),
//!   the TLS client is named in a warning, and the daemon's last line adds up.
//! - A shadow that never answers, one replay at a time: the gauges show one in flight and the
//!   rest queued, the saturation warning says so, and at SIGTERM the queued replays are counted
//!   as abandoned.
//!
//! Expected values come from the test's plan; waits poll `/metrics`, bounded in time. Needs
//! root; skipped (with a message) otherwise.

use shadow_core::vocabulary::{MirrorResult, Outcome, SkipReason};
use shadowtap_tests::admin::{self, accounted, exchanges, metric, mirrored, skipped, sum_of};
use shadowtap_tests::model::{ModelServer, Req, Role, disagrees};
use shadowtap_tests::netns::NetNs;
use shadowtap_tests::require_root;
use shadowtap_tests::shadowd::Daemon;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

const PROD: SocketAddr = local(8080);
const SHADOW: SocketAddr = local(8081);
const ADMIN: SocketAddr = local(9464);

const fn local(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// Production and the shadow (in `role`) serving in a fresh namespace, and `shadowd run
/// --config <config> <extra>` tapping its `lo`, healthy.
struct Setup {
    ns: NetNs,
    _prod: ModelServer,
    shadow: ModelServer,
    daemon: Daemon,
    _dir: tempfile::TempDir,
}

fn start(tag: &str, role: Role, config: &str, extra: &[&str]) -> Setup {
    let ns = NetNs::new(tag).expect("netns");
    let prod = ModelServer::start(
        ns.run(|| TcpListener::bind(PROD)).unwrap(),
        Role::Production,
    )
    .unwrap();
    let shadow = ModelServer::start(ns.run(|| TcpListener::bind(SHADOW)).unwrap(), role).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut args = vec!["--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let daemon = admin::run_daemon(&ns, PROD, SHADOW, ADMIN, &args);
    Setup {
        ns,
        _prod: prod,
        shadow,
        daemon,
        _dir: dir,
    }
}

impl Setup {
    /// Sends `reqs` on one keep-alive connection; returns how many production answered right.
    fn send(&self, reqs: &[Req], pipelined: bool) -> usize {
        let stream = self.ns.run(|| TcpStream::connect(PROD)).unwrap();
        shadowtap_tests::model::send(stream, reqs, pipelined).expect("production answers")
    }

    /// Opens a connection that starts a TLS handshake (the first bytes of a ClientHello record:
    /// a client speaking HTTPS to the tapped plain-HTTP port); reads whatever comes back until
    /// the server closes or a second passes, then closes.
    fn send_tls_client_hello(&self) -> SocketAddr {
        let mut stream = self.ns.run(|| TcpStream::connect(PROD)).unwrap();
        let client = stream.local_addr().unwrap();
        // Record type 22 (handshake), version 3.1, length 5; handshake type 1 (ClientHello).
        stream
            .write_all(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x03")
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
        let _ = stream.shutdown(Shutdown::Both);
        client
    }

    /// The daemon's summary line at exit: (exchanges, replayed, skipped, abandoned).
    fn stop(&mut self) -> (u64, u64, u64, u64) {
        let status = self.daemon.stop(Duration::from_secs(30)).unwrap();
        let out = self.daemon.output();
        assert!(
            status.success(),
            "shadowd run stopped with {status}:\n{out}"
        );
        let line = out
            .lines()
            .find(|l| l.contains(" stopped "))
            .unwrap_or_else(|| panic!("no summary line:\n{out}"));
        let field = |name: &str| -> u64 {
            let (_, rest) = line
                .split_once(&format!(" {name}="))
                .unwrap_or_else(|| panic!("no {name} in {line}"));
            rest.split(' ').next().unwrap().parse().unwrap()
        };
        (
            field("exchanges"),
            field("replayed"),
            field("skipped"),
            field("abandoned"),
        )
    }
}

/// Ten POSTs (mirrored), two DELETEs (filtered), one 2 MiB POST over `max_body_bytes`
/// (truncated) and a TLS handshake (unparsable): seen = mirrored + skipped, each by the planned
/// result or reason, and the TLS client is named in a warning. (HTTP/2 is parsed since issue
/// 12: `grpc_e2e.rs` accounts for its streams.)
#[test]
fn every_exchange_is_mirrored_or_skipped_by_a_reason() {
    if !require_root("every_exchange_is_mirrored_or_skipped_by_a_reason") {
        return;
    }
    let config = "[capture]\nmax_body_bytes = 1048576\n";
    let mut s = start("acc", Role::Shadow, config, &[]);
    let mut reqs: Vec<Req> = (1..=10).map(Req::post).collect();
    reqs.push(Req::post(11).method("DELETE"));
    reqs.push(Req::post(12).method("DELETE"));
    reqs.push(Req::post(13).sized(2 << 20));
    assert_eq!(s.send(&reqs, false), reqs.len());
    let tls_client = s.send_tls_client_hello();

    let text = admin::wait_metrics(
        &s.ns,
        &mut s.daemon,
        ADMIN,
        "the HTTP/1.1 exchanges and the TLS connection, all accounted for",
        |t| {
            let seen = sum_of(t, "shadowtap_exchanges_total");
            seen >= 14.0 && exchanges(t, Outcome::Unparsable) >= 1.0 && accounted(t) == seen
        },
    );
    let seen = sum_of(&text, "shadowtap_exchanges_total");
    let unparsable = exchanges(&text, Outcome::Unparsable);
    println!("acc: {seen} exchanges, {unparsable} unparsable");
    assert_eq!(
        sum_of(&text, "shadowtap_mirrored_requests_total")
            + sum_of(&text, "shadowtap_mirror_skipped_total"),
        seen,
        "{text}"
    );
    assert_eq!(mirrored(&text, MirrorResult::Ok), 10.0, "{text}");
    assert_eq!(skipped(&text, SkipReason::Filtered), 2.0, "{text}");
    let not_replayable = |o| skipped(&text, SkipReason::NotReplayable(o));
    assert_eq!(not_replayable(Outcome::Truncated), 1.0, "{text}");
    assert_eq!(not_replayable(Outcome::Unparsable), unparsable, "{text}");
    assert_eq!(seen, 13.0 + unparsable, "{text}");
    for outcome in [Outcome::Gap, Outcome::NoResponse] {
        assert_eq!(exchanges(&text, outcome), not_replayable(outcome), "{text}");
    }
    let agreeing = (1..=10).filter(|&id| !disagrees(id)).count();
    assert_eq!(
        metric(&text, "shadowtap_agreement_ratio{unit=\"request\"}"),
        agreeing as f64 / 10.0
    );
    assert_eq!(s.shadow.seen().len(), 10);
    let out = s.daemon.output();
    let warning = format!(
        "TLS handshake seen on {tls_client} \u{2192} :8080: not cleartext HTTP, not mirrored"
    );
    assert!(out.contains(&warning), "no `{warning}` in:\n{out}");

    let (exchanges, replayed, skipped, abandoned) = s.stop();
    assert_eq!((exchanges as f64, replayed), (seen, 10));
    assert_eq!(
        exchanges,
        replayed + skipped + abandoned,
        "the summary line adds up"
    );
}

/// A shadow that never answers, one replay at a time, a queue of 8: six pipelined requests
/// leave one in flight and five queued (gauges and `/api/summary` say so, the log says the
/// shadow is saturated); SIGTERM abandons the five, and the summary line counts them.
#[test]
fn queued_replays_show_in_the_gauges_and_are_abandoned_at_shutdown() {
    if !require_root("queued_replays_show_in_the_gauges_and_are_abandoned_at_shutdown") {
        return;
    }
    let config = "[circuit_breaker]\nenabled = false\n";
    let extra = ["--concurrency", "1", "--queue", "8", "--timeout-ms", "5000"];
    let mut s = start("aqb", Role::Hang, config, &extra);
    let reqs: Vec<Req> = (1..=6).map(Req::post).collect();
    assert_eq!(s.send(&reqs, true), 6);
    admin::wait_metrics(
        &s.ns,
        &mut s.daemon,
        ADMIN,
        "one replay in flight, five queued",
        |t| {
            metric(t, "shadowtap_replays_in_flight") == 1.0
                && metric(t, "shadowtap_replay_queue_length") == 5.0
        },
    );
    let (status, body) = admin::get(&s.ns, ADMIN, "/api/summary").unwrap();
    assert_eq!(status, 200);
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(summary["replay"]["in_flight"], 1, "{summary}");
    assert_eq!(summary["replay"]["queued"], 5, "{summary}");
    // The gauge counts the replay sent; the shadow holds it once it has arrived.
    for _ in 0..600 {
        if !s.shadow.seen().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s.shadow.seen().len(), 1, "only one replay at a time");
    let out = s.daemon.output();
    // Said once the queue was half full (4 of 8, or 5 if the pipelined burst came at once).
    assert!(
        out.contains("shadow saturated: 1 in flight (limit 1), queue 4/8")
            || out.contains("shadow saturated: 1 in flight (limit 1), queue 5/8"),
        "{out}"
    );

    let (exchanges, replayed, skipped, abandoned) = s.stop();
    assert_eq!((exchanges, replayed, skipped, abandoned), (6, 1, 0, 5));
}
