//! The decision's metrics: model quality against ground truth, the label join, each success
//! criterion and the verdict — what Flagger, Argo Rollouts and Alertmanager gate on.
//!
//! | metric | labels | value |
//! |---|---|---|
//! | `shadowtap_verdict` | `decision`: PROMOTE, HOLD, REJECT | 1 for the current decision, 0 for the others |
//! | `shadowtap_criterion_status` | `criterion`, `segment` (`all` or `path=…`, `field=…`) | 1 pass, 0 not enough data, −1 fail |
//! | `shadowtap_criterion_measured` | `criterion`, `segment` | the measured value (absent when none) |
//! | `shadowtap_accuracy`, `shadowtap_macro_f1` | `model` | against ground truth (absent before the first label) |
//! | `shadowtap_mcnemar_p_value` | | McNemar's mid-p on the labeled rows |
//! | `shadowtap_score_psi` | | PSI of the shadow's scores against production's |
//! | `shadowtap_labels_total` | `result`: joined, unknown, late, duplicate, malformed | labels received |
//! | `shadowtap_labels_unlabeled_total` | `reason`: expired, evicted, without_id | compared requests that will never be labeled |
//! | `shadowtap_labels_waiting` | | compared requests waiting for their label |

use crate::mirror::LabelReport;
use prometheus::{GaugeVec, IntCounterVec, IntGauge, Opts, Registry};
use shadow_core::criteria::{Decision, Status, Verdict};
use shadow_core::evaluation::Summary;
use std::collections::BTreeSet;
use std::sync::Mutex;

const DECISIONS: [Decision; 3] = [Decision::Promote, Decision::Hold, Decision::Reject];
const LABEL_RESULTS: [&str; 5] = ["joined", "unknown", "late", "duplicate", "malformed"];
const UNLABELED: [&str; 3] = ["expired", "evicted", "without_id"];

/// The decision's metrics, registered in the daemon's registry.
pub struct VerdictMetrics {
    verdict: GaugeVec,
    criterion_status: GaugeVec,
    criterion_measured: GaugeVec,
    accuracy: GaugeVec,
    macro_f1: GaugeVec,
    mcnemar: GaugeVec,
    psi: GaugeVec,
    labels: IntCounterVec,
    unlabeled: IntCounterVec,
    waiting: IntGauge,
    /// Unlabeled counts already published (the evaluation keeps totals).
    published: Mutex<[u64; 3]>,
    /// (criterion, segment) series set last time, to remove the ones that went away.
    criteria_series: Mutex<BTreeSet<(String, String)>>,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("shadowtap")
}

impl std::fmt::Debug for VerdictMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerdictMetrics")
    }
}

