//! `cargo xtask test`: every test the project has, the way CI runs it.

use crate::build::debug_shadowd;
use crate::util::{cargo, is_root, run_cmd};
use clap::Args;
use std::time::Instant;

/// Flags of `cargo xtask test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Seconds each fuzz target runs (0 skips fuzzing); `cargo xtask fuzz` runs them longer.
    #[arg(long, default_value_t = 20)]
    pub fuzz_seconds: u64,
    /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    pub cargo_test_args: Vec<String>,
}

/// Runs unit, property and end-to-end tests, then each fuzz target for a bounded time.
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
    if args.fuzz_seconds > 0 {
        crate::fuzz::fuzz(&[], args.fuzz_seconds)?;
    }
    eprintln!("xtask test: all tests passed in {:.0?}", started.elapsed());
    Ok(())
}
