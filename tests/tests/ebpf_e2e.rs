//! eBPF tap end to end: real keep-alive HTTP traffic (bodies of 0 B, 1 KiB, 100 KiB, 4 MiB)
//! inside throw-away network namespaces, tapped with `capture::ebpf::open` (TC/TCX). Production
//! must be untouched (every response correct) and the capture must reassemble to exactly the
//! bytes each side sent, with nothing dropped, truncated or seen twice, and the tap must be gone
//! once the capture is dropped. The kernel's own counters must agree: every delivered segment
//! matched, nothing malformed — and a malformed packet must be counted, as must IP fragments;
//! IPv6 extension headers in front of TCP are walked.
//!
//! Needs root; skipped (with a message) otherwise.

use shadow_daemon::capture::ebpf::{self, Options};
use shadow_daemon::capture::{CaptureStats, TapSpec};
use shadowtap_tests::http_peer::{HttpServer, STANDARD_PLAN, run_client};
use shadowtap_tests::netns::{NetNs, VethPair, tcp_retransmitted_segments};
use shadowtap_tests::scenario::{self, PORT, Report};
use shadowtap_tests::{require_root, tc};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// The kernel matched at least every segment that was delivered (bare ACKs match without
/// being delivered) and found nothing malformed in well-formed traffic.
fn assert_kernel_counters_agree(report: &Report) {
    let kernel = report.stats.kernel;
    assert!(
        kernel.matched >= report.verified.segments as u64,
        "kernel matched {} packets, {} segments delivered",
        kernel.matched,
        report.verified.segments
    );
    assert_eq!(kernel.malformed, 0, "malformed packets in clean traffic");
    assert_eq!(kernel.too_long, 0);
}

/// Server in namespace A, clients in namespace B, tap on A's end of the veth: requests are
/// seen on ingress, responses on egress.
#[test]
fn ebpf_captures_veth_traffic_byte_exact() {
    if !require_root("ebpf_captures_veth_traffic_byte_exact") {
        return;
    }
    let report = scenario::veth("ebv", ebpf::open);
    assert!(report.verified.segments > 0);
    assert_kernel_counters_agree(&report);
}

/// Everything on `lo` of a fresh namespace: each packet passes egress and ingress there, and
/// only one copy may reach the daemon (IPv4 and IPv6); traffic on another port stays out.
#[test]
fn ebpf_captures_loopback_once_byte_exact() {
    if !require_root("ebpf_captures_loopback_once_byte_exact") {
        return;
    }
    let report = scenario::loopback("ebl", ebpf::open);
    assert_kernel_counters_agree(&report);
}

/// With the kernel-side trace compiled in and switched on, the program still passes the
/// verifier and the capture is as exact as without it.
#[test]
fn ebpf_with_kernel_trace_on_captures_byte_exact() {
    if !require_root("ebpf_with_kernel_trace_on_captures_byte_exact") {
        return;
    }
    let traced = Options {
        kernel_trace: true,
        ..Options::default()
    };
    let report = scenario::veth("ebt", move |spec: &TapSpec, shutdown| {
        ebpf::open_with(spec, shutdown, traced)
    });
    assert_kernel_counters_agree(&report);
}

/// A TCP segment to the watched port whose header length field is too small (4 words) is
/// counted as matched and malformed, and nothing is delivered for it.
#[test]
fn ebpf_counts_a_malformed_segment() {
    if !require_root("ebpf_counts_a_malformed_segment") {
        return;
    }
    let pair = VethPair::new("ebm").expect("veth pair");
    let (trigger, shutdown) = shadow_daemon::shutdown::channel();
    let spec = TapSpec {
        interface: pair.a_if.clone(),
        ports: vec![PORT],
    };
    let mut capture = pair.a.run(|| ebpf::open(&spec, shutdown)).expect("attach");
    let frame = malformed_tcp_frame(pair.b_addr.octets(), pair.a_addr.octets());
    pair.b
        .run(|| send_raw_frame(&pair.b_if, &frame))
        .expect("send the malformed frame");

    // The reader copies the kernel counters every 200 ms.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stats: CaptureStats = capture.stats.snapshot();
    while stats.kernel.malformed == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        stats = capture.stats.snapshot();
    }
    trigger.trigger();
    let delivered =
        shadowtap_tests::capture::collect_until(&mut capture, scenario::CATCH_UP, |_| false);
    assert_eq!(stats.kernel.malformed, 1, "{stats:?}");
    assert_eq!(stats.kernel.matched, 1, "{stats:?}");
    assert!(delivered.is_empty(), "{delivered:?}");
}

