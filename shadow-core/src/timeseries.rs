//! The time series behind `GET /api/timeseries`, `shadowd report`'s charts over time and
//! `shadowd top`: a bounded ring of fixed-length buckets (one per `interval`, at most
//! `capacity`, oldest dropped first), each counting what happened in it: exchanges seen,
//! mirrored and skipped, pairs compared and agreeing (with the Wilson interval of the
//! agreement), ground truth joined and each model's accuracy on it, each model's p50/p99
//! latency and its errors.
//!
//! Pure: the caller passes the time (milliseconds since the Unix epoch) with every event, and
//! buckets start at multiples of the interval. Events never go back in time: one stamped
//! before the current bucket (the clock was set back) is counted in the current bucket.
//! Intervals without any event are kept as empty buckets, so the ring always covers one
//! unbroken stretch of time and the last bucket is the current, still-filling one.
//!
//! Cost per event: a few additions to the current bucket; its two latency histograms
//! ([`LatencyHistogram`], the evaluation's own: quantiles within 1.1 %) are allocated once per
//! bucket, on its first latency. A closed bucket keeps only its numbers ([`Bucket`], about
//! 250 bytes), so 1440 buckets take well under a megabyte.
//!
//! The serialised form ([`TimeSeriesSnapshot`]) is the `/api/timeseries` JSON, also saved in
//! the state file; [`TimeSeries::restore`] continues from it.

use crate::compare::Comparison;
use crate::evaluation::LatencyHistogram;
use crate::stats::proportion::{PairedCounts, Proportion};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::time::Duration;

/// Default bucket length (`admin.timeseries_interval_seconds`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Default ring size (`admin.timeseries_buckets`): 24 hours of one-minute buckets.
pub const DEFAULT_BUCKETS: usize = 1440;

/// `GET /api/timeseries`: the ring, oldest bucket first; the last one is the current, still
/// filling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimeSeriesSnapshot {
    /// Length of one bucket, seconds.
    pub interval_seconds: u64,
    /// Most buckets kept.
    pub capacity: usize,
    /// The buckets, oldest first.
    pub buckets: Vec<Bucket>,
}

/// What happened in one interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Start of the interval, milliseconds since the Unix epoch (a multiple of the interval).
    pub start_unix_ms: u64,
    /// Exchanges seen on the wire (each ends as mirrored or skipped).
    pub seen: u64,
    /// Exchanges replayed to the shadow (whatever the result).
    pub mirrored: u64,
    /// Exchanges not replayed, any reason.
    pub skipped: u64,
    /// Pairs compared: the shadow answered and the agreement of the two answers is defined
    /// (the `samples` of `/api/summary`'s request agreement).
    pub compared: u64,
    /// Of those, the ones whose labels (or predictions) agree.
    pub agreed: u64,
    /// `agreed / compared` with its Wilson 95 % interval (`null`s when `compared` is 0).
    pub agreement: Ratio,
    /// Each model's accuracy on the ground truth joined in this interval.
    pub accuracy: PerModel<Accuracy>,
    /// Each model's latency quantiles in milliseconds.
    pub latency_ms: PerModel<Quantiles>,
    /// Each model's error answers and (the shadow) failures.
    pub errors: PerModel<u64>,
}

/// One value for each model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PerModel<T> {
    /// Production's.
    pub production: T,
    /// The shadow's.
    pub shadow: T,
}

/// A proportion with its Wilson 95 % interval; all `null` without trials.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    /// The proportion.
    pub value: Option<f64>,
    /// Lower end of the interval.
    pub low: Option<f64>,
    /// Upper end of the interval.
    pub high: Option<f64>,
}

impl Ratio {
    /// `successes / trials` with its Wilson 95 % interval.
    pub fn of(successes: u64, trials: u64) -> Self {
        match Proportion::new(successes, trials).estimate() {
            Some(e) => Ratio {
                value: Some(e.value),
                low: e.interval.map(|i| i.lo),
                high: e.interval.map(|i| i.hi),
            },
            None => Ratio::default(),
        }
    }
}

/// One model's accuracy on labelled rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Labelled rows (ground truth joined).
    pub labelled: u64,
    /// Of those, the ones the model got right.
    pub correct: u64,
    /// `correct / labelled` (`null` when `labelled` is 0).
    pub value: Option<f64>,
    /// Lower end of its Wilson 95 % interval.
    pub low: Option<f64>,
    /// Upper end of its Wilson 95 % interval.
    pub high: Option<f64>,
}

