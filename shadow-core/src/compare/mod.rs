//! Compare a shadow answer with the production response: status and error class, latency,
//! body (exact, else JSON-aware with tolerances) and the extracted predictions.
//!
//! Both bodies are compared decoded: their `Content-Encoding` is undone first
//! ([`crate::encoding`]), so answers that differ only in how they were compressed agree. A body
//! that cannot be decoded (over the cap, corrupt, unknown coding) is not compared: its side
//! carries the [`DecodeFailure`] and the comparison has no body or prediction verdict.
//!
//! A gRPC answer (production's `content-type: application/grpc*`) is compared as a call:
//! `grpc-status` beside the HTTP status, then its messages pairwise in order, each decoded to
//! JSON by [`crate::grpc::GrpcDecoder`] (a preset, the user's schema, or the raw wire format)
//! and put through the same JSON diff and prediction extraction as an HTTP body ([`grpc`]).
//!
//! - [`status`]: error classes (connect, timeout, protocol, 5xx, 4xx, grpc_client,
//!   grpc_server).
//! - [`json_diff`]: field differences with numeric tolerance, ignored paths, unordered arrays.
//! - [`prediction`]: prediction extraction presets and argmax labels.
//! - [`grpc`]: gRPC calls compared by status and messages.

pub mod grpc;
pub mod json_diff;
pub mod prediction;
pub mod status;

pub use json_diff::{DiffKind, DiffOptions, FieldDiff, PathPattern};
pub use prediction::{Prediction, Preset, PresetName};
pub use status::{ErrorClass, Model};

use crate::encoding::{DecodeFailure, decode_body};
use crate::grpc::{GrpcDecoder, GrpcStatus};
use crate::http::{Header, HttpRequest, HttpResponse};
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
        /// Its header fields (`Content-Encoding` says how the body is coded).
        headers: Vec<Header>,
        /// Its body as received: chunked framing removed, content coding kept.
        body: Bytes,
        /// Its trailer fields (HTTP/2 trailing HEADERS: gRPC's `grpc-status`), empty if none.
        trailers: Vec<Header>,
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

impl ShadowAnswer {
    /// How this answer failed, as the comparison classes it: the transport failure, a 4xx/5xx
    /// status, or, for a gRPC answer, a non-OK `grpc-status`; `None` for a success.
    pub fn error_class(&self) -> Option<ErrorClass> {
        match self {
            ShadowAnswer::Failed { class, .. } => Some(*class),
            ShadowAnswer::Response {
                status,
                headers,
                trailers,
                ..
            } => ErrorClass::of_status(*status).or_else(|| {
                crate::grpc::is_grpc(headers)
                    .then(|| GrpcStatus::of_response(*status, headers, trailers))
                    .and_then(|s| ErrorClass::of_grpc(s.kind()))
            }),
        }
    }
}

/// The way two answers differ (label of `discrepancies_total{kind}`). A comparison has at most
/// one content kind (`label` > `prediction` > `body`, most severe first) and may also have
/// `status` and `missing_prediction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum DiscrepancyKind {
    /// Different status codes (HTTP, or a gRPC call's `grpc-status`).
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
    /// Error class: transport failure, 4xx/5xx, or a non-OK gRPC status.
    pub error: Option<ErrorClass>,
    /// A gRPC call's status (`grpc-status`, `grpc-message`); `None` for HTTP answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<GrpcStatus>,
    /// Latency in nanoseconds (production: wire timestamps; shadow: measured by the client).
    pub latency_ns: Option<u64>,
    /// The prediction found in the body by the preset, if any.
    pub prediction: Option<Prediction>,
    /// Why the body could not be decoded (it was then not compared).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_error: Option<DecodeFailure>,
}

/// The result of comparing one exchange.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// Production's answer.
    pub production: Side,
    /// The shadow's answer.
    pub shadow: Side,
    /// Decoded bodies equal (byte-exact, or JSON-equal within tolerance); `None` when the shadow
    /// failed or a body could not be decoded.
    pub body_equal: Option<bool>,
    /// Labels equal (or, without labels, predictions equal within tolerance); `None` when the
    /// shadow failed to answer, a body could not be decoded or production has no prediction.
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

/// The largest decoded body of each side; a larger one is [`DecodeFailure::Truncated`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Production's answers (as a rule the capture's body cap).
    pub production: usize,
    /// The shadow's answers (as a rule the largest shadow answer read).
    pub shadow: usize,
}

impl Default for DecodeLimits {
    /// 16 MiB each, the daemon's default body caps.
    fn default() -> Self {
        DecodeLimits {
            production: 16 << 20,
            shadow: 16 << 20,
        }
    }
}

