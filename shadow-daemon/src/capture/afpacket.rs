//! AF_PACKET capture source, for hosts where the eBPF tap cannot be loaded.
//!
//! One `AF_PACKET`/`SOCK_DGRAM` socket bound to the interface (the kernel strips the link
//! header, so Ethernet, `lo`, VLAN and tun devices all yield plain IP packets), a classic BPF
//! filter that lets only TCP to or from the production ports into the socket (and IPv6 packets
//! with extension headers, whose ports it cannot reach), and a blocking reader thread that
//! decodes each packet with [`frame::decode`] and `try_send`s the segment. Packets it cannot
//! decode (fragments, cut or malformed headers) are counted by reason.
//!
//! This uses `libc` directly rather than `pnet::datalink`: pnet 0.35 reports neither the packet
//! type (`sll_pkttype`, needed to drop `lo`'s duplicate copy) nor the kernel timestamp, and
//! hides the socket, so `SO_RCVBUF`, `SO_ATTACH_FILTER` and `PACKET_STATISTICS` are out of reach.
//!
//! What the reader guarantees:
//! - On a loopback device every packet is seen twice (leaving, then arriving); only the
//!   arriving copy is kept. On other devices requests arrive and responses leave: both kept.
//! - Packets up to [`FRAME_BUF_BYTES`] (GSO/GRO super-packets included) are read whole; a
//!   longer one is delivered cut and counted in `truncated` (reassembly then sees the gap).
//! - A full channel drops the segment and counts it in `dropped`, never blocking; the kernel's
//!   own socket drops (`PACKET_STATISTICS.tp_drops`) are added to `dropped` as well.
//! - It stops within [`READ_TIMEOUT`] of a shutdown request or of the receiver being dropped.

use super::live::{LIVE_CHANNEL_DEPTH, LiveCapture, SharedStats, TapSpec, spawn_reader};
use crate::error::CaptureError;
use crate::shutdown::Shutdown;
use shadow_core::frame::{self, LinkType};
use shadow_core::segment::CapturedSegment;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::{self, error::TrySendError};

/// Kernel receive buffer requested for the socket (`SO_RCVBUFFORCE`, else `SO_RCVBUF`).
pub const RCVBUF_BYTES: usize = 32 << 20;
/// Largest packet read whole: covers GSO/GRO super-packets (64 KiB unless BIG TCP raises
/// `gso_max_size`/`gro_max_size`).
pub const FRAME_BUF_BYTES: usize = 256 << 10;
/// Longest time spent delivering already-queued packets after a stop request.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// How often the reader wakes up without traffic to check for shutdown.
pub const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// How often the kernel's drop counter is read while packets flow.
const STATS_INTERVAL: Duration = Duration::from_millis(250);

const ETH_P_ALL: u16 = libc::ETH_P_ALL as u16;
const ETH_P_IP: u16 = libc::ETH_P_IP as u16;
const ETH_P_IPV6: u16 = libc::ETH_P_IPV6 as u16;

/// Buffer sizes of the socket and the reader (the defaults suit production; tests shrink them
/// to provoke drops and truncation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Kernel receive buffer for the socket.
    pub rcvbuf_bytes: usize,
    /// Largest packet read whole; longer ones are cut and counted as truncated.
    pub frame_buf_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rcvbuf_bytes: RCVBUF_BYTES,
            frame_buf_bytes: FRAME_BUF_BYTES,
        }
    }
}

/// Opens an AF_PACKET tap on `spec.interface` for `spec.ports` in the calling thread's network
/// namespace and starts the reader thread.
pub fn open(spec: &TapSpec, shutdown: Shutdown) -> Result<LiveCapture, CaptureError> {
    open_with(spec, shutdown, Options::default())
}

