//! Content codings (RFC 9110 §8.4): response bodies are decoded before they are compared, so
//! that a gzip answer and an identity answer with the same JSON agree.
//!
//! `Content-Encoding` lists the codings in the order they were applied; [`decode_body`] undoes
//! them last first. Supported: `gzip` / `x-gzip` (one or more members), `deflate` (zlib-wrapped
//! as RFC 9110 says, or the raw deflate some servers send), `br`, `zstd` (one or more frames,
//! checksums verified, windows up to 8 MiB as RFC 9659 allows) and `identity`. All decoders are
//! pure Rust.
//!
//! The decoded size is capped: decoding stops one byte past the cap and reports
//! [`DecodeError::TooLarge`], so a small compressed body can never expand without bound. Corrupt
//! or cut-short data is a [`DecodeError::Corrupt`], never a panic, and an unknown coding is
//! [`DecodeError::Unsupported`]. Each maps to a [`DecodeFailure`] label.

use crate::http::Header;
use bytes::Bytes;
use serde::Serialize;
use std::fmt;
use std::io::Read;

/// One content coding that can be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Coding {
    /// `gzip` or `x-gzip` (RFC 1952).
    Gzip,
    /// `deflate`: a zlib stream (RFC 1950), or raw deflate (RFC 1951) when it has no zlib header.
    Deflate,
    /// `br` (RFC 7932).
    Brotli,
    /// `zstd` (RFC 8878).
    Zstd,
}

impl Coding {
    /// The coding named by a `Content-Encoding` token (case-insensitive); `Ok(None)` for
    /// `identity`, `Err` with the token for a coding that cannot be decoded.
    pub fn parse(token: &str) -> Result<Option<Coding>, DecodeError> {
        let lower = token.trim().to_ascii_lowercase();
        match lower.as_str() {
            "identity" => Ok(None),
            "gzip" | "x-gzip" => Ok(Some(Coding::Gzip)),
            "deflate" => Ok(Some(Coding::Deflate)),
            "br" => Ok(Some(Coding::Brotli)),
            "zstd" => Ok(Some(Coding::Zstd)),
            _ => Err(DecodeError::Unsupported(token.trim().to_string())),
        }
    }

    /// The token as written in `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Coding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a body could not be decoded (label of `shadowtap_body_decode_failures_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecodeFailure {
    /// The decoded body would exceed the body cap.
    Truncated,
    /// The data is not valid for its coding (or was cut short).
    Corrupt,
    /// `Content-Encoding` names a coding shadowtap cannot decode.
    Unsupported,
}

impl DecodeFailure {
    /// Every failure, for zero-initialised metrics.
    pub const ALL: [DecodeFailure; 3] = [
        DecodeFailure::Truncated,
        DecodeFailure::Corrupt,
        DecodeFailure::Unsupported,
    ];

    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeFailure::Truncated => "truncated",
            DecodeFailure::Corrupt => "corrupt",
            DecodeFailure::Unsupported => "unsupported",
        }
    }
}

/// A body that could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Decoding would produce more than `limit` bytes.
    #[error("the decoded body exceeds the cap of {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// The data is not valid for `coding`.
    #[error("the {coding} data is corrupt: {message}")]
    Corrupt {
        /// The coding being undone.
        coding: Coding,
        /// What the decoder said.
        message: String,
    },
    /// A coding that cannot be decoded.
    #[error("the content coding `{0}` is not supported (gzip, deflate, br, zstd are)")]
    Unsupported(String),
}

impl DecodeError {
    /// The metric label of this failure.
    pub fn failure(&self) -> DecodeFailure {
        match self {
            DecodeError::TooLarge { .. } => DecodeFailure::Truncated,
            DecodeError::Corrupt { .. } => DecodeFailure::Corrupt,
            DecodeError::Unsupported(_) => DecodeFailure::Unsupported,
        }
    }
}

/// The codings of every `Content-Encoding` header of a message, in the order applied
/// (`identity` left out).
pub fn content_codings(headers: &[Header]) -> Result<Vec<Coding>, DecodeError> {
    let mut codings = Vec::new();
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-encoding"))
    {
        let value = String::from_utf8_lossy(&h.value);
        for token in value.split(',').filter(|t| !t.trim().is_empty()) {
            codings.extend(Coding::parse(token)?);
        }
    }
    Ok(codings)
}

/// The body of a message with its `Content-Encoding` undone, at most `limit` bytes. An empty
/// body (HEAD, 204, 304) is returned as is.
pub fn decode_body(headers: &[Header], body: &Bytes, limit: usize) -> Result<Bytes, DecodeError> {
    if body.is_empty() {
        return Ok(body.clone());
    }
    let codings = content_codings(headers)?;
    decode(&codings, body.clone(), limit)
}

