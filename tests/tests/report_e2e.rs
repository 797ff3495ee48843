//! `shadowd report` end to end, as a user runs it: the real `shadowd run` taps `lo` of a
//! throw-away namespace in front of a production classifier (right on 80 %) and a shadow (right
//! on 95 %, never wrong where production is: see [`shadowtap_tests::classifier`]), with success
//! criteria, a discrepancy log and a state file; 200 requests are sent and all their labels
//! posted, so the verdict is PROMOTE, the confusion matrix and ground truth are filled, and the
//! 50 requests where exactly one model is wrong are label discrepancies in the log.
//!
//! Then `shadowd report --from` writes the page, and headless Chromium (Debian `chromium`,
//! installed by `cargo xtask bootstrap`), run inside the namespace (no route anywhere but its
//! own loopback), renders it: a screenshot, the DOM it built (verdict, every chart's `<svg>`,
//! the discrepancy table) and its log (no console error, no failed load). The HTML itself is
//! parsed: no element or attribute may load anything. Finally the daemon stops (saving its
//! state) and `shadowd report --state` reports on the state file alone.
//!
//! Set `REPORT_E2E_KEEP=DIR` to keep the report and the screenshot in DIR.
//!
//! Needs root; skipped (with a message) otherwise.

use quick_xml::events::Event;
use shadow_daemon::commands::report::html::CHART_IDS;
use shadow_daemon::commands::report::input::TOP_DISCREPANCIES;
use shadowtap_tests::admin;
use shadowtap_tests::classifier::{Classifier, ClassifierServer, drive, label_lines};
use shadowtap_tests::netns::NetNs;
use shadowtap_tests::require_root;
use shadowtap_tests::shadowd;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const PROD: SocketAddr = local(8080);
const SHADOW: SocketAddr = local(8081);
const ADMIN: SocketAddr = local(9464);
const REQUESTS: u64 = 200;
/// Inputs where exactly one model is wrong: production on the 40 multiples of 5, the shadow on
/// the 10 inputs ≡ 1 (mod 20).
const DISAGREEMENTS: u64 = 50;
/// With every label posted the shadow is promoted (see decision_e2e.rs for the arithmetic).
const CRITERIA: &str = "min_samples = 200\nmin_labeled = 200\naccuracy_margin = 0.02\n\
                        max_error_rate_delta = 0.05\n";
/// Bound on one `shadowd report` or Chromium run.
const LIMIT: Duration = Duration::from_secs(120);

const fn local(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

/// Elements of `page` parsed as XML (the report is written XML-compatible): name and
/// attributes; panics unless it is well-formed.
fn elements(page: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut reader = quick_xml::Reader::from_str(page);
    reader.config_mut().check_end_names = true;
    let mut out = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => return out,
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.expect("well-formed attribute");
                        (
                            String::from_utf8_lossy(a.key.as_ref()).to_ascii_lowercase(),
                            String::from_utf8_lossy(&a.value).into_owned(),
                        )
                    })
                    .collect();
                out.push((
                    String::from_utf8_lossy(e.name().as_ref()).into_owned(),
                    attrs,
                ));
            }
            Ok(_) => {}
            Err(e) => panic!(
                "the report is not well-formed at {}: {e}",
                reader.buffer_position()
            ),
        }
    }
}

/// Asserts the page loads nothing: no script, image, frame, link or embedded object, and no
/// attribute holding an http(s) or protocol-relative URL.
fn assert_self_contained(page: &str) {
    let elements = elements(page);
    assert!(
        elements.len() > 100,
        "a real page: {} elements",
        elements.len()
    );
    for (name, attrs) in &elements {
        assert!(
            ![
                "script", "img", "link", "iframe", "object", "embed", "audio", "video", "source"
            ]
            .contains(&name.as_str()),
            "<{name}> in the report"
        );
        for (key, value) in attrs {
            let v = value.trim().to_ascii_lowercase();
            assert!(
                !(v.starts_with("http://") || v.starts_with("https://") || v.starts_with("//")),
                "<{name} {key}=\"{value}\"> refers to the network"
            );
            assert!(
                !["src", "href", "xlink:href", "action", "poster", "srcset"]
                    .contains(&key.as_str()),
                "<{name} {key}=...> loads something"
            );
            assert!(!v.contains("url("), "<{name} {key}> has a url()");
        }
    }
    assert!(
        !page.contains("@import") && !page.contains("url("),
        "CSS loads nothing"
    );
}

