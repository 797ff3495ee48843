//! Success criteria and the verdict: PROMOTE, HOLD or REJECT the shadow model.
//!
//! [`Criteria`] is what the operator asks for (`[criteria]` in the config, or a standalone
//! file); [`Measurements`] is what the daemon measured; [`evaluate`] judges each configured
//! criterion as pass, fail or not-enough-data, with the measured value, its interval and the
//! threshold, and combines them: **PROMOTE** if every criterion passes, **REJECT** if any fails,
//! **HOLD** otherwise (including when no criterion is configured: nothing was asked, nothing is
//! promoted).
//!
//! Criteria on proportions are judged on their 95 % interval, never the point estimate, so a
//! verdict holds with that confidence; an interval that straddles the threshold is
//! not-enough-data (keep collecting). How each one is judged:
//!
//! - `min_samples`, `min_labeled`: counts; below them every criterion that needs comparisons
//!   (resp. labels) is not-enough-data, and they themselves never fail.
//! - `min_agreement`: Wilson interval of the agreement ratio; pass if its lower bound ≥ the
//!   floor, fail if its upper bound is below it.
//! - `accuracy_margin` (non-inferiority): Newcombe's hybrid score interval for the paired
//!   difference shadow − production accuracy on the same labeled requests (Newcombe 1998c,
//!   method 10, see [`crate::stats::proportion`]); pass if its lower bound ≥ −margin, fail if
//!   its upper bound < −margin.
//! - `f1_margin` (non-inferiority of macro-F1): macro-F1 has no paired closed-form interval, so
//!   it is judged conservatively on the two models' own intervals: the difference is taken to
//!   lie in `[shadow.lo − production.hi, shadow.hi − production.lo]` (pass if that lower end
//!   ≥ −margin, fail if the upper end < −margin). Judging a difference by its components'
//!   intervals is conservative (Schenker & Gentleman, "On judging the significance of
//!   differences by examining the overlap between confidence intervals", The American
//!   Statistician 55:182–186, 2001): it decides less often, never more wrongly.
//! - `max_error_rate_delta`: Newcombe's hybrid score interval for shadow − production error
//!   rate (independent form, 1998b; wider than the paired one when errors co-occur, so again
//!   conservative); pass if its upper bound ≤ the maximum, fail if its lower bound exceeds it.
//! - `max_p99_latency_ratio`, `max_cpu_ratio`, `max_rss_ratio`: shadow / production ratios of
//!   point measurements (histogram quantile, CPU seconds, resident bytes); pass if ≤ the
//!   maximum, fail otherwise; not-enough-data without both measurements or below
//!   `min_samples`.

use crate::stats::proportion::{
    Estimate, Interval, PairedCounts, Proportion, Z_95, newcombe_difference,
    newcombe_paired_difference,
};
use serde::{Deserialize, Serialize};

/// What the shadow must show before it is promoted. Every criterion is optional; only the
/// configured ones are judged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Criteria {
    /// Comparisons needed before anything else is judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<u64>,
    /// Labeled comparisons needed before accuracy and F1 are judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_labeled: Option<u64>,
    /// Lowest acceptable agreement ratio with production, in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_agreement: Option<f64>,
    /// Non-inferiority margin for accuracy: the shadow may be at most this much worse than
    /// production, in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_margin: Option<f64>,
    /// Non-inferiority margin for macro-F1, in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f1_margin: Option<f64>,
    /// Largest acceptable shadow / production p99 latency ratio (> 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_latency_ratio: Option<f64>,
    /// Largest acceptable shadow − production error rate, in [-1, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate_delta: Option<f64>,
    /// Largest acceptable shadow / production CPU time ratio (> 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpu_ratio: Option<f64>,
    /// Largest acceptable shadow / production resident memory ratio (> 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rss_ratio: Option<f64>,
    /// Comparisons (and, for accuracy, labeled rows) a segment needs before the segment floors
    /// judge it; smaller segments are left out of the verdict (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_min_samples: Option<u64>,
    /// `min_agreement` for every segment (each path, each value of the segment field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_min_agreement: Option<f64>,
    /// `accuracy_margin` for every segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_accuracy_margin: Option<f64>,
}

