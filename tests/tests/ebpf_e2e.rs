//! eBPF tap end to end: real keep-alive HTTP traffic (bodies of 0 B, 1 KiB, 100 KiB, 4 MiB)
//! inside throw-away network namespaces, tapped with `capture::ebpf::open` (TC/TCX). Production
//! must be untouched (every response correct) and the capture must reassemble to exactly the
//! bytes each side sent, with nothing dropped, truncated or seen twice, and the tap must be gone
//! once the capture is dropped. The kernel's own counters must agree: every delivered segment
//! matched, nothing malformed — and a malformed packet must be counted.
//!
//! Needs root; skipped (with a message) otherwise.

use shadow_daemon::capture::ebpf::{self, Options};
use shadow_daemon::capture::{CaptureStats, TapSpec};
use shadowtap_tests::netns::VethPair;
use shadowtap_tests::scenario::{self, PORT, Report};
use shadowtap_tests::{require_root, tc};
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
    let traced = Options { kernel_trace: true };
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
