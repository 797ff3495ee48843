//! Running aggregates over comparisons: agreement (with a Wilson interval), confusion matrix of
//! production vs shadow labels, per-class precision/recall/F1 of the shadow against production
//! labels, discrepancy and error counts, latency summaries. Served as `/api/summary`.

use crate::compare::{Comparison, DiscrepancyKind};
use serde::Serialize;
use std::collections::BTreeMap;

/// Distinct labels tracked in the confusion matrix; further labels go to `"(other)"`.
const MAX_LABELS: usize = 256;

/// The running state.
#[derive(Clone, Debug, Default)]
pub struct Evaluation {
    compared: u64,
    shadow_failed: u64,
    agreement_known: u64,
    agreed: u64,
    body_equal: u64,
    discrepancies: BTreeMap<&'static str, u64>,
    shadow_errors: BTreeMap<&'static str, u64>,
    production_errors: BTreeMap<&'static str, u64>,
    /// production label → shadow label → count.
    confusion: BTreeMap<String, BTreeMap<String, u64>>,
    labels: usize,
    production_latency: LatencyStats,
    shadow_latency: LatencyStats,
}

/// Count, mean and max of a latency, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LatencyStats {
    /// Latencies recorded.
    pub count: u64,
    /// Their mean.
    pub mean_ms: f64,
    /// The largest.
    pub max_ms: f64,
    #[serde(skip)]
    sum_ms: f64,
}

impl LatencyStats {
    fn add(&mut self, ns: u64) {
        let ms = ns as f64 / 1e6;
        self.count += 1;
        self.sum_ms += ms;
        self.mean_ms = self.sum_ms / self.count as f64;
        self.max_ms = self.max_ms.max(ms);
    }
}

/// Precision, recall and F1 of one class (shadow vs production labels).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ClassScores {
    /// Production labels of this class.
    pub support: u64,
    /// Of the shadow's labels of this class, the share production agrees with.
    pub precision: f64,
    /// Of production's labels of this class, the share the shadow matched.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
}

/// `/api/summary`: a snapshot of the aggregates.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Replays whose answer was compared (shadow answered or failed).
    pub compared: u64,
    /// Replays where the shadow gave no usable HTTP answer.
    pub shadow_failed: u64,
    /// Comparisons where agreement is defined.
    pub agreement_samples: u64,
    /// Of those, comparisons where the answers agreed.
    pub agreed: u64,
    /// agreed / agreement_samples (`null` before the first).
    pub agreement_ratio: Option<f64>,
    /// 95 % Wilson score interval of the agreement ratio.
    pub agreement_ci95: Option<(f64, f64)>,
    /// Comparisons whose bodies were equal (within tolerance).
    pub body_equal: u64,
    /// Comparisons per discrepancy kind.
    pub discrepancies: BTreeMap<&'static str, u64>,
    /// Shadow failures and 4xx/5xx answers per error class.
    pub shadow_errors: BTreeMap<&'static str, u64>,
    /// Production 4xx/5xx answers per error class.
    pub production_errors: BTreeMap<&'static str, u64>,
    /// Label counts: production label → shadow label → count.
    pub confusion: BTreeMap<String, BTreeMap<String, u64>>,
    /// Scores per production label.
    pub per_class: BTreeMap<String, ClassScores>,
    /// Mean F1 over the classes (`null` before the first label).
    pub macro_f1: Option<f64>,
    /// Production latency (from wire timestamps).
    pub latency_production: LatencyStats,
    /// Shadow latency (measured by the replay client), answered replays only.
    pub latency_shadow: LatencyStats,
}

