//! The HTTP/1.1 side of the traffic driver: one keep-alive connection per client, re-opened
//! after a failure; every n-th request optionally sent chunked.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{Answer, Job, Labels};
use crate::oip::{InferenceResponse, OUTPUT_LABEL, TensorData};

/// Largest response body read.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

type ReqBody = BoxBody<Bytes, Infallible>;

/// One client's keep-alive connection to `POST /v2/models/{model}/infer`.
pub(super) struct Http1Client {
    target: SocketAddr,
    model: String,
    conn: Option<SendRequest<ReqBody>>,
}

impl Http1Client {
    pub(super) fn new(target: SocketAddr, model: String) -> Self {
        Self {
            target,
            model,
            conn: None,
        }
    }

    /// Forgets the connection (after a failure): the next job opens a new one.
    pub(super) fn reset(&mut self) {
        self.conn = None;
    }

    /// Sends `job` (chunked when asked) and reads the whole answer; `Err` when no HTTP answer
    /// came. The latency is that of the exchange itself, not of opening the connection.
    pub(super) async fn exchange(&mut self, job: &Job, chunked: bool) -> Result<Answer, String> {
        if self.conn.as_ref().is_some_and(|c| c.is_closed()) {
            self.conn = None;
        }
        let sender = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(connect(self.target).await?),
        };
        let sent_at = Instant::now();
        let (status, body) = send(sender, self.target, &self.model, job, chunked).await?;
        let latency = sent_at.elapsed();
        let labels = if status == StatusCode::OK {
            labels_of(&body)
        } else {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            Err(format!("HTTP {status}: {text}"))
        };
        Ok(Answer {
            status: status.as_u16(),
            latency,
            labels,
        })
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
    target: SocketAddr,
    model: &str,
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
    let req = Request::post(format!("/v2/models/{model}/infer"))
        .header(header::HOST, target.to_string())
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

/// The `model_version` and the `label` output of a JSON inference response.
fn labels_of(body: &[u8]) -> Result<Labels, String> {
    let r = serde_json::from_slice::<InferenceResponse>(body)
        .map_err(|e| format!("invalid inference response: {e}"))?;
    match r.output(OUTPUT_LABEL).map(|o| &o.data) {
        Some(TensorData::Int64(l)) => Ok(Labels {
            labels: l.clone(),
            version: r.model_version.clone(),
        }),
        Some(_) => Err(format!("output {OUTPUT_LABEL:?} is not INT64")),
        None => Err(format!("no {OUTPUT_LABEL:?} output")),
    }
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
