//! `shadowd`: parse the command line, run the subcommand, exit with its code.
use shadow_daemon::cli::Cli;

fn main() -> std::process::ExitCode {
    Cli::parse_args().run()
}
