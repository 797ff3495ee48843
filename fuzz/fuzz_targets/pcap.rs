//! Arbitrary bytes as a capture file (pcap or pcapng, told by the magic number) →
//! `pcap::PcapSource`. Checks that nothing panics, that the counters add up (segments ≤ packets,
//! cut ≤ segments, captured bytes ≤ the file), that an error ends the stream, and that every
//! segment read survives a round trip through `pcap_writer` and the frame decoder unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shadow_core::frame::{LinkType, decode};
use shadow_core::pcap::PcapSource;
use shadow_core::pcap_writer::SegmentPcapWriter;
use shadow_core::segment::{Direction, Segment};
use std::io::Cursor;
use std::path::Path;

const PORTS: [u16; 2] = [80, 8080];

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.pcap");
    let Ok(mut source) = PcapSource::new(Cursor::new(data), path, &PORTS) else {
        return;
    };
    let mut segments = Vec::new();
    while let Some(next) = source.next_segment() {
        match next {
            Ok(read) => segments.push(read),
            Err(_) => {
                assert!(source.next_segment().is_none(), "an error ends the stream");
                break;
            }
        }
    }
    assert!(source.next_segment().is_none(), "the end stays the end");
    let stats = source.stats();
    assert_eq!(stats.segments, segments.len() as u64);
    assert!(stats.segments <= stats.packets);
    assert!(stats.cut <= stats.segments);
    assert_eq!(
        stats.cut,
        segments.iter().filter(|s| s.missing > 0).count() as u64
    );
    assert!(stats.bytes <= data.len() as u64);
    let payload: usize = segments.iter().map(|s| s.segment.payload.len()).sum();
    assert!(payload as u64 <= stats.bytes);
    for read in &segments {
        assert!(PORTS.contains(&read.segment.flow.server.port()));
    }

    // What was read, written again and decoded from the written frames, is the same segments.
    // (The records are split here rather than by a second `PcapSource`: pcap-file's readers
    // zero an 8 MB buffer each, which would halve the executions per second.)
    let mut writer = SegmentPcapWriter::new(Vec::new()).expect("writing to memory");
    for read in &segments {
        writer.write(&read.segment).expect("writing to memory");
    }
    let file = writer.finish().expect("writing to memory");
    let mut records = file.get(24..).expect("a file header");
    for read in &segments {
        let (header, rest) = records.split_at(16);
        let field = |at: usize| {
            u32::from_ne_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let (seconds, nanos, captured, original) = (field(0), field(4), field(8), field(12));
        assert_eq!(captured, original, "written whole");
        let (frame, rest) = rest.split_at(captured as usize);
        records = rest;
        let ts_ns = u64::from(seconds) * 1_000_000_000 + u64::from(nanos);
        let back = decode(LinkType::Ethernet, frame, &PORTS, ts_ns).expect("our own frame decodes");
        assert_eq!(back.missing, Some(0));
        assert_same(&read.segment, &back.segment);
    }
    assert!(records.is_empty(), "one packet per segment");
});

/// The written file keeps everything but what its format cannot hold: a response whose client
/// port is watched too reads back as a request, and seconds past 2106 do not fit a pcap record.
fn assert_same(original: &Segment, back: &Segment) {
    let client_watched = PORTS.contains(&original.flow.client.port());
    if original.dir == Direction::Request || !client_watched {
        assert_eq!((back.flow, back.dir), (original.flow, original.dir));
    }
    assert_eq!(
        (back.seq, back.ack, back.flags, &back.payload),
        (
            original.seq,
            original.ack,
            original.flags,
            &original.payload
        )
    );
    if original.ts_ns / 1_000_000_000 <= u64::from(u32::MAX) {
        assert_eq!(back.ts_ns, original.ts_ns);
    }
}