/// Runs Chromium headless in `ns` on `page` with `mode` (`--screenshot=...` or
/// `--dump-dom`), logging to stderr; panics unless it exits 0 within [`LIMIT`].
fn chromium(ns: &NetNs, profile: &Path, page: &Path, mode: &str) -> Output {
    let url = format!("file://{}", page.display());
    let out = ns
        .run(|| {
            Command::new("timeout")
                .arg(LIMIT.as_secs().to_string())
                .args([
                    "chromium",
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-extensions",
                    "--enable-logging=stderr",
                    "--v=0",
                    "--window-size=1280,2000",
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .arg(mode)
                .arg(&url)
                .output()
        })
        .unwrap_or_else(|e| {
            panic!("cannot run chromium ({e}): install it with `cargo xtask bootstrap`")
        });
    assert!(
        out.status.success(),
        "chromium {mode} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Panics on a console error or a failed load in Chromium's log.
fn assert_no_console_error(stderr: &[u8]) {
    let log = String::from_utf8_lossy(stderr);
    for needle in [
        "Uncaught",
        "ERROR:CONSOLE",
        "CONSOLE(",
        "net::ERR_",
        "Failed to load resource",
    ] {
        assert!(!log.contains(needle), "chromium logged `{needle}`:\n{log}");
    }
}

/// Width and height from a PNG's IHDR chunk; panics unless `bytes` is a PNG.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(
        bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG"
    );
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

/// Waits (bounded) until the discrepancy log holds `n` lines.
fn wait_log_lines(path: &Path, n: usize) {
    let deadline = Instant::now() + admin::WAIT;
    let lines = || {
        std::fs::read_to_string(path)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    while lines() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(lines(), n, "discrepancy log lines");
}

#[test]
fn the_report_renders_offline_in_chromium_with_verdict_charts_and_discrepancies() {
    if !require_root("the_report_renders_offline_in_chromium_with_verdict_charts_and_discrepancies")
    {
        return;
    }
    let ns = NetNs::new("rpt").expect("netns");
    let listen = |addr| ns.run(|| TcpListener::bind(addr)).expect("bind");
    let _prod = ClassifierServer::start(listen(PROD), Classifier::RIGHT_80).expect("production");
    let shadow = ClassifierServer::start(listen(SHADOW), Classifier::RIGHT_95).expect("shadow");
    let dir = tempfile::tempdir().expect("temporary directory");
    let (token_file, token) = admin::token_file(dir.path());
    let criteria = dir.path().join("criteria.toml");
    std::fs::write(&criteria, CRITERIA).unwrap();
    let log = dir.path().join("discrepancies.jsonl");
    let state = dir.path().join("state.json");
    let mut daemon = admin::run_daemon(
        &ns,
        PROD,
        SHADOW,
        ADMIN,
        &[
            "--preset",
            "kserve-v2",
            "--admin-token-file",
            arg(&token_file),
            "--criteria",
            arg(&criteria),
            "--discrepancy-log",
            arg(&log),
            "--state",
            arg(&state),
        ],
    );

    assert_eq!(
        drive(&ns, PROD, 0..REQUESTS, 4, Classifier::RIGHT_80),
        REQUESTS as usize
    );
    admin::wait_summary(&ns, &mut daemon, ADMIN, "every request compared", |s| {
        s["compared"].as_u64() >= Some(REQUESTS)
    });
    assert_eq!(shadow.served(), REQUESTS as usize);
    let posted = admin::post_labels(&ns, &daemon, ADMIN, &token, &label_lines(0..REQUESTS));
    assert_eq!(posted["joined"], REQUESTS, "{posted}");
    let summary = admin::wait_summary(&ns, &mut daemon, ADMIN, "the labels judged", |v| {
        v["verdict"]["decision"] == "PROMOTE"
    });
    assert_eq!(
        summary["discrepancies"]["label"], DISAGREEMENTS,
        "{summary:#}"
    );
    wait_log_lines(&log, DISAGREEMENTS as usize);

    // The report of the running daemon.
    let page = dir.path().join("report.html");
    let from = format!("http://{ADMIN}");
    let out = shadowd::run_to_end(
        Some(&ns),
        &[
            "report",
            "--from",
            &from,
            "--discrepancy-log",
            arg(&log),
            "--out",
            arg(&page),
        ],
        LIMIT,
    )
    .expect("shadowd report");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.trim(), arg(&page), "prints the report's path");
    let html = std::fs::read_to_string(&page).expect("the report was written");
    assert_self_contained(&html);
    assert!(html.contains("id=\"decision\">PROMOTE<"), "the verdict");
    assert!(html.contains("accuracy_margin"), "the criteria table");

    // Chromium, inside the namespace: a screenshot and the DOM it built.
    let profile = dir.path().join("chromium-profile");
    let png = dir.path().join("report.png");
    let shot = chromium(
        &ns,
        &profile,
        &page,
        &format!("--screenshot={}", png.display()),
    );
    assert_no_console_error(&shot.stderr);
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert_eq!(png_size(&bytes), (1280, 2000));
    // A blank 1280×2000 page compresses to a few KB; text, tables and charts take far more.
    assert!(
        bytes.len() > 50_000,
        "a near-empty screenshot: {} bytes",
        bytes.len()
    );
    let dump = chromium(&ns, &profile, &page, "--dump-dom");
    assert_no_console_error(&dump.stderr);
    let dom = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dom.contains("id=\"decision\">PROMOTE</span>"),
        "verdict in the DOM"
    );
    for id in CHART_IDS {
        assert!(
            dom.contains(&format!("<svg class=\"chart\" data-chart=\"{id}\"")),
            "no {id} chart in the DOM"
        );
    }
    assert!(
        dom.contains("id=\"discrepancy-table\""),
        "the discrepancy table"
    );
    assert_eq!(
        dom.matches("<tr class=\"discrepancy\">").count(),
        TOP_DISCREPANCIES,
        "the top discrepancies of the {DISAGREEMENTS} logged"
    );
    assert!(dom.contains("labels disagree"));
    // The latency CDF and the confusion matrix have data (a line; the classes 0, 1 and 2).
    let cdf = dom
        .split("data-chart=\"latency-cdf\"")
        .nth(1)
        .and_then(|rest| rest.split("</svg>").next())
        .expect("the CDF chart");
    assert!(cdf.matches("<polyline").count() >= 2, "both models' CDFs");
    assert!(dom.contains("<table class=\"confusion\">"));
    if let Some(keep) = std::env::var_os("REPORT_E2E_KEEP") {
        let keep = Path::new(&keep);
        std::fs::create_dir_all(keep).unwrap();
        std::fs::copy(&page, keep.join("report.html")).unwrap();
        std::fs::copy(&png, keep.join("report.png")).unwrap();
    }

    // The state file alone, after the daemon stopped (it saves the state at stop).
    daemon.stop(Duration::from_secs(10)).expect("stop shadowd");
    let state_page = dir.path().join("state.html");
    let out = shadowd::run_to_end(
        None,
        &[
            "report",
            "--state",
            arg(&state),
            "--criteria",
            arg(&criteria),
            "--out",
            arg(&state_page),
        ],
        LIMIT,
    )
    .expect("shadowd report --state");
    assert_eq!(out.code, Some(0), "{out:?}");
    let html = std::fs::read_to_string(&state_page).unwrap();
    assert_self_contained(&html);
    assert!(
        html.contains("id=\"decision\">PROMOTE<"),
        "judged from the state"
    );
    assert!(html.contains("a state file holds no capture counters"));
    assert!(html.contains("No discrepancy log given"));
    let cdf = html
        .split("data-chart=\"latency-cdf\"")
        .nth(1)
        .and_then(|rest| rest.split("</svg>").next())
        .expect("the CDF chart");
    assert!(
        cdf.matches("<polyline").count() >= 2,
        "CDFs from the state's histograms"
    );
    assert!(
        html.contains(&format!(">{REQUESTS}</td>")),
        "the comparisons"
    );
}
