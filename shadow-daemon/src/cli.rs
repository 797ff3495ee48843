//! Command line of `shadowd` (clap derive). Each subcommand's flags live beside its code in
//! [`crate::commands`].

use crate::commands;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// shadowtap: shadow-test a new model version on real production traffic, with zero changes to
/// the application. The production model server is tapped with eBPF; its requests are replayed
/// to the shadow model and the answers compared.
///
/// Exit codes: 0 success (or verdict promote), 1 runtime error, 2 usage or configuration error,
/// 3 verdict hold (not enough evidence), 4 verdict reject.
#[derive(Debug, Parser)]
#[command(name = "shadowd", version, propagate_version = true)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info`, `debug`, `shadow_daemon=trace`.
    #[arg(long, global = true, env = "SHADOWD_LOG", default_value = "info")]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tap the production port and write every captured TCP segment to a pcap file.
    Record(commands::record::RecordArgs),
    /// Rebuild HTTP exchanges from a pcap/pcapng file and print them as JSON lines.
    Inspect(commands::inspect::InspectArgs),
    /// Run the daemon: tap, replay to the shadow, compare, serve metrics.
    Run(commands::run::RunArgs),
    /// Validate a config file (and flags) as `run` would and print the effective config.
    CheckConfig(commands::check_config::CheckConfigArgs),
}

/// Runs the parsed command line and maps the outcome to an exit code.
pub fn run(cli: Cli) -> ExitCode {
    commands::init_tracing(&cli.log);
    let result = match cli.command {
        Command::Record(args) => commands::record::main(args),
        Command::Inspect(args) => commands::inspect::main(args),
        Command::Run(args) => commands::run::main(args),
        Command::CheckConfig(args) => commands::check_config::main(args),
    };
    commands::exit_code(result)
}
