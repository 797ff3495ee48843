//! Bounds-checked header parsing and the per-segment copy into the ring buffer.
//!
//! Every read goes through `bpf_skb_load_bytes` (via `TcContext::load`), which works on
//! non-linear skbs and fails cleanly past the end of the packet. Headers are read a whole fixed
//! header at a time (IPv4, IPv6, then the TCP ports and the rest of the TCP header): the helper
//! call costs more than the bytes it copies.
//!
//! A packet starts with the interface's link-layer header: 14 bytes on Ethernet-like devices
//! (`lo` included), none on layer-3 devices (tun, WireGuard). The daemon sets its length in
//! [`L2_HEADER_LEN`] when it loads the program; the network protocol comes from the skb
//! (`skb->protocol`), which every link type sets, not from an Ethernet header.

use aya_ebpf::{Global, helpers::bpf_skb_load_bytes, programs::TcContext};
use core::hint::black_box;
use shadow_common::{
    CHUNK_SIZE, DIR_REQUEST, DIR_RESPONSE, FAMILY_IPV4, FAMILY_IPV6, MAX_CHUNKS, RING_BYTES,
    SegmentEvent, SegmentRecord, counter, tcp_flags,
};

use crate::maps::{EVENTS, bump, is_watched, opaque};
use crate::trace;

/// Ethernet header length (also `lo`'s).
const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const IPPROTO_TCP: u8 = 6;
const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
/// IPv4 flags/offset field: the fragment offset bits and the "more fragments" flag.
const IPV4_FRAGMENT_OFFSET: u16 = 0x1fff;
const IPV4_MORE_FRAGMENTS: u16 = 0x2000;
/// IPv6 extension headers the walk understands (next-header values).
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AUTH: u8 = 51;
const IPV6_DEST_OPTS: u8 = 60;
/// IPv6 fragment header offset/flags field: the offset bits and the M flag.
const IPV6_FRAGMENT_OFFSET: u16 = 0xfff8;
const IPV6_MORE_FRAGMENTS: u16 = 0x0001;
/// Extension headers walked before the packet counts as malformed (as in the userspace frame
/// decoder, `shadow_core::frame`): real packets carry a handful at most.
const MAX_IPV6_EXTENSIONS: u32 = 8;

/// Link-layer header bytes in front of the IP header on the tapped interface: 14 (Ethernet-like)
/// or 0 (layer-3 devices). Set by the daemon at load (`EbpfLoader::override_global`); aya
/// freezes it, so the verifier knows the value and checks the one layout in use.
#[unsafe(no_mangle)]
static L2_HEADER_LEN: Global<u32> = Global::new(ETH_HLEN as u32);

/// Where the IP header starts: 0 or [`ETH_HLEN`], nothing else.
#[inline(always)]
fn l2_header_len() -> usize {
    if L2_HEADER_LEN.load() == 0 {
        0
    } else {
        ETH_HLEN
    }
}

/// Ring fill (bytes) from which a submit wakes the reader. Below it, records are submitted
/// without a wakeup and the reader collects them on its short poll timer: far fewer wakeups
/// (and context switches competing with production) per packet.
const WAKEUP_BYTES: u64 = (RING_BYTES / 8) as u64;

