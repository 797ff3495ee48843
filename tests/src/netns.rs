//! Throw-away network namespaces made with `ip netns`, deleted on drop (even when a test
//! panics), and a way to run code inside one.
//!
//! Sockets belong to the namespace of the thread that creates them, so the usual pattern is
//! to create a listener, a client socket or a capture inside [`NetNs::run`] and use it from
//! any thread afterwards.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};

/// A named network namespace (`/run/netns/<name>`), deleted when dropped.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a namespace with a unique name built from `tag` and brings its `lo` up.
    pub fn new(tag: &str) -> io::Result<NetNs> {
        let name = crate::unique_name(tag);
        run_cmd("ip", &["netns", "add", &name])?;
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <name> <args>`.
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_cmd("ip", &full)
    }

    /// Runs a program inside the namespace (`ip netns exec`) and returns its stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> io::Result<String> {
        let mut full = vec!["netns", "exec", self.name.as_str(), program];
        full.extend_from_slice(args);
        run_cmd_output("ip", &full)
    }

    /// Opens the namespace file, for `setns` (also usable in a `pre_exec` hook).
    pub fn file(&self) -> io::Result<File> {
        File::open(format!("/run/netns/{}", self.name))
    }

    /// Runs `f` on a fresh thread that has joined this namespace and returns its result.
    /// Panics in `f` propagate.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let file = self
            .file()
            .unwrap_or_else(|e| panic!("open netns {}: {e}", self.name));
        std::thread::scope(|scope| {
            let handle = scope.spawn(move || {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("setns: {e}"));
                f()
            });
            match handle.join() {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = run_cmd("ip", &["netns", "del", &self.name]) {
            eprintln!("warning: could not delete netns {}: {e}", self.name);
        }
    }
}

/// Two namespaces joined by a veth pair: `a` (`a_if`, `a_addr`/30) ⇄ `b` (`b_if`, `b_addr`/30).
/// Dropping it deletes both namespaces, which destroys the veth pair.
#[derive(Debug)]
pub struct VethPair {
    pub a: NetNs,
    pub b: NetNs,
    pub a_if: String,
    pub b_if: String,
    pub a_addr: Ipv4Addr,
    pub b_addr: Ipv4Addr,
}

impl VethPair {
    /// Creates the namespaces (with `lo` up), the veth pair and 169.254.x.y/30 addresses.
    pub fn new(tag: &str) -> io::Result<VethPair> {
        static NEXT: AtomicU8 = AtomicU8::new(0);
        let a = NetNs::new(&format!("{tag}a"))?;
        let b = NetNs::new(&format!("{tag}b"))?;
        // Distinct /30s per pair in this process; namespaces keep pairs apart anyway.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let third = (std::process::id() % 200) as u8 + 1;
        let a_addr = Ipv4Addr::new(169, 254, third, (n % 64) * 4 + 1);
        let b_addr = Ipv4Addr::new(169, 254, third, (n % 64) * 4 + 2);
        let pair = VethPair {
            a,
            b,
            a_if: "veth-a".into(),
            b_if: "veth-b".into(),
            a_addr,
            b_addr,
        };
        pair.link()?;
        Ok(pair)
    }

    /// Creates the veth link between the two namespaces, addressed and up (again, after a
    /// test deleted it: deleting one end deletes both).
    pub fn link(&self) -> io::Result<()> {
        self.a.ip(&[
            "link",
            "add",
            &self.a_if,
            "type",
            "veth",
            "peer",
            "name",
            &self.b_if,
            "netns",
            self.b.name(),
        ])?;
        let (a_addr, b_addr) = (self.a_addr, self.b_addr);
        self.a
            .ip(&["addr", "add", &format!("{a_addr}/30"), "dev", &self.a_if])?;
        self.b
            .ip(&["addr", "add", &format!("{b_addr}/30"), "dev", &self.b_if])?;
        self.a.ip(&["link", "set", &self.a_if, "up"])?;
        self.b.ip(&["link", "set", &self.b_if, "up"])?;
        Ok(())
    }
}

/// Runs a command, failing with its stderr when it exits non-zero.
pub fn run_cmd(program: &str, args: &[&str]) -> io::Result<()> {
    run_cmd_output(program, args).map(drop)
}

/// Runs a command and returns its stdout, failing with its stderr when it exits non-zero.
pub fn run_cmd_output(program: &str, args: &[&str]) -> io::Result<String> {
    let out = Command::new(program).args(args).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// TCP segments retransmitted so far in the calling thread's namespace (`RetransSegs` of
/// `/proc/thread-self/net/snmp`, in MSS-sized units). Call it inside [`NetNs::run`].
pub fn tcp_retransmitted_segments() -> io::Result<u64> {
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp")?;
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next(), tcp.next());
    let (Some(names), Some(values)) = (names, values) else {
        return Err(io::Error::other("no Tcp: lines in /proc/net/snmp"));
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RetransSegs")
        .and_then(|(_, value)| value.parse().ok())
        .ok_or_else(|| io::Error::other("no RetransSegs in /proc/net/snmp"))
}
