//! Running aggregates over comparisons: agreement per request and per row (with Wilson
//! intervals), confusion matrix of production vs shadow labels, per-class precision/recall/F1
//! of the shadow against production labels, discrepancy and error counts, latency
//! distributions (with quantiles, see [`latency`]) of both models and of the replay queue.
//! Served as `/api/summary`.

pub mod latency;

pub use latency::{LatencyHistogram, LatencyStats};

use crate::compare::{Comparison, DiscrepancyKind};
use crate::vocabulary::AgreementUnit;
use serde::Serialize;
use std::collections::BTreeMap;

/// Distinct labels tracked in the confusion matrix; further labels go to `"(other)"`.
const MAX_LABELS: usize = 256;

/// The running state.
#[derive(Clone, Debug, Default)]
pub struct Evaluation {
    compared: u64,
    shadow_failed: u64,
    requests: Tally,
    rows: Tally,
    body_equal: u64,
    discrepancies: BTreeMap<&'static str, u64>,
    shadow_errors: BTreeMap<&'static str, u64>,
    production_errors: BTreeMap<&'static str, u64>,
    /// production label → shadow label → count.
    confusion: BTreeMap<String, BTreeMap<String, u64>>,
    labels: usize,
    production_latency: LatencyHistogram,
    shadow_latency: LatencyHistogram,
    queue_wait: LatencyHistogram,
}

/// Samples where agreement is defined, and how many agreed.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    samples: u64,
    agreed: u64,
}

impl Tally {
    fn add(&mut self, samples: u64, agreed: u64) {
        self.samples += samples;
        self.agreed += agreed;
    }

    fn ratio(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.agreed as f64 / self.samples as f64)
    }

    fn summary(&self) -> Agreement {
        Agreement {
            samples: self.samples,
            agreed: self.agreed,
            ratio: self.ratio(),
            ci95: wilson_interval(self.agreed, self.samples),
        }
    }
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

