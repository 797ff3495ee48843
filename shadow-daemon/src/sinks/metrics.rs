//! Prometheus registry (prefix `shadowtap_`), fed by the stages' events: [`Metrics`]
//! implements [`Telemetry`]. The same events feed the per-interval time series
//! ([`TimeSeriesHandle`], `/api/timeseries`).
//!
//! Each event has exactly one method here that both logs it (tracing) and bumps its metric, so
//! that logs and metrics never disagree (vector's style). Metric names are listed in docs/architecture.md.

use crate::resources::{self, Process, ProcessUsage, ResourceHandle};
use crate::sinks::timeseries::TimeSeriesHandle;
use crate::sinks::verdict_metrics::VerdictMetrics;
use crate::telemetry::{
    BreakerCause, BreakerChange, BreakerState, GrpcStatusLabel, ReplayLoad, RollbackDone,
    RollbackFired, RollbackHeld, Telemetry, Warning,
};
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use shadow_core::compare::Comparison;
use shadow_core::http::Protocol;
use shadow_core::noise::NOISE_KINDS;
use shadow_core::vocabulary::{
    AgreementUnit, BreakerOutcome, DecodeFailure, DiscrepancyKind, DropStage, ErrorClass,
    KernelPacketResult, MemoryStage, MirrorResult, Model, OUTCOMES, Outcome, RollbackAction,
    RollbackResult, SkipReason, StreamLoss,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The smallest and largest latency bucket bounds, seconds: model servers on the same host
/// answer in well under a millisecond, remote GPUs in seconds.
const LATENCY_RANGE: (f64, f64) = (50e-6, 30.0);
/// Latency buckets over that range: 60, each bound ≤ 25 % above the previous, so two models'
/// quantiles can be told apart (`histogram_quantile` interpolates inside one).
const LATENCY_STEPS: u32 = 60;

/// Geometric latency bucket bounds (seconds) from 50 µs to 30 s, each within 25 % of the
/// previous one, rounded to 4 significant digits.
fn latency_buckets() -> Vec<f64> {
    let (lo, hi) = LATENCY_RANGE;
    let ratio = (hi / lo).powf(1.0 / f64::from(LATENCY_STEPS));
    (0..=LATENCY_STEPS)
        .map(|i| {
            let v = lo * ratio.powi(i as i32);
            let scale = 10f64.powi(3 - v.log10().floor() as i32);
            (v * scale).round() / scale
        })
        .collect()
}

/// The daemon's metrics. Cheap to clone (shared registry).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    captured_segments: IntCounter,
    capture_dropped: IntCounterVec,
    h2_streams_lost: IntCounterVec,
    kernel_packets: IntCounterVec,
    exchanges: IntCounterVec,
    mirrored: IntCounterVec,
    skipped: IntCounterVec,
    latency: HistogramVec,
    /// `latency{model="production"}`, observed for every exchange seen (looked up once).
    production_latency: Histogram,
    queue_wait: Histogram,
    replays_in_flight: IntGauge,
    replay_queue_length: IntGauge,
    production_in_flight: IntGauge,
    errors: IntCounterVec,
    agreement_ratio: GaugeVec,
    discrepancies: IntCounterVec,
    grpc_status: IntCounterVec,
    baseline_replays: IntCounterVec,
    noise_discrepancies: IntCounterVec,
    shadow_http_errors: IntCounterVec,
    body_decode_failures: IntCounterVec,
    cpu_seconds: prometheus::CounterVec,
    memory_bytes: GaugeVec,
    flows_active: IntGauge,
    reassembly_bytes: IntGauge,
    stage_memory: IntGaugeVec,
    circuit_state: IntGauge,
    tap_attached: IntGauge,
    breaker_outcomes: IntCounterVec,
    discrepancy_log_dropped: IntCounter,
    rollback_firings: IntCounterVec,
    rollback_suppressed: IntCounter,
    /// CPU seconds last reported per process, to turn the running totals into counter
    /// increments.
    last_cpu: Mutex<BTreeMap<Process, f64>>,
    /// The model servers' usage (set once by [`Metrics::watch_resources`]).
    resources: OnceLock<ResourceHandle>,
    /// Quality, label and verdict metrics.
    verdict: Arc<VerdictMetrics>,
    /// The per-interval time series.
    timeseries: TimeSeriesHandle,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("shadowtap")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// A fresh registry with every metric registered (zero-valued series for known labels, so
    /// dashboards and alerts see them before the first event), and a time series of the
    /// default shape.
    pub fn new() -> Self {
        Self::with_timeseries(TimeSeriesHandle::default())
    }

    /// [`Metrics::new`], feeding `timeseries` too.
    pub fn with_timeseries(timeseries: TimeSeriesHandle) -> Self {
        let registry = Registry::new();
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m.expect("metric definition is valid");
                registry
                    .register(Box::new(m.clone()))
                    .expect("metric names are unique");
                m
            }};
        }
        let latency = reg!(HistogramVec::new(
            HistogramOpts::new(
                "latency_seconds",
                "Response latency per model: production from wire timestamps (last request byte to last response byte) for every exchange seen with a whole answer, mirrored or not; the shadow from sending the replay to the last byte of its answer (queue wait excluded)."
            )
            .namespace("shadowtap")
            .buckets(latency_buckets()),
            &["model"]
        ));
        let inner = Inner {
            captured_segments: reg!(IntCounter::with_opts(opts(
                "captured_segments_total",
                "TCP segments delivered by the capture source."
            ))),
            capture_dropped: reg!(IntCounterVec::new(
                opts(
                    "capture_dropped_total",
                    "Segments or exchanges lost before the pipeline, by stage."
                ),
                &["stage"]
            )),
            h2_streams_lost: reg!(IntCounterVec::new(
                opts(
                    "h2_streams_lost_total",
                    "HTTP/2 streams not seen whole, by reason (hpack_unknown: joined mid-way or after a gap; rst_stream; goaway; over_stream_limit; push_promise)."
                ),
                &["reason"]
            )),
            kernel_packets: reg!(IntCounterVec::new(
                opts(
                    "kernel_packets_total",
                    "Packets counted by the eBPF tap in the kernel, by result: matched (a watched port), malformed (headers unreadable, any port), too_long (tail not captured)."
                ),
                &["result"]
            )),
            exchanges: reg!(IntCounterVec::new(
                opts(
                    "exchanges_total",
                    "Exchanges rebuilt (HTTP/1 requests, HTTP/2 streams, gRPC calls), by protocol (http1, h2, grpc) and outcome. Each ends in mirrored_requests_total (by result) or mirror_skipped_total (by reason)."
                ),
                &["protocol", "outcome"]
            )),
            mirrored: reg!(IntCounterVec::new(
                opts(
                    "mirrored_requests_total",
                    "Requests replayed to the shadow, by protocol (http1, h2, grpc; HTTP/2 and gRPC are replayed over h2c) and result (ok = a response came back)."
                ),
                &["protocol", "result"]
            )),
            skipped: reg!(IntCounterVec::new(
                opts(
                    "mirror_skipped_total",
                    "Exchanges not replayed to the shadow, by reason: not replayable (the outcome: gap, truncated, no_response, unparsable), filtered, sampled_out, circuit_open, rate_limited, queue_full, abandoned (queued at shutdown)."
                ),
                &["reason"]
            )),
            production_latency: latency.with_label_values(&[Model::Production.as_str()]),
            latency,
            queue_wait: reg!(Histogram::with_opts(
                HistogramOpts::new(
                    "replay_queue_wait_seconds",
                    "Time replays waited in the replay queue before they were sent (pacing and capacity)."
                )
                .namespace("shadowtap")
                .buckets(latency_buckets())
            )),
            replays_in_flight: reg!(IntGauge::with_opts(opts(
                "replays_in_flight",
                "Replays sent to the shadow and not answered yet."
            ))),
            replay_queue_length: reg!(IntGauge::with_opts(opts(
                "replay_queue_length",
                "Replays waiting in the replay queue (at most mirror.queue)."
            ))),
            production_in_flight: reg!(IntGauge::with_opts(opts(
                "production_in_flight",
                "Production requests in flight when the latest replay started on the wire: its in-flight limit with mirror.pacing = production."
            ))),
            errors: reg!(IntCounterVec::new(
                opts(
                    "errors_total",
                    "Error answers and failures per model and class: production's for every exchange seen with an answer, mirrored or not (4xx, 5xx, grpc_client, grpc_server); the shadow's for every replay (also connect, timeout, protocol)."
                ),
                &["model", "class"]
            )),
            agreement_ratio: reg!(GaugeVec::new(
                opts(
                    "agreement_ratio",
                    "Fraction of compared requests (unit=request) or labelled rows (unit=row) whose predictions agree; absent before the first comparison."
                ),
                &["unit"]
            )),
            discrepancies: reg!(IntCounterVec::new(
                opts(
                    "discrepancies_total",
                    "Compared requests that differ, by protocol (http1, h2, grpc) and kind of difference."
                ),
                &["protocol", "kind"]
            )),
            grpc_status: reg!(IntCounterVec::new(
                opts(
                    "grpc_status_total",
                    "gRPC answers by model and status code (grpc-status from the trailers, or from the headers of a trailers-only answer; MISSING when there is none). Production: every compared gRPC call; shadow: those it answered."
                ),
                &["model", "code"]
            )),
            baseline_replays: reg!(IntCounterVec::new(
                opts(
                    "baseline_replays_total",
                    "Requests replayed to the noise baseline (a second production instance, --baseline), by result (ok = a response came back). Never affects the shadow's comparison or the circuit breaker."
                ),
                &["result"]
            )),
            noise_discrepancies: reg!(IntCounterVec::new(
                opts(
                    "noise_discrepancies_total",
                    "Shadow discrepancies explained by noise, by kind: the comparison differs from production only at paths (and in the label) where production also differs from the noise baseline. Real ones: discrepancies_total minus these."
                ),
                &["kind"]
            )),
            shadow_http_errors: reg!(IntCounterVec::new(
                opts(
                    "shadow_http_errors_total",
                    "Shadow answers with a 4xx or 5xx status, by status code (mostly 404/405: the shadow does not serve the replayed paths; see --shadow-model)."
                ),
                &["status"]
            )),
            body_decode_failures: reg!(IntCounterVec::new(
                opts(
                    "body_decode_failures_total",
                    "Answers whose body could not be decoded for comparison (the comparison then has no verdict), by model and reason: truncated (decoded size over the body cap), corrupt, unsupported (unknown Content-Encoding)."
                ),
                &["model", "reason"]
            )),
            cpu_seconds: reg!(prometheus::CounterVec::new(
                opts(
                    "resource_cpu_seconds_total",
                    "CPU seconds (user + system) used during this run, per process: production and shadow from the first sample of each of their processes, shadowd since it started. Absent for a model server never found."
                ),
                &["process"]
            )),
            memory_bytes: reg!(GaugeVec::new(
                opts(
                    "resource_memory_bytes",
                    "Resident memory at the latest sample, per process (a cgroup's memory.current when one is configured). Absent while a model server is not found."
                ),
                &["process"]
            )),
            flows_active: reg!(IntGauge::with_opts(opts(
                "flows_active",
                "TCP connections tracked by reassembly."
            ))),
            reassembly_bytes: reg!(IntGauge::with_opts(opts(
                "reassembly_bytes",
                "Bytes buffered by reassembly."
            ))),
            tap_attached: reg!(IntGauge::with_opts(opts(
                "tap_attached",
                "1 while the tap is on its interface; 0 after the interface was deleted (nothing is captured until an interface of that name is back and the tap re-attached; /healthz answers 503 meanwhile)."
            ))),
            stage_memory: reg!(IntGaugeVec::new(
                opts(
                    "memory_bytes",
                    "Bytes held in proportion to the traffic, by stage (capture: segments waiting for the HTTP stage, capped at 64 MiB; reassembly: out-of-order bytes, capped by capture.reassembly.max_buffered_bytes; http: the HTTP parsers' buffers, heads and bodies, capped by capture.max_http_buffered_bytes), updated every 500 ms."
                ),
                &["stage"]
            )),
            circuit_state: reg!(IntGauge::with_opts(opts(
                "circuit_state",
                "Shadow circuit breaker: 0 closed (mirroring), 1 open (paused), 2 half-open (probing)."
            ))),
            breaker_outcomes: reg!(IntCounterVec::new(
                opts(
                    "breaker_outcomes_total",
                    "Shadow answers as the circuit breaker counted them, against production's answer to the same request: success, failure (worse than production's: held against the shadow), shared_failure (production failed too: agreement, held neither for nor against it), late (admitted before the breaker last changed state: not counted)."
                ),
                &["counted_as"]
            )),
            discrepancy_log_dropped: reg!(IntCounter::with_opts(opts(
                "discrepancy_log_dropped_total",
                "Discrepancy log lines dropped because the writer fell behind or failed."
            ))),
            rollback_firings: reg!(IntCounterVec::new(
                opts(
                    "rollback_firings_total",
                    "Rollback actions run when a trigger criterion failed (at most one firing per cooldown), by action (command, webhook, dry_run) and result (ok, failed, timeout)."
                ),
                &["action", "result"]
            )),
            rollback_suppressed: reg!(IntCounter::with_opts(opts(
                "rollback_suppressed_total",
                "Verdicts with a failed rollback trigger that did not fire: within the cooldown of the last firing, or while its actions still ran."
            ))),
            last_cpu: Mutex::new(BTreeMap::new()),
            resources: OnceLock::new(),
            verdict: Arc::new(
                VerdictMetrics::new(&registry).expect("verdict metric definitions are valid"),
            ),
            registry,
            timeseries,
        };
        for r in SkipReason::ALL {
            inner.skipped.with_label_values(&[r.as_str()]);
        }
        for o in BreakerOutcome::ALL {
            inner.breaker_outcomes.with_label_values(&[o.as_str()]);
        }
        for r in MirrorResult::ALL {
            for p in Protocol::ALL {
                inner.mirrored.with_label_values(&[p.as_str(), r.as_str()]);
            }
            inner.baseline_replays.with_label_values(&[r.as_str()]);
        }
        for kind in NOISE_KINDS {
            inner
                .noise_discrepancies
                .with_label_values(&[kind.as_str()]);
        }
        for m in [Model::Production, Model::Shadow] {
            inner.latency.with_label_values(&[m.as_str()]);
            for class in ErrorClass::ALL {
                inner
                    .errors
                    .with_label_values(&[m.as_str(), class.as_str()]);
            }
        }
        for status in ["404", "405"] {
            inner.shadow_http_errors.with_label_values(&[status]);
        }
        for m in [Model::Production, Model::Shadow] {
            for reason in DecodeFailure::ALL {
                inner
                    .body_decode_failures
                    .with_label_values(&[m.as_str(), reason.as_str()]);
            }
        }
        for outcome in OUTCOMES {
            for p in Protocol::ALL {
                inner
                    .exchanges
                    .with_label_values(&[p.as_str(), outcome.as_str()]);
            }
        }
        for m in [Model::Production, Model::Shadow] {
            for code in GrpcStatusLabel::all() {
                inner
                    .grpc_status
                    .with_label_values(&[m.as_str(), code.as_str()]);
            }
        }
        for stage in DropStage::ALL {
            inner.capture_dropped.with_label_values(&[stage.as_str()]);
        }
        for stage in MemoryStage::ALL {
            inner.stage_memory.with_label_values(&[stage.as_str()]);
        }
        for reason in StreamLoss::ALL {
            inner.h2_streams_lost.with_label_values(&[reason.as_str()]);
        }
        for result in KernelPacketResult::ALL {
            inner.kernel_packets.with_label_values(&[result.as_str()]);
        }
        for action in RollbackAction::ALL {
            for result in RollbackResult::ALL {
                inner
                    .rollback_firings
                    .with_label_values(&[action.as_str(), result.as_str()]);
            }
        }
        inner.tap_attached.set(1);
        Metrics {
            inner: Arc::new(inner),
        }
    }

    /// Whether the tap is on its interface (see [`Telemetry::tap_attached`]).
    pub fn is_tap_attached(&self) -> bool {
        self.inner.tap_attached.get() != 0
    }

    /// Quality, label and verdict metrics (in the same registry).
    pub fn verdict(&self) -> Arc<VerdictMetrics> {
        self.inner.verdict.clone()
    }

    /// The per-interval time series these events feed.
    pub fn timeseries(&self) -> TimeSeriesHandle {
        self.inner.timeseries.clone()
    }

    /// The registry, for callers that register their own collectors.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Prometheus text exposition of every metric (refreshes the resource gauges first).
    pub fn render(&self) -> String {
        self.refresh_resources();
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.inner.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    fn latency(&self, model: Model, ns: u64) {
        self.inner
            .latency
            .with_label_values(&[model.as_str()])
            .observe(ns as f64 / 1e9);
    }

    fn error(&self, model: Model, class: ErrorClass) {
        tracing::debug!(
            model = model.as_str(),
            class = class.as_str(),
            "model error"
        );
        self.inner
            .errors
            .with_label_values(&[model.as_str(), class.as_str()])
            .inc();
    }

    // ---- process resources ----

    /// Exchanges seen on the wire (every protocol and outcome) and replays finished (every
    /// protocol and result) so far: the requests each model server handled, for CPU per request.
    pub fn requests_handled(&self) -> (u64, u64) {
        let sum = |v: &IntCounterVec| -> u64 {
            use prometheus::core::Collector;
            v.collect()
                .iter()
                .flat_map(|family| family.get_metric())
                .map(|m| m.get_counter().get_value() as u64)
                .sum()
        };
        (sum(&self.inner.exchanges), sum(&self.inner.mirrored))
    }

    /// Exports the model servers' usage from `handle`'s latest sample at each render (without
    /// it, only shadowd's is exported). The first handle given stays.
    pub fn watch_resources(&self, handle: ResourceHandle) {
        let _ = self.inner.resources.set(handle);
    }

    /// shadowd's usage read now, the model servers' from the latest sample.
    fn refresh_resources(&self) {
        let snapshot = self.inner.resources.get().map(ResourceHandle::latest);
        let shadowd = resources::shadowd_usage();
        for process in Process::ALL {
            let usage = match process {
                Process::Shadowd => shadowd.as_ref(),
                model => snapshot.as_ref().and_then(|s| s.get(model)),
            };
            self.report_usage(process, usage);
        }
    }

    /// A process not found has no memory series (absent, not 0); its CPU counter, once it
    /// exists, keeps its total (the run's CPU so far).
    fn report_usage(&self, process: Process, usage: Option<&ProcessUsage>) {
        let label = [process.as_str()];
        let Some(usage) = usage else {
            let _ = self.inner.memory_bytes.remove_label_values(&label);
            return;
        };
        let counter = self.inner.cpu_seconds.with_label_values(&label);
        let mut last = self
            .inner
            .last_cpu
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let reported = last.entry(process).or_insert(0.0);
        if usage.cpu_seconds > *reported {
            counter.inc_by(usage.cpu_seconds - *reported);
            *reported = usage.cpu_seconds;
        }
        self.inner
            .memory_bytes
            .with_label_values(&label)
            .set(usage.rss_bytes as f64);
    }
}

