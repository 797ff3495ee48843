//! Replay: re-send a production request to the shadow model and classify what came back.
//! HTTP/1 exchanges go over a pooled keep-alive hyper client; HTTP/2 streams and gRPC calls go
//! over HTTP/2 cleartext with prior knowledge, all multiplexed on one connection (`h2c`).
//!
//! The replayed request carries the production request's method, target, headers and body
//! (chunked framing removed; a `Content-Encoding` of the request is kept with its body, which is
//! sent as it came). Its target goes where [`TargetMap`] says (`shadow.model`,
//! `[[shadow.rewrite]]`). Hop-by-hop headers (`Connection` and the headers it names,
//! `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`) and `Expect` are
//! dropped and `Content-Length` is recomputed from the body; then, in this order: the `Host`
//! rule (`shadow.host_header`), `Accept-Encoding: identity` when `shadow.accept_encoding =
//! "identity"`, `shadow.remove_headers`, `[[shadow.header_rewrite]]` rules (regex on each value
//! of a header, in order), and last `shadow.set_headers`, which wins over everything before.
//! Over HTTP/2 the same rules apply, then the `Host` they leave becomes `:authority`, `TE` is
//! kept as `te: trailers` and the request's trailers follow its body (see `h2c`).
//!
//! Answers keep their headers, trailers and content coding; the comparison decodes them. Every
//! failure is classed the same way over both protocols (connect, timeout, protocol). Every 4xx
//! and 5xx answer is reported ([`Telemetry::shadow_http_error`]), and a shadow answering most
//! replays with 404/405 is named once in a warning (`routing`).

mod h2c;
mod routing;
mod target;

pub use target::{Mapping, TargetMap};

use crate::config::{AcceptEncoding, HeaderRewrite, HostHeader, ShadowConfig, ShadowUrl};
use crate::telemetry::Telemetry;
use bytes::Bytes;
use h2c::{Failure, H2Client, H2Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{
    ACCEPT_ENCODING, CONTENT_LENGTH, HOST, HeaderMap, HeaderName, HeaderValue, TE,
};
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use routing::RouteWatch;
use shadow_core::compare::{ErrorClass, ShadowAnswer};
use shadow_core::http::{Header, HttpRequest, Protocol};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A production request that cannot be replayed as is.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The request target cannot be joined to the shadow URL.
    #[error("production request target `{0}` cannot be replayed to the shadow")]
    Target(String),
    /// The method is not a valid HTTP method token.
    #[error("production request method `{0}` is not valid")]
    Method(String),
    /// The path rewrites left something that is not a path.
    #[error(
        "production request target `{target}` was rewritten to `{path}`, which is not a path \
         (check the [[shadow.rewrite]] rules with `shadowd check-config --sample-path`)"
    )]
    Rewritten {
        /// The production target.
        target: String,
        /// What the rewrites made of its path.
        path: String,
    },
    /// The `Host` the header rules left cannot be an HTTP/2 `:authority`.
    #[error(
        "the Host `{0}` of an HTTP/2 replay is not a valid :authority (check shadow.host_header \
         and the [[shadow.header_rewrite]] rules for host)"
    )]
    Authority(String),
    /// A header rewrite produced a value that cannot be sent.
    #[error(
        "[[shadow.header_rewrite]] made the {name} header `{value}`, which is not a valid header value"
    )]
    HeaderRewrite {
        /// The header.
        name: HeaderName,
        /// The rewritten value.
        value: String,
    },
    /// Building the shadow request failed.
    #[error("building the shadow request failed: {0}")]
    Build(String),
}

/// Headers never forwarded (hop-by-hop, RFC 9110 §7.6.1) or recomputed.
const DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "expect",
    "content-length",
];

