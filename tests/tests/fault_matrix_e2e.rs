//! The fault matrix: `shadowd run` (the real binary, the real eBPF tap) under each failure a
//! deployment meets, one test per row. Each asserts outcomes and counters, never timings:
//! production's clients always get production's own answers, the fault is counted under the
//! right label, and mirroring resumes once the fault is gone.
//!
//! Shadow faults (production on `lo:8080` of a throw-away namespace, the shadow on `lo:8081`):
//! refuses connections, resets mid-response, hangs, answers garbage, answers non-JSON, answers
//! 50 MiB. Capture and daemon faults: a tiny ring and a burst, SIGKILL during traffic, bytes
//! that are not HTTP (and a TLS ClientHello) on the production port, production restarting,
//! the tapped interface going down and up.
//!
//! Needs root; skipped (with a message) otherwise.

use shadow_core::vocabulary::{
    DiscrepancyKind, DropStage, ErrorClass, MirrorResult, Model, Outcome, SkipReason,
};
use shadowtap_test_support::accept::spawn_accept_loop;
use shadowtap_test_support::http::read_message;
use shadowtap_tests::admin::{
    self, accounted, discrepancies, errors, exchanges, labelled, metric, mirrored, skipped, sum_of,
};
use shadowtap_tests::model::{ModelServer, Req, Role};
use shadowtap_tests::netns::NetNs;
use shadowtap_tests::shadowd::Daemon;
use shadowtap_tests::{require_root, tc};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use tempfile::TempDir;

/// Production model server, shadow and admin address, all on `lo` of the test's namespace.
const PROD: SocketAddr = local(8080);
const SHADOW: SocketAddr = local(8081);
const ADMIN: SocketAddr = local(9464);

const fn local(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// Bound on polling loops that wait for the daemon to reach a state (each pass sleeps
/// [`PAUSE`]); on expiry the test fails with the daemon's output.
const PASSES: usize = 100;
const PAUSE: Duration = Duration::from_millis(100);

/// Ids of small requests the healthy shadow agrees on (none divisible by 7).
fn agreeing(ids: std::ops::Range<u64>) -> Vec<Req> {
    ids.filter(|id| id % 7 != 0).map(Req::post).collect()
}

/// A shadow that misbehaves in one way, on every request, and closes the connection after
/// each answer (so that no keep-alive connection outlives it once it is dropped).
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The status line, headers and a few body bytes of a 200, then a TCP reset.
    ResetMidResponse,
    /// A complete 200 whose body is plain text, not JSON.
    NonJson,
    /// A 200 announcing and sending a body of this many bytes.
    Huge(u64),
}

/// A [`Fault`] server; counts requests and the body bytes it managed to write.
struct FaultShadow {
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    body_bytes_written: Arc<AtomicU64>,
    accept: Option<JoinHandle<()>>,
}

