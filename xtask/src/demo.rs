//! `cargo xtask demo`: the main job on the bundled demo models. Starts the production (v1) and
//! shadow (v2) wine-quality model servers on loopback, taps production with `shadowd run`
//! (eBPF on `lo`), drives the held-out rows as traffic and prints the comparison.

use crate::build::release;
use crate::util::is_root;
use anyhow::{Context, bail};
use clap::Args;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Flags of `cargo xtask demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Requests the traffic driver sends (cycling through the held-out rows).
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Concurrent keep-alive clients.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Offered load, requests per second.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Keep everything running after the summary, until Ctrl-C, to try your own requests.
    #[arg(long)]
    pub keep_running: bool,
    /// Where the demo writes its logs and files.
    #[arg(long, default_value = "/tmp/shadowtap-demo")]
    pub dir: PathBuf,
}

/// The processes of the demo; killed when dropped.
struct Processes(Vec<(&'static str, Child)>);

impl Drop for Processes {
    fn drop(&mut self) {
        for (name, child) in self.0.iter_mut().rev() {
            // SIGTERM first so shadowd detaches and flushes; SIGKILL if it lingers.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Ok(None) = child.try_wait() {
                eprintln!("xtask demo: {name} did not stop on SIGTERM; killing it");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the demo loads an eBPF program: run it as root (sudo -E cargo xtask demo)");
    }
    let bin = release()?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let production = free_port()?;
    let shadow = free_port()?;
    let admin = free_port()?;
    let log_path = args.dir.join("discrepancies.jsonl");
    let labels_path = args.dir.join("labels.jsonl");
    let _ = std::fs::remove_file(&log_path);

    let mut procs = Processes(Vec::new());
    for (name, model, addr) in [
        ("production model v1", "v1", production),
        ("shadow model v2", "v2", shadow),
    ] {
        let child = spawn_logged(
            Command::new(bin.join("demo-model")).args([
                "--model",
                model,
                "--listen",
                &addr.to_string(),
            ]),
            &args.dir.join(format!("model-{model}.log")),
        )?;
        procs.0.push((name, child));
        wait_ready(addr, "/v2/health/ready", &mut procs)
            .with_context(|| format!("{name} did not start"))?;
        eprintln!("xtask demo: {name} (wine-quality, {model}) serving on http://{addr}");
    }

    let shadowd = spawn_logged(
        Command::new(bin.join("shadowd"))
            .args([
                "run",
                "--interface",
                "lo",
                "--port",
                &production.port().to_string(),
            ])
            .args([
                "--shadow",
                &format!("http://{shadow}"),
                "--admin-addr",
                &admin.to_string(),
            ])
            .args(["--preset", "kserve-v2", "--discrepancy-log"])
            .arg(&log_path),
        &args.dir.join("shadowd.log"),
    )?;
    procs.0.push(("shadowd", shadowd));
    wait_ready(admin, "/healthz", &mut procs).context("shadowd did not start")?;
    eprintln!(
        "xtask demo: shadowd tapping lo:{} → mirroring to http://{shadow}",
        production.port()
    );
    eprintln!("xtask demo: try your own request while it runs:");
    eprintln!(
        "  curl -s http://{production}/v2/models/wine-quality/infer -H 'content-type: application/json' \\\n    \
         -d '{{\"inputs\":[{{\"name\":\"input-0\",\"shape\":[1,11],\"datatype\":\"FP64\",\
         \"data\":[7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4]}}]}}'"
    );

    let traffic = Command::new(bin.join("demo-traffic"))
        .args(["--target", &production.to_string(), "--quiet"])
        .args([
            "--clients",
            &args.clients.to_string(),
            "--rows",
            &args.requests.to_string(),
        ])
        .args([
            "--rate",
            &args.rate.to_string(),
            "--chunked-every",
            "5",
            "--labels-out",
        ])
        .arg(&labels_path)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run demo-traffic")?;
    let traffic_summary = String::from_utf8_lossy(&traffic.stdout).trim().to_string();
    if !traffic.status.success() {
        bail!("demo-traffic failed: {traffic_summary}");
    }

    let metrics = settle(admin, args.requests as f64)?;
    print_summary(&metrics, &traffic_summary, admin, &log_path, &args.dir);

    if args.keep_running {
        eprintln!("xtask demo: still running; Ctrl-C to stop");
        loop {
            std::thread::sleep(Duration::from_secs(1));
            for (name, child) in procs.0.iter_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!("{name} exited ({status})");
                }
            }
        }
    }
    Ok(())
}

/// A port free on 127.0.0.1 right now.
fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn spawn_logged(cmd: &mut Command, log: &Path) -> anyhow::Result<Child> {
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))
}

/// Waits (bounded) until `GET path` answers 200, failing early if a process died.
fn wait_ready(addr: SocketAddr, path: &str, procs: &mut Processes) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if http_get(addr, path).is_ok_and(|(status, _)| status == 200) {
            return Ok(());
        }
        for (name, child) in procs.0.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                bail!("{name} exited ({status}); see its log in the demo directory");
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("http://{addr}{path} not ready after 60 s")
}

/// Waits (bounded) until every served request is accounted for by the mirror, then returns
/// the final metrics.
fn settle(admin: SocketAddr, expected: f64) -> anyhow::Result<Metrics> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = Metrics::parse(&http_get(admin, "/metrics")?.1);
        let done = metrics.sum("shadowtap_mirrored_requests_total", &[])
            + metrics.sum("shadowtap_mirror_skipped_total", &[]);
        if done >= expected || Instant::now() >= deadline {
            return Ok(metrics);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Prints the non-zero series of `name`, one row per value of `label`.
fn print_breakdown(m: &Metrics, name: &str, label: &str) {
    for (labels, value) in m.series(name) {
        if value > 0.0 {
            println!(
                "    {:<32} {:>10}",
                labels.get(label).map_or("?", String::as_str),
                value
            );
        }
    }
}

fn print_summary(m: &Metrics, traffic: &str, admin: SocketAddr, log: &Path, dir: &Path) {
    let served = m.sum("shadowtap_exchanges_total", &[]);
    let mirrored = m.sum("shadowtap_mirrored_requests_total", &[]);
    println!();
    println!("shadowtap demo: wine-quality v1 (production) vs v2 (shadow)");
    println!(
        "  {:<34} {:>10}",
        "requests served (seen on the wire)", served
    );
    print_breakdown(m, "shadowtap_exchanges_total", "outcome");
    println!("  {:<34} {:>10}", "mirrored to the shadow", mirrored);
    print_breakdown(m, "shadowtap_mirrored_requests_total", "result");
    println!(
        "  {:<34} {:>10}",
        "skipped",
        m.sum("shadowtap_mirror_skipped_total", &[])
    );
    print_breakdown(m, "shadowtap_mirror_skipped_total", "reason");
    match m.get("shadowtap_agreement_ratio") {
        Some(ratio) => println!("  {:<34} {:>9.1}%", "label agreement", ratio * 100.0),
        None => println!("  {:<34} {:>10}", "label agreement", "n/a"),
    }
    for model in ["production", "shadow"] {
        let q = |q| m.histogram_quantile("shadowtap_latency_seconds", ("model", model), q);
        println!(
            "  {:<34} {:>7.2} ms / {:.2} ms",
            format!("latency p50 / p99 ({model})"),
            q(0.5).unwrap_or(f64::NAN) * 1e3,
            q(0.99).unwrap_or(f64::NAN) * 1e3
        );
        let errors = m.sum("shadowtap_errors_total", &[("model", model)]);
        let rate = if served > 0.0 {
            errors / served * 100.0
        } else {
            0.0
        };
        println!(
            "  {:<34} {:>10} ({rate:.1}%)",
            format!("errors ({model})"),
            errors
        );
    }
    println!(
        "  {:<34} {:>10}",
        "discrepancies",
        m.sum("shadowtap_discrepancies_total", &[])
    );
    print_breakdown(m, "shadowtap_discrepancies_total", "kind");
    println!("  traffic driver: {traffic}");
    println!("  metrics:           http://{admin}/metrics   (summary: http://{admin}/api/summary)");
    println!("  discrepancy log:   {}", log.display());
    println!("  logs:              {}", dir.display());
}

/// `GET path` over a fresh connection; returns status and body.
fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP response")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Prometheus text exposition, parsed into samples.
struct Metrics(Vec<(String, BTreeMap<String, String>, f64)>);

impl Metrics {
    fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            samples.push((name.to_string(), labels, value));
        }
        Self(samples)
    }

    fn series(&self, name: &str) -> Vec<(&BTreeMap<String, String>, f64)> {
        self.0
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, v)| (l, *v))
            .collect()
    }

    fn sum(&self, name: &str, matching: &[(&str, &str)]) -> f64 {
        self.series(name)
            .into_iter()
            .filter(|(labels, _)| {
                matching
                    .iter()
                    .all(|(k, v)| labels.get(*k).is_some_and(|x| x == v))
            })
            .map(|(_, v)| v)
            .sum::<f64>()
            + 0.0 // the empty sum is -0.0
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.series(name).first().map(|(_, v)| *v)
    }

    /// Linear interpolation inside the bucket holding quantile `q` (as Prometheus does).
    fn histogram_quantile(&self, name: &str, label: (&str, &str), q: f64) -> Option<f64> {
        let mut buckets: Vec<(f64, f64)> = self
            .series(&format!("{name}_bucket"))
            .into_iter()
            .filter(|(l, _)| l.get(label.0).is_some_and(|v| v == label.1))
            .filter_map(|(l, v)| {
                let le = l.get("le")?;
                Some((
                    if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().ok()?
                    },
                    v,
                ))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last()?.1;
        if total == 0.0 {
            return None;
        }
        let rank = q * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for (upper, count) in buckets {
            if count >= rank {
                if upper.is_infinite() {
                    return Some(lower);
                }
                let within = (rank - below) / (count - below).max(f64::MIN_POSITIVE);
                return Some(lower + (upper - lower) * within);
            }
            (lower, below) = (upper, count);
        }
        None
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for pair in text.split("\",") {
        if let Some((k, v)) = pair.split_once('=') {
            labels.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x\n\
shadowtap_mirrored_requests_total{result=\"ok\"} 90\n\
shadowtap_mirrored_requests_total{result=\"error\"} 10\n\
shadowtap_agreement_ratio 0.75\n\
shadowtap_latency_seconds_bucket{model=\"shadow\",le=\"0.001\"} 50\n\
shadowtap_latency_seconds_bucket{model=\"shadow\",le=\"0.002\"} 100\n\
shadowtap_latency_seconds_bucket{model=\"shadow\",le=\"+Inf\"} 100\n";

    #[test]
    fn metrics_text_is_summed_and_interpolated() {
        let m = Metrics::parse(TEXT);
        assert_eq!(m.sum("shadowtap_mirrored_requests_total", &[]), 100.0);
        assert_eq!(
            m.sum("shadowtap_mirrored_requests_total", &[("result", "error")]),
            10.0
        );
        assert_eq!(m.get("shadowtap_agreement_ratio"), Some(0.75));
        let p50 = m
            .histogram_quantile("shadowtap_latency_seconds", ("model", "shadow"), 0.5)
            .unwrap();
        assert!((p50 - 0.001).abs() < 1e-12, "{p50}");
        let p75 = m
            .histogram_quantile("shadowtap_latency_seconds", ("model", "shadow"), 0.75)
            .unwrap();
        assert!((p75 - 0.0015).abs() < 1e-12, "{p75}");
    }
}
