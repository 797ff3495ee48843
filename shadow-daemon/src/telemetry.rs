//! The events the stages report, as one trait: vector's internal events, inverted. Stages call
//! [`Telemetry`] and never name a sink; [`crate::sinks::metrics::Metrics`] implements it (logs
//! and Prometheus series), [`Recorder`] keeps the events for tests.
//!
//! Every event is named in the shared vocabulary of `shadow_core::vocabulary`, so stages, sinks
//! and tests agree on labels; the exchange-level events also name the [`Protocol`] the exchange
//! came in (the `protocol` label). [`GrpcStatusLabel`] names the code of a gRPC answer.

mod grpc_status;

pub use grpc_status::GrpcStatusLabel;

use shadow_core::compare::Comparison;
use shadow_core::http::Protocol;
use shadow_core::rollback::Firing;
use shadow_core::segment::FlowKey;
use shadow_core::vocabulary::{
    AgreementUnit, BreakerOutcome, DiscrepancyKind, DropStage, ErrorClass, ForeignProtocol,
    KernelPacketResult, MemoryStage, MirrorResult, Model, Outcome, RollbackAction, RollbackResult,
    ShadowFailure, SkipReason, StreamLoss,
};
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the stages report. Implementations must be cheap and must not block: they are called
/// on the capture and replay paths.
pub trait Telemetry: Send + Sync {
    /// The capture delivered `n` more segments.
    fn segments_captured(&self, n: u64);
    /// `n` segments or exchanges were lost at `stage`, before admission.
    fn dropped(&self, stage: DropStage, n: u64);
    /// `n` more HTTP/2 streams were not seen whole, for `reason`.
    fn h2_streams_lost(&self, reason: StreamLoss, n: u64);
    /// The kernel-side tap counted `n` more packets with `result`.
    fn kernel_packets(&self, result: KernelPacketResult, n: u64);
    /// Reassembly now tracks `flows` connections and buffers `bytes` bytes.
    fn reassembly_load(&self, flows: u64, bytes: u64);
    /// The tap went off its interface (`false`: deleted, nothing is captured) or is back on
    /// it (`true`). Reported on change only; the tap starts attached.
    fn tap_attached(&self, attached: bool);
    /// `stage` holds `bytes` bytes now (reported periodically, not per packet).
    fn memory(&self, stage: MemoryStage, bytes: u64);
    /// One exchange, carried in `protocol`, reached admission. Each one ends as exactly one
    /// [`Telemetry::skipped`] or [`Telemetry::replayed`].
    fn exchange_seen(&self, protocol: Protocol, outcome: Outcome);
    /// Production answered an exchange seen on the wire: its latency from wire timestamps
    /// (`None` unless the answer was read to its end) and its error class (`None` for a
    /// success). Reported with [`Telemetry::exchange_seen`] for every exchange with an answer,
    /// before admission decides whether it is replayed, so production's latency and errors
    /// cover all its traffic, not only what is mirrored.
    fn production_answered(&self, latency_ns: Option<u64>, error: Option<ErrorClass>);
    /// An exchange was not replayed (not replayable, filtered, sampled out, ..., or abandoned
    /// in the queue at shutdown).
    fn skipped(&self, reason: SkipReason);
    /// The shadow circuit breaker changed state, and why (also reported once at start).
    fn breaker_changed(&self, change: &BreakerChange);
    /// The circuit breaker judged a replay's answer against production's and counted it so
    /// (`failure` only when the shadow did worse; `shared_failure` when both failed).
    fn breaker_outcome(&self, counted_as: BreakerOutcome);
    /// Replays in flight and waiting in the replay queue now.
    fn replay_load(&self, load: ReplayLoad);
    /// A replay left the queue for the shadow after waiting this long.
    fn queue_waited(&self, wait: Duration);
    /// One replay attempt of an exchange carried in `protocol` finished; reported after its
    /// comparison, so a request counted as replayed is in every sink.
    fn replayed(&self, protocol: Protocol, result: MirrorResult);
    /// The shadow answered a replay with an error status (4xx or 5xx).
    fn shadow_http_error(&self, status: u16);
    /// One replayed request, carried in `protocol`, was compared with production.
    fn compared(&self, protocol: Protocol, comparison: &Comparison);
    /// A gRPC call's answer from `model` carried `code` (reported for production's answer and,
    /// when the shadow answered, for the shadow's; with [`Telemetry::compared`]).
    fn grpc_status(&self, model: Model, code: GrpcStatusLabel);
    /// The noise baseline's replay of a request finished (`request_error`: it could not be
    /// sent). Reported before the shadow's [`Telemetry::replayed`] of the same request.
    fn baseline_replayed(&self, result: MirrorResult);
    /// A shadow discrepancy of `kind` is explained by noise: its comparison differs from
    /// production only where production differs from the noise baseline too
    /// (`shadow_core::noise`). Reported with [`Telemetry::compared`].
    fn noise_discrepancy(&self, kind: DiscrepancyKind);
    /// The running agreement ratio counted in `unit` changed (never reported before the first
    /// sample: a ratio of nothing is absent, not 0).
    fn agreement(&self, unit: AgreementUnit, ratio: f64);
    /// Something a user should act on; stages rate-limit these with a [`Throttle`].
    fn warning(&self, warning: &Warning);
    /// A discrepancy log line was dropped, and why.
    fn discrepancy_log_dropped(&self, why: &str);
    /// A rollback trigger failed and fired: its actions start now (or, in a dry run, are
    /// only described). Each action then ends in one [`Telemetry::rollback_action`].
    fn rollback_fired(&self, fired: &RollbackFired);
    /// One rollback action ended (a dry run ends at once, `ok`).
    fn rollback_action(&self, done: &RollbackDone);
    /// A failed trigger did not fire, and why.
    fn rollback_suppressed(&self, held: &RollbackHeld);
}

