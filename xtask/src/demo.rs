//! `cargo xtask demo`: the main job on the bundled demo models. Starts the production (v1) and
//! shadow (v2) wine-quality model servers on loopback, taps production with `shadowd run`
//! (eBPF on `lo`), drives the held-out rows as traffic and prints the comparison.
//!
//! With `--grpc` the same happens over the Open Inference Protocol's gRPC API (h2c): the models
//! also serve gRPC (production answers in typed `contents`, the shadow in
//! `raw_output_contents`), `shadowd` taps production's gRPC port with `--preset
//! kserve-v2-grpc`, and the traffic is `ModelInfer` calls on one HTTP/2 connection. The summary,
//! the ground truth and the verdict are the same.
//!
//! Last, `shadowd report` writes `report.html` (verdict, charts, top discrepancies) next to the
//! discrepancy log, and the demo prints its path.

use crate::build::release;
use crate::demo_decision;
use crate::services::{
    DemoModels, Processes, free_port, http_get, spawn_logged, start_demo_models, wait_ready,
};
use crate::util::is_root;
use anyhow::{Context, bail};
use clap::Args;
use shadowtap_test_support::prom::Metrics;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
    /// Speak gRPC (the Open Inference Protocol's `ModelInfer` over h2c) instead of JSON over
    /// HTTP/1.1: traffic, tap and replay.
    #[arg(long)]
    pub grpc: bool,
    /// Where the demo writes its logs and files.
    #[arg(long, default_value = "/tmp/shadowtap-demo")]
    pub dir: PathBuf,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the demo loads an eBPF program: run it as root (sudo -E cargo xtask demo)");
    }
    let bin = release()?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let admin = free_port()?;
    let log_path = args.dir.join("discrepancies.jsonl");
    let labels_path = args.dir.join("labels.jsonl");
    let criteria_path = args.dir.join("criteria.toml");
    let state_path = args.dir.join("state.json");
    let token_path = args.dir.join("admin.token");
    let config_path = args.dir.join("shadowtap.toml");
    let _ = std::fs::remove_file(&log_path);
    // A fresh start: the demo's daemon would otherwise resume the last run's aggregates.
    let _ = std::fs::remove_file(&state_path);
    std::fs::write(&criteria_path, demo_decision::CRITERIA)
        .with_context(|| format!("cannot write {}", criteria_path.display()))?;
    write_private(&config_path, DEMO_CONFIG)?;
    // POST /api/labels needs the admin token, read by shadowd from a file only it can read.
    let token = demo_decision::write_token(&token_path)?;

    let mut procs = Processes::default();
    let models = start_demo_models(&bin, &args.dir, &mut procs, args.grpc)?;
    let wire = Wire::of(&models, args.grpc)?;

    let shadowd = spawn_logged(
        Command::new(bin.join("shadowd"))
            .args([
                "run",
                "--interface",
                "lo",
                "--port",
                &wire.production.port().to_string(),
            ])
            .args([
                "--shadow",
                &format!("http://{}", wire.shadow),
                "--admin-addr",
                &admin.to_string(),
            ])
            .arg("--config")
            .arg(&config_path)
            .args(["--preset", wire.preset, "--discrepancy-log"])
            .arg(&log_path)
            .arg("--criteria")
            .arg(&criteria_path)
            .arg("--state")
            .arg(&state_path)
            .arg("--admin-token-file")
            .arg(&token_path),
        &args.dir.join("shadowd.log"),
    )?;
    procs.push("shadowd", shadowd);
    wait_ready(admin, "/healthz", &mut procs).context("shadowd did not start")?;
    eprintln!(
        "xtask demo: shadowd tapping lo:{} → mirroring to {}",
        wire.production.port(),
        wire.describe_shadow()
    );
    eprintln!("xtask demo: try your own request while it runs:");
    eprintln!("{}", wire.try_it(&bin));

    let mut traffic = Command::new(bin.join("demo-traffic"));
    traffic
        .args(["--target", &wire.production.to_string(), "--quiet"])
        .args([
            "--clients",
            &args.clients.to_string(),
            "--rows",
            &args.requests.to_string(),
        ])
        .args(["--rate", &args.rate.to_string(), "--labels-out"])
        .arg(&labels_path);
    if args.grpc {
        traffic.arg("--grpc");
    } else {
        traffic.args(["--chunked-every", "5"]);
    }
    let traffic = traffic
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run demo-traffic")?;
    let traffic_summary = String::from_utf8_lossy(&traffic.stdout).trim().to_string();
    if !traffic.status.success() {
        bail!("demo-traffic failed: {traffic_summary}");
    }

    let metrics = settle(admin, args.requests as f64)?;
    print_summary(
        &metrics,
        &wire,
        &traffic_summary,
        admin,
        &log_path,
        &args.dir,
    );
    let posted = demo_decision::post_labels(admin, &token, &labels_path)?;
    let summary = demo_decision::settled_summary(admin, posted.at_once + posted.late)?;
    demo_decision::print_quality(&summary, &posted);
    demo_decision::run_verdict(&bin.join("shadowd"), admin, &criteria_path)?;
    let report_path = write_report(&bin.join("shadowd"), admin, &log_path, &criteria_path)?;
    println!(
        "  report:            {}   (one HTML file: open it in a browser, offline)",
        report_path.display()
    );
    println!(
        "  state file:        {}   (shadowd verdict --state reads it)",
        state_path.display()
    );
    println!(
        "  admin token:       {}   (POST /api/labels: -H \"Authorization: Bearer $(cat FILE)\")",
        token_path.display()
    );

    if args.keep_running {
        eprintln!("xtask demo: still running; Ctrl-C to stop");
        loop {
            std::thread::sleep(Duration::from_secs(1));
            procs.check_running()?;
        }
    }
    Ok(())
}

