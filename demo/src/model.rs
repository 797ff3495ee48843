//! The two demo classifiers: v1 (production) and v2 (shadow).
//!
//! - **v1**: multinomial logistic regression (`linfa-logistic`, L-BFGS) on standardised features.
//! - **v2**: Gaussian naive Bayes (`linfa-bayes`) on the raw features.
//!
//! They are genuinely different models (discriminative vs generative, different feature scaling),
//! so on the held-out wines they agree on most rows but not all.

use std::fmt;
use std::str::FromStr;

use linfa::Dataset;
use linfa::prelude::*;
use linfa_bayes::{GaussianNb, NaiveBayes};
use linfa_logistic::{MultiFittedLogisticRegression, MultiLogisticRegression};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

/// Which demo model to train and serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// Production: multinomial logistic regression.
    V1,
    /// Shadow: Gaussian naive Bayes.
    V2,
}

impl ModelKind {
    /// Version string used in URLs and responses (`"v1"` / `"v2"`).
    pub fn version(self) -> &'static str {
        match self {
            ModelKind::V1 => "v1",
            ModelKind::V2 => "v2",
        }
    }

    /// OIP `platform` string of the metadata answer.
    pub fn platform(self) -> &'static str {
        match self {
            ModelKind::V1 => "linfa_logistic",
            ModelKind::V2 => "linfa_bayes",
        }
    }

    /// Human-readable algorithm name.
    pub fn algorithm(self) -> &'static str {
        match self {
            ModelKind::V1 => "multinomial logistic regression (standardised features, L2 alpha=1)",
            ModelKind::V2 => "gaussian naive bayes",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.version())
    }
}

impl FromStr for ModelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v1" => Ok(ModelKind::V1),
            "v2" => Ok(ModelKind::V2),
            other => Err(format!("unknown model {other:?}: expected v1 or v2")),
        }
    }
}