/// Sends replayed requests to the shadow: HTTP/1 over a keep-alive connection pool, HTTP/2
/// and gRPC over one multiplexed h2c connection.
#[derive(Clone)]
pub struct ShadowClient {
    client: Client<HttpConnector, Full<Bytes>>,
    h2c: H2Client,
    targets: TargetMap,
    /// The shadow URL's authority (`:authority` when no `Host` is left).
    authority: hyper::http::uri::Authority,
    /// The `Host` replayed requests carry; `None` keeps production's.
    host: Option<HeaderValue>,
    accept_encoding: AcceptEncoding,
    set_headers: Vec<(HeaderName, HeaderValue)>,
    remove_headers: Vec<HeaderName>,
    header_rewrites: Vec<HeaderRewrite>,
    timeout: Duration,
    max_response_bytes: usize,
    /// Where the shadow's error answers are reported; `None` for the noise baseline.
    telemetry: Option<Arc<dyn Telemetry>>,
    routes: Arc<RouteWatch>,
}

impl std::fmt::Debug for ShadowClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShadowClient")
            .field("targets", &self.targets)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ShadowClient {
    /// A client for the checked `[shadow]` config, reporting shadow error answers to
    /// `telemetry`.
    pub fn new(c: &ShadowConfig, telemetry: Arc<dyn Telemetry>) -> Self {
        Self::build(c, Some(telemetry))
    }

    /// A client for the noise baseline at `url` (a second instance of the production model):
    /// the `[shadow]` transport and header settings, but production's own paths (`model` and
    /// the path rewrites name the shadow's) and nothing reported as the shadow's (its error
    /// answers are not the shadow's, a baseline answering 404 does not warn about the shadow).
    pub fn baseline(c: &ShadowConfig, url: &ShadowUrl) -> Self {
        let c = ShadowConfig {
            url: url.clone(),
            baseline: None,
            model: None,
            rewrites: Vec::new(),
            ..c.clone()
        };
        Self::build(&c, None)
    }

    fn build(c: &ShadowConfig, telemetry: Option<Arc<dyn Telemetry>>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(c.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(c.pool_idle_timeout)
            .pool_max_idle_per_host(c.pool_max_idle)
            .build(connector);
        ShadowClient {
            client,
            h2c: H2Client::new(&c.url, c.connect_timeout, c.concurrency.get()),
            targets: TargetMap::new(c),
            authority: c.url.authority().clone(),
            host: match &c.host_header {
                HostHeader::Preserve => None,
                HostHeader::Shadow => Some(c.url.host_header().clone()),
                HostHeader::Literal(value) => Some(value.clone()),
            },
            accept_encoding: c.accept_encoding,
            set_headers: c.set_headers.clone(),
            remove_headers: c.remove_headers.clone(),
            header_rewrites: c.header_rewrites.clone(),
            timeout: c.timeout,
            max_response_bytes: c.max_response_bytes,
            telemetry,
            routes: Arc::default(),
        }
    }

    /// The shadow request for a production request (HTTP/1).
    pub fn build_request(&self, req: &HttpRequest) -> Result<Request<Full<Bytes>>, ReplayError> {
        let (uri, method, headers) = self.request_parts(req, Wire::Http1)?;
        let mut builder = Request::builder().method(method).uri(uri);
        let Some(map) = builder.headers_mut() else {
            return Err(ReplayError::Build("invalid request parts".into()));
        };
        *map = headers;
        builder
            .body(Full::new(req.body.clone()))
            .map_err(|e| ReplayError::Build(e.to_string()))
    }

    /// The shadow request for a production request carried over HTTP/2 (or gRPC).
    fn build_h2_request(&self, req: &HttpRequest) -> Result<H2Request, ReplayError> {
        let (uri, method, headers) = self.request_parts(req, Wire::H2)?;
        H2Request::new(
            method,
            &uri,
            headers,
            req.body.clone(),
            &req.trailers,
            &self.authority,
        )
    }

    /// The shadow URI, method and header fields of a replay: production's fields without the
    /// hop-by-hop ones (over HTTP/2, `te: trailers` stays), then the header rules, and
    /// `Content-Length` recomputed.
    fn request_parts(
        &self,
        req: &HttpRequest,
        wire: Wire,
    ) -> Result<(Uri, hyper::Method, HeaderMap), ReplayError> {
        let uri = self.targets.uri(&req.target)?;
        let method = hyper::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| ReplayError::Method(req.method.clone()))?;

        // Headers named by `Connection` are hop-by-hop too.
        let named_by_connection: Vec<&[u8]> = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .flat_map(|h| h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii))
            .collect();
        let had_length = req
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("content-length"));
        let mut headers = HeaderMap::new();
        for h in &req.headers {
            let name = h.name.as_bytes();
            if DROPPED
                .iter()
                .any(|d| name.eq_ignore_ascii_case(d.as_bytes()))
                || named_by_connection
                    .iter()
                    .any(|n| name.eq_ignore_ascii_case(n))
            {
                continue;
            }
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(h.name.as_bytes()),
                HeaderValue::from_bytes(&h.value),
            ) else {
                tracing::debug!(header = %h.name, "dropping a header hyper cannot send");
                continue;
            };
            headers.append(name, value);
        }
        // HTTP/2 keeps `TE` for one value: trailers (gRPC needs it).
        let te = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("te"))
            .map(|h| &h.value[..]);
        if wire == Wire::H2 && h2c::asks_for_trailers(te) {
            headers.insert(TE, HeaderValue::from_static("trailers"));
        }
        if let Some(host) = &self.host {
            headers.insert(HOST, host.clone());
        }
        if self.accept_encoding == AcceptEncoding::Identity {
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        }
        for name in &self.remove_headers {
            headers.remove(name);
        }
        for rule in &self.header_rewrites {
            rewrite_header(&mut headers, rule)?;
        }
        for (name, value) in &self.set_headers {
            headers.insert(name.clone(), value.clone());
        }
        if had_length || !req.body.is_empty() {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(req.body.len()));
        }
        Ok((uri, method, headers))
    }

    /// Replays `req`, which came in over `protocol` (HTTP/1, or HTTP/2 and gRPC over h2c), and
    /// waits (at most the configured timeout, connecting included) for the whole answer.
    pub async fn replay(
        &self,
        protocol: Protocol,
        req: &HttpRequest,
    ) -> Result<ShadowAnswer, ReplayError> {
        let request = match protocol {
            Protocol::Http1 => Outgoing::Http1(self.build_request(req)?),
            Protocol::H2 | Protocol::Grpc => Outgoing::H2(self.build_h2_request(req)?),
        };
        let uri = match &request {
            Outgoing::Http1(r) => r.uri().clone(),
            Outgoing::H2(r) => r.uri.clone(),
        };
        let start = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, self.exchange(request)).await;
        let latency_ns = start.elapsed().as_nanos() as u64;
        if let (Ok(Ok(answer)), Some(telemetry)) = (&outcome, &self.telemetry) {
            if answer.status >= 400 {
                telemetry.shadow_http_error(answer.status);
            }
            self.routes
                .record(answer.status, &req.method, &req.target, &uri);
        }
        Ok(match outcome {
            Ok(Ok(answer)) => ShadowAnswer::Response {
                status: answer.status,
                headers: answer.headers,
                body: answer.body,
                trailers: answer.trailers,
                latency_ns,
            },
            Ok(Err((class, message))) => ShadowAnswer::Failed {
                class,
                message,
                latency_ns,
            },
            Err(_) => ShadowAnswer::Failed {
                class: ErrorClass::Timeout,
                message: format!("shadow did not answer within {:?}", self.timeout),
                latency_ns,
            },
        })
    }

    /// Sends the request and reads the whole answer.
    async fn exchange(&self, request: Outgoing) -> Result<Received, Failure> {
        match request {
            Outgoing::Http1(request) => {
                let response = self.client.request(request).await.map_err(|e| {
                    let class = if e.is_connect() {
                        ErrorClass::Connect
                    } else {
                        ErrorClass::Protocol
                    };
                    (class, error_chain(&e))
                })?;
                self.receive(response, |e| e.to_string()).await
            }
            Outgoing::H2(request) => {
                let response = self.h2c.send(&request).await?;
                self.receive(response, h2c::describe).await
            }
        }
    }

    /// Reads an answer's body (at most `shadow.max_response_bytes`) and trailers.
    async fn receive(
        &self,
        response: Response<Incoming>,
        describe: impl Fn(&(dyn std::error::Error + 'static)) -> String,
    ) -> Result<Received, Failure> {
        let status = response.status().as_u16();
        let headers = header_list(response.headers());
        let collected = Limited::new(response.into_body(), self.max_response_bytes)
            .collect()
            .await
            .map_err(|e| {
                (
                    ErrorClass::Protocol,
                    format!("shadow response body: {}", describe(&*e)),
                )
            })?;
        let trailers = collected.trailers().map(header_list).unwrap_or_default();
        Ok(Received {
            status,
            headers,
            body: collected.to_bytes(),
            trailers,
        })
    }
}

/// Which wire a replay goes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    Http1,
    H2,
}

