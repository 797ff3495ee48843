//! `shadowd record` end to end, as a user runs it: the real binary taps an interface inside a
//! throw-away network namespace while keep-alive HTTP traffic flows (bodies of 0 B, 1 KiB,
//! 100 KiB, 4 MiB), writes a pcap, and is stopped with SIGTERM. The pcap must reassemble to
//! exactly the bytes both sides sent, tcpdump must read every packet of it, production must be
//! untouched — also when the daemon is killed with SIGKILL mid-traffic, after which no tap may
//! stay attached. Bad input must fail with exit code 2 and a clear message.
//!
//! Needs root; skipped (with a message) otherwise.

use nix::sys::signal::Signal;
use shadow_core::segment::{Direction, Segment};
use shadowtap_tests::capture::{fins_seen, read_pcap};
use shadowtap_tests::http_peer::{HttpServer, STANDARD_PLAN, Transcript, run_client};
use shadowtap_tests::netns::{NetNs, VethPair, tcp_retransmitted_segments};
use shadowtap_tests::scenario::{CATCH_UP, PORT, check_segments, drive};
use shadowtap_tests::shadowd::{self, Daemon};
use shadowtap_tests::{require_root, tc};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};
use tempfile::TempDir;

/// Where a recording goes: a path in a fresh temporary directory (both removed on drop); the
/// file itself is left for `shadowd record` to create.
struct TempPcap {
    dir: TempDir,
    path: PathBuf,
}

impl TempPcap {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("capture.pcap");
        Self { dir, path }
    }
    fn as_str(&self) -> &str {
        self.path.to_str().expect("UTF-8 temporary path")
    }
    /// Lets an unprivileged user create the file (as in `/tmp`).
    fn open_to_everyone(&self) {
        use std::os::unix::fs::PermissionsExt;
        let everyone = std::fs::Permissions::from_mode(0o1777);
        std::fs::set_permissions(self.dir.path(), everyone).expect("chmod temporary directory");
    }
}

/// Stops the recording once every FIN has reached the file (it is flushed every second),
/// checks the exit and summary, and returns the recorded segments.
fn stop_when_complete(
    daemon: &mut Daemon,
    pcap: &TempPcap,
    transcripts: &[Transcript],
) -> Vec<Segment> {
    let deadline = Instant::now() + CATCH_UP;
    while !fins_seen(&read_pcap(PORT, &pcap.path), transcripts) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = daemon.stop(Duration::from_secs(30)).unwrap();
    let output = daemon.output();
    assert!(
        status.success(),
        "shadowd record failed ({status}):\n{output}"
    );
    assert!(
        output.contains("dropped 0, truncated 0"),
        "losses reported:\n{output}"
    );
    read_pcap(PORT, &pcap.path)
}

