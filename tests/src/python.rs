//! Python peers for the end-to-end tests: a venv with pinned PyPI packages, made on first use
//! and reused, and running a program to its end.
//!
//! A venv lives where the test says (under cargo's target directory, e.g.
//! `env!("CARGO_TARGET_TMPDIR")/real-oip-venv`): made with `python3 -m venv` and `pip install`
//! of the packages, then marked with the package list, so a later run with the same list
//! reuses it and a changed list makes it anew. When it cannot be made (no `python3`, no package
//! index) [`venv`] says why, and the test reports itself skipped. `SHADOWTAP_PYTHON` names
//! another interpreter.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

/// File in the venv listing the packages it was made with.
const MARKER: &str = "shadowtap-packages.txt";

/// The venv at `dir` with exactly `packages` (pip requirement strings), made if missing or made
/// with another list; `Err` says why it cannot be made. `who` names the test in messages.
pub fn venv(dir: &Path, packages: &[&str], who: &str) -> Result<PathBuf, String> {
    // Tests of one binary run in parallel threads and may share a venv: one makes it while
    // the others wait, then find it made (two at once broke each other's `ensurepip`).
    static MAKING: Mutex<()> = Mutex::new(());
    let _making = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    let marker = dir.join(MARKER);
    let wanted = packages.join("\n");
    if std::fs::read_to_string(&marker).is_ok_and(|have| have == wanted) {
        return Ok(dir.to_path_buf());
    }
    let python = std::env::var_os("SHADOWTAP_PYTHON").unwrap_or_else(|| "python3".into());
    let _ = std::fs::remove_dir_all(dir);
    let started = Instant::now();
    eprintln!(
        "{who}: installing {} into {} (once)",
        packages.join(" "),
        dir.display()
    );
    run(
        Path::new(&python),
        &["-m", "venv", dir.to_str().ok_or("non-UTF-8 venv path")?],
    )?;
    let mut pip = vec!["install", "--quiet", "--disable-pip-version-check"];
    pip.extend_from_slice(packages);
    if let Err(e) = run(&dir.join("bin/pip"), &pip) {
        // No half-made venv left behind for the next run to trust.
        let _ = std::fs::remove_dir_all(dir);
        return Err(e);
    }
    std::fs::write(&marker, wanted).map_err(|e| format!("{}: {e}", marker.display()))?;
    eprintln!("{who}: venv ready in {:.0?}", started.elapsed());
    Ok(dir.to_path_buf())
}

/// The venv's interpreter.
pub fn python(venv: &Path) -> PathBuf {
    venv.join("bin/python")
}

/// Runs `program args` to its end, returning its stdout or why it failed (with its stderr).
pub fn run(program: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{} {}` failed ({}): {}",
            program.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Prints (straight to stderr, past the test harness's capture) that `test` is skipped
/// because its venv cannot be made.
pub fn skip_without_venv(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: the Python venv cannot be made: {why}"
    );
}
