//! Circuit breaker on the shadow: when too many replays fail, mirroring pauses (open), then a
//! few probe requests are let through (half-open); if they all succeed mirroring resumes
//! (closed), if one fails it pauses again.
//!
//! ```text
//! closed --failure ratio >= threshold over >= min_requests--> open
//! open   --open_ms elapsed, next request--> half-open (admits `probes` requests)
//! half-open --all probes succeed--> closed      half-open --a probe fails--> open
//! ```
//!
//! **What counts as a failure** ([`judge`]): only an answer worse than production's answer to
//! the same request. That is the shadow failing (no usable answer: connect error, timeout,
//! invalid HTTP; a 5xx; a gRPC status that is the server's fault) where production did not fail
//! on its side (status below 500 and no gRPC server status), or the shadow answering slower
//! than `slow_call` where production did not. A failure production shares (both 5xx, both gRPC
//! server errors, or production's 5xx and the shadow's connect error or timeout, unless the
//! shadow was also slower than `slow_call`) is agreement: the request is compared as usual, and
//! the breaker counts it as `shared_failure`, neither for nor against the shadow: it enters no
//! window (so stray traffic production rejects can neither pause mirroring nor dilute the
//! shadow's real failures) and completes no probe. A 4xx is the request's fault: a success.
//!
//! **Replays in flight.** Admission takes a [`Permit`] for each request it lets through; the
//! replay hands it back when it is sent ([`SharedBreaker::start`]) and, through the returned
//! [`InFlight`], with its verdict. So the breaker knows what is queued and in flight, and
//! under which state it was admitted:
//! - an answer counts only in the state it was admitted in: answers to requests admitted before
//!   the breaker last changed state are `late` (in no window, no probe);
//! - half-open admits at most `probes` requests (queued, in flight or answered); one dropped
//!   before it reaches the shadow (rate limit, full queue, request error) or judged a shared
//!   failure gives its slot back, so at most `probes` probes are ever queued or in flight;
//! - with `slow_call` set, a replay in flight for longer than `slow_call` (whose production
//!   answer was not that slow) is already a slow call. Every decision (at each admission and
//!   each recorded answer) counts those replays as slow failures in the failure-rate window,
//!   as its newest outcomes (the oldest recorded ones slide out to keep the window's length),
//!   and such a probe fails the probing. A hanging shadow opens the breaker after `slow_call`,
//!   not after the replays' timeouts. Without `slow_call` a replay in flight has no verdict
//!   yet: it counts when it ends (at the latest at `shadow.timeout_ms`).
//!
//! Every change is reported with its cause ([`BreakerCause`]): the failures in the window, by
//! kind, when it opens; the probes when it closes. Every judged answer is reported with how it
//! counted ([`BreakerOutcome`], `shadowtap_breaker_outcomes_total{counted_as}`).

use crate::config::CircuitBreakerConfig;
use shadow_core::compare::{ErrorClass, ShadowAnswer};
use shadow_core::grpc::{GrpcStatus, is_grpc};
use shadow_core::http::HttpResponse;
use shadow_core::vocabulary::{BreakerOutcome, ShadowFailure};
use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::telemetry::Telemetry;
pub use crate::telemetry::{BreakerCause, BreakerChange, BreakerState};
use std::sync::{Arc, Mutex};

/// How one replay's answer counts for the breaker, against production's answer to the same
/// request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// No worse than production's answer.
    Success,
    /// Worse than production's answer, this way: held against the shadow.
    Failure(ShadowFailure),
    /// Failed this way as production failed too: agreement, held neither for nor against the
    /// shadow.
    SharedFailure(ShadowFailure),
}

impl Judgement {
    /// How it is counted (label of `shadowtap_breaker_outcomes_total`).
    pub fn outcome(self) -> BreakerOutcome {
        match self {
            Judgement::Success => BreakerOutcome::Success,
            Judgement::Failure(_) => BreakerOutcome::Failure,
            Judgement::SharedFailure(_) => BreakerOutcome::SharedFailure,
        }
    }
}

