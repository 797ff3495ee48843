//! Idempotent installation of everything a fresh machine lacks. Each step checks first and
//! says what it installs and why; a second run only checks (a few seconds).

use crate::util::{describe, is_root, output, run_cmd};
use anyhow::{Context, bail};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// bpf-linker release known to work with the installed nightly (LLVM 22).
const BPF_LINKER_VERSION: &str = "0.13.0";
/// cargo-fuzz release used by `cargo xtask fuzz` and the bounded fuzzing in `cargo xtask test`.
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// The nightly toolchain that builds the eBPF crate (`-Z build-std=core`).
const NIGHTLY: &str = "nightly";

/// Debian packages and why each is needed.
const APT_PACKAGES: &[(&str, &str)] = &[
    ("llvm-22-dev", "bpf-linker links eBPF objects with LLVM 22"),
    ("libpolly-22-dev", "bpf-linker's LLVM 22 link dependencies"),
    ("libzstd-dev", "bpf-linker's LLVM 22 link dependencies"),
    ("iproute2", "`ip netns` / veth for the end-to-end tests"),
    (
        "bpftool",
        "tests check that no tap stays attached; `cargo xtask bench` reads the tap's run time",
    ),
    (
        "tcpdump",
        "tests check that recorded pcaps read back in tcpdump; `cargo xtask bench` compares \
         capture drops with it",
    ),
    ("wrk", "`cargo xtask bench` offers load with wrk"),
    (
        "nginx",
        "`cargo xtask bench` compares with nginx `mirror` in front of production (xtask starts \
         its own nginx on loopback with a generated config; the Debian service is not used)",
    ),
    (
        "curl",
        "the demo shows curl requests; the HTTP/2 tests send `curl --http2-prior-knowledge`",
    ),
    (
        "nghttp2-client",
        "h2load offers h2c load in the HTTP/2 end-to-end tests",
    ),
    (
        "python3-venv",
        "end-to-end tests make Python venvs (MLServer, grpcio) from PyPI",
    ),
    (
        "prometheus",
        "`promtool check rules` / `promtool test rules` check the alert rules, and an \
         end-to-end test scrapes a live shadowd with a real Prometheus (started on loopback by \
         the test; the Debian service is not used)",
    ),
    (
        "chromium",
        "the report test renders `shadowd report`'s HTML in headless Chromium (screenshot, DOM, \
         console errors)",
    ),
];

/// One thing bootstrap may install.
struct Step {
    name: &'static str,
    why: String,
    present: fn() -> bool,
    install: fn() -> anyhow::Result<()>,
}

/// Checks every step and installs what is missing.
pub fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let steps = [
        Step {
            name: "nightly toolchain",
            why: "the eBPF crate is built with nightly (-Z build-std=core)".into(),
            present: || {
                output(Command::new("rustup").args(["run", NIGHTLY, "rustc", "--version"]))
                    .is_some()
            },
            install: || {
                run_cmd(Command::new("rustup").args([
                    "toolchain",
                    "install",
                    NIGHTLY,
                    "--profile",
                    "minimal",
                ]))
            },
        },
        Step {
            name: "rust-src (nightly)",
            why: "building `core` for the bpfel-unknown-none target needs the sources".into(),
            present: || {
                output(Command::new("rustup").args([
                    "component",
                    "list",
                    "--installed",
                    "--toolchain",
                    NIGHTLY,
                ]))
                .is_some_and(|list| list.lines().any(|l| l.starts_with("rust-src")))
            },
            install: || {
                run_cmd(Command::new("rustup").args([
                    "component",
                    "add",
                    "rust-src",
                    "--toolchain",
                    NIGHTLY,
                ]))
            },
        },
        Step {
            name: "Debian packages",
            why: String::new(),
            present: || missing_apt_packages().is_empty(),
            install: install_apt_packages,
        },
        Step {
            name: "curl with HTTP/2",
            why: "the HTTP/2 end-to-end tests send `curl --http2-prior-knowledge`; this curl \
                  lacks HTTP2 in `curl --version`, so the Debian one is installed"
                .into(),
            present: curl_speaks_http2,
            install: || {
                if !is_root() {
                    bail!("installing Debian's curl needs root; run as root");
                }
                run_cmd(
                    Command::new("apt-get")
                        .env("DEBIAN_FRONTEND", "noninteractive")
                        .args(["install", "-y", "-q", "--reinstall", "curl", "libcurl4"]),
                )
            },
        },
        Step {
            name: "bpf-linker",
            why: format!("links the eBPF object (version {BPF_LINKER_VERSION}, LLVM 22)"),
            present: || {
                output(Command::new("bpf-linker").arg("--version"))
                    .is_some_and(|v| v.contains(BPF_LINKER_VERSION))
            },
            install: || {
                run_cmd(
                    Command::new("cargo")
                        .env("LLVM_PREFIX", "/usr/lib/llvm-22")
                        .args([
                            "install",
                            "bpf-linker",
                            "--version",
                            BPF_LINKER_VERSION,
                            "--locked",
                        ])
                        .args(["--no-default-features", "--features", "llvm-22", "--force"]),
                )
            },
        },
        Step {
            name: "cargo-fuzz",
            why: "`cargo xtask fuzz` and `cargo xtask test` run the fuzz targets in fuzz/".into(),
            present: || output(Command::new("cargo").args(["fuzz", "--version"])).is_some(),
            install: || {
                run_cmd(Command::new("cargo").args([
                    "install",
                    "cargo-fuzz",
                    "--version",
                    CARGO_FUZZ_VERSION,
                    "--locked",
                ]))
            },
        },
    ];

    let mut installed = Vec::new();
    for step in &steps {
        if (step.present)() {
            continue;
        }
        let why = if step.why.is_empty() {
            format!("missing: {}", missing_apt_packages().join(" "))
        } else {
            step.why.clone()
        };
        eprintln!("xtask bootstrap: installing {} ({why})", step.name);
        let t = Instant::now();
        (step.install)().with_context(|| {
            format!(
                "bootstrap step `{}` failed; fix the error above and rerun `cargo xtask bootstrap`",
                step.name
            )
        })?;
        if !(step.present)() {
            bail!(
                "bootstrap step `{}` ran but its check still fails",
                step.name
            );
        }
        eprintln!(
            "xtask bootstrap: {} installed in {:.0?}",
            step.name,
            t.elapsed()
        );
        installed.push(step.name);
    }
    if installed.is_empty() {
        eprintln!(
            "xtask bootstrap: toolchain complete (checked in {:.1?})",
            started.elapsed()
        );
    } else {
        eprintln!(
            "xtask bootstrap: installed {} in {:.0?}",
            installed.join(", "),
            started.elapsed()
        );
    }
    Ok(())
}

