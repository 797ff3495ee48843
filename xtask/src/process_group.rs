//! xtask's children never outlive it. xtask leads a process group of its own, which every
//! process it starts (model servers, `shadowd`, `cargo test` and what that runs) joins by
//! inheritance; on SIGINT, SIGTERM or SIGHUP, and when xtask exits, the group's other members
//! are sent SIGTERM, and SIGKILL after [`GRACE`].
//!
//! - Started from an interactive shell (`cargo xtask …`: cargo execs xtask, the job's leader),
//!   xtask already leads its group. Started from a script (sharing the script's group), it
//!   makes a group of its own; if that group was the terminal's foreground, the terminal is
//!   handed to the new group (so Ctrl-C still reaches xtask) and given back at exit.
//! - The signals are caught by a handler that only writes the signal's number to a pipe; a
//!   thread reads it and stops the group. No signal is blocked (a blocked mask would be
//!   inherited by every child: std does not reset it), and caught signals are reset to their
//!   default in children by `exec`.
//! - Members descending from xtask's own parent but not from xtask (the other commands of a
//!   pipeline such as `cargo xtask test | tee log`, which share the shell job's group) are left
//!   alone.

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, kill, sigaction};
use nix::unistd::{Pid, getpgrp, getpid, getppid, pipe2, read, setpgid, tcgetpgrp, tcsetpgrp};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// How long the group has to stop on SIGTERM before it is killed.
pub const GRACE: Duration = Duration::from_secs(5);

/// The signals that stop xtask and its group.
const STOPPING: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// Set once a stopping signal is being handled: xtask then exits with 128 + the signal.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

/// The write end of the signal pipe (-1 before [`lead`]).
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

/// The terminal's foreground group to give back at exit, when xtask took the terminal.
static TERMINAL: Mutex<Option<Pid>> = Mutex::new(None);

/// Whether a stopping signal arrived (xtask is stopping its group and will exit).
pub fn signalled() -> bool {
    SIGNALLED.load(Ordering::SeqCst)
}

/// Stops the group at exit (when dropped); see [`lead`].
pub struct GroupGuard(());

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if signalled() {
            // The signal thread is stopping the group and will exit with the signal's code.
            loop {
                std::thread::park();
            }
        }
        stop_group();
        give_terminal_back();
    }
}

/// The signal handler: writes the signal's number to the pipe, nothing else (write(2) is
/// async-signal-safe; errno is kept for the interrupted code).
extern "C" fn on_signal(signal: nix::libc::c_int) {
    let saved = Errno::last_raw();
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    let byte = signal as u8;
    // SAFETY: `fd` is the pipe's write end, open for the whole run (never closed); the buffer
    // is one byte on this stack. A full pipe (signals already pending) just drops the byte.
    unsafe { nix::libc::write(fd, (&raw const byte).cast(), 1) };
    Errno::set_raw(saved);
}

/// Makes xtask the leader of a process group of its own and starts the signal thread. Call
/// first thing in `main`, before any child is started; keep the guard until exit.
pub fn lead() -> GroupGuard {
    become_leader();
    if let Err(e) = catch_signals() {
        eprintln!("xtask: cannot catch signals ({e}); children may outlive an interrupted run");
    }
    GroupGuard(())
}

/// Installs [`on_signal`] for [`STOPPING`] and the thread that acts on it.
fn catch_signals() -> nix::Result<()> {
    let (reader, writer) = pipe2(OFlag::O_CLOEXEC)?;
    fcntl(&writer, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    // The write end stays open until exit: the handler may run at any moment.
    SIGNAL_PIPE.store(
        std::os::fd::IntoRawFd::into_raw_fd(writer),
        Ordering::SeqCst,
    );
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in STOPPING {
        // SAFETY: the handler only calls write(2) and touches errno and an atomic.
        unsafe { sigaction(signal, &action) }?;
    }
    std::thread::Builder::new()
        .name("xtask-signals".into())
        .spawn(move || {
            let mut byte = [0u8; 1];
            let signal = loop {
                match read(&reader, &mut byte) {
                    Ok(1) => match Signal::try_from(i32::from(byte[0])) {
                        Ok(signal) => break signal,
                        Err(_) => continue,
                    },
                    Err(Errno::EINTR) => continue,
                    _ => return,
                }
            };
            SIGNALLED.store(true, Ordering::SeqCst);
            eprintln!("xtask: {signal}: stopping every process it started");
            stop_group();
            give_terminal_back();
            std::process::exit(128 + signal as i32);
        })
        .map_err(|_| Errno::EAGAIN)?;
    Ok(())
}

/// Runs `f` with SIGTTOU blocked in this thread, so that changing the terminal's foreground
/// group from a background group does not stop xtask (unblocked again before any child starts).
fn without_sigttou<T>(f: impl FnOnce() -> T) -> T {
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let blocked = ttou.thread_block().is_ok();
    let out = f();
    if blocked {
        let _ = ttou.thread_unblock();
    }
    out
}

/// `setpgid(0, 0)` unless xtask already leads its group; takes the terminal along when its old
/// group was the terminal's foreground.
fn become_leader() {
    let (me, old) = (getpid(), getpgrp());
    if me == old {
        return;
    }
    let stdin = std::io::stdin();
    let foreground = tcgetpgrp(&stdin).is_ok_and(|fg| fg == old);
    if let Err(e) = setpgid(Pid::from_raw(0), Pid::from_raw(0)) {
        eprintln!("xtask: cannot start a process group ({e}); children may outlive it");
        return;
    }
    if foreground && without_sigttou(|| tcsetpgrp(&stdin, me)).is_ok() {
        *TERMINAL.lock().unwrap_or_else(|e| e.into_inner()) = Some(old);
    }
}

fn give_terminal_back() {
    let old = TERMINAL.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(old) = old {
        let _ = without_sigttou(|| tcsetpgrp(std::io::stdin(), old));
    }
}

/// One process of `/proc`: its parent, process group and state.
struct ProcStat {
    ppid: i32,
    pgrp: i32,
    state: char,
}

/// `/proc/<pid>/stat`'s state, parent and group (fields 3-5, after the command's parentheses).
fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcStat { ppid, pgrp, state })
}

