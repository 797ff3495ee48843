//! Message bodies: Content-Length, chunked (with trailers) and close-delimited, decoded from
//! the front of a stream buffer with a size cap.
//!
//! Content-Length bodies are split off the buffer without copying once they are complete. A
//! chunked body is decoded by copying the chunk data; its framing (sizes, extensions,
//! trailers) stays in the buffer until the body ends. A body over the cap is consumed and
//! counted but not kept.

use super::head::{BodyKind, MAX_SIZE};
use super::stats::Refusal;
use bytes::{Buf, Bytes, BytesMut};

/// Longest chunk-size line or trailer section accepted.
const MAX_LINE: usize = 64 * 1024;

/// A complete body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Body {
    /// Decoded bytes; `None` if the body exceeded the cap.
    pub decoded: Option<Bytes>,
    /// Decoded length, also when over the cap.
    pub len: u64,
}

/// The bytes are not a valid body, and why ([`Refusal::InvalidChunk`] or
/// [`Refusal::SizeOverflow`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BodyError(pub Refusal);

/// Why a chunk-size line was refused: a size of 2^63 or more (also one too large for
/// `httparse`), or anything else that is not a chunk size.
fn chunk_size_error(line: &[u8]) -> BodyError {
    let digits: Vec<u8> = line
        .iter()
        .copied()
        .take_while(u8::is_ascii_hexdigit)
        .skip_while(|&d| d == b'0')
        .collect();
    if digits.len() > 16 {
        BodyError(Refusal::SizeOverflow)
    } else {
        BodyError(Refusal::InvalidChunk)
    }
}

#[derive(Debug)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// Decoding state of one body.
#[derive(Debug)]
pub(crate) struct BodyReader {
    kind: BodyKind,
    cap: u64,
    /// Decoded bytes so far (chunked) or consumed so far (over the cap).
    len: u64,
    /// Over the cap: bytes are consumed and dropped.
    over: bool,
    /// Chunked: bytes at the front of the buffer already parsed, taken off when the body ends
    /// (or as they are parsed once over the cap).
    pos: usize,
    chunk: Chunk,
    decoded: BytesMut,
}

impl BodyReader {
    /// A reader for a body framed as `kind`, keeping at most `cap` decoded bytes.
    pub fn new(kind: BodyKind, cap: usize) -> Self {
        let cap = cap as u64;
        Self {
            kind,
            cap,
            len: 0,
            over: matches!(kind, BodyKind::Length(n) if n > cap),
            pos: 0,
            chunk: Chunk::Size,
            decoded: BytesMut::new(),
        }
    }

    /// Decoded bytes held (a chunked body's), by allocation.
    pub fn held_bytes(&self) -> usize {
        self.decoded.capacity()
    }

    /// Consumes body bytes from the front of `buf`. Returns the body once complete.
    pub fn feed(&mut self, buf: &mut BytesMut) -> Result<Option<Body>, BodyError> {
        match self.kind {
            BodyKind::Empty => Ok(Some(Body {
                decoded: Some(Bytes::new()),
                len: 0,
            })),
            BodyKind::Length(n) => Ok(self.feed_length(n, buf)),
            BodyKind::CloseDelimited => {
                if !self.over && buf.len() as u64 > self.cap {
                    self.over = true;
                }
                if self.over {
                    self.len += buf.len() as u64;
                    buf.clear();
                }
                Ok(None)
            }
            BodyKind::Chunked => self.feed_chunked(buf),
        }
    }

    /// The connection closed: a close-delimited body ends here; any other unfinished body
    /// is incomplete (`None`).
    pub fn finish_at_close(&mut self, buf: &mut BytesMut) -> Option<Body> {
        if self.kind != BodyKind::CloseDelimited {
            return None;
        }
        if self.over {
            self.len += buf.len() as u64;
            buf.clear();
            return Some(Body {
                decoded: None,
                len: self.len,
            });
        }
        let body = buf.split().freeze();
        Some(Body {
            len: body.len() as u64,
            decoded: Some(body),
        })
    }

    fn feed_length(&mut self, n: u64, buf: &mut BytesMut) -> Option<Body> {
        if self.over {
            let take = (n - self.len).min(buf.len() as u64) as usize;
            buf.advance(take);
            self.len += take as u64;
            return (self.len == n).then_some(Body {
                decoded: None,
                len: n,
            });
        }
        let n_usize = n as usize;
        if buf.len() >= n_usize {
            let body = buf.split_to(n_usize).freeze();
            return Some(Body {
                decoded: Some(body),
                len: n,
            });
        }
        // Room for the whole body now, so the buffer grows once.
        buf.reserve(n_usize - buf.len());
        None
    }

    fn feed_chunked(&mut self, buf: &mut BytesMut) -> Result<Option<Body>, BodyError> {
        let result = self.parse_chunks(buf);
        if self.over && self.pos > 0 {
            buf.advance(self.pos);
            self.pos = 0;
        }
        match result? {
            false => Ok(None),
            true if self.over => Ok(Some(Body {
                decoded: None,
                len: self.len,
            })),
            true => {
                buf.advance(self.pos);
                self.pos = 0;
                let decoded = std::mem::take(&mut self.decoded).freeze();
                Ok(Some(Body {
                    len: decoded.len() as u64,
                    decoded: Some(decoded),
                }))
            }
        }
    }