/// Default of [`Criteria::segment_min_samples`].
pub const DEFAULT_SEGMENT_MIN_SAMPLES: u64 = 100;

/// A criterion's threshold is out of its range.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("criteria: `{key}` = {value} is out of range; it must be {expected}")]
pub struct CriteriaError {
    /// The offending key.
    pub key: &'static str,
    /// Its value.
    pub value: f64,
    /// What it must be.
    pub expected: &'static str,
}

impl Criteria {
    /// Checks every threshold's range; the error names the key.
    pub fn validate(&self) -> Result<(), CriteriaError> {
        let unit = |x: f64| (0.0..=1.0).contains(&x);
        let signed_unit = |x: f64| (-1.0..=1.0).contains(&x);
        let positive = |x: f64| x.is_finite() && x > 0.0;
        type Check = (&'static str, Option<f64>, fn(f64) -> bool, &'static str);
        let checks: [Check; 9] = [
            ("min_agreement", self.min_agreement, unit, "within [0, 1]"),
            (
                "segment_min_agreement",
                self.segment_min_agreement,
                unit,
                "within [0, 1]",
            ),
            (
                "segment_accuracy_margin",
                self.segment_accuracy_margin,
                unit,
                "within [0, 1]",
            ),
            (
                "accuracy_margin",
                self.accuracy_margin,
                unit,
                "within [0, 1]",
            ),
            ("f1_margin", self.f1_margin, unit, "within [0, 1]"),
            (
                "max_p99_latency_ratio",
                self.max_p99_latency_ratio,
                positive,
                "a number > 0",
            ),
            (
                "max_error_rate_delta",
                self.max_error_rate_delta,
                signed_unit,
                "within [-1, 1]",
            ),
            (
                "max_cpu_ratio",
                self.max_cpu_ratio,
                positive,
                "a number > 0",
            ),
            (
                "max_rss_ratio",
                self.max_rss_ratio,
                positive,
                "a number > 0",
            ),
        ];
        for (key, value, ok, expected) in checks {
            if let Some(v) = value
                && !ok(v)
            {
                return Err(CriteriaError {
                    key,
                    value: v,
                    expected,
                });
            }
        }
        Ok(())
    }
}

/// One value per model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelPair<T> {
    /// The production model's.
    pub production: T,
    /// The shadow model's.
    pub shadow: T,
}

/// What was measured; `None` where nothing was.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Measurements {
    /// Comparisons made.
    pub samples: u64,
    /// Agreed / comparisons where agreement is defined.
    pub agreement: Option<Proportion>,
    /// Paired correctness on labeled comparisons (first = production, second = shadow).
    pub correctness: Option<PairedCounts>,
    /// Each model's macro-F1 against the labels, with its interval.
    pub macro_f1: Option<ModelPair<Estimate>>,
    /// Each model's p99 latency, in milliseconds.
    pub p99_latency_ms: Option<ModelPair<f64>>,
    /// Each model's errors / requests.
    pub errors: Option<ModelPair<Proportion>>,
    /// Each model's CPU time per request it handled, in seconds (production: per exchange seen
    /// on the wire; the shadow: per replay).
    pub cpu_seconds_per_request: Option<ModelPair<f64>>,
    /// Each model's resident memory, in bytes.
    pub rss_bytes: Option<ModelPair<f64>>,
    /// The same per segment (`path=/v2/...`, `field=<value>`); resources are not per segment.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub segments: std::collections::BTreeMap<String, Measurements>,
}

impl Measurements {
    /// Labeled comparisons.
    pub fn labeled(&self) -> u64 {
        self.correctness.map_or(0, |c| c.total())
    }
}

/// The criteria, by name (also the `criterion` label of the verdict metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CriterionName {
    /// `min_samples`.
    MinSamples,
    /// `min_labeled`.
    MinLabeled,
    /// `min_agreement`.
    MinAgreement,
    /// `accuracy_margin`.
    AccuracyMargin,
    /// `f1_margin`.
    F1Margin,
    /// `max_p99_latency_ratio`.
    MaxP99LatencyRatio,
    /// `max_error_rate_delta`.
    MaxErrorRateDelta,
    /// `max_cpu_ratio`.
    MaxCpuRatio,
    /// `max_rss_ratio`.
    MaxRssRatio,
}

