//! Builds the eBPF object (`shadow-ebpf`, nightly + bpf-linker) and leaves it in `OUT_DIR`,
//! where `capture::ebpf` embeds it with `include_bytes_aligned!`.
//!
//! This is `aya_build::build_ebpf` (aya-build 0.2) with its output captured: aya-build relays
//! every line of the nested cargo's stderr, `Compiling …` progress included, as a
//! `cargo:warning`, and cannot be told not to, so every build looked broken. Here the nested
//! build runs the same command (`rustup run nightly cargo build --release --target
//! bpf{el,eb}-unknown-none -Z build-std=core`, the same flags and target directory) and stays
//! silent when it succeeds; compiler warnings still show as cargo warnings, and a failure shows
//! everything it printed.
use std::{
    env,
    ffi::OsString,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, anyhow, bail};
use cargo_metadata::{Artifact, CompilerMessage, Message, diagnostic::DiagnosticLevel};

/// The eBPF crate (a workspace member) and the toolchain it needs.
const EBPF_PACKAGE: &str = "shadow-ebpf";
const TOOLCHAIN: &str = "nightly";

fn main() {
    // Printed without anyhow's backtrace: the nested build's own output says what went wrong.
    if let Err(error) = run() {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    emit_git_commit();
    // `AYA_BUILD_SKIP=1` (fuzzing, docs) builds a daemon without the tap: leave an empty object
    // so that the embedding compiles; loading it then fails with a clear error.
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        std::fs::write(out_dir.join(EBPF_PACKAGE), [])?;
        return Ok(());
    }
    let root_dir = ebpf_package_dir()?;
    // The build-dependency on shadow-ebpf reruns this script when its library changes; this
    // covers its binary too.
    println!("cargo:rerun-if-changed={}", root_dir.display());
    build_ebpf(&out_dir)
}

/// `SHADOWD_GIT_COMMIT` for `shadowd --version`: the short hash of `HEAD`, or `unknown` outside
/// a git checkout (a source tarball). Rerun when `HEAD` moves.
fn emit_git_commit() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|text| !text.is_empty())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SHADOWD_GIT_COMMIT={commit}");
    // HEAD (the worktree's), the branch it points to and packed refs (the repository's).
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        .and_then(|reference| git(&["rev-parse", "--git-path", &reference]))
    {
        println!("cargo:rerun-if-changed={branch}");
    }
    if let Some(packed) = git(&["rev-parse", "--git-path", "packed-refs"]) {
        println!("cargo:rerun-if-changed={packed}");
    }
}

/// The directory of the eBPF crate, from the workspace metadata.
fn ebpf_package_dir() -> anyhow::Result<PathBuf> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let package = metadata
        .packages
        .into_iter()
        .find(|package| package.name.as_str() == EBPF_PACKAGE)
        .ok_or_else(|| anyhow!("{EBPF_PACKAGE} package not found in the workspace"))?;
    let dir = package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", package.manifest_path))?;
    Ok(dir.as_std_path().to_owned())
}

/// Runs the nested cargo build and copies its binaries into `out_dir`.
fn build_ebpf(out_dir: &Path) -> anyhow::Result<()> {
    let target = match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("little") => "bpfel-unknown-none",
        Ok("big") => "bpfeb-unknown-none",
        other => bail!("unsupported target endianness {other:?}"),
    };
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH not set")?;
    let target_arch = if target_arch.starts_with("riscv64") {
        "riscv64"
    } else {
        &target_arch
    };
    let mut rustflags = OsString::new();
    for flag in [
        &format!("--cfg=bpf_target_arch=\"{target_arch}\""),
        "-Cdebuginfo=2",
        "-Clink-arg=--btf",
    ] {
        if !rustflags.is_empty() {
            rustflags.push("\x1f");
        }
        rustflags.push(flag);
    }

    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        TOOLCHAIN,
        "cargo",
        "build",
        "--package",
        EBPF_PACKAGE,
    ])
    .args([
        "--bins",
        "--message-format=json",
        "--release",
        "--target",
        target,
    ])
    .args(["-Z", "build-std=core"])
    // Kept apart from `OUT_DIR/<bin>` (the copies below), at aya-build's path so that
    // existing build caches stay valid.
    .arg("--target-dir")
    .arg(out_dir.join("aya-build").join("target").join(EBPF_PACKAGE))
    .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
    // The outer build's compiler is stable: let rustup pick the nightly one.
    .env_remove("RUSTC")
    .env_remove("RUSTC_WORKSPACE_WRAPPER")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| {
        format!("cannot run {cmd:?}: is rustup installed (`cargo xtask bootstrap`)?")
    })?;

    // stderr is cargo's progress: read it aside so that neither pipe fills up.
    let mut stderr = child.stderr.take().context("no stderr pipe")?;
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).map(|_| text)
    });
    let stdout = std::io::BufReader::new(child.stdout.take().context("no stdout pipe")?);
    let mut executables = Vec::new();
    let mut diagnostics = Vec::new();
    for message in Message::parse_stream(stdout) {
        match message.context("the nested cargo printed invalid JSON")? {
            Message::CompilerArtifact(Artifact {
                executable: Some(executable),
                target,
                ..
            }) => executables.push((target.name, executable.into_std_path_buf())),
            Message::CompilerMessage(CompilerMessage { message, .. }) => {
                let is_warning = matches!(message.level, DiagnosticLevel::Warning);
                diagnostics.push((is_warning, message.rendered.unwrap_or(message.message)));
            }
            Message::TextLine(line) => diagnostics.push((false, line)),
            _ => {}
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {cmd:?}"))?;
    let stderr = match stderr.join() {
        Ok(read) => read.context("reading the nested cargo's stderr")?,
        Err(panic) => std::panic::resume_unwind(panic),
    };

    if !status.success() {
        // A failed build script's stderr is shown by cargo: put everything there.
        for (_, text) in &diagnostics {
            eprintln!("{text}");
        }
        eprintln!("{stderr}");
        bail!("building the eBPF program failed ({status}): {cmd:?}; its output is above");
    }
    for (_, text) in diagnostics.iter().filter(|(is_warning, _)| *is_warning) {
        for line in text.lines() {
            println!("cargo:warning={line}");
        }
    }
    // Warnings of cargo itself or of shadow-ebpf's build script (e.g. bpf-linker missing).
    for line in stderr.lines().filter(|line| line.starts_with("warning:")) {
        println!("cargo:warning={line}");
    }
    for (name, binary) in executables {
        let destination = out_dir.join(name);
        std::fs::copy(&binary, &destination).with_context(|| {
            format!("copying {} to {}", binary.display(), destination.display())
        })?;
    }
    Ok(())
}
