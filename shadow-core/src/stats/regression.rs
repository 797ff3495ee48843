//! Streaming error statistics for numeric predictions: MAE, RMSE, mean signed delta and its
//! standard deviation, updated with Welford's running-mean recurrences (`mean += (x − mean) / n`)
//! so long runs of large values neither overflow nor lose precision the way sums would.
//!
//! `delta = prediction − truth`: a positive mean signed delta means the model over-predicts.
//! Pairs where either value is not finite are counted in [`RegressionReport::rejected`] and
//! otherwise ignored.

use serde::{Deserialize, Serialize};

/// Running error statistics of one model's numeric predictions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RegressionStats {
    count: u64,
    mean_abs: f64,
    mean_sq: f64,
    mean_delta: f64,
    /// Welford's sum of squared deviations of `delta` from its running mean.
    m2_delta: f64,
    rejected: u64,
}

/// A snapshot of [`RegressionStats`]; every value is `None` before the first pair.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegressionReport {
    /// Pairs counted.
    pub count: u64,
    /// Pairs ignored because a value was not finite.
    pub rejected: u64,
    /// Mean absolute error.
    pub mae: Option<f64>,
    /// Root mean squared error.
    pub rmse: Option<f64>,
    /// Mean of `prediction − truth`.
    pub mean_signed_delta: Option<f64>,
    /// Sample standard deviation of `prediction − truth` (needs two pairs).
    pub delta_std_dev: Option<f64>,
}

impl RegressionStats {
    /// Counts one prediction against its true value.
    pub fn record(&mut self, prediction: f64, truth: f64) {
        let delta = prediction - truth;
        // Also rejects a finite difference of two huge values that overflowed, and squares
        // that would overflow.
        if !prediction.is_finite() || !truth.is_finite() || !(delta * delta).is_finite() {
            self.rejected = self.rejected.saturating_add(1);
            return;
        }
        self.count += 1;
        let n = self.count as f64;
        self.mean_abs += (delta.abs() - self.mean_abs) / n;
        self.mean_sq += (delta * delta - self.mean_sq) / n;
        let before = self.mean_delta;
        self.mean_delta += (delta - before) / n;
        self.m2_delta += (delta - before) * (delta - self.mean_delta);
    }

    /// Pairs counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The current values.
    pub fn report(&self) -> RegressionReport {
        let any = self.count > 0;
        RegressionReport {
            count: self.count,
            rejected: self.rejected,
            mae: any.then_some(self.mean_abs),
            rmse: any.then(|| self.mean_sq.max(0.0).sqrt()),
            mean_signed_delta: any.then_some(self.mean_delta),
            delta_std_dev: (self.count > 1)
                .then(|| (self.m2_delta.max(0.0) / (self.count - 1) as f64).sqrt()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn near(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn hand_worked_values() {
        let mut s = RegressionStats::default();
        // (prediction, truth): deltas +1, −2, +3, 0.
        for (p, t) in [(2.0, 1.0), (3.0, 5.0), (10.0, 7.0), (4.0, 4.0)] {
            s.record(p, t);
        }
        let r = s.report();
        assert_eq!(r.count, 4);
        // MAE = (1 + 2 + 3 + 0)/4 = 1.5
        assert!(near(r.mae, 1.5));
        // RMSE = √((1 + 4 + 9 + 0)/4) = √3.5 = 1.870829
        assert!(near(r.rmse, 3.5f64.sqrt()));
        // mean signed delta = (1 − 2 + 3 + 0)/4 = 0.5
        assert!(near(r.mean_signed_delta, 0.5));
        // sample variance = ((0.5)² + (−2.5)² + (2.5)² + (−0.5)²)/3 = 13/3 → sd = 2.081666
        assert!(near(r.delta_std_dev, (13.0f64 / 3.0).sqrt()));
    }

    #[test]
    fn empty_and_rejected() {
        let mut s = RegressionStats::default();
        assert_eq!(s.report().mae, None);
        s.record(f64::NAN, 1.0);
        s.record(1.0, f64::INFINITY);
        s.record(f64::MAX, -f64::MAX);
        s.record(1.0, 1.0);
        let r = s.report();
        assert_eq!((r.count, r.rejected), (1, 3));
        assert_eq!(r.mae, Some(0.0));
        assert_eq!(r.delta_std_dev, None);
    }

    #[test]
    fn stable_around_a_large_offset() {
        // Deltas 1e9 + {0, 1, 2}: naive Σx² − (Σx)²/n loses the variance; Welford keeps it (1).
        let mut s = RegressionStats::default();
        for d in [0.0, 1.0, 2.0] {
            s.record(1e9 + d, 0.0);
        }
        assert!(near(s.report().delta_std_dev, 1.0));
        assert!(near(s.report().mean_signed_delta, 1e9 + 1.0));
    }

    proptest! {
        #[test]
        fn rmse_bounds_mae_and_values_are_finite(pairs in proptest::collection::vec((-1e6f64..1e6, -1e6f64..1e6), 1..200)) {
            let mut s = RegressionStats::default();
            for (p, t) in &pairs { s.record(*p, *t); }
            let r = s.report();
            let (mae, rmse, msd) = (r.mae.unwrap(), r.rmse.unwrap(), r.mean_signed_delta.unwrap());
            prop_assert!(mae.is_finite() && rmse.is_finite() && msd.is_finite());
            // |mean delta| ≤ MAE ≤ RMSE (Jensen), up to rounding.
            prop_assert!(msd.abs() <= mae * (1.0 + 1e-9) + 1e-9);
            prop_assert!(mae <= rmse * (1.0 + 1e-9) + 1e-9);
        }
    }
}
