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
    /// Ethernet II (DLT_EN10MB), also what `lo` uses. 802.1Q/802.1ad VLAN tags and PPPoE
    /// sessions carrying IP are unwrapped.
    Ethernet,
    /// Raw IPv4 or IPv6 with no link header (DLT_RAW, LINKTYPE_IPV4/IPV6).
    RawIp,
    /// Linux cooked capture v1 (DLT_LINUX_SLL, 16-byte header).
    LinuxSll,
    /// Linux cooked capture v2 (DLT_LINUX_SLL2, 20-byte header).
    LinuxSll2,
    /// BSD loopback (DLT_NULL, and LINKTYPE_LOOP): a 4-byte address family, in the capturing
    /// host's byte order (NULL) or network order (LOOP); both are accepted.
    Null,
    /// Linux netfilter log (LINKTYPE_NFLOG): a 4-byte header, then TLVs; the packet is the
    /// `NFULA_PAYLOAD` TLV.
    Nflog,
}

/// Why a captured frame yielded no segment. The first three are traffic that is simply not
/// ours; the others are frames that may have carried a watched connection's bytes but could
/// not be decoded, and are counted as losses ([`FrameSkip::is_loss`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameSkip {
    /// Not IP: another link-layer protocol (ARP, LLDP, PPP control, unknown EtherType or
    /// address family).
    NotIp,
    /// IP, but not TCP (UDP, ICMP, ...).
    NotTcp,
    /// TCP, but neither port is watched.
    OtherPort,
    /// An IP fragment: fragments are counted, not reassembled.
    Fragment,
    /// The headers end before the TCP header does (cut by the snap length, or a short frame).
    Truncated,
    /// Header fields that cannot be right (IP version, header lengths).
    Malformed,
}

impl FrameSkip {
    /// Every reason, for summaries that list them all.
    pub const ALL: [FrameSkip; 6] = [
        FrameSkip::NotIp,
        FrameSkip::NotTcp,
        FrameSkip::OtherPort,
        FrameSkip::Fragment,
        FrameSkip::Truncated,
        FrameSkip::Malformed,
    ];

    /// Label value (inspect summary, metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            FrameSkip::NotIp => "not_ip",
            FrameSkip::NotTcp => "not_tcp",
            FrameSkip::OtherPort => "other_port",
            FrameSkip::Fragment => "ip_fragment",
            FrameSkip::Truncated => "truncated_header",
            FrameSkip::Malformed => "malformed",
        }
    }

    /// Whether the frame may have carried bytes of a watched connection (a loss to count),
    /// rather than traffic that is not ours.
    pub fn is_loss(self) -> bool {
        matches!(
            self,
            FrameSkip::Fragment | FrameSkip::Truncated | FrameSkip::Malformed
        )
    }
}

/// A decoded TCP segment of a watched port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The segment, with as much payload as the frame holds.
    pub segment: Segment,
    /// Payload bytes the IP header announces beyond those captured (cut by the snap length),
    /// derived from the IP lengths so that link trailers (an Ethernet FCS) never count.
    /// `None` when the IP header does not say (length 0: a GSO super-packet or a jumbogram).
    pub missing: Option<u32>,
}

/// IP version carried by a link-layer frame.
#[derive(Clone, Copy)]
enum Ip {
    V4,
    V6,
}

const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88A8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;
/// `NFULA_PAYLOAD`: the TLV of an NFLOG record that holds the packet.
const NFULA_PAYLOAD: u16 = 9;

fn be16(data: &[u8], at: usize) -> Result<u16, FrameSkip> {
    match data.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(FrameSkip::Truncated),
    }
}

fn byte(data: &[u8], at: usize) -> Result<u8, FrameSkip> {
    data.get(at).copied().ok_or(FrameSkip::Truncated)
}

