//! The pipeline `shadowd run` and `shadowd replay` share: exchanges (from the live tap or from
//! a capture file) → admission → replay → compare → evaluation, with the metrics, the
//! discrepancy log, the decision loop (verdict, state file) and, when asked, the admin server,
//! the resource monitor and the rollback plan. Only where the exchanges come from differs
//! ([`ExchangeSource`]).

use super::UsageError;
use crate::config::Config;
use crate::decision::{
    DecisionLoop, ResourceMeasures, ResourceSource, VerdictObserver, load_state,
};
use crate::mirror::{Mirror, MirrorStatus, RunSummary};
use crate::resources;
use crate::rollback::Rollback;
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::sinks::admin::{AdminAccess, AdminState, bind_admin, serve_admin};
use crate::sinks::discrepancy_log::{DiscrepancyLog, Redaction};
use crate::sinks::metrics::Metrics;
use crate::sinks::recent_discrepancies::{Fanout, RecentDiscrepancies};
use crate::sinks::timeseries::TimeSeriesHandle;
use crate::telemetry::Telemetry;
use shadow_core::criteria::{Measurements, Verdict};
use shadow_core::http::Exchange;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{mpsc, watch};

/// Starts the front end once everything behind it is ready; returns the channel of exchanges
/// (closing it ends the run).
pub type ExchangeSource = Box<
    dyn FnOnce(&Config, Arc<dyn Telemetry>, Shutdown) -> anyhow::Result<mpsc::Receiver<Exchange>>,
>;

/// What a pipeline runs with besides its config.
pub struct PipelineOptions {
    /// Serve the admin API (`/metrics`, `/api/summary`, labels) with this access; `/healthz`
    /// says 200 once the source started.
    pub admin: Option<AdminAccess>,
    /// Watch the CPU and memory of the model servers and shadowd (live production only).
    pub resources: bool,
    /// Run `[rollback]`'s actions on the verdict (live production only).
    pub rollback: bool,
    /// Admission waits for room in the replay queue instead of refusing (a capture file can
    /// wait; see [`Mirror::waiting_for_room`]).
    pub wait_for_room: bool,
    /// Resume the aggregates from `state.path` when it exists (`run`); otherwise the state
    /// file is only written (`replay`: a replay's result is its own).
    pub resume_state: bool,
    /// Reloaded configurations (SIGHUP, `run`): admission, the comparer, the criteria and the
    /// discrepancy log's redaction follow them without a restart.
    pub reloads: Option<watch::Receiver<Arc<Config>>>,
}

/// How a pipeline ended.
pub struct Finished {
    /// What admission, replay and the evaluation did.
    pub summary: RunSummary,
    /// The last verdict and the measurements it judged (judged once more at the end).
    pub verdict: Option<(Verdict, Measurements)>,
    /// Every counter the run reported (as `/metrics` renders them).
    pub metrics: Metrics,
    /// The exchanges ended with no shutdown asked: a capture file read to its end, or a live
    /// capture that stopped on an error.
    pub source_ended: bool,
}

/// The metrics a pipeline reports to, feeding the time series `[admin]` shapes
/// (`/api/timeseries`, saved in the state file).
pub fn metrics(config: &Config) -> Metrics {
    Metrics::with_timeseries(TimeSeriesHandle::new(
        config.admin.timeseries_interval,
        config.admin.timeseries_buckets,
    ))
}