#[inline(always)]
fn wakeup_flag() -> u64 {
    use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
    if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Where the TCP header starts and how many payload bytes the IP header announces.
struct Network {
    family: u8,
    saddr: [u8; 16],
    daddr: [u8; 16],
    l4_offset: usize,
    /// Bytes from the TCP header start to the end of the IP datagram, or 0 when the IP length
    /// field is 0 (GSO super-packets on loopback): then the skb length is used.
    l4_len: u32,
    /// The first fragment of a fragmented datagram: the TCP header is here, the rest of the
    /// payload is in fragments that are not reassembled.
    first_fragment: bool,
}

/// Copies the segment into the ring if it belongs to a watched port. Errors only mean "not
/// ours" or "could not read": the caller lets the packet pass either way.
#[inline(always)]
pub fn try_tap(ctx: &TcContext) {
    if let Err(()) = tap(ctx) {
        bump(counter::MALFORMED);
        trace::malformed(ctx);
    }
}

#[inline(always)]
fn load_be16(ctx: &TcContext, offset: usize) -> Result<u16, ()> {
    ctx.load::<u16>(offset).map(u16::from_be).map_err(|_| ())
}

/// Reads the IP header (and IPv6 extension headers) in front of the TCP header. `Ok(None)`:
/// not TCP over IP, or an IP fragment without a TCP header (counted as `FRAGMENT` here, since
/// its port cannot be known). `Err`: unreadable, an IP version that is not the protocol's (a
/// wrong link-layer length shows here) or more than `MAX_IPV6_EXTENSIONS` extension headers
/// (the caller counts it as malformed, like the userspace frame decoder).
#[inline(always)]
fn parse_network(ctx: &TcContext) -> Result<Option<Network>, ()> {
    let ethertype = u16::from_be(ctx.skb.protocol() as u16);
    let l2 = l2_header_len();
    let mut saddr = [0u8; 16];
    let mut daddr = [0u8; 16];
    match ethertype {
        ETH_P_IP => {
            // The fixed IPv4 header in one helper call (each call costs more than the copy).
            let h: [u8; IPV4_HLEN] = ctx.load(l2).map_err(|_| ())?;
            let version_ihl = h[0];
            if version_ihl >> 4 != 4 {
                return Err(());
            }
            let ihl = ((version_ihl & 0x0f) as usize) * 4;
            let protocol = h[9];
            if protocol != IPPROTO_TCP || ihl < 20 {
                return Ok(None);
            }
            let frag = u16::from_be_bytes([h[6], h[7]]);
            // A later fragment has no TCP header: its connection cannot be known.
            if frag & IPV4_FRAGMENT_OFFSET != 0 {
                bump(counter::FRAGMENT);
                return Ok(None);
            }
            let tot_len = u16::from_be_bytes([h[2], h[3]]) as u32;
            saddr[..4].copy_from_slice(&h[12..16]);
            daddr[..4].copy_from_slice(&h[16..20]);
            Ok(Some(Network {
                family: FAMILY_IPV4,
                saddr,
                daddr,
                l4_offset: l2 + ihl,
                l4_len: tot_len.saturating_sub(ihl as u32),
                first_fragment: frag & IPV4_MORE_FRAGMENTS != 0,
            }))
        }
        ETH_P_IPV6 => {
            // The fixed IPv6 header in one helper call.
            let h: [u8; IPV6_HLEN] = ctx.load(l2).map_err(|_| ())?;
            if h[0] >> 4 != 6 {
                return Err(());
            }
            let mut next_header = h[6];
            let mut l4_offset = l2 + IPV6_HLEN;
            let mut first_fragment = false;
            // Walk the extension headers up to TCP; bounded, so the verifier sees the loop end.
            let mut walked: u32 = 0;
            while next_header != IPPROTO_TCP {
                if walked >= MAX_IPV6_EXTENSIONS {
                    return Err(());
                }
                walked += 1;
                let following: u8 = ctx.load(l4_offset).map_err(|_| ())?;
                let header_len = match next_header {
                    IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
                        let units: u8 = ctx.load(l4_offset + 1).map_err(|_| ())?;
                        (units as usize + 1) * 8
                    }
                    IPV6_AUTH => {
                        let units: u8 = ctx.load(l4_offset + 1).map_err(|_| ())?;
                        (units as usize + 2) * 4
                    }
                    IPV6_FRAGMENT => {
                        let offset_flags = load_be16(ctx, l4_offset + 2)?;
                        if offset_flags & IPV6_FRAGMENT_OFFSET != 0 {
                            bump(counter::FRAGMENT);
                            return Ok(None);
                        }
                        // Offset 0 with more to come: the first fragment (with M clear it is
                        // an atomic fragment, a whole packet).
                        first_fragment = offset_flags & IPV6_MORE_FRAGMENTS != 0;
                        8
                    }
                    _ => return Ok(None),
                };
                next_header = following;
                l4_offset += header_len;
            }
            if walked > 0 {
                // Each combination of extension headers ends at its own range of offsets:
                // hide it from the verifier so that the rest is verified once, not per path.
                l4_offset = opaque(l4_offset as u32).ok_or(())? as usize;
                // (Each header is at most 2048 bytes long.)
                let walk = l2 + IPV6_HLEN..=l2 + IPV6_HLEN + 2048 * MAX_IPV6_EXTENSIONS as usize;
                if !walk.contains(&l4_offset) {
                    return Err(());
                }
            }
            let payload_len = u16::from_be_bytes([h[4], h[5]]) as u32;
            let extensions_len = (l4_offset - l2 - IPV6_HLEN) as u32;
            // Payload length 0 (GSO super-packet, jumbogram): the skb length is used instead.
            let l4_len = if payload_len == 0 {
                0
            } else if payload_len <= extensions_len {
                // No room for a TCP header.
                return Err(());
            } else {
                payload_len - extensions_len
            };
            saddr.copy_from_slice(&h[8..24]);
            daddr.copy_from_slice(&h[24..40]);
            Ok(Some(Network {
                family: FAMILY_IPV6,
                saddr,
                daddr,
                l4_offset,
                l4_len,
                first_fragment,
            }))
        }
        _ => Ok(None),
    }
}

