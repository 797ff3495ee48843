//! CPU time and memory from /proc: of a process (`/proc/PID/stat`, `/proc/PID/status`) and of
//! the whole machine (`/proc/stat`).

use anyhow::Context;
use std::process::Command;
use std::time::Duration;

/// CPU time (user + system, all threads) used so far by `pid`.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let ticks = stat_cpu_ticks(&text).with_context(|| format!("malformed {path}: {text}"))?;
    Ok(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second(),
    ))
}

/// CPU time used so far by the whole machine, summed over all CPUs, excluding idle and iowait.
pub fn machine_busy_time() -> anyhow::Result<Duration> {
    let text = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    let ticks = machine_busy_ticks(&text).context("no `cpu` line in /proc/stat")?;
    Ok(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second(),
    ))
}

/// Resident memory of `pid`: now and peak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
}

/// `VmRSS` and `VmHWM` of `pid`.
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status_memory(&text).with_context(|| format!("no VmRSS/VmHWM in {path}"))
}

/// utime + stime (fields 14 and 15, in clock ticks) of a `/proc/PID/stat` line. The command
/// name (field 2) is parenthesised and may hold spaces and parentheses, so fields are counted
/// after its last `)`.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the name: state is field 3, so field N is at index N - 3.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// The aggregate `cpu` line of `/proc/stat` (user nice system idle iowait irq softirq steal
/// ...; guest time is already inside user): everything but idle, iowait and steal.
fn machine_busy_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<u64> = stat
        .lines()
        .find_map(|l| l.strip_prefix("cpu "))?
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    Some(at(0) + at(1) + at(2) + at(5) + at(6))
}

/// `VmRSS` and `VmHWM` (kB) of a `/proc/PID/status` text.
fn status_memory(status: &str) -> Option<Memory> {
    let kib = |key: &str| -> Option<u64> {
        let rest = status.lines().find_map(|l| l.strip_prefix(key))?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    };
    Some(Memory {
        rss_bytes: kib("VmRSS:")? * 1024,
        peak_rss_bytes: kib("VmHWM:")? * 1024,
    })
}

/// `getconf CLK_TCK` (the unit of the stat CPU fields); 100 if it cannot be read.
fn clock_ticks_per_second() -> f64 {
    crate::util::output(Command::new("getconf").arg("CLK_TCK"))
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|&t| t > 0.0)
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_fields_are_found_after_an_awkward_name() {
        // A real line shape; the name holds a space and a ')'.
        let stat = "4242 (shadowd (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 9 0 123456 300000000 5000 18446744073709551615 1 1 0 0 0 0 0 \
                    4096 17922 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(stat_cpu_ticks(stat), Some(325));
    }

    #[test]
    fn machine_busy_excludes_idle_iowait_and_steal() {
        let stat = "cpu  100 5 50 9000 40 3 2 7 0 0\ncpu0 50 2 25 4500 20 1 1 3 0 0\nintr 1\n";
        assert_eq!(machine_busy_ticks(stat), Some(100 + 5 + 50 + 3 + 2));
        assert_eq!(machine_busy_ticks("intr 1\n"), None);
    }

    #[test]
    fn truncated_stat_is_none() {
        assert_eq!(stat_cpu_ticks("4242 (shadowd) S 1 2 3"), None);
        assert_eq!(stat_cpu_ticks("no parenthesis at all"), None);
    }

    #[test]
    fn status_memory_is_parsed() {
        let status = "Name:\tshadowd\nVmPeak:\t  900000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t9\n";
        assert_eq!(
            status_memory(status),
            Some(Memory {
                rss_bytes: 10240 * 1024,
                peak_rss_bytes: 20480 * 1024
            })
        );
        assert_eq!(status_memory("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        cpu_time(pid).unwrap();
        machine_busy_time().unwrap();
        assert!(memory(pid).unwrap().rss_bytes > 0);
    }
}
