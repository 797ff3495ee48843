//! Packet bytes ⇄ [`Segment`]: decoding captured frames (Ethernet, raw IP, Linux cooked) and
//! encoding segments as Ethernet/IP/TCP frames for pcap files.

use crate::segment::{Direction, FlowKey, Segment, TcpFlags};
use bytes::{BufMut, Bytes, BytesMut};
use std::net::{IpAddr, SocketAddr};

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const IPPROTO_TCP: u8 = 6;

/// Encodes `segment` as an Ethernet II frame carrying IPv4 or IPv6 and TCP, with valid
/// checksums, so that tcpdump and Wireshark reassemble the stream. MAC addresses are zero (as
/// on `lo`). Payloads larger than an IPv4 datagram can hold are the caller's to split.
pub fn encode_ethernet(segment: &Segment) -> Bytes {
    let (src, dst) = segment.endpoints();
    let tcp = encode_tcp(segment, src, dst);
    let mut frame = BytesMut::with_capacity(14 + 40 + tcp.len());
    frame.put_slice(&[0u8; 12]);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            frame.put_u16(ETHERTYPE_IPV4);
            let total_len = (20 + tcp.len()) as u16;
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&total_len.to_be_bytes());
            ip[6] = 0x40; // don't fragment
            ip[8] = 64;
            ip[9] = IPPROTO_TCP;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let csum = checksum(&[&ip]);
            ip[10..12].copy_from_slice(&csum.to_be_bytes());
            frame.put_slice(&ip);
        }
        (s, d) => {
            let s = to_v6(s);
            let d = to_v6(d);
            frame.put_u16(ETHERTYPE_IPV6);
            frame.put_u32(0x6000_0000);
            frame.put_u16(tcp.len() as u16);
            frame.put_u8(IPPROTO_TCP);
            frame.put_u8(64);
            frame.put_slice(&s.octets());
            frame.put_slice(&d.octets());
        }
    }
    frame.put_slice(&tcp);
    frame.freeze()
}

fn to_v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn encode_tcp(segment: &Segment, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut tcp = Vec::with_capacity(20 + segment.payload.len());
    tcp.extend_from_slice(&src.port().to_be_bytes());
    tcp.extend_from_slice(&dst.port().to_be_bytes());
    tcp.extend_from_slice(&segment.seq.to_be_bytes());
    tcp.extend_from_slice(&segment.ack.to_be_bytes());
    tcp.push(5 << 4);
    tcp.push(segment.flags.0);
    tcp.extend_from_slice(&65535u16.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    tcp.extend_from_slice(&segment.payload);
    let len = tcp.len() as u32;
    let csum = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut pseudo = [0u8; 12];
            pseudo[0..4].copy_from_slice(&s.octets());
            pseudo[4..8].copy_from_slice(&d.octets());
            pseudo[9] = IPPROTO_TCP;
            pseudo[10..12].copy_from_slice(&(len as u16).to_be_bytes());
            checksum(&[&pseudo, &tcp])
        }
        (s, d) => {
            let mut pseudo = [0u8; 40];
            pseudo[0..16].copy_from_slice(&to_v6(s).octets());
            pseudo[16..32].copy_from_slice(&to_v6(d).octets());
            pseudo[32..36].copy_from_slice(&len.to_be_bytes());
            pseudo[39] = IPPROTO_TCP;
            checksum(&[&pseudo, &tcp])
        }
    };
    tcp[16..18].copy_from_slice(&csum.to_be_bytes());
    tcp
}

