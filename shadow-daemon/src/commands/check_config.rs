//! `shadowd check-config`: load the config file and flags as `run` would, check them (reporting
//! every problem at once), and print the effective configuration as TOML.

use super::run::RunArgs;
use super::{CommandResult, EXIT_OK, UsageError};
use clap::Args;

/// Flags of `shadowd check-config`: the same as `run`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    #[command(flatten)]
    pub run: RunArgs,
}

/// Runs `shadowd check-config`.
pub fn main(args: CheckConfigArgs) -> CommandResult {
    let config = args.run.effective_config().map_err(UsageError::from)?;
    let text = config.to_toml()?;
    println!("{text}");
    eprintln!("shadowd: configuration is valid");
    Ok(EXIT_OK)
}
