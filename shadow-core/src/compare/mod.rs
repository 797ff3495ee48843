//! Compare a shadow answer with the production response: status and error class, latency,
//! body (exact, else JSON-aware with tolerances) and the extracted predictions.
//!
//! - [`status`]: error classes (connect, timeout, protocol, 5xx, 4xx).
//! - [`json_diff`]: field differences with numeric tolerance, ignored paths, unordered arrays.
//! - [`prediction`]: prediction extraction presets and argmax labels.

pub mod json_diff;
pub mod prediction;
pub mod status;

pub use json_diff::{DiffKind, DiffOptions, FieldDiff, PathPattern};
pub use prediction::{Prediction, Preset, PresetName};
pub use status::{ErrorClass, Model};

use crate::http::HttpResponse;
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

/// What the shadow did with a replayed request.
#[derive(Clone, Debug, PartialEq)]
pub enum ShadowAnswer {
    /// A complete response came back.
    Response {
        /// Its status code.
        status: u16,
        /// Its body (chunked framing removed).
        body: Bytes,
        /// From sending the request to the end of the response.
        latency_ns: u64,
    },
    /// No usable response.
    Failed {
        /// What kind of failure.
        class: ErrorClass,
        /// The failure, for logs.
        message: String,
        /// From sending the request until it failed.
        latency_ns: u64,
    },
}

/// The way two answers differ (label of `discrepancies_total{kind}`). A comparison has at most
/// one content kind (`label` > `prediction` > `body`, most severe first) and may also have
/// `status` and `missing_prediction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum DiscrepancyKind {
    /// Different status codes.
    Status,
    /// Predicted class labels differ.
    Label,
    /// Predictions differ beyond tolerance (labels agree or there are none).
    Prediction,
    /// Bodies differ beyond tolerance outside the prediction (or are not JSON and differ).
    Body,
    /// Production has a prediction, the shadow's answer does not (or the reverse).
    MissingPrediction,
}

impl DiscrepancyKind {
    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DiscrepancyKind::Status => "status",
            DiscrepancyKind::Label => "label",
            DiscrepancyKind::Prediction => "prediction",
            DiscrepancyKind::Body => "body",
            DiscrepancyKind::MissingPrediction => "missing_prediction",
        }
    }
}

/// One side of a comparison.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Side {
    /// Status code, when a response came back.
    pub status: Option<u16>,
    /// Error class: transport failure or 4xx/5xx.
    pub error: Option<ErrorClass>,
    /// Latency in nanoseconds (production: wire timestamps; shadow: measured by the client).
    pub latency_ns: Option<u64>,
    /// The prediction found in the body by the preset, if any.
    pub prediction: Option<Prediction>,
}

/// The result of comparing one exchange.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// Production's answer.
    pub production: Side,
    /// The shadow's answer.
    pub shadow: Side,
    /// Bodies equal (byte-exact, or JSON-equal within tolerance); `None` when the shadow failed.
    pub body_equal: Option<bool>,
    /// Labels equal (or, without labels, predictions equal within tolerance); `None` when the
    /// shadow failed to answer or production has no prediction.
    pub agreement: Option<bool>,
    /// Field differences of the bodies (capped).
    pub diffs: Vec<FieldDiff>,
    /// Every way the answers differ (empty when they agree).
    pub discrepancies: Vec<DiscrepancyKind>,
}

impl Comparison {
    /// Whether the shadow answered at all.
    pub fn shadow_answered(&self) -> bool {
        self.shadow.status.is_some()
    }
}

/// Compares answers according to the `[compare]` config.
#[derive(Clone, Debug)]
pub struct Comparer {
    preset: Preset,
    body: DiffOptions,
    prediction: DiffOptions,
}

impl Comparer {
    /// A comparer that finds predictions with `preset` and diffs bodies with `body` (the
    /// prediction itself is diffed with the same tolerances but no ignored paths).
    pub fn new(preset: Preset, body: DiffOptions) -> Comparer {
        let prediction = DiffOptions {
            ignore: Vec::new(),
            unordered: Vec::new(),
            ..body.clone()
        };
        Comparer {
            preset,
            body,
            prediction,
        }
    }

