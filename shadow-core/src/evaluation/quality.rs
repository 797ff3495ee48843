//! Model quality against ground truth, for both models on the same labeled requests:
//! confusion matrices and classification reports (accuracy, per-class and macro precision /
//! recall / F1 with intervals), paired correctness (the accuracy difference with Newcombe's
//! paired interval, and McNemar's test), and for numeric outputs MAE / RMSE / mean signed
//! delta.
//!
//! Rows pair by index: row `i` of the truth with row `i` of each model's prediction. A request
//! whose production answer has fewer labels than the truth is counted as `mismatched` and left
//! out (there is nothing to pair it with); a shadow that gave no label for a row is wrong on
//! it (its missing answer counts as the class [`NO_ANSWER`]).

use super::truth::Truth;
use crate::compare::Prediction;
use crate::stats::classification::{ClassificationReport, ConfusionMatrix};
use crate::stats::mcnemar::{McNemar, mcnemar};
use crate::stats::proportion::{Estimate, PairedCounts, Z_95, newcombe_paired_difference};
use crate::stats::regression::{RegressionReport, RegressionStats};
use serde::{Deserialize, Serialize};

/// The class a missing shadow answer counts as.
pub const NO_ANSWER: &str = "(no answer)";

/// What one model answered, as the evaluation keeps it while the label is awaited.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Outputs {
    /// One label per row.
    pub labels: Vec<String>,
    /// One number per row (regression value or top score).
    pub scores: Vec<f64>,
}

impl Outputs {
    /// The outputs of a prediction (empty without one).
    pub fn of(prediction: Option<&Prediction>) -> Self {
        prediction.map_or_else(Self::default, |p| Outputs {
            labels: p.labels.clone(),
            scores: p.scores.clone(),
        })
    }

    /// Bytes these outputs take in memory, roughly.
    pub fn size_estimate(&self) -> usize {
        self.labels.iter().map(|l| l.len() + 24).sum::<usize>() + 8 * self.scores.len() + 48
    }
}

/// Running quality of both models against the truth.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Quality {
    /// Labeled requests counted.
    requests: u64,
    /// Labeled requests left out: production's answer had fewer rows than the truth.
    mismatched: u64,
    production: ConfusionMatrix,
    shadow: ConfusionMatrix,
    /// Paired correctness per labeled row (first = production, second = shadow).
    paired: PairedCounts,
    production_values: RegressionStats,
    shadow_values: RegressionStats,
}

/// One model's quality.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelQuality {
    /// Against the true labels (`null` without any).
    pub classification: Option<ClassificationReport>,
    /// Against the true values (`null` without any).
    pub regression: Option<RegressionReport>,
}

/// A snapshot of [`Quality`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QualitySummary {
    /// Labeled requests counted.
    pub labeled_requests: u64,
    /// Labeled requests left out because production's answer had fewer rows than the truth.
    pub mismatched: u64,
    /// Production against the truth.
    pub production: ModelQuality,
    /// The shadow against the truth.
    pub shadow: ModelQuality,
    /// Paired correctness on the labeled rows.
    pub paired: PairedCounts,
    /// Shadow − production accuracy on the same rows, with Newcombe's paired 95 % interval.
    pub accuracy_difference: Option<Estimate>,
    /// McNemar's test on the discordant rows (`b` production-only right, `c` shadow-only).
    pub mcnemar: Option<McNemar>,
}

impl Quality {
    /// Counts one labeled request.
    pub fn record(&mut self, truth: &Truth, production: &Outputs, shadow: &Outputs) {
        if production.labels.len() < truth.labels.len() {
            self.mismatched += 1;
            return;
        }
        self.requests += 1;
        for (i, t) in truth.labels.iter().enumerate() {
            let p = &production.labels[i];
            let s = shadow.labels.get(i).map_or(NO_ANSWER, String::as_str);
            self.production.record(t, p);
            self.shadow.record(t, s);
            self.paired.record(p == t, s == t);
        }
        for (i, &t) in truth.values.iter().enumerate() {
            if let Some(&p) = production.scores.get(i) {
                self.production_values.record(p, t);
            }
            if let Some(&s) = shadow.scores.get(i) {
                self.shadow_values.record(s, t);
            }
        }
    }

    /// Labeled rows with both models' correctness.
    pub fn paired(&self) -> PairedCounts {
        self.paired
    }

    /// Each model's macro-F1 with its interval (production, shadow), when both are defined.
    pub fn macro_f1(&self) -> Option<(Estimate, Estimate)> {
        Some((self.production.macro_f1(Z_95)?, self.shadow.macro_f1(Z_95)?))
    }

