//! The traffic driver: held-out rows as OIP requests from several keep-alive HTTP/1.1 clients.
//!
//! Work is planned up front ([`plan_jobs`]): a fixed list of requests, so the run is bounded in
//! count; [`run`] also stops at a deadline. Each client owns one keep-alive connection and takes
//! the next job from a shared counter; a failed connection is re-opened for the next job (a failed
//! job is counted, never retried, so production never sees a request twice).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::dataset::{Split, WineData};
use crate::eval::percentile;
use crate::oip::{InferenceResponse, OUTPUT_LABEL, TensorData, request_body};

/// Largest response body read.
const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// A client gives up after this many consecutive connection failures.
const MAX_CONSECUTIVE_FAILURES: u32 = 5;
/// Sample error messages kept for the summary.
const MAX_ERROR_SAMPLES: usize = 5;

/// How to drive traffic.
#[derive(Debug, Clone)]
pub struct TrafficConfig {
    /// Server address (`ip:port`).
    pub target: SocketAddr,
    /// Model name in `/v2/models/{model}/infer`.
    pub model: String,
    /// Concurrent keep-alive connections.
    pub clients: usize,
    /// Per-request timeout (connect + send + full response).
    pub request_timeout: Duration,
    /// The whole run stops taking new jobs after this long.
    pub max_duration: Duration,
    /// Total request rate across all clients (requests per second); `None` = as fast as possible.
    pub rate: Option<f64>,
    /// Every n-th request (by job number) is sent with `Transfer-Encoding: chunked`; 0 = never.
    pub chunked_every: usize,
    /// Print a progress line to stderr about once a second.
    pub progress: bool,
}

/// One planned request.
#[derive(Debug, Clone)]
pub struct Job {
    /// Request id (JSON `id` and `x-request-id` header).
    pub id: String,
    /// Dataset row indices in the batch.
    pub rows: Vec<usize>,
    /// True labels of those rows.
    pub labels: Vec<usize>,
    /// Serialised OIP request body.
    pub body: Bytes,
}

/// Plans the requests: the held-out rows in order, repeated (cycled) until `rows` rows are
/// covered (default: each held-out row once), `batch` rows per request.
pub fn plan_jobs(data: &WineData, split: &Split, rows: Option<usize>, batch: usize) -> Vec<Job> {
    let batch = batch.max(1);
    let total = rows.unwrap_or(split.held_out.len());
    if split.held_out.is_empty() {
        return Vec::new();
    }
    let sequence: Vec<usize> = split.held_out.iter().copied().cycle().take(total).collect();
    sequence
        .chunks(batch)
        .enumerate()
        .map(|(n, chunk)| {
            let id = format!("wine-{n:06}");
            let features: Vec<Vec<f64>> = chunk.iter().map(|&r| data.row(r).to_vec()).collect();
            let refs: Vec<&[f64]> = features.iter().map(Vec::as_slice).collect();
            let body = serde_json::to_vec(&request_body(&id, &refs)).unwrap_or_default();
            Job {
                id,
                rows: chunk.to_vec(),
                labels: chunk.iter().map(|&r| data.labels[r]).collect(),
                body: Bytes::from(body),
            }
        })
        .collect()
}

/// One line of the ground-truth file: `{"id": ..., "label": ..., "row": ...}`.
/// `label` and `row` are numbers for single-row requests, arrays for batches.
#[derive(Debug, Clone, Serialize)]
pub struct LabelRecord {
    /// Request id.
    pub id: String,
    /// True quality score(s).
    pub label: Value,
    /// Dataset row index(es).
    pub row: Value,
}

impl LabelRecord {
    /// The ground truth of a job.
    pub fn of(job: &Job) -> Self {
        let one_or_many = |v: &[usize]| match v {
            [x] => Value::from(*x),
            many => Value::from(many.to_vec()),
        };
        Self {
            id: job.id.clone(),
            label: one_or_many(&job.labels),
            row: one_or_many(&job.rows),
        }
    }
}