/// A rollback firing, as reported before its actions run.
#[derive(Clone, Debug, PartialEq)]
pub struct RollbackFired {
    /// The failed triggers and the verdict's decision.
    pub firing: Firing,
    /// What runs: `command /usr/bin/kubectl "rollout" "undo"`, `webhook http://…`.
    pub actions: Vec<String>,
    /// Nothing runs: the actions are only described.
    pub dry_run: bool,
}

impl fmt::Display for RollbackFired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rollback triggered (verdict {}):",
            self.firing.decision.as_str()
        )?;
        for (i, r) in self.firing.failed.iter().enumerate() {
            let sep = if i == 0 { " " } else { "; " };
            write!(f, "{sep}{} failed", r.criterion.as_str())?;
            if let Some(m) = r.measured {
                write!(f, ", measured {m:.4}")?;
            }
            if let Some(i) = r.interval {
                write!(f, ", 95% interval [{:.4}, {:.4}]", i.lo, i.hi)?;
            }
            write!(f, ", threshold {:.4} ({})", r.threshold, r.reason)?;
        }
        let actions = if self.actions.is_empty() {
            "no action configured".to_string()
        } else {
            self.actions.join(" and ")
        };
        if self.dry_run {
            write!(f, ". DRY RUN, nothing is run: would run {actions}")
        } else {
            write!(f, ". Running {actions}")
        }
    }
}

/// How one rollback action ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollbackDone {
    /// Which action.
    pub action: RollbackAction,
    /// How it ended.
    pub result: RollbackResult,
    /// What happened: exit status and output, HTTP status, the error.
    pub detail: String,
}

/// Why a failed trigger did not fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollbackHeld {
    /// The last firing was less than a cooldown ago.
    Cooldown {
        /// Until the next firing is allowed.
        remaining: Duration,
    },
    /// The previous firing's actions are still running.
    ActionRunning,
}

/// Load of the replay stage (gauges `shadowtap_replays_in_flight`, `shadowtap_replay_queue_length`,
/// `shadowtap_production_in_flight`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayLoad {
    /// Replays sent and not answered yet.
    pub in_flight: usize,
    /// Replays waiting in the queue.
    pub queued: usize,
    /// Production requests in flight when the latest released replay started on the wire (its
    /// in-flight limit with production pacing; `None` with `asap` pacing).
    pub production_in_flight: Option<usize>,
}

