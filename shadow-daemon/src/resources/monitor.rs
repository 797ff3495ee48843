//! [`ResourceMonitor`]: finds each model server's processes (or reads its configured pid or
//! cgroup), samples their CPU time and memory and shadowd's, and publishes a
//! [`ResourceSnapshot`] to its [`ResourceHandle`].

use super::cpu::CpuSince;
use super::reader::{self, NotFound, ProcFs, ProcessReading};
use super::{Process, ProcessUsage, ResourceHandle, ResourceSnapshot, self_usage};
use crate::config::{Config, ResourceTarget};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Longest wait between two searches for a server that is not found.
const MAX_DISCOVERY_WAIT: Duration = Duration::from_secs(30);
/// A found server's processes are searched again this often (workers added meanwhile).
const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// Samples the model servers' and shadowd's CPU time and memory. [`ResourceMonitor::sample`]
/// does blocking IO (small `/proc` files; the first one may resolve the shadow's host name):
/// run it off the async runtime, as [`super::start`] does.
#[derive(Debug)]
pub struct ResourceMonitor {
    proc: ProcFs,
    ticks_per_second: f64,
    production: Tracked,
    shadow: Tracked,
    first_sample: Option<Instant>,
    handle: ResourceHandle,
}

impl ResourceMonitor {
    /// A monitor of the servers `config` names, reading the real `/proc`.
    pub fn new(config: &Config) -> Self {
        Self::with_proc(config, ProcFs::default())
    }

    /// A monitor reading `proc` (a fake one in tests).
    pub fn with_proc(config: &Config, proc: ProcFs) -> Self {
        let (production, shadow) = sources(config);
        if !config.resources.enabled {
            tracing::info!(
                "[resources] enabled = false: the model servers' CPU and memory are not measured \
                 (shadowd's are)"
            );
        }
        let interval = config.resources.sample_interval;
        ResourceMonitor {
            proc,
            ticks_per_second: reader::clock_ticks_per_second(),
            production: Tracked::new(Process::Production, production, interval),
            shadow: Tracked::new(Process::Shadow, shadow, interval),
            first_sample: None,
            handle: ResourceHandle::default(),
        }
    }

    /// The handle its samples are published to.
    pub fn handle(&self) -> ResourceHandle {
        self.handle.clone()
    }

    /// The latest sample.
    pub fn latest(&self) -> ResourceSnapshot {
        self.handle.latest()
    }

    /// Reads every measured process now (searching for servers not found yet or restarted),
    /// publishes the snapshot and returns it.
    pub fn sample(&mut self) -> ResourceSnapshot {
        let now = Instant::now();
        let first = *self.first_sample.get_or_insert(now);
        let ticks = self.ticks_per_second;
        let snapshot = ResourceSnapshot {
            elapsed_seconds: now.duration_since(first).as_secs_f64(),
            production: self.production.sample(&self.proc, ticks, now),
            shadow: self.shadow.sample(&self.proc, ticks, now),
            shadowd: self_usage(&self.proc),
        };
        self.handle.publish(snapshot.clone());
        snapshot
    }
}

/// Where one model server's usage is read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    /// Not measured: `[resources] enabled = false`.
    Off,
    /// Not measured any more, for the reason already logged.
    GaveUp,
    /// The shadow URL's host, resolved at the first sample (a name may need DNS): becomes
    /// `Port` if it is an address of this host.
    ShadowHost {
        url: String,
        host: String,
        port: u16,
    },
    /// The processes holding a socket that listens on `port` at one of `addrs` (`None`: any).
    Port {
        port: u16,
        addrs: Option<Vec<IpAddr>>,
    },
    /// A configured process.
    Pid(u32),
    /// A configured cgroup v2 directory.
    Cgroup(PathBuf),
}