/// `body` with `codings` (in the order they were applied) undone, at most `limit` bytes.
pub fn decode(codings: &[Coding], body: Bytes, limit: usize) -> Result<Bytes, DecodeError> {
    let mut current = body;
    for &coding in codings.iter().rev() {
        current = Bytes::from(decode_one(coding, &current, limit)?);
    }
    if current.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(current)
}

fn decode_one(coding: Coding, data: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    match coding {
        Coding::Gzip => read_capped(coding, flate2::read::MultiGzDecoder::new(data), limit),
        Coding::Deflate => inflate(data, has_zlib_header(data), limit),
        Coding::Brotli => read_capped(
            coding,
            brotli_decompressor::Decompressor::new(data, 8192),
            limit,
        ),
        Coding::Zstd => zstd_frames(data, limit),
    }
}

/// Reads `reader` to its end, failing one byte past `limit`.
fn read_capped(coding: Coding, reader: impl Read, limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(coding, e))?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(out)
}

fn corrupt(coding: Coding, e: impl fmt::Display) -> DecodeError {
    DecodeError::Corrupt {
        coding,
        message: e.to_string(),
    }
}

/// A zlib header (RFC 1950 §2.2): deflate method, a window of at most 32 KiB and a check value.
fn has_zlib_header(data: &[u8]) -> bool {
    match data {
        [cmf, flg, ..] => {
            cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0
        }
        _ => false,
    }
}

/// A deflate stream, which must reach its final block (and, zlib-wrapped, its checksum). Raw
/// deflate has no trailer to check, so a reader could end quietly at the end of a cut-short
/// stream: the state machine is driven here and must report the end of the stream.
fn inflate(data: &[u8], zlib: bool, limit: usize) -> Result<Vec<u8>, DecodeError> {
    use flate2::{Decompress, FlushDecompress, Status};
    let mut inflater = Decompress::new(zlib);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let (in_before, out_before) = (inflater.total_in(), inflater.total_out());
        let input = usize::try_from(in_before)
            .ok()
            .and_then(|at| data.get(at..))
            .unwrap_or_default();
        let status = inflater
            .decompress(input, &mut buf, FlushDecompress::None)
            .map_err(|e| corrupt(Coding::Deflate, e))?;
        let produced = usize::try_from(inflater.total_out() - out_before).unwrap_or(usize::MAX);
        out.extend_from_slice(buf.get(..produced).unwrap_or_default());
        if out.len() > limit {
            return Err(DecodeError::TooLarge { limit });
        }
        if status == Status::StreamEnd {
            return Ok(out);
        }
        if produced == 0 && inflater.total_in() == in_before {
            return Err(corrupt(
                Coding::Deflate,
                "the stream ends before its last block",
            ));
        }
    }
}

/// Magic numbers of a zstd frame and of skippable frames (RFC 8878 §3.1).
const ZSTD_MAGIC: u32 = 0xFD2F_B528;
/// The largest zstd window accepted: RFC 9659 lets HTTP decoders refuse windows over 8 MiB, and
/// the decoder allocates the window a frame header declares, however short the body.
const ZSTD_MAX_WINDOW: u64 = 8 << 20;
const ZSTD_SKIPPABLE: std::ops::RangeInclusive<u32> = 0x184D_2A50..=0x184D_2A5F;

