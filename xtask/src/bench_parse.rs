//! The `parse` scenario: shadow-core's criterion bench (pcap bytes in memory → HTTP exchanges,
//! one core), run by cargo, and its results read back from criterion's files
//! (`target/criterion/GROUP/FUNCTION/new/{benchmark,estimates}.json`).

use crate::util::{cargo, run_cmd};
use anyhow::Context;
use serde_json::Value;
use std::path::Path;
use std::time::SystemTime;

/// One criterion measurement: `group` (`small_json_1KiB/bytes`) and `function`
/// (`pcap_to_exchanges`), its median time per iteration and what one iteration processes.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    pub group: String,
    pub function: String,
    pub median_ns: f64,
    pub throughput: Throughput,
}

/// What one iteration processes (criterion's `Throughput`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Throughput {
    Bytes(u64),
    Elements(u64),
}

impl Measurement {
    /// Bytes or elements per second.
    pub fn per_second(&self) -> f64 {
        let n = match self.throughput {
            Throughput::Bytes(n) | Throughput::Elements(n) => n as f64,
        };
        n / (self.median_ns * 1e-9).max(1e-12)
    }
}

/// Runs the bench (`quick`: short warm-up and measurement; `debug_build`: the dev profile the
/// tests already built, instead of compiling the optimised bench profile) and returns what it
/// measured.
pub fn run(quick: bool, debug_build: bool) -> anyhow::Result<Vec<Measurement>> {
    let started = SystemTime::now();
    let mut cmd = cargo();
    cmd.args([
        "bench",
        "-p",
        "shadow-core",
        "--features",
        "testkit",
        "--bench",
        "parse",
    ]);
    if debug_build {
        cmd.args(["--profile", "dev"]);
    }
    if quick {
        cmd.args(["--", "--warm-up-time", "0.2", "--measurement-time", "0.5"]);
    }
    run_cmd(&mut cmd)?;
    read_results(&crate::build::target_dir().join("criterion"), started)
}

/// Every measurement under `root` written since `since`.
fn read_results(root: &Path, since: SystemTime) -> anyhow::Result<Vec<Measurement>> {
    let mut found = Vec::new();
    let Ok(groups) = std::fs::read_dir(root) else {
        return Ok(found);
    };
    for group in groups.flatten() {
        let Ok(functions) = std::fs::read_dir(group.path()) else {
            continue;
        };
        for function in functions.flatten() {
            let new = function.path().join("new");
            let (bench, estimates) = (new.join("benchmark.json"), new.join("estimates.json"));
            let fresh = std::fs::metadata(&estimates)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since);
            if !fresh {
                continue;
            }
            let read = |p: &Path| -> anyhow::Result<String> {
                std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
            };
            if let Some(m) = parse_measurement(&read(&bench)?, &read(&estimates)?) {
                found.push(m);
            }
        }
    }
    found.sort_by(|a, b| (&a.group, &a.function).cmp(&(&b.group, &b.function)));
    Ok(found)
}

/// One measurement from criterion's `benchmark.json` and `estimates.json`.
fn parse_measurement(benchmark: &str, estimates: &str) -> Option<Measurement> {
    let b: Value = serde_json::from_str(benchmark).ok()?;
    let e: Value = serde_json::from_str(estimates).ok()?;
    let t = b.get("throughput")?;
    let bytes = t.get("Bytes").or_else(|| t.get("BytesDecimal"));
    let throughput = if let Some(n) = bytes.and_then(Value::as_u64) {
        Throughput::Bytes(n)
    } else {
        Throughput::Elements(t.get("Elements")?.as_u64()?)
    };
    Some(Measurement {
        group: b.get("group_id")?.as_str()?.to_string(),
        // `BenchmarkId::from_parameter` names it by `value_str`, with no `function_id`.
        function: b
            .get("function_id")
            .and_then(Value::as_str)
            .or_else(|| b.get("value_str").and_then(Value::as_str))?
            .to_string(),
        median_ns: e.get("median")?.get("point_estimate")?.as_f64()?,
        throughput,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criterion_files_are_read() {
        let bench = r#"{"group_id":"small_json_1KiB/bytes","function_id":null,"value_str":"pcap_to_exchanges","throughput":{"Bytes":5000000},"full_id":"small_json_1KiB/bytes/pcap_to_exchanges","directory_name":"small_json_1KiB_bytes/pcap_to_exchanges","title":"small_json_1KiB/bytes/pcap_to_exchanges"}"#;
        let estimates = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":3.0},"point_estimate":2000000.0,"standard_error":1.0},"median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":3.0},"point_estimate":1000000.0,"standard_error":1.0}}"#;
        let m = parse_measurement(bench, estimates).unwrap();
        assert_eq!(m.group, "small_json_1KiB/bytes");
        assert_eq!(m.function, "pcap_to_exchanges");
        assert_eq!(m.throughput, Throughput::Bytes(5_000_000));
        // 5 MB per millisecond.
        assert!((m.per_second() - 5e9).abs() < 1.0, "{}", m.per_second());
        let elements = bench.replace(r#"{"Bytes":5000000}"#, r#"{"Elements":4096}"#);
        assert_eq!(
            parse_measurement(&elements, estimates).map(|m| m.throughput),
            Some(Throughput::Elements(4096))
        );
        assert_eq!(parse_measurement("{}", estimates), None);
    }

    #[test]
    fn stale_results_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("g_bytes").join("f").join("new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(
            new.join("benchmark.json"),
            r#"{"group_id":"g/bytes","function_id":"f","throughput":{"Bytes":10}}"#,
        )
        .unwrap();
        std::fs::write(
            new.join("estimates.json"),
            r#"{"median":{"point_estimate":10.0}}"#,
        )
        .unwrap();
        let past = SystemTime::now() - std::time::Duration::from_secs(60);
        assert_eq!(read_results(dir.path(), past).unwrap().len(), 1);
        let future = SystemTime::now() + std::time::Duration::from_secs(60);
        assert!(read_results(dir.path(), future).unwrap().is_empty());
        assert!(
            read_results(&dir.path().join("missing"), past)
                .unwrap()
                .is_empty()
        );
    }
}