fn sources(config: &Config) -> (Source, Source) {
    let r = &config.resources;
    if !r.enabled {
        return (Source::Off, Source::Off);
    }
    let configured = |target: &ResourceTarget, discover: Source| match target {
        ResourceTarget::Discover => discover,
        ResourceTarget::Pid(pid) => Source::Pid(pid.get()),
        ResourceTarget::Cgroup(dir) => Source::Cgroup(dir.clone()),
    };
    let production_port = config.capture.ports.first().map(|p| p.get());
    let production = configured(
        &r.production,
        production_port.map_or(Source::GaveUp, |port| Source::Port { port, addrs: None }),
    );
    let url = &config.shadow.url;
    let shadow = configured(
        &r.shadow,
        Source::ShadowHost {
            url: url.to_string(),
            host: url.authority().host().to_string(),
            port: url.port(),
        },
    );
    (production, shadow)
}

/// One process being measured: the pid and start time name it even when pids are reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Member {
    pid: u32,
    start_time: u64,
}

/// When to search for a server's processes next: at once while none is known, then after
/// each failed search as long as the previous wait again (one sample interval at first, at
/// most [`MAX_DISCOVERY_WAIT`]); once found, every [`REFRESH_EVERY`] and when one exits.
#[derive(Clone, Debug)]
struct Retry {
    next: Option<Instant>,
    wait: Duration,
    min: Duration,
}

impl Retry {
    fn new(min: Duration) -> Self {
        Retry {
            next: None,
            wait: min,
            min,
        }
    }

    fn due(&self, now: Instant) -> bool {
        self.next.is_none_or(|next| now >= next)
    }

    fn failed(&mut self, now: Instant) {
        self.next = Some(now + self.wait);
        self.wait = (self.wait * 2).min(MAX_DISCOVERY_WAIT.max(self.min));
    }

    fn found(&mut self, now: Instant) {
        self.next = Some(now + REFRESH_EVERY.max(self.min));
        self.wait = self.min;
    }

    /// A process exited: search at the next sample (one interval after the last search at
    /// the earliest, since searches happen only at samples).
    fn lost(&mut self) {
        self.next = None;
    }
}

/// One model server: where it is read, its current processes and its CPU so far.
#[derive(Debug)]
struct Tracked {
    process: Process,
    source: Source,
    members: Vec<Member>,
    cpu: CpuSince<(u32, u64)>,
    retry: Retry,
    /// Why it was last reported missing (said once until it is found again).
    said_missing: Option<&'static str>,
    /// Whether where it is measured was logged.
    said_measuring: bool,
}

impl Tracked {
    fn new(process: Process, source: Source, interval: Duration) -> Self {
        Tracked {
            process,
            source,
            members: Vec::new(),
            cpu: CpuSince::new(),
            retry: Retry::new(interval),
            said_missing: None,
            said_measuring: false,
        }
    }