/// Internet checksum (RFC 1071) over the concatenation of `parts`.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        let mut bytes = *part;
        if let Some(high) = odd.take() {
            match bytes.split_first() {
                Some((&low, rest)) => {
                    sum += u64::from(u16::from_be_bytes([high, low]));
                    bytes = rest;
                }
                None => {
                    odd = Some(high);
                    continue;
                }
            }
        }
        // Wide accumulation: 8 bytes at a time, folded at the end (RFC 1071 §2(B)).
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let w = u64::from_be_bytes(word.try_into().expect("8 bytes"));
            sum += (w >> 32) + (w & 0xffff_ffff);
        }
        let mut rest = words.remainder().chunks_exact(2);
        for pair in &mut rest {
            sum += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        odd = rest.remainder().first().copied();
    }
    if let Some(high) = odd {
        sum += u64::from(u16::from_be_bytes([high, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Link-layer framing of captured packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet II (DLT_EN10MB), also what `lo` uses.
    Ethernet,
    /// Raw IPv4 or IPv6 with no link header (DLT_RAW, LINKTYPE_IPV4/IPV6).
    RawIp,
    /// Linux cooked capture v1 (DLT_LINUX_SLL, 16-byte header).
    LinuxSll,
    /// Linux cooked capture v2 (DLT_LINUX_SLL2, 20-byte header).
    LinuxSll2,
}

/// Decodes one captured packet into a [`Segment`] if it is IPv4/IPv6 TCP to or from one of
/// `ports`. Returns `None` for anything else (other protocols, other ports, malformed or
/// truncated headers). `ts_ns` is the capture time in ns since the Unix epoch.
pub fn decode(link: LinkType, data: &[u8], ports: &[u16], ts_ns: u64) -> Option<Segment> {
    let (ethertype, l3) = match link {
        LinkType::Ethernet => {
            let mut ethertype = u16::from_be_bytes([*data.get(12)?, *data.get(13)?]);
            let mut offset = 14;
            // 802.1Q / 802.1ad VLAN tags.
            while ethertype == 0x8100 || ethertype == 0x88A8 {
                ethertype = u16::from_be_bytes([*data.get(offset + 2)?, *data.get(offset + 3)?]);
                offset += 4;
            }
            (ethertype, data.get(offset..)?)
        }
        LinkType::RawIp => match data.first()? >> 4 {
            4 => (ETHERTYPE_IPV4, data),
            6 => (ETHERTYPE_IPV6, data),
            _ => return None,
        },
        LinkType::LinuxSll => (
            u16::from_be_bytes([*data.get(14)?, *data.get(15)?]),
            data.get(16..)?,
        ),
        LinkType::LinuxSll2 => (
            u16::from_be_bytes([*data.first()?, *data.get(1)?]),
            data.get(20..)?,
        ),
    };
    let (src_ip, dst_ip, tcp) = match ethertype {
        ETHERTYPE_IPV4 => {
            let ihl = usize::from(l3.first()? & 0x0f) * 4;
            let frag = u16::from_be_bytes([*l3.get(6)?, *l3.get(7)?]);
            if *l3.get(9)? != IPPROTO_TCP || frag & 0x1fff != 0 || ihl < 20 {
                return None;
            }
            let total = usize::from(u16::from_be_bytes([*l3.get(2)?, *l3.get(3)?]));
            // tot_len 0: a GSO super-packet; take what was captured.
            let end = if total == 0 {
                l3.len()
            } else {
                total.min(l3.len())
            };
            let src: [u8; 4] = l3.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = l3.get(16..20)?.try_into().ok()?;
            (IpAddr::from(src), IpAddr::from(dst), l3.get(ihl..end)?)
        }
        ETHERTYPE_IPV6 => {
            if *l3.get(6)? != IPPROTO_TCP {
                return None;
            }
            let payload = usize::from(u16::from_be_bytes([*l3.get(4)?, *l3.get(5)?]));
            let end = if payload == 0 {
                l3.len()
            } else {
                (40 + payload).min(l3.len())
            };
            let src: [u8; 16] = l3.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = l3.get(24..40)?.try_into().ok()?;
            (IpAddr::from(src), IpAddr::from(dst), l3.get(40..end)?)
        }
        _ => return None,
    };
    let sport = u16::from_be_bytes([*tcp.first()?, *tcp.get(1)?]);
    let dport = u16::from_be_bytes([*tcp.get(2)?, *tcp.get(3)?]);
    let seq = u32::from_be_bytes(tcp.get(4..8)?.try_into().ok()?);
    let ack = u32::from_be_bytes(tcp.get(8..12)?.try_into().ok()?);
    let doff = usize::from(tcp.get(12)? >> 4) * 4;
    let flags = TcpFlags(*tcp.get(13)?);
    if doff < 20 {
        return None;
    }
    let payload = Bytes::copy_from_slice(tcp.get(doff..)?);
    let src = SocketAddr::new(src_ip, sport);
    let dst = SocketAddr::new(dst_ip, dport);
    let (dir, flow) = if ports.contains(&dport) {
        (
            Direction::Request,
            FlowKey {
                client: src,
                server: dst,
            },
        )
    } else if ports.contains(&sport) {
        (
            Direction::Response,
            FlowKey {
                client: dst,
                server: src,
            },
        )
    } else {
        return None;
    };
    Some(Segment {
        flow,
        dir,
        seq,
        ack,
        flags,
        ts_ns,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(client: &str, server: &str, dir: Direction, payload: &[u8]) -> Segment {
        Segment {
            flow: FlowKey {
                client: client.parse().unwrap(),
                server: server.parse().unwrap(),
            },
            dir,
            seq: 0xfffffff0,
            ack: 77,
            flags: TcpFlags(TcpFlags::ACK | TcpFlags::PSH),
            ts_ns: 1_700_000_000_123_456_789,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn ipv4_round_trip_both_directions() {
        for dir in [Direction::Request, Direction::Response] {
            let seg = segment(
                "10.0.0.1:40000",
                "10.0.0.2:8080",
                dir,
                b"GET / HTTP/1.1\r\n\r\n",
            );
            let frame = encode_ethernet(&seg);
            let back = decode(LinkType::Ethernet, &frame, &[8080], seg.ts_ns).unwrap();
            assert_eq!(back, seg);
        }
    }

    #[test]
    fn ipv6_round_trip() {
        let seg = segment("[::1]:40000", "[::1]:8080", Direction::Request, b"abc");
        let frame = encode_ethernet(&seg);
        assert_eq!(
            decode(LinkType::Ethernet, &frame, &[8080], 5)
                .unwrap()
                .payload,
            "abc"
        );
    }

    #[test]
    fn checksums_verify_to_zero() {
        let seg = segment(
            "10.0.0.1:40000",
            "10.0.0.2:8080",
            Direction::Request,
            b"odd",
        );
        let frame = encode_ethernet(&seg);
        let ip = &frame[14..34];
        assert_eq!(checksum(&[ip]), 0, "IPv4 header checksum");
        let tcp = &frame[34..];
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&ip[12..16]);
        pseudo[4..8].copy_from_slice(&ip[16..20]);
        pseudo[9] = 6;
        pseudo[10..12].copy_from_slice(&(tcp.len() as u16).to_be_bytes());
        assert_eq!(checksum(&[&pseudo, tcp]), 0, "TCP checksum");
    }

    #[test]
    fn checksum_matches_the_rfc1071_example_and_odd_splits() {
        // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2, so the checksum is !0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&[&data]), !0xddf2);
        let long: Vec<u8> = (0..1001u32).map(|i| (i * 7) as u8).collect();
        let whole = checksum(&[&long]);
        for cut in [0, 1, 7, 8, 9, 500, 1000, 1001] {
            assert_eq!(checksum(&[&long[..cut], &long[cut..]]), whole, "cut {cut}");
        }
        assert_eq!(checksum(&[&long[..3], &[], &long[3..]]), whole);
    }

    #[test]
    fn other_ports_and_truncated_frames_are_ignored() {
        let seg = segment("10.0.0.1:40000", "10.0.0.2:8080", Direction::Request, b"x");
        let frame = encode_ethernet(&seg);
        assert!(decode(LinkType::Ethernet, &frame, &[9090], 0).is_none());
        for cut in 0..54 {
            assert!(
                decode(LinkType::Ethernet, &frame[..cut], &[8080], 0).is_none(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn raw_ip_and_cooked_headers() {
        let seg = segment(
            "10.0.0.1:40000",
            "10.0.0.2:8080",
            Direction::Request,
            b"body",
        );
        let frame = encode_ethernet(&seg);
        let ip = &frame[14..];
        assert_eq!(
            decode(LinkType::RawIp, ip, &[8080], 0).unwrap().payload,
            "body"
        );
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&0x0800u16.to_be_bytes());
        sll.extend_from_slice(ip);
        assert_eq!(
            decode(LinkType::LinuxSll, &sll, &[8080], 0)
                .unwrap()
                .payload,
            "body"
        );
        let mut sll2 = 0x0800u16.to_be_bytes().to_vec();
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(ip);
        assert_eq!(
            decode(LinkType::LinuxSll2, &sll2, &[8080], 0)
                .unwrap()
                .payload,
            "body"
        );
    }
}
