//! `shadowd`: parse the command line, run the subcommand, exit with its code.
use clap::Parser;
use shadow_daemon::{cli::Cli, commands};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    commands::run(cli)
}