/// [`open`] with explicit buffer sizes.
pub fn open_with(
    spec: &TapSpec,
    shutdown: Shutdown,
    options: Options,
) -> Result<LiveCapture, CaptureError> {
    let ifindex = spec.resolve()?;
    let socket = open_socket(&spec.interface, ifindex, &spec.ports, options.rcvbuf_bytes)?;
    let (tx, rx) = mpsc::channel(LIVE_CHANNEL_DEPTH);
    let stats = Arc::new(SharedStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let reader = Reader {
        socket,
        ports: spec.ports.clone(),
        frame_buf_bytes: options.frame_buf_bytes.max(1),
        tx,
        stats: Arc::clone(&stats),
        stop: Arc::clone(&stop),
        shutdown,
    };
    spawn_reader(format!("afpacket-{}", spec.interface), move || reader.run())?;
    Ok(LiveCapture {
        segments: rx,
        stats,
        _guard: Box::new(StopOnDrop(stop)),
    })
}

/// Tells the reader thread to stop (it closes the socket on its way out).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Creates, configures and binds the socket. Created with protocol 0 (receives nothing) and
/// bound with `ETH_P_ALL` only once the filter is in place, so no unfiltered packet slips in.
fn open_socket(
    iface: &str,
    ifindex: u32,
    ports: &[u16],
    rcvbuf_bytes: usize,
) -> Result<OwnedFd, CaptureError> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(CaptureError::socket(
            iface,
            "creating it",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let fd = socket.as_raw_fd();
    let setting =
        |what: &str, err: io::Error| CaptureError::socket(iface, format!("setting {what}"), err);

    let rcvbuf = libc::c_int::try_from(rcvbuf_bytes).unwrap_or(libc::c_int::MAX);
    if setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &rcvbuf).is_err() {
        // Without CAP_NET_ADMIN the kernel caps the request at net.core.rmem_max.
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &rcvbuf)
            .map_err(|e| setting("SO_RCVBUF", e))?;
    }
    let timeout = libc::timeval {
        tv_sec: READ_TIMEOUT.as_secs() as libc::time_t,
        tv_usec: READ_TIMEOUT.subsec_micros() as libc::suseconds_t,
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout)
        .map_err(|e| setting("SO_RCVTIMEO", e))?;
    setsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_TIMESTAMPNS,
        &(1 as libc::c_int),
    )
    .map_err(|e| setting("SO_TIMESTAMPNS", e))?;
    let mut program = port_filter(ports);
    let fprog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_mut_ptr(),
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
        .map_err(|e| setting("SO_ATTACH_FILTER", e))?;

    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
    addr.sll_family = libc::AF_PACKET as libc::c_ushort;
    addr.sll_protocol = ETH_P_ALL.to_be();
    addr.sll_ifindex = ifindex as libc::c_int;
    // SAFETY: `addr` is a valid sockaddr_ll and the length matches it.
    let rc = unsafe {
        libc::bind(
            fd,
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::ENODEV) => CaptureError::UnknownInterface {
                name: iface.to_owned(),
                source: err,
            },
            _ => CaptureError::socket(iface, "binding it to the interface", err),
        });
    }
    Ok(socket)
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Packets the kernel dropped on this socket since the last call (the counter resets on read).
fn kernel_drops(fd: RawFd) -> io::Result<u64> {
    // SAFETY: tpacket_stats is plain old data.
    let mut st: libc::tpacket_stats = unsafe { zeroed() };
    let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: `st` and `len` describe a writable tpacket_stats.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&raw mut st).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from(st.tp_drops))
}

/// Whether a packet of this type on this hardware type is the copy to keep.
fn keep_packet(pkttype: u8, hatype: u16) -> bool {
    // On loopback the leaving copy is the same packet that arrives right after.
    !(pkttype == libc::PACKET_OUTGOING && hatype == libc::ARPHRD_LOOPBACK)
}

/// One received packet.
struct Received {
    /// Length of the packet on the wire (may exceed what was read).
    len: usize,
    /// Bytes actually copied into the buffer.
    read: usize,
    pkttype: u8,
    hatype: u16,
    protocol: u16,
    ts_ns: Option<u64>,
}

/// The blocking side: owns the socket and the sending half of the channel.
struct Reader {
    socket: OwnedFd,
    ports: Vec<u16>,
    frame_buf_bytes: usize,
    tx: mpsc::Sender<CapturedSegment>,
    stats: Arc<SharedStats>,
    stop: Arc<AtomicBool>,
    shutdown: Shutdown,
}