impl FaultShadow {
    fn start(listener: TcpListener, fault: Fault) -> FaultShadow {
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let body_bytes_written = Arc::new(AtomicU64::new(0));
        let accept = {
            let (requests, written) = (requests.clone(), body_bytes_written.clone());
            spawn_accept_loop(listener, stop.clone(), "fault shadow", move |stream| {
                serve_fault(stream, fault, &requests, &written)
            })
        };
        FaultShadow {
            stop,
            requests,
            body_bytes_written,
            accept: Some(accept),
        }
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for FaultShadow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn serve_fault(
    mut stream: TcpStream,
    fault: Fault,
    requests: &AtomicU64,
    written: &AtomicU64,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    if read_message(&mut stream, &mut buf)?.is_none() {
        return Ok(());
    }
    requests.fetch_add(1, Ordering::Relaxed);
    match fault {
        Fault::ResetMidResponse => {
            stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"outputs\":[",
            )?;
            stream.flush()?;
            // Linger 0: close sends a RST instead of a FIN.
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            use std::os::fd::AsRawFd;
            // SAFETY: a valid socket and a valid `linger` for the call.
            let rc = unsafe {
                libc::setsockopt(
                    stream.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    std::ptr::from_ref(&linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Fault::NonJson => {
            let body = b"this is not JSON at all";
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            )?;
            stream.write_all(body)?;
        }
        Fault::Huge(len) => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\
                 Connection: close\r\n\r\n"
            )?;
            let block = vec![b'7'; 64 * 1024];
            let mut left = len;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                // The daemon stops reading at its limit and closes: the write then fails.
                if stream.write_all(&block[..n]).is_err() {
                    return Ok(());
                }
                written.fetch_add(n as u64, Ordering::Relaxed);
                left -= n as u64;
            }
        }
    }
    Ok(())
}

/// What listens on the shadow port.
enum Shadow {
    None,
    Model(ModelServer),
    Fault(FaultShadow),
}

/// A namespace with production serving and `shadowd run` tapping its `lo`.
struct Setup {
    ns: NetNs,
    prod: Option<ModelServer>,
    shadow: Shadow,
    daemon: Daemon,
    /// Holds the config file.
    _dir: TempDir,
    args: Vec<String>,
}

/// Starts production, `shadow` (built inside the namespace) and `shadowd run --preset
/// kserve-v2 --config <config>` with `config` as its file, and waits until the tap is attached.
fn start(tag: &str, config: &str, shadow: impl FnOnce(&NetNs) -> Shadow) -> Setup {
    let ns = NetNs::new(tag).expect("netns");
    let prod = ModelServer::start(
        ns.run(|| TcpListener::bind(PROD)).unwrap(),
        Role::Production,
    )
    .unwrap();
    let shadow = shadow(&ns);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let args = vec![
        "--preset".to_string(),
        "kserve-v2".into(),
        "--config".into(),
        path.to_str().unwrap().into(),
    ];
    let daemon = spawn_daemon(&ns, &args);
    Setup {
        ns,
        prod: Some(prod),
        shadow,
        daemon,
        _dir: dir,
        args,
    }
}

fn spawn_daemon(ns: &NetNs, args: &[String]) -> Daemon {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    admin::run_daemon(ns, PROD, SHADOW, ADMIN, &args)
}

fn model(ns: &NetNs, role: Role) -> Shadow {
    Shadow::Model(ModelServer::start(ns.run(|| TcpListener::bind(SHADOW)).unwrap(), role).unwrap())
}

fn fault(ns: &NetNs, fault: Fault) -> Shadow {
    Shadow::Fault(FaultShadow::start(
        ns.run(|| TcpListener::bind(SHADOW)).unwrap(),
        fault,
    ))
}

impl Setup {
    /// Sends `reqs` one at a time on one keep-alive connection to production; panics unless
    /// every answer is production's.
    fn send(&self, reqs: &[Req]) {
        let stream = self.ns.run(|| TcpStream::connect(PROD)).unwrap();
        let answered = shadowtap_tests::model::send(stream, reqs, false)
            .unwrap_or_else(|e| panic!("production traffic failed: {e}"));
        assert_eq!(answered, reqs.len());
    }

    /// Waits until the mirror has replayed or skipped exactly `n` exchanges; returns that
    /// scrape.
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

    fn metrics(&self) -> String {
        let (status, text) = admin::get(&self.ns, ADMIN, "/metrics").unwrap();
        assert_eq!(status, 200);
        text
    }

    /// Replaces whatever listens on the shadow port by a healthy shadow.
    fn heal_shadow(&mut self) {
        self.shadow = Shadow::None;
        self.shadow = model(&self.ns, Role::Shadow);
    }