/// Latency in milliseconds (microsecond resolution) over requests that got an HTTP response.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyMs {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// Final result of a run; printed as JSON by `demo-traffic`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Target address.
    pub target: String,
    /// Model name.
    pub model: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Requests planned.
    pub requests_planned: usize,
    /// Requests attempted (a job taken by a client).
    pub requests_sent: usize,
    /// HTTP responses by status code.
    pub responses: BTreeMap<u16, usize>,
    /// Requests that got no HTTP response (connect error, reset, timeout).
    pub transport_errors: usize,
    /// 200 responses whose body was not a usable inference response.
    pub bad_responses: usize,
    /// Rows with a predicted label.
    pub rows_scored: usize,
    /// Rows whose predicted label equals the true one.
    pub rows_correct: usize,
    /// `rows_correct / rows_scored` (accuracy of the target model vs the held-out truth).
    pub accuracy: Option<f64>,
    /// Latency of answered requests.
    pub latency_ms: Option<LatencyMs>,
    /// `model_version` values seen in responses.
    pub model_versions: BTreeSet<String>,
    /// Wall time of the run.
    pub elapsed_s: f64,
    /// Answered requests per second.
    pub requests_per_s: f64,
    /// True when not every planned request was attempted (deadline hit, or every client gave up
    /// after repeated connection failures).
    pub stopped_early: bool,
    /// First few error messages.
    pub error_samples: Vec<String>,
}

impl Summary {
    /// True when every planned request got a 200 with a usable body.
    pub fn all_ok(&self) -> bool {
        self.requests_planned > 0
            && self.responses.get(&200).copied() == Some(self.requests_planned)
            && self.bad_responses == 0
    }
}

/// Result of one attempted job.
#[derive(Debug)]
struct Outcome {
    latency: Option<Duration>,
    status: Option<u16>,
    scored: usize,
    correct: usize,
    version: Option<String>,
    bad: bool,
    error: Option<String>,
}

/// Sends `jobs` with `cfg.clients` concurrent keep-alive clients and returns the summary.
pub async fn run(cfg: &TrafficConfig, jobs: Arc<Vec<Job>>) -> Summary {
    let started = Instant::now();
    let deadline = started + cfg.max_duration;
    let next = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for _ in 0..cfg.clients.max(1) {
        let (cfg, jobs, next, tx) = (
            cfg.clone(),
            Arc::clone(&jobs),
            Arc::clone(&next),
            tx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            client_loop(&cfg, &jobs, &next, (started, deadline), &tx).await
        }));
    }
    drop(tx);

    let mut summary = Summary {
        target: cfg.target.to_string(),
        model: cfg.model.clone(),
        clients: cfg.clients.max(1),
        requests_planned: jobs.len(),
        requests_sent: 0,
        responses: BTreeMap::new(),
        transport_errors: 0,
        bad_responses: 0,
        rows_scored: 0,
        rows_correct: 0,
        accuracy: None,
        latency_ms: None,
        model_versions: BTreeSet::new(),
        elapsed_s: 0.0,
        requests_per_s: 0.0,
        stopped_early: false,
        error_samples: Vec::new(),
    };
    let mut latencies = Vec::with_capacity(jobs.len());
    let mut last_progress = Instant::now();
    while let Some(o) = rx.recv().await {
        summary.requests_sent += 1;
        match o.status {
            Some(s) => *summary.responses.entry(s).or_default() += 1,
            None => summary.transport_errors += 1,
        }
        if let Some(l) = o.latency {
            latencies.push(l.as_secs_f64() * 1e3);
        }
        summary.bad_responses += usize::from(o.bad);
        summary.rows_scored += o.scored;
        summary.rows_correct += o.correct;
        if let Some(v) = o.version {
            summary.model_versions.insert(v);
        }
        if let Some(e) = o.error {
            if summary.error_samples.len() < MAX_ERROR_SAMPLES {
                summary.error_samples.push(e);
            }
        }
        if cfg.progress && last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            eprintln!("{}", progress_line(&summary, started.elapsed()));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed();
    summary.elapsed_s = elapsed.as_secs_f64();
    let answered: usize = summary.responses.values().sum();
    summary.requests_per_s =
        (answered as f64 / elapsed.as_secs_f64().max(1e-9) * 10.0).round() / 10.0;
    summary.stopped_early = next.load(Ordering::Relaxed) < jobs.len();
    summary.accuracy =
        (summary.rows_scored > 0).then(|| summary.rows_correct as f64 / summary.rows_scored as f64);
    if let (Some(p50), Some(p99), Some(max)) = (
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 100.0),
    ) {
        let mean = latencies.iter().sum::<f64>() / latencies.len() as f64;
        let us = |ms: f64| (ms * 1e3).round() / 1e3;
        summary.latency_ms = Some(LatencyMs {
            p50: us(p50),
            p99: us(p99),
            max: us(max),
            mean: us(mean),
        });
    }
    if cfg.progress {
        eprintln!("{}", progress_line(&summary, elapsed));
    }
    summary
}

