//! `shadowd record`: tap the production port and write every captured segment, with its full
//! payload, to a pcap file that tcpdump and Wireshark read.

use super::{CommandResult, EXIT_OK, UsageError};
use crate::capture::{CaptureKind, TapSpec, open_live};
use crate::error::CaptureError;
use crate::shutdown;
use clap::Args;
use shadow_core::pcap::PcapError;
use shadow_core::pcap_writer::SegmentPcapWriter;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `shadowd record`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  sudo shadowd record --interface lo --port 8080 --output prod.pcap --duration 30s\n  \
tcpdump -r prod.pcap -A   # or open it in Wireshark: Follow > TCP Stream"
)]
pub struct RecordArgs {
    /// Interface to tap (e.g. `lo`, `eth0`).
    #[arg(long, short = 'i')]
    pub interface: String,
    /// Production server TCP port; repeat for several (up to 8).
    #[arg(long = "port", short = 'p', required = true)]
    pub ports: Vec<u16>,
    /// pcap file to write (created or truncated).
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// Stop after this many segments.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this long, e.g. `30s`, `5m`, `500ms` (default: until Ctrl-C / SIGTERM).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Capture backend: `ebpf` (TC/TCX tap) or `afpacket` (raw socket, where eBPF cannot load).
    #[arg(long, value_enum, default_value_t = CaptureKind::Ebpf)]
    pub capture: CaptureKind,
}

/// How often the pcap file is flushed while recording: a file being recorded stays readable
/// (`tcpdump -r`) and a crash loses at most this much.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Parses `500ms`, `30s`, `5m`, `1h` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 30s, 5m or 500ms"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` (use ms, s, m or h)"
            ));
        }
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("duration `{text}` must be positive"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// What one recording captured.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecordSummary {
    pub segments: u64,
    pub bytes: u64,
    pub packets: u64,
    pub dropped: u64,
    pub truncated: u64,
    /// Packets the eBPF tap could not read the headers of (0 with AF_PACKET).
    pub malformed: u64,
}

/// Runs `shadowd record`.
pub fn main(args: RecordArgs) -> CommandResult {
    let spec = TapSpec {
        interface: args.interface.clone(),
        ports: args.ports.clone(),
    };
    spec.validate()?;
    if args.count == Some(0) {
        return Err(UsageError("--count must be at least 1".into()).into());
    }
    let file = File::create(&args.output).map_err(|source| PcapError::Create {
        path: args.output.clone(),
        source,
    })?;
    let writer = SegmentPcapWriter::new(BufWriter::with_capacity(1 << 20, file)).map_err(|e| {
        let source = match e {
            pcap_file::PcapError::IoError(io) => io,
            other => std::io::Error::other(other),
        };
        write_error(&args.output, source)
    })?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let output = args.output.clone();
    let summary = match runtime.block_on(record(args, spec, writer)) {
        Ok(summary) => summary,
        Err(err) => {
            // The tap did not start: leave no header-only file that looks like a recording.
            if err.downcast_ref::<CaptureError>().is_some() {
                let _ = std::fs::remove_file(&output);
            }
            return Err(err);
        }
    };
    tracing::info!(
        "shadowd record: {} segments ({} payload bytes) written as {} packets; dropped {}, truncated {}, malformed {}",
        summary.segments,
        summary.bytes,
        summary.packets,
        summary.dropped,
        summary.truncated,
        summary.malformed
    );
    Ok(EXIT_OK)
}

async fn record(
    args: RecordArgs,
    spec: TapSpec,
    mut writer: SegmentPcapWriter<BufWriter<File>>,
) -> anyhow::Result<RecordSummary> {
    let (stop, watcher) = shutdown::channel();
    stop.trip_on_signals();
    let mut capture = open_live(args.capture, &spec, None, watcher)?;
    tracing::info!(
        "shadowd record: tapping {} port(s) {:?} with {:?}; writing {} (Ctrl-C to stop)",
        spec.interface,
        spec.ports,
        args.capture,
        args.output.display()
    );

    // On Ctrl-C, SIGTERM or the deadline the capture stops reading new traffic, hands over
    // what it already captured and closes the channel: everything captured is written.
    let mut deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut summary = RecordSummary::default();
    let mut flush = tokio::time::interval(FLUSH_INTERVAL);
    loop {
        let next = tokio::select! {
            segment = capture.segments.recv() => segment,
            _ = flush.tick() => {
                writer.flush().map_err(|e| write_error(&args.output, e))?;
                continue;
            }
            _ = sleep_until(deadline), if deadline.is_some() => {
                deadline = None;
                stop.trigger();
                continue;
            }
        };
        // (A segment the capture cut is written as captured: the file shows the hole.)
        let Some(segment) = next.map(|captured| captured.segment) else {
            break;
        };
        writer
            .write(&segment)
            .map_err(|e| write_error(&args.output, e))?;
        summary.segments += 1;
        summary.bytes += segment.payload.len() as u64;
        if args.count.is_some_and(|n| summary.segments >= n) {
            break;
        }
    }
    let stats = capture.stats.snapshot();
    drop(capture);
    summary.dropped = stats.dropped;
    summary.truncated = stats.truncated;
    summary.malformed = stats.kernel.malformed;
    summary.packets = writer.packets();
    writer.finish().map_err(|e| write_error(&args.output, e))?;
    Ok(summary)
}

fn write_error(path: &std::path::Path, source: std::io::Error) -> PcapError {
    PcapError::Write {
        path: path.to_owned(),
        source,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("3days").is_err());
    }
}