    /// The current values.
    pub fn summary(&self) -> QualitySummary {
        let model = |m: &ConfusionMatrix, v: &RegressionStats| ModelQuality {
            classification: (m.total() > 0).then(|| m.report()),
            regression: (v.count() > 0).then(|| v.report()),
        };
        QualitySummary {
            labeled_requests: self.requests,
            mismatched: self.mismatched,
            production: model(&self.production, &self.production_values),
            shadow: model(&self.shadow, &self.shadow_values),
            paired: self.paired,
            accuracy_difference: newcombe_paired_difference(self.paired, Z_95),
            mcnemar: (self.paired.total() > 0)
                .then(|| mcnemar(self.paired.first_only, self.paired.second_only)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(labels: &[&str]) -> Outputs {
        Outputs {
            labels: labels.iter().map(|s| s.to_string()).collect(),
            scores: Vec::new(),
        }
    }

    fn truth(labels: &[&str]) -> Truth {
        Truth {
            labels: labels.iter().map(|s| s.to_string()).collect(),
            values: Vec::new(),
        }
    }

    #[test]
    fn paired_rows_accuracy_and_mcnemar_by_hand() {
        let mut q = Quality::default();
        // Rows (truth, production, shadow):
        //   a a a  both right        b b a  production only
        //   a b a  shadow only       b a a  neither
        //   a b a  shadow only       (batch of two rows in one request)
        q.record(&truth(&["a"]), &out(&["a"]), &out(&["a"]));
        q.record(&truth(&["b"]), &out(&["b"]), &out(&["a"]));
        q.record(&truth(&["a", "a"]), &out(&["b", "b"]), &out(&["a", "a"]));
        q.record(&truth(&["b"]), &out(&["a"]), &out(&["a"]));
        let s = q.summary();
        assert_eq!(s.labeled_requests, 4);
        assert_eq!(
            s.paired,
            PairedCounts {
                both: 1,
                first_only: 1,
                second_only: 2,
                neither: 1
            }
        );
        // Production right on 2 of 5 rows, shadow on 3 of 5.
        let p = s.production.classification.as_ref().unwrap();
        let sh = s.shadow.classification.as_ref().unwrap();
        assert_eq!(p.accuracy.unwrap().value, 0.4);
        assert_eq!(sh.accuracy.unwrap().value, 0.6);
        // Difference 0.6 − 0.4 = 0.2; McNemar b = 1, c = 2: exact p = 2·P(X ≤ 1 | n=3) =
        // 2·(1 + 3)/8 = 1.0.
        assert!((s.accuracy_difference.unwrap().value - 0.2).abs() < 1e-12);
        let m = s.mcnemar.unwrap();
        assert_eq!((m.b, m.c), (1, 2));
        assert_eq!(m.p_exact, 1.0);
        assert!(s.production.regression.is_none());
    }

    #[test]
    fn missing_shadow_rows_are_wrong_and_short_production_is_left_out() {
        let mut q = Quality::default();
        q.record(&truth(&["a", "b"]), &out(&["a", "b"]), &out(&["a"]));
        q.record(&truth(&["a", "b"]), &out(&["a"]), &out(&["a", "b"]));
        let s = q.summary();
        assert_eq!((s.labeled_requests, s.mismatched), (1, 1));
        let sh = s.shadow.classification.unwrap();
        assert_eq!(sh.accuracy.unwrap().value, 0.5);
        assert_eq!(sh.per_class[NO_ANSWER].predicted, 1);
    }

    #[test]
    fn values_give_error_statistics() {
        let mut q = Quality::default();
        let t = Truth {
            labels: Vec::new(),
            values: vec![10.0, 20.0],
        };
        let p = Outputs {
            labels: Vec::new(),
            scores: vec![11.0, 18.0],
        };
        let s = Outputs {
            labels: Vec::new(),
            scores: vec![10.0, 23.0],
        };
        q.record(&t, &p, &s);
        let sum = q.summary();
        // Production deltas +1, −2: MAE 1.5, mean signed −0.5. Shadow 0, +3: MAE 1.5, +1.5.
        let pr = sum.production.regression.unwrap();
        let sr = sum.shadow.regression.unwrap();
        assert_eq!((pr.mae, pr.mean_signed_delta), (Some(1.5), Some(-0.5)));
        assert_eq!((sr.mae, sr.mean_signed_delta), (Some(1.5), Some(1.5)));
        assert!(sum.production.classification.is_none());
        assert_eq!(sum.labeled_requests, 1);
    }
}
