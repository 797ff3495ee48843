//! Harness for shadowtap's privileged end-to-end tests (the tests live in `tests/tests/`).
//!
//! - [`netns`]: throw-away network namespaces (a veth pair with 169.254.x.x/30 addresses, or a
//!   lone namespace with `lo` up), running code inside them, deleted on drop.
//! - [`tun`]: two namespaces joined by a layer-3 link (a tun device in each, relayed by this
//!   process, as WireGuard's userspace implementations do): an interface without a link
//!   header.
//! - [`http_peer`]: a deterministic HTTP/1.1 keep-alive server and a client that checks every
//!   response and keeps a transcript of the exact bytes sent and received.
//! - [`capture`]: draining a [`LiveCapture`](shadow_daemon::capture::LiveCapture) with a bound.
//! - [`streams`]: a small test-side TCP reassembly (sort, de-duplicate, refuse holes).
//! - [`shadowd`]: locating, spawning, signalling and reaping the `shadowd` binary.
//! - [`scenario`]: whole veth and loopback capture scenarios, parameterised by the capture
//!   source, with the exact checks (bytes, drops, truncation, duplicates, timestamps).
//! - [`tc`]: what tc/TCX/XDP programs are attached to an interface (leak checks).
//! - [`model`]: production and fake shadow model servers (KServe v2 JSON; the shadow disagrees
//!   on a known subset, or hangs, or answers garbage) and a keep-alive / pipelined / chunked
//!   client, for `shadowd run` tests.
//! - [`classifier`]: a classifier model server with a known accuracy (wrong on a fixed,
//!   periodic subset of inputs), its client (each request with an `x-request-id`) and the
//!   ground truth as label lines, for the decision tests.
//! - [`admin`]: `/metrics`, `/healthz`, `/api/summary` and `POST /api/labels` of a running
//!   `shadowd run`, with bounded waits.
//! - [`h2_peer`]: an HTTP/2 (h2c) answering server (hyper) that records every request, for the
//!   HTTP/2 tests with real clients (`h2load`, `curl`).
//! - [`h2_frames`]: HTTP/2 frames and HPACK blocks written byte by byte, for scripted
//!   conversations (mid-stream join, `RST_STREAM`, `GOAWAY`).
//! - [`python`]: venvs with pinned PyPI packages for the Python peers (MLServer, grpcio), made
//!   once and reused, skipped when they cannot be made.
//!
//! What is also needed outside this crate (by `xtask`, the daemon's and the demo's own tests)
//! lives in `shadowtap-test-support` (`tests/support`): the HTTP/1.1 message reader both test
//! peers use, their accept loop, and the Prometheus text parser. Temporary files and
//! directories are `tempfile`'s, removed when dropped.
//!
//! The tests need root (namespaces, raw sockets, eBPF); [`require_root`] skips them otherwise,
//! unless `SHADOWTAP_E2E_REQUIRED=1` is set (CI), which turns the skip into a failure.
//!
//! ```text
//! sudo -E cargo test -p shadowtap-tests                       # everything
//! sudo -E cargo test -p shadowtap-tests --test afpacket_e2e -- --nocapture   # with capture rates
//! sudo -E cargo test -p shadowtap-tests --test run_e2e        # `shadowd run` end to end
//! sudo -E cargo test -p shadowtap-tests --test prometheus_e2e # a real Prometheus scraping it
//! ```
//! Tests are independent (own namespaces, unique names) and may run in parallel;
//! `--test-threads=1` gives steadier numbers. `SHADOWD_BIN=/path/to/shadowd` skips the
//! nested `cargo build` of the daemon (see [`shadowd`]).

pub mod admin;
pub mod capture;
pub mod classifier;
pub mod h2_frames;
pub mod h2_peer;
pub mod http_peer;
pub mod model;
pub mod netns;
pub mod python;
pub mod scenario;
pub mod shadowd;
pub mod streams;
pub mod tc;
pub mod tun;

/// Bound on any single blocking read or write of the test peers.
pub const IO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Lowercase hex SHA-256 of `bytes` (how the peers name bodies).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Ends a test client's keep-alive connection cleanly: FIN, then the server's FIN. Fails if
/// the server sent anything after the last response (`unread`: bytes already read past it).
pub fn close_after_last_response(
    stream: &mut std::net::TcpStream,
    unread: &[u8],
) -> std::io::Result<()> {
    use std::io::Read;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest)?;
    if !rest.is_empty() || !unread.is_empty() {
        return Err(std::io::Error::other(
            "unexpected bytes after the last response",
        ));
    }
    Ok(())
}

/// Whether the test can do privileged work; prints why it is skipped when not (straight to
/// stderr, so the message shows even though the test harness captures `eprintln!`).
pub fn require_root(test: &str) -> bool {
    use std::io::Write;
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("SHADOWTAP_E2E_REQUIRED").is_some_and(|v| v == "1") {
        panic!("{test} needs root and SHADOWTAP_E2E_REQUIRED=1 forbids skipping it");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: needs root (network namespaces, raw sockets, eBPF); run with sudo"
    );
    false
}

/// A name no other test in this or a parallel process uses: `st<tag><pid>x<n>`.
pub fn unique_name(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("st{tag}{}x{n}", std::process::id())
}

/// `CAP_NET_RAW` (linux/capability.h): needed to open AF_PACKET sockets.
pub const CAP_NET_RAW: u32 = 13;

/// Runs `f` on a fresh thread whose effective capability set lacks `cap` (capabilities are
/// per thread, and threads `f` spawns inherit the reduced set), to test "not permitted" paths
/// while running as root.
pub fn without_capability<T: Send>(cap: u32, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let handle = scope.spawn(move || {
            drop_effective_capability(cap).expect("capset");
            f()
        });
        match handle.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

fn drop_effective_capability(cap: u32) -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: header and a two-element data array, as capget(2)/capset(2) expect for v3.
    unsafe {
        if libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        data[(cap / 32) as usize].effective &= !(1 << (cap % 32));
        if libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
