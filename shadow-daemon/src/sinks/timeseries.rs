//! The daemon's time series (`GET /api/timeseries`, the state file's `timeseries`): the ring of
//! [`shadow_core::timeseries`] behind a lock, stamped with the wall clock. [`Metrics`] feeds it
//! from the stages' events (seen, skipped, replayed, compared); the decision loop ticks it once
//! a second with the evaluation's ground-truth totals (accuracy per bucket) and saves it.
//!
//! The JSON types are [`shadow_core::timeseries`]'s ([`TimeSeriesSnapshot`] and its parts):
//! readers (`shadowd report`, `shadowd top`) deserialize them from there.
//!
//! [`Metrics`]: crate::sinks::metrics::Metrics

use shadow_core::compare::Comparison;
use shadow_core::stats::proportion::PairedCounts;
pub use shadow_core::timeseries::{
    Accuracy, Bucket, DEFAULT_BUCKETS, DEFAULT_INTERVAL, PerModel, Quantiles, Ratio, TimeSeries,
    TimeSeriesSnapshot,
};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch now (0 if the clock is before it).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A shared handle to the ring. Cheap to clone; every call takes the lock once, briefly.
#[derive(Clone, Debug)]
pub struct TimeSeriesHandle {
    ring: Arc<Mutex<TimeSeries>>,
}

impl Default for TimeSeriesHandle {
    /// [`DEFAULT_BUCKETS`] buckets of [`DEFAULT_INTERVAL`].
    fn default() -> Self {
        let buckets = NonZeroUsize::new(DEFAULT_BUCKETS).unwrap_or(NonZeroUsize::MIN);
        Self::new(DEFAULT_INTERVAL, buckets)
    }
}

impl TimeSeriesHandle {
    /// An empty ring of `buckets` buckets of `interval`.
    pub fn new(interval: Duration, buckets: NonZeroUsize) -> Self {
        TimeSeriesHandle {
            ring: Arc::new(Mutex::new(TimeSeries::new(interval, buckets))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TimeSeries> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One exchange reached admission.
    pub fn seen(&self) {
        self.lock().seen(now_ms());
    }

    /// One exchange was replayed to the shadow.
    pub fn mirrored(&self) {
        self.lock().mirrored(now_ms());
    }

    /// One exchange was not replayed.
    pub fn skipped(&self) {
        self.lock().skipped(now_ms());
    }

    /// One replayed request was compared.
    pub fn compared(&self, c: &Comparison) {
        self.lock().compared(now_ms(), c);
    }

    /// The clock tick of the decision loop: opens the current bucket even when nothing
    /// happens, and counts the ground truth joined since the last tick (`totals`: the
    /// evaluation's cumulative paired correctness).
    pub fn tick(&self, totals: PairedCounts) {
        let now = now_ms();
        let mut ring = self.lock();
        ring.advance(now);
        ring.truth_totals(now, totals);
    }

    /// The ring as `/api/timeseries` serves it.
    pub fn snapshot(&self) -> TimeSeriesSnapshot {
        self.lock().snapshot()
    }

    /// Continues from a saved ring (see [`TimeSeries::restore`]).
    pub fn restore(&self, saved: TimeSeriesSnapshot) {
        self.lock().restore(saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_land_in_the_current_bucket_and_the_tick_counts_ground_truth() {
        let ts = TimeSeriesHandle::new(Duration::from_secs(3600), NonZeroUsize::new(4).unwrap());
        ts.tick(PairedCounts::default());
        ts.seen();
        ts.seen();
        ts.skipped();
        ts.mirrored();
        ts.tick(PairedCounts {
            both: 2,
            first_only: 0,
            second_only: 1,
            neither: 0,
        });
        let s = ts.snapshot();
        assert_eq!((s.interval_seconds, s.capacity), (3600, 4));
        // One bucket, unless this test ran across the turn of an hour.
        let b = s.buckets.last().unwrap();
        if s.buckets.len() == 1 {
            assert_eq!((b.seen, b.skipped, b.mirrored), (2, 1, 1));
        }
        assert_eq!(b.accuracy.shadow.labelled, 3);
        assert_eq!(b.accuracy.production.correct, 2);
        assert!(b.start_unix_ms <= now_ms() && now_ms() < b.start_unix_ms + 3_600_000);
    }
}