/// Training failed (bad data or the optimiser gave up).
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// `linfa-logistic` rejected the data or did not converge.
    #[error("training logistic regression (v1): {0}")]
    Logistic(#[from] linfa_logistic::error::Error),
    /// `linfa-bayes` rejected the data.
    #[error("training gaussian naive bayes (v2): {0}")]
    NaiveBayes(#[from] linfa_bayes::NaiveBayesError),
    /// No training rows.
    #[error("no training rows")]
    Empty,
}

/// Per-column standardisation learned on the training rows.
#[derive(Debug, Clone)]
struct Standardizer {
    mean: Array1<f64>,
    std: Array1<f64>,
}

impl Standardizer {
    fn fit(x: ArrayView2<'_, f64>) -> Self {
        let mean = x
            .mean_axis(Axis(0))
            .unwrap_or_else(|| Array1::zeros(x.ncols()));
        let std = x
            .std_axis(Axis(0), 0.0)
            .mapv(|s| if s > 0.0 && s.is_finite() { s } else { 1.0 });
        Self { mean, std }
    }

    fn transform(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        (&x - &self.mean) / &self.std
    }
}

#[derive(Debug, Clone)]
enum Inner {
    Logistic {
        scaler: Standardizer,
        fitted: MultiFittedLogisticRegression<f64, usize>,
    },
    NaiveBayes(GaussianNb<f64, usize>),
}

/// A trained classifier whose probability columns follow a fixed class list.
#[derive(Debug, Clone)]
pub struct Model {
    kind: ModelKind,
    classes: Vec<usize>,
    inner: Inner,
}

impl Model {
    /// Trains `kind` on `x` / `y`. `classes` fixes the probability columns (a class the
    /// training rows lack gets probability 0).
    pub fn train(
        kind: ModelKind,
        x: ArrayView2<'_, f64>,
        y: ArrayView1<'_, usize>,
        classes: &[usize],
    ) -> Result<Self, TrainError> {
        if x.nrows() == 0 {
            return Err(TrainError::Empty);
        }
        let inner = match kind {
            ModelKind::V1 => {
                let scaler = Standardizer::fit(x);
                let ds = Dataset::new(scaler.transform(x), y.to_owned());
                let fitted = MultiLogisticRegression::default()
                    .max_iterations(100)
                    .fit(&ds)?;
                Inner::Logistic { scaler, fitted }
            }
            ModelKind::V2 => {
                let ds = Dataset::new(x.to_owned(), y.to_owned());
                Inner::NaiveBayes(GaussianNb::params().fit(&ds)?)
            }
        };
        Ok(Self {
            kind,
            classes: classes.to_vec(),
            inner,
        })
    }

    /// Which model this is.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// Class labels, in the order of the probability columns.
    pub fn classes(&self) -> &[usize] {
        &self.classes
    }

    /// Class probabilities, `rows x classes().len()`; every row sums to 1.
    /// Rows the model cannot score (non-finite arithmetic) get a uniform distribution.
    pub fn predict_proba(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let (probs, model_classes): (Array2<f64>, Vec<usize>) = match &self.inner {
            Inner::Logistic { scaler, fitted } => (
                fitted.predict_probabilities(&scaler.transform(x)),
                fitted.classes().to_vec(),
            ),
            Inner::NaiveBayes(nb) => {
                let (p, classes) = nb.predict_proba(x);
                (p, classes.into_iter().copied().collect())
            }
        };
        let mut out = Array2::zeros((x.nrows(), self.classes.len()));
        for (j, class) in model_classes.iter().enumerate() {
            if let Some(k) = self.classes.iter().position(|c| c == class) {
                out.column_mut(k).assign(&probs.column(j));
            }
        }
        let uniform = 1.0 / self.classes.len().max(1) as f64;
        for mut row in out.rows_mut() {
            let sum: f64 = row.sum();
            if sum.is_finite() && sum > 0.0 && row.iter().all(|p| p.is_finite()) {
                row.mapv_inplace(|p| p / sum);
            } else {
                row.fill(uniform);
            }
        }
        out
    }

    /// Predicted label per row: the class of the highest probability (first one on ties).
    pub fn predict(&self, x: ArrayView2<'_, f64>) -> Vec<usize> {
        labels_from_proba(&self.predict_proba(x).view(), &self.classes)
    }
}

/// Argmax of each probability row mapped to its class label (first maximum on ties).
pub fn labels_from_proba(probs: &ArrayView2<'_, f64>, classes: &[usize]) -> Vec<usize> {
    probs
        .rows()
        .into_iter()
        .map(|row| {
            let mut best = 0;
            for (j, &p) in row.iter().enumerate() {
                if p > row[best] {
                    best = j;
                }
            }
            classes[best]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn kind_round_trips() {
        for k in [ModelKind::V1, ModelKind::V2] {
            assert_eq!(k.version().parse::<ModelKind>().unwrap(), k);
        }
        assert!("v3".parse::<ModelKind>().is_err());
    }

    #[test]
    fn toy_problem_is_learned_by_both_models() {
        let x = array![
            [0.0, 0.1],
            [0.2, 0.0],
            [0.1, 0.2],
            [5.0, 5.1],
            [5.2, 4.9],
            [4.8, 5.0]
        ];
        let y = array![1usize, 1, 1, 2, 2, 2];
        // Class 9 never appears in training: it must get probability 0.
        let classes = [1, 2, 9];
        for kind in [ModelKind::V1, ModelKind::V2] {
            let m = Model::train(kind, x.view(), y.view(), &classes).unwrap();
            let p = m.predict_proba(array![[0.0, 0.0], [5.0, 5.0]].view());
            assert_eq!(p.dim(), (2, 3));
            for row in p.rows() {
                assert!((row.sum() - 1.0).abs() < 1e-9);
                assert_eq!(row[2], 0.0);
            }
            assert_eq!(m.predict(array![[0.0, 0.0], [5.0, 5.0]].view()), vec![1, 2]);
        }
    }

    #[test]
    fn extreme_inputs_still_give_a_distribution() {
        let x = array![[0.0], [1.0], [10.0], [11.0]];
        let y = array![0usize, 0, 1, 1];
        for kind in [ModelKind::V1, ModelKind::V2] {
            let m = Model::train(kind, x.view(), y.view(), &[0, 1]).unwrap();
            let p = m.predict_proba(array![[1e308], [-1e308]].view());
            for row in p.rows() {
                assert!(row.iter().all(|v| v.is_finite()));
                assert!((row.sum() - 1.0).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn argmax_takes_first_on_ties() {
        let p = array![[0.5, 0.5], [0.2, 0.8]];
        assert_eq!(labels_from_proba(&p.view(), &[3, 4]), vec![3, 4]);
    }
}
