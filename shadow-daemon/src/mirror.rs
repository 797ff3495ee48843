//! The runtime of the back half of the data path: it joins admission → replay → compare and
//! hands the results on, fed by a channel of exchanges:
//!
//! ```text
//! exchanges ─▶ admission (admit, push) ─▶ replay queue ─▶ dispatcher ─▶ replays (≤ limit)
//!                                          (paced)                      └▶ compare ─▶ telemetry,
//!                                                                          evaluation, discrepancy sink
//! ```
//!
//! The dispatcher releases jobs from the [`queue`](crate::admission::queue) as its pacing
//! allows (by default production's order, spacing and concurrency, `shadow.concurrency` at
//! most) and reports the load (replays in flight, queue length) and each job's wait; the
//! shadow's latency is measured by the replay alone, from sending the request to the last byte
//! of the answer, so the queue wait is never part of it. When jobs wait for capacity while the
//! queue fills, a rate-limited warning says the shadow is saturated. The first replay failure
//! of each kind is a warning, later ones are rate-limited.
//!
//! With a noise baseline (`shadow.baseline`, a second instance of the production model),
//! each job is replayed to the shadow and the baseline at the same time. Production vs
//! baseline is compared by the same [`Comparer`] and taught to a [`NoiseModel`] before the
//! shadow's comparison is judged by it, so a request's own nondeterminism already counts. The
//! baseline never touches the shadow's comparison or the breaker (which judges the shadow's
//! answer as soon as it is in); a slow baseline only keeps the job's replay slot longer.
//!
//! The mirror names no sink: events go to a [`Telemetry`], differing comparisons to a
//! [`DiscrepancySink`], and [`MirrorStatus`] is what an admin endpoint may read.
//!
//! [`Mirror::run`] returns when the exchange channel closes (after every queued request was
//! replayed) or when shutdown is requested (in-flight replays finish, queued ones are abandoned:
//! counted as skipped, `abandoned`, and in [`RunSummary::abandoned`]).

use crate::admission::circuit_breaker::{
    BreakerState, CircuitBreaker, Judgement, SharedBreaker, judge,
};
use crate::admission::queue::{Next, Released, ReplayQueue, SharedQueue};
use crate::admission::{AdmissionStats, Admitter, Job};
use crate::config::Config;
use crate::replay::{ReplayError, ShadowClient};
use crate::shutdown::Shutdown;
use crate::telemetry::{GrpcStatusLabel, ReplayLoad, Telemetry, Throttle, Warning};
use serde::Serialize;
use shadow_core::compare::{Comparer, Comparison, ShadowAnswer};
use shadow_core::criteria::Measurements;
use shadow_core::evaluation::{
    Evaluation, EvaluationState, KeyRules, LabelLine, LabelResult, StateError, Summary,
    parse_label_lines, truth::LabelLineError,
};
use shadow_core::http::{Exchange, Protocol};
use shadow_core::noise::{NoiseLimits, NoiseModel, NoiseSummary, NoiseVerdict};
use shadow_core::vocabulary::{AgreementUnit, MirrorResult, Model, ShadowFailure, SkipReason};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// At most one "shadow saturated" warning per this long.
const SATURATION_WARNING_EVERY: Duration = Duration::from_secs(30);
/// At most one warning per kind of replay failure per this long (the first at once).
const FAILURE_WARNING_EVERY: Duration = Duration::from_secs(60);
/// Distinct noisy paths the noise model keeps (the rest are counted as `(other)`).
const MAX_NOISY_PATHS: usize = 256;
/// The noisiest paths `/api/summary` and the run summary show.
const NOISY_PATHS_SHOWN: usize = 20;

/// Where the mirror hands every comparison that found a difference (the discrepancy log
/// implements it). Called on the replay workers: it must not wait.
pub trait DiscrepancySink: Send + Sync {
    /// `comparison` of `job` has at least one discrepancy; `noise` is the noise baseline's
    /// verdict on it (`None` without a baseline).
    fn discrepancy(&self, job: &Job, comparison: &Comparison, noise: Option<&NoiseVerdict>);
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
    /// What the noise baseline taught, and the shadow's discrepancies split into noise and
    /// real ones (`None` without a baseline).
    pub noise: Option<NoiseSummary>,
}

/// The replay stage's load and settings, as `/api/summary` shows them.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayStatus {
    /// `production` or `asap`.
    pub pacing: &'static str,
    /// Replays sent and not answered yet.
    pub in_flight: usize,
    /// Replays in flight at most (`shadow.concurrency`).
    pub concurrency: usize,
    /// Replays waiting in the queue.
    pub queued: usize,
    /// Queue depth (`mirror.queue`).
    pub queue_capacity: usize,
}

/// The evaluation behind a lock, with the clock its label join runs on.
#[derive(Debug)]
struct SharedEvaluation {
    evaluation: Mutex<Evaluation>,
    /// Where request ids and segments are read from (a copy, read without the lock).
    rules: KeyRules,
    origin: Instant,
}

impl SharedEvaluation {
    fn lock(&self) -> std::sync::MutexGuard<'_, Evaluation> {
        self.evaluation.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Time on the join's clock.
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// What happened to the lines of one batch of labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LabelReport {
    /// Lines joined with their waiting request.
    pub joined: u64,
    /// Lines for ids never seen (or long forgotten).
    pub unknown: u64,
    /// Lines that came after their request stopped waiting.
    pub late: u64,
    /// Lines for requests already labeled.
    pub duplicate: u64,
    /// Lines refused as malformed.
    pub malformed: u64,
    /// The first few refused lines: `line N: why`.
    pub errors: Vec<String>,
}

/// Refused label lines listed in a [`LabelReport`], at most.
const MAX_REPORTED_LABEL_ERRORS: usize = 10;

