//! A gRPC call compared: status first, then the messages pairwise in order.
//!
//! - **Status.** Each side's status is its `grpc-status` (trailers, or the headers of a
//!   trailers-only answer, or derived from the HTTP status: [`GrpcStatus::of_response`]). A
//!   different HTTP status or a different `grpc-status` is a `status` discrepancy; a non-OK
//!   status is that side's error, classed `grpc_client` / `grpc_server`
//!   ([`ErrorClass::of_grpc`]). A shadow answer that is not gRPC at all (another content type)
//!   has no messages: its body is not read.
//! - **Messages.** Both bodies are split into messages and decompressed per `grpc-encoding`
//!   (capped like HTTP bodies; a body that cannot be read is not compared and counts as a
//!   decode failure), then each message is decoded to JSON by the comparer's
//!   [`GrpcDecoder`](crate::grpc::GrpcDecoder) (a decoding error of a preset or user schema is
//!   a `corrupt` decode failure). A unary answer (at most one message on each side) diffs like an HTTP body: the
//!   preset's ignored paths apply, paths are the message's own (`/outputs/0/data/1`), and a
//!   missing message is a difference at the root. A streaming answer (more messages on either
//!   side) pairs message *i* with message *i*: the diffs are prefixed with the index
//!   (`/2/outputs/0/data/1`), and a message only one side sent is a difference at `/i`.
//! - **Predictions.** Each message's prediction is extracted by the preset as from a REST body;
//!   a streaming answer's prediction is its messages' predictions in order (values as an
//!   array, labels and scores concatenated).

use super::json_diff::{self, DiffKind, FieldDiff};
use super::{Comparer, Comparison, DiscrepancyKind, ErrorClass, Prediction, ShadowAnswer, Side};
use crate::encoding::DecodeFailure;
use crate::grpc::{FramingLimits, GrpcStatus, decode_messages, is_grpc};
use crate::http::{Header, HttpResponse};
use bytes::Bytes;
use serde_json::Value;

/// One side's messages: raw (decompressed) and decoded.
struct Messages {
    bytes: Vec<Bytes>,
    json: Vec<Value>,
}

impl Comparer {
    /// The most messages read from one gRPC answer.
    const GRPC_MAX_MESSAGES: usize = 4096;

    /// Reads and decodes one side's messages, at most `limit` decoded bytes.
    fn grpc_messages(
        &self,
        path: Option<&str>,
        headers: &[Header],
        body: &Bytes,
        limit: usize,
    ) -> Result<Messages, DecodeFailure> {
        let limits = FramingLimits {
            max_messages: Self::GRPC_MAX_MESSAGES,
            max_decoded_bytes: limit,
        };
        let bytes = decode_messages(headers, body, limits).map_err(|e| e.failure())?;
        let json = bytes
            .iter()
            .map(|m| self.grpc.response_json(path, m))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.failure())?;
        Ok(Messages { bytes, json })
    }

    /// The prediction of a call: a unary answer's as from a REST body, a stream's message by
    /// message.
    fn grpc_prediction(&self, messages: &Messages) -> Option<Prediction> {
        match messages.json.as_slice() {
            [one] => self.preset.extract(one),
            many => {
                let found: Vec<Prediction> =
                    many.iter().filter_map(|m| self.preset.extract(m)).collect();
                if found.is_empty() {
                    return None;
                }
                let mut labels = Vec::new();
                let mut scores = Vec::new();
                let mut values = Vec::new();
                for p in found {
                    labels.extend(p.labels);
                    scores.extend(p.scores);
                    values.push(p.values);
                }
                Some(Prediction {
                    values: Value::Array(values),
                    labels,
                    scores,
                })
            }
        }
    }

    fn grpc_side(
        &self,
        status: u16,
        grpc: GrpcStatus,
        latency_ns: Option<u64>,
        messages: &Result<Messages, DecodeFailure>,
    ) -> Side {
        Side {
            status: Some(status),
            error: ErrorClass::of_status(status).or_else(|| ErrorClass::of_grpc(grpc.kind())),
            latency_ns,
            prediction: messages.as_ref().ok().and_then(|m| self.grpc_prediction(m)),
            decode_error: messages.as_ref().err().copied(),
            grpc_status: Some(grpc),
        }
    }

    /// Compares a gRPC call (see the module documentation).
    pub(super) fn compare_grpc(
        &self,
        path: Option<&str>,
        production: &HttpResponse,
        production_latency_ns: Option<u64>,
        shadow: &ShadowAnswer,
    ) -> Comparison {
        let prod_status =
            GrpcStatus::of_response(production.status, &production.headers, &production.trailers);
        let prod_messages = self.grpc_messages(
            path,
            &production.headers,
            &production.body,
            self.limits.production,
        );
        let prod_side = self.grpc_side(
            production.status,
            prod_status,
            production_latency_ns,
            &prod_messages,
        );
        let (status, headers, body, trailers, latency_ns) = match shadow {
            ShadowAnswer::Failed {
                class, latency_ns, ..
            } => return super::failed(prod_side, *class, *latency_ns),
            ShadowAnswer::Response {
                status,
                headers,
                body,
                trailers,
                latency_ns,
            } => (*status, headers, body, trailers, *latency_ns),
        };
        let shadow_status = GrpcStatus::of_response(status, headers, trailers);
        let shadow_messages = if is_grpc(headers) {
            self.grpc_messages(path, headers, body, self.limits.shadow)
        } else {
            Ok(Messages {
                bytes: Vec::new(),
                json: Vec::new(),
            })
        };
        let shadow_side = self.grpc_side(status, shadow_status, Some(latency_ns), &shadow_messages);
        let mut kinds = Vec::new();
        let codes = |s: &Side| s.grpc_status.as_ref().map(|g| g.code);
        if production.status != status || codes(&prod_side) != codes(&shadow_side) {
            kinds.push(DiscrepancyKind::Status);
        }
        let (Ok(prod), Ok(shadow)) = (prod_messages, shadow_messages) else {
            return super::undecoded(prod_side, shadow_side, kinds);
        };
        let (body_equal, diffs) = if prod.bytes == shadow.bytes {
            (true, Vec::new())
        } else {
            let d = message_diffs(&prod.json, &shadow.json, &self.body);
            (d.is_empty(), d)
        };
        self.verdict(prod_side, shadow_side, body_equal, diffs, kinds)
    }
}

/// Differences between the two sides' messages (see the module documentation), at most
/// `opts.max_diffs` in all.
fn message_diffs(
    production: &[Value],
    shadow: &[Value],
    opts: &json_diff::DiffOptions,
) -> Vec<FieldDiff> {
    let unary = production.len() <= 1 && shadow.len() <= 1;
    let mut out: Vec<FieldDiff> = Vec::new();
    for i in 0..production.len().max(shadow.len()) {
        let remaining = match opts.max_diffs {
            0 => 0,
            max if out.len() >= max => break,
            max => max - out.len(),
        };
        let prefix = if unary {
            String::new()
        } else {
            format!("/{i}")
        };
        match (production.get(i), shadow.get(i)) {
            (Some(p), Some(s)) => {
                out.extend(
                    json_diff::diff_at_most(p, s, opts, remaining)
                        .into_iter()
                        .map(|mut d| {
                            d.path = format!("{prefix}{}", d.path);
                            d
                        }),
                );
            }
            (p, s) => out.push(FieldDiff {
                path: prefix,
                kind: if p.is_some() {
                    DiffKind::MissingInShadow
                } else {
                    DiffKind::ExtraInShadow
                },
                production: p.cloned(),
                shadow: s.cloned(),
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests;
