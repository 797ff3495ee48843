//! The noise baseline (Diffy's idea): a second instance of the *production* model answers the
//! same requests, and whatever differs between production and that baseline is nondeterminism
//! of production itself (request ids, timestamps, float jitter, unstable labels), not a
//! difference the shadow introduced.
//!
//! [`NoiseModel::learn`] takes production-vs-baseline [`Comparison`]s and counts, per
//! [normalised](normalize_path) JSON path, in how many of them the path differed, and how often
//! the label flipped. [`NoiseModel::classify`] then splits a production-vs-shadow comparison's
//! differing paths into noisy and real ones and says whether its discrepancy is *entirely*
//! noise; [`NoiseModel::judge`] does the same and counts the result per [`DiscrepancyKind`].
//!
//! # The rule
//!
//! A production-vs-shadow comparison is noise when it has a discrepancy, its diff list was not
//! cut at the comparer's `max_diffs` (unseen diffs could be real), every differing path is a
//! known-noisy path (exact match after normalisation: a noisy `/meta/jitter` explains neither
//! `/meta` nor `/meta/jitter/x`), and every discrepancy kind is one noise can cause:
//!
//! - `body` and `prediction`: when the comparison has at least one differing path (a body or
//!   prediction difference the diff cannot locate, e.g. under an ignored path, is not known to
//!   be noise). A difference between bodies that are not both JSON has the one path
//!   [`OPAQUE_BODY`].
//! - `label`: only once production's label has flipped against the baseline at least once
//!   (flip rate > 0). One request cannot tell a noise flip from a real one; a model that flips
//!   its own labels cannot be said to disagree for real on any single request, so every such
//!   disagreement is counted as possibly noise. The count of label disagreements explained by
//!   noise is then an upper bound: compare the shadow's label disagreement rate with
//!   [`NoiseSummary::label_flip_rate`] (and its interval) for the real gap.
//! - `status` and `missing_prediction`: never. An error answer or an answer without a
//!   prediction is not nondeterminism of a healthy answer, even if the baseline also fails
//!   now and then (that is counted in [`NoiseSummary::baseline_discrepancies`]).
//!
//! Memory is bounded: at most [`NoiseLimits::max_paths`] distinct paths (each at most
//! [`MAX_PATH_BYTES`] long) are kept; differences at further paths are counted as
//! [`OTHER_PATHS`], which explains nothing.

use crate::compare::{Comparison, DiscrepancyKind};
use crate::stats::proportion::{Estimate, Proportion};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Where differences at paths past the cap are counted (never a known-noisy path).
pub const OTHER_PATHS: &str = "(other)";

/// The path of a difference between two bodies that are not both JSON (the JSON diff cannot
/// say where they differ).
pub const OPAQUE_BODY: &str = "(body)";

/// Longest path kept; a longer one is counted as [`OTHER_PATHS`].
pub const MAX_PATH_BYTES: usize = 512;

/// The discrepancy kinds noise can explain (the others never are; see the module's rule).
pub const NOISE_KINDS: [DiscrepancyKind; 3] = [
    DiscrepancyKind::Label,
    DiscrepancyKind::Prediction,
    DiscrepancyKind::Body,
];

/// A JSON pointer with every array index replaced by `*`: `/outputs/0/data/3` →
/// `/outputs/*/data/*`, so that the same field of every element is one path. A segment made
/// only of ASCII digits is taken for an index (an object key such as `"7"` is normalised
/// too; a pointer cannot tell them apart). Other segments, escapes included, are kept.
pub fn normalize_path(pointer: &str) -> String {
    let mut out = String::with_capacity(pointer.len());
    for segment in pointer.split('/').skip(1) {
        out.push('/');
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push('*');
        } else {
            out.push_str(segment);
        }
    }
    out
}

/// The distinct normalised paths at which `c`'s bodies differ ([`OPAQUE_BODY`] when they
/// differ and are not both JSON).
fn differing_paths(c: &Comparison) -> BTreeSet<String> {
    let mut paths: BTreeSet<String> = c.diffs.iter().map(|d| normalize_path(&d.path)).collect();
    if paths.is_empty() && c.body_equal == Some(false) {
        paths.insert(OPAQUE_BODY.to_string());
    }
    paths
}

/// Whether a comparison has a label disagreement (the comparer reports one only when both
/// answers have a prediction and at least one of them has labels).
fn labels_differ(c: &Comparison) -> bool {
    c.discrepancies.contains(&DiscrepancyKind::Label)
}

