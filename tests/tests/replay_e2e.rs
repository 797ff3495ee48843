//! `shadowd replay` end to end: the same traffic is mirrored live by `shadowd run` and
//! recorded at the same time (by `shadowd record`, or by real `tcpdump`), all on `lo` of a
//! throw-away network namespace, with a production model server (8080) and a fake shadow
//! (8081) serving KServe v2 JSON. Replaying the recording against the same shadow must count
//! exactly what `run` counted live: exchanges seen, mirrored, skipped, compared, agreement and
//! discrepancies, and exactly what the test's own plan expects. Without a terminal the
//! progress is plain lines (no escape sequences); ground truth comes from a `--labels` file;
//! `--state` writes a file `shadowd verdict --state` judges, and with criteria the exit code is
//! the verdict's. Bad input fails with a clear message.
//!
//! Needs root; skipped (with a message) otherwise.

use serde_json::Value;
use shadow_core::segment::Direction;
use shadow_core::vocabulary::{DiscrepancyKind, MirrorResult, Outcome};
use shadowtap_tests::admin::{self, accounted, discrepancies, exchanges, mirrored, sum_of};
use shadowtap_tests::capture::read_pcap;
use shadowtap_tests::model::{ModelServer, Req, Role, disagrees, label};
use shadowtap_tests::netns::NetNs;
use shadowtap_tests::require_root;
use shadowtap_tests::shadowd::{self, Daemon, Finished};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const PROD: SocketAddr = local(8080);
const SHADOW: SocketAddr = local(8081);
const ADMIN: SocketAddr = local(9464);
/// The pause between the two halves of the traffic: a replay at the recorded pace lasts at
/// least this long, long enough for a plain progress line (one every 2 s).
const PAUSE: Duration = Duration::from_secs(3);
/// Bound on one `shadowd replay`.
const REPLAY_LIMIT: Duration = Duration::from_secs(120);

const fn local(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

/// Who records the traffic while `run` mirrors it.
#[derive(Clone, Copy, Debug)]
enum Recorder {
    Shadowd,
    Tcpdump,
}

/// The plan: four keep-alive connections of 8 requests (one pipelined, one chunked, one with
/// 100 kB bodies), ids 0..31, sent in two halves `PAUSE` apart.
fn halves() -> [Vec<(Vec<Req>, bool)>; 2] {
    let mut ids = 0u64..;
    let mut next = || ids.next().expect("ids");
    let mut half = || {
        vec![
            ((0..4).map(|_| Req::post(next())).collect(), false),
            ((0..4).map(|_| Req::post(next())).collect(), true),
            ((0..4).map(|_| Req::post(next()).chunked()).collect(), false),
            (
                (0..4).map(|_| Req::post(next()).sized(100_000)).collect(),
                false,
            ),
        ]
    };
    [half(), half()]
}

/// What `run` counted live.
#[derive(Debug, PartialEq)]
struct Counts {
    seen: u64,
    complete: u64,
    mirrored_ok: u64,
    mirrored: u64,
    skipped: u64,
    compared: u64,
    agreed: u64,
    samples: u64,
    label_discrepancies: u64,
}

/// The traffic mirrored live and recorded: the live counts and the recording.
struct Recorded {
    ns: NetNs,
    _shadow: ModelServer,
    live: Counts,
    pcap: PathBuf,
    _dir: TempDir,
}

/// Starts production, the shadow, `shadowd run` and the recorder in a fresh namespace, sends
/// the plan, and returns what `run` counted once every request is accounted for, and the
/// recording once it is complete.
fn mirror_and_record(tag: &str, recorder: Recorder) -> Recorded {
    let ns = NetNs::new(tag).expect("netns");
    let _prod = ModelServer::start(
        ns.run(|| TcpListener::bind(PROD)).unwrap(),
        Role::Production,
    )
    .unwrap();
    let shadow =
        ModelServer::start(ns.run(|| TcpListener::bind(SHADOW)).unwrap(), Role::Shadow).unwrap();
    let mut run = admin::run_daemon(&ns, PROD, SHADOW, ADMIN, &["--preset", "kserve-v2"]);
    let dir = tempfile::tempdir().expect("temporary directory");
    let pcap = dir.path().join("traffic.pcap");
    let port = PROD.port().to_string();
    let mut recording = match recorder {
        Recorder::Shadowd => {
            let args = ["record", "-i", "lo", "-p", &port, "-o", arg(&pcap)];
            let mut d = Daemon::spawn(Some(&ns), &args).expect("spawn shadowd record");
            d.wait_for_output("tapping");
            d
        }
        Recorder::Tcpdump => {
            let filter = format!("tcp port {port}");
            let args = ["-i", "lo", "-U", "-s", "0", "-w", arg(&pcap), &filter];
            let mut d = Daemon::spawn_program(Path::new("tcpdump"), Some(&ns), &args)
                .expect("spawn tcpdump");
            d.wait_for_output("listening on");
            d
        }
    };

    let plan = halves();
    let mut n = 0;
    for (i, half) in plan.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(PAUSE);
        }
        n += drive(&ns, half);
    }
    let connections = plan.iter().map(Vec::len).sum::<usize>();
    let text = admin::wait_metrics(&ns, &mut run, ADMIN, "every request accounted", |t| {
        accounted(t) >= n as f64
    });
    let (status, summary) = admin::get(&ns, ADMIN, "/api/summary").unwrap();
    assert_eq!(status, 200);
    let summary: Value = serde_json::from_str(&summary).unwrap();
    let live = Counts {
        seen: sum_of(&text, "shadowtap_exchanges_total") as u64,
        complete: exchanges(&text, Outcome::Complete) as u64,
        mirrored_ok: mirrored(&text, MirrorResult::Ok) as u64,
        mirrored: sum_of(&text, "shadowtap_mirrored_requests_total") as u64,
        skipped: sum_of(&text, "shadowtap_mirror_skipped_total") as u64,
        compared: summary["compared"].as_u64().unwrap(),
        agreed: summary["agreement"]["request"]["agreed"].as_u64().unwrap(),
        samples: summary["agreement"]["request"]["samples"].as_u64().unwrap(),
        label_discrepancies: discrepancies(&text, DiscrepancyKind::Label) as u64,
    };
    // The plan's own expectations: the live run is right, so matching it means matching them.
    let disagreeing = (0..n as u64).filter(|&id| disagrees(id)).count() as u64;
    let n = n as u64;
    assert_eq!(
        live,
        Counts {
            seen: n,
            complete: n,
            mirrored_ok: n,
            mirrored: n,
            skipped: 0,
            compared: n,
            agreed: n - disagreeing,
            samples: n,
            label_discrepancies: disagreeing,
        },
        "{text}"
    );

    // The recording is complete once both sides' FINs of every connection are in it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let fins = |p: &Path| {
        read_pcap(PROD.port(), p)
            .iter()
            .filter(|s| s.flags.fin() && s.dir == Direction::Response)
            .count()
    };
    while fins(&pcap) < connections && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        fins(&pcap),
        connections,
        "every connection closed on record"
    );
    let status = recording.stop(Duration::from_secs(30)).unwrap();
    assert!(
        status.success() || matches!(recorder, Recorder::Tcpdump),
        "{}",
        recording.output()
    );
    assert!(
        run.stop(Duration::from_secs(30)).unwrap().success(),
        "{}",
        run.output()
    );
    Recorded {
        ns,
        _shadow: shadow,
        live,
        pcap,
        _dir: dir,
    }
}

