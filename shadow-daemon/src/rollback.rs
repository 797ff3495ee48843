//! The rollback executor: runs `[rollback]`'s actions when the policy of
//! [`shadow_core::rollback`] fires.
//!
//! A reverse-shadow run (after a promotion: the production port serves the new model, the
//! shadow is the old one) judges its verdict with
//! [`shadow_core::rollback::evaluate_reverse_shadow`] and hands every verdict to
//! [`Rollback::observe`]. When a trigger criterion fails, at most once per cooldown and never
//! while the previous firing's actions still run, the configured actions start on the tokio
//! runtime:
//!
//! - `command`: the program (absolute path) with its arguments, **no shell**; the environment
//!   of `shadowd` plus `SHADOWTAP_DECISION` (`REJECT`) and `SHADOWTAP_FAILED` (the failed
//!   triggers, comma-separated); the firing as JSON on stdin. It runs in its own process group,
//!   killed as a whole after `action_timeout`. Its exit status and the start of its output are
//!   logged.
//! - `webhook`: the firing as JSON, POSTed to an `http://` URL; a 2xx answer within
//!   `action_timeout` is success.
//! - `dry_run = true` (the default): nothing runs; the firing and what would run are logged and
//!   counted as `action="dry_run"`.
//!
//! The firing JSON (stdin and webhook body):
//!
//! ```json
//! {"event": "shadowtap.rollback", "decision": "REJECT", "fired_at_unix_ms": 1718000000000,
//!  "failed": [{"criterion": "accuracy_margin", "status": "fail", "measured": -0.03,
//!              "interval": {"lo": -0.0488, "hi": -0.0115}, "threshold": -0.02,
//!              "reason": "interval below the threshold"}]}
//! ```
//!
//! One firing's actions run at a time; [`Rollback::wait_idle`] waits for them (at shutdown:
//! stopping the runtime kills a running command).
//!
//! Every firing, action result and suppression is reported through [`Telemetry`]
//! (`shadowtap_rollback_firings_total{action,result}`, `shadowtap_rollback_suppressed_total`).

use crate::config::{Config, RollbackCommand, RollbackSettings};
use crate::telemetry::{RollbackDone, RollbackFired, RollbackHeld, Telemetry};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Uri;
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use shadow_core::criteria::{CriterionResult, Decision, Verdict};
use shadow_core::rollback::{Firing, RollbackAction, RollbackPolicy, RollbackResult};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// Bytes of a command's stdout and of its stderr kept for the log.
const OUTPUT_KEPT: usize = 2048;
/// Bytes of a webhook's answer kept for the log.
const ANSWER_KEPT: usize = 1024;
/// How long a finished (or killed) command's output pipes may stay open (a daemonised
/// grandchild can hold them) before the output is given up.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// The rollback of a reverse-shadow run: the policy, and the actions it fires. Cheap to clone
/// (shared state).
#[derive(Clone)]
pub struct Rollback {
    inner: Arc<Inner>,
}

