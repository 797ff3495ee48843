//! Which decoder turns a call's messages into JSON, chosen by the method's gRPC path: a
//! preset's when it serves the method, else the user's `.proto` schema when it defines the
//! method, else the raw wire-format reading (never fails).

use super::MessageDecodeError;
use super::presets::GrpcPreset;
use super::schema::{self, ProtoSchema};
use super::wire;
use serde_json::Value;

/// How one method's messages are decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoding {
    /// By a preset, into its REST shape.
    Preset(GrpcPreset),
    /// By the user's schema, into proto3 JSON.
    Schema,
    /// Without a schema, keyed by field numbers ([`wire`]).
    Raw,
}

/// Decodes gRPC messages to JSON (see the module documentation).
#[derive(Clone, Debug, Default)]
pub struct GrpcDecoder {
    preset: Option<GrpcPreset>,
    schema: Option<ProtoSchema>,
}

impl GrpcDecoder {
    /// A decoder with a preset, a user schema, both or neither (raw only).
    pub fn new(preset: Option<GrpcPreset>, schema: Option<ProtoSchema>) -> GrpcDecoder {
        GrpcDecoder { preset, schema }
    }

    /// The preset, if any.
    pub fn preset(&self) -> Option<GrpcPreset> {
        self.preset
    }

    /// The user's schema, if any.
    pub fn schema(&self) -> Option<&ProtoSchema> {
        self.schema.as_ref()
    }

    /// How the messages of the method at `path` are decoded. Without a path (the request is
    /// unknown) a preset decodes its main method's messages; a user schema needs the path.
    pub fn decoding(&self, path: Option<&str>) -> Decoding {
        if let Some(p) = self.preset
            && path.is_none_or(|path| p.handles(path))
        {
            return Decoding::Preset(p);
        }
        match (path, &self.schema) {
            (Some(path), Some(s)) if s.method(path).is_some() => Decoding::Schema,
            _ => Decoding::Raw,
        }
    }

    /// One response message of the method at `path` as JSON.
    pub fn response_json(
        &self,
        path: Option<&str>,
        message: &[u8],
    ) -> Result<Value, MessageDecodeError> {
        self.json(path, message, false)
    }

    /// One request message of the method at `path` as JSON.
    pub fn request_json(
        &self,
        path: Option<&str>,
        message: &[u8],
    ) -> Result<Value, MessageDecodeError> {
        self.json(path, message, true)
    }

    fn json(
        &self,
        path: Option<&str>,
        message: &[u8],
        request: bool,
    ) -> Result<Value, MessageDecodeError> {
        match self.decoding(path) {
            Decoding::Preset(p) if request => p.request_json(message),
            Decoding::Preset(p) => p.response_json(path, message),
            Decoding::Schema => {
                let Some(m) = path.and_then(|p| self.schema.as_ref()?.method(p)) else {
                    return Ok(wire::to_json_or_base64(message));
                };
                let desc = if request { &m.input } else { &m.output };
                schema::decode_json(desc, message).map_err(|source| MessageDecodeError::Protobuf {
                    message_type: desc.full_name().to_string(),
                    source,
                })
            }
            Decoding::Raw => Ok(wire::to_json_or_base64(message)),
        }
    }
}