/// One or more zstd frames (skippable frames skipped), each checksum verified when present.
fn zstd_frames(mut data: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let magic = data
            .get(..4)
            .map(|m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        match magic {
            Some(m) if ZSTD_SKIPPABLE.contains(&m) => {
                let len = data
                    .get(4..8)
                    .map(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize)
                    .ok_or_else(|| corrupt(Coding::Zstd, "a skippable frame is cut short"))?;
                data = data
                    .get(8usize.saturating_add(len)..)
                    .ok_or_else(|| corrupt(Coding::Zstd, "a skippable frame is cut short"))?;
            }
            Some(ZSTD_MAGIC) => {
                let room = limit - out.len();
                let mut decoder = ruzstd::decoding::StreamingDecoder::new_with_max_window_size(
                    &mut data,
                    ZSTD_MAX_WINDOW,
                )
                .map_err(|e| corrupt(Coding::Zstd, e))?;
                let frame = read_capped(Coding::Zstd, &mut decoder, room).map_err(|e| match e {
                    DecodeError::TooLarge { .. } => DecodeError::TooLarge { limit },
                    other => other,
                })?;
                let frame_decoder = decoder.into_frame_decoder();
                if !frame_decoder.is_finished() {
                    return Err(corrupt(
                        Coding::Zstd,
                        "the frame ends before its last block",
                    ));
                }
                if let (Some(expected), Some(actual)) = (
                    frame_decoder.get_checksum_from_data(),
                    frame_decoder.get_calculated_checksum(),
                ) && expected != actual
                {
                    return Err(corrupt(Coding::Zstd, "frame checksum mismatch"));
                }
                out.extend_from_slice(&frame);
            }
            _ => return Err(corrupt(Coding::Zstd, "not a zstd frame (bad magic number)")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn header(value: &str) -> Vec<Header> {
        vec![Header {
            name: "Content-Encoding".into(),
            value: Bytes::from(value.to_string()),
        }]
    }

    /// A JSON-ish body large enough to compress well.
    fn sample(len: usize) -> Vec<u8> {
        let mut s = String::from("{\"outputs\":[");
        let mut i = 0u64;
        while s.len() < len {
            s.push_str(&format!("{{\"data\":[{}, {}]}},", i % 3, i * 7 % 11));
            i += 1;
        }
        s.truncate(len);
        s.into_bytes()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn brotli(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            w.write_all(data).unwrap();
        }
        out
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    /// An encoder of one coding.
    type Encoder = fn(&[u8]) -> Vec<u8>;

    /// Every coding with its encoder and `Content-Encoding` value.
    fn encoders() -> Vec<(&'static str, Encoder)> {
        vec![
            ("gzip", gzip),
            ("x-gzip", gzip),
            ("deflate", zlib),
            ("deflate", raw_deflate),
            ("br", brotli),
            ("zstd", zstd),
        ]
    }

    #[test]
    fn every_coding_round_trips() {
        let body = sample(20_000);
        for (name, encode) in encoders() {
            let wire = Bytes::from(encode(&body));
            assert!(wire.len() < body.len() / 2, "{name} compresses");
            let got = decode_body(&header(name), &wire, 1 << 20).unwrap();
            assert_eq!(got, body, "{name}");
        }
    }

    #[test]
    fn tokens_are_case_insensitive_and_identity_is_nothing() {
        let body = sample(1000);
        let wire = Bytes::from(gzip(&body));
        assert_eq!(decode_body(&header(" GZip "), &wire, 4096).unwrap(), body);
        let plain = Bytes::from(body.clone());
        assert_eq!(
            decode_body(&header("identity"), &plain, 4096).unwrap(),
            body
        );
        assert_eq!(decode_body(&[], &plain, 4096).unwrap(), body);
        assert_eq!(content_codings(&header("")).unwrap(), vec![]);
    }

    #[test]
    fn stacked_codings_are_undone_last_first() {
        let body = sample(5000);
        // Applied gzip first, then br: `Content-Encoding: gzip, br`.
        let wire = Bytes::from(brotli(&gzip(&body)));
        assert_eq!(
            decode_body(&header("gzip, br"), &wire, 1 << 20).unwrap(),
            body
        );
        // The same codings over two header lines.
        let mut two = header("gzip");
        two.extend(header("br"));
        assert_eq!(decode_body(&two, &wire, 1 << 20).unwrap(), body);
        assert!(decode_body(&header("br, gzip"), &wire, 1 << 20).is_err());
    }

    #[test]
    fn several_gzip_members_and_zstd_frames_are_one_body() {
        let (a, b) = (sample(3000), sample(700));
        let whole: Vec<u8> = a.iter().chain(&b).copied().collect();
        let members: Vec<u8> = gzip(&a).into_iter().chain(gzip(&b)).collect();
        assert_eq!(
            decode_body(&header("gzip"), &Bytes::from(members), 1 << 20).unwrap(),
            whole
        );
        // A skippable frame between two frames.
        let mut frames = zstd(&a);
        frames.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
        frames.extend_from_slice(&3u32.to_le_bytes());
        frames.extend_from_slice(b"xyz");
        frames.extend(zstd(&b));
        assert_eq!(
            decode_body(&header("zstd"), &Bytes::from(frames), 1 << 20).unwrap(),
            whole
        );
    }

    #[test]
    fn the_decoded_size_is_capped_for_every_coding() {
        // 1 MiB of zeros compresses to about a kilobyte.
        let bomb = vec![0u8; 1 << 20];
        for (name, encode) in encoders() {
            let wire = Bytes::from(encode(&bomb));
            assert!(wire.len() < 8192, "{name}: {}", wire.len());
            let err = decode_body(&header(name), &wire, 100_000).unwrap_err();
            assert_eq!(err, DecodeError::TooLarge { limit: 100_000 }, "{name}");
            assert_eq!(err.failure(), DecodeFailure::Truncated);
            // Exactly at the cap is fine.
            let exact = decode_body(&header(name), &wire, 1 << 20).unwrap();
            assert_eq!(exact.len(), 1 << 20, "{name}");
        }
        // An identity body over the cap (the caller's cap, not the wire's) is too large too.
        let err = decode(&[], Bytes::from(bomb), 10).unwrap_err();
        assert_eq!(err.failure(), DecodeFailure::Truncated);
    }

    #[test]
    fn cut_short_or_corrupt_data_is_an_error_never_a_panic() {
        let body = sample(30_000);
        for (name, encode) in encoders() {
            let wire = encode(&body);
            for cut in [1, wire.len() / 3, wire.len() / 2, wire.len() - 1] {
                let short = Bytes::copy_from_slice(&wire[..cut]);
                let err = decode_body(&header(name), &short, 1 << 20)
                    .expect_err(&format!("{name} cut at {cut} of {}", wire.len()));
                assert_eq!(
                    err.failure(),
                    DecodeFailure::Corrupt,
                    "{name} at {cut}: {err}"
                );
            }
            // Flipped bytes: an error or (rarely, for formats without a checksum) other bytes,
            // but never a panic and never more than the cap.
            for at in (0..wire.len()).step_by(wire.len() / 17 + 1) {
                let mut bad = wire.clone();
                bad[at] ^= 0x5a;
                if let Ok(got) = decode_body(&header(name), &Bytes::from(bad), 1 << 20) {
                    assert!(got.len() <= 1 << 20);
                }
            }
        }
        let garbage = Bytes::from_static(b"{\"not\": \"compressed\"}");
        for name in ["gzip", "deflate", "br", "zstd"] {
            let err = decode_body(&header(name), &garbage, 4096).unwrap_err();
            assert_eq!(err.failure(), DecodeFailure::Corrupt, "{name}: {err}");
        }
    }

    #[test]
    fn unknown_codings_are_unsupported_and_empty_bodies_pass() {
        let err = decode_body(&header("compress"), &Bytes::from_static(b"x"), 10).unwrap_err();
        assert_eq!(err, DecodeError::Unsupported("compress".into()));
        assert_eq!(err.failure(), DecodeFailure::Unsupported);
        assert!(err.to_string().contains("`compress`"));
        // HEAD answers and 204s carry the header but no body.
        assert_eq!(
            decode_body(&header("gzip"), &Bytes::new(), 10).unwrap(),
            Bytes::new()
        );
    }

    #[test]
    fn zstd_windows_over_8_mib_are_refused_before_allocating() {
        // Frame header: no checksum, no content size, window descriptor 2^(10+20) = 1 GiB.
        let mut frame = ZSTD_MAGIC.to_le_bytes().to_vec();
        frame.extend_from_slice(&[0x00, 0xA0, 0x01, 0x00, 0x00]);
        let err = decode_body(&header("zstd"), &Bytes::from(frame), usize::MAX).unwrap_err();
        assert_eq!(err.failure(), DecodeFailure::Corrupt, "{err}");
    }

    #[test]
    fn zlib_headers_are_told_from_raw_deflate() {
        assert!(has_zlib_header(&zlib(b"hello")));
        assert!(!has_zlib_header(&raw_deflate(b"hello")));
        assert!(!has_zlib_header(&[0x78]));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Arbitrary bytes under any coding: an answer or an error, never a panic, never
            /// more than the cap.
            #[test]
            fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048),
                                           which in 0usize..4, limit in 0usize..70_000) {
                let name = ["gzip", "deflate", "br", "zstd"][which];
                if let Ok(got) = decode_body(&header(name), &Bytes::from(data), limit) {
                    prop_assert!(got.len() <= limit);
                }
            }

            /// Valid streams with a few flipped bytes: same.
            #[test]
            fn mutated_streams_never_panic(seed in any::<u64>(), which in 0usize..6,
                                           flips in proptest::collection::vec((any::<usize>(), 1u8..), 1..4)) {
                let (name, encode) = encoders()[which];
                let mut wire = encode(&sample(2000 + (seed % 3000) as usize));
                for (at, x) in flips {
                    let n = wire.len();
                    wire[at % n] ^= x;
                }
                if let Ok(got) = decode_body(&header(name), &Bytes::from(wire), 8000) {
                    prop_assert!(got.len() <= 8000);
                }
            }
        }
    }
}