/// tcpdump reads the whole file: one line per packet, as many as the file holds.
fn assert_tcpdump_reads(pcap: &TempPcap, packets: usize) {
    let out = Command::new("tcpdump")
        .args(["-nn", "-r", pcap.as_str()])
        .output()
        .expect("run tcpdump");
    assert!(
        out.status.success(),
        "tcpdump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(lines, packets, "tcpdump read {lines} of {packets} packets");
}

fn record_veth(capture: &str) {
    let pair = VethPair::new(&format!("rv{}", &capture[..2])).expect("veth pair");
    let server_addr = SocketAddr::from((pair.a_addr, PORT));
    let server = HttpServer::start(pair.a.run(|| TcpListener::bind(server_addr)).unwrap()).unwrap();
    let pcap = TempPcap::new();
    let port = PORT.to_string();
    let args = [
        "record",
        "--interface",
        &pair.a_if,
        "--port",
        &port,
        "--output",
        pcap.as_str(),
        "--capture",
        capture,
    ];
    let mut daemon = Daemon::spawn(Some(&pair.a), &args).expect("spawn shadowd");
    daemon.wait_for_output("tapping");

    let started = SystemTime::now();
    let retrans = || {
        pair.a.run(tcp_retransmitted_segments).unwrap()
            + pair.b.run(tcp_retransmitted_segments).unwrap()
    };
    let before = retrans();
    let transcripts = drive(&pair.b, &[server_addr, server_addr], STANDARD_PLAN);
    assert_eq!(
        server.served(),
        2 * STANDARD_PLAN.len() as u64,
        "production untouched"
    );

    let segments = stop_when_complete(&mut daemon, &pcap, &transcripts);
    let verified = check_segments(&segments, &transcripts, started, retrans() - before);
    println!("record --capture {capture} on veth: {verified:?}");
    assert_tcpdump_reads(&pcap, segments.len());
}

#[test]
fn record_ebpf_on_veth_writes_an_exact_pcap() {
    if require_root("record_ebpf_on_veth_writes_an_exact_pcap") {
        record_veth("ebpf");
    }
}

#[test]
fn record_afpacket_on_veth_writes_an_exact_pcap() {
    if require_root("record_afpacket_on_veth_writes_an_exact_pcap") {
        record_veth("afpacket");
    }
}

/// A fresh namespace with `lo` up and a keep-alive HTTP server on 127.0.0.1:PORT in it.
fn loopback_server(tag: &str) -> (NetNs, SocketAddr, HttpServer) {
    let ns = NetNs::new(tag).expect("netns");
    let addr: SocketAddr = ([127, 0, 0, 1], PORT).into();
    let server = HttpServer::start(ns.run(|| TcpListener::bind(addr)).unwrap()).unwrap();
    (ns, addr, server)
}

/// On `lo` (of a fresh namespace) every packet passes the tap point twice; the pcap must hold
/// it once.
#[test]
fn record_ebpf_on_loopback_writes_each_packet_once() {
    if !require_root("record_ebpf_on_loopback_writes_each_packet_once") {
        return;
    }
    let (ns, addr, server) = loopback_server("rlo");
    let pcap = TempPcap::new();
    let port = PORT.to_string();
    let args = [
        "record",
        "-i",
        "lo",
        "-p",
        &port,
        "-o",
        pcap.as_str(),
        "--duration",
        "3600s",
    ];
    let mut daemon = Daemon::spawn(Some(&ns), &args).expect("spawn shadowd");
    daemon.wait_for_output("tapping");
    let started = SystemTime::now();
    let before = ns.run(tcp_retransmitted_segments).unwrap();
    let transcripts = drive(&ns, &[addr], STANDARD_PLAN);
    assert_eq!(server.served(), STANDARD_PLAN.len() as u64);
    let segments = stop_when_complete(&mut daemon, &pcap, &transcripts);
    check_segments(
        &segments,
        &transcripts,
        started,
        ns.run(tcp_retransmitted_segments).unwrap() - before,
    );
    assert_tcpdump_reads(&pcap, segments.len());
}

#[test]
fn record_stops_by_itself_after_duration_and_count() {
    if !require_root("record_stops_by_itself_after_duration_and_count") {
        return;
    }
    let (ns, addr, _server) = loopback_server("rdc");
    let pcap = TempPcap::new();
    let port = PORT.to_string();
    let mut daemon = Daemon::spawn(
        Some(&ns),
        &[
            "record",
            "-i",
            "lo",
            "-p",
            &port,
            "-o",
            pcap.as_str(),
            "--duration",
            "1s",
        ],
    )
    .unwrap();
    let status = daemon
        .wait_timeout(Duration::from_secs(60))
        .unwrap()
        .expect("--duration ends the recording");
    assert!(status.success(), "{}", daemon.output());
    assert!(
        daemon.output().contains("0 segments"),
        "{}",
        daemon.output()
    );

    // --count: the recording ends after that many segments even while traffic goes on.
    let mut daemon = Daemon::spawn(
        Some(&ns),
        &[
            "record",
            "-i",
            "lo",
            "-p",
            &port,
            "-o",
            pcap.as_str(),
            "--count",
            "5",
        ],
    )
    .unwrap();
    daemon.wait_for_output("tapping");
    drive(&ns, &[addr], &[(1024, 1024), (1024, 1024), (1024, 1024)]);
    let status = daemon
        .wait_timeout(Duration::from_secs(60))
        .unwrap()
        .expect("--count ends the recording");
    assert!(status.success(), "{}", daemon.output());
    assert_eq!(read_pcap(PORT, &pcap.path).len(), 5);
}

/// SIGKILL while traffic flows: every request still gets its correct response, and no TCX
/// program (nor tc filter) stays attached to the interface.
#[test]
fn sigkill_mid_traffic_leaves_production_and_interface_clean() {
    if !require_root("sigkill_mid_traffic_leaves_production_and_interface_clean") {
        return;
    }
    let pair = VethPair::new("rkl").expect("veth pair");
    let server_addr = SocketAddr::from((pair.a_addr, PORT));
    let server = HttpServer::start(pair.a.run(|| TcpListener::bind(server_addr)).unwrap()).unwrap();
    let pcap = TempPcap::new();
    let port = PORT.to_string();
    let iface = pair.a_if.clone();
    let mut daemon = Daemon::spawn(
        Some(&pair.a),
        &["record", "-i", &iface, "-p", &port, "-o", pcap.as_str()],
    )
    .unwrap();
    daemon.wait_for_output("tapping");
    assert_eq!(
        pair.a.run(|| tc::tcx_program_counts(&iface)).unwrap(),
        (1, 1),
        "tap attached"
    );

    let plan: Vec<(usize, usize)> = vec![(64 * 1024, 64 * 1024); 400];
    let stream = pair.b.run(|| TcpStream::connect(server_addr)).unwrap();
    let transcript = std::thread::scope(|scope| {
        let client = scope.spawn(|| run_client(stream, &plan));
        // Kill once traffic is well under way (bounded wait).
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.served() < 50 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        daemon.signal(Signal::SIGKILL).unwrap();
        daemon
            .wait_timeout(Duration::from_secs(10))
            .unwrap()
            .expect("killed");
        let served_at_kill = server.served();
        let transcript = client
            .join()
            .unwrap()
            .expect("production traffic survives the kill");
        assert!(
            served_at_kill < plan.len() as u64,
            "the kill happened mid-traffic"
        );
        transcript
    });
    assert_eq!(transcript.verified, plan.len());
    assert_eq!(server.served(), plan.len() as u64);
    pair.a.run(|| tc::assert_nothing_attached(&iface));
}

/// With the netlink (clsact) attachment of older kernels, a killed daemon does leave its
/// filter behind; the next start removes it, and a clean stop leaves nothing.
#[test]
fn netlink_fallback_stale_filter_is_removed_by_the_next_start() {
    if !require_root("netlink_fallback_stale_filter_is_removed_by_the_next_start") {
        return;
    }
    let pair = VethPair::new("rnl").expect("veth pair");
    let iface = pair.a_if.clone();
    let pcap = TempPcap::new();
    let port = PORT.to_string();
    let args = ["record", "-i", &iface, "-p", &port, "-o", pcap.as_str()];
    let spawn = || {
        Daemon::spawn_with_env(Some(&pair.a), &args, &[("SHADOWTAP_TC_ATTACH", "netlink")]).unwrap()
    };
    let mut first = spawn();
    first.wait_for_output("tapping");
    first.signal(Signal::SIGKILL).unwrap();
    first
        .wait_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("killed");
    let stale = pair.a.run(|| tc::tc_filters(&iface)).unwrap();
    assert!(
        !stale.is_empty(),
        "a killed netlink-attached tap leaves its filter"
    );

    let mut second = spawn();
    second.wait_for_output("tapping");
    assert!(
        second.output().contains("removed a stale"),
        "{}",
        second.output()
    );
    let filters = pair.a.run(|| tc::tc_filters(&iface)).unwrap();
    assert_eq!(
        filters.len(),
        stale.len(),
        "stale filters replaced, not added to: {filters:?}"
    );
    assert!(
        second.stop(Duration::from_secs(30)).unwrap().success(),
        "{}",
        second.output()
    );
    pair.a.run(|| tc::assert_nothing_attached(&iface));
}

/// `--log info,shadowtap::ebpf=debug` turns on the kernel-side trace: a line per TCP packet the
/// program looks at, watched port or not. With the default filter there is none.
#[test]
fn kernel_trace_follows_the_log_filter() {
    if !require_root("kernel_trace_follows_the_log_filter") {
        return;
    }
    let (ns, addr, _server) = loopback_server("rkt");
    let pcap = TempPcap::new();
    let port = PORT.to_string();
    let record = |log: &str| {
        let args = [
            "record",
            "-i",
            "lo",
            "-p",
            &port,
            "-o",
            pcap.as_str(),
            "--log",
            log,
        ];
        let mut daemon = Daemon::spawn(Some(&ns), &args).expect("spawn shadowd");
        daemon.wait_for_output("tapping");
        drive(&ns, &[addr], &[(10, 10)]);
        // Nothing listens on the next port: a SYN and a RST the tap looks at and ignores.
        let unwatched = SocketAddr::from(([127, 0, 0, 1], PORT + 1));
        assert!(ns.run(|| TcpStream::connect(unwatched)).is_err());
        // The trace is flushed every few ms; the counters (and so the summary) every 200 ms.
        std::thread::sleep(Duration::from_millis(500));
        let status = daemon.stop(Duration::from_secs(30)).unwrap();
        let output = daemon.output();
        assert!(status.success(), "{output}");
        output
    };

    let traced = record("info,shadowtap::ebpf=debug");
    for needle in [
        format!("-> {PORT} request: seq"),
        format!("TCP {PORT} -> "),
        format!("-> {}: no watched port", PORT + 1),
        "malformed 0".to_string(),
    ] {
        assert!(traced.contains(&needle), "no `{needle}` in\n{traced}");
    }
    let quiet = record("info");
    assert!(!quiet.contains("shadowtap::ebpf"), "{quiet}");
}

fn run_shadowd(args: &[&str]) -> (i32, String) {
    let out = Command::new(shadowd::path())
        .args(args)
        .output()
        .expect("run shadowd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Bad input fails fast with exit code 2 and says what is wrong; no file is left behind.
#[test]
fn bad_input_is_a_usage_error() {
    let pcap = TempPcap::new();
    let (code, err) = run_shadowd(&[
        "record",
        "-i",
        "nosuchif0",
        "-p",
        "8080",
        "-o",
        pcap.as_str(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown interface `nosuchif0`"), "{err}");
    assert!(!pcap.path.exists(), "no recording file for a failed start");

    let (code, err) = run_shadowd(&["record", "-i", "lo", "-p", "0", "-o", pcap.as_str()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid port 0"), "{err}");

    let (code, err) = run_shadowd(&[
        "record",
        "-i",
        "lo",
        "-p",
        "8080",
        "-o",
        "/nonexistent-dir/x.pcap",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot create `/nonexistent-dir/x.pcap`"),
        "{err}"
    );

    let (code, err) = run_shadowd(&["record", "-i", "lo", "-p", "8080"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--output"), "{err}");
}

/// Without privileges the tap cannot load: exit code 1, a message naming what is needed, and
/// no file left behind.
#[test]
fn unprivileged_record_says_what_it_needs() {
    if !require_root("unprivileged_record_says_what_it_needs") {
        return;
    }
    let pcap = TempPcap::new();
    pcap.open_to_everyone();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(shadowd::path())
        .args(["record", "-i", "lo", "-p", "8080", "-o", pcap.as_str()])
        .output()
        .expect("run setpriv");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("needs root or CAP_BPF"), "{err}");
    assert!(!pcap.path.exists(), "no recording file for a failed start");
}

/// Real curl traffic recorded by `shadowd record` round-trips through `shadowd inspect`: every
/// request comes out once, in order, complete, with the exact bodies curl sent (a chunked
/// upload decoded) and received.
#[test]
fn curl_traffic_recorded_round_trips_through_inspect() {
    use base64::Engine as _;
    if !require_root("curl_traffic_recorded_round_trips_through_inspect") {
        return;
    }
    let (ns, addr, server) = loopback_server("rci");
    let pcap = TempPcap::new();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let upload: Vec<u8> = shadowtap_tests::http_peer::payload(b"upload", 100 * 1024);
    let small: Vec<u8> = shadowtap_tests::http_peer::payload(b"small", 1500);
    std::fs::write(file("upload"), &upload).unwrap();
    std::fs::write(file("small"), &small).unwrap();

    let port = PORT.to_string();
    let mut daemon = Daemon::spawn(
        Some(&ns),
        &["record", "-i", "lo", "-p", &port, "-o", pcap.as_str()],
    )
    .unwrap();
    daemon.wait_for_output("tapping");
    let base = format!("http://{addr}");
    // One curl: four requests over one keep-alive connection.
    let (a, b, c, d) = (file("a"), file("b"), file("c"), file("d"));
    let (url_a, url_b, url_c, url_d) = (
        format!("{base}/a"),
        format!("{base}/b?x=1"),
        format!("{base}/c"),
        format!("{base}/d"),
    );
    let (upload_arg, small_arg) = (
        format!("@{}", file("upload")),
        format!("@{}", file("small")),
    );
    let args = [
        "-sS",
        "--fail",
        "-H",
        "X-Response-Size: 10",
        "-o",
        &a,
        &url_a,
        "--next",
        "-sS",
        "--fail",
        "-H",
        "X-Response-Size: 70000",
        "-o",
        &b,
        &url_b,
        "--next",
        "-sS",
        "--fail",
        "-H",
        "X-Response-Size: 5",
        "--data-binary",
        &upload_arg,
        "-o",
        &c,
        &url_c,
        "--next",
        "-sS",
        "--fail",
        "-H",
        "X-Response-Size: 3",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &small_arg,
        "-o",
        &d,
        &url_d,
    ];
    ns.exec("curl", &args).expect("curl");
    assert_eq!(server.served(), 4);
    // The recording is flushed every second: wait (bounded) until the server's FIN (sent
    // after curl closed the connection) is in the file, so every response is.
    let deadline = Instant::now() + CATCH_UP;
    while Instant::now() < deadline
        && !read_pcap(PORT, &pcap.path)
            .iter()
            .any(|s| s.dir == Direction::Response && s.flags.fin())
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        daemon.stop(Duration::from_secs(30)).unwrap().success(),
        "{}",
        daemon.output()
    );

    let out = Command::new(shadowd::path())
        .args([
            "inspect",
            "--pcap",
            pcap.as_str(),
            "--port",
            &port,
            "--bodies",
        ])
        .output()
        .expect("run inspect");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exchanges: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    };
    let expected = [
        ("GET", "/a", Vec::new(), &a),
        ("GET", "/b?x=1", Vec::new(), &b),
        ("POST", "/c", upload.clone(), &c),
        ("POST", "/d", small.clone(), &d),
    ];
    assert_eq!(exchanges.len(), expected.len(), "{exchanges:?}");
    for (x, (method, path, body, response_file)) in exchanges.iter().zip(expected) {
        assert_eq!(x["method"], method);
        assert_eq!(x["path"], path);
        assert_eq!(x["status"], 200);
        assert_eq!(x["outcome"], "complete");
        assert_eq!(x["request_body_len"], body.len());
        assert_eq!(
            b64(&x["request_body_b64"]),
            body,
            "{method} {path} request body"
        );
        assert_eq!(
            b64(&x["response_body_b64"]),
            std::fs::read(response_file).unwrap(),
            "{path} response"
        );
    }
}
