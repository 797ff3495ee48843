//! `--log-format`: JSON lines for log shippers, plain lines without colours or timestamps under
//! journald. `shadowd run` on an interface that does not exist logs a few lines (the state
//! file it starts without), then fails: enough to see each format, with no privilege needed.

use std::process::Command;

/// Runs `shadowd [--log-format FORMAT] run ...` on a missing interface; returns stderr.
fn failing_run(format: Option<&str>, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shadowd"));
    if let Some(format) = format {
        cmd.args(["--log-format", format]);
    }
    let out = cmd
        .args([
            "run",
            "--interface",
            "nosuch-if0",
            "--port",
            "8080",
            "--shadow",
            "http://127.0.0.1:9",
            "--admin-addr",
            "127.0.0.1:0",
            "--state",
            state.to_str().unwrap(),
        ])
        .env_remove("JOURNAL_STREAM")
        .env_remove("SHADOWD_LOG_FORMAT")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing interface is a usage error"
    );
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn json_lines_carry_level_message_and_fields_to_the_last_error() {
    let stderr = failing_run(Some("json"), &[]);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let started = lines
        .iter()
        .find(|l| l["message"] == "no state file yet: starting afresh")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(started["level"], "INFO");
    assert!(started["path"].as_str().unwrap().ends_with("state.json"));
    assert!(started["timestamp"].is_string());
    let last = lines.last().unwrap();
    assert_eq!(last["level"], "ERROR", "{stderr}");
    assert!(
        last["message"].as_str().unwrap().contains("nosuch-if0"),
        "{stderr}"
    );
}

#[test]
fn under_journald_lines_are_plain_without_colours_or_timestamps() {
    let stderr = failing_run(None, &[("JOURNAL_STREAM", "8:12345")]);
    let line = stderr
        .lines()
        .find(|l| l.contains("no state file yet"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(!line.contains('\u{1b}'), "no ANSI escapes: {line:?}");
    assert!(
        line.trim_start().starts_with("INFO"),
        "no timestamp in front: {line:?}"
    );
    assert!(stderr.contains("shadowd: error:"), "{stderr}");

    // Plain, outside journald: a timestamp first (stderr is a pipe: no colours either).
    let stderr = failing_run(Some("plain"), &[]);
    let line = stderr
        .lines()
        .find(|l| l.contains("no state file yet"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.starts_with("20"), "{line:?}");
    assert!(!line.contains('\u{1b}'), "{line:?}");
}
