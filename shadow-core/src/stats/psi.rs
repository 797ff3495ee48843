//! Population stability index (PSI) between two score distributions — production's and the
//! shadow's prediction scores on the same traffic — from fixed-bin histograms that accumulate
//! one score at a time in constant memory.
//!
//! `PSI = Σᵢ (aᵢ − eᵢ) · ln(aᵢ / eᵢ)` over bins, with `eᵢ`, `aᵢ` the shares of the expected
//! (production) and actual (shadow) scores in bin `i`. It is the symmetrised Kullback–Leibler
//! divergence of the binned distributions. Common reading (Siddiqi, "Credit Risk Scorecards",
//! 2006): below 0.1 no meaningful shift, 0.1–0.25 moderate, above 0.25 major.
//!
//! **Empty bins.** A bin empty in one distribution and not the other makes the log infinite.
//! Each share is floored at [`EMPTY_BIN_SHARE`] = 10⁻⁴ before the sum (the floor used in most
//! credit-risk tooling). A bin holding 10 % on one side and nothing on the other then
//! contributes `0.1 · ln(0.1 / 10⁻⁴) ≈ 0.69`: finite, and still far above the 0.25 alarm, so
//! a real shift is never hidden. Shares are not renormalised after flooring; the bias is at
//! most `bins · 10⁻⁴ · ln(…)`, negligible against the thresholds.
//!
//! Scores below the first edge count in the first bin, above the last edge in the last one;
//! scores that are not finite are counted as rejected.

use serde::{Deserialize, Serialize};

/// The floor on a bin's share used in place of 0 (see the module docs).
pub const EMPTY_BIN_SHARE: f64 = 1e-4;

/// Most bins a histogram may have.
pub const MAX_BINS: usize = 1000;
// The error message spells the edge limit out.
const _: () = assert!(MAX_BINS + 1 == 1001);

/// Why bin edges were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BinsError {
    /// Fewer than two edges, or more than `MAX_BINS + 1` (1001).
    #[error("PSI bins need between 2 and 1001 edges, got {0}; give at least one bin")]
    Count(usize),
    /// An edge is not finite, or the edges are not strictly increasing.
    #[error("PSI bin edges must be finite and strictly increasing (edge {0} is not)")]
    Order(usize),
}

/// Fixed bin edges `e₀ < e₁ < … < e_k`; bin `i` is `[eᵢ, eᵢ₊₁)`, the last one closed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<f64>", into = "Vec<f64>")]
pub struct Bins {
    edges: Vec<f64>,
}

impl Bins {
    /// Bins with the given edges (2 to `MAX_BINS + 1`, finite, strictly increasing).
    pub fn new(edges: Vec<f64>) -> Result<Self, BinsError> {
        if edges.len() < 2 || edges.len() > MAX_BINS + 1 {
            return Err(BinsError::Count(edges.len()));
        }
        for (i, w) in edges.windows(2).enumerate() {
            if !w[0].is_finite() || !w[1].is_finite() || w[0] >= w[1] {
                return Err(BinsError::Order(i + 1));
            }
        }
        Ok(Self { edges })
    }

    /// `count` equal-width bins over `[0, 1]`, for probabilities (`count` is clamped to
    /// 1..=`MAX_BINS`).
    pub fn unit(count: usize) -> Self {
        let count = count.clamp(1, MAX_BINS);
        Self {
            edges: (0..=count).map(|i| i as f64 / count as f64).collect(),
        }
    }

    /// Number of bins.
    pub fn len(&self) -> usize {
        self.edges.len() - 1
    }

    /// Never true: there is always at least one bin.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The bin of a finite score (clamped to the first / last bin).
    pub fn bin_of(&self, score: f64) -> usize {
        // Number of inner edges ≤ score.
        let inner = &self.edges[1..self.edges.len() - 1];
        inner.partition_point(|&e| e <= score)
    }
}

