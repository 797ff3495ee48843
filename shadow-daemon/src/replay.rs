//! Replay: re-send a production request to the shadow model with a pooled keep-alive hyper
//! client, and classify what came back.
//!
//! The replayed request carries the production request's method, target, headers and decoded
//! body. Hop-by-hop headers (`Connection` and the headers it names, `Keep-Alive`, `Proxy-*`,
//! `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`) and `Expect` are dropped, `Content-Length`
//! is recomputed from the body, then the configured Host rewrite and header removals/sets apply.

use crate::config::{HostHeader, ShadowConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_LENGTH, HOST, HeaderName, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use shadow_core::compare::{ErrorClass, ShadowAnswer};
use shadow_core::http::HttpRequest;
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

/// Sends replayed requests to the shadow over a keep-alive connection pool.
#[derive(Clone, Debug)]
pub struct ShadowClient {
    client: Client<HttpConnector, Full<Bytes>>,
    scheme_authority: String,
    prefix: String,
    /// The `Host` replayed requests carry; `None` keeps production's.
    host: Option<HeaderValue>,
    set_headers: Vec<(HeaderName, HeaderValue)>,
    remove_headers: Vec<HeaderName>,
    timeout: Duration,
    max_response_bytes: usize,
}

impl ShadowClient {
    /// A client for the checked `[shadow]` config.
    pub fn new(c: &ShadowConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(c.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(c.pool_idle_timeout)
            .pool_max_idle_per_host(c.pool_max_idle)
            .build(connector);
        ShadowClient {
            client,
            scheme_authority: format!("http://{}", c.url.authority()),
            prefix: c.url.prefix().to_string(),
            host: match &c.host_header {
                HostHeader::Preserve => None,
                HostHeader::Shadow => Some(c.url.host_header().clone()),
                HostHeader::Literal(value) => Some(value.clone()),
            },
            set_headers: c.set_headers.clone(),
            remove_headers: c.remove_headers.clone(),
            timeout: c.timeout,
            max_response_bytes: c.max_response_bytes,
        }
    }

    /// The shadow request for a production request.
    pub fn build_request(&self, req: &HttpRequest) -> Result<Request<Full<Bytes>>, ReplayError> {
        let path: String = if req.target.starts_with('/') {
            req.target.clone()
        } else if let Ok(abs) = req.target.parse::<Uri>()
            && abs.scheme().is_some()
        {
            abs.path_and_query().map_or("/", |p| p.as_str()).to_string()
        } else {
            return Err(ReplayError::Target(req.target.clone()));
        };
        let uri: Uri = format!("{}{}{}", self.scheme_authority, self.prefix, path)
            .parse()
            .map_err(|_| ReplayError::Target(req.target.clone()))?;
        let method = hyper::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| ReplayError::Method(req.method.clone()))?;

        // Headers named by `Connection` are hop-by-hop too.
        let named_by_connection: Vec<String> = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .flat_map(|h| {
                String::from_utf8_lossy(&h.value)
                    .split(',')
                    .map(|t| t.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .collect();
        let had_length = req
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("content-length"));
        let mut builder = Request::builder().method(method).uri(uri);
        let headers = builder
            .headers_mut()
            .ok_or_else(|| ReplayError::Build("invalid request parts".into()))?;
        for h in &req.headers {
            let lower = h.name.to_ascii_lowercase();
            if DROPPED.contains(&lower.as_str()) || named_by_connection.contains(&lower) {
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
        if let Some(host) = &self.host {
            headers.insert(HOST, host.clone());
        }
        for name in &self.remove_headers {
            headers.remove(name);
        }
        for (name, value) in &self.set_headers {
            headers.insert(name.clone(), value.clone());
        }
        if had_length || !req.body.is_empty() {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(req.body.len()));
        }
        builder
            .body(Full::new(req.body.clone()))
            .map_err(|e| ReplayError::Build(e.to_string()))
    }

    /// Replays `req` and waits (at most the configured timeout) for the whole answer.
    pub async fn replay(&self, req: &HttpRequest) -> Result<ShadowAnswer, ReplayError> {
        let request = self.build_request(req)?;
        let start = Instant::now();
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                let class = if e.is_connect() {
                    ErrorClass::Connect
                } else {
                    ErrorClass::Protocol
                };
                (class, error_chain(&e))
            })?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), self.max_response_bytes)
                .collect()
                .await
                .map_err(|e| (ErrorClass::Protocol, format!("shadow response body: {e}")))?
                .to_bytes();
            Ok::<_, (ErrorClass, String)>((status, body))
        };
        let outcome = tokio::time::timeout(self.timeout, exchange).await;
        let latency_ns = start.elapsed().as_nanos() as u64;
        Ok(match outcome {
            Ok(Ok((status, body))) => ShadowAnswer::Response {
                status,
                body,
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
    use shadow_core::http::Header;
    use shadow_core::vocabulary::MirrorResult;

    /// A client for a `[shadow]` section (production port 1).
    fn client(shadow: &str) -> ShadowClient {
        let text = format!("[capture]\nports = [1]\n[shadow]\n{shadow}");
        match crate::config::Config::from_toml(&text, std::path::Path::new("test.toml")) {
            Ok(config) => ShadowClient::new(&config.shadow),
            Err(e) => panic!("{e}"),
        }
    }

    fn req(headers: &[(&str, &str)], body: &str) -> HttpRequest {
        HttpRequest {
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
        let answer = c.replay(&req(&[], "x")).await.unwrap();
        assert_eq!(MirrorResult::of(&answer), MirrorResult::ConnectError);
    }
}