/// Judges the shadow's `answer` against production's (`production`, answered in
/// `production_latency`): a failure only when it is worse (see the module docs). `slow_call`:
/// answers slower than this are slow calls (`None`: off). A 4xx or a gRPC status that is the
/// request's fault is not the shadow's failure.
pub fn judge(
    answer: &ShadowAnswer,
    production: &HttpResponse,
    production_latency: Option<Duration>,
    slow_call: Option<Duration>,
) -> Judgement {
    let (failure, latency_ns) = match answer {
        ShadowAnswer::Failed {
            class, latency_ns, ..
        } => (ShadowFailure::of_class(*class), *latency_ns),
        // A 5xx, or a gRPC status that is the server's fault (UNAVAILABLE, INTERNAL, ...).
        ShadowAnswer::Response { latency_ns, .. } => (
            answer
                .error_class()
                .filter(|c| c.is_shadow_failure())
                .and_then(ShadowFailure::of_class),
            *latency_ns,
        ),
    };
    let slower = slow_call.is_some_and(|s| {
        latency_ns > s.as_nanos() as u64 && production_latency.is_none_or(|p| p <= s)
    });
    match failure {
        Some(failure) if !production_failed(production) => Judgement::Failure(failure),
        _ if slower => Judgement::Failure(ShadowFailure::Slow),
        Some(failure) => Judgement::SharedFailure(failure),
        None => Judgement::Success,
    }
}

/// Whether production's answer is a failure on its side: a 5xx, or a gRPC status that is the
/// server's fault.
fn production_failed(production: &HttpResponse) -> bool {
    let class = ErrorClass::of_status(production.status).or_else(|| {
        is_grpc(&production.headers)
            .then(|| {
                GrpcStatus::of_response(
                    production.status,
                    &production.headers,
                    &production.trailers,
                )
            })
            .and_then(|s| ErrorClass::of_grpc(s.kind()))
    });
    matches!(
        class,
        Some(ErrorClass::ServerError | ErrorClass::GrpcServerError)
    )
}

/// What the breaker hands admission for each request it lets through, handed back when the
/// replay is sent and with its outcome. The default permit was issued by no breaker: its
/// outcome counts for nothing (`late`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Permit {
    /// The state period that issued it (periods start at 1; each state change starts one).
    period: u64,
    id: u64,
    /// When its replay was sent, when the breaker watches it for slowness.
    watched_since: Option<Instant>,
}