impl TryFrom<Vec<f64>> for Bins {
    type Error = BinsError;
    fn try_from(edges: Vec<f64>) -> Result<Self, BinsError> {
        Self::new(edges)
    }
}

impl From<Bins> for Vec<f64> {
    fn from(b: Bins) -> Self {
        b.edges
    }
}

/// Two histograms over the same bins, filled one score at a time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PsiAccumulator {
    bins: Bins,
    expected: Vec<u64>,
    actual: Vec<u64>,
    rejected: u64,
}

impl PsiAccumulator {
    /// Empty histograms over `bins`.
    pub fn new(bins: Bins) -> Self {
        let n = bins.len();
        Self {
            bins,
            expected: vec![0; n],
            actual: vec![0; n],
            rejected: 0,
        }
    }

    /// Counts a score of the expected (reference, production) distribution.
    pub fn record_expected(&mut self, score: f64) {
        Self::record(&self.bins, &mut self.expected, &mut self.rejected, score);
    }

    /// Counts a score of the actual (shadow) distribution.
    pub fn record_actual(&mut self, score: f64) {
        Self::record(&self.bins, &mut self.actual, &mut self.rejected, score);
    }

    fn record(bins: &Bins, counts: &mut [u64], rejected: &mut u64, score: f64) {
        if !score.is_finite() {
            *rejected = rejected.saturating_add(1);
            return;
        }
        if let Some(c) = counts.get_mut(bins.bin_of(score)) {
            *c = c.saturating_add(1);
        }
    }

    /// Counts per bin of the expected distribution.
    pub fn expected(&self) -> &[u64] {
        &self.expected
    }

    /// Counts per bin of the actual distribution.
    pub fn actual(&self) -> &[u64] {
        &self.actual
    }

    /// Scores ignored because they were not finite.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// The PSI, `None` until both distributions have a score.
    pub fn psi(&self) -> Option<f64> {
        psi(&self.expected, &self.actual)
    }
}

