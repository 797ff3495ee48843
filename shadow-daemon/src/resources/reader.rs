//! Reading `/proc` and cgroup v2 directories: the IO half of the monitor (the parsing is in
//! [`super::procfs`]). Every read is of a small text file; nothing here blocks for long, but
//! it is blocking IO: call it off the async runtime.

use super::procfs::{self, Listener, ProcStat};
use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Clock ticks per second, the unit of CPU times in `/proc/[pid]/stat` (100 if unknown).
pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// One reading of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessReading {
    /// CPU times and start time.
    pub stat: ProcStat,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
}

/// One reading of a cgroup v2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupReading {
    /// CPU time of every process in it since it was created, µs.
    pub usage_usec: u64,
    /// Memory charged to it (resident and page cache), bytes.
    pub memory_bytes: u64,
}

/// Why no process was found for a port.
#[derive(Debug, thiserror::Error)]
pub enum NotFound {
    /// The socket tables could not be read.
    #[error("cannot read {path}")]
    Table {
        /// The table.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No socket listens on the port (at the wanted addresses).
    #[error("nothing listens on that port in shadowd's network namespace")]
    NotListening,
    /// A socket listens, but no process whose descriptors shadowd can read holds it.
    #[error(
        "a socket listens on that port, but no process shadowd can see holds it ({unreadable} \
         processes' descriptors could not be read: run shadowd as root or with \
         CAP_SYS_PTRACE; in a container, share the server's pid namespace)"
    )]
    Hidden {
        /// Processes whose `/proc/[pid]/fd` could not be read.
        unreadable: usize,
    },
}

/// A `/proc` file system: the real one, or a directory laid out like it (tests).
#[derive(Clone, Debug)]
pub struct ProcFs {
    root: PathBuf,
}

impl Default for ProcFs {
    fn default() -> Self {
        ProcFs::at("/proc")
    }
}

impl ProcFs {
    /// The `/proc` at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        ProcFs { root: root.into() }
    }

    /// The TCP sockets listening in the reader's network namespace, IPv4 then IPv6 (a missing
    /// `tcp6` table, IPv6 off, is empty).
    pub fn listeners(&self) -> Result<Vec<Listener>, NotFound> {
        let mut all = Vec::new();
        for (table, required) in [("net/tcp", true), ("net/tcp6", false)] {
            let path = self.root.join(table);
            match std::fs::read_to_string(&path) {
                Ok(text) => all.extend(procfs::listeners(&text)),
                Err(e) if !required && e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(NotFound::Table { path, source }),
            }
        }
        Ok(all)
    }

    /// The processes (pids, ascending) holding a socket that serves `port` at one of `addrs`
    /// (`None`: any address): found through the sockets' inodes in `/proc/[pid]/fd`.
    pub fn listening_processes(
        &self,
        port: u16,
        addrs: Option<&[IpAddr]>,
    ) -> Result<Vec<u32>, NotFound> {
        let inodes: BTreeSet<u64> = self
            .listeners()?
            .iter()
            .filter(|l| l.serves(port, addrs))
            .map(|l| l.inode)
            .collect();
        if inodes.is_empty() {
            return Err(NotFound::NotListening);
        }
        let (pids, unreadable) = self.holders(&inodes);
        if pids.is_empty() {
            return Err(NotFound::Hidden { unreadable });
        }
        Ok(pids)
    }

    /// The pids (ascending) of the processes with an fd on one of the socket `inodes`, and how
    /// many processes' fds could not be listed.
    fn holders(&self, inodes: &BTreeSet<u64>) -> (Vec<u32>, usize) {
        let mut pids = Vec::new();
        let mut unreadable = 0;
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return (pids, unreadable);
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let fds = match std::fs::read_dir(entry.path().join("fd")) {
                Ok(fds) => fds,
                // Exited since the listing: not a holder.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(_) => {
                    unreadable += 1;
                    continue;
                }
            };
            let holds = fds.flatten().any(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|link| {
                    link.to_str()
                        .and_then(procfs::socket_inode)
                        .is_some_and(|inode| inodes.contains(&inode))
                })
            });
            if holds {
                pids.push(pid);
            }
        }
        pids.sort_unstable();
        (pids, unreadable)
    }

    /// A reading of process `pid`; `None` when it is gone (or a zombie: no memory left).
    pub fn process(&self, pid: u32) -> Option<ProcessReading> {
        self.read_process(&self.root.join(pid.to_string()))
    }

    /// A reading of the calling process (`/proc/self`).
    pub fn own_process(&self) -> Option<ProcessReading> {
        self.read_process(&self.root.join("self"))
    }

    fn read_process(&self, dir: &Path) -> Option<ProcessReading> {
        let stat = procfs::parse_stat(&std::fs::read_to_string(dir.join("stat")).ok()?)?;
        let rss_bytes = procfs::parse_vm_rss(&std::fs::read_to_string(dir.join("status")).ok()?)?;
        Some(ProcessReading { stat, rss_bytes })
    }
}