impl Telemetry for Metrics {
    // ---- capture front end (reassembly / http stages) ----

    fn segments_captured(&self, n: u64) {
        self.inner.captured_segments.inc_by(n);
    }

    fn dropped(&self, stage: DropStage, n: u64) {
        tracing::debug!(stage = stage.as_str(), n, "capture dropped");
        self.inner
            .capture_dropped
            .with_label_values(&[stage.as_str()])
            .inc_by(n);
    }

    fn h2_streams_lost(&self, reason: StreamLoss, n: u64) {
        self.inner
            .h2_streams_lost
            .with_label_values(&[reason.as_str()])
            .inc_by(n);
    }

    fn kernel_packets(&self, result: KernelPacketResult, n: u64) {
        if result == KernelPacketResult::Malformed {
            tracing::debug!(n, "eBPF tap: malformed packets");
        }
        self.inner
            .kernel_packets
            .with_label_values(&[result.as_str()])
            .inc_by(n);
    }

    fn tap_attached(&self, attached: bool) {
        self.inner.tap_attached.set(i64::from(attached));
    }

    fn reassembly_load(&self, flows: u64, bytes: u64) {
        self.inner.flows_active.set(flows as i64);
        self.inner.reassembly_bytes.set(bytes as i64);
    }

    fn memory(&self, stage: MemoryStage, bytes: u64) {
        self.inner
            .stage_memory
            .with_label_values(&[stage.as_str()])
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    // ---- admission ----

    fn exchange_seen(&self, protocol: Protocol, outcome: Outcome) {
        tracing::trace!(
            protocol = protocol.as_str(),
            outcome = outcome.as_str(),
            "exchange"
        );
        self.inner
            .exchanges
            .with_label_values(&[protocol.as_str(), outcome.as_str()])
            .inc();
        self.inner.timeseries.seen();
    }

    fn production_answered(&self, latency_ns: Option<u64>, error: Option<ErrorClass>) {
        if let Some(ns) = latency_ns {
            self.inner.production_latency.observe(ns as f64 / 1e9);
        }
        if let Some(class) = error {
            self.error(Model::Production, class);
        }
    }

    fn skipped(&self, reason: SkipReason) {
        tracing::trace!(reason = reason.as_str(), "mirror skipped");
        self.inner
            .skipped
            .with_label_values(&[reason.as_str()])
            .inc();
        self.inner.timeseries.skipped();
    }

    fn breaker_changed(&self, change: &BreakerChange) {
        let state = change.state.as_str();
        match (&change.state, &change.cause) {
            (_, BreakerCause::Start) => tracing::debug!(state, "{change}"),
            (BreakerState::Open, _) => tracing::warn!(state, "{change}"),
            _ => tracing::info!(state, "{change}"),
        }
        self.inner.circuit_state.set(change.state.gauge_value());
    }

    fn breaker_outcome(&self, counted_as: BreakerOutcome) {
        self.inner
            .breaker_outcomes
            .with_label_values(&[counted_as.as_str()])
            .inc();
    }

    fn replay_load(&self, load: ReplayLoad) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.inner.replays_in_flight.set(gauge(load.in_flight));
        self.inner.replay_queue_length.set(gauge(load.queued));
        if let Some(n) = load.production_in_flight {
            self.inner.production_in_flight.set(gauge(n));
        }
    }