/// Whether the labels of a comparison could be compared at all.
fn labels_comparable(c: &Comparison) -> bool {
    match (&c.production.prediction, &c.shadow.prediction) {
        (Some(p), Some(s)) => !p.labels.is_empty() || !s.labels.is_empty(),
        _ => false,
    }
}

/// Caps of a [`NoiseModel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoiseLimits {
    /// Distinct noisy paths kept; differences at further paths count as [`OTHER_PATHS`].
    pub max_paths: usize,
    /// The comparer's `max_diffs` (0 = unlimited): a comparison with that many diffs may have
    /// more that were not listed, so it is never entirely noise.
    pub max_diffs: usize,
}

impl Default for NoiseLimits {
    /// 256 paths; diff lists taken as complete.
    fn default() -> Self {
        NoiseLimits {
            max_paths: 256,
            max_diffs: 0,
        }
    }
}

/// What the noise baseline says about one production-vs-shadow comparison.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoiseVerdict {
    /// The comparison's whole discrepancy is explained by noise (see the module's rule);
    /// `false` when it has none.
    pub noise: bool,
    /// Its differing paths (normalised, sorted) that differ between production and the
    /// baseline too.
    pub noisy_paths: Vec<String>,
    /// Its differing paths (normalised, sorted) that never did.
    pub real_paths: Vec<String>,
}

/// Shadow comparisons (or discrepancies of one kind) that were entirely noise, and the rest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoiseSplit {
    /// Explained by noise.
    pub noise: u64,
    /// Not explained by noise: a real difference of the shadow.
    pub real: u64,
}

/// One path and in how many production-vs-baseline comparisons it differed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathCount {
    /// The normalised JSON pointer ([`OPAQUE_BODY`] for non-JSON bodies, [`OTHER_PATHS`] for
    /// the paths past the cap).
    pub path: String,
    /// Baseline comparisons in which it differed.
    pub comparisons: u64,
    /// `comparisons` / all baseline comparisons.
    pub ratio: f64,
}

/// `/api/summary`'s `noise`: what the baseline taught and how the shadow's discrepancies split
/// into noise and real ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NoiseSummary {
    /// Replays whose baseline answer was compared with production's (and learned from).
    pub baseline_compared: u64,
    /// Replays the baseline gave no usable answer to (nothing learned).
    pub baseline_failed: u64,
    /// Production-vs-baseline comparisons per discrepancy kind.
    pub baseline_discrepancies: BTreeMap<String, u64>,
    /// The paths that differed most often between production and the baseline, most first
    /// (then by path), followed by [`OTHER_PATHS`] when paths went past the cap.
    pub noisy_paths: Vec<PathCount>,
    /// Distinct noisy paths known (the list above may show fewer).
    pub distinct_paths: usize,
    /// Baseline comparisons whose labels could be compared (trials), and how many flipped.
    pub label_flips: Proportion,
    /// The label flip rate with its 95 % Wilson interval (`null` before the first trial).
    pub label_flip_rate: Option<Estimate>,
    /// Production-vs-shadow comparisons with a discrepancy: entirely noise, or real.
    pub shadow: NoiseSplit,
    /// The same per discrepancy kind of those comparisons (a kind of a comparison that is
    /// entirely noise counts as noise, every kind of the others as real).
    pub shadow_by_kind: BTreeMap<String, NoiseSplit>,
}

/// What production-vs-baseline comparisons taught, and the tally of shadow comparisons judged
/// with it. Bounded by [`NoiseLimits`].
#[derive(Clone, Debug, Default)]
pub struct NoiseModel {
    limits: NoiseLimits,
    compared: u64,
    failed: u64,
    baseline_kinds: BTreeMap<DiscrepancyKind, u64>,
    /// Normalised path → baseline comparisons in which it differed.
    paths: BTreeMap<String, u64>,
    /// Baseline comparisons with a difference at a path past the cap.
    other: u64,
    label_flips: Proportion,
    shadow: NoiseSplit,
    shadow_by_kind: BTreeMap<DiscrepancyKind, NoiseSplit>,
}

impl NoiseModel {
    /// An empty model with these caps.
    pub fn new(limits: NoiseLimits) -> NoiseModel {
        NoiseModel {
            limits,
            ..NoiseModel::default()
        }
    }

