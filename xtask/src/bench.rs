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
}

/// Runs the chosen benchmarks.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let all = args.which.is_none();
    if all || args.which == Some(Bench::Parse) {
        run_cmd(cargo().args(["bench", "-p", "shadow-daemon", "--bench", "parse"]))?;
    }
    Ok(())
}
