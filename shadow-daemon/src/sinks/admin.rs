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
//! `GET /api/timeseries` serves the per-interval ring
//! ([`TimeSeriesSnapshot`](crate::sinks::timeseries::TimeSeriesSnapshot)), and
//! `GET /api/discrepancies?limit=N` the last N discrepancies (default 20, at most
//! [`KEPT`](crate::sinks::recent_discrepancies::KEPT); oldest first, redacted as in the
//! discrepancy log).
//!
//! Access ([`AdminAccess`]): `POST /api/labels` always needs `Authorization: Bearer <token>`
//! (without a configured token it is refused with 403: ground truth decides promotions, so
//! nobody may post it anonymously); when the server listens beyond loopback, every other
//! endpoint but `/healthz` needs the token too. A missing or wrong token is answered 401 with
//! `WWW-Authenticate: Bearer`, before any body is read.

use crate::logging::RateLimited;
use crate::mirror::MirrorStatus;
use crate::resources::ResourceHandle;
use crate::security::{AdminToken, is_loopback};
use crate::shutdown::Shutdown;
use crate::sinks::metrics::Metrics;
use crate::sinks::recent_discrepancies::{KEPT, RecentDiscrepancies};
use crate::sinks::verdict_metrics::VerdictMetrics;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use shadow_core::criteria::{Measurements, Verdict};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// At most one line per cause of a repeated warning this often.
const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Largest `POST /api/labels` body accepted.
pub const MAX_LABELS_BODY: usize = 16 << 20;
/// Discrepancies `GET /api/discrepancies` answers without `?limit=`.
pub const DEFAULT_DISCREPANCIES: usize = 20;

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

/// Who may use which admin endpoint.
#[derive(Clone, Debug, Default)]
pub struct AdminAccess {
    /// The bearer token; `None`: `POST /api/labels` is refused (403).
    token: Option<AdminToken>,
    /// Whether reads (every endpoint but `/healthz`) need the token too.
    reads_need_token: bool,
}

/// What [`AdminAccess::check`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Allowed,
    /// No (or a wrong) `Authorization: Bearer` header: 401.
    Unauthorized {
        presented: bool,
    },
    /// The endpoint needs a token and none is configured: 403.
    NoTokenConfigured,
}

impl AdminAccess {
    /// Access for a server listening on `addr` with `token`: labels need the token; so does
    /// every endpoint but `/healthz` when `addr` is not loopback. (A non-loopback `addr`
    /// without a token is refused by the config check; here it would lock every read.)
    pub fn new(addr: SocketAddr, token: Option<AdminToken>) -> Self {
        AdminAccess {
            token,
            reads_need_token: !is_loopback(&addr),
        }
    }

    /// Whether a token is configured.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether reads need the token (the server is reachable from other hosts).
    pub fn reads_need_token(&self) -> bool {
        self.reads_need_token
    }

    fn check(&self, path: &str, authorization: Option<&[u8]>) -> Access {
        let needed = path == "/api/labels" || (self.reads_need_token && path != "/healthz");
        if !needed {
            return Access::Allowed;
        }
        let Some(token) = &self.token else {
            return Access::NoTokenConfigured;
        };
        match authorization {
            Some(value) if token.authorizes(value) => Access::Allowed,
            presented => Access::Unauthorized {
                presented: presented.is_some(),
            },
        }
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
    /// Who may use which endpoint (default: reads open, labels refused).
    pub access: AdminAccess,
    /// The last discrepancies (`/api/discrepancies`: an empty list without).
    pub recent: Option<RecentDiscrepancies>,
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
            access: AdminAccess::default(),
            recent: None,
        }
    }

    /// Serves `recent` at `/api/discrepancies`.
    pub fn with_recent_discrepancies(mut self, recent: RecentDiscrepancies) -> Self {
        self.recent = Some(recent);
        self
    }

    /// Guards the endpoints with `access`.
    pub fn with_access(mut self, access: AdminAccess) -> Self {
        self.access = access;
        self
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
                static ACCEPT_FAILED: RateLimited = RateLimited::new(WARN_EVERY);
                if let Some(suppressed) = ACCEPT_FAILED.allow(&e.to_string()) {
                    tracing::warn!(suppressed, "admin server accept failed: {e}");
                }
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

/// 401 with the challenge RFC 6750 asks for (`error="invalid_token"` when a token was sent).
fn unauthorized(presented: bool) -> Response<Full<Bytes>> {
    let challenge = if presented {
        "Bearer realm=\"shadowd\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"shadowd\""
    };
    let mut response = respond(
        StatusCode::UNAUTHORIZED,
        "text/plain",
        "send `Authorization: Bearer <token>`, the token in shadowd's admin.token_file\n",
    );
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static(challenge),
    );
    response
}