/// The state machine. Time is passed in, for tests.
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    enabled: bool,
    window_len: usize,
    min_requests: usize,
    failure_ratio: f64,
    open_for: Duration,
    probes: usize,
    slow_call: Option<Duration>,
    state: BreakerState,
    /// Counts state changes: permits of an earlier period are late.
    period: u64,
    /// Permits issued so far (their ids).
    issued: u64,
    /// Recent outcomes while closed: the failure, or `None` for a success.
    window: VecDeque<Option<ShadowFailure>>,
    failures: usize,
    opened_at: Option<Instant>,
    probes_admitted: usize,
    probes_succeeded: usize,
    /// Replays of this period in flight that are slow calls once in flight for longer than
    /// `slow_call`, by when they were sent (and permit id).
    watched: BTreeSet<(Instant, u64)>,
    /// Why the state last changed.
    cause: BreakerCause,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(c: &CircuitBreakerConfig) -> Self {
        CircuitBreaker {
            enabled: c.enabled,
            window_len: c.window.get(),
            min_requests: c.min_requests.get(),
            failure_ratio: c.failure_ratio,
            open_for: c.open_for,
            probes: c.probes.get(),
            slow_call: c.slow_call,
            state: BreakerState::Closed,
            period: 1,
            issued: 0,
            window: VecDeque::new(),
            failures: 0,
            opened_at: None,
            probes_admitted: 0,
            probes_succeeded: 0,
            watched: BTreeSet::new(),
            cause: BreakerCause::Start,
        }
    }

    /// Current state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Why the state last changed ([`BreakerCause::Start`] until it first does).
    pub fn cause(&self) -> &BreakerCause {
        &self.cause
    }

    /// Whether a request may go to the shadow now: its permit, or `None` (`circuit_open`).
    /// While half-open, each permit is a probe. Replays in flight past `slow_call` are judged
    /// first (they may open the breaker).
    pub fn admit(&mut self, now: Instant) -> Option<Permit> {
        if !self.enabled {
            return Some(self.permit());
        }
        if self.slow_in_flight(now) > 0 {
            match self.state {
                BreakerState::Closed => self.decide(now),
                BreakerState::HalfOpen => self.probe_failed(ShadowFailure::Slow, now),
                BreakerState::Open => {}
            }
        }
        match self.state {
            BreakerState::Closed => Some(self.permit()),
            BreakerState::Open => {
                let due = self
                    .opened_at
                    .is_none_or(|t| now.saturating_duration_since(t) >= self.open_for);
                if !due {
                    return None;
                }
                self.change(
                    BreakerState::HalfOpen,
                    BreakerCause::Probing {
                        probes: self.probes,
                    },
                );
                self.probes_admitted = 1;
                self.probes_succeeded = 0;
                Some(self.permit())
            }
            BreakerState::HalfOpen => {
                if self.probes_admitted < self.probes {
                    self.probes_admitted += 1;
                    Some(self.permit())
                } else {
                    None
                }
            }
        }
    }

    /// An admitted request never reached the shadow (rate limit, full queue, a request that
    /// could not be built): gives a half-open probe slot back.
    pub fn cancel(&mut self, permit: Permit) {
        self.unwatch(permit);
        if self.counts(permit) && self.state == BreakerState::HalfOpen {
            self.probes_admitted = self.probes_admitted.saturating_sub(1);
        }
    }

    /// The replay of `permit` was sent at `now`; production answered in `production_latency`.
    /// Returns the permit to hand back with the outcome (watched for slowness when
    /// `slow_call` is set and production was not that slow).
    pub fn started(
        &mut self,
        permit: Permit,
        production_latency: Option<Duration>,
        now: Instant,
    ) -> Permit {
        match self.slow_call {
            Some(slow) if self.counts(permit) && production_latency.is_none_or(|p| p <= slow) => {
                self.watched.insert((now, permit.id));
                Permit {
                    watched_since: Some(now),
                    ..permit
                }
            }
            _ => permit,
        }
    }

    /// The outcome of the replay of `permit`; returns how it was counted.
    pub fn record(&mut self, permit: Permit, judged: Judgement, now: Instant) -> BreakerOutcome {
        self.unwatch(permit);
        if !self.enabled {
            return judged.outcome();
        }
        if !self.counts(permit) {
            return BreakerOutcome::Late;
        }
        match self.state {
            BreakerState::Closed => {
                let outcome = match judged {
                    Judgement::Success => None,
                    Judgement::Failure(failure) => Some(failure),
                    Judgement::SharedFailure(_) => return judged.outcome(),
                };
                self.window.push_back(outcome);
                self.failures += usize::from(outcome.is_some());
                if self.window.len() > self.window_len
                    && let Some(old) = self.window.pop_front()
                {
                    self.failures -= usize::from(old.is_some());
                }
                self.decide(now);
            }
            // (A permit of this period is never answered while open: opening starts a new one.)
            BreakerState::Open => return BreakerOutcome::Late,
            BreakerState::HalfOpen => match judged {
                Judgement::Failure(failure) => self.probe_failed(failure, now),
                // No evidence either way: the slot goes to another probe.
                Judgement::SharedFailure(_) => {
                    self.probes_admitted = self.probes_admitted.saturating_sub(1);
                }
                Judgement::Success => {
                    self.probes_succeeded += 1;
                    if self.probes_succeeded >= self.probes {
                        self.change(
                            BreakerState::Closed,
                            BreakerCause::Recovered {
                                probes: self.probes_succeeded,
                            },
                        );
                    }
                }
            },
        }
        judged.outcome()
    }

    /// A new permit of the current period.
    fn permit(&mut self) -> Permit {
        self.issued += 1;
        Permit {
            period: self.period,
            id: self.issued,
            watched_since: None,
        }
    }

    /// Whether `permit`'s outcome counts now (it was issued in the current state).
    fn counts(&self, permit: Permit) -> bool {
        self.enabled && permit.period == self.period
    }

    fn unwatch(&mut self, permit: Permit) {
        if let Some(since) = permit.watched_since {
            self.watched.remove(&(since, permit.id));
        }
    }

    /// Watched replays in flight for longer than `slow_call` at `now`.
    fn slow_in_flight(&self, now: Instant) -> usize {
        let Some(slow) = self.slow_call else {
            return 0;
        };
        self.watched
            .iter()
            .take_while(|(since, _)| now.saturating_duration_since(*since) > slow)
            .count()
    }

    /// Closed: opens when the failures reach the ratio over at least `min_requests` outcomes:
    /// the window's newest outcomes and the slow replays in flight.
    fn decide(&mut self, now: Instant) {
        let in_flight = self.slow_in_flight(now).min(self.window_len);
        let kept = self.window.len().min(self.window_len - in_flight);
        let outcomes = kept + in_flight;
        if outcomes < self.min_requests {
            return;
        }
        let recorded_failures = if kept == self.window.len() {
            self.failures
        } else {
            self.newest(kept).filter(|f| f.is_some()).count()
        };
        let failures = recorded_failures + in_flight;
        if (failures as f64) < self.failure_ratio * outcomes as f64 {
            return;
        }
        let cause = BreakerCause::Failures {
            failed: self.failures_by_kind(kept, in_flight),
            outcomes,
            in_flight,
            paused_for: self.open_for,
        };
        self.open(now, cause);
    }

    /// The newest `n` recorded outcomes.
    fn newest(&self, n: usize) -> impl Iterator<Item = &Option<ShadowFailure>> {
        self.window.iter().rev().take(n)
    }

    /// The failures among the newest `kept` outcomes and `in_flight` slow replays, by kind,
    /// most frequent first (ties in a fixed order).
    fn failures_by_kind(&self, kept: usize, in_flight: usize) -> Vec<(ShadowFailure, usize)> {
        let mut counts: Vec<(ShadowFailure, usize)> = ShadowFailure::ALL
            .iter()
            .map(|&kind| {
                let mut n = self.newest(kept).filter(|f| **f == Some(kind)).count();
                if kind == ShadowFailure::Slow {
                    n += in_flight;
                }
                (kind, n)
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        counts.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        counts
    }

    fn probe_failed(&mut self, failure: ShadowFailure, now: Instant) {
        let cause = BreakerCause::ProbeFailed {
            failure,
            paused_for: self.open_for,
        };
        self.open(now, cause);
    }

    fn open(&mut self, now: Instant, cause: BreakerCause) {
        self.opened_at = Some(now);
        self.change(BreakerState::Open, cause);
    }

    /// Enters `state`: a new period (earlier permits are late), an empty window.
    fn change(&mut self, state: BreakerState, cause: BreakerCause) {
        self.state = state;
        self.cause = cause;
        self.period += 1;
        self.window.clear();
        self.failures = 0;
        self.watched.clear();
    }
}

/// The circuit breaker shared by admission (which asks it) and the replay workers (which tell
/// it outcomes); every state change is reported as [`Telemetry::breaker_changed`], every
/// judged answer as [`Telemetry::breaker_outcome`].
pub struct SharedBreaker {
    inner: Mutex<CircuitBreaker>,
    telemetry: Arc<dyn Telemetry>,
}

impl std::fmt::Debug for SharedBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBreaker")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl SharedBreaker {
    /// `breaker`, shared, reporting its initial state and every change (with its cause) to
    /// `telemetry`.
    pub fn new(breaker: CircuitBreaker, telemetry: Arc<dyn Telemetry>) -> Self {
        telemetry.breaker_changed(&BreakerChange {
            state: breaker.state(),
            cause: breaker.cause().clone(),
        });
        SharedBreaker {
            inner: Mutex::new(breaker),
            telemetry,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut CircuitBreaker) -> T) -> T {
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let before = (b.state(), b.period);
        let out = f(&mut b);
        let change = ((b.state(), b.period) != before).then(|| BreakerChange {
            state: b.state(),
            cause: b.cause().clone(),
        });
        drop(b);
        if let Some(change) = change {
            self.telemetry.breaker_changed(&change);
        }
        out
    }

    /// See [`CircuitBreaker::admit`].
    pub fn admit(&self, now: Instant) -> Option<Permit> {
        self.with(|b| b.admit(now))
    }

    /// See [`CircuitBreaker::cancel`].
    pub fn cancel(&self, permit: Permit) {
        self.with(|b| b.cancel(permit))
    }

    /// The replay of `permit` is sent now (see [`CircuitBreaker::started`]): hand its verdict
    /// to the returned [`InFlight`]; dropped without one, the permit is given back.
    pub fn start(
        &self,
        permit: Permit,
        production_latency: Option<Duration>,
        now: Instant,
    ) -> InFlight<'_> {
        let permit = self.with(|b| b.started(permit, production_latency, now));
        InFlight {
            breaker: self,
            permit: Some(permit),
        }
    }

    /// Current state.
    pub fn state(&self) -> BreakerState {
        self.with(|b| b.state())
    }

    fn record(&self, permit: Permit, judged: Judgement, now: Instant) {
        let outcome = self.with(|b| b.record(permit, judged, now));
        self.telemetry.breaker_outcome(outcome);
    }
}

