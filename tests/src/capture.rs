//! Draining a live capture and judging it against what the HTTP client saw.

use crate::http_peer::Transcript;
use crate::streams;
use shadow_core::segment::{Direction, FlowKey, Segment};
use shadow_daemon::capture::LiveCapture;
use std::path::Path;
use std::time::{Duration, Instant};

/// Receives segments until `done(&segments)` holds or `limit` has passed (then returns what
/// arrived; the caller's assertions report what is missing). Also returns early if the
/// capture closes its channel.
pub fn collect_until(
    capture: &mut LiveCapture,
    limit: Duration,
    mut done: impl FnMut(&[Segment]) -> bool,
) -> Vec<Segment> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    let deadline = Instant::now() + limit;
    let mut segments = Vec::new();
    while !done(&segments) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match rt.block_on(async { tokio::time::timeout(left, capture.segments.recv()).await }) {
            Ok(Some(captured)) => segments.push(captured.segment),
            Ok(None) | Err(_) => break,
        }
    }
    segments
}

/// The flow key a capture reports for a client connection.
pub fn flow_of(t: &Transcript) -> FlowKey {
    FlowKey {
        client: t.local,
        server: t.peer,
    }
}

/// Whether a FIN was captured in both directions of every transcript's connection (the
/// last thing each side sends; a cheap "capture has caught up" signal).
pub fn fins_seen(segments: &[Segment], transcripts: &[Transcript]) -> bool {
    transcripts.iter().all(|t| {
        let flow = flow_of(t);
        [Direction::Request, Direction::Response]
            .iter()
            .all(|&dir| {
                segments
                    .iter()
                    .any(|s| s.flow == flow && s.dir == dir && s.flags.fin())
            })
    })
}

/// What a verified capture contained.
#[derive(Debug)]
pub struct Verified {
    pub flows: usize,
    pub segments: usize,
    pub payload_bytes: usize,
    /// Segments that repeated already-captured bytes (should be 0 with one copy per packet).
    pub duplicates: usize,
}

/// Checks that `segments` contain exactly the flows of `transcripts` and that each flow
/// reassembles to exactly the bytes the client sent and received, closed by a FIN each way.
pub fn verify_against(
    segments: &[Segment],
    transcripts: &[Transcript],
) -> Result<Verified, String> {
    let flows = streams::reassemble(segments)?;
    let mut expected: Vec<FlowKey> = transcripts.iter().map(flow_of).collect();
    expected.sort();
    let seen: Vec<FlowKey> = flows.keys().copied().collect();
    if seen != expected {
        return Err(format!("captured flows {seen:?}, expected {expected:?}"));
    }
    let mut duplicates = 0;
    for t in transcripts {
        let flow = &flows[&flow_of(t)];
        for (what, got, want) in [
            ("request", &flow.request, &t.sent),
            ("response", &flow.response, &t.received),
        ] {
            if got.bytes != *want {
                let first_diff = got
                    .bytes
                    .iter()
                    .zip(want.iter())
                    .position(|(a, b)| a != b)
                    .unwrap_or(got.bytes.len().min(want.len()));
                return Err(format!(
                    "{} {what}: captured {} bytes, client saw {}; first difference at {first_diff}",
                    flow_of(t),
                    got.bytes.len(),
                    want.len()
                ));
            }
            if !got.fin {
                return Err(format!("{} {what}: no FIN after the last byte", flow_of(t)));
            }
            duplicates += got.duplicates;
        }
    }
    Ok(Verified {
        flows: flows.len(),
        segments: segments.len(),
        payload_bytes: segments.iter().map(|s| s.payload.len()).sum(),
        duplicates,
    })
}

/// Segments of `port` in a pcap file with Ethernet frames (whatever has been flushed so far:
/// a file still being written may end inside a packet, reading stops there).
pub fn read_pcap(port: u16, path: &Path) -> Vec<Segment> {
    use pcap_file::pcap::PcapReader;
    use shadow_core::frame::{LinkType, decode};
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let Ok(mut reader) = PcapReader::new(&bytes[..]) else {
        return Vec::new();
    };
    let mut segments = Vec::new();
    while let Some(Ok(packet)) = reader.next_packet() {
        let ts = packet.timestamp.as_nanos() as u64;
        segments.push(
            decode(LinkType::Ethernet, &packet.data, &[port], ts)
                .expect("only watched TCP in the file")
                .segment,
        );
    }
    segments
}
