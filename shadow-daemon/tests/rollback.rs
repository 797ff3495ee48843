//! The rollback executor end to end on loopback: a `[rollback]` config, verdicts handed to
//! `Rollback::observe_at`, a webhook receiver on 127.0.0.1:0, and the Prometheus series the
//! operator alerts on.

use shadow_core::criteria::{CriterionName, CriterionResult, Decision, Status, Verdict};
use shadow_core::rollback::RollbackResult;
use shadow_daemon::config::Config;
use shadow_daemon::rollback::{Observation, Rollback};
use shadow_daemon::sinks::metrics::Metrics;
use shadow_daemon::telemetry::RollbackHeld;
use shadowtap_test_support::accept::spawn_accept_loop;
use shadowtap_test_support::http::{Message, read_message};
use shadowtap_test_support::prom;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A webhook receiver: records every request, answers `status` after `delay`.
struct Receiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Message>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start(status: u16, delay: Duration) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("local addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let seen = received.clone();
        spawn_accept_loop(
            listener,
            stop.clone(),
            "webhook receiver",
            move |mut stream| {
                stream.set_nonblocking(false)?;
                let mut buf = Vec::new();
                if let Some(message) = read_message(&mut stream, &mut buf)? {
                    seen.lock().unwrap().push(message);
                    std::thread::sleep(delay);
                    write!(
                        stream,
                        "HTTP/1.1 {status} X\r\ncontent-length: 7\r\nconnection: close\r\n\r\nanswer!"
                    )?;
                }
                Ok(())
            },
        );
        Receiver {
            addr,
            received,
            stop,
        }
    }

    fn received(&self) -> Vec<Message> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn config(rollback: &str) -> Config {
    let text = format!(
        "[capture]\ninterface = \"lo\"\nports = [8080]\n[shadow]\nurl = \"http://127.0.0.1:8081\"\n\
         [rollback]\n{rollback}"
    );
    Config::from_toml(&text, Path::new("rollback-test.toml")).expect("valid test config")
}

fn failing_verdict() -> Verdict {
    let result = |criterion, status| CriterionResult {
        criterion,
        status,
        measured: Some(0.021),
        interval: None,
        threshold: 0.01,
        reason: "interval above the maximum".into(),
        segment: None,
    };
    Verdict {
        decision: Decision::Reject,
        criteria: vec![
            result(CriterionName::AccuracyMargin, Status::NotEnoughData),
            result(CriterionName::MaxErrorRateDelta, Status::Fail),
        ],
    }
}

fn series(metrics: &Metrics, action: &str, result: &str) -> f64 {
    prom::Metrics::parse(&metrics.render()).value(&format!(
        "shadowtap_rollback_firings_total{{action=\"{action}\",result=\"{result}\"}}"
    ))
}

fn suppressed(metrics: &Metrics) -> f64 {
    prom::Metrics::parse(&metrics.render()).value("shadowtap_rollback_suppressed_total")
}

#[tokio::test]
async fn the_webhook_receives_the_firing_once_per_cooldown() {
    let receiver = Receiver::start(200, Duration::ZERO);
    let config = config(&format!(
        "triggers = [\"max_error_rate_delta\"]\ncooldown = \"10m\"\ndry_run = false\n\
         webhook = \"http://{}/hooks/rollback\"\n",
        receiver.addr
    ));
    let metrics = Metrics::new();
    // Every series exists, zero, before the first firing.
    let text = metrics.render();
    for action in ["command", "webhook", "dry_run"] {
        for result in ["ok", "failed", "timeout"] {
            let zero = format!(
                "shadowtap_rollback_firings_total{{action=\"{action}\",result=\"{result}\"}} 0"
            );
            assert!(text.contains(&zero), "missing {zero} in\n{text}");
        }
    }
    assert!(
        text.contains("shadowtap_rollback_suppressed_total 0"),
        "{text}"
    );

    let rollback =
        Rollback::from_config(&config, Arc::new(metrics.clone())).expect("[rollback] given");
    let t0 = Instant::now();
    let minute = Duration::from_secs(60);
    let Observation::Started(first) = rollback.observe_at(&failing_verdict(), t0) else {
        panic!("the first failing verdict fires")
    };
    let done = first.finished().await;
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].result, RollbackResult::Ok, "{:?}", done[0]);
    // One verdict a minute, still failing: held back until the cooldown is over.
    for m in 1..10 {
        assert!(
            matches!(
                rollback.observe_at(&failing_verdict(), t0 + m * minute),
                Observation::Suppressed(RollbackHeld::Cooldown { .. })
            ),
            "minute {m}"
        );
    }
    assert_eq!(receiver.received().len(), 1);
    let Observation::Started(second) = rollback.observe_at(&failing_verdict(), t0 + 10 * minute)
    else {
        panic!("fires again once the cooldown is over")
    };
    second.finished().await;

    let received = receiver.received();
    assert_eq!(received.len(), 2, "once per cooldown");
    let hook = &received[0];
    assert_eq!(hook.start_line, "POST /hooks/rollback HTTP/1.1");
    assert_eq!(hook.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&hook.body).expect("JSON body");
    assert_eq!(json["event"], "shadowtap.rollback");
    assert_eq!(json["decision"], "REJECT");
    let failed: Vec<&str> = json["failed"]
        .as_array()
        .expect("failed is a list")
        .iter()
        .filter_map(|r| r["criterion"].as_str())
        .collect();
    assert_eq!(failed, ["max_error_rate_delta"], "only the failed trigger");
    assert_eq!(json["failed"][0]["measured"], 0.021);

    assert_eq!(series(&metrics, "webhook", "ok"), 2.0);
    assert_eq!(series(&metrics, "webhook", "failed"), 0.0);
    assert_eq!(series(&metrics, "dry_run", "ok"), 0.0);
    assert_eq!(suppressed(&metrics), 9.0);
}

