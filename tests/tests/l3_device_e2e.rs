//! Capture on a layer-3 device, an interface whose packets carry no link header: a tun device
//! joined to another namespace by a relay in this process, as WireGuard's userspace
//! implementations do (`shadowtap_tests::tun`; the kernel here has neither WireGuard nor IP
//! tunnels). The eBPF tap reads the link type at attach time and is told that packets start
//! with their IP header; AF_PACKET reads network-layer packets on any link type.
//!
//! With both backends: the capture is byte-exact over IPv4 and IPv6 with nothing lost,
//! malformed or seen twice; `shadowd record` writes an exact pcap; `shadowd run` mirrors and
//! compares every request. Production is untouched throughout.
//!
//! Needs root; skipped (with a message) otherwise.

use shadow_core::vocabulary::{DiscrepancyKind, MirrorResult, Outcome, SkipReason};
use shadow_daemon::capture::ebpf;
use shadow_daemon::capture::{TapSpec, afpacket};
use shadow_daemon::shutdown;
use shadowtap_tests::admin::{self, accounted, discrepancies, exchanges, mirrored, skipped};
use shadowtap_tests::capture::{fins_seen, read_pcap};
use shadowtap_tests::http_peer::{HttpServer, STANDARD_PLAN, Transcript};
use shadowtap_tests::model::{ModelServer, Req, Role, disagrees};
use shadowtap_tests::netns::tcp_retransmitted_segments;
use shadowtap_tests::require_root;
use shadowtap_tests::scenario::{self, CATCH_UP, Opener, PORT, Report, check_segments, drive};
use shadowtap_tests::shadowd::Daemon;
use shadowtap_tests::tun::{TUN_IF, TunPair};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime};

/// Server in namespace A (IPv4 and IPv6), one keep-alive client per address family in
/// namespace B ([`STANDARD_PLAN`]), capture on A's tun device: requests arrive there, responses
/// leave. Panics unless production was untouched and the capture is byte-exact.
fn tun_scenario(tag: &str, open: impl Opener) -> Report {
    let pair = TunPair::new(tag).expect("tun pair");
    let (trigger, shutdown) = shutdown::channel();
    let spec = TapSpec {
        interface: TUN_IF.into(),
        ports: vec![PORT],
    };
    let started = Instant::now();
    let capture = pair
        .a
        .run(|| open(&spec, shutdown))
        .expect("open the capture");
    let targets = [
        SocketAddr::from((pair.a_addr, PORT)),
        SocketAddr::from((pair.a_addr6, PORT)),
    ];
    let servers: Vec<HttpServer> = targets
        .iter()
        .map(|&addr| {
            let listener = pair.a.run(|| TcpListener::bind(addr)).expect("bind");
            HttpServer::start(listener).expect("server")
        })
        .collect();
    let retrans = || {
        pair.a.run(tcp_retransmitted_segments).expect("snmp")
            + pair.b.run(tcp_retransmitted_segments).expect("snmp")
    };
    let before = retrans();
    let transcripts = drive(&pair.b, &targets, STANDARD_PLAN);
    for t in &transcripts {
        assert_eq!(t.verified, STANDARD_PLAN.len());
    }
    let served: u64 = servers.iter().map(HttpServer::served).sum();
    assert_eq!(
        served,
        2 * STANDARD_PLAN.len() as u64,
        "production untouched"
    );
    assert!(pair.relayed() > 0, "the traffic crossed the tun link");
    scenario::finish_live_capture(capture, trigger, &transcripts, started, || {
        retrans() - before
    })
}

#[test]
fn ebpf_captures_tun_traffic_byte_exact() {
    if !require_root("ebpf_captures_tun_traffic_byte_exact") {
        return;
    }
    let report = tun_scenario("ebn", ebpf::open);
    let kernel = report.stats.kernel;
    assert!(
        kernel.matched >= report.verified.segments as u64,
        "kernel matched {} packets, {} segments delivered",
        kernel.matched,
        report.verified.segments
    );
    assert_eq!(kernel.malformed, 0, "a wrong link-layer length shows here");
    assert_eq!(report.verified.flows, 2, "IPv4 and IPv6");
}

#[test]
fn afpacket_captures_tun_traffic_byte_exact() {
    if !require_root("afpacket_captures_tun_traffic_byte_exact") {
        return;
    }
    let report = tun_scenario("afn", afpacket::open);
    assert_eq!(report.verified.flows, 2, "IPv4 and IPv6");
    assert_eq!(report.stats.undecodable.malformed, 0);
}

// ---------- shadowd record ----------

