//! Admission: decides which exchanges are replayed and queues them, as [`Job`]s, for the
//! replay workers of [`crate::mirror`]. It never waits on anything the capture side waits on:
//! the [`queue`] is pushed to without waiting, and a full queue means drop and count
//! ([`SkipReason::QueueFull`]).
//!
//! Checks, in order (the first that fails names the skip reason):
//! outcome (not `complete`: the outcome, e.g. `gap`, `truncated`) → [`filter`] (`filtered`) →
//! [`sampling`] (`sampled_out`) → [`circuit_breaker`] (`circuit_open`) → [`token_bucket`]
//! (`rate_limited`) → [`queue`] (`queue_full`). Every exchange is reported through
//! [`Telemetry`] as seen and then either skipped (here, or abandoned in the queue at shutdown)
//! or replayed (by the mirror): nothing goes unaccounted.
//!
//! Every exchange, replayed or not, is also shown to the queue: with production pacing its
//! wire timings say how many requests production had in flight, which bounds the replays.
//! And production's answer to every exchange is reported ([`Telemetry::production_answered`]:
//! wire latency and error class) before any check, so production's latency and error series
//! cover all its traffic, whatever sampling, filters or the breaker let through.

pub mod circuit_breaker;
pub mod filter;
pub mod queue;
pub mod sampling;
pub mod token_bucket;

use crate::config::{Config, RateLimit};
use crate::telemetry::Telemetry;
use circuit_breaker::{Permit, SharedBreaker};
use filter::RequestFilter;
use queue::SharedQueue;
use sampling::Sampler;
use shadow_core::grpc::{GrpcStatus, is_grpc};
use shadow_core::http::{Exchange, ExchangeTiming, HttpRequest, HttpResponse, Outcome};
use shadow_core::segment::FlowKey;
use shadow_core::vocabulary::{ErrorClass, SkipReason};
use std::sync::Arc;
use std::time::Instant;
use token_bucket::TokenBucket;

/// One exchange to replay: a complete one, so the request and the production response are
/// both there. Built from an [`Exchange`] with `Job::try_from`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub flow: FlowKey,
    /// HTTP/1.x, an HTTP/2 stream or a gRPC call: how it is replayed and labelled.
    pub protocol: shadow_core::http::Protocol,
    pub request: HttpRequest,
    pub prod_response: HttpResponse,
    pub timing: ExchangeTiming,
    /// The circuit breaker's permit, handed back with the replay's outcome (the default one,
    /// before admission, counts for nothing).
    pub permit: Permit,
}

/// Why an exchange cannot become a [`Job`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotReplayable {
    /// The exchange was not seen whole: only `complete` exchanges are replayed.
    #[error("the exchange is `{}`, not complete: only complete exchanges are replayed", .0.as_str())]
    Outcome(Outcome),
    /// The exchange says `complete` but lacks a part (a bug in the HTTP stage).
    #[error("the exchange is marked complete but has no {0}")]
    Missing(&'static str),
}

impl TryFrom<Exchange> for Job {
    type Error = NotReplayable;

    fn try_from(exchange: Exchange) -> Result<Job, NotReplayable> {
        let Exchange {
            flow,
            protocol,
            request,
            prod_response,
            timing,
            outcome,
        } = exchange;
        if outcome != Outcome::Complete {
            return Err(NotReplayable::Outcome(outcome));
        }
        Ok(Job {
            flow,
            protocol,
            request: request.ok_or(NotReplayable::Missing("request"))?,
            prod_response: prod_response.ok_or(NotReplayable::Missing("production response"))?,
            timing,
            permit: Permit::default(),
        })
    }
}

impl NotReplayable {
    /// The skip reason it is counted under: its outcome; a `complete` exchange lacking a part
    /// is counted as the outcome that describes what is missing.
    pub fn skip_reason(self) -> SkipReason {
        SkipReason::NotReplayable(match self {
            NotReplayable::Outcome(outcome) => outcome,
            NotReplayable::Missing("request") => Outcome::Unparsable,
            NotReplayable::Missing(_) => Outcome::NoResponse,
        })
    }
}

/// What admission did with an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Queued for replay.
    Queued,
    /// Not replayed, for this reason.
    Skipped(SkipReason),
}

/// What admission did, counted (the same counts go to [`Telemetry`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AdmissionStats {
    /// Exchanges received.
    pub exchanges: u64,
    /// Exchanges queued for replay.
    pub queued: u64,
    /// Skipped, by reason (not-replayable outcomes included).
    pub skipped: std::collections::BTreeMap<&'static str, u64>,
}