/// A replay on its way to the shadow. [`InFlight::finish`] hands its verdict to the breaker;
/// dropped unfinished (the request could not be sent, the replay was abandoned), it gives its
/// permit back as [`SharedBreaker::cancel`] does.
#[must_use = "finish it with the replay's verdict"]
pub struct InFlight<'a> {
    breaker: &'a SharedBreaker,
    permit: Option<Permit>,
}

impl InFlight<'_> {
    /// The replay's verdict, at `now`.
    pub fn finish(mut self, judged: Judgement, now: Instant) {
        if let Some(permit) = self.permit.take() {
            self.breaker.record(permit, judged, now);
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.breaker.cancel(permit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadow_core::compare::ErrorClass;
    use shadow_core::http::Header;

    const FAIL: Judgement = Judgement::Failure(ShadowFailure::Timeout);
    const OK: Judgement = Judgement::Success;
    const SHARED: Judgement = Judgement::SharedFailure(ShadowFailure::ServerError);
    const MS: Duration = Duration::from_millis(1);

    fn header(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: bytes::Bytes::from(value.to_string()),
        }
    }

    /// An answer with `status` after `ms` milliseconds.
    fn answer(status: u16, ms: u64) -> ShadowAnswer {
        ShadowAnswer::Response {
            trailers: Vec::new(),
            status,
            headers: Vec::new(),
            body: bytes::Bytes::new(),
            latency_ns: ms * 1_000_000,
        }
    }

    fn failed(class: ErrorClass, ms: u64) -> ShadowAnswer {
        ShadowAnswer::Failed {
            class,
            message: String::new(),
            latency_ns: ms * 1_000_000,
        }
    }

    /// A gRPC answer (HTTP 200) whose trailers carry `code`.
    fn grpc(code: &str) -> ShadowAnswer {
        ShadowAnswer::Response {
            trailers: vec![header("grpc-status", code)],
            status: 200,
            headers: vec![header("content-type", "application/grpc")],
            body: bytes::Bytes::new(),
            latency_ns: 1_000_000,
        }
    }

    /// Production's answer with `status` (gRPC with `grpc_code` in its trailers when given).
    fn production(status: u16, grpc_code: Option<&str>) -> HttpResponse {
        let (headers, trailers) = match grpc_code {
            Some(code) => (
                vec![header("content-type", "application/grpc")],
                vec![header("grpc-status", code)],
            ),
            None => (Vec::new(), Vec::new()),
        };
        HttpResponse {
            status,
            version: 1,
            headers,
            body: bytes::Bytes::new(),
            trailers,
        }
    }

    #[test]
    fn what_counts_as_a_failure_when_production_succeeded() {
        use Judgement::{Failure, Success};
        use ShadowFailure::*;
        let prod = production(200, None);
        let fast = Some(10 * MS);
        let j = |a: &ShadowAnswer, slow| judge(a, &prod, fast, slow);
        assert_eq!(j(&answer(200, 10), None), Success);
        assert_eq!(j(&answer(404, 10), None), Success, "the request's fault");
        assert_eq!(j(&answer(503, 10), None), Failure(ServerError));
        assert_eq!(j(&failed(ErrorClass::Timeout, 5), None), Failure(Timeout));
        assert_eq!(j(&failed(ErrorClass::Connect, 0), None), Failure(Connect));
        assert_eq!(j(&failed(ErrorClass::Protocol, 1), None), Failure(Protocol));
        let slow = Some(100 * MS);
        assert_eq!(j(&answer(200, 100), slow), Success);
        assert_eq!(j(&answer(200, 101), slow), Failure(Slow));
        assert_eq!(j(&answer(503, 101), slow), Failure(ServerError));
        // A 4xx production did not answer is still the request's fault.
        assert_eq!(
            judge(&answer(503, 1), &production(404, None), fast, None),
            Failure(ServerError),
            "production's 4xx is no failure of its side"
        );
        // gRPC: HTTP 200 with the call's status in the trailers.
        let ok_call = production(200, Some("0"));
        let g = |a: &ShadowAnswer, slow| judge(a, &ok_call, fast, slow);
        assert_eq!(g(&grpc("0"), None), Success);
        assert_eq!(g(&grpc("14"), None), Failure(GrpcServerError));
        assert_eq!(g(&grpc("13"), None), Failure(GrpcServerError));
        assert_eq!(
            g(&grpc("3"), None),
            Success,
            "INVALID_ARGUMENT: the request's"
        );
        assert_eq!(g(&grpc("0"), slow), Success);
        assert_eq!(Failure(Slow).outcome(), BreakerOutcome::Failure);
        assert_eq!(Success.outcome(), BreakerOutcome::Success);
    }

    #[test]
    fn failures_production_shares_are_not_the_shadows() {
        use Judgement::{Failure, SharedFailure, Success};
        use ShadowFailure::*;
        let fast = Some(10 * MS);
        let not_implemented = production(501, None);
        let j = |a: &ShadowAnswer, slow| judge(a, &not_implemented, fast, slow);
        // The reported case: both answer 501.
        assert_eq!(j(&answer(501, 3), None), SharedFailure(ServerError));
        assert_eq!(j(&answer(503, 3), None), SharedFailure(ServerError));
        assert_eq!(
            SharedFailure(ServerError).outcome(),
            BreakerOutcome::SharedFailure
        );
        // Production failed on its side: no shadow failure is worse, unless it is slower.
        assert_eq!(
            j(&failed(ErrorClass::Connect, 0), None),
            SharedFailure(Connect)
        );
        assert_eq!(
            j(&failed(ErrorClass::Timeout, 2_000), None),
            SharedFailure(Timeout)
        );
        let slow = Some(100 * MS);
        assert_eq!(j(&failed(ErrorClass::Timeout, 2_000), slow), Failure(Slow));
        assert_eq!(j(&answer(501, 101), slow), Failure(Slow));
        assert_eq!(j(&answer(200, 3), None), Success);
        // Production as slow as the shadow: the slowness is shared too.
        assert_eq!(
            judge(
                &answer(200, 500),
                &production(200, None),
                Some(400 * MS),
                slow
            ),
            Success
        );
        assert_eq!(
            judge(&answer(200, 500), &production(200, None), None, slow),
            Failure(Slow),
            "unknown production latency: the shadow's slowness is its own"
        );
        // gRPC server errors on both sides (and across HTTP and gRPC) are shared.
        let unavailable = production(200, Some("14"));
        assert_eq!(
            judge(&grpc("13"), &unavailable, fast, None),
            SharedFailure(GrpcServerError)
        );
        assert_eq!(
            judge(&answer(503, 1), &unavailable, fast, None),
            SharedFailure(ServerError)
        );
        assert_eq!(
            judge(&grpc("14"), &production(500, None), fast, None),
            SharedFailure(GrpcServerError)
        );
        // A client-side gRPC error in production is no failure of its side.
        assert_eq!(
            judge(&grpc("14"), &production(200, Some("3")), fast, None),
            Failure(GrpcServerError)
        );
    }

    fn cfg() -> CircuitBreakerConfig {
        let n = |n| std::num::NonZeroUsize::new(n).unwrap();
        CircuitBreakerConfig {
            enabled: true,
            window: n(10),
            min_requests: n(4),
            failure_ratio: 0.5,
            open_for: Duration::from_millis(1_000),
            probes: n(2),
            slow_call: None,
        }
    }

    /// Admits one request at `t` and records its answer.
    fn answered(b: &mut CircuitBreaker, judged: Judgement, t: Instant) -> BreakerOutcome {
        let permit = b.admit(t).expect("admitted");
        b.record(permit, judged, t)
    }

    #[test]
    fn opens_at_the_failure_ratio_once_enough_requests_are_seen() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(&cfg());
        answered(&mut b, FAIL, t);
        answered(&mut b, FAIL, t);
        answered(&mut b, FAIL, t);
        assert_eq!(b.state(), BreakerState::Closed, "below min_requests");
        assert_eq!(answered(&mut b, OK, t), BreakerOutcome::Success);
        assert_eq!(b.state(), BreakerState::Open, "3 of 4 failed");
        assert!(b.admit(t + Duration::from_millis(999)).is_none());
    }

    #[test]
    fn stays_closed_below_the_ratio_and_window_slides() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(&cfg());
        for i in 0..100 {
            answered(&mut b, if i % 3 == 1 { FAIL } else { OK }, t); // one in three fails
            assert_eq!(b.state(), BreakerState::Closed, "at {i}");
        }
        // Old successes slide out: the window holds 3 failures (at 91, 94, 97) in 10; three
        // failures in a row make 5 of 10.
        let permits: Vec<Permit> = (0..3).map(|_| b.admit(t).unwrap()).collect();
        for (i, p) in permits.into_iter().enumerate() {
            assert_eq!(b.state(), BreakerState::Closed, "after {i} failures");
            b.record(p, FAIL, t);
        }
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn shared_failures_neither_open_the_breaker_nor_dilute_real_failures() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(&cfg());
        for _ in 0..300 {
            assert_eq!(answered(&mut b, SHARED, t), BreakerOutcome::SharedFailure);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        // Interleaved with shared failures, 2 failures of 4 outcomes still open it.
        for judged in [OK, SHARED, FAIL, SHARED, SHARED, OK, SHARED, FAIL] {
            answered(&mut b, judged, t);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            b.cause(),
            &BreakerCause::Failures {
                failed: vec![(ShadowFailure::Timeout, 2)],
                outcomes: 4,
                in_flight: 0,
                paused_for: Duration::from_secs(1),
            }
        );
    }

    #[test]
    fn half_open_probes_then_closes_or_reopens() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(&cfg());
        for _ in 0..4 {
            answered(&mut b, FAIL, t);
        }
        assert_eq!(b.state(), BreakerState::Open);
        let t1 = t + Duration::from_secs(1);
        let first = b.admit(t1).expect("a probe");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let second = b.admit(t1).expect("a second probe");
        assert!(b.admit(t1).is_none(), "only two probes");
        b.cancel(second);
        let second = b.admit(t1).expect("a cancelled probe frees its slot");
        assert!(b.admit(t1).is_none());
        // A shared failure says nothing about the shadow: its slot goes to another probe.
        assert_eq!(b.record(second, SHARED, t1), BreakerOutcome::SharedFailure);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let second = b.admit(t1).expect("the shared failure's slot");
        assert!(b.admit(t1).is_none());
        b.record(first, OK, t1);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.record(second, FAIL, t1);
        assert_eq!(b.state(), BreakerState::Open, "a failed probe reopens");
        assert!(b.admit(t1 + Duration::from_millis(500)).is_none());
        let t2 = t1 + Duration::from_secs(1);
        let probes = [b.admit(t2).unwrap(), b.admit(t2).unwrap()];
        for p in probes {
            b.record(p, OK, t2);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit(t2).is_some());
        // Fresh window after closing: three failures are below min_requests again.
        for _ in 0..3 {
            answered(&mut b, FAIL, t2);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn answers_admitted_under_an_earlier_state_are_late() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(&cfg());
        // Admitted while closed, answered only after the breaker opened and went half-open.
        let slow_ones: Vec<Permit> = (0..3).map(|_| b.admit(t).unwrap()).collect();
        for _ in 0..4 {
            answered(&mut b, FAIL, t);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.record(slow_ones[0], OK, t), BreakerOutcome::Late);
        let t1 = t + Duration::from_secs(1);
        let probe = b.admit(t1).unwrap();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // Neither a late success closes it nor a late failure reopens it.
        assert_eq!(b.record(slow_ones[1], OK, t1), BreakerOutcome::Late);
        assert_eq!(b.record(slow_ones[2], FAIL, t1), BreakerOutcome::Late);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.cancel(slow_ones[0]);
        let second = b.admit(t1).unwrap();
        assert!(b.admit(t1).is_none(), "a late cancel frees no probe slot");
        b.record(probe, OK, t1);
        b.record(second, OK, t1);
        assert_eq!(b.state(), BreakerState::Closed);
        // A permit no breaker issued never counts.
        assert_eq!(b.record(Permit::default(), FAIL, t1), BreakerOutcome::Late);
    }

    fn slow_cfg() -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            slow_call: Some(100 * MS),
            ..cfg()
        }
    }

    #[test]
    fn replays_in_flight_past_slow_call_count_as_slow_calls() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(&slow_cfg());
        let fast = Some(10 * MS);
        let sent: Vec<Permit> = (0..4)
            .map(|_| {
                let p = b.admit(t).unwrap();
                b.started(p, fast, t)
            })
            .collect();
        // One whose production answer took longer than slow_call is not watched.
        let p = b.admit(t).unwrap();
        let _prod_slow = b.started(p, Some(200 * MS), t);
        assert!(
            b.admit(t + 100 * MS).is_some(),
            "not slower than slow_call yet"
        );
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit(t + 101 * MS).is_none(), "four slow calls in flight");
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            b.cause(),
            &BreakerCause::Failures {
                failed: vec![(ShadowFailure::Slow, 4)],
                outcomes: 4,
                in_flight: 4,
                paused_for: Duration::from_secs(1),
            }
        );
        // Their answers, when they come, are late.
        assert_eq!(b.record(sent[0], FAIL, t + 200 * MS), BreakerOutcome::Late);
    }

    #[test]
    fn slow_replays_in_flight_are_the_newest_outcomes_of_the_window() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(&slow_cfg());
        for _ in 0..10 {
            answered(&mut b, OK, t);
        }
        let mut send = |at: Instant| {
            let p = b.admit(at).unwrap();
            b.started(p, None, at)
        };
        let early: Vec<Permit> = (0..4).map(|_| send(t)).collect();
        let _later = send(t + 60 * MS);
        // One answers slow; three still in flight past slow_call: with the six newest
        // recorded outcomes (the slow one and five successes), 4 of 10.
        b.record(
            early[0],
            Judgement::Failure(ShadowFailure::Slow),
            t + 120 * MS,
        );
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit(t + 150 * MS).is_some());
        // The later one passes slow_call too: 5 of 10.
        assert!(b.admit(t + 161 * MS).is_none());
        assert_eq!(
            b.cause(),
            &BreakerCause::Failures {
                failed: vec![(ShadowFailure::Slow, 5)],
                outcomes: 10,
                in_flight: 4,
                paused_for: Duration::from_secs(1),
            }
        );
    }

    #[test]
    fn a_probe_in_flight_past_slow_call_fails_the_probing() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(&slow_cfg());
        for _ in 0..4 {
            answered(&mut b, FAIL, t);
        }
        let t1 = t + Duration::from_secs(1);
        let probe = b.admit(t1).unwrap();
        let probe = b.started(probe, Some(MS), t1);
        assert!(b.admit(t1 + 50 * MS).is_some(), "the second probe");
        assert!(b.admit(t1 + 60 * MS).is_none(), "probes are bounded");
        assert!(b.admit(t1 + 101 * MS).is_none());
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            b.cause(),
            &BreakerCause::ProbeFailed {
                failure: ShadowFailure::Slow,
                paused_for: Duration::from_secs(1)
            }
        );
        assert_eq!(b.record(probe, OK, t1 + 200 * MS), BreakerOutcome::Late);
    }

    #[test]
    fn disabled_breaker_always_admits_and_still_judges() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(&CircuitBreakerConfig {
            enabled: false,
            ..slow_cfg()
        });
        for _ in 0..100 {
            let p = b.admit(t).unwrap();
            let p = b.started(p, None, t);
            assert_eq!(b.record(p, FAIL, t), BreakerOutcome::Failure);
        }
        assert!(b.admit(t + Duration::from_secs(9)).is_some());
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn shared_breaker_reports_its_start_each_change_and_each_outcome() {
        use crate::telemetry::{Event, Recorder};
        let t = Instant::now();
        let recorder = Arc::new(Recorder::new());
        let b = SharedBreaker::new(CircuitBreaker::new(&cfg()), recorder.clone());
        let replay = |judged| {
            let permit = b.admit(t).expect("admitted");
            b.start(permit, None, t).finish(judged, t);
        };
        let late = b.admit(t).unwrap();
        for _ in 0..4 {
            replay(FAIL);
        }
        // Open: nothing is admitted, nothing changes; a late answer is counted as late.
        assert!(b.admit(t).is_none());
        b.start(late, None, t).finish(FAIL, t);
        let t1 = t + Duration::from_secs(1);
        let probe = b.admit(t1).unwrap();
        // Not sent after all (dropped unfinished): the slot goes back.
        drop(b.start(probe, None, t1));
        let probes = [b.admit(t1).unwrap(), b.admit(t1).unwrap()];
        assert!(b.admit(t1).is_none());
        for p in probes {
            b.start(p, None, t1).finish(OK, t1);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        let change = |state, cause| Event::BreakerChanged(BreakerChange { state, cause });
        let outcome = Event::BreakerOutcome;
        assert_eq!(
            recorder.events(),
            vec![
                change(BreakerState::Closed, BreakerCause::Start),
                outcome(BreakerOutcome::Failure),
                outcome(BreakerOutcome::Failure),
                outcome(BreakerOutcome::Failure),
                change(
                    BreakerState::Open,
                    BreakerCause::Failures {
                        failed: vec![(ShadowFailure::Timeout, 4)],
                        outcomes: 4,
                        in_flight: 0,
                        paused_for: Duration::from_secs(1),
                    }
                ),
                outcome(BreakerOutcome::Failure),
                outcome(BreakerOutcome::Late),
                change(BreakerState::HalfOpen, BreakerCause::Probing { probes: 2 }),
                outcome(BreakerOutcome::Success),
                change(BreakerState::Closed, BreakerCause::Recovered { probes: 2 }),
                outcome(BreakerOutcome::Success),
            ]
        );
    }

    #[test]
    fn opening_names_the_failures_in_the_window_by_kind() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(&CircuitBreakerConfig {
            min_requests: std::num::NonZeroUsize::new(6).unwrap(),
            ..cfg()
        });
        use ShadowFailure::*;
        for f in [
            None,
            Some(Connect),
            Some(Timeout),
            None,
            Some(Timeout),
            Some(ServerError),
        ] {
            answered(&mut b, f.map_or(OK, Judgement::Failure), t);
        }
        assert_eq!(b.state(), BreakerState::Open, "4 of 6 failed");
        assert_eq!(
            b.cause(),
            &BreakerCause::Failures {
                failed: vec![(Timeout, 2), (Connect, 1), (ServerError, 1)],
                outcomes: 6,
                in_flight: 0,
                paused_for: Duration::from_secs(1),
            }
        );
        let t1 = t + Duration::from_secs(1);
        answered(&mut b, Judgement::Failure(Protocol), t1);
        assert_eq!(
            b.cause(),
            &BreakerCause::ProbeFailed {
                failure: Protocol,
                paused_for: Duration::from_secs(1)
            }
        );
    }
}