    fn name(&self) -> &'static str {
        self.process.as_str()
    }

    fn sample(&mut self, proc: &ProcFs, ticks: f64, now: Instant) -> Option<ProcessUsage> {
        if let Source::ShadowHost { url, host, port } = &self.source {
            self.source = match local_addresses(host, *port) {
                Ok(addrs) => Source::Port {
                    port: *port,
                    addrs: Some(addrs),
                },
                Err(why) => {
                    tracing::info!(
                        "the shadow at {url} {why}: its CPU and memory are not measured (no \
                         process=\"shadow\" resource metrics); if it runs on this host under \
                         another address, set [resources] shadow_pid or shadow_cgroup"
                    );
                    Source::GaveUp
                }
            };
        }
        match self.source.clone() {
            Source::Off | Source::GaveUp | Source::ShadowHost { .. } => None,
            Source::Port { port, addrs } => {
                self.sample_port(proc, port, addrs.as_deref(), ticks, now)
            }
            Source::Pid(pid) => self.sample_pid(proc, pid, ticks),
            Source::Cgroup(dir) => self.sample_cgroup(dir),
        }
    }

    fn sample_port(
        &mut self,
        proc: &ProcFs,
        port: u16,
        addrs: Option<&[IpAddr]>,
        ticks: f64,
        now: Instant,
    ) -> Option<ProcessUsage> {
        let mut readings = read_members(proc, &self.members);
        if readings.len() < self.members.len() {
            let gone: Vec<u32> = self
                .members
                .iter()
                .filter(|m| !readings.iter().any(|(r, _)| r == *m))
                .map(|m| m.pid)
                .collect();
            if readings.is_empty() {
                tracing::info!(
                    "the {} server (pids {gone:?}) exited: looking for the process listening on \
                     port {port} again",
                    self.name()
                );
            } else {
                tracing::debug!(process = self.name(), pids = ?gone, "a server process exited");
            }
            self.retry.lost();
        }
        if self.retry.due(now) {
            let found = proc
                .listening_processes(port, addrs)
                .map(|pids| read_members(proc, &members_of(proc, &pids)));
            match found {
                Ok(found) if !found.is_empty() => {
                    let pids: Vec<u32> = found.iter().map(|(m, _)| m.pid).collect();
                    if readings.is_empty() || self.said_missing.is_some() {
                        tracing::info!(
                            "the {} server: measuring pids {pids:?} (listening on port {port})",
                            self.name()
                        );
                    } else if found.len() != readings.len() {
                        tracing::debug!(process = self.name(), ?pids, "server processes");
                    }
                    readings = found;
                    self.retry.found(now);
                    self.said_missing = None;
                }
                Ok(_) => self.missing(now, readings.is_empty(), port, "vanished", || {
                    "its processes exited while being read".to_string()
                }),
                Err(why) => {
                    let kind = match why {
                        NotFound::Table { .. } => "table",
                        NotFound::NotListening => "not_listening",
                        NotFound::Hidden { .. } => "hidden",
                    };
                    self.missing(now, readings.is_empty(), port, kind, || format_error(&why));
                }
            }
        }
        self.members = readings.iter().map(|(m, _)| *m).collect();
        self.usage(&readings, ticks)
    }

    /// A search found nothing: search again later, and say so once when nothing is measured.
    fn missing(
        &mut self,
        now: Instant,
        nothing_measured: bool,
        port: u16,
        kind: &'static str,
        why: impl FnOnce() -> String,
    ) {
        self.retry.failed(now);
        if nothing_measured && self.said_missing != Some(kind) {
            let name = self.name();
            tracing::warn!(
                "the {name} server: no process found listening on port {port}: {}; its CPU and \
                 memory are not measured until one is (or name it with [resources] {name}_pid \
                 or {name}_cgroup)",
                why()
            );
            self.said_missing = Some(kind);
        }
    }

    fn sample_pid(&mut self, proc: &ProcFs, pid: u32, ticks: f64) -> Option<ProcessUsage> {
        let first = self.members.is_empty();
        let members = if first {
            members_of(proc, &[pid])
        } else {
            self.members.clone()
        };
        let readings = read_members(proc, &members);
        if readings.is_empty() {
            let what = if first { "is not running" } else { "exited" };
            tracing::warn!(
                "the {} server's process {pid} ([resources] {}_pid) {what}: its CPU and memory \
                 are not measured any more",
                self.name(),
                self.name()
            );
            self.source = Source::GaveUp;
        } else if first {
            tracing::info!("the {} server: measuring pid {pid}", self.name());
        }
        self.members = readings.iter().map(|(m, _)| *m).collect();
        self.usage(&readings, ticks)
    }

    fn sample_cgroup(&mut self, dir: PathBuf) -> Option<ProcessUsage> {
        match reader::read_cgroup(&dir) {
            Ok(reading) => {
                if self.said_missing.take().is_some() || !self.said_measuring {
                    tracing::info!(
                        "the {} server: measuring cgroup {}",
                        self.name(),
                        dir.display()
                    );
                    self.said_measuring = true;
                }
                let usec = self.cpu.observe([((0, 0), reading.usage_usec)]);
                Some(ProcessUsage {
                    pids: Vec::new(),
                    cgroup: Some(dir),
                    cpu_seconds: usec as f64 / 1e6,
                    rss_bytes: reading.memory_bytes,
                })
            }
            Err(e) => {
                self.cpu.observe([]);
                if self.said_missing.replace("cgroup").is_none() {
                    tracing::warn!(
                        "the {} server's cgroup ([resources] {}_cgroup) cannot be read: {e}; its \
                         CPU and memory are not measured until it can",
                        self.name(),
                        self.name()
                    );
                }
                None
            }
        }
    }

    /// The usage of the processes read (none: `None`, the CPU total kept for their return).
    fn usage(&mut self, readings: &[(Member, ProcessReading)], ticks: f64) -> Option<ProcessUsage> {
        let cpu_ticks = self.cpu.observe(
            readings
                .iter()
                .map(|(m, r)| ((m.pid, m.start_time), r.stat.cpu_ticks())),
        );
        let cpu_seconds = cpu_ticks as f64 / ticks;
        if readings.is_empty() {
            return None;
        }
        Some(ProcessUsage {
            pids: readings.iter().map(|(m, _)| m.pid).collect(),
            cgroup: None,
            cpu_seconds,
            rss_bytes: readings.iter().map(|(_, r)| r.rss_bytes).sum(),
        })
    }
}