/// Every live (not zombie) process, by pid.
fn processes() -> HashMap<i32, ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.filter_map(|entry| {
        let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
        (stat.state != 'Z').then_some((pid, stat))
    })
    .collect()
}

/// The members of xtask's group to stop: every other live process in it, except those that
/// descend from xtask's parent through someone other than xtask (pipeline neighbours).
fn members(all: &HashMap<i32, ProcStat>) -> Vec<i32> {
    let (me, parent, group) = (getpid().as_raw(), getppid().as_raw(), getpgrp().as_raw());
    let ours = |pid: i32| {
        let mut p = pid;
        for _ in 0..all.len() {
            if p == me {
                return true;
            }
            if p == parent {
                return false;
            }
            match all.get(&p) {
                Some(stat) if stat.ppid > 1 => p = stat.ppid,
                // An orphan (reparented to init) of our group: ours.
                _ => return true,
            }
        }
        true
    };
    all.iter()
        .filter(|(pid, stat)| stat.pgrp == group && **pid != me && ours(**pid))
        .map(|(pid, _)| *pid)
        .collect()
}

/// SIGTERM to the group's other members, SIGKILL to those still there after [`GRACE`].
fn stop_group() {
    let targets = members(&processes());
    if targets.is_empty() {
        return;
    }
    for &pid in &targets {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + GRACE;
    loop {
        let alive = processes();
        let left: Vec<i32> = targets
            .iter()
            .copied()
            .filter(|pid| alive.contains_key(pid))
            .collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "xtask: {} process(es) ignored SIGTERM; killing them",
                left.len()
            );
            for pid in left {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Flags of the hidden `cargo xtask process-group-probe` (for xtask's own tests).
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Where the grandchild's pid is written.
    #[arg(long)]
    pub pid_file: std::path::PathBuf,
    /// Return as soon as the grandchild runs, instead of waiting to be signalled.
    #[arg(long)]
    pub then_exit: bool,
}

/// Starts `sh`, which starts a long `sleep` (its pid written to `--pid-file`) and waits for
/// it: a child and a grandchild, as `cargo test` and a test's server are. Then waits until
/// signalled, or returns with `--then-exit` (the child is stopped by its guard, the grandchild
/// only by the group's).
pub fn probe(args: ProbeArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let pending = args.pid_file.with_extension("pending");
    let mut procs = crate::services::Processes::default();
    let child = std::process::Command::new("sh")
        .args([
            "-c",
            "sleep 600 & echo $! > \"$0\" && mv \"$0\" \"$1\"; wait",
        ])
        .arg(&pending)
        .arg(&args.pid_file)
        .stdin(std::process::Stdio::null())
        .spawn()
        .context("cannot start sh")?;
    procs.push("sh", child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !args.pid_file.exists() {
        procs.check_running()?;
        anyhow::ensure!(Instant::now() < deadline, "sh never started its sleep");
        std::thread::sleep(Duration::from_millis(20));
    }
    if args.then_exit {
        return Ok(());
    }
    loop {
        procs.check_running()?;
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_past_the_command_name() {
        let s = parse_stat("4242 (sh -c ) x) S 17 4200 4200 34816 4242 4194560").unwrap();
        assert_eq!((s.state, s.ppid, s.pgrp), ('S', 17, 4200));
        assert!(parse_stat("4242 (sh").is_none());
        assert!(parse_stat("").is_none());
    }

    #[test]
    fn pipeline_neighbours_are_not_members() {
        let (me, parent, group) = (getpid().as_raw(), getppid().as_raw(), getpgrp().as_raw());
        let stat = |ppid, pgrp| ProcStat {
            ppid,
            pgrp,
            state: 'S',
        };
        let mut all = HashMap::new();
        all.insert(me, stat(parent, group));
        all.insert(parent, stat(1, 1));
        all.insert(900_001, stat(me, group)); // a child
        all.insert(900_002, stat(900_001, group)); // a grandchild
        all.insert(900_003, stat(1, group)); // an orphaned descendant
        all.insert(900_004, stat(parent, group)); // `tee` beside us in the pipeline
        all.insert(900_005, stat(900_004, group)); // its child
        all.insert(900_006, stat(me, 12_345)); // a child in a group of its own
        let mut got = members(&all);
        got.sort();
        assert_eq!(got, vec![900_001, 900_002, 900_003]);
    }
}
