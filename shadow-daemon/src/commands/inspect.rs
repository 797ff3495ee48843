//! `shadowd inspect`: pcap → HTTP exchanges as JSON lines.
//!
//! One JSON object per exchange on stdout: per HTTP/1 connection in the order the requests
//! were sent, per HTTP/2 stream as the streams finish. Each names its `protocol` (`http1`,
//! `h2`, `grpc`); a gRPC call also has its `grpc_status` (from the trailers, or the headers of
//! a trailers-only response) and its length-prefixed messages counted and sized on both sides
//! (not decoded). A summary line on stderr: exchanges per outcome, then packet and byte
//! counts, then the messages the HTTP parser refused by reason, then the HTTP/2 streams not
//! seen whole by reason (`h2_streams_lost`: `hpack_unknown` for connections joined mid-way or
//! after a gap, resets, GOAWAY, streams over the concurrency cap, pushes), then the frames
//! that yielded no segment by reason (`ip_fragment`, `truncated_header` and
//! `malformed` may have carried watched bytes; the others are traffic that is not ours). A
//! file cut in the middle of a packet is read up to the cut, with a warning. Needs no
//! privileges.

use super::{CommandResult, EXIT_OK, UsageError};
use base64::Engine as _;
use clap::Args;
use serde_json::{Value, json};
use shadow_core::frame::FrameSkip;
use shadow_core::http::{
    Exchange, ExchangeAssembler, Header, HttpStats, Outcome, Protocol, Refusal, StreamLoss,
};
use shadow_core::pcap::{PcapError, PcapSource, PcapStats};
use shadow_core::reassembly::ReassemblyStats;
use shadow_core::vocabulary::OUTCOMES;
use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;

/// Flags of `shadowd inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The pcap or pcapng file to read.
    #[arg(long)]
    pub pcap: PathBuf,
    /// The production server's port (repeat for several).
    #[arg(long = "port", required = true)]
    pub ports: Vec<u16>,
    /// Also print decoded bodies (base64).
    #[arg(long)]
    pub bodies: bool,
}

/// Runs `shadowd inspect`.
pub fn main(args: InspectArgs) -> CommandResult {
    if args.ports.contains(&0) {
        return Err(UsageError("--port must be 1-65535".into()).into());
    }
    let source = PcapSource::open(&args.pcap, &args.ports)?;
    let stdout = std::io::stdout().lock();
    let summary = run(source, args.bodies, &mut BufWriter::new(stdout))?;
    eprintln!("{}", summary.line());
    if let Some(err) = &summary.read_error {
        eprintln!("shadowd: warning: {err}");
    }
    Ok(EXIT_OK)
}

/// What `inspect` saw.
#[derive(Debug, Default)]
pub struct Summary {
    pub http: HttpStats,
    pub reassembly: ReassemblyStats,
    pub packets: u64,
    pub cut_packets: u64,
    /// Packets that yielded no segment, by reason.
    pub frames: PcapStats,
    /// The file ended with an error after some packets (e.g. cut mid-packet).
    pub read_error: Option<String>,
}

impl Summary {
    /// The stderr summary line.
    pub fn line(&self) -> String {
        let h = &self.http;
        let r = &self.reassembly;
        let counts = |pairs: Vec<(&str, u64)>| {
            pairs
                .into_iter()
                .map(|(label, n)| format!("{label}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let outcomes = counts(
            OUTCOMES
                .iter()
                .map(|&o| (o.as_str(), h.outcome(o)))
                .collect(),
        );
        let line = format!(
            "inspect: exchanges {outcomes} | \
             packets={} cut={} request_bytes={} response_bytes={} gap_bytes={} duplicate_bytes={} \
             skipped_bytes={} orphan_responses={} flows={}",
            self.packets,
            self.cut_packets,
            h.request_bytes,
            h.response_bytes,
            r.gap_bytes,
            r.duplicate_bytes,
            h.skipped_bytes,
            h.orphan_responses,
            r.flows_total,
        );
        let refused = counts(
            Refusal::ALL
                .iter()
                .map(|&reason| (reason.as_str(), h.refused(reason)))
                .collect(),
        );
        let lost = counts(
            StreamLoss::ALL
                .iter()
                .map(|&reason| (reason.as_str(), h.lost(reason)))
                .collect(),
        );
        let skipped = counts(
            FrameSkip::ALL
                .iter()
                .map(|&reason| (reason.as_str(), self.frames.skipped(reason)))
                .collect(),
        );
        format!("{line} | refused {refused} | h2_streams_lost {lost} | frames_skipped {skipped}")
    }
}

/// Reads every segment of `source`, writes one JSON line per exchange to `out`.
pub fn run<R: Read>(
    mut source: PcapSource<R>,
    bodies: bool,
    out: &mut impl Write,
) -> anyhow::Result<Summary> {
    let mut assembler = ExchangeAssembler::default();
    let mut exchanges = Vec::new();
    let mut summary = Summary::default();
    while let Some(next) = source.next_segment() {
        match next {
            Ok(s) => assembler.push_cut(s.segment, s.missing, &mut exchanges),
            // A bad link type in a pcapng interface is as fatal as in a pcap header.
            Err(e @ PcapError::LinkType { .. }) => return Err(e.into()),
            // A file cut mid-packet: everything before the cut counts, with a warning.
            Err(e @ PcapError::Truncated { .. }) => {
                summary.read_error = Some(e.to_string());
                break;
            }
            Err(e) => {
                let e = anyhow::Error::new(e);
                summary.read_error = Some(format!("stopped reading early: {e:#}"));
                break;
            }
        }
        for exchange in exchanges.drain(..) {
            write_line(out, &exchange, bodies)?;
        }
    }
    assembler.finish(&mut exchanges);
    for exchange in exchanges.drain(..) {
        write_line(out, &exchange, bodies)?;
    }
    out.flush()?;
    let stats = source.stats();
    summary.http = assembler.http_stats();
    summary.reassembly = assembler.reassembly_stats();
    summary.packets = stats.packets;
    summary.cut_packets = stats.cut;
    summary.frames = stats;
    Ok(summary)
}

fn write_line(out: &mut impl Write, exchange: &Exchange, bodies: bool) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, &to_json(exchange, bodies))?;
    out.write_all(b"\n")
}