/// The admission stage: synchronous, never blocks.
pub struct Admitter {
    stats: AdmissionStats,
    filter: RequestFilter,
    sampler: Sampler,
    bucket: Option<TokenBucket>,
    /// The rate the bucket was made for.
    rate: Option<RateLimit>,
    breaker: Arc<SharedBreaker>,
    queue: Arc<SharedQueue>,
    telemetry: Arc<dyn Telemetry>,
}

impl Admitter {
    /// Admission feeding `queue`.
    pub fn new(
        config: &Config,
        breaker: Arc<SharedBreaker>,
        queue: Arc<SharedQueue>,
        telemetry: Arc<dyn Telemetry>,
    ) -> Self {
        let m = &config.mirror;
        Admitter {
            stats: AdmissionStats::default(),
            filter: RequestFilter::new(m),
            sampler: Sampler::new(m.sample_percent, m.sample_seed),
            bucket: m
                .rate_limit
                .map(|r| TokenBucket::new(r.per_second, r.burst, Instant::now())),
            rate: m.rate_limit,
            breaker,
            queue,
            telemetry,
        }
    }

    /// Applies a reloaded `[mirror]`: filters, sampling and the rate limit (a changed rate
    /// starts a fresh bucket). Counts, the breaker and the queue carry on.
    pub fn reconfigure(&mut self, config: &Config) {
        let m = &config.mirror;
        self.filter = RequestFilter::new(m);
        self.sampler = Sampler::new(m.sample_percent, m.sample_seed);
        if self.rate != m.rate_limit {
            self.rate = m.rate_limit;
            self.bucket = m
                .rate_limit
                .map(|r| TokenBucket::new(r.per_second, r.burst, Instant::now()));
        }
    }

    /// Counts the exchange and queues it for replay if every check passes.
    pub fn offer(&mut self, exchange: Exchange) -> Admission {
        self.telemetry
            .exchange_seen(exchange.protocol, exchange.outcome);
        if let Some(response) = &exchange.prod_response {
            self.telemetry
                .production_answered(exchange.timing.latency_ns(), production_error(response));
        }
        let now = Instant::now();
        self.queue.lock().observe(&exchange.timing, now);
        let admission = self.admit(exchange, now);
        self.stats.exchanges += 1;
        match admission {
            Admission::Queued => self.stats.queued += 1,
            Admission::Skipped(reason) => {
                self.telemetry.skipped(reason);
                *self.stats.skipped.entry(reason.as_str()).or_default() += 1;
            }
        }
        // A new job, or production's load changed: the dispatcher decides again.
        self.queue.notify();
        admission
    }

    /// What was admitted so far.
    pub fn stats(&self) -> &AdmissionStats {
        &self.stats
    }

    /// No more exchanges: closes the queue (the jobs in it still leave) and wakes the
    /// dispatcher.
    pub fn close(&self) {
        self.queue.lock().close();
        self.queue.notify();
    }

    fn admit(&mut self, exchange: Exchange, now: Instant) -> Admission {
        let mut job = match Job::try_from(exchange) {
            Ok(job) => job,
            Err(why) => return Admission::Skipped(why.skip_reason()),
        };
        let req = &job.request;
        if !self.filter.allows(&req.method, &req.target) {
            return Admission::Skipped(SkipReason::Filtered);
        }
        if !self.sampler.sampled(&req.method, &req.target, &req.body) {
            return Admission::Skipped(SkipReason::SampledOut);
        }
        let Some(permit) = self.breaker.admit(now) else {
            return Admission::Skipped(SkipReason::CircuitOpen);
        };
        if let Some(bucket) = &mut self.bucket
            && !bucket.try_take(now)
        {
            self.breaker.cancel(permit);
            return Admission::Skipped(SkipReason::RateLimited);
        }
        job.permit = permit;
        let pushed = self.queue.lock().push(job, now);
        match pushed {
            Ok(()) => Admission::Queued,
            // (Closed only after admission stops offering, so in practice: full.)
            Err(queue::Refused::Full | queue::Refused::Closed) => {
                self.breaker.cancel(permit);
                Admission::Skipped(SkipReason::QueueFull)
            }
        }
    }
}