impl Accuracy {
    /// `correct / labelled` with its Wilson 95 % interval.
    pub fn of(correct: u64, labelled: u64) -> Self {
        let r = Ratio::of(correct, labelled);
        Accuracy {
            labelled,
            correct,
            value: r.value,
            low: r.low,
            high: r.high,
        }
    }
}

/// Latency quantiles in milliseconds (`null` without a sample).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    /// Median.
    pub p50: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

impl Quantiles {
    fn of(h: &LatencyHistogram) -> Self {
        let ms = |q: f64| h.quantile(q).map(|ns| ns / 1e6);
        Quantiles {
            p50: ms(0.5),
            p99: ms(0.99),
        }
    }
}

/// The bucket being filled: counters, and latency histograms from which its quantiles are
/// read when it closes.
#[derive(Clone, Debug, Default)]
struct OpenBucket {
    /// Counters (its quantiles are those restored with it, if it was reopened, until a latency
    /// of that model is recorded).
    counts: Bucket,
    production: LatencyHistogram,
    shadow: LatencyHistogram,
}

impl OpenBucket {
    fn starting(start_unix_ms: u64) -> Self {
        OpenBucket {
            counts: Bucket {
                start_unix_ms,
                ..Bucket::default()
            },
            ..OpenBucket::default()
        }
    }

    /// Its numbers as of now.
    fn close(&self) -> Bucket {
        let mut b = self.counts.clone();
        b.agreement = Ratio::of(b.agreed, b.compared);
        b.accuracy = PerModel {
            production: Accuracy::of(
                b.accuracy.production.correct,
                b.accuracy.production.labelled,
            ),
            shadow: Accuracy::of(b.accuracy.shadow.correct, b.accuracy.shadow.labelled),
        };
        if self.production.count() > 0 {
            b.latency_ms.production = Quantiles::of(&self.production);
        }
        if self.shadow.count() > 0 {
            b.latency_ms.shadow = Quantiles::of(&self.shadow);
        }
        b
    }
}

/// The ring.
#[derive(Clone, Debug)]
pub struct TimeSeries {
    interval_ms: u64,
    capacity: NonZeroUsize,
    /// Closed buckets, oldest first: at most `capacity - 1`, the current one being the last.
    closed: VecDeque<Bucket>,
    /// The current bucket (none before the first event).
    open: Option<OpenBucket>,
    /// The cumulative ground-truth counts last seen by [`TimeSeries::truth_totals`].
    truth_seen: Option<PairedCounts>,
}

