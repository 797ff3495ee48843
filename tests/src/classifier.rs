//! A classifier test server with a known accuracy, and the client and ground truth that go with
//! it, for the decision tests (`shadowd run` with labels, criteria and a verdict).
//!
//! Every request carries one input `x` (a KServe v2 INT64 tensor) and the header
//! `x-request-id: req-<x>`. The true class of `x` is [`truth`]`(x)` = `x mod 3`. A
//! [`Classifier`] answers KServe v2 JSON with one INT64 label: the true class, except on the
//! inputs it gets wrong — `x ≡ residue (mod modulus)` — where it answers the next class. Its
//! accuracy on any run of consecutive inputs whose length is a multiple of `modulus` is
//! therefore exactly `1 − 1/modulus`, and which requests each model gets right is known to the
//! test without asking the code under test.
//!
//! Plain blocking std sockets and threads, like [`crate::model`]: bind listeners and connect
//! clients inside [`NetNs::run`](crate::netns::NetNs::run).

use crate::IO_TIMEOUT;
use crate::netns::NetNs;
use serde_json::{Value, json};
use shadowtap_test_support::accept::spawn_accept_loop;
use shadowtap_test_support::http::read_message;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

/// Number of classes.
pub const CLASSES: u64 = 3;

/// The true class of input `x`.
pub fn truth(x: u64) -> u64 {
    x % CLASSES
}

/// The `x-request-id` of the request for input `x` (and the `id` of its label line).
pub fn request_id(x: u64) -> String {
    format!("req-{x}")
}

/// The ground truth of the requests for `xs`, as JSON lines for `POST /api/labels`.
pub fn label_lines(xs: Range<u64>) -> String {
    xs.map(|x| format!("{}\n", json!({"id": request_id(x), "label": truth(x)})))
        .collect()
}

/// A model that is wrong exactly on the inputs `x ≡ residue (mod modulus)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classifier {
    /// Period of its mistakes.
    pub modulus: u64,
    /// Which input of each period it gets wrong.
    pub residue: u64,
}

impl Classifier {
    /// Right on 80 % of inputs: wrong on `x ≡ 0 (mod 5)`.
    pub const RIGHT_80: Classifier = Classifier {
        modulus: 5,
        residue: 0,
    };
    /// Right on 95 % of inputs: wrong on `x ≡ 1 (mod 20)` (never where [`Self::RIGHT_80`] is).
    pub const RIGHT_95: Classifier = Classifier {
        modulus: 20,
        residue: 1,
    };
    /// Right on 50 % of inputs: wrong on odd `x`.
    pub const RIGHT_50: Classifier = Classifier {
        modulus: 2,
        residue: 1,
    };

    /// Whether it predicts the true class of `x`.
    pub fn is_right(self, x: u64) -> bool {
        x % self.modulus != self.residue
    }

    /// The class it predicts for `x`.
    pub fn predict(self, x: u64) -> u64 {
        if self.is_right(x) {
            truth(x)
        } else {
            (truth(x) + 1) % CLASSES
        }
    }
}

/// The KServe v2 inference request for input `x`.
pub fn request_body(x: u64) -> Vec<u8> {
    json!({"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [x]}]})
        .to_string()
        .into_bytes()
}

/// The KServe v2 answer carrying `label`.
pub fn answer_body(label: u64) -> Vec<u8> {
    json!({
        "model_name": "m",
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [1], "data": [label]}]
    })
    .to_string()
    .into_bytes()
}

/// The input `x` of a request body.
fn input_of(body: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Value>(body).ok()?["inputs"][0]["data"][0].as_u64()
}

/// A [`Classifier`] serving on its own threads, stopped when dropped.
pub struct ClassifierServer {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    accept: Option<JoinHandle<()>>,
}

impl ClassifierServer {
    /// Serves `model` on `listener` (bind it inside the namespace where the server lives).
    pub fn start(listener: TcpListener, model: Classifier) -> io::Result<ClassifierServer> {
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&served);
        let what = format!("classifier {model:?}");
        let accept = spawn_accept_loop(listener, Arc::clone(&stop), &what, move |stream| {
            serve(stream, model, &counter)
        });
        Ok(ClassifierServer {
            stop,
            served,
            accept: Some(accept),
        })
    }

    /// Requests answered with a prediction so far.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for ClassifierServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Answers requests on one connection until the peer closes it.
fn serve(mut stream: TcpStream, model: Classifier, served: &AtomicUsize) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::new();
    while let Some(request) = read_message(&mut stream, &mut buf)? {
        let (status, body) = match input_of(&request.body) {
            Some(x) => {
                served.fetch_add(1, Ordering::Relaxed);
                ("200 OK", answer_body(model.predict(x)))
            }
            None => ("400 Bad Request", b"{\"error\":\"no input\"}".to_vec()),
        };
        let mut out = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        stream.write_all(&out)?;
    }
    Ok(())
}

