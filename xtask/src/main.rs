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
mod fuzz;
mod install;
mod process_group;
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
    /// Run the cargo-fuzz targets one after another (default: all of them, 600 s each).
    Fuzz(fuzz::FuzzArgs),
    /// Benchmark side by side: production alone, tapped by shadowd, behind nginx mirror, and
    /// under tcpdump (scenarios: overhead, isolation, fidelity, cost, parse; default all).
    Bench(bench::BenchArgs),
    /// Run the demo: production and shadow model servers on loopback, tapped and compared.
    Demo(demo::DemoArgs),
    /// Install the release `shadowd`, its systemd unit, a default config (0640) and its state
    /// and log directories (under `--prefix`, `/` by default); prints the next command.
    Install(install::InstallArgs),
    /// Start a child and a grandchild and wait (xtask's own tests of its process group).
    #[command(hide = true)]
    ProcessGroupProbe(process_group::ProbeArgs),
}

fn main() -> std::process::ExitCode {
    // First, before any thread or child: every child joins xtask's process group, which is
    // stopped on SIGINT / SIGTERM / SIGHUP and when xtask exits.
    let _group = process_group::lead();
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Bootstrap => bootstrap::run().map(|_| ()),
        Task::Build => bootstrap::run().and_then(|_| build::release()).map(|_| ()),
        Task::Test(args) => bootstrap::run().and_then(|_| test::run(args)),
        Task::Fuzz(args) => bootstrap::run().and_then(|_| fuzz::run(args)),
        Task::Bench(args) => bootstrap::run().and_then(|_| bench::run(args)),
        Task::Demo(args) => bootstrap::run().and_then(|_| demo::run(args)),
        Task::Install(args) => install::run(args),
        Task::ProcessGroupProbe(args) => process_group::probe(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A child failing because a signal is stopping everything is no news.
        Err(_) if process_group::signalled() => std::process::ExitCode::FAILURE,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