    /// Compares the production response (with its wire latency) and the shadow's answer.
    pub fn compare(
        &self,
        production: &HttpResponse,
        production_latency_ns: Option<u64>,
        shadow: &ShadowAnswer,
    ) -> Comparison {
        let prod_json: Option<Value> = serde_json::from_slice(&production.body).ok();
        let prod_side = Side {
            status: Some(production.status),
            error: ErrorClass::of_status(production.status),
            latency_ns: production_latency_ns,
            prediction: prod_json.as_ref().and_then(|v| self.preset.extract(v)),
        };
        let (status, body, latency_ns) = match shadow {
            ShadowAnswer::Failed {
                class, latency_ns, ..
            } => {
                return Comparison {
                    production: prod_side,
                    shadow: Side {
                        error: Some(*class),
                        latency_ns: Some(*latency_ns),
                        ..Side::default()
                    },
                    body_equal: None,
                    agreement: None,
                    diffs: Vec::new(),
                    discrepancies: Vec::new(),
                };
            }
            ShadowAnswer::Response {
                status,
                body,
                latency_ns,
            } => (*status, body, *latency_ns),
        };
        let shadow_json: Option<Value> = serde_json::from_slice(body).ok();
        let shadow_side = Side {
            status: Some(status),
            error: ErrorClass::of_status(status),
            latency_ns: Some(latency_ns),
            prediction: shadow_json.as_ref().and_then(|v| self.preset.extract(v)),
        };
        let mut kinds = Vec::new();
        if production.status != status {
            kinds.push(DiscrepancyKind::Status);
        }
        let (body_equal, diffs) = if production.body == *body {
            (true, Vec::new())
        } else {
            match (&prod_json, &shadow_json) {
                (Some(p), Some(s)) => {
                    let d = json_diff::diff(p, s, &self.body);
                    (d.is_empty(), d)
                }
                _ => (false, Vec::new()),
            }
        };
        let agreement = match (&prod_side.prediction, &shadow_side.prediction) {
            (Some(p), Some(s)) => {
                let values_equal = json_diff::equal(&p.values, &s.values, &self.prediction);
                let labelled = !p.labels.is_empty() || !s.labels.is_empty();
                let labels_equal = p.labels == s.labels;
                if labelled && !labels_equal {
                    kinds.push(DiscrepancyKind::Label);
                } else if !values_equal {
                    kinds.push(DiscrepancyKind::Prediction);
                } else if !body_equal {
                    kinds.push(DiscrepancyKind::Body);
                }
                Some(if labelled { labels_equal } else { values_equal })
            }
            (Some(_), None) | (None, Some(_)) => {
                kinds.push(DiscrepancyKind::MissingPrediction);
                if !body_equal {
                    kinds.push(DiscrepancyKind::Body);
                }
                prod_side.prediction.as_ref().map(|_| false)
            }
            (None, None) => {
                if !body_equal {
                    kinds.push(DiscrepancyKind::Body);
                }
                None
            }
        };
        kinds.sort();
        Comparison {
            production: prod_side,
            shadow: shadow_side,
            body_equal: Some(body_equal),
            agreement,
            diffs,
            discrepancies: kinds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn response(status: u16, body: Value) -> HttpResponse {
        HttpResponse {
            status,
            version: 1,
            headers: Vec::new(),
            body: Bytes::from(body.to_string()),
        }
    }

    fn answer(status: u16, body: Value) -> ShadowAnswer {
        ShadowAnswer::Response {
            status,
            body: Bytes::from(body.to_string()),
            latency_ns: 1_000_000,
        }
    }

    fn probs(id: &str, p: [f64; 3]) -> Value {
        json!({"id": id, "outputs": [{"name": "probabilities", "shape": [1, 3], "datatype": "FP64", "data": p}]})
    }

    fn comparer() -> Comparer {
        let body = DiffOptions {
            ignore: vec![PathPattern::parse("/id")],
            abs_tolerance: 0.01,
            ..DiffOptions::default()
        };
        Comparer::new(Preset::named(PresetName::KserveV2, None, None), body)
    }

    #[test]
    fn agreement_within_tolerance_and_ignored_id() {
        let c = comparer().compare(
            &response(200, probs("a", [0.1, 0.2, 0.7])),
            Some(5_000_000),
            &answer(200, probs("b", [0.105, 0.2, 0.695])),
        );
        assert_eq!(c.agreement, Some(true));
        assert_eq!(c.body_equal, Some(true));
        assert!(c.discrepancies.is_empty());
        assert_eq!(c.production.latency_ns, Some(5_000_000));
        assert_eq!(c.shadow.latency_ns, Some(1_000_000));
    }

    #[test]
    fn label_disagreement_and_prediction_drift() {
        let prod = response(200, probs("a", [0.1, 0.2, 0.7]));
        let c = comparer().compare(&prod, None, &answer(200, probs("a", [0.8, 0.1, 0.1])));
        assert_eq!(c.agreement, Some(false));
        assert_eq!(c.discrepancies, vec![DiscrepancyKind::Label]);
        assert_eq!(c.production.prediction.as_ref().unwrap().labels, vec!["2"]);
        assert_eq!(c.shadow.prediction.as_ref().unwrap().labels, vec!["0"]);
        assert_eq!(c.diffs.len(), 3);
        assert_eq!(c.diffs[0].path, "/outputs/0/data/0");
        let c = comparer().compare(&prod, None, &answer(200, probs("a", [0.05, 0.25, 0.7])));
        assert_eq!(c.agreement, Some(true));
        assert_eq!(c.discrepancies, vec![DiscrepancyKind::Prediction]);
    }

    #[test]
    fn shadow_errors_and_garbage() {
        let prod = response(200, probs("a", [0.1, 0.2, 0.7]));
        let c = comparer().compare(&prod, None, &answer(500, json!({"error": "boom"})));
        assert_eq!(c.shadow.error, Some(ErrorClass::ServerError));
        assert_eq!(c.agreement, Some(false));
        assert_eq!(
            c.discrepancies,
            vec![
                DiscrepancyKind::Status,
                DiscrepancyKind::Body,
                DiscrepancyKind::MissingPrediction
            ]
        );
        let failed = ShadowAnswer::Failed {
            class: ErrorClass::Timeout,
            message: "timed out".into(),
            latency_ns: 1,
        };
        let c = comparer().compare(&prod, None, &failed);
        assert_eq!(c.agreement, None);
        assert_eq!(c.body_equal, None);
        assert!(c.discrepancies.is_empty());
        assert!(!c.shadow_answered());
        let garbage = ShadowAnswer::Response {
            status: 200,
            body: Bytes::from_static(b"\x00not json"),
            latency_ns: 1,
        };
        let c = comparer().compare(&prod, None, &garbage);
        assert_eq!(c.body_equal, Some(false));
        assert_eq!(c.agreement, Some(false));
    }

    #[test]
    fn non_json_bodies_compare_exactly() {
        let prod = HttpResponse {
            status: 200,
            version: 1,
            headers: Vec::new(),
            body: Bytes::from_static(b"hello"),
        };
        let same = ShadowAnswer::Response {
            status: 200,
            body: Bytes::from_static(b"hello"),
            latency_ns: 1,
        };
        let c = comparer().compare(&prod, None, &same);
        assert_eq!(c.body_equal, Some(true));
        assert!(c.discrepancies.is_empty());
        assert_eq!(c.agreement, None);
        let other = ShadowAnswer::Response {
            status: 200,
            body: Bytes::from_static(b"world"),
            latency_ns: 1,
        };
        assert_eq!(
            comparer().compare(&prod, None, &other).discrepancies,
            vec![DiscrepancyKind::Body]
        );
    }
}
