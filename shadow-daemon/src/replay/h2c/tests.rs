//! Replays over h2c against a scripted HTTP/2 shadow on 127.0.0.1:0 (the `h2` crate's server, so
//! that the test sees the frames' contents exactly: pseudo-headers, fields, trailers, resets).

use crate::replay::ShadowClient;
use crate::telemetry::{Event, Recorder};
use bytes::{Bytes, BytesMut};
use h2::Reason;
use hyper::header::HeaderMap;
use hyper::{Method, Uri};
use shadow_core::compare::{ErrorClass, ShadowAnswer};
use shadow_core::http::{Header, HttpRequest, Protocol};
use shadow_core::vocabulary::MirrorResult;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A gRPC message (uncompressed, 5 bytes) with bytes that are not text.
const MESSAGE: &[u8] = &[0, 0, 0, 0, 5, 0x0a, 0x03, 0xff, 0x00, 0x80];
/// The shadow's answer message.
const ANSWER: &[u8] = &[0, 0, 0, 0, 2, 0x08, 0x01];

/// What the test shadow does with each stream.
#[derive(Clone, Copy, Debug)]
enum Script {
    /// `200`, `content-type: application/grpc`, [`ANSWER`], then trailers `grpc-status: 0`.
    Answer,
    /// Resets the stream with this reason before answering.
    Reset(Reason),
    /// Sends the response head and part of the body, then resets with `INTERNAL_ERROR`.
    ResetMidBody,
    /// Refuses the first stream of the first connection (`REFUSED_STREAM`), answers the rest.
    RefuseFirst,
    /// After accepting this many streams on a connection sends a graceful GOAWAY; answers
    /// every stream after this many milliseconds.
    GoAwayAfter(usize, u64),
    /// Reads the request and never answers.
    Hang,
}

/// One stream as the shadow received it.
#[derive(Clone, Debug)]
struct Received {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
    /// Which connection (1, 2, …) it came on.
    connection: usize,
}

struct Shadow {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
}

impl Shadow {
    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A scripted HTTP/2 (prior knowledge) shadow on 127.0.0.1.
async fn h2_shadow(script: Script) -> Shadow {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let (seen, count) = (received.clone(), connections.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let connection = count.fetch_add(1, Ordering::SeqCst) + 1;
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                let mut accepted = 0;
                while let Some(Ok((request, respond))) = conn.accept().await {
                    accepted += 1;
                    if let Script::GoAwayAfter(n, _) = script
                        && accepted == n
                    {
                        conn.graceful_shutdown();
                    }
                    let refuse =
                        matches!(script, Script::RefuseFirst) && connection == 1 && accepted == 1;
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        serve(script, refuse, connection, request, respond, seen).await;
                    });
                }
            });
        }
    });
    Shadow {
        addr,
        received,
        connections,
    }
}

/// Reads one stream whole, keeps it, and answers as `script` says.
async fn serve(
    script: Script,
    refuse: bool,
    connection: usize,
    request: hyper::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    seen: Arc<Mutex<Vec<Received>>>,
) {
    let (parts, mut body) = request.into_parts();
    if refuse {
        respond.send_reset(Reason::REFUSED_STREAM);
        return;
    }
    let mut data = BytesMut::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.ok().flatten();
    seen.lock().unwrap().push(Received {
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        body: data.freeze(),
        trailers,
        connection,
    });
    let head = || {
        hyper::Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .body(())
            .unwrap()
    };
    match script {
        Script::Reset(reason) => respond.send_reset(reason),
        Script::ResetMidBody => {
            if let Ok(mut stream) = respond.send_response(head(), false) {
                let _ = stream.send_data(Bytes::from_static(&ANSWER[..3]), false);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                stream.send_reset(Reason::INTERNAL_ERROR);
            }
        }
        Script::Hang => {
            std::future::pending::<()>().await;
        }
        Script::Answer | Script::RefuseFirst | Script::GoAwayAfter(..) => {
            if let Script::GoAwayAfter(_, ms) = script {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            let Ok(mut stream) = respond.send_response(head(), false) else {
                return;
            };
            let _ = stream.send_data(Bytes::from_static(ANSWER), false);
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().unwrap());
            trailers.insert("grpc-message", "fine".parse().unwrap());
            let _ = stream.send_trailers(trailers);
        }
    }
}

/// A client for a `[shadow]` section (production port 1), and what it reports.
fn client(shadow: &str) -> (ShadowClient, Arc<Recorder>) {
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

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: Bytes::from(value.to_string()),
    }
}