#[tokio::test]
async fn webhook_errors_and_timeouts_are_counted_as_such() {
    let refusing = Receiver::start(503, Duration::ZERO);
    let slow = Receiver::start(200, Duration::from_secs(3));
    let metrics = Metrics::new();
    let telemetry = Arc::new(metrics.clone());
    for (receiver, timeout) in [(&refusing, "5s"), (&slow, "300ms")] {
        let config = config(&format!(
            "triggers = [\"max_error_rate_delta\"]\ndry_run = false\naction_timeout = \"{timeout}\"\n\
             webhook = \"http://{}/\"\n",
            receiver.addr
        ));
        let rollback = Rollback::from_config(&config, telemetry.clone()).unwrap();
        let Observation::Started(running) = rollback.observe(&failing_verdict()) else {
            panic!("fires")
        };
        let started = Instant::now();
        let done = running.finished().await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "bounded by the timeout"
        );
        if timeout == "5s" {
            assert_eq!(done[0].result, RollbackResult::Failed, "{:?}", done[0]);
            assert!(
                done[0].detail.contains("503") && done[0].detail.contains("answer!"),
                "{:?}",
                done[0]
            );
        } else {
            assert_eq!(done[0].result, RollbackResult::Timeout, "{:?}", done[0]);
        }
    }
    // Nobody listens: a connection error is a failure too.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = config(&format!(
        "triggers = [\"max_error_rate_delta\"]\ndry_run = false\nwebhook = \"http://{closed}/\"\n"
    ));
    let rollback = Rollback::from_config(&config, telemetry.clone()).unwrap();
    let Observation::Started(running) = rollback.observe(&failing_verdict()) else {
        panic!("fires")
    };
    let done = running.finished().await;
    assert_eq!(done[0].result, RollbackResult::Failed, "{:?}", done[0]);
    assert_eq!(series(&metrics, "webhook", "failed"), 2.0);
    assert_eq!(series(&metrics, "webhook", "timeout"), 1.0);
    assert_eq!(series(&metrics, "webhook", "ok"), 0.0);
}

/// Command and webhook together, both run for one firing; a dry run of the same config runs
/// neither but is counted.
#[tokio::test]
async fn both_actions_run_for_one_firing_and_a_dry_run_runs_none() {
    let receiver = Receiver::start(204, Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("rolled-back");
    let actions = format!(
        "triggers = [\"max_error_rate_delta\"]\ncommand = [\"/usr/bin/touch\", {:?}]\n\
         webhook = \"http://{}/\"\n",
        marker.display().to_string(),
        receiver.addr
    );
    let metrics = Metrics::new();
    let dry = Rollback::from_config(&config(&actions), Arc::new(metrics.clone())).unwrap();
    assert!(matches!(
        dry.observe(&failing_verdict()),
        Observation::DryRun(_)
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !marker.exists() && receiver.received().is_empty(),
        "dry run ran something"
    );
    assert_eq!(series(&metrics, "dry_run", "ok"), 1.0);

    let live = Rollback::from_config(
        &config(&format!("dry_run = false\n{actions}")),
        Arc::new(metrics.clone()),
    )
    .unwrap();
    let Observation::Started(running) = live.observe(&failing_verdict()) else {
        panic!("fires")
    };
    let done = running.finished().await;
    assert_eq!(done.len(), 2);
    assert!(marker.exists(), "the command ran");
    assert_eq!(receiver.received().len(), 1, "the webhook was called");
    assert_eq!(series(&metrics, "command", "ok"), 1.0);
    assert_eq!(series(&metrics, "webhook", "ok"), 1.0);
}