/// Whether the `curl` on `PATH` lists HTTP2 among its features.
fn curl_speaks_http2() -> bool {
    output(Command::new("curl").arg("--version")).is_some_and(|v| lists_http2(&v))
}

/// Whether `curl --version` output has HTTP2 on its `Features:` line.
fn lists_http2(version: &str) -> bool {
    version
        .lines()
        .filter(|l| l.starts_with("Features:"))
        .any(|l| l.split_whitespace().any(|f| f == "HTTP2"))
}

fn missing_apt_packages() -> Vec<&'static str> {
    APT_PACKAGES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| {
            !output(Command::new("dpkg-query").args(["-W", "-f=${Status}", name]))
                .is_some_and(|status| status.contains("install ok installed"))
        })
        .collect()
}

fn install_apt_packages() -> anyhow::Result<()> {
    let missing = missing_apt_packages();
    for name in &missing {
        if let Some((_, why)) = APT_PACKAGES.iter().find(|(n, _)| n == name) {
            eprintln!("  {name}: {why}");
        }
    }
    if !is_root() {
        bail!(
            "installing Debian packages needs root; run as root, or by hand: \
             sudo apt-get update && sudo apt-get install -y {}",
            missing.join(" ")
        );
    }
    let mut update = Command::new("apt-get");
    update.args(["update", "-q"]);
    run_cmd(&mut update).with_context(|| format!("`{}`", describe(&update)))?;
    let mut install = Command::new("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing);
    run_cmd(&mut install)?;
    stop_package_services(&missing);
    Ok(())
}

/// Debian starts the services of the packages it installs (nginx on :80, Prometheus on :9090);
/// the tests and the bench start their own on loopback, so on a machine run by systemd the ones
/// bootstrap just installed are stopped and disabled (a package installed before is left alone).
fn stop_package_services(installed: &[&str]) {
    if !Path::new("/run/systemd/system").is_dir() {
        return;
    }
    for unit in SERVICE_PACKAGES.iter().filter(|p| installed.contains(p)) {
        let stopped = Command::new("systemctl")
            .args(["disable", "--now", unit])
            .status()
            .is_ok_and(|s| s.success());
        eprintln!(
            "  {unit}: the Debian service {} (the tests start their own)",
            if stopped {
                "was stopped and disabled"
            } else {
                "could not be stopped"
            }
        );
    }
}

/// Packages whose Debian service starts on install and which bootstrap stops.
const SERVICE_PACKAGES: [&str; 2] = ["nginx", "prometheus"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http2_is_read_from_curls_feature_line() {
        let with = "curl 7.88.1 (x86_64-pc-linux-gnu) libcurl/7.88.1 nghttp2/1.52.0\n\
                    Protocols: http https\n\
                    Features: alt-svc AsynchDNS brotli GSS-API HSTS HTTP2 HTTPS-proxy IDN IPv6\n";
        assert!(lists_http2(with));
        let without =
            "curl 8.0 (x) libcurl/8.0\nProtocols: http https\nFeatures: IPv6 HTTPS-proxy\n";
        assert!(!lists_http2(without));
        // nghttp2 in the version line alone is not the feature.
        assert!(!lists_http2("curl 8 nghttp2/1.5 HTTP2\nFeatures: IPv6\n"));
    }

    #[test]
    fn the_bench_tools_are_in_the_package_list() {
        for tool in ["nginx", "tcpdump", "bpftool", "wrk"] {
            assert!(APT_PACKAGES.iter().any(|(name, _)| *name == tool), "{tool}");
        }
    }

    #[test]
    fn the_http2_test_tools_are_in_the_package_list() {
        for tool in ["nghttp2-client", "curl", "python3-venv", "chromium"] {
            assert!(APT_PACKAGES.iter().any(|(name, _)| *name == tool), "{tool}");
        }
    }

    #[test]
    fn the_services_stopped_after_install_are_packages_bootstrap_installs() {
        for unit in SERVICE_PACKAGES {
            assert!(APT_PACKAGES.iter().any(|(name, _)| *name == unit), "{unit}");
        }
    }

    #[test]
    fn prometheus_and_promtool_are_in_the_package_list() {
        assert!(APT_PACKAGES.iter().any(|(name, _)| *name == "prometheus"));
    }
}