/// Agreement per request and per row. They differ on multi-row (batch) requests: a request
/// agrees only when all its rows do. The confusion matrix and F1 scores count rows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgreementSummary {
    /// A request agrees when its labels (or, without labels, its prediction) agree.
    pub request: Agreement,
    /// Each labelled row on its own.
    pub row: Agreement,
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
    /// Agreement per request and per row.
    pub agreement: AgreementSummary,
    /// Comparisons whose bodies were equal (within tolerance).
    pub body_equal: u64,
    /// Comparisons per discrepancy kind.
    pub discrepancies: BTreeMap<&'static str, u64>,
    /// Shadow failures and 4xx/5xx answers per error class.
    pub shadow_errors: BTreeMap<&'static str, u64>,
    /// Production 4xx/5xx answers per error class.
    pub production_errors: BTreeMap<&'static str, u64>,
    /// Label counts per row: production label → shadow label → count.
    pub confusion: BTreeMap<String, BTreeMap<String, u64>>,
    /// Scores per production label.
    pub per_class: BTreeMap<String, ClassScores>,
    /// Mean F1 over the classes (`null` before the first label).
    pub macro_f1: Option<f64>,
    /// Production latency (from wire timestamps: last request byte to last response byte).
    pub latency_production: LatencyStats,
    /// Shadow latency (measured by the replay client from sending the request to the last
    /// byte of the answer, so without the time spent in the replay queue), answered replays
    /// only.
    pub latency_shadow: LatencyStats,
    /// Time replays waited in the replay queue before they were sent (pacing and capacity).
    pub queue_wait: LatencyStats,
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
            self.requests.add(1, u64::from(a));
            if let Some((rows, agreed)) = row_agreement(c) {
                self.rows.add(rows, agreed);
            }
        }
        if c.body_equal == Some(true) {
            self.body_equal += 1;
        }
        for k in &c.discrepancies {
            *self.discrepancies.entry(k.as_str()).or_default() += 1;
        }
        if let Some(ns) = c.production.latency_ns {
            self.production_latency.record(ns);
        }
        if let Some(ns) = c.shadow.latency_ns
            && c.shadow_answered()
        {
            self.shadow_latency.record(ns);
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

    /// Time one replay waited in the queue before it was sent.
    pub fn record_queue_wait(&mut self, ns: u64) {
        self.queue_wait.record(ns);
    }

    /// The agreement ratio in `unit`, if any comparison defined it.
    pub fn agreement_ratio(&self, unit: AgreementUnit) -> Option<f64> {
        match unit {
            AgreementUnit::Request => self.requests.ratio(),
            AgreementUnit::Row => self.rows.ratio(),
        }
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
            agreement: AgreementSummary {
                request: self.requests.summary(),
                row: self.rows.summary(),
            },
            body_equal: self.body_equal,
            discrepancies: self.discrepancies.clone(),
            shadow_errors: self.shadow_errors.clone(),
            production_errors: self.production_errors.clone(),
            confusion: self.confusion.clone(),
            per_class,
            macro_f1,
            latency_production: self.production_latency.stats(),
            latency_shadow: self.shadow_latency.stats(),
            queue_wait: self.queue_wait.stats(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{Prediction, Side};
    use serde_json::json;

    fn labelled(p: &str, s: &str) -> Comparison {
        rows(&[p], &[s])
    }

    /// A comparison of two batch answers, one label per row.
    fn rows(p: &[&str], s: &[&str]) -> Comparison {
        let pred = |l: &[&str]| Prediction {
            values: json!(l),
            labels: l.iter().map(|x| x.to_string()).collect(),
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
        assert_eq!(s.agreement.request.agreed, 3);
        assert_eq!(s.agreement.request.ratio, Some(0.75));
        assert_eq!(s.agreement.row, s.agreement.request, "one row per request");
        assert_eq!(s.confusion["a"]["b"], 1);
        assert_eq!(s.confusion["a"]["a"], 2);
        // Class a: tp 2, predicted 2, support 3 -> p 1, r 2/3. Class b: tp 1, predicted 2, support 1.
        assert_eq!(s.per_class["a"].precision, 1.0);
        assert!((s.per_class["a"].recall - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.per_class["b"].precision, 0.5);
        assert_eq!(s.per_class["b"].recall, 1.0);
        assert_eq!(s.discrepancies["label"], 1);
        assert_eq!(s.latency_shadow.count, 4);
        assert_eq!(s.latency_shadow.mean_ms, Some(4.0));
        assert_eq!(s.latency_shadow.p50_ms, Some(4.0));
        assert_eq!(s.latency_production.p99_ms, Some(2.0));
        let (lo, hi) = s.agreement.request.ci95.unwrap();
        assert!(lo < 0.75 && 0.75 < hi);
    }

    #[test]
    fn agreement_per_request_and_per_row() {
        let mut e = Evaluation::default();
        assert_eq!(e.agreement_ratio(AgreementUnit::Request), None);
        assert_eq!(e.agreement_ratio(AgreementUnit::Row), None);
        // 3 requests of 4 rows, 4 + 3 + 0 rows agree: 1 of 3 requests, 7 of 12 rows.
        let mut whole = rows(&["a", "b", "a", "b"], &["a", "b", "a", "b"]);
        whole.agreement = Some(true);
        let mut one_off = rows(&["a", "b", "a", "b"], &["a", "b", "a", "a"]);
        one_off.agreement = Some(false);
        let mut missing = rows(&["a", "b", "a", "b"], &["a"]);
        missing.shadow.prediction = None;
        missing.agreement = Some(false);
        for c in [&whole, &one_off, &missing] {
            e.record(c);
        }
        // A failed replay defines neither.
        let mut failed = rows(&["a"], &["a"]);
        failed.shadow = Side::default();
        failed.agreement = None;
        e.record(&failed);
        let s = e.summary();
        assert_eq!(
            (s.agreement.request.samples, s.agreement.request.agreed),
            (3, 1)
        );
        assert_eq!((s.agreement.row.samples, s.agreement.row.agreed), (12, 7));
        assert_eq!(e.agreement_ratio(AgreementUnit::Row), Some(7.0 / 12.0));
        assert_eq!(e.agreement_ratio(AgreementUnit::Request), Some(1.0 / 3.0));
        // The confusion matrix counts rows of same-length predictions.
        assert_eq!(s.confusion["b"]["a"], 1);
        assert_eq!(s.confusion["a"]["a"], 4);
    }

    #[test]
    fn empty_summary_has_nulls_not_zeros() {
        let mut e = Evaluation::default();
        let json = serde_json::to_value(e.summary()).unwrap();
        for unit in ["request", "row"] {
            assert!(json["agreement"][unit]["ratio"].is_null(), "{json}");
            assert_eq!(json["agreement"][unit]["samples"], 0);
        }
        assert!(json["latency_shadow"]["p50_ms"].is_null(), "{json}");
        assert!(json["macro_f1"].is_null(), "{json}");
        e.record_queue_wait(3_000_000);
        assert_eq!(e.summary().queue_wait.max_ms, Some(3.0));
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