/// The IP packet inside a frame, by EtherType (Ethernet, SLL, SLL2): VLAN tags and PPPoE
/// session headers are unwrapped.
fn by_ethertype(
    mut ethertype: u16,
    data: &[u8],
    mut offset: usize,
) -> Result<(Ip, &[u8]), FrameSkip> {
    loop {
        match ethertype {
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => {
                ethertype = be16(data, offset + 2)?;
                offset += 4;
            }
            ETHERTYPE_PPPOE_SESSION => {
                // version/type, code, session id, length; then the PPP protocol (1 byte when
                // compressed: an odd first byte).
                let first = byte(data, offset + 6)?;
                let (protocol, len) = if first & 1 == 1 {
                    (u16::from(first), 1)
                } else {
                    (be16(data, offset + 6)?, 2)
                };
                let ip = match protocol {
                    PPP_IPV4 => Ip::V4,
                    PPP_IPV6 => Ip::V6,
                    _ => return Err(FrameSkip::NotIp),
                };
                return Ok((ip, data.get(offset + 6 + len..).unwrap_or_default()));
            }
            ETHERTYPE_IPV4 => return Ok((Ip::V4, data.get(offset..).unwrap_or_default())),
            ETHERTYPE_IPV6 => return Ok((Ip::V6, data.get(offset..).unwrap_or_default())),
            _ => return Err(FrameSkip::NotIp),
        }
    }
}

/// BSD address family values of IPv4 and IPv6 (IPv6 differs between systems).
fn by_address_family(family: u32) -> Option<Ip> {
    match family {
        2 => Some(Ip::V4),
        10 | 24 | 28 | 30 => Some(Ip::V6),
        _ => None,
    }
}

/// The IP packet in an NFLOG record: the `NFULA_PAYLOAD` TLV. TLV lengths and types are in
/// the capturing host's byte order; the order whose TLVs tile the record is taken.
fn nflog_payload(data: &[u8]) -> Result<(Ip, &[u8]), FrameSkip> {
    let ip = match byte(data, 0)? {
        2 => Ip::V4,
        10 => Ip::V6,
        _ => return Err(FrameSkip::NotIp),
    };
    let tlvs = data.get(4..).unwrap_or_default();
    // Walks the TLVs in one byte order: `None` if they do not tile the record (the last one
    // may run past the end only with `allow_cut`: a snap length cut).
    let walk = |read: fn([u8; 2]) -> u16, allow_cut: bool| -> Option<Option<&[u8]>> {
        let mut at = 0;
        let mut payload = None;
        while at < tlvs.len() {
            let len = usize::from(read([*tlvs.get(at)?, *tlvs.get(at + 1)?]));
            let kind = read([*tlvs.get(at + 2)?, *tlvs.get(at + 3)?]) & 0x3fff;
            if len < 4 || (at + len > tlvs.len() && !allow_cut) {
                return None;
            }
            let value = &tlvs[at + 4..(at + len).min(tlvs.len())];
            if kind == NFULA_PAYLOAD && payload.is_none() {
                payload = Some(value);
            }
            at += len.div_ceil(4) * 4;
        }
        Some(payload)
    };
    let walked = walk(u16::from_le_bytes, false)
        .or_else(|| walk(u16::from_be_bytes, false))
        .or_else(|| walk(u16::from_le_bytes, true))
        .or_else(|| walk(u16::from_be_bytes, true));
    match walked {
        Some(Some(payload)) => Ok((ip, payload)),
        Some(None) => Err(FrameSkip::NotIp),
        None => Err(FrameSkip::Malformed),
    }
}

/// The IP packet a frame of `link` carries.
fn network(link: LinkType, data: &[u8]) -> Result<(Ip, &[u8]), FrameSkip> {
    match link {
        LinkType::Ethernet => by_ethertype(be16(data, 12)?, data, 14),
        LinkType::RawIp => match byte(data, 0)? >> 4 {
            4 => Ok((Ip::V4, data)),
            6 => Ok((Ip::V6, data)),
            _ => Err(FrameSkip::Malformed),
        },
        LinkType::LinuxSll => by_ethertype(be16(data, 14)?, data, 16),
        LinkType::LinuxSll2 => by_ethertype(be16(data, 0)?, data, 20),
        LinkType::Null => {
            let header: [u8; 4] = data
                .get(..4)
                .and_then(|h| h.try_into().ok())
                .ok_or(FrameSkip::Truncated)?;
            let ip = by_address_family(u32::from_le_bytes(header))
                .or_else(|| by_address_family(u32::from_be_bytes(header)))
                .ok_or(FrameSkip::NotIp)?;
            Ok((ip, &data[4..]))
        }
        LinkType::Nflog => nflog_payload(data),
    }
}