    fn queue_waited(&self, wait: Duration) {
        self.inner.queue_wait.observe(wait.as_secs_f64());
    }

    // ---- replay / compare ----

    fn replayed(&self, protocol: Protocol, result: MirrorResult) {
        if result != MirrorResult::Ok {
            tracing::debug!(
                protocol = protocol.as_str(),
                result = result.as_str(),
                "shadow request failed"
            );
        }
        self.inner
            .mirrored
            .with_label_values(&[protocol.as_str(), result.as_str()])
            .inc();
        self.inner.timeseries.mirrored();
    }

    fn shadow_http_error(&self, status: u16) {
        tracing::debug!(status, "shadow answered with an error status");
        self.inner
            .shadow_http_errors
            .with_label_values(&[&status.to_string()])
            .inc();
    }

    /// The shadow's latency (only when it answered) and error class, discrepancies, bodies that
    /// could not be decoded; the time series' agreement, latency and errors.
    fn compared(&self, protocol: Protocol, c: &Comparison) {
        for (model, side) in [
            (Model::Production, &c.production),
            (Model::Shadow, &c.shadow),
        ] {
            if let Some(failure) = side.decode_error {
                tracing::debug!(
                    model = model.as_str(),
                    reason = failure.as_str(),
                    "body not decoded: not compared"
                );
                self.inner
                    .body_decode_failures
                    .with_label_values(&[model.as_str(), failure.as_str()])
                    .inc();
            }
        }
        // Production's latency and errors were counted when the exchange was seen
        // (`production_answered`), mirrored or not.
        if let (Some(ns), true) = (c.shadow.latency_ns, c.shadow_answered()) {
            self.latency(Model::Shadow, ns);
        }
        if let Some(class) = c.shadow.error {
            self.error(Model::Shadow, class);
        }
        for kind in &c.discrepancies {
            tracing::debug!(
                protocol = protocol.as_str(),
                kind = kind.as_str(),
                "discrepancy"
            );
            self.inner
                .discrepancies
                .with_label_values(&[protocol.as_str(), kind.as_str()])
                .inc();
        }
        self.inner.timeseries.compared(c);
    }

