//! RFC 7541 Appendix C examples, the error cases of every representation, and round trips
//! through the test encoder.

use super::encoder::{Encoder, Indexing, Style, integer};
use super::*;

fn decode_all(decoder: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, HpackError> {
    let mut out = Vec::new();
    let list = decoder.decode(&Bytes::copy_from_slice(block), usize::MAX, &mut out)?;
    assert_eq!(list, HeaderList::Complete);
    Ok(out
        .into_iter()
        .map(|f| {
            (
                String::from_utf8(f.name.to_vec()).unwrap(),
                String::from_utf8(f.value.to_vec()).unwrap(),
            )
        })
        .collect())
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn rfc_c3_requests_without_huffman() {
    let mut d = Decoder::new();
    let first = [
        0x82, 0x86, 0x84, 0x41, 0x0f, 0x77, 0x77, 0x77, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c,
        0x65, 0x2e, 0x63, 0x6f, 0x6d,
    ];
    assert_eq!(
        decode_all(&mut d, &first).unwrap(),
        pairs(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ])
    );
    let second = [
        0x82, 0x86, 0x84, 0xbe, 0x58, 0x08, 0x6e, 0x6f, 0x2d, 0x63, 0x61, 0x63, 0x68, 0x65,
    ];
    assert_eq!(
        decode_all(&mut d, &second).unwrap(),
        pairs(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ])
    );
    assert_eq!(d.table_entries(), 2);
}

#[test]
fn rfc_c4_requests_with_huffman() {
    let mut d = Decoder::new();
    let blocks: [&[u8]; 3] = [
        &[
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ],
        &[
            0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
        ],
        &[
            0x82, 0x87, 0x85, 0xbf, 0x40, 0x88, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f,
            0x89, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf,
        ],
    ];
    decode_all(&mut d, blocks[0]).unwrap();
    decode_all(&mut d, blocks[1]).unwrap();
    assert_eq!(
        decode_all(&mut d, blocks[2]).unwrap(),
        pairs(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ])
    );
    assert_eq!(d.table_entries(), 3);
}

