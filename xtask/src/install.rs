//! `cargo xtask install [--prefix DIR] [--dry-run] [--binary FILE]`: the release `shadowd`, the
//! systemd unit, a default config (mode 0640, never overwriting one that is there), the state
//! and log directories and the README, where `deploy/shadowtap.service` expects them. Prints
//! each step and the command to run next.

use crate::util::{cargo, run_cmd, workspace_root};
use clap::Args;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Flags of `cargo xtask install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Root the files go under (`/` by default; e.g. a package's staging directory).
    #[arg(long, default_value = "/")]
    pub prefix: PathBuf,
    /// Print what would be done, change nothing (and build nothing).
    #[arg(long)]
    pub dry_run: bool,
    /// Install this `shadowd` instead of building the release binary.
    #[arg(long, value_name = "FILE")]
    pub binary: Option<PathBuf>,
}

/// One thing the install does.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// A directory, created with `mode` if missing.
    Dir { path: PathBuf, mode: u32 },
    /// A file copied from `from` (replacing an older one).
    Copy {
        from: PathBuf,
        to: PathBuf,
        mode: u32,
    },
    /// A file written with `contents` unless one is already there (a user's config).
    WriteIfAbsent {
        to: PathBuf,
        contents: String,
        mode: u32,
    },
}

impl Step {
    fn describe(&self) -> String {
        match self {
            Step::Dir { path, mode } => format!("install -d -m {mode:04o} {}", path.display()),
            Step::Copy { from, to, mode } => {
                format!("install -m {mode:04o} {} {}", from.display(), to.display())
            }
            Step::WriteIfAbsent { to, mode, .. } => format!(
                "write {} (mode {mode:04o}) unless it exists: the default config",
                to.display()
            ),
        }
    }

    /// Does it; returns what was done (`kept` for a file left alone).
    fn apply(&self) -> anyhow::Result<String> {
        use anyhow::Context;
        let chmod = |path: &Path, mode: u32| {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .with_context(|| format!("chmod {mode:04o} {}", path.display()))
        };
        match self {
            Step::Dir { path, mode } => {
                if path.is_dir() {
                    return Ok(format!("kept {} (exists)", path.display()));
                }
                fs::create_dir_all(path).with_context(|| format!("mkdir {}", path.display()))?;
                chmod(path, *mode)?;
            }
            Step::Copy { from, to, mode } => {
                // Into a temporary name, then renamed: a running shadowd keeps its old binary.
                let temp = to.with_extension("xtask-new");
                fs::copy(from, &temp)
                    .with_context(|| format!("copy {} to {}", from.display(), temp.display()))?;
                chmod(&temp, *mode)?;
                fs::rename(&temp, to).with_context(|| format!("rename to {}", to.display()))?;
            }
            Step::WriteIfAbsent { to, contents, mode } => {
                if to.exists() {
                    return Ok(format!("kept {} (exists: your config)", to.display()));
                }
                fs::write(to, contents).with_context(|| format!("write {}", to.display()))?;
                chmod(to, *mode)?;
            }
        }
        Ok(self.describe())
    }
}

/// `path` (absolute) under `prefix`.
fn under(prefix: &Path, path: &str) -> PathBuf {
    prefix.join(path.trim_start_matches('/'))
}

/// The default config: the example, with its example label file left out (a missing label file
/// stops `shadowd run`).
fn default_config(example: &str) -> String {
    example.replace(
        "\nlabels_file = ",
        "\n# (not set by default: shadowd refuses to start without the file)\n# labels_file = ",
    )
}

/// Everything the install does, in order, with `binary` as the `shadowd` to install.
fn plan(prefix: &Path, binary: &Path) -> anyhow::Result<Vec<Step>> {
    let deploy = workspace_root().join("deploy");
    let example = fs::read_to_string(deploy.join("shadowtap.example.toml"))?;
    let dir = |path: &str, mode| Step::Dir {
        path: under(prefix, path),
        mode,
    };
    Ok(vec![
        dir("/usr/local/bin", 0o755),
        Step::Copy {
            from: binary.to_path_buf(),
            to: under(prefix, "/usr/local/bin/shadowd"),
            mode: 0o755,
        },
        dir("/etc/systemd/system", 0o755),
        Step::Copy {
            from: deploy.join("shadowtap.service"),
            to: under(prefix, "/etc/systemd/system/shadowtap.service"),
            mode: 0o644,
        },
        dir("/etc/shadowtap", 0o750),
        Step::WriteIfAbsent {
            to: under(prefix, "/etc/shadowtap/shadowtap.toml"),
            contents: default_config(&example),
            mode: 0o640,
        },
        Step::Copy {
            from: deploy.join("criteria.example.toml"),
            to: under(prefix, "/etc/shadowtap/criteria.example.toml"),
            mode: 0o640,
        },
        dir("/var/lib/shadowtap", 0o750),
        dir("/var/log/shadowtap", 0o750),
        dir("/usr/local/share/doc/shadowtap", 0o755),
        Step::Copy {
            from: workspace_root().join("README.md"),
            to: under(prefix, "/usr/local/share/doc/shadowtap/README.md"),
            mode: 0o644,
        },
    ])
}

/// The release `shadowd` (built now), or `--binary`.
fn binary(args: &InstallArgs) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.binary {
        return Ok(path.clone());
    }
    let path = crate::build::target_dir().join("release/shadowd");
    if args.dry_run {
        return Ok(path);
    }
    crate::bootstrap::run()?;
    run_cmd(cargo().args([
        "build",
        "--release",
        "-p",
        "shadow-daemon",
        "--bin",
        "shadowd",
    ]))?;
    Ok(path)
}

/// Runs `cargo xtask install`.
pub fn run(args: InstallArgs) -> anyhow::Result<()> {
    let binary = binary(&args)?;
    let steps = plan(&args.prefix, &binary)?;
    let verb = if args.dry_run {
        "would install"
    } else {
        "installed"
    };
    for step in &steps {
        let done = if args.dry_run {
            step.describe()
        } else {
            step.apply()?
        };
        println!("xtask install: {done}");
    }
    let config = under(&args.prefix, "/etc/shadowtap/shadowtap.toml");
    println!(
        "xtask install: {verb} shadowd, its unit and default config under {}",
        args.prefix.display()
    );
    if args.prefix == Path::new("/") {
        println!(
            "next: edit {} (capture.interface, capture.ports, shadow.url), check it with \
             `shadowd check-config --config {}`, then `systemctl daemon-reload && systemctl \
             enable --now shadowtap`",
            config.display(),
            config.display()
        );
    } else {
        println!(
            "next: package or copy {} to the target machine's /, then `systemctl daemon-reload \
             && systemctl enable --now shadowtap`",
            args.prefix.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn fake_binary(dir: &Path) -> PathBuf {
        let path = dir.join("shadowd-built");
        fs::write(&path, "#!/bin/sh\necho shadowd\n").unwrap();
        path
    }

    #[test]
    fn installs_everything_under_the_prefix_with_its_modes_and_keeps_a_users_config() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("root");
        let args = || InstallArgs {
            prefix: prefix.clone(),
            dry_run: false,
            binary: Some(fake_binary(dir.path())),
        };
        run(args()).unwrap();
        let at = |p: &str| under(&prefix, p);
        assert_eq!(mode(&at("/usr/local/bin/shadowd")), 0o755);
        assert_eq!(
            fs::read_to_string(at("/usr/local/bin/shadowd")).unwrap(),
            "#!/bin/sh\necho shadowd\n"
        );
        let unit = fs::read_to_string(at("/etc/systemd/system/shadowtap.service")).unwrap();
        assert!(unit.contains("Type=notify"), "{unit}");
        assert_eq!(mode(&at("/etc/shadowtap")), 0o750);
        let config = at("/etc/shadowtap/shadowtap.toml");
        assert_eq!(mode(&config), 0o640);
        let text = fs::read_to_string(&config).unwrap();
        assert!(text.contains("[capture]") && text.contains("\n# labels_file = "));
        assert!(!text.contains("\nlabels_file = "), "{text}");
        for state in ["/var/lib/shadowtap", "/var/log/shadowtap"] {
            assert!(at(state).is_dir(), "{state}");
            assert_eq!(mode(&at(state)), 0o750, "{state}");
        }
        assert!(at("/usr/local/share/doc/shadowtap/README.md").is_file());

        // Again, over a config the user edited: the binary is replaced, the config kept.
        fs::write(&config, "# mine\n").unwrap();
        run(args()).unwrap();
        assert_eq!(fs::read_to_string(&config).unwrap(), "# mine\n");
    }

    #[test]
    fn a_dry_run_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("root");
        run(InstallArgs {
            prefix: prefix.clone(),
            dry_run: true,
            binary: None,
        })
        .unwrap();
        assert!(!prefix.exists(), "a dry run created {}", prefix.display());
        let steps = plan(&prefix, Path::new("/x/shadowd")).unwrap();
        let described: Vec<String> = steps.iter().map(Step::describe).collect();
        assert!(
            described
                .iter()
                .any(|d| d.starts_with("install -m 0755 /x/shadowd ")
                    && d.ends_with("/root/usr/local/bin/shadowd")),
            "{described:#?}"
        );
    }

    /// `systemd-analyze verify` finds nothing wrong with the unit and `systemd-analyze
    /// security` rates it at most 3.0 ("OK"). Skipped where systemd-analyze is missing.
    #[test]
    fn the_unit_verifies_and_is_rated_ok() {
        if Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: no systemd-analyze");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let unit = fs::read_to_string(workspace_root().join("deploy/shadowtap.service")).unwrap();
        // verify checks that ExecStart's program exists: point it at one that does.
        let binary = fake_binary(dir.path());
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();
        let unit_path = dir.path().join("shadowtap.service");
        fs::write(
            &unit_path,
            unit.replace("/usr/local/bin/shadowd", binary.to_str().unwrap()),
        )
        .unwrap();
        let verify = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit_path)
            .output()
            .unwrap();
        assert!(
            verify.status.success() && verify.stderr.is_empty(),
            "systemd-analyze verify:\n{}",
            String::from_utf8_lossy(&verify.stderr)
        );
        let security = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--threshold=30"])
            .arg(&unit_path)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&security.stdout);
        assert!(
            security.status.success() && report.contains("Overall exposure level"),
            "exposure above 3.0:\n{report}{}",
            String::from_utf8_lossy(&security.stderr)
        );
    }
}