struct Inner {
    settings: RollbackSettings,
    policy: Mutex<RollbackPolicy>,
    /// One permit: held by a firing's actions until they have all ended.
    actions: Arc<Semaphore>,
    /// The policy's clock origin.
    origin: Instant,
    telemetry: Arc<dyn Telemetry>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for Rollback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollback")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// What [`Rollback::observe`] did with a verdict.
#[derive(Debug)]
pub enum Observation {
    /// No trigger failed.
    Quiet,
    /// A trigger failed but did not fire (counted).
    Suppressed(RollbackHeld),
    /// A trigger fired in a dry run: logged and counted, nothing run.
    DryRun(Firing),
    /// A trigger fired: the actions run in the background.
    Started(RunningActions),
}

/// The actions of one firing, running on the tokio runtime. Dropping this does not stop them.
#[derive(Debug)]
pub struct RunningActions {
    /// What fired.
    pub firing: Firing,
    task: JoinHandle<Vec<RollbackDone>>,
}

impl RunningActions {
    /// Waits until every action has ended; how each ended (already reported to telemetry).
    pub async fn finished(self) -> Vec<RollbackDone> {
        self.task.await.unwrap_or_default()
    }
}

impl Rollback {
    /// The rollback of a checked `[rollback]` table. Warns (log) when the command's program is
    /// not an executable file here: the firing would fail.
    pub fn new(settings: &RollbackSettings, telemetry: Arc<dyn Telemetry>) -> Rollback {
        if let Some(command) = &settings.command {
            let executable = std::fs::metadata(&command.program)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
            if !executable {
                tracing::warn!(
                    "rollback.command: {} is not an executable file on this host; a rollback \
                     would fail",
                    command.program.display()
                );
            }
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.action_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Rollback {
            inner: Arc::new(Inner {
                settings: settings.clone(),
                policy: Mutex::new(RollbackPolicy::new(settings.policy())),
                actions: Arc::new(Semaphore::new(1)),
                origin: Instant::now(),
                telemetry,
                client,
            }),
        }
    }

    /// The rollback of `config`, or `None` without a `[rollback]` table (not a reverse-shadow
    /// run).
    pub fn from_config(config: &Config, telemetry: Arc<dyn Telemetry>) -> Option<Rollback> {
        config
            .rollback
            .as_ref()
            .map(|settings| Rollback::new(settings, telemetry))
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &RollbackSettings {
        &self.inner.settings
    }

    /// Judges `verdict` now; see [`Rollback::observe_at`].
    pub fn observe(&self, verdict: &Verdict) -> Observation {
        self.observe_at(verdict, Instant::now())
    }

    /// Judges `verdict` at `now`: a failed trigger fires unless the cooldown or a running
    /// firing holds it back. Never blocks: the actions are spawned on the current tokio
    /// runtime (outside one, each action is reported failed).
    pub fn observe_at(&self, verdict: &Verdict, now: Instant) -> Observation {
        let inner = &self.inner;
        let mut policy = inner.policy.lock().unwrap_or_else(|e| e.into_inner());
        if policy.failed_triggers(verdict).is_empty() {
            return Observation::Quiet;
        }
        let held = |held: RollbackHeld| {
            inner.telemetry.rollback_suppressed(&held);
            Observation::Suppressed(held)
        };
        if inner.actions.available_permits() == 0 {
            return held(RollbackHeld::ActionRunning);
        }
        let at = now.saturating_duration_since(inner.origin);
        let Some(firing) = policy.observe(verdict, at) else {
            let remaining = policy.cooldown_remaining(at).unwrap_or_default();
            return held(RollbackHeld::Cooldown { remaining });
        };
        let settings = &inner.settings;
        inner.telemetry.rollback_fired(&RollbackFired {
            firing: firing.clone(),
            actions: describe_actions(settings),
            dry_run: settings.dry_run,
        });
        if settings.dry_run {
            inner.telemetry.rollback_action(&RollbackDone {
                action: RollbackAction::DryRun,
                result: RollbackResult::Ok,
                detail: "dry run: nothing was run".into(),
            });
            return Observation::DryRun(firing);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            for action in planned_actions(settings) {
                inner.telemetry.rollback_action(&RollbackDone {
                    action,
                    result: RollbackResult::Failed,
                    detail: "not started: no tokio runtime to run it on".into(),
                });
            }
            return Observation::Quiet;
        };
        // Only `observe_at` (under the policy lock) and `wait_idle` take the permit.
        let Ok(permit) = inner.actions.clone().try_acquire_owned() else {
            return held(RollbackHeld::ActionRunning);
        };
        let task = runtime.spawn(run_actions(self.inner.clone(), firing.clone(), permit));
        Observation::Started(RunningActions { firing, task })
    }

    /// Waits until no firing's actions are running (at most `action_timeout` and a second
    /// after the last firing). For shutdown: stopping the runtime kills a running command.
    pub async fn wait_idle(&self) {
        // The semaphore is never closed: `acquire` only waits.
        let _idle = self.inner.actions.acquire().await;
    }
}

/// The actions a firing runs, in the order they are reported.
fn planned_actions(settings: &RollbackSettings) -> Vec<RollbackAction> {
    let mut actions = Vec::new();
    if settings.command.is_some() {
        actions.push(RollbackAction::Command);
    }
    if settings.webhook.is_some() {
        actions.push(RollbackAction::Webhook);
    }
    actions
}

/// What runs, for the log: `command /usr/bin/x "a"`, `webhook POST http://…`.
fn describe_actions(settings: &RollbackSettings) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(command) = &settings.command {
        out.push(format!("command {command}"));
    }
    if let Some(url) = &settings.webhook {
        out.push(format!("webhook POST {url}"));
    }
    out
}

/// The firing as sent on a command's stdin and in the webhook's body.
#[derive(Serialize)]
struct Payload<'a> {
    event: &'static str,
    decision: Decision,
    fired_at_unix_ms: u64,
    failed: &'a [CriterionResult],
}

fn payload(firing: &Firing) -> Bytes {
    let fired_at_unix_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let json = serde_json::to_vec(&Payload {
        event: "shadowtap.rollback",
        decision: firing.decision,
        fired_at_unix_ms,
        failed: &firing.failed,
    });
    // Criterion results are plain numbers and strings; a non-finite number becomes `null`.
    Bytes::from(json.unwrap_or_default())
}

/// Runs the firing's actions side by side; each is reported when it ends.
async fn run_actions(
    inner: Arc<Inner>,
    firing: Firing,
    _running: OwnedSemaphorePermit,
) -> Vec<RollbackDone> {
    let settings = &inner.settings;
    let body = payload(&firing);
    let report = |done: RollbackDone| {
        inner.telemetry.rollback_action(&done);
        done
    };
    let command = async {
        match &settings.command {
            Some(command) => Some(report(
                run_command(command, &body, &firing, settings.action_timeout).await,
            )),
            None => None,
        }
    };
    let webhook = async {
        match &settings.webhook {
            Some(url) => Some(report(
                post_webhook(&inner.client, url, body.clone(), settings.action_timeout).await,
            )),
            None => None,
        }
    };
    let (command, webhook) = tokio::join!(command, webhook);
    command.into_iter().chain(webhook).collect()
}

/// Runs the command without a shell, the firing on its stdin; kills its process group after
/// `timeout`.
async fn run_command(
    command: &RollbackCommand,
    payload: &[u8],
    firing: &Firing,
    timeout: Duration,
) -> RollbackDone {
    let done = |result, detail| RollbackDone {
        action: RollbackAction::Command,
        result,
        detail,
    };
    let spawned = tokio::process::Command::new(&command.program)
        .args(&command.args)
        .env("SHADOWTAP_DECISION", firing.decision.as_str())
        .env("SHADOWTAP_FAILED", firing.failed_names())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return done(
                RollbackResult::Failed,
                format!("cannot start `{command}`: {e}"),
            );
        }
    };
    let pid = child.id();
    let stdout = child.stdout.take().map(|s| tokio::spawn(keep_head(s)));
    let stderr = child.stderr.take().map(|s| tokio::spawn(keep_head(s)));
    let mut stdin = child.stdin.take();
    let run = async {
        if let Some(mut pipe) = stdin.take() {
            // A command that does not read its stdin may exit first: that is no failure.
            let _ = pipe.write_all(payload).await;
        }
        child.wait().await
    };
    let (result, mut detail) = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(status)) if status.success() => {
            (RollbackResult::Ok, format!("`{command}` exited with 0"))
        }
        Ok(Ok(status)) => (
            RollbackResult::Failed,
            format!("`{command}` ended: {status}"),
        ),
        Ok(Err(e)) => (
            RollbackResult::Failed,
            format!("cannot wait for `{command}`: {e}"),
        ),
        Err(_) => {
            kill_process_group(pid);
            let _ = child.kill().await;
            (
                RollbackResult::Timeout,
                format!(
                    "`{command}` still ran after {timeout:?} (rollback.action_timeout): killed \
                     with its process group"
                ),
            )
        }
    };
    for (name, pipe) in [("stdout", stdout), ("stderr", stderr)] {
        let Some(mut task) = pipe else { continue };
        match tokio::time::timeout(OUTPUT_GRACE, &mut task).await {
            Ok(Ok(head)) if !head.is_empty() => {
                let text = String::from_utf8_lossy(&head);
                detail.push_str(&format!("; {name}: {:?}", text.trim_end()));
            }
            Ok(_) => {}
            Err(_) => {
                task.abort();
                detail.push_str(&format!("; {name} still open, not read"));
            }
        }
    }
    done(result, detail)
}