impl CriterionName {
    /// The config key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MinSamples => "min_samples",
            Self::MinLabeled => "min_labeled",
            Self::MinAgreement => "min_agreement",
            Self::AccuracyMargin => "accuracy_margin",
            Self::F1Margin => "f1_margin",
            Self::MaxP99LatencyRatio => "max_p99_latency_ratio",
            Self::MaxErrorRateDelta => "max_error_rate_delta",
            Self::MaxCpuRatio => "max_cpu_ratio",
            Self::MaxRssRatio => "max_rss_ratio",
        }
    }
}

/// How one criterion came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Met, with the stated confidence.
    Pass,
    /// Missed, with the stated confidence.
    Fail,
    /// Too little data, or an interval that straddles the threshold.
    NotEnoughData,
}

impl Status {
    /// `pass`, `fail` or `not_enough_data`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::NotEnoughData => "not_enough_data",
        }
    }
}

/// One criterion's judgement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CriterionResult {
    /// Which criterion.
    pub criterion: CriterionName,
    /// Pass, fail or not-enough-data.
    pub status: Status,
    /// The measured value (a count, ratio or difference), if any.
    pub measured: Option<f64>,
    /// Its 95 % interval, where it has one.
    pub interval: Option<Interval>,
    /// The threshold it was held to (a margin `m` is shown as the bound `−m`).
    pub threshold: f64,
    /// Why, in a few words.
    pub reason: String,
    /// The segment it judged (`path=...`, `field=...`); `None` for all traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
}

/// The overall decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Decision {
    /// Every criterion passed.
    Promote,
    /// Nothing failed, but not everything passed yet.
    Hold,
    /// A criterion failed.
    Reject,
}

impl Decision {
    /// `PROMOTE`, `HOLD` or `REJECT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promote => "PROMOTE",
            Self::Hold => "HOLD",
            Self::Reject => "REJECT",
        }
    }
}

/// The decision and every criterion behind it, in the order of [`Criteria`]'s fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// PROMOTE, HOLD or REJECT.
    pub decision: Decision,
    /// One entry per configured criterion.
    pub criteria: Vec<CriterionResult>,
}

/// Judges `m` against `c` (see the module docs for how each criterion is judged), then every
/// segment with at least `segment_min_samples` comparisons against the segment floors.
pub fn evaluate(c: &Criteria, m: &Measurements) -> Verdict {
    let mut out = judge(c, m);
    if c.segment_min_agreement.is_some() || c.segment_accuracy_margin.is_some() {
        let min = c.segment_min_samples.unwrap_or(DEFAULT_SEGMENT_MIN_SAMPLES);
        let floors = Criteria {
            min_samples: Some(min),
            min_labeled: Some(min),
            min_agreement: c.segment_min_agreement,
            accuracy_margin: c.segment_accuracy_margin,
            ..Criteria::default()
        };
        for (segment, sm) in m.segments.iter().filter(|(_, sm)| sm.samples >= min) {
            for mut result in judge(&floors, sm) {
                if matches!(
                    result.criterion,
                    CriterionName::MinSamples | CriterionName::MinLabeled
                ) {
                    continue;
                }
                result.segment = Some(segment.clone());
                out.push(result);
            }
        }
    }
    let decision = if out.iter().any(|c| c.status == Status::Fail) {
        Decision::Reject
    } else if !out.is_empty() && out.iter().all(|c| c.status == Status::Pass) {
        Decision::Promote
    } else {
        Decision::Hold
    };
    Verdict {
        decision,
        criteria: out,
    }
}

