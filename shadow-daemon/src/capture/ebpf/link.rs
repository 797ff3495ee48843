//! The link-layer header in front of the IP header on the tapped interface, from the
//! interface's link type (its `ARPHRD_*` hardware type): the eBPF program is told its length
//! when it is loaded, since a TC program sees each packet from its link-layer header on.
//!
//! - Ethernet-like devices (`ARPHRD_ETHER`: NICs, veth, bridges, VLAN devices; and
//!   `ARPHRD_LOOPBACK`: `lo`, which carries an Ethernet header too): 14 bytes.
//! - Layer-3 devices without any link header (`ARPHRD_NONE`: tun, WireGuard; `ARPHRD_RAWIP`:
//!   raw-IP modems): 0 bytes; the packet starts with its IP header.
//! - Anything else is refused, by name, rather than tapped blind (a wrong length captures
//!   nothing). IP-in-IP, SIT and GRE tunnels are among them: their receive path may leave the
//!   outer headers in front of the inner IP header as the "link" header a TC program sees.
//!   AF_PACKET (`--capture afpacket`) reads every link type: the kernel hands it packets from
//!   their network header on.
//!
//! The type is read with `SIOCGIFHWADDR` on a socket of the calling thread's network
//! namespace, not from `/sys/class/net/IFACE/type`, which shows the namespace sysfs was mounted
//! in (a daemon that joined another namespace would read the wrong interface, or none).

use crate::error::CaptureError;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `ARPHRD_RAWIP` (linux/if_arp.h; not in libc).
const ARPHRD_RAWIP: u16 = 519;
/// `ARPHRD_IP6GRE` (linux/if_arp.h; not in libc).
const ARPHRD_IP6GRE: u16 = 823;
/// `ARPHRD_NETLINK` (linux/if_arp.h; not in libc).
const ARPHRD_NETLINK: u16 = 824;

/// Link-layer header bytes in front of the IP header for an interface of link type `arphrd`;
/// `None` for a link type the tap does not read.
pub fn header_len(arphrd: u16) -> Option<u32> {
    match arphrd {
        libc::ARPHRD_ETHER | libc::ARPHRD_LOOPBACK => Some(14),
        libc::ARPHRD_NONE | ARPHRD_RAWIP => Some(0),
        _ => None,
    }
}

/// The `ARPHRD_*` name of a link type (as `ip -d link` and linux/if_arp.h spell it), for
/// messages.
pub fn type_name(arphrd: u16) -> &'static str {
    match arphrd {
        libc::ARPHRD_ETHER => "ether",
        libc::ARPHRD_LOOPBACK => "loopback",
        libc::ARPHRD_NONE => "none",
        ARPHRD_RAWIP => "rawip",
        libc::ARPHRD_PPP => "ppp",
        libc::ARPHRD_TUNNEL => "tunnel (ipip)",
        libc::ARPHRD_TUNNEL6 => "tunnel6 (ip6tnl)",
        libc::ARPHRD_SIT => "sit",
        libc::ARPHRD_IPGRE => "ipgre",
        ARPHRD_IP6GRE => "ip6gre",
        libc::ARPHRD_INFINIBAND => "infiniband",
        libc::ARPHRD_IEEE80211 => "ieee80211",
        libc::ARPHRD_IEEE80211_RADIOTAP => "ieee80211_radiotap",
        libc::ARPHRD_CAN => "can",
        ARPHRD_NETLINK => "netlink",
        libc::ARPHRD_VOID => "void",
        _ => "unknown",
    }
}

/// The link-layer header length of `iface` (in the calling thread's network namespace).
pub fn of_interface(iface: &str) -> Result<u32, CaptureError> {
    let arphrd = link_type(iface).map_err(|source| match source.raw_os_error() {
        Some(libc::ENODEV) => CaptureError::UnknownInterface {
            name: iface.to_owned(),
            source,
        },
        _ => CaptureError::Io {
            step: "read the interface's link type (SIOCGIFHWADDR)",
            source,
        },
    })?;
    header_len(arphrd).ok_or_else(|| CaptureError::UnsupportedLinkType {
        iface: iface.to_owned(),
        link_type: arphrd,
        name: type_name(arphrd),
    })
}

/// The interface's `ARPHRD_*` link type.
fn link_type(iface: &str) -> io::Result<u16> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = iface.as_bytes();
    if name.is_empty() || name.len() >= request.ifr_name.len() || name.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    for (to, &from) in request.ifr_name.iter_mut().zip(name) {
        *to = from as libc::c_char;
    }
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: SIOCGIFHWADDR reads the NUL-terminated name and writes the hardware address
    // into `request`, which lives for the call.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFHWADDR, &raw mut request) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFHWADDR filled the hardware-address member of the union.
    Ok(unsafe { request.ifr_ifru.ifru_hwaddr.sa_family })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethernet_like_devices_have_14_bytes_l3_devices_none_others_are_refused() {
        assert_eq!(header_len(libc::ARPHRD_ETHER), Some(14));
        assert_eq!(header_len(libc::ARPHRD_LOOPBACK), Some(14));
        assert_eq!(header_len(libc::ARPHRD_NONE), Some(0), "tun, WireGuard");
        assert_eq!(header_len(ARPHRD_RAWIP), Some(0));
        for refused in [
            libc::ARPHRD_TUNNEL,
            libc::ARPHRD_SIT,
            libc::ARPHRD_IPGRE,
            libc::ARPHRD_INFINIBAND,
            libc::ARPHRD_IEEE80211_RADIOTAP,
            1234,
        ] {
            assert_eq!(header_len(refused), None, "{}", type_name(refused));
        }
        assert_eq!(type_name(libc::ARPHRD_NONE), "none");
        assert_eq!(type_name(libc::ARPHRD_IPGRE), "ipgre");
        assert_eq!(type_name(1234), "unknown");
    }

    #[test]
    fn loopback_is_read_as_ethernet_like_and_a_missing_interface_is_unknown() {
        // Every network namespace has `lo` (no privileges needed to read its type).
        assert_eq!(link_type("lo").unwrap(), libc::ARPHRD_LOOPBACK);
        assert_eq!(of_interface("lo").unwrap(), 14);
        for missing in ["nosuch0", "", "a-name-longer-than-ifnamsiz"] {
            assert!(
                matches!(
                    of_interface(missing),
                    Err(CaptureError::UnknownInterface { .. })
                ),
                "{missing:?}"
            );
        }
    }

    #[test]
    fn an_unsupported_link_type_is_refused_by_name() {
        let e = CaptureError::UnsupportedLinkType {
            iface: "gre1".into(),
            link_type: libc::ARPHRD_IPGRE,
            name: type_name(libc::ARPHRD_IPGRE),
        };
        let text = e.to_string();
        assert!(text.contains("`gre1`"), "{text}");
        assert!(text.contains("ipgre (778)"), "{text}");
        assert!(text.contains("--capture afpacket"), "{text}");
    }
}
