//! A deterministic HTTP/1.1 keep-alive peer pair standing in for production.
//!
//! The server answers every request with `200 OK`, header `X-Request-Sha256` and a body made
//! of the hex SHA-256 of the request body, a newline and `X-Response-Size` bytes of
//! [`payload`] seeded by that digest. The client can therefore check each response exactly,
//! and it records every byte it wrote and read, so a capture can be compared byte for byte.

use crate::{IO_TIMEOUT, sha256_hex};
use sha2::{Digest, Sha256};
use shadowtap_test_support::accept::spawn_accept_loop;
use shadowtap_test_support::http::read_message;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

/// Request body size and requested response payload size, one entry per request.
pub type Plan = [(usize, usize)];

/// Bodies of 0 B, 1 KiB, 100 KiB and 4 MiB in both directions, on one keep-alive connection.
pub const STANDARD_PLAN: &Plan = &[
    (0, 0),
    (1024, 1024),
    (100 * 1024, 100 * 1024),
    (4 << 20, 4 << 20),
    (0, 4 << 20),
    (4 << 20, 0),
    (1024, 100 * 1024),
];

/// `len` bytes determined by `seed` (a cheap xorshift stream, not all-equal bytes, so
/// misplaced data cannot go unnoticed).
pub fn payload(seed: &[u8], len: usize) -> Vec<u8> {
    let digest = Sha256::digest(seed);
    let mut state = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&state.to_le_bytes()[..take]);
    }
    out
}

/// The response body the server sends for `request_body` and `response_size`.
pub fn expected_response_body(request_body: &[u8], response_size: usize) -> Vec<u8> {
    let hex = sha256_hex(request_body);
    let mut body = format!("{hex}\n").into_bytes();
    body.extend_from_slice(&payload(hex.as_bytes(), response_size));
    body
}

/// Reads like the stream and appends every byte read to `log` (the client's transcript).
struct Logged<'a> {
    stream: &'a mut TcpStream,
    log: &'a mut Vec<u8>,
}

impl Read for Logged<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(out)?;
        self.log.extend_from_slice(&out[..n]);
        Ok(n)
    }
}

/// The production stand-in: serves keep-alive connections until dropped.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    accept: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Serves on `listener` (bind it inside the namespace where the server should live).
    pub fn start(listener: TcpListener) -> io::Result<HttpServer> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let accept = {
            let served = Arc::clone(&served);
            spawn_accept_loop(listener, Arc::clone(&stop), "http server", move |stream| {
                serve(stream, &served)
            })
        };
        Ok(HttpServer {
            addr,
            stop,
            served,
            accept: Some(accept),
        })
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Answers requests on one connection until the client closes it.
fn serve(mut stream: TcpStream, served: &AtomicU64) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::new();
    while let Some(request) = read_message(&mut stream, &mut buf)? {
        let size: usize = request
            .header("x-response-size")
            .unwrap_or("0")
            .parse()
            .map_err(|_| io::Error::other("bad X-Response-Size"))?;
        let body = expected_response_body(&request.body, size);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\
             X-Request-Sha256: {}\r\nConnection: keep-alive\r\n\r\n",
            body.len(),
            sha256_hex(&request.body),
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(&body)?;
        served.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Everything one client connection put on and took off the wire, in order.
#[derive(Debug)]
pub struct Transcript {
    /// The client's address (the ephemeral side of the flow).
    pub local: SocketAddr,
    /// The server's address.
    pub peer: SocketAddr,
    /// Every byte the client wrote (requests).
    pub sent: Vec<u8>,
    /// Every byte the client read (responses).
    pub received: Vec<u8>,
    /// Requests whose response was checked and correct.
    pub verified: usize,
}

/// Sends the requests of `plan` on one keep-alive connection, checks every response
/// exactly, then closes the connection cleanly (FIN both ways). Fails on the first wrong
/// response.
pub fn run_client(mut stream: TcpStream, plan: &Plan) -> io::Result<Transcript> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut t = Transcript {
        local: stream.local_addr()?,
        peer: stream.peer_addr()?,
        sent: Vec::new(),
        received: Vec::new(),
        verified: 0,
    };
    let mut buf = Vec::new();
    for (i, &(request_size, response_size)) in plan.iter().enumerate() {
        let body = payload(format!("{}-{i}", t.local).as_bytes(), request_size);
        let mut request = format!(
            "POST /v1/models/m:predict HTTP/1.1\r\nHost: {}\r\nContent-Length: {request_size}\r\n\
             X-Response-Size: {response_size}\r\n\r\n",
            t.peer
        )
        .into_bytes();
        request.extend_from_slice(&body);
        stream.write_all(&request)?;
        t.sent.extend_from_slice(&request);
        let mut logged = Logged {
            stream: &mut stream,
            log: &mut t.received,
        };
        let response = read_message(&mut logged, &mut buf)?
            .ok_or_else(|| io::Error::other(format!("request {i}: connection closed")))?;
        let digest = sha256_hex(&body);
        if response.start_line != "HTTP/1.1 200 OK"
            || response.header("x-request-sha256") != Some(digest.as_str())
            || response.body != expected_response_body(&body, response_size)
        {
            return Err(io::Error::other(format!(
                "request {i} ({request_size} B → {response_size} B): wrong response `{}`",
                response.start_line
            )));
        }
        t.verified += 1;
    }
    crate::close_after_last_response(&mut stream, &buf)?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_and_server_agree_over_loopback() {
        let server = HttpServer::start(TcpListener::bind("127.0.0.1:0").unwrap()).unwrap();
        let plan = [(0, 0), (1024, 3), (70_000, 200_000)];
        let t = run_client(TcpStream::connect(server.addr()).unwrap(), &plan).unwrap();
        assert_eq!(t.verified, 3);
        assert_eq!(server.served(), 3);
        let bodies: usize = plan.iter().map(|p| p.0).sum();
        assert!(t.sent.len() > bodies);
        let responses: usize = plan.iter().map(|p| p.1 + 65).sum();
        assert!(t.received.len() > responses);
    }

    #[test]
    fn payload_is_deterministic_and_seed_dependent() {
        assert_eq!(payload(b"a", 100), payload(b"a", 100));
        assert_ne!(payload(b"a", 100), payload(b"b", 100));
        assert_eq!(payload(b"a", 13).len(), 13);
        assert_eq!(&payload(b"a", 100)[..13], &payload(b"a", 13)[..]);
    }
}
