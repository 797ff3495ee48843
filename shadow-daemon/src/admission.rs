//! Pipeline: decides which exchanges are replayed and hands them to [`crate::replay`] through a
//! bounded queue. It never waits on anything the capture side waits on: the queue is fed with
//! `try_send`, and a full queue means drop and count (`mirror_skipped_total{reason="queue_full"}`).
//!
//! Checks, in order (the first that fails names the skip reason):
//! outcome (`truncated`) → [`filter`] (`filtered`) → [`sampling`] (`sampled_out`) →
//! [`circuit_breaker`] (`circuit_open`) → [`token_bucket`] (`rate_limited`) → queue (`queue_full`).

pub mod circuit_breaker;
pub mod filter;
pub mod sampling;
pub mod token_bucket;

use crate::config::Config;
use crate::shutdown::Shutdown;
use crate::sinks::metrics::Metrics;
use circuit_breaker::{BreakerState, CircuitBreaker};
use filter::RequestFilter;
use sampling::Sampler;
use shadow_core::http::{Exchange, HttpRequest, HttpResponse, Outcome};
use shadow_core::vocabulary::SkipReason;
use std::sync::Mutex;
use std::time::Instant;
use token_bucket::TokenBucket;
use tokio::sync::mpsc;

/// One exchange admitted for replay.
#[derive(Debug)]
pub struct Job {
    pub exchange: Exchange,
    /// When the pipeline admitted it.
    pub admitted: Instant,
}

impl Job {
    /// The request (always present in a job).
    pub fn request(&self) -> &HttpRequest {
        self.exchange
            .request
            .as_ref()
            .expect("jobs carry a request")
    }

    /// The production response (always present in a job).
    pub fn prod_response(&self) -> &HttpResponse {
        self.exchange
            .prod_response
            .as_ref()
            .expect("jobs carry a response")
    }
}

/// What the pipeline did with an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Queued for replay.
    Queued,
    /// Not replayed, for this reason.
    Skipped(SkipReason),
    /// Not replayable (gap, no response, unparsable): counted in `exchanges_total` only.
    Incomplete,
}

/// The circuit breaker shared by the pipeline (admission) and the replay workers (outcomes);
/// every state change is logged and exported.
#[derive(Debug)]
pub struct SharedBreaker {
    inner: Mutex<CircuitBreaker>,
    metrics: Metrics,
}

impl SharedBreaker {
    /// A closed breaker reporting to `metrics`.
    pub fn new(breaker: CircuitBreaker, metrics: Metrics) -> Self {
        metrics.circuit_changed(breaker.state());
        SharedBreaker {
            inner: Mutex::new(breaker),
            metrics,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut CircuitBreaker) -> T) -> T {
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let before = b.state();
        let out = f(&mut b);
        let after = b.state();
        drop(b);
        if after != before {
            self.metrics.circuit_changed(after);
        }
        out
    }

    /// See [`CircuitBreaker::admit`].
    pub fn admit(&self, now: Instant) -> bool {
        self.with(|b| b.admit(now))
    }

    /// See [`CircuitBreaker::cancel`].
    pub fn cancel(&self) {
        self.with(CircuitBreaker::cancel)
    }

    /// See [`CircuitBreaker::record`].
    pub fn record(&self, failure: bool, now: Instant) {
        self.with(|b| b.record(failure, now))
    }

    /// Current state.
    pub fn state(&self) -> BreakerState {
        self.with(|b| b.state())
    }
}

/// What the pipeline did, counted (also in the metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PipelineStats {
    /// Exchanges received.
    pub exchanges: u64,
    /// Exchanges queued for replay.
    pub queued: u64,
    /// Skipped, by reason.
    pub skipped: std::collections::BTreeMap<&'static str, u64>,
    /// Not replayable (gap, no response, unparsable).
    pub incomplete: u64,
}

