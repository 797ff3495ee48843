//! `cargo xtask bench capture`: how much loopback HTTP traffic the eBPF tap records with zero
//! drops, and what it costs the traffic. For each offered rate, an untapped run (baseline) and a
//! tapped run of the same paced, bounded load are compared: request latency p50/p99 ratios
//! (tapped / untapped), segments captured per second and payload MB/s, and drops. Stepping stops
//! at the first rate with drops.

use anyhow::{Context, bail};
use shadowtap_test_support::accept::spawn_accept_loop;
use shadowtap_test_support::http::read_message;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Shape of one offered load: `connections` keep-alive clients, each sending POSTs of
/// `body_bytes` paced to `requests_per_second` in total, for `requests` requests in total.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub connections: usize,
    pub body_bytes: usize,
    pub requests_per_second: f64,
    pub requests: usize,
}

/// What `shadowd record` reported for one tapped run.
#[derive(Debug, Default, Clone, Copy)]
struct Recorded {
    segments: u64,
    bytes: u64,
    dropped: u64,
}

/// Per-request latencies of one run, sorted.
struct Latencies(Vec<Duration>);

impl Latencies {
    fn quantile(&self, q: f64) -> Duration {
        let i = ((self.0.len() as f64 - 1.0) * q).round() as usize;
        self.0[i.min(self.0.len() - 1)]
    }
}

/// Steps through `loads` (in order) and prints one row per load.
pub fn run(shadowd: &Path, loads: &[Load]) -> anyhow::Result<()> {
    let server = Server::start()?;
    println!(
        "bench capture: paced keep-alive POSTs to {} on lo, untapped vs tapped (shadowd record)",
        server.addr
    );
    println!(
        "{:>9} {:>8} {:>7} | {:>9} {:>9} | {:>9} {:>9} | {:>10} {:>9} {:>8}",
        "body",
        "req/s",
        "reqs",
        "p50 base",
        "p50 ratio",
        "p99 base",
        "p99 ratio",
        "segments/s",
        "MB/s",
        "drops"
    );
    let mut best_zero_drop: Option<(Load, f64, f64)> = None;
    for &load in loads {
        let base = drive(server.addr, load)?;
        let (tapped, rec, wall) = drive_tapped(shadowd, server.addr, load)?;
        let segments_per_s = rec.segments as f64 / wall.as_secs_f64();
        let mb_per_s = rec.bytes as f64 / wall.as_secs_f64() / 1e6;
        println!(
            "{:>7}KiB {:>8.0} {:>7} | {:>7.2}ms {:>9.2} | {:>7.2}ms {:>9.2} | {:>10.0} {:>9.1} {:>8}",
            load.body_bytes / 1024,
            load.requests_per_second,
            load.requests,
            ms(base.quantile(0.5)),
            ms(tapped.quantile(0.5)) / ms(base.quantile(0.5)),
            ms(base.quantile(0.99)),
            ms(tapped.quantile(0.99)) / ms(base.quantile(0.99)),
            segments_per_s,
            mb_per_s,
            rec.dropped
        );
        if rec.dropped > 0 {
            println!("  drops at this rate: stepping stops here");
            break;
        }
        if best_zero_drop.is_none_or(|(_, _, best)| mb_per_s > best) {
            best_zero_drop = Some((load, segments_per_s, mb_per_s));
        }
    }
    match best_zero_drop {
        Some((load, rps, mbps)) => println!(
            "highest zero-drop load: {:.0} req/s of {} KiB bodies: {rps:.0} segments/s, {mbps:.1} MB/s captured",
            load.requests_per_second,
            load.body_bytes / 1024
        ),
        None => println!("no zero-drop load in this run"),
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn drive_tapped(
    shadowd: &Path,
    addr: SocketAddr,
    load: Load,
) -> anyhow::Result<(Latencies, Recorded, Duration)> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let output = dir.path().join("bench.pcap");
    let mut child = Command::new(shadowd)
        .args([
            "record",
            "--interface",
            "lo",
            "--port",
            &addr.port().to_string(),
            "--output",
        ])
        .arg(&output)
        .env("SHADOWD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", shadowd.display()))?;
    let mut stderr = BufReader::new(child.stderr.take().context("no stderr")?);
    let mut line = String::new();
    // `record` prints "tapping ..." once the tap is attached.
    while !line.contains("tapping") {
        line.clear();
        if stderr.read_line(&mut line)? == 0 {
            let _ = child.wait();
            bail!("shadowd record exited before attaching the tap");
        }
    }
    let started = Instant::now();
    let latencies = drive(addr, load);
    let wall = started.elapsed();
    // SIGINT: record flushes what it captured and prints its summary.
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest)?;
    let status = child.wait()?;
    let latencies = latencies?;
    if !status.success() {
        bail!("shadowd record failed: {rest}");
    }
    let recorded = parse_summary(&rest).with_context(|| format!("no summary in: {rest}"))?;
    Ok((latencies, recorded, wall))
}

