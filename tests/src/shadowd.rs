//! Locating, spawning and reaping the `shadowd` binary, and running its one-shot commands
//! (`shadowd verdict`) to their end.
//!
//! `env!("CARGO_BIN_EXE_shadowd")` only exists inside the daemon's own package, and
//! `cargo test -p shadowtap-tests` does not build other packages' binaries. So [`path`]:
//! 1. uses `$SHADOWD_BIN` when set (CI can point at a prebuilt or release binary);
//! 2. otherwise runs `cargo build -p shadow-daemon --bin shadowd --message-format=json` once
//!    per test process (same workspace, same target dir, `--release` when the test binary
//!    itself lives under a `release` directory) and takes the path cargo reports for the
//!    `shadowd` artifact. The build is incremental, so it costs seconds when nothing changed,
//!    and the binary always matches the sources under test (no stale `target/debug/shadowd`).

use crate::netns::NetNs;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tempfile::NamedTempFile;

/// Path to an up-to-date `shadowd` (see the module docs). Panics if it cannot be built.
pub fn path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| match std::env::var_os("SHADOWD_BIN") {
        Some(p) => PathBuf::from(p),
        None => build().unwrap_or_else(|e| panic!("building shadowd: {e}")),
    })
}

fn build() -> io::Result<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let release = std::env::current_exe()?
        .components()
        .any(|c| c.as_os_str() == "release");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace).args([
        "build",
        "-p",
        "shadow-daemon",
        "--bin",
        "shadowd",
        "--message-format=json-render-diagnostics",
    ]);
    if release {
        cmd.arg("--release");
    }
    let out = cmd.stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "cargo build failed ({})",
            out.status
        )));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "shadowd")
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| io::Error::other("cargo reported no shadowd executable"))
}

/// A running `shadowd`, killed and reaped on drop. Its stdout and stderr go to a temporary
/// file (no pipe to fill up and block the daemon), readable with [`Daemon::output`] and
/// removed on drop.
pub struct Daemon {
    child: Option<Child>,
    log: NamedTempFile,
}

impl Daemon {
    /// Starts `shadowd <args>`, inside `netns` when given.
    pub fn spawn(netns: Option<&NetNs>, args: &[&str]) -> io::Result<Daemon> {
        Daemon::spawn_program(path(), netns, args)
    }

    /// Starts `shadowd <args>` with extra environment variables, inside `netns` when given.
    pub fn spawn_with_env(
        netns: Option<&NetNs>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> io::Result<Daemon> {
        Daemon::start(path(), netns, args, env)
    }

    /// Starts any `program <args>` the same way (for helpers running next to the daemon, and
    /// for testing this harness).
    pub fn spawn_program(
        program: &Path,
        netns: Option<&NetNs>,
        args: &[&str],
    ) -> io::Result<Daemon> {
        Daemon::start(program, netns, args, &[])
    }

    fn start(
        program: &Path,
        netns: Option<&NetNs>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> io::Result<Daemon> {
        let log = tempfile::Builder::new().suffix(".shadowd.log").tempfile()?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            // Duplicates of one descriptor: both streams append at the same offset.
            .stdout(log.as_file().try_clone()?)
            .stderr(log.as_file().try_clone()?);
        if let Some(ns) = netns {
            enter(&mut cmd, ns)?;
        }
        let child = cmd.spawn()?;
        Ok(Daemon {
            child: Some(child),
            log,
        })
    }

    /// The daemon's process id.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("not reaped").id() as i32)
    }

    /// Sends `signal` (SIGTERM for a graceful stop, SIGKILL to test leak-freedom).
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        kill(self.pid(), signal).map_err(io::Error::from)
    }

    /// Waits up to `limit` for the daemon to exit; `Ok(None)` if it is still running.
    pub fn wait_timeout(&mut self, limit: Duration) -> io::Result<Option<ExitStatus>> {
        let child = self.child.as_mut().expect("not reaped");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`; returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        if let Some(status) = self.wait_timeout(grace)? {
            return Ok(status);
        }
        self.signal(Signal::SIGKILL)?;
        self.child.as_mut().expect("not reaped").wait()
    }

    /// Waits (bounded, 60 s) until the daemon prints `needle`; panics with its output
    /// otherwise, or when it exits first.
    pub fn wait_for_output(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.output().contains(needle) {
                return;
            }
            if let Some(status) = self
                .wait_timeout(Duration::from_millis(50))
                .expect("waiting for shadowd")
            {
                panic!(
                    "shadowd exited ({status}) before `{needle}`:\n{}",
                    self.output()
                );
            }
        }
        panic!("shadowd never printed `{needle}`:\n{}", self.output());
    }

    /// A reader of [`Daemon::output`] that another thread can keep (it reads nothing once the
    /// daemon is dropped).
    pub fn log_reader(&self) -> impl Fn() -> String + Send + 'static {
        let path = self.log.path().to_path_buf();
        move || std::fs::read_to_string(&path).unwrap_or_default()
    }

    /// Everything the daemon printed so far (stdout and stderr interleaved).
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

/// How a `shadowd` command that ran to its end finished.
#[derive(Debug)]
pub struct Finished {
    /// Its exit code (`None` if a signal ended it).
    pub code: Option<i32>,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

/// Runs `shadowd <args>` (inside `netns` when given) to its end, bounded by `limit` (killed
/// after it, which is an error); stdout and stderr are kept apart (in temporary files, so no
/// pipe can fill up).
pub fn run_to_end(netns: Option<&NetNs>, args: &[&str], limit: Duration) -> io::Result<Finished> {
    let stdout = tempfile::Builder::new().suffix(".stdout").tempfile()?;
    let stderr = tempfile::Builder::new().suffix(".stderr").tempfile()?;
    let mut cmd = Command::new(path());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(stdout.as_file().try_clone()?)
        .stderr(stderr.as_file().try_clone()?);
    if let Some(ns) = netns {
        enter(&mut cmd, ns)?;
    }
    let mut child = cmd.spawn()?;
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "`shadowd {}` still running after {limit:?}; killed",
                args.join(" ")
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |f: &NamedTempFile| std::fs::read_to_string(f.path());
    Ok(Finished {
        code: status.code(),
        stdout: read(&stdout)?,
        stderr: read(&stderr)?,
    })
}

/// Makes `cmd` join `ns`'s network namespace between fork and exec.
fn enter(cmd: &mut Command, ns: &NetNs) -> io::Result<()> {
    let ns_file = ns.file()?;
    // SAFETY: setns(2) is async-signal-safe; the fd was opened before fork.
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::setns(&ns_file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(io::Error::from)
        });
    }
    Ok(())
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}