/// An IPv6 connection whose client puts a destination-options header (a PadN option) in
/// front of TCP in every packet it sends: the tap walks it and the capture is byte-exact,
/// nothing malformed, no fragment.
#[test]
fn ebpf_captures_ipv6_behind_destination_options_byte_exact() {
    if !require_root("ebpf_captures_ipv6_behind_destination_options_byte_exact") {
        return;
    }
    let ns = NetNs::new("ebx").expect("netns");
    let (trigger, shutdown) = shadow_daemon::shutdown::channel();
    let spec = TapSpec {
        interface: "lo".into(),
        ports: vec![PORT],
    };
    let started = Instant::now();
    let capture = ns.run(|| ebpf::open(&spec, shutdown)).expect("attach");
    let server_addr: SocketAddr = (Ipv6Addr::LOCALHOST, PORT).into();
    let server = HttpServer::start(
        ns.run(|| TcpListener::bind(server_addr))
            .expect("bind [::1]"),
    )
    .expect("server");
    let before = ns.run(tcp_retransmitted_segments).expect("snmp");
    let stream = ns
        .run(|| connect_with_destination_options(server_addr))
        .expect("connect with IPV6_DSTOPTS");
    let transcript = run_client(stream, STANDARD_PLAN).expect("production traffic");
    assert_eq!(transcript.verified, STANDARD_PLAN.len());
    assert_eq!(server.served(), STANDARD_PLAN.len() as u64);
    let report = scenario::finish_live_capture(capture, trigger, &[transcript], started, || {
        ns.run(tcp_retransmitted_segments).expect("snmp") - before
    });
    assert_kernel_counters_agree(&report);
    assert_eq!(report.stats.undecodable.fragment, 0, "{:?}", report.stats);
}

/// A TCP socket to `addr` whose every packet carries a sticky destination-options header of
/// 8 bytes (a PadN option of 4 bytes); checks that the kernel kept it.
fn connect_with_destination_options(addr: SocketAddr) -> std::io::Result<TcpStream> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // Next header (filled in by the kernel), length 0 (8 bytes), PadN with 4 bytes of padding.
    let options: [u8; 8] = [0, 0, 1, 4, 0, 0, 0, 0];
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `options` is valid for its length.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_DSTOPTS,
            options.as_ptr().cast(),
            options.len() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut kept = [0u8; 16];
    let mut kept_len = kept.len() as libc::socklen_t;
    // SAFETY: `kept` and `kept_len` are valid for writes of the lengths given.
    let got = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_DSTOPTS,
            kept.as_mut_ptr().cast(),
            &mut kept_len,
        )
    };
    if got != 0 {
        return Err(std::io::Error::last_os_error());
    }
    assert_eq!(
        kept_len, 8,
        "the kernel did not keep the destination options"
    );
    let stream = TcpStream::from(socket);
    // std connects a socket it did not create only through the raw address: use nix.
    let target = nix::sys::socket::SockaddrIn6::from(match addr {
        SocketAddr::V6(v6) => v6,
        SocketAddr::V4(_) => return Err(std::io::Error::other("IPv6 address expected")),
    });
    nix::sys::socket::connect(stream.as_raw_fd(), &target)?;
    Ok(stream)
}