/// SIGKILL to the command's process group (its pid: it was started as a group leader), so
/// that what it started dies with it.
fn kill_process_group(pid: Option<u32>) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // The child is not reaped yet, so its pid (the group id) cannot have been reused.
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Reads `pipe` to its end, keeping the first [`OUTPUT_KEPT`] bytes (the rest is drained so
/// that the command never blocks on a full pipe).
async fn keep_head(mut pipe: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = pipe.read(&mut buf).await {
        let room = OUTPUT_KEPT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    kept
}

/// POSTs the firing to `url`; a 2xx answer within `timeout` is success.
async fn post_webhook(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &Uri,
    payload: Bytes,
    timeout: Duration,
) -> RollbackDone {
    let done = |result, detail| RollbackDone {
        action: RollbackAction::Webhook,
        result,
        detail,
    };
    let request = hyper::Request::post(url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, concat!("shadowtap/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(payload));
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            return done(
                RollbackResult::Failed,
                format!("cannot build the POST to {url}: {e}"),
            );
        }
    };
    let exchange = async {
        let response = client.request(request).await.map_err(|e| error_chain(&e))?;
        let status = response.status();
        let mut body = response.into_body();
        let mut head = Vec::new();
        while head.len() < ANSWER_KEPT {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let room = ANSWER_KEPT - head.len();
                        head.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                Some(Err(_)) | None => break,
            }
        }
        Ok::<_, String>((status, head))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok((status, _))) if status.is_success() => {
            done(RollbackResult::Ok, format!("POST {url}: {status}"))
        }
        Ok(Ok((status, head))) => done(
            RollbackResult::Failed,
            format!(
                "POST {url} answered {status}: {:?}",
                String::from_utf8_lossy(&head).trim_end()
            ),
        ),
        Ok(Err(e)) => done(RollbackResult::Failed, format!("POST {url} failed: {e}")),
        Err(_) => done(
            RollbackResult::Timeout,
            format!("POST {url}: no answer within {timeout:?} (rollback.action_timeout)"),
        ),
    }
}

