//! Arbitrary bytes as a gRPC body under a `grpc-encoding` chosen by the first byte, split into
//! messages and decompressed with small caps; and as `grpc-status` / `grpc-message` /
//! `grpc-timeout` values. Checks that nothing panics, that the caps hold, and that a body that
//! splits is exactly its messages framed again.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shadow_core::grpc::status::{GrpcStatus, StatusSource, parse_timeout, percent_decode};
use shadow_core::grpc::{FramingLimits, decode_messages, encode_message, split_messages};
use shadow_core::http::Header;

const ENCODINGS: [Option<&str>; 6] = [
    None,
    Some("identity"),
    Some("gzip"),
    Some("deflate"),
    Some("zstd"),
    Some("snappy"),
];
const LIMITS: FramingLimits = FramingLimits {
    max_messages: 64,
    max_decoded_bytes: 64 * 1024,
};

fn header(name: &str, value: &[u8]) -> Header {
    Header {
        name: name.into(),
        value: Bytes::copy_from_slice(value),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let body = Bytes::copy_from_slice(body);
    let headers: Vec<Header> = ENCODINGS[usize::from(selector) % ENCODINGS.len()]
        .map(|e| header("grpc-encoding", e.as_bytes()))
        .into_iter()
        .collect();
    if let Ok(messages) = split_messages(&body, LIMITS) {
        assert!(messages.len() <= LIMITS.max_messages);
        let framed: Vec<u8> = messages
            .iter()
            .flat_map(|m| encode_message(&m.payload, m.compressed).unwrap_or_default())
            .collect();
        assert_eq!(
            framed,
            body.as_ref(),
            "a split body is its messages framed again"
        );
    }
    if let Ok(decoded) = decode_messages(&headers, &body, LIMITS) {
        let total: usize = decoded.iter().map(Bytes::len).sum();
        assert!(
            total <= LIMITS.max_decoded_bytes,
            "{total} bytes over the cap"
        );
        assert!(decoded.len() <= LIMITS.max_messages);
    }
    // The same bytes as status fields of a trailers-only answer and as a deadline.
    let fields = [header("grpc-status", &body), header("grpc-message", &body)];
    let status = GrpcStatus::of_response(200, &fields, &[]);
    assert_eq!(status.source, StatusSource::Headers);
    let _ = status.kind().class();
    let _ = percent_decode(&body);
    let _ = parse_timeout(&String::from_utf8_lossy(&body));
});
