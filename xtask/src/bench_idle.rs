//! Many idle keep-alive connections to production through the tap: opened from threads in
//! xtask, each sends one request (so the daemon has seen and tracks the flow) and reads its
//! answer, then stays open and silent until dropped. The open-files limit is raised first, for
//! this process and for the model servers it spawns afterwards.

use anyhow::{Context, bail};
use shadowtap_test_support::http::read_message;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Threads that open the connections.
const OPENERS: usize = 8;

/// Raises this process's soft `RLIMIT_NOFILE` towards `wanted` (at most to the hard limit);
/// children spawned afterwards inherit it. Returns the soft limit now in force.
pub fn raise_open_files_limit(wanted: libc::rlim_t) -> anyhow::Result<libc::rlim_t> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the valid, exclusively borrowed `limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
    }
    let target = wanted.min(limit.rlim_max);
    if limit.rlim_cur >= target {
        return Ok(limit.rlim_cur);
    }
    limit.rlim_cur = target;
    // SAFETY: setrlimit reads one valid `rlimit`.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setrlimit(RLIMIT_NOFILE)");
    }
    Ok(target)
}

/// Open, idle connections; closed when dropped.
pub struct IdleConnections(Vec<TcpStream>);

impl IdleConnections {
    /// Opens `count` connections to `addr`, sends `request` (one complete HTTP/1.1 request) on
    /// each and reads its answer, which must be 2xx.
    pub fn open(addr: SocketAddr, count: usize, request: &[u8]) -> anyhow::Result<Self> {
        let per_thread = count.div_ceil(OPENERS);
        let request = std::sync::Arc::new(request.to_vec());
        let threads: Vec<_> = (0..OPENERS)
            .map(|i| {
                let n = per_thread.min(count.saturating_sub(i * per_thread));
                let request = std::sync::Arc::clone(&request);
                std::thread::spawn(move || open_some(addr, n, &request))
            })
            .collect();
        let mut all = Vec::with_capacity(count);
        for t in threads {
            all.extend(
                t.join()
                    .map_err(|_| anyhow::anyhow!("connection opener panicked"))??,
            );
        }
        Ok(IdleConnections(all))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

fn open_some(addr: SocketAddr, n: usize, request: &[u8]) -> anyhow::Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(n);
    let mut buf = Vec::new();
    for i in 0..n {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connection {i} to {addr} (open-files limit?)"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(request)?;
        buf.clear();
        let answer = read_message(&mut stream, &mut buf)?
            .with_context(|| format!("{addr} closed connection {i} without answering"))?;
        match answer.status() {
            Some(200..=299) => {}
            other => bail!("{addr} answered {other:?} on connection {i}"),
        }
        streams.push(stream);
    }
    Ok(streams)
}

/// A complete `POST path` request with a JSON `body`, keep-alive.
pub fn post_request(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowtap_test_support::accept::spawn_accept_loop;
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn connections_are_opened_answered_and_held() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        spawn_accept_loop(listener, Arc::clone(&stop), "idle test server", |mut s| {
            s.set_nonblocking(false)?;
            let mut buf = Vec::new();
            while read_message(&mut s, &mut buf)?.is_some() {
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")?;
            }
            Ok(())
        });
        let idle = IdleConnections::open(addr, 20, &post_request("/x", "{}")).unwrap();
        assert_eq!(idle.len(), 20);
        stop.store(true, Ordering::Relaxed);
    }

    #[test]
    fn the_limit_is_at_least_what_it_was() {
        let before = raise_open_files_limit(0).unwrap();
        assert!(raise_open_files_limit(before + 1).unwrap() >= before);
    }
}
