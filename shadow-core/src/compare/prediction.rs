//! Prediction extraction from a response body, by preset, and class labels (argmax of scores).
//!
//! | preset | prediction | labels |
//! |---|---|---|
//! | `kserve-v2`, `kserve-v2-grpc` | `outputs[*].data` (as `{name: data}`) | an integer/string output, else argmax of the first score output `[B, K]` |
//! | `tfserving`, `tfserving-grpc`, `mlflow` | `predictions` | per row: argmax of a score vector, or the integer/string value |
//! | `json-pointer` | the value at the pointer | as for `predictions` |
//!
//! Plain floats (regression outputs) have no label. The `-grpc` presets extract exactly as their
//! REST counterparts: their gRPC messages are first decoded into the REST JSON shape
//! ([`crate::grpc::presets`]); on HTTP/1.1 traffic they behave as the REST preset.
//!
//! Each preset also names the fields its protocol fills per response rather than per prediction
//! ([`PresetName::default_ignores`]); they are left out of body diffs unless the config says
//! otherwise.

use crate::grpc::GrpcPreset;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Borrow;

/// How to find the prediction in a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Preset {
    /// Open Inference Protocol (KServe v2).
    KserveV2 {
        /// The output tensor holding the label (else the first integer/string output).
        label_output: Option<String>,
    },
    /// `predictions` (TF Serving, MLflow).
    Predictions,
    /// A JSON pointer.
    Pointer(String),
    /// No extraction.
    None,
}

/// Where the prediction lives in a response body.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PresetName {
    /// Open Inference Protocol: `outputs[*].data`.
    #[default]
    KserveV2,
    /// TensorFlow Serving: `predictions`.
    Tfserving,
    /// MLflow scoring server: `predictions`.
    Mlflow,
    /// Open Inference Protocol over gRPC (`ModelInfer`), decoded into the `kserve-v2` shape.
    KserveV2Grpc,
    /// TensorFlow Serving over gRPC (`Predict`), decoded into the `tfserving` shape.
    TfservingGrpc,
    /// A custom JSON pointer (`compare.prediction_pointer`).
    JsonPointer,
    /// No prediction extraction: bodies are compared only.
    None,
}

impl PresetName {
    /// Every preset, in documentation order.
    pub const ALL: [PresetName; 7] = [
        PresetName::KserveV2,
        PresetName::Tfserving,
        PresetName::Mlflow,
        PresetName::KserveV2Grpc,
        PresetName::TfservingGrpc,
        PresetName::JsonPointer,
        PresetName::None,
    ];

    /// The config value (`kserve-v2`, `tfserving`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            PresetName::KserveV2 => "kserve-v2",
            PresetName::Tfserving => "tfserving",
            PresetName::Mlflow => "mlflow",
            PresetName::KserveV2Grpc => "kserve-v2-grpc",
            PresetName::TfservingGrpc => "tfserving-grpc",
            PresetName::JsonPointer => "json-pointer",
            PresetName::None => "none",
        }
    }

    /// JSON pointers of the fields this protocol's servers fill per response or per model
    /// rather than per prediction, so that two models always differ there:
    ///
    /// - `kserve-v2` (Open Inference Protocol): `/id` (a fresh UUID from MLServer, the KServe
    ///   Python server and Triton when the request has none; an echo of the request's when it
    ///   has one, equal on both sides, so ignoring it costs nothing), `/model_name` and
    ///   `/model_version` (a shadow is usually another model or version).
    /// - `kserve-v2-grpc`: the same fields of the decoded `ModelInferResponse`.
    /// - `tfserving`, `mlflow`: none; their answers hold only `predictions`.
    /// - `tfserving-grpc`: `/model_spec` (the `PredictResponse`'s model name, version and
    ///   signature: the serving model's, not the prediction's).
    /// - `json-pointer`, `none`: none; the shape is the user's.
    pub fn default_ignores(self) -> &'static [&'static str] {
        match self {
            PresetName::KserveV2 | PresetName::KserveV2Grpc => {
                &["/id", "/model_name", "/model_version"]
            }
            PresetName::TfservingGrpc => &["/model_spec"],
            PresetName::Tfserving
            | PresetName::Mlflow
            | PresetName::JsonPointer
            | PresetName::None => &[],
        }
    }

    /// The gRPC API whose messages this preset decodes, if it is a gRPC preset.
    pub fn grpc_preset(self) -> Option<GrpcPreset> {
        match self {
            PresetName::KserveV2Grpc => Some(GrpcPreset::KserveV2),
            PresetName::TfservingGrpc => Some(GrpcPreset::TfServing),
            PresetName::KserveV2
            | PresetName::Tfserving
            | PresetName::Mlflow
            | PresetName::JsonPointer
            | PresetName::None => None,
        }
    }
}