impl LabelReport {
    /// A report of the refused lines (line number, why) only.
    fn refused(refused: &[(usize, LabelLineError)]) -> Self {
        LabelReport {
            malformed: refused.len() as u64,
            errors: refused
                .iter()
                .take(MAX_REPORTED_LABEL_ERRORS)
                .map(|(line, e)| format!("line {line}: {e}"))
                .collect(),
            ..LabelReport::default()
        }
    }
}

/// A read-only view of a mirror's running aggregates (for `/api/summary`), through which
/// labels arrive.
#[derive(Clone, Debug)]
pub struct MirrorStatus {
    evaluation: Arc<SharedEvaluation>,
    breaker: Arc<SharedBreaker>,
    queue: Arc<SharedQueue>,
    in_flight: Arc<AtomicUsize>,
    noise: Option<Arc<Mutex<NoiseModel>>>,
}

impl MirrorStatus {
    /// What the noise baseline taught so far (`None` without a baseline).
    pub fn noise(&self) -> Option<NoiseSummary> {
        self.noise.as_ref().map(|n| noise_summary(n))
    }

    /// Agreement, accuracy and latency so far.
    pub fn evaluation(&self) -> Summary {
        self.evaluation.lock().summary()
    }

    /// What the success criteria are judged on (without resources).
    pub fn measurements(&self) -> Measurements {
        self.evaluation.lock().measurements()
    }

    /// The aggregates to save.
    pub fn state(&self) -> EvaluationState {
        self.evaluation.lock().state()
    }

    /// Continues from saved aggregates.
    pub fn restore(&self, state: EvaluationState) -> Result<(), StateError> {
        self.evaluation.lock().restore(state)
    }

    /// Requests whose wait for a label is over stop waiting.
    pub fn expire_labels(&self) {
        let now = self.evaluation.now();
        self.evaluation.lock().expire(now);
    }

    /// Every request still waiting for its label stops waiting (at stop), counted as expired;
    /// returns how many.
    pub fn drain_labels(&self) -> usize {
        self.evaluation.lock().drain_pending()
    }

    /// Applies a batch of label lines (JSON lines, see [`shadow_core::evaluation::truth`]).
    pub fn labels(&self, text: &str) -> LabelReport {
        let (lines, refused) = parse_label_lines(text);
        let mut report = LabelReport::refused(&refused);
        let now = self.evaluation.now();
        let mut e = self.evaluation.lock();
        e.malformed_labels(report.malformed);
        for LabelLine { id, truth } in lines {
            match e.label(&id, truth, now) {
                LabelResult::Joined => report.joined += 1,
                LabelResult::Unknown => report.unknown += 1,
                LabelResult::Late => report.late += 1,
                LabelResult::Duplicate => report.duplicate += 1,
            }
        }
        report
    }

    /// Keeps labels known before their requests (an offline label file); returns how many were
    /// kept and the report of the refused lines.
    pub fn preload_labels(&self, text: &str) -> (u64, LabelReport) {
        let (lines, refused) = parse_label_lines(text);
        let mut e = self.evaluation.lock();
        e.malformed_labels(refused.len() as u64);
        let kept = lines
            .into_iter()
            .filter(|l| e.preload(l.id.clone(), l.truth.clone()))
            .count() as u64;
        (kept, LabelReport::refused(&refused))
    }

    /// The shadow circuit breaker's state now.
    pub fn breaker(&self) -> BreakerState {
        self.breaker.state()
    }

    /// The replay stage's load now.
    pub fn replay(&self) -> ReplayStatus {
        let q = self.queue.lock();
        ReplayStatus {
            pacing: q.pacing().as_str(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            concurrency: q.concurrency(),
            queued: q.len(),
            queue_capacity: q.capacity(),
        }
    }
}

/// The running summary of a noise model.
fn noise_summary(model: &Mutex<NoiseModel>) -> NoiseSummary {
    model
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .summary(NOISY_PATHS_SHOWN)
}

/// The noise baseline: a second instance of the production model, and what it taught.
struct Baseline {
    client: ShadowClient,
    noise: Arc<Mutex<NoiseModel>>,
    failure_warnings: Mutex<Throttle<()>>,
}

/// Everything the replay workers share.
struct Worker {
    client: ShadowClient,
    /// The noise baseline, when configured.
    baseline: Option<Baseline>,
    /// Replaced by a reload (`compare.*`); each replay compares with the one current when it
    /// finishes.
    comparer: Arc<RwLock<Arc<Comparer>>>,
    breaker: Arc<SharedBreaker>,
    evaluation: Arc<SharedEvaluation>,
    telemetry: Arc<dyn Telemetry>,
    discrepancies: Option<Box<dyn DiscrepancySink>>,
    /// Answers slower than this count as shadow failures for the breaker.
    slow_call: Option<Duration>,
    failure_warnings: Mutex<Throttle<ShadowFailure>>,
}

/// The mirror, built and ready to run.
pub struct Mirror {
    config: Arc<Config>,
    worker: Worker,
    queue: Arc<SharedQueue>,
    in_flight: Arc<AtomicUsize>,
    /// Admission waits for room in the replay queue instead of refusing (`queue_full`).
    wait_for_room: bool,
    /// Reloaded configurations (SIGHUP), if the caller reloads.
    reloads: Option<watch::Receiver<Arc<Config>>>,
}

impl Mirror {
    /// Builds the shadow client, comparer, breaker and replay queue, reporting to `telemetry`.
    pub fn new(config: Arc<Config>, telemetry: Arc<dyn Telemetry>) -> Mirror {
        let baseline = config.shadow.baseline.as_ref().map(|url| Baseline {
            client: ShadowClient::baseline(&config.shadow, url),
            noise: Arc::new(Mutex::new(NoiseModel::new(NoiseLimits {
                max_paths: MAX_NOISY_PATHS,
                max_diffs: config.compare.diff.max_diffs,
            }))),
            failure_warnings: Mutex::new(Throttle::new(FAILURE_WARNING_EVERY)),
        });
        let worker = Worker {
            client: ShadowClient::new(&config.shadow, telemetry.clone()),
            baseline,
            comparer: Arc::new(RwLock::new(Arc::new(config.compare.comparer()))),
            breaker: Arc::new(SharedBreaker::new(
                CircuitBreaker::new(&config.circuit_breaker),
                telemetry.clone(),
            )),
            evaluation: Arc::new(SharedEvaluation {
                evaluation: Mutex::new(Evaluation::new(
                    config.ground_truth.rules.clone(),
                    config.ground_truth.limits,
                )),
                rules: config.ground_truth.rules.clone(),
                origin: Instant::now(),
            }),
            telemetry,
            discrepancies: None,
            slow_call: config.circuit_breaker.slow_call,
            failure_warnings: Mutex::new(Throttle::new(FAILURE_WARNING_EVERY)),
        };
        let queue = Arc::new(SharedQueue::new(ReplayQueue::new(
            config.mirror.pacing,
            config.mirror.queue.get(),
            config.shadow.concurrency.get(),
            Instant::now(),
        )));
        Mirror {
            config,
            worker,
            queue,
            in_flight: Arc::new(AtomicUsize::new(0)),
            wait_for_room: false,
            reloads: None,
        }
    }