/// An error and its sources, `a: b: c`.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_config;
    use crate::telemetry::{Event, Recorder};
    use shadow_core::criteria::{CriterionName, Status};
    use std::path::{Path, PathBuf};

    fn result(criterion: CriterionName, status: Status) -> CriterionResult {
        CriterionResult {
            criterion,
            status,
            measured: Some(-0.03),
            interval: Some(shadow_core::stats::proportion::Interval {
                lo: -0.0488,
                hi: -0.0115,
            }),
            threshold: -0.02,
            reason: "interval below the threshold".into(),
            segment: None,
        }
    }

    fn failing() -> Verdict {
        Verdict {
            decision: Decision::Reject,
            criteria: vec![
                result(CriterionName::MinAgreement, Status::Pass),
                result(CriterionName::AccuracyMargin, Status::Fail),
            ],
        }
    }

    fn passing() -> Verdict {
        Verdict {
            decision: Decision::Promote,
            criteria: vec![result(CriterionName::AccuracyMargin, Status::Pass)],
        }
    }

    fn settings(extra: &str) -> RollbackSettings {
        let config = test_config(&format!(
            "[rollback]\ntriggers = [\"accuracy_margin\"]\n{extra}"
        ));
        config.rollback.expect("[rollback] given")
    }

    fn rollback(extra: &str) -> (Rollback, Arc<Recorder>) {
        let recorder = Arc::new(Recorder::new());
        (Rollback::new(&settings(extra), recorder.clone()), recorder)
    }

    fn actions(r: &Recorder) -> Vec<(RollbackAction, RollbackResult)> {
        r.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::RollbackAction(d) => Some((d.action, d.result)),
                _ => None,
            })
            .collect()
    }

    fn suppressed(r: &Recorder) -> usize {
        r.count_where(|e| matches!(e, Event::RollbackSuppressed(_)))
    }

    fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(name);
        (dir, path)
    }

    fn started(o: Observation) -> RunningActions {
        match o {
            Observation::Started(running) => running,
            other => panic!("expected the actions to start, got {other:?}"),
        }
    }

    #[test]
    fn from_config_is_none_without_a_rollback_table() {
        let recorder = Arc::new(Recorder::new());
        assert!(Rollback::from_config(&test_config(""), recorder.clone()).is_none());
        let config = test_config("[rollback]\ntriggers = [\"f1_margin\"]\n");
        let r = Rollback::from_config(&config, recorder).expect("[rollback] given");
        assert!(r.settings().dry_run, "dry run by default");
    }

    #[tokio::test]
    async fn a_dry_run_runs_nothing_but_logs_and_counts_once_per_cooldown() {
        let (_dir, marker) = scratch("ran");
        let (r, rec) = rollback(&format!(
            "command = [\"/usr/bin/touch\", {:?}]\n",
            marker.display().to_string()
        ));
        let t0 = Instant::now();
        assert!(matches!(r.observe_at(&passing(), t0), Observation::Quiet));
        let Observation::DryRun(firing) = r.observe_at(&failing(), t0) else {
            panic!("a dry run fires without running")
        };
        assert_eq!(firing.failed_names(), "accuracy_margin");
        assert!(matches!(
            r.observe_at(&failing(), t0 + Duration::from_secs(60)),
            Observation::Suppressed(RollbackHeld::Cooldown { .. })
        ));
        assert!(matches!(
            r.observe_at(&failing(), t0 + Duration::from_secs(601)),
            Observation::DryRun(_)
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!marker.exists(), "a dry run must not run the command");
        assert_eq!(
            actions(&rec),
            vec![(RollbackAction::DryRun, RollbackResult::Ok); 2]
        );
        assert_eq!(suppressed(&rec), 1);
        let fired: Vec<RollbackFired> = rec
            .events()
            .into_iter()
            .filter_map(|e| match e {
                Event::RollbackFired(f) => Some(f),
                _ => None,
            })
            .collect();
        assert_eq!(fired.len(), 2);
        let line = fired[0].to_string();
        assert!(
            line.starts_with(
                "rollback triggered (verdict REJECT): accuracy_margin failed, measured -0.0300, \
                 95% interval [-0.0488, -0.0115], threshold -0.0200 (interval below the threshold). \
                 DRY RUN, nothing is run: would run command /usr/bin/touch"
            ),
            "{line}"
        );
    }

    /// `/usr/bin/tee FILE` copies the firing JSON from its stdin into FILE: the command ran,
    /// once, without a shell, and received the firing.
    #[tokio::test]
    async fn the_command_runs_once_with_the_firing_on_stdin_and_in_its_environment() {
        let (_dir, out) = scratch("firing.json");
        let (r, rec) = rollback(&format!(
            "dry_run = false\ncommand = [\"/usr/bin/tee\", {:?}]\n",
            out.display().to_string()
        ));
        let t0 = Instant::now();
        let running = started(r.observe_at(&failing(), t0));
        // While it runs, and then within the cooldown, nothing else starts.
        assert!(matches!(
            r.observe_at(&failing(), t0 + Duration::from_secs(1)),
            Observation::Suppressed(_)
        ));
        let done = running.finished().await;
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].result, RollbackResult::Ok, "{:?}", done[0]);
        assert!(done[0].detail.contains("stdout: \"{"), "{:?}", done[0]);
        assert!(matches!(
            r.observe_at(&failing(), t0 + Duration::from_secs(2)),
            Observation::Suppressed(RollbackHeld::Cooldown { .. })
        ));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&out).expect("tee wrote the file"))
                .expect("the firing is JSON");
        assert_eq!(json["event"], "shadowtap.rollback");
        assert_eq!(json["decision"], "REJECT");
        assert_eq!(json["failed"][0]["criterion"], "accuracy_margin");
        assert_eq!(json["failed"][0]["status"], "fail");
        assert_eq!(json["failed"].as_array().map(Vec::len), Some(1));
        assert!(json["fired_at_unix_ms"].as_u64().is_some_and(|t| t > 0));
        assert_eq!(
            actions(&rec),
            vec![(RollbackAction::Command, RollbackResult::Ok)]
        );
        assert_eq!(suppressed(&rec), 2);

        // The environment: `printenv` prints the two variables to stdout, which the detail
        // shows.
        let (r, _) = rollback(
            "dry_run = false\ncommand = [\"/usr/bin/printenv\", \"SHADOWTAP_DECISION\", \
             \"SHADOWTAP_FAILED\"]\n",
        );
        let done = started(r.observe(&failing())).finished().await;
        assert_eq!(
            done[0].detail,
            "`/usr/bin/printenv \"SHADOWTAP_DECISION\" \"SHADOWTAP_FAILED\"` exited with 0; \
             stdout: \"REJECT\\naccuracy_margin\"",
        );
    }

    #[tokio::test]
    async fn arguments_are_not_interpreted_by_a_shell() {
        let (dir, _) = scratch("x");
        let odd = dir.path().join("a b;$(echo c)*");
        let (r, _) = rollback(&format!(
            "dry_run = false\ncommand = [\"/usr/bin/touch\", {:?}]\n",
            odd.display().to_string()
        ));
        let done = started(r.observe(&failing())).finished().await;
        assert_eq!(done[0].result, RollbackResult::Ok, "{:?}", done[0]);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["a b;$(echo c)*".to_string()]);
    }

    #[tokio::test]
    async fn a_failing_or_missing_command_is_reported_failed() {
        let (r, rec) = rollback("dry_run = false\ncommand = [\"/usr/bin/false\"]\n");
        let done = started(r.observe(&failing())).finished().await;
        assert_eq!(done[0].result, RollbackResult::Failed);
        assert!(done[0].detail.contains("exit status: 1"), "{:?}", done[0]);
        let (r, _) = rollback("dry_run = false\ncommand = [\"/nonexistent/rollback\"]\n");
        let done = started(r.observe(&failing())).finished().await;
        assert_eq!(done[0].result, RollbackResult::Failed);
        assert!(
            done[0]
                .detail
                .starts_with("cannot start `/nonexistent/rollback`"),
            "{:?}",
            done[0]
        );
        assert_eq!(
            actions(&rec),
            vec![(RollbackAction::Command, RollbackResult::Failed)]
        );
    }

    #[tokio::test]
    async fn a_command_over_its_timeout_is_killed() {
        let (r, rec) = rollback(
            "dry_run = false\ncommand = [\"/usr/bin/sleep\", \"60\"]\naction_timeout = \"300ms\"\n\
             cooldown = \"100ms\"\n",
        );
        let t0 = Instant::now();
        let running = started(r.observe_at(&failing(), t0));
        // The cooldown is over, but the command still runs: one firing at a time.
        assert!(matches!(
            r.observe_at(&failing(), t0 + Duration::from_secs(1)),
            Observation::Suppressed(RollbackHeld::ActionRunning)
        ));
        r.wait_idle().await;
        let done = running.finished().await;
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
        assert_eq!(done[0].result, RollbackResult::Timeout, "{:?}", done[0]);
        assert!(done[0].detail.contains("killed"), "{:?}", done[0]);
        assert_eq!(
            actions(&rec),
            vec![(RollbackAction::Command, RollbackResult::Timeout)]
        );
        assert_eq!(
            rec.events().last(),
            Some(&Event::RollbackAction(done[0].clone())),
            "reported when it ended"
        );
        assert_eq!(suppressed(&rec), 1);
        // No `sleep 60` is left: the group is gone (killpg finds nobody).
        let still_there = sleepers_with_parent(std::process::id());
        assert!(still_there.is_empty(), "left running: {still_there:?}");
    }

    /// Pids of `sleep` processes whose parent is `parent` (a killed, reaped child is gone).
    fn sleepers_with_parent(parent: u32) -> Vec<u32> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) =
                std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat"))
            else {
                continue;
            };
            let Some((name, rest)) = stat.split_once(") ") else {
                continue;
            };
            let ppid = rest
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok());
            if name.ends_with("(sleep") && ppid == Some(parent) {
                found.push(pid);
            }
        }
        found
    }

    #[test]
    fn without_a_runtime_the_actions_are_reported_failed_not_lost() {
        let settings = settings("dry_run = false\ncommand = [\"/usr/bin/true\"]\n");
        let recorder = Arc::new(Recorder::new());
        let r = Rollback::new(&settings, recorder.clone());
        // A plain thread has no tokio runtime.
        let observed =
            std::thread::spawn(move || matches!(r.observe(&failing()), Observation::Quiet))
                .join()
                .unwrap();
        assert!(observed);
        assert_eq!(
            actions(&recorder),
            vec![(RollbackAction::Command, RollbackResult::Failed)]
        );
    }
}