impl VerdictMetrics {
    /// Registers the metrics in `registry`; the verdict starts as HOLD and the label counters
    /// at zero.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        fn reg<M: prometheus::core::Collector + Clone + 'static>(
            r: &Registry,
            m: prometheus::Result<M>,
        ) -> prometheus::Result<M> {
            let m = m?;
            r.register(Box::new(m.clone()))?;
            Ok(m)
        }
        let m = VerdictMetrics {
            verdict: reg(
                registry,
                GaugeVec::new(
                    opts(
                        "verdict",
                        "1 for the current decision (PROMOTE, HOLD, REJECT).",
                    ),
                    &["decision"],
                ),
            )?,
            criterion_status: reg(
                registry,
                GaugeVec::new(
                    opts(
                        "criterion_status",
                        "Each success criterion: 1 pass, 0 not enough data, -1 fail.",
                    ),
                    &["criterion", "segment"],
                ),
            )?,
            criterion_measured: reg(
                registry,
                GaugeVec::new(
                    opts("criterion_measured", "The value each criterion measured."),
                    &["criterion", "segment"],
                ),
            )?,
            accuracy: reg(
                registry,
                GaugeVec::new(
                    opts("accuracy", "Accuracy against ground truth, per model."),
                    &["model"],
                ),
            )?,
            macro_f1: reg(
                registry,
                GaugeVec::new(
                    opts("macro_f1", "Macro-F1 against ground truth, per model."),
                    &["model"],
                ),
            )?,
            mcnemar: reg(
                registry,
                GaugeVec::new(
                    opts(
                        "mcnemar_p_value",
                        "McNemar mid-p value of paired correctness on labeled rows.",
                    ),
                    &[],
                ),
            )?,
            psi: reg(
                registry,
                GaugeVec::new(
                    opts(
                        "score_psi",
                        "Population stability index of the shadow's scores vs production's.",
                    ),
                    &[],
                ),
            )?,
            labels: reg(
                registry,
                IntCounterVec::new(
                    opts(
                        "labels_total",
                        "Ground-truth labels received, by what became of them.",
                    ),
                    &["result"],
                ),
            )?,
            unlabeled: reg(
                registry,
                IntCounterVec::new(
                    opts(
                        "labels_unlabeled_total",
                        "Compared requests that will never be labeled, by reason.",
                    ),
                    &["reason"],
                ),
            )?,
            waiting: reg(
                registry,
                IntGauge::with_opts(opts(
                    "labels_waiting",
                    "Compared requests waiting for their label.",
                )),
            )?,
            published: Mutex::new([0; 3]),
            criteria_series: Mutex::new(BTreeSet::new()),
        };
        for d in DECISIONS {
            m.verdict
                .with_label_values(&[d.as_str()])
                .set(f64::from(d == Decision::Hold));
        }
        for r in LABEL_RESULTS {
            m.labels.with_label_values(&[r]);
        }
        for r in UNLABELED {
            m.unlabeled.with_label_values(&[r]);
        }
        Ok(m)
    }

    /// Counts a batch of labels.
    pub fn labels(&self, r: &LabelReport) {
        for (result, n) in
            LABEL_RESULTS
                .iter()
                .zip([r.joined, r.unknown, r.late, r.duplicate, r.malformed])
        {
            self.labels.with_label_values(&[result]).inc_by(n);
        }
    }

    /// Publishes the verdict and every criterion.
    pub fn verdict(&self, v: &Verdict) {
        for d in DECISIONS {
            self.verdict
                .with_label_values(&[d.as_str()])
                .set(f64::from(d == v.decision));
        }
        let mut now = BTreeSet::new();
        for c in &v.criteria {
            let key = (
                c.criterion.as_str().to_owned(),
                c.segment.clone().unwrap_or_else(|| "all".to_owned()),
            );
            let labels = [key.0.as_str(), key.1.as_str()];
            let status = match c.status {
                Status::Pass => 1.0,
                Status::NotEnoughData => 0.0,
                Status::Fail => -1.0,
            };
            self.criterion_status.with_label_values(&labels).set(status);
            match c.measured {
                Some(x) if x.is_finite() => {
                    self.criterion_measured.with_label_values(&labels).set(x)
                }
                _ => {
                    let _ = self.criterion_measured.remove_label_values(&labels);
                }
            }
            now.insert(key);
        }
        let mut before = self
            .criteria_series
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for gone in before.difference(&now) {
            let labels = [gone.0.as_str(), gone.1.as_str()];
            let _ = self.criterion_status.remove_label_values(&labels);
            let _ = self.criterion_measured.remove_label_values(&labels);
        }
        *before = now;
    }

    /// Takes the totals of a resumed state as already counted: the counters of this process
    /// start at zero and count only what happens from now on (no jump on the first round).
    pub fn resume(&self, s: &Summary) {
        *self.published.lock().unwrap_or_else(|e| e.into_inner()) = unlabeled_totals(s);
    }

    /// Publishes quality against ground truth and the label join's state.
    pub fn evaluation(&self, s: &Summary) {
        let gt = &s.overall.ground_truth;
        for (model, q) in [("production", &gt.production), ("shadow", &gt.shadow)] {
            let report = q.classification.as_ref();
            if let Some(a) = report.and_then(|r| r.accuracy) {
                self.accuracy.with_label_values(&[model]).set(a.value);
            }
            if let Some(f) = report.and_then(|r| r.macro_f1) {
                self.macro_f1.with_label_values(&[model]).set(f.value);
            }
        }
        if let Some(m) = gt.mcnemar {
            self.mcnemar.with_label_values::<&str>(&[]).set(m.p_mid);
        }
        if let Some(psi) = s.overall.shadow_vs_production.psi {
            self.psi.with_label_values::<&str>(&[]).set(psi);
        }
        let totals = unlabeled_totals(s);
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        for (i, reason) in UNLABELED.iter().enumerate() {
            if totals[i] > published[i] {
                self.unlabeled
                    .with_label_values(&[reason])
                    .inc_by(totals[i] - published[i]);
                published[i] = totals[i];
            }
        }
        self.waiting
            .set(i64::try_from(s.labels.waiting).unwrap_or(i64::MAX));
    }
}

