//! `cargo xtask` leaves nothing running behind it: the real xtask binary runs its hidden
//! `process-group-probe` task (a `sh` child that starts a long `sleep` grandchild, as `cargo
//! test` starts test servers), and the test checks that xtask leads a process group the
//! grandchild is in (not the test's own) and that it starts with no signal blocked, that SIGINT,
//! SIGTERM and SIGHUP to xtask alone stop the grandchild and make xtask exit with 128 + the
//! signal, and that a normal exit stops it too.

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, getpgrp};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Bound on every wait (none is a timing assertion: the grace period is 5 s).
const WAIT: Duration = Duration::from_secs(30);

fn probe(pid_file: &Path, then_exit: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("process-group-probe")
        .arg("--pid-file")
        .arg(pid_file)
        .stdin(Stdio::null());
    if then_exit {
        cmd.arg("--then-exit");
    }
    cmd.spawn().expect("start xtask")
}

/// The grandchild's pid, once the probe wrote it.
fn grandchild(pid_file: &Path, xtask: &mut Child) -> i32 {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(pid_file) {
            return text.trim().parse().expect("a pid");
        }
        if let Ok(Some(status)) = xtask.try_wait() {
            panic!("xtask exited ({status}) before its grandchild started");
        }
        assert!(Instant::now() < deadline, "no grandchild after {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `(state, process group)` of a live process, `None` once it is gone (a zombie is gone).
fn stat(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = text[text.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let pgrp = fields.nth(1)?.parse().ok()?;
    (state != 'Z').then_some((state, pgrp))
}

/// The signals `pid` blocks (`SigBlk` of /proc/<pid>/status, bit n-1 = signal n).
fn blocked_signals(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .expect("SigBlk");
    u64::from_str_radix(mask.trim(), 16).expect("hex mask")
}

fn wait_exit(xtask: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = xtask.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = xtask.kill();
            panic!("xtask still running {WAIT:?} after being signalled");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_gone(pid: i32) {
    let deadline = Instant::now() + WAIT;
    while stat(pid).is_some() {
        if Instant::now() >= deadline {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            panic!("the grandchild {pid} outlived xtask");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_signal_to_xtask_stops_its_grandchildren() {
    let dir = tempfile::tempdir().unwrap();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        let pid_file = dir.path().join(format!("{signal}.pid"));
        let mut xtask = probe(&pid_file, false);
        let sleeper = grandchild(&pid_file, &mut xtask);
        let (_, group) = stat(sleeper).expect("the grandchild runs");
        let xtask_pid = i32::try_from(xtask.id()).unwrap();
        assert_eq!(group, xtask_pid, "xtask leads its children's group");
        assert_ne!(group, getpgrp().as_raw(), "not the test's own group");
        // Children start with nothing blocked (so SIGTERM stops them at once, not SIGKILL).
        let stopping = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP]
            .iter()
            .fold(0u64, |m, s| m | 1 << (*s as i32 - 1));
        assert_eq!(
            blocked_signals(sleeper) & stopping,
            0,
            "inherited a blocked mask"
        );

        kill(Pid::from_raw(xtask_pid), signal).expect("signal xtask");
        let status = wait_exit(&mut xtask);
        assert_eq!(
            status.code(),
            Some(128 + signal as i32),
            "{signal}: {status}"
        );
        assert_gone(sleeper);
    }
}

#[test]
fn a_normal_exit_stops_its_grandchildren() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("exit.pid");
    let mut xtask = probe(&pid_file, true);
    let sleeper = grandchild(&pid_file, &mut xtask);
    let status = wait_exit(&mut xtask);
    assert!(status.success(), "{status}");
    assert_gone(sleeper);
}
