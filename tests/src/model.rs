//! Stand-ins for the model servers of a `shadowd run` test, and the client that drives them.
//!
//! - [`ModelServer`] with [`Role::Production`] answers every request with KServe v2 JSON whose
//!   label is [`label`]`(id)`, `id` being the request body's JSON `id` (a chunked answer where
//!   [`chunked_answer`]`(id)`, else `Content-Length`). With [`Role::Shadow`] it
//!   answers the same label except where [`disagrees`]`(id)` (ids divisible by 7), where it
//!   predicts another class. [`Role::Hang`] reads requests and never answers; [`Role::Garbage`]
//!   answers bytes that are not HTTP and closes. Every role records what it received
//!   ([`Seen`]: method, target, headers, sha256 of the decoded body).
//! - [`send`] sends [`Req`]s on one keep-alive connection, one at a time or pipelined (all
//!   written before the first response is read), with `Content-Length` or chunked bodies, and
//!   checks that every answer is production's.
//!
//! Plain blocking std sockets and threads: create listeners and client sockets inside
//! [`NetNs::run`](crate::netns::NetNs::run), use them from anywhere.

use crate::{IO_TIMEOUT, sha256_hex};
use serde_json::{Value, json};
use shadowtap_test_support::accept::spawn_accept_loop;
use shadowtap_test_support::http::{self, Message, read_message, read_message_with};
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The class production predicts for request `id`.
pub fn label(id: u64) -> u64 {
    id % 3
}

/// Whether the fake shadow predicts another class than production for request `id`.
pub fn disagrees(id: u64) -> bool {
    id.is_multiple_of(7)
}

/// The class the fake shadow predicts for request `id`.
pub fn shadow_label(id: u64) -> u64 {
    if disagrees(id) {
        (label(id) + 1) % 3
    } else {
        label(id)
    }
}

/// A KServe v2 answer carrying one INT64 label.
pub fn answer_body(id: u64, label: u64) -> Vec<u8> {
    json!({
        "model_name": "m",
        "id": id.to_string(),
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [1], "data": [label]}]
    })
    .to_string()
    .into_bytes()
}

/// A KServe v2 inference request for `id`; with `len > 0`, padded with a `pad` string field to
/// exactly `len` bytes (the padding depends on `id`, so no two bodies are equal).
pub fn request_body(id: u64, len: usize) -> Vec<u8> {
    let base = json!({
        "id": id,
        "inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 3],
                    "data": [id as f64, 1.5, -2.0]}]
    })
    .to_string();
    if len == 0 {
        return base.into_bytes();
    }
    let head = format!("{},\"pad\":\"", &base[..base.len() - 1]);
    let tail = "\"}";
    assert!(len >= head.len() + tail.len(), "body of {len} B too small");
    let mut body = head.into_bytes();
    let fill = len - body.len() - tail.len();
    body.extend((0..fill).map(|i| b'a' + ((i as u64 * 7 + id) % 26) as u8));
    body.extend_from_slice(tail.as_bytes());
    body
}

/// The JSON `id` of a request body.
pub fn id_of(body: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Value>(body).ok()?["id"].as_u64()
}

/// How a [`ModelServer`] answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Label [`label`]`(id)`.
    Production,
    /// Label [`shadow_label`]`(id)`: production's except where [`disagrees`].
    Shadow,
    /// Reads requests, never answers (holds the connection until the server is dropped).
    Hang,
    /// Answers bytes that are not HTTP, then closes the connection.
    Garbage,
}

/// One request as a [`ModelServer`] received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body_sha256: String,
    /// JSON `id` of the body, when it has one.
    pub id: Option<u64>,
}

impl Seen {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        http::header(&self.headers, name)
    }
}

/// A model server on its own threads, stopped when dropped.
pub struct ModelServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    accept: Option<JoinHandle<()>>,
}

impl ModelServer {
    /// Serves `listener` (bind it inside the namespace where the server should live).
    pub fn start(listener: TcpListener, role: Role) -> io::Result<ModelServer> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let (stop_conn, seen) = (Arc::clone(&stop), Arc::clone(&seen));
            let what = format!("{role:?} server");
            spawn_accept_loop(listener, Arc::clone(&stop), &what, move |stream| {
                serve(stream, role, &seen, &stop_conn)
            })
        };
        Ok(ModelServer {
            addr,
            stop,
            seen,
            accept: Some(accept),
        })
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Whether production answers request `id` with a chunked body (else `Content-Length`).
pub fn chunked_answer(id: u64) -> bool {
    id.is_multiple_of(5)
}

fn respond(stream: &mut TcpStream, status: &str, body: &[u8]) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    stream.write_all(&out)
}

