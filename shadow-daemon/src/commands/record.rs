//! `shadowd record`: tap the production port and write segments to a pcap file.

use super::CommandResult;
use clap::Args;

/// Flags of `shadowd record`.
#[derive(Debug, Args)]
pub struct RecordArgs {}

/// Runs `shadowd record`.
pub fn main(_args: RecordArgs) -> CommandResult {
    anyhow::bail!("record is not implemented yet")
}