    /// Admission waits for room in the replay queue rather than refusing a job when it is
    /// full: for an offline replay of a capture file, whose reader can wait (a live tap
    /// cannot), so that a slow shadow loses nothing.
    pub fn waiting_for_room(mut self) -> Self {
        self.wait_for_room = true;
        self
    }

    /// Applies each configuration `reloads` publishes: filters, sampling, rate limit
    /// ([`Admitter::reconfigure`]) and compare settings, without stopping or resetting
    /// anything (which keys a reload may change: `config::reload`).
    pub fn with_reloads(mut self, reloads: watch::Receiver<Arc<Config>>) -> Self {
        self.reloads = Some(reloads);
        self
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
            queue: self.queue.clone(),
            in_flight: self.in_flight.clone(),
            noise: self.worker.baseline.as_ref().map(|b| b.noise.clone()),
        }
    }

    /// Runs admission and replay until `exchanges` closes or shutdown is requested.
    pub async fn run(self, exchanges: mpsc::Receiver<Exchange>, shutdown: Shutdown) -> RunSummary {
        let Mirror {
            config,
            worker,
            queue,
            in_flight,
            wait_for_room,
            reloads,
        } = self;
        let admitter = Admitter::new(
            &config,
            worker.breaker.clone(),
            queue.clone(),
            worker.telemetry.clone(),
        );
        let room = wait_for_room.then(|| queue.clone());
        let reconfigure = Reconfigure {
            reloads,
            comparer: worker.comparer.clone(),
        };
        let admission_task = tokio::spawn(admit(
            admitter,
            exchanges,
            room,
            reconfigure,
            shutdown.clone(),
        ));
        let worker = Arc::new(worker);
        let dispatcher = Dispatcher {
            queue,
            worker: worker.clone(),
            in_flight,
            saturation_warnings: Throttle::new(SATURATION_WARNING_EVERY),
            admission_waits: wait_for_room,
            reported: None,
        };
        let (replayed, abandoned) = dispatcher.run(shutdown).await;
        let stats = admission_task.await.unwrap_or_default();
        let evaluation = worker.evaluation.lock().summary();
        let noise = worker.baseline.as_ref().map(|b| noise_summary(&b.noise));
        RunSummary {
            admission: stats,
            replayed,
            abandoned,
            evaluation,
            noise,
        }
    }
}

/// Where reloaded configurations arrive and what they replace besides admission.
struct Reconfigure {
    reloads: Option<watch::Receiver<Arc<Config>>>,
    comparer: Arc<RwLock<Arc<Comparer>>>,
}

impl Reconfigure {
    /// The next reloaded configuration (never, without reloads or once their sender is gone).
    async fn next(&mut self) -> Arc<Config> {
        let Some(reloads) = &mut self.reloads else {
            return std::future::pending().await;
        };
        if reloads.changed().await.is_err() {
            self.reloads = None;
            return std::future::pending().await;
        }
        reloads.borrow_and_update().clone()
    }

    /// Applies `config` to admission and to the comparer.
    fn apply(&self, config: &Config, admitter: &mut Admitter) {
        admitter.reconfigure(config);
        *self.comparer.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(config.compare.comparer());
    }
}

/// Offers each exchange to admission until `exchanges` closes or shutdown is requested, then
/// closes the replay queue; applies reloaded configurations between exchanges. With `room`,
/// each exchange first waits until that queue has room.
async fn admit(
    mut admitter: Admitter,
    mut exchanges: mpsc::Receiver<Exchange>,
    room: Option<Arc<SharedQueue>>,
    mut reconfigure: Reconfigure,
    mut shutdown: Shutdown,
) -> AdmissionStats {
    loop {
        tokio::select! {
            biased;
            _ = shutdown.requested() => break,
            config = reconfigure.next() => reconfigure.apply(&config, &mut admitter),
            next = exchanges.recv() => match next {
                Some(exchange) => {
                    if let Some(queue) = &room
                        && !wait_for_room(queue, &mut shutdown).await
                    {
                        break;
                    }
                    admitter.offer(exchange);
                }
                None => break,
            },
        }
    }
    admitter.close();
    admitter.stats().clone()
}

/// How often a full queue is looked at again by admission waiting for room.
const ROOM_POLL: Duration = Duration::from_millis(1);

