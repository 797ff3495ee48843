//! Latency distributions in bounded memory: an HDR-like histogram with log-spaced buckets (32
//! per doubling, so a quantile read from it is within 1.1 % of the true value), from 1 µs to
//! about 18 minutes; slower values share the last bucket and faster ones the first.

use serde::{Deserialize, Serialize};

/// Buckets per doubling of the latency.
const PER_DOUBLING: f64 = 32.0;
/// The lower edge of the log-spaced buckets, ns (bucket 0 holds everything below it).
const BASE_NS: f64 = 1_000.0;
/// Doublings covered above [`BASE_NS`] (2^30 µs ≈ 1074 s).
const DOUBLINGS: usize = 30;
/// Bucket count: one below the base, `PER_DOUBLING` per doubling, one overflow.
const BUCKETS: usize = DOUBLINGS * PER_DOUBLING as usize + 2;

/// A latency distribution: exact count, sum, min and max; quantiles from log-spaced buckets.
/// About 8 KB once the first value is recorded, nothing before.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    count: u64,
    sum_ns: u128,
    min_ns: u64,
    max_ns: u64,
}

fn bucket(ns: u64) -> usize {
    let ns = ns as f64;
    if ns < BASE_NS {
        return 0;
    }
    let i = ((ns / BASE_NS).log2() * PER_DOUBLING).floor() as usize + 1;
    i.min(BUCKETS - 1)
}

/// The representative value of bucket `i` (ns): the geometric middle of its edges.
fn middle(i: usize) -> f64 {
    if i == 0 {
        return BASE_NS / 2.0;
    }
    BASE_NS * ((i as f64 - 0.5) / PER_DOUBLING).exp2()
}

impl LatencyHistogram {
    /// Adds one latency.
    pub fn record(&mut self, ns: u64) {
        if self.counts.is_empty() {
            self.min_ns = ns;
        }
        // Empty before the first value; a restored state of another shape is re-fitted.
        if self.counts.len() != BUCKETS {
            self.counts.resize(BUCKETS, 0);
        }
        self.counts[bucket(ns)] += 1;
        self.count += 1;
        self.sum_ns += u128::from(ns);
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// Latencies recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q` quantile (0..=1) in ns, nearest rank, within 1.1 % (exact for the first and last
    /// rank, clamped to the exact min and max); `None` before the first value.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        if rank == 1 {
            return Some(self.min_ns as f64);
        }
        if rank >= self.count {
            return Some(self.max_ns as f64);
        }
        let mut seen = 0;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(middle(i).clamp(self.min_ns as f64, self.max_ns as f64));
            }
        }
        Some(self.max_ns as f64)
    }

    /// The cumulative distribution in milliseconds: for each non-empty bucket, its upper edge
    /// (clamped to the exact max) and the fraction of latencies at or below it; empty before
    /// the first value. Within 1.1 %, like the quantiles.
    pub fn cdf_ms(&self) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            if n == 0 {
                continue;
            }
            seen += n;
            let upper = (BASE_NS * (i as f64 / PER_DOUBLING).exp2()).min(self.max_ns as f64);
            out.push((upper / 1e6, seen as f64 / self.count as f64));
        }
        out
    }

    /// Count, mean, max and quantiles in milliseconds (`null`s before the first value).
    pub fn stats(&self) -> LatencyStats {
        let ms = |ns: f64| ns / 1e6;
        let any = self.count > 0;
        LatencyStats {
            count: self.count,
            mean_ms: any.then(|| ms(self.sum_ns as f64 / self.count as f64)),
            max_ms: any.then(|| ms(self.max_ns as f64)),
            p50_ms: self.quantile(0.5).map(ms),
            p90_ms: self.quantile(0.9).map(ms),
            p99_ms: self.quantile(0.99).map(ms),
        }
    }
}

/// A latency distribution as served in `/api/summary`, in milliseconds; every value is `null`
/// while `count` is 0.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencyStats {
    /// Latencies recorded.
    pub count: u64,
    /// Their mean.
    pub mean_ms: Option<f64>,
    /// The largest.
    pub max_ms: Option<f64>,
    /// Median (within 1.1 %).
    pub p50_ms: Option<f64>,
    /// 90th percentile (within 1.1 %).
    pub p90_ms: Option<f64>,
    /// 99th percentile (within 1.1 %).
    pub p99_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cdf_rises_to_one_at_the_max() {
        let mut h = LatencyHistogram::default();
        assert!(h.cdf_ms().is_empty());
        for ms in [1, 1, 2, 10] {
            h.record(ms * 1_000_000);
        }
        let cdf = h.cdf_ms();
        assert_eq!(cdf.len(), 3, "{cdf:?}");
        assert!((cdf[0].0 - 1.0).abs() < 0.03 && cdf[0].1 == 0.5, "{cdf:?}");
        assert!((cdf[1].0 - 2.0).abs() < 0.05 && cdf[1].1 == 0.75, "{cdf:?}");
        assert_eq!(cdf[2], (10.0, 1.0));
    }

    #[test]
    fn empty_has_no_numbers() {
        let h = LatencyHistogram::default();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(
            h.stats(),
            LatencyStats {
                count: 0,
                ..LatencyStats::default()
            }
        );
        let json = serde_json::to_value(h.stats()).unwrap();
        assert!(
            json["p99_ms"].is_null() && json["mean_ms"].is_null(),
            "{json}"
        );
    }

    #[test]
    fn quantiles_are_within_the_bucket_error_over_the_whole_range() {
        // 1 µs .. ~16 min, values 3 % apart: each quantile of a known set, against the truth.
        let mut values: Vec<u64> = Vec::new();
        let mut v = 1_000.0f64;
        while v < 1e12 {
            values.push(v as u64);
            v *= 1.03;
        }
        let mut h = LatencyHistogram::default();
        for &x in &values {
            h.record(x);
        }
        for q in [0.01, 0.25, 0.5, 0.9, 0.99, 1.0] {
            let rank = ((q * values.len() as f64).ceil() as usize).max(1);
            let truth = values[rank - 1] as f64;
            let got = h.quantile(q).unwrap();
            assert!(
                (got / truth - 1.0).abs() <= 0.011,
                "q {q}: {got} vs {truth}"
            );
        }
        assert_eq!(h.quantile(1.0).unwrap(), *values.last().unwrap() as f64);
        assert_eq!(h.quantile(0.0).unwrap(), values[0] as f64);
    }

    #[test]
    fn stats_in_milliseconds() {
        let mut h = LatencyHistogram::default();
        for ms in [1, 2, 3, 4, 100] {
            h.record(ms * 1_000_000);
        }
        let s = h.stats();
        assert_eq!(s.count, 5);
        assert_eq!(s.mean_ms, Some(22.0));
        assert_eq!(s.max_ms, Some(100.0));
        let p50 = s.p50_ms.unwrap();
        assert!((p50 - 3.0).abs() < 0.033, "{p50}");
        assert_eq!(s.p99_ms, Some(100.0), "clamped to the exact max");
        // Outside the buckets' range: still counted, quantiles clamped to what was seen.
        let mut h = LatencyHistogram::default();
        h.record(10);
        h.record(u64::MAX / 2);
        assert_eq!(h.quantile(0.5), Some(10.0));
        assert_eq!(h.quantile(1.0), Some((u64::MAX / 2) as f64));
    }
}
