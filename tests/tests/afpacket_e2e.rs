//! AF_PACKET capture end to end: real keep-alive HTTP traffic inside throw-away network
//! namespaces, tapped with `capture::afpacket::open`. Production must be untouched (every
//! response correct) and the capture must reassemble to exactly the bytes each side sent,
//! with nothing dropped, truncated or seen twice.
//!
//! Needs root; skipped (with a message) otherwise. Run:
//! `cargo test -p shadowtap-tests --test afpacket_e2e -- --test-threads=1 --nocapture`

use shadow_daemon::capture::afpacket::{self, Options};
use shadow_daemon::capture::{LiveCapture, TapSpec};
use shadow_daemon::error::CaptureError;
use shadow_daemon::shutdown;
use shadowtap_tests::capture::{collect_until, fins_seen, verify_against};
use shadowtap_tests::http_peer::{HttpServer, STANDARD_PLAN, Transcript, run_client};
use shadowtap_tests::netns::{NetNs, VethPair, tcp_retransmitted_segments};
use shadowtap_tests::{CAP_NET_RAW, require_root, without_capability};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PORT: u16 = 8080;
/// Bound on waiting for the capture to catch up (not a timing assertion: on expiry the
/// byte comparison reports what is missing).
const CATCH_UP: Duration = Duration::from_secs(60);

fn epoch_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).expect("after 1970").as_nanos() as u64
}

/// Runs one client per address in parallel (each socket created inside `client_ns`), each
/// on its own keep-alive connection with `plan`; panics on any wrong response.
fn drive(client_ns: &NetNs, targets: &[SocketAddr], plan: &[(usize, usize)]) -> Vec<Transcript> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = targets
            .iter()
            .map(|&addr| {
                let stream = client_ns
                    .run(|| TcpStream::connect(addr))
                    .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
                scope.spawn(move || run_client(stream, plan))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .expect("client thread")
                    .unwrap_or_else(|e| panic!("production traffic failed: {e}"))
            })
            .collect()
    })
}

/// Drains the capture until every connection's FINs are in, stops it, takes what was still
/// queued, and checks the bytes and the counters exactly. `retransmitted` is the number of
/// TCP segments the kernel retransmitted meanwhile (both ends).
fn check_capture(
    mut capture: LiveCapture,
    trigger: shutdown::ShutdownTrigger,
    transcripts: &[Transcript],
    started: Instant,
    retransmitted: impl FnOnce() -> u64,
) {
    let started_wall = SystemTime::now() - started.elapsed();
    let mut segments = collect_until(&mut capture, CATCH_UP, |s| fins_seen(s, transcripts));
    let elapsed = started.elapsed();
    trigger.trigger();
    // The reader stops within its read timeout and closes the channel: take the rest.
    segments.extend(collect_until(&mut capture, CATCH_UP, |_| false));
    assert!(capture.segments.is_closed(), "reader did not stop");
    let verified = verify_against(&segments, transcripts).unwrap_or_else(|e| panic!("{e}"));
    // Kernel timestamps are wall-clock ns since the Unix epoch (not boot-relative), within
    // the test's run (with a minute of slack for clock adjustments).
    let slack = Duration::from_secs(60).as_nanos() as u64;
    let (earliest, latest) = (
        epoch_ns(started_wall) - slack,
        epoch_ns(SystemTime::now()) + slack,
    );
    if let Some(s) = segments
        .iter()
        .find(|s| !(earliest..=latest).contains(&s.ts_ns))
    {
        panic!("timestamp {} outside [{earliest}, {latest}]", s.ts_ns);
    }
    let stats = capture.stats.snapshot();
    let retransmitted = retransmitted();
    println!(
        "captured {} segments / {} payload bytes in {} flows over {elapsed:.2?} \
         ({:.1} MB/s); {} overlapping segments, {retransmitted} TCP segments retransmitted; \
         {stats:?}",
        verified.segments,
        verified.payload_bytes,
        verified.flows,
        verified.payload_bytes as f64 / elapsed.as_secs_f64() / 1e6,
        verified.duplicates,
    );
    assert_eq!(stats.dropped, 0, "segments dropped");
    assert_eq!(stats.truncated, 0, "segments truncated");
    // Each captured segment repeating earlier bytes must be a real retransmission (TCP on a
    // loaded host may drop behind the tap and resend); a capture that kept both copies of
    // `lo` packets would repeat every data segment.
    assert!(
        verified.duplicates as u64 <= retransmitted,
        "{} segments captured twice but only {retransmitted} retransmitted",
        verified.duplicates
    );
    // Every segment the reader counted reached us, and no more.
    assert_eq!(stats.segments, segments.len() as u64);
    assert_eq!(stats.bytes, verified.payload_bytes as u64);
}