    /// Requests the healthy shadow saw.
    fn shadow_seen(&self) -> usize {
        match &self.shadow {
            Shadow::Model(m) => m.seen().len(),
            _ => panic!("no model server on the shadow port"),
        }
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

/// Prints the counters a row is reported with (for the closing note).
fn report(row: &str, text: &str) {
    let names = [
        "shadowtap_mirrored_requests_total",
        "shadowtap_mirror_skipped_total",
        "shadowtap_errors_total",
        "shadowtap_discrepancies_total",
        "shadowtap_capture_dropped_total",
        "shadowtap_exchanges_total",
        "shadowtap_shadow_http_errors_total",
        "shadowtap_body_decode_failures_total",
        "shadowtap_breaker_outcomes_total",
        "shadowtap_circuit_state",
    ];
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && names.iter().any(|n| l.starts_with(n)))
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    println!("ROW {row}:\n  {}", lines.join("\n  "));
}

/// Requests that reach a faulty shadow (fewer than the breaker's `min_requests`, 10, so it
/// stays closed), then the shadow is healed and these are mirrored and compared.
const FAULTY: u64 = 4;
const HEALED: u64 = 3;

/// A shadow fault of one request class: [`FAULTY`] requests each end as `result` with
/// `errors_total{model="shadow",class}` (when given), production unaffected; then the healthy
/// shadow gets the next [`HEALED`] requests, all `ok`.
fn shadow_fault(
    tag: &str,
    config: &str,
    shadow: impl FnOnce(&NetNs) -> Shadow,
    result: MirrorResult,
    class: Option<ErrorClass>,
) -> (Setup, String) {
    let mut s = start(tag, config, shadow);
    let faulty = agreeing(1..FAULTY + 1);
    assert_eq!(faulty.len() as u64, FAULTY);
    s.send(&faulty);
    assert_eq!(s.prod.as_ref().unwrap().seen().len() as u64, FAULTY);
    let text = s.wait_accounted(FAULTY as usize);
    report(tag, &text);
    assert_eq!(mirrored(&text, result), FAULTY as f64, "{text}");
    assert_only(&text, &[result], &[]);
    assert_eq!(exchanges(&text, Outcome::Complete), FAULTY as f64, "{text}");
    if let Some(class) = class {
        assert_eq!(errors(&text, Model::Shadow, class), FAULTY as f64, "{text}");
        assert_eq!(sum_of(&text, "shadowtap_errors_total"), FAULTY as f64);
    }
    assert_eq!(
        errors(&text, Model::Production, ErrorClass::Protocol),
        0.0,
        "{text}"
    );
    assert_eq!(metric(&text, "shadowtap_circuit_state"), 0.0, "{text}");
    let ok_before = mirrored(&text, MirrorResult::Ok);

    s.heal_shadow();
    let healed = agreeing(22..22 + HEALED);
    s.send(&healed);
    let after = s.wait_accounted((FAULTY + HEALED) as usize);
    assert_eq!(
        mirrored(&after, MirrorResult::Ok),
        ok_before + HEALED as f64,
        "{after}"
    );
    assert_eq!(s.shadow_seen() as u64, HEALED);
    (s, text)
}

/// Nothing listens on the shadow port: each replay is a connect error.
#[test]
fn shadow_refusing_connections_counts_connect_errors_then_recovers() {
    if !require_root("shadow_refusing_connections_counts_connect_errors_then_recovers") {
        return;
    }
    let (mut s, _) = shadow_fault(
        "fref",
        "",
        |_| Shadow::None,
        MirrorResult::ConnectError,
        Some(ErrorClass::Connect),
    );
    s.stop();
}

/// The shadow sends the head and a few body bytes, then resets the connection.
#[test]
fn shadow_resetting_mid_response_counts_protocol_errors_then_recovers() {
    if !require_root("shadow_resetting_mid_response_counts_protocol_errors_then_recovers") {
        return;
    }
    let (mut s, _) = shadow_fault(
        "frst",
        "",
        |ns| fault(ns, Fault::ResetMidResponse),
        MirrorResult::ProtocolError,
        Some(ErrorClass::Protocol),
    );
    s.stop();
}

/// The shadow answers bytes that are not HTTP.
#[test]
fn shadow_answering_garbage_counts_protocol_errors_then_recovers() {
    if !require_root("shadow_answering_garbage_counts_protocol_errors_then_recovers") {
        return;
    }
    let (mut s, _) = shadow_fault(
        "fgrb",
        "",
        |ns| model(ns, Role::Garbage),
        MirrorResult::ProtocolError,
        Some(ErrorClass::Protocol),
    );
    s.stop();
}

/// The shadow answers 200 with a body that is not JSON: a response (`ok`), compared, and
/// every such answer is a discrepancy (production has a prediction, the shadow none).
#[test]
fn shadow_answering_non_json_is_compared_as_missing_prediction() {
    if !require_root("shadow_answering_non_json_is_compared_as_missing_prediction") {
        return;
    }
    let (mut s, text) = shadow_fault(
        "fnjs",
        "",
        |ns| fault(ns, Fault::NonJson),
        MirrorResult::Ok,
        None,
    );
    assert_eq!(sum_of(&text, "shadowtap_errors_total"), 0.0, "{text}");
    assert_eq!(
        discrepancies(&text, DiscrepancyKind::MissingPrediction),
        FAULTY as f64,
        "{text}"
    );
    s.stop();
}

/// The shadow answers a 50 MiB body, over `shadow.max_response_bytes` (1 MiB here): the daemon
/// stops reading at the limit (the shadow cannot write it all), counts a protocol error, and
/// its memory never holds the body.
#[test]
fn shadow_answering_50_mib_is_cut_at_max_response_bytes() {
    if !require_root("shadow_answering_50_mib_is_cut_at_max_response_bytes") {
        return;
    }
    const HUGE: u64 = 50 << 20;
    let config = "[shadow]\nmax_response_bytes = 1048576\n";
    let mut s = start("fbig", config, |ns| fault(ns, Fault::Huge(HUGE)));
    let pid = s.daemon.pid().as_raw();
    let rss_before = rss_bytes(pid);
    // Sample the daemon's resident memory while the answers stream.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(Ordering::Relaxed) {
                peak = peak.max(rss_bytes(pid));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let faulty = agreeing(1..FAULTY + 1);
    s.send(&faulty);
    let text = s.wait_accounted(FAULTY as usize);
    sampling.store(false, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    report("fbig", &text);
    assert_eq!(
        mirrored(&text, MirrorResult::ProtocolError),
        FAULTY as f64,
        "{text}"
    );
    assert_only(&text, &[MirrorResult::ProtocolError], &[]);
    assert_eq!(
        errors(&text, Model::Shadow, ErrorClass::Protocol),
        FAULTY as f64
    );
    let Shadow::Fault(shadow) = &s.shadow else {
        unreachable!()
    };
    assert_eq!(shadow.requests(), FAULTY);
    let written = shadow.body_bytes_written.load(Ordering::Relaxed);
    println!(
        "fbig: the shadow wrote {written} of {} body bytes; shadowd RSS {rss_before} -> peak {peak}",
        FAULTY * HUGE
    );
    // Every answer was cut: the daemon closed the connection long before 50 MiB.
    assert!(written < FAULTY * HUGE / 2, "{written} bytes written");
    assert!(
        peak < rss_before + (HUGE / 2),
        "RSS grew from {rss_before} to {peak}"
    );
    s.heal_shadow();
    s.send(&agreeing(22..22 + HEALED));
    let text = s.wait_accounted((FAULTY + HEALED) as usize);
    assert_eq!(mirrored(&text, MirrorResult::Ok), HEALED as f64, "{text}");
    s.stop();
}

/// Resident memory of `pid` in bytes (0 once it is gone).
fn rss_bytes(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The shadow accepts and never answers: each replay times out (`shadow.timeout_ms`, short
/// here) and counts as a breaker failure; after `min_requests` (10) the breaker opens and the
/// rest are skipped as `circuit_open`, production unaffected. Once the shadow is healthy
/// again, the breaker's half-open probes succeed and mirroring resumes.
#[test]
fn shadow_hanging_times_out_opens_the_breaker_then_recovers() {
    if !require_root("shadow_hanging_times_out_opens_the_breaker_then_recovers") {
        return;
    }
    let config = "[shadow]\ntimeout_ms = 200\n[circuit_breaker]\nopen_ms = 4000\n";
    let mut s = start("fhng", config, |ns| model(ns, Role::Hang));
    // Production answers at once, so the whole burst is admitted (and in flight) before the
    // first replay times out: all of them time out; the 10 judged while the breaker was
    // closed open it, the ones that end after it opened are `late` (not counted again).
    let n = 14;
    let reqs = agreeing(1..17);
    assert_eq!(reqs.len(), n);
    s.send(&reqs);
    let text = s.wait_accounted(n);
    report("fhng burst", &text);
    let timeouts = mirrored(&text, MirrorResult::Timeout);
    let open = skipped(&text, SkipReason::CircuitOpen);
    assert_eq!(timeouts + open, n as f64, "{text}");
    assert!(
        timeouts >= 10.0,
        "{timeouts} timeouts before opening:\n{text}"
    );
    assert_only(&text, &[MirrorResult::Timeout], &[SkipReason::CircuitOpen]);
    assert_eq!(errors(&text, Model::Shadow, ErrorClass::Timeout), timeouts);
    let counted = |t: &str, as_: &str| {
        labelled(
            t,
            "shadowtap_breaker_outcomes_total",
            &[("counted_as", as_)],
        )
    };
    assert_eq!(counted(&text, "failure"), 10.0, "{text}");
    assert_eq!(counted(&text, "late"), timeouts - 10.0, "{text}");
    assert_eq!(
        metric(&text, "shadowtap_circuit_state"),
        1.0,
        "open:\n{text}"
    );
    // While it is open, requests are skipped, never sent to the shadow.
    s.send(&agreeing(30..33));
    let text = s.wait_accounted(n + 3);
    report("fhng open", &text);
    assert_eq!(
        skipped(&text, SkipReason::CircuitOpen),
        open + 3.0,
        "{text}"
    );
    assert_eq!(mirrored(&text, MirrorResult::Timeout), timeouts, "{text}");
    let n = n + 3;

    s.heal_shadow();
    // One request at a time until the probes have closed the breaker (bounded).
    let mut sent = n;
    for id in 100.. {
        if id % 7 == 0 {
            continue;
        }
        assert!(sent < n + 120, "the breaker never closed:\n{}", s.metrics());
        s.send(&[Req::post(id)]);
        sent += 1;
        let text = s.wait_accounted(sent);
        if metric(&text, "shadowtap_circuit_state") == 0.0 {
            break;
        }
        std::thread::sleep(PAUSE);
    }
    let ok_before = mirrored(&s.metrics(), MirrorResult::Ok);
    assert!(ok_before >= 3.0, "the probes were mirrored");
    s.send(&agreeing(200..203));
    let text = s.wait_accounted(sent + 3);
    assert_eq!(mirrored(&text, MirrorResult::Ok), ok_before + 3.0, "{text}");
    assert_eq!(metric(&text, "shadowtap_circuit_state"), 0.0);
    s.stop();
}

/// A TLS ClientHello record (TLS 1.2 handshake, one cipher suite, no extensions).
fn client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend((0..32u8).map(|i| i.wrapping_mul(37)));
    body.extend_from_slice(&[0x00, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00, 0x00, 0x00]);
    let mut handshake = vec![0x01, 0x00, 0x00, body.len() as u8];
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, handshake.len() as u8];
    record.extend(handshake);
    record
}

/// Sends `bytes` to production on a fresh connection, then half-closes and reads whatever
/// production answers until it closes.
fn send_raw(ns: &NetNs, bytes: &[u8]) {
    let mut stream = ns.run(|| TcpStream::connect(PROD)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let _ = io::Read::read_to_end(&mut stream, &mut Vec::new());
}

/// Bytes that are not HTTP and a TLS ClientHello on the production port: `unparsable`
/// exchanges, skipped as such, never replayed; the HTTP requests around them are mirrored.
#[test]
fn non_http_bytes_and_tls_on_the_port_are_unparsable_and_never_replayed() {
    if !require_root("non_http_bytes_and_tls_on_the_port_are_unparsable_and_never_replayed") {
        return;
    }
    let mut s = start("fnon", "", |ns| model(ns, Role::Shadow));
    s.send(&agreeing(1..3));
    s.wait_accounted(2);
    send_raw(
        &s.ns,
        b"\x00\x01\x02\x03 SSH-2.0-not-http \xff\xfe\r\n\r\nmore bytes\r\n",
    );
    send_raw(&s.ns, &client_hello());
    let text = admin::wait_metrics(&s.ns, &mut s.daemon, ADMIN, "two unparsable", |t| {
        skipped(t, SkipReason::NotReplayable(Outcome::Unparsable)) >= 2.0
    });
    s.send(&agreeing(3..5));
    let text2 = s.wait_accounted(6);
    report("fnon", &text2);
    assert_eq!(
        skipped(&text, SkipReason::NotReplayable(Outcome::Unparsable)),
        2.0,
        "{text}"
    );
    assert_eq!(exchanges(&text2, Outcome::Unparsable), 2.0, "{text2}");
    assert_eq!(mirrored(&text2, MirrorResult::Ok), 4.0, "{text2}");
    assert_only(
        &text2,
        &[MirrorResult::Ok],
        &[SkipReason::NotReplayable(Outcome::Unparsable)],
    );
    assert_eq!(s.shadow_seen(), 4, "no replay of the foreign bytes");
    assert!(
        s.daemon.output().contains("TLS handshake"),
        "the TLS connection is named in a warning:\n{}",
        s.daemon.output()
    );
    s.stop();
}

/// Production stops (listener and connections gone) and listens again on the same port: the
/// daemon keeps running and mirrors the requests after the restart.
#[test]
fn production_restarting_mid_run_is_followed() {
    if !require_root("production_restarting_mid_run_is_followed") {
        return;
    }
    let mut s = start("fprs", "", |ns| model(ns, Role::Shadow));
    s.send(&agreeing(1..5));
    s.wait_accounted(4);
    s.prod = None;
    // Down: a connection attempt is refused (no payload, no exchange).
    assert!(s.ns.run(|| TcpStream::connect(PROD)).is_err());
    s.prod = Some(
        ModelServer::start(
            s.ns.run(|| TcpListener::bind(PROD)).unwrap(),
            Role::Production,
        )
        .unwrap(),
    );
    s.send(&agreeing(10..15));
    let text = s.wait_accounted(8);
    report("fprs", &text);
    admin::assert_running(&mut s.daemon);
    assert_eq!(mirrored(&text, MirrorResult::Ok), 8.0, "{text}");
    assert_only(&text, &[MirrorResult::Ok], &[]);
    assert_eq!(s.prod.as_ref().unwrap().seen().len(), 4);
    assert_eq!(s.shadow_seen(), 8);
    s.stop();
}

/// SIGKILL while clients are mid-conversation: every client request is still answered by
/// production, no program stays attached to the interface (TCX links die with the process),
/// and a restarted daemon mirrors again.
#[test]
fn sigkill_during_traffic_leaves_production_and_the_interface_untouched() {
    if !require_root("sigkill_during_traffic_leaves_production_and_the_interface_untouched") {
        return;
    }
    let mut s = start("fkil", "", |ns| model(ns, Role::Shadow));
    assert_ne!(
        s.ns.run(|| tc::attached("lo")).unwrap(),
        Vec::<String>::new(),
        "the tap is attached"
    );
    let conns = 4u64;
    let per_conn = 40u64;
    let streams: Vec<TcpStream> = (0..conns)
        .map(|_| s.ns.run(|| TcpStream::connect(PROD)).unwrap())
        .collect();
    let prod_seen = || s.prod.as_ref().unwrap().seen().len() as u64;
    let answered = std::thread::scope(|scope| {
        let clients: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(c, stream)| {
                let first = 1000 + c as u64 * per_conn;
                let reqs: Vec<Req> = (first..first + per_conn).map(Req::post).collect();
                scope.spawn(move || shadowtap_tests::model::send(stream, &reqs, false))
            })
            .collect();
        // Kill once traffic is under way (bounded wait).
        for _ in 0..PASSES * 5 {
            if prod_seen() >= conns * per_conn / 4 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        s.daemon.signal(nix::sys::signal::Signal::SIGKILL).unwrap();
        clients
            .into_iter()
            .map(|c| {
                c.join()
                    .unwrap()
                    .expect("production answered every request")
            })
            .sum::<usize>()
    });
    assert_eq!(answered as u64, conns * per_conn);
    let status = s.daemon.wait_timeout(Duration::from_secs(10)).unwrap();
    assert!(status.is_some_and(|st| !st.success()), "killed: {status:?}");
    // Nothing left on the interface.
    s.ns.run(|| tc::assert_nothing_attached("lo"));

    s.daemon = spawn_daemon(&s.ns, &s.args);
    let before = s.shadow_seen();
    s.send(&agreeing(1..5));
    let text = s.wait_accounted(4);
    report("fkil", &text);
    assert_eq!(mirrored(&text, MirrorResult::Ok), 4.0, "{text}");
    assert_eq!(s.shadow_seen(), before + 4);
    s.stop();
    s.ns.run(|| tc::assert_nothing_attached("lo"));
}

/// A 16 KiB ring (`capture.ring_bytes`) and a burst of 4 MiB requests on four connections:
/// the ring overflows, the lost chunks are counted (`capture_dropped_total{stage="capture"}`)
/// and their exchanges are gaps, never replayed; production answers every request; the daemon
/// goes on and mirrors every later request.
#[test]
fn ring_overflow_counts_drops_and_capture_recovers() {
    if !require_root("ring_overflow_counts_drops_and_capture_recovers") {
        return;
    }
    // Short reassembly timeouts: connections whose last segments were lost end quickly.
    let config = "[capture]\nring_bytes = 16384\n\
                  [capture.reassembly]\nidle_timeout_ms = 1000\nhole_timeout_ms = 200\n";
    let mut s = start("fring", config, |ns| model(ns, Role::Shadow));
    let burst: Vec<Vec<Req>> = (0..4u64)
        .map(|c| {
            (0..3u64)
                .map(|i| Req::post(100 + c * 10 + i).sized(4 << 20))
                .collect()
        })
        .collect();
    let streams: Vec<TcpStream> = burst
        .iter()
        .map(|_| s.ns.run(|| TcpStream::connect(PROD)).unwrap())
        .collect();
    std::thread::scope(|scope| {
        let clients: Vec<_> = streams
            .into_iter()
            .zip(&burst)
            .map(|(stream, reqs)| {
                scope.spawn(move || shadowtap_tests::model::send(stream, reqs, true))
            })
            .collect();
        for c in clients {
            assert_eq!(c.join().unwrap().expect("production answered"), 3);
        }
    });
    let dropped = |t: &str| {
        labelled(
            t,
            "shadowtap_capture_dropped_total",
            &[("stage", DropStage::Capture.as_str())],
        )
    };
    let text = admin::wait_metrics(&s.ns, &mut s.daemon, ADMIN, "ring drops", |t| {
        dropped(t) > 0.0 && skipped(t, SkipReason::NotReplayable(Outcome::Gap)) > 0.0
    });
    report("fring burst", &text);
    // Nothing whose bytes were lost reached the shadow whole: it saw only intact requests.
    let burst_seen = s.shadow_seen();
    assert!(
        (burst_seen as f64) <= mirrored(&text, MirrorResult::Ok) + 12.0,
        "{text}"
    );

    // Recovery: later requests, one at a time, are all mirrored.
    let later = agreeing(500..510);
    s.send(&later);
    let shadow_ids = |s: &Setup| -> Vec<u64> {
        match &s.shadow {
            Shadow::Model(m) => m.seen().iter().filter_map(|x| x.id).collect(),
            _ => unreachable!(),
        }
    };
    let mut got = Vec::new();
    for _ in 0..PASSES {
        got = shadow_ids(&s);
        if later.iter().all(|r| got.contains(&r.id)) {
            break;
        }
        std::thread::sleep(PAUSE);
    }
    for r in &later {
        assert!(
            got.contains(&r.id),
            "request {} not mirrored: {got:?}",
            r.id
        );
    }
    let text = s.metrics();
    report("fring after", &text);
    admin::assert_running(&mut s.daemon);
    s.stop();
}

/// The tapped interface (a veth in the test's namespace) goes down and up, then is deleted
/// and created again under the same name: after each, requests are mirrored again (the
/// daemon keeps its TCX links over a down/up and re-attaches to a re-created interface),
/// and it never silently captures nothing.
#[test]
fn interface_down_up_and_recreated_is_tapped_again() {
    if !require_root("interface_down_up_and_recreated_is_tapped_again") {
        return;
    }
    use shadowtap_tests::netns::VethPair;
    let pair = VethPair::new("fifc").expect("veth pair");
    let prod_addr = SocketAddr::from((pair.a_addr, PROD.port()));
    let _prod = ModelServer::start(
        pair.a.run(|| TcpListener::bind(prod_addr)).unwrap(),
        Role::Production,
    )
    .unwrap();
    let shadow = ModelServer::start(
        pair.a.run(|| TcpListener::bind(SHADOW)).unwrap(),
        Role::Shadow,
    )
    .unwrap();
    let shadow_url = format!("http://{SHADOW}");
    let admin_addr = ADMIN.to_string();
    let args = [
        "run",
        "--interface",
        &pair.a_if,
        "--port",
        "8080",
        "--shadow",
        &shadow_url,
        "--admin-addr",
        &admin_addr,
        "--preset",
        "kserve-v2",
    ];
    let mut daemon = Daemon::spawn(Some(&pair.a), &args).expect("spawn shadowd");
    admin::wait_healthy(&pair.a, &mut daemon, ADMIN);
    let send = |reqs: &[Req]| {
        let stream = pair.b.run(|| TcpStream::connect(prod_addr)).unwrap();
        assert_eq!(
            shadowtap_tests::model::send(stream, reqs, false).expect("production answered"),
            reqs.len()
        );
    };
    let wait_ok = |daemon: &mut Daemon, n: f64, what: &str| {
        admin::wait_metrics(&pair.a, daemon, ADMIN, what, |t| {
            mirrored(t, MirrorResult::Ok) >= n
        })
    };
    send(&agreeing(1..4));
    wait_ok(&mut daemon, 3.0, "mirrored before");

    pair.a.ip(&["link", "set", &pair.a_if, "down"]).unwrap();
    pair.a.ip(&["link", "set", &pair.a_if, "up"]).unwrap();
    send(&agreeing(4..7));
    let text = wait_ok(&mut daemon, 6.0, "mirrored after down/up");
    report("fifc down/up", &text);

    // Deleting one end deletes the pair; create it again with the same names and addresses.
    pair.a.ip(&["link", "del", &pair.a_if]).unwrap();
    // Never silent: the daemon says the interface is gone.
    daemon.wait_for_output("the tapped interface is gone");
    // ... and so do its metrics and health check.
    admin::wait_metrics(&pair.a, &mut daemon, ADMIN, "tap_attached 0", |t| {
        admin::metric(t, "shadowtap_tap_attached") == 0.0
    });
    let (status, body) = admin::get(&pair.a, ADMIN, "/healthz").unwrap();
    assert_eq!(status, 503, "/healthz while the interface is gone: {body}");
    pair.link().unwrap();
    // Until the daemon has re-attached, requests are not seen: send one at a time until one is
    // mirrored (bounded), then a batch that must all be.
    for id in (10..).take(PASSES) {
        send(&[Req::post(id)]);
        std::thread::sleep(PAUSE);
        let (_, t) = admin::get(&pair.a, ADMIN, "/metrics").unwrap();
        if mirrored(&t, MirrorResult::Ok) > 6.0 {
            break;
        }
        admin::assert_running(&mut daemon);
    }
    let (_, t) = admin::get(&pair.a, ADMIN, "/metrics").unwrap();
    let before = mirrored(&t, MirrorResult::Ok);
    assert!(
        before > 6.0,
        "nothing mirrored after the interface came back:\n{}",
        daemon.output()
    );
    send(&agreeing(100..104));
    let text = wait_ok(&mut daemon, before + 4.0, "mirrored after re-creation");
    report("fifc recreated", &text);
    assert!(shadow.seen().len() as f64 >= before + 4.0);
    let out = daemon.output();
    assert!(out.contains("eBPF tap re-attached"), "{out}");
    // The gauge follows at the next housekeeping report (each second).
    admin::wait_metrics(&pair.a, &mut daemon, ADMIN, "tap_attached 1", |t| {
        admin::metric(t, "shadowtap_tap_attached") == 1.0
    });
    let (status, body) = admin::get(&pair.a, ADMIN, "/healthz").unwrap();
    assert_eq!(status, 200, "/healthz after the re-attach: {body}");
    let status = daemon.stop(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status}: {}", daemon.output());
    pair.a.run(|| tc::assert_nothing_attached(&pair.a_if));
}
