//! An HTTP/2 server (hyper, h2c with prior knowledge) for the HTTP/2 end-to-end tests: it
//! answers every request `200` with a JSON body derived from the request only (so a production
//! and a shadow instance answer alike), and records each request it answered, to check what
//! the shadow received against what production received.
//!
//! It runs on its own thread with its own tokio runtime, on a listener made inside the test's
//! namespace, and stops when dropped.

use crate::netns::NetNs;
use crate::sha256_hex;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// What the server saw of one request.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seen {
    /// `:method`.
    pub method: String,
    /// `:path` (with the query).
    pub path: String,
    /// The `x-request-id` header, if any.
    pub request_id: Option<String>,
    /// Lowercase hex SHA-256 of the whole request body.
    pub body_sha256: String,
}

/// A running HTTP/2 answering server; stopped on drop.
pub struct H2Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl H2Server {
    /// Listens on `addr` inside `ns` and serves until dropped.
    pub fn start(ns: &NetNs, addr: SocketAddr) -> io::Result<H2Server> {
        let listener = ns.run(|| std::net::TcpListener::bind(addr))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let records = Arc::clone(&seen);
        let thread = std::thread::spawn(move || {
            runtime.block_on(serve(listener, records, stopped));
        });
        Ok(H2Server {
            addr,
            seen,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request answered so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// How many requests it answered.
    pub fn answered(&self) -> usize {
        self.seen.lock().map_or(0, |s| s.len())
    }
}

impl Drop for H2Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    seen: Arc<Mutex<Vec<Seen>>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(Arc::clone(&seen), req));
                    let _ = http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

/// `200 {"method": .., "path": .., "body_sha256": .., "body_len": ..}`.
async fn answer(
    seen: Arc<Mutex<Vec<Seen>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.to_string());
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let record = Seen {
        method,
        path,
        request_id,
        body_sha256: sha256_hex(&body),
    };
    let json = serde_json::json!({
        "method": record.method,
        "path": record.path,
        "body_sha256": record.body_sha256,
        "body_len": body.len(),
    });
    if let Ok(mut s) = seen.lock() {
        s.push(record);
    }
    let mut response = Response::new(Full::new(Bytes::from(json.to_string())));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