    fn grpc_status(&self, model: Model, code: GrpcStatusLabel) {
        tracing::trace!(model = model.as_str(), code = code.as_str(), "gRPC status");
        self.inner
            .grpc_status
            .with_label_values(&[model.as_str(), code.as_str()])
            .inc();
    }

    fn baseline_replayed(&self, result: MirrorResult) {
        if result != MirrorResult::Ok {
            tracing::debug!(result = result.as_str(), "baseline request failed");
        }
        self.inner
            .baseline_replays
            .with_label_values(&[result.as_str()])
            .inc();
    }

    fn noise_discrepancy(&self, kind: DiscrepancyKind) {
        tracing::debug!(kind = kind.as_str(), "discrepancy explained by noise");
        self.inner
            .noise_discrepancies
            .with_label_values(&[kind.as_str()])
            .inc();
    }

    fn agreement(&self, unit: AgreementUnit, ratio: f64) {
        self.inner
            .agreement_ratio
            .with_label_values(&[unit.as_str()])
            .set(ratio);
    }

    fn warning(&self, warning: &Warning) {
        tracing::warn!("{warning}");
    }

    // ---- discrepancy log ----

    fn discrepancy_log_dropped(&self, why: &str) {
        static DROPPED: crate::logging::RateLimited =
            crate::logging::RateLimited::new(Duration::from_secs(60));
        if let Some(suppressed) = DROPPED.allow(why) {
            tracing::warn!(why, suppressed, "discrepancy log line dropped");
        }
        self.inner.discrepancy_log_dropped.inc();
    }