/// A replay ready to send.
enum Outgoing {
    Http1(Request<Full<Bytes>>),
    H2(H2Request),
}

/// A whole answer.
struct Received {
    status: u16,
    headers: Vec<Header>,
    body: Bytes,
    trailers: Vec<Header>,
}

/// Rewrites every value of one header (values that are not text are left alone).
fn rewrite_header(headers: &mut HeaderMap, rule: &HeaderRewrite) -> Result<(), ReplayError> {
    let values: Vec<HeaderValue> = headers.get_all(&rule.name).iter().cloned().collect();
    if values.is_empty() {
        return Ok(());
    }
    headers.remove(&rule.name);
    for value in values {
        let rewritten = match value.to_str() {
            Ok(text) => {
                let new = rule.value.apply(text);
                HeaderValue::from_str(&new).map_err(|_| ReplayError::HeaderRewrite {
                    name: rule.name.clone(),
                    value: new.into_owned(),
                })?
            }
            Err(_) => value,
        };
        headers.append(rule.name.clone(), rewritten);
    }
    Ok(())
}

/// A response's header fields as the comparison reads them.
fn header_list(headers: &HeaderMap) -> Vec<Header> {
    headers
        .iter()
        .map(|(name, value)| Header {
            name: name.as_str().to_string(),
            value: Bytes::copy_from_slice(value.as_bytes()),
        })
        .collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = format!("shadow: {e}");
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(&format!(": {inner}"));
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{Event, Recorder};
    use shadow_core::vocabulary::MirrorResult;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A client for a `[shadow]` section (production port 1).
    fn client(shadow: &str) -> ShadowClient {
        recording_client(shadow).0
    }

    /// [`client`], and what it reports.
    fn recording_client(shadow: &str) -> (ShadowClient, Arc<Recorder>) {
        let text = format!("[capture]\nports = [1]\n[shadow]\n{shadow}");
        let recorder = Arc::new(Recorder::new());
        match crate::config::Config::from_toml(&text, std::path::Path::new("test.toml")) {
            Ok(config) => (
                ShadowClient::new(&config.shadow, recorder.clone()),
                recorder,
            ),
            Err(e) => panic!("{e}"),
        }
    }

    fn req(headers: &[(&str, &str)], body: &str) -> HttpRequest {
        HttpRequest {
            trailers: Vec::new(),
            method: "POST".into(),
            target: "/v2/models/m/infer?x=1".into(),
            version: 1,
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: (*n).into(),
                    value: Bytes::from(v.to_string()),
                })
                .collect(),
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn drops_hop_by_hop_and_recomputes_length() {
        let c = client("url = \"http://127.0.0.1:9/prefix/\"");
        let r = c
            .build_request(&req(
                &[
                    ("Host", "prod.example"),
                    ("Connection", "keep-alive, X-Hop"),
                    ("X-Hop", "1"),
                    ("Keep-Alive", "timeout=5"),
                    ("Transfer-Encoding", "chunked"),
                    ("TE", "trailers"),
                    ("Upgrade", "h2c"),
                    ("Proxy-Authorization", "secret"),
                    ("Expect", "100-continue"),
                    ("Authorization", "Bearer t"),
                    ("X-Multi", "a"),
                    ("X-Multi", "b"),
                ],
                "hello",
            ))
            .unwrap();
        assert_eq!(r.method(), "POST");
        assert_eq!(
            r.uri().to_string(),
            "http://127.0.0.1:9/prefix/v2/models/m/infer?x=1"
        );
        let h = r.headers();
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            vec!["host", "authorization", "x-multi", "content-length"]
        );
        assert_eq!(h["host"], "prod.example");
        assert_eq!(h.get_all("x-multi").iter().count(), 2);
        assert_eq!(h["content-length"], "5");
    }

    #[test]
    fn host_rewrite_and_header_set_remove() {
        let c = client(
            "url = \"http://127.0.0.1:9\"\nhost_header = \"shadow\"\n\
             set_headers = { \"x-shadowtap\" = \"1\" }\nremove_headers = [\"authorization\"]",
        );
        let r = c
            .build_request(&req(&[("Host", "prod"), ("Authorization", "x")], ""))
            .unwrap();
        assert_eq!(r.headers()["host"], "127.0.0.1:9");
        assert_eq!(r.headers()["x-shadowtap"], "1");
        assert!(r.headers().get("authorization").is_none());
        assert!(
            r.headers().get("content-length").is_none(),
            "GET-like, no body"
        );
        let c = client("url = \"http://127.0.0.1:9\"\nhost_header = \"shadow.internal\"");
        let r = c.build_request(&req(&[("Host", "prod")], "")).unwrap();
        assert_eq!(r.headers()["host"], "shadow.internal");
    }

    #[test]
    fn absolute_targets_use_their_path_and_bad_targets_fail() {
        let c = client("url = \"http://127.0.0.1:9\"");
        let mut r = req(&[], "");
        r.target = "http://prod:8080/a?b".into();
        assert_eq!(
            c.build_request(&r).unwrap().uri().to_string(),
            "http://127.0.0.1:9/a?b"
        );
        r.target = "*".into();
        assert!(matches!(c.build_request(&r), Err(ReplayError::Target(_))));
    }

    #[tokio::test]
    async fn connection_refused_is_a_connect_error() {
        // Bind then drop to get a port with nobody listening.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = client(&format!("url = \"http://127.0.0.1:{port}\""));
        let answer = c.replay(Protocol::Http1, &req(&[], "x")).await.unwrap();
        assert_eq!(MirrorResult::of(&answer), MirrorResult::ConnectError);
    }

    #[test]
    fn accept_encoding_is_forwarded_or_set_to_identity() {
        let asked = [("Accept-Encoding", "gzip, deflate, br")];
        let r = client("url = \"http://127.0.0.1:9\"")
            .build_request(&req(&asked, ""))
            .unwrap();
        assert_eq!(r.headers()["accept-encoding"], "gzip, deflate, br");
        let identity = client("url = \"http://127.0.0.1:9\"\naccept_encoding = \"identity\"");
        for headers in [&asked[..], &[]] {
            let r = identity.build_request(&req(headers, "")).unwrap();
            let values: Vec<_> = r.headers().get_all("accept-encoding").iter().collect();
            assert_eq!(values, vec!["identity"]);
        }
    }

    #[test]
    fn a_compressed_request_body_is_replayed_as_it_came() {
        let gzipped = "\u{1f}\u{8b}not really gzip";
        let r = client("url = \"http://127.0.0.1:9\"")
            .build_request(&req(&[("Content-Encoding", "gzip")], gzipped))
            .unwrap();
        assert_eq!(r.headers()["content-encoding"], "gzip");
        assert_eq!(
            r.headers()["content-length"],
            gzipped.len().to_string().as_str()
        );
    }

    #[test]
    fn paths_and_headers_are_rewritten_in_order() {
        let c = client(
            "url = \"http://127.0.0.1:9\"\nmodel = \"wine-v2\"\nhost_header = \"wine.models\"\n\
             set_headers = { \"x-model\" = \"fixed\" }\n\
             [[shadow.header_rewrite]]\nname = \"host\"\nvalue = \"^wine\\\\.\"\nreplacement = \"wine-v2.\"\n\
             [[shadow.header_rewrite]]\nname = \"x-model\"\nvalue = \"wine\"\nreplacement = \"other\"\n\
             [[shadow.header_rewrite]]\nname = \"x-tag\"\nvalue = \"^(\\\\w+)-(\\\\w+)$\"\nreplacement = \"$2-$1\"\n",
        );
        let r = c
            .build_request(&req(
                &[("X-Model", "wine"), ("X-Tag", "a-b"), ("X-Tag", "c-d")],
                "",
            ))
            .unwrap();
        assert_eq!(
            r.uri().to_string(),
            "http://127.0.0.1:9/v2/models/wine-v2/infer?x=1"
        );
        // The Host rule first, then its rewrite.
        assert_eq!(r.headers()["host"], "wine-v2.models");
        // set_headers wins over a rewrite.
        assert_eq!(r.headers()["x-model"], "fixed");
        let tags: Vec<_> = r.headers().get_all("x-tag").iter().collect();
        assert_eq!(tags, vec!["b-a", "d-c"]);
        // A rewrite that makes an invalid value is a request error, named.
        let bad = client(
            "url = \"http://127.0.0.1:9\"\n[[shadow.header_rewrite]]\nname = \"x-a\"\nvalue = \"a\"\nreplacement = \"\\n\"\n",
        );
        let err = bad.build_request(&req(&[("X-A", "a")], "")).unwrap_err();
        assert!(matches!(err, ReplayError::HeaderRewrite { .. }), "{err}");
    }

    #[test]
    fn the_baseline_gets_production_paths_with_the_shadow_header_rules() {
        let text = "[capture]\nports = [1]\n[shadow]\nurl = \"http://127.0.0.1:9/s\"\n\
            baseline = \"http://127.0.0.1:10/b\"\nmodel = \"m-v2\"\nhost_header = \"shadow\"\n\
            set_headers = { \"x-shadowtap\" = \"1\" }\n\
            [[shadow.rewrite]]\npath = \"/infer$\"\nreplacement = \"/predict\"\n";
        let config =
            crate::config::Config::from_toml(text, std::path::Path::new("t.toml")).unwrap();
        let url = config.shadow.baseline.clone().unwrap();
        let request = req(&[("Host", "prod")], "{}");
        let shadow = ShadowClient::new(&config.shadow, Arc::new(Recorder::new()));
        let r = shadow.build_request(&request).unwrap();
        assert_eq!(r.uri(), "http://127.0.0.1:9/s/v2/models/m-v2/predict?x=1");
        // The baseline is production's twin: its paths are production's, under its prefix.
        let baseline = ShadowClient::baseline(&config.shadow, &url);
        let r = baseline.build_request(&request).unwrap();
        assert_eq!(r.uri(), "http://127.0.0.1:10/b/v2/models/m/infer?x=1");
        assert_eq!(r.headers()["host"], "127.0.0.1:10", "its own URL's host");
        assert_eq!(r.headers()["x-shadowtap"], "1");
    }

    /// A shadow on 127.0.0.1 answering every request with `status`, a gzip `Content-Encoding`
    /// header and a fixed body.
    async fn shadow_answering(status: u16) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    loop {
                        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        seen.clear();
                        let answer = format!(
                            "HTTP/1.1 {status} X\r\ncontent-encoding: gzip\r\ncontent-length: 3\r\n\r\nabc"
                        );
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn answers_keep_their_headers_and_error_statuses_are_reported() {
        let addr = shadow_answering(404).await;
        let (c, recorder) = recording_client(&format!("url = \"http://{addr}\""));
        for _ in 0..12 {
            let answer = c.replay(Protocol::Http1, &req(&[], "{}")).await.unwrap();
            let ShadowAnswer::Response {
                status,
                headers,
                body,
                ..
            } = answer
            else {
                panic!("{answer:?}")
            };
            assert_eq!(status, 404);
            assert_eq!(body, Bytes::from_static(b"abc"), "the coding is kept");
            assert!(
                headers
                    .iter()
                    .any(|h| h.name == "content-encoding" && h.value == "gzip"),
                "{headers:?}"
            );
        }
        assert_eq!(recorder.count(&Event::ShadowHttpError(404)), 12);
        let addr = shadow_answering(200).await;
        let (c, recorder) = recording_client(&format!("url = \"http://{addr}\""));
        c.replay(Protocol::Http1, &req(&[], "{}")).await.unwrap();
        assert!(recorder.events().is_empty(), "{:?}", recorder.events());
    }
}
