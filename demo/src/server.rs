//! The Open Inference Protocol HTTP/1.1 server (hyper 1, keep-alive), and the state both it
//! and the gRPC server ([`crate::grpc`]) answer from.
//!
//! Routes (`{v}` must equal the served version, `{name}` the served model name):
//! - `GET  /v2`, `GET /v2/health/live`, `GET /v2/health/ready`
//! - `GET  /v2/models/{name}[/versions/{v}]` (metadata), `.../ready`
//! - `POST /v2/models/{name}[/versions/{v}]/infer`
//!
//! Errors are JSON `{"error": "..."}`: 400 malformed input, 404 unknown model or path,
//! 405 wrong method, 413 body over [`MAX_BODY_BYTES`]. Handlers never panic on input.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::dataset::N_FEATURES;
use crate::model::{Model, labels_from_proba};
use crate::oip::{
    ErrorBody, INPUT_NAME, ModelMetadata, OUTPUT_LABEL, OUTPUT_PROBABILITIES, TensorMetadata,
    build_response, parse_request,
};

/// Largest request body accepted (413 above).
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// How long shutdown waits for open connections to finish their current request.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Everything a request handler needs; shared by all connections.
#[derive(Debug)]
pub struct ServerState {
    name: String,
    model: Model,
    delay: Duration,
    served: AtomicU64,
}

impl ServerState {
    /// Serves `model` under the model name `name`, sleeping `delay` before each inference answer.
    pub fn new(name: impl Into<String>, model: Model, delay: Duration) -> Self {
        Self {
            name: name.into(),
            model,
            delay,
            served: AtomicU64::new(0),
        }
    }

    /// Number of inference requests answered with 200 so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// The model name requests must use.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The served model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Waits the configured extra delay before an inference answer (simulates a slower model).
    pub async fn delay(&self) {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }

    /// Counts one answered inference request; returns how many were answered before it.
    pub fn count_served(&self) -> u64 {
        self.served.fetch_add(1, Ordering::Relaxed)
    }

    /// The served version (`"v1"` or `"v2"`).
    pub fn version(&self) -> &'static str {
        self.model.kind().version()
    }

    /// The model's metadata (name, version, platform, tensors), as both APIs answer it.
    pub fn metadata(&self) -> ModelMetadata {
        let c = self.model.classes().len() as i64;
        ModelMetadata {
            name: self.name.clone(),
            versions: vec![self.version().into()],
            platform: self.model.kind().platform().into(),
            inputs: vec![TensorMetadata {
                name: INPUT_NAME.into(),
                datatype: "FP64".into(),
                shape: vec![-1, N_FEATURES as i64],
            }],
            outputs: vec![
                TensorMetadata {
                    name: OUTPUT_PROBABILITIES.into(),
                    datatype: "FP64".into(),
                    shape: vec![-1, c],
                },
                TensorMetadata {
                    name: OUTPUT_LABEL.into(),
                    datatype: "INT64".into(),
                    shape: vec![-1],
                },
            ],
        }
    }
}

/// Accepts connections on `listener` until `shutdown` completes, then lets open connections
/// finish their in-flight request (up to [`SHUTDOWN_GRACE`]) and returns.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ServerState>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(());
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(e) => {
                        // E.g. EMFILE: back off instead of spinning.
                        eprintln!("demo-model: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                let mut stop_rx = stop_rx.clone();
                conns.spawn(async move {
                    let service = service_fn(move |req| handle(Arc::clone(&state), req));
                    let conn = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stop_rx.changed() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(());
    let drain = async { while conns.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, drain).await;
}

/// Routes one request. Never fails: every problem becomes a JSON error response.
pub async fn handle(
    state: Arc<ServerState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    let resp = match segments.as_slice() {
        ["v2"] => only_get(&method, || {
            json_response(
                StatusCode::OK,
                &json!({"name": "shadowtap-demo-model", "version": env!("CARGO_PKG_VERSION"), "extensions": []}),
            )
        }),
        ["v2", "health", "live"] => only_get(&method, || {
            json_response(StatusCode::OK, &json!({"live": true}))
        }),
        ["v2", "health", "ready"] => only_get(&method, || {
            json_response(StatusCode::OK, &json!({"ready": true}))
        }),
        ["v2", "models", name, ..] if *name != state.name => error_response(
            StatusCode::NOT_FOUND,
            format!("unknown model {name:?} (serving {:?})", state.name),
        ),
        ["v2", "models", name, "versions", v, ..] if *v != state.version() => error_response(
            StatusCode::NOT_FOUND,
            format!(
                "model {name:?} has no version {v:?} (serving {:?})",
                state.version()
            ),
        ),
        ["v2", "models", _, rest @ ..] => {
            let rest = match rest {
                ["versions", _, tail @ ..] => tail,
                other => other,
            };
            match rest {
                [] => only_get(&method, || json_response(StatusCode::OK, &state.metadata())),
                ["ready"] => only_get(&method, || {
                    json_response(StatusCode::OK, &json!({"name": state.name, "ready": true}))
                }),
                ["infer"] if method == Method::POST => infer(&state, req).await,
                ["infer"] => method_not_allowed("POST"),
                _ => not_found(&path),
            }
        }
        _ => not_found(&path),
    };
    Ok(resp)
}

async fn infer(state: &ServerState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {MAX_BODY_BYTES} bytes"),
            );
        }
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("reading request body: {e}"),
            );
        }
    };
    let (request, x) = match parse_request(&body, N_FEATURES) {
        Ok(parsed) => parsed,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let probs = state.model.predict_proba(x.view());
    let labels = labels_from_proba(&probs.view(), state.model.classes());
    state.delay().await;
    let n = state.count_served();
    let id = request
        .id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", state.version(), n));
    let response = build_response(
        &request,
        &state.name,
        state.version(),
        id,
        probs.view(),
        &labels,
    );
    json_response(StatusCode::OK, &response)
}