    // ---- rollback ----

    fn rollback_fired(&self, fired: &RollbackFired) {
        tracing::warn!(
            failed = fired.firing.failed_names(),
            decision = fired.firing.decision.as_str(),
            dry_run = fired.dry_run,
            "{fired}"
        );
    }

    fn rollback_action(&self, done: &RollbackDone) {
        let (action, result) = (done.action.as_str(), done.result.as_str());
        match done.result {
            RollbackResult::Ok => {
                tracing::warn!(action, result, "rollback {action} done: {}", done.detail)
            }
            RollbackResult::Failed | RollbackResult::Timeout => tracing::error!(
                action,
                result,
                "rollback {action} {result}: {}",
                done.detail
            ),
        }
        self.inner
            .rollback_firings
            .with_label_values(&[action, result])
            .inc();
    }

    fn rollback_suppressed(&self, held: &RollbackHeld) {
        match held {
            RollbackHeld::Cooldown { remaining } => tracing::debug!(
                "rollback trigger still failing; not fired again for {:?} (cooldown)",
                remaining
            ),
            RollbackHeld::ActionRunning => tracing::debug!(
                "rollback trigger still failing; the last firing's actions are still running"
            ),
        }
        self.inner.rollback_suppressed.inc();
    }
}

/// `shadowtap_config_reload_total{result}`: SIGHUP reloads applied (`ok`) or refused
/// (`rejected`: a bad file, or a key that needs a restart); both series exist from the start.
#[derive(Clone, Debug)]
pub struct ReloadMetric(IntCounterVec);

