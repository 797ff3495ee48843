//! `cargo xtask`: the project's own automation. Every install step lives here, so that a fresh
//! machine needs only `cargo xtask demo` or `cargo xtask test`.

mod bench;
mod bench_bpf;
mod bench_idle;
mod bench_nginx;
mod bench_parse;
mod bench_plan;
mod bench_proc;
mod bench_report;
mod bench_run;
mod bench_stats;
mod bench_tcpdump;
mod bench_wrk;
mod bootstrap;
mod build;
mod demo;
mod demo_decision;
mod services;
mod test;
mod util;

use clap::{Parser, Subcommand};

/// shadowtap's build, test, benchmark and demo tasks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what a fresh machine lacks (nightly rust-src, LLVM 22 dev packages, bpf-linker,
    /// cargo-fuzz, test tools). Idempotent: a second run does nothing.
    Bootstrap,
    /// Build the eBPF object and the release `shadowd` binary (with the object embedded).
    Build,
    /// Run every test: unit, property, privileged end-to-end (netns), and bounded fuzzing.
    Test(test::TestArgs),
    /// Benchmark side by side: production alone, tapped by shadowd, behind nginx mirror, and
    /// under tcpdump (scenarios: overhead, isolation, fidelity, cost, parse; default all).
    Bench(bench::BenchArgs),
    /// Run the demo: production and shadow model servers on loopback, tapped and compared.
    Demo(demo::DemoArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Bootstrap => bootstrap::run().map(|_| ()),
        Task::Build => bootstrap::run().and_then(|_| build::release()).map(|_| ()),
        Task::Test(args) => bootstrap::run().and_then(|_| test::run(args)),
        Task::Bench(args) => bootstrap::run().and_then(|_| bench::run(args)),
        Task::Demo(args) => bootstrap::run().and_then(|_| demo::run(args)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