/// `demo-traffic: 120/320 requests, 118 ok, 2 errors, 95.1 req/s`
fn progress_line(s: &Summary, elapsed: Duration) -> String {
    let ok = s.responses.get(&200).copied().unwrap_or(0);
    format!(
        "demo-traffic: {}/{} requests, {} ok, {} errors, {:.1} req/s",
        s.requests_sent,
        s.requests_planned,
        ok,
        s.requests_sent - ok,
        s.requests_sent as f64 / elapsed.as_secs_f64().max(1e-9)
    )
}

type ReqBody = BoxBody<Bytes, Infallible>;

async fn client_loop(
    cfg: &TrafficConfig,
    jobs: &[Job],
    next: &AtomicUsize,
    (started, deadline): (Instant, Instant),
    tx: &mpsc::UnboundedSender<Outcome>,
) {
    let mut conn: Option<SendRequest<ReqBody>> = None;
    let mut failures = 0;
    while Instant::now() < deadline && failures < MAX_CONSECUTIVE_FAILURES {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let Some(job) = jobs.get(n) else { break };
        if let Some(rate) = cfg.rate.filter(|r| *r > 0.0) {
            // Job n is due n/rate seconds after the start, whichever client sends it.
            let due = started + Duration::from_secs_f64(n as f64 / rate);
            if due >= deadline {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
        }
        let chunked = cfg.chunked_every > 0 && n % cfg.chunked_every == cfg.chunked_every - 1;
        let result = tokio::time::timeout(cfg.request_timeout, async {
            if conn.as_ref().is_some_and(|c| c.is_closed()) {
                conn = None;
            }
            let sender = match &mut conn {
                Some(c) => c,
                None => conn.insert(connect(cfg.target).await?),
            };
            // Latency of the exchange itself, not of opening the connection.
            let sent_at = Instant::now();
            let (status, body) = send(sender, cfg, job, chunked).await?;
            Ok((status, body, sent_at.elapsed()))
        })
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {:?}", cfg.request_timeout)));
        let outcome = match result {
            Ok((status, body, latency)) => {
                failures = 0;
                judge(job, status, &body, latency)
            }
            Err(e) => {
                failures += 1;
                conn = None;
                Outcome {
                    latency: None,
                    status: None,
                    scored: 0,
                    correct: 0,
                    version: None,
                    bad: false,
                    error: Some(format!("{}: {e}", job.id)),
                }
            }
        };
        if tx.send(outcome).is_err() {
            break;
        }
    }
}

async fn connect(target: SocketAddr) -> Result<SendRequest<ReqBody>, String> {
    let stream = TcpStream::connect(target)
        .await
        .map_err(|e| format!("connecting to {target}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {target}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn send(
    sender: &mut SendRequest<ReqBody>,
    cfg: &TrafficConfig,
    job: &Job,
    chunked: bool,
) -> Result<(StatusCode, Bytes), String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection not ready: {e}"))?;
    let body: ReqBody = if chunked {
        let mid = job.body.len() / 2;
        Chunks(VecDeque::from([
            job.body.slice(..mid),
            job.body.slice(mid..),
        ]))
        .boxed()
    } else {
        Full::new(job.body.clone()).boxed()
    };
    let req = Request::post(format!("/v2/models/{}/infer", cfg.model))
        .header(header::HOST, cfg.target.to_string())
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-request-id", job.id.as_str())
        .body(body)
        .map_err(|e| format!("building request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("sending request: {e}"))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading response: {e}"))?
        .to_bytes();
    Ok((status, body))
}

/// Scores one answered job against its true labels.
fn judge(job: &Job, status: StatusCode, body: &[u8], latency: Duration) -> Outcome {
    let mut o = Outcome {
        latency: Some(latency),
        status: Some(status.as_u16()),
        scored: 0,
        correct: 0,
        version: None,
        bad: false,
        error: None,
    };
    if status != StatusCode::OK {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
        o.error = Some(format!("{}: HTTP {status}: {text}", job.id));
        return o;
    }
    let parsed = serde_json::from_slice::<InferenceResponse>(body)
        .map_err(|e| format!("invalid inference response: {e}"))
        .and_then(|r| {
            let labels = match r.output(OUTPUT_LABEL).map(|o| &o.data) {
                Some(TensorData::Int64(l)) if l.len() == job.labels.len() => l.clone(),
                Some(_) => {
                    return Err(format!(
                        "output {OUTPUT_LABEL:?} has the wrong type or length"
                    ));
                }
                None => return Err(format!("no {OUTPUT_LABEL:?} output")),
            };
            Ok((r.model_version, labels))
        });
    match parsed {
        Ok((version, labels)) => {
            o.version = version;
            o.scored = labels.len();
            o.correct = labels
                .iter()
                .zip(&job.labels)
                .filter(|&(&p, &t)| usize::try_from(p).is_ok_and(|p| p == t))
                .count();
        }
        Err(e) => {
            o.bad = true;
            o.error = Some(format!("{}: {e}", job.id));
        }
    }
    o
}

/// A request body of several frames with no length: hyper sends it chunked.
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::DEFAULT_SEED;

    #[test]
    fn plan_covers_held_out_rows_in_batches() {
        let data = WineData::load();
        let split = Split::stratified(data.labels.view(), DEFAULT_SEED);
        let jobs = plan_jobs(&data, &split, None, 1);
        assert_eq!(jobs.len(), split.held_out.len());
        assert_eq!(jobs[0].rows, vec![split.held_out[0]]);
        assert_eq!(jobs[0].id, "wine-000000");

        let jobs = plan_jobs(&data, &split, Some(25), 10);
        assert_eq!(
            jobs.iter().map(|j| j.rows.len()).collect::<Vec<_>>(),
            vec![10, 10, 5]
        );
        let cycled = plan_jobs(&data, &split, Some(split.held_out.len() + 3), 1);
        assert_eq!(cycled.last().unwrap().rows, vec![split.held_out[2]]);
    }

    #[test]
    fn label_records_are_scalar_for_single_rows() {
        let job = Job {
            id: "a".into(),
            rows: vec![7],
            labels: vec![5],
            body: Bytes::new(),
        };
        let line = serde_json::to_string(&LabelRecord::of(&job)).unwrap();
        assert_eq!(line, r#"{"id":"a","label":5,"row":7}"#);
        let batch = Job {
            rows: vec![7, 8],
            labels: vec![5, 6],
            ..job
        };
        let line = serde_json::to_string(&LabelRecord::of(&batch)).unwrap();
        assert_eq!(line, r#"{"id":"a","label":[5,6],"row":[7,8]}"#);
    }
}
