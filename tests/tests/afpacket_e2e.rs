//! AF_PACKET capture end to end: real keep-alive HTTP traffic inside throw-away network
//! namespaces, tapped with `capture::afpacket::open`. Production must be untouched (every
//! response correct) and the capture must reassemble to exactly the bytes each side sent,
//! with nothing dropped, truncated or seen twice (see `shadowtap_tests::scenario`).
//!
//! Needs root; skipped (with a message) otherwise. Run:
//! `cargo test -p shadowtap-tests --test afpacket_e2e -- --nocapture`

use shadow_daemon::capture::TapSpec;
use shadow_daemon::capture::afpacket::{self, Options};
use shadow_daemon::error::CaptureError;
use shadow_daemon::shutdown;
use shadowtap_tests::capture::{collect_until, fins_seen, verify_against};
use shadowtap_tests::http_peer::HttpServer;
use shadowtap_tests::netns::NetNs;
use shadowtap_tests::scenario::{self, CATCH_UP, PORT, drive};
use shadowtap_tests::{CAP_NET_RAW, require_root, without_capability};
use std::net::{SocketAddr, TcpListener};

/// Server in namespace A, clients in namespace B, tap on A's end of the veth: requests are
/// seen arriving, responses leaving.
#[test]
fn afpacket_captures_veth_traffic_byte_exact() {
    if !require_root("afpacket_captures_veth_traffic_byte_exact") {
        return;
    }
    scenario::veth("afv", afpacket::open);
}

/// Everything on `lo` of a fresh namespace: each packet passes AF_PACKET twice there, and
/// only one copy may reach the daemon; traffic on another port stays out.
#[test]
fn afpacket_captures_loopback_once_byte_exact() {
    if !require_root("afpacket_captures_loopback_once_byte_exact") {
        return;
    }
    scenario::loopback("afl", afpacket::open);
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
        Err(CaptureError::UnknownInterface { name, .. }) => assert_eq!(name, "nosuch0"),
        other => panic!("expected UnknownInterface, got {:?}", other.err()),
    }
    let denied = without_capability(CAP_NET_RAW, || {
        ns.run(|| afpacket::open(&spec, shutdown.clone()))
    });
    match denied {
        Err(CaptureError::NotPermitted { source }) => {
            // The refused syscall stays reachable as the cause.
            let errno = source
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::raw_os_error);
            assert_eq!(errno, Some(libc::EPERM), "{source}");
        }
        other => panic!("expected NotPermitted, got {:?}", other.err()),
    }
}