/// A breaker state change and its cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerChange {
    /// The new state.
    pub state: BreakerState,
    /// Why.
    pub cause: BreakerCause,
}

/// Why the breaker changed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BreakerCause {
    /// The initial state.
    Start,
    /// Closed → open: `failed` of the last `outcomes` replays failed, counted by failure.
    Failures {
        /// Failures in the window, by kind (most frequent first).
        failed: Vec<(ShadowFailure, usize)>,
        /// Replay outcomes in the window.
        outcomes: usize,
        /// Of the slow failures, replays still in flight for longer than `slow_call_ms`.
        in_flight: usize,
        /// How long mirroring pauses.
        paused_for: Duration,
    },
    /// Half-open → open: a probe failed.
    ProbeFailed {
        /// How.
        failure: ShadowFailure,
        /// How long mirroring pauses.
        paused_for: Duration,
    },
    /// Open → half-open: the pause is over, probes go through.
    Probing {
        /// Probes let through.
        probes: usize,
    },
    /// Half-open → closed: every probe succeeded.
    Recovered {
        /// Probes that succeeded.
        probes: usize,
    },
}

impl fmt::Display for BreakerChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shadow circuit breaker {}", self.state.as_str())?;
        match &self.cause {
            BreakerCause::Start => Ok(()),
            BreakerCause::Failures {
                failed,
                outcomes,
                in_flight,
                paused_for,
            } => {
                let n: usize = failed.iter().map(|(_, n)| n).sum();
                let by_kind: Vec<String> = failed
                    .iter()
                    .map(|(kind, n)| format!("{} {n}", kind.as_str()))
                    .collect();
                let waiting = if *in_flight > 0 {
                    format!(
                        ", {in_flight} of them still in flight after circuit_breaker.slow_call_ms"
                    )
                } else {
                    String::new()
                };
                write!(
                    f,
                    ": {n} of the last {outcomes} replays failed ({}{waiting}); mirroring paused \
                     for {:?}",
                    by_kind.join(", "),
                    paused_for
                )
            }
            BreakerCause::ProbeFailed {
                failure,
                paused_for,
            } => write!(
                f,
                ": a probe failed ({}); mirroring paused for {paused_for:?} more",
                failure.as_str()
            ),
            BreakerCause::Probing { probes } => {
                write!(f, ": pause over, letting {probes} probe requests through")
            }
            BreakerCause::Recovered { probes } => {
                write!(f, ": {probes} probe requests succeeded; mirroring resumed")
            }
        }
    }
}

