//! McNemar's test on paired correctness: did production and the shadow get *different* labeled
//! requests right more often one way than the other?
//!
//! Only the discordant pairs matter: `b` = production right / shadow wrong, `c` = shadow right /
//! production wrong. Under the null hypothesis (equal accuracy) each discordant pair is a fair
//! coin, so `b ~ Binomial(b + c, ½)` and the exact two-sided p-value is
//! `min(1, 2·P(X ≤ min(b, c)))`. The mid-p variant subtracts the probability of the observed
//! value once, `2·P(X ≤ min(b, c)) − P(X = min(b, c))`; Fagerland, Lydersen & Laake (2013) show
//! it keeps nominal size far better than the conservative exact test.
//!
//! Reference: M. W. Fagerland, S. Lydersen, P. Laake, "The McNemar test for binary matched-pairs
//! data: mid-p and asymptotic are better than exact conditional", BMC Medical Research
//! Methodology 13:91 (2013).

use serde::{Deserialize, Serialize};

/// McNemar's test result.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct McNemar {
    /// Production right, shadow wrong.
    pub b: u64,
    /// Shadow right, production wrong.
    pub c: u64,
    /// Exact (conditional binomial) two-sided p-value; 1 when there is no discordant pair.
    pub p_exact: f64,
    /// Mid-p two-sided p-value; 1 when there is no discordant pair.
    pub p_mid: f64,
}

/// McNemar's exact and mid-p tests for `b` and `c` discordant pairs. With `b + c = 0` nothing
/// distinguishes the models and both p-values are 1.
pub fn mcnemar(b: u64, c: u64) -> McNemar {
    let n = b.saturating_add(c);
    let m = b.min(c);
    // b = c (including b + c = 0): 2·P(X ≤ m) = 1 + P(X = m), so exact = min(1, ·) = 1 and
    // mid-p = 1 exactly.
    if b == c || n == 0 {
        return McNemar {
            b,
            c,
            p_exact: 1.0,
            p_mid: 1.0,
        };
    }
    let (cdf, pmf) = binomial_half_lower_tail(n, m);
    McNemar {
        b,
        c,
        p_exact: (2.0 * cdf).min(1.0),
        p_mid: (2.0 * cdf - pmf).clamp(0.0, 1.0),
    }
}

/// `(P(X ≤ m), P(X = m))` for `X ~ Binomial(n, ½)` and `m ≤ n / 2`.
///
/// Sums the terms from `m` downwards relative to the term at `m` (each is the previous times
/// `k / (n − k + 1) ≤ 1`), stopping once they no longer change the sum, then scales by
/// `P(X = m) = C(n, m) / 2ⁿ` computed in log space: no overflow for any `n`.
fn binomial_half_lower_tail(n: u64, m: u64) -> (f64, f64) {
    let log_pmf = ln_choose(n, m) - n as f64 * std::f64::consts::LN_2;
    let pmf = log_pmf.exp();
    if pmf == 0.0 {
        return (0.0, 0.0);
    }
    let mut sum = 1.0_f64;
    let mut term = 1.0_f64;
    let mut k = m;
    while k > 0 {
        term *= k as f64 / (n - k + 1) as f64;
        if term < sum * 1e-17 {
            break;
        }
        sum += term;
        k -= 1;
    }
    ((pmf * sum).min(1.0), pmf)
}

/// ln C(n, k).
fn ln_choose(n: u64, k: u64) -> f64 {
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

/// ln n!: summed exactly below 32, Stirling's series with terms to 1/(1260 n⁵) above (absolute
/// error below 2·10⁻¹⁴ there).
fn ln_factorial(n: u64) -> f64 {
    if n < 32 {
        return (2..=n).map(|i| (i as f64).ln()).sum();
    }
    let x = n as f64;
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    x * x.ln() - x
        + 0.5 * (2.0 * std::f64::consts::PI * x).ln()
        + inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 / 1260.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn published_example_fagerland_2013() {
        // Fagerland, Lydersen & Laake (2013), BMC Med Res Methodol 13:91, Table 1 (airway
        // hyper-responsiveness before/after stem cell transplantation, Bentur et al. 2009):
        // discordant pairs n12 = 1, n21 = 7. Their results: exact conditional p = 0.070,
        // mid-p = 0.039.
        // By hand: n = 8, P(X ≤ 1) = (C(8,0) + C(8,1)) / 2⁸ = 9/256 = 0.03515625;
        // exact = 2 · 9/256 = 0.0703125; mid-p = 18/256 − C(8,1)/256 = 10/256 = 0.0390625.
        let t = mcnemar(1, 7);
        assert!(close(t.p_exact, 18.0 / 256.0, 1e-15), "{t:?}");
        assert!(close(t.p_mid, 10.0 / 256.0, 1e-15), "{t:?}");
        assert_eq!(format!("{:.3}", t.p_exact), "0.070");
        assert_eq!(format!("{:.3}", t.p_mid), "0.039");
        // Symmetric in b and c.
        assert_eq!(mcnemar(7, 1).p_exact, t.p_exact);
    }

    #[test]
    fn hand_worked_values() {
        // b = 0, c = 5: P(X ≤ 0) = 1/32; exact = 2/32 = 0.0625; mid-p = 2/32 − 1/32 = 0.03125.
        let t = mcnemar(0, 5);
        assert!(close(t.p_exact, 0.0625, 1e-15));
        assert!(close(t.p_mid, 0.03125, 1e-15));
        // b = c = 3: exact = min(1, 2·P(X ≤ 3)) = min(1, 2·42/64) = 1;
        // mid-p = 2·42/64 − 20/64 = 64/64 = 1.
        let t = mcnemar(3, 3);
        assert_eq!(t.p_exact, 1.0);
        assert!(close(t.p_mid, 1.0, 1e-15));
        // b = 2, c = 10: n = 12, P(X ≤ 2) = (1 + 12 + 66) / 4096 = 79/4096;
        // exact = 158/4096 = 0.03857421875; mid-p = (158 − 66)/4096 = 92/4096.
        let t = mcnemar(2, 10);
        assert!(close(t.p_exact, 158.0 / 4096.0, 1e-15));
        assert!(close(t.p_mid, 92.0 / 4096.0, 1e-15));
    }

    #[test]
    fn no_discordant_pairs_means_no_evidence() {
        assert_eq!(
            mcnemar(0, 0),
            McNemar {
                b: 0,
                c: 0,
                p_exact: 1.0,
                p_mid: 1.0
            }
        );
    }

    #[test]
    fn large_counts_stay_finite_and_match_reference() {
        // scipy.stats.binomtest(400, 1000, 0.5).pvalue = 2.728464156065947e-10 (computed once, cross-check).
        let t = mcnemar(400, 600);
        assert!(
            close(t.p_exact / 2.728_464_156_065_947e-10, 1.0, 1e-9),
            "{t:?}"
        );
        // Far tails underflow to 0, never NaN; balanced huge counts give ~1.
        assert_eq!(mcnemar(0, u64::MAX).p_exact, 0.0);
        let t = mcnemar(5_000_000, 5_000_000);
        assert_eq!(t.p_exact, 1.0);
        assert!(t.p_mid > 0.99 && t.p_mid <= 1.0);
    }

    #[test]
    fn ln_factorial_is_continuous_at_the_switch() {
        // 32! = 263130836933693530167218012160000000 → ln = 81.557959456115...
        assert!(close(ln_factorial(32), 81.557_959_456_115_04, 1e-12));
        assert!(close(
            ln_factorial(31) + 32f64.ln(),
            ln_factorial(32),
            1e-12
        ));
    }
}