/// A `200 OK` with `body` in two chunks.
fn respond_chunked(stream: &mut TcpStream, body: &[u8]) -> io::Result<()> {
    let (a, b) = body.split_at(body.len() / 2);
    let mut out =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for chunk in [a, b] {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&out)
}

/// Answers requests on one connection until the peer closes it.
fn serve(
    mut stream: TcpStream,
    role: Role,
    seen: &Mutex<Vec<Seen>>,
    stop: &AtomicBool,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::new();
    let mut interim = stream.try_clone()?;
    let mut continue_100 = |head: &Message| match head.header("expect") {
        Some(v) if v.eq_ignore_ascii_case("100-continue") && role != Role::Hang => {
            interim.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        }
        _ => Ok(()),
    };
    while let Some(request) = read_message_with(&mut stream, &mut buf, &mut continue_100)? {
        let id = id_of(&request.body);
        let mut parts = request.start_line.splitn(3, ' ');
        seen.lock().unwrap_or_else(|e| e.into_inner()).push(Seen {
            method: parts.next().unwrap_or_default().to_owned(),
            target: parts.next().unwrap_or_default().to_owned(),
            headers: request.headers.clone(),
            body_sha256: sha256_hex(&request.body),
            id,
        });
        match (role, id) {
            (Role::Hang, _) => {
                // Bounded by the test: the server is dropped when it ends.
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return Ok(());
            }
            (Role::Garbage, _) => {
                stream.write_all(b"\x00\x01 SURPRISE not http at all\r\n\r\n")?;
                let _ = stream.shutdown(Shutdown::Both);
                return Ok(());
            }
            (_, None) => respond(&mut stream, "400 Bad Request", b"{\"error\":\"no id\"}")?,
            (Role::Production, Some(id)) if chunked_answer(id) => {
                respond_chunked(&mut stream, &answer_body(id, label(id)))?
            }
            (Role::Production, Some(id)) => {
                respond(&mut stream, "200 OK", &answer_body(id, label(id)))?
            }
            (Role::Shadow, Some(id)) => {
                respond(&mut stream, "200 OK", &answer_body(id, shadow_label(id)))?
            }
        }
    }
    Ok(())
}

/// How a request body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length`.
    Length,
    /// `Transfer-Encoding: chunked`, in chunks of varied sizes, one with an extension, and a
    /// trailer.
    Chunked,
}

/// One request of a test plan: `method /v2/models/m/infer?id=<id>` with [`request_body`].
#[derive(Clone, Debug)]
pub struct Req {
    pub id: u64,
    pub method: &'static str,
    pub body: Vec<u8>,
    pub framing: Framing,
    /// Sent with `Expect: 100-continue`: the body only after the server's `100 Continue`.
    pub expect_continue: bool,
}

impl Req {
    /// A POST with a small body framed by `Content-Length`.
    pub fn post(id: u64) -> Req {
        Req {
            id,
            method: "POST",
            body: request_body(id, 0),
            framing: Framing::Length,
            expect_continue: false,
        }
    }

    /// The same request with a body padded to `len` bytes.
    pub fn sized(mut self, len: usize) -> Req {
        self.body = request_body(self.id, len);
        self
    }

    /// The same request with a chunked body.
    pub fn chunked(mut self) -> Req {
        self.framing = Framing::Chunked;
        self
    }

    /// The same request with `Expect: 100-continue`.
    pub fn expect_continue(mut self) -> Req {
        self.expect_continue = true;
        self
    }

    /// The same request with another method.
    pub fn method(mut self, method: &'static str) -> Req {
        self.method = method;
        self
    }

    /// The request target.
    pub fn target(&self) -> String {
        format!("/v2/models/m/infer?id={}", self.id)
    }

    /// The bytes put on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let (mut out, body) = self.encode_parts();
        out.extend_from_slice(&body);
        out
    }

    /// The bytes put on the wire: head, then (framed) body.
    pub fn encode_parts(&self) -> (Vec<u8>, Vec<u8>) {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: prod.example:8080\r\nContent-Type: application/json\r\n",
            self.method,
            self.target()
        )
        .into_bytes();
        if self.expect_continue {
            head.extend_from_slice(b"Expect: 100-continue\r\n");
        }
        let mut out = Vec::new();
        match self.framing {
            Framing::Length => {
                head.extend_from_slice(
                    format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes(),
                );
                out.extend_from_slice(&self.body);
            }
            Framing::Chunked => {
                head.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                let sizes = [1usize, 7, 100, 4093, 65_536];
                let mut rest = &self.body[..];
                for (i, size) in sizes.iter().cycle().enumerate() {
                    if rest.is_empty() {
                        break;
                    }
                    let (chunk, tail) = rest.split_at((*size).min(rest.len()));
                    let ext = if i == 1 { ";note=\"x\"" } else { "" };
                    out.extend_from_slice(format!("{:x}{ext}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                    rest = tail;
                }
                out.extend_from_slice(b"0\r\nX-Trailer: done\r\n\r\n");
            }
        }
        (head, out)
    }
}

