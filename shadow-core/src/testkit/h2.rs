//! HTTP/2 conversations for tests, benchmarks and fuzz seeds: frames of every type, header
//! blocks HPACK-encoded by a test encoder (every representation, Huffman or raw, size
//! updates), padding, priority blocks and CONTINUATION splits.
//!
//! ```
//! use shadow_core::testkit::h2::{self, Framing, H2Writer, Style};
//! let mut client = H2Writer::default();
//! let mut bytes = h2::client_preface();
//! let head = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a")];
//! bytes.extend(client.headers(1, &head, true, Style::default(), Framing::default()));
//! assert_eq!(&bytes[..3], b"PRI");
//! ```

pub use crate::http::h2::PREFACE;
use crate::http::h2::frame::{flag, kind};
pub use crate::http::h2::hpack::encoder::{Encoder, Indexing, Style};

/// One frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + payload.len());
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    v.push(kind);
    v.push(flags);
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// A SETTINGS frame.
pub fn settings(params: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in params {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    frame(kind::SETTINGS, 0, 0, &payload)
}

/// A SETTINGS acknowledgment.
pub fn settings_ack() -> Vec<u8> {
    frame(kind::SETTINGS, flag::ACK, 0, &[])
}

/// The client preface and an empty SETTINGS frame.
pub fn client_preface() -> Vec<u8> {
    let mut v = PREFACE.to_vec();
    v.extend(settings(&[]));
    v
}

/// RST_STREAM.
pub fn rst_stream(stream: u32, error_code: u32) -> Vec<u8> {
    frame(kind::RST_STREAM, 0, stream, &error_code.to_be_bytes())
}

/// GOAWAY.
pub fn goaway(last_stream: u32, error_code: u32) -> Vec<u8> {
    let mut payload = last_stream.to_be_bytes().to_vec();
    payload.extend_from_slice(&error_code.to_be_bytes());
    frame(kind::GOAWAY, 0, 0, &payload)
}

/// PING.
pub fn ping(ack: bool) -> Vec<u8> {
    frame(kind::PING, if ack { flag::ACK } else { 0 }, 0, &[7; 8])
}

/// WINDOW_UPDATE.
pub fn window_update(stream: u32, increment: u32) -> Vec<u8> {
    frame(kind::WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

/// PRIORITY.
pub fn priority(stream: u32) -> Vec<u8> {
    frame(kind::PRIORITY, 0, stream, &[0, 0, 0, 0, 15])
}

/// How a header block or a body is cut into frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Framing {
    /// PADDED with this many padding bytes (HEADERS, DATA).
    pub padding: Option<u8>,
    /// PRIORITY flag with a priority block (HEADERS).
    pub priority: bool,
    /// Header block fragments of at most this many bytes: HEADERS, then CONTINUATIONs.
    pub fragment: Option<usize>,
}

/// One direction's writer: its HPACK encoder and maximum frame size.
#[derive(Debug)]
pub struct H2Writer {
    /// The HPACK encoder (its dynamic table follows every block written).
    pub encoder: Encoder,
    /// Largest frame payload written.
    pub max_frame: usize,
}

impl Default for H2Writer {
    fn default() -> Self {
        Self {
            encoder: Encoder::default(),
            max_frame: 16_384,
        }
    }
}

impl H2Writer {
    /// HEADERS (and CONTINUATIONs) carrying `fields`, each encoded with `style`.
    pub fn headers(
        &mut self,
        stream: u32,
        fields: &[(&str, &str)],
        end_stream: bool,
        style: Style,
        framing: Framing,
    ) -> Vec<u8> {
        let block = self.encoder.block(fields, style);
        self.header_block(stream, &block, end_stream, framing)
    }

    /// HEADERS (and CONTINUATIONs) carrying an already encoded block.
    pub fn header_block(
        &self,
        stream: u32,
        block: &[u8],
        end_stream: bool,
        framing: Framing,
    ) -> Vec<u8> {
        let mut lead = Vec::new();
        let mut flags = if end_stream { flag::END_STREAM } else { 0 };
        if let Some(pad) = framing.padding {
            flags |= flag::PADDED;
            lead.push(pad);
        }
        if framing.priority {
            flags |= flag::PRIORITY;
            lead.extend_from_slice(&[0x80, 0, 0, 0, 200]);
        }
        let pad = usize::from(framing.padding.unwrap_or(0));
        let room = self.max_frame.saturating_sub(lead.len() + pad).max(1);
        let size = framing.fragment.unwrap_or(room).clamp(1, room);
        let mut fragments = block.chunks(size);
        let first = fragments.next().unwrap_or_default();
        let rest: Vec<&[u8]> = fragments.collect();
        if rest.is_empty() {
            flags |= flag::END_HEADERS;
        }
        let mut payload = lead;
        payload.extend_from_slice(first);
        payload.extend(std::iter::repeat_n(0, pad));
        let mut out = frame(kind::HEADERS, flags, stream, &payload);
        for (i, fragment) in rest.iter().enumerate() {
            let end = if i + 1 == rest.len() {
                flag::END_HEADERS
            } else {
                0
            };
            out.extend(frame(kind::CONTINUATION, end, stream, fragment));
        }
        out
    }

    /// DATA frames carrying `body` (one empty frame for an empty body), END_STREAM on the
    /// last if `end_stream`.
    pub fn data(&self, stream: u32, body: &[u8], end_stream: bool, framing: Framing) -> Vec<u8> {
        let pad = framing.padding.map(usize::from);
        let room = self
            .max_frame
            .saturating_sub(pad.map_or(0, |p| p + 1))
            .max(1);
        let chunks: Vec<&[u8]> = if body.is_empty() {
            vec![&[]]
        } else {
            body.chunks(room).collect()
        };
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            let mut flags = if last && end_stream {
                flag::END_STREAM
            } else {
                0
            };
            let mut payload = Vec::new();
            if let Some(pad) = framing.padding {
                flags |= flag::PADDED;
                payload.push(pad);
            }
            payload.extend_from_slice(chunk);
            payload.extend(std::iter::repeat_n(0, pad.unwrap_or(0)));
            out.extend(frame(kind::DATA, flags, stream, &payload));
        }
        out
    }
}

/// A gRPC length-prefixed message (uncompressed).
pub fn grpc_message(payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}
