//! The back half of the data path, fed by a channel of exchanges:
//!
//! ```text
//! exchanges ─▶ pipeline (admit, try_send) ─▶ queue ─▶ replay workers (≤ concurrency)
//!                                                       └▶ compare ─▶ metrics, evaluation,
//!                                                                     discrepancy log
//! ```
//!
//! [`run_mirror`] (or [`Mirror::run`]) returns when the exchange channel closes (after every
//! queued request was replayed) or when shutdown is requested (in-flight replays finish, queued
//! ones are abandoned and counted in [`RunSummary::abandoned`]).

use crate::admission::circuit_breaker::{CircuitBreaker, counts_as_failure};
use crate::admission::{Job, Pipeline, PipelineStats, SharedBreaker, run_pipeline};
use crate::config::Config;
use crate::replay::ShadowClient;
use crate::shutdown::Shutdown;
use crate::sinks::admin::AdminState;
use crate::sinks::discrepancy_log::{DiscrepancyLog, LogWriter, Record, Redactor};
use crate::sinks::metrics::Metrics;
use serde::Serialize;
use shadow_core::compare::{Comparer, Comparison, Model};
use shadow_core::evaluation::{Evaluation, Summary};
use shadow_core::http::Exchange;
use shadow_core::vocabulary::MirrorResult;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

/// Why the mirror could not start.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The discrepancy log cannot be opened.
    #[error("cannot open discrepancy log `{path}`: {source}")]
    DiscrepancyLog {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub pipeline: PipelineStats,
    /// Replays that finished (any result).
    pub replayed: u64,
    /// Queued but never sent because shutdown came first.
    pub abandoned: u64,
    pub evaluation: Summary,
}

/// Everything the replay workers share.
struct Worker {
    client: ShadowClient,
    comparer: Comparer,
    breaker: Arc<SharedBreaker>,
    evaluation: Arc<Mutex<Evaluation>>,
    metrics: Metrics,
    log: Option<LogWriter>,
    redactor: Redactor,
    body_max_bytes: usize,
    /// Answers slower than this count as shadow failures for the breaker.
    slow_call: Option<Duration>,
}

/// The mirror, built and ready to run.
pub struct Mirror {
    config: Arc<Config>,
    worker: Worker,
    log: Option<DiscrepancyLog>,
}

impl Mirror {
    /// Builds the shadow client, comparer, breaker and opens the discrepancy log. Needs a tokio
    /// runtime (the log writer is a blocking task).
    pub fn new(config: Arc<Config>, metrics: Metrics) -> Result<Mirror, MirrorError> {
        let log = match &config.discrepancy_log.path {
            None => None,
            Some(path) => Some(
                DiscrepancyLog::open(&config.discrepancy_log, path, metrics.clone()).map_err(
                    |source| MirrorError::DiscrepancyLog {
                        path: path.clone(),
                        source,
                    },
                )?,
            ),
        };
        let worker = Worker {
            client: ShadowClient::new(&config.shadow),
            comparer: config.compare.comparer(),
            breaker: Arc::new(SharedBreaker::new(
                CircuitBreaker::new(&config.circuit_breaker),
                metrics.clone(),
            )),
            evaluation: Arc::new(Mutex::new(Evaluation::default())),
            metrics,
            log: log.as_ref().map(DiscrepancyLog::writer),
            redactor: Redactor::new(&config.discrepancy_log),
            body_max_bytes: config.discrepancy_log.body_max_bytes,
            slow_call: config.circuit_breaker.slow_call,
        };
        Ok(Mirror {
            config,
            worker,
            log,
        })
    }

