//! Test-side TCP reassembly: captured segments → the exact byte stream of each flow and
//! direction. Deliberately simple and strict (needs the SYN, refuses holes and conflicting
//! overlaps), so it can judge a capture source independently of the daemon's `reassembly`.

use shadow_core::segment::{Direction, FlowKey, Segment};
use std::collections::BTreeMap;

/// The bytes of one direction of a connection.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stream {
    pub bytes: Vec<u8>,
    /// A FIN was captured right after the last byte.
    pub fin: bool,
    /// Segments that repeated bytes already seen (retransmissions or duplicate captures).
    pub duplicates: usize,
}

/// Both directions of one connection.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Flow {
    pub request: Stream,
    pub response: Stream,
}

/// Reassembles every flow in `segments` (any order). Fails on a direction without a SYN, a
/// hole, or overlapping segments that disagree.
pub fn reassemble(segments: &[Segment]) -> Result<BTreeMap<FlowKey, Flow>, String> {
    let mut by_dir: BTreeMap<(FlowKey, bool), Vec<&Segment>> = BTreeMap::new();
    for s in segments {
        by_dir
            .entry((s.flow, s.dir == Direction::Request))
            .or_default()
            .push(s);
    }
    let mut flows: BTreeMap<FlowKey, Flow> = BTreeMap::new();
    for ((flow, is_request), segs) in by_dir {
        let dir = if is_request { "request" } else { "response" };
        let stream = one_direction(&segs).map_err(|e| format!("{flow} {dir}: {e}"))?;
        let entry = flows.entry(flow).or_default();
        if is_request {
            entry.request = stream;
        } else {
            entry.response = stream;
        }
    }
    Ok(flows)
}

fn one_direction(segs: &[&Segment]) -> Result<Stream, String> {
    let syns: Vec<u32> = segs
        .iter()
        .filter(|s| s.flags.syn())
        .map(|s| s.seq)
        .collect();
    let isn = *syns.first().ok_or("no SYN captured")?;
    if syns.iter().any(|&s| s != isn) {
        return Err(format!("SYNs with different sequence numbers: {syns:?}"));
    }
    let base = isn.wrapping_add(1);
    let offset = |seq: u32| u64::from(seq.wrapping_sub(base));
    let mut data: Vec<(u64, &[u8])> = segs
        .iter()
        .filter(|s| !s.payload.is_empty())
        .map(|s| (offset(s.seq), &s.payload[..]))
        .collect();
    data.sort_by_key(|&(off, payload)| (off, std::cmp::Reverse(payload.len())));
    let mut out = Stream::default();
    for (off, payload) in data {
        let end = out.bytes.len() as u64;
        if off > end {
            return Err(format!("hole of {} bytes at offset {end}", off - end));
        }
        let overlap = ((end - off) as usize).min(payload.len());
        if out.bytes[off as usize..off as usize + overlap] != payload[..overlap] {
            return Err(format!(
                "overlapping segment at offset {off} disagrees with earlier bytes"
            ));
        }
        if overlap > 0 {
            out.duplicates += 1;
        }
        out.bytes.extend_from_slice(&payload[overlap..]);
    }
    let len = out.bytes.len() as u64;
    out.fin = segs
        .iter()
        .any(|s| s.flags.fin() && !s.flags.syn() && offset(s.seq) + s.payload.len() as u64 == len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use shadow_core::segment::TcpFlags;

    const CLIENT: &str = "10.0.0.1:40000";
    const SERVER: &str = "10.0.0.2:8080";

    fn seg(dir: Direction, seq: u32, flags: u8, payload: &'static [u8]) -> Segment {
        Segment {
            flow: FlowKey {
                client: CLIENT.parse().unwrap(),
                server: SERVER.parse().unwrap(),
            },
            dir,
            seq,
            ack: 0,
            flags: TcpFlags(flags),
            ts_ns: 0,
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn out_of_order_duplicates_and_wraparound() {
        use Direction::*;
        let isn = u32::MAX - 3; // data starts at MAX - 2 and wraps
        let a = TcpFlags::ACK;
        let segs = vec![
            seg(Request, isn.wrapping_add(6), a, b"world"),
            seg(Request, isn, TcpFlags::SYN, b""),
            seg(Request, isn.wrapping_add(1), a, b"hello"),
            seg(Request, isn.wrapping_add(1), a, b"hello"),
            seg(Request, isn.wrapping_add(4), a, b"lowo"),
            seg(Request, isn.wrapping_add(11), TcpFlags::FIN | a, b""),
            seg(Response, 7, TcpFlags::SYN | a, b""),
            seg(Response, 8, a, b"ok"),
        ];
        let flows = reassemble(&segs).unwrap();
        let flow = flows.values().next().unwrap();
        assert_eq!(flows.len(), 1);
        assert_eq!(flow.request.bytes, b"helloworld");
        assert!(flow.request.fin);
        assert_eq!(flow.request.duplicates, 3);
        assert_eq!(flow.response.bytes, b"ok");
        assert!(!flow.response.fin);
    }

    #[test]
    fn holes_missing_syn_and_conflicts_are_errors() {
        use Direction::Request;
        let hole = [
            seg(Request, 0, TcpFlags::SYN, b""),
            seg(Request, 1, 0, b"ab"),
            seg(Request, 4, 0, b"d"),
        ];
        assert!(
            reassemble(&hole)
                .unwrap_err()
                .contains("hole of 1 bytes at offset 2")
        );
        let no_syn = [seg(Request, 1, 0, b"ab")];
        assert!(reassemble(&no_syn).unwrap_err().contains("no SYN"));
        let conflict = [
            seg(Request, 0, TcpFlags::SYN, b""),
            seg(Request, 1, 0, b"abc"),
            seg(Request, 2, 0, b"xc"),
        ];
        assert!(reassemble(&conflict).unwrap_err().contains("disagrees"));
    }
}
