//! `cargo xtask build`: the release daemon with its eBPF object embedded.

use crate::util::{cargo, run_cmd, workspace_root};
use std::path::PathBuf;
use std::time::Instant;

/// Builds `shadowd` (release) and the demo binaries; returns the directory holding them.
pub fn release() -> anyhow::Result<PathBuf> {
    let started = Instant::now();
    run_cmd(cargo().args([
        "build",
        "--release",
        "-p",
        "shadow-daemon",
        "-p",
        "shadowtap-demo",
    ]))?;
    let dir = target_dir().join("release");
    eprintln!(
        "xtask build: {} (eBPF object embedded) built in {:.0?}",
        dir.join("shadowd").display(),
        started.elapsed()
    );
    Ok(dir)
}

/// Builds the debug `shadowd` and demo models (what `cargo xtask test`'s quick bench runs: the
/// tests already built most of it); returns their directory.
pub fn debug() -> anyhow::Result<PathBuf> {
    // Two builds, not one: together, the two packages' features would unify into a third set
    // and rebuild their dependencies.
    let shadowd = debug_shadowd()?;
    run_cmd(cargo().args(["build", "-p", "shadowtap-demo"]))?;
    Ok(shadowd.parent().map(PathBuf::from).unwrap_or_else(|| target_dir().join("debug")))
}

/// Builds the debug `shadowd` used by the end-to-end tests; returns its path.
pub fn debug_shadowd() -> anyhow::Result<PathBuf> {
    run_cmd(cargo().args(["build", "-p", "shadow-daemon", "--bin", "shadowd"]))?;
    Ok(target_dir().join("debug").join("shadowd"))
}

/// Cargo's target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}
