//! `cargo xtask demo`: the main job on the bundled demo models. Starts the production (v1) and
//! shadow (v2) wine-quality model servers on loopback, taps production with `shadowd run`
//! (eBPF on `lo`), drives the held-out rows as traffic and prints the comparison.

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
    let _ = std::fs::remove_file(&log_path);
    // A fresh start: the demo's daemon would otherwise resume the last run's aggregates.
    let _ = std::fs::remove_file(&state_path);
    std::fs::write(&criteria_path, demo_decision::CRITERIA)
        .with_context(|| format!("cannot write {}", criteria_path.display()))?;

    let mut procs = Processes::default();
    let DemoModels {
        production, shadow, ..
    } = start_demo_models(&bin, &args.dir, &mut procs)?;

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
            .arg(&log_path)
            .arg("--criteria")
            .arg(&criteria_path)
            .arg("--state")
            .arg(&state_path),
        &args.dir.join("shadowd.log"),
    )?;
    procs.push("shadowd", shadowd);
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
    let posted = demo_decision::post_labels(admin, &labels_path)?;
    let summary = demo_decision::settled_summary(admin, posted.at_once + posted.late)?;
    demo_decision::print_quality(&summary, &posted);
    demo_decision::run_verdict(&bin.join("shadowd"), admin, &criteria_path)?;
    println!(
        "  state file:        {}   (shadowd verdict --state reads it)",
        state_path.display()
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
/// The series of `name` summed by `label` (over the other labels, e.g. `protocol`).
fn print_breakdown(m: &Metrics, name: &str, label: &str) {
    let mut by_label: BTreeMap<&str, f64> = BTreeMap::new();
    for (labels, value) in m.series(name) {
        *by_label
            .entry(labels.get(label).map_or("?", String::as_str))
            .or_default() += value;
    }
    for (what, value) in by_label {
        if value > 0.0 {
            println!("    {what:<32} {value:>10}");
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