/// Runs `shadowd report` on the running daemon: `report.html` next to the discrepancy log
/// `log` (with its top discrepancies), judged against `criteria` now, as `verdict` just did
/// (the daemon's own verdict may be a second older than the last labels); returns the
/// report's path.
fn write_report(
    shadowd: &Path,
    admin: SocketAddr,
    log: &Path,
    criteria: &Path,
) -> anyhow::Result<PathBuf> {
    let out = report_path(log);
    let status = Command::new(shadowd)
        .args(["report", "--from", &format!("http://{admin}")])
        .arg("--criteria")
        .arg(criteria)
        .arg("--discrepancy-log")
        .arg(log)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .context("cannot run shadowd report")?;
    if !status.success() {
        bail!("shadowd report failed ({status})");
    }
    Ok(out)
}

/// The demo's config file (its flags set the rest): time-series buckets of 2 s, so the ten
/// seconds of traffic draw lines in the report's over-time charts (the default is 60 s).
const DEMO_CONFIG: &str = "[admin]\ntimeseries_interval_seconds = 2\n";

/// Writes `text` to `path` readable by its owner only (shadowd refuses a config file others
/// can write).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Where the demo's report goes: `report.html` beside the discrepancy log.
fn report_path(log: &Path) -> PathBuf {
    log.with_file_name("report.html")
}

/// What the demo taps and mirrors: production's and the shadow's address for the chosen
/// protocol, and the comparison preset that reads its answers.
struct Wire {
    grpc: bool,
    production: SocketAddr,
    shadow: SocketAddr,
    preset: &'static str,
}

impl Wire {
    fn of(models: &DemoModels, grpc: bool) -> anyhow::Result<Wire> {
        Ok(match (grpc, models.grpc) {
            (false, _) => Wire {
                grpc,
                production: models.production,
                shadow: models.shadow,
                preset: "kserve-v2",
            },
            (true, Some(g)) => Wire {
                grpc,
                production: g.production,
                shadow: g.shadow,
                preset: "kserve-v2-grpc",
            },
            (true, None) => bail!("the model servers were started without gRPC"),
        })
    }

    fn describe_shadow(&self) -> String {
        if self.grpc {
            format!("{} (gRPC, h2c)", self.shadow)
        } else {
            format!("http://{}", self.shadow)
        }
    }

