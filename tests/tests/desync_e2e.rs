//! `shadowd run` end to end against a production server that answers the first request of
//! each connection three times (in one write, before the client sends anything else), then
//! serves normally, like the server of zeek's `http-desync-request-response` capture. The real
//! binary taps `lo` of a throw-away network namespace with the real eBPF program; the shadow
//! is the usual fake (it disagrees on ids divisible by 7).
//!
//! Every request must be compared with its own production answer: the two extra answers per
//! connection are orphans (`capture_dropped_total{stage="orphan_response"}`), never the answer
//! of a later request. Production's label is `id % 3` and ids on a connection are consecutive,
//! so a later request paired with an answer meant for an earlier one (as 82fbd8b did: 10 label
//! discrepancies here) always shows as a `label` discrepancy; the only discrepancy expected is
//! the label of id 7, which the shadow gets wrong on purpose.
//!
//! Needs root; skipped (with a message) otherwise.

use shadow_core::vocabulary::{DiscrepancyKind, DropStage, MirrorResult, Outcome};
use shadowtap_test_support::accept::spawn_accept_loop;
use shadowtap_test_support::http::{Message, read_message};
use shadowtap_tests::admin::{
    self, accounted, discrepancies, exchanges, labelled, mirrored, sum_of,
};
use shadowtap_tests::model::{ModelServer, Req, Role, answer_body, disagrees, label};
use shadowtap_tests::netns::NetNs;
use shadowtap_tests::{IO_TIMEOUT, close_after_last_response, require_root};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const PROD: SocketAddr = local(8080);
const SHADOW: SocketAddr = local(8081);
const ADMIN: SocketAddr = local(9464);

/// How many times the first request of each connection is answered.
const FIRST_ANSWERS: usize = 3;

const fn local(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// Production's answer to request `id`, as the model server frames it.
fn answer(id: u64) -> Vec<u8> {
    let body = answer_body(id, label(id));
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// The JSON `id` of a request body.
fn id_of(request: &Message) -> io::Result<u64> {
    serde_json::from_slice::<serde_json::Value>(&request.body)
        .ok()
        .and_then(|v| v["id"].as_u64())
        .ok_or_else(|| io::Error::other("request without an id"))
}

/// Production that answers the first request of a connection [`FIRST_ANSWERS`] times in one
/// write, then each request once. Stops when dropped.
struct DesyncServer {
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl DesyncServer {
    fn start(listener: TcpListener) -> io::Result<DesyncServer> {
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let accept = spawn_accept_loop(listener, Arc::clone(&stop), "desync server", |stream| {
            serve(stream)
        });
        Ok(DesyncServer {
            stop,
            accept: Some(accept),
        })
    }
}

impl Drop for DesyncServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::new();
    let mut first = true;
    while let Some(request) = read_message(&mut stream, &mut buf)? {
        let id = id_of(&request)?;
        let times = if first { FIRST_ANSWERS } else { 1 };
        first = false;
        stream.write_all(&answer(id).repeat(times))?;
    }
    Ok(())
}

/// Sends `reqs` one at a time on one connection, reading [`FIRST_ANSWERS`] answers to the
/// first and one to each other; checks each is production's answer to that request.
fn send(mut stream: TcpStream, reqs: &[Req]) -> io::Result<usize> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::new();
    for (i, req) in reqs.iter().enumerate() {
        stream.write_all(&req.encode())?;
        let answers = if i == 0 { FIRST_ANSWERS } else { 1 };
        for _ in 0..answers {
            let response = read_message(&mut stream, &mut buf)?
                .ok_or_else(|| io::Error::other(format!("request {}: closed", req.id)))?;
            let body: serde_json::Value = serde_json::from_slice(&response.body)
                .map_err(|e| io::Error::other(format!("request {}: {e}", req.id)))?;
            if body["id"].as_str() != Some(req.id.to_string().as_str()) {
                return Err(io::Error::other(format!(
                    "request {}: answer for {}",
                    req.id, body["id"]
                )));
            }
        }
        // A pause between requests, as an interactive client leaves: the extra answers are
        // long on the wire before the next request.
        std::thread::sleep(Duration::from_millis(20));
    }
    close_after_last_response(&mut stream, &buf)?;
    Ok(reqs.len())
}

#[test]
fn run_compares_every_request_with_its_own_answer_when_production_answers_thrice() {
    if !require_root(
        "run_compares_every_request_with_its_own_answer_when_production_answers_thrice",
    ) {
        return;
    }
    let ns = NetNs::new("dsy").expect("netns");
    let _prod = DesyncServer::start(ns.run(|| TcpListener::bind(PROD)).unwrap()).unwrap();
    let _shadow =
        ModelServer::start(ns.run(|| TcpListener::bind(SHADOW)).unwrap(), Role::Shadow).unwrap();
    let mut daemon = admin::run_daemon(&ns, PROD, SHADOW, ADMIN, &["--preset", "kserve-v2"]);

    // Two connections; ids the shadow agrees on, except 7.
    let plan: Vec<Vec<Req>> = vec![
        [1, 2, 3, 4, 5, 7].into_iter().map(Req::post).collect(),
        [8, 9, 10, 11, 12, 13].into_iter().map(Req::post).collect(),
    ];
    let n: usize = plan.iter().map(Vec::len).sum();
    let disagreeing = plan.iter().flatten().filter(|r| disagrees(r.id)).count();
    assert_eq!((n, disagreeing), (12, 1), "the plan");
    let answered: usize = std::thread::scope(|scope| {
        let clients: Vec<_> = plan
            .iter()
            .map(|reqs| {
                let stream = ns.run(|| TcpStream::connect(PROD)).unwrap();
                scope.spawn(move || send(stream, reqs))
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().unwrap().expect("production answers"))
            .sum()
    });
    assert_eq!(answered, n);

    let orphans = (plan.len() * (FIRST_ANSWERS - 1)) as f64;
    let orphan_series = [("stage", DropStage::OrphanResponse.as_str())];
    let text = admin::wait_metrics(
        &ns,
        &mut daemon,
        ADMIN,
        "every request compared and the extra answers counted",
        |t| {
            accounted(t) >= n as f64
                && labelled(t, "shadowtap_capture_dropped_total", &orphan_series) >= orphans
        },
    );
    assert_eq!(exchanges(&text, Outcome::Complete), n as f64, "{text}");
    assert_eq!(
        sum_of(&text, "shadowtap_exchanges_total"),
        n as f64,
        "{text}"
    );
    assert_eq!(mirrored(&text, MirrorResult::Ok), n as f64, "{text}");
    assert_eq!(accounted(&text), n as f64, "{text}");
    assert_eq!(
        labelled(&text, "shadowtap_capture_dropped_total", &orphan_series),
        orphans,
        "{text}"
    );
    assert_eq!(
        sum_of(&text, "shadowtap_capture_dropped_total"),
        orphans,
        "nothing else lost:\n{text}"
    );
    // Each request compared with its own answer: no body differs, and the only label that
    // differs is the one the shadow gets wrong on purpose.
    assert_eq!(discrepancies(&text, DiscrepancyKind::Body), 0.0, "{text}");
    assert_eq!(
        discrepancies(&text, DiscrepancyKind::Label),
        disagreeing as f64,
        "{text}"
    );
    assert_eq!(
        sum_of(&text, "shadowtap_discrepancies_total"),
        disagreeing as f64,
        "{text}"
    );
    let status = daemon.stop(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status}:\n{}", daemon.output());
}
