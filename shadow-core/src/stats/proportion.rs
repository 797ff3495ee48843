//! Proportions and their confidence intervals.
//!
//! - [`wilson`]: the Wilson score interval for one binomial proportion (Wilson 1927), the
//!   interval recommended by Newcombe (1998a) and Agresti & Coull (1998) over the Wald interval:
//!   it never leaves [0, 1] and keeps close to nominal coverage for small `n` and extreme `p`.
//! - [`newcombe_difference`]: Newcombe's hybrid score interval for the difference of two
//!   independent proportions (Newcombe 1998b, method 10).
//! - [`newcombe_paired_difference`]: its version for paired proportions, the same requests
//!   judged for two models (Newcombe 1998c, method 10).
//!
//! References: R. G. Newcombe, "Two-sided confidence intervals for the single proportion:
//! comparison of seven methods", Stat. Med. 17:857–872 (1998a); "Interval estimation for the
//! difference between independent proportions: comparison of eleven methods", Stat. Med.
//! 17:873–890 (1998b); "Improved confidence intervals for the difference between binomial
//! proportions based on paired data", Stat. Med. 17:2635–2650 (1998c).

use serde::{Deserialize, Serialize};

/// The standard normal quantile for a two-sided 95 % interval, Φ⁻¹(0.975).
pub const Z_95: f64 = 1.959_963_984_540_054;

/// A closed interval `[lo, hi]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

impl Interval {
    /// Whether `x` lies within the interval (bounds included).
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }
}

/// A point estimate with its confidence interval (`interval` is `None` where no interval is
/// defined for the statistic).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The point estimate.
    pub value: f64,
    /// Its confidence interval.
    pub interval: Option<Interval>,
}

/// `successes` out of `trials`, as counted; the estimate and interval are computed on demand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proportion {
    /// Trials that succeeded.
    pub successes: u64,
    /// All trials.
    pub trials: u64,
}

impl Proportion {
    /// `successes` of `trials` (`successes` is clamped to `trials`).
    pub fn new(successes: u64, trials: u64) -> Self {
        Self {
            successes: successes.min(trials),
            trials,
        }
    }

    /// Counts one trial.
    pub fn record(&mut self, success: bool) {
        self.trials = self.trials.saturating_add(1);
        self.successes = self.successes.saturating_add(u64::from(success));
    }

    /// `successes / trials`, `None` before the first trial.
    pub fn ratio(&self) -> Option<f64> {
        (self.trials > 0).then(|| self.successes as f64 / self.trials as f64)
    }

    /// The ratio with its 95 % Wilson interval, `None` before the first trial.
    pub fn estimate(&self) -> Option<Estimate> {
        self.estimate_z(Z_95)
    }

    /// The ratio with its Wilson interval for normal quantile `z`.
    pub fn estimate_z(&self, z: f64) -> Option<Estimate> {
        Some(Estimate {
            value: self.ratio()?,
            interval: wilson(self.successes, self.trials, z),
        })
    }
}

/// Wilson score interval for `k` successes of `n` trials at normal quantile `z` (use [`Z_95`]
/// for 95 %). `None` when `n == 0` or `z` is not a finite non-negative number; `k > n` is
/// clamped to `n`.
///
/// centre = (p̂ + z²/2n) / (1 + z²/n), half-width = z·√(p̂(1−p̂)/n + z²/4n²) / (1 + z²/n).
pub fn wilson(k: u64, n: u64, z: f64) -> Option<Interval> {
    if n == 0 || !z.is_finite() || z < 0.0 {
        return None;
    }
    let k = k.min(n);
    let nf = n as f64;
    let p = k as f64 / nf;
    let z2 = z * z;
    let denom = 1.0 + z2 / nf;
    let centre = (p + z2 / (2.0 * nf)) / denom;
    let half = z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / denom;
    // The exact bounds are 0 at k = 0 and 1 at k = n; pin them so rounding cannot exclude p̂.
    let lo = if k == 0 {
        0.0
    } else {
        (centre - half).clamp(0.0, p)
    };
    let hi = if k == n {
        1.0
    } else {
        (centre + half).clamp(p, 1.0)
    };
    Some(Interval { lo, hi })
}

/// 95 % Wilson score interval for `k` successes of `n`.
pub fn wilson95(k: u64, n: u64) -> Option<Interval> {
    wilson(k, n, Z_95)
}

/// Newcombe's hybrid score interval (1998b, method 10) for `p1 − p2` of two independent
/// proportions, at normal quantile `z`: with Wilson intervals (l1, u1) and (l2, u2),
/// `[δ − √((p1−l1)² + (u2−p2)²), δ + √((u1−p1)² + (p2−l2)²)]`. `None` when either has no trials.
pub fn newcombe_difference(p1: Proportion, p2: Proportion, z: f64) -> Option<Estimate> {
    let (e1, e2) = (p1.estimate_z(z)?, p2.estimate_z(z)?);
    let (i1, i2) = (e1.interval?, e2.interval?);
    Some(hybrid(e1.value, i1, e2.value, i2, 0.0))
}