/// An IP packet's addresses, its TCP segment as captured, and the TCP segment's length as the
/// IP header announces it (`None` when it does not say).
struct TcpInIp<'a> {
    src: IpAddr,
    dst: IpAddr,
    tcp: &'a [u8],
    announced: Option<usize>,
    /// The first fragment of a fragmented packet: the TCP header is here, the rest is not.
    first_fragment: bool,
}

fn ipv4(l3: &[u8]) -> Result<TcpInIp<'_>, FrameSkip> {
    let first = byte(l3, 0)?;
    if first >> 4 != 4 {
        return Err(FrameSkip::Malformed);
    }
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < 20 {
        return Err(FrameSkip::Malformed);
    }
    if l3.len() < 20 {
        return Err(FrameSkip::Truncated);
    }
    if l3[9] != IPPROTO_TCP {
        return Err(FrameSkip::NotTcp);
    }
    let flags_offset = u16::from_be_bytes([l3[6], l3[7]]);
    if flags_offset & 0x1fff != 0 {
        // A later fragment: no TCP header, so its connection is unknown.
        return Err(FrameSkip::Fragment);
    }
    let total = usize::from(u16::from_be_bytes([l3[2], l3[3]]));
    let (end, announced) = match total {
        // tot_len 0: a GSO super-packet; take what was captured.
        0 => (l3.len(), None),
        t if t < ihl => return Err(FrameSkip::Malformed),
        t => (t.min(l3.len()), Some(t - ihl)),
    };
    let src: [u8; 4] = [l3[12], l3[13], l3[14], l3[15]];
    let dst: [u8; 4] = [l3[16], l3[17], l3[18], l3[19]];
    Ok(TcpInIp {
        src: IpAddr::from(src),
        dst: IpAddr::from(dst),
        tcp: l3.get(ihl..end).ok_or(FrameSkip::Truncated)?,
        announced,
        first_fragment: flags_offset & 0x2000 != 0,
    })
}

const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AUTH: u8 = 51;
const IPV6_DEST_OPTS: u8 = 60;
/// Extension headers walked before giving up (a packet needs at most a handful).
const MAX_IPV6_EXTENSIONS: usize = 8;

fn ipv6(l3: &[u8]) -> Result<TcpInIp<'_>, FrameSkip> {
    if byte(l3, 0)? >> 4 != 6 {
        return Err(FrameSkip::Malformed);
    }
    if l3.len() < 40 {
        return Err(FrameSkip::Truncated);
    }
    let payload = usize::from(u16::from_be_bytes([l3[4], l3[5]]));
    let mut next = l3[6];
    let mut offset = 40;
    let mut extensions = 0;
    let mut first_fragment = false;
    while next != IPPROTO_TCP {
        if extensions == MAX_IPV6_EXTENSIONS {
            return Err(FrameSkip::Malformed);
        }
        extensions += 1;
        let header_next = byte(l3, offset)?;
        let len = match next {
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
                (usize::from(byte(l3, offset + 1)?) + 1) * 8
            }
            IPV6_AUTH => (usize::from(byte(l3, offset + 1)?) + 2) * 4,
            IPV6_FRAGMENT => {
                let offset_flags = be16(l3, offset + 2)?;
                if offset_flags & 0xfff8 != 0 {
                    return Err(FrameSkip::Fragment);
                }
                // Offset 0 and more to come: the first fragment. (With M clear it is an
                // atomic fragment: a whole packet.)
                first_fragment = offset_flags & 1 != 0;
                8
            }
            _ => return Err(FrameSkip::NotTcp),
        };
        next = header_next;
        offset += len;
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&l3[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&l3[24..40]);
    let (end, announced) = match payload {
        // Payload length 0: a GSO super-packet or a jumbogram; take what was captured.
        0 => (l3.len(), None),
        p if 40 + p < offset => return Err(FrameSkip::Malformed),
        p => ((40 + p).min(l3.len()), Some(40 + p - offset)),
    };
    let tcp = l3.get(offset..end).ok_or(FrameSkip::Truncated)?;
    Ok(TcpInIp {
        src: IpAddr::from(src),
        dst: IpAddr::from(dst),
        tcp,
        announced,
        first_fragment,
    })
}