/// A reading of the cgroup v2 directory `dir` (`cpu.stat`, `memory.current`).
pub fn read_cgroup(dir: &Path) -> io::Result<CgroupReading> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    };
    let unreadable = |name: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a cgroup v2 {name} file", dir.join(name).display()),
        )
    };
    let usage_usec = procfs::parse_cpu_stat_usage_usec(&read("cpu.stat")?)
        .ok_or_else(|| unreadable("cpu.stat"))?;
    let memory_bytes = procfs::parse_memory_current(&read("memory.current")?)
        .ok_or_else(|| unreadable("memory.current"))?;
    Ok(CgroupReading {
        usage_usec,
        memory_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fake_proc::FakeProc;
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};

    #[cfg(target_endian = "little")]
    #[test]
    fn a_fake_proc_finds_every_holder_of_the_listening_socket() {
        let fake = FakeProc::new();
        let proc = ProcFs::at(fake.root());
        assert_eq!(proc.listening_processes(8080, None).unwrap(), vec![10, 11]);
        let loopback = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
        assert_eq!(
            proc.listening_processes(8080, Some(&loopback)).unwrap(),
            vec![10, 11]
        );
        let elsewhere = [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))];
        assert!(matches!(
            proc.listening_processes(8080, Some(&elsewhere)),
            Err(NotFound::NotListening)
        ));
        assert!(matches!(
            proc.listening_processes(8081, None),
            Err(NotFound::NotListening)
        ));
        let reading = proc.process(11).unwrap();
        assert_eq!(reading.stat.cpu_ticks(), 110 + 5);
        assert_eq!(reading.stat.start_time, 1100);
        assert_eq!(reading.rss_bytes, 11 * 1024);
        assert_eq!(proc.own_process(), proc.process(10));
        assert_eq!(proc.process(13), None);
    }

    #[test]
    fn a_missing_socket_table_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = ProcFs::at(dir.path())
            .listening_processes(8080, None)
            .unwrap_err();
        assert!(err.to_string().contains("net/tcp"), "{err}");
    }

    /// Discovery on the real `/proc`: a socket this test listens on is found to be held by
    /// this test's process.
    #[test]
    fn the_real_proc_finds_this_process_listening() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let proc = ProcFs::default();
        let pids = proc.listening_processes(port, None).unwrap();
        assert!(pids.contains(&std::process::id()), "{pids:?}");
        let loopback = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
        assert!(
            proc.listening_processes(port, Some(&loopback))
                .unwrap()
                .contains(&std::process::id())
        );
        drop(listener);
        // The same through /proc/net/tcp6, where IPv6 is on.
        if let Ok(listener) = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) {
            let port = listener.local_addr().unwrap().port();
            let loopback = [IpAddr::V6(Ipv6Addr::LOCALHOST)];
            let pids = proc.listening_processes(port, Some(&loopback)).unwrap();
            assert!(pids.contains(&std::process::id()), "{pids:?}");
        }
        // `self` and the pid name the same process (the same start time).
        let own = proc.own_process().unwrap();
        assert!(own.rss_bytes > 0);
        let by_pid = proc.process(std::process::id()).unwrap();
        assert_eq!(by_pid.stat.start_time, own.stat.start_time);
    }

    #[test]
    fn cgroup_files_are_read_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cpu.stat"),
            "usage_usec 2500000\nuser_usec 2000000\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("memory.current"), "4096\n").unwrap();
        assert_eq!(
            read_cgroup(dir.path()).unwrap(),
            CgroupReading {
                usage_usec: 2_500_000,
                memory_bytes: 4096
            }
        );
        std::fs::remove_file(dir.path().join("memory.current")).unwrap();
        let err = read_cgroup(dir.path()).unwrap_err();
        assert!(err.to_string().contains("memory.current"), "{err}");
    }
}
