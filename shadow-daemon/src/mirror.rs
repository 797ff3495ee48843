//! The runtime of the back half of the data path: it joins admission → replay → compare and
//! hands the results on, fed by a channel of exchanges:
//!
//! ```text
//! exchanges ─▶ admission (admit, try_send) ─▶ queue ─▶ replay workers (≤ concurrency)
//!                                                       └▶ compare ─▶ telemetry, evaluation,
//!                                                                     discrepancy sink
//! ```
//!
//! The mirror names no sink: events go to a [`Telemetry`], differing comparisons to a
//! [`DiscrepancySink`], and [`MirrorStatus`] is what an admin endpoint may read.
//!
//! [`Mirror::run`] returns when the exchange channel closes (after every queued request was
//! replayed) or when shutdown is requested (in-flight replays finish, queued ones are abandoned
//! and counted in [`RunSummary::abandoned`]).

use crate::admission::circuit_breaker::{
    BreakerState, CircuitBreaker, SharedBreaker, counts_as_failure,
};
use crate::admission::{AdmissionStats, Admitter, Job};
use crate::config::Config;
use crate::replay::ShadowClient;
use crate::shutdown::Shutdown;
use crate::telemetry::Telemetry;
use serde::Serialize;
use shadow_core::compare::{Comparer, Comparison};
use shadow_core::evaluation::{Evaluation, Summary};
use shadow_core::http::Exchange;
use shadow_core::vocabulary::MirrorResult;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

/// Where the mirror hands every comparison that found a difference (the discrepancy log
/// implements it). Called on the replay workers: it must not wait.
pub trait DiscrepancySink: Send + Sync {
    /// `comparison` of `job` has at least one discrepancy.
    fn discrepancy(&self, job: &Job, comparison: &Comparison);
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    /// What admission did with the exchanges.
    pub admission: AdmissionStats,
    /// Replays that finished (any result).
    pub replayed: u64,
    /// Queued but never sent because shutdown came first.
    pub abandoned: u64,
    /// Agreement, accuracy and latency over the compared requests.
    pub evaluation: Summary,
}

/// A read-only view of a mirror's running aggregates (for `/api/summary`).
#[derive(Clone, Debug)]
pub struct MirrorStatus {
    evaluation: Arc<Mutex<Evaluation>>,
    breaker: Arc<SharedBreaker>,
}

impl MirrorStatus {
    /// Agreement, accuracy and latency so far.
    pub fn evaluation(&self) -> Summary {
        self.evaluation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .summary()
    }

    /// The shadow circuit breaker's state now.
    pub fn breaker(&self) -> BreakerState {
        self.breaker.state()
    }
}

/// Everything the replay workers share.
struct Worker {
    client: ShadowClient,
    comparer: Comparer,
    breaker: Arc<SharedBreaker>,
    evaluation: Arc<Mutex<Evaluation>>,
    telemetry: Arc<dyn Telemetry>,
    discrepancies: Option<Box<dyn DiscrepancySink>>,
    /// Answers slower than this count as shadow failures for the breaker.
    slow_call: Option<Duration>,
}

/// The mirror, built and ready to run.
pub struct Mirror {
    config: Arc<Config>,
    worker: Worker,
}

impl Mirror {
    /// Builds the shadow client, comparer and breaker, reporting to `telemetry`.
    pub fn new(config: Arc<Config>, telemetry: Arc<dyn Telemetry>) -> Mirror {
        let worker = Worker {
            client: ShadowClient::new(&config.shadow, telemetry.clone()),
            comparer: config.compare.comparer(),
            breaker: Arc::new(SharedBreaker::new(
                CircuitBreaker::new(&config.circuit_breaker),
                telemetry.clone(),
            )),
            evaluation: Arc::new(Mutex::new(Evaluation::default())),
            telemetry,
            discrepancies: None,
            slow_call: config.circuit_breaker.slow_call,
        };
        Mirror { config, worker }
    }

    /// Hands every comparison that found a difference to `sink`.
    pub fn with_discrepancy_sink(mut self, sink: impl DiscrepancySink + 'static) -> Self {
        self.worker.discrepancies = Some(Box::new(sink));
        self
    }

    /// What an admin endpoint reads while the mirror runs.
    pub fn status(&self) -> MirrorStatus {
        MirrorStatus {
            evaluation: self.worker.evaluation.clone(),
            breaker: self.worker.breaker.clone(),
        }
    }

    /// Runs admission and replay until `exchanges` closes or shutdown is requested.
    pub async fn run(self, exchanges: mpsc::Receiver<Exchange>, shutdown: Shutdown) -> RunSummary {
        let Mirror { config, worker } = self;
        let (queue_tx, queue_rx) = mpsc::channel::<Job>(config.mirror.queue.get());
        let admitter = Admitter::new(
            &config,
            worker.breaker.clone(),
            queue_tx,
            worker.telemetry.clone(),
        );
        let admission_task = tokio::spawn(admit(admitter, exchanges, shutdown.clone()));
        let worker = Arc::new(worker);
        let (replayed, abandoned) = dispatch(
            queue_rx,
            worker.clone(),
            config.shadow.concurrency.get(),
            shutdown,
        )
        .await;
        let stats = admission_task.await.unwrap_or_default();
        let evaluation = worker
            .evaluation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .summary();
        RunSummary {
            admission: stats,
            replayed,
            abandoned,
            evaluation,
        }
    }
}

