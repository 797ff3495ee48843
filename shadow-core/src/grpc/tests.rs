use super::*;
use crate::encoding::DecodeFailure;
use proptest::prelude::*;
use std::io::Write;

fn h(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: Bytes::from(value.to_string()),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn body(messages: &[(&[u8], bool)]) -> Bytes {
    let mut out = Vec::new();
    for (payload, compressed) in messages {
        out.extend(encode_message(payload, *compressed).unwrap());
    }
    Bytes::from(out)
}

const LIMITS: FramingLimits = FramingLimits {
    max_messages: 16,
    max_decoded_bytes: 1 << 20,
};

#[test]
fn content_types_that_are_grpc() {
    for ct in [
        "application/grpc",
        "application/grpc+proto",
        "Application/GRPC+json",
        "application/grpc; charset=utf-8",
    ] {
        assert!(is_grpc(&[h("Content-Type", ct)]), "{ct}");
    }
    for ct in ["application/json", "application/grp", "text/plain"] {
        assert!(!is_grpc(&[h("content-type", ct)]), "{ct}");
    }
    assert!(!is_grpc(&[]));
}

#[test]
fn messages_are_split_by_their_prefixes() {
    let b = body(&[(b"one", false), (b"", false), (b"three", false)]);
    assert_eq!(&b[..5], &[0, 0, 0, 0, 3]);
    let m = split_messages(&b, LIMITS).unwrap();
    let payloads: Vec<&[u8]> = m.iter().map(|m| m.payload.as_ref()).collect();
    assert_eq!(payloads, [&b"one"[..], b"", b"three"]);
    assert!(m.iter().all(|m| !m.compressed));
    assert_eq!(split_messages(&Bytes::new(), LIMITS).unwrap(), vec![]);
}

#[test]
fn cut_bodies_and_bad_flags_are_corrupt() {
    let b = body(&[(b"hello", false)]);
    let e = split_messages(&b.slice(..3), LIMITS).unwrap_err();
    assert_eq!(
        e,
        GrpcError::Cut {
            offset: 0,
            needed: 2
        }
    );
    let e = split_messages(&b.slice(..7), LIMITS).unwrap_err();
    assert_eq!(
        e,
        GrpcError::Cut {
            offset: 0,
            needed: 3
        }
    );
    assert_eq!(e.failure(), DecodeFailure::Corrupt);
    let bad = Bytes::from_static(&[2, 0, 0, 0, 0]);
    let e = split_messages(&bad, LIMITS).unwrap_err();
    assert_eq!(e, GrpcError::BadFlag { offset: 0, flag: 2 });
    assert_eq!(e.failure(), DecodeFailure::Corrupt);
}

#[test]
fn caps_on_count_and_size_are_truncation() {
    let many: Vec<(&[u8], bool)> = vec![(b"x", false); 17];
    let e = split_messages(&body(&many), LIMITS).unwrap_err();
    assert_eq!(e, GrpcError::TooManyMessages { limit: 16 });
    assert_eq!(e.failure(), DecodeFailure::Truncated);
    let small = FramingLimits {
        max_messages: 16,
        max_decoded_bytes: 10,
    };
    let e = split_messages(&body(&[(b"123456", false), (b"123456", false)]), small).unwrap_err();
    assert_eq!(e, GrpcError::TooLarge { limit: 10 });
    // A length announcing more than the cap fails before waiting for the bytes.
    let huge = Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff, 1, 2]);
    assert_eq!(
        split_messages(&huge, small).unwrap_err().failure(),
        DecodeFailure::Truncated
    );
    // A small compressed message that expands past the cap (a zip bomb) stops at the cap.
    let bomb = gzip(&[0u8; 4096]);
    let e = decode_messages(
        &[h("grpc-encoding", "gzip")],
        &body(&[(&bomb, true)]),
        small,
    )
    .unwrap_err();
    assert_eq!(e, GrpcError::TooLarge { limit: 10 });
}