fn only_get(method: &Method, ok: impl FnOnce() -> Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    if method == Method::GET || method == Method::HEAD {
        ok()
    } else {
        method_not_allowed("GET")
    }
}

fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut resp = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed, use {allow}"),
    );
    resp.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    resp
}

fn not_found(path: &str) -> Response<Full<Bytes>> {
    error_response(StatusCode::NOT_FOUND, format!("no route for {path:?}"))
}

fn error_response(status: StatusCode, error: String) -> Response<Full<Bytes>> {
    json_response(status, &ErrorBody { error })
}

fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    let (status, bytes) = match serde_json::to_vec(body) {
        Ok(b) => (status, b),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{{\"error\":\"serialising response: {e}\"}}").into_bytes(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::DEFAULT_SEED;
    use crate::model::ModelKind;
    use crate::oip::{InferenceResponse, TensorData};
    use crate::traffic::{Protocol, TrafficConfig, plan_jobs, run};
    use crate::training::train_demo_model;
    use serde_json::Value;
    use shadowtap_test_support::http::parse_message;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;

    const ROW: &str = "[7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4]";

    struct Running {
        addr: std::net::SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
        state: Arc<ServerState>,
        held_out_accuracy: f64,
    }

    impl Running {
        async fn stop(mut self) {
            let _ = self.stop.take().unwrap().send(());
            tokio::time::timeout(Duration::from_secs(10), self.task)
                .await
                .expect("server stops")
                .unwrap();
        }
    }

    /// v2 trains in milliseconds even in debug builds.
    async fn start() -> Running {
        let trained = train_demo_model(ModelKind::V2, DEFAULT_SEED).unwrap();
        let state = Arc::new(ServerState::new("wine", trained.model, Duration::ZERO));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, Arc::clone(&state), async {
            let _ = rx.await;
        }));
        Running {
            addr,
            stop: Some(tx),
            task,
            state,
            held_out_accuracy: trained.report.held_out_accuracy,
        }
    }

    /// Writes `raw` and reads one response: (status, body JSON).
    async fn exchange(conn: &mut TcpStream, raw: &str) -> (u16, Value) {
        conn.write_all(raw.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some((response, _)) = parse_message(&buf).unwrap() {
                let status = response.status().expect("a status line");
                return (status, serde_json::from_slice(&response.body).unwrap());
            }
            let n = conn.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the whole response");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn post(path: &str, body: &str) -> String {
        format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn answers_inference_with_oip_shape_on_keep_alive_connection() {
        let srv = start().await;
        let mut conn = TcpStream::connect(srv.addr).await.unwrap();

        let body = format!(
            r#"{{"id":"r1","inputs":[{{"name":"input-0","shape":[2,11],"datatype":"FP64","data":[{ROW},{ROW}]}}]}}"#
        );
        let (status, json) = exchange(&mut conn, &post("/v2/models/wine/infer", &body)).await;
        assert_eq!(status, 200, "{json}");
        let resp: InferenceResponse = serde_json::from_value(json).unwrap();
        assert_eq!((resp.model_name.as_str(), resp.id.as_str()), ("wine", "r1"));
        assert_eq!(resp.model_version.as_deref(), Some("v2"));
        let probs = resp.output("probabilities").unwrap();
        assert_eq!(
            (probs.shape.clone(), probs.datatype.as_str()),
            (vec![2, 6], "FP64")
        );
        let TensorData::Fp64(p) = &probs.data else {
            panic!("probabilities not FP64")
        };
        assert!((p[..6].iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let label = resp.output("label").unwrap();
        assert_eq!(
            (label.shape.clone(), label.datatype.as_str()),
            (vec![2], "INT64")
        );

        // Same connection, chunked body, version-qualified path.
        let (head, tail) = body.split_at(40);
        let chunked = format!(
            "POST /v2/models/wine/versions/v2/infer HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
             {:x}\r\n{head}\r\n{:x}\r\n{tail}\r\n0\r\n\r\n",
            head.len(),
            tail.len()
        );
        let (status, _) = exchange(&mut conn, &chunked).await;
        assert_eq!(status, 200);

        let get = "GET /v2/health/ready HTTP/1.1\r\nHost: t\r\n\r\n";
        assert_eq!(exchange(&mut conn, get).await.0, 200);
        let meta = exchange(&mut conn, "GET /v2/models/wine HTTP/1.1\r\nHost: t\r\n\r\n").await;
        assert_eq!(meta.0, 200);
        assert_eq!(meta.1["versions"], serde_json::json!(["v2"]));
        assert_eq!(srv.state.served(), 2);
        srv.stop().await;
    }

    #[tokio::test]
    async fn rejects_bad_input_without_dropping_the_connection() {
        let srv = start().await;
        let mut conn = TcpStream::connect(srv.addr).await.unwrap();
        let bad = [
            (post("/v2/models/wine/infer", "{nope"), 400),
            (
                post(
                    "/v2/models/wine/infer",
                    r#"{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP64","data":[1,2,3]}]}"#,
                ),
                400,
            ),
            (
                post(
                    "/v2/models/wine/infer",
                    r#"{"inputs":[{"name":"x","shape":[1,11],"datatype":"FP64","data":[1,2,3,4,5,6,7,8,9,10,"a"]}]}"#,
                ),
                400,
            ),
            (post("/v2/models/other/infer", "{}"), 404),
            (post("/v2/models/wine/versions/v1/infer", "{}"), 404),
            (post("/v2/health/ready", ""), 405),
            (
                "GET /v2/models/wine/infer HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
                405,
            ),
            ("GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), 404),
        ];
        for (raw, want) in bad {
            let (status, json) = exchange(&mut conn, &raw).await;
            assert_eq!(status, want, "{raw:?} -> {json}");
            assert!(
                json["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{json}"
            );
        }
        // The connection still serves a good request.
        let body = format!(
            r#"{{"inputs":[{{"name":"input-0","shape":[1,11],"datatype":"FP64","data":{ROW}}}]}}"#
        );
        assert_eq!(
            exchange(&mut conn, &post("/v2/models/wine/infer", &body))
                .await
                .0,
            200
        );
        srv.stop().await;
    }

    #[tokio::test]
    async fn traffic_driver_measures_the_served_model() {
        let srv = start().await;
        let data = crate::WineData::load();
        let split = crate::Split::stratified(data.labels.view(), DEFAULT_SEED);
        let jobs = Arc::new(plan_jobs(&data, &split, None, 1));
        let cfg = TrafficConfig {
            target: srv.addr,
            model: "wine".into(),
            clients: 3,
            request_timeout: Duration::from_secs(10),
            max_duration: Duration::from_secs(60),
            rate: None,
            chunked_every: 3,
            protocol: Protocol::Http1,
            gzip: false,
            progress: false,
        };
        let summary = run(&cfg, jobs).await;
        assert!(summary.all_ok(), "{summary:?}");
        assert_eq!(summary.rows_scored, split.held_out.len());
        assert_eq!(summary.accuracy, Some(srv.held_out_accuracy));
        assert!(summary.latency_ms.is_some());

        // Paced: 20 requests at 100/s take about 0.19 s.
        let paced = TrafficConfig {
            rate: Some(100.0),
            ..cfg.clone()
        };
        let summary = run(&paced, Arc::new(plan_jobs(&data, &split, Some(20), 1))).await;
        assert!(summary.all_ok(), "{summary:?}");
        assert!(
            (0.18..5.0).contains(&summary.elapsed_s),
            "{}",
            summary.elapsed_s
        );

        // Wrong model name: every request is answered 404, none scored.
        let cfg = TrafficConfig {
            model: "nope".into(),
            ..cfg
        };
        let jobs = Arc::new(plan_jobs(&data, &split, Some(5), 1));
        let summary = run(&cfg, jobs).await;
        assert_eq!(summary.responses.get(&404), Some(&5));
        assert!(!summary.all_ok());
        srv.stop().await;
    }

    #[tokio::test]
    async fn unreachable_target_is_bounded_and_counted() {
        // Bind then drop to get a port nobody listens on.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let data = crate::WineData::load();
        let split = crate::Split::stratified(data.labels.view(), DEFAULT_SEED);
        let cfg = TrafficConfig {
            target: addr,
            model: "wine".into(),
            clients: 2,
            request_timeout: Duration::from_secs(2),
            max_duration: Duration::from_secs(20),
            rate: None,
            chunked_every: 0,
            protocol: Protocol::Http1,
            gzip: false,
            progress: false,
        };
        let summary = run(&cfg, Arc::new(plan_jobs(&data, &split, None, 1))).await;
        assert_eq!(summary.responses.len(), 0);
        // Each client gives up after a few consecutive failures.
        assert!(summary.transport_errors <= 2 * 5, "{summary:?}");
        assert!(!summary.error_samples.is_empty());
    }
}
