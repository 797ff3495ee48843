//! Everything measured about one slice of the traffic (all of it, or one segment): agreement
//! per request and per row, errors and latency per model, the confusion matrix of
//! production's vs the shadow's labels, the shadow's numeric outputs against production's
//! (error statistics and score distribution shift), and quality against ground truth.

use super::latency::{LatencyHistogram, LatencyStats};
use super::quality::{Outputs, Quality, QualitySummary};
use super::truth::Truth;
use crate::compare::Comparison;
use crate::criteria::{Measurements, ModelPair};
use crate::stats::classification::{ClassificationReport, ConfusionMatrix};
use crate::stats::proportion::{Estimate, Proportion};
use crate::stats::psi::{Bins, PsiAccumulator};
use crate::stats::regression::{RegressionReport, RegressionStats};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Score pairs collected before the PSI bins are fixed (at the deciles of production's scores).
pub const PSI_WARMUP: usize = 500;
/// Bins of the PSI histograms (deciles).
pub const PSI_BINS: usize = 10;

/// The running aggregates of one slice.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Scoreboard {
    compared: u64,
    shadow_failed: u64,
    requests: Proportion,
    rows: Proportion,
    body_equal: u64,
    discrepancies: BTreeMap<String, u64>,
    shadow_errors: BTreeMap<String, u64>,
    production_errors: BTreeMap<String, u64>,
    /// Production's labels (as "truth") against the shadow's (as "predicted").
    labels: ConfusionMatrix,
    production_latency: LatencyHistogram,
    shadow_latency: LatencyHistogram,
    /// The shadow's numbers (as "prediction") against production's (as "truth").
    shadow_vs_production: RegressionStats,
    score_shift: ScoreShift,
    truth: Quality,
}

/// Agreement counted in one unit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Agreement {
    /// Requests (or rows) where agreement is defined: the shadow answered and production has a
    /// prediction (rows: a labelled one).
    pub samples: u64,
    /// Of those, the ones that agree.
    pub agreed: u64,
    /// agreed / samples (`null` before the first sample).
    pub ratio: Option<f64>,
    /// 95 % Wilson score interval of the ratio (`null` before the first sample).
    pub ci95: Option<(f64, f64)>,
}

impl From<Proportion> for Agreement {
    fn from(p: Proportion) -> Self {
        let e = p.estimate();
        Agreement {
            samples: p.trials,
            agreed: p.successes,
            ratio: e.map(|e| e.value),
            ci95: e.and_then(|e| e.interval).map(|i| (i.lo, i.hi)),
        }
    }
}

/// Agreement per request and per row. They differ on multi-row (batch) requests: a request
/// agrees only when all its rows do. The confusion matrix and F1 scores count rows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgreementSummary {
    /// A request agrees when its labels (or, without labels, its prediction) agree.
    pub request: Agreement,
    /// Each labelled row on its own.
    pub row: Agreement,
}

/// Each model's error rate: 4xx/5xx answers and (shadow) failures per comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ErrorRates {
    /// Production's, with its Wilson 95 % interval.
    pub production: Option<Estimate>,
    /// The shadow's, with its Wilson 95 % interval.
    pub shadow: Option<Estimate>,
}

/// The shadow's numeric outputs against production's on the same requests.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShadowVsProduction {
    /// MAE, RMSE and mean signed delta of shadow − production, per row.
    pub regression: RegressionReport,
    /// Population stability index of the shadow's scores against production's (`null` until
    /// the bins are fixed and both have scores).
    pub psi: Option<f64>,
}

/// A snapshot of one slice, as `/api/summary` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ScoreSummary {
    /// Replays whose answer was compared (shadow answered or failed).
    pub compared: u64,
    /// Replays where the shadow gave no usable HTTP answer.
    pub shadow_failed: u64,
    /// Agreement per request and per row.
    pub agreement: AgreementSummary,
    /// Comparisons whose bodies were equal (within tolerance).
    pub body_equal: u64,
    /// Comparisons per discrepancy kind.
    pub discrepancies: BTreeMap<String, u64>,
    /// Shadow failures and 4xx/5xx answers per error class.
    pub shadow_errors: BTreeMap<String, u64>,
    /// Production 4xx/5xx answers per error class.
    pub production_errors: BTreeMap<String, u64>,
    /// Error rate of each model.
    pub error_rate: ErrorRates,
    /// Label counts per row: production label → shadow label → count.
    pub confusion: BTreeMap<String, BTreeMap<String, u64>>,
    /// The shadow's labels scored against production's (per class and macro), with intervals.
    pub shadow_vs_production_labels: ClassificationReport,
    /// The shadow's numeric outputs against production's.
    pub shadow_vs_production: ShadowVsProduction,
    /// Production latency (from wire timestamps: last request byte to last response byte).
    pub latency_production: LatencyStats,
    /// Shadow latency (from sending the request to the last byte of the answer, without the
    /// time in the replay queue), answered replays only.
    pub latency_shadow: LatencyStats,
    /// Both models against the ground truth.
    pub ground_truth: QualitySummary,
}

