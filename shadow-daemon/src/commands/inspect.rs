//! `shadowd inspect`: pcap → HTTP exchanges as JSON lines.

use super::CommandResult;
use clap::Args;
use std::path::PathBuf;

/// Flags of `shadowd inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The pcap or pcapng file to read.
    #[arg(long)]
    pub pcap: PathBuf,
    /// The production server's port (repeat for several).
    #[arg(long = "port", required = true)]
    pub ports: Vec<u16>,
    /// Also print decoded bodies (base64).
    #[arg(long)]
    pub bodies: bool,
}

/// Runs `shadowd inspect`.
pub fn main(_args: InspectArgs) -> CommandResult {
    anyhow::bail!("inspect is not implemented yet")
}
