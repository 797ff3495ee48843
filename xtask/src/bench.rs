//! `cargo xtask bench`: throughput benchmarks, each reported as a ratio against a baseline
//! measured in the same run.

use crate::util::{cargo, run_cmd};
use clap::{Args, ValueEnum};

/// Flags of `cargo xtask bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark (default: all).
    #[arg(value_enum)]
    pub which: Option<Bench>,
}

/// The benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Bench {
    /// pcap → HTTP exchanges, one core (criterion).
    Parse,
    /// eBPF tap on lo: segments/s and MB/s recorded with zero drops, and the cost to the traffic.
    Capture,
    /// `shadowd run` on the demo models: mirrored/served, daemon CPU per mirrored request, memory,
    /// and production latency tapped vs untapped, at fixed offered loads (wrk).
    Mirror,
}

/// Runs the chosen benchmarks.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let all = args.which.is_none();
    if all || args.which == Some(Bench::Parse) {
        run_cmd(cargo().args([
            "bench",
            "-p",
            "shadow-core",
            "--features",
            "testkit",
            "--bench",
            "parse",
        ]))?;
    }
    if all || args.which == Some(Bench::Capture) {
        let shadowd = crate::build::release()?.join("shadowd");
        crate::bench_capture::run(&shadowd, &capture_loads())?;
    }
    if all || args.which == Some(Bench::Mirror) {
        let bin = crate::build::release()?;
        crate::bench_mirror::run(&bin, &mirror_steps())?;
    }
    Ok(())
}

/// Offered loads for `bench mirror`: OIP inference requests, five seconds per step.
fn mirror_steps() -> Vec<crate::bench_mirror::Step> {
    [500.0, 1_000.0, 2_000.0]
        .map(|requests_per_second| crate::bench_mirror::Step {
            requests_per_second,
            seconds: 5,
        })
        .to_vec()
}

/// Offered loads for `bench capture`: small JSON-sized requests stepping up in request rate,
/// then 1 MiB bodies stepping up in bandwidth. Each step runs about two seconds.
fn capture_loads() -> Vec<crate::bench_capture::Load> {
    use crate::bench_capture::Load;
    let small = [1_000.0, 4_000.0, 16_000.0].map(|rps: f64| Load {
        connections: 8,
        body_bytes: 1024,
        requests_per_second: rps,
        requests: (rps * 2.0) as usize,
    });
    let large = [25.0, 50.0, 100.0, 200.0, 400.0, 800.0].map(|rps: f64| Load {
        connections: 4,
        body_bytes: 1 << 20,
        requests_per_second: rps,
        requests: ((rps * 2.0) as usize).max(8),
    });
    small.into_iter().chain(large).collect()
}
