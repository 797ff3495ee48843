//! The unit the rest of the daemon works on: one request and the production response seen on
//! the wire, with wire timestamps and an outcome saying whether it may be replayed.

use crate::segment::FlowKey;
use bytes::Bytes;
use serde::Serialize;

/// One header line as sent (name case and order preserved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Field name as sent.
    pub name: String,
    /// Field value without surrounding whitespace.
    pub value: Bytes,
}

impl Header {
    /// Bytes a list of headers holds, approximately (names, values and the entries).
    pub(crate) fn held_bytes(headers: &[Header]) -> usize {
        headers
            .iter()
            .map(|h| std::mem::size_of::<Header>() + h.name.len() + h.value.len())
            .sum()
    }
}

/// A parsed request (HTTP/1.x, or one HTTP/2 stream's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpRequest {
    /// Method as sent (`GET`, `POST`, ...).
    pub method: String,
    /// Request target exactly as sent (origin form, e.g. `/v2/models/m/infer?x=1`).
    pub target: String,
    /// Minor version: 1 for HTTP/1.1, 0 for HTTP/1.0 (HTTP/2: see [`Exchange::protocol`]).
    pub version: u8,
    /// Header fields in the order sent (HTTP/2: without the pseudo-headers, which are in
    /// `method` and `target`).
    pub headers: Vec<Header>,
    /// Decoded body (chunked framing removed).
    pub body: Bytes,
    /// Trailer fields (chunked trailers, HTTP/2 trailing HEADERS), in the order sent.
    pub trailers: Vec<Header>,
}

/// A parsed response (final, never 1xx; HTTP/1.x, or one HTTP/2 stream's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code (never 1xx).
    pub status: u16,
    /// Minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
    /// Header fields in the order sent (HTTP/2: without `:status`).
    pub headers: Vec<Header>,
    /// Decoded body (chunked framing removed).
    pub body: Bytes,
    /// Trailer fields (chunked trailers, HTTP/2 trailing HEADERS: gRPC's `grpc-status`), in the
    /// order sent.
    pub trailers: Vec<Header>,
}

/// Wire timestamps, ns since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExchangeTiming {
    /// Capture time of the request's first byte (or of where it was lost).
    pub request_first_byte: u64,
    /// Capture time of the request's last byte.
    pub request_last_byte: u64,
    /// Capture time of the response's first byte; `None` if no response was paired.
    pub response_first_byte: Option<u64>,
    /// Capture time of the response's last byte; `None` unless its body was read to the end.
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
    /// A message was cut short by the connection closing (FIN or reset, every byte before it
    /// seen): the peer stopped mid-message, the capture lost nothing.
    Incomplete,
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
            Outcome::Incomplete => "incomplete",
        }
    }
}

/// The protocol an exchange was carried in (the `protocol` label of metrics and logs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.0 or HTTP/1.1.
    #[default]
    Http1,
    /// One stream of an HTTP/2 connection (cleartext: prior knowledge or `Upgrade: h2c`).
    H2,
    /// A gRPC call: an HTTP/2 stream with `content-type: application/grpc*`.
    Grpc,
}

impl Protocol {
    /// Every protocol, in label order.
    pub const ALL: [Protocol; 3] = [Protocol::Http1, Protocol::H2, Protocol::Grpc];

    /// Stable label for metrics and logs: `http1`, `h2`, `grpc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::H2 => "h2",
            Protocol::Grpc => "grpc",
        }
    }
}

/// One request/response pair from a tapped connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    /// The connection it was seen on.
    pub flow: FlowKey,
    /// HTTP/1.x, an HTTP/2 stream, or a gRPC call.
    pub protocol: Protocol,
    /// The request; `None` only for `Unparsable`/`Gap` exchanges whose request head was lost.
    pub request: Option<HttpRequest>,
    /// The production server's final response, if one was paired with the request.
    pub prod_response: Option<HttpResponse>,
    /// Wire timestamps of both messages.
    pub timing: ExchangeTiming,
    /// Whether it was seen whole.
    pub outcome: Outcome,
}
