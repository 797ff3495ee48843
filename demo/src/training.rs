//! Start-up training: load the data, split it, train one model and measure it.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::dataset::{Split, WineData};
use crate::eval::{accuracy, majority_class};
use crate::model::{Model, ModelKind, TrainError};

/// What training measured; printed by `demo-model` at start.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// `"v1"` or `"v2"`.
    pub model_version: &'static str,
    /// Algorithm description.
    pub algorithm: &'static str,
    /// Split seed.
    pub seed: u64,
    /// Rows trained on.
    pub train_rows: usize,
    /// Rows held out.
    pub held_out_rows: usize,
    /// Accuracy on the training rows.
    pub train_accuracy: f64,
    /// Accuracy on the held-out rows.
    pub held_out_accuracy: f64,
    /// Held-out accuracy of always answering the training set's most frequent class.
    pub majority_baseline: f64,
    /// Wall time to load, split, train and evaluate.
    #[serde(rename = "elapsed_ms", serialize_with = "as_millis")]
    pub elapsed: Duration,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

/// A model trained on the demo split, with the data it came from.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The full dataset.
    pub data: WineData,
    /// The deterministic split used for training.
    pub split: Split,
    /// The trained model.
    pub model: Model,
    /// Measurements.
    pub report: TrainReport,
}

/// Loads the embedded wine data, splits it with `seed` and trains `kind` on the training rows.
pub fn train_demo_model(kind: ModelKind, seed: u64) -> Result<Trained, TrainError> {
    let started = Instant::now();
    let data = WineData::load();
    let split = Split::stratified(data.labels.view(), seed);
    let x_train = data.features_of(&split.train);
    let y_train = data.labels_of(&split.train);
    let model = Model::train(kind, x_train.view(), y_train.view(), &data.classes)?;

    let train_truth = y_train.to_vec();
    let held_truth = data.labels_of(&split.held_out).to_vec();
    let train_pred = model.predict(x_train.view());
    let held_pred = model.predict(data.features_of(&split.held_out).view());
    let majority = majority_class(&train_truth).unwrap_or_default();
    let baseline = vec![majority; held_truth.len()];

    let report = TrainReport {
        model_version: kind.version(),
        algorithm: kind.algorithm(),
        seed,
        train_rows: split.train.len(),
        held_out_rows: split.held_out.len(),
        train_accuracy: accuracy(&train_pred, &train_truth),
        held_out_accuracy: accuracy(&held_pred, &held_truth),
        majority_baseline: accuracy(&baseline, &held_truth),
        elapsed: started.elapsed(),
    };
    Ok(Trained {
        data,
        split,
        model,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::DEFAULT_SEED;
    use crate::eval::agreement;

    #[test]
    fn both_models_beat_majority_baseline_and_disagree_sometimes() {
        let v1 = train_demo_model(ModelKind::V1, DEFAULT_SEED).unwrap();
        let v2 = train_demo_model(ModelKind::V2, DEFAULT_SEED).unwrap();
        assert_eq!(v1.split, v2.split);
        let (r1, r2) = (&v1.report, &v2.report);
        let held = v1.data.features_of(&v1.split.held_out);
        let p1 = v1.model.predict(held.view());
        let p2 = v2.model.predict(held.view());
        let agree = agreement(&p1, &p2);
        eprintln!(
            "held-out rows {}: baseline {:.3}, v1 {:.3} (train {:.3}), v2 {:.3} (train {:.3}), \
             v1/v2 agreement {:.3}",
            r1.held_out_rows,
            r1.majority_baseline,
            r1.held_out_accuracy,
            r1.train_accuracy,
            r2.held_out_accuracy,
            r2.train_accuracy,
            agree
        );
        // Majority class (quality 5) is ~43% of the wines.
        assert!((0.38..0.48).contains(&r1.majority_baseline));
        assert!(r1.held_out_accuracy > r1.majority_baseline + 0.10);
        assert!(r2.held_out_accuracy > r2.majority_baseline + 0.05);
        assert!(
            (0.60..0.99).contains(&agree),
            "v1/v2 agreement {agree} outside 60-99%"
        );
    }

    #[test]
    fn training_is_deterministic() {
        let a = train_demo_model(ModelKind::V1, 3).unwrap();
        let b = train_demo_model(ModelKind::V1, 3).unwrap();
        let held = a.data.features_of(&a.split.held_out);
        assert_eq!(
            a.model.predict_proba(held.view()),
            b.model.predict_proba(held.view())
        );
    }
}
