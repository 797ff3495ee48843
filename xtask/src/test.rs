//! `cargo xtask test`: every test the project has, the way CI runs it.

use crate::build::debug_shadowd;
use crate::util::{cargo, is_root, run_cmd};
use clap::Args;
use std::time::Instant;

/// Flags of `cargo xtask test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Seconds each fuzz target runs (0 skips fuzzing), built unoptimised to save compile
    /// time; `cargo xtask fuzz` runs them longer, optimised.
    #[arg(long, default_value_t = 15)]
    pub fuzz_seconds: u64,
    /// Skip the quick benchmark (`cargo xtask bench --quick`), which checks that the bench
    /// harness still runs end to end (it asserts no performance threshold).
    #[arg(long)]
    pub no_bench: bool,
    /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    pub cargo_test_args: Vec<String>,
}

/// Runs unit, property and end-to-end tests, the quick benchmark, then each fuzz target for a
/// bounded time.
pub fn run(args: TestArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    if !is_root() {
        eprintln!(
            "xtask test: not root: the privileged end-to-end tests will report themselves skipped"
        );
    }
    let shadowd = debug_shadowd()?;
    run_cmd(
        cargo()
            .env("SHADOWD_BIN", &shadowd)
            // The default members: everything but the eBPF crate, which only builds for BPF.
            .args(["test", "--no-fail-fast", "--"])
            .args(&args.cargo_test_args),
    )?;
    if !args.no_bench {
        quick_bench()?;
    }
    if args.fuzz_seconds > 0 {
        crate::fuzz::fuzz(&[], args.fuzz_seconds, true)?;
    }
    eprintln!("xtask test: all tests passed in {:.0?}", started.elapsed());
    Ok(())
}

/// `cargo xtask bench --quick` (root only: it loads the tap), then checks the results file it
/// wrote. Only that the harness works is checked, never the numbers.
fn quick_bench() -> anyhow::Result<()> {
    if !is_root() {
        eprintln!("xtask test: not root: skipping the quick benchmark");
        return Ok(());
    }
    let results = crate::bench::results_dir().join("results.json");
    let _ = std::fs::remove_file(&results);
    crate::bench::run(crate::bench::BenchArgs {
        quick: true,
        no_readme: true,
        debug_build: true,
        reps: None,
        scenarios: Vec::new(),
    })?;
    crate::bench::check_results_file(&results)
}