/// Correctness of two models on the same labeled requests: the 2×2 table of paired outcomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairedCounts {
    /// Both right.
    pub both: u64,
    /// The first (production) right, the second (shadow) wrong.
    pub first_only: u64,
    /// The second (shadow) right, the first (production) wrong.
    pub second_only: u64,
    /// Both wrong.
    pub neither: u64,
}

impl PairedCounts {
    /// Counts one paired outcome.
    pub fn record(&mut self, first_right: bool, second_right: bool) {
        let cell = match (first_right, second_right) {
            (true, true) => &mut self.both,
            (true, false) => &mut self.first_only,
            (false, true) => &mut self.second_only,
            (false, false) => &mut self.neither,
        };
        *cell = cell.saturating_add(1);
    }

    /// All pairs.
    pub fn total(&self) -> u64 {
        self.both
            .saturating_add(self.first_only)
            .saturating_add(self.second_only)
            .saturating_add(self.neither)
    }

    /// The first model's successes.
    pub fn first(&self) -> Proportion {
        Proportion::new(self.both.saturating_add(self.first_only), self.total())
    }

    /// The second model's successes.
    pub fn second(&self) -> Proportion {
        Proportion::new(self.both.saturating_add(self.second_only), self.total())
    }
}

/// Newcombe's hybrid score interval for paired data (1998c, method 10) for `p2 − p1` (second
/// model minus first, i.e. shadow minus production), at normal quantile `z`. Like the
/// independent version, with the cross term corrected by the φ coefficient of the 2×2 table
/// (φ = 0 when a margin is empty). `None` when there are no pairs.
pub fn newcombe_paired_difference(t: PairedCounts, z: f64) -> Option<Estimate> {
    let (e1, e2) = (t.second().estimate_z(z)?, t.first().estimate_z(z)?);
    let (i1, i2) = (e1.interval?, e2.interval?);
    // φ is symmetric in swapping the two models, so the (a, b, c, d) naming does not matter.
    let (a, b, c, d) = (
        t.both as f64,
        t.first_only as f64,
        t.second_only as f64,
        t.neither as f64,
    );
    let margins = (a + b) * (c + d) * (a + c) * (b + d);
    let phi = if margins > 0.0 {
        (a * d - b * c) / margins.sqrt()
    } else {
        0.0
    };
    Some(hybrid(e1.value, i1, e2.value, i2, phi))
}