impl Scoreboard {
    /// Adds one comparison.
    pub fn record(&mut self, c: &Comparison) {
        self.compared += 1;
        if !c.shadow_answered() {
            self.shadow_failed += 1;
        }
        if let Some(e) = c.shadow.error {
            *self.shadow_errors.entry(e.as_str().to_owned()).or_default() += 1;
        }
        if let Some(e) = c.production.error {
            *self
                .production_errors
                .entry(e.as_str().to_owned())
                .or_default() += 1;
        }
        if let Some(a) = c.agreement {
            self.requests.record(a);
            if let Some((rows, agreed)) = row_agreement(c) {
                self.rows = Proportion::new(self.rows.successes + agreed, self.rows.trials + rows);
            }
        }
        if c.body_equal == Some(true) {
            self.body_equal += 1;
        }
        for k in &c.discrepancies {
            *self.discrepancies.entry(k.as_str().to_owned()).or_default() += 1;
        }
        if let Some(ns) = c.production.latency_ns {
            self.production_latency.record(ns);
        }
        if let Some(ns) = c.shadow.latency_ns
            && c.shadow_answered()
        {
            self.shadow_latency.record(ns);
        }
        if let (Some(p), Some(s)) = (&c.production.prediction, &c.shadow.prediction) {
            if p.labels.len() == s.labels.len() {
                for (pl, sl) in p.labels.iter().zip(&s.labels) {
                    self.labels.record(pl, sl);
                }
            }
            if p.scores.len() == s.scores.len() {
                for (&ps, &ss) in p.scores.iter().zip(&s.scores) {
                    self.shadow_vs_production.record(ss, ps);
                    self.score_shift.record(ps, ss);
                }
            }
        }
    }

    /// Adds one request's ground truth.
    pub fn record_truth(&mut self, truth: &Truth, production: &Outputs, shadow: &Outputs) {
        self.truth.record(truth, production, shadow);
    }

    /// Comparisons counted.
    pub fn compared(&self) -> u64 {
        self.compared
    }

    /// Request agreement so far.
    pub fn request_agreement(&self) -> Proportion {
        self.requests
    }

    /// Row agreement so far.
    pub fn row_agreement(&self) -> Proportion {
        self.rows
    }

    /// Each model's latency distribution so far.
    pub fn latency(&self) -> ModelPair<&LatencyHistogram> {
        ModelPair {
            production: &self.production_latency,
            shadow: &self.shadow_latency,
        }
    }

    /// Count of one discrepancy kind so far.
    pub fn discrepancies(&self, kind: &str) -> u64 {
        self.discrepancies.get(kind).copied().unwrap_or(0)
    }

    /// What the success criteria are judged on (resources are not known here).
    pub fn measurements(&self) -> Measurements {
        let errors = |m: &BTreeMap<String, u64>| {
            Proportion::new(m.values().copied().sum::<u64>(), self.compared)
        };
        let ms = |ns: Option<f64>| ns.map(|ns| ns / 1e6);
        let p99 =
            ms(self.production_latency.quantile(0.99)).zip(ms(self.shadow_latency.quantile(0.99)));
        Measurements {
            samples: self.compared,
            agreement: (self.requests.trials > 0).then_some(self.requests),
            correctness: Some(self.truth.paired()).filter(|p| p.total() > 0),
            macro_f1: self
                .truth
                .macro_f1()
                .map(|(production, shadow)| ModelPair { production, shadow }),
            p99_latency_ms: p99.map(|(production, shadow)| ModelPair { production, shadow }),
            errors: (self.compared > 0).then(|| ModelPair {
                production: errors(&self.production_errors),
                shadow: errors(&self.shadow_errors),
            }),
            ..Measurements::default()
        }
    }