/// Sends every connection's requests concurrently (each closes when done); returns how many
/// production answered correctly.
fn drive(ns: &NetNs, conns: &[(Vec<Req>, bool)]) -> usize {
    let streams: Vec<TcpStream> = conns
        .iter()
        .map(|_| ns.run(|| TcpStream::connect(PROD)).unwrap())
        .collect();
    std::thread::scope(|scope| {
        let clients: Vec<_> = streams
            .into_iter()
            .zip(conns)
            .map(|(stream, (reqs, pipelined))| {
                scope.spawn(move || shadowtap_tests::model::send(stream, reqs, *pipelined))
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().unwrap().expect("production answers correctly"))
            .sum()
    })
}

/// `shadowd replay` of the recording against the shadow, inside the namespace.
fn replay(r: &Recorded, extra: &[&str]) -> Finished {
    let shadow = format!("http://{SHADOW}");
    let port = PROD.port().to_string();
    let mut args = vec![
        "replay",
        "--pcap",
        arg(&r.pcap),
        "--port",
        &port,
        "--shadow",
        &shadow,
        "--preset",
        "kserve-v2",
    ];
    args.extend_from_slice(extra);
    shadowd::run_to_end(Some(&r.ns), &args, REPLAY_LIMIT).expect("shadowd replay")
}

/// The counts of a `replay --json` summary, in `run`'s terms.
fn replayed_counts(out: &Finished) -> Counts {
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let s: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!("--json prints one JSON object ({e}):\n{}", out.stdout);
    });
    let total = |v: &Value| {
        v.as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>()
    };
    let evaluation = &s["run"]["evaluation"];
    Counts {
        seen: total(&s["exchanges"]),
        complete: s["exchanges"]["complete"].as_u64().unwrap_or(0),
        mirrored_ok: s["mirrored"]["ok"].as_u64().unwrap_or(0),
        mirrored: total(&s["mirrored"]),
        skipped: total(&s["skipped"]),
        compared: evaluation["compared"].as_u64().unwrap(),
        agreed: evaluation["agreement"]["request"]["agreed"]
            .as_u64()
            .unwrap(),
        samples: evaluation["agreement"]["request"]["samples"]
            .as_u64()
            .unwrap(),
        label_discrepancies: evaluation["discrepancies"]["label"].as_u64().unwrap_or(0),
    }
}