/// What a model predicted for one request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    /// The extracted values.
    pub values: Value,
    /// One class label per row; empty when the output has no labels (regression).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// One number per row: the value of a numeric (regression) output, or the top score of a
    /// score vector; empty when the output has no numbers. Read by the evaluation (error
    /// statistics against true values, score distribution shift), not logged.
    #[serde(skip)]
    pub scores: Vec<f64>,
}

impl Preset {
    /// The preset called `name`; `label_output` and `pointer` are used by the presets that
    /// take them (`kserve-v2` and `json-pointer`).
    pub fn named(
        name: PresetName,
        label_output: Option<String>,
        pointer: Option<String>,
    ) -> Preset {
        match name {
            PresetName::KserveV2 | PresetName::KserveV2Grpc => Preset::KserveV2 { label_output },
            PresetName::Tfserving | PresetName::TfservingGrpc | PresetName::Mlflow => {
                Preset::Predictions
            }
            PresetName::JsonPointer => Preset::Pointer(pointer.unwrap_or_default()),
            PresetName::None => Preset::None,
        }
    }

    /// The prediction in `body`, or `None` when the body does not have the preset's shape.
    pub fn extract(&self, body: &Value) -> Option<Prediction> {
        match self {
            Preset::None => None,
            Preset::Predictions => generic(body.get("predictions")?),
            Preset::Pointer(p) => generic(body.pointer(p)?),
            Preset::KserveV2 { label_output } => kserve_v2(body, label_output.as_deref()),
        }
    }
}

/// Index of the largest score (first on ties; NaN never wins). `None` when empty or all NaN.
pub fn argmax(scores: &[f64]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, &s) in scores.iter().enumerate() {
        if s.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((i, s));
        }
    }
    best.map(|(i, _)| i)
}

fn generic(v: &Value) -> Option<Prediction> {
    let (labels, scores) = match v {
        Value::Array(rows) => (
            rows_labels(rows.iter().map(row_of)),
            rows_scores(rows.iter().map(row_of)),
        ),
        scalar => (
            scalar_label(scalar).into_iter().collect(),
            rows_scores(std::iter::once(std::slice::from_ref(scalar))),
        ),
    };
    Some(Prediction {
        values: v.clone(),
        labels,
        scores,
    })
}

/// A row as a slice: arrays are rows of scores, anything else a one-element row.
fn row_of(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a,
        other => std::slice::from_ref(other),
    }
}

/// One label per row, or none at all if any row has no label.
fn rows_labels<'r, T: Borrow<Value> + 'r>(rows: impl Iterator<Item = &'r [T]>) -> Vec<String> {
    let mut out = Vec::new();
    for row in rows {
        match row_label(row) {
            Some(l) => out.push(l),
            None => return Vec::new(),
        }
    }
    out
}

fn row_label<T: Borrow<Value>>(row: &[T]) -> Option<String> {
    match row {
        [one] => scalar_label(one.borrow()),
        many if many.len() >= 2 => {
            // `argmax` over the row, without collecting it: every element must be a number.
            let mut best: Option<(usize, f64)> = None;
            for (i, v) in many.iter().enumerate() {
                let s = v.borrow().as_f64()?;
                if !s.is_nan() && best.is_none_or(|(_, b)| s > b) {
                    best = Some((i, s));
                }
            }
            best.map(|(i, _)| i.to_string())
        }
        _ => None,
    }
}

/// One score per row (a lone number, or the largest of a score vector), or none at all if any
/// row has no number.
fn rows_scores<'r, T: Borrow<Value> + 'r>(rows: impl Iterator<Item = &'r [T]>) -> Vec<f64> {
    let mut out = Vec::new();
    for row in rows {
        let mut top: Option<f64> = None;
        for v in row {
            let Some(n) = v.borrow().as_f64() else {
                return Vec::new();
            };
            top = Some(top.map_or(n, |t| t.max(n)));
        }
        match top {
            Some(top) => out.push(top),
            None => return Vec::new(),
        }
    }
    out
}

/// Integers, strings and booleans are labels; floats are not (regression).
fn scalar_label(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flatten(x, out)),
        other => out.push(other),
    }
}

/// Whether `s` starts with `prefix`, ASCII case ignored.
fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// One KServe v2 output tensor, flattened and split into rows by its shape.
struct Tensor<'a> {
    name: String,
    datatype: &'a str,
    data: &'a Value,
    /// The elements, flattened (borrowed from the body).
    flat: Vec<&'a Value>,
    /// Elements per row (at least 1).
    width: usize,
}

impl<'a> Tensor<'a> {
    /// The rows, `width` elements each (the last may be shorter).
    fn rows(&self) -> std::slice::Chunks<'_, &'a Value> {
        self.flat.chunks(self.width)
    }
}

