//! The harness checks itself: namespaces disappear (even after a panic), the leak detector
//! sees real TCX and clsact attachments and their removal, and `shadowd` can be built,
//! spawned and reaped. Needs root; skipped otherwise.

use nix::sys::signal::Signal;
use shadowtap_tests::netns::{NetNs, VethPair, run_cmd_output};
use shadowtap_tests::require_root;
use shadowtap_tests::shadowd::{self, Daemon};
use shadowtap_tests::tc;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

fn ns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

#[test]
fn namespaces_are_deleted_on_drop_and_on_panic() {
    if !require_root("namespaces_are_deleted_on_drop_and_on_panic") {
        return;
    }
    let pair = VethPair::new("hv").expect("veth pair");
    let names = [pair.a.name().to_owned(), pair.b.name().to_owned()];
    assert!(names.iter().all(|n| ns_exists(n)));
    // The veth works: A reaches a listener in B.
    let listener = pair
        .b
        .run(|| TcpListener::bind((pair.b_addr, 0)))
        .expect("bind in B");
    let target = listener.local_addr().unwrap();
    let conn = pair.a.run(|| TcpStream::connect(target));
    assert!(conn.is_ok(), "connect over the veth: {conn:?}");
    assert_eq!(
        listener.accept().unwrap().1.ip(),
        std::net::IpAddr::V4(pair.a_addr)
    );
    // Code run inside a namespace sees its interfaces, not the host's.
    let inside = pair
        .b
        .run(|| nix::net::if_::if_nametoindex(pair.b_if.as_str()).is_ok());
    assert!(inside);
    drop(pair);
    assert!(names.iter().all(|n| !ns_exists(n)), "{names:?} left behind");

    let name = std::panic::catch_unwind(|| {
        let ns = NetNs::new("hp").expect("netns");
        let name = ns.name().to_owned();
        ns.run(|| panic!("boom in {name}"));
    })
    .expect_err("the panic propagates out of NetNs::run");
    let message = name
        .downcast_ref::<String>()
        .expect("panic message")
        .clone();
    let leaked = message.trim_start_matches("boom in ");
    assert!(!ns_exists(leaked), "{leaked} left behind after a panic");
}

#[test]
fn leak_check_sees_tcx_and_clsact_attachments() {
    if !require_root("leak_check_sees_tcx_and_clsact_attachments") {
        return;
    }
    let ns = NetNs::new("ht").expect("netns");
    ns.run(|| {
        tc::assert_nothing_attached("lo");

        let link = tc::attach_pass_through_tcx("lo", true).expect("attach TCX program");
        assert_eq!(tc::tcx_program_counts("lo").unwrap(), (1, 0));
        let egress = tc::attach_pass_through_tcx("lo", false).expect("attach TCX program");
        assert_eq!(tc::tcx_program_counts("lo").unwrap(), (1, 1));
        assert_eq!(tc::attached("lo").unwrap().len(), 2);
        drop(link);
        drop(egress);
        // Closing the link fd detaches: this is what a SIGKILLed daemon relies on.
        tc::assert_nothing_attached("lo");

        run_cmd_output("tc", &["qdisc", "add", "dev", "lo", "clsact"]).expect("clsact");
        // A classic-BPF cls_bpf filter (no action modules needed) that never matches.
        run_cmd_output(
            "tc",
            &[
                "filter",
                "add",
                "dev",
                "lo",
                "egress",
                "bpf",
                "bytecode",
                "1,6 0 0 0,",
            ],
        )
        .expect("cls_bpf filter");
        let found = tc::attached("lo").unwrap();
        assert!(
            found.iter().any(|f| f.contains(r#""kind":"bpf""#)),
            "{found:?}"
        );
        assert!(
            found.iter().any(|f| f.contains("clsact/egress")),
            "bpftool view: {found:?}"
        );
        run_cmd_output("tc", &["qdisc", "del", "dev", "lo", "clsact"]).expect("del clsact");
        tc::assert_nothing_attached("lo");
    });
}

#[test]
fn shadowd_is_built_spawned_and_reaped() {
    if !require_root("shadowd_is_built_spawned_and_reaped") {
        return;
    }
    let path = shadowd::path();
    assert!(path.is_file(), "{}", path.display());
    let ns = NetNs::new("hd").expect("netns");

    let mut help = Daemon::spawn(Some(&ns), &["--help"]).expect("spawn");
    let status = help
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("shadowd --help exits");
    assert!(status.success(), "{status:?}: {}", help.output());
    assert!(help.output().contains("record"), "{}", help.output());

    let mut bad = Daemon::spawn(
        Some(&ns),
        &[
            "inspect",
            "--pcap",
            "/nonexistent/capture.pcap",
            "--port",
            "8080",
        ],
    )
    .unwrap();
    let status = bad
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("exits");
    assert!(!status.success(), "inspect of a missing file succeeded");
    assert!(bad.output().contains("shadowd: error"), "{}", bad.output());
}

#[test]
fn spawned_processes_join_the_namespace_and_stop() {
    if !require_root("spawned_processes_join_the_namespace_and_stop") {
        return;
    }
    let pair = VethPair::new("hs").expect("veth pair");
    let ip = Path::new("/usr/sbin/ip");
    let ip = if ip.exists() {
        ip
    } else {
        Path::new("/sbin/ip")
    };
    let mut links = Daemon::spawn_program(ip, Some(&pair.a), &["-o", "link", "show"]).unwrap();
    let status = links
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("ip exits");
    assert!(status.success());
    assert!(links.output().contains(&pair.a_if), "{}", links.output());
    assert!(!links.output().contains(&pair.b_if), "{}", links.output());

    // SIGTERM ends a process that would otherwise run for a minute.
    let mut sleeper = Daemon::spawn_program(Path::new("sleep"), Some(&pair.b), &["60"]).unwrap();
    assert!(
        sleeper
            .wait_timeout(Duration::from_millis(200))
            .unwrap()
            .is_none()
    );
    let status = sleeper.stop(Duration::from_secs(10)).expect("stop");
    assert_eq!(status.signal(), Some(Signal::SIGTERM as i32));
    // SIGKILL as the leak tests use it.
    let mut killed = Daemon::spawn_program(Path::new("sleep"), None, &["60"]).unwrap();
    killed.signal(Signal::SIGKILL).unwrap();
    let status = killed
        .wait_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("reaped");
    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
}
