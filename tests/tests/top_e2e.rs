//! `shadowd top` end to end, as a user runs it: a live `shadowd run` taps `lo` of a throw-away
//! network namespace (production on 8080, a shadow on 8081, both serving KServe v2 JSON), the
//! test sends N requests, and `shadowd top --from http://127.0.0.1:9464` runs in a detached
//! tmux session (a private tmux server, `tmux -L <unique>`), inside the namespace and as the
//! unprivileged user `nobody`. The pane is read with `capture-pane` until it shows the mirrored
//! count N (bounded wait); `q` must end `top` with exit status 0. The same run's
//! `/api/timeseries` must hold every request.
//!
//! Needs root (the namespace and the tap) and tmux; skipped (with a message) otherwise.

use shadow_core::timeseries::{Bucket, TimeSeriesSnapshot};
use shadowtap_tests::admin::{self, accounted};
use shadowtap_tests::model::{ModelServer, Req, Role, disagrees};
use shadowtap_tests::netns::NetNs;
use shadowtap_tests::{require_root, shadowd, unique_name};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const PROD: SocketAddr = local(8080);
const SHADOW: SocketAddr = local(8081);
const ADMIN: SocketAddr = local(9464);
/// Requests sent.
const N: u64 = 20;
/// How long the pane may take to show the count, and `top` to exit after `q`.
const WAIT: Duration = Duration::from_secs(30);

const fn local(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// A private tmux server (its own socket name), killed on drop: nothing else's sessions are
/// touched.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        Tmux {
            socket: unique_name("top"),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// The pane's text now (empty once the session is gone).
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }
}

impl Drop for Tmux {
    /// Kills the private server and removes the socket file it leaves behind.
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        let dir = std::env::var_os("TMUX_TMPDIR").unwrap_or_else(|| "/tmp".into());
        let uid = nix::unistd::getuid();
        let _ = std::fs::remove_file(
            std::path::Path::new(&dir)
                .join(format!("tmux-{uid}"))
                .join(&self.socket),
        );
    }
}

fn tmux_available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Polls `cond` every 200 ms until it holds or [`WAIT`] passes.
fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn top_shows_the_counters_of_a_live_run_and_quits_on_q() {
    if !require_root("top_shows_the_counters_of_a_live_run_and_quits_on_q") {
        return;
    }
    if !tmux_available() {
        eprintln!("skipping top_shows_the_counters_of_a_live_run_and_quits_on_q: no tmux");
        return;
    }
    let ns = NetNs::new("top").expect("netns");
    let _prod = ModelServer::start(
        ns.run(|| TcpListener::bind(PROD)).unwrap(),
        Role::Production,
    )
    .unwrap();
    let _shadow =
        ModelServer::start(ns.run(|| TcpListener::bind(SHADOW)).unwrap(), Role::Shadow).unwrap();
    let mut daemon = admin::run_daemon(&ns, PROD, SHADOW, ADMIN, &["--preset", "kserve-v2"]);

    let reqs: Vec<Req> = (1..=N).map(Req::post).collect();
    let disagreeing = (1..=N).filter(|&id| disagrees(id)).count();
    let stream = ns.run(|| TcpStream::connect(PROD)).unwrap();
    assert_eq!(
        shadowtap_tests::model::send(stream, &reqs, false).expect("production answers"),
        N as usize
    );
    admin::wait_metrics(&ns, &mut daemon, ADMIN, "every request mirrored", |t| {
        accounted(t) >= N as f64
    });

    let dir = tempfile::tempdir().unwrap();
    let exit_file = dir.path().join("exit");
    // `nobody` writes the exit status: the directory is its to write in.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let shadowd = shadowd::path();
    let command = format!(
        "ip netns exec {ns} setpriv --reuid=65534 --regid=65534 --clear-groups {bin} top --from \
         http://{ADMIN}; echo EXIT=$? > {exit}",
        ns = ns.name(),
        bin = shadowd.display(),
        exit = exit_file.display(),
    );
    let tmux = Tmux::new();
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-x",
        "160",
        "-y",
        "50",
        "-s",
        "top",
        &command,
    ]);
    assert!(
        started.status.success(),
        "tmux new-session: {}",
        String::from_utf8_lossy(&started.stderr)
    );

    let mirrored = format!("mirrored  total {N}");
    let mut screen = String::new();
    let shown = wait_until(|| {
        screen = tmux.screen();
        screen.contains(&mirrored) && screen.contains(&format!("seen      total {N}"))
    });
    assert!(
        shown,
        "the pane never showed {mirrored:?}; last pane:\n{screen}\nshadowd run output:\n{}",
        daemon.output()
    );
    // What the plan makes known: every request compared, the shadow disagreeing on its ids.
    assert!(
        screen.contains(&format!("of {N} compared")),
        "agreement counted on {N}:\n{screen}"
    );
    assert!(screen.contains("breaker    closed"), "{screen}");
    assert!(
        !screen.contains("?id="),
        "request queries are not shown (they may carry secrets):\n{screen}"
    );
    if disagreeing > 0 {
        assert!(
            screen.contains("POST /v2/models/") && screen.contains("label"),
            "the last discrepancies are listed:\n{screen}"
        );
    }

    eprintln!("shadowd top showed:\n{screen}");

    // The time series of the same run: every request in its buckets.
    let (status, body) = admin::get(&ns, ADMIN, "/api/timeseries").unwrap();
    assert_eq!(status, 200, "{body}");
    let ts: TimeSeriesSnapshot = serde_json::from_str(&body).expect("the /api/timeseries shape");
    assert_eq!((ts.interval_seconds, ts.capacity), (60, 1440));
    let sum = |f: fn(&Bucket) -> u64| ts.buckets.iter().map(f).sum::<u64>();
    assert_eq!(
        (sum(|b| b.seen), sum(|b| b.mirrored), sum(|b| b.skipped)),
        (N, N, 0),
        "{body}"
    );
    assert_eq!(
        (sum(|b| b.compared), sum(|b| b.agreed)),
        (N, N - disagreeing as u64),
        "{body}"
    );
    let (status, body) = admin::get(&ns, ADMIN, "/api/discrepancies").unwrap();
    assert_eq!(status, 200, "{body}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(listed.len(), disagreeing, "{body}");

    let sent = tmux.run(&["send-keys", "-t", "top", "q"]);
    assert!(sent.status.success(), "tmux send-keys");
    let exited = wait_until(|| {
        std::fs::read_to_string(&exit_file).is_ok_and(|t| t.trim().starts_with("EXIT="))
    });
    let status = std::fs::read_to_string(&exit_file).unwrap_or_default();
    assert!(
        exited && status.trim() == "EXIT=0",
        "shadowd top did not exit 0 after q (got {status:?}); last pane:\n{}",
        tmux.screen()
    );
    drop(tmux);

    let stopped = daemon.stop(Duration::from_secs(30)).unwrap();
    assert!(stopped.success(), "shadowd run: {}", daemon.output());
}
