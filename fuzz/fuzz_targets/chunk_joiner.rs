//! Chunk records described compactly → `chunks::ChunkJoiner`, in two modes (first byte, bit 0):
//!
//! - *any*: arbitrary records of four connections (chunk index, sequence number, segment and
//!   chunk lengths, flags, capture time all chosen by the input, drain rounds ended anywhere).
//!   Checks that the joiner never yields more payload than it was fed and holds nothing after a
//!   flush.
//! - *whole*: up to eight segments, each cut into chunks as the kernel cuts them, their chunks
//!   interleaved in an order the input chooses (within a segment in order), with at most one
//!   drain round ended on the way. Checks that exactly the original segments come out: same
//!   connection, sequence number, flags and payload, each once.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shadow_common::{DIR_REQUEST, DIR_RESPONSE, FAMILY_IPV4, MAX_CHUNKS, SegmentEvent, tcp_flags};
use shadow_core::chunks::ChunkJoiner;
use shadow_core::segment::Segment;

fn event(connection: u8, response: bool, ts_ns: u64) -> SegmentEvent {
    let mut client = [0u8; 16];
    client[..4].copy_from_slice(&[10, 0, 0, 1]);
    let mut server = [0u8; 16];
    server[..4].copy_from_slice(&[10, 0, 0, 2]);
    let client_port = 40_000 + u16::from(connection);
    let (saddr, daddr, sport, dport) = if response {
        (server, client, 8080, client_port)
    } else {
        (client, server, client_port, 8080)
    };
    SegmentEvent {
        ts_ns,
        saddr,
        daddr,
        sport,
        dport,
        family: FAMILY_IPV4,
        direction: if response { DIR_RESPONSE } else { DIR_REQUEST },
        ..Default::default()
    }
}

fn payload_of(segment: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + segment * 7) as u8).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        any_records(rest);
    } else {
        whole_segments(rest);
    }
});

fn any_records(mut rest: &[u8]) {
    let mut joiner = ChunkJoiner::default();
    let mut out = Vec::new();
    let (mut fed, mut delivered) = (0usize, 0usize);
    // Each record: [connection, response, end round, capture time], chunk index, seq (2),
    // segment length / 8, chunk length, flags.
    while let Some((r, tail)) = rest.split_first_chunk::<7>() {
        rest = tail;
        if r[0] & 0x08 != 0 {
            joiner.end_round(&mut out);
        }
        let mut e = event(r[0] & 0x03, r[0] & 0x04 != 0, u64::from(r[0] >> 4));
        e.chunk_index = r[1];
        e.seq = u32::from(u16::from_le_bytes([r[2], r[3]])) * 61;
        e.segment_len = u32::from(r[4]) * 8;
        e.chunk_len = u32::from(r[5]);
        e.tcp_flags = r[6];
        let payload = payload_of(usize::from(r[1]), usize::from(r[5]));
        fed += payload.len();
        joiner.push(&e, &payload, 0, &mut out);
        delivered += out
            .drain(..)
            .map(|s| s.segment.payload.len())
            .sum::<usize>();
        assert!(delivered <= fed, "{delivered} bytes out of {fed} fed");
    }
    joiner.flush(&mut out);
    delivered += out
        .drain(..)
        .map(|s| s.segment.payload.len())
        .sum::<usize>();
    assert!(delivered <= fed, "{delivered} bytes out of {fed} fed");
    joiner.flush(&mut out);
    joiner.end_round(&mut out);
    assert!(out.is_empty(), "a flush leaves nothing pending");
}

/// One segment as the kernel cuts it: its chunk records, in order.
struct Cut {
    expected: Segment,
    chunks: Vec<(SegmentEvent, Vec<u8>)>,
    next: usize,
}

fn whole_segments(data: &[u8]) {
    let Some((&count, mut rest)) = data.split_first() else {
        return;
    };
    let mut cuts = Vec::new();
    // Each segment: [connection, response, flags], length (2, ≤ 8191), chunk size (0: whole).
    for index in 0..usize::from(count % 8) + 1 {
        let Some((s, tail)) = rest.split_first_chunk::<4>() else {
            break;
        };
        rest = tail;
        let len = usize::from(u16::from_le_bytes([s[1], s[2]]) & 0x1fff);
        // At most MAX_CHUNKS chunks, as the kernel emits.
        let fewest = len.div_ceil(MAX_CHUNKS as usize).max(1);
        let chunk = if s[3] == 0 {
            len.max(1)
        } else {
            usize::from(s[3]).max(fewest)
        };
        let payload = payload_of(index, len);
        // Distinct capture times: one program run per segment.
        let mut header = event(s[0] & 0x03, s[0] & 0x04 != 0, index as u64 * 1_000);
        header.seq = (index as u32) << 20;
        header.ack = 7 + index as u32;
        header.segment_len = len as u32;
        let flags = s[0] >> 3;
        let pieces: Vec<&[u8]> = if len == 0 {
            vec![&[]]
        } else {
            payload.chunks(chunk).collect()
        };
        let last = pieces.len() - 1;
        let mut chunks = Vec::new();
        let mut offset = 0u32;
        for (i, piece) in pieces.into_iter().enumerate() {
            let mut e = header;
            e.chunk_index = i as u8;
            e.seq = header.seq.wrapping_add(offset);
            e.chunk_len = piece.len() as u32;
            // As the kernel does: SYN on the first chunk only, FIN and RST on the last only.
            e.tcp_flags = tcp_flags::ACK
                | if i == 0 { flags & tcp_flags::SYN } else { 0 }
                | if i == last {
                    flags & (tcp_flags::FIN | tcp_flags::RST)
                } else {
                    0
                };
            offset += piece.len() as u32;
            chunks.push((e, piece.to_vec()));
        }
        let flags = chunks.iter().fold(0, |acc, (e, _)| acc | e.tcp_flags);
        let mut expected = shadow_core::ring_record::segment_from_event(&header, &payload, 0);
        expected.flags = shadow_core::segment::TcpFlags(flags);
        cuts.push(Cut {
            expected,
            chunks,
            next: 0,
        });
    }
    if cuts.is_empty() {
        return;
    }
    let mut joiner = ChunkJoiner::default();
    let mut out = Vec::new();
    let mut choices = rest.iter().copied();
    let mut round_ended = false;
    let mut turn = 0usize;
    loop {
        let open: Vec<usize> = (0..cuts.len())
            .filter(|&i| cuts[i].next < cuts[i].chunks.len())
            .collect();
        if open.is_empty() {
            break;
        }
        let choice = choices.next().unwrap_or(turn as u8);
        turn += 1;
        if choice & 0x80 != 0 && !round_ended {
            // At most one round ends: segments in flight wait for the next round's chunks.
            joiner.end_round(&mut out);
            round_ended = true;
        }
        let cut = &mut cuts[open[usize::from(choice & 0x7f) % open.len()]];
        let (e, piece) = &cut.chunks[cut.next];
        cut.next += 1;
        joiner.push(e, piece, 0, &mut out);
    }
    joiner.flush(&mut out);
    // Every chunk arrived: nothing is reported lost.
    assert!(out.iter().all(|s| s.missing == 0), "nothing was lost");
    let mut out: Vec<Segment> = out.into_iter().map(|s| s.segment).collect();
    out.sort_by_key(|s| s.ts_ns);
    let expected: Vec<&Segment> = cuts.iter().map(|c| &c.expected).collect();
    assert_eq!(out.iter().collect::<Vec<_>>(), expected);
}
