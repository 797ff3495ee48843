//! The tap's cost inside the kernel: with `kernel.bpf_stats_enabled=1` the kernel sums each
//! program's run time and run count (`bpf_prog_info.run_time_ns` / `run_cnt`), which
//! `bpftool prog show id N --json` prints. Our daemon's program is the `shadow_tap` program
//! whose id appears in the daemon's own file descriptors (`/proc/PID/fdinfo/*`: `prog_id:`),
//! so taps of other daemons on the same interface are never mistaken for ours.

use anyhow::{Context, bail};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;

const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// The tap program's name (`shadow-daemon`'s `capture::ebpf::attach::PROGRAM_NAME`).
pub const TAP_PROGRAM: &str = "shadow_tap";

/// `kernel.bpf_stats_enabled` set to 1 while this lives; the previous value is restored on
/// drop.
pub struct StatsEnabled {
    previous: String,
}

impl StatsEnabled {
    /// Turns the kernel's BPF run-time statistics on.
    pub fn on() -> anyhow::Result<StatsEnabled> {
        let previous = std::fs::read_to_string(STATS_SYSCTL)
            .with_context(|| format!("cannot read {STATS_SYSCTL}"))?
            .trim()
            .to_string();
        std::fs::write(STATS_SYSCTL, "1")
            .with_context(|| format!("cannot set {STATS_SYSCTL} (needs root)"))?;
        Ok(StatsEnabled { previous })
    }
}

impl Drop for StatsEnabled {
    fn drop(&mut self) {
        if let Err(err) = std::fs::write(STATS_SYSCTL, &self.previous) {
            eprintln!(
                "xtask bench: cannot restore {STATS_SYSCTL} to {}: {err}",
                self.previous
            );
        }
    }
}

/// A program's accumulated statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgStats {
    pub id: u64,
    pub name: String,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// The ids of the BPF programs `pid` holds open.
pub fn prog_ids_of(pid: u32) -> anyhow::Result<BTreeSet<u64>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut ids = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {dir}"))? {
        let Ok(text) = std::fs::read_to_string(entry?.path()) else {
            continue; // the descriptor was closed meanwhile
        };
        ids.extend(fdinfo_prog_id(&text));
    }
    Ok(ids)
}

/// The `shadow_tap` program that `pid` loaded, with its statistics now.
pub fn tap_of(pid: u32) -> anyhow::Result<ProgStats> {
    let mut found = Vec::new();
    for id in prog_ids_of(pid)? {
        let stats = prog_stats(id)?;
        if stats.name == TAP_PROGRAM {
            found.push(stats);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!("process {pid} holds no `{TAP_PROGRAM}` BPF program"),
        n => bail!("process {pid} holds {n} `{TAP_PROGRAM}` BPF programs"),
    }
}

/// `bpftool prog show id ID --json`, parsed.
pub fn prog_stats(id: u64) -> anyhow::Result<ProgStats> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string(), "--json"])
        .output()
        .context("cannot run bpftool (apt-get install bpftool)")?;
    if !out.status.success() {
        bail!(
            "bpftool prog show id {id} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    parse_prog_json(&text).with_context(|| format!("unexpected bpftool output: {text}"))
}

/// The `prog_id:` line of a `/proc/PID/fdinfo/FD` text (only BPF program descriptors have
/// one).
fn fdinfo_prog_id(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("prog_id:"))?
        .trim()
        .parse()
        .ok()
}

/// One program of `bpftool prog show --json` (an object, or a list holding one). Without
/// `kernel.bpf_stats_enabled` bpftool leaves out `run_time_ns` and `run_cnt`: read as 0.
fn parse_prog_json(text: &str) -> Option<ProgStats> {
    let value: Value = serde_json::from_str(text).ok()?;
    let prog = match &value {
        Value::Array(list) if list.len() == 1 => &list[0],
        Value::Object(_) => &value,
        _ => return None,
    };
    Some(ProgStats {
        id: prog.get("id")?.as_u64()?,
        name: prog.get("name")?.as_str()?.to_string(),
        run_time_ns: prog.get("run_time_ns").and_then(Value::as_u64).unwrap_or(0),
        run_cnt: prog.get("run_cnt").and_then(Value::as_u64).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpftool_json_with_stats_is_parsed() {
        let text = r#"{"id":4481,"type":"sched_cls","name":"shadow_tap","tag":"685f0674acb0e93d","gpl_compatible":true,"run_time_ns":218778246,"run_cnt":298840,"loaded_at":1796047254,"uid":0,"bytes_xlated":7088,"jited":true,"bytes_jited":3976,"bytes_memlock":24576,"map_ids":[8792,8790],"btf_id":7763}"#;
        assert_eq!(
            parse_prog_json(text),
            Some(ProgStats {
                id: 4481,
                name: "shadow_tap".into(),
                run_time_ns: 218_778_246,
                run_cnt: 298_840
            })
        );
        let listed = format!("[{text}]");
        assert_eq!(parse_prog_json(&listed).map(|p| p.run_cnt), Some(298_840));
    }

    #[test]
    fn bpftool_json_without_stats_reads_zero() {
        let text = r#"[{"id":7,"type":"sched_cls","name":"shadow_tap","jited":true}]"#;
        let p = parse_prog_json(text).unwrap();
        assert_eq!((p.id, p.run_time_ns, p.run_cnt), (7, 0, 0));
        assert_eq!(parse_prog_json("[]"), None);
        assert_eq!(parse_prog_json(r#"{"name":"x"}"#), None);
        assert_eq!(parse_prog_json("not json"), None);
    }

    #[test]
    fn fdinfo_prog_id_is_found_only_on_program_descriptors() {
        let prog = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2061\nprog_type:\t3\n\
                    prog_jited:\t1\nprog_tag:\t685f0674acb0e93d\nmemlock:\t8192\nprog_id:\t4481\n\
                    run_time_ns:\t0\nrun_cnt:\t0\n";
        assert_eq!(fdinfo_prog_id(prog), Some(4481));
        let map = "pos:\t0\nflags:\t02000002\nmap_type:\t27\nmap_id:\t8792\n";
        assert_eq!(fdinfo_prog_id(map), None);
    }
}