/// Requests that will never be labeled, per [`UNLABELED`] reason, since the first start.
fn unlabeled_totals(s: &Summary) -> [u64; 3] {
    let c = &s.labels.counters;
    [
        c.join.expired,
        c.join.evicted_count + c.join.evicted_bytes + c.join.oversized + c.join.bad_ids,
        c.without_id,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, TextEncoder};
    use shadow_core::criteria::{CriterionName, CriterionResult};

    fn render(r: &Registry) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&r.gather(), &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn verdict_is_one_hot_and_criteria_come_and_go() {
        let r = Registry::new();
        let m = VerdictMetrics::new(&r).unwrap();
        let text = render(&r);
        assert!(
            text.contains("shadowtap_verdict{decision=\"HOLD\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("shadowtap_verdict{decision=\"PROMOTE\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("shadowtap_labels_total{result=\"unknown\"} 0"),
            "{text}"
        );
        let result = |criterion, status, segment: Option<&str>| CriterionResult {
            criterion,
            status,
            measured: Some(0.5),
            interval: None,
            threshold: 0.8,
            reason: String::new(),
            segment: segment.map(str::to_owned),
        };
        m.verdict(&Verdict {
            decision: Decision::Reject,
            criteria: vec![
                result(CriterionName::MinAgreement, Status::Fail, None),
                result(CriterionName::MinAgreement, Status::Pass, Some("path=/a")),
            ],
        });
        let text = render(&r);
        assert!(
            text.contains("shadowtap_verdict{decision=\"REJECT\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("shadowtap_verdict{decision=\"HOLD\"} 0"),
            "{text}"
        );
        assert!(
            text.contains(
                "shadowtap_criterion_status{criterion=\"min_agreement\",segment=\"all\"} -1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "shadowtap_criterion_status{criterion=\"min_agreement\",segment=\"path=/a\"} 1"
            ),
            "{text}"
        );
        m.verdict(&Verdict {
            decision: Decision::Hold,
            criteria: vec![result(
                CriterionName::MinAgreement,
                Status::NotEnoughData,
                None,
            )],
        });
        let text = render(&r);
        assert!(
            !text.contains("segment=\"path=/a\""),
            "gone segments are removed: {text}"
        );
        m.labels(&LabelReport {
            joined: 3,
            unknown: 2,
            ..LabelReport::default()
        });
        assert!(render(&r).contains("shadowtap_labels_total{result=\"joined\"} 3"));
    }

    #[test]
    fn a_resumed_state_does_not_count_its_past_again() {
        use shadow_core::compare::{Comparison, Prediction, Side};
        use shadow_core::evaluation::{Evaluation, EvaluationLimits, KeyRules, RequestKeys};
        use std::time::Duration;
        let labelled = || Side {
            status: Some(200),
            prediction: Some(Prediction {
                values: serde_json::json!(["a"]),
                labels: vec!["a".into()],
                scores: Vec::new(),
            }),
            ..Side::default()
        };
        let c = Comparison {
            production: labelled(),
            shadow: labelled(),
            body_equal: Some(true),
            agreement: Some(true),
            diffs: Vec::new(),
            discrepancies: Vec::new(),
        };
        let rules = KeyRules {
            id_header: Some("x-request-id".into()),
            ..KeyRules::default()
        };
        let mut e = Evaluation::new(rules, EvaluationLimits::default());
        let keys = |id: &str| RequestKeys {
            id: Some(id.into()),
            path: "/p".into(),
            field: None,
        };
        // One request expired before the restart.
        e.record(&c, &keys("old"), Duration::ZERO);
        e.expire(Duration::from_secs(7200));
        let r = Registry::new();
        let m = VerdictMetrics::new(&r).unwrap();
        m.resume(&e.summary());
        m.evaluation(&e.summary());
        let expired = "shadowtap_labels_unlabeled_total{reason=\"expired\"}";
        assert!(
            render(&r).contains(&format!("{expired} 0")),
            "{}",
            render(&r)
        );
        // One more after it counts.
        e.record(&c, &keys("new"), Duration::from_secs(7200));
        e.expire(Duration::from_secs(15_000));
        m.evaluation(&e.summary());
        assert!(
            render(&r).contains(&format!("{expired} 1")),
            "{}",
            render(&r)
        );
    }
}
