//! HTTP/2 frames written byte by byte (RFC 9113 framing, RFC 7541 HPACK without Huffman), for
//! scripted conversations no library would hold: a connection the tap joins after its HPACK
//! tables filled, streams reset by either side, a `GOAWAY` that leaves a stream unanswered.

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// `RST_STREAM` / `GOAWAY` error codes.
pub mod code {
    /// Graceful.
    pub const NO_ERROR: u32 = 0x0;
    /// The server did not process the stream.
    pub const REFUSED_STREAM: u32 = 0x7;
    /// The stream is no longer needed.
    pub const CANCEL: u32 = 0x8;
}

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

/// One frame: 9-byte header and `payload`.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// `SETTINGS` with `(identifier, value)` pairs.
pub fn settings(values: &[(u16, u32)]) -> Vec<u8> {
    let payload: Vec<u8> = values
        .iter()
        .flat_map(|(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes()))
        .collect();
    frame(SETTINGS, 0, 0, &payload)
}

/// `SETTINGS` acknowledgement.
pub fn settings_ack() -> Vec<u8> {
    frame(SETTINGS, ACK, 0, &[])
}

/// `HEADERS` carrying the whole `block` (`END_HEADERS`), ending the stream when asked.
pub fn headers(stream: u32, block: &Hpack, end_stream: bool) -> Vec<u8> {
    let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
    frame(HEADERS, flags, stream, &block.0)
}

/// `DATA`, ending the stream when asked.
pub fn data(stream: u32, bytes: &[u8], end_stream: bool) -> Vec<u8> {
    frame(DATA, if end_stream { END_STREAM } else { 0 }, stream, bytes)
}

/// `RST_STREAM` with an error code.
pub fn rst_stream(stream: u32, error: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &error.to_be_bytes())
}

/// `GOAWAY`: streams above `last_stream` were not processed.
pub fn goaway(last_stream: u32, error: u32) -> Vec<u8> {
    let mut payload = (last_stream & 0x7fff_ffff).to_be_bytes().to_vec();
    payload.extend_from_slice(&error.to_be_bytes());
    frame(GOAWAY, 0, 0, &payload)
}

/// An HPACK header block, field by field.
#[derive(Clone, Debug, Default)]
pub struct Hpack(pub Vec<u8>);

impl Hpack {
    /// An empty block.
    pub fn new() -> Self {
        Self::default()
    }

    /// Indexed field (static table 1-61, dynamic table from 62).
    pub fn indexed(mut self, index: usize) -> Self {
        integer(&mut self.0, 7, 0x80, index);
        self
    }

    /// Literal with incremental indexing, name by index: added to the dynamic table.
    pub fn indexing_name_ref(mut self, name_index: usize, value: &str) -> Self {
        integer(&mut self.0, 6, 0x40, name_index);
        string(&mut self.0, value);
        self
    }

    /// Literal with incremental indexing, new name: added to the dynamic table.
    pub fn indexing(mut self, name: &str, value: &str) -> Self {
        self.0.push(0x40);
        string(&mut self.0, name);
        string(&mut self.0, value);
        self
    }

    /// Literal without indexing, new name: leaves the dynamic table alone.
    pub fn literal(mut self, name: &str, value: &str) -> Self {
        self.0.push(0x00);
        string(&mut self.0, name);
        string(&mut self.0, value);
        self
    }
}

/// RFC 7541 §5.1 integer with an `n`-bit prefix, OR-ed into `first`.
fn integer(out: &mut Vec<u8>, n: u32, first: u8, value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// RFC 7541 §5.2 string literal, not Huffman-coded.
fn string(out: &mut Vec<u8>, s: &str) {
    integer(out, 7, 0x00, s.len());
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_rfc_7541_examples() {
        // C.1.1: 10 with a 5-bit prefix; C.1.2: 1337 with a 5-bit prefix.
        let mut out = Vec::new();
        integer(&mut out, 5, 0, 10);
        assert_eq!(out, [0x0a]);
        out.clear();
        integer(&mut out, 5, 0, 1337);
        assert_eq!(out, [0x1f, 0x9a, 0x0a]);
    }

    #[test]
    fn literal_and_frame_layout() {
        // C.2.1: custom-key: custom-header, with incremental indexing.
        let block = Hpack::new().indexing("custom-key", "custom-header");
        let mut want = vec![0x40, 0x0a];
        want.extend_from_slice(b"custom-key");
        want.push(0x0d);
        want.extend_from_slice(b"custom-header");
        assert_eq!(block.0, want);
        let f = headers(3, &Hpack::new().indexed(2), true);
        assert_eq!(
            f,
            [0, 0, 1, HEADERS, END_HEADERS | END_STREAM, 0, 0, 0, 3, 0x82]
        );
        assert_eq!(goaway(7, code::NO_ERROR)[9..], [0, 0, 0, 7, 0, 0, 0, 0]);
    }
}
