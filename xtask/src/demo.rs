//! `cargo xtask demo`: the main job on the bundled demo models.

use clap::Args;

/// Flags of `cargo xtask demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {}

/// Runs the demo.
pub fn run(_args: DemoArgs) -> anyhow::Result<()> {
    anyhow::bail!("the demo is not wired yet")
}