fn tensor(i: usize, o: &Value) -> Option<Tensor<'_>> {
    let data = o.get("data")?;
    let mut flat = Vec::new();
    flatten(data, &mut flat);
    let shape: Vec<usize> = o
        .get("shape")
        .and_then(Value::as_array)
        .map(|s| {
            s.iter()
                .filter_map(Value::as_u64)
                .map(|d| d as usize)
                .collect()
        })
        .unwrap_or_default();
    let width = if shape.len() >= 2 {
        // Saturating: a shape is the server's word, and may be absurd.
        shape[1..]
            .iter()
            .fold(1usize, |acc, d| acc.saturating_mul(*d))
            .max(1)
    } else {
        1
    };
    Some(Tensor {
        name: o
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| i.to_string()),
        datatype: o.get("datatype").and_then(Value::as_str).unwrap_or(""),
        data,
        flat,
        width,
    })
}

fn kserve_v2(body: &Value, label_output: Option<&str>) -> Option<Prediction> {
    let outputs = body.get("outputs")?.as_array()?;
    let tensors: Vec<Tensor<'_>> = outputs
        .iter()
        .enumerate()
        .filter_map(|(i, o)| tensor(i, o))
        .collect();
    if tensors.is_empty() {
        return None;
    }
    let values = Value::Object(
        tensors
            .iter()
            .map(|t| (t.name.clone(), t.data.clone()))
            .collect(),
    );
    let labels_of = |t: &Tensor<'_>| rows_labels(t.rows());
    let is_label_type = |t: &Tensor<'_>| {
        let d = t.datatype;
        starts_with_ignore_case(d, "INT")
            || starts_with_ignore_case(d, "UINT")
            || d.eq_ignore_ascii_case("BYTES")
            || d.eq_ignore_ascii_case("BOOL")
    };
    let labels = if let Some(name) = label_output {
        tensors
            .iter()
            .find(|t| t.name == name)
            .map(labels_of)
            .unwrap_or_default()
    } else if let Some(t) = tensors
        .iter()
        .find(|t| is_label_type(t) && t.rows().all(|r| r.len() == 1))
    {
        labels_of(t)
    } else {
        tensors
            .iter()
            .find(|t| t.rows().next().is_some_and(|r| r.len() >= 2))
            .map(labels_of)
            .unwrap_or_default()
    };
    // Scores: the first floating-point output (probabilities or a regression value).
    let scores = tensors
        .iter()
        .find(|t| starts_with_ignore_case(t.datatype, "FP"))
        .map(|t| rows_scores(t.rows()))
        .unwrap_or_default();
    Some(Prediction {
        values,
        labels,
        scores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kserve() -> Preset {
        Preset::KserveV2 { label_output: None }
    }

    #[test]
    fn scores_are_regression_values_or_top_scores() {
        let body = json!({"outputs": [
            {"name": "label", "datatype": "INT64", "shape": [2], "data": [1, 0]},
            {"name": "proba", "datatype": "FP32", "shape": [2, 3], "data": [0.1, 0.7, 0.2, 0.5, 0.3, 0.2]},
        ]});
        let p = kserve().extract(&body).unwrap();
        assert_eq!(p.labels, ["1", "0"]);
        assert_eq!(p.scores, [0.7, 0.5]);
        let p = Preset::Predictions
            .extract(&json!({"predictions": [1.5, -2.0]}))
            .unwrap();
        assert!(p.labels.is_empty());
        assert_eq!(p.scores, [1.5, -2.0]);
        let p = Preset::Predictions
            .extract(&json!({"predictions": ["cat", "dog"]}))
            .unwrap();
        assert!(p.scores.is_empty(), "strings have no score");
    }

    #[test]
    fn preset_names_match_their_config_values_and_list_their_noise() {
        for name in PresetName::ALL {
            let parsed: PresetName = serde_json::from_value(json!(name.as_str())).unwrap();
            assert_eq!(parsed, name);
            for pointer in name.default_ignores() {
                assert!(pointer.starts_with('/'), "{pointer}");
            }
        }
        assert_eq!(
            PresetName::KserveV2.default_ignores(),
            &["/id", "/model_name", "/model_version"]
        );
        assert!(PresetName::Tfserving.default_ignores().is_empty());
        assert!(PresetName::Mlflow.default_ignores().is_empty());
        assert_eq!(
            PresetName::KserveV2Grpc.default_ignores(),
            PresetName::KserveV2.default_ignores()
        );
        assert_eq!(
            PresetName::TfservingGrpc.default_ignores(),
            &["/model_spec"]
        );
        assert_eq!(PresetName::KserveV2Grpc.as_str(), "kserve-v2-grpc");
        assert_eq!(PresetName::TfservingGrpc.as_str(), "tfserving-grpc");
        let grpc: Vec<PresetName> = PresetName::ALL
            .into_iter()
            .filter(|p| p.grpc_preset().is_some())
            .collect();
        assert_eq!(grpc, [PresetName::KserveV2Grpc, PresetName::TfservingGrpc]);
        assert_eq!(
            Preset::named(PresetName::KserveV2Grpc, None, None),
            Preset::named(PresetName::KserveV2, None, None)
        );
        assert_eq!(
            Preset::named(PresetName::TfservingGrpc, None, None),
            Preset::Predictions
        );
    }

    #[test]
    fn argmax_picks_the_first_largest_and_skips_nan() {
        assert_eq!(argmax(&[0.1, 0.7, 0.2]), Some(1));
        assert_eq!(argmax(&[0.5, 0.5]), Some(0));
        assert_eq!(argmax(&[f64::NAN, 0.1, 0.0]), Some(1));
        assert_eq!(argmax(&[]), None);
        assert_eq!(argmax(&[f64::NAN]), None);
    }

    #[test]
    fn kserve_v2_scores_give_argmax_labels_per_row() {
        let body = json!({"model_name": "m", "id": "1", "outputs": [
            {"name": "probabilities", "shape": [2, 3], "datatype": "FP64",
             "data": [0.1, 0.2, 0.7, 0.6, 0.3, 0.1]}
        ]});
        let p = kserve().extract(&body).unwrap();
        assert_eq!(p.labels, vec!["2", "0"]);
        assert_eq!(
            p.values,
            json!({"probabilities": [0.1, 0.2, 0.7, 0.6, 0.3, 0.1]})
        );
    }

    #[test]
    fn kserve_v2_prefers_an_integer_label_output() {
        let body = json!({"outputs": [
            {"name": "probabilities", "shape": [1, 2], "datatype": "FP64", "data": [0.9, 0.1]},
            {"name": "label", "shape": [1], "datatype": "INT64", "data": [7]}
        ]});
        assert_eq!(kserve().extract(&body).unwrap().labels, vec!["7"]);
        let named = Preset::KserveV2 {
            label_output: Some("probabilities".into()),
        };
        assert_eq!(named.extract(&body).unwrap().labels, vec!["0"]);
    }

    #[test]
    fn kserve_v2_regression_has_no_labels_and_bad_bodies_none() {
        let body = json!({"outputs": [{"name": "y", "shape": [2], "datatype": "FP32", "data": [1.5, 2.5]}]});
        let p = kserve().extract(&body).unwrap();
        assert!(p.labels.is_empty());
        assert_eq!(kserve().extract(&json!({"predictions": [1]})), None);
        assert_eq!(kserve().extract(&json!({"outputs": []})), None);
        // A shape whose product overflows is no row width: one row.
        let absurd = json!({"outputs": [{"name": "p", "shape": [1, u64::MAX, 4], "datatype": "FP32", "data": [0.2, 0.8]}]});
        assert_eq!(kserve().extract(&absurd).unwrap().labels, vec!["1"]);
        // Nested data is flattened before splitting into rows.
        let nested = json!({"outputs": [{"name": "p", "shape": [1, 2], "datatype": "FP32", "data": [[0.2, 0.8]]}]});
        assert_eq!(kserve().extract(&nested).unwrap().labels, vec!["1"]);
    }

    #[test]
    fn predictions_preset_for_tfserving_and_mlflow() {
        let scores = json!({"predictions": [[0.1, 0.9], [0.8, 0.2]]});
        assert_eq!(
            Preset::Predictions.extract(&scores).unwrap().labels,
            vec!["1", "0"]
        );
        let classes = json!({"predictions": ["cat", "dog"]});
        assert_eq!(
            Preset::Predictions.extract(&classes).unwrap().labels,
            vec!["cat", "dog"]
        );
        let ints = json!({"predictions": [0, 2, 1]});
        assert_eq!(
            Preset::Predictions.extract(&ints).unwrap().labels,
            vec!["0", "2", "1"]
        );
        let regression = json!({"predictions": [0.5, 1.25]});
        let p = Preset::Predictions.extract(&regression).unwrap();
        assert!(p.labels.is_empty());
        assert_eq!(p.values, json!([0.5, 1.25]));
        assert_eq!(Preset::Predictions.extract(&json!({"outputs": []})), None);
    }

    #[test]
    fn json_pointer_preset() {
        let body = json!({"result": {"class": "spam", "scores": [0.2, 0.8]}});
        let p = Preset::Pointer("/result/class".into())
            .extract(&body)
            .unwrap();
        assert_eq!(p.labels, vec!["spam"]);
        let p = Preset::Pointer("/result/scores".into())
            .extract(&body)
            .unwrap();
        // A flat array is rows of scalars: floats have no label.
        assert!(p.labels.is_empty());
        assert_eq!(Preset::Pointer("/nope".into()).extract(&body), None);
        assert_eq!(Preset::None.extract(&body), None);
    }
}
