//! Resource usage of the two model servers and of shadowd: CPU time and resident memory, so
//! that "the shadow costs 1.8× production's CPU" can be measured and judged.
//!
//! ```text
//! [resources] ──ResourceMonitor::new──▶ ResourceMonitor ──sample() every sample_interval──▶
//!   ResourceHandle::latest() → ResourceSnapshot { production, shadow, shadowd }
//!     ├ sinks::metrics: shadowtap_resource_{cpu_seconds_total,memory_bytes}{process}
//!     └ sinks::admin:   /api/summary "resources"
//! ```
//!
//! A model server is found as the processes holding the socket that listens on its port
//! (production: the first capture port; the shadow: its URL's port, when the URL names this
//! host): `/proc/net/tcp{,6}` gives the listening socket's inode, `/proc/[pid]/fd` the
//! processes holding it (a pre-fork server's workers too, summed). `[resources] *_pid` or
//! `*_cgroup` name the process or the cgroup v2 directory instead. When a process exits (the
//! server restarted) the port is searched again, at most once per sample interval (less often
//! while nothing is found), and the set is refreshed once a minute.
//!
//! CPU seconds count from the first sample of each process, so a production server's CPU from
//! before the run does not count; shadowd's count from its own start. A server not found is
//! `None` (its metric series absent), never 0.
//!
//! [`procfs`] parses (sans-IO), [`reader`] reads `/proc` and cgroups, [`cpu`] turns absolute
//! counters of a changing set of processes into CPU used during the run, [`monitor`] ties them
//! together.

pub mod cpu;
#[cfg(test)]
mod fake_proc;
mod monitor;
pub mod procfs;
pub mod reader;

use crate::config::Config;
use crate::shutdown::Shutdown;
pub use monitor::ResourceMonitor;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The processes measured: the `process` label of the resource metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Process {
    /// The production model server.
    Production,
    /// The shadow model server.
    Shadow,
    /// shadowd itself.
    Shadowd,
}

impl Process {
    /// Every process, in label order.
    pub const ALL: [Process; 3] = [Process::Production, Process::Shadow, Process::Shadowd];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Process::Production => "production",
            Process::Shadow => "shadow",
            Process::Shadowd => "shadowd",
        }
    }
}

/// The usage of one measured process (or set of processes, or cgroup).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessUsage {
    /// The processes measured, summed (ascending; several for a pre-fork server); empty when a
    /// cgroup is measured.
    pub pids: Vec<u32>,
    /// The cgroup v2 directory measured, if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<PathBuf>,
    /// User plus system CPU seconds used since the monitor first saw each process (the run's
    /// share; across restarts of the server, too); shadowd's since it started. Never decreases.
    pub cpu_seconds: f64,
    /// Resident memory at the latest sample, bytes (summed over the processes, so pages they
    /// share count once per process); a cgroup's `memory.current` (page cache included).
    pub rss_bytes: u64,
}

/// The latest sample of every measured process: `/api/summary`'s `resources`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceSnapshot {
    /// Seconds from the monitor's first sample to this one (0 before the first two): with
    /// `cpu_seconds`, the average number of cores used.
    pub elapsed_seconds: f64,
    /// The production model server; `None` while it is not found (or not measured).
    pub production: Option<ProcessUsage>,
    /// The shadow model server; `None` while it is not found, not on this host, or not
    /// measured.
    pub shadow: Option<ProcessUsage>,
    /// shadowd itself.
    pub shadowd: ProcessUsage,
}

impl ResourceSnapshot {
    /// A snapshot before any sample: only shadowd, read now.
    fn unsampled() -> Self {
        ResourceSnapshot {
            elapsed_seconds: 0.0,
            production: None,
            shadow: None,
            shadowd: self_usage(&reader::ProcFs::default()),
        }
    }

    /// The usage of `process`, if it is measured.
    pub fn get(&self, process: Process) -> Option<&ProcessUsage> {
        match process {
            Process::Production => self.production.as_ref(),
            Process::Shadow => self.shadow.as_ref(),
            Process::Shadowd => Some(&self.shadowd),
        }
    }
}

/// The latest [`ResourceSnapshot`], shared by the sampler and its readers (metrics, admin,
/// decisions). Cheap to clone; [`ResourceHandle::latest`] copies a few numbers under a lock.
#[derive(Clone, Debug)]
pub struct ResourceHandle {
    latest: Arc<Mutex<ResourceSnapshot>>,
}

impl Default for ResourceHandle {
    fn default() -> Self {
        ResourceHandle {
            latest: Arc::new(Mutex::new(ResourceSnapshot::unsampled())),
        }
    }
}

impl ResourceHandle {
    /// The latest sample (before the first one: shadowd only).
    pub fn latest(&self) -> ResourceSnapshot {
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the latest sample (the monitor does, at each sample).
    pub fn publish(&self, snapshot: ResourceSnapshot) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = snapshot;
    }
}

/// shadowd's own usage now: CPU seconds since it started, resident memory; `None` if `/proc`
/// cannot be read.
pub fn shadowd_usage() -> Option<ProcessUsage> {
    read_self_usage(&reader::ProcFs::default())
}

fn read_self_usage(proc: &reader::ProcFs) -> Option<ProcessUsage> {
    let reading = proc.own_process()?;
    Some(ProcessUsage {
        pids: vec![std::process::id()],
        cgroup: None,
        cpu_seconds: reading.stat.cpu_ticks() as f64 / reader::clock_ticks_per_second(),
        rss_bytes: reading.rss_bytes,
    })
}

/// The calling process's usage as `proc` reports it (zeros if it cannot be read).
fn self_usage(proc: &reader::ProcFs) -> ProcessUsage {
    read_self_usage(proc).unwrap_or_else(|| ProcessUsage {
        pids: vec![std::process::id()],
        cgroup: None,
        cpu_seconds: 0.0,
        rss_bytes: 0,
    })
}

/// Starts sampling as `config.resources` says, every `sample_interval` until `shutdown`, on
/// the current Tokio runtime (the `/proc` reads run on its blocking pool), and returns the
/// handle to the latest sample. The first sample is taken at once, on the calling thread: it
/// finds the model servers by their ports while shadowd still holds its capabilities (reading
/// another process's `/proc/PID/fd` needs ptrace rights, gone once the tap is attached), and
/// found processes are kept for as long as they live.
pub fn start(config: &Config, mut shutdown: Shutdown) -> ResourceHandle {
    let mut monitor = ResourceMonitor::new(config);
    let handle = monitor.handle();
    monitor.sample();
    let interval = config.resources.sample_interval;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.requested() => break,
                _ = ticker.tick() => {}
            }
            let sampled = tokio::task::spawn_blocking(move || {
                monitor.sample();
                monitor
            });
            monitor = match sampled.await {
                Ok(monitor) => monitor,
                Err(e) => {
                    tracing::warn!("resource sampling stopped: {e}");
                    break;
                }
            };
        }
    });
    handle
}
