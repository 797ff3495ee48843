//! The events the stages report, as one trait: vector's internal events, inverted. Stages call
//! [`Telemetry`] and never name a sink; [`crate::sinks::metrics::Metrics`] implements it (logs
//! and Prometheus series), [`Recorder`] keeps the events for tests.
//!
//! Every event is named in the shared vocabulary of `shadow_core::vocabulary`, so stages, sinks
//! and tests agree on labels.

use shadow_core::compare::Comparison;
use shadow_core::vocabulary::{DropStage, KernelPacketResult, MirrorResult, Outcome, SkipReason};
use std::sync::Mutex;

/// What the stages report. Implementations must be cheap and must not block: they are called
/// on the capture and replay paths.
pub trait Telemetry: Send + Sync {
    /// The capture delivered `n` more segments.
    fn segments_captured(&self, n: u64);
    /// `n` segments or exchanges were lost at `stage`, before admission.
    fn dropped(&self, stage: DropStage, n: u64);
    /// The kernel-side tap counted `n` more packets with `result`.
    fn kernel_packets(&self, result: KernelPacketResult, n: u64);
    /// Reassembly now tracks `flows` connections and buffers `bytes` bytes.
    fn reassembly_load(&self, flows: u64, bytes: u64);
    /// One exchange reached admission.
    fn exchange_seen(&self, outcome: Outcome);
    /// Admission did not replay an exchange.
    fn skipped(&self, reason: SkipReason);
    /// The shadow circuit breaker is now in `state` (also reported once at start).
    fn breaker_changed(&self, state: BreakerState);
    /// One replay attempt finished; reported after its comparison, so a request counted as
    /// replayed is in every sink.
    fn replayed(&self, result: MirrorResult);
    /// The shadow answered a replay with an error status (4xx or 5xx).
    fn shadow_http_error(&self, status: u16);
    /// One replayed request was compared with production.
    fn compared(&self, comparison: &Comparison);
    /// The running label agreement ratio changed.
    fn agreement(&self, ratio: f64);
    /// A discrepancy log line was dropped, and why.
    fn discrepancy_log_dropped(&self, why: &str);
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
    /// [`Telemetry::kernel_packets`].
    KernelPackets(KernelPacketResult, u64),
    /// [`Telemetry::reassembly_load`].
    ReassemblyLoad { flows: u64, bytes: u64 },
    /// [`Telemetry::exchange_seen`].
    ExchangeSeen(Outcome),
    /// [`Telemetry::skipped`].
    Skipped(SkipReason),
    /// [`Telemetry::breaker_changed`].
    BreakerChanged(BreakerState),
    /// [`Telemetry::replayed`].
    Replayed(MirrorResult),
    /// [`Telemetry::shadow_http_error`].
    ShadowHttpError(u16),
    /// [`Telemetry::compared`].
    Compared(Comparison),
    /// [`Telemetry::agreement`].
    Agreement(f64),
    /// [`Telemetry::discrepancy_log_dropped`].
    DiscrepancyLogDropped(String),
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
    fn kernel_packets(&self, result: KernelPacketResult, n: u64) {
        self.push(Event::KernelPackets(result, n));
    }
    fn reassembly_load(&self, flows: u64, bytes: u64) {
        self.push(Event::ReassemblyLoad { flows, bytes });
    }
    fn exchange_seen(&self, outcome: Outcome) {
        self.push(Event::ExchangeSeen(outcome));
    }
    fn skipped(&self, reason: SkipReason) {
        self.push(Event::Skipped(reason));
    }
    fn breaker_changed(&self, state: BreakerState) {
        self.push(Event::BreakerChanged(state));
    }
    fn replayed(&self, result: MirrorResult) {
        self.push(Event::Replayed(result));
    }
    fn shadow_http_error(&self, status: u16) {
        self.push(Event::ShadowHttpError(status));
    }
    fn compared(&self, comparison: &Comparison) {
        self.push(Event::Compared(comparison.clone()));
    }
    fn agreement(&self, ratio: f64) {
        self.push(Event::Agreement(ratio));
    }
    fn discrepancy_log_dropped(&self, why: &str) {
        self.push(Event::DiscrepancyLogDropped(why.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_keeps_events_in_order_and_counts_them() {
        let r = Recorder::new();
        r.exchange_seen(Outcome::Complete);
        r.skipped(SkipReason::Filtered);
        r.exchange_seen(Outcome::Complete);
        r.dropped(DropStage::Capture, 3);
        assert_eq!(
            r.events(),
            vec![
                Event::ExchangeSeen(Outcome::Complete),
                Event::Skipped(SkipReason::Filtered),
                Event::ExchangeSeen(Outcome::Complete),
                Event::Dropped(DropStage::Capture, 3),
            ]
        );
        assert_eq!(r.count(&Event::ExchangeSeen(Outcome::Complete)), 2);
        assert_eq!(r.count(&Event::Skipped(SkipReason::QueueFull)), 0);
    }
}