    /// A command that sends one request of your own to production.
    fn try_it(&self, bin: &Path) -> String {
        if self.grpc {
            format!(
                "  {} --grpc --target {} --rows 1 --quiet",
                bin.join("demo-traffic").display(),
                self.production
            )
        } else {
            format!(
                "  curl -s http://{}/v2/models/wine-quality/infer -H 'content-type: application/json' \\\n    \
                 -d '{{\"inputs\":[{{\"name\":\"input-0\",\"shape\":[1,11],\"datatype\":\"FP64\",\
                 \"data\":[7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4]}}]}}'",
                self.production
            )
        }
    }
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

/// Prints the non-zero totals of `name` per value of `label` (summed over its other labels,
/// e.g. `protocol`), one row each.
fn print_breakdown(m: &Metrics, name: &str, label: &str) {
    let mut totals: BTreeMap<&str, f64> = BTreeMap::new();
    for (labels, value) in m.series(name) {
        *totals
            .entry(labels.get(label).map_or("?", String::as_str))
            .or_default() += value;
    }
    for (value_of_label, total) in totals {
        if total > 0.0 {
            println!("    {value_of_label:<32} {total:>10}");
        }
    }
}

fn print_summary(
    m: &Metrics,
    wire: &Wire,
    traffic: &str,
    admin: SocketAddr,
    log: &Path,
    dir: &Path,
) {
    let served = m.sum("shadowtap_exchanges_total", &[]);
    let mirrored = m.sum("shadowtap_mirrored_requests_total", &[]);
    println!();
    println!(
        "shadowtap demo: wine-quality v1 (production) vs v2 (shadow){}",
        if wire.grpc {
            ", Open Inference Protocol over gRPC (h2c)"
        } else {
            ""
        }
    );
    println!(
        "  {:<34} {:>10}",
        "requests served (seen on the wire)", served
    );
    print_breakdown(m, "shadowtap_exchanges_total", "outcome");
    println!("  {:<34} {:>10}", "mirrored to the shadow", mirrored);
    print_breakdown(m, "shadowtap_mirrored_requests_total", "result");
    if wire.grpc {
        println!("  {:<34}", "mirrored, by protocol");
        print_breakdown(m, "shadowtap_mirrored_requests_total", "protocol");
    }
    println!(
        "  {:<34} {:>10}",
        "skipped",
        m.sum("shadowtap_mirror_skipped_total", &[])
    );
    print_breakdown(m, "shadowtap_mirror_skipped_total", "reason");
    for unit in ["request", "row"] {
        let what = format!("agreement per {unit}");
        let ratio = m
            .series("shadowtap_agreement_ratio")
            .into_iter()
            .find(|(labels, _)| labels.get("unit").is_some_and(|u| u == unit));
        match ratio {
            Some((_, ratio)) => println!("  {what:<34} {:>9.1}%", ratio * 100.0),
            None => println!("  {what:<34} {:>10}", "n/a"),
        }
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
        "lost before mirroring",
        m.sum("shadowtap_capture_dropped_total", &[])
    );
    print_breakdown(m, "shadowtap_capture_dropped_total", "stage");
    println!(
        "  {:<34} {:>10}",
        "discrepancies",
        m.sum("shadowtap_discrepancies_total", &[])
    );
    print_breakdown(m, "shadowtap_discrepancies_total", "kind");
    println!("    (label: different class; prediction: same class, different scores)");
    println!("  traffic driver: {traffic}");
    println!("  metrics:           http://{admin}/metrics   (summary: http://{admin}/api/summary)");
    println!("  discrepancy log:   {}", log.display());
    println!("  logs:              {}", dir.display());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::GrpcAddrs;

    fn models(grpc: Option<GrpcAddrs>) -> DemoModels {
        let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
        DemoModels {
            production: addr(8080),
            shadow: addr(8081),
            grpc,
            pids: [1, 2],
        }
    }

    #[test]
    fn the_report_goes_next_to_the_discrepancy_log() {
        assert_eq!(
            report_path(Path::new("/tmp/shadowtap-demo/discrepancies.jsonl")),
            Path::new("/tmp/shadowtap-demo/report.html")
        );
    }

    #[test]
    fn grpc_demo_taps_and_mirrors_the_grpc_ports_with_the_grpc_preset() {
        let grpc = GrpcAddrs {
            production: SocketAddr::from(([127, 0, 0, 1], 8001)),
            shadow: SocketAddr::from(([127, 0, 0, 1], 8002)),
        };
        let wire = Wire::of(&models(Some(grpc)), true).unwrap();
        assert_eq!((wire.production.port(), wire.shadow.port()), (8001, 8002));
        assert_eq!(wire.preset, "kserve-v2-grpc");
        assert!(
            wire.try_it(Path::new("/b"))
                .contains("--grpc --target 127.0.0.1:8001")
        );

        let http = Wire::of(&models(Some(grpc)), false).unwrap();
        assert_eq!((http.production.port(), http.preset), (8080, "kserve-v2"));
        assert!(
            http.try_it(Path::new("/b"))
                .contains("curl -s http://127.0.0.1:8080/")
        );
        assert!(Wire::of(&models(None), true).is_err());
    }
}