    /// Learns from one production-vs-baseline comparison (production in `production`, the
    /// baseline in `shadow`). A baseline that gave no answer counts as failed and teaches
    /// nothing.
    pub fn learn(&mut self, baseline: &Comparison) {
        if !baseline.shadow_answered() {
            self.baseline_failed();
            return;
        }
        self.compared = self.compared.saturating_add(1);
        for kind in &baseline.discrepancies {
            *self.baseline_kinds.entry(*kind).or_default() += 1;
        }
        if labels_comparable(baseline) {
            self.label_flips.record(labels_differ(baseline));
        }
        let mut past_cap = false;
        for path in differing_paths(baseline) {
            if let Some(n) = self.paths.get_mut(&path) {
                *n += 1;
            } else if self.paths.len() < self.limits.max_paths && path.len() <= MAX_PATH_BYTES {
                self.paths.insert(path, 1);
            } else {
                past_cap = true;
            }
        }
        if past_cap {
            self.other = self.other.saturating_add(1);
        }
    }

    /// Counts a replay the baseline gave no usable answer to (or that could not be sent).
    pub fn baseline_failed(&mut self) {
        self.failed = self.failed.saturating_add(1);
    }

    /// Whether `path` (normalised) has differed between production and the baseline.
    pub fn is_noisy(&self, path: &str) -> bool {
        self.paths.contains_key(path)
    }

    /// Whether production's label has flipped against the baseline at least once.
    pub fn labels_flip(&self) -> bool {
        self.label_flips.successes > 0
    }

    /// Splits a production-vs-shadow comparison's differing paths into noisy and real ones and
    /// says whether its discrepancy is entirely noise (the module's rule). Counts nothing.
    pub fn classify(&self, shadow: &Comparison) -> NoiseVerdict {
        let (noisy_paths, real_paths): (Vec<String>, Vec<String>) = differing_paths(shadow)
            .into_iter()
            .partition(|p| self.is_noisy(p));
        let complete = self.limits.max_diffs == 0 || shadow.diffs.len() < self.limits.max_diffs;
        let located = !noisy_paths.is_empty();
        let kinds_explained = shadow.discrepancies.iter().all(|kind| match kind {
            DiscrepancyKind::Label => self.labels_flip(),
            DiscrepancyKind::Prediction | DiscrepancyKind::Body => located,
            DiscrepancyKind::Status | DiscrepancyKind::MissingPrediction => false,
        });
        NoiseVerdict {
            noise: !shadow.discrepancies.is_empty()
                && complete
                && real_paths.is_empty()
                && kinds_explained,
            noisy_paths,
            real_paths,
        }
    }

    /// [`NoiseModel::classify`], and counts a comparison with a discrepancy as noise or real
    /// (overall and per kind).
    pub fn judge(&mut self, shadow: &Comparison) -> NoiseVerdict {
        let verdict = self.classify(shadow);
        if !shadow.discrepancies.is_empty() {
            let count = |split: &mut NoiseSplit| {
                let n = if verdict.noise {
                    &mut split.noise
                } else {
                    &mut split.real
                };
                *n = n.saturating_add(1);
            };
            count(&mut self.shadow);
            for kind in &shadow.discrepancies {
                count(self.shadow_by_kind.entry(*kind).or_default());
            }
        }
        verdict
    }