    /// A snapshot.
    pub fn summary(&self) -> ScoreSummary {
        let mut confusion: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for p in self.labels.classes() {
            for s in self.labels.classes() {
                let n = self.labels.count(p, s);
                if n > 0 {
                    confusion.entry(p.clone()).or_default().insert(s.clone(), n);
                }
            }
        }
        let rate = |m: &BTreeMap<String, u64>| {
            Proportion::new(m.values().copied().sum::<u64>(), self.compared).estimate()
        };
        ScoreSummary {
            compared: self.compared,
            shadow_failed: self.shadow_failed,
            agreement: AgreementSummary {
                request: self.requests.into(),
                row: self.rows.into(),
            },
            body_equal: self.body_equal,
            discrepancies: self.discrepancies.clone(),
            shadow_errors: self.shadow_errors.clone(),
            production_errors: self.production_errors.clone(),
            error_rate: ErrorRates {
                production: rate(&self.production_errors),
                shadow: rate(&self.shadow_errors),
            },
            confusion,
            shadow_vs_production_labels: self.labels.report(),
            shadow_vs_production: ShadowVsProduction {
                regression: self.shadow_vs_production.report(),
                psi: self.score_shift.psi(),
            },
            latency_production: self.production_latency.stats(),
            latency_shadow: self.shadow_latency.stats(),
            ground_truth: self.truth.summary(),
        }
    }
}

/// (rows, rows that agree) of a comparison whose agreement is defined, counted over
/// production's labels: a row agrees when the shadow gave the same label at the same index (a
/// shadow answer without a prediction agrees on none). `None` when production's prediction
/// has no labels (rows are then not defined).
fn row_agreement(c: &Comparison) -> Option<(u64, u64)> {
    let production = &c.production.prediction.as_ref()?.labels;
    if production.is_empty() {
        return None;
    }
    let shadow: &[String] = c.shadow.prediction.as_ref().map_or(&[], |p| &p.labels);
    let agreed = production
        .iter()
        .enumerate()
        .filter(|(i, label)| shadow.get(*i) == Some(*label))
        .count();
    Some((production.len() as u64, agreed as u64))
}

/// The shift of the shadow's score distribution from production's: the first
/// [`PSI_WARMUP`] pairs are kept to place the bins at the deciles of production's scores
/// (the reference distribution), then every pair is counted in fixed histograms. Bounded:
/// `2 × PSI_WARMUP` numbers, then `2 × PSI_BINS` counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct ScoreShift {
    warmup: Vec<(f64, f64)>,
    histograms: Option<PsiAccumulator>,
}

impl ScoreShift {
    fn record(&mut self, production: f64, shadow: f64) {
        if let Some(h) = &mut self.histograms {
            h.record_expected(production);
            h.record_actual(shadow);
            return;
        }
        if !production.is_finite() || !shadow.is_finite() {
            return;
        }
        self.warmup.push((production, shadow));
        if self.warmup.len() >= PSI_WARMUP {
            let mut reference: Vec<f64> = self.warmup.iter().map(|p| p.0).collect();
            reference.sort_by(f64::total_cmp);
            let mut edges: Vec<f64> = (0..=PSI_BINS)
                .map(|i| reference[(i * (reference.len() - 1)) / PSI_BINS])
                .collect();
            edges.dedup();
            // Constant scores: one bin around the value.
            if edges.len() < 2 {
                let v = edges[0];
                edges = vec![v - 0.5, v + 0.5];
            }
            if let Ok(bins) = Bins::new(edges) {
                let mut h = PsiAccumulator::new(bins);
                for (p, s) in self.warmup.drain(..) {
                    h.record_expected(p);
                    h.record_actual(s);
                }
                self.histograms = Some(h);
            }
            self.warmup = Vec::new();
        }
    }

    fn psi(&self) -> Option<f64> {
        self.histograms.as_ref()?.psi()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_shift_fixes_decile_bins_then_counts() {
        let mut s = ScoreShift::default();
        // Production uniform over 0..1000; the shadow the same: no shift.
        for i in 0..PSI_WARMUP {
            s.record(i as f64, i as f64);
        }
        assert!(s.warmup.is_empty());
        assert!(s.psi().unwrap() < 1e-9);
        // Then 500 shadow scores all above production's top decile edge: a major shift.
        let mut shifted = ScoreShift::default();
        for i in 0..PSI_WARMUP {
            shifted.record(i as f64, 10_000.0);
        }
        assert!(shifted.psi().unwrap() > 0.25);
        // Constant scores still get a bin.
        let mut constant = ScoreShift::default();
        for _ in 0..PSI_WARMUP {
            constant.record(0.5, 0.5);
        }
        assert_eq!(constant.psi(), Some(0.0));
    }
}