#[test]
fn rfc_c6_responses_with_evictions() {
    // The RFC's decoder starts with a 256-byte table; a size update at the start of the
    // first block says so here.
    let mut d = Decoder::new();
    let mut first = Vec::new();
    integer(256, 5, 0x20, &mut first);
    first.extend_from_slice(&[
        0x48, 0x82, 0x64, 0x02, 0x58, 0x85, 0xae, 0xc3, 0x77, 0x1a, 0x4b, 0x61, 0x96, 0xd0, 0x7a,
        0xbe, 0x94, 0x10, 0x54, 0xd4, 0x44, 0xa8, 0x20, 0x05, 0x95, 0x04, 0x0b, 0x81, 0x66, 0xe0,
        0x82, 0xa6, 0x2d, 0x1b, 0xff, 0x6e, 0x91, 0x9d, 0x29, 0xad, 0x17, 0x18, 0x63, 0xc7, 0x8f,
        0x0b, 0x97, 0xc8, 0xe9, 0xae, 0x82, 0xae, 0x43, 0xd3,
    ]);
    assert_eq!(
        decode_all(&mut d, &first).unwrap(),
        pairs(&[
            (":status", "302"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("location", "https://www.example.com"),
        ])
    );
    assert_eq!(d.table_size(), 256);
    // `:status 307` evicts `:status 302`; 0xc1.. index the remaining entries.
    assert_eq!(
        decode_all(&mut d, &[0x48, 0x83, 0x64, 0x0e, 0xff, 0xc1, 0xc0, 0xbf]).unwrap(),
        pairs(&[
            (":status", "307"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("location", "https://www.example.com"),
        ])
    );
    let third = [
        0x88, 0xc1, 0x61, 0x96, 0xd0, 0x7a, 0xbe, 0x94, 0x10, 0x54, 0xd4, 0x44, 0xa8, 0x20, 0x05,
        0x95, 0x04, 0x0b, 0x81, 0x66, 0xe0, 0x84, 0xa6, 0x2d, 0x1b, 0xff, 0xc0, 0x5a, 0x83, 0x9b,
        0xd9, 0xab, 0x77, 0xad, 0x94, 0xe7, 0x82, 0x1d, 0xd7, 0xf2, 0xe6, 0xc7, 0xb3, 0x35, 0xdf,
        0xdf, 0xcd, 0x5b, 0x39, 0x60, 0xd5, 0xaf, 0x27, 0x08, 0x7f, 0x36, 0x72, 0xc1, 0xab, 0x27,
        0x0f, 0xb5, 0x29, 0x1f, 0x95, 0x87, 0x31, 0x60, 0x65, 0xc0, 0x03, 0xed, 0x4e, 0xe5, 0xb1,
        0x06, 0x3d, 0x50, 0x07,
    ];
    assert_eq!(
        decode_all(&mut d, &third).unwrap(),
        pairs(&[
            (":status", "200"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
            ("location", "https://www.example.com"),
            ("content-encoding", "gzip"),
            (
                "set-cookie",
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
            ),
        ])
    );
    // RFC: three entries left (set-cookie, content-encoding, date), 215 bytes.
    assert_eq!(d.table_entries(), 3);
}

#[test]
fn integers_follow_rfc_c1_and_refuse_overflow() {
    assert_eq!(integer_of(&[0x0a], 5), Ok((10, 1)));
    assert_eq!(integer_of(&[0x1f, 0x9a, 0x0a], 5), Ok((1337, 3)));
    assert_eq!(integer_of(&[0x2a], 8), Ok((42, 1)));
    assert_eq!(integer_of(&[0x1f, 0x9a], 5), Err(HpackError::Truncated));
    assert_eq!(integer_of(&[], 5), Err(HpackError::Truncated));
    assert_eq!(
        integer_of(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0x7f], 5),
        Err(HpackError::IntegerOverflow)
    );
    assert_eq!(
        integer_of(&[0x1f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], 5),
        Err(HpackError::IntegerOverflow)
    );
    let mut encoded = Vec::new();
    integer(u64::from(u32::MAX) - 31, 5, 0, &mut encoded);
    assert_eq!(
        integer_of(&encoded, 5),
        Ok((u64::from(u32::MAX) - 31, encoded.len()))
    );
}

fn integer_of(buf: &[u8], prefix: u8) -> Result<(u64, usize), HpackError> {
    super::integer(buf, prefix)
}

#[test]
fn malformed_blocks_are_errors_never_panics() {
    let mut d = Decoder::new();
    // Index 0 and an index past the (empty) dynamic table.
    assert_eq!(decode_all(&mut d, &[0x80]), Err(HpackError::BadIndex(0)));
    assert_eq!(decode_all(&mut d, &[0xbe]), Err(HpackError::BadIndex(62)));
    // A literal whose name index is unknown, one cut inside its name, one cut before its
    // value, one whose value is longer than the block.
    assert_eq!(
        decode_all(&mut d, &[0x7f, 0x00]),
        Err(HpackError::BadIndex(63))
    );
    assert_eq!(
        decode_all(&mut d, &[0x40, 0x05, b'a']),
        Err(HpackError::Truncated)
    );
    assert_eq!(
        decode_all(&mut d, &[0x40, 0x01, b'a']),
        Err(HpackError::Truncated)
    );
    assert_eq!(decode_all(&mut d, &[0x04]), Err(HpackError::Truncated));
    assert_eq!(
        decode_all(&mut d, &[0x04, 0x7f, 0xff]),
        Err(HpackError::Truncated)
    );
    assert_eq!(
        decode_all(&mut d, &[0x04, 0x03, b'a']),
        Err(HpackError::Truncated)
    );
    // A Huffman value with bad padding.
    assert_eq!(
        decode_all(&mut d, &[0x04, 0x81, 0x00]),
        Err(HpackError::Huffman(HuffmanError::Padding))
    );
}

#[test]
fn size_updates_are_bounded_and_only_at_the_start() {
    let mut d = Decoder::new();
    // Above the default 4096 until the decoding side allows more.
    let mut up = Vec::new();
    integer(8192, 5, 0x20, &mut up);
    assert_eq!(
        decode_all(&mut d, &up),
        Err(HpackError::TableSizeAboveLimit {
            size: 8192,
            allowed: 4096
        })
    );
    d.allow_table_size(8192);
    decode_all(&mut d, &up).unwrap();
    assert_eq!(d.table_size(), 8192);
    // A peer cannot make us keep more than MAX_TABLE_SIZE.
    d.allow_table_size(u32::MAX);
    let mut huge = Vec::new();
    integer(MAX_TABLE_SIZE as u64 + 1, 5, 0x20, &mut huge);
    assert!(matches!(
        decode_all(&mut d, &huge),
        Err(HpackError::TableSizeAboveLimit { .. })
    ));
    // Two updates at the start (shrink then grow) are fine; one after a field is not.
    let mut d = Decoder::new();
    assert_eq!(
        decode_all(&mut d, &[0x20, 0x3f, 0xe1, 0x1f, 0x82]).unwrap(),
        pairs(&[(":method", "GET")])
    );
    assert_eq!(d.table_size(), 4096);
    assert_eq!(
        decode_all(&mut d, &[0x82, 0x20]),
        Err(HpackError::LateSizeUpdate)
    );
}

#[test]
fn size_update_to_zero_empties_the_table() {
    let mut enc = Encoder::default();
    let mut d = Decoder::new();
    let block = enc.block(&[("x-a", "1"), ("x-b", "2")], Style::default());
    decode_all(&mut d, &block).unwrap();
    assert_eq!(d.table_entries(), 2);
    let mut block = Vec::new();
    enc.size_update(0, &mut block);
    enc.size_update(4096, &mut block);
    enc.field(b"x-a", b"1", Style::default(), &mut block);
    assert_eq!(decode_all(&mut d, &block).unwrap(), pairs(&[("x-a", "1")]));
    assert_eq!(d.table_entries(), 1);
}

#[test]
fn an_over_cap_list_is_dropped_but_the_table_stays_in_step() {
    let mut enc = Encoder::default();
    let mut d = Decoder::new();
    let big = "v".repeat(100);
    let block = enc.block(
        &[("x-small", "1"), ("x-big", &big), ("x-after", "2")],
        Style::default(),
    );
    let mut out = Vec::new();
    let list = d.decode(&Bytes::from(block), 80, &mut out).unwrap();
    assert_eq!(list, HeaderList::TooLarge);
    assert_eq!(out.len(), 1, "only the fields within the cap are kept");
    // The next block indexes entries added by the over-cap block.
    let block = enc.block(&[("x-big", &big), ("x-after", "2")], Style::default());
    assert_eq!(block.len(), 2, "two indexed fields");
    assert_eq!(
        decode_all(&mut d, &block).unwrap(),
        pairs(&[("x-big", &big), ("x-after", "2")])
    );
}

#[test]
fn every_representation_round_trips() {
    let mut enc = Encoder::default();
    let mut d = Decoder::new();
    let fields = [
        (":method", "POST"),
        (":path", "/inference.GRPCInferenceService/ModelInfer"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("x-\u{e9}t\u{e9}", "caf\u{e9} \u{2603}"),
    ];
    for indexing in [Indexing::Incremental, Indexing::Without, Indexing::Never] {
        for huffman in [false, true] {
            let style = Style { indexing, huffman };
            let block = enc.block(&fields, style);
            assert_eq!(
                decode_all(&mut d, &block).unwrap(),
                pairs(&fields),
                "{style:?}"
            );
        }
    }
    assert_eq!(d.table_entries(), enc.table_entries());
}