async fn route(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let authorization = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
    match state.access.check(req.uri().path(), authorization) {
        Access::Allowed => {}
        Access::Unauthorized { presented } => {
            tracing::debug!(
                path = req.uri().path(),
                presented,
                "admin: refused, no valid token"
            );
            return unauthorized(presented);
        }
        Access::NoTokenConfigured => {
            return respond(
                StatusCode::FORBIDDEN,
                "text/plain",
                "POST /api/labels needs a bearer token: start shadowd with admin.token_file (or \
                 --admin-token-file) naming a file that holds one, and send `Authorization: \
                 Bearer <token>`\n",
            );
        }
    }
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
        "/healthz" if !state.metrics.is_tap_attached() => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "the tapped interface is gone: nothing is captured (see the log)\n",
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
        "/api/timeseries" => respond(
            StatusCode::OK,
            "application/json",
            serde_json::to_string(&state.metrics.timeseries().snapshot()).unwrap_or_default(),
        ),
        "/api/discrepancies" => {
            let limit = match discrepancies_limit(req.uri().query()) {
                Ok(n) => n,
                Err(message) => return respond(StatusCode::BAD_REQUEST, "text/plain", message),
            };
            let recent = state
                .recent
                .as_ref()
                .map(|r| r.latest(limit))
                .unwrap_or_default();
            respond(
                StatusCode::OK,
                "application/json",
                serde_json::to_string(&recent).unwrap_or_default(),
            )
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

/// `limit=N` of `/api/discrepancies` (default [`DEFAULT_DISCREPANCIES`], at most [`KEPT`]).
fn discrepancies_limit(query: Option<&str>) -> Result<usize, String> {
    let value = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("limit="));
    match value {
        None => Ok(DEFAULT_DISCREPANCIES),
        Some(v) => v.parse::<usize>().map(|n| n.min(KEPT)).map_err(|_| {
            format!("limit={v}: give the number of discrepancies wanted, 0 to {KEPT}\n")
        }),
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
    static MALFORMED_LABELS: RateLimited = RateLimited::new(WARN_EVERY);
    if report.malformed > 0
        && let Some(suppressed) = MALFORMED_LABELS.allow("malformed")
    {
        tracing::warn!(
            malformed = report.malformed,
            suppressed,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::Mirror;
    use crate::shutdown::{self, ShutdownTrigger};
    use crate::telemetry::Telemetry;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const SECRET: &str = "test-token-0123456789abcdef";

    fn token() -> AdminToken {
        AdminToken::from_secret(SECRET).unwrap()
    }

    /// An admin server on 127.0.0.1:0 guarded by `access`; stops when the trigger is dropped.
    async fn serve(access: AdminAccess) -> (SocketAddr, ShutdownTrigger) {
        let (trigger, shutdown) = shutdown::channel();
        let metrics = Metrics::new();
        let telemetry: Arc<dyn Telemetry> = Arc::new(metrics.clone());
        let config = Arc::new(crate::config::test_config(""));
        let mirror = Mirror::new(config, telemetry);
        let state = AdminState::new(metrics, mirror.status()).with_access(access);
        let listener = bind_admin(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_admin(listener, state, shutdown));
        (addr, trigger)
    }

    /// One request over a fresh connection: (status, the response head, the body).
    async fn call(
        addr: SocketAddr,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: &str,
    ) -> (u16, String, String) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("the admin server answers")
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head[9..12].parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    const LABEL: &str = "{\"id\": \"r-1\", \"label\": 1}\n";

    #[tokio::test]
    async fn labels_need_the_bearer_token_even_on_loopback() {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 9464));
        let (addr, _stop) = serve(AdminAccess::new(loopback, Some(token()))).await;
        let bearer = format!("Bearer {SECRET}");

        let (status, head, _) = call(addr, "POST", "/api/labels", None, LABEL).await;
        assert_eq!(status, 401);
        assert!(
            head.contains("www-authenticate: bearer realm=\"shadowd\"\r\n")
                || head.ends_with("www-authenticate: bearer realm=\"shadowd\""),
            "{head}"
        );
        let wrong = format!("Bearer {SECRET}x");
        for value in [wrong.as_str(), "Basic dXNlcjpwYXNz", SECRET] {
            let (status, head, _) = call(addr, "POST", "/api/labels", Some(value), LABEL).await;
            assert_eq!(status, 401, "{value}");
            assert!(head.contains("error=\"invalid_token\""), "{head}");
        }

        let (status, _, body) = call(addr, "POST", "/api/labels", Some(&bearer), LABEL).await;
        assert_eq!(status, 200, "{body}");
        let report: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(report["unknown"], 1, "{report}");

        // Reads stay open on loopback, with or without a token.
        for path in ["/metrics", "/healthz", "/api/summary"] {
            assert_eq!(call(addr, "GET", path, None, "").await.0, 200, "{path}");
        }
    }

    #[tokio::test]
    async fn without_a_token_labels_are_refused_with_what_to_do() {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 9464));
        let (addr, _stop) = serve(AdminAccess::new(loopback, None)).await;
        let (status, _, body) = call(
            addr,
            "POST",
            "/api/labels",
            Some("Bearer anything-at-all-here"),
            LABEL,
        )
        .await;
        assert_eq!(status, 403);
        assert!(body.contains("admin.token_file"), "{body}");
        assert_eq!(call(addr, "GET", "/api/summary", None, "").await.0, 200);
    }

    #[tokio::test]
    async fn off_loopback_every_endpoint_but_healthz_needs_the_token() {
        let public = SocketAddr::from(([0, 0, 0, 0], 9464));
        let access = AdminAccess::new(public, Some(token()));
        assert!(access.reads_need_token() && access.has_token());
        let (addr, _stop) = serve(access).await;
        let bearer = format!("Bearer {SECRET}");
        for path in [
            "/metrics",
            "/api/summary",
            "/api/verdict",
            "/api/timeseries",
            "/api/discrepancies",
            "/nowhere",
        ] {
            let (status, head, _) = call(addr, "GET", path, None, "").await;
            assert_eq!(status, 401, "{path}");
            assert!(head.contains("www-authenticate: bearer"), "{path}: {head}");
            let (status, _, _) =
                call(addr, "GET", path, Some("Bearer nope-nope-nope-nope"), "").await;
            assert_eq!(status, 401, "{path}");
        }
        // With the token: what the endpoint answers (no verdict yet: 503; unknown path: 404).
        for (path, expected) in [
            ("/metrics", 200),
            ("/api/summary", 200),
            ("/api/verdict", 503),
            ("/api/timeseries", 200),
            ("/api/discrepancies?limit=3", 200),
            ("/nowhere", 404),
        ] {
            assert_eq!(
                call(addr, "GET", path, Some(&bearer), "").await.0,
                expected,
                "{path}"
            );
        }
        // The health check carries no data and stays open for probes.
        assert_eq!(call(addr, "GET", "/healthz", None, "").await.0, 200);
        assert_eq!(call(addr, "POST", "/api/labels", None, LABEL).await.0, 401);
        assert_eq!(
            call(addr, "POST", "/api/labels", Some(&bearer), LABEL)
                .await
                .0,
            200
        );
    }

    #[tokio::test]
    async fn timeseries_and_discrepancies_are_served_as_json() {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 9464));
        let (addr, _stop) = serve(AdminAccess::new(loopback, None)).await;
        let (status, head, body) = call(addr, "GET", "/api/timeseries", None, "").await;
        assert_eq!(status, 200, "{body}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let ts: crate::sinks::timeseries::TimeSeriesSnapshot = serde_json::from_str(&body).unwrap();
        assert_eq!((ts.interval_seconds, ts.capacity), (60, 1440));
        assert!(ts.buckets.is_empty(), "nothing happened yet");

        let (status, _, body) = call(addr, "GET", "/api/discrepancies", None, "").await;
        assert_eq!((status, body.as_str()), (200, "[]"));
        for bad in ["limit=many", "limit=-1"] {
            let (status, _, body) =
                call(addr, "GET", &format!("/api/discrepancies?{bad}"), None, "").await;
            assert_eq!(status, 400, "{bad}");
            assert!(body.contains("give the number"), "{body}");
        }
    }

    #[test]
    fn the_discrepancies_limit_defaults_and_is_capped() {
        assert_eq!(discrepancies_limit(None), Ok(DEFAULT_DISCREPANCIES));
        assert_eq!(discrepancies_limit(Some("x=1")), Ok(DEFAULT_DISCREPANCIES));
        assert_eq!(discrepancies_limit(Some("x=1&limit=5")), Ok(5));
        assert_eq!(discrepancies_limit(Some("limit=100000")), Ok(KEPT));
        assert!(discrepancies_limit(Some("limit=")).is_err());
    }
}
