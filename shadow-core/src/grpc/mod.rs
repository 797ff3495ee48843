//! gRPC on top of one HTTP/2 stream: the messages in a body, their per-message compression,
//! the call's status and deadline, and protobuf messages decoded to JSON so that the JSON diff
//! and the prediction presets apply to gRPC answers unchanged.
//!
//! A gRPC body (the stream's DATA bytes) is a sequence of length-prefixed messages: a 1-byte
//! compressed flag, a 4-byte big-endian length, then that many bytes, compressed with the
//! `grpc-encoding` of the message's side when the flag is 1 ([`split_messages`],
//! [`decode_messages`]). Everything here is bounded ([`FramingLimits`]) and a body that cannot
//! be read is a [`GrpcError`] that maps to the same [`DecodeFailure`] labels as HTTP bodies.
//!
//! - [`status`]: `grpc-status` codes, their names and classes, `grpc-message`, `grpc-timeout`.
//! - [`wire`]: the protobuf wire format without a schema → JSON keyed by field numbers.
//! - [`schema`]: `.proto` sources compiled at run time (protox, pure Rust) → typed JSON.
//! - [`presets`]: the Open Inference Protocol's `ModelInfer` and TF Serving's `Predict`
//!   responses in the JSON shape of their REST APIs.
//! - [`decoder`]: which of those decodes a call's messages, chosen by its method path.

pub mod decoder;
pub mod presets;
pub mod schema;
pub mod status;
pub mod wire;

pub use decoder::{Decoding, GrpcDecoder};
pub use presets::GrpcPreset;
pub use schema::{ProtoFile, ProtoSchema, SchemaError};
pub use status::{GrpcClass, GrpcCode, GrpcStatus, StatusSource};

use crate::encoding::{Coding, DecodeError, DecodeFailure, decode};
use crate::http::Header;
use bytes::Bytes;

/// Length of a message prefix: the compressed flag and the 4-byte length.
pub const PREFIX_LEN: usize = 5;

/// Whether a message's headers say it is gRPC (`content-type: application/grpc`, with or
/// without a `+proto` / `+json` suffix or parameters).
pub fn is_grpc(headers: &[Header]) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-type"))
        .any(|h| {
            let v = h.value.as_ref();
            v.len() >= 16 && v[..16].eq_ignore_ascii_case(b"application/grpc")
        })
}

/// Caps on reading one body's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramingLimits {
    /// The most messages read from one body (a server-streaming answer has many).
    pub max_messages: usize,
    /// The most bytes of all messages together, after decompression (as a rule the side's
    /// body cap); one message over it is too large as well.
    pub max_decoded_bytes: usize,
}

impl Default for FramingLimits {
    /// 4096 messages, 16 MiB (the daemon's default body cap).
    fn default() -> Self {
        FramingLimits {
            max_messages: 4096,
            max_decoded_bytes: 16 << 20,
        }
    }
}

/// One length-prefixed message as framed in the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcMessage {
    /// The compressed flag: the payload is coded with the side's `grpc-encoding`.
    pub compressed: bool,
    /// The payload as sent.
    pub payload: Bytes,
}

/// Why a gRPC body's messages could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrpcError {
    /// The body ends inside a message prefix or payload.
    #[error(
        "the gRPC body ends inside a message: {needed} more bytes announced at offset {offset}"
    )]
    Cut {
        /// Where the message starts.
        offset: usize,
        /// How many bytes it still needed.
        needed: usize,
    },
    /// A compressed flag other than 0 or 1.
    #[error("gRPC message at offset {offset} has compressed flag {flag} (only 0 and 1 exist)")]
    BadFlag {
        /// Where the message starts.
        offset: usize,
        /// The flag byte.
        flag: u8,
    },
    /// More messages than [`FramingLimits::max_messages`].
    #[error("the gRPC body has more than {limit} messages")]
    TooManyMessages {
        /// The cap.
        limit: usize,
    },
    /// The messages (decompressed) exceed [`FramingLimits::max_decoded_bytes`].
    #[error("the gRPC messages exceed the cap of {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// A message is flagged compressed but the side names no `grpc-encoding` (or `identity`).
    #[error("a gRPC message is flagged compressed but grpc-encoding names no compression")]
    CompressedWithoutEncoding,
    /// A compressed message could not be decompressed (unknown encoding, corrupt data).
    #[error("a gRPC message could not be decompressed: {0}")]
    Decode(#[source] DecodeError),
}

impl GrpcError {
    /// The decode-failure label this error is counted under
    /// (`shadowtap_body_decode_failures_total{reason}`).
    pub fn failure(&self) -> DecodeFailure {
        match self {
            GrpcError::Cut { .. } | GrpcError::BadFlag { .. } => DecodeFailure::Corrupt,
            GrpcError::CompressedWithoutEncoding => DecodeFailure::Corrupt,
            GrpcError::TooManyMessages { .. } | GrpcError::TooLarge { .. } => {
                DecodeFailure::Truncated
            }
            GrpcError::Decode(e) => e.failure(),
        }
    }
}