/// Checks that `response` is production's answer to request `id`.
fn check_answer(id: u64, response: &Message) -> io::Result<()> {
    let body: Value = serde_json::from_slice(&response.body)
        .map_err(|e| io::Error::other(format!("request {id}: answer not JSON: {e}")))?;
    let ok = response.start_line == "HTTP/1.1 200 OK"
        && body["id"].as_str() == Some(id.to_string().as_str())
        && body["outputs"][0]["data"][0] == label(id);
    if ok {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "request {id}: wrong answer `{}` {body}",
            response.start_line
        )))
    }
}

/// Sends `reqs` on one keep-alive connection — one at a time, or, when `pipelined`, all written
/// before the first response is read — checks every answer is production's, then closes the
/// connection cleanly. Returns the number of correct answers (all of them, or an error).
pub fn send(mut stream: TcpStream, reqs: &[Req], pipelined: bool) -> io::Result<usize> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::new();
    let mut verified = 0;
    let mut read = |stream: &mut TcpStream, req: &Req| {
        read_message(stream, &mut buf)?
            .ok_or_else(|| io::Error::other(format!("request {}: connection closed", req.id)))
    };
    if pipelined {
        let all: Vec<u8> = reqs.iter().flat_map(Req::encode).collect();
        stream.write_all(&all)?;
    }
    for req in reqs {
        if !pipelined {
            let (head, body) = req.encode_parts();
            stream.write_all(&head)?;
            if req.expect_continue {
                let interim = read(&mut stream, req)?;
                if interim.start_line != "HTTP/1.1 100 Continue" {
                    return Err(io::Error::other(format!(
                        "request {}: `{}` instead of 100 Continue",
                        req.id, interim.start_line
                    )));
                }
            }
            stream.write_all(&body)?;
        }
        let mut response = read(&mut stream, req)?;
        while response.start_line.starts_with("HTTP/1.1 1") {
            response = read(&mut stream, req)?;
        }
        check_answer(req.id, &response)?;
        verified += 1;
    }
    crate::close_after_last_response(&mut stream, &buf)?;
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_exact_sized_json_with_their_id() {
        let body = request_body(42, 10_000);
        assert_eq!(body.len(), 10_000);
        assert_eq!(id_of(&body), Some(42));
        assert_ne!(request_body(1, 10_000), request_body(2, 10_000));
        assert_eq!(id_of(&request_body(3, 0)), Some(3));
    }

    #[test]
    fn chunked_and_length_requests_decode_to_the_same_body() {
        for len in [0, 200, 70_000] {
            for req in [Req::post(5).sized(len), Req::post(5).sized(len).chunked()] {
                let wire = req.encode();
                let mut buf = Vec::new();
                let msg = read_message(&mut &wire[..], &mut buf).unwrap().unwrap();
                assert_eq!(msg.body, req.body, "{:?} {len}", req.framing);
                assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn production_and_shadow_over_loopback() {
        let prod = ModelServer::start(TcpListener::bind("127.0.0.1:0").unwrap(), Role::Production)
            .unwrap();
        let reqs: Vec<Req> = (0..8)
            .map(|id| {
                let r = Req::post(id);
                if id % 2 == 0 { r.chunked() } else { r }
            })
            .collect();
        let n = send(TcpStream::connect(prod.addr()).unwrap(), &reqs, true).unwrap();
        assert_eq!(n, 8);
        let seen = prod.seen();
        assert_eq!(seen.len(), 8);
        for (s, r) in seen.iter().zip(&reqs) {
            assert_eq!(s.body_sha256, sha256_hex(&r.body));
            assert_eq!(s.target, r.target());
        }
        // Expect: 100-continue, with both framings: the body follows the interim answer.
        let expecting = [
            Req::post(20).sized(1000).expect_continue(),
            Req::post(21).chunked().expect_continue(),
        ];
        let n = send(TcpStream::connect(prod.addr()).unwrap(), &expecting, false).unwrap();
        assert_eq!(n, 2);
        assert_eq!(prod.seen()[9].body_sha256, sha256_hex(&expecting[1].body));
        // The shadow disagrees on ids divisible by 7, so production's client rejects id 7.
        let shadow =
            ModelServer::start(TcpListener::bind("127.0.0.1:0").unwrap(), Role::Shadow).unwrap();
        let err = send(
            TcpStream::connect(shadow.addr()).unwrap(),
            &[Req::post(6), Req::post(7)],
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("request 7"), "{err}");
    }
}
