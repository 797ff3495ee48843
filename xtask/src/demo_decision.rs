//! The decision half of `cargo xtask demo`: the demo's success criteria, ground truth posted to
//! the running daemon the way a labelling pipeline would (some at once, some late, some never,
//! and a few for ids that were never served), and the printout of both models' quality and the
//! verdict.
//!
//! The traffic driver cycles through the 321 held-out wines, so most wines are sent several
//! times under different request ids. The models are deterministic, so repeats are perfectly
//! correlated: labelling them all would make the intervals look tighter than the evidence is.
//! Only the first request of each wine is labelled.

use anyhow::Context;
use serde_json::Value;
use shadowtap_test_support::http;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The demo's criteria: what a team would ask before replacing v1 by v2.
pub const CRITERIA: &str = "\
# cargo xtask demo: what v2 must show before it replaces v1.
min_samples = 300              # comparisons before anything is judged
min_labeled = 250              # labelled rows before accuracy and F1 are judged
min_agreement = 0.90           # v2 must give v1's class on at least 90 % of requests
accuracy_margin = 0.02         # v2 at most 2 points less accurate than v1 (95 % interval)
f1_margin = 0.05               # v2's macro-F1 at most 5 points below v1's
max_p99_latency_ratio = 3.0    # v2's p99 latency at most 3x v1's
max_error_rate_delta = 0.01    # v2 at most 1 point more errors than v1
max_cpu_ratio = 2.0            # v2 at most twice v1's CPU time per request
max_rss_ratio = 2.0            # v2 at most twice v1's resident memory
";

/// How the labels were sent.
#[derive(Debug, Default)]
pub struct Posted {
    /// Labels sent right after the traffic.
    pub at_once: usize,
    /// Labels sent two seconds later.
    pub late: usize,
    /// Labelled requests whose label was never sent.
    pub withheld: usize,
    /// Requests left unlabelled because their wine was already labelled once.
    pub repeats: usize,
    /// Labels sent for ids that were never served.
    pub strays: usize,
}

/// Posts the ground truth in `labels_file` (one line per request, as `demo-traffic
/// --labels-out` writes it) to the daemon's `POST /api/labels` with its admin `token`: the
/// first request of each wine only; of those, one in ten never, six in ten at once, the rest
/// two seconds later; then three labels for ids that were never served.
pub fn post_labels(admin: SocketAddr, token: &str, labels_file: &Path) -> anyhow::Result<Posted> {
    let text = std::fs::read_to_string(labels_file)
        .with_context(|| format!("cannot read {}", labels_file.display()))?;
    let mut seen = HashSet::new();
    let mut posted = Posted::default();
    let (mut at_once, mut late) = (String::new(), String::new());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).context("demo-traffic wrote a bad label line")?;
        if !seen.insert(v["row"].to_string()) {
            posted.repeats += 1;
            continue;
        }
        match seen.len() % 10 {
            0 => posted.withheld += 1,
            1..=6 => {
                at_once.push_str(line);
                at_once.push('\n');
                posted.at_once += 1;
            }
            _ => {
                late.push_str(line);
                late.push('\n');
                posted.late += 1;
            }
        }
    }
    post(admin, token, &at_once)?;
    std::thread::sleep(Duration::from_secs(2));
    for i in 0..3 {
        late.push_str(&format!("{{\"id\": \"never-served-{i}\", \"label\": 5}}\n"));
    }
    posted.strays = 3;
    post(admin, token, &late)?;
    Ok(posted)
}

/// Writes a fresh random admin token to `path` (mode 0600, as shadowd requires of
/// `--admin-token-file`) and returns it.
pub fn write_token(path: &Path) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut random = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .context("cannot read /dev/urandom")?;
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| writeln!(f, "{token}"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}

fn post(admin: SocketAddr, token: &str, body: &str) -> anyhow::Result<()> {
    let (status, answer) = http::post_authorized(
        admin,
        "/api/labels",
        "application/x-ndjson",
        body.as_bytes(),
        Some(token),
    )
    .with_context(|| format!("POST http://{admin}/api/labels"))?;
    anyhow::ensure!(
        status == 200,
        "POST /api/labels answered {status}: {answer}"
    );
    Ok(())
}

