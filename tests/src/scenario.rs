//! Complete capture scenarios, parameterised by how the capture is opened, so each live
//! source (AF_PACKET, eBPF) runs the same traffic and the same exact checks:
//!
//! ```no_run
//! use shadowtap_tests::scenario;
//! use shadow_daemon::capture::afpacket;
//! scenario::veth("afv", afpacket::open);
//! scenario::loopback("afl", afpacket::open);
//! ```
//!
//! For captures that do not come through a [`LiveCapture`] (e.g. `shadowd record` writing a
//! pcap), use [`drive`] for the traffic and [`check_segments`] on the segments read back.

use crate::capture::{Verified, collect_until, fins_seen, verify_against};
use crate::http_peer::{HttpServer, STANDARD_PLAN, Transcript, run_client};
use crate::netns::{NetNs, VethPair, tcp_retransmitted_segments};
use shadow_core::segment::Segment;
use shadow_daemon::capture::{CaptureStats, LiveCapture, TapSpec};
use shadow_daemon::error::CaptureError;
use shadow_daemon::shutdown::{self, Shutdown, ShutdownTrigger};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The production port every scenario taps.
pub const PORT: u16 = 8080;
/// Bound on waiting for a capture to catch up (not a timing assertion: on expiry the byte
/// comparison reports what is missing).
pub const CATCH_UP: Duration = Duration::from_secs(60);

/// What a scenario saw, for printing and further assertions.
#[derive(Debug)]
pub struct Report {
    pub verified: Verified,
    pub stats: CaptureStats,
    /// TCP segments the kernel retransmitted during the run (both ends).
    pub retransmitted: u64,
    /// From opening the capture until every FIN was captured.
    pub elapsed: Duration,
}

impl Report {
    /// Payload bytes captured per second of the run.
    pub fn mb_per_s(&self) -> f64 {
        self.verified.payload_bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "captured {} segments / {} payload bytes in {} flows over {:.2?} ({:.1} MB/s); \
             {} overlapping segments, {} TCP segments retransmitted; {:?}",
            self.verified.segments,
            self.verified.payload_bytes,
            self.verified.flows,
            self.elapsed,
            self.mb_per_s(),
            self.verified.duplicates,
            self.retransmitted,
            self.stats
        )
    }
}

/// How a scenario opens its capture (called inside the namespace that holds the interface).
pub trait Opener: FnOnce(&TapSpec, Shutdown) -> Result<LiveCapture, CaptureError> + Send {}
impl<F: FnOnce(&TapSpec, Shutdown) -> Result<LiveCapture, CaptureError> + Send> Opener for F {}

/// Server in namespace A, two keep-alive clients in namespace B ([`STANDARD_PLAN`] each),
/// capture on A's end of the veth (requests arrive there, responses leave). Panics unless
/// production was untouched and the capture is byte-exact with nothing lost.
pub fn veth(tag: &str, open: impl Opener) -> Report {
    let pair = VethPair::new(tag).expect("veth pair");
    let (trigger, shutdown) = shutdown::channel();
    let spec = TapSpec {
        interface: pair.a_if.clone(),
        ports: vec![PORT],
    };
    let started = Instant::now();
    let capture = pair
        .a
        .run(|| open(&spec, shutdown))
        .expect("open the capture");
    let server_addr = SocketAddr::from((pair.a_addr, PORT));
    let server = HttpServer::start(
        pair.a
            .run(|| TcpListener::bind(server_addr))
            .expect("bind server"),
    )
    .expect("server");
    let retrans = || {
        pair.a.run(tcp_retransmitted_segments).expect("snmp")
            + pair.b.run(tcp_retransmitted_segments).expect("snmp")
    };
    let before = retrans();

    let transcripts = drive(&pair.b, &[server_addr, server_addr], STANDARD_PLAN);
    for t in &transcripts {
        assert_eq!(t.verified, STANDARD_PLAN.len());
    }
    assert_eq!(server.served(), 2 * STANDARD_PLAN.len() as u64);
    finish_live_capture(capture, trigger, &transcripts, started, || {
        retrans() - before
    })
}