    /// What the admin server needs to serve `/metrics` and `/api/summary` for this mirror.
    pub fn admin_state(&self) -> AdminState {
        AdminState {
            metrics: self.worker.metrics.clone(),
            evaluation: self.worker.evaluation.clone(),
            breaker: Some(self.worker.breaker.clone()),
            capturing: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }

    /// Runs pipeline and replay until `exchanges` closes or shutdown is requested.
    pub async fn run(
        self,
        exchanges: mpsc::Receiver<Exchange>,
        shutdown: Shutdown,
    ) -> Result<RunSummary, MirrorError> {
        let Mirror {
            config,
            worker,
            log,
        } = self;
        let (queue_tx, queue_rx) = mpsc::channel::<Job>(config.mirror.queue.get());
        let pipeline = Pipeline::new(
            &config,
            worker.breaker.clone(),
            queue_tx,
            worker.metrics.clone(),
        );
        let pipeline_task = tokio::spawn(run_pipeline(pipeline, exchanges, shutdown.clone()));
        let worker = Arc::new(worker);
        let (replayed, abandoned) = dispatch(
            queue_rx,
            worker.clone(),
            config.shadow.concurrency.get(),
            shutdown,
        )
        .await;
        let stats = pipeline_task.await.unwrap_or_default();
        let evaluation = worker
            .evaluation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .summary();
        // Every task is done: dropping the last worker handle lets the log writer finish.
        drop(worker);
        if let Some(log) = log {
            log.close().await;
        }
        Ok(RunSummary {
            pipeline: stats,
            replayed,
            abandoned,
            evaluation,
        })
    }
}

/// Builds a [`Mirror`] and runs it: the back half of `shadowd run`.
pub async fn run_mirror(
    config: Arc<Config>,
    exchanges: mpsc::Receiver<Exchange>,
    shutdown: Shutdown,
    metrics: Metrics,
) -> Result<RunSummary, MirrorError> {
    Mirror::new(config, metrics)?.run(exchanges, shutdown).await
}

/// Takes jobs off the queue and replays at most `concurrency` at once. Returns (replayed,
/// abandoned).
async fn dispatch(
    mut queue: mpsc::Receiver<Job>,
    worker: Arc<Worker>,
    concurrency: usize,
    mut shutdown: Shutdown,
) -> (u64, u64) {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut replayed = 0u64;
    let mut abandoned = 0u64;
    loop {
        let job = tokio::select! {
            biased;
            _ = shutdown.requested() => break,
            job = queue.recv() => match job {
                Some(job) => job,
                None => break,
            },
        };
        let permit = tokio::select! {
            biased;
            _ = shutdown.requested() => {
                drop(job);
                abandoned += 1;
                break;
            }
            p = permits.clone().acquire_owned() => p.expect("semaphore is never closed"),
        };
        let worker = worker.clone();
        tasks.spawn(async move {
            worker.process(job).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {
            replayed += 1;
        }
    }
    // Whatever is still queued after shutdown is not sent.
    queue.close();
    while queue.try_recv().is_ok() {
        abandoned += 1;
    }
    // In-flight replays end within the per-request timeout.
    while tasks.join_next().await.is_some() {
        replayed += 1;
    }
    if abandoned > 0 {
        tracing::info!(abandoned, "queued mirror requests abandoned at shutdown");
    }
    (replayed, abandoned)
}

impl Worker {
    /// Replay → compare → sinks for one job.
    async fn process(&self, job: Job) {
        let answer = match self.client.replay(job.request()).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("not replayed: {e}");
                self.metrics.mirrored(MirrorResult::RequestError);
                self.breaker.cancel();
                return;
            }
        };
        self.breaker
            .record(counts_as_failure(&answer, self.slow_call), Instant::now());
        let comparison = self.comparer.compare(
            job.prod_response(),
            job.exchange.timing.latency_ns(),
            &answer,
        );
        self.publish(&job.exchange, &comparison);
        // Counted last: once a request shows as mirrored, its comparison is in every sink.
        self.metrics.mirrored(MirrorResult::of(&answer));
    }

    /// Metrics, evaluation and discrepancy log for one comparison.
    fn publish(&self, exchange: &Exchange, c: &Comparison) {
        let m = &self.metrics;
        if let Some(ns) = c.production.latency_ns {
            m.latency(Model::Production, ns as f64 / 1e9);
        }
        if let (Some(ns), true) = (c.shadow.latency_ns, c.shadow_answered()) {
            m.latency(Model::Shadow, ns as f64 / 1e9);
        }
        if let Some(class) = c.production.error {
            m.error(Model::Production, class);
        }
        if let Some(class) = c.shadow.error {
            m.error(Model::Shadow, class);
        }
        for kind in &c.discrepancies {
            m.discrepancy(*kind);
        }
        {
            // The gauge is set under the lock: concurrent workers cannot leave a stale ratio.
            let mut e = self.evaluation.lock().unwrap_or_else(|e| e.into_inner());
            e.record(c);
            if let Some(r) = e.agreement_ratio() {
                m.set_agreement(r);
            }
        }
        if let Some(log) = &self.log
            && !c.discrepancies.is_empty()
        {
            let now_ns = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            log.write(Record::new(
                exchange,
                c,
                &self.redactor,
                self.body_max_bytes,
                now_ns,
            ));
        }
    }
}