/// Waits (bounded) until `/api/summary` shows every label just posted joined (and the first
/// verdict round has run, so `measurements` is there), and returns it.
pub fn settled_summary(admin: SocketAddr, joined: usize) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = http::get(admin, "/api/summary").context("GET /api/summary")?;
        let s: Value = serde_json::from_str(&body).context("/api/summary is not JSON")?;
        let requests = s["labels"]["counters"]["join"]["joined"]
            .as_u64()
            .unwrap_or(0);
        let settled = requests as usize >= joined && !s["measurements"].is_null();
        if settled || Instant::now() >= deadline {
            return Ok(s);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn estimate(e: &Value) -> String {
    match (
        e["value"].as_f64(),
        e["interval"]["lo"].as_f64(),
        e["interval"]["hi"].as_f64(),
    ) {
        (Some(v), Some(lo), Some(hi)) => format!("{v:.3}  (95% CI {lo:.3} – {hi:.3})"),
        (Some(v), _, _) => format!("{v:.3}"),
        _ => "n/a".into(),
    }
}

/// Prints ground truth, quality of both models and the paired tests.
pub fn print_quality(s: &Value, posted: &Posted) {
    let c = &s["labels"]["counters"];
    let join = &c["join"];
    println!();
    println!("ground truth (POST /api/labels)");
    println!(
        "  labels sent: {} at once, {} two seconds later, {} withheld, {} for unknown ids",
        posted.at_once, posted.late, posted.withheld, posted.strays
    );
    println!(
        "  ({} repeat requests of an already-labelled wine left unlabelled: repeats of a \
         deterministic model add no evidence)",
        posted.repeats
    );
    println!(
        "  joined {}   unknown ids {}   late {}   still waiting {} (the unlabelled repeats, until \
         ground_truth.max_wait_ms)",
        join["joined"], join["unknown_labels"], join["late_labels"], s["labels"]["waiting"]
    );
    let gt = &s["ground_truth"];
    println!(
        "  {:<34} {:>10}",
        "labelled requests", gt["labeled_requests"]
    );
    for model in ["production", "shadow"] {
        let q = &gt[model]["classification"];
        println!(
            "  {:<34} {}",
            format!("accuracy ({model})"),
            estimate(&q["accuracy"])
        );
        println!(
            "  {:<34} {}",
            format!("macro-F1 ({model})"),
            estimate(&q["macro_f1"])
        );
    }
    println!(
        "  {:<34} {}",
        "accuracy shadow − production",
        estimate(&gt["accuracy_difference"])
    );
    let m = &gt["mcnemar"];
    if let (Some(b), Some(c), Some(p)) = (m["b"].as_u64(), m["c"].as_u64(), m["p_mid"].as_f64()) {
        println!(
            "  {:<34} only v1 right {b}, only v2 right {c}: p = {p:.3}",
            "McNemar (paired, mid-p)"
        );
    }
    if let Some(psi) = s["shadow_vs_production"]["psi"].as_f64() {
        println!("  {:<34} {psi:.3}", "score shift (PSI)");
    }
    let r = &s["resources"];
    for model in ["production", "shadow"] {
        if let (Some(cpu), Some(rss)) = (
            r[model]["cpu_seconds"].as_f64(),
            r[model]["rss_bytes"].as_f64(),
        ) {
            println!(
                "  {:<34} {cpu:.2} s CPU, {:.1} MiB resident",
                format!("model server ({model})"),
                rss / (1 << 20) as f64
            );
        }
    }
}

/// Runs `shadowd verdict` against the daemon with the demo's criteria, prints its table and
/// returns its exit code.
pub fn run_verdict(shadowd: &Path, admin: SocketAddr, criteria: &Path) -> anyhow::Result<i32> {
    println!();
    println!(
        "shadowd verdict --from http://{admin} --criteria {}",
        criteria.display()
    );
    let out = Command::new(shadowd)
        .args([
            "verdict",
            "--from",
            &format!("http://{admin}"),
            "--criteria",
        ])
        .arg(criteria)
        .output()
        .context("cannot run shadowd verdict")?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("  {line}");
    }
    let code = out.status.code().unwrap_or(-1);
    let meaning = match code {
        0 => "PROMOTE: every criterion passed",
        3 => "HOLD: nothing failed, but not everything could be shown yet",
        4 => "REJECT: a criterion failed with 95 % confidence",
        _ => "error",
    };
    println!("  exit code {code} ({meaning})");
    if !out.status.success() && ![3, 4].contains(&code) {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_token_is_fresh_random_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        std::fs::write(&path, "an old token\n").unwrap();
        let first = write_token(&path).unwrap();
        let second = write_token(&path).unwrap();
        assert_ne!(first, second);
        assert_eq!(second.len(), 48);
        assert!(second.bytes().all(|b| b.is_ascii_hexdigit()), "{second}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{second}\n")
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