/// Parses "N segments (B payload bytes) written as P packets; dropped D, truncated T".
fn parse_summary(text: &str) -> Option<Recorded> {
    let line = text.lines().find(|l| l.contains("segments ("))?;
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    Some(Recorded {
        segments: *numbers.first()?,
        bytes: *numbers.get(1)?,
        dropped: *numbers.get(3)?,
    })
}

/// Sends the paced load, checks every response and returns the sorted request latencies.
fn drive(addr: SocketAddr, load: Load) -> anyhow::Result<Latencies> {
    let body = vec![b'x'; load.body_bytes];
    let per_connection = load.requests / load.connections;
    let interval = Duration::from_secs_f64(load.connections as f64 / load.requests_per_second);
    let workers: Vec<_> = (0..load.connections)
        .map(|worker| {
            let body = body.clone();
            std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
                let mut stream = TcpStream::connect(addr)?;
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(Duration::from_secs(30)))?;
                let head = format!(
                    "POST /bench HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let mut reply = [0u8; 64];
                let mut latencies = Vec::with_capacity(per_connection);
                // Stagger the clients across one interval.
                let start =
                    Instant::now() + interval.mul_f64(worker as f64 / load.connections as f64);
                for i in 0..per_connection {
                    let due = start + interval.mul_f64(i as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let sent = Instant::now();
                    stream.write_all(head.as_bytes())?;
                    stream.write_all(&body)?;
                    let n = read_reply(&mut stream, &mut reply)?;
                    latencies.push(sent.elapsed());
                    if !reply[..n].starts_with(b"HTTP/1.1 200") {
                        bail!(
                            "unexpected reply {:?}",
                            String::from_utf8_lossy(&reply[..n])
                        );
                    }
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(load.requests);
    for worker in workers {
        all.extend(
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("client thread panicked"))??,
        );
    }
    all.sort();
    Ok(Latencies(all))
}

const REPLY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn read_reply(stream: &mut TcpStream, buf: &mut [u8]) -> anyhow::Result<usize> {
    let mut n = 0;
    while n < REPLY.len() {
        let got = stream.read(&mut buf[n..REPLY.len()])?;
        if got == 0 {
            bail!("server closed the connection");
        }
        n += got;
    }
    Ok(n)
}

/// A minimal keep-alive HTTP sink on 127.0.0.1: reads each request, answers "ok". Stops
/// when dropped.
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        spawn_accept_loop(listener, Arc::clone(&stop), "bench server", serve);
        Ok(Self { addr, stop })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let mut buf = Vec::new();
    while read_message(&mut stream, &mut buf)?.is_some() {
        stream.write_all(REPLY)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_is_parsed() {
        let text = "shadowd record: 1234 segments (5678 payload bytes) written as 1234 packets; dropped 7, truncated 0\n";
        let r = parse_summary(text).unwrap();
        assert_eq!((r.segments, r.bytes, r.dropped), (1234, 5678, 7));
    }
}