/// Waits until `queue` has room for a job (admission is its only producer, so the room is
/// still there when the job comes); false if shutdown came first.
async fn wait_for_room(queue: &SharedQueue, shutdown: &mut Shutdown) -> bool {
    loop {
        {
            let q = queue.lock();
            if q.len() < q.capacity() {
                return true;
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.requested() => return false,
            _ = tokio::time::sleep(ROOM_POLL) => {}
        }
    }
}

/// Takes jobs off the replay queue when its pacing allows and replays them.
struct Dispatcher {
    queue: Arc<SharedQueue>,
    worker: Arc<Worker>,
    in_flight: Arc<AtomicUsize>,
    saturation_warnings: Throttle<()>,
    /// Admission waits for room in a full queue ([`Mirror::waiting_for_room`]), said in the
    /// saturation warning.
    admission_waits: bool,
    /// The load last reported.
    reported: Option<ReplayLoad>,
}

impl Dispatcher {
    /// Runs until the queue is closed and empty and every replay has finished, or shutdown.
    /// Returns (replayed, abandoned).
    async fn run(mut self, mut shutdown: Shutdown) -> (u64, u64) {
        let queue = self.queue.clone();
        let mut tasks = JoinSet::new();
        let mut replayed = 0u64;
        let mut production_in_flight = None;
        loop {
            let (next, queued, closed) = {
                let mut q = queue.lock();
                let next = q.next(Instant::now(), tasks.len());
                let refused = q.take_refused();
                if let Next::Blocked { limit } = &next {
                    self.saturated(tasks.len(), *limit, &q, refused);
                }
                (next, q.len(), q.is_closed())
            };
            let mut wake = None;
            match next {
                Next::Release(released) => {
                    production_in_flight = released.production_in_flight;
                    self.release(released, &mut tasks);
                    self.report_load(tasks.len(), queued, production_in_flight);
                    // More may be due at once.
                    continue;
                }
                Next::WaitUntil(at) => wake = Some(at),
                Next::Blocked { .. } => {}
                Next::Empty if closed && tasks.is_empty() => break,
                Next::Empty => {}
            }
            self.report_load(tasks.len(), queued, production_in_flight);
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.requested() => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => replayed += 1,
                _ = queue.changed() => {}
                _ = sleep => {}
            }
        }
        // Whatever is still queued after shutdown is not sent.
        let abandoned = queue.lock().abandon();
        for _ in &abandoned {
            self.worker.telemetry.skipped(SkipReason::Abandoned);
        }
        let abandoned = abandoned.len() as u64;
        self.report_load(tasks.len(), 0, production_in_flight);
        // In-flight replays end within the per-request timeout.
        while tasks.join_next().await.is_some() {
            replayed += 1;
            self.report_load(tasks.len(), 0, production_in_flight);
        }
        if abandoned > 0 {
            tracing::info!(abandoned, "queued mirror requests abandoned at shutdown");
        }
        (replayed, abandoned)
    }

    /// Starts replaying a job that left the queue.
    fn release(&self, released: Box<Released>, tasks: &mut JoinSet<()>) {
        let Released { job, waited, .. } = *released;
        self.worker.telemetry.queue_waited(waited);
        self.worker
            .evaluation
            .lock()
            .record_queue_wait(u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX));
        let worker = self.worker.clone();
        tasks.spawn(async move { worker.process(job).await });
    }

    /// Reports the load when it changed.
    fn report_load(&mut self, in_flight: usize, queued: usize, production: Option<usize>) {
        self.in_flight.store(in_flight, Ordering::Relaxed);
        let load = ReplayLoad {
            in_flight,
            queued,
            production_in_flight: production,
        };
        if self.reported != Some(load) {
            self.worker.telemetry.replay_load(load);
            self.reported = Some(load);
        }
    }

    /// A due job waits for capacity: warns (rate-limited) when the queue is half full or
    /// refused jobs since the last look.
    fn saturated(&mut self, in_flight: usize, limit: usize, q: &ReplayQueue, refused: u64) {
        let filling = q.len() * 2 >= q.capacity() || refused > 0;
        if !filling {
            return;
        }
        if let Some(suppressed) = self.saturation_warnings.allow((), Instant::now()) {
            self.worker.telemetry.warning(&Warning::ShadowSaturated {
                in_flight,
                limit,
                concurrency: q.concurrency(),
                queued: q.len(),
                capacity: q.capacity(),
                admission_waits: self.admission_waits,
                suppressed,
            });
        }
    }
}

impl Worker {
    /// Replay (to the shadow and the noise baseline at once) → compare → telemetry,
    /// evaluation and discrepancy sink for one job.
    async fn process(&self, job: Job) {
        // The breaker judges the shadow's answer (against production's) as soon as it is in,
        // whatever the baseline does; it knows the replay is in flight from now on.
        // The replay futures (hyper's request state) are kilobytes: boxed, the task's future
        // stays small, and spawning it no longer copies them around (a tenth of the daemon's
        // CPU went to those copies).
        let shadow = async {
            let prod_latency = job.timing.latency_ns().map(Duration::from_nanos);
            let in_flight = self.breaker.start(job.permit, prod_latency, Instant::now());
            let answer = Box::pin(self.client.replay(job.protocol, &job.request)).await;
            match &answer {
                Ok(answer) => {
                    let judged = judge(answer, &job.prod_response, prod_latency, self.slow_call);
                    if let Judgement::Failure(failure) = judged {
                        self.failed(failure, || {
                            describe_failure(&job, answer, failure, self.slow_call)
                        });
                    }
                    in_flight.finish(judged, Instant::now());
                }
                Err(e) => {
                    self.failed(ShadowFailure::Request, || {
                        format!("{}: not replayed: {e}", request_line(&job))
                    });
                    // Never sent: the permit goes back.
                    drop(in_flight);
                }
            }
            answer
        };
        let baseline = async {
            match &self.baseline {
                Some(b) => Some(Box::pin(b.client.replay(job.protocol, &job.request)).await),
                None => None,
            }
        };
        let (answer, baseline_answer) = tokio::join!(shadow, baseline);
        // Learned before the shadow's comparison is judged: this request's noise counts too.
        if let (Some(b), Some(baseline_answer)) = (&self.baseline, baseline_answer) {
            self.learn_noise(b, &job, baseline_answer);
        }
        let Ok(answer) = answer else {
            self.telemetry
                .replayed(job.protocol, MirrorResult::RequestError);
            return;
        };
        let comparison = self.comparer().compare_request(
            &job.request,
            &job.prod_response,
            job.timing.latency_ns(),
            &answer,
        );
        let noise = self.baseline.as_ref().map(|b| {
            b.noise
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .judge(&comparison)
        });
        self.publish(&job, &comparison, noise.as_ref());
        self.report_grpc_status(&job, &answer);
        // Reported last: once a request shows as replayed, its comparison is in every sink.
        self.telemetry
            .replayed(job.protocol, MirrorResult::of(&answer));
    }