/// IP fragments are counted, never tapped: later fragments (IPv4 offset ≠ 0, IPv6 fragment
/// header with offset ≠ 0) of any port, first fragments (more-fragments flag) of a watched
/// port only. IPv6 extension headers are walked to TCP (the segment behind them is
/// delivered); a packet with more than eight of them is malformed.
#[test]
fn ebpf_counts_fragments_and_walks_extension_headers() {
    if !require_root("ebpf_counts_fragments_and_walks_extension_headers") {
        return;
    }
    let pair = VethPair::new("ebf").expect("veth pair");
    let (trigger, shutdown) = shadow_daemon::shutdown::channel();
    let spec = TapSpec {
        interface: pair.a_if.clone(),
        ports: vec![PORT],
    };
    let mut capture = pair.a.run(|| ebpf::open(&spec, shutdown)).expect("attach");
    let (v4_src, v4_dst) = (pair.b_addr.octets(), pair.a_addr.octets());
    let v6_src = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2).octets();
    let v6_dst = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1).octets();
    let to_port = tcp_segment(40000, PORT, b"");
    let to_other_port = tcp_segment(40000, PORT + 1, b"");
    let fragment_header = |next: u8, offset_flags: u16| {
        let mut header = vec![next, 0];
        header.extend_from_slice(&offset_flags.to_be_bytes());
        header.extend_from_slice(&[0, 0, 0, 7]); // identification
        header
    };
    let dest_opts = |next: u8| vec![next, 0, 1, 4, 0, 0, 0, 0];
    let frames = [
        // IPv4 later fragment (offset 8 bytes): counted whatever its port.
        ipv4_frame(v4_src, v4_dst, 0x0001, &[0; 16]),
        // IPv4 first fragment to the watched port: matched and counted as a fragment.
        ipv4_frame(v4_src, v4_dst, 0x2000, &to_port),
        // IPv4 first fragment of another port: not ours, not counted.
        ipv4_frame(v4_src, v4_dst, 0x2000, &to_other_port),
        // IPv6 later fragment (offset 8 bytes).
        ipv6_frame(
            v6_src,
            v6_dst,
            44,
            &[fragment_header(6, 0x0008), vec![0; 16]].concat(),
        ),
        // IPv6 first fragment (offset 0, M set) to the watched port, behind hop-by-hop options.
        ipv6_frame(
            v6_src,
            v6_dst,
            0,
            &[dest_opts(44), fragment_header(6, 0x0001), to_port.clone()].concat(),
        ),
        // Hop-by-hop, then destination options, then a whole segment: delivered.
        ipv6_frame(
            v6_src,
            v6_dst,
            0,
            &[
                dest_opts(60),
                dest_opts(6),
                tcp_segment(40001, PORT, b"hello"),
            ]
            .concat(),
        ),
        // Nine destination-options headers: more than the tap walks, malformed.
        ipv6_frame(
            v6_src,
            v6_dst,
            60,
            &[dest_opts(60).repeat(8), dest_opts(6), to_port.clone()].concat(),
        ),
    ];
    for frame in &frames {
        pair.b
            .run(|| send_raw_frame(&pair.b_if, frame))
            .expect("send a frame");
    }

    let expected = |s: &CaptureStats| {
        s.undecodable.fragment == 4 && s.kernel.matched == 3 && s.kernel.malformed == 1
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stats = capture.stats.snapshot();
    while !expected(&stats) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        stats = capture.stats.snapshot();
    }
    let delivered =
        shadowtap_tests::capture::collect_until(&mut capture, scenario::CATCH_UP, |s| {
            !s.is_empty()
        });
    trigger.trigger();
    let rest = shadowtap_tests::capture::collect_until(&mut capture, scenario::CATCH_UP, |_| false);
    // Fragments: IPv4 later + IPv4 first (watched) + IPv6 later + IPv6 first (watched).
    assert_eq!(stats.undecodable.fragment, 4, "{stats:?}");
    // Matched: the two watched first fragments and the segment behind the options.
    assert_eq!(stats.kernel.matched, 3, "{stats:?}");
    assert_eq!(stats.kernel.malformed, 1, "{stats:?}");
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    let segment = &delivered[0];
    assert_eq!(&segment.payload[..], b"hello");
    assert_eq!(segment.flow.client.port(), 40001);
    assert_eq!(segment.flow.server, SocketAddr::from((v6_dst, PORT)));
}

