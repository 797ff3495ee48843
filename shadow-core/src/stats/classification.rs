//! A streaming confusion matrix over string labels, with accuracy and per-class / macro
//! precision, recall and F1.
//!
//! Memory is bounded by a cap on distinct classes: once `max_classes` labels are known, any new
//! label (true or predicted) is counted as the class [`OTHER`]. The matrix is kept dense
//! (`classes²` counters) so an update is two hash lookups and an increment.
//!
//! Undefined ratios are `None`, never 0: precision of a class never predicted, recall of a
//! class never true, F1 of a class neither true nor predicted, accuracy of an empty matrix.
//! F1 is computed as `2·tp / (2·tp + fp + fn)`, so a class that is true but never predicted has
//! F1 = 0 (its recall is 0), like scikit-learn's. Macro averages are the unweighted means over
//! the classes where the per-class value is defined, and `None` if there is none.

use super::proportion::{Estimate, Interval, Proportion, Z_95};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The class that labels beyond the cardinality cap are counted as.
pub const OTHER: &str = "(other)";

/// Default cap on distinct classes (before [`OTHER`]).
pub const DEFAULT_MAX_CLASSES: usize = 64;

/// The running confusion matrix: rows are true labels, columns predicted labels. A label that
/// is literally `"(other)"` is counted as [`OTHER`].
///
/// Serialises as its class names and counts; deserialising checks their shape.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "MatrixState", into = "MatrixState")]
pub struct ConfusionMatrix {
    max_classes: usize,
    /// Class names in the order they were first seen.
    classes: Vec<String>,
    index: HashMap<String, usize>,
    /// `counts[truth][predicted]`, square, `classes.len()` wide.
    counts: Vec<Vec<u64>>,
    total: u64,
    correct: u64,
}

impl Default for ConfusionMatrix {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_CLASSES)
    }
}

/// Scores of one class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    /// True labels of this class (tp + fn).
    pub support: u64,
    /// Predictions of this class (tp + fp).
    pub predicted: u64,
    /// tp / (tp + fp) with its 95 % Wilson interval; `None` if never predicted.
    pub precision: Option<Estimate>,
    /// tp / (tp + fn) with its 95 % Wilson interval; `None` if never true.
    pub recall: Option<Estimate>,
    /// 2·tp / (2·tp + fp + fn); `None` if neither true nor predicted.
    pub f1: Option<f64>,
}

/// A snapshot of every score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    /// Labeled predictions counted.
    pub total: u64,
    /// Correct / total with its 95 % Wilson interval; `None` before the first.
    pub accuracy: Option<Estimate>,
    /// Scores per class (including [`OTHER`] if used).
    pub per_class: BTreeMap<String, ClassScores>,
    /// Mean precision over classes where it is defined.
    pub macro_precision: Option<f64>,
    /// Mean recall over classes where it is defined.
    pub macro_recall: Option<f64>,
    /// Mean F1 over classes where it is defined, with a 95 % delta-method interval (see
    /// [`ConfusionMatrix::macro_f1`]).
    pub macro_f1: Option<Estimate>,
}

impl ConfusionMatrix {
    /// An empty matrix tracking at most `max_classes` named classes (at least 1).
    pub fn new(max_classes: usize) -> Self {
        Self {
            max_classes: max_classes.max(1),
            classes: Vec::new(),
            index: HashMap::new(),
            counts: Vec::new(),
            total: 0,
            correct: 0,
        }
    }

    /// Counts one prediction against its true label.
    pub fn record(&mut self, truth: &str, predicted: &str) {
        let t = self.class_index(truth);
        let p = self.class_index(predicted);
        if let Some(cell) = self.counts.get_mut(t).and_then(|row| row.get_mut(p)) {
            *cell = cell.saturating_add(1);
        }
        self.total = self.total.saturating_add(1);
        self.correct = self.correct.saturating_add(u64::from(t == p));
    }

    /// Labeled predictions counted.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Correct predictions as a proportion of all.
    pub fn correct(&self) -> Proportion {
        Proportion::new(self.correct, self.total)
    }

    /// The count for a (true, predicted) pair of class names (0 for unknown names).
    pub fn count(&self, truth: &str, predicted: &str) -> u64 {
        match (self.lookup(truth), self.lookup(predicted)) {
            (Some(t), Some(p)) => self.counts[t][p],
            _ => 0,
        }
    }