/// Server in namespace A, clients in namespace B, tap on A's end of the veth: requests are
/// seen arriving, responses leaving.
#[test]
fn afpacket_captures_veth_traffic_byte_exact() {
    if !require_root("afpacket_captures_veth_traffic_byte_exact") {
        return;
    }
    let pair = VethPair::new("afv").expect("veth pair");
    let (trigger, shutdown) = shutdown::channel();
    let spec = TapSpec {
        interface: pair.a_if.clone(),
        ports: vec![PORT],
    };
    let started = Instant::now();
    let capture = pair
        .a
        .run(|| afpacket::open(&spec, shutdown))
        .expect("open AF_PACKET capture");
    let server_addr = SocketAddr::from((pair.a_addr, PORT));
    let server = HttpServer::start(
        pair.a
            .run(|| TcpListener::bind(server_addr))
            .expect("bind server"),
    )
    .expect("server");

    let retrans_before = (
        pair.a.run(tcp_retransmitted_segments).expect("snmp"),
        pair.b.run(tcp_retransmitted_segments).expect("snmp"),
    );
    let transcripts = drive(&pair.b, &[server_addr, server_addr], STANDARD_PLAN);
    for t in &transcripts {
        assert_eq!(t.verified, STANDARD_PLAN.len());
    }
    assert_eq!(server.served(), 2 * STANDARD_PLAN.len() as u64);
    check_capture(capture, trigger, &transcripts, started, || {
        pair.a.run(tcp_retransmitted_segments).expect("snmp") - retrans_before.0
            + pair.b.run(tcp_retransmitted_segments).expect("snmp")
            - retrans_before.1
    });
}

/// Everything on `lo` of a fresh namespace (so the host's own loopback traffic stays out):
/// each packet passes AF_PACKET twice there, and only one copy may reach the daemon. A
/// server on another port runs alongside and must not show up in the capture.
#[test]
fn afpacket_captures_loopback_once_byte_exact() {
    if !require_root("afpacket_captures_loopback_once_byte_exact") {
        return;
    }
    let ns = NetNs::new("afl").expect("netns");
    let (trigger, shutdown) = shutdown::channel();
    let spec = TapSpec {
        interface: "lo".into(),
        ports: vec![PORT],
    };
    let started = Instant::now();
    let capture = ns
        .run(|| afpacket::open(&spec, shutdown))
        .expect("open AF_PACKET capture");

    let v4: SocketAddr = ([127, 0, 0, 1], PORT).into();
    let v6: SocketAddr = "[::1]:8080".parse().expect("address");
    let other: SocketAddr = ([127, 0, 0, 1], PORT + 1).into();
    let mut servers = vec![HttpServer::start(ns.run(|| TcpListener::bind(v4)).unwrap()).unwrap()];
    let mut targets = vec![v4];
    match ns.run(|| TcpListener::bind(v6)) {
        Ok(listener) => {
            servers.push(HttpServer::start(listener).unwrap());
            targets.push(v6);
        }
        Err(e) => println!("IPv6 loopback unavailable ({e}); testing IPv4 only"),
    }
    let unwatched = HttpServer::start(ns.run(|| TcpListener::bind(other)).unwrap()).unwrap();

    let retrans_before = ns.run(tcp_retransmitted_segments).expect("snmp");
    let (transcripts, unwatched_transcripts) = std::thread::scope(|scope| {
        let noise = scope.spawn(|| drive(&ns, &[other], &[(1024, 100 * 1024), (100 * 1024, 0)]));
        let watched = drive(&ns, &targets, STANDARD_PLAN);
        (watched, noise.join().expect("unwatched client"))
    });
    for t in &transcripts {
        assert_eq!(t.verified, STANDARD_PLAN.len());
    }
    let served: u64 = servers.iter().map(HttpServer::served).sum();
    assert_eq!(served, (targets.len() * STANDARD_PLAN.len()) as u64);
    assert_eq!(unwatched_transcripts[0].verified, 2);
    assert_eq!(unwatched.served(), 2);
    // verify_against also fails if the unwatched flow was captured (flow sets must match).
    check_capture(capture, trigger, &transcripts, started, || {
        ns.run(tcp_retransmitted_segments).expect("snmp") - retrans_before
    });
}