/// 95 % Wilson score interval for `k` successes of `n`.
pub fn wilson_interval(k: u64, n: u64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let z = 1.959_963_984_540_054_f64;
    let n = n as f64;
    let p = k as f64 / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * ((p * (1.0 - p) / n) + z * z / (4.0 * n * n)).sqrt() / denom;
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

impl Evaluation {
    /// Adds one comparison.
    pub fn record(&mut self, c: &Comparison) {
        self.compared += 1;
        if !c.shadow_answered() {
            self.shadow_failed += 1;
        }
        if let Some(e) = c.shadow.error {
            *self.shadow_errors.entry(e.as_str()).or_default() += 1;
        }
        if let Some(e) = c.production.error {
            *self.production_errors.entry(e.as_str()).or_default() += 1;
        }
        if let Some(a) = c.agreement {
            self.agreement_known += 1;
            self.agreed += u64::from(a);
        }
        if c.body_equal == Some(true) {
            self.body_equal += 1;
        }
        for k in &c.discrepancies {
            *self.discrepancies.entry(k.as_str()).or_default() += 1;
        }
        if let Some(ns) = c.production.latency_ns {
            self.production_latency.add(ns);
        }
        if let Some(ns) = c.shadow.latency_ns
            && c.shadow_answered()
        {
            self.shadow_latency.add(ns);
        }
        if let (Some(p), Some(s)) = (&c.production.prediction, &c.shadow.prediction)
            && p.labels.len() == s.labels.len()
        {
            for (pl, sl) in p.labels.iter().zip(&s.labels) {
                let pl = self.bounded(pl);
                let sl = self.bounded(sl);
                *self.confusion.entry(pl).or_default().entry(sl).or_default() += 1;
            }
        }
    }

    fn bounded(&mut self, label: &str) -> String {
        let known = self.confusion.contains_key(label)
            || self.confusion.values().any(|row| row.contains_key(label));
        if known {
            label.to_string()
        } else if self.labels < MAX_LABELS {
            self.labels += 1;
            label.to_string()
        } else {
            "(other)".to_string()
        }
    }

    /// The label agreement ratio, if any comparison defined it.
    pub fn agreement_ratio(&self) -> Option<f64> {
        (self.agreement_known > 0).then(|| self.agreed as f64 / self.agreement_known as f64)
    }

    /// Count of one discrepancy kind so far.
    pub fn discrepancies(&self, kind: DiscrepancyKind) -> u64 {
        self.discrepancies.get(kind.as_str()).copied().unwrap_or(0)
    }

    fn per_class(&self) -> BTreeMap<String, ClassScores> {
        let mut classes: Vec<&String> = self.confusion.keys().collect();
        for row in self.confusion.values() {
            classes.extend(row.keys());
        }
        classes.sort();
        classes.dedup();
        let cell = |p: &str, s: &str| {
            self.confusion
                .get(p)
                .and_then(|r| r.get(s))
                .copied()
                .unwrap_or(0)
        };
        classes
            .into_iter()
            .map(|c| {
                let tp = cell(c, c) as f64;
                let support: u64 = self.confusion.get(c).map_or(0, |r| r.values().sum());
                let predicted: u64 = self.confusion.values().filter_map(|r| r.get(c)).sum();
                let precision = if predicted > 0 {
                    tp / predicted as f64
                } else {
                    0.0
                };
                let recall = if support > 0 {
                    tp / support as f64
                } else {
                    0.0
                };
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                (
                    c.clone(),
                    ClassScores {
                        support,
                        precision,
                        recall,
                        f1,
                    },
                )
            })
            .collect()
    }

    /// A snapshot for `/api/summary`.
    pub fn summary(&self) -> Summary {
        let per_class = self.per_class();
        let macro_f1 = (!per_class.is_empty())
            .then(|| per_class.values().map(|c| c.f1).sum::<f64>() / per_class.len() as f64);
        Summary {
            compared: self.compared,
            shadow_failed: self.shadow_failed,
            agreement_samples: self.agreement_known,
            agreed: self.agreed,
            agreement_ratio: self.agreement_ratio(),
            agreement_ci95: wilson_interval(self.agreed, self.agreement_known),
            body_equal: self.body_equal,
            discrepancies: self.discrepancies.clone(),
            shadow_errors: self.shadow_errors.clone(),
            production_errors: self.production_errors.clone(),
            confusion: self.confusion.clone(),
            per_class,
            macro_f1,
            latency_production: self.production_latency.clone(),
            latency_shadow: self.shadow_latency.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{Prediction, Side};
    use serde_json::json;

    fn labelled(p: &str, s: &str) -> Comparison {
        let pred = |l: &str| Prediction {
            values: json!([l]),
            labels: vec![l.to_string()],
        };
        Comparison {
            production: Side {
                status: Some(200),
                prediction: Some(pred(p)),
                latency_ns: Some(2_000_000),
                ..Side::default()
            },
            shadow: Side {
                status: Some(200),
                prediction: Some(pred(s)),
                latency_ns: Some(4_000_000),
                ..Side::default()
            },
            body_equal: Some(p == s),
            agreement: Some(p == s),
            diffs: Vec::new(),
            discrepancies: if p == s {
                vec![]
            } else {
                vec![DiscrepancyKind::Label]
            },
        }
    }

    #[test]
    fn agreement_confusion_and_f1() {
        let mut e = Evaluation::default();
        for (p, s) in [("a", "a"), ("a", "a"), ("a", "b"), ("b", "b")] {
            e.record(&labelled(p, s));
        }
        let s = e.summary();
        assert_eq!(s.compared, 4);
        assert_eq!(s.agreed, 3);
        assert_eq!(s.agreement_ratio, Some(0.75));
        assert_eq!(s.confusion["a"]["b"], 1);
        assert_eq!(s.confusion["a"]["a"], 2);
        // Class a: tp 2, predicted 2, support 3 -> p 1, r 2/3. Class b: tp 1, predicted 2, support 1.
        assert_eq!(s.per_class["a"].precision, 1.0);
        assert!((s.per_class["a"].recall - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.per_class["b"].precision, 0.5);
        assert_eq!(s.per_class["b"].recall, 1.0);
        assert_eq!(s.discrepancies["label"], 1);
        assert_eq!(s.latency_shadow.count, 4);
        assert_eq!(s.latency_shadow.mean_ms, 4.0);
        let (lo, hi) = s.agreement_ci95.unwrap();
        assert!(lo < 0.75 && 0.75 < hi);
    }

    #[test]
    fn wilson_interval_known_values() {
        assert_eq!(wilson_interval(0, 0), None);
        // 8 of 10: 95 % Wilson interval (0.4902, 0.9433).
        let (lo, hi) = wilson_interval(8, 10).unwrap();
        assert!((lo - 0.4902).abs() < 1e-3, "{lo}");
        assert!((hi - 0.9433).abs() < 1e-3, "{hi}");
    }
}
