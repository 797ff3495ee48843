//! Admin HTTP server (hyper 1): `GET /metrics` (Prometheus text), `GET /healthz`,
//! `GET /api/summary` (JSON of the running aggregates: agreement per request and per row,
//! latency quantiles of both models and of the queue wait, quality against ground truth, per
//! segment, the breaker's state, the replay stage's load, `noise` (the noise baseline's
//! summary, `null` without a baseline), and the latest verdict with the measurements it
//! judged; a value without samples is `null`), `GET /api/verdict` (the verdict alone) and
//! `POST /api/labels` (ground truth as JSON lines `{"id": .., "label": ..}` or
//! `{"id": .., "value": ..}`; answers what became of each line).
//! `/api/summary` also has `resources`, the latest
//! [`ResourceSnapshot`](crate::resources::ResourceSnapshot) of the model servers and shadowd.

use crate::mirror::MirrorStatus;
use crate::resources::ResourceHandle;
use crate::shutdown::Shutdown;
use crate::sinks::metrics::Metrics;
use crate::sinks::verdict_metrics::VerdictMetrics;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use shadow_core::criteria::{Measurements, Verdict};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// Largest `POST /api/labels` body accepted.
pub const MAX_LABELS_BODY: usize = 16 << 20;

/// The latest verdict and the measurements it judged, written by the decision loop.
#[derive(Debug, Default)]
pub struct LatestVerdict {
    inner: Mutex<Option<(Verdict, Measurements)>>,
}

impl LatestVerdict {
    /// Replaces the latest verdict.
    pub fn set(&self, verdict: Verdict, measurements: Measurements) {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = Some((verdict, measurements));
    }

    /// The latest verdict, if one was reached yet.
    pub fn get(&self) -> Option<(Verdict, Measurements)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the admin endpoints read.
#[derive(Clone, Debug)]
pub struct AdminState {
    pub metrics: Metrics,
    /// Quality, label and verdict metrics.
    pub verdict_metrics: Arc<VerdictMetrics>,
    /// The running mirror's aggregates and breaker; labels are handed to it.
    pub mirror: MirrorStatus,
    /// Whether traffic is being captured: `/healthz` answers 503 until it is.
    pub capturing: Arc<AtomicBool>,
    /// The latest verdict.
    pub verdict: Arc<LatestVerdict>,
    /// CPU and memory of the model servers and shadowd (`/api/summary` `resources`: `null`
    /// without a monitor).
    pub resources: Option<ResourceHandle>,
}

impl AdminState {
    /// The admin view of `metrics` and a mirror, reporting healthy (capturing) until told
    /// otherwise through [`AdminState::capturing`].
    pub fn new(metrics: Metrics, mirror: MirrorStatus) -> Self {
        AdminState {
            verdict_metrics: metrics.verdict(),
            metrics,
            mirror,
            capturing: Arc::new(AtomicBool::new(true)),
            verdict: Arc::new(LatestVerdict::default()),
            resources: None,
        }
    }

    /// Reports the resource monitor's latest sample in `/api/summary`.
    pub fn with_resources(mut self, resources: ResourceHandle) -> Self {
        self.resources = Some(resources);
        self
    }
}

/// Binds the admin address (errors say which address).
pub async fn bind_admin(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("admin server cannot listen on {addr}: {e}"),
        )
    })
}

/// Serves the admin endpoints on `listener` until shutdown.
pub async fn serve_admin(listener: TcpListener, state: AdminState, mut shutdown: Shutdown) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.requested() => break,
            a = listener.accept() => a,
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("admin server accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!("admin connection: {e}");
                },
                _ = conn_shutdown.requested() => {}
            }
        });
    }
}

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("static response parts are valid")
}

async fn route(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() == "/api/labels" {
        return post_labels(state, req).await;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        );
    }
    match req.uri().path() {
        "/metrics" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            state.metrics.render(),
        ),
        "/healthz" if state.capturing.load(Ordering::Relaxed) => {
            respond(StatusCode::OK, "text/plain", "ok\n")
        }
        "/healthz" => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "starting: the tap is not attached yet\n",
        ),
        "/api/summary" => {
            let summary = state.mirror.evaluation();
            let mut v = serde_json::to_value(&summary).unwrap_or_default();
            if let Some(obj) = v.as_object_mut() {
                obj.insert(
                    "circuit_state".into(),
                    state.mirror.breaker().as_str().into(),
                );
                obj.insert(
                    "replay".into(),
                    serde_json::to_value(state.mirror.replay()).unwrap_or_default(),
                );
                obj.insert(
                    "noise".into(),
                    serde_json::to_value(state.mirror.noise()).unwrap_or_default(),
                );
                // Measured now (a verdict judged a moment ago may predate the latest labels);
                // the resource usage is the decision loop's.
                let (verdict, measurements) = match state.verdict.get() {
                    Some((v, last)) => {
                        let mut now = state.mirror.measurements();
                        now.cpu_seconds_per_request = last.cpu_seconds_per_request;
                        now.rss_bytes = last.rss_bytes;
                        (Some(v), Some(now))
                    }
                    None => (None, None),
                };
                obj.insert(
                    "verdict".into(),
                    serde_json::to_value(verdict).unwrap_or_default(),
                );
                obj.insert(
                    "measurements".into(),
                    serde_json::to_value(measurements).unwrap_or_default(),
                );
                let resources = state.resources.as_ref().map(ResourceHandle::latest);
                obj.insert(
                    "resources".into(),
                    serde_json::to_value(resources).unwrap_or_default(),
                );
            }
            respond(StatusCode::OK, "application/json", v.to_string())
        }
        "/api/verdict" => match state.verdict.get() {
            Some((v, _)) => respond(
                StatusCode::OK,
                "application/json",
                serde_json::to_string(&v).unwrap_or_default(),
            ),
            None => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "no verdict yet: the first comes a second after start\n",
            ),
        },
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// `POST /api/labels`: applies JSON lines of ground truth and answers what became of them.
async fn post_labels(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::POST {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "POST JSON lines {\"id\": ..., \"label\": ...} here\n",
        );
    }
    let body = match Limited::new(req.into_body(), MAX_LABELS_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let too_big = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            return if too_big {
                respond(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "text/plain",
                    format!("at most {MAX_LABELS_BODY} bytes per POST: send the labels in parts\n"),
                )
            } else {
                respond(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    format!("cannot read the body: {e}\n"),
                )
            };
        }
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return respond(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "the body is not UTF-8 JSON lines\n",
        );
    };
    let report = state.mirror.labels(text);
    state.verdict_metrics.labels(&report);
    if report.malformed > 0 {
        tracing::warn!(
            malformed = report.malformed,
            first = report.errors.first().map(String::as_str).unwrap_or(""),
            "POST /api/labels: refused malformed lines"
        );
    }
    let status = if report.malformed > 0
        && report.joined + report.unknown + report.late + report.duplicate == 0
    {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    respond(
        status,
        "application/json",
        serde_json::to_string(&report).unwrap_or_default(),
    )
}
