//! eBPF tap end to end: real keep-alive HTTP traffic (bodies of 0 B, 1 KiB, 100 KiB, 4 MiB)
//! inside throw-away network namespaces, tapped with `capture::ebpf::open` (TC/TCX). Production
//! must be untouched (every response correct) and the capture must reassemble to exactly the
//! bytes each side sent, with nothing dropped, truncated or seen twice, and the tap must be gone
//! once the capture is dropped.
//!
//! Needs root; skipped (with a message) otherwise.

use shadow_daemon::capture::ebpf;
use shadowtap_tests::netns::VethPair;
use shadowtap_tests::{require_root, scenario, tc};

/// Server in namespace A, clients in namespace B, tap on A's end of the veth: requests are
/// seen on ingress, responses on egress.
#[test]
fn ebpf_captures_veth_traffic_byte_exact() {
    if !require_root("ebpf_captures_veth_traffic_byte_exact") {
        return;
    }
    let report = scenario::veth("ebv", ebpf::open);
    assert!(report.verified.segments > 0);
}

/// Everything on `lo` of a fresh namespace: each packet passes egress and ingress there, and
/// only one copy may reach the daemon (IPv4 and IPv6); traffic on another port stays out.
#[test]
fn ebpf_captures_loopback_once_byte_exact() {
    if !require_root("ebpf_captures_loopback_once_byte_exact") {
        return;
    }
    scenario::loopback("ebl", ebpf::open);
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
        let spec = shadow_daemon::capture::TapSpec {
            interface: iface.clone(),
            ports: vec![8080],
        };
        let capture = ebpf::open(&spec, shutdown).expect("attach");
        assert_eq!(tc::tcx_program_counts(&iface).unwrap(), (1, 1));
        drop(capture);
        tc::assert_nothing_attached(&iface);
    });
}
