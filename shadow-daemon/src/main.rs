//! `shadowd`: parse the command line, run the subcommand, exit with its code.
use clap::Parser;
use shadow_daemon::cli::Cli;

fn main() -> std::process::ExitCode {
    Cli::parse().run()
}