    /// Compares production with the baseline's answer and teaches the noise model; a failed
    /// baseline replay teaches nothing and is warned about (rate-limited).
    fn learn_noise(
        &self,
        baseline: &Baseline,
        job: &Job,
        answer: Result<ShadowAnswer, ReplayError>,
    ) {
        let (result, comparison, failure) = match answer {
            Ok(answer) => {
                let comparison = self.comparer().compare_request(
                    &job.request,
                    &job.prod_response,
                    job.timing.latency_ns(),
                    &answer,
                );
                let failure = match &answer {
                    ShadowAnswer::Failed { message, .. } => Some(message.clone()),
                    ShadowAnswer::Response { .. } => None,
                };
                (MirrorResult::of(&answer), Some(comparison), failure)
            }
            Err(e) => (
                MirrorResult::RequestError,
                None,
                Some(format!("not replayed: {e}")),
            ),
        };
        {
            let mut noise = baseline.noise.lock().unwrap_or_else(|e| e.into_inner());
            match &comparison {
                Some(c) => noise.learn(c),
                None => noise.baseline_failed(),
            }
        }
        self.telemetry.baseline_replayed(result);
        if let Some(message) = failure {
            let allowed = baseline
                .failure_warnings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .allow((), Instant::now());
            if let Some(suppressed) = allowed {
                self.telemetry.warning(&Warning::BaselineFailed {
                    detail: format!("{}: {message}", request_line(job)),
                    suppressed,
                });
            }
        }
    }

