//! `shadowd`: parse the command line, run the subcommand, exit with its code.
use clap::Parser;
use shadow_daemon::cli::{self, Cli};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli::run(cli)
}