/// How production's answer failed, classed as the comparison classes it: a 4xx/5xx status or,
/// for a gRPC answer, a non-OK `grpc-status`; `None` for a success.
fn production_error(response: &HttpResponse) -> Option<ErrorClass> {
    ErrorClass::of_status(response.status).or_else(|| {
        is_grpc(&response.headers)
            .then(|| {
                GrpcStatus::of_response(response.status, &response.headers, &response.trailers)
            })
            .and_then(|s| ErrorClass::of_grpc(s.kind()))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::test_config;
    use crate::telemetry::{BreakerCause, BreakerChange, BreakerState, Event, Recorder};
    use bytes::Bytes;
    use circuit_breaker::{CircuitBreaker, Judgement};
    use shadow_core::http::{Header, Protocol};
    use shadow_core::vocabulary::ShadowFailure;

    /// A complete exchange for tests.
    pub(crate) fn exchange(method: &str, target: &str, body: &str) -> Exchange {
        Exchange {
            protocol: shadow_core::http::Protocol::Http1,
            flow: FlowKey {
                client: "127.0.0.1:40000".parse().unwrap(),
                server: "127.0.0.1:8080".parse().unwrap(),
            },
            request: Some(HttpRequest {
                trailers: Vec::new(),
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
                trailers: Vec::new(),
                status: 200,
                version: 1,
                headers: Vec::new(),
                body: Bytes::from_static(b"{}"),
            }),
            timing: ExchangeTiming::default(),
            outcome: Outcome::Complete,
        }
    }

    /// A job for tests.
    pub(crate) fn job(method: &str, target: &str, body: &str) -> Job {
        Job::try_from(exchange(method, target, body)).unwrap()
    }

    fn admitter(config: &Config, depth: usize) -> (Admitter, Arc<SharedQueue>, Arc<Recorder>) {
        let recorder = Arc::new(Recorder::new());
        let breaker = Arc::new(SharedBreaker::new(
            CircuitBreaker::new(&config.circuit_breaker),
            recorder.clone(),
        ));
        let queue = Arc::new(SharedQueue::new(queue::ReplayQueue::new(
            config.mirror.pacing,
            depth,
            config.shadow.concurrency.get(),
            Instant::now(),
        )));
        (
            Admitter::new(config, breaker, queue.clone(), recorder.clone()),
            queue,
            recorder,
        )
    }

    #[test]
    fn only_complete_exchanges_become_jobs() {
        let ex = exchange("POST", "/p", "a");
        let job = Job::try_from(ex.clone()).unwrap();
        assert_eq!(Some(&job.request), ex.request.as_ref());
        assert_eq!(Some(&job.prod_response), ex.prod_response.as_ref());
        assert_eq!((job.flow, job.timing), (ex.flow, ex.timing));
        for outcome in shadow_core::vocabulary::OUTCOMES {
            if outcome == Outcome::Complete {
                continue;
            }
            let mut ex = exchange("POST", "/p", "a");
            ex.outcome = outcome;
            let err = Job::try_from(ex).unwrap_err();
            assert_eq!(err, NotReplayable::Outcome(outcome));
            assert!(err.to_string().contains(outcome.as_str()), "{err}");
            assert_eq!(err.skip_reason(), SkipReason::NotReplayable(outcome));
        }
        let mut no_response = exchange("POST", "/p", "a");
        no_response.prod_response = None;
        let err = Job::try_from(no_response).unwrap_err();
        assert_eq!(err, NotReplayable::Missing("production response"));
        assert_eq!(
            err.skip_reason(),
            SkipReason::NotReplayable(Outcome::NoResponse)
        );
        let mut no_request = exchange("POST", "/p", "a");
        no_request.request = None;
        let err = Job::try_from(no_request).unwrap_err();
        assert_eq!(err, NotReplayable::Missing("request"));
        assert_eq!(
            err.skip_reason(),
            SkipReason::NotReplayable(Outcome::Unparsable)
        );
    }

    #[test]
    fn each_check_names_its_reason() {
        // One token per 1000 s after a burst of 2: the third offer is limited however slow
        // the machine is.
        let config = test_config("[mirror]\nrate_limit = 0.001\nburst = 2\n");
        let (mut p, _queue, events) = admitter(&config, 2);
        let truncated = SkipReason::NotReplayable(Outcome::Truncated);
        let gap = SkipReason::NotReplayable(Outcome::Gap);
        let no_response = SkipReason::NotReplayable(Outcome::NoResponse);
        let mut ex = exchange("POST", "/p", "a");
        ex.outcome = Outcome::Truncated;
        assert_eq!(p.offer(ex), Admission::Skipped(truncated));
        let mut ex = exchange("POST", "/p", "a");
        ex.outcome = Outcome::Gap;
        assert_eq!(p.offer(ex), Admission::Skipped(gap));
        let mut half = exchange("POST", "/p", "a");
        half.prod_response = None;
        assert_eq!(p.offer(half), Admission::Skipped(no_response));
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
        use Event::*;
        // The test exchanges' answers: 200, no wire timestamps.
        let ok = ProductionAnswered {
            latency_ns: None,
            error: None,
        };
        assert_eq!(
            events.events(),
            vec![
                BreakerChanged(BreakerChange {
                    state: BreakerState::Closed,
                    cause: BreakerCause::Start
                }),
                ExchangeSeen(Protocol::Http1, Outcome::Truncated),
                ok.clone(),
                Skipped(truncated),
                ExchangeSeen(Protocol::Http1, Outcome::Gap),
                ok.clone(),
                Skipped(gap),
                // No answer: nothing to say about production's.
                ExchangeSeen(Protocol::Http1, Outcome::Complete),
                Skipped(no_response),
                ExchangeSeen(Protocol::Http1, Outcome::Complete),
                ok.clone(),
                Skipped(SkipReason::Filtered),
                ExchangeSeen(Protocol::Http1, Outcome::Complete),
                ok.clone(),
                ExchangeSeen(Protocol::Http1, Outcome::Complete),
                ok.clone(),
                ExchangeSeen(Protocol::Http1, Outcome::Complete),
                ok,
                Skipped(SkipReason::RateLimited),
            ]
        );
        let stats = p.stats();
        assert_eq!((stats.exchanges, stats.queued), (7, 2));
        assert_eq!(stats.skipped["rate_limited"], 1);
        assert_eq!(stats.skipped["gap"], 1);
        assert_eq!(
            stats.skipped.values().sum::<u64>(),
            5,
            "every exchange accounted for"
        );
    }

    #[test]
    fn production_answers_are_reported_whatever_admission_decides() {
        // Nothing is sampled: every exchange is skipped, and production is still measured.
        let config = test_config("[mirror]\nsample_percent = 0.0\n");
        let (mut p, _queue, events) = admitter(&config, 2);
        let timed = |mut ex: Exchange, status: u16| {
            ex.timing = ExchangeTiming {
                request_first_byte: 1_000,
                request_last_byte: 2_000,
                response_first_byte: Some(5_000),
                response_last_byte: Some(7_000),
            };
            if let Some(r) = ex.prod_response.as_mut() {
                r.status = status;
            }
            ex
        };
        let sampled_out = SkipReason::SampledOut;
        assert_eq!(
            p.offer(timed(exchange("POST", "/p", "1"), 503)),
            Admission::Skipped(sampled_out)
        );
        assert_eq!(
            p.offer(timed(exchange("DELETE", "/p", ""), 404)),
            Admission::Skipped(SkipReason::Filtered)
        );
        // A gRPC call answered UNAVAILABLE (HTTP 200, grpc-status 14 in the trailers).
        let mut grpc = timed(exchange("POST", "/pkg.Svc/Call", ""), 200);
        grpc.protocol = Protocol::Grpc;
        if let Some(r) = grpc.prod_response.as_mut() {
            r.headers.push(Header {
                name: "content-type".into(),
                value: Bytes::from_static(b"application/grpc"),
            });
            r.trailers.push(Header {
                name: "grpc-status".into(),
                value: Bytes::from_static(b"14"),
            });
        }
        assert_eq!(p.offer(grpc), Admission::Skipped(sampled_out));
        // An answer seen without its end: its status counts, it has no latency.
        let mut cut = timed(exchange("POST", "/p", "2"), 200);
        cut.timing.response_last_byte = None;
        cut.outcome = Outcome::Truncated;
        p.offer(cut);
        let answered: Vec<Event> = events
            .events()
            .into_iter()
            .filter(|e| matches!(e, Event::ProductionAnswered { .. }))
            .collect();
        let answer = |latency_ns, error| Event::ProductionAnswered { latency_ns, error };
        assert_eq!(
            answered,
            vec![
                answer(Some(5_000), Some(ErrorClass::ServerError)),
                answer(Some(5_000), Some(ErrorClass::ClientError)),
                answer(Some(5_000), Some(ErrorClass::GrpcServerError)),
                answer(None, None),
            ]
        );
    }

    #[test]
    fn full_queue_drops_without_waiting() {
        let config = test_config("");
        let (mut p, queue, events) = admitter(&config, 3);
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
        let first = match queue.lock().next(Instant::now(), 0) {
            queue::Next::Release(r) => r.job,
            other => panic!("{other:?}"),
        };
        assert_eq!(first.request.body, Bytes::from_static(b"0"));
        assert_eq!(events.count(&Event::Skipped(SkipReason::QueueFull)), 7);
        assert_eq!(
            events.count(&Event::ExchangeSeen(Protocol::Http1, Outcome::Complete)),
            10
        );
    }

    #[test]
    fn open_breaker_skips_with_circuit_open() {
        let config = test_config("[mirror]\npacing = \"asap\"\n");
        let (mut p, queue, events) = admitter(&config, 100);
        let n = config.circuit_breaker.min_requests.get();
        for i in 0..n {
            let body = i.to_string();
            assert_eq!(p.offer(exchange("POST", "/p", &body)), Admission::Queued);
        }
        // Each queued job carries its permit to the replay, which hands back the outcome.
        let now = Instant::now();
        for _ in 0..n {
            let queue::Next::Release(released) = queue.lock().next(now, 0) else {
                panic!("a job is due");
            };
            let connect_error = Judgement::Failure(ShadowFailure::Connect);
            p.breaker
                .start(released.job.permit, None, now)
                .finish(connect_error, now);
        }
        assert_eq!(p.breaker.state(), BreakerState::Open);
        assert_eq!(
            p.offer(exchange("POST", "/p", "x")),
            Admission::Skipped(SkipReason::CircuitOpen)
        );
        assert_eq!(
            events.breaker_states(),
            vec![BreakerState::Closed, BreakerState::Open],
            "{:?}",
            events.events()
        );
        assert_eq!(events.count(&Event::Skipped(SkipReason::CircuitOpen)), 1);
    }

    #[test]
    fn sampled_out_is_counted() {
        let config = test_config("[mirror]\nsample_percent = 0.0\n");
        let (mut p, _queue, events) = admitter(&config, 10);
        assert_eq!(
            p.offer(exchange("POST", "/p", "x")),
            Admission::Skipped(SkipReason::SampledOut)
        );
        assert_eq!(events.count(&Event::Skipped(SkipReason::SampledOut)), 1);
    }

    /// A gRPC call for tests: `POST /package.Service/Method`, carried as gRPC.
    fn grpc_call(path: &str) -> Exchange {
        let mut ex = exchange("POST", path, "\0\0\0\0\0");
        ex.protocol = Protocol::Grpc;
        ex
    }

    #[test]
    fn grpc_calls_are_filtered_by_their_service_and_method_path() {
        // A gRPC call's path is `/package.Service/Method`: a `mirror.paths` prefix picks one
        // method, or a whole service.
        let one_method =
            test_config("[mirror]\npaths = [\"/inference.GRPCInferenceService/ModelInfer\"]\n");
        let (mut p, _queue, events) = admitter(&one_method, 8);
        assert_eq!(
            p.offer(grpc_call("/inference.GRPCInferenceService/ModelInfer")),
            Admission::Queued
        );
        for other in [
            "/inference.GRPCInferenceService/ModelMetadata",
            "/inference.GRPCInferenceService/ServerLive",
            "/tensorflow.serving.PredictionService/Predict",
        ] {
            assert_eq!(
                p.offer(grpc_call(other)),
                Admission::Skipped(SkipReason::Filtered),
                "{other}"
            );
        }
        assert_eq!(
            events.count(&Event::ExchangeSeen(Protocol::Grpc, Outcome::Complete)),
            4
        );
        assert_eq!(events.count(&Event::Skipped(SkipReason::Filtered)), 3);

        let service_but_health = test_config(
            "[mirror]\npaths = [\"/inference.GRPCInferenceService/\"]\n\
             deny_paths = [\"/inference.GRPCInferenceService/ServerLive\"]\n",
        );
        let (mut p, _queue, _events) = admitter(&service_but_health, 8);
        let admitted: Vec<bool> = [
            "/inference.GRPCInferenceService/ModelInfer",
            "/inference.GRPCInferenceService/ModelMetadata",
            "/inference.GRPCInferenceService/ServerLive",
            "/grpc.health.v1.Health/Check",
        ]
        .iter()
        .map(|path| p.offer(grpc_call(path)) == Admission::Queued)
        .collect();
        assert_eq!(admitted, vec![true, true, false, false]);

        // Paths are prefixes, not regexes: an anchored pattern is refused with what to write.
        let text = "[capture]\nports = [8080]\n[shadow]\nurl = \"http://127.0.0.1:8081\"\n\
                    [mirror]\npaths = [\"^/inference.GRPCInferenceService/ModelInfer$\"]\n";
        let err = Config::from_toml(text, std::path::Path::new("test.toml")).unwrap_err();
        assert!(err.to_string().contains("must start with `/`"), "{err}");
    }
}