/// A gRPC `ModelInfer` call as the HTTP/2 parser gives it (pseudo-headers in method and
/// target), with the fields an HTTP/1-minded proxy might have left on it.
fn grpc_call() -> HttpRequest {
    HttpRequest {
        method: "POST".into(),
        target: "/inference.GRPCInferenceService/ModelInfer".into(),
        version: 1,
        headers: vec![
            header("content-type", "application/grpc"),
            header("te", "trailers"),
            header("grpc-timeout", "1S"),
            header("user-agent", "grpc-python/1.66"),
            header("authorization", "Bearer t"),
            header("connection", "keep-alive"),
            header("keep-alive", "timeout=5"),
            header("proxy-connection", "keep-alive"),
            header("transfer-encoding", "chunked"),
            header("upgrade", "h2c"),
            header("http2-settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
        ],
        body: Bytes::from_static(MESSAGE),
        trailers: vec![header("x-checksum", "abc")],
    }
}

/// The field names, sorted.
fn names(headers: &HeaderMap) -> Vec<&str> {
    let mut names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    names
}

#[tokio::test]
async fn a_grpc_call_reaches_the_shadow_byte_for_byte_and_its_trailers_come_back() {
    let shadow = h2_shadow(Script::Answer).await;
    let (c, recorder) = client(&format!(
        "url = \"http://{}/prefix\"\nset_headers = {{ \"x-shadowtap\" = \"1\" }}\n\
         remove_headers = [\"authorization\"]",
        shadow.addr
    ));
    let answer = c.replay(Protocol::Grpc, &grpc_call()).await.unwrap();
    let ShadowAnswer::Response {
        status,
        headers,
        body,
        trailers,
        ..
    } = &answer
    else {
        panic!("{answer:?}")
    };
    assert_eq!(*status, 200);
    assert_eq!(body, &Bytes::from_static(ANSWER));
    assert!(
        headers
            .iter()
            .any(|h| h.name == "content-type" && h.value == "application/grpc"),
        "{headers:?}"
    );
    let trailer = |name: &str| {
        trailers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value.clone())
    };
    assert_eq!(trailer("grpc-status"), Some(Bytes::from_static(b"0")));
    assert_eq!(trailer("grpc-message"), Some(Bytes::from_static(b"fine")));
    assert!(recorder.events().is_empty(), "{:?}", recorder.events());

    let received = shadow.received();
    assert_eq!(received.len(), 1);
    let r = &received[0];
    // Pseudo-headers: :method, :scheme, :authority (the shadow's: production named none),
    // :path under the shadow URL's prefix.
    assert_eq!(r.method, Method::POST);
    assert_eq!(r.uri.scheme_str(), Some("http"));
    assert_eq!(
        r.uri.authority().map(|a| a.as_str().to_string()),
        Some(shadow.addr.to_string())
    );
    assert_eq!(
        r.uri.path(),
        "/prefix/inference.GRPCInferenceService/ModelInfer"
    );
    assert_eq!(r.body, Bytes::from_static(MESSAGE), "byte-identical body");
    // Nothing connection-specific, no Host, TE only as `trailers`, the header rules applied.
    assert_eq!(
        names(&r.headers),
        vec![
            "content-length",
            "content-type",
            "grpc-timeout",
            "te",
            "user-agent",
            "x-shadowtap",
        ]
    );
    assert_eq!(r.headers["te"], "trailers");
    assert_eq!(r.headers["grpc-timeout"], "1S");
    assert_eq!(
        r.headers["content-length"],
        MESSAGE.len().to_string().as_str()
    );
    let sent_trailers = r
        .trailers
        .as_ref()
        .expect("the request's trailers were sent");
    assert_eq!(sent_trailers["x-checksum"], "abc");
}

