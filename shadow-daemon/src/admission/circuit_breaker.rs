//! Circuit breaker on the shadow: when too many replays fail (connect errors, timeouts, garbage,
//! 5xx), mirroring pauses (open), then a few probe requests are let through (half-open); if they
//! all succeed mirroring resumes (closed), if one fails it pauses again.
//!
//! ```text
//! closed --failure ratio >= threshold over >= min_requests--> open
//! open   --open_ms elapsed, next request--> half-open (admits `probes` requests)
//! half-open --all probes succeed--> closed      half-open --a probe fails--> open
//! ```
//!
//! Every change is reported with its cause ([`BreakerCause`]): the failures in the window, by
//! kind, when it opens; the probes when it closes.

use crate::config::CircuitBreakerConfig;
use shadow_core::compare::ShadowAnswer;
use shadow_core::vocabulary::ShadowFailure;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::telemetry::Telemetry;
pub use crate::telemetry::{BreakerCause, BreakerChange, BreakerState};
use std::sync::{Arc, Mutex};

/// How a replay outcome counts against the shadow, if it does: no usable answer (connect
/// error, timeout, invalid HTTP), a 5xx, or an answer slower than `slow_call` (when set). A 4xx
/// is the request's fault, not the shadow's.
pub fn shadow_failure(answer: &ShadowAnswer, slow_call: Option<Duration>) -> Option<ShadowFailure> {
    match answer {
        ShadowAnswer::Failed { class, .. } => ShadowFailure::of_class(*class),
        ShadowAnswer::Response { latency_ns, .. } => {
            // A 5xx, or a gRPC status that is the server's fault (UNAVAILABLE, INTERNAL, ...).
            let failure = answer
                .error_class()
                .filter(|c| c.is_shadow_failure())
                .and_then(ShadowFailure::of_class);
            if failure.is_some() {
                failure
            } else if slow_call.is_some_and(|s| *latency_ns > s.as_nanos() as u64) {
                Some(ShadowFailure::Slow)
            } else {
                None
            }
        }
    }
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
    state: BreakerState,
    /// Recent outcomes while closed: the failure, or `None` for a success.
    window: VecDeque<Option<ShadowFailure>>,
    failures: usize,
    opened_at: Option<Instant>,
    probes_admitted: usize,
    probes_succeeded: usize,
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
            state: BreakerState::Closed,
            window: VecDeque::new(),
            failures: 0,
            opened_at: None,
            probes_admitted: 0,
            probes_succeeded: 0,
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

    /// Whether a request may go to the shadow now. While half-open, each `true` is a probe.
    pub fn admit(&mut self, now: Instant) -> bool {
        if !self.enabled {
            return true;
        }
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => {
                let due = self
                    .opened_at
                    .is_none_or(|t| now.saturating_duration_since(t) >= self.open_for);
                if due {
                    self.state = BreakerState::HalfOpen;
                    self.cause = BreakerCause::Probing {
                        probes: self.probes,
                    };
                    self.probes_admitted = 1;
                    self.probes_succeeded = 0;
                }
                due
            }
            BreakerState::HalfOpen => {
                if self.probes_admitted < self.probes {
                    self.probes_admitted += 1;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// An admitted request was dropped before it reached the shadow (rate limit, full queue):
    /// gives a half-open probe slot back.
    pub fn cancel(&mut self) {
        if self.state == BreakerState::HalfOpen {
            self.probes_admitted = self.probes_admitted.saturating_sub(1);
        }
    }

    /// The outcome of a replayed request: how it failed (the shadow's fault), or `None`.
    pub fn record(&mut self, failure: Option<ShadowFailure>, now: Instant) {
        if !self.enabled {
            return;
        }
        match self.state {
            BreakerState::Closed => {
                self.window.push_back(failure);
                self.failures += usize::from(failure.is_some());
                if self.window.len() > self.window_len
                    && let Some(old) = self.window.pop_front()
                {
                    self.failures -= usize::from(old.is_some());
                }
                if self.window.len() >= self.min_requests
                    && self.failures as f64 >= self.failure_ratio * self.window.len() as f64
                {
                    let cause = BreakerCause::Failures {
                        failed: self.failures_by_kind(),
                        outcomes: self.window.len(),
                        paused_for: self.open_for,
                    };
                    self.open(now, cause);
                }
            }
            // Late answers to requests admitted before the breaker opened.
            BreakerState::Open => {}
            BreakerState::HalfOpen => match failure {
                Some(failure) => {
                    let cause = BreakerCause::ProbeFailed {
                        failure,
                        paused_for: self.open_for,
                    };
                    self.open(now, cause);
                }
                None => {
                    self.probes_succeeded += 1;
                    if self.probes_succeeded >= self.probes {
                        self.state = BreakerState::Closed;
                        self.cause = BreakerCause::Recovered {
                            probes: self.probes_succeeded,
                        };
                        self.window.clear();
                        self.failures = 0;
                    }
                }
            },
        }
    }

    /// The failures in the window by kind, most frequent first (ties in a fixed order).
    fn failures_by_kind(&self) -> Vec<(ShadowFailure, usize)> {
        let mut counts: Vec<(ShadowFailure, usize)> = ShadowFailure::ALL
            .iter()
            .map(|&kind| {
                let n = self.window.iter().filter(|f| **f == Some(kind)).count();
                (kind, n)
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        counts.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        counts
    }

    fn open(&mut self, now: Instant, cause: BreakerCause) {
        self.state = BreakerState::Open;
        self.cause = cause;
        self.opened_at = Some(now);
        self.window.clear();
        self.failures = 0;
    }
}

/// The circuit breaker shared by admission (which asks it) and the replay workers (which tell
/// it outcomes); every state change is reported as [`Telemetry::breaker_changed`].
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
        let before = b.state();
        let out = f(&mut b);
        let change = (b.state() != before).then(|| BreakerChange {
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
    pub fn admit(&self, now: Instant) -> bool {
        self.with(|b| b.admit(now))
    }

    /// See [`CircuitBreaker::cancel`].
    pub fn cancel(&self) {
        self.with(CircuitBreaker::cancel)
    }

    /// See [`CircuitBreaker::record`].
    pub fn record(&self, failure: Option<ShadowFailure>, now: Instant) {
        self.with(|b| b.record(failure, now))
    }

    /// Current state.
    pub fn state(&self) -> BreakerState {
        self.with(|b| b.state())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAIL: Option<ShadowFailure> = Some(ShadowFailure::Timeout);
    const OK: Option<ShadowFailure> = None;

    #[test]
    fn what_counts_as_a_failure() {
        use shadow_core::compare::ErrorClass;
        use shadow_core::http::Header;
        let ok = |status, ms: u64| ShadowAnswer::Response {
            trailers: Vec::new(),
            status,
            headers: Vec::new(),
            body: bytes::Bytes::new(),
            latency_ns: ms * 1_000_000,
        };
        let failed = |class| ShadowAnswer::Failed {
            class,
            message: String::new(),
            latency_ns: 0,
        };
        use ShadowFailure::*;
        assert_eq!(shadow_failure(&ok(200, 10), None), None);
        assert_eq!(shadow_failure(&ok(404, 10), None), None);
        assert_eq!(shadow_failure(&ok(503, 10), None), Some(ServerError));
        assert_eq!(
            shadow_failure(&failed(ErrorClass::Timeout), None),
            Some(Timeout)
        );
        assert_eq!(
            shadow_failure(&failed(ErrorClass::Connect), None),
            Some(Connect)
        );
        assert_eq!(
            shadow_failure(&failed(ErrorClass::Protocol), None),
            Some(Protocol)
        );
        let slow = Some(Duration::from_millis(100));
        assert_eq!(shadow_failure(&ok(200, 100), slow), None);
        assert_eq!(shadow_failure(&ok(200, 101), slow), Some(Slow));
        assert_eq!(shadow_failure(&ok(503, 101), slow), Some(ServerError));
        // gRPC: HTTP 200 with the call's status in the trailers.
        let grpc = |code: &str| ShadowAnswer::Response {
            trailers: vec![Header {
                name: "grpc-status".into(),
                value: bytes::Bytes::from(code.to_string()),
            }],
            status: 200,
            headers: vec![Header {
                name: "content-type".into(),
                value: bytes::Bytes::from_static(b"application/grpc"),
            }],
            body: bytes::Bytes::new(),
            latency_ns: 1_000_000,
        };
        assert_eq!(shadow_failure(&grpc("0"), None), None);
        assert_eq!(shadow_failure(&grpc("14"), None), Some(GrpcServerError));
        assert_eq!(shadow_failure(&grpc("13"), None), Some(GrpcServerError));
        assert_eq!(
            shadow_failure(&grpc("3"), None),
            None,
            "INVALID_ARGUMENT: the request's"
        );
        assert_eq!(shadow_failure(&grpc("0"), slow), None);
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

    #[test]
    fn opens_at_the_failure_ratio_once_enough_requests_are_seen() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(&cfg());
        b.record(FAIL, t);
        b.record(FAIL, t);
        b.record(FAIL, t);
        assert_eq!(b.state(), BreakerState::Closed, "below min_requests");
        b.record(OK, t);
        assert_eq!(b.state(), BreakerState::Open, "3 of 4 failed");
        assert!(!b.admit(t + Duration::from_millis(999)));
    }

    #[test]
    fn stays_closed_below_the_ratio_and_window_slides() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(&cfg());
        for i in 0..100 {
            b.record(if i % 3 == 1 { FAIL } else { OK }, t); // one in three fails
            assert_eq!(b.state(), BreakerState::Closed, "at {i}");
        }
        // Old successes slide out; five failures in a row make 5 of 10.
        for _ in 0..5 {
            b.record(FAIL, t);
        }
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn half_open_probes_then_closes_or_reopens() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(&cfg());
        for _ in 0..4 {
            b.record(FAIL, t);
        }
        assert_eq!(b.state(), BreakerState::Open);
        let t1 = t + Duration::from_secs(1);
        assert!(b.admit(t1));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.admit(t1));
        assert!(!b.admit(t1), "only two probes");
        b.cancel();
        assert!(b.admit(t1), "a cancelled probe frees its slot");
        b.record(OK, t1);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.record(FAIL, t1);
        assert_eq!(b.state(), BreakerState::Open, "a failed probe reopens");
        assert!(!b.admit(t1 + Duration::from_millis(500)));
        let t2 = t1 + Duration::from_secs(1);
        assert!(b.admit(t2));
        assert!(b.admit(t2));
        b.record(OK, t2);
        b.record(OK, t2);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit(t2));
        // Fresh window after closing: three failures are below min_requests again.
        for _ in 0..3 {
            b.record(FAIL, t2);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn disabled_breaker_always_admits() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(&CircuitBreakerConfig {
            enabled: false,
            ..cfg()
        });
        for _ in 0..100 {
            b.record(FAIL, t);
        }
        assert!(b.admit(t));
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn shared_breaker_reports_its_start_and_each_change() {
        use crate::telemetry::{Event, Recorder};
        let t = Instant::now();
        let recorder = Arc::new(Recorder::new());
        let b = SharedBreaker::new(CircuitBreaker::new(&cfg()), recorder.clone());
        for _ in 0..4 {
            b.record(FAIL, t);
        }
        // Open: nothing is admitted, nothing changes, nothing is reported.
        assert!(!b.admit(t));
        b.record(FAIL, t);
        let t1 = t + Duration::from_secs(1);
        assert!(b.admit(t1));
        b.cancel();
        assert!(b.admit(t1));
        assert!(b.admit(t1));
        b.record(OK, t1);
        b.record(OK, t1);
        assert_eq!(b.state(), BreakerState::Closed);
        let change = |state, cause| Event::BreakerChanged(BreakerChange { state, cause });
        assert_eq!(
            recorder.events(),
            vec![
                change(BreakerState::Closed, BreakerCause::Start),
                change(
                    BreakerState::Open,
                    BreakerCause::Failures {
                        failed: vec![(ShadowFailure::Timeout, 4)],
                        outcomes: 4,
                        paused_for: Duration::from_secs(1),
                    }
                ),
                change(BreakerState::HalfOpen, BreakerCause::Probing { probes: 2 }),
                change(BreakerState::Closed, BreakerCause::Recovered { probes: 2 }),
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
            b.record(f, t);
        }
        assert_eq!(b.state(), BreakerState::Open, "4 of 6 failed");
        assert_eq!(
            b.cause(),
            &BreakerCause::Failures {
                failed: vec![(Timeout, 2), (Connect, 1), (ServerError, 1)],
                outcomes: 6,
                paused_for: Duration::from_secs(1),
            }
        );
        let t1 = t + Duration::from_secs(1);
        assert!(b.admit(t1));
        b.record(Some(Protocol), t1);
        assert_eq!(
            b.cause(),
            &BreakerCause::ProbeFailed {
                failure: Protocol,
                paused_for: Duration::from_secs(1)
            }
        );
    }
}
