//! Replay over HTTP/2 cleartext (h2c, prior knowledge) for exchanges that came in over HTTP/2,
//! gRPC calls included.
//!
//! One connection to the shadow carries every replay in flight as its own stream (the mirror lets
//! at most `shadow.concurrency` out at once, and the client starts with that many streams allowed
//! until the shadow's SETTINGS say otherwise). It is opened on first use and opened again once the
//! shadow closed it (GOAWAY, an error, the socket closing). A request the shadow provably did not
//! take is sent once more on a fresh connection: refused with `REFUSED_STREAM`, above the last
//! stream of a graceful GOAWAY (`NO_ERROR`), or never sent because the connection had closed.
//! Anything else is the replay's failure: a stream reset by the shadow is a protocol error naming
//! the RST_STREAM reason.
//!
//! The request differs from an HTTP/1 replay only where HTTP/2 says so (RFC 9113 §8.2.2, §8.3.1):
//! the `Host` the header rules leave becomes `:authority` (the shadow URL's authority when there
//! is none), connection-specific fields are never sent (`Connection`, `Keep-Alive`,
//! `Proxy-Connection`, `Transfer-Encoding`, `Upgrade`, `HTTP2-Settings`), `TE` only as
//! `te: trailers`, and request trailers are sent after the body.