    /// Class names in first-seen order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Scores of every class and their macro averages.
    pub fn report(&self) -> ClassificationReport {
        let mut per_class = BTreeMap::new();
        for (k, name) in self.classes.iter().enumerate() {
            per_class.insert(name.clone(), self.class_scores(k));
        }
        let mean = |values: Vec<f64>| {
            (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
        };
        let scores = per_class.values();
        ClassificationReport {
            total: self.total,
            accuracy: self.correct().estimate(),
            macro_precision: mean(
                scores
                    .clone()
                    .filter_map(|s| Some(s.precision?.value))
                    .collect(),
            ),
            macro_recall: mean(
                scores
                    .clone()
                    .filter_map(|s| Some(s.recall?.value))
                    .collect(),
            ),
            macro_f1: self.macro_f1(Z_95),
            per_class,
        }
    }

    /// Macro F1 with a delta-method (Wald) interval at normal quantile `z`, following
    /// Takahashi et al., "Confidence interval for micro-averaged F1 and macro-averaged F1
    /// scores", Applied Intelligence 52:4961–4972 (2022): with cell proportions `p_ij` of the
    /// multinomial matrix and `g_ij = ∂ macroF1 / ∂ p_ij`, Var = (Σ g² p − (Σ g p)²) / n. The
    /// interval is clamped to [0, 1]; it is asymptotic, so treat it with care below a few
    /// hundred samples. `None` when no class has a defined F1.
    pub fn macro_f1(&self, z: f64) -> Option<Estimate> {
        let r = self.classes.len();
        let n = self.total as f64;
        if n == 0.0 {
            return None;
        }
        let p = |i: usize, j: usize| self.counts[i][j] as f64 / n;
        // S_k = p_k· + p_·k; classes with S_k = 0 have no F1 and are not in the average.
        let s: Vec<f64> = (0..r)
            .map(|k| (0..r).map(|j| p(k, j) + p(j, k)).sum::<f64>())
            .collect();
        let defined: Vec<usize> = (0..r).filter(|&k| s[k] > 0.0).collect();
        if defined.is_empty() {
            return None;
        }
        let m = defined.len() as f64;
        let value = defined.iter().map(|&k| 2.0 * p(k, k) / s[k]).sum::<f64>() / m;
        // ∂F1_k/∂p_kk = 2/S_k − 4 p_kk/S_k²; ∂F1_k/∂p_kj = ∂F1_k/∂p_jk = −2 p_kk/S_k² (j ≠ k).
        let off = |k: usize| {
            if s[k] > 0.0 {
                -2.0 * p(k, k) / (s[k] * s[k])
            } else {
                0.0
            }
        };
        let (mut sum_g2p, mut sum_gp) = (0.0, 0.0);
        for (i, row) in self.counts.iter().enumerate() {
            for (j, &count) in row.iter().enumerate() {
                if count == 0 {
                    continue;
                }
                let pij = count as f64 / n;
                let g = if i == j {
                    2.0 / s[i] - 4.0 * p(i, i) / (s[i] * s[i])
                } else {
                    off(i) + off(j)
                } / m;
                sum_g2p += g * g * pij;
                sum_gp += g * pij;
            }
        }
        let var = ((sum_g2p - sum_gp * sum_gp) / n).max(0.0);
        let half = if z.is_finite() && z >= 0.0 {
            z * var.sqrt()
        } else {
            f64::NAN
        };
        let interval = half.is_finite().then(|| Interval {
            lo: (value - half).clamp(0.0, value),
            hi: (value + half).clamp(value, 1.0),
        });
        Some(Estimate { value, interval })
    }

    fn class_scores(&self, k: usize) -> ClassScores {
        let tp = self.counts[k][k];
        let support = self.counts[k]
            .iter()
            .fold(0u64, |a, &c| a.saturating_add(c));
        let predicted = self
            .counts
            .iter()
            .fold(0u64, |a, row| a.saturating_add(row[k]));
        let (fp, fn_) = (predicted.saturating_sub(tp), support.saturating_sub(tp));
        let denom = 2.0 * tp as f64 + fp as f64 + fn_ as f64;
        ClassScores {
            support,
            predicted,
            precision: Proportion::new(tp, predicted).estimate(),
            recall: Proportion::new(tp, support).estimate(),
            f1: (denom > 0.0).then(|| 2.0 * tp as f64 / denom),
        }
    }

    fn lookup(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    fn class_index(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let named = self.classes.len() - usize::from(self.index.contains_key(OTHER));
        let name = if named < self.max_classes && name != OTHER {
            name
        } else {
            OTHER
        };
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.classes.len();
        self.classes.push(name.to_owned());
        self.index.insert(name.to_owned(), i);
        for row in &mut self.counts {
            row.push(0);
        }
        self.counts.push(vec![0; i + 1]);
        i
    }
}

/// The serialised form of a [`ConfusionMatrix`].
#[derive(Clone, Debug, Serialize, Deserialize)]
struct MatrixState {
    max_classes: usize,
    classes: Vec<String>,
    counts: Vec<Vec<u64>>,
}

impl From<ConfusionMatrix> for MatrixState {
    fn from(m: ConfusionMatrix) -> Self {
        Self {
            max_classes: m.max_classes,
            classes: m.classes,
            counts: m.counts,
        }
    }
}

impl TryFrom<MatrixState> for ConfusionMatrix {
    type Error = String;

    fn try_from(s: MatrixState) -> Result<Self, String> {
        let r = s.classes.len();
        if s.counts.len() != r || s.counts.iter().any(|row| row.len() != r) {
            return Err(format!(
                "confusion matrix: counts must be {r}×{r}, one row per class"
            ));
        }
        if r > s.max_classes.max(1) + 1 {
            return Err(format!(
                "confusion matrix: {r} classes exceed the cap {}",
                s.max_classes
            ));
        }
        let index: HashMap<String, usize> = s
            .classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i))
            .collect();
        if index.len() != r {
            return Err("confusion matrix: class names must be distinct".to_owned());
        }
        let total = s
            .counts
            .iter()
            .flatten()
            .fold(0u64, |a, &c| a.saturating_add(c));
        let correct = (0..r).fold(0u64, |a, k| a.saturating_add(s.counts[k][k]));
        Ok(Self {
            max_classes: s.max_classes.max(1),
            classes: s.classes,
            index,
            counts: s.counts,
            total,
            correct,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::proportion::wilson95;
    use proptest::prelude::*;

    /// truth → predicted: cat→cat ×5, cat→dog ×1, dog→dog ×3, dog→cat ×2, bird→cat ×1.
    fn pets() -> ConfusionMatrix {
        let mut m = ConfusionMatrix::new(8);
        for (t, p, n) in [
            ("cat", "cat", 5),
            ("cat", "dog", 1),
            ("dog", "dog", 3),
            ("dog", "cat", 2),
            ("bird", "cat", 1),
        ] {
            for _ in 0..n {
                m.record(t, p);
            }
        }
        m
    }

    fn near(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn hand_worked_scores() {
        let r = pets().report();
        // 12 predictions, 5 + 3 correct → 8/12.
        assert_eq!(r.total, 12);
        let acc = r.accuracy.unwrap();
        assert!(near(acc.value, 8.0 / 12.0));
        assert_eq!(acc.interval, wilson95(8, 12));
        // cat: tp 5, predicted 5 + 2 + 1 = 8, support 6 → P 5/8, R 5/6, F1 10/(10 + 3 + 1).
        let cat = &r.per_class["cat"];
        assert_eq!((cat.support, cat.predicted), (6, 8));
        assert!(near(cat.precision.unwrap().value, 0.625));
        assert_eq!(cat.precision.unwrap().interval, wilson95(5, 8));
        assert!(near(cat.recall.unwrap().value, 5.0 / 6.0));
        assert!(near(cat.f1.unwrap(), 10.0 / 14.0));
        // dog: tp 3, predicted 4, support 5 → P 3/4, R 3/5, F1 6/(6 + 1 + 2).
        let dog = &r.per_class["dog"];
        assert!(near(dog.precision.unwrap().value, 0.75));
        assert!(near(dog.recall.unwrap().value, 0.6));
        assert!(near(dog.f1.unwrap(), 6.0 / 9.0));
        // bird: never predicted → precision undefined (None, not 0); recall 0/1; F1 0/(0+0+1) = 0.
        let bird = &r.per_class["bird"];
        assert_eq!(bird.precision, None);
        assert_eq!(bird.recall.unwrap().value, 0.0);
        assert_eq!(bird.f1, Some(0.0));
        // Macro: precision over cat, dog (bird undefined) = (0.625 + 0.75)/2 = 0.6875;
        // recall (5/6 + 0.6 + 0)/3 = 0.477778; F1 (10/14 + 6/9 + 0)/3 = 0.460317.
        assert!(near(r.macro_precision.unwrap(), 0.6875));
        assert!(near(r.macro_recall.unwrap(), (5.0 / 6.0 + 0.6) / 3.0));
        let f1 = r.macro_f1.unwrap();
        assert!(near(f1.value, (10.0 / 14.0 + 6.0 / 9.0) / 3.0));
        // Delta-method interval, cross-checked with a numerical gradient of macro-F1 over the
        // cell proportions in numpy: Var = 0.00825997, → 0.460317 ± 1.96·0.090885
        // = (0.282187, 0.638448).
        let i = f1.interval.unwrap();
        assert!(
            (i.lo - 0.282_187).abs() < 1e-5 && (i.hi - 0.638_448).abs() < 1e-5,
            "{i:?}"
        );
    }

    #[test]
    fn empty_matrix_has_no_scores() {
        let r = ConfusionMatrix::default().report();
        assert_eq!(r.accuracy, None);
        assert_eq!(r.macro_precision, None);
        assert_eq!(r.macro_recall, None);
        assert_eq!(r.macro_f1, None);
        assert!(r.per_class.is_empty());
    }

    #[test]
    fn perfect_predictions_have_a_zero_width_f1_interval() {
        let mut m = ConfusionMatrix::default();
        for l in ["a", "b", "a", "c"] {
            m.record(l, l);
        }
        let f1 = m.macro_f1(Z_95).unwrap();
        assert_eq!(f1.value, 1.0);
        assert_eq!(f1.interval, Some(Interval { lo: 1.0, hi: 1.0 }));
    }

    #[test]
    fn classes_beyond_the_cap_go_to_other() {
        let mut m = ConfusionMatrix::new(2);
        m.record("a", "a");
        m.record("b", "c"); // "c" is the third class → (other)
        m.record("d", "e"); // both beyond the cap
        assert_eq!(m.classes(), ["a", "b", OTHER]);
        assert_eq!(m.count("b", OTHER), 1);
        assert_eq!(m.count(OTHER, OTHER), 1);
        assert_eq!(m.correct(), Proportion::new(2, 3));
        for i in 0..1000 {
            m.record(&format!("t{i}"), &format!("p{i}"));
        }
        assert_eq!(m.classes().len(), 3);
        assert_eq!(m.total(), 1003);
    }

    #[test]
    fn serde_round_trip_and_rejects_bad_shapes() {
        let m = pets();
        let json = serde_json::to_string(&m).unwrap();
        let back: ConfusionMatrix = serde_json::from_str(&json).unwrap();
        assert_eq!(back.report(), m.report());
        let bad = r#"{"max_classes":4,"classes":["a","b"],"counts":[[1,2],[3]]}"#;
        assert!(serde_json::from_str::<ConfusionMatrix>(bad).is_err());
        let dup = r#"{"max_classes":4,"classes":["a","a"],"counts":[[1,2],[3,4]]}"#;
        assert!(serde_json::from_str::<ConfusionMatrix>(dup).is_err());
    }

    proptest! {
        #[test]
        fn every_score_is_a_proportion(pairs in proptest::collection::vec((0u8..6, 0u8..6), 0..300), cap in 1usize..5) {
            let mut m = ConfusionMatrix::new(cap);
            for (t, p) in &pairs {
                m.record(&t.to_string(), &p.to_string());
            }
            prop_assert!(m.classes().len() <= cap + 1);
            let r = m.report();
            prop_assert_eq!(r.total, pairs.len() as u64);
            let in_unit = |e: &Estimate| {
                let i = e.interval.unwrap();
                (0.0..=1.0).contains(&e.value) && 0.0 <= i.lo && i.lo <= e.value && e.value <= i.hi && i.hi <= 1.0
            };
            if let Some(a) = &r.accuracy { prop_assert!(in_unit(a)); }
            if let Some(f) = &r.macro_f1 { prop_assert!(in_unit(f), "{:?}", f); }
            for s in r.per_class.values() {
                if let Some(p) = &s.precision { prop_assert!(in_unit(p)); }
                if let Some(p) = &s.recall { prop_assert!(in_unit(p)); }
                if let Some(f) = s.f1 { prop_assert!((0.0..=1.0).contains(&f)); }
            }
        }
    }
}