/// `error` and its sources, `: `-separated.
fn format_error(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(&format!(": {e}"));
        source = e.source();
    }
    text
}

/// The processes `pids` as they are now (those that exited meanwhile left out).
fn members_of(proc: &ProcFs, pids: &[u32]) -> Vec<Member> {
    pids.iter()
        .filter_map(|&pid| {
            proc.process(pid).map(|r| Member {
                pid,
                start_time: r.stat.start_time,
            })
        })
        .collect()
}

/// A reading of each member still running (the same process: the same start time).
fn read_members(proc: &ProcFs, members: &[Member]) -> Vec<(Member, ProcessReading)> {
    members
        .iter()
        .filter_map(|m| {
            proc.process(m.pid)
                .filter(|r| r.stat.start_time == m.start_time)
                .map(|r| (*m, r))
        })
        .collect()
}

/// The addresses `host` stands for that belong to this host (loopback, or bindable here);
/// an error saying why when there are none. `0.0.0.0` and `::` stand for loopback.
fn local_addresses(host: &str, port: u16) -> Result<Vec<IpAddr>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let resolved: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot be resolved ({e})"))?
            .map(|a| a.ip())
            .collect(),
    };
    let local: Vec<IpAddr> = resolved
        .iter()
        .map(|ip| match ip {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            other => *other,
        })
        .filter(|ip| ip.is_loopback() || UdpSocket::bind((*ip, 0)).is_ok())
        .collect();
    if local.is_empty() {
        Err(format!(
            "is not on this host ({host} is {resolved:?}, none of them an address of this host)"
        ))
    } else {
        Ok(local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fake_proc::FakeProc;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::process::{Child, Command, Stdio};

    fn config(production_port: u16, shadow: &str, resources: &str) -> Config {
        let text = format!(
            "[capture]\nports = [{production_port}]\n[shadow]\nurl = \"{shadow}\"\n[resources]\n{resources}"
        );
        Config::from_toml(&text, std::path::Path::new("t.toml")).unwrap()
    }

    #[test]
    fn local_addresses_are_loopback_or_bindable_here() {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(local_addresses("127.0.0.1", 80), Ok(vec![loopback]));
        assert_eq!(local_addresses("0.0.0.0", 80), Ok(vec![loopback]));
        let named = local_addresses("localhost", 80).unwrap();
        assert!(named.iter().all(IpAddr::is_loopback), "{named:?}");
        // TEST-NET-1 (RFC 5737) is nobody's address.
        let err = local_addresses("192.0.2.1", 80).unwrap_err();
        assert!(err.contains("is not on this host"), "{err}");
        let err = local_addresses("no-such-host.invalid", 80).unwrap_err();
        assert!(err.contains("cannot be resolved"), "{err}");
    }

    #[test]
    fn retry_waits_longer_after_each_failure_and_refreshes_once_found() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let mut retry = Retry::new(second);
        assert!(retry.due(t0));
        retry.failed(t0);
        assert!(!retry.due(t0 + second / 2));
        assert!(retry.due(t0 + second));
        retry.failed(t0 + second);
        assert!(!retry.due(t0 + second * 2), "the wait doubled");
        assert!(retry.due(t0 + second * 3));
        for _ in 0..10 {
            retry.failed(t0);
        }
        assert!(retry.due(t0 + MAX_DISCOVERY_WAIT), "capped");
        retry.found(t0);
        assert!(!retry.due(t0 + second * 59));
        assert!(retry.due(t0 + REFRESH_EVERY));
        retry.lost();
        assert!(retry.due(t0));
        retry.failed(t0);
        assert!(retry.due(t0 + second), "found reset the wait");
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn a_fake_proc_server_is_found_counted_from_first_sight_and_followed_across_exits() {
        let fake = FakeProc::new();
        let ticks = reader::clock_ticks_per_second();
        // The shadow at 127.0.0.1:8081: nothing listens there.
        let mut monitor = ResourceMonitor::with_proc(
            &config(8080, "http://127.0.0.1:8081", ""),
            ProcFs::at(fake.root()),
        );
        let s = monitor.sample();
        let production = s.production.unwrap();
        assert_eq!(production.pids, vec![10, 11]);
        assert_eq!(
            production.cpu_seconds, 0.0,
            "CPU before the run does not count"
        );
        assert_eq!(production.rss_bytes, (10 + 11) * 1024);
        assert_eq!(s.shadow, None);
        assert_eq!(s.shadowd.pids, vec![std::process::id()]);
        // Pid 10 uses 50 more ticks, pid 11 20.
        fake.set_cpu(10, 100 + 50, 5);
        fake.set_cpu(11, 110 + 20, 5);
        let s = monitor.sample();
        assert_eq!(s.production.as_ref().unwrap().cpu_seconds, 70.0 / ticks);
        assert_eq!(monitor.latest(), s);
        // A worker exits: what it used stays; the other is found again.
        fake.remove_process(11);
        fake.set_cpu(10, 150 + 30, 5);
        let production = monitor.sample().production.unwrap();
        assert_eq!(production.pids, vec![10]);
        assert_eq!(production.cpu_seconds, 100.0 / ticks);
        // The server is gone: not measured (not zero)...
        fake.remove_process(10);
        assert_eq!(monitor.sample().production, None);
        // ... until a new one holds the socket (after the retry wait); its earlier CPU does
        // not count, the total so far stays.
        fake.add_process(13, &["socket:[4242]"]);
        monitor.production.retry.lost();
        let production = monitor.sample().production.unwrap();
        assert_eq!(production.pids, vec![13]);
        assert_eq!(production.cpu_seconds, 100.0 / ticks);
    }

    #[test]
    fn configured_pid_and_cgroup_are_read_and_a_disabled_monitor_reads_neither() {
        let fake = FakeProc::new();
        let cgroup = tempfile::tempdir().unwrap();
        std::fs::write(cgroup.path().join("cpu.stat"), "usage_usec 9000000\n").unwrap();
        std::fs::write(cgroup.path().join("memory.current"), "8192\n").unwrap();
        let resources = format!(
            "production_pid = 12\nshadow_cgroup = \"{}\"\n",
            cgroup.path().display()
        );
        let mut monitor = ResourceMonitor::with_proc(
            &config(8080, "http://10.0.0.2:8081", &resources),
            ProcFs::at(fake.root()),
        );
        let s = monitor.sample();
        assert_eq!(s.production.as_ref().unwrap().pids, vec![12]);
        let shadow = s.shadow.unwrap();
        assert_eq!(
            (
                shadow.cgroup.as_deref(),
                shadow.cpu_seconds,
                shadow.rss_bytes
            ),
            (Some(cgroup.path()), 0.0, 8192)
        );
        std::fs::write(cgroup.path().join("cpu.stat"), "usage_usec 11500000\n").unwrap();
        assert_eq!(monitor.sample().shadow.unwrap().cpu_seconds, 2.5);
        // The configured process exits: not measured, and not searched for.
        fake.remove_process(12);
        assert_eq!(monitor.sample().production, None);
        fake.add_process(12, &[]);
        assert_eq!(monitor.sample().production, None);

        let mut off = ResourceMonitor::with_proc(
            &config(8080, "http://127.0.0.1:8081", "enabled = false\n"),
            ProcFs::at(fake.root()),
        );
        let s = off.sample();
        assert_eq!((s.production, s.shadow), (None, None));
        assert_eq!(s.shadowd.pids, vec![std::process::id()]);
    }

    /// A child model server: listens on a free port of 127.0.0.1, and on each input line
    /// burns 0.3 s of its own CPU time (whatever the machine's speed), then answers `done`.
    struct BusyServer {
        child: Child,
        port: u16,
        lines: BufReader<std::process::ChildStdout>,
    }

    const BUSY_SERVER: &str = r#"
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
for line in sys.stdin:
    start = time.process_time()
    while time.process_time() - start < 0.3:
        pass
    print("done", flush=True)
"#;

    impl BusyServer {
        /// `None` (with a message) when python3 is not installed.
        fn start() -> Option<BusyServer> {
            let spawned = Command::new("python3")
                .args(["-u", "-c", BUSY_SERVER])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn();
            let mut child = match spawned {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    eprintln!("skipped: python3 is not installed");
                    return None;
                }
                Err(e) => panic!("python3: {e}"),
            };
            let mut lines = BufReader::new(child.stdout.take().unwrap());
            let mut port = String::new();
            lines.read_line(&mut port).unwrap();
            let port = port.trim().parse().expect("the child prints its port");
            Some(BusyServer { child, port, lines })
        }

        fn work(&mut self) {
            let stdin = self.child.stdin.as_mut().unwrap();
            stdin.write_all(b"work\n").unwrap();
            stdin.flush().unwrap();
            let mut done = String::new();
            self.lines.read_line(&mut done).unwrap();
            assert_eq!(done.trim(), "done");
        }
    }

    impl Drop for BusyServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// The real `/proc`: production is a child process found by its port, the shadow is this
    /// test process (listening on 127.0.0.1); the child's CPU grows by the work it does, both
    /// have resident memory, and once the child exits production is not measured.
    #[test]
    fn a_real_child_server_is_found_by_its_port_and_its_work_is_counted() {
        let Some(mut server) = BusyServer::start() else {
            return;
        };
        let shadow = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let shadow_url = format!("http://{}", shadow.local_addr().unwrap());
        let mut monitor = ResourceMonitor::new(&config(server.port, &shadow_url, ""));
        let before = monitor.sample();
        let production = before.production.clone().expect("the child is found");
        assert_eq!(production.pids, vec![server.child.id()]);
        assert!(production.rss_bytes > 0);
        let own = before.shadow.clone().expect("this test process is found");
        assert!(own.pids.contains(&std::process::id()), "{:?}", own.pids);
        assert!(own.rss_bytes > 0 && before.shadowd.rss_bytes > 0);

        server.work();
        let after = monitor.sample();
        let used = after.production.unwrap().cpu_seconds - production.cpu_seconds;
        // 0.3 s of the child's CPU, read in clock ticks.
        assert!(used > 0.2, "the child used {used} s");

        let pid = server.child.id();
        drop(server);
        let gone = monitor.sample();
        assert_eq!(gone.production, None, "pid {pid} exited");
        assert!(gone.shadow.is_some());
    }
}