/// PSI of two histograms over the same bins (`None` if either is empty or their lengths
/// differ). See the module docs for the formula and the empty-bin floor.
pub fn psi(expected: &[u64], actual: &[u64]) -> Option<f64> {
    let total = |h: &[u64]| h.iter().map(|&c| c as f64).sum::<f64>();
    let (te, ta) = (total(expected), total(actual));
    if expected.len() != actual.len() || te == 0.0 || ta == 0.0 {
        return None;
    }
    Some(
        expected
            .iter()
            .zip(actual)
            .map(|(&e, &a)| {
                let e = (e as f64 / te).max(EMPTY_BIN_SHARE);
                let a = (a as f64 / ta).max(EMPTY_BIN_SHARE);
                (a - e) * (a / e).ln()
            })
            .sum(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn identical_distributions_have_zero_psi() {
        assert_eq!(psi(&[10, 20, 30, 40], &[1, 2, 3, 4]), Some(0.0));
    }

    #[test]
    fn constructed_shift_hand_worked() {
        // expected shares 0.5 / 0.5, actual 0.25 / 0.75:
        // (0.25 − 0.5)·ln(0.25/0.5) + (0.75 − 0.5)·ln(0.75/0.5)
        // = 0.25·ln 2 + 0.25·ln 1.5 = 0.25·(0.693147 + 0.405465) = 0.274653.
        let v = psi(&[50, 50], &[25, 75]).unwrap();
        assert!((v - 0.25 * (2f64.ln() + 1.5f64.ln())).abs() < 1e-12);
        assert!((v - 0.274_653).abs() < 1e-6);
        // Four bins, expected 0.1/0.2/0.3/0.4, actual 0.4/0.3/0.2/0.1 (mirror):
        // 2·[0.3·ln 4 + 0.1·ln 1.5] = 2·(0.415888 + 0.040547) = 0.912871.
        let v = psi(&[1, 2, 3, 4], &[4, 3, 2, 1]).unwrap();
        assert!((v - 2.0 * (0.3 * 4f64.ln() + 0.1 * 1.5f64.ln())).abs() < 1e-12);
    }

    #[test]
    fn empty_bin_uses_the_floor() {
        // expected 0.9 / 0.1, actual 1.0 / 0 → floor 1e-4 for the empty actual bin:
        // (1 − 0.9)·ln(1/0.9) + (1e-4 − 0.1)·ln(1e-4/0.1) = 0.0105361 + 0.0999·6.907755
        // = 0.0105361 + 0.6900848 = 0.7006208.
        let v = psi(&[90, 10], &[100, 0]).unwrap();
        let by_hand = 0.1 * (1.0f64 / 0.9).ln() + (1e-4 - 0.1) * (1e-4f64 / 0.1).ln();
        assert!(
            (v - by_hand).abs() < 1e-12 && (v - 0.700_620_8).abs() < 1e-6,
            "{v}"
        );
        assert_eq!(psi(&[0, 0], &[1, 1]), None);
        assert_eq!(psi(&[1], &[1, 1]), None);
    }

    #[test]
    fn streaming_accumulation_matches_batch() {
        let mut acc = PsiAccumulator::new(Bins::unit(10));
        // Production uniform over the 10 bins, shadow all in [0.9, 1]; edges fall in the upper
        // bin, 1.0 in the last, out-of-range scores clamp, NaN is rejected.
        for i in 0..10 {
            acc.record_expected(i as f64 / 10.0 + 0.05);
            acc.record_actual(0.95);
        }
        acc.record_actual(f64::NAN);
        assert_eq!(acc.expected(), &[1; 10]);
        assert_eq!(acc.actual(), &[0, 0, 0, 0, 0, 0, 0, 0, 0, 10]);
        assert_eq!(acc.rejected(), 1);
        // 9 bins: (1e-4 − 0.1)·ln(1e-4/0.1) = 0.690085 each; last: 0.9·ln 10 = 2.072327.
        let by_hand = 9.0 * (1e-4 - 0.1) * (1e-4f64 / 0.1).ln() + 0.9 * 10f64.ln();
        assert!((acc.psi().unwrap() - by_hand).abs() < 1e-12);
        let b = Bins::unit(4);
        assert_eq!(
            (b.bin_of(-3.0), b.bin_of(0.25), b.bin_of(1.0), b.bin_of(7.0)),
            (0, 1, 3, 3)
        );
    }

    #[test]
    fn bins_are_validated() {
        assert_eq!(Bins::new(vec![0.0]), Err(BinsError::Count(1)));
        assert_eq!(Bins::new(vec![0.0, 0.5, 0.5]), Err(BinsError::Order(2)));
        assert_eq!(Bins::new(vec![0.0, f64::NAN]), Err(BinsError::Order(1)));
        assert!(serde_json::from_str::<Bins>("[1.0, 0.0]").is_err());
        let b: Bins = serde_json::from_str("[0.0, 0.5, 2.0]").unwrap();
        assert_eq!(b.bin_of(1.0), 1);
    }

    proptest! {
        #[test]
        fn psi_is_finite_and_non_negative(e in proptest::collection::vec(0u64..1000, 1..20), scale in 0u64..3) {
            let a: Vec<u64> = e.iter().rev().map(|&x| x * scale + 1).collect();
            if let Some(v) = psi(&e, &a) {
                prop_assert!(v.is_finite() && v >= -1e-12, "{}", v);
            }
        }

        #[test]
        fn any_score_lands_in_a_bin(score in proptest::num::f64::ANY, n in 1usize..50) {
            let mut acc = PsiAccumulator::new(Bins::unit(n));
            acc.record_actual(score);
            let counted: u64 = acc.actual().iter().sum::<u64>() + acc.rejected();
            prop_assert_eq!(counted, 1);
        }
    }
}