use super::{ReplayError, error_chain};
use crate::config::ShadowUrl;
use bytes::Bytes;
use http_body_util::combinators::WithTrailers;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http2};
use hyper::header::{CONNECTION, HOST, HeaderMap, HeaderName, HeaderValue, TE};
use hyper::http::uri::Authority;
use hyper::{Method, Request, Response, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use shadow_core::compare::ErrorClass;
use shadow_core::http::Header;
use std::convert::Infallible;
use std::future::Ready;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// Fields that belong to one HTTP/1 connection and are never sent over HTTP/2 (RFC 9113
/// §8.2.2); `TE` is kept as `te: trailers` only.
const CONNECTION_SPECIFIC: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// A replay's body: the bytes alone, or the bytes then trailers.
type H2Body =
    Either<Full<Bytes>, WithTrailers<Full<Bytes>, Ready<Option<Result<HeaderMap, Infallible>>>>>;

/// A failed exchange with the shadow: its class and what happened, for logs.
pub(super) type Failure = (ErrorClass, String);

/// One request as it goes to the shadow over HTTP/2 (kept whole so that it can be sent again).
#[derive(Clone, Debug)]
pub(super) struct H2Request {
    /// The method.
    pub(super) method: Method,
    /// `http://` + the `:authority` + the shadow path and query.
    pub(super) uri: Uri,
    /// Regular header fields (no `Host`, nothing connection-specific).
    pub(super) headers: HeaderMap,
    /// The body, byte for byte as production's request carried it.
    pub(super) body: Bytes,
    /// Trailer fields to send after the body, if production's request had any.
    pub(super) trailers: Option<HeaderMap>,
}

impl H2Request {
    /// The HTTP/2 form of a replay to `target` (the shadow URI [`super::TargetMap`] made) with
    /// `headers` as the header rules left them; `shadow` names the authority when no `Host` is
    /// left.
    pub(super) fn new(
        method: Method,
        target: &Uri,
        mut headers: HeaderMap,
        body: Bytes,
        trailers: &[Header],
        shadow: &Authority,
    ) -> Result<H2Request, ReplayError> {
        let authority = match headers.remove(HOST) {
            Some(host) => Authority::try_from(host.as_bytes()).map_err(|_| {
                ReplayError::Authority(String::from_utf8_lossy(host.as_bytes()).into_owned())
            })?,
            None => shadow.clone(),
        };
        let mut uri = Uri::builder().scheme("http").authority(authority);
        if let Some(path) = target.path_and_query() {
            uri = uri.path_and_query(path.clone());
        }
        let uri = uri
            .build()
            .map_err(|e| ReplayError::Build(format!("HTTP/2 request URI: {e}")))?;
        drop_connection_specific(&mut headers);
        let trailers = field_map(trailers);
        Ok(H2Request {
            method,
            uri,
            headers,
            body,
            trailers: (!trailers.is_empty()).then_some(trailers),
        })
    }

    /// The hyper request (the body and trailers are cheap clones).
    fn to_hyper(&self) -> Request<H2Body> {
        let body = Full::new(self.body.clone());
        let body = match &self.trailers {
            None => Either::Left(body),
            Some(trailers) => {
                Either::Right(body.with_trailers(std::future::ready(Some(Ok(trailers.clone())))))
            }
        };
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// Removes what HTTP/2 forbids in a request: the connection-specific fields (and those
/// `Connection` names), and `TE` unless it is `trailers`.
fn drop_connection_specific(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in CONNECTION_SPECIFIC {
        headers.remove(*name);
    }
    if asks_for_trailers(headers.get_all(TE).iter().map(HeaderValue::as_bytes)) {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    } else {
        headers.remove(TE);
    }
}

/// Whether `TE` values list `trailers` (the one value HTTP/2 allows).
pub(super) fn asks_for_trailers<'a>(values: impl Iterator<Item = &'a [u8]>) -> bool {
    values
        .flat_map(|v| v.split(|b| *b == b','))
        .map(|item| {
            let token = item.split(|b| *b == b';').next().unwrap_or_default();
            token.trim_ascii()
        })
        .any(|token| token.eq_ignore_ascii_case(b"trailers"))
}

/// Header fields as a map; names or values hyper cannot send (HTTP/2 pseudo-fields among them)
/// are left out.
fn field_map(fields: &[Header]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for h in fields {
        match (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(&h.value),
        ) {
            (Ok(name), Ok(value)) => {
                map.append(name, value);
            }
            _ => tracing::debug!(field = %h.name, "dropping a trailer field hyper cannot send"),
        }
    }
    map
}

/// The HTTP/2 connection to the shadow, shared by every replay (cheap to clone).
#[derive(Clone)]
pub(super) struct H2Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where to connect: the shadow URL's host (no brackets) and port.
    host: String,
    port: u16,
    connect_timeout: Duration,
    /// Streams the client allows itself before the shadow's SETTINGS arrive.
    max_streams: usize,
    /// The connection in use, if one was opened and has not closed.
    current: Mutex<Option<Connection>>,
    /// Connections opened so far (the latest one's generation).
    opened: AtomicU64,
}

/// One open connection, numbered so that a replay that saw it fail replaces only it.
struct Connection {
    generation: u64,
    sender: http2::SendRequest<H2Body>,
}

impl std::fmt::Debug for H2Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Client")
            .field("host", &self.inner.host)
            .field("port", &self.inner.port)
            .field("opened", &self.opened())
            .finish_non_exhaustive()
    }
}

impl H2Client {
    /// A client for the shadow at `url`; no connection is opened before the first replay.
    pub(super) fn new(url: &ShadowUrl, connect_timeout: Duration, max_streams: usize) -> Self {
        let host = url.authority().host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        H2Client {
            inner: Arc::new(Inner {
                host: host.to_string(),
                port: url.port(),
                connect_timeout,
                max_streams,
                current: Mutex::new(None),
                opened: AtomicU64::new(0),
            }),
        }
    }

    /// Connections opened so far.
    pub(super) fn opened(&self) -> u64 {
        self.inner.opened.load(Ordering::Relaxed)
    }

    /// Sends `request` and waits for the response head (the body is read by the caller); a
    /// request the shadow did not take is sent once more on a fresh connection.
    pub(super) async fn send(&self, request: &H2Request) -> Result<Response<Incoming>, Failure> {
        let (generation, mut sender) = self.connection(None).await?;
        match sender.try_send_request(request.to_hyper()).await {
            Ok(response) => Ok(response),
            Err(e) if not_taken(&e) => {
                tracing::debug!(
                    "the shadow did not take a replay ({}); sending it on a new HTTP/2 connection",
                    describe(e.error())
                );
                let (_, mut sender) = self.connection(Some(generation)).await?;
                sender
                    .send_request(request.to_hyper())
                    .await
                    .map_err(|e| (ErrorClass::Protocol, describe(&e)))
            }
            Err(e) => Err((ErrorClass::Protocol, describe(e.error()))),
        }
    }