/// Judges the configured criteria on one set of measurements.
fn judge(c: &Criteria, m: &Measurements) -> Vec<CriterionResult> {
    let mut out = Vec::new();
    let enough_samples = m.samples >= c.min_samples.unwrap_or(0);
    let labeled = m.labeled();
    let enough_labels = labeled > 0 && labeled >= c.min_labeled.unwrap_or(0);
    let r = |criterion, status, measured, interval, threshold, reason: &str| CriterionResult {
        criterion,
        status,
        measured,
        interval,
        threshold,
        reason: reason.to_owned(),
        segment: None,
    };

    for (name, min, have) in [
        (CriterionName::MinSamples, c.min_samples, m.samples),
        (CriterionName::MinLabeled, c.min_labeled, labeled),
    ] {
        if let Some(min) = min {
            let (status, why) = if have >= min {
                (Status::Pass, "enough")
            } else {
                (Status::NotEnoughData, "still collecting")
            };
            out.push(r(name, status, Some(have as f64), None, min as f64, why));
        }
    }

    if let Some(floor) = c.min_agreement {
        let name = CriterionName::MinAgreement;
        out.push(when_enough(
            lower_bound_judgement,
            name,
            m.agreement.and_then(|a| a.estimate()),
            floor,
            enough_samples,
            "too few samples",
        ));
    }

    if let Some(margin) = c.accuracy_margin {
        let name = CriterionName::AccuracyMargin;
        let diff = m
            .correctness
            .and_then(|t| newcombe_paired_difference(t, Z_95));
        out.push(when_enough(
            lower_bound_judgement,
            name,
            diff,
            -margin,
            enough_labels,
            "too few labels",
        ));
    }

    if let Some(margin) = c.f1_margin {
        let name = CriterionName::F1Margin;
        let diff = m.macro_f1.and_then(|f| {
            let (s, p) = (f.shadow.interval?, f.production.interval?);
            Some(Estimate {
                value: f.shadow.value - f.production.value,
                interval: Some(Interval {
                    lo: s.lo - p.hi,
                    hi: s.hi - p.lo,
                }),
            })
        });
        out.push(when_enough(
            lower_bound_judgement,
            name,
            diff,
            -margin,
            enough_labels,
            "too few labels",
        ));
    }

    if let Some(max) = c.max_p99_latency_ratio {
        out.push(ratio_judgement(
            CriterionName::MaxP99LatencyRatio,
            m.p99_latency_ms,
            max,
            enough_samples,
        ));
    }

    if let Some(max) = c.max_error_rate_delta {
        let name = CriterionName::MaxErrorRateDelta;
        let diff = m
            .errors
            .and_then(|e| newcombe_difference(e.shadow, e.production, Z_95));
        out.push(when_enough(
            upper_bound_judgement,
            name,
            diff,
            max,
            enough_samples,
            "too few samples",
        ));
    }

    if let Some(max) = c.max_cpu_ratio {
        out.push(ratio_judgement(
            CriterionName::MaxCpuRatio,
            m.cpu_seconds_per_request,
            max,
            enough_samples,
        ));
    }
    if let Some(max) = c.max_rss_ratio {
        out.push(ratio_judgement(
            CriterionName::MaxRssRatio,
            m.rss_bytes,
            max,
            enough_samples,
        ));
    }

    out
}

/// `judge(criterion, e, threshold)` when there is enough data (`enough`) and an estimate;
/// otherwise not-enough-data, showing whatever was measured, for `short` (e.g. "too few
/// labels").
fn when_enough(
    judge: fn(CriterionName, Estimate, f64) -> CriterionResult,
    criterion: CriterionName,
    estimate: Option<Estimate>,
    threshold: f64,
    enough: bool,
    short: &str,
) -> CriterionResult {
    match estimate {
        Some(e) if enough => judge(criterion, e, threshold),
        e => CriterionResult {
            criterion,
            status: Status::NotEnoughData,
            measured: e.map(|e| e.value),
            interval: e.and_then(|e| e.interval),
            threshold,
            reason: short.to_owned(),
            segment: None,
        },
    }
}

/// The value must be at least `floor`: pass if the whole interval is, fail if none of it is.
fn lower_bound_judgement(criterion: CriterionName, e: Estimate, floor: f64) -> CriterionResult {
    let i = e.interval.unwrap_or(Interval {
        lo: e.value,
        hi: e.value,
    });
    let (status, reason) = if i.lo >= floor {
        (Status::Pass, "interval above the threshold")
    } else if i.hi < floor {
        (Status::Fail, "interval below the threshold")
    } else {
        (Status::NotEnoughData, "interval straddles the threshold")
    };
    CriterionResult {
        criterion,
        status,
        measured: Some(e.value),
        interval: e.interval,
        threshold: floor,
        reason: reason.to_owned(),
        segment: None,
    }
}