/// A condition worth a warning in the log. Stages report each through a [`Throttle`], so a
/// persistent condition is logged once, then at most once per interval with a count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// Replays wait for capacity while the queue fills: the shadow cannot keep up.
    ShadowSaturated {
        /// Replays in flight.
        in_flight: usize,
        /// The in-flight limit now (`--concurrency`, or production's in-flight when lower).
        limit: usize,
        /// `--concurrency`.
        concurrency: usize,
        /// Replays queued.
        queued: usize,
        /// Queue depth (`mirror.queue`).
        capacity: usize,
        /// Whether admission waits for room in a full queue instead of dropping the exchange
        /// (`shadowd replay`: the capture file waits; see `Mirror::waiting_for_room`).
        admission_waits: bool,
        /// Times the condition held since the last warning.
        suppressed: u64,
    },
    /// A replay failed (the shadow's fault, or a request we could not send).
    ReplayFailed {
        /// How.
        failure: ShadowFailure,
        /// What happened, for the log.
        detail: String,
        /// Failures of this kind since the last warning about it.
        suppressed: u64,
    },
    /// A replay to the noise baseline failed: nothing is learned from that request (the
    /// shadow's comparison goes on).
    BaselineFailed {
        /// What happened, for the log.
        detail: String,
        /// Baseline failures since the last warning.
        suppressed: u64,
    },
    /// A connection on the tapped port speaks another protocol than HTTP/1.x.
    ForeignProtocol {
        /// Which.
        protocol: ForeignProtocol,
        /// The connection.
        flow: FlowKey,
        /// Such connections since the last warning about this protocol.
        suppressed: u64,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let more = |n: u64| {
            if n > 0 {
                format!(" ({n} more since the last warning)")
            } else {
                String::new()
            }
        };
        match self {
            Warning::ShadowSaturated {
                in_flight,
                limit,
                concurrency,
                queued,
                capacity,
                admission_waits,
                suppressed,
            } => {
                let production_bound = limit < concurrency;
                let whose = if production_bound {
                    ": production's concurrency"
                } else {
                    ""
                };
                // A live tap cannot wait: a full queue drops. A capture file (replay) waits.
                let (consequence, more_in_flight) = if *admission_waits {
                    (
                        "replays wait and so does the capture, nothing is dropped: the replay \
                         goes at the shadow's pace",
                        "; --speed max lets more than production's concurrency in flight",
                    )
                } else {
                    (
                        "replays wait and are dropped when the queue is full: consider --sample \
                         or --rate-limit",
                        ", or --pacing asap to let more than production's concurrency in flight",
                    )
                };
                let more_in_flight = if production_bound { more_in_flight } else { "" };
                write!(
                    f,
                    "shadow saturated: {in_flight} in flight (limit {limit}{whose}), queue \
                     {queued}/{capacity}; {consequence}{more_in_flight}{}",
                    more(*suppressed)
                )
            }
            Warning::ReplayFailed {
                failure,
                detail,
                suppressed,
            } => write!(
                f,
                "replay failed ({}): {detail}{}",
                failure.as_str(),
                more(*suppressed)
            ),
            Warning::BaselineFailed { detail, suppressed } => write!(
                f,
                "noise baseline replay failed: {detail}; noise is learned only from the \
                 baseline's answers (shadowtap_baseline_replays_total){}",
                more(*suppressed)
            ),
            Warning::ForeignProtocol {
                protocol,
                flow,
                suppressed,
            } => write!(
                f,
                "{} seen on {} \u{2192} :{}: not cleartext HTTP, not mirrored{}",
                protocol.name(),
                flow.client,
                flow.server.port(),
                more(*suppressed)
            ),
        }
    }
}

/// Rate-limits reports per key: the first occurrence of a key is reported at once, later ones
/// at most once per interval, with how many were held back in between.
#[derive(Debug)]
pub struct Throttle<K> {
    every: Duration,
    keys: HashMap<K, Held>,
}

#[derive(Debug)]
struct Held {
    last: Instant,
    suppressed: u64,
}

impl<K: Eq + Hash> Throttle<K> {
    /// At most one report per key per `every`.
    pub fn new(every: Duration) -> Self {
        Throttle {
            every,
            keys: HashMap::new(),
        }
    }