impl Reader {
    fn run(self) {
        let mut buf = vec![0u8; self.frame_buf_bytes];
        let mut last_stats = Instant::now();
        // After a stop request, packets already queued on the socket were captured before the
        // stop: deliver them (until the socket is empty, for at most DRAIN_LIMIT).
        let mut draining_since: Option<Instant> = None;
        loop {
            if self.tx.is_closed() {
                break;
            }
            let stopping = self.stop.load(Ordering::Relaxed) || self.shutdown.is_requested();
            if stopping && draining_since.get_or_insert_with(Instant::now).elapsed() > DRAIN_LIMIT {
                break;
            }
            if last_stats.elapsed() >= STATS_INTERVAL {
                self.count_kernel_drops();
                last_stats = Instant::now();
            }
            let packet = match self.recv(&mut buf) {
                Ok(p) => p,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if stopping {
                        break;
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => {
                    // Reported once when the interface goes down; packets resume when it
                    // comes back up.
                    tracing::warn!("AF_PACKET: interface went down");
                    continue;
                }
                Err(e) => {
                    tracing::error!("AF_PACKET read failed, capture stops: {e}");
                    break;
                }
            };
            if !keep_packet(packet.pkttype, packet.hatype)
                || !matches!(packet.protocol, ETH_P_IP | ETH_P_IPV6)
            {
                continue;
            }
            let ts_ns = packet.ts_ns.unwrap_or_else(now_ns);
            let decoded =
                match frame::decode(LinkType::RawIp, &buf[..packet.read], &self.ports, ts_ns) {
                    Ok(decoded) => decoded,
                    Err(reason) => {
                        self.stats.skipped_frame(reason);
                        continue;
                    }
                };
            // A packet longer than the buffer is cut: what the IP header announces beyond the
            // captured payload (or, without an IP length, beyond the bytes read) is a gap.
            let missing = if packet.len > packet.read {
                self.stats.truncated.fetch_add(1, Ordering::Relaxed);
                let cut = u32::try_from(packet.len - packet.read).unwrap_or(u32::MAX);
                decoded.missing.unwrap_or(cut)
            } else {
                0
            };
            let segment = CapturedSegment {
                segment: decoded.segment,
                missing,
            };
            let len = segment.segment.payload.len();
            if !self.stats.reserve(len) {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match self.tx.try_send(segment) {
                Ok(()) => self.stats.delivered(len),
                Err(TrySendError::Full(_)) => {
                    self.stats.taken(len);
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Closed(_)) => {
                    self.stats.taken(len);
                    break;
                }
            }
        }
        self.count_kernel_drops();
    }

    fn count_kernel_drops(&self) {
        match kernel_drops(self.socket.as_raw_fd()) {
            Ok(0) => {}
            Ok(n) => {
                self.stats.dropped.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!("PACKET_STATISTICS: {e}"),
        }
    }

    /// One `recvmsg` with `MSG_TRUNC` (so the wire length is reported) and the kernel's
    /// receive timestamp (`SCM_TIMESTAMPNS`).
    fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        // SAFETY: plain old data, all-zero is valid.
        let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: plain old data, all-zero is valid.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&raw mut addr).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control);
        // SAFETY: every pointer in `msg` refers to a live buffer of the stated length.
        let n = unsafe { libc::recvmsg(self.socket.as_raw_fd(), &mut msg, libc::MSG_TRUNC) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let len = n as usize;
        let mut ts_ns = None;
        // SAFETY: walking the control messages the kernel just wrote into `control`.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET
                    && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
                {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    ts_ns = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        Ok(Received {
            len,
            read: len.min(buf.len()),
            pkttype: addr.sll_pkttype,
            hatype: addr.sll_hatype,
            protocol: u16::from_be(addr.sll_protocol),
            ts_ns,
        })
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

// Classic BPF opcodes used by the port filter (linux/filter.h).
const BPF_LD_B_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
const BPF_LD_H_ABS: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
const BPF_LD_H_IND: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_IND) as u16;
const BPF_LDX_B_MSH: u16 = (libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH) as u16;
const BPF_ALU_AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// Where a filter instruction jumps.
#[derive(Clone, Copy)]
enum To {
    Next,
    Accept,
    Reject,
    Ipv6,
}

/// Classic BPF program accepting IPv4/IPv6 TCP packets whose source or destination port is one
/// of `ports` (IPv4 fragments with an offset are not: their port is unknown), and every IPv6
/// packet whose first header is an extension header: classic BPF cannot walk them, so
/// [`frame::decode`] checks their ports (and counts the fragments among them). Offsets start at
/// the IP header (`SOCK_DGRAM`).
fn port_filter(ports: &[u16]) -> Vec<libc::sock_filter> {
    let mut prog: Vec<(u16, To, To, u32)> = Vec::new();
    let port_checks = |prog: &mut Vec<(u16, To, To, u32)>, load: u16, offset: u32| {
        prog.push((load, To::Next, To::Next, offset));
        for &port in ports {
            prog.push((BPF_JEQ_K, To::Accept, To::Next, u32::from(port)));
        }
    };
    // Version nibble.
    prog.push((BPF_LD_B_ABS, To::Next, To::Next, 0));
    prog.push((BPF_ALU_AND_K, To::Next, To::Next, 0xf0));
    prog.push((BPF_JEQ_K, To::Next, To::Ipv6, 0x40));
    // IPv4: protocol TCP, fragment offset 0, ports at X = IHL * 4.
    prog.push((BPF_LD_B_ABS, To::Next, To::Next, 9));
    prog.push((BPF_JEQ_K, To::Next, To::Reject, 6));
    prog.push((BPF_LD_H_ABS, To::Next, To::Next, 6));
    prog.push((BPF_JSET_K, To::Reject, To::Next, 0x1fff));
    prog.push((BPF_LDX_B_MSH, To::Next, To::Next, 0));
    port_checks(&mut prog, BPF_LD_H_IND, 0);
    port_checks(&mut prog, BPF_LD_H_IND, 2);
    prog.push((BPF_RET_K, To::Next, To::Next, 0));
    // IPv6: version 6; extension headers (hop-by-hop, routing, fragment, authentication,
    // destination options) go to userspace; else next header TCP, ports right after the
    // 40-byte header.
    let ipv6 = prog.len();
    prog.push((BPF_JEQ_K, To::Next, To::Reject, 0x60));
    prog.push((BPF_LD_B_ABS, To::Next, To::Next, 6));
    for extension in [0, 43, 44, 51, 60] {
        prog.push((BPF_JEQ_K, To::Accept, To::Next, extension));
    }
    prog.push((BPF_JEQ_K, To::Next, To::Reject, 6));
    port_checks(&mut prog, BPF_LD_H_ABS, 40);
    port_checks(&mut prog, BPF_LD_H_ABS, 42);
    let reject = prog.len();
    prog.push((BPF_RET_K, To::Next, To::Next, 0));
    let accept = prog.len();
    prog.push((BPF_RET_K, To::Next, To::Next, u32::MAX));

    let target = |at: usize, to: To| -> u8 {
        let dest = match to {
            To::Next => return 0,
            To::Accept => accept,
            To::Reject => reject,
            To::Ipv6 => ipv6,
        };
        u8::try_from(dest - at - 1).expect("filter jump fits in 8 bits")
    };
    prog.iter()
        .enumerate()
        .map(|(at, &(code, jt, jf, k))| libc::sock_filter {
            code,
            jt: target(at, jt),
            jf: target(at, jf),
            k,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use shadow_core::segment::{Direction, FlowKey, Segment, TcpFlags};

    /// Runs the subset of classic BPF that [`port_filter`] emits; returns the snap length.
    fn run_filter(prog: &[libc::sock_filter], pkt: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let byte = |at: usize| pkt.get(at).map(|&b| u32::from(b));
        let half = |at: usize| {
            Some(u32::from(u16::from_be_bytes([
                *pkt.get(at)?,
                *pkt.get(at + 1)?,
            ])))
        };
        for _ in 0..prog.len() {
            let i = prog[pc];
            pc += 1;
            let k = i.k as usize;
            match i.code {
                BPF_LD_B_ABS => match byte(k) {
                    Some(v) => a = v,
                    None => return 0,
                },
                BPF_LD_H_ABS => match half(k) {
                    Some(v) => a = v,
                    None => return 0,
                },
                BPF_LD_H_IND => match half(x as usize + k) {
                    Some(v) => a = v,
                    None => return 0,
                },
                BPF_LDX_B_MSH => match byte(k) {
                    Some(v) => x = (v & 0xf) * 4,
                    None => return 0,
                },
                BPF_ALU_AND_K => a &= i.k,
                BPF_JEQ_K | BPF_JSET_K => {
                    let hit = if i.code == BPF_JEQ_K {
                        a == i.k
                    } else {
                        a & i.k != 0
                    };
                    pc += usize::from(if hit { i.jt } else { i.jf });
                }
                BPF_RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
        panic!("filter ran off its end");
    }

    fn ip_packet(client: &str, server: &str, dir: Direction) -> Vec<u8> {
        let seg = Segment {
            flow: FlowKey {
                client: client.parse().unwrap(),
                server: server.parse().unwrap(),
            },
            dir,
            seq: 1,
            ack: 2,
            flags: TcpFlags(TcpFlags::ACK),
            ts_ns: 0,
            payload: Bytes::from_static(b"payload"),
        };
        frame::encode_ethernet(&seg)[14..].to_vec()
    }

    #[test]
    fn filter_accepts_exactly_the_watched_ports_both_directions() {
        let prog = port_filter(&[8080, 9000]);
        for (client, server) in [
            ("10.0.0.1:40000", "10.0.0.2:8080"),
            ("10.0.0.1:40000", "10.0.0.2:9000"),
            ("[fe80::1]:40000", "[fe80::2]:8080"),
            ("[::1]:40000", "[::1]:9000"),
        ] {
            for dir in [Direction::Request, Direction::Response] {
                let pkt = ip_packet(client, server, dir);
                assert_eq!(
                    run_filter(&prog, &pkt),
                    u32::MAX,
                    "{client} {server} {dir:?}"
                );
            }
        }
        for (client, server) in [
            ("10.0.0.1:40000", "10.0.0.2:8081"),
            ("[::1]:40000", "[::1]:443"),
        ] {
            for dir in [Direction::Request, Direction::Response] {
                assert_eq!(run_filter(&prog, &ip_packet(client, server, dir)), 0);
            }
        }
    }

    #[test]
    fn filter_rejects_non_tcp_fragments_and_short_packets() {
        let prog = port_filter(&[8080]);
        let tcp = ip_packet("10.0.0.1:40000", "10.0.0.2:8080", Direction::Request);
        let mut udp = tcp.clone();
        udp[9] = 17;
        assert_eq!(run_filter(&prog, &udp), 0);
        let mut fragment = tcp.clone();
        fragment[7] = 1; // fragment offset 8
        assert_eq!(run_filter(&prog, &fragment), 0);
        // IPv6 extension headers reach userspace, which walks them (and checks the port).
        let mut v6_ext = ip_packet("[::1]:40000", "[::1]:8080", Direction::Request);
        v6_ext[6] = 0; // hop-by-hop options header
        assert_eq!(run_filter(&prog, &v6_ext), u32::MAX);
        let mut v6_udp = ip_packet("[::1]:40000", "[::1]:8080", Direction::Request);
        v6_udp[6] = 17;
        assert_eq!(run_filter(&prog, &v6_udp), 0);
        assert_eq!(run_filter(&prog, &tcp[..20]), 0);
        assert_eq!(run_filter(&prog, &[0x20, 0, 0, 0]), 0);
        // Options in the IPv4 header move the ports: IHL 6 with the port after 4 option bytes.
        let mut opts = tcp[..20].to_vec();
        opts[0] = 0x46;
        opts.extend_from_slice(&[1, 1, 1, 1]);
        opts.extend_from_slice(&tcp[20..]);
        assert_eq!(run_filter(&prog, &opts), u32::MAX);
    }

    #[test]
    fn filter_fits_the_maximum_port_count() {
        let ports: Vec<u16> = (1..=shadow_common::MAX_PORTS as u16).collect();
        let prog = port_filter(&ports);
        let pkt = ip_packet("[::1]:40000", "[::1]:8", Direction::Response);
        assert_eq!(run_filter(&prog, &pkt), u32::MAX);
    }

    #[test]
    fn loopback_keeps_only_the_arriving_copy() {
        assert!(!keep_packet(libc::PACKET_OUTGOING, libc::ARPHRD_LOOPBACK));
        assert!(keep_packet(libc::PACKET_HOST, libc::ARPHRD_LOOPBACK));
        assert!(keep_packet(libc::PACKET_OUTGOING, libc::ARPHRD_ETHER));
        assert!(keep_packet(libc::PACKET_HOST, libc::ARPHRD_ETHER));
    }

    #[test]
    fn spec_errors_come_before_privileged_work() {
        let (_trigger, shutdown) = crate::shutdown::channel();
        let bad_port = TapSpec {
            interface: "lo".into(),
            ports: vec![0],
        };
        assert!(matches!(
            open(&bad_port, shutdown.clone()),
            Err(CaptureError::InvalidPort(0))
        ));
        let missing = TapSpec {
            interface: "shadowtap-none0".into(),
            ports: vec![8080],
        };
        match open(&missing, shutdown) {
            Err(CaptureError::UnknownInterface { name, .. }) => {
                assert_eq!(name, "shadowtap-none0")
            }
            other => panic!("expected UnknownInterface, got {:?}", other.err()),
        }
    }
}