    /// The open connection, or a new one when there is none, it has closed, or it is the one
    /// numbered `replace` (a replay just saw it refuse a request).
    async fn connection(
        &self,
        replace: Option<u64>,
    ) -> Result<(u64, http2::SendRequest<H2Body>), Failure> {
        let mut current = self.inner.current.lock().await;
        if let Some(c) = current.as_ref()
            && Some(c.generation) != replace
            && !c.sender.is_closed()
        {
            return Ok((c.generation, c.sender.clone()));
        }
        *current = None;
        let sender = self.connect().await?;
        let generation = self.inner.opened.fetch_add(1, Ordering::Relaxed) + 1;
        *current = Some(Connection {
            generation,
            sender: sender.clone(),
        });
        Ok((generation, sender))
    }

    /// Opens a TCP connection and starts HTTP/2 on it with prior knowledge.
    async fn connect(&self) -> Result<http2::SendRequest<H2Body>, Failure> {
        let inner = &self.inner;
        let target = format!("{}:{}", inner.host, inner.port);
        let connect = TcpStream::connect((inner.host.as_str(), inner.port));
        let tcp = match tokio::time::timeout(inner.connect_timeout, connect).await {
            Err(_) => {
                return Err((
                    ErrorClass::Connect,
                    format!(
                        "shadow: connecting to {target} timed out after {:?}",
                        inner.connect_timeout
                    ),
                ));
            }
            Ok(Err(e)) => {
                return Err((
                    ErrorClass::Connect,
                    format!("shadow: cannot connect to {target}: {e}"),
                ));
            }
            Ok(Ok(tcp)) => tcp,
        };
        let _ = tcp.set_nodelay(true);
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .initial_max_send_streams(inner.max_streams)
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| {
                (
                    ErrorClass::Protocol,
                    format!("HTTP/2 handshake with {target}: {}", error_chain(&e)),
                )
            })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %error_chain(&e), "HTTP/2 connection to the shadow ended");
            }
        });
        Ok(sender)
    }
}

/// Whether the shadow provably did not take the request: it never left (the connection had
/// closed), the shadow refused its stream, or a graceful GOAWAY came before it.
fn not_taken(e: &TrySendError<Request<H2Body>>) -> bool {
    if e.message().is_some() {
        return true;
    }
    h2_error(e.error()).is_some_and(|h2| {
        h2.is_remote()
            && match h2.reason() {
                Some(::h2::Reason::REFUSED_STREAM) => h2.is_reset(),
                Some(::h2::Reason::NO_ERROR) => h2.is_go_away(),
                _ => false,
            }
    })
}

/// The HTTP/2 error behind `e`, if one is.
fn h2_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a ::h2::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(h2) = err.downcast_ref::<::h2::Error>() {
            return Some(h2);
        }
        cur = err.source();
    }
    None
}

/// What went wrong, for logs: a reset stream or GOAWAY from the shadow names its reason
/// (`RST_STREAM INTERNAL_ERROR`), anything else is the error chain.
pub(super) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    if let Some(h2) = h2_error(e).filter(|h2| h2.is_remote()) {
        let reason = h2
            .reason()
            .map_or_else(|| "without a reason".to_string(), |r| format!("{r:?}"));
        if h2.is_reset() {
            return format!("shadow: the shadow reset the stream (RST_STREAM {reason})");
        }
        if h2.is_go_away() {
            return format!("shadow: the shadow closed the connection (GOAWAY {reason})");
        }
    }
    error_chain(e)
}

#[cfg(test)]
mod tests;