/// The admission stage: synchronous, never blocks.
pub struct Pipeline {
    stats: PipelineStats,
    filter: RequestFilter,
    sampler: Sampler,
    bucket: Option<TokenBucket>,
    breaker: std::sync::Arc<SharedBreaker>,
    queue: mpsc::Sender<Job>,
    metrics: Metrics,
}

impl Pipeline {
    /// A pipeline feeding `queue`.
    pub fn new(
        config: &Config,
        breaker: std::sync::Arc<SharedBreaker>,
        queue: mpsc::Sender<Job>,
        metrics: Metrics,
    ) -> Self {
        let m = &config.mirror;
        Pipeline {
            stats: PipelineStats::default(),
            filter: RequestFilter::new(m),
            sampler: Sampler::new(m.sample_percent, m.sample_seed),
            bucket: (m.rate_limit > 0.0)
                .then(|| TokenBucket::new(m.rate_limit, m.burst, Instant::now())),
            breaker,
            queue,
            metrics,
        }
    }

    /// Counts the exchange and queues it for replay if every check passes.
    pub fn offer(&mut self, exchange: Exchange) -> Admission {
        self.metrics.exchange_seen(exchange.outcome);
        let admission = self.admit(exchange);
        self.stats.exchanges += 1;
        match admission {
            Admission::Queued => self.stats.queued += 1,
            Admission::Skipped(reason) => {
                self.metrics.mirror_skipped(reason);
                *self.stats.skipped.entry(reason.as_str()).or_default() += 1;
            }
            Admission::Incomplete => self.stats.incomplete += 1,
        }
        admission
    }

    fn admit(&mut self, exchange: Exchange) -> Admission {
        match exchange.outcome {
            Outcome::Complete => {}
            Outcome::Truncated => return Admission::Skipped(SkipReason::Truncated),
            _ => return Admission::Incomplete,
        }
        let (Some(req), Some(_)) = (&exchange.request, &exchange.prod_response) else {
            return Admission::Incomplete;
        };
        if !self.filter.allows(&req.method, &req.target) {
            return Admission::Skipped(SkipReason::Filtered);
        }
        if !self.sampler.sampled(&req.method, &req.target, &req.body) {
            return Admission::Skipped(SkipReason::SampledOut);
        }
        let now = Instant::now();
        if !self.breaker.admit(now) {
            return Admission::Skipped(SkipReason::CircuitOpen);
        }
        if let Some(bucket) = &mut self.bucket
            && !bucket.try_take(now)
        {
            self.breaker.cancel();
            return Admission::Skipped(SkipReason::RateLimited);
        }
        let job = Job {
            exchange,
            admitted: now,
        };
        match self.queue.try_send(job) {
            Ok(()) => Admission::Queued,
            Err(_) => {
                self.breaker.cancel();
                Admission::Skipped(SkipReason::QueueFull)
            }
        }
    }
}

