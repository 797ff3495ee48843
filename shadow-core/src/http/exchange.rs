//! The unit the rest of the daemon works on: one request and the production response seen on
//! the wire, with wire timestamps and an outcome saying whether it may be replayed.

use crate::segment::FlowKey;
use bytes::Bytes;
use serde::Serialize;

/// One header line as sent (name case and order preserved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Bytes,
}

/// A parsed HTTP/1.x request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    /// Request target exactly as sent (origin form, e.g. `/v2/models/m/infer?x=1`).
    pub target: String,
    /// Minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
    pub headers: Vec<Header>,
    /// Decoded body (chunked framing removed).
    pub body: Bytes,
}

/// A parsed HTTP/1.x response (final, never 1xx).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub version: u8,
    pub headers: Vec<Header>,
    /// Decoded body (chunked framing removed).
    pub body: Bytes,
}

/// Wire timestamps, ns since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExchangeTiming {
    pub request_first_byte: u64,
    pub request_last_byte: u64,
    pub response_first_byte: Option<u64>,
    pub response_last_byte: Option<u64>,
}

impl ExchangeTiming {
    /// Production latency: last request byte → last response byte.
    pub fn latency_ns(&self) -> Option<u64> {
        self.response_last_byte
            .map(|end| end.saturating_sub(self.request_last_byte))
    }
}

/// Whether an exchange was seen whole. Only `Complete` exchanges are replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Request and response both seen whole.
    Complete,
    /// A hole in the captured stream hit the request or the response.
    Gap,
    /// A body exceeded the configured cap.
    Truncated,
    /// The request was seen whole but no response (connection closed or capture ended).
    NoResponse,
    /// The bytes were not valid HTTP/1.x.
    Unparsable,
}

impl Outcome {
    /// Stable label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Gap => "gap",
            Outcome::Truncated => "truncated",
            Outcome::NoResponse => "no_response",
            Outcome::Unparsable => "unparsable",
        }
    }
}

/// One request/response pair from a tapped connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub flow: FlowKey,
    /// The request; `None` only for `Unparsable`/`Gap` exchanges whose request head was lost.
    pub request: Option<HttpRequest>,
    pub prod_response: Option<HttpResponse>,
    pub timing: ExchangeTiming,
    pub outcome: Outcome,
}
