//! Admin HTTP server (hyper 1): `GET /metrics` (Prometheus text), `GET /healthz`,
//! `GET /api/summary` (JSON of the running aggregates: agreement per request and per row,
//! latency quantiles of both models and of the queue wait, the breaker's state, the replay
//! stage's load and `resources`, the latest [`ResourceSnapshot`](crate::resources::ResourceSnapshot)
//! of the model servers and shadowd; a value without samples is `null`).

use crate::mirror::MirrorStatus;
use crate::resources::ResourceHandle;
use crate::shutdown::Shutdown;
use crate::sinks::metrics::Metrics;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;

/// What the admin endpoints read.
#[derive(Clone, Debug)]
pub struct AdminState {
    pub metrics: Metrics,
    /// The running mirror's aggregates and breaker.
    pub mirror: MirrorStatus,
    /// Whether traffic is being captured: `/healthz` answers 503 until it is.
    pub capturing: Arc<AtomicBool>,
    /// CPU and memory of the model servers and shadowd (`/api/summary` `resources`: `null`
    /// without a monitor).
    pub resources: Option<ResourceHandle>,
}

impl AdminState {
    /// The admin view of `metrics` and a mirror, reporting healthy (capturing) until told
    /// otherwise through [`AdminState::capturing`].
    pub fn new(metrics: Metrics, mirror: MirrorStatus) -> Self {
        AdminState {
            metrics,
            mirror,
            capturing: Arc::new(AtomicBool::new(true)),
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
                async move { Ok::<_, Infallible>(route(&state, &req)) }
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

fn route(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
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
                let resources = state.resources.as_ref().map(ResourceHandle::latest);
                obj.insert(
                    "resources".into(),
                    serde_json::to_value(resources).unwrap_or_default(),
                );
            }
            respond(StatusCode::OK, "application/json", v.to_string())
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}
