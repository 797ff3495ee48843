//! Two throw-away namespaces joined by a layer-3 link, as WireGuard's userspace
//! implementations build one: a tun device in each (`ARPHRD_NONE`: packets start with their IP
//! header, no link header) and a relay in this process copying every packet one device sends
//! to the other. Addresses: `a_addr` ⇄ `b_addr` (IPv4, point to point) and `a_addr6` ⇄
//! `b_addr6` (IPv6). Dropping it stops the relay and deletes both namespaces with their
//! devices.

use crate::netns::NetNs;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::thread::JoinHandle;

/// The name of the tun device in each namespace.
pub const TUN_IF: &str = "tun0";

/// Two namespaces linked by a tun device each and a relay between them.
pub struct TunPair {
    /// Dropped first: stops copying before the devices go away.
    relay: Relay,
    pub a: NetNs,
    pub b: NetNs,
    pub a_addr: Ipv4Addr,
    pub b_addr: Ipv4Addr,
    pub a_addr6: Ipv6Addr,
    pub b_addr6: Ipv6Addr,
}

impl TunPair {
    /// Creates the namespaces, a tun device ([`TUN_IF`]) in each with its addresses, and
    /// starts the relay.
    pub fn new(tag: &str) -> io::Result<TunPair> {
        static NEXT: AtomicU8 = AtomicU8::new(0);
        let a = NetNs::new(&format!("{tag}a"))?;
        let b = NetNs::new(&format!("{tag}b"))?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed) % 64;
        let third = (std::process::id() % 200) as u8 + 1;
        let a_addr = Ipv4Addr::new(10, 77, third, n * 4 + 1);
        let b_addr = Ipv4Addr::new(10, 77, third, n * 4 + 2);
        let a_addr6 = Ipv6Addr::new(0xfd77, u16::from(third), u16::from(n), 0, 0, 0, 0, 1);
        let b_addr6 = Ipv6Addr::new(0xfd77, u16::from(third), u16::from(n), 0, 0, 0, 0, 2);
        let a_tun = a.run(|| open_tun(TUN_IF))?;
        let b_tun = b.run(|| open_tun(TUN_IF))?;
        for (ns, local, peer, local6) in
            [(&a, a_addr, b_addr, a_addr6), (&b, b_addr, a_addr, b_addr6)]
        {
            ns.ip(&[
                "addr",
                "add",
                &local.to_string(),
                "peer",
                &peer.to_string(),
                "dev",
                TUN_IF,
            ])?;
            ns.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{local6}/64"),
                "dev",
                TUN_IF,
                "nodad",
            ])?;
            ns.ip(&["link", "set", TUN_IF, "up"])?;
        }
        let relay = Relay::start(a_tun, b_tun)?;
        Ok(TunPair {
            relay,
            a,
            b,
            a_addr,
            b_addr,
            a_addr6,
            b_addr6,
        })
    }

    /// Packets the relay carried so far (both ways).
    pub fn relayed(&self) -> u64 {
        self.relay.packets.load(Ordering::Relaxed)
    }
}

/// Creates a tun device called `name` (IP packets, no packet-info header) in the calling
/// thread's namespace; it lives as long as the returned descriptor.
fn open_tun(name: &str) -> io::Result<OwnedFd> {
    let path = c"/dev/net/tun";
    // SAFETY: plain open(2) of a NUL-terminated path; the result is checked before use.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by open(2) and is owned by nothing else.
    let tun = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (to, &from) in request.ifr_name.iter_mut().zip(name.as_bytes()) {
        *to = from as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads the ifreq, which lives for the call.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &raw mut request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(tun)
}

/// Copies packets between two tun devices, one thread per direction.
struct Relay {
    stop: Arc<AtomicBool>,
    packets: Arc<std::sync::atomic::AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    fn start(a: OwnedFd, b: OwnedFd) -> io::Result<Relay> {
        let stop = Arc::new(AtomicBool::new(false));
        let packets = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (a, b) = (Arc::new(a), Arc::new(b));
        let mut threads = Vec::new();
        for (from, to) in [(a.clone(), b.clone()), (b, a)] {
            let (stop, packets) = (stop.clone(), packets.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("tun-relay".into())
                    .spawn(move || copy_packets(&from, &to, &stop, &packets))?,
            );
        }
        Ok(Relay {
            stop,
            packets,
            threads,
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Reads each packet `from` sends and writes it to `to`, until `stop` (checked every 100 ms).
fn copy_packets(
    from: &OwnedFd,
    to: &OwnedFd,
    stop: &AtomicBool,
    packets: &std::sync::atomic::AtomicU64,
) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let mut pollfd = libc::pollfd {
            fd: from.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pollfd, 1, 100) } <= 0 {
            continue;
        }
        loop {
            // SAFETY: `buf` is valid for its length.
            let n = unsafe { libc::read(from.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            // A packet the other side cannot take now is lost, as on a real link (TCP resends).
            // SAFETY: the first `n` bytes of `buf` were just read.
            let _ = unsafe { libc::write(to.as_raw_fd(), buf.as_ptr().cast(), n as usize) };
            packets.fetch_add(1, Ordering::Relaxed);
        }
    }
}