    /// Whether to report `key` at `now`: `Some(n)` with the `n` occurrences held back since the
    /// last report, or `None` (held back and counted).
    pub fn allow(&mut self, key: K, now: Instant) -> Option<u64> {
        match self.keys.get_mut(&key) {
            None => {
                self.keys.insert(
                    key,
                    Held {
                        last: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
            Some(held) if now.saturating_duration_since(held.last) >= self.every => {
                held.last = now;
                Some(std::mem::take(&mut held.suppressed))
            }
            Some(held) => {
                held.suppressed += 1;
                None
            }
        }
    }
}

/// The shadow circuit breaker's state (exported as `shadowtap_circuit_state`). Defined here
/// because it is an event's vocabulary; the breaker itself is `admission::circuit_breaker`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Mirroring.
    Closed,
    /// Paused: every request is skipped (`circuit_open`).
    Open,
    /// Probing with a few requests.
    HalfOpen,
}

impl BreakerState {
    /// Log/JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// Gauge value: 0 closed, 1 open, 2 half-open.
    pub fn gauge_value(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

/// One [`Telemetry`] call, as kept by [`Recorder`].
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// [`Telemetry::segments_captured`].
    SegmentsCaptured(u64),
    /// [`Telemetry::dropped`].
    Dropped(DropStage, u64),
    /// [`Telemetry::h2_streams_lost`].
    H2StreamsLost(StreamLoss, u64),
    /// [`Telemetry::kernel_packets`].
    KernelPackets(KernelPacketResult, u64),
    /// [`Telemetry::reassembly_load`].
    ReassemblyLoad {
        flows: u64,
        bytes: u64,
    },
    TapAttached(bool),
    /// [`Telemetry::memory`].
    Memory(MemoryStage, u64),
    /// [`Telemetry::exchange_seen`].
    ExchangeSeen(Protocol, Outcome),
    /// [`Telemetry::production_answered`].
    ProductionAnswered {
        /// Wire latency.
        latency_ns: Option<u64>,
        /// Error class.
        error: Option<ErrorClass>,
    },
    /// [`Telemetry::skipped`].
    Skipped(SkipReason),
    /// [`Telemetry::breaker_changed`].
    BreakerChanged(BreakerChange),
    /// [`Telemetry::breaker_outcome`].
    BreakerOutcome(BreakerOutcome),
    /// [`Telemetry::replay_load`].
    ReplayLoad(ReplayLoad),
    /// [`Telemetry::queue_waited`].
    QueueWaited(Duration),
    /// [`Telemetry::replayed`].
    Replayed(Protocol, MirrorResult),
    /// [`Telemetry::shadow_http_error`].
    ShadowHttpError(u16),
    /// [`Telemetry::compared`] (boxed: a comparison is far larger than any other event).
    Compared(Protocol, Box<Comparison>),
    /// [`Telemetry::grpc_status`].
    GrpcStatus(Model, GrpcStatusLabel),
    /// [`Telemetry::baseline_replayed`].
    BaselineReplayed(MirrorResult),
    /// [`Telemetry::noise_discrepancy`].
    NoiseDiscrepancy(DiscrepancyKind),
    /// [`Telemetry::agreement`].
    Agreement(AgreementUnit, f64),
    /// [`Telemetry::warning`].
    Warning(Warning),
    /// [`Telemetry::discrepancy_log_dropped`].
    DiscrepancyLogDropped(String),
    /// [`Telemetry::rollback_fired`].
    RollbackFired(RollbackFired),
    /// [`Telemetry::rollback_action`].
    RollbackAction(RollbackDone),
    /// [`Telemetry::rollback_suppressed`].
    RollbackSuppressed(RollbackHeld),
}

/// Telemetry for tests: keeps every event in order, so a stage's events can be asserted
/// without a Prometheus registry.
#[derive(Debug, Default)]
pub struct Recorder {
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event so far, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.lock().clone()
    }

    /// How many events so far equal `event`.
    pub fn count(&self, event: &Event) -> usize {
        self.lock().iter().filter(|e| *e == event).count()
    }

    /// How many events so far match `pred`.
    pub fn count_where(&self, pred: impl Fn(&Event) -> bool) -> usize {
        self.lock().iter().filter(|e| pred(e)).count()
    }

    /// The breaker states reported so far, oldest first.
    pub fn breaker_states(&self) -> Vec<BreakerState> {
        self.lock()
            .iter()
            .filter_map(|e| match e {
                Event::BreakerChanged(c) => Some(c.state),
                _ => None,
            })
            .collect()
    }

    /// The warnings reported so far, oldest first.
    pub fn warnings(&self) -> Vec<Warning> {
        self.lock()
            .iter()
            .filter_map(|e| match e {
                Event::Warning(w) => Some(w.clone()),
                _ => None,
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, event: Event) {
        self.lock().push(event);
    }
}

impl Telemetry for Recorder {
    fn segments_captured(&self, n: u64) {
        self.push(Event::SegmentsCaptured(n));
    }
    fn dropped(&self, stage: DropStage, n: u64) {
        self.push(Event::Dropped(stage, n));
    }
    fn h2_streams_lost(&self, reason: StreamLoss, n: u64) {
        self.push(Event::H2StreamsLost(reason, n));
    }
    fn kernel_packets(&self, result: KernelPacketResult, n: u64) {
        self.push(Event::KernelPackets(result, n));
    }
    fn reassembly_load(&self, flows: u64, bytes: u64) {
        self.push(Event::ReassemblyLoad { flows, bytes });
    }
    fn tap_attached(&self, attached: bool) {
        self.push(Event::TapAttached(attached));
    }
    fn memory(&self, stage: MemoryStage, bytes: u64) {
        self.push(Event::Memory(stage, bytes));
    }
    fn exchange_seen(&self, protocol: Protocol, outcome: Outcome) {
        self.push(Event::ExchangeSeen(protocol, outcome));
    }
    fn production_answered(&self, latency_ns: Option<u64>, error: Option<ErrorClass>) {
        self.push(Event::ProductionAnswered { latency_ns, error });
    }
    fn skipped(&self, reason: SkipReason) {
        self.push(Event::Skipped(reason));
    }
    fn breaker_changed(&self, change: &BreakerChange) {
        self.push(Event::BreakerChanged(change.clone()));
    }
    fn breaker_outcome(&self, counted_as: BreakerOutcome) {
        self.push(Event::BreakerOutcome(counted_as));
    }
    fn replay_load(&self, load: ReplayLoad) {
        self.push(Event::ReplayLoad(load));
    }
    fn queue_waited(&self, wait: Duration) {
        self.push(Event::QueueWaited(wait));
    }
    fn replayed(&self, protocol: Protocol, result: MirrorResult) {
        self.push(Event::Replayed(protocol, result));
    }
    fn shadow_http_error(&self, status: u16) {
        self.push(Event::ShadowHttpError(status));
    }
    fn compared(&self, protocol: Protocol, comparison: &Comparison) {
        self.push(Event::Compared(protocol, Box::new(comparison.clone())));
    }
    fn grpc_status(&self, model: Model, code: GrpcStatusLabel) {
        self.push(Event::GrpcStatus(model, code));
    }
    fn baseline_replayed(&self, result: MirrorResult) {
        self.push(Event::BaselineReplayed(result));
    }
    fn noise_discrepancy(&self, kind: DiscrepancyKind) {
        self.push(Event::NoiseDiscrepancy(kind));
    }
    fn agreement(&self, unit: AgreementUnit, ratio: f64) {
        self.push(Event::Agreement(unit, ratio));
    }
    fn warning(&self, warning: &Warning) {
        self.push(Event::Warning(warning.clone()));
    }
    fn discrepancy_log_dropped(&self, why: &str) {
        self.push(Event::DiscrepancyLogDropped(why.to_string()));
    }
    fn rollback_fired(&self, fired: &RollbackFired) {
        self.push(Event::RollbackFired(fired.clone()));
    }
    fn rollback_action(&self, done: &RollbackDone) {
        self.push(Event::RollbackAction(done.clone()));
    }
    fn rollback_suppressed(&self, held: &RollbackHeld) {
        self.push(Event::RollbackSuppressed(*held));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_keeps_events_in_order_and_counts_them() {
        let r = Recorder::new();
        r.exchange_seen(Protocol::Http1, Outcome::Complete);
        r.skipped(SkipReason::Filtered);
        r.exchange_seen(Protocol::Grpc, Outcome::Complete);
        r.dropped(DropStage::Capture, 3);
        assert_eq!(
            r.events(),
            vec![
                Event::ExchangeSeen(Protocol::Http1, Outcome::Complete),
                Event::Skipped(SkipReason::Filtered),
                Event::ExchangeSeen(Protocol::Grpc, Outcome::Complete),
                Event::Dropped(DropStage::Capture, 3),
            ]
        );
        assert_eq!(
            r.count(&Event::ExchangeSeen(Protocol::Http1, Outcome::Complete)),
            1
        );
        assert_eq!(
            r.count_where(|e| matches!(e, Event::ExchangeSeen(_, Outcome::Complete))),
            2
        );
        assert_eq!(r.count(&Event::Skipped(SkipReason::QueueFull)), 0);
    }

    #[test]
    fn throttle_reports_the_first_then_once_per_interval_with_a_count() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut t = Throttle::new(Duration::from_secs(10));
        assert_eq!(t.allow("a", t0), Some(0), "first of a: at once");
        assert_eq!(t.allow("b", t0), Some(0), "first of b: at once");
        assert_eq!(t.allow("a", t0 + s), None);
        assert_eq!(t.allow("a", t0 + 9 * s), None);
        assert_eq!(t.allow("a", t0 + 10 * s), Some(2), "two held back");
        assert_eq!(t.allow("a", t0 + 11 * s), None);
        assert_eq!(t.allow("b", t0 + 11 * s), Some(0));
        assert_eq!(t.allow("a", t0 + 30 * s), Some(1));
    }

    #[test]
    fn warnings_and_breaker_changes_read_as_sentences() {
        let flow = FlowKey {
            client: "10.0.0.5:51234".parse().unwrap(),
            server: "10.0.0.2:8080".parse().unwrap(),
        };
        let w = Warning::ForeignProtocol {
            protocol: ForeignProtocol::Tls,
            flow,
            suppressed: 0,
        };
        assert_eq!(
            w.to_string(),
            "TLS handshake seen on 10.0.0.5:51234 \u{2192} :8080: not cleartext HTTP, not mirrored"
        );
        let w = Warning::ShadowSaturated {
            in_flight: 8,
            limit: 8,
            concurrency: 32,
            queued: 600,
            capacity: 1024,
            admission_waits: false,
            suppressed: 3,
        };
        let text = w.to_string();
        assert!(
            text.starts_with(
                "shadow saturated: 8 in flight (limit 8: production's concurrency), queue 600/1024;"
            ),
            "{text}"
        );
        assert!(
            text.ends_with(
                "consider --sample or --rate-limit, or --pacing asap to let more than \
                 production's concurrency in flight (3 more since the last warning)"
            ),
            "{text}"
        );
        // `shadowd replay`: the capture waits for room, nothing is dropped.
        let replay = |limit| Warning::ShadowSaturated {
            in_flight: limit,
            limit,
            concurrency: 32,
            queued: 600,
            capacity: 1024,
            admission_waits: true,
            suppressed: 0,
        };
        assert_eq!(
            replay(32).to_string(),
            "shadow saturated: 32 in flight (limit 32), queue 600/1024; replays wait and so does \
             the capture, nothing is dropped: the replay goes at the shadow's pace"
        );
        let text = replay(8).to_string();
        assert!(!text.contains("dropped when"), "{text}");
        assert!(
            text.ends_with(
                "the replay goes at the shadow's pace; --speed max lets more than production's \
                 concurrency in flight"
            ),
            "{text}"
        );
        let open = BreakerChange {
            state: BreakerState::Open,
            cause: BreakerCause::Failures {
                failed: vec![(ShadowFailure::Timeout, 5), (ShadowFailure::Connect, 2)],
                outcomes: 10,
                in_flight: 0,
                paused_for: Duration::from_secs(10),
            },
        };
        assert_eq!(
            open.to_string(),
            "shadow circuit breaker open: 7 of the last 10 replays failed (timeout 5, connect 2); \
             mirroring paused for 10s"
        );
        let hanging = BreakerChange {
            state: BreakerState::Open,
            cause: BreakerCause::Failures {
                failed: vec![(ShadowFailure::Slow, 6)],
                outcomes: 10,
                in_flight: 4,
                paused_for: Duration::from_secs(10),
            },
        };
        assert_eq!(
            hanging.to_string(),
            "shadow circuit breaker open: 6 of the last 10 replays failed (slow 6, 4 of them \
             still in flight after circuit_breaker.slow_call_ms); mirroring paused for 10s"
        );
    }
}
