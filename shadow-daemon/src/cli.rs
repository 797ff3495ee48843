//! Command line of `shadowd` (clap derive) and its dispatch. Each subcommand's flags live beside
//! its code in [`crate::commands`]; this module depends on them, never the other way round.

use crate::commands::{self, check_config, inspect, record, replay, report, run, top, verdict};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// shadowtap: shadow-test a new model version on real production traffic, with zero changes to
/// the application. The production model server is tapped with eBPF; its requests are replayed
/// to the shadow model and the answers compared.
///
/// Exit codes: 0 success, 1 runtime error, 2 usage, configuration or input-file error;
/// `verdict` also exits 3 for HOLD and 4 for REJECT (0 is PROMOTE).
#[derive(Debug, Parser)]
#[command(name = "shadowd", version, propagate_version = true)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info`, `debug`, `shadow_daemon=trace`;
    /// `info,shadowtap::ebpf=debug` adds the kernel-side trace of the eBPF tap (one line per
    /// TCP packet on the interface: for when a capture sees nothing).
    #[arg(long, global = true, env = "SHADOWD_LOG", default_value = "info")]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tap the production port and write every captured TCP segment to a pcap file.
    Record(record::RecordArgs),
    /// Rebuild HTTP exchanges from a pcap/pcapng file and print them as JSON lines.
    Inspect(inspect::InspectArgs),
    /// Run the daemon: tap, replay to the shadow, compare, serve metrics.
    Run(run::RunArgs),
    /// Shadow-test a recorded capture (pcap/pcapng) offline: replay its requests to the shadow,
    /// compare with the recorded answers, print the summary (exit code as `verdict` with
    /// criteria).
    Replay(replay::ReplayArgs),
    /// Validate a config file (and flags) as `run` would and print the effective config.
    CheckConfig(check_config::CheckConfigArgs),
    /// Judge a running daemon's summary against success criteria: print each criterion and
    /// PROMOTE (exit 0), HOLD (exit 3) or REJECT (exit 4).
    Verdict(verdict::VerdictArgs),
    /// Watch a running daemon live in the terminal (read-only): requests per second, agreement
    /// and accuracy, latency and errors per model, the breaker, drops, the last discrepancies.
    Top(top::TopArgs),
    /// Write one self-contained HTML report (verdict, charts, discrepancies) of a running
    /// daemon (`--from`) or of a state file (`--state`).
    Report(report::ReportArgs),
}

impl Cli {
    /// Runs the parsed command line; an error is printed with its causes and mapped to its
    /// exit code ([`commands::exit_code`]).
    pub fn run(self) -> ExitCode {
        init_tracing(&self.log);
        let result = match self.command {
            Command::Record(args) => record::main(args),
            Command::Inspect(args) => inspect::main(args),
            Command::Run(args) => run::main(args),
            Command::Replay(args) => replay::main(args),
            Command::CheckConfig(args) => check_config::main(args),
            Command::Verdict(args) => verdict::main(args),
            Command::Top(args) => top::main(args),
            Command::Report(args) => report::main(args),
        };
        match result {
            Ok(code) => ExitCode::from(code),
            Err(err) => {
                eprintln!("shadowd: error: {err:#}");
                ExitCode::from(commands::exit_code(&err))
            }
        }
    }
}

/// Logs to stderr, filtered by `filter` (tracing `EnvFilter` syntax; `info` if invalid).
fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
