//! `shadowd verdict` against a canned `/api/summary` served on loopback: the decision is the
//! exit code (PROMOTE 0, HOLD 3, REJECT 4), a bad criteria file exits 2 and an unreachable
//! daemon 1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::thread;

/// 1000 comparisons, 980 of 1000 requests agree; production p99
/// 50 ms, shadow 60 ms (ratio 1.2); errors 10 and 12 of 1000.
const SUMMARY: &str = r#"{"compared":1000,"shadow_failed":2,
 "agreement":{"request":{"samples":1000,"agreed":980,"ratio":0.98,"ci95":[0.969,0.987]},
              "row":{"samples":1000,"agreed":980,"ratio":0.98,"ci95":[0.969,0.987]}},
 "body_equal":900,"discrepancies":{"label":20},
 "shadow_errors":{"timeout":2,"http_5xx":10},"production_errors":{"http_5xx":10},
 "confusion":{},"per_class":{},"macro_f1":null,
 "latency_production":{"count":1000,"mean_ms":20.0,"max_ms":70.0,"p50_ms":18.0,"p90_ms":35.0,"p99_ms":50.0},
 "latency_shadow":{"count":998,"mean_ms":25.0,"max_ms":80.0,"p50_ms":22.0,"p90_ms":40.0,"p99_ms":60.0},
 "queue_wait":{"count":0,"mean_ms":null,"max_ms":null,"p50_ms":null,"p90_ms":null,"p99_ms":null},
 "circuit_state":"closed","replay":{}}"#;

/// Serves `SUMMARY` at `/api/summary` (404 elsewhere) to every connection, until the test ends.
fn serve_summary() -> SocketAddr {
    serve_summary_to(None)
}

/// [`serve_summary`], answering 401 to a request without `Authorization: Bearer <token>` when
/// a token is given.
fn serve_summary_to(token: Option<&'static str>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let expected = token.map(|t| format!("\r\nAuthorization: Bearer {t}\r\n"));
            let authorized = expected.is_none_or(|e| {
                request
                    .windows(e.len())
                    .any(|w| w.eq_ignore_ascii_case(e.as_bytes()))
            });
            let (status, body) = if !authorized {
                ("401 Unauthorized", "token needed\n")
            } else if request.starts_with(b"GET /api/summary ") {
                ("200 OK", SUMMARY)
            } else {
                ("404 Not Found", "not found\n")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

fn criteria_file(name: &str, text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("verdict-{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn verdict(from: &str, criteria: &PathBuf, json: bool) -> Output {
    verdict_with(from, criteria, json, &[])
}

fn verdict_with(from: &str, criteria: &PathBuf, json: bool, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shadowd"));
    cmd.env_remove("SHADOWD_ADMIN_TOKEN_FILE")
        .args(["verdict", "--from", from, "--criteria"])
        .arg(criteria)
        .args(extra);
    if json {
        cmd.arg("--json");
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_decision_is_the_exit_code() {
    let from = format!("http://{}", serve_summary());
    // Agreement 0.98 (Wilson lower bound ≈ 0.969), p99 ratio 1.2, error delta 0.002.
    let measurable = "min_samples = 500\nmin_agreement = 0.95\nmax_p99_latency_ratio = 1.5\n\
                      max_error_rate_delta = 0.05\n";
    let cases = [
        ("promote", measurable.to_owned(), 0, "verdict: PROMOTE"),
        // Ground truth is not wired: accuracy is not_enough_data, nothing fails.
        (
            "hold",
            format!("{measurable}accuracy_margin = 0.02\n"),
            3,
            "verdict: HOLD",
        ),
        (
            "reject",
            "min_samples = 500\nmax_p99_latency_ratio = 1.1\n".to_owned(),
            4,
            "verdict: REJECT",
        ),
    ];
    for (name, criteria, code, line) in cases {
        let out = verdict(&from, &criteria_file(name, &criteria), false);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(code), "{name}: {stdout}{stderr}");
        assert!(stdout.trim_end().ends_with(line), "{name}: {stdout}");
    }

    let hold = criteria_file(
        "hold-json",
        &format!("{measurable}accuracy_margin = 0.02\n"),
    );
    let out = verdict(&from, &hold, true);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["decision"], "HOLD");
    let statuses: Vec<(&str, &str)> = json["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["criterion"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("min_samples", "pass"),
            ("min_agreement", "pass"),
            ("accuracy_margin", "not_enough_data"),
            ("max_p99_latency_ratio", "pass"),
            ("max_error_rate_delta", "pass"),
        ]
    );
}

#[test]
fn a_bad_criteria_file_exits_2_with_line_and_key() {
    let from = format!("http://{}", serve_summary());
    let path = criteria_file("bad", "min_samples = 10\nmax_p99_ratio = 1.5\n");
    let out = verdict(&from, &path, false);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("{}:2:1: `max_p99_ratio`", path.display())),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_daemon_exits_1_and_names_the_url() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let from = format!("http://127.0.0.1:{port}");
    let path = criteria_file("unreachable", "min_samples = 10\n");
    let out = verdict(&from, &path, false);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(&from) && stderr.contains("--from"),
        "{stderr}"
    );
}

#[test]
fn the_token_file_is_sent_as_a_bearer_token() {
    use std::os::unix::fs::PermissionsExt;
    const TOKEN: &str = "verdict-token-0123456789";
    let from = format!("http://{}", serve_summary_to(Some(TOKEN)));
    let criteria = criteria_file("token", "min_samples = 10\n");
    let out = verdict(&from, &criteria, false);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("401") && stderr.contains("--token-file"),
        "{stderr}"
    );

    let token = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("verdict-admin.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = verdict_with(
        &from,
        &criteria,
        false,
        &["--token-file", token.to_str().unwrap()],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "PROMOTE: {stdout}{stderr}");

    // A token file others can read is refused before anything is sent.
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = verdict_with(
        &from,
        &criteria,
        false,
        &["--token-file", token.to_str().unwrap()],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
}