/// The reader thread ends when the receiver is dropped, releasing the socket: a second tap
/// on the same interface still works, and the first one's channel is gone.
#[test]
fn afpacket_stops_on_shutdown_and_reports_errors() {
    if !require_root("afpacket_stops_on_shutdown_and_reports_errors") {
        return;
    }
    let ns = NetNs::new("afs").expect("netns");
    let (trigger, shutdown) = shutdown::channel();
    let spec = TapSpec {
        interface: "lo".into(),
        ports: vec![PORT],
    };
    let mut capture = ns
        .run(|| afpacket::open(&spec, shutdown))
        .expect("open AF_PACKET capture");
    trigger.trigger();
    // The reader notices within its read timeout and drops the sender: recv ends with None.
    let rest = collect_until(&mut capture, CATCH_UP, |_| false);
    assert!(rest.is_empty());
    assert!(capture.segments.is_closed());

    let (_t, shutdown) = shutdown::channel();
    let missing = TapSpec {
        interface: "nosuch0".into(),
        ports: vec![PORT],
    };
    match ns.run(|| afpacket::open(&missing, shutdown.clone())) {
        Err(CaptureError::UnknownInterface(name)) => assert_eq!(name, "nosuch0"),
        other => panic!("expected UnknownInterface, got {:?}", other.err()),
    }
    let denied = without_capability(CAP_NET_RAW, || {
        ns.run(|| afpacket::open(&spec, shutdown.clone()))
    });
    match denied {
        Err(CaptureError::NotPermitted) => {}
        other => panic!("expected NotPermitted, got {:?}", other.err()),
    }
}

/// Shrunken buffers make the loss paths happen for real: packets longer than the read
/// buffer arrive cut and are counted as truncated, a socket buffer too small for the traffic
/// makes the kernel drop packets, which are counted as dropped; either way the test-side
/// reassembly finds the hole, and production is unaffected.
#[test]
fn afpacket_counts_truncation_and_kernel_drops() {
    if !require_root("afpacket_counts_truncation_and_kernel_drops") {
        return;
    }
    let ns = NetNs::new("afd").expect("netns");
    let (trigger, shutdown) = shutdown::channel();
    let spec = TapSpec {
        interface: "lo".into(),
        ports: vec![PORT],
    };
    let small_frames = Options {
        frame_buf_bytes: 1024,
        ..Options::default()
    };
    // The kernel raises a 1-byte request to its minimum (a few KiB): one large packet at a time.
    let small_socket = Options {
        rcvbuf_bytes: 1,
        ..Options::default()
    };
    let mut truncating = ns
        .run(|| afpacket::open_with(&spec, shutdown.clone(), small_frames))
        .expect("open");
    let mut dropping = ns
        .run(|| afpacket::open_with(&spec, shutdown, small_socket))
        .expect("open");
    let addr: SocketAddr = ([127, 0, 0, 1], PORT).into();
    let server = HttpServer::start(ns.run(|| TcpListener::bind(addr)).unwrap()).unwrap();
    let plan = [(4 << 20, 4 << 20)];
    let transcripts = drive(&ns, &[addr], &plan);
    assert_eq!(transcripts[0].verified, 1);
    assert_eq!(server.served(), 1);

    let mut cut = collect_until(&mut truncating, CATCH_UP, |s| fins_seen(s, &transcripts));
    trigger.trigger();
    cut.extend(collect_until(&mut truncating, CATCH_UP, |_| false));
    let lossy = collect_until(&mut dropping, CATCH_UP, |_| false);

    let stats = truncating.stats.snapshot();
    println!("small frame buffer: {stats:?}");
    assert!(stats.truncated > 0, "{stats:?}");
    // 1024 bytes of IP packet leave at most 1024 - 20 - 20 bytes of payload.
    assert!(cut.iter().all(|s| s.payload.len() <= 1024 - 40));
    let err = verify_against(&cut, &transcripts).expect_err("cut segments leave holes");
    assert!(err.contains("hole"), "{err}");

    let stats = dropping.stats.snapshot();
    println!("small socket buffer: {stats:?}");
    assert!(stats.dropped > 0, "{stats:?}");
    assert_eq!(stats.segments, lossy.len() as u64);
    assert!(verify_against(&lossy, &transcripts).is_err());
}
