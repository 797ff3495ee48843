//! The alert rules pass Prometheus's own checks: `promtool check rules` on
//! `deploy/prometheus/shadowtap-alerts.yml`, and `promtool test rules` on its unit tests
//! (`shadowtap-alerts.test.yml`: each alert fires on a constructed series and stays quiet
//! otherwise, a dead shadow included).
//!
//! promtool comes with Debian's `prometheus` package (`cargo xtask bootstrap` installs it).
//! Without it the tests say SKIPPED, unless `CI` or `SHADOWTAP_E2E_REQUIRED=1` is set, where a
//! missing promtool is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

fn prometheus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .join("deploy/prometheus")
}

/// `promtool`'s path, or `None` (after saying SKIPPED) when it is not installed and skipping
/// is allowed.
fn promtool(test: &str) -> Option<&'static str> {
    const PROMTOOL: &str = "promtool";
    if Command::new(PROMTOOL).arg("--version").output().is_ok() {
        return Some(PROMTOOL);
    }
    let required = std::env::var_os("CI").is_some_and(|v| !v.is_empty())
        || std::env::var_os("SHADOWTAP_E2E_REQUIRED").is_some_and(|v| v == "1");
    assert!(
        !required,
        "{test}: promtool is not installed (Debian package `prometheus`; `cargo xtask bootstrap` \
         installs it)"
    );
    eprintln!("SKIPPED {test}: promtool not found (apt-get install prometheus)");
    None
}

/// Runs `promtool <args>` in deploy/prometheus; panics with its output unless it succeeds.
fn run(promtool: &str, args: &[&str]) -> String {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(prometheus_dir())
        .output()
        .unwrap_or_else(|e| panic!("promtool {args:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_check_rules_passes() {
    let Some(promtool) = promtool("promtool_check_rules_passes") else {
        return;
    };
    let text = run(promtool, &["check", "rules", "shadowtap-alerts.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn promtool_unit_tests_cover_every_alert_firing_and_quiet() {
    let Some(promtool) = promtool("promtool_unit_tests_cover_every_alert_firing_and_quiet") else {
        return;
    };
    let text = run(promtool, &["test", "rules", "shadowtap-alerts.test.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");

    // Every alert of the rules has a test where it fires and one where it must stay quiet.
    let rules = std::fs::read_to_string(prometheus_dir().join("shadowtap-alerts.yml")).unwrap();
    let tests =
        std::fs::read_to_string(prometheus_dir().join("shadowtap-alerts.test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 8, "{alerts:?}");
    for alert in alerts {
        let quiet = format!("alertname: {alert}, exp_alerts: []}}");
        assert!(tests.contains(&quiet), "no test where {alert} stays quiet");
        let fires = tests
            .lines()
            .zip(tests.lines().skip(1))
            .any(|(name, next)| {
                name.trim() == format!("alertname: {alert}") && next.trim() == "exp_alerts:"
            });
        assert!(fires, "no test where {alert} fires");
    }
    // The dead shadow is among them.
    assert!(tests.contains("A dead shadow"), "no dead-shadow test");
}