fn hybrid(p1: f64, i1: Interval, p2: f64, i2: Interval, phi: f64) -> Estimate {
    let delta = p1 - p2;
    let (dl1, du1, dl2, du2) = (p1 - i1.lo, i1.hi - p1, p2 - i2.lo, i2.hi - p2);
    let lower = (dl1 * dl1 - 2.0 * phi * dl1 * du2 + du2 * du2)
        .max(0.0)
        .sqrt();
    let upper = (du1 * du1 - 2.0 * phi * du1 * dl2 + dl2 * dl2)
        .max(0.0)
        .sqrt();
    Estimate {
        value: delta,
        interval: Some(Interval {
            lo: (delta - lower).clamp(-1.0, delta),
            hi: (delta + upper).clamp(delta, 1.0),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn assert_interval(i: Option<Interval>, lo: f64, hi: f64, tol: f64) {
        let i = i.expect("an interval");
        assert!(
            (i.lo - lo).abs() <= tol && (i.hi - hi).abs() <= tol,
            "{i:?} vs ({lo}, {hi})"
        );
    }

    #[test]
    fn wilson_published_examples_newcombe_1998a() {
        // Newcombe (1998a), Stat. Med. 17:857–872, Table I, method 3 (score interval without
        // continuity correction): 81/263 → 0.2553–0.3662, 15/148 → 0.0624–0.1605,
        // 0/20 → 0.0000–0.1611, 1/29 → 0.0061–0.1718 (statsmodels' proportion_confint(…,
        // method="wilson") agrees to 1e-12).
        assert_interval(wilson95(81, 263), 0.2553, 0.3662, 5e-5);
        assert_interval(wilson95(15, 148), 0.0624, 0.1605, 5e-5);
        assert_interval(wilson95(0, 20), 0.0, 0.1611, 5e-5);
        assert_interval(wilson95(1, 29), 0.0061, 0.1718, 5e-5);
        assert_interval(
            wilson95(81, 263),
            0.255_288_519_878_274_2,
            0.366_209_576_982_800,
            1e-12,
        );
    }

    #[test]
    fn wilson_hand_worked() {
        // k = 8, n = 10, z = 1.96 (z² = 3.8416): p̂ = 0.8, denom = 1 + 0.38416 = 1.38416,
        // centre = (0.8 + 0.19208) / 1.38416 = 0.99208 / 1.38416 = 0.716738,
        // half = 1.96 · √(0.016 + 0.009604) / 1.38416 = 1.96 · 0.160012 / 1.38416 = 0.226581,
        // → (0.490157, 0.943319).
        assert_interval(wilson(8, 10, 1.96), 0.490_157, 0.943_319, 1e-6);
        // z = 0: the interval collapses to the point estimate.
        assert_interval(wilson(3, 12, 0.0), 0.25, 0.25, 0.0);
        // 29/29: upper bound exactly 1, lower 29/(29 + z²) = 0.883030.
        assert_interval(wilson95(29, 29), 0.883_030_201_500_259, 1.0, 1e-12);
    }

    #[test]
    fn wilson_degenerate_inputs() {
        assert_eq!(wilson95(0, 0), None);
        assert_eq!(wilson(1, 2, f64::NAN), None);
        assert_eq!(wilson(1, 2, -1.0), None);
        // k > n is clamped to n.
        assert_eq!(wilson95(5, 3), wilson95(3, 3));
        assert_eq!(Proportion::default().estimate(), None);
    }

    #[test]
    fn proportion_records_and_estimates() {
        let mut p = Proportion::default();
        for ok in [true, true, false, true] {
            p.record(ok);
        }
        assert_eq!(p, Proportion::new(3, 4));
        let e = p.estimate().unwrap();
        assert_eq!(e.value, 0.75);
        assert_eq!(e.interval, wilson95(3, 4));
    }

    #[test]
    fn newcombe_independent_published_examples_1998b() {
        // Newcombe (1998b), Stat. Med. 17:873–890, Table II, method 10:
        // 56/70 − 48/80 → 0.0524, 0.3339; 9/10 − 3/10 → 0.1705, 0.8090;
        // 6/7 − 2/7 → 0.0582, 0.8062; 5/56 − 0/29 → −0.0381, 0.1926.
        let d = |k1, n1, k2, n2| {
            newcombe_difference(Proportion::new(k1, n1), Proportion::new(k2, n2), Z_95)
                .unwrap()
                .interval
        };
        assert_interval(d(56, 70, 48, 80), 0.0524, 0.3339, 5e-5);
        assert_interval(d(9, 10, 3, 10), 0.1705, 0.8090, 5e-5);
        assert_interval(d(6, 7, 2, 7), 0.0582, 0.8062, 5e-5);
        assert_interval(d(5, 56, 0, 29), -0.0381, 0.1926, 5e-5);
        assert_eq!(
            newcombe_difference(Proportion::new(1, 2), Proportion::default(), Z_95),
            None
        );
    }

    #[test]
    fn newcombe_paired_hand_worked() {
        // both = 800, production only = 30, shadow only = 60, neither = 110 (n = 1000):
        // shadow 860/1000, production 830/1000, δ = 0.03.
        // φ = (800·110 − 30·60) / √(830·170·860·140) = 86200 / 130340.9… = 0.661349.
        // Wilson 860/1000 = (0.837120, 0.879890), 830/1000 = (0.805427, 0.852074);
        // lower = 0.03 − √(0.022880² − 2φ·0.022880·0.022074 + 0.022074²) = 0.011509,
        // upper = 0.03 + √(0.019890² − 2φ·0.019890·0.024573 + 0.024573²) = 0.048812
        // (same formula evaluated in Python with statsmodels' Wilson: 0.0115087, 0.0488124).
        let t = PairedCounts {
            both: 800,
            first_only: 30,
            second_only: 60,
            neither: 110,
        };
        let e = newcombe_paired_difference(t, Z_95).unwrap();
        assert!((e.value - 0.03).abs() < 1e-12);
        assert_interval(e.interval, 0.011_508_694, 0.048_812_412, 1e-8);
        // The positive correlation narrows the interval against the independent one.
        let ind = newcombe_difference(t.second(), t.first(), Z_95)
            .unwrap()
            .interval
            .unwrap();
        let paired = e.interval.unwrap();
        assert!(paired.hi - paired.lo < ind.hi - ind.lo);
        assert_eq!(
            newcombe_paired_difference(PairedCounts::default(), Z_95),
            None
        );
    }

    proptest! {
        #[test]
        fn wilson_stays_in_unit_interval_and_contains_estimate(n in 1u64..1_000_000, k_frac in 0.0f64..=1.0, z in 0.0f64..5.0) {
            let k = ((n as f64) * k_frac) as u64;
            let i = wilson(k, n, z).unwrap();
            let p = k as f64 / n as f64;
            prop_assert!(0.0 <= i.lo && i.lo <= p && p <= i.hi && i.hi <= 1.0, "{:?} {}", i, p);
        }

        #[test]
        fn paired_difference_contains_estimate(a in 0u64..500, b in 0u64..500, c in 0u64..500, d in 0u64..500) {
            let t = PairedCounts { both: a, first_only: b, second_only: c, neither: d };
            if let Some(e) = newcombe_paired_difference(t, Z_95) {
                let i = e.interval.unwrap();
                prop_assert!(-1.0 <= i.lo && i.lo <= e.value && e.value <= i.hi && i.hi <= 1.0, "{:?}", e);
            } else {
                prop_assert_eq!(t.total(), 0);
            }
        }
    }
}