#[tokio::test]
async fn the_host_rule_sets_the_authority_and_the_model_rewrites_the_path() {
    let shadow = h2_shadow(Script::Answer).await;
    let mut request = grpc_call();
    request.target = "/v2/models/wine/infer?x=1".into();
    request.trailers.clear();
    // Production's authority, as a Host field (what an HTTP/2 parser may keep of :authority).
    request.headers.push(header("host", "prod.example:8080"));
    request.headers.push(header("te", "gzip, trailers;q=1"));
    let cases = [
        ("", "prod.example:8080"),
        ("host_header = \"shadow\"\n", &*shadow.addr.to_string()),
        ("host_header = \"models.internal\"\n", "models.internal"),
    ];
    for (rule, authority) in cases {
        let (c, _) = client(&format!(
            "url = \"http://{}\"\nmodel = \"wine-v2\"\n{rule}",
            shadow.addr
        ));
        let answer = c.replay(Protocol::H2, &request).await.unwrap();
        assert_eq!(MirrorResult::of(&answer), MirrorResult::Ok, "{answer:?}");
        let r = shadow.received().pop().unwrap();
        assert_eq!(
            r.uri.authority().map(|a| a.as_str()),
            Some(authority),
            "{rule}"
        );
        assert_eq!(
            r.uri.path_and_query().map(|p| p.as_str()),
            Some("/v2/models/wine-v2/infer?x=1")
        );
        assert!(r.headers.get("host").is_none(), "{:?}", r.headers);
        let te: Vec<_> = r.headers.get_all("te").iter().collect();
        assert_eq!(te, vec!["trailers"], "one te: trailers");
        assert!(
            r.trailers.is_none(),
            "no trailers sent when production had none"
        );
    }
    // A host rewrite that cannot be an authority is a request error, named.
    let (c, _) = client(&format!(
        "url = \"http://{}\"\nhost_header = \"shadow\"\n\
         [[shadow.header_rewrite]]\nname = \"host\"\nvalue = \"^\"\nreplacement = \"a b/\"\n",
        shadow.addr
    ));
    let err = c.replay(Protocol::Grpc, &request).await.unwrap_err();
    assert!(
        matches!(&err, crate::replay::ReplayError::Authority(v) if v.starts_with("a b/")),
        "{err}"
    );
}