/// Why one message could not be decoded by its schema (a preset's or the user's).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MessageDecodeError {
    /// The bytes are not a valid message of the type the method says.
    #[error("the message is not a valid {message_type}: {source}")]
    Protobuf {
        /// The expected type's full name.
        message_type: String,
        /// What the decoder said.
        #[source]
        source: prost::DecodeError,
    },
    /// A tensor's contents do not fit its datatype or shape.
    #[error("tensor contents: {0}")]
    Tensor(String),
    /// The message expands to more tensor elements than [`presets::MAX_ELEMENTS`].
    #[error("the message expands to more than {limit} tensor elements")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
}

impl MessageDecodeError {
    /// The decode-failure label this error is counted under.
    pub fn failure(&self) -> DecodeFailure {
        match self {
            MessageDecodeError::Protobuf { .. } | MessageDecodeError::Tensor(_) => {
                DecodeFailure::Corrupt
            }
            MessageDecodeError::TooLarge { .. } => DecodeFailure::Truncated,
        }
    }
}

/// The messages framed in `body`, payloads as sent (still compressed where flagged). An empty
/// body has no messages.
pub fn split_messages(body: &Bytes, limits: FramingLimits) -> Result<Vec<GrpcMessage>, GrpcError> {
    let mut messages = Vec::new();
    let mut offset = 0;
    let mut total = 0usize;
    while offset < body.len() {
        let Some(&[flag, l0, l1, l2, l3]) = body.get(offset..offset + PREFIX_LEN) else {
            return Err(GrpcError::Cut {
                offset,
                needed: offset + PREFIX_LEN - body.len(),
            });
        };
        if flag > 1 {
            return Err(GrpcError::BadFlag { offset, flag });
        }
        let len = u32::from_be_bytes([l0, l1, l2, l3]);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if messages.len() == limits.max_messages {
            return Err(GrpcError::TooManyMessages {
                limit: limits.max_messages,
            });
        }
        if flag == 0 {
            // Compressed payloads are measured once decompressed (`decode_messages`).
            total = total.saturating_add(len);
            if total > limits.max_decoded_bytes {
                return Err(GrpcError::TooLarge {
                    limit: limits.max_decoded_bytes,
                });
            }
        }
        let start = offset + PREFIX_LEN;
        let end = start.saturating_add(len);
        if end > body.len() {
            return Err(GrpcError::Cut {
                offset,
                needed: end - body.len(),
            });
        }
        messages.push(GrpcMessage {
            compressed: flag == 1,
            payload: body.slice(start..end),
        });
        offset = end;
    }
    Ok(messages)
}

/// The compression `grpc-encoding` names: `Ok(None)` for none or `identity`, an error for a
/// name that cannot be decoded. gzip and deflate are gRPC's own; zstd and br (which some
/// servers offer) are accepted too.
pub fn message_encoding(headers: &[Header]) -> Result<Option<Coding>, GrpcError> {
    match headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("grpc-encoding"))
    {
        None => Ok(None),
        Some(h) => Coding::parse(&String::from_utf8_lossy(&h.value)).map_err(GrpcError::Decode),
    }
}

/// The messages of a gRPC body, each decompressed with the side's `grpc-encoding` (read from
/// `headers`) when it is flagged compressed. The encoding is only looked at when a message is
/// compressed: an unknown `grpc-encoding` on uncompressed messages is no error.
pub fn decode_messages(
    headers: &[Header],
    body: &Bytes,
    limits: FramingLimits,
) -> Result<Vec<Bytes>, GrpcError> {
    let messages = split_messages(body, limits)?;
    let mut out = Vec::with_capacity(messages.len());
    let mut total = 0usize;
    for m in messages {
        let payload = if m.compressed {
            let coding = message_encoding(headers)?.ok_or(GrpcError::CompressedWithoutEncoding)?;
            let room = limits.max_decoded_bytes.saturating_sub(total);
            decode(&[coding], m.payload, room).map_err(|e| match e {
                DecodeError::TooLarge { .. } => GrpcError::TooLarge {
                    limit: limits.max_decoded_bytes,
                },
                other => GrpcError::Decode(other),
            })?
        } else {
            m.payload
        };
        total = total.saturating_add(payload.len());
        if total > limits.max_decoded_bytes {
            return Err(GrpcError::TooLarge {
                limit: limits.max_decoded_bytes,
            });
        }
        out.push(payload);
    }
    Ok(out)
}

/// One message framed for a gRPC body: the flag, the big-endian length, the payload (which
/// the caller has compressed when `compressed` is set). Payloads over 4 GiB cannot be framed.
pub fn encode_message(payload: &[u8], compressed: bool) -> Option<Vec<u8>> {
    let len = u32::try_from(payload.len()).ok()?;
    let mut out = Vec::with_capacity(PREFIX_LEN + payload.len());
    out.push(u8::from(compressed));
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

#[cfg(test)]
mod tests;
