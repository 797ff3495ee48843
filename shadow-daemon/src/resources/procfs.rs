//! Parsers of the `/proc` and cgroup v2 files the monitor reads: text in, numbers out, no IO.
//! The tests feed them the literal text of real files.

use std::net::IpAddr;

/// The `st` column of a listening socket in `/proc/net/tcp{,6}` (`TCP_LISTEN`).
const TCP_LISTEN: &str = "0A";

/// A TCP socket in the LISTEN state, from a row of `/proc/net/tcp` or `/proc/net/tcp6`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    /// The local address it listens on (`0.0.0.0` / `::` for every address).
    pub addr: IpAddr,
    /// The local port.
    pub port: u16,
    /// The socket's inode: the `socket:[inode]` link of every fd that holds it.
    pub inode: u64,
}

impl Listener {
    /// Whether a connection to `port` at one of `addrs` reaches this socket (it listens on
    /// the port, on one of them or on every address). `None` = any address.
    pub fn serves(&self, port: u16, addrs: Option<&[IpAddr]>) -> bool {
        if self.port != port {
            return false;
        }
        let own = canonical(self.addr);
        own.is_unspecified() || addrs.is_none_or(|addrs| addrs.iter().any(|a| canonical(*a) == own))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`, a dual-stack socket's view) as IPv4.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// The listening sockets of a `/proc/net/tcp` or `/proc/net/tcp6` table; the header, other
/// states and rows that cannot be read are skipped.
pub fn listeners(table: &str) -> Vec<Listener> {
    table.lines().skip(1).filter_map(listener).collect()
}

/// `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …`
fn listener(row: &str) -> Option<Listener> {
    let fields: Vec<&str> = row.split_whitespace().collect();
    if fields.get(3) != Some(&TCP_LISTEN) {
        return None;
    }
    let (addr, port) = fields.get(1)?.split_once(':')?;
    let inode: u64 = fields.get(9)?.parse().ok()?;
    Some(Listener {
        addr: address(addr)?,
        port: u16::from_str_radix(port, 16).ok()?,
        inode: (inode != 0).then_some(inode)?,
    })
}

/// The kernel prints an address as 32-bit words in host byte order, `%08X` each: one word for
/// IPv4, four for IPv6.
fn address(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let text = hex.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(text, 16).ok()?.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(i)?);
            }
            Some(IpAddr::from(bytes))
        }
        _ => None,
    }
}

/// The inode of a socket fd's link text, `socket:[12345]`; `None` for anything else.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The fields of `/proc/[pid]/stat` the monitor uses, in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// User-mode CPU time (field 14).
    pub utime: u64,
    /// Kernel-mode CPU time (field 15).
    pub stime: u64,
    /// When the process started, after boot (field 22): with the pid, it names one process
    /// even when pids are reused.
    pub start_time: u64,
}

impl ProcStat {
    /// User plus kernel CPU time, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        self.utime.saturating_add(self.stime)
    }
}

/// Parses `/proc/[pid]/stat`. The command name (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let (_, after_name) = text.rsplit_once(')')?;
    // after_name starts at field 3 (state): field N is at index N - 3.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(ProcStat {
        utime: field(14)?,
        stime: field(15)?,
        start_time: field(22)?,
    })
}

/// Resident memory in bytes from `/proc/[pid]/status` (`VmRSS:  1234 kB`); `None` when the
/// line is missing (kernel threads, zombies).
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// CPU time of a cgroup v2 in microseconds: `usage_usec` of its `cpu.stat`.
pub fn parse_cpu_stat_usage_usec(cpu_stat: &str) -> Option<u64> {
    cpu_stat
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))?
        .trim()
        .parse()
        .ok()
}

/// Memory charged to a cgroup v2 in bytes: its `memory.current` (resident memory and page
/// cache of every process in it).
pub fn parse_memory_current(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// `/proc/net/tcp` of a host with a server on 127.0.0.1:8080 (listening and with one
    /// established connection), one on *:8081 and a client connection from port 8081's side.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 5151 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 5252 1 0000000000000000 20 4 30 10 -1
   4: 0100007F:1F92 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 0 1 0000000000000000 100 0 0 10 0
   garbage line
";

    /// `/proc/net/tcp6`: a server on [::1]:8082, a dual-stack one on [::]:8083, a socket bound
    /// to the IPv4-mapped ::ffff:127.0.0.1:8084, and an established connection.
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F92 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 6161 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:1F93 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6262 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:1F94 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6363 1 0000000000000000 100 0 0 10 0
   3: 00000000000000000000000001000000:1F92 00000000000000000000000001000000:A1B2 01 00000000:00000000 00:00000000 00000000  1000        0 6464 1 0000000000000000 20 4 30 10 -1
";

    // The fixtures are what a little-endian kernel prints.
    #[cfg(target_endian = "little")]
    #[test]
    fn listening_sockets_of_both_tables_with_their_addresses() {
        let v4 = listeners(TCP);
        assert_eq!(
            v4,
            vec![
                Listener {
                    addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    port: 8080,
                    inode: 4242
                },
                Listener {
                    addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    port: 8081,
                    inode: 4343
                },
            ],
            "ESTABLISHED rows, a row without inode and garbage are skipped"
        );
        let v6 = listeners(TCP6);
        assert_eq!(
            v6,
            vec![
                Listener {
                    addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
                    port: 8082,
                    inode: 6161
                },
                Listener {
                    addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    port: 8083,
                    inode: 6262
                },
                Listener {
                    addr: "::ffff:127.0.0.1".parse().unwrap(),
                    port: 8084,
                    inode: 6363
                },
            ]
        );
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn a_listener_serves_its_port_on_its_address_or_every_address() {
        let all: Vec<Listener> = listeners(TCP).into_iter().chain(listeners(TCP6)).collect();
        let loopback = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
        let other = [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))];
        let serving = |port: u16, addrs: Option<&[IpAddr]>| -> Vec<u64> {
            all.iter()
                .filter(|l| l.serves(port, addrs))
                .map(|l| l.inode)
                .collect()
        };
        assert_eq!(serving(8080, None), vec![4242]);
        assert_eq!(serving(8080, Some(&loopback)), vec![4242]);
        assert_eq!(serving(8080, Some(&other)), Vec::<u64>::new());
        // 0.0.0.0 and :: listen on every address.
        assert_eq!(serving(8081, Some(&other)), vec![4343]);
        assert_eq!(serving(8083, Some(&loopback)), vec![6262]);
        // ::1 is not 127.0.0.1; ::ffff:127.0.0.1 is.
        assert_eq!(serving(8082, Some(&loopback)), Vec::<u64>::new());
        assert_eq!(serving(8084, Some(&loopback)), vec![6363]);
        assert_eq!(serving(9999, None), Vec::<u64>::new());
    }

    #[test]
    fn socket_links_name_their_inode() {
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(socket_inode("socket:[]"), None);
    }

    #[test]
    fn stat_fields_are_counted_after_a_name_with_spaces_and_parentheses() {
        // A real /proc/[pid]/stat line of a python3 server, then the same with a hostile name.
        let real = "12345 (python3) S 1 12345 12345 0 -1 4194304 1830 0 0 0 153 27 0 0 20 0 1 0 987654 30040064 2420 18446744073709551615 1 1 0 0 0 0 0 16781312 2 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
        let stat = parse_stat(real).unwrap();
        assert_eq!(
            stat,
            ProcStat {
                utime: 153,
                stime: 27,
                start_time: 987654
            }
        );
        assert_eq!(stat.cpu_ticks(), 180);
        let weird = real.replace("(python3)", "(my (weird) name)");
        assert_eq!(parse_stat(&weird), Some(stat));
        let fake_fields = real.replace("(python3)", "(x) S 1 2 3 4 5 6 7 8 9 10 11 12)");
        assert_eq!(
            parse_stat(&fake_fields),
            Some(stat),
            "the last `)` ends the name"
        );
        assert_eq!(parse_stat("12345 (cut) S 1 2"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t   29336 kB\nVmSize:\t   29336 kB\nVmHWM:\t    9680 kB\nVmRSS:\t    9680 kB\nRssAnon:\t    2048 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(9680 * 1024));
        // A kernel thread has no VmRSS line.
        assert_eq!(
            parse_vm_rss("Name:\tkthreadd\nState:\tS (sleeping)\n"),
            None
        );
        assert_eq!(parse_vm_rss("VmRSS:\t12 MB\n"), None);
    }

    #[test]
    fn cgroup_cpu_and_memory() {
        let cpu_stat = "usage_usec 123456789\nuser_usec 100000000\nsystem_usec 23456789\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n";
        assert_eq!(parse_cpu_stat_usage_usec(cpu_stat), Some(123_456_789));
        assert_eq!(parse_cpu_stat_usage_usec("user_usec 5\n"), None);
        assert_eq!(parse_memory_current("52428800\n"), Some(52_428_800));
        assert_eq!(parse_memory_current("max\n"), None);
    }
}