    /// A snapshot with the `top` most frequent noisy paths (`usize::MAX` for all of them).
    pub fn summary(&self, top: usize) -> NoiseSummary {
        let ratio = |n: u64| {
            if self.compared == 0 {
                0.0
            } else {
                n as f64 / self.compared as f64
            }
        };
        let mut ranked: Vec<(&String, u64)> = self.paths.iter().map(|(p, n)| (p, *n)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let mut noisy_paths: Vec<PathCount> = ranked
            .into_iter()
            .take(top)
            .map(|(path, n)| PathCount {
                path: path.clone(),
                comparisons: n,
                ratio: ratio(n),
            })
            .collect();
        if self.other > 0 {
            noisy_paths.push(PathCount {
                path: OTHER_PATHS.to_string(),
                comparisons: self.other,
                ratio: ratio(self.other),
            });
        }
        let by_kind = |m: &BTreeMap<DiscrepancyKind, u64>| {
            m.iter()
                .map(|(k, n)| (k.as_str().to_string(), *n))
                .collect()
        };
        NoiseSummary {
            baseline_compared: self.compared,
            baseline_failed: self.failed,
            baseline_discrepancies: by_kind(&self.baseline_kinds),
            noisy_paths,
            distinct_paths: self.paths.len(),
            label_flips: self.label_flips,
            label_flip_rate: self.label_flips.estimate(),
            shadow: self.shadow,
            shadow_by_kind: self
                .shadow_by_kind
                .iter()
                .map(|(k, s)| (k.as_str().to_string(), *s))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{DiffKind, FieldDiff, Prediction, Side};
    use crate::stats::proportion::wilson95;
    use serde_json::json;

    /// A comparison of two 200 answers with predictions labelled `prod` / `other`, differing
    /// at `paths` (numbers), with the discrepancy kinds the comparer would give.
    fn compared(prod: &str, other: &str, paths: &[&str]) -> Comparison {
        let side = |label: &str| Side {
            status: Some(200),
            prediction: Some(Prediction {
                values: json!([label]),
                labels: vec![label.to_string()],
                scores: Vec::new(),
            }),
            ..Side::default()
        };
        let diffs: Vec<FieldDiff> = paths
            .iter()
            .map(|p| FieldDiff {
                path: p.to_string(),
                kind: DiffKind::Number,
                production: Some(json!(1)),
                shadow: Some(json!(2)),
            })
            .collect();
        let mut discrepancies = Vec::new();
        if prod != other {
            discrepancies.push(DiscrepancyKind::Label);
        } else if paths.iter().any(|p| p.starts_with("/outputs")) {
            discrepancies.push(DiscrepancyKind::Prediction);
        } else if !paths.is_empty() {
            discrepancies.push(DiscrepancyKind::Body);
        }
        Comparison {
            production: side(prod),
            shadow: side(other),
            body_equal: Some(paths.is_empty()),
            agreement: Some(prod == other),
            diffs,
            discrepancies,
        }
    }

    fn failed() -> Comparison {
        let mut c = compared("a", "a", &[]);
        c.shadow = Side {
            error: Some(crate::compare::ErrorClass::Timeout),
            latency_ns: Some(1),
            ..Side::default()
        };
        c.body_equal = None;
        c.agreement = None;
        c
    }

    fn paths(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn array_indices_are_normalised_and_other_segments_kept() {
        assert_eq!(normalize_path("/outputs/0/data/3"), "/outputs/*/data/*");
        assert_eq!(normalize_path("/outputs/12/name"), "/outputs/*/name");
        assert_eq!(normalize_path("/meta/jitter"), "/meta/jitter");
        assert_eq!(normalize_path("/a~1b/0x1/-1/1.5"), "/a~1b/0x1/-1/1.5");
        assert_eq!(normalize_path(""), "");
        assert_eq!(normalize_path("/"), "/", "the empty key stays");
        assert_eq!(normalize_path("/0"), "/*");
    }

    #[test]
    fn learns_paths_once_per_comparison_and_failures_teach_nothing() {
        let mut m = NoiseModel::new(NoiseLimits::default());
        m.learn(&compared("a", "a", &["/request_id", "/timestamp"]));
        // Three elements of one array are one path, counted once for the comparison.
        m.learn(&compared(
            "a",
            "a",
            &[
                "/request_id",
                "/meta/0/jitter",
                "/meta/1/jitter",
                "/meta/2/jitter",
            ],
        ));
        m.learn(&compared("a", "a", &[]));
        m.learn(&failed());
        m.baseline_failed();
        let s = m.summary(usize::MAX);
        assert_eq!((s.baseline_compared, s.baseline_failed), (3, 2));
        let got: Vec<(&str, u64)> = s
            .noisy_paths
            .iter()
            .map(|p| (p.path.as_str(), p.comparisons))
            .collect();
        // Most first, then by path.
        assert_eq!(
            got,
            vec![("/request_id", 2), ("/meta/*/jitter", 1), ("/timestamp", 1)]
        );
        assert_eq!(s.noisy_paths[0].ratio, 2.0 / 3.0);
        assert_eq!(s.distinct_paths, 3);
        assert_eq!(s.baseline_discrepancies["body"], 2);
        // Three labelled comparisons, no flip: 0/3, Wilson [0, 0.5615].
        assert_eq!(s.label_flips, Proportion::new(0, 3));
        let rate = s.label_flip_rate.unwrap();
        assert_eq!(rate.value, 0.0);
        assert_eq!(rate.interval, wilson95(0, 3));
        // Top 1 of 3.
        assert_eq!(m.summary(1).noisy_paths.len(), 1);
        assert_eq!(m.summary(1).distinct_paths, 3);
    }

    #[test]
    fn a_comparison_is_noise_only_when_every_path_is_known_noisy() {
        let mut m = NoiseModel::new(NoiseLimits::default());
        m.learn(&compared("a", "a", &["/request_id", "/meta/jitter"]));
        // Only known paths.
        let v = m.judge(&compared("a", "a", &["/request_id"]));
        assert!(v.noise);
        assert_eq!(v.noisy_paths, paths(&["/request_id"]));
        assert!(v.real_paths.is_empty());
        // A known path and a real one: not noise, the split names both.
        let v = m.judge(&compared(
            "a",
            "a",
            &["/request_id", "/outputs/0/data/1", "/outputs/0/data/2"],
        ));
        assert!(!v.noise);
        assert_eq!(v.noisy_paths, paths(&["/request_id"]));
        assert_eq!(v.real_paths, paths(&["/outputs/*/data/*"]));
        // Exact match only: neither a parent nor a child of a noisy path is explained.
        assert!(!m.classify(&compared("a", "a", &["/meta"])).noise);
        assert!(!m.classify(&compared("a", "a", &["/meta/jitter/x"])).noise);
        // No discrepancy, no noise (and nothing counted).
        let v = m.judge(&compared("a", "a", &[]));
        assert_eq!(v, NoiseVerdict::default());
        let s = m.summary(10);
        assert_eq!(s.shadow, NoiseSplit { noise: 1, real: 1 });
        assert_eq!(s.shadow_by_kind["body"], NoiseSplit { noise: 1, real: 0 });
        assert_eq!(
            s.shadow_by_kind["prediction"],
            NoiseSplit { noise: 0, real: 1 }
        );
    }

    #[test]
    fn a_label_disagreement_is_noise_only_once_production_flipped_against_the_baseline() {
        let mut m = NoiseModel::new(NoiseLimits::default());
        // The baseline's scores jitter without changing the label.
        m.learn(&compared("a", "a", &["/outputs/0/data/0"]));
        let shadow = compared("a", "b", &["/outputs/0/data/0"]);
        let v = m.judge(&shadow);
        assert!(!v.noise, "no flip seen: a label disagreement is real");
        assert_eq!(v.noisy_paths, paths(&["/outputs/*/data/*"]));
        // Now production flips once in four labelled comparisons.
        m.learn(&compared("a", "b", &["/outputs/0/data/0"]));
        m.learn(&compared("a", "a", &[]));
        m.learn(&compared("a", "a", &[]));
        assert!(m.labels_flip());
        assert!(m.judge(&shadow).noise);
        // A flip does not excuse a path the baseline never differed at.
        assert!(
            !m.classify(&compared("a", "b", &["/outputs/0/data/0", "/extra"]))
                .noise
        );
        let s = m.summary(10);
        assert_eq!(s.label_flips, Proportion::new(1, 4));
        let rate = s.label_flip_rate.unwrap();
        assert_eq!(rate.value, 0.25);
        assert_eq!(rate.interval, wilson95(1, 4));
        assert_eq!(s.baseline_discrepancies["label"], 1);
        assert_eq!(s.shadow_by_kind["label"], NoiseSplit { noise: 1, real: 1 });
    }

    #[test]
    fn status_and_missing_predictions_are_never_noise() {
        let mut m = NoiseModel::new(NoiseLimits::default());
        let mut flaky = compared("a", "a", &["/error"]);
        flaky.shadow.status = Some(503);
        flaky.discrepancies = vec![DiscrepancyKind::Status, DiscrepancyKind::Body];
        m.learn(&flaky);
        assert!(m.is_noisy("/error"));
        // The shadow fails the same way: still a real discrepancy.
        let v = m.judge(&flaky);
        assert!(!v.noise);
        assert_eq!(v.noisy_paths, paths(&["/error"]));
        let mut missing = compared("a", "a", &["/error"]);
        missing.shadow.prediction = None;
        missing.discrepancies = vec![DiscrepancyKind::Body, DiscrepancyKind::MissingPrediction];
        assert!(!m.judge(&missing).noise);
        let s = m.summary(10);
        assert_eq!(s.shadow, NoiseSplit { noise: 0, real: 2 });
        assert_eq!(s.shadow_by_kind["status"], NoiseSplit { noise: 0, real: 1 });
        assert_eq!(s.shadow_by_kind["body"], NoiseSplit { noise: 0, real: 2 });
        assert_eq!(s.baseline_discrepancies["status"], 1);
    }

    #[test]
    fn an_unlocated_difference_is_noise_only_through_the_opaque_body_path() {
        let mut m = NoiseModel::new(NoiseLimits::default());
        // A prediction difference without any diff (the prediction's paths are ignored).
        let mut unlocated = compared("a", "a", &[]);
        unlocated.body_equal = Some(true);
        unlocated.discrepancies = vec![DiscrepancyKind::Prediction];
        m.learn(&unlocated);
        assert!(!m.classify(&unlocated).noise);
        // Text bodies that differ: the one path `(body)`, learned and then explained.
        let mut text = compared("a", "a", &[]);
        text.body_equal = Some(false);
        text.discrepancies = vec![DiscrepancyKind::Body];
        assert!(!m.classify(&text).noise);
        m.learn(&text);
        let v = m.classify(&text);
        assert!(v.noise);
        assert_eq!(v.noisy_paths, paths(&[OPAQUE_BODY]));
    }

    #[test]
    fn a_diff_list_cut_at_max_diffs_is_never_entirely_noise() {
        let mut m = NoiseModel::new(NoiseLimits {
            max_paths: 16,
            max_diffs: 2,
        });
        m.learn(&compared("a", "a", &["/a", "/b"]));
        assert!(m.classify(&compared("a", "a", &["/a"])).noise);
        let cut = m.classify(&compared("a", "a", &["/a", "/b"]));
        assert!(!cut.noise, "a third, unseen diff could be real");
        assert_eq!(cut.noisy_paths, paths(&["/a", "/b"]));
    }

    #[test]
    fn paths_past_the_cap_are_counted_as_other_and_explain_nothing() {
        let mut m = NoiseModel::new(NoiseLimits {
            max_paths: 2,
            max_diffs: 0,
        });
        m.learn(&compared("a", "a", &["/a", "/b", "/c"]));
        m.learn(&compared("a", "a", &["/d"]));
        m.learn(&compared("a", "a", &["/a"]));
        let long = format!("/{}", "x".repeat(MAX_PATH_BYTES));
        m.learn(&compared("a", "a", &[long.as_str()]));
        // BTreeSet order: /a and /b fill the cap; /c, /d and the long path go to (other).
        assert!(m.is_noisy("/a") && m.is_noisy("/b"));
        assert!(!m.is_noisy("/c") && !m.is_noisy("/d") && !m.is_noisy(&long));
        assert!(!m.classify(&compared("a", "a", &["/c"])).noise);
        let s = m.summary(usize::MAX);
        let got: Vec<(&str, u64)> = s
            .noisy_paths
            .iter()
            .map(|p| (p.path.as_str(), p.comparisons))
            .collect();
        assert_eq!(got, vec![("/a", 2), ("/b", 1), (OTHER_PATHS, 3)]);
        assert_eq!(s.distinct_paths, 2);
    }

    #[test]
    fn the_summary_round_trips_through_json() {
        let mut m = NoiseModel::new(NoiseLimits::default());
        m.learn(&compared("a", "b", &["/outputs/0/data/0", "/id"]));
        m.judge(&compared("a", "b", &["/outputs/0/data/1"]));
        let s = m.summary(10);
        let text = serde_json::to_string(&s).unwrap();
        let back: NoiseSummary = serde_json::from_str(&text).unwrap();
        // Floats compared apart: a decimal round trip may move the last bit.
        let (rate, back_rate) = (s.label_flip_rate.unwrap(), back.label_flip_rate.unwrap());
        assert_eq!(back_rate.value, rate.value);
        let (i, j) = (rate.interval.unwrap(), back_rate.interval.unwrap());
        assert!((i.lo - j.lo).abs() < 1e-12 && (i.hi - j.hi).abs() < 1e-12);
        let without_rate = |s: &NoiseSummary| NoiseSummary {
            label_flip_rate: None,
            ..s.clone()
        };
        assert_eq!(without_rate(&back), without_rate(&s));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["label_flips"], json!({"successes": 1, "trials": 1}));
        assert_eq!(v["shadow_by_kind"]["label"], json!({"noise": 1, "real": 0}));
        assert_eq!(v["noisy_paths"][0]["path"], "/id");
    }
}
