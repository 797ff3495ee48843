//! A directory laid out like `/proc`, for tests of the reader and the monitor.

use std::os::unix::fs::symlink;
use std::path::Path;

/// `/proc/net/tcp` with a socket (inode 4242) listening on 127.0.0.1:8080 and an established
/// connection of that port (inode 5151), as a little-endian kernel prints them.
const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 5151 1 0000000000000000 20 4 30 10 -1
";

/// A fake `/proc` (removed on drop).
pub struct FakeProc {
    dir: tempfile::TempDir,
}

impl FakeProc {
    /// Pid 10 holds the listening socket 4242 (127.0.0.1:8080) on fd 2, pid 11 holds it too
    /// (a pre-fork worker), pid 12 holds only an established connection of that port; `self`
    /// is pid 10. Pid N starts at tick N·100 with N·10 user and 5 system ticks and N KiB
    /// resident.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("net")).unwrap();
        std::fs::write(dir.path().join("net/tcp"), TCP).unwrap();
        let fake = FakeProc { dir };
        fake.add_process(10, &["/dev/null", "pipe:[77]", "socket:[4242]"]);
        fake.add_process(11, &["socket:[4242]"]);
        fake.add_process(12, &["socket:[5151]"]);
        symlink(fake.root().join("10"), fake.root().join("self")).unwrap();
        fake
    }

    /// The directory to read as `/proc`.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Process `pid` with these fd links and the stat and status described at [`FakeProc::new`].
    pub fn add_process(&self, pid: u32, links: &[&str]) {
        let fd = self.root().join(format!("{pid}/fd"));
        std::fs::create_dir_all(&fd).unwrap();
        for (n, link) in links.iter().enumerate() {
            symlink(link, fd.join(n.to_string())).unwrap();
        }
        self.set_cpu(pid, u64::from(pid) * 10, 5);
        std::fs::write(
            self.root().join(format!("{pid}/status")),
            format!("Name:\tsrv\nVmRSS:\t {pid} kB\n"),
        )
        .unwrap();
    }

    /// Sets `pid`'s user and system CPU ticks.
    pub fn set_cpu(&self, pid: u32, utime: u64, stime: u64) {
        let start = u64::from(pid) * 100;
        std::fs::write(
            self.root().join(format!("{pid}/stat")),
            format!(
                "{pid} (srv) S 1 1 1 0 -1 0 0 0 0 0 {utime} {stime} 0 0 20 0 1 0 {start} 0 0\n"
            ),
        )
        .unwrap();
    }

    /// Process `pid` exits.
    pub fn remove_process(&self, pid: u32) {
        std::fs::remove_dir_all(self.root().join(pid.to_string())).unwrap();
    }
}