#[tokio::test]
async fn http1_jobs_still_go_over_http1() {
    // An HTTP/1-only shadow: an HTTP/1 job is answered, an HTTP/2 job is a protocol error (the
    // shadow does not speak h2c).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let Ok(n) = tcp.read(&mut buf).await else {
                    return;
                };
                let answer: &[u8] = if buf[..n].starts_with(b"PRI * HTTP/2.0") {
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
                };
                let _ = tcp.write_all(answer).await;
            });
        }
    });
    let (c, _) = client(&format!("url = \"http://{addr}\""));
    let mut request = grpc_call();
    request.headers.retain(|h| h.name != "transfer-encoding");
    let answer = c.replay(Protocol::Http1, &request).await.unwrap();
    assert_eq!(MirrorResult::of(&answer), MirrorResult::Ok, "{answer:?}");
    let answer = c.replay(Protocol::Grpc, &request).await.unwrap();
    assert_eq!(
        MirrorResult::of(&answer),
        MirrorResult::ProtocolError,
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_stream_reset_by_the_shadow_is_a_protocol_error_naming_the_reason() {
    let shadow = h2_shadow(Script::Reset(Reason::INTERNAL_ERROR)).await;
    let (c, _) = client(&format!("url = \"http://{}\"", shadow.addr));
    let answer = c.replay(Protocol::Grpc, &grpc_call()).await.unwrap();
    let ShadowAnswer::Failed { class, message, .. } = &answer else {
        panic!("{answer:?}")
    };
    assert_eq!(*class, ErrorClass::Protocol);
    assert_eq!(MirrorResult::of(&answer), MirrorResult::ProtocolError);
    assert!(message.contains("RST_STREAM INTERNAL_ERROR"), "{message}");
    // The connection survives a reset stream.
    c.replay(Protocol::Grpc, &grpc_call()).await.unwrap();
    assert_eq!((shadow.connections(), c.h2c.opened()), (1, 1));

    let shadow = h2_shadow(Script::ResetMidBody).await;
    let (c, _) = client(&format!("url = \"http://{}\"", shadow.addr));
    let answer = c.replay(Protocol::Grpc, &grpc_call()).await.unwrap();
    let ShadowAnswer::Failed { class, message, .. } = &answer else {
        panic!("{answer:?}")
    };
    assert_eq!(*class, ErrorClass::Protocol);
    assert!(
        message.starts_with("shadow response body: ")
            && message.contains("RST_STREAM INTERNAL_ERROR"),
        "{message}"
    );
}

#[tokio::test]
async fn after_a_goaway_the_next_replays_reconnect_and_succeed() {
    // The shadow says GOAWAY after every stream: each replay needs a new connection.
    let shadow = h2_shadow(Script::GoAwayAfter(1, 0)).await;
    let (c, _) = client(&format!("url = \"http://{}\"", shadow.addr));
    for i in 0..4 {
        let answer = c.replay(Protocol::Grpc, &grpc_call()).await.unwrap();
        assert_eq!(
            MirrorResult::of(&answer),
            MirrorResult::Ok,
            "{i}: {answer:?}"
        );
    }
    let on: Vec<usize> = shadow.received().iter().map(|r| r.connection).collect();
    assert_eq!(on, vec![1, 2, 3, 4], "one stream per connection");
    assert_eq!(c.h2c.opened(), 4);
}

#[tokio::test]
async fn a_replay_sent_after_a_goaway_goes_on_a_new_connection() {
    // GOAWAY comes while the first stream is still being answered: that stream ends on the old
    // connection, a replay sent meanwhile is not taken there and goes on a new one.
    let shadow = h2_shadow(Script::GoAwayAfter(1, 300)).await;
    let (c, _) = client(&format!("url = \"http://{}\"", shadow.addr));
    let first = {
        let c = c.clone();
        tokio::spawn(async move { c.replay(Protocol::Grpc, &grpc_call()).await.unwrap() })
    };
    for _ in 0..200 {
        if !shadow.received().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Time for the GOAWAY (and its PING round trip) to reach the client.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut second = grpc_call();
    second.body = Bytes::from_static(b"second");
    let answer = c.replay(Protocol::Grpc, &second).await.unwrap();
    assert_eq!(MirrorResult::of(&answer), MirrorResult::Ok, "{answer:?}");
    let answer = first.await.unwrap();
    assert_eq!(MirrorResult::of(&answer), MirrorResult::Ok, "{answer:?}");
    let on: Vec<(usize, Bytes)> = shadow
        .received()
        .into_iter()
        .map(|r| (r.connection, r.body))
        .collect();
    assert_eq!(
        on,
        vec![
            (1, Bytes::from_static(MESSAGE)),
            (2, Bytes::from_static(b"second"))
        ]
    );
}

#[tokio::test]
async fn a_refused_stream_is_sent_again_on_a_new_connection() {
    let shadow = h2_shadow(Script::RefuseFirst).await;
    let (c, _) = client(&format!("url = \"http://{}\"", shadow.addr));
    let answer = c.replay(Protocol::Grpc, &grpc_call()).await.unwrap();
    assert_eq!(MirrorResult::of(&answer), MirrorResult::Ok, "{answer:?}");
    let received = shadow.received();
    assert_eq!(received.len(), 1, "taken once");
    assert_eq!(received[0].connection, 2);
    assert_eq!(received[0].body, Bytes::from_static(MESSAGE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replays_share_one_connection() {
    let shadow = h2_shadow(Script::Answer).await;
    let (c, _) = client(&format!("url = \"http://{}\"", shadow.addr));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let c = c.clone();
        tasks.spawn(async move {
            let mut request = grpc_call();
            request.body = Bytes::from(format!("call {i}"));
            c.replay(Protocol::Grpc, &request).await.unwrap()
        });
    }
    while let Some(answer) = tasks.join_next().await {
        let answer = answer.unwrap();
        assert_eq!(MirrorResult::of(&answer), MirrorResult::Ok, "{answer:?}");
    }
    assert_eq!(shadow.connections(), 1);
    let mut bodies: Vec<Bytes> = shadow.received().into_iter().map(|r| r.body).collect();
    bodies.sort();
    let mut expected: Vec<Bytes> = (0..16).map(|i| Bytes::from(format!("call {i}"))).collect();
    expected.sort();
    assert_eq!(bodies, expected);
}

#[tokio::test]
async fn a_silent_shadow_times_out_and_an_absent_one_is_a_connect_error() {
    let shadow = h2_shadow(Script::Hang).await;
    let (c, _) = client(&format!(
        "url = \"http://{}\"\ntimeout_ms = 200",
        shadow.addr
    ));
    let answer = c.replay(Protocol::Grpc, &grpc_call()).await.unwrap();
    let ShadowAnswer::Failed {
        class, latency_ns, ..
    } = &answer
    else {
        panic!("{answer:?}")
    };
    assert_eq!(*class, ErrorClass::Timeout);
    assert!(*latency_ns >= 200_000_000, "{latency_ns}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (c, _) = client(&format!("url = \"http://127.0.0.1:{port}\""));
    let answer = c.replay(Protocol::H2, &grpc_call()).await.unwrap();
    assert_eq!(
        MirrorResult::of(&answer),
        MirrorResult::ConnectError,
        "{answer:?}"
    );
}

#[tokio::test]
async fn error_statuses_over_h2_are_reported_like_http1_ones() {
    // A shadow answering 404 over HTTP/2 (an unknown path).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((_, mut respond))) = conn.accept().await {
                    let head = hyper::Response::builder().status(404).body(()).unwrap();
                    let _ = respond.send_response(head, true);
                }
            });
        }
    });
    let (c, recorder) = client(&format!("url = \"http://{addr}\""));
    let answer = c.replay(Protocol::H2, &grpc_call()).await.unwrap();
    assert!(
        matches!(answer, ShadowAnswer::Response { status: 404, .. }),
        "{answer:?}"
    );
    assert_eq!(recorder.count(&Event::ShadowHttpError(404)), 1);
}