/// The JSON object of one exchange. Body lengths are decoded lengths; `null` when the body
/// was not kept whole (gap, truncated) or the message is absent. `grpc_status` is `null`
/// unless the exchange is a gRPC call with a status; gRPC calls also have
/// `request_messages` / `response_messages` (see [`grpc_messages`]).
pub fn to_json(exchange: &Exchange, bodies: bool) -> Value {
    let kept = |o: Outcome| matches!(o, Outcome::Complete | Outcome::NoResponse);
    let req = exchange.request.as_ref();
    let resp = exchange.prod_response.as_ref();
    let whole = kept(exchange.outcome);
    let grpc = exchange.protocol == Protocol::Grpc;
    let grpc_status = resp
        .filter(|_| grpc)
        .and_then(|r| {
            field(&r.trailers, "grpc-status").or_else(|| field(&r.headers, "grpc-status"))
        })
        .map(|status| match status.parse::<u32>() {
            Ok(code) => json!(code),
            Err(_) => json!(status),
        });
    let mut v = json!({
        "flow": exchange.flow.to_string(),
        "protocol": exchange.protocol.as_str(),
        "method": req.map(|r| r.method.as_str()),
        "path": req.map(|r| r.target.as_str()),
        "status": resp.map(|r| r.status),
        "grpc_status": grpc_status,
        "request_body_len": req.filter(|_| whole).map(|r| r.body.len()),
        "response_body_len": resp.filter(|_| whole).map(|r| r.body.len()),
        "latency_us": exchange.timing.latency_ns().map(|ns| ns / 1_000),
        "outcome": exchange.outcome.as_str(),
    });
    if grpc {
        v["request_messages"] = json!(req.filter(|_| whole).map(|r| grpc_messages(&r.body)));
        v["response_messages"] = json!(resp.filter(|_| whole).map(|r| grpc_messages(&r.body)));
    }
    if bodies {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        v["request_body_b64"] = json!(req.filter(|_| whole).map(|r| b64(&r.body)));
        v["response_body_b64"] = json!(resp.filter(|_| whole).map(|r| b64(&r.body)));
    }
    v
}

/// The first value of the field `name` (case-insensitive), as text.
fn field(headers: &[Header], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| String::from_utf8_lossy(&h.value).into_owned())
}

/// Sizes listed per direction at most (the count and total cover every message).
const MAX_LISTED_MESSAGES: usize = 32;