/// Sends the requests for `xs` one at a time on one keep-alive connection, each with its
/// `x-request-id`, checks every answer is `production`'s prediction, then closes the connection
/// cleanly. Returns the number of requests answered.
pub fn send(mut stream: TcpStream, xs: Range<u64>, production: Classifier) -> io::Result<usize> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::new();
    let mut answered = 0;
    for x in xs {
        let body = request_body(x);
        let mut wire = format!(
            "POST /v2/models/m/infer HTTP/1.1\r\nHost: prod.example:8080\r\n\
             Content-Type: application/json\r\nX-Request-Id: {}\r\nContent-Length: {}\r\n\r\n",
            request_id(x),
            body.len()
        )
        .into_bytes();
        wire.extend_from_slice(&body);
        stream.write_all(&wire)?;
        let response = read_message(&mut stream, &mut buf)?
            .ok_or_else(|| io::Error::other(format!("input {x}: connection closed")))?;
        let label = serde_json::from_slice::<Value>(&response.body)
            .ok()
            .and_then(|v| v["outputs"][0]["data"][0].as_u64());
        if response.status() != Some(200) || label != Some(production.predict(x)) {
            return Err(io::Error::other(format!(
                "input {x}: `{}` {:?} is not production's answer",
                response.start_line,
                String::from_utf8_lossy(&response.body)
            )));
        }
        answered += 1;
    }
    crate::close_after_last_response(&mut stream, &buf)?;
    Ok(answered)
}

/// Sends the requests for `xs` to `prod` from inside `ns`, split over `connections` concurrent
/// keep-alive connections; returns how many production answered correctly (all, or panics).
pub fn drive(
    ns: &NetNs,
    prod: SocketAddr,
    xs: Range<u64>,
    connections: u64,
    production: Classifier,
) -> usize {
    let n = xs.end - xs.start;
    let per = n.div_ceil(connections.max(1));
    let parts: Vec<Range<u64>> = (0..connections)
        .map(|i| {
            let start = (xs.start + i * per).min(xs.end);
            start..(start + per).min(xs.end)
        })
        .filter(|r| !r.is_empty())
        .collect();
    let streams: Vec<TcpStream> = parts
        .iter()
        .map(|_| {
            ns.run(|| TcpStream::connect(prod))
                .expect("connect to production")
        })
        .collect();
    std::thread::scope(|scope| {
        let clients: Vec<_> = streams
            .into_iter()
            .zip(parts)
            .map(|(stream, part)| scope.spawn(move || send(stream, part, production)))
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().unwrap().expect("production answers correctly"))
            .sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The accuracies and overlaps the decision tests rely on, counted over 0..200.
    #[test]
    fn accuracies_are_exact_on_whole_periods() {
        let right = |m: Classifier| (0..200).filter(|&x| m.is_right(x)).count();
        assert_eq!(right(Classifier::RIGHT_80), 160);
        assert_eq!(right(Classifier::RIGHT_95), 190);
        assert_eq!(right(Classifier::RIGHT_50), 100);
        let both_wrong = |a: Classifier, b: Classifier| {
            (0..200)
                .filter(|&x| !a.is_right(x) && !b.is_right(x))
                .count()
        };
        assert_eq!(both_wrong(Classifier::RIGHT_80, Classifier::RIGHT_95), 0);
        assert_eq!(both_wrong(Classifier::RIGHT_80, Classifier::RIGHT_50), 20);
        for x in 0..30 {
            let m = Classifier::RIGHT_80;
            assert_eq!(m.predict(x) == truth(x), m.is_right(x));
        }
    }

    #[test]
    fn server_answers_its_predictions_over_loopback() {
        let model = Classifier::RIGHT_50;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = ClassifierServer::start(listener, model).unwrap();
        let n = send(TcpStream::connect(addr).unwrap(), 10..20, model).unwrap();
        assert_eq!((n, server.served()), (10, 10));
        // Another model's client rejects the first answer that differs (input 10: even, right
        // for RIGHT_50, wrong for RIGHT_80).
        let err = send(
            TcpStream::connect(addr).unwrap(),
            10..12,
            Classifier::RIGHT_80,
        );
        assert!(err.unwrap_err().to_string().contains("input 10"));
        let lines = label_lines(4..6);
        assert_eq!(
            lines,
            "{\"id\":\"req-4\",\"label\":1}\n{\"id\":\"req-5\",\"label\":2}\n"
        );
    }
}