/// Offers each exchange to admission until `exchanges` closes or shutdown is requested;
/// dropping the admitter then closes the replay queue.
async fn admit(
    mut admitter: Admitter,
    mut exchanges: mpsc::Receiver<Exchange>,
    mut shutdown: Shutdown,
) -> AdmissionStats {
    loop {
        tokio::select! {
            biased;
            _ = shutdown.requested() => break,
            next = exchanges.recv() => match next {
                Some(exchange) => { admitter.offer(exchange); }
                None => break,
            },
        }
    }
    admitter.stats().clone()
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
    /// Replay → compare → telemetry, evaluation and discrepancy sink for one job.
    async fn process(&self, job: Job) {
        let answer = match self.client.replay(&job.request).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("not replayed: {e}");
                self.telemetry.replayed(MirrorResult::RequestError);
                self.breaker.cancel();
                return;
            }
        };
        self.breaker
            .record(counts_as_failure(&answer, self.slow_call), Instant::now());
        let comparison =
            self.comparer
                .compare(&job.prod_response, job.timing.latency_ns(), &answer);
        self.publish(&job, &comparison);
        // Reported last: once a request shows as replayed, its comparison is in every sink.
        self.telemetry.replayed(MirrorResult::of(&answer));
    }

    /// Telemetry, evaluation and discrepancy sink for one comparison.
    fn publish(&self, job: &Job, c: &Comparison) {
        self.telemetry.compared(c);
        {
            // The ratio is reported under the lock: concurrent workers cannot leave a stale one.
            let mut e = self.evaluation.lock().unwrap_or_else(|e| e.into_inner());
            e.record(c);
            if let Some(r) = e.agreement_ratio() {
                self.telemetry.agreement(r);
            }
        }
        if let Some(sink) = &self.discrepancies
            && !c.discrepancies.is_empty()
        {
            sink.discrepancy(job, c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::tests::exchange;
    use crate::telemetry::{Event, Recorder};
    use shadow_core::vocabulary::{DiscrepancyKind, Outcome, SkipReason};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Keeps the jobs handed to it.
    #[derive(Clone, Default)]
    struct Jobs(Arc<Mutex<Vec<(Job, Comparison)>>>);

    impl DiscrepancySink for Jobs {
        fn discrepancy(&self, job: &Job, comparison: &Comparison) {
            self.0
                .lock()
                .unwrap()
                .push((job.clone(), comparison.clone()));
        }
    }

    /// A shadow on 127.0.0.1 answering every request with an empty 503.
    async fn unavailable_shadow() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn reports_each_stage_and_hands_discrepancies_to_the_sink() {
        let shadow = unavailable_shadow().await;
        let text = format!(
            "[capture]\ninterface = \"lo\"\nports = [8080]\n[shadow]\nurl = \"http://{shadow}\"\n"
        );
        let config = Config::from_toml(&text, std::path::Path::new("test.toml")).unwrap();
        let recorder = Arc::new(Recorder::new());
        let jobs = Jobs::default();
        let mirror =
            Mirror::new(Arc::new(config), recorder.clone()).with_discrepancy_sink(jobs.clone());
        let status = mirror.status();
        let (tx, rx) = mpsc::channel(4);
        tx.send(exchange("POST", "/infer", "{\"x\":1}"))
            .await
            .unwrap();
        tx.send(exchange("DELETE", "/infer", "")).await.unwrap();
        drop(tx);
        let (_trigger, shutdown) = crate::shutdown::channel();
        let summary = mirror.run(rx, shutdown).await;

        assert_eq!(
            (summary.admission.exchanges, summary.admission.queued),
            (2, 1)
        );
        assert_eq!(summary.replayed, 1);
        assert_eq!(status.evaluation().compared, 1);
        let events = recorder.events();
        assert_eq!(events[0], Event::BreakerChanged(BreakerState::Closed));
        assert_eq!(recorder.count(&Event::ExchangeSeen(Outcome::Complete)), 2);
        assert_eq!(recorder.count(&Event::Skipped(SkipReason::Filtered)), 1);
        let compared = events
            .iter()
            .position(|e| matches!(e, Event::Compared(_)))
            .expect("the replayed request was compared");
        let replayed = events
            .iter()
            .position(|e| *e == Event::Replayed(MirrorResult::Ok))
            .expect("the replay was reported");
        assert!(compared < replayed, "replayed is reported last: {events:?}");
        let Event::Compared(c) = &events[compared] else {
            unreachable!()
        };
        assert!(c.discrepancies.contains(&DiscrepancyKind::Status), "{c:?}");

        let handed = jobs.0.lock().unwrap().clone();
        assert_eq!(handed.len(), 1, "only the replayed request differs");
        assert_eq!(handed[0].0.request.method, "POST");
        assert_eq!(
            handed[0].0.request.body,
            bytes::Bytes::from_static(b"{\"x\":1}")
        );
        assert_eq!(&handed[0].1, c);
    }
}