/// The value must be at most `max`: pass if the whole interval is, fail if none of it is.
fn upper_bound_judgement(criterion: CriterionName, e: Estimate, max: f64) -> CriterionResult {
    let i = e.interval.unwrap_or(Interval {
        lo: e.value,
        hi: e.value,
    });
    let (status, reason) = if i.hi <= max {
        (Status::Pass, "interval below the maximum")
    } else if i.lo > max {
        (Status::Fail, "interval above the maximum")
    } else {
        (Status::NotEnoughData, "interval straddles the maximum")
    };
    CriterionResult {
        criterion,
        status,
        measured: Some(e.value),
        interval: e.interval,
        threshold: max,
        reason: reason.to_owned(),
        segment: None,
    }
}

/// shadow / production must be at most `max`.
fn ratio_judgement(
    criterion: CriterionName,
    pair: Option<ModelPair<f64>>,
    max: f64,
    enough_samples: bool,
) -> CriterionResult {
    let ratio = pair.and_then(|p| {
        let ok = p.production.is_finite()
            && p.production > 0.0
            && p.shadow.is_finite()
            && p.shadow >= 0.0;
        ok.then(|| p.shadow / p.production)
    });
    let (status, reason) = match ratio {
        None => (Status::NotEnoughData, "not measured for both models"),
        Some(_) if !enough_samples => (Status::NotEnoughData, "too few samples"),
        Some(x) if x <= max => (Status::Pass, "ratio within the maximum"),
        Some(_) => (Status::Fail, "ratio above the maximum"),
    };
    CriterionResult {
        criterion,
        status,
        measured: ratio,
        interval: None,
        threshold: max,
        reason: reason.to_owned(),
        segment: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::proportion::wilson95;

    fn criteria() -> Criteria {
        Criteria {
            min_samples: Some(500),
            min_labeled: Some(200),
            min_agreement: Some(0.8),
            accuracy_margin: Some(0.02),
            f1_margin: Some(0.05),
            max_p99_latency_ratio: Some(1.5),
            max_error_rate_delta: Some(0.01),
            max_cpu_ratio: Some(2.0),
            max_rss_ratio: Some(2.0),
            ..Criteria::default()
        }
    }

    fn pair<T>(production: T, shadow: T) -> ModelPair<T> {
        ModelPair { production, shadow }
    }

    fn f1(value: f64, half: f64) -> Estimate {
        Estimate {
            value,
            interval: Some(Interval {
                lo: value - half,
                hi: value + half,
            }),
        }
    }

    /// 1000 samples, 1000 labeled: production 830 right, shadow 860 (δ = +0.03, interval
    /// (0.0115, 0.0488) — see the proportion tests), healthy resources.
    fn better() -> Measurements {
        Measurements {
            samples: 1000,
            agreement: Some(Proportion::new(900, 1000)),
            correctness: Some(PairedCounts {
                both: 800,
                first_only: 30,
                second_only: 60,
                neither: 110,
            }),
            macro_f1: Some(pair(f1(0.80, 0.02), f1(0.84, 0.02))),
            p99_latency_ms: Some(pair(40.0, 48.0)),
            errors: Some(pair(Proportion::new(2, 1000), Proportion::new(3, 1000))),
            cpu_seconds_per_request: Some(pair(100.0, 150.0)),
            rss_bytes: Some(pair(1e9, 1.2e9)),
            segments: Default::default(),
        }
    }

    fn status(v: &Verdict, name: CriterionName) -> Status {
        v.criteria
            .iter()
            .find(|c| c.criterion == name)
            .map(|c| c.status)
            .expect("judged")
    }

    #[test]
    fn shadow_better_is_promoted() {
        let v = evaluate(&criteria(), &better());
        assert_eq!(v.decision, Decision::Promote, "{v:#?}");
        assert_eq!(v.criteria.len(), 9);
        let acc = &v.criteria[3];
        assert_eq!(acc.criterion, CriterionName::AccuracyMargin);
        assert!((acc.measured.unwrap() - 0.03).abs() < 1e-12);
        assert!((acc.interval.unwrap().lo - 0.011_508_694).abs() < 1e-8);
        assert_eq!(acc.threshold, -0.02);
        // Agreement 900/1000: Wilson (0.8798, 0.9170), lower bound ≥ 0.8.
        assert_eq!(v.criteria[2].interval, wilson95(900, 1000));
        // p99 ratio 48 / 40 = 1.2 ≤ 1.5.
        assert_eq!(v.criteria[5].measured, Some(1.2));
    }

    #[test]
    fn shadow_worse_is_rejected() {
        // Production right where the shadow is wrong 90 times, the reverse 10 times (n = 1000):
        // δ = (10 − 90)/1000 = −0.08, and the whole paired interval lies below −0.02.
        let mut m = better();
        m.correctness = Some(PairedCounts {
            both: 760,
            first_only: 90,
            second_only: 10,
            neither: 140,
        });
        let v = evaluate(&criteria(), &m);
        assert_eq!(
            status(&v, CriterionName::AccuracyMargin),
            Status::Fail,
            "{v:#?}"
        );
        assert!(v.criteria[3].interval.unwrap().hi < -0.02);
        assert_eq!(v.decision, Decision::Reject);

        // A resource criterion alone also rejects: CPU 2.5×.
        let mut m = better();
        m.cpu_seconds_per_request = Some(pair(100.0, 250.0));
        let v = evaluate(&criteria(), &m);
        assert_eq!(status(&v, CriterionName::MaxCpuRatio), Status::Fail);
        assert_eq!(v.decision, Decision::Reject);
    }

    #[test]
    fn too_few_samples_hold() {
        let mut m = better();
        m.samples = 100;
        m.correctness = Some(PairedCounts {
            both: 40,
            first_only: 1,
            second_only: 3,
            neither: 6,
        });
        m.cpu_seconds_per_request = Some(pair(100.0, 1000.0)); // would fail, but too early to judge
        let v = evaluate(&criteria(), &m);
        assert_eq!(v.decision, Decision::Hold, "{v:#?}");
        assert_eq!(status(&v, CriterionName::MinSamples), Status::NotEnoughData);
        assert_eq!(status(&v, CriterionName::MinLabeled), Status::NotEnoughData);
        assert_eq!(
            status(&v, CriterionName::MaxCpuRatio),
            Status::NotEnoughData
        );
        assert_eq!(v.criteria[0].measured, Some(100.0));
        assert!(v.criteria.iter().all(|c| c.status != Status::Fail));
    }

    #[test]
    fn straddling_intervals_hold() {
        // Agreement 81/100 with floor 0.8: Wilson (0.7222, 0.8749) straddles 0.8 → hold.
        let c = Criteria {
            min_agreement: Some(0.8),
            ..Criteria::default()
        };
        let m = Measurements {
            samples: 100,
            agreement: Some(Proportion::new(81, 100)),
            ..Measurements::default()
        };
        let v = evaluate(&c, &m);
        assert_eq!(v.criteria[0].status, Status::NotEnoughData);
        assert_eq!(v.criteria[0].reason, "interval straddles the threshold");
        assert_eq!(v.decision, Decision::Hold);
        // 95/100: Wilson lower bound 0.8882 ≥ 0.8 → promote; 60/100: upper 0.6910 < 0.8 → reject.
        let v = evaluate(
            &c,
            &Measurements {
                agreement: Some(Proportion::new(95, 100)),
                ..m.clone()
            },
        );
        assert_eq!(v.decision, Decision::Promote);
        let v = evaluate(
            &c,
            &Measurements {
                agreement: Some(Proportion::new(60, 100)),
                ..m
            },
        );
        assert_eq!(v.decision, Decision::Reject);
    }

    #[test]
    fn f1_is_judged_on_both_intervals() {
        let c = Criteria {
            f1_margin: Some(0.05),
            ..Criteria::default()
        };
        let judge = |p: Estimate, s: Estimate| {
            let m = Measurements {
                correctness: better().correctness,
                macro_f1: Some(pair(p, s)),
                ..Measurements::default()
            };
            evaluate(&c, &m).criteria[0].clone()
        };
        // shadow 0.80 ± 0.02, production 0.82 ± 0.02: difference in [0.78 − 0.84, 0.82 − 0.80]
        // = [−0.06, 0.02]; −0.06 < −0.05 ≤ 0.02 → not enough data.
        let r = judge(f1(0.82, 0.02), f1(0.80, 0.02));
        assert_eq!(r.status, Status::NotEnoughData);
        let i = r.interval.unwrap();
        assert!((i.lo + 0.06).abs() < 1e-12 && (i.hi - 0.02).abs() < 1e-12);
        // shadow 0.70 ± 0.02 vs 0.82 ± 0.02: upper end 0.72 − 0.80 = −0.08 < −0.05 → fail.
        assert_eq!(judge(f1(0.82, 0.02), f1(0.70, 0.02)).status, Status::Fail);
        // shadow 0.82 ± 0.01 vs 0.82 ± 0.01: lower end 0.81 − 0.83 = −0.02 ≥ −0.05 → pass.
        assert_eq!(judge(f1(0.82, 0.01), f1(0.82, 0.01)).status, Status::Pass);
    }

    #[test]
    fn error_rate_delta_uses_newcombe() {
        let c = Criteria {
            max_error_rate_delta: Some(0.05),
            ..Criteria::default()
        };
        // shadow 56/70 errors vs production 48/80: δ = 0.2, interval (0.0524, 0.3339) lies
        // entirely above 0.05 → fail (Newcombe 1998b, Table II, first example).
        let m = Measurements {
            samples: 150,
            errors: Some(pair(Proportion::new(48, 80), Proportion::new(56, 70))),
            ..Measurements::default()
        };
        let r = &evaluate(&c, &m).criteria[0];
        assert_eq!(r.status, Status::Fail);
        assert!((r.interval.unwrap().lo - 0.0524).abs() < 5e-5);
    }

    #[test]
    fn nothing_configured_or_measured_holds() {
        assert_eq!(
            evaluate(&Criteria::default(), &better()).decision,
            Decision::Hold
        );
        let v = evaluate(&criteria(), &Measurements::default());
        assert_eq!(v.decision, Decision::Hold);
        assert!(
            v.criteria.iter().all(|c| c.status == Status::NotEnoughData),
            "{v:#?}"
        );
        // A ratio against a zero or missing production value is not judged.
        let c = Criteria {
            max_rss_ratio: Some(2.0),
            ..Criteria::default()
        };
        let m = Measurements {
            rss_bytes: Some(pair(0.0, 5.0)),
            ..Measurements::default()
        };
        assert_eq!(evaluate(&c, &m).criteria[0].status, Status::NotEnoughData);
    }

    #[test]
    fn serde_round_trip_and_validation() {
        let json = r#"{"min_samples": 500, "accuracy_margin": 0.02, "max_cpu_ratio": 2}"#;
        let c: Criteria = serde_json::from_str(json).unwrap();
        assert_eq!(c.min_samples, Some(500));
        assert_eq!(c.max_cpu_ratio, Some(2.0));
        assert_eq!(c.validate(), Ok(()));
        assert!(serde_json::from_str::<Criteria>(r#"{"min_sample": 5}"#).is_err());
        let bad = Criteria {
            accuracy_margin: Some(1.5),
            ..c.clone()
        };
        let e = bad.validate().unwrap_err();
        assert_eq!(e.key, "accuracy_margin");
        assert!(e.to_string().contains("within [0, 1]"));
        assert!(
            Criteria {
                max_rss_ratio: Some(f64::NAN),
                ..c
            }
            .validate()
            .is_err()
        );

        let v = evaluate(&criteria(), &better());
        let text = serde_json::to_string(&v).unwrap();
        assert!(text.contains(r#""decision":"PROMOTE""#) && text.contains(r#""status":"pass""#));
        // serde_json's default float parsing may differ in the last ulp: compare the judgements.
        let back: Verdict = serde_json::from_str(&text).unwrap();
        assert_eq!(back.decision, v.decision);
        let judged = |v: &Verdict| {
            v.criteria
                .iter()
                .map(|c| (c.criterion, c.status))
                .collect::<Vec<_>>()
        };
        assert_eq!(judged(&back), judged(&v));
        let m: Measurements =
            serde_json::from_str(&serde_json::to_string(&better()).unwrap()).unwrap();
        assert_eq!(evaluate(&criteria(), &m).decision, Decision::Promote);
    }
}