impl ReloadMetric {
    /// The counter, registered with `metrics`' registry.
    pub fn register(metrics: &Metrics) -> prometheus::Result<ReloadMetric> {
        let counter = IntCounterVec::new(
            opts(
                "config_reload_total",
                "Configuration reloads (SIGHUP), by result: ok (applied, or nothing changed), rejected (the running configuration stays: unreadable or invalid file, or a key that needs a restart).",
            ),
            &["result"],
        )?;
        metrics.registry().register(Box::new(counter.clone()))?;
        for result in ["ok", "rejected"] {
            counter.with_label_values(&[result]);
        }
        Ok(ReloadMetric(counter))
    }

    /// Counts one reload.
    pub fn count(&self, applied: bool) {
        let result = if applied { "ok" } else { "rejected" };
        self.0.with_label_values(&[result]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{BreakerCause, BreakerChange, ReplayLoad};
    use shadow_core::compare::Side;

    #[test]
    fn renders_design_names_with_prefix() {
        let m = Metrics::new();
        let text = m.render();
        for zero in [
            "shadowtap_mirror_skipped_total{reason=\"sampled_out\"} 0",
            "shadowtap_mirrored_requests_total{protocol=\"http1\",result=\"request_error\"} 0",
            "shadowtap_mirrored_requests_total{protocol=\"grpc\",result=\"ok\"} 0",
            "shadowtap_capture_dropped_total{stage=\"exchange_channel\"} 0",
            "shadowtap_capture_dropped_total{stage=\"orphan_response\"} 0",
            "shadowtap_capture_dropped_total{stage=\"ip_fragment\"} 0",
            "shadowtap_exchanges_total{outcome=\"incomplete\",protocol=\"http1\"} 0",
            "shadowtap_exchanges_total{outcome=\"complete\",protocol=\"h2\"} 0",
            "shadowtap_grpc_status_total{code=\"OK\",model=\"production\"} 0",
            "shadowtap_grpc_status_total{code=\"MISSING\",model=\"shadow\"} 0",
            "shadowtap_errors_total{class=\"4xx\",model=\"production\"} 0",
            "shadowtap_circuit_state 0",
            "shadowtap_mirror_skipped_total{reason=\"unparsable\"} 0",
            "shadowtap_mirror_skipped_total{reason=\"abandoned\"} 0",
            "shadowtap_replays_in_flight 0",
            "shadowtap_baseline_replays_total{result=\"timeout\"} 0",
            "shadowtap_noise_discrepancies_total{kind=\"label\"} 0",
        ] {
            assert!(text.contains(zero), "missing {zero} at start in\n{text}");
        }
        // A ratio of nothing is absent, never 0.
        assert!(!text.contains("shadowtap_agreement_ratio{"), "{text}");
        m.skipped(SkipReason::QueueFull);
        m.exchange_seen(Protocol::Http1, Outcome::Complete);
        m.exchange_seen(Protocol::Grpc, Outcome::Complete);
        m.exchange_seen(Protocol::Grpc, Outcome::Complete);
        m.segments_captured(3);
        m.dropped(DropStage::Capture, 1);
        m.reassembly_load(2, 300);
        m.memory(MemoryStage::Http, 4096);
        m.kernel_packets(KernelPacketResult::Malformed, 2);
        m.breaker_changed(&BreakerChange {
            state: BreakerState::HalfOpen,
            cause: BreakerCause::Probing { probes: 3 },
        });
        m.replay_load(ReplayLoad {
            in_flight: 3,
            queued: 7,
            production_in_flight: Some(4),
        });
        m.queue_waited(Duration::from_millis(20));
        m.replayed(Protocol::H2, MirrorResult::Timeout);
        m.grpc_status(
            Model::Shadow,
            GrpcStatusLabel::Code(shadow_core::grpc::GrpcCode::Unavailable),
        );
        // The shadow timed out: its latency is not an answer's and is not observed.
        m.compared(
            Protocol::Grpc,
            &Comparison {
                production: Side {
                    status: Some(200),
                    latency_ns: Some(2_000_000),
                    ..Side::default()
                },
                shadow: Side {
                    error: Some(ErrorClass::Timeout),
                    latency_ns: Some(5_000_000_000),
                    ..Side::default()
                },
                body_equal: None,
                agreement: None,
                diffs: Vec::new(),
                discrepancies: vec![DiscrepancyKind::Label],
            },
        );
        // Production's latency and errors come from every exchange seen, not the comparison.
        let text = m.render();
        assert!(
            text.contains("shadowtap_latency_seconds_count{model=\"production\"} 0"),
            "{text}"
        );
        m.production_answered(Some(2_000_000), None);
        m.production_answered(None, Some(ErrorClass::ServerError));
        m.agreement(AgreementUnit::Row, 0.5);
        m.discrepancy_log_dropped("test");
        m.baseline_replayed(MirrorResult::Ok);
        m.baseline_replayed(MirrorResult::Ok);
        m.baseline_replayed(MirrorResult::ConnectError);
        m.noise_discrepancy(DiscrepancyKind::Body);
        let text = m.render();
        for needle in [
            "shadowtap_mirror_skipped_total{reason=\"queue_full\"} 1",
            "shadowtap_mirror_skipped_total{reason=\"sampled_out\"} 0",
            "shadowtap_exchanges_total{outcome=\"complete\",protocol=\"http1\"} 1",
            "shadowtap_exchanges_total{outcome=\"complete\",protocol=\"grpc\"} 2",
            "shadowtap_exchanges_total{outcome=\"complete\",protocol=\"h2\"} 0",
            "shadowtap_grpc_status_total{code=\"UNAVAILABLE\",model=\"shadow\"} 1",
            "shadowtap_grpc_status_total{code=\"UNAVAILABLE\",model=\"production\"} 0",
            "shadowtap_errors_total{class=\"timeout\",model=\"shadow\"} 1",
            "shadowtap_discrepancies_total{kind=\"label\",protocol=\"grpc\"} 1",
            "shadowtap_captured_segments_total 3",
            "shadowtap_capture_dropped_total{stage=\"capture\"} 1",
            "shadowtap_flows_active 2",
            "shadowtap_reassembly_bytes 300",
            "shadowtap_memory_bytes{stage=\"http\"} 4096",
            "shadowtap_memory_bytes{stage=\"reassembly\"} 0",
            "shadowtap_capture_dropped_total{stage=\"http_memory\"} 0",
            "shadowtap_circuit_state 2",
            "shadowtap_mirrored_requests_total{protocol=\"h2\",result=\"timeout\"} 1",
            "shadowtap_mirrored_requests_total{protocol=\"http1\",result=\"timeout\"} 0",
            "shadowtap_latency_seconds_count{model=\"production\"} 1",
            "shadowtap_errors_total{class=\"5xx\",model=\"production\"} 1",
            "shadowtap_errors_total{class=\"timeout\",model=\"production\"} 0",
            "shadowtap_latency_seconds_sum{model=\"production\"} 0.002",
            "shadowtap_latency_seconds_count{model=\"shadow\"} 0",
            "shadowtap_agreement_ratio{unit=\"row\"} 0.5",
            "shadowtap_replays_in_flight 3",
            "shadowtap_replay_queue_length 7",
            "shadowtap_production_in_flight 4",
            "shadowtap_replay_queue_wait_seconds_count 1",
            "shadowtap_discrepancy_log_dropped_total 1",
            "shadowtap_kernel_packets_total{result=\"malformed\"} 2",
            "shadowtap_kernel_packets_total{result=\"matched\"} 0",
            "shadowtap_resource_memory_bytes{process=\"shadowd\"}",
            "shadowtap_latency_seconds_bucket{model=\"shadow\"",
            "shadowtap_baseline_replays_total{result=\"ok\"} 2",
            "shadowtap_baseline_replays_total{result=\"connect_error\"} 1",
            "shadowtap_noise_discrepancies_total{kind=\"body\"} 1",
            "shadowtap_noise_discrepancies_total{kind=\"prediction\"} 0",
            "shadowtap_mirrored_requests_total{protocol=\"h2\",result=\"ok\"} 0",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert!(!text.contains("unit=\"request\""), "only the reported unit");
        assert_eq!(m.requests_handled(), (3, 1), "summed over protocols");
    }

    #[test]
    fn model_server_resources_are_exported_while_found_and_absent_otherwise() {
        use crate::resources::ResourceSnapshot;
        let m = Metrics::new();
        let text = m.render();
        assert!(
            text.contains("shadowtap_resource_cpu_seconds_total{process=\"shadowd\"}"),
            "{text}"
        );
        assert!(!text.contains("process=\"production\""), "{text}");
        let handle = ResourceHandle::default();
        m.watch_resources(handle.clone());
        let usage = |cpu_seconds: f64, rss_bytes: u64| ProcessUsage {
            pids: vec![42],
            cgroup: None,
            cpu_seconds,
            rss_bytes,
        };
        let snapshot = |production: Option<ProcessUsage>| ResourceSnapshot {
            elapsed_seconds: 1.0,
            production,
            shadow: None,
            shadowd: usage(0.0, 1),
        };
        handle.publish(snapshot(Some(usage(2.5, 1000))));
        let text = m.render();
        for needle in [
            "shadowtap_resource_cpu_seconds_total{process=\"production\"} 2.5",
            "shadowtap_resource_memory_bytes{process=\"production\"} 1000",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert!(
            !text.contains("process=\"shadow\""),
            "never found: absent\n{text}"
        );
        handle.publish(snapshot(Some(usage(4.0, 2000))));
        let text = m.render();
        for needle in [
            "shadowtap_resource_cpu_seconds_total{process=\"production\"} 4",
            "shadowtap_resource_memory_bytes{process=\"production\"} 2000",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        // Production is gone: no memory series; the CPU it used this run stays counted.
        handle.publish(snapshot(None));
        let text = m.render();
        assert!(
            text.contains("shadowtap_resource_cpu_seconds_total{process=\"production\"} 4"),
            "{text}"
        );
        assert!(
            !text.contains("shadowtap_resource_memory_bytes{process=\"production\"}"),
            "{text}"
        );
    }

    #[test]
    fn latency_buckets_are_at_most_25_percent_apart_from_50us_to_30s() {
        let b = latency_buckets();
        assert_eq!((b[0], b[b.len() - 1]), (50e-6, 30.0));
        for w in b.windows(2) {
            assert!(w[1] > w[0] && w[1] / w[0] <= 1.25, "{} -> {}", w[0], w[1]);
        }
        assert_eq!(b.len(), 61);
    }

    #[test]
    fn shadow_error_statuses_and_undecoded_bodies_are_counted() {
        let m = Metrics::new();
        let text = m.render();
        for zero in [
            "shadowtap_shadow_http_errors_total{status=\"404\"} 0",
            "shadowtap_body_decode_failures_total{model=\"shadow\",reason=\"truncated\"} 0",
        ] {
            assert!(text.contains(zero), "missing {zero} at start in\n{text}");
        }
        m.shadow_http_error(404);
        m.shadow_http_error(404);
        m.shadow_http_error(503);
        m.compared(
            Protocol::Http1,
            &Comparison {
                production: Side {
                    status: Some(200),
                    decode_error: Some(DecodeFailure::Truncated),
                    ..Side::default()
                },
                shadow: Side {
                    status: Some(200),
                    decode_error: Some(DecodeFailure::Corrupt),
                    ..Side::default()
                },
                body_equal: None,
                agreement: None,
                diffs: Vec::new(),
                discrepancies: Vec::new(),
            },
        );
        let text = m.render();
        for needle in [
            "shadowtap_shadow_http_errors_total{status=\"404\"} 2",
            "shadowtap_shadow_http_errors_total{status=\"503\"} 1",
            "shadowtap_shadow_http_errors_total{status=\"405\"} 0",
            "shadowtap_body_decode_failures_total{model=\"production\",reason=\"truncated\"} 1",
            "shadowtap_body_decode_failures_total{model=\"shadow\",reason=\"corrupt\"} 1",
            "shadowtap_body_decode_failures_total{model=\"shadow\",reason=\"truncated\"} 0",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