#[inline(always)]
fn tap(ctx: &TcContext) -> Result<(), ()> {
    let Some(net) = parse_network(ctx)? else {
        return Ok(());
    };
    let l4 = net.l4_offset;
    let ports: [u8; 4] = ctx.load(l4).map_err(|_| ())?;
    let sport = u16::from_be_bytes([ports[0], ports[1]]);
    let dport = u16::from_be_bytes([ports[2], ports[3]]);
    let direction = if is_watched(dport) {
        DIR_REQUEST
    } else if is_watched(sport) {
        DIR_RESPONSE
    } else {
        trace::ignored(ctx, net.family, sport, dport);
        return Ok(());
    };
    bump(counter::MATCHED);
    if net.first_fragment {
        bump(counter::FRAGMENT);
        return Ok(());
    }

    // Sequence and acknowledgement numbers, data offset and flags in one helper call.
    let t: [u8; 10] = ctx.load(l4 + 4).map_err(|_| ())?;
    let seq = u32::from_be_bytes([t[0], t[1], t[2], t[3]]);
    let ack = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let doff_byte = t[8];
    let flags = t[9];
    let tcp_hlen = ((doff_byte >> 4) as u32) * 4;
    if tcp_hlen < 20 {
        return Err(());
    }

    let skb_len = ctx.len();
    let from_skb = skb_len.saturating_sub(l4 as u32);
    let l4_len = if net.l4_len == 0 {
        from_skb
    } else {
        // Ethernet padding can make the skb longer than the datagram: trust the IP length,
        // bounded by what the skb really holds.
        if net.l4_len < from_skb {
            net.l4_len
        } else {
            from_skb
        }
    };
    let payload_len = l4_len.saturating_sub(tcp_hlen);
    let payload_offset = l4 as u32 + tcp_hlen;
    trace::segment(ctx, direction, sport, dport, seq, flags, payload_len);

    // Bare ACKs carry nothing the reassembly needs.
    if payload_len == 0 && flags & (tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST) == 0 {
        return Ok(());
    }

    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let ts_ns = unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() };

    let mut index: u32 = 0;
    while index < MAX_CHUNKS {
        let offset = index * CHUNK_SIZE as u32;
        if index > 0 && offset >= payload_len {
            break;
        }
        let remaining = payload_len - offset;
        let is_last = remaining <= CHUNK_SIZE as u32;
        let mut chunk_flags = flags;
        if index > 0 {
            chunk_flags &= !tcp_flags::SYN;
        }
        if !is_last {
            chunk_flags &= !(tcp_flags::FIN | tcp_flags::RST);
        }
        index += 1;

        // The payload is loaded straight into the reserved ring slot: one copy per byte.
        let Some(mut entry) = EVENTS.reserve::<SegmentRecord>(0) else {
            bump(counter::RING_FULL);
            continue;
        };
        let rec = entry.as_mut_ptr();
        let mut chunk_len = 0u32;
        if remaining > 0 {
            let want = if is_last {
                remaining
            } else {
                CHUNK_SIZE as u32
            };
            // The verifier must see a length in [1, CHUNK_SIZE]: hide the arithmetic from LLVM
            // so that it cannot fold the bound check away, then check again.
            let len_m1 = black_box(want - 1) as usize;
            if len_m1 >= CHUNK_SIZE {
                entry.discard(0);
                return Err(());
            }
            let len = len_m1 + 1;
            let ret = unsafe {
                bpf_skb_load_bytes(
                    ctx.skb.skb as *const _,
                    payload_offset + offset,
                    (*rec).payload.as_mut_ptr() as *mut _,
                    len as u32,
                )
            };
            if ret < 0 {
                entry.discard(0);
                return Err(());
            }
            chunk_len = len as u32;
        }
        // SAFETY: `rec` points into the reserved slot, valid until submit.
        unsafe {
            (*rec).event = SegmentEvent {
                ts_ns,
                saddr: net.saddr,
                daddr: net.daddr,
                sport,
                dport,
                family: net.family,
                direction,
                tcp_flags: chunk_flags,
                chunk_index: (index - 1) as u8,
                seq: seq.wrapping_add(offset),
                ack,
                segment_len: payload_len,
                chunk_len,
                ifindex,
            };
        }
        entry.submit(wakeup_flag());
    }
    if payload_len > MAX_CHUNKS * CHUNK_SIZE as u32 {
        bump(counter::TOO_LONG);
    }
    Ok(())
}