    /// Advances through chunks; true when the last chunk and the trailers were read.
    fn parse_chunks(&mut self, buf: &mut BytesMut) -> Result<bool, BodyError> {
        loop {
            let rest = &buf[self.pos..];
            match self.chunk {
                Chunk::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((_, size))) if size > MAX_SIZE => {
                        return Err(BodyError(Refusal::SizeOverflow));
                    }
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.pos += used;
                        self.chunk = if size == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if rest.len() <= MAX_LINE => return Ok(false),
                    _ => return Err(chunk_size_error(rest)),
                },
                Chunk::Data(remaining) => {
                    let take = remaining.min(rest.len() as u64) as usize;
                    if take == 0 {
                        return Ok(false);
                    }
                    // The framing stays in the buffer until the body ends: bound it (tiny
                    // chunks with long extensions could otherwise pile up far beyond the
                    // decoded cap).
                    if !self.over && self.pos as u64 > self.cap.saturating_mul(2) + MAX_LINE as u64
                    {
                        self.over = true;
                        self.decoded = BytesMut::new();
                    }
                    if !self.over && self.len + take as u64 > self.cap {
                        self.over = true;
                        self.decoded = BytesMut::new();
                    }
                    if !self.over {
                        self.decoded.extend_from_slice(&rest[..take]);
                    }
                    self.len += take as u64;
                    self.pos += take;
                    self.chunk = if take as u64 == remaining {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(remaining - take as u64)
                    };
                }
                Chunk::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        self.pos += 2;
                        self.chunk = Chunk::Size;
                    }
                    [b'\n', ..] => {
                        self.pos += 1;
                        self.chunk = Chunk::Size;
                    }
                    [] | [b'\r'] => return Ok(false),
                    _ => return Err(BodyError(Refusal::InvalidChunk)),
                },
                Chunk::Trailers => {
                    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                        return if rest.len() <= MAX_LINE {
                            Ok(false)
                        } else {
                            Err(BodyError(Refusal::InvalidChunk))
                        };
                    };
                    let line = &rest[..nl];
                    self.pos += nl + 1;
                    if line.is_empty() || line == b"\r" {
                        return Ok(true);
                    }
                    if !line.contains(&b':') {
                        return Err(BodyError(Refusal::InvalidChunk));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in pieces of `step` bytes until the body is complete; returns it and the
    /// bytes of the last piece fed that follow it.
    fn feed_in_steps(
        kind: BodyKind,
        cap: usize,
        wire: &[u8],
        step: usize,
    ) -> (Option<Body>, Vec<u8>) {
        let mut reader = BodyReader::new(kind, cap);
        let mut buf = BytesMut::new();
        for piece in wire.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            if let Some(body) = reader.feed(&mut buf).unwrap() {
                return (Some(body), buf.to_vec());
            }
        }
        (None, buf.to_vec())
    }

    #[test]
    fn content_length_split_exactly() {
        for step in [1, 3, 100] {
            let (body, rest) = feed_in_steps(BodyKind::Length(5), 100, b"helloGET", step);
            let body = body.unwrap();
            assert_eq!(body.decoded.as_deref(), Some(&b"hello"[..]));
            assert_eq!(body.len, 5);
            assert!(
                b"GET".starts_with(&rest) || rest == b"GET",
                "step {step}: {rest:?}"
            );
        }
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 9\r\n\r\nNEXT";
        for step in [1, 2, 7, 1000] {
            let mut reader = BodyReader::new(BodyKind::Chunked, 1 << 20);
            let mut buf = BytesMut::new();
            let mut got = None;
            for piece in wire.chunks(step) {
                buf.extend_from_slice(piece);
                if got.is_none() {
                    got = reader.feed(&mut buf).unwrap();
                }
            }
            let body = got.unwrap();
            assert_eq!(body.decoded.as_deref(), Some(&b"hello world"[..]));
            assert_eq!(body.len, 11);
            assert_eq!(&buf[..], b"NEXT");
        }
    }

    #[test]
    fn over_cap_is_consumed_and_counted() {
        let (body, rest) = feed_in_steps(BodyKind::Length(10), 4, b"0123456789X", 3);
        let body = body.unwrap();
        assert_eq!(body.decoded, None);
        assert_eq!(body.len, 10);
        assert!(rest.is_empty() || rest == b"X");

        let wire = b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n";
        let mut reader = BodyReader::new(BodyKind::Chunked, 4);
        let mut buf = BytesMut::from(&wire[..]);
        let body = reader.feed(&mut buf).unwrap().unwrap();
        assert_eq!((body.decoded, body.len), (None, 6));
        assert!(buf.is_empty());
    }

    #[test]
    fn invalid_chunked_is_an_error() {
        for wire in [&b"zz\r\n"[..], b"3\r\nabcX", b"0\r\nno colon\r\n\r\n"] {
            let mut reader = BodyReader::new(BodyKind::Chunked, 100);
            let mut buf = BytesMut::from(wire);
            let got = reader.feed(&mut buf);
            assert_eq!(got, Err(BodyError(Refusal::InvalidChunk)), "{wire:?}");
        }
        // Sizes of 2^63 and more, also beyond 2^64 (zeek's chunk_2pow64_overflow).
        for wire in [
            &b"8000000000000000\r\n"[..],
            b"ffffffffffffffff\r\n",
            b"10000000000000000\r\n",
        ] {
            let mut reader = BodyReader::new(BodyKind::Chunked, 100);
            let mut buf = BytesMut::from(wire);
            let got = reader.feed(&mut buf);
            assert_eq!(got, Err(BodyError(Refusal::SizeOverflow)), "{wire:?}");
        }
    }

    #[test]
    fn close_delimited_ends_at_close() {
        let mut reader = BodyReader::new(BodyKind::CloseDelimited, 100);
        let mut buf = BytesMut::from(&b"partial"[..]);
        assert_eq!(reader.feed(&mut buf), Ok(None));
        buf.extend_from_slice(b" body");
        let body = reader.finish_at_close(&mut buf).unwrap();
        assert_eq!(body.decoded.as_deref(), Some(&b"partial body"[..]));
    }
}