#[test]
fn compressed_messages_are_decompressed_per_grpc_encoding() {
    let plain = b"a protobuf message, compressed";
    for (encoding, coded) in [("gzip", gzip(plain)), ("deflate", zlib(plain))] {
        let b = body(&[(&coded, true), (b"uncompressed", false)]);
        let m = decode_messages(&[h("grpc-encoding", encoding)], &b, LIMITS).unwrap();
        assert_eq!(
            m,
            vec![
                Bytes::from_static(plain),
                Bytes::from_static(b"uncompressed")
            ]
        );
    }
    // identity, or no grpc-encoding at all, cannot explain a compressed flag.
    let b = body(&[(b"x", true)]);
    for headers in [vec![], vec![h("grpc-encoding", "identity")]] {
        let e = decode_messages(&headers, &b, LIMITS).unwrap_err();
        assert_eq!(e, GrpcError::CompressedWithoutEncoding);
        assert_eq!(e.failure(), DecodeFailure::Corrupt);
    }
    // An encoding we do not know matters only for compressed messages.
    let snappy = [h("grpc-encoding", "snappy")];
    assert_eq!(
        decode_messages(&snappy, &body(&[(b"plain", false)]), LIMITS).unwrap(),
        vec![Bytes::from_static(b"plain")]
    );
    let e = decode_messages(&snappy, &b, LIMITS).unwrap_err();
    assert_eq!(e.failure(), DecodeFailure::Unsupported);
    // Corrupt compressed data.
    let e = decode_messages(
        &[h("grpc-encoding", "gzip")],
        &body(&[(b"not gzip", true)]),
        LIMITS,
    )
    .unwrap_err();
    assert_eq!(e.failure(), DecodeFailure::Corrupt);
}

fn message_strategy() -> impl Strategy<Value = Vec<(Vec<u8>, u8)>> {
    // Each message: a payload, and 0 = plain, 1 = gzip, 2 = deflate.
    prop::collection::vec((prop::collection::vec(any::<u8>(), 0..300), 0u8..3), 0..8)
}

/// The body of `messages` with `encoding` (the side's grpc-encoding) used for the coded ones.
fn framed(messages: &[(Vec<u8>, u8)], encoding: &str) -> Bytes {
    let mut out = Vec::new();
    for (payload, how) in messages {
        let (data, compressed) = match (how, encoding) {
            (0, _) => (payload.clone(), false),
            (_, "gzip") => (gzip(payload), true),
            _ => (zlib(payload), true),
        };
        out.extend(encode_message(&data, compressed).unwrap());
    }
    Bytes::from(out)
}

proptest! {
    /// Messages framed (compressed or not) and put back together from the DATA frames they were
    /// cut into, anywhere, decode to the same payloads.
    #[test]
    fn messages_round_trip_through_any_split(
        messages in message_strategy(),
        gzip_side in any::<bool>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let encoding = if gzip_side { "gzip" } else { "deflate" };
        let wire = framed(&messages, encoding);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.sort_unstable();
        let mut rejoined = Vec::new();
        let mut from = 0;
        for p in points.into_iter().chain([wire.len()]) {
            rejoined.extend_from_slice(&wire[from..p]);
            from = p;
        }
        let decoded = decode_messages(
            &[h("grpc-encoding", encoding)],
            &Bytes::from(rejoined),
            FramingLimits::default(),
        ).unwrap();
        let expected: Vec<Bytes> = messages.iter().map(|(p, _)| Bytes::from(p.clone())).collect();
        prop_assert_eq!(decoded, expected);
    }

    /// A body cut anywhere holds the messages before the cut when it falls on a boundary, and
    /// is a `Cut` error otherwise: never a wrong message, never a panic.
    #[test]
    fn a_cut_is_a_boundary_or_an_error(messages in message_strategy(), at in any::<prop::sample::Index>()) {
        let wire = framed(&messages, "gzip");
        let cut = at.index(wire.len() + 1);
        let mut boundaries = vec![0];
        for m in split_messages(&wire, FramingLimits::default()).unwrap() {
            boundaries.push(boundaries.last().unwrap() + PREFIX_LEN + m.payload.len());
        }
        match split_messages(&wire.slice(..cut), FramingLimits::default()) {
            Ok(m) => {
                prop_assert_eq!(boundaries.get(m.len()).copied(), Some(cut));
            }
            Err(GrpcError::Cut { .. }) => prop_assert!(!boundaries.contains(&cut)),
            Err(other) => prop_assert!(false, "unexpected {other}"),
        }
    }
}