impl TimeSeries {
    /// An empty ring of `capacity` buckets of `interval` each (an interval under a millisecond
    /// counts as one millisecond).
    pub fn new(interval: Duration, capacity: NonZeroUsize) -> Self {
        TimeSeries {
            interval_ms: u64::try_from(interval.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            capacity,
            closed: VecDeque::new(),
            open: None,
            truth_seen: None,
        }
    }

    /// Length of a bucket.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// Most buckets kept.
    pub fn capacity(&self) -> usize {
        self.capacity.get()
    }

    /// Buckets kept now (the current one included).
    pub fn len(&self) -> usize {
        self.closed.len() + usize::from(self.open.is_some())
    }

    /// Whether no bucket was started yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bucket for `now_ms`: closes the current one (and adds empty ones for the intervals
    /// without events) when `now_ms` is past it.
    fn at(&mut self, now_ms: u64) -> &mut OpenBucket {
        let start = now_ms - now_ms % self.interval_ms;
        let current = self.open.as_ref().map(|o| o.counts.start_unix_ms);
        match current {
            None => {
                self.open = Some(OpenBucket::starting(start));
            }
            Some(current) if start > current => {
                if let Some(done) = self.open.take() {
                    self.push_closed(done.close());
                }
                // Empty buckets for the intervals between, no more than the ring holds.
                let missing = (start - current) / self.interval_ms - 1;
                let keep = (self.capacity.get() as u64 - 1).min(missing);
                for i in (1..=keep).rev() {
                    self.push_closed(Bucket {
                        start_unix_ms: start - i * self.interval_ms,
                        ..Bucket::default()
                    });
                }
                self.open = Some(OpenBucket::starting(start));
            }
            // The same interval, or an earlier one (the clock went back): the current bucket.
            Some(_) => {}
        }
        self.open.get_or_insert_with(|| OpenBucket::starting(start))
    }

    fn push_closed(&mut self, bucket: Bucket) {
        self.closed.push_back(bucket);
        while self.closed.len() >= self.capacity.get() {
            self.closed.pop_front();
        }
    }

    /// Moves the ring to `now_ms` without counting anything (a clock tick: the current bucket
    /// exists even when nothing happens).
    pub fn advance(&mut self, now_ms: u64) {
        self.at(now_ms);
    }

    /// One exchange reached admission.
    pub fn seen(&mut self, now_ms: u64) {
        self.at(now_ms).counts.seen += 1;
    }

    /// One exchange was replayed to the shadow.
    pub fn mirrored(&mut self, now_ms: u64) {
        self.at(now_ms).counts.mirrored += 1;
    }

    /// One exchange was not replayed.
    pub fn skipped(&mut self, now_ms: u64) {
        self.at(now_ms).counts.skipped += 1;
    }

    /// One replayed request was compared with production (counted as the evaluation's
    /// scoreboard counts it: agreement where defined, latency of answers, errors per model).
    pub fn compared(&mut self, now_ms: u64, c: &Comparison) {
        let b = self.at(now_ms);
        if let Some(agreed) = c.agreement {
            b.counts.compared += 1;
            b.counts.agreed += u64::from(agreed);
        }
        if let Some(ns) = c.production.latency_ns {
            b.production.record(ns);
        }
        if let Some(ns) = c.shadow.latency_ns
            && c.shadow_answered()
        {
            b.shadow.record(ns);
        }
        b.counts.errors.production += u64::from(c.production.error.is_some());
        b.counts.errors.shadow += u64::from(c.shadow.error.is_some());
    }

    /// The evaluation's cumulative paired correctness on labelled rows (production first) at
    /// `now_ms`: what grew since the last call is counted in the current bucket. The first call
    /// (and a call after the totals went down: the evaluation was restored) only sets where
    /// counting starts.
    pub fn truth_totals(&mut self, now_ms: u64, totals: PairedCounts) {
        let last = self.truth_seen.replace(totals);
        let Some(last) = last else {
            return;
        };
        let grew = |now: u64, then: u64| now.checked_sub(then);
        let (Some(both), Some(first_only), Some(second_only), Some(neither)) = (
            grew(totals.both, last.both),
            grew(totals.first_only, last.first_only),
            grew(totals.second_only, last.second_only),
            grew(totals.neither, last.neither),
        ) else {
            return;
        };
        let labelled = both + first_only + second_only + neither;
        if labelled == 0 {
            return;
        }
        let acc = &mut self.at(now_ms).counts.accuracy;
        acc.production.labelled += labelled;
        acc.production.correct += both + first_only;
        acc.shadow.labelled += labelled;
        acc.shadow.correct += both + second_only;
    }

    /// The ring as `/api/timeseries` serves it.
    pub fn snapshot(&self) -> TimeSeriesSnapshot {
        let mut buckets: Vec<Bucket> = self.closed.iter().cloned().collect();
        if let Some(open) = &self.open {
            buckets.push(open.close());
        }
        TimeSeriesSnapshot {
            interval_seconds: self.interval_ms.div_ceil(1000),
            capacity: self.capacity.get(),
            buckets,
        }
    }

    /// Continues from a saved snapshot (replacing what was counted so far). Buckets of another
    /// interval length are dropped, so are buckets not on an interval boundary, and the newest
    /// `capacity` are kept. The newest one becomes the
    /// current bucket again if the clock is still in it: its counters go on, its latency
    /// quantiles stay as saved until a new latency of that model arrives.
    pub fn restore(&mut self, saved: TimeSeriesSnapshot) {
        self.closed.clear();
        self.open = None;
        self.truth_seen = None;
        if saved.interval_seconds.saturating_mul(1000) != self.interval_ms {
            return;
        }
        let mut buckets = saved.buckets;
        buckets.retain(|b| b.start_unix_ms % self.interval_ms == 0);
        buckets.sort_by_key(|b| b.start_unix_ms);
        buckets.dedup_by_key(|b| b.start_unix_ms);
        let skip = buckets.len().saturating_sub(self.capacity.get());
        buckets.drain(..skip);
        if let Some(last) = buckets.pop() {
            self.closed.extend(buckets);
            self.open = Some(OpenBucket {
                counts: last,
                ..OpenBucket::default()
            });
        }
    }
}

#[cfg(test)]
mod tests;
