//! `shadowd`: parse the command line, run the subcommand, exit with its code.
use clap::Parser;
use shadow_daemon::cli::Cli;

/// mimalloc instead of glibc's malloc: the data path allocates and frees small buffers per
/// segment and per exchange on several threads, where glibc's arenas spent about a tenth of the
/// daemon's CPU (`cargo xtask bench`, profile in the performance issue's closing note).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    Cli::parse().run()
}
