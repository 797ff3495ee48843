//! `demo-traffic`: drives the held-out wines as Open Inference Protocol traffic.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use shadowtap_demo::traffic::{LabelRecord, Protocol, TrafficConfig, plan_jobs, run};
use shadowtap_demo::{DEFAULT_SEED, Split, WineData};

/// Traffic driver for the shadowtap demo: sends the held-out wines (same deterministic split as
/// demo-model) to POST /v2/models/{model}/infer from several concurrent keep-alive HTTP/1.1
/// clients, or with --grpc as Open Inference Protocol gRPC ModelInfer calls (concurrent streams
/// on one HTTP/2 connection, to demo-model's --grpc-listen address), then prints one JSON summary
/// line on stdout: requests sent, responses by status, latency p50/p99, and the served model's
/// accuracy against the true held-out labels.
///
/// Progress lines go to stderr. Exit code 0 when every request got a 200 (gRPC: OK), 1
/// otherwise.
#[derive(Debug, Parser)]
#[command(version, after_help = EXAMPLE)]
struct Cli {
    /// Server to send to (ip:port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    target: SocketAddr,

    /// Model name in the URL path.
    #[arg(long, default_value = "wine-quality")]
    model: String,

    /// Speak the OIP gRPC API (h2c) instead of JSON over HTTP/1.1; --target is then the
    /// server's gRPC address.
    #[arg(long)]
    grpc: bool,

    /// With --grpc: gzip the request messages and accept gzipped answers.
    #[arg(long, requires = "grpc")]
    gzip: bool,

    /// Concurrent keep-alive connections (--grpc: concurrent calls on one connection).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    clients: u16,

    /// Rows to send (held-out rows are cycled when more are asked); default: each held-out row once.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    rows: Option<u64>,

    /// Rows per request (tensor shape [batch, 11]).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=4096))]
    batch: u16,

    /// Seed of the train / held-out split (must match demo-model's --seed).
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,

    /// Write the ground truth as JSON lines {"id": ..., "label": ..., "row": ...} to this file
    /// (label/row are arrays when --batch > 1).
    #[arg(long)]
    labels_out: Option<PathBuf>,

    /// Total request rate across all clients, requests per second (default: as fast as possible).
    #[arg(long, value_parser = positive_rate)]
    rate: Option<f64>,

    /// Send every n-th request with Transfer-Encoding: chunked (0 = never, 1 = always; HTTP/1.1
    /// only).
    #[arg(long, default_value_t = 0, conflicts_with = "grpc")]
    chunked_every: usize,

    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,

    /// Stop sending after this many seconds even if rows remain.
    #[arg(long, default_value_t = 300)]
    max_secs: u64,

    /// Do not print progress lines on stderr.
    #[arg(long)]
    quiet: bool,

    /// Allow a target outside 127.0.0.0/8 and ::1 (e.g. a test network namespace).
    #[arg(long)]
    allow_non_loopback: bool,
}

const EXAMPLE: &str = "Examples:\n  demo-traffic --target 127.0.0.1:8080 --clients 4 --labels-out labels.jsonl\n  \
demo-traffic --grpc --target 127.0.0.1:8001 --clients 8 --labels-out labels.jsonl";

fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{s:?} is not a positive number of requests per second"
        )),
    }
}

fn main() -> ExitCode {
    match run_cli(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo-traffic: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_cli(cli: Cli) -> anyhow::Result<bool> {
    if !cli.target.ip().is_loopback() && !cli.allow_non_loopback {
        bail!(
            "refusing to send traffic to {} (not loopback); pass --allow-non-loopback to override",
            cli.target
        );
    }
    let data = WineData::load();
    let split = Split::stratified(data.labels.view(), cli.seed);
    let jobs = plan_jobs(
        &data,
        &split,
        cli.rows.map(|r| r as usize),
        cli.batch.into(),
    );
    if let Some(path) = &cli.labels_out {
        write_labels(path, &jobs).with_context(|| format!("writing {}", path.display()))?;
    }
    let cfg = TrafficConfig {
        target: cli.target,
        model: cli.model,
        clients: cli.clients.into(),
        request_timeout: Duration::from_secs(cli.timeout_secs.max(1)),
        max_duration: Duration::from_secs(cli.max_secs.max(1)),
        rate: cli.rate,
        chunked_every: cli.chunked_every,
        protocol: if cli.grpc {
            Protocol::Grpc
        } else {
            Protocol::Http1
        },
        gzip: cli.gzip,
        progress: !cli.quiet,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let summary = runtime.block_on(run(&cfg, Arc::new(jobs)));
    println!("{}", serde_json::to_string(&summary)?);
    Ok(summary.all_ok())
}

fn write_labels(path: &PathBuf, jobs: &[shadowtap_demo::traffic::Job]) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for job in jobs {
        serde_json::to_writer(&mut out, &LabelRecord::of(job))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rate_must_be_positive() {
        assert_eq!(positive_rate("2.5"), Ok(2.5));
        for bad in ["0", "-1", "inf", "NaN", "x"] {
            assert!(positive_rate(bad).is_err(), "{bad}");
        }
    }
}