    /// Warns about a failed replay: the first of each kind at once, then at most one per
    /// [`FAILURE_WARNING_EVERY`].
    /// The comparer in force.
    fn comparer(&self) -> Arc<Comparer> {
        self.comparer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn failed(&self, failure: ShadowFailure, detail: impl FnOnce() -> String) {
        let allowed = self
            .failure_warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(failure, Instant::now());
        if let Some(suppressed) = allowed {
            self.telemetry.warning(&Warning::ReplayFailed {
                failure,
                detail: detail(),
                suppressed,
            });
        }
    }

    /// Telemetry, evaluation and discrepancy sink for one comparison (with the noise
    /// baseline's verdict on it, when there is a baseline).
    fn publish(&self, job: &Job, c: &Comparison, noise: Option<&NoiseVerdict>) {
        self.telemetry.compared(job.protocol, c);
        if noise.is_some_and(|v| v.noise) {
            for kind in &c.discrepancies {
                self.telemetry.noise_discrepancy(*kind);
            }
        }
        // Read before the lock: the request's id and segment (parses the body only when a
        // pointer is configured).
        let keys = self.evaluation.rules.keys(&job.request);
        let now = self.evaluation.now();
        {
            // The ratios are reported under the lock: concurrent workers cannot leave a stale
            // one. A unit without samples yet reports nothing (absent, not 0).
            let mut e = self.evaluation.lock();
            e.record(c, &keys, now);
            for unit in AgreementUnit::ALL {
                if let Some(r) = e.agreement_ratio(unit) {
                    self.telemetry.agreement(unit, r);
                }
            }
        }
        if let Some(sink) = &self.discrepancies
            && !c.discrepancies.is_empty()
        {
            sink.discrepancy(job, c, noise);
        }
    }

    /// The gRPC status of both answers of a compared gRPC call (the shadow's only when it
    /// answered).
    fn report_grpc_status(&self, job: &Job, answer: &ShadowAnswer) {
        if job.protocol != Protocol::Grpc {
            return;
        }
        let production = &job.prod_response;
        self.telemetry.grpc_status(
            Model::Production,
            GrpcStatusLabel::of_answer(&production.headers, &production.trailers),
        );
        if let ShadowAnswer::Response {
            headers, trailers, ..
        } = answer
        {
            self.telemetry
                .grpc_status(Model::Shadow, GrpcStatusLabel::of_answer(headers, trailers));
        }
    }
}

/// `METHOD /path` of a job (without the query, which may carry secrets).
fn request_line(job: &Job) -> String {
    let path = job.request.target.split('?').next().unwrap_or_default();
    format!("{} {path}", job.request.method)
}

/// What went wrong with a replay (`failure`), for the log.
fn describe_failure(
    job: &Job,
    answer: &ShadowAnswer,
    failure: ShadowFailure,
    slow_call: Option<Duration>,
) -> String {
    let line = request_line(job);
    let slower = |latency_ns: u64| {
        format!(
            "after {:.1} ms, slower than circuit_breaker.slow_call_ms ({:?}) and production",
            latency_ns as f64 / 1e6,
            slow_call.unwrap_or_default()
        )
    };
    match (answer, failure) {
        (
            ShadowAnswer::Failed {
                message,
                latency_ns,
                ..
            },
            ShadowFailure::Slow,
        ) => format!("{line}: {message} {}", slower(*latency_ns)),
        (ShadowAnswer::Failed { message, .. }, _) => format!("{line}: {message}"),
        (ShadowAnswer::Response { latency_ns, .. }, ShadowFailure::Slow) => {
            format!("{line}: the shadow answered {}", slower(*latency_ns))
        }
        (
            ShadowAnswer::Response {
                status, latency_ns, ..
            },
            _,
        ) => format!(
            "{line}: the shadow answered {status} after {:.1} ms",
            *latency_ns as f64 / 1e6
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::tests::exchange;
    use crate::telemetry::{BreakerCause, BreakerChange, Event, Recorder};
    use shadow_core::vocabulary::{DiscrepancyKind, OUTCOMES, Outcome, SkipReason};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Keeps the jobs handed to it.
    #[derive(Clone, Default)]
    struct Jobs(Arc<Mutex<Vec<(Job, Comparison)>>>);

    impl DiscrepancySink for Jobs {
        fn discrepancy(&self, job: &Job, comparison: &Comparison, _: Option<&NoiseVerdict>) {
            self.0
                .lock()
                .unwrap()
                .push((job.clone(), comparison.clone()));
        }
    }

    /// A config for a shadow at `shadow`, plus `extra` TOML.
    fn config(shadow: std::net::SocketAddr, extra: &str) -> Arc<Config> {
        let text = format!(
            "[capture]\ninterface = \"lo\"\nports = [8080]\n[shadow]\nurl = \"http://{shadow}\"\n{extra}"
        );
        Arc::new(Config::from_toml(&text, std::path::Path::new("test.toml")).unwrap())
    }

    /// A shadow on 127.0.0.1 that reads requests and never answers.
    async fn hanging_shadow() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    /// Waits (bounded) until `cond` holds on the recorded events.
    async fn wait_for(recorder: &Recorder, what: &str, cond: impl Fn(&[Event]) -> bool) {
        for _ in 0..2000 {
            if cond(&recorder.events()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}: {:?}", recorder.events());
    }

    /// Every exchange seen ends as exactly one replay result or one skip reason.
    fn assert_accounted(recorder: &Recorder) {
        let seen = recorder.count_where(|e| matches!(e, Event::ExchangeSeen(..)));
        let replayed = recorder.count_where(|e| matches!(e, Event::Replayed(..)));
        let skipped = recorder.count_where(|e| matches!(e, Event::Skipped(_)));
        assert_eq!(seen, replayed + skipped, "{:?}", recorder.events());
    }

    /// A server on 127.0.0.1 answering every request with `status` (e.g. `200 OK`) and `body`
    /// (then closing).
    async fn answering_with(status: &'static str, body: &'static str) -> std::net::SocketAddr {
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
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        addr
    }

    /// A server on 127.0.0.1 answering every request with `200` and `body`.
    async fn answering(body: &'static str) -> std::net::SocketAddr {
        answering_with("200 OK", body).await
    }

    /// Runs a mirror replaying `n` exchanges (production answered `{}`) to `shadow` and
    /// `baseline`; returns the events, the jobs handed to the sink with the noise verdicts,
    /// and the noise summary.
    async fn with_baseline(
        shadow: std::net::SocketAddr,
        baseline: std::net::SocketAddr,
        n: usize,
    ) -> (Arc<Recorder>, Vec<Option<NoiseVerdict>>, NoiseSummary) {
        #[derive(Clone, Default)]
        struct Verdicts(Arc<Mutex<Vec<Option<NoiseVerdict>>>>);
        impl DiscrepancySink for Verdicts {
            fn discrepancy(&self, _: &Job, _: &Comparison, noise: Option<&NoiseVerdict>) {
                self.0.lock().unwrap().push(noise.cloned());
            }
        }
        let extra = format!("baseline = \"http://{baseline}\"\n[mirror]\npacing = \"asap\"\n");
        let recorder = Arc::new(Recorder::new());
        let verdicts = Verdicts::default();
        let mirror = Mirror::new(config(shadow, &extra), recorder.clone())
            .with_discrepancy_sink(verdicts.clone());
        let status = mirror.status();
        let (tx, rx) = mpsc::channel(16);
        for i in 0..n {
            tx.send(exchange("POST", "/infer", &i.to_string()))
                .await
                .unwrap();
        }
        drop(tx);
        let (_trigger, shutdown) = crate::shutdown::channel();
        let summary = mirror.run(rx, shutdown).await;
        assert_eq!(summary.noise.as_ref(), status.noise().as_ref());
        let noise = status.noise().expect("a baseline is configured");
        let verdicts = verdicts.0.lock().unwrap().clone();
        (recorder, verdicts, noise)
    }

    #[tokio::test]
    async fn a_failing_baseline_changes_nothing_for_the_shadow() {
        let shadow = answering("{\"x\":1}").await;
        // A port nobody listens on: the baseline refuses every connection.
        let down = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (recorder, verdicts, noise) = with_baseline(shadow, down, 12).await;
        // Every shadow replay compared and counted as usual; the breaker never moved although
        // every baseline replay failed.
        assert_eq!(
            recorder.count(&Event::Replayed(Protocol::Http1, MirrorResult::Ok)),
            12
        );
        assert_eq!(
            recorder.count(&Event::BaselineReplayed(MirrorResult::ConnectError)),
            12
        );
        assert_eq!(recorder.breaker_states(), vec![BreakerState::Closed]);
        let warnings = recorder.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            matches!(&warnings[0], Warning::BaselineFailed { detail, .. } if detail.starts_with("POST /infer: ")),
            "{warnings:?}"
        );
        // Nothing learned, so the shadow's difference at /x is real.
        assert_eq!(
            recorder.count_where(|e| matches!(e, Event::NoiseDiscrepancy(_))),
            0
        );
        assert_eq!(verdicts.len(), 12);
        for v in verdicts {
            let v = v.expect("a verdict with a baseline");
            assert!(!v.noise);
            assert_eq!(v.real_paths, vec!["/x".to_string()]);
        }
        assert_eq!((noise.baseline_compared, noise.baseline_failed), (0, 12));
        assert_eq!((noise.shadow.noise, noise.shadow.real), (0, 12));
    }

    #[tokio::test]
    async fn what_production_and_its_baseline_disagree_on_is_noise() {
        let shadow = answering("{\"x\":1}").await;
        let baseline = answering("{\"x\":2}").await;
        let (recorder, verdicts, noise) = with_baseline(shadow, baseline, 3).await;
        assert_eq!(
            recorder.count(&Event::BaselineReplayed(MirrorResult::Ok)),
            3
        );
        assert_eq!(
            recorder.count(&Event::NoiseDiscrepancy(DiscrepancyKind::Body)),
            3
        );
        for v in verdicts {
            let v = v.unwrap();
            assert!(v.noise);
            assert_eq!(v.noisy_paths, vec!["/x".to_string()]);
        }
        assert_eq!(noise.baseline_compared, 3);
        assert_eq!(noise.noisy_paths[0].path, "/x");
        assert_eq!(noise.noisy_paths[0].comparisons, 3);
        assert_eq!(noise.shadow_by_kind["body"].noise, 3);
        // The baseline event comes before the shadow's replay of the same request is reported.
        let events = recorder.events();
        let first_baseline = events
            .iter()
            .position(|e| matches!(e, Event::BaselineReplayed(_)))
            .unwrap();
        let first_replay = events
            .iter()
            .position(|e| matches!(e, Event::Replayed(..)))
            .unwrap();
        assert!(first_baseline < first_replay, "{events:?}");
    }

    /// A shadow on 127.0.0.1 answering every request with an empty 503.
    async fn unavailable_shadow() -> std::net::SocketAddr {
        answering_with("503 Service Unavailable", "").await
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
        assert_eq!(status.evaluation().overall.compared, 1);
        let events = recorder.events();
        assert_eq!(
            events[0],
            Event::BreakerChanged(BreakerChange {
                state: BreakerState::Closed,
                cause: BreakerCause::Start
            })
        );
        assert_eq!(
            recorder.count(&Event::ExchangeSeen(Protocol::Http1, Outcome::Complete)),
            2
        );
        assert_eq!(recorder.count(&Event::Skipped(SkipReason::Filtered)), 1);
        let compared = events
            .iter()
            .position(|e| matches!(e, Event::Compared(..)))
            .expect("the replayed request was compared");
        let replayed = events
            .iter()
            .position(|e| *e == Event::Replayed(Protocol::Http1, MirrorResult::Ok))
            .expect("the replay was reported");
        assert!(compared < replayed, "replayed is reported last: {events:?}");
        let Event::Compared(Protocol::Http1, c) = &events[compared] else {
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
        assert_eq!(&handed[0].1, c.as_ref());
    }

    #[tokio::test]
    async fn every_exchange_is_accounted_for_and_failures_are_warned_once() {
        let shadow = unavailable_shadow().await;
        let recorder = Arc::new(Recorder::new());
        let mirror = Mirror::new(config(shadow, ""), recorder.clone());
        let (tx, rx) = mpsc::channel(64);
        // Every outcome, a filtered request and three replays the shadow answers with 503.
        for outcome in OUTCOMES {
            let mut ex = exchange("POST", "/infer", "{}");
            ex.outcome = outcome;
            tx.send(ex).await.unwrap();
        }
        tx.send(exchange("DELETE", "/infer", "")).await.unwrap();
        for i in 0..2 {
            tx.send(exchange("POST", "/infer", &i.to_string()))
                .await
                .unwrap();
        }
        drop(tx);
        let (_trigger, shutdown) = crate::shutdown::channel();
        let summary = mirror.run(rx, shutdown).await;

        assert_accounted(&recorder);
        assert_eq!(summary.admission.exchanges, OUTCOMES.len() as u64 + 3);
        assert_eq!(summary.replayed, 3);
        for outcome in OUTCOMES.into_iter().filter(|o| *o != Outcome::Complete) {
            let reason = SkipReason::NotReplayable(outcome);
            assert_eq!(recorder.count(&Event::Skipped(reason)), 1, "{outcome:?}");
            assert_eq!(summary.admission.skipped[reason.as_str()], 1);
        }
        assert_eq!(
            recorder.count(&Event::Replayed(Protocol::Http1, MirrorResult::Ok)),
            3
        );
        // Three 503s: one warning, the next two held back (within the minute).
        let warnings = recorder.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let Warning::ReplayFailed {
            failure, detail, ..
        } = &warnings[0]
        else {
            panic!("{warnings:?}")
        };
        assert_eq!(*failure, ShadowFailure::ServerError);
        assert!(
            detail.contains("POST /infer: the shadow answered 503"),
            "{detail}"
        );
        // Agreement is undefined (production's `{}` has no prediction): never reported as 0.
        assert_eq!(
            recorder.count_where(|e| matches!(e, Event::Agreement(..))),
            0
        );
        assert_eq!(summary.evaluation.overall.agreement.request.ratio, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_abandons_queued_replays_and_counts_them() {
        let shadow = hanging_shadow().await;
        let recorder = Arc::new(Recorder::new());
        let extra = "[circuit_breaker]\nenabled = false\n[mirror]\nqueue = 4\n";
        let mut config = (*config(shadow, extra)).clone();
        config.shadow.concurrency = std::num::NonZeroUsize::MIN;
        config.shadow.timeout = Duration::from_secs(2);
        let mirror = Mirror::new(Arc::new(config), recorder.clone());
        let status = mirror.status();
        let (tx, rx) = mpsc::channel(64);
        let (trigger, shutdown) = crate::shutdown::channel();
        let run = tokio::spawn(mirror.run(rx, shutdown));
        let send = |i: usize| tx.send(exchange("POST", "/infer", &i.to_string()));
        send(0).await.unwrap();
        let load = |in_flight, queued| {
            Event::ReplayLoad(ReplayLoad {
                in_flight,
                queued,
                production_in_flight: Some(1),
            })
        };
        wait_for(&recorder, "one replay in flight", |e| {
            e.contains(&load(1, 0))
        })
        .await;
        for i in 1..10 {
            send(i).await.unwrap();
        }
        // One in flight at the hanging shadow, four queued, five refused (queue_full).
        wait_for(&recorder, "a full queue behind one replay", |events| {
            events.contains(&load(1, 4))
                && events
                    .iter()
                    .filter(|e| matches!(e, Event::ExchangeSeen(..)))
                    .count()
                    == 10
        })
        .await;
        let replay = status.replay();
        assert_eq!(
            (replay.in_flight, replay.queued, replay.queue_capacity),
            (1, 4, 4)
        );
        assert_eq!(replay.pacing, "production");
        // Jobs wait for capacity with the queue full: the shadow is saturated, said once.
        let saturated: Vec<Warning> = recorder
            .warnings()
            .into_iter()
            .filter(|w| matches!(w, Warning::ShadowSaturated { .. }))
            .collect();
        assert_eq!(saturated.len(), 1, "{saturated:?}");
        let Warning::ShadowSaturated {
            in_flight,
            limit,
            concurrency,
            capacity,
            admission_waits,
            ..
        } = saturated[0]
        else {
            unreachable!()
        };
        assert_eq!((in_flight, limit, concurrency, capacity), (1, 1, 1, 4));
        assert!(
            !admission_waits,
            "a live mirror drops when the queue is full"
        );
        trigger.trigger();
        let summary = run.await.unwrap();
        assert_eq!(summary.abandoned, 4);
        assert_eq!(summary.replayed, 1);
        assert_eq!(recorder.count(&Event::Skipped(SkipReason::Abandoned)), 4);
        assert_eq!(recorder.count(&Event::Skipped(SkipReason::QueueFull)), 5);
        assert_eq!(
            recorder.count(&Event::Replayed(Protocol::Http1, MirrorResult::Timeout)),
            1
        );
        assert_accounted(&recorder);
        assert_eq!(
            recorder.events().last(),
            Some(&load(0, 0)),
            "the gauges end at zero"
        );
        // The queue wait of the one sent, and the timeout warned about once.
        assert_eq!(
            recorder.count_where(|e| matches!(e, Event::QueueWaited(_))),
            1
        );
        assert!(recorder.warnings().iter().any(|w| matches!(
            w,
            Warning::ReplayFailed {
                failure: ShadowFailure::Timeout,
                ..
            }
        )));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_for_room_drops_nothing_and_its_saturation_warning_says_so() {
        let shadow = hanging_shadow().await;
        let recorder = Arc::new(Recorder::new());
        let extra = "[circuit_breaker]\nenabled = false\n[mirror]\nqueue = 4\n";
        let mut config = (*config(shadow, extra)).clone();
        config.shadow.concurrency = std::num::NonZeroUsize::MIN;
        config.shadow.timeout = Duration::from_secs(2);
        let mirror = Mirror::new(Arc::new(config), recorder.clone()).waiting_for_room();
        let (tx, rx) = mpsc::channel(64);
        let (trigger, shutdown) = crate::shutdown::channel();
        let run = tokio::spawn(mirror.run(rx, shutdown));
        for i in 0..10 {
            tx.send(exchange("POST", "/infer", &i.to_string()))
                .await
                .unwrap();
        }
        // (Production's in flight, as admission saw it, depends on how far it had read.)
        wait_for(&recorder, "a full queue behind one replay", |events| {
            events.iter().any(|e| {
                matches!(
                    e,
                    Event::ReplayLoad(ReplayLoad {
                        in_flight: 1,
                        queued: 4,
                        ..
                    })
                )
            })
        })
        .await;
        // Time enough for a mirror that does not wait to refuse the other five.
        tokio::time::sleep(Duration::from_millis(50)).await;
        // One in flight, four queued, the other five waiting for room: none refused.
        assert_eq!(
            recorder.count_where(|e| matches!(e, Event::ExchangeSeen(..))),
            5
        );
        assert_eq!(recorder.count(&Event::Skipped(SkipReason::QueueFull)), 0);
        let saturated: Vec<Warning> = recorder
            .warnings()
            .into_iter()
            .filter(|w| matches!(w, Warning::ShadowSaturated { .. }))
            .collect();
        assert_eq!(saturated.len(), 1, "{saturated:?}");
        assert!(
            matches!(
                saturated[0],
                Warning::ShadowSaturated {
                    admission_waits: true,
                    ..
                }
            ),
            "{saturated:?}"
        );
        let text = saturated[0].to_string();
        assert!(text.contains("nothing is dropped"), "{text}");
        assert!(!text.contains("dropped when the queue is full"), "{text}");
        trigger.trigger();
        let summary = run.await.unwrap();
        assert_eq!((summary.replayed, summary.abandoned), (1, 4));
        assert_eq!(recorder.count(&Event::Skipped(SkipReason::QueueFull)), 0);
        assert_accounted(&recorder);
    }
}