/// Runs the pipeline, reporting to `metrics`, until the source's channel closes (every exchange replayed) or `trigger`
/// fires; then judges the verdict once more and saves the state file.
pub async fn run(
    config: Arc<Config>,
    options: PipelineOptions,
    metrics: Metrics,
    trigger: ShutdownTrigger,
    source: ExchangeSource,
) -> anyhow::Result<Finished> {
    let shutdown = trigger.subscribe();
    let telemetry: Arc<dyn Telemetry> = Arc::new(metrics.clone());
    let log = DiscrepancyLog::from_config(&config.discrepancy_log, telemetry.clone())?;
    let verdict_metrics = metrics.verdict();
    let timeseries = metrics.timeseries();
    let recent = RecentDiscrepancies::new(&config.discrepancy_log);
    let mut mirror = Mirror::new(config.clone(), telemetry.clone());
    mirror = match &log {
        Some(log) => mirror.with_discrepancy_sink(Fanout(vec![
            Box::new(log.writer()),
            Box::new(recent.clone()),
        ])),
        None => mirror.with_discrepancy_sink(recent.clone()),
    };
    if options.wait_for_room {
        mirror = mirror.waiting_for_room();
    }
    if let Some(reloads) = &options.reloads {
        mirror = mirror.with_reloads(reloads.clone());
        if let Some(log) = &log {
            tokio::spawn(follow_redaction(
                reloads.clone(),
                log.redaction(),
                shutdown.clone(),
            ));
        }
    }
    let status = mirror.status();
    resume(&config, &status, &timeseries, options.resume_state)?;
    verdict_metrics.resume(&status.evaluation());
    // The admin server answers at once (a taken port fails before anything is attached), and
    // /healthz says 200 only once the tap is attached: "healthy" means traffic is captured.
    let listener = match &options.admin {
        Some(_) => Some(bind_admin(config.admin.addr).await?),
        None => None,
    };
    let resources = options
        .resources
        .then(|| resources::start(&config, shutdown.clone()));
    if let Some(resources) = &resources {
        metrics.watch_resources(resources.clone());
    }
    let mut state =
        AdminState::new(metrics.clone(), status.clone()).with_recent_discrepancies(recent);
    if let Some(resources) = &resources {
        state = state.with_resources(resources.clone());
    }
    if let Some(access) = options.admin.clone() {
        if !access.has_token() {
            tracing::info!(
                "no admin.token_file: POST /api/labels is refused until one is configured \
                 (ground truth needs a bearer token)"
            );
        }
        state = state.with_access(access);
    }
    state.capturing.store(false, Ordering::Relaxed);
    let capturing = state.capturing.clone();
    let latest = state.verdict.clone();
    let rollback = if options.rollback {
        Rollback::from_config(&config, telemetry.clone())
    } else {
        None
    };
    if let Some(r) = &rollback {
        for name in r
            .settings()
            .policy()
            .unconfigured_triggers(&config.criteria)
        {
            tracing::warn!(
                trigger = name.as_str(),
                "rollback trigger `{}` is not set in the criteria: it can never fire",
                name.as_str()
            );
        }
    }
    let resource_source: Option<ResourceSource> = resources.clone().map(|resources| {
        let metrics = metrics.clone();
        Box::new(move || {
            let (production, shadow) = metrics.requests_handled();
            ResourceMeasures::of(&resources.latest(), production, shadow)
        }) as ResourceSource
    });
    let decision = DecisionLoop {
        criteria: config.criteria.clone(),
        mirror: status,
        latest: latest.clone(),
        metrics: verdict_metrics,
        resources: resource_source,
        observer: rollback.clone().map(|r| -> VerdictObserver {
            Box::new(move |v| {
                r.observe(v);
            })
        }),
        reverse_shadow: rollback.is_some(),
        state: config
            .state
            .path
            .clone()
            .map(|p| (p, config.state.interval)),
        timeseries: Some(timeseries.clone()),
        reloads: options.reloads.clone(),
    };
    let admin = listener.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(
                %addr,
                "admin server: /metrics /healthz /api/summary /api/timeseries /api/discrepancies"
            );
        }
        tokio::spawn(serve_admin(listener, state, shutdown.clone()))
    });
    let exchanges = source(&config, telemetry, shutdown.clone())?;
    capturing.store(true, Ordering::Relaxed);
    let decisions = tokio::spawn(decision.run(shutdown.clone()));
    let asked_to_stop = shutdown.clone();
    let summary = mirror.run(exchanges, shutdown).await;
    let source_ended = !asked_to_stop.is_requested();
    // Every exchange is accounted for (or shutdown came): the decision loop judges once more
    // and saves the state; the last verdict and state cover every comparison. A rollback
    // action still running finishes (or times out) before the runtime stops.
    trigger.trigger();
    let _ = decisions.await;
    if let Some(r) = &rollback {
        r.wait_idle().await;
    }
    if let Some(log) = log {
        log.close().await;
    }
    if let Some(admin) = admin {
        admin.abort();
    }
    Ok(Finished {
        summary,
        verdict: latest.get(),
        metrics,
        source_ended,
    })
}

/// Applies each reloaded configuration's redaction settings to the discrepancy log.
async fn follow_redaction(
    mut reloads: watch::Receiver<Arc<Config>>,
    redaction: Redaction,
    mut shutdown: Shutdown,
) {
    loop {
        tokio::select! {
            _ = shutdown.requested() => return,
            changed = reloads.changed() => match changed {
                Ok(()) => redaction.set(&reloads.borrow_and_update().discrepancy_log),
                Err(_) => return,
            },
        }
    }
}

/// Resumes the aggregates and the time series from the state file (if `state` and
/// configured) and preloads the label file, if configured.
fn resume(
    config: &Config,
    status: &MirrorStatus,
    timeseries: &TimeSeriesHandle,
    state: bool,
) -> anyhow::Result<()> {
    if let Some(path) = config.state.path.as_ref().filter(|_| state) {
        match load_state(path)? {
            Some(state) => {
                status.restore(state.evaluation)?;
                if let Some(saved) = state.timeseries {
                    timeseries.restore(saved);
                }
                tracing::info!(path = %path.display(), "resumed the aggregates from the state file");
            }
            None => tracing::info!(path = %path.display(), "no state file yet: starting afresh"),
        }
    }
    if let Some(path) = &config.ground_truth.labels_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            UsageError(format!(
                "cannot read the label file {}: {e}",
                path.display()
            ))
        })?;
        let (kept, refused) = status.preload_labels(&text);
        if refused.malformed > 0 {
            tracing::warn!(
                path = %path.display(),
                malformed = refused.malformed,
                first = refused.errors.first().map(String::as_str).unwrap_or(""),
                "label file: refused malformed lines"
            );
        }
        tracing::info!(path = %path.display(), labels = kept, "label file read");
    }
    Ok(())
}