/// Decodes one captured frame into a [`Segment`] if it is IPv4/IPv6 TCP to or from one of
/// `ports`; otherwise says why not. `ts_ns` is the capture time in ns since the Unix epoch.
///
/// A frame cut by the capture's snap length still yields its segment when the TCP header's
/// first 14 bytes (ports, sequence numbers, flags) were captured: the payload is what the
/// frame holds and [`Decoded::missing`] says how much more the IP header announced.
pub fn decode(
    link: LinkType,
    data: &[u8],
    ports: &[u16],
    ts_ns: u64,
) -> Result<Decoded, FrameSkip> {
    let (ip, l3) = network(link, data)?;
    let packet = match ip {
        Ip::V4 => ipv4(l3)?,
        Ip::V6 => ipv6(l3)?,
    };
    let tcp = packet.tcp;
    let sport = be16(tcp, 0)?;
    let dport = be16(tcp, 2)?;
    let (src, dst) = (
        SocketAddr::new(packet.src, sport),
        SocketAddr::new(packet.dst, dport),
    );
    let (dir, flow) = if ports.contains(&dport) {
        let flow = FlowKey {
            client: src,
            server: dst,
        };
        (Direction::Request, flow)
    } else if ports.contains(&sport) {
        let flow = FlowKey {
            client: dst,
            server: src,
        };
        (Direction::Response, flow)
    } else {
        return Err(FrameSkip::OtherPort);
    };
    // A first fragment carries the TCP header, so it is known to be ours; the rest of its
    // payload is in fragments that are not reassembled.
    if packet.first_fragment {
        return Err(FrameSkip::Fragment);
    }
    let Some(header) = tcp.get(..14) else {
        return Err(FrameSkip::Truncated);
    };
    let seq = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let ack = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    let doff = usize::from(header[12] >> 4) * 4;
    let flags = TcpFlags(header[13]);
    if doff < 20 || packet.announced.is_some_and(|len| len < doff) {
        return Err(FrameSkip::Malformed);
    }
    let captured = tcp.get(doff..).unwrap_or_default();
    let missing = match packet.announced {
        Some(len) => Some(u32::try_from(len - doff - captured.len()).unwrap_or(u32::MAX)),
        // Options cut off and no length to tell how much payload followed.
        None if tcp.len() < doff => return Err(FrameSkip::Truncated),
        None => None,
    };
    Ok(Decoded {
        segment: Segment {
            flow,
            dir,
            seq,
            ack,
            flags,
            ts_ns,
            payload: Bytes::copy_from_slice(captured),
        },
        missing,
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
            assert_eq!(back.segment, seg);
            assert_eq!(back.missing, Some(0));
        }
    }

    #[test]
    fn ipv6_round_trip() {
        let seg = segment("[::1]:40000", "[::1]:8080", Direction::Request, b"abc");
        let frame = encode_ethernet(&seg);
        assert_eq!(
            decode(LinkType::Ethernet, &frame, &[8080], 5)
                .unwrap()
                .segment
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
    fn other_ports_and_truncated_frames_are_told_apart() {
        let seg = segment("10.0.0.1:40000", "10.0.0.2:8080", Direction::Request, b"x");
        let frame = encode_ethernet(&seg);
        assert_eq!(
            decode(LinkType::Ethernet, &frame, &[9090], 0),
            Err(FrameSkip::OtherPort)
        );
        // Up to the TCP flags (14 + 20 + 14 bytes) nothing can be said about the segment.
        for cut in 0..48 {
            let got = decode(LinkType::Ethernet, &frame[..cut], &[8080], 0);
            assert_eq!(got, Err(FrameSkip::Truncated), "cut {cut}");
        }
        // From there on the segment is known; what the frame lacks is missing payload.
        for cut in 48..=55 {
            let got = decode(LinkType::Ethernet, &frame[..cut], &[8080], 0).unwrap();
            assert_eq!(got.segment.seq, seg.seq, "cut {cut}");
            let kept = cut.saturating_sub(54);
            assert_eq!(got.segment.payload.len(), kept, "cut {cut}");
            assert_eq!(got.missing, Some(1 - kept as u32), "cut {cut}");
        }
    }

    /// `frame` (Ethernet) with the 4-byte FCS some captures keep at the end.
    fn with_fcs(frame: &[u8]) -> Vec<u8> {
        let mut out = frame.to_vec();
        out.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        out
    }

    #[test]
    fn missing_payload_comes_from_the_ip_lengths_not_the_frame_length() {
        let payload = [b'p'; 300];
        for (client, server) in [
            ("10.0.0.1:40000", "10.0.0.2:8080"),
            ("[2001:db8::1]:40000", "[2001:db8::2]:8080"),
        ] {
            let seg = segment(client, server, Direction::Response, &payload);
            let frame = with_fcs(&encode_ethernet(&seg));
            // Whole frame with its FCS: the trailer is not payload, nothing is missing.
            let whole = decode(LinkType::Ethernet, &frame, &[8080], 0).unwrap();
            assert_eq!(whole.segment.payload.len(), 300, "{client}");
            assert_eq!(whole.missing, Some(0), "{client}");
            // Cut at 200 bytes: orig_len - caplen would say 300 + 4 - ... ; the IP length
            // says exactly how much payload is gone.
            let cut = decode(LinkType::Ethernet, &frame[..200], &[8080], 0).unwrap();
            let kept = cut.segment.payload.len();
            assert_eq!(kept as u32 + cut.missing.unwrap(), 300, "{client}");
            assert_eq!(
                frame.len() - 200,
                300 - kept + 4,
                "orig_len - caplen over-counts"
            );
        }
    }

    /// A PPPoE session header (version/type 0x11, code 0, session, length) and PPP protocol.
    fn pppoe(ppp_protocol: u16, ip: &[u8]) -> Vec<u8> {
        let mut out = vec![0x11, 0x00, 0x12, 0x34];
        out.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&ppp_protocol.to_be_bytes());
        out.extend_from_slice(ip);
        out
    }

    #[test]
    fn vlan_tags_and_pppoe_sessions_are_unwrapped() {
        for (client, server, ppp) in [
            ("10.0.0.1:40000", "10.0.0.2:80", 0x0021),
            ("[2001:db8::1]:40000", "[2001:db8::2]:80", 0x0057),
        ] {
            let seg = segment(client, server, Direction::Request, b"GET / HTTP/1.1\r\n");
            let eth = encode_ethernet(&seg);
            // Ethernet + two 802.1Q tags + PPPoE session, as in PcapPlusPlus's capture.
            let mut frame = eth[..12].to_vec();
            frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x64, 0x81, 0x00, 0x00, 0x0a]);
            frame.extend_from_slice(&[0x88, 0x64]);
            frame.extend_from_slice(&pppoe(ppp, &eth[14..]));
            let got = decode(LinkType::Ethernet, &frame, &[80], seg.ts_ns).unwrap();
            assert_eq!(got.segment, seg, "{client}");
        }
        // PPP link control and PPPoE discovery are not IP.
        let seg = segment("10.0.0.1:40000", "10.0.0.2:80", Direction::Request, b"x");
        let eth = encode_ethernet(&seg);
        let mut lcp = eth[..12].to_vec();
        lcp.extend_from_slice(&[0x88, 0x64]);
        lcp.extend_from_slice(&pppoe(0xc021, &[1, 1, 0, 4]));
        assert_eq!(
            decode(LinkType::Ethernet, &lcp, &[80], 0),
            Err(FrameSkip::NotIp)
        );
        let mut discovery = eth[..12].to_vec();
        discovery.extend_from_slice(&[0x88, 0x63, 0x11, 0x09, 0, 0, 0, 0]);
        assert_eq!(
            decode(LinkType::Ethernet, &discovery, &[80], 0),
            Err(FrameSkip::NotIp)
        );
    }

    /// An IPv6 packet with `extensions` (next header, bytes) inserted before the TCP header.
    fn ipv6_with(seg: &Segment, extensions: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let eth = encode_ethernet(seg);
        let ip = &eth[14..];
        let mut out = ip[..40].to_vec();
        let mut chain: Vec<u8> = Vec::new();
        let mut next = IPPROTO_TCP;
        for (kind, body) in extensions.iter().rev() {
            let mut header = body.clone();
            header[0] = next;
            header.extend_from_slice(&chain);
            chain = header;
            next = *kind;
        }
        out[6] = next;
        let payload_len = (chain.len() + ip.len() - 40) as u16;
        out[4..6].copy_from_slice(&payload_len.to_be_bytes());
        out.extend_from_slice(&chain);
        out.extend_from_slice(&ip[40..]);
        out
    }

    #[test]
    fn ipv6_extension_headers_are_skipped_and_fragments_counted() {
        let seg = segment("[::1]:40000", "[::1]:8080", Direction::Request, b"hello");
        let hop_by_hop = vec![0, 0, 1, 4, 0, 0, 0, 0]; // PadN
        let mut routing = vec![0, 2, 0, 0, 0, 0, 0, 0];
        routing.extend_from_slice(&[0u8; 16]);
        let dest_opts = vec![0, 0, 1, 4, 0, 0, 0, 0];
        let atomic_fragment = vec![0, 0, 0, 0, 0, 0, 0, 7];
        let packet = ipv6_with(
            &seg,
            &[
                (0, hop_by_hop.clone()),
                (43, routing),
                (60, dest_opts),
                (44, atomic_fragment),
            ],
        );
        let got = decode(LinkType::RawIp, &packet, &[8080], seg.ts_ns).unwrap();
        assert_eq!(got.segment, seg);
        assert_eq!(got.missing, Some(0));
        // First fragment (offset 0, more to come) and a later one.
        let first = ipv6_with(&seg, &[(44, vec![0, 0, 0, 1, 0, 0, 0, 7])]);
        assert_eq!(
            decode(LinkType::RawIp, &first, &[8080], 0),
            Err(FrameSkip::Fragment)
        );
        assert_eq!(
            decode(LinkType::RawIp, &first, &[9999], 0),
            Err(FrameSkip::OtherPort),
            "a first fragment of another port is not ours"
        );
        let later = ipv6_with(&seg, &[(44, vec![0, 0, 0x05, 0x00, 0, 0, 0, 7])]);
        assert_eq!(
            decode(LinkType::RawIp, &later, &[8080], 0),
            Err(FrameSkip::Fragment)
        );
        // Cut inside the extension headers; UDP behind them.
        assert_eq!(
            decode(LinkType::RawIp, &packet[..44], &[8080], 0),
            Err(FrameSkip::Truncated)
        );
        let mut udp = ipv6_with(&seg, &[(0, hop_by_hop)]);
        udp[40] = 17;
        assert_eq!(
            decode(LinkType::RawIp, &udp, &[8080], 0),
            Err(FrameSkip::NotTcp)
        );
    }

    #[test]
    fn ipv4_fragments_and_bad_headers_are_counted_apart() {
        let seg = segment("10.0.0.1:40000", "10.0.0.2:8080", Direction::Request, b"x");
        let ip = encode_ethernet(&seg)[14..].to_vec();
        let mut first = ip.clone();
        first[6] = 0x20; // more fragments, offset 0
        assert_eq!(
            decode(LinkType::RawIp, &first, &[8080], 0),
            Err(FrameSkip::Fragment)
        );
        let mut later = ip.clone();
        later[7] = 0x10; // offset 128
        assert_eq!(
            decode(LinkType::RawIp, &later, &[8080], 0),
            Err(FrameSkip::Fragment)
        );
        let mut udp = ip.clone();
        udp[9] = 17;
        assert_eq!(
            decode(LinkType::RawIp, &udp, &[8080], 0),
            Err(FrameSkip::NotTcp)
        );
        let mut short_ihl = ip.clone();
        short_ihl[0] = 0x44;
        assert_eq!(
            decode(LinkType::RawIp, &short_ihl, &[8080], 0),
            Err(FrameSkip::Malformed)
        );
        let mut bad_doff = ip.clone();
        bad_doff[32] = 0x40;
        assert_eq!(
            decode(LinkType::RawIp, &bad_doff, &[8080], 0),
            Err(FrameSkip::Malformed)
        );
        assert_eq!(
            decode(LinkType::RawIp, &[0x50, 0, 0, 0], &[8080], 0),
            Err(FrameSkip::Malformed)
        );
        let mut arp = encode_ethernet(&seg).to_vec();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(
            decode(LinkType::Ethernet, &arp, &[8080], 0),
            Err(FrameSkip::NotIp)
        );
        for reason in FrameSkip::ALL {
            assert_eq!(FrameSkip::ALL[reason as usize], reason);
        }
    }

    #[test]
    fn bsd_loopback_in_either_byte_order() {
        for (client, server, family) in [
            ("10.0.0.1:40000", "10.0.0.2:8080", 2u32),
            ("[::1]:40000", "[::1]:8080", 30),
            ("[::1]:40000", "[::1]:8080", 24),
        ] {
            let seg = segment(client, server, Direction::Response, b"body");
            let ip = &encode_ethernet(&seg)[14..];
            for header in [family.to_le_bytes(), family.to_be_bytes()] {
                let mut frame = header.to_vec();
                frame.extend_from_slice(ip);
                let got = decode(LinkType::Null, &frame, &[8080], seg.ts_ns).unwrap();
                assert_eq!(got.segment, seg, "{client} {header:?}");
            }
        }
        assert_eq!(
            decode(LinkType::Null, &[7, 0, 0, 0, 0x45], &[8080], 0),
            Err(FrameSkip::NotIp)
        );
    }

    /// An NFLOG record: header, a prefix TLV, the payload TLV; lengths in `order`.
    fn nflog(family: u8, ip: &[u8], order: fn(u16) -> [u8; 2]) -> Vec<u8> {
        let mut out = vec![family, 0, 0, 1];
        let tlv = |out: &mut Vec<u8>, kind: u16, value: &[u8]| {
            out.extend_from_slice(&order((value.len() + 4) as u16));
            out.extend_from_slice(&order(kind));
            out.extend_from_slice(value);
            out.resize(out.len().div_ceil(4) * 4, 0);
        };
        tlv(&mut out, 10, b"prefix\0"); // NFULA_PREFIX
        tlv(&mut out, 9, ip);
        out
    }

    #[test]
    fn nflog_payload_tlv_in_either_byte_order() {
        for (client, server, family) in [
            ("10.0.0.1:40000", "10.0.0.2:8080", 2),
            ("[::1]:40000", "[::1]:8080", 10),
        ] {
            let seg = segment(client, server, Direction::Request, b"odd");
            let ip = &encode_ethernet(&seg)[14..];
            for order in [u16::to_le_bytes, u16::to_be_bytes] {
                let frame = nflog(family, ip, order);
                let got = decode(LinkType::Nflog, &frame, &[8080], seg.ts_ns).unwrap();
                assert_eq!(got.segment, seg, "{client}");
            }
        }
        assert_eq!(
            decode(LinkType::Nflog, &[2, 0, 0, 1, 0, 0], &[8080], 0),
            Err(FrameSkip::Malformed)
        );
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
            decode(LinkType::RawIp, ip, &[8080], 0)
                .unwrap()
                .segment
                .payload,
            "body"
        );
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&0x0800u16.to_be_bytes());
        sll.extend_from_slice(ip);
        assert_eq!(
            decode(LinkType::LinuxSll, &sll, &[8080], 0)
                .unwrap()
                .segment
                .payload,
            "body"
        );
        let mut sll2 = 0x0800u16.to_be_bytes().to_vec();
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(ip);
        assert_eq!(
            decode(LinkType::LinuxSll2, &sll2, &[8080], 0)
                .unwrap()
                .segment
                .payload,
            "body"
        );
    }
}