/// Compares answers according to the `[compare]` config.
#[derive(Clone, Debug)]
pub struct Comparer {
    preset: Preset,
    body: DiffOptions,
    prediction: DiffOptions,
    limits: DecodeLimits,
    grpc: GrpcDecoder,
}

/// A body with its content coding undone, or why it could not be.
fn decoded(headers: &[Header], body: &Bytes, limit: usize) -> Result<Bytes, DecodeFailure> {
    decode_body(headers, body, limit).map_err(|e| e.failure())
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
            limits: DecodeLimits::default(),
            grpc: GrpcDecoder::default(),
        }
    }

    /// The same comparer with another decoder of gRPC messages (by default the raw wire
    /// format: a gRPC preset or a user schema decodes them into meaningful JSON).
    pub fn with_grpc_decoder(mut self, decoder: GrpcDecoder) -> Comparer {
        self.grpc = decoder;
        self
    }

    /// The decoder of gRPC messages.
    pub fn grpc_decoder(&self) -> &GrpcDecoder {
        &self.grpc
    }

    /// Compares the answers to `request` ([`Comparer::compare`], with the request's target
    /// naming the gRPC method whose message types decode a gRPC call).
    pub fn compare_request(
        &self,
        request: &HttpRequest,
        production: &HttpResponse,
        production_latency_ns: Option<u64>,
        shadow: &ShadowAnswer,
    ) -> Comparison {
        self.compare_call(
            Some(&request.target),
            production,
            production_latency_ns,
            shadow,
        )
    }

    /// The same comparer with other caps on decoded bodies.
    pub fn with_decode_limits(mut self, limits: DecodeLimits) -> Comparer {
        self.limits = limits;
        self
    }

    /// Compares the production response (with its wire latency) and the shadow's answer
    /// (without the request: a gRPC call is decoded by the preset, else raw).
    pub fn compare(
        &self,
        production: &HttpResponse,
        production_latency_ns: Option<u64>,
        shadow: &ShadowAnswer,
    ) -> Comparison {
        self.compare_call(None, production, production_latency_ns, shadow)
    }

    fn compare_call(
        &self,
        path: Option<&str>,
        production: &HttpResponse,
        production_latency_ns: Option<u64>,
        shadow: &ShadowAnswer,
    ) -> Comparison {
        if crate::grpc::is_grpc(&production.headers) {
            return self.compare_grpc(path, production, production_latency_ns, shadow);
        }
        let prod_body = decoded(
            &production.headers,
            &production.body,
            self.limits.production,
        );
        let prod_json: Option<Value> = prod_body
            .as_ref()
            .ok()
            .and_then(|b| serde_json::from_slice(b).ok());
        let prod_side = Side {
            status: Some(production.status),
            error: ErrorClass::of_status(production.status),
            latency_ns: production_latency_ns,
            prediction: prod_json.as_ref().and_then(|v| self.preset.extract(v)),
            decode_error: prod_body.as_ref().err().copied(),
            grpc_status: None,
        };
        let (status, body, latency_ns) = match shadow {
            ShadowAnswer::Failed {
                class, latency_ns, ..
            } => return failed(prod_side, *class, *latency_ns),
            ShadowAnswer::Response {
                status,
                headers,
                body,
                latency_ns,
                ..
            } => (
                *status,
                decoded(headers, body, self.limits.shadow),
                *latency_ns,
            ),
        };
        let shadow_json: Option<Value> = body
            .as_ref()
            .ok()
            .and_then(|b| serde_json::from_slice(b).ok());
        let shadow_side = Side {
            status: Some(status),
            error: ErrorClass::of_status(status),
            latency_ns: Some(latency_ns),
            prediction: shadow_json.as_ref().and_then(|v| self.preset.extract(v)),
            decode_error: body.as_ref().err().copied(),
            grpc_status: None,
        };
        let mut kinds = Vec::new();
        if production.status != status {
            kinds.push(DiscrepancyKind::Status);
        }
        let (Ok(prod_body), Ok(body)) = (prod_body, body) else {
            return undecoded(prod_side, shadow_side, kinds);
        };
        let (body_equal, diffs) = if prod_body == body {
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
        self.verdict(prod_side, shadow_side, body_equal, diffs, kinds)
    }

    /// The content verdict once both bodies were read: the prediction (or, without one, the
    /// body) decides agreement and the content discrepancy kind.
    fn verdict(
        &self,
        prod_side: Side,
        shadow_side: Side,
        body_equal: bool,
        diffs: Vec<FieldDiff>,
        mut kinds: Vec<DiscrepancyKind>,
    ) -> Comparison {
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

/// The comparison when the shadow gave no usable answer: no verdict.
fn failed(production: Side, class: ErrorClass, latency_ns: u64) -> Comparison {
    Comparison {
        production,
        shadow: Side {
            error: Some(class),
            latency_ns: Some(latency_ns),
            ..Side::default()
        },
        body_equal: None,
        agreement: None,
        diffs: Vec::new(),
        discrepancies: Vec::new(),
    }
}

/// The comparison when a body could not be read: not compared, no verdict either way (a status
/// difference is still one).
fn undecoded(production: Side, shadow: Side, discrepancies: Vec<DiscrepancyKind>) -> Comparison {
    Comparison {
        production,
        shadow,
        body_equal: None,
        agreement: None,
        diffs: Vec::new(),
        discrepancies,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn response(status: u16, body: Value) -> HttpResponse {
        HttpResponse {
            trailers: Vec::new(),
            status,
            version: 1,
            headers: Vec::new(),
            body: Bytes::from(body.to_string()),
        }
    }

    fn answer(status: u16, body: Value) -> ShadowAnswer {
        ShadowAnswer::Response {
            trailers: Vec::new(),
            status,
            headers: Vec::new(),
            body: Bytes::from(body.to_string()),
            latency_ns: 1_000_000,
        }
    }

    fn coded(coding: &str) -> Vec<Header> {
        vec![Header {
            name: "content-encoding".into(),
            value: Bytes::from(coding.to_string()),
        }]
    }

    fn gzip(data: &[u8]) -> Bytes {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        Bytes::from(e.finish().unwrap())
    }

    fn zstd(data: &[u8]) -> Bytes {
        Bytes::from(ruzstd::encoding::compress_to_vec(
            data,
            ruzstd::encoding::CompressionLevel::Fastest,
        ))
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
            trailers: Vec::new(),
            status: 200,
            headers: Vec::new(),
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
            trailers: Vec::new(),
            status: 200,
            version: 1,
            headers: Vec::new(),
            body: Bytes::from_static(b"hello"),
        };
        let same = ShadowAnswer::Response {
            trailers: Vec::new(),
            status: 200,
            headers: Vec::new(),
            body: Bytes::from_static(b"hello"),
            latency_ns: 1,
        };
        let c = comparer().compare(&prod, None, &same);
        assert_eq!(c.body_equal, Some(true));
        assert!(c.discrepancies.is_empty());
        assert_eq!(c.agreement, None);
        let other = ShadowAnswer::Response {
            trailers: Vec::new(),
            status: 200,
            headers: Vec::new(),
            body: Bytes::from_static(b"world"),
            latency_ns: 1,
        };
        assert_eq!(
            comparer().compare(&prod, None, &other).discrepancies,
            vec![DiscrepancyKind::Body]
        );
    }

    #[test]
    fn bodies_are_compared_decoded_whatever_their_coding() {
        let plain = probs("a", [0.1, 0.2, 0.7]).to_string();
        let prod = HttpResponse {
            trailers: Vec::new(),
            headers: coded("gzip"),
            body: gzip(plain.as_bytes()),
            ..response(200, Value::Null)
        };
        for shadow in [
            answer(200, probs("a", [0.1, 0.2, 0.7])),
            ShadowAnswer::Response {
                trailers: Vec::new(),
                status: 200,
                headers: coded("zstd"),
                body: zstd(plain.as_bytes()),
                latency_ns: 1,
            },
        ] {
            let c = comparer().compare(&prod, None, &shadow);
            assert_eq!(c.body_equal, Some(true), "{c:?}");
            assert_eq!(c.agreement, Some(true));
            assert!(c.discrepancies.is_empty(), "{c:?}");
            assert_eq!(c.production.prediction.as_ref().unwrap().labels, vec!["2"]);
            assert_eq!(c.production.decode_error, None);
        }
        // Decoded, a real difference is still one.
        let other = ShadowAnswer::Response {
            trailers: Vec::new(),
            status: 200,
            headers: coded("gzip"),
            body: gzip(probs("a", [0.8, 0.1, 0.1]).to_string().as_bytes()),
            latency_ns: 1,
        };
        let c = comparer().compare(&prod, None, &other);
        assert_eq!(c.discrepancies, vec![DiscrepancyKind::Label]);
    }

    #[test]
    fn an_undecodable_body_is_not_compared_and_says_why() {
        let plain = probs("a", [0.1, 0.2, 0.7]).to_string();
        let prod = HttpResponse {
            trailers: Vec::new(),
            headers: coded("gzip"),
            body: gzip(plain.as_bytes()),
            ..response(200, Value::Null)
        };
        // Production decodes to more than its cap: truncated.
        let small = comparer().with_decode_limits(DecodeLimits {
            production: plain.len() - 1,
            shadow: 1 << 20,
        });
        let c = small.compare(&prod, None, &answer(200, probs("a", [0.1, 0.2, 0.7])));
        assert_eq!(c.production.decode_error, Some(DecodeFailure::Truncated));
        assert_eq!(c.production.prediction, None);
        assert_eq!((c.body_equal, c.agreement), (None, None));
        assert!(c.discrepancies.is_empty(), "{c:?}");
        assert!(c.shadow.prediction.is_some());
        // The shadow's gzip is cut short: corrupt; a status difference is still reported.
        let cut = gzip(plain.as_bytes()).slice(..20);
        let shadow = ShadowAnswer::Response {
            trailers: Vec::new(),
            status: 500,
            headers: coded("gzip"),
            body: cut,
            latency_ns: 1,
        };
        let c = comparer().compare(&prod, None, &shadow);
        assert_eq!(c.shadow.decode_error, Some(DecodeFailure::Corrupt));
        assert_eq!(c.production.decode_error, None);
        assert_eq!((c.body_equal, c.agreement), (None, None));
        assert_eq!(c.discrepancies, vec![DiscrepancyKind::Status]);
        let line = serde_json::to_value(&c).unwrap();
        assert_eq!(line["shadow"]["decode_error"], "corrupt");
        assert!(line["production"].get("decode_error").is_none());
        // An unknown coding.
        let shadow = ShadowAnswer::Response {
            trailers: Vec::new(),
            status: 200,
            headers: coded("compress"),
            body: Bytes::from_static(b"x"),
            latency_ns: 1,
        };
        let c = comparer().compare(&prod, None, &shadow);
        assert_eq!(c.shadow.decode_error, Some(DecodeFailure::Unsupported));
    }

    /// Real MLServer answers of two models for one request without an `id`: a fresh UUID and
    /// each model's own name. With the kserve-v2 preset's default ignores they agree exactly.
    #[test]
    fn kserve_v2_default_ignores_hide_per_response_identifiers() {
        let mlserver = |id: &str, name: &str| {
            json!({"model_name": name, "id": id, "parameters": {}, "outputs": [
                {"name": "predict", "shape": [2, 1], "datatype": "INT64",
                 "parameters": {"content_type": "np"}, "data": [0, 2]}]})
        };
        let prod = response(
            200,
            mlserver("ceb7aaa8-c33a-4086-95f3-8643f6c6ff7e", "wine"),
        );
        let shadow = answer(
            200,
            json!({"model_version": "v2", "model_name": "wine-v2",
                   "id": "26bf2859-08f7-4701-a7c6-1f96c4fd05dc",
                   "parameters": {}, "outputs": mlserver("", "")["outputs"]}),
        );
        let defaults = DiffOptions {
            ignore: PresetName::KserveV2
                .default_ignores()
                .iter()
                .map(|p| PathPattern::parse(p))
                .collect(),
            ..DiffOptions::default()
        };
        let preset = Preset::named(PresetName::KserveV2, None, None);
        let c = Comparer::new(preset.clone(), defaults).compare(&prod, None, &shadow);
        assert_eq!(c.body_equal, Some(true), "{:?}", c.diffs);
        assert!(c.discrepancies.is_empty());
        assert_eq!(c.agreement, Some(true));
        // Without them, the same answers differ in `body`.
        let c = Comparer::new(preset, DiffOptions::default()).compare(&prod, None, &shadow);
        assert_eq!(c.discrepancies, vec![DiscrepancyKind::Body]);
        let paths: Vec<&str> = c.diffs.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, vec!["/id", "/model_name", "/model_version"]);
    }

    /// A gzip answer sent chunked (chunks cutting the gzip stream anywhere), as parsed from the
    /// wire: dechunked by `http`, then decoded by the comparison.
    #[test]
    fn chunked_gzip_from_the_wire_is_compared_decoded() {
        use crate::http::{Outcome, exchanges_from_segments};
        use crate::testkit::Conn;
        let plain = probs("a", [0.1, 0.2, 0.7]).to_string();
        let coded = gzip(plain.as_bytes());
        let mut wire = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\
            Transfer-Encoding: chunked\r\n\r\n"
            .to_vec();
        for part in coded.chunks(7) {
            wire.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            wire.extend_from_slice(part);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:8080").mss(50);
        c.handshake()
            .request(b"POST /v2/models/m/infer HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
            .response(&wire)
            .close();
        let exchanges = exchanges_from_segments(c.into_segments());
        assert_eq!(exchanges.len(), 1);
        assert_eq!(exchanges[0].outcome, Outcome::Complete);
        let prod = exchanges[0].prod_response.clone().unwrap();
        assert_eq!(prod.body, coded, "dechunked, still gzip");
        let c = comparer().compare(&prod, None, &answer(200, probs("b", [0.1, 0.2, 0.7])));
        assert_eq!(c.body_equal, Some(true), "{c:?}");
        assert_eq!(c.agreement, Some(true));
        assert!(c.discrepancies.is_empty());
    }
}