/// gRPC's length-prefixed messages in a body (1-byte compressed flag, 4-byte big-endian
/// length), counted and sized, never decoded: `count`, `bytes` (payload total), `sizes` (the
/// first [`MAX_LISTED_MESSAGES`]), `compressed` (messages with the flag set) and
/// `trailing_bytes` (bytes after the last whole message: a body that does not split into
/// messages).
pub fn grpc_messages(body: &[u8]) -> Value {
    let (mut count, mut bytes, mut compressed) = (0u64, 0u64, 0u64);
    let mut sizes = Vec::new();
    let mut rest = body;
    while let Some((prefix, after)) = rest.split_first_chunk::<5>() {
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if after.len() < len {
            break;
        }
        count += 1;
        bytes += len as u64;
        compressed += u64::from(prefix[0] & 1);
        if sizes.len() < MAX_LISTED_MESSAGES {
            sizes.push(len);
        }
        rest = &after[len..];
    }
    json!({
        "count": count,
        "bytes": bytes,
        "sizes": sizes,
        "compressed": compressed,
        "trailing_bytes": rest.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadow_core::frame::LinkType;
    use shadow_core::testkit::{self, Conn};
    use std::path::Path;

    fn inspect(bytes: &[u8], bodies: bool) -> (Vec<Value>, Summary) {
        let source = PcapSource::new(bytes, Path::new("mem.pcap"), &[8080]).unwrap();
        let mut out = Vec::new();
        let summary = run(source, bodies, &mut out).unwrap();
        let lines = String::from_utf8(out).unwrap();
        (
            lines
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
            summary,
        )
    }

    #[test]
    fn json_lines_per_exchange() {
        let mut c = Conn::new("[2001:db8::2]:40001", "[2001:db8::1]:8080");
        c.handshake();
        c.request(b"POST /v2/models/m/infer?x=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
        c.wait(2_500_000);
        c.response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        c.request(b"GET /health HTTP/1.1\r\n\r\n");
        let (lines, summary) = inspect(&testkit::pcap_bytes(c.segments()), true);
        assert_eq!(
            lines,
            vec![
                json!({
                    "flow": "[2001:db8::2]:40001 -> [2001:db8::1]:8080", "protocol": "http1",
                    "method": "POST", "path": "/v2/models/m/infer?x=1", "status": 200,
                    "grpc_status": null,
                    "request_body_len": 3, "response_body_len": 2,
                    // request segment at +3 µs, response 2.5 ms + 1 µs later
                    "latency_us": 2501, "outcome": "complete",
                    "request_body_b64": "YWJj", "response_body_b64": "b2s=",
                }),
                json!({
                    "flow": "[2001:db8::2]:40001 -> [2001:db8::1]:8080", "protocol": "http1",
                    "method": "GET", "path": "/health", "status": null, "grpc_status": null,
                    "request_body_len": 0, "response_body_len": null,
                    "latency_us": null, "outcome": "no_response",
                    "request_body_b64": "", "response_body_b64": null,
                }),
            ]
        );
        assert_eq!(summary.http.complete, 1);
        assert_eq!(summary.http.no_response, 1);
        assert_eq!(summary.packets, 6);
        assert!(summary.line().starts_with(
            "inspect: exchanges complete=1 gap=0 truncated=0 no_response=1 unparsable=0 \
             incomplete=0 | packets=6"
        ));
    }

    #[test]
    fn body_cut_by_snaplen_is_a_gap_never_a_short_body() {
        let mut body = b"POST /p HTTP/1.1\r\nContent-Length: 1000\r\n\r\n".to_vec();
        body.extend_from_slice(&[b'z'; 1000]);
        let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:8080").mss(1400);
        c.handshake()
            .request(&body)
            .response(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        c.request(b"GET /next HTTP/1.1\r\n\r\n")
            .response(b"HTTP/1.1 204 No Content\r\n\r\n")
            .close();
        let bytes = testkit::pcap_bytes_with(LinkType::Ethernet, c.segments(), 200);
        let (lines, summary) = inspect(&bytes, false);
        let got: Vec<_> = lines
            .iter()
            .map(|l| (l["path"].clone(), l["outcome"].clone(), l["status"].clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (json!("/p"), json!("gap"), json!(200)),
                (json!("/next"), json!("complete"), json!(204))
            ]
        );
        assert_eq!(summary.cut_packets, 1);
        assert_eq!(summary.reassembly.gap_bytes, 1042 + 54 - 200);
    }

    #[test]
    fn snap_length_with_an_ethernet_fcs_loses_no_request() {
        // zeek's pipelined-requests cut with `editcap -s 200`, FCS kept: orig_len - caplen
        // counted the 4 FCS bytes as missing payload, the next request's first 4 bytes were
        // then taken for duplicates and 4 of 5 requests vanished.
        let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:8080");
        c.handshake();
        for i in 0..5 {
            let body = "b".repeat(300);
            let request = format!("POST /{i} HTTP/1.1\r\nContent-Length: 300\r\n\r\n{body}");
            c.request(request.as_bytes())
                .response(b"HTTP/1.1 204 No Content\r\n\r\n");
        }
        c.close();
        let frames: Vec<Vec<u8>> = c
            .segments()
            .iter()
            .map(|s| {
                let mut frame = testkit::frame(LinkType::Ethernet, s);
                frame.extend_from_slice(&[0xfc, 0x5f, 0xc5, 0xcf]); // FCS
                frame
            })
            .collect();
        let (lines, summary) = inspect(
            &testkit::pcap_of_frames(LinkType::Ethernet, &frames, 200),
            false,
        );
        let got: Vec<_> = lines
            .iter()
            .map(|l| (l["path"].clone(), l["outcome"].clone()))
            .collect();
        let want: Vec<_> = (0..5)
            .map(|i| (json!(format!("/{i}")), json!("gap")))
            .collect();
        assert_eq!(got, want, "every request is seen, each a gap");
        assert_eq!(summary.cut_packets, 5);
        assert_eq!(summary.reassembly.duplicate_bytes, 0);
    }

    /// A gRPC call (unary, trailers with the status), a gRPC server stream answered with a
    /// trailers-only error, an h2 GET, and a second connection joined mid-way.
    #[test]
    fn one_line_per_http2_stream_with_grpc_status_and_messages() {
        use shadow_core::testkit::h2::{self, Framing, H2Writer, Style};
        let (mut cw, mut sw) = (H2Writer::default(), H2Writer::default());
        let (style, framing) = (Style::default(), Framing::default());
        let grpc = |path| {
            vec![
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "model:8080"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ]
        };
        let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:8080");
        c.handshake().request(&h2::client_preface());
        c.response(&h2::settings(&[]));
        let mut req = cw.headers(
            1,
            &grpc("/inference.GRPCInferenceService/ModelInfer"),
            false,
            style,
            framing,
        );
        let mut messages = h2::grpc_message(b"0123456789");
        messages.extend(h2::grpc_message(b"abc"));
        req.extend(cw.data(1, &messages, true, framing));
        req.extend(cw.headers(3, &grpc("/svc/Stream"), false, style, framing));
        req.extend(cw.data(3, &h2::grpc_message(b""), true, framing));
        let get = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/v2/health/ready"),
            (":authority", "m"),
        ];
        req.extend(cw.headers(5, &get, true, style, framing));
        c.request(&req);
        let ok = [(":status", "200"), ("content-type", "application/grpc")];
        let mut resp = sw.headers(1, &ok, false, style, framing);
        resp.extend(sw.data(1, &h2::grpc_message(&[7; 300]), false, framing));
        resp.extend(sw.headers(1, &[("grpc-status", "0")], true, style, framing));
        let unavailable = [
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "14"),
        ];
        resp.extend(sw.headers(3, &unavailable, true, style, framing));
        resp.extend(sw.headers(5, &[(":status", "200")], true, style, framing));
        c.response(&resp).close();
        // A connection whose start was not captured: its streams are counted, never guessed.
        let mut joined = Conn::new("10.0.0.1:40001", "10.0.0.2:8080");
        let mut late = H2Writer::default();
        late.headers(1, &get, true, style, framing);
        let mut req = late.headers(3, &get, true, style, framing);
        req.extend(h2::window_update(0, 1));
        req.extend(late.headers(5, &get, true, style, framing));
        joined.request(&req).close();
        let segments = [c.into_segments(), joined.into_segments()].concat();
        let (lines, summary) = inspect(&testkit::pcap_bytes(&segments), false);
        let pick = |l: &Value| {
            json!([
                l["protocol"],
                l["method"],
                l["path"],
                l["status"],
                l["grpc_status"],
                l["outcome"]
            ])
        };
        let got: Vec<Value> = lines.iter().map(pick).collect();
        assert_eq!(
            got,
            vec![
                json!([
                    "grpc",
                    "POST",
                    "/inference.GRPCInferenceService/ModelInfer",
                    200,
                    0,
                    "complete"
                ]),
                json!(["grpc", "POST", "/svc/Stream", 200, 14, "complete"]),
                json!(["h2", "GET", "/v2/health/ready", 200, null, "complete"]),
                json!(["h2", null, null, null, null, "gap"]),
                json!(["h2", null, null, null, null, "gap"]),
            ]
        );
        assert_eq!(
            lines[0]["request_messages"],
            json!({"count": 2, "bytes": 13, "sizes": [10, 3], "compressed": 0, "trailing_bytes": 0})
        );
        assert_eq!(
            lines[0]["response_messages"],
            json!({"count": 1, "bytes": 300, "sizes": [300], "compressed": 0, "trailing_bytes": 0})
        );
        assert_eq!(lines[1]["response_messages"]["count"], 0);
        assert!(lines[2].get("request_messages").is_none());
        assert_eq!(summary.http.complete, 3);
        assert!(
            summary.line().contains(
                "| h2_streams_lost hpack_unknown=2 rst_stream=0 goaway=0 over_stream_limit=0 push_promise=0 |"
            ),
            "{}",
            summary.line()
        );
    }

    #[test]
    fn grpc_messages_count_whole_messages_only() {
        let mut body = vec![1, 0, 0, 0, 2, b'z', b'z'];
        body.extend_from_slice(&[0, 0, 0, 0, 9, b'x']);
        assert_eq!(
            grpc_messages(&body),
            json!({"count": 1, "bytes": 2, "sizes": [2], "compressed": 1, "trailing_bytes": 6})
        );
        assert_eq!(grpc_messages(&[])["count"], 0);
    }
}