/// A 20-byte TCP header (PSH|ACK, checksum not computed) followed by `payload`.
fn tcp_segment(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut tcp = Vec::new();
    tcp.extend_from_slice(&sport.to_be_bytes());
    tcp.extend_from_slice(&dport.to_be_bytes());
    tcp.extend_from_slice(&1u32.to_be_bytes()); // seq
    tcp.extend_from_slice(&1u32.to_be_bytes()); // ack
    tcp.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    tcp.extend_from_slice(payload);
    tcp
}

/// Ethernet (broadcast: the tap sees it whatever the address) with `ethertype` around `l3`.
fn ethernet(ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(l3);
    frame
}

/// Ethernet + IPv4 (protocol TCP, the given flags/fragment-offset field) around `l4`.
fn ipv4_frame(src: [u8; 4], dst: [u8; 4], flags_offset: u16, l4: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&(20 + l4.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 7]); // identification
    ip.extend_from_slice(&flags_offset.to_be_bytes());
    ip.extend_from_slice(&[64, 6, 0, 0]); // TTL, TCP, checksum
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend_from_slice(l4);
    ethernet(0x0800, &ip)
}

/// Ethernet + IPv6 whose first next header is `next` around `rest` (extension headers and
/// TCP).
fn ipv6_frame(src: [u8; 16], dst: [u8; 16], next: u8, rest: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[next, 64]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend_from_slice(rest);
    ethernet(0x86DD, &ip)
}

/// Ethernet + IPv4 + a 20-byte TCP header to `PORT` that claims to be 16 bytes long.
fn malformed_tcp_frame(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut frame = vec![0xff; 6]; // broadcast: the tap sees it whatever the address
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    frame.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_start = frame.len();
    frame.extend_from_slice(&[0x45, 0]);
    frame.extend_from_slice(&40u16.to_be_bytes()); // total length
    frame.extend_from_slice(&[0, 0, 0, 0, 64, 6, 0, 0]); // id, fragment, TTL, TCP, checksum
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&dst);
    assert_eq!(frame.len() - ip_start, 20);
    frame.extend_from_slice(&40000u16.to_be_bytes());
    frame.extend_from_slice(&PORT.to_be_bytes());
    frame.extend_from_slice(&1u32.to_be_bytes()); // seq
    frame.extend_from_slice(&0u32.to_be_bytes()); // ack
    frame.extend_from_slice(&[0x40, 0x18]); // data offset 4 words (< 5: malformed), PSH|ACK
    frame.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]); // window, checksum, urgent
    frame
}

/// Sends `frame` as is out of `iface` (of the calling thread's namespace).
fn send_raw_frame(iface: &str, frame: &[u8]) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let ifindex = nix::net::if_::if_nametoindex(iface)?;
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as libc::c_ushort;
    addr.sll_ifindex = ifindex as libc::c_int;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&frame[..6]);
    // SAFETY: `frame` and `addr` are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Opening attaches one TCX program per hook (ingress and egress on a veth); dropping the
/// capture detaches them.
#[test]
fn ebpf_tap_attaches_per_hook_and_detaches_on_drop() {
    if !require_root("ebpf_tap_attaches_per_hook_and_detaches_on_drop") {
        return;
    }
    let pair = VethPair::new("ebd").expect("veth pair");
    let iface = pair.a_if.clone();
    pair.a.run(|| {
        assert_eq!(tc::tcx_program_counts(&iface).unwrap(), (0, 0));
        let (_trigger, shutdown) = shadow_daemon::shutdown::channel();
        let spec = TapSpec {
            interface: iface.clone(),
            ports: vec![8080],
        };
        let capture = ebpf::open(&spec, shutdown).expect("attach");
        assert_eq!(tc::tcx_program_counts(&iface).unwrap(), (1, 1));
        drop(capture);
        tc::assert_nothing_attached(&iface);
    });
}
