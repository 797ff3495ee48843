//! `shadowd inspect`: pcap → HTTP exchanges as JSON lines.
//!
//! One JSON object per exchange on stdout (per connection in the order the requests were
//! sent), a summary line on stderr. Needs no privileges.

use super::{CommandResult, EXIT_OK, UsageError};
use crate::capture::pcap::PcapSource;
use crate::error::PcapError;
use crate::http::{Exchange, ExchangeAssembler, HttpStats, Outcome};
use crate::reassembly::ReassemblyStats;
use base64::Engine as _;
use clap::Args;
use serde_json::{Value, json};
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
    let source = PcapSource::open(&args.pcap, &args.ports).map_err(usage)?;
    let stdout = std::io::stdout().lock();
    let summary = run(source, args.bodies, &mut BufWriter::new(stdout))?;
    eprintln!("{}", summary.line());
    if let Some(err) = &summary.read_error {
        eprintln!("shadowd: warning: stopped reading early: {err}");
    }
    Ok(EXIT_OK)
}

/// File errors are the user's to fix: exit 2.
fn usage(err: PcapError) -> anyhow::Error {
    UsageError(err.to_string()).into()
}

/// What `inspect` saw.
#[derive(Debug, Default)]
pub struct Summary {
    pub http: HttpStats,
    pub reassembly: ReassemblyStats,
    pub packets: u64,
    pub cut_packets: u64,
    /// The file ended with an error after some packets (e.g. cut mid-packet).
    pub read_error: Option<String>,
}

impl Summary {
    /// The stderr summary line.
    pub fn line(&self) -> String {
        let h = &self.http;
        let r = &self.reassembly;
        format!(
            "inspect: exchanges complete={} gap={} truncated={} no_response={} unparsable={} | \
             packets={} cut={} request_bytes={} response_bytes={} gap_bytes={} duplicate_bytes={} \
             skipped_bytes={} orphan_responses={} flows={}",
            h.complete,
            h.gap,
            h.truncated,
            h.no_response,
            h.unparsable,
            self.packets,
            self.cut_packets,
            h.request_bytes,
            h.response_bytes,
            r.gap_bytes,
            r.duplicate_bytes,
            h.skipped_bytes,
            h.orphan_responses,
            r.flows_total,
        )
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
            Err(e @ PcapError::LinkType { .. }) => return Err(usage(e)),
            Err(e) => {
                summary.read_error = Some(e.to_string());
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
    Ok(summary)
}

fn write_line(out: &mut impl Write, exchange: &Exchange, bodies: bool) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, &to_json(exchange, bodies))?;
    out.write_all(b"\n")
}

/// The JSON object of one exchange. Body lengths are decoded lengths; `null` when the body
/// was not kept whole (gap, truncated) or the message is absent.
pub fn to_json(exchange: &Exchange, bodies: bool) -> Value {
    let kept = |o: Outcome| matches!(o, Outcome::Complete | Outcome::NoResponse);
    let req = exchange.request.as_ref();
    let resp = exchange.prod_response.as_ref();
    let whole = kept(exchange.outcome);
    let mut v = json!({
        "flow": exchange.flow.to_string(),
        "method": req.map(|r| r.method.as_str()),
        "path": req.map(|r| r.target.as_str()),
        "status": resp.map(|r| r.status),
        "request_body_len": req.filter(|_| whole).map(|r| r.body.len()),
        "response_body_len": resp.filter(|_| whole).map(|r| r.body.len()),
        "latency_us": exchange.timing.latency_ns().map(|ns| ns / 1_000),
        "outcome": exchange.outcome.as_str(),
    });
    if bodies {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        v["request_body_b64"] = json!(req.filter(|_| whole).map(|r| b64(&r.body)));
        v["response_body_b64"] = json!(resp.filter(|_| whole).map(|r| b64(&r.body)));
    }
    v
}