/// Everything on `lo` of a fresh namespace (the host's own loopback traffic stays out), where
/// each packet passes the tap point twice and must be captured once: an IPv4 and (when
/// available) an IPv6 keep-alive client ([`STANDARD_PLAN`]), plus a server on `PORT + 1` whose
/// traffic must not appear in the capture. Panics unless production was untouched and the
/// capture is byte-exact with nothing lost.
pub fn loopback(tag: &str, open: impl Opener) -> Report {
    let ns = NetNs::new(tag).expect("netns");
    let (trigger, shutdown) = shutdown::channel();
    let spec = TapSpec {
        interface: "lo".into(),
        ports: vec![PORT],
    };
    let started = Instant::now();
    let capture = ns.run(|| open(&spec, shutdown)).expect("open the capture");

    let v4: SocketAddr = ([127, 0, 0, 1], PORT).into();
    let v6: SocketAddr = (std::net::Ipv6Addr::LOCALHOST, PORT).into();
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
    let before = ns.run(tcp_retransmitted_segments).expect("snmp");

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
    finish_live_capture(capture, trigger, &transcripts, started, || {
        ns.run(tcp_retransmitted_segments).expect("snmp") - before
    })
}

/// Runs one client per address in parallel (each socket created inside `client_ns`), each
/// on its own keep-alive connection with `plan`; panics on any wrong response.
pub fn drive(
    client_ns: &NetNs,
    targets: &[SocketAddr],
    plan: &[(usize, usize)],
) -> Vec<Transcript> {
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

/// Drains `capture` until every connection's FINs are in, stops it with `trigger`, takes
/// what was still queued, and asserts: [`check_segments`], no drops, no truncation, and the
/// source's counters match what was received. `retransmitted` returns the TCP segments
/// the kernel retransmitted since the traffic started.
pub fn finish_live_capture(
    mut capture: LiveCapture,
    trigger: ShutdownTrigger,
    transcripts: &[Transcript],
    started: Instant,
    retransmitted: impl FnOnce() -> u64,
) -> Report {
    let started_wall = SystemTime::now() - started.elapsed();
    let mut segments = collect_until(&mut capture, CATCH_UP, |s| fins_seen(s, transcripts));
    let elapsed = started.elapsed();
    trigger.trigger();
    // The source stops and closes the channel: take the rest.
    segments.extend(collect_until(&mut capture, CATCH_UP, |_| false));
    assert!(
        capture.segments.is_closed(),
        "capture did not stop on shutdown"
    );
    let retransmitted = retransmitted();
    let verified = check_segments(&segments, transcripts, started_wall, retransmitted);
    let report = Report {
        verified,
        stats: capture.stats.snapshot(),
        retransmitted,
        elapsed,
    };
    println!("{report}");
    assert_eq!(report.stats.dropped, 0, "segments dropped");
    assert_eq!(report.stats.truncated, 0, "segments truncated");
    // Every segment the source counted reached us, and no more.
    assert_eq!(report.stats.segments, segments.len() as u64);
    assert_eq!(report.stats.bytes, report.verified.payload_bytes as u64);
    report
}

/// Asserts that `segments` reassemble to exactly the bytes of `transcripts` (and no other
/// flow), that timestamps are wall-clock ns since the Unix epoch between `started` and now
/// (±1 min for clock adjustments), and that segments repeating earlier bytes are no more
/// than the `retransmitted` TCP segments (so no packet was captured twice).
pub fn check_segments(
    segments: &[Segment],
    transcripts: &[Transcript],
    started: SystemTime,
    retransmitted: u64,
) -> Verified {
    let verified = verify_against(segments, transcripts).unwrap_or_else(|e| panic!("{e}"));
    let slack = Duration::from_secs(60).as_nanos() as u64;
    let earliest = epoch_ns(started) - slack;
    let latest = epoch_ns(SystemTime::now()) + slack;
    if let Some(s) = segments
        .iter()
        .find(|s| !(earliest..=latest).contains(&s.ts_ns))
    {
        panic!("timestamp {} outside [{earliest}, {latest}]", s.ts_ns);
    }
    // TCP on a loaded host may drop behind the tap and resend; a capture that kept both
    // copies of `lo` packets would instead repeat every data segment.
    assert!(
        verified.duplicates as u64 <= retransmitted,
        "{} segments captured twice but only {retransmitted} retransmitted",
        verified.duplicates
    );
    verified
}

fn epoch_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).expect("after 1970").as_nanos() as u64
}
