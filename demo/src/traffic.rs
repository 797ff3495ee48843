//! The traffic driver: held-out rows as OIP requests, from several keep-alive HTTP/1.1 clients
//! ([`http1`]) or as concurrent gRPC calls on one HTTP/2 connection ([`grpc`]).
//!
//! Work is planned up front ([`plan_jobs`]): a fixed list of requests, so the run is bounded in
//! count; [`run`] also stops at a deadline. Each client takes the next job from a shared
//! counter; over HTTP/1.1 it owns one keep-alive connection, re-opened for the next job after a
//! failure (a failed job is counted, never retried, so production never sees a request twice).

mod grpc;
mod http1;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::dataset::{Split, WineData};
use crate::eval::percentile;
use crate::oip::request_body;

/// A client gives up after this many consecutive connection failures.
const MAX_CONSECUTIVE_FAILURES: u32 = 5;
/// Sample error messages kept for the summary.
const MAX_ERROR_SAMPLES: usize = 5;

/// Which API the driver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// JSON over HTTP/1.1 keep-alive: one connection per client.
    #[default]
    Http1,
    /// The OIP gRPC API (`ModelInfer`) over h2c: one connection, a stream per call.
    Grpc,
}

impl Protocol {
    /// The status of a successful answer: HTTP 200, gRPC `OK` (0).
    pub fn ok_status(self) -> u16 {
        match self {
            Protocol::Http1 => 200,
            Protocol::Grpc => tonic::Code::Ok as u16,
        }
    }
}

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
    /// HTTP/1.1 only: every n-th request (by job number) is sent with `Transfer-Encoding:
    /// chunked`; 0 = never.
    pub chunked_every: usize,
    /// HTTP/1.1 (JSON) or gRPC.
    pub protocol: Protocol,
    /// gRPC only: gzip the request messages and accept gzipped answers.
    pub gzip: bool,
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
    /// The rows' features, row-major (the gRPC request's input).
    pub features: Vec<f64>,
    /// Serialised OIP JSON request body (the HTTP request's).
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
                features: features.concat(),
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