/// Runs the pipeline until `exchanges` closes or shutdown is requested; dropping the pipeline
/// then closes the replay queue.
pub async fn run_pipeline(
    mut pipeline: Pipeline,
    mut exchanges: mpsc::Receiver<Exchange>,
    mut shutdown: Shutdown,
) -> PipelineStats {
    loop {
        tokio::select! {
            biased;
            _ = shutdown.requested() => break,
            next = exchanges.recv() => match next {
                Some(exchange) => { pipeline.offer(exchange); }
                None => break,
            },
        }
    }
    pipeline.stats
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::Bytes;
    use shadow_core::http::{ExchangeTiming, Header};
    use shadow_core::segment::FlowKey;

    /// A complete exchange for tests.
    pub(crate) fn exchange(method: &str, target: &str, body: &str) -> Exchange {
        Exchange {
            flow: FlowKey {
                client: "127.0.0.1:40000".parse().unwrap(),
                server: "127.0.0.1:8080".parse().unwrap(),
            },
            request: Some(HttpRequest {
                method: method.into(),
                target: target.into(),
                version: 1,
                headers: vec![Header {
                    name: "Host".into(),
                    value: Bytes::from_static(b"prod"),
                }],
                body: Bytes::from(body.to_string()),
            }),
            prod_response: Some(HttpResponse {
                status: 200,
                version: 1,
                headers: Vec::new(),
                body: Bytes::from_static(b"{}"),
            }),
            timing: ExchangeTiming::default(),
            outcome: Outcome::Complete,
        }
    }

    fn pipeline(config: &Config, depth: usize) -> (Pipeline, mpsc::Receiver<Job>, Metrics) {
        let metrics = Metrics::new();
        let breaker = std::sync::Arc::new(SharedBreaker::new(
            CircuitBreaker::new(&config.circuit_breaker),
            metrics.clone(),
        ));
        let (tx, rx) = mpsc::channel(depth);
        (
            Pipeline::new(config, breaker, tx, metrics.clone()),
            rx,
            metrics,
        )
    }

    #[test]
    fn each_check_names_its_reason() {
        let mut config = Config::default();
        // One token per 1000 s after a burst of 2: the third offer is limited however slow
        // the machine is.
        config.mirror.rate_limit = 0.001;
        config.mirror.burst = 2;
        let (mut p, _rx, _) = pipeline(&config, 2);
        let mut truncated = exchange("POST", "/p", "a");
        truncated.outcome = Outcome::Truncated;
        assert_eq!(
            p.offer(truncated),
            Admission::Skipped(SkipReason::Truncated)
        );
        let mut gap = exchange("POST", "/p", "a");
        gap.outcome = Outcome::Gap;
        assert_eq!(p.offer(gap), Admission::Incomplete);
        assert_eq!(
            p.offer(exchange("DELETE", "/p", "")),
            Admission::Skipped(SkipReason::Filtered)
        );
        assert_eq!(p.offer(exchange("POST", "/p", "1")), Admission::Queued);
        assert_eq!(p.offer(exchange("POST", "/p", "2")), Admission::Queued);
        assert_eq!(
            p.offer(exchange("POST", "/p", "3")),
            Admission::Skipped(SkipReason::RateLimited)
        );
    }

    #[test]
    fn full_queue_drops_without_waiting() {
        let config = Config::default();
        let (mut p, mut rx, metrics) = pipeline(&config, 3);
        let got: Vec<Admission> = (0..10)
            .map(|i| p.offer(exchange("POST", "/p", &i.to_string())))
            .collect();
        assert_eq!(got.iter().filter(|a| **a == Admission::Queued).count(), 3);
        assert_eq!(
            got.iter()
                .filter(|a| **a == Admission::Skipped(SkipReason::QueueFull))
                .count(),
            7
        );
        assert_eq!(
            rx.try_recv().unwrap().request().body,
            Bytes::from_static(b"0")
        );
        assert!(
            metrics
                .render()
                .contains("shadowtap_mirror_skipped_total{reason=\"queue_full\"} 7")
        );
    }

    #[test]
    fn open_breaker_skips_with_circuit_open() {
        let config = Config::default();
        let (mut p, _rx, metrics) = pipeline(&config, 100);
        for _ in 0..config.circuit_breaker.min_requests {
            p.breaker.record(true, Instant::now());
        }
        assert_eq!(p.breaker.state(), BreakerState::Open);
        assert_eq!(
            p.offer(exchange("POST", "/p", "x")),
            Admission::Skipped(SkipReason::CircuitOpen)
        );
        assert!(metrics.render().contains("shadowtap_circuit_state 1"));
    }

    #[test]
    fn sampled_out_is_counted() {
        let mut config = Config::default();
        config.mirror.sample_percent = 0.0;
        let (mut p, _rx, _) = pipeline(&config, 10);
        assert_eq!(
            p.offer(exchange("POST", "/p", "x")),
            Admission::Skipped(SkipReason::SampledOut)
        );
    }
}
