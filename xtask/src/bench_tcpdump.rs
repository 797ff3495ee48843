//! tcpdump as the capture-drop reference: `tcpdump -i lo -w FILE -B 4096 'tcp port P'` runs
//! while wrk loads production; on SIGINT it prints how many packets it captured, how many the
//! filter received and how many the kernel dropped, which is parsed here.

use crate::services::{Processes, spawn_logged};
use anyhow::{Context, bail};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// tcpdump's closing counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpdumpCounts {
    pub captured: u64,
    pub received: u64,
    pub dropped_by_kernel: u64,
}

/// A running tcpdump, stopped (SIGINT, then its guard) by [`Tcpdump::stop`] or on drop.
pub struct Tcpdump {
    procs: Processes,
    pid: u32,
    log: std::path::PathBuf,
    pcap: std::path::PathBuf,
}

impl Tcpdump {
    /// Starts tcpdump on `lo` for TCP `port`, writing to `dir/tcpdump.pcap`; returns once it
    /// says it is listening (at most 10 s).
    pub fn start(dir: &Path, port: u16) -> anyhow::Result<Tcpdump> {
        let log = dir.join("tcpdump.log");
        let pcap = dir.join("tcpdump.pcap");
        let mut procs = Processes::default();
        let child = spawn_logged(
            Command::new("tcpdump")
                .args(["-i", "lo", "-w"])
                .arg(&pcap)
                .args(["-B", "4096", &format!("tcp port {port}")]),
            &log,
        )
        .context("cannot start tcpdump (apt-get install tcpdump)")?;
        let pid = child.id();
        procs.push("tcpdump", child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("listening on") {
                break;
            }
            procs.check_running()?;
            if Instant::now() >= deadline {
                bail!("tcpdump did not start listening within 10 s: {text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Tcpdump {
            procs,
            pid,
            log,
            pcap,
        })
    }

    /// SIGINT, waits for tcpdump to exit (at most 10 s) and returns its counts; removes the
    /// capture file.
    pub fn stop(mut self) -> anyhow::Result<TcpdumpCounts> {
        let _ = Command::new("kill")
            .args(["-INT", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.procs.check_running().is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = std::fs::read_to_string(&self.log)
            .with_context(|| format!("cannot read {}", self.log.display()))?;
        let _ = std::fs::remove_file(&self.pcap);
        drop(std::mem::take(&mut self.procs));
        parse_counts(&text).with_context(|| format!("no packet counts in tcpdump's output: {text}"))
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pcap);
    }
}

/// Parses tcpdump's closing lines: "N packets captured", "N packets received by filter",
/// "N packets dropped by kernel".
pub fn parse_counts(text: &str) -> Option<TcpdumpCounts> {
    let count = |suffix: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.trim().strip_suffix(suffix))?
            .trim()
            .parse()
            .ok()
    };
    Some(TcpdumpCounts {
        captured: count("packets captured")?,
        received: count("packets received by filter")?,
        dropped_by_kernel: count("packets dropped by kernel")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_counts_are_parsed() {
        let text = "tcpdump: listening on lo, link-type EN10MB (Ethernet), snapshot length 262144 bytes\n\
                    1234567 packets captured\n\
                    1300000 packets received by filter\n\
                    65433 packets dropped by kernel\n";
        assert_eq!(
            parse_counts(text),
            Some(TcpdumpCounts {
                captured: 1_234_567,
                received: 1_300_000,
                dropped_by_kernel: 65_433
            })
        );
    }

    #[test]
    fn missing_counts_are_none() {
        assert_eq!(parse_counts("tcpdump: listening on lo\n"), None);
        assert_eq!(
            parse_counts("10 packets captured\n10 packets received by filter\n"),
            None
        );
        assert_eq!(
            parse_counts(
                "x packets captured\n10 packets received by filter\n0 packets dropped by kernel\n"
            ),
            None
        );
    }
}