/// A `shadowd record` recording replayed at full speed counts what `run` counted live; at the
/// recorded pace too, with plain progress lines on a non-terminal stderr; `--state` and
/// criteria give the verdict's exit code, and `shadowd verdict --state` agrees. A port without
/// traffic and an unreachable shadow are clear errors.
#[test]
fn replay_of_a_shadowd_recording_counts_what_run_counted_live() {
    if !require_root("replay_of_a_shadowd_recording_counts_what_run_counted_live") {
        return;
    }
    let r = mirror_and_record("rpl", Recorder::Shadowd);
    let max = replay(&r, &["--speed", "max", "--json"]);
    assert_eq!(replayed_counts(&max), r.live, "{}", max.stdout);

    // Ground truth from a JSON-lines file (as POST /api/labels takes it), joined by the
    // request body's `/id`: production is always right, the shadow misses the multiples of 7.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ids.toml");
    std::fs::write(&config, "[ground_truth]\nid_pointer = \"/id\"\n").unwrap();
    let labels = dir.path().join("truth.jsonl");
    let lines: String = (0..r.live.seen)
        .map(|id| format!("{{\"id\": \"{id}\", \"label\": {}}}\n", label(id)))
        .collect();
    std::fs::write(&labels, lines).unwrap();
    let labeled = replay(
        &r,
        &[
            "--speed",
            "max",
            "--json",
            "--config",
            arg(&config),
            "--labels",
            arg(&labels),
        ],
    );
    assert_eq!(replayed_counts(&labeled), r.live, "{}", labeled.stdout);
    let s: Value = serde_json::from_str(&labeled.stdout).unwrap();
    let truth = &s["run"]["evaluation"]["ground_truth"];
    assert_eq!(truth["labeled_requests"], r.live.seen, "{truth:#}");
    let accuracy = |model: &str| {
        truth[model]["classification"]["accuracy"]["value"]
            .as_f64()
            .unwrap_or_else(|| panic!("{model} accuracy in {truth:#}"))
    };
    assert_eq!(accuracy("production"), 1.0);
    assert_eq!(
        accuracy("shadow"),
        r.live.agreed as f64 / r.live.seen as f64,
        "the shadow is right exactly where it agrees"
    );

    // At the recorded pace: it takes at least the pause in the traffic; progress is plain
    // lines (stderr is a file here), with no escape sequence.
    let state = dir.path().join("state.json");
    let criteria = dir.path().join("criteria.toml");
    // 28/32 agree: a floor of 0.99 is failed for sure (REJECT, exit 4).
    std::fs::write(&criteria, "min_agreement = 0.99\n").unwrap();
    let started = Instant::now();
    let paced = replay(
        &r,
        &[
            "--speed",
            "1x",
            "--state",
            arg(&state),
            "--criteria",
            arg(&criteria),
        ],
    );
    assert!(started.elapsed() >= PAUSE, "1x keeps the recorded pacing");
    assert_eq!(
        paced.code,
        Some(4),
        "REJECT:\n{}\n{}",
        paced.stdout,
        paced.stderr
    );
    assert!(!paced.stderr.contains('\u{1b}'), "{}", paced.stderr);
    let progress_lines = paced
        .stderr
        .lines()
        .filter(|l| l.starts_with("replay: ") && l.contains("exchanges read"))
        .count();
    assert!(progress_lines >= 1, "{}", paced.stderr);
    for needle in [
        format!("{:<34} {:>10}", "requests seen in the capture", r.live.seen),
        format!("{:<34} {:>10}", "compared", r.live.compared),
        "REJECT".to_string(),
    ] {
        assert!(
            paced.stdout.contains(&needle),
            "no `{needle}` in\n{}",
            paced.stdout
        );
    }
    let verdict = shadowd::run_to_end(
        None,
        &[
            "verdict",
            "--state",
            arg(&state),
            "--criteria",
            arg(&criteria),
        ],
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(
        verdict.code,
        Some(4),
        "{}\n{}",
        verdict.stdout,
        verdict.stderr
    );

    // The wrong port: exit 2, naming the port that has traffic.
    let out = shadowd::run_to_end(
        Some(&r.ns),
        &[
            "replay",
            "--pcap",
            arg(&r.pcap),
            "--port",
            "9999",
            "--shadow",
            &format!("http://{SHADOW}"),
        ],
        REPLAY_LIMIT,
    )
    .unwrap();
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("no TCP traffic on port 9999") && out.stderr.contains("8080 ("),
        "{}",
        out.stderr
    );
    // Nothing listens on the shadow's address: exit 1 before anything is replayed.
    let out = shadowd::run_to_end(
        Some(&r.ns),
        &[
            "replay",
            "--pcap",
            arg(&r.pcap),
            "--port",
            "8080",
            "--shadow",
            "http://127.0.0.1:8099",
        ],
        REPLAY_LIMIT,
    )
    .unwrap();
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("cannot reach the shadow at http://127.0.0.1:8099/"),
        "{}",
        out.stderr
    );
}

/// A recording made by real tcpdump counts what `run` counted live too.
#[test]
fn replay_of_a_tcpdump_capture_counts_what_run_counted_live() {
    if !require_root("replay_of_a_tcpdump_capture_counts_what_run_counted_live") {
        return;
    }
    let r = mirror_and_record("rpt", Recorder::Tcpdump);
    let max = replay(&r, &["--speed", "max", "--json"]);
    assert_eq!(replayed_counts(&max), r.live, "{}", max.stdout);
}