/// `shadowd record --capture <capture>` on A's tun device while B's clients talk to A's
/// server; stopped with SIGTERM once every FIN is in the file.
fn record_on_tun(capture: &str) {
    let pair = TunPair::new(&format!("rn{}", &capture[..2])).expect("tun pair");
    let server_addr = SocketAddr::from((pair.a_addr, PORT));
    let server = HttpServer::start(pair.a.run(|| TcpListener::bind(server_addr)).unwrap()).unwrap();
    let dir = tempfile::tempdir().expect("temporary directory");
    let pcap = dir.path().join("capture.pcap");
    let port = PORT.to_string();
    let args = [
        "record",
        "--interface",
        TUN_IF,
        "--port",
        &port,
        "--output",
        pcap.to_str().expect("UTF-8 path"),
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
    let transcripts: Vec<Transcript> = drive(&pair.b, &[server_addr, server_addr], STANDARD_PLAN);
    assert_eq!(
        server.served(),
        2 * STANDARD_PLAN.len() as u64,
        "production untouched"
    );
    let deadline = Instant::now() + CATCH_UP;
    while !fins_seen(&read_pcap(PORT, &pcap), &transcripts) && Instant::now() < deadline {
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
    let segments = read_pcap(PORT, &pcap);
    let verified = check_segments(&segments, &transcripts, started, retrans() - before);
    println!("record --capture {capture} on tun: {verified:?}");
}

#[test]
fn record_ebpf_on_tun_writes_an_exact_pcap() {
    if require_root("record_ebpf_on_tun_writes_an_exact_pcap") {
        record_on_tun("ebpf");
    }
}

#[test]
fn record_afpacket_on_tun_writes_an_exact_pcap() {
    if require_root("record_afpacket_on_tun_writes_an_exact_pcap") {
        record_on_tun("afpacket");
    }
}

// ---------- shadowd run ----------

/// The fake shadow and the admin server, on `lo` of namespace A (beside production).
const SHADOW: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8081);
const ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

/// `shadowd run --capture <capture>` tapping A's tun device, production on A's tun address,
/// the shadow on A's `lo`; clients in B send 30 requests (two keep-alive connections and a
/// pipelined one). Every request must be mirrored once and compared: the label discrepancies
/// are exactly the ids the shadow disagrees on.
fn run_on_tun(capture: &str) {
    let pair = TunPair::new(&format!("un{}", &capture[..2])).expect("tun pair");
    let prod_addr = SocketAddr::from((pair.a_addr, PORT));
    let prod = ModelServer::start(
        pair.a.run(|| TcpListener::bind(prod_addr)).unwrap(),
        Role::Production,
    )
    .unwrap();
    let shadow = ModelServer::start(
        pair.a.run(|| TcpListener::bind(SHADOW)).unwrap(),
        Role::Shadow,
    )
    .unwrap();
    let (port, shadow_url, admin_addr) = (
        PORT.to_string(),
        format!("http://{SHADOW}"),
        ADMIN.to_string(),
    );
    let args = [
        "run",
        "--interface",
        TUN_IF,
        "--port",
        &port,
        "--shadow",
        &shadow_url,
        "--admin-addr",
        &admin_addr,
        "--preset",
        "kserve-v2",
        "--capture",
        capture,
    ];
    let mut daemon = Daemon::spawn(Some(&pair.a), &args).expect("spawn shadowd");
    admin::wait_healthy(&pair.a, &mut daemon, ADMIN);

    let conn = |first: u64| (first..first + 10).map(Req::post).collect::<Vec<Req>>();
    let plan = [(conn(0), false), (conn(10), false), (conn(20), true)];
    let n = 30;
    let answered: usize = std::thread::scope(|scope| {
        let clients: Vec<_> = plan
            .iter()
            .map(|(reqs, pipelined)| {
                let stream = pair.b.run(|| TcpStream::connect(prod_addr)).unwrap();
                scope.spawn(move || shadowtap_tests::model::send(stream, reqs, *pipelined))
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().unwrap().expect("production answers correctly"))
            .sum()
    });
    assert_eq!(answered, n, "production answered every request correctly");
    assert_eq!(prod.seen().len(), n);

    let text = admin::wait_metrics(
        &pair.a,
        &mut daemon,
        ADMIN,
        "every request accounted",
        |t| accounted(t) >= n as f64,
    );
    assert_eq!(accounted(&text), n as f64, "nothing counted twice:\n{text}");
    assert_eq!(exchanges(&text, Outcome::Complete), n as f64, "{text}");
    assert_eq!(mirrored(&text, MirrorResult::Ok), n as f64, "{text}");
    for reason in SkipReason::ALL {
        assert_eq!(skipped(&text, reason), 0.0, "{reason:?}:\n{text}");
    }
    let disagreeing = (0..n as u64).filter(|&id| disagrees(id)).count();
    assert_eq!(
        discrepancies(&text, DiscrepancyKind::Label),
        disagreeing as f64,
        "{text}"
    );
    assert_eq!(shadow.seen().len(), n, "each request replayed once");
    let status = daemon.stop(Duration::from_secs(30)).unwrap();
    assert!(
        status.success(),
        "shadowd run stopped with {status}:\n{}",
        daemon.output()
    );
}

#[test]
fn run_ebpf_on_tun_mirrors_every_request() {
    if require_root("run_ebpf_on_tun_mirrors_every_request") {
        run_on_tun("ebpf");
    }
}

#[test]
fn run_afpacket_on_tun_mirrors_every_request() {
    if require_root("run_afpacket_on_tun_mirrors_every_request") {
        run_on_tun("afpacket");
    }
}