/// Latency in milliseconds (microsecond resolution) over requests that got an answer.
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
    /// `http1` or `grpc`.
    pub protocol: Protocol,
    /// Concurrent clients (gRPC: concurrent calls on one connection).
    pub clients: usize,
    /// Requests planned.
    pub requests_planned: usize,
    /// Requests attempted (a job taken by a client).
    pub requests_sent: usize,
    /// Answers by status code: HTTP statuses, or gRPC status codes (0 = `OK`, 14 =
    /// `UNAVAILABLE`, ...) with `protocol = grpc`.
    pub responses: BTreeMap<u16, usize>,
    /// Requests that got no answer (connect error, reset, timeout).
    pub transport_errors: usize,
    /// Successful answers that were not a usable inference response.
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
    /// True when every planned request got a successful answer (HTTP 200, gRPC `OK`) with a
    /// usable body.
    pub fn all_ok(&self) -> bool {
        self.requests_planned > 0 && self.ok() == self.requests_planned && self.bad_responses == 0
    }

    /// Successful answers (HTTP 200, gRPC `OK`).
    pub fn ok(&self) -> usize {
        let ok = self.protocol.ok_status();
        self.responses.get(&ok).copied().unwrap_or(0)
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

/// An answer to one job: its status, how long it took, and the predicted labels (or why
/// there are none).
pub(crate) struct Answer {
    /// HTTP status or gRPC status code.
    status: u16,
    latency: Duration,
    labels: Result<Labels, String>,
}

/// The labels of a usable inference answer.
pub(crate) struct Labels {
    version: Option<String>,
    labels: Vec<i64>,
}

/// One client of the run.
enum Client {
    Http1(http1::Http1Client),
    Grpc(grpc::GrpcClient),
}

impl Client {
    /// Sends job number `n`; `Err` when no answer came.
    async fn exchange(
        &mut self,
        cfg: &TrafficConfig,
        job: &Job,
        n: usize,
    ) -> Result<Answer, String> {
        match self {
            Client::Http1(c) => {
                let chunked =
                    cfg.chunked_every > 0 && n % cfg.chunked_every == cfg.chunked_every - 1;
                c.exchange(job, chunked).await
            }
            Client::Grpc(c) => c.exchange(job).await,
        }
    }

    /// Drops what a failure may have broken (the HTTP/1.1 connection; a gRPC channel
    /// reconnects by itself).
    fn reset(&mut self) {
        if let Client::Http1(c) = self {
            c.reset();
        }
    }
}

/// Sends `jobs` with `cfg.clients` concurrent clients (keep-alive HTTP/1.1 connections, or
/// calls on one gRPC connection) and returns the summary.
pub async fn run(cfg: &TrafficConfig, jobs: Arc<Vec<Job>>) -> Summary {
    let shared_grpc = match cfg.protocol {
        Protocol::Http1 => None,
        Protocol::Grpc => Some(
            grpc::GrpcClient::connect(cfg.target, cfg.model.clone(), cfg.request_timeout, cfg.gzip)
                .await,
        ),
    };
    let started = Instant::now();
    let deadline = started + cfg.max_duration;
    let next = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    let mut setup_error = None;
    for _ in 0..cfg.clients.max(1) {
        let client = match &shared_grpc {
            None => Client::Http1(http1::Http1Client::new(cfg.target, cfg.model.clone())),
            Some(Ok(c)) => Client::Grpc(c.clone()),
            Some(Err(e)) => {
                setup_error = Some(e.clone());
                break;
            }
        };
        let (cfg, jobs, next, tx) = (
            cfg.clone(),
            Arc::clone(&jobs),
            Arc::clone(&next),
            tx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            client_loop(&cfg, &jobs, &next, (started, deadline), &tx, client).await
        }));
    }
    drop(tx);

    let mut summary = Summary {
        target: cfg.target.to_string(),
        model: cfg.model.clone(),
        protocol: cfg.protocol,
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
        error_samples: setup_error.into_iter().collect(),
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
    let ok = s.ok();
    format!(
        "demo-traffic: {}/{} requests, {} ok, {} errors, {:.1} req/s",
        s.requests_sent,
        s.requests_planned,
        ok,
        s.requests_sent - ok,
        s.requests_sent as f64 / elapsed.as_secs_f64().max(1e-9)
    )
}

async fn client_loop(
    cfg: &TrafficConfig,
    jobs: &[Job],
    next: &AtomicUsize,
    (started, deadline): (Instant, Instant),
    tx: &mpsc::UnboundedSender<Outcome>,
    mut client: Client,
) {
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
        let result = tokio::time::timeout(cfg.request_timeout, client.exchange(cfg, job, n))
            .await
            .unwrap_or_else(|_| Err(format!("timed out after {:?}", cfg.request_timeout)));
        let outcome = match result {
            Ok(answer) => {
                failures = 0;
                judge(job, answer, cfg.protocol.ok_status())
            }
            Err(e) => {
                failures += 1;
                client.reset();
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

/// Scores one answered job against its true labels.
fn judge(job: &Job, answer: Answer, ok_status: u16) -> Outcome {
    let mut o = Outcome {
        latency: Some(answer.latency),
        status: Some(answer.status),
        scored: 0,
        correct: 0,
        version: None,
        bad: false,
        error: None,
    };
    match answer.labels {
        Ok(Labels { labels, .. }) if labels.len() != job.labels.len() => {
            o.bad = true;
            o.error = Some(format!(
                "{}: {} labels for {} rows",
                job.id,
                labels.len(),
                job.labels.len()
            ));
        }
        Ok(Labels { version, labels }) => {
            o.version = version;
            o.scored = labels.len();
            o.correct = labels
                .iter()
                .zip(&job.labels)
                .filter(|&(&p, &t)| usize::try_from(p).is_ok_and(|p| p == t))
                .count();
        }
        Err(e) => {
            // An unusable successful answer is bad; an error status is just counted.
            o.bad = answer.status == ok_status;
            o.error = Some(format!("{}: {e}", job.id));
        }
    }
    o
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
            features: Vec::new(),
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
