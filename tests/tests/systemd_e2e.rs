//! `shadowd run` as systemd runs it (`Type=notify`, `WatchdogSec=`), with a fake service
//! manager: the test binds the `$NOTIFY_SOCKET` datagram socket itself and reads what the
//! daemon tells it. And least privilege: once the tap is attached, no thread of the daemon
//! holds a capability, while replay and the admin server keep working.
//!
//! Needs root; skipped (with a message) otherwise.

use shadowtap_tests::admin::{self, accounted, sum_of};
use shadowtap_tests::model::{ModelServer, Req, Role};
use shadowtap_tests::netns::NetNs;
use shadowtap_tests::require_root;
use shadowtap_tests::shadowd::Daemon;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PROD: SocketAddr = local(8080);
const SHADOW: SocketAddr = local(8081);
const ADMIN: SocketAddr = local(9464);
/// The log line of the attached tap (`capture::ebpf`).
const ATTACHED: &str = "eBPF tap attached";

const fn local(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// One notification datagram, and what the daemon had printed when it arrived.
struct Notice {
    text: String,
    output_then: String,
}

/// The fake service manager: every datagram on the socket, in order.
#[derive(Clone, Default)]
struct Manager(Arc<Mutex<Vec<Notice>>>);

impl Manager {
    fn listen(socket: UnixDatagram, daemon_log: impl Fn() -> String + Send + 'static) -> Self {
        let manager = Manager::default();
        let notices = manager.0.clone();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            loop {
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        let notice = Notice {
                            text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                            output_then: daemon_log(),
                        };
                        notices.lock().unwrap().push(notice);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return,
                }
                if Arc::strong_count(&notices) == 1 {
                    return;
                }
            }
        });
        manager
    }

    /// Every `KEY=value` line received so far, in order.
    fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .flat_map(|n| n.text.lines().map(str::to_string).collect::<Vec<_>>())
            .collect()
    }

    /// Waits (bounded) until a line satisfying `cond` arrives; returns the daemon's output at
    /// that moment.
    fn wait_for(&self, daemon: &mut Daemon, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(n) = self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|n| n.text.lines().any(&cond))
            {
                return n.output_then.clone();
            }
            admin::assert_running(daemon);
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no {what} notification; got {:?}\nshadowd output:\n{}",
            self.lines(),
            daemon.output()
        );
    }
}

/// `CapEff`, `CapPrm`, `CapBnd` of every thread of `pid`, with the thread's name.
fn thread_caps(pid: i32) -> Vec<(String, u64, u64, u64)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim_start_matches(':').trim().to_string())
                .unwrap_or_default()
        };
        let mask = |name: &str| u64::from_str_radix(&field(name), 16).unwrap();
        threads.push((
            field("Name"),
            mask("CapEff"),
            mask("CapPrm"),
            mask("CapBnd"),
        ));
    }
    threads
}

#[test]
fn ready_after_attach_status_watchdog_and_stopping_and_no_capability_left() {
    if !require_root("systemd_e2e") {
        return;
    }
    let ns = NetNs::new("sdnotify").expect("netns");
    let _prod = ModelServer::start(
        ns.run(|| TcpListener::bind(PROD)).unwrap(),
        Role::Production,
    )
    .unwrap();
    let shadow =
        ModelServer::start(ns.run(|| TcpListener::bind(SHADOW)).unwrap(), Role::Shadow).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let (port, shadow_url, admin_addr) = (
        PROD.port().to_string(),
        format!("http://{SHADOW}"),
        ADMIN.to_string(),
    );
    let mut daemon = Daemon::spawn_with_env(
        Some(&ns),
        &[
            "run",
            "--interface",
            "lo",
            "--port",
            &port,
            "--shadow",
            &shadow_url,
            "--admin-addr",
            &admin_addr,
            "--preset",
            "kserve-v2",
        ],
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            // A keep-alive every 0.5 s.
            ("WATCHDOG_USEC", "1000000"),
        ],
    )
    .expect("spawn shadowd");
    let log = daemon.log_reader();
    let manager = Manager::listen(socket, log);

    // READY=1 only once the tap is attached (and the capabilities are gone).
    let output_at_ready = manager.wait_for(&mut daemon, "READY=1", |l| l == "READY=1");
    assert!(
        output_at_ready.contains(ATTACHED) && output_at_ready.contains("capabilities dropped"),
        "READY=1 came before the tap was attached:\n{output_at_ready}"
    );
    let lines = manager.lines();
    let ready_at = lines.iter().position(|l| l == "READY=1").unwrap();
    assert!(
        lines[..ready_at].iter().all(|l| !l.starts_with("WATCHDOG")),
        "{lines:?}"
    );

    // No thread holds a capability, not even in its bounding set.
    let pid = daemon.pid().as_raw();
    let threads = thread_caps(pid);
    assert!(threads.len() >= 2, "{threads:?}");
    for (name, eff, prm, bnd) in &threads {
        assert_eq!(
            (*eff, *prm, *bnd),
            (0, 0, 0),
            "thread {name} of shadowd still holds capabilities (CapEff, CapPrm, CapBnd): \
             {threads:?}"
        );
    }
    println!("capability sets after attach: {threads:?}");
    println!(
        "{}",
        daemon
            .output()
            .lines()
            .find(|l| l.contains("capabilities dropped"))
            .unwrap_or_default()
    );

    // Replay and the admin server work unprivileged.
    admin::wait_healthy(&ns, &mut daemon, ADMIN);
    let reqs: Vec<Req> = (0..20).map(Req::post).collect();
    let stream = ns.run(|| TcpStream::connect(PROD)).unwrap();
    assert_eq!(
        shadowtap_tests::model::send(stream, &reqs, false).unwrap(),
        20
    );
    let text = admin::wait_metrics(&ns, &mut daemon, ADMIN, "20 exchanges accounted", |t| {
        accounted(t) >= 20.0
    });
    assert_eq!(sum_of(&text, "shadowtap_mirrored_requests_total"), 20.0);
    assert_eq!(shadow.seen().len(), 20, "the shadow got every replay");

    // STATUS= lines with the counts, and keep-alives while the data path runs.
    manager.wait_for(&mut daemon, "STATUS with 20 mirrored", |l| {
        l.starts_with("STATUS=") && l.contains("mirrored 20")
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while manager
        .lines()
        .iter()
        .filter(|l| *l == "WATCHDOG=1")
        .count()
        < 3
    {
        assert!(
            Instant::now() < deadline,
            "fewer than 3 keep-alives: {:?}",
            manager.lines()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // SIGTERM: STOPPING=1, then a clean exit.
    let status = daemon.stop(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status}:\n{}", daemon.output());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !manager.lines().iter().any(|l| l == "STOPPING=1") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let lines = manager.lines();
    let stopping = lines.iter().position(|l| l == "STOPPING=1");
    assert!(
        stopping.is_some_and(|s| s > ready_at),
        "no STOPPING=1 after READY=1: {lines:?}"
    );
}
