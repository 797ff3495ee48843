//! `shadowd replay`: an offline shadow test of a recorded capture (from `shadowd record`,
//! tcpdump or Wireshark; pcap or pcapng). The file's exchanges go through the same pipeline
//! as `shadowd run`'s live ones ([`super::pipeline`]: admission → replay → compare →
//! evaluation → verdict), production's answers taken from the capture.
//!
//! `--speed 1x` (default) delivers the capture at its recorded pace; `max` as fast as the
//! shadow answers (replays in flight bounded by `shadow.concurrency`, sent as soon as there is
//! room: `mirror.pacing = asap`). Nothing is dropped for a slow shadow: the file waits.
//! Progress goes to stderr (a bar on a terminal, a plain line every few seconds otherwise),
//! then the summary to stdout (`--json`: one JSON object). The exit code is the verdict's
//! (0 PROMOTE, 3 HOLD, 4 REJECT) when criteria are configured, else 0.

use super::pipeline::{self, ExchangeSource, Finished, PipelineOptions};
use super::run::{RunArgs, check_files};
use super::verdict::{exit_code, load_criteria, render_table};
use super::{CommandResult, EXIT_OK, UsageError};
use crate::capture::file::{self, FileProgress, PcapFile, Speed};
use crate::config::{Config, Pacing, PresetName, ShadowUrl};
use crate::exchange_source;
use crate::mirror::RunSummary;
use crate::shutdown;
use crate::sinks::metrics::Metrics;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use shadow_core::criteria::Verdict;
use shadow_core::pcap::PcapStats;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the progress bar is redrawn.
const BAR_EVERY: Duration = Duration::from_millis(200);
/// How often a plain progress line is printed when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(2);
/// How long the shadow gets to accept a connection before the replay starts.
const REACH_TIMEOUT: Duration = Duration::from_secs(5);

/// Flags of `shadowd replay` (the config file's keys as for `shadowd run`; flags override).
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The capture to replay: pcap or pcapng (`shadowd record`, tcpdump, Wireshark).
    #[arg(long, value_name = "FILE")]
    pub pcap: PathBuf,
    /// The production server's port in the capture; repeat for several (`capture.ports`).
    #[arg(long = "port", short = 'p')]
    pub ports: Vec<u16>,
    /// Shadow model base URL (`shadow.url`), e.g. `http://127.0.0.1:8081`.
    #[arg(long, value_name = "URL")]
    pub shadow: Option<String>,
    /// TOML config file as for `shadowd run` (its `[capture]` interface and kind are unused);
    /// flags override its keys.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Ground truth, JSON lines `{"id": .., "label": ..}` or `{"id": .., "value": ..}` as
    /// POST /api/labels takes them (`ground_truth.labels_file`).
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// `1x`: the capture's recorded pacing; `max`: as fast as the shadow answers
    /// (`shadow.concurrency` in flight).
    #[arg(long, default_value = "1x", value_name = "1x|max")]
    pub speed: Speed,
    /// Save the aggregates to this state file at the end (`shadowd verdict --state` judges
    /// it); an existing file is replaced, not resumed.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Success criteria file (as `shadowd run --criteria`): the exit code is then the
    /// verdict's (0 PROMOTE, 3 HOLD, 4 REJECT).
    #[arg(long, value_name = "FILE")]
    pub criteria: Option<PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Base URL of a second instance of the production model (`shadow.baseline`).
    #[arg(long, value_name = "URL")]
    pub baseline: Option<String>,
    /// Prediction preset (`compare.preset`), as for `shadowd run`.
    #[arg(long, value_parser = super::run::parse_preset)]
    pub preset: Option<PresetName>,
    /// Replays in flight at most (`shadow.concurrency`).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Discrepancy log file (`discrepancy_log.path`).
    #[arg(long, value_name = "FILE")]
    pub discrepancy_log: Option<PathBuf>,
    /// Serve the admin API (/metrics, /api/summary) on this address while replaying (off by
    /// default, so a replay never collides with a running daemon).
    #[arg(long, value_name = "ADDR")]
    pub admin_addr: Option<SocketAddr>,
}

impl ReplayArgs {
    /// The flags `run` shares, in `run`'s terms: the config is merged as `run` merges it.
    fn as_run_args(&self) -> RunArgs {
        RunArgs {
            config: self.config.clone(),
            ports: self.ports.clone(),
            shadow: self.shadow.clone(),
            baseline: self.baseline.clone(),
            admin_addr: self.admin_addr,
            preset: self.preset,
            concurrency: self.concurrency,
            discrepancy_log: self.discrepancy_log.clone(),
            labels: self.labels.clone(),
            state: self.state.clone(),
            ..RunArgs::default()
        }
    }

    /// The effective config: the file and flags as `run` merges them, then `--speed max`'s
    /// pacing.
    pub fn effective_config(&self) -> Result<Config, UsageError> {
        let run = self.as_run_args();
        let mut config = run.effective_config().map_err(UsageError::from)?;
        if let Some(path) = &self.criteria {
            config.criteria = load_criteria(path)?;
        }
        if self.speed == Speed::Max {
            config.mirror.pacing = Pacing::Asap;
        }
        Ok(config)
    }
}

/// Runs `shadowd replay`.
pub fn main(args: ReplayArgs) -> CommandResult {
    if args.ports.is_empty() && args.config.is_none() {
        return Err(UsageError(
            "--port is required: the production server's port in the capture".into(),
        )
        .into());
    }
    let config = args.effective_config()?;
    let access = check_files(&args.as_run_args(), &config)?;
    let ports: Vec<u16> = config.capture.ports.iter().map(|p| p.get()).collect();
    // The file is opened (and its format checked) before anything else starts.
    let pcap = PcapFile::open(&args.pcap, &ports)?;
    let progress = pcap.progress();
    let config = Arc::new(config);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("shadowd")
        .build()?;
    let started = Instant::now();
    let metrics = pipeline::metrics(&config);
    let finished = runtime.block_on(async {
        reach(&config.shadow.url, "shadow").await?;
        if let Some(baseline) = &config.shadow.baseline {
            reach(baseline, "noise baseline").await?;
        }
        let (trigger, _) = shutdown::channel();
        trigger.trip_on_signals();
        let options = PipelineOptions {
            admin: args.admin_addr.map(|_| access),
            resources: false,
            rollback: false,
            wait_for_room: true,
            resume_state: false,
            reloads: None,
        };
        let speed = args.speed;
        let source: ExchangeSource = Box::new(move |config, telemetry, shutdown| {
            let file = pcap.start(speed, shutdown)?;
            Ok(exchange_source::start_offline(
                file.capture,
                config,
                telemetry,
            ))
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let reporter = tokio::spawn(report_progress(
            progress.clone(),
            metrics.clone(),
            args.pcap.clone(),
            stopped,
        ));
        let finished =
            pipeline::run(config.clone(), options, metrics.clone(), trigger, source).await;
        let _ = stop.send(());
        let _ = reporter.await;
        finished
    })?;
    let elapsed = started.elapsed();
    if let Some(err) = progress.read_error() {
        eprintln!("shadowd: warning: {err}");
    }
    let summary = ReplaySummary::new(&args.pcap, &progress, &finished, elapsed);
    if summary.capture.segments == 0 {
        return Err(no_traffic(&args.pcap, &ports));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.render());
    }
    Ok(match &summary.verdict {
        Some(v) if !v.criteria.is_empty() => exit_code(v.decision),
        _ => EXIT_OK,
    })
}

/// Connects to `url` once (bounded): an unreachable shadow fails the replay before it starts.
async fn reach(url: &ShadowUrl, what: &str) -> anyhow::Result<()> {
    let authority = url.authority();
    let target = match authority.port_u16() {
        Some(_) => authority.as_str().to_string(),
        None => format!("{}:80", authority.as_str()),
    };
    let connect = tokio::net::TcpStream::connect(target.as_str());
    match tokio::time::timeout(REACH_TIMEOUT, connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(anyhow::anyhow!(
            "cannot reach the {what} at {}: {e}; is it running and listening there?",
            url.uri()
        )),
        Err(_) => Err(anyhow::anyhow!(
            "cannot reach the {what} at {}: no answer to a connection within {}s",
            url.uri(),
            REACH_TIMEOUT.as_secs()
        )),
    }
}

/// The error for a capture without traffic on the watched ports: names the ports that have
/// some.
fn no_traffic(path: &Path, ports: &[u16]) -> anyhow::Error {
    let watched = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let others = match file::ports_with_traffic(path) {
        Ok(found) if found.is_empty() => "it holds no TCP traffic at all".to_string(),
        Ok(found) => format!(
            "TCP ports with traffic in it: {}",
            found
                .iter()
                .take(10)
                .map(|(port, n)| format!("{port} ({n} segments)"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Err(e) => format!("(its ports could not be listed: {e})"),
    };
    UsageError(format!(
        "`{}` has no TCP traffic on port {watched}: {others}; pass the production port with \
         --port",
        path.display()
    ))
    .into()
}

/// Shows how far the replay is until `stop`: a bar on a terminal, plain lines (and a last one
/// at the end) otherwise.
async fn report_progress(
    progress: Arc<FileProgress>,
    metrics: Metrics,
    path: PathBuf,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let bar = terminal.then(|| {
        let bar = ProgressBar::with_draw_target(
            Some(progress.size),
            ProgressDrawTarget::stderr_with_hz(5),
        );
        let style = ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:24}] {percent:>3}% of {total_bytes}: {msg}, ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar
    });
    let mut tick = tokio::time::interval(if terminal { BAR_EVERY } else { LINE_EVERY });
    tick.tick().await;
    loop {
        let done = tokio::select! {
            _ = &mut stop => true,
            _ = tick.tick() => false,
        };
        let (read, replayed) = metrics.requests_handled();
        let status = Status {
            position: progress.bytes_read(),
            size: progress.size,
            read,
            replayed,
            elapsed: started.elapsed(),
        };
        match &bar {
            Some(bar) if done => bar.finish_and_clear(),
            Some(bar) => {
                bar.set_position(status.position);
                bar.set_message(status.counts());
            }
            None => eprintln!("replay: {}: {}", path.display(), status.line()),
        }
        if done {
            return;
        }
    }
}

/// One look at the replay's progress.
#[derive(Clone, Copy, Debug)]
struct Status {
    /// Bytes of the file read.
    position: u64,
    /// The file's size.
    size: u64,
    /// Exchanges read from the file.
    read: u64,
    /// Replays finished.
    replayed: u64,
    /// Since the start.
    elapsed: Duration,
}

impl Status {
    /// Replays per second so far.
    fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.replayed as f64 / secs
        } else {
            0.0
        }
    }

    /// Time left, from the share of the file read so far (`None` before anything was read).
    fn eta(&self) -> Option<Duration> {
        if self.position == 0 || self.size == 0 {
            return None;
        }
        let left = self.size.saturating_sub(self.position) as f64 / self.position as f64;
        Some(self.elapsed.mul_f64(left))
    }

    fn counts(&self) -> String {
        format!(
            "exchanges read {} replayed {} ({:.0}/s)",
            self.read,
            self.replayed,
            self.rate()
        )
    }

    /// The plain progress line.
    fn line(&self) -> String {
        let percent = if self.size > 0 {
            self.position as f64 * 100.0 / self.size as f64
        } else {
            100.0
        };
        let eta = self
            .eta()
            .map_or("?".to_string(), |d| format!("{}s", d.as_secs()));
        format!(
            "{percent:.0}% of {:.1} MiB, {}, ETA {eta}",
            self.size as f64 / (1 << 20) as f64,
            self.counts()
        )
    }
}

/// What the file held.
#[derive(Clone, Debug, Serialize)]
pub struct CaptureSummary {
    /// The capture file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Packets in it.
    pub packets: u64,
    /// TCP segments of the watched ports.
    pub segments: u64,
    /// Segments cut by the capture's snap length.
    pub cut: u64,
    /// The reader stopped before the end of the file (cut mid-packet, corrupt block).
    pub read_error: Option<String>,
}

/// What `shadowd replay` prints: the run's summary (the one `shadowd run` logs at stop and
/// `/api/summary` serves), the counters the demo prints, and the verdict.
#[derive(Clone, Debug, Serialize)]
pub struct ReplaySummary {
    /// The file.
    pub capture: CaptureSummary,
    /// Wall time of the replay.
    pub elapsed_seconds: f64,
    /// Exchanges replayed per second of it.
    pub exchanges_per_second: f64,
    /// Exchanges seen, by outcome (`shadowtap_exchanges_total`).
    pub exchanges: BTreeMap<String, u64>,
    /// Replays, by result (`shadowtap_mirrored_requests_total`).
    pub mirrored: BTreeMap<String, u64>,
    /// Exchanges not replayed, by reason (`shadowtap_mirror_skipped_total`).
    pub skipped: BTreeMap<String, u64>,
    /// Lost before mirroring, by stage (`shadowtap_capture_dropped_total`).
    pub dropped: BTreeMap<String, u64>,
    /// Admission, replay and the evaluation (agreement, latency, errors, ground truth).
    pub run: RunSummary,
    /// The verdict on the criteria (`null` when none was judged).
    pub verdict: Option<Verdict>,
}

impl ReplaySummary {
    fn new(path: &Path, progress: &FileProgress, finished: &Finished, elapsed: Duration) -> Self {
        let stats: PcapStats = progress.stats();
        let families = finished.metrics.registry().gather();
        let by = |name: &str, label: &str| counters_by_label(&families, name, label);
        let replayed = finished.summary.replayed;
        ReplaySummary {
            capture: CaptureSummary {
                path: path.to_owned(),
                bytes: progress.size,
                packets: stats.packets,
                segments: stats.segments,
                cut: stats.cut,
                read_error: progress.read_error(),
            },
            elapsed_seconds: elapsed.as_secs_f64(),
            exchanges_per_second: replayed as f64 / elapsed.as_secs_f64().max(1e-9),
            exchanges: by("shadowtap_exchanges_total", "outcome"),
            mirrored: by("shadowtap_mirrored_requests_total", "result"),
            skipped: by("shadowtap_mirror_skipped_total", "reason"),
            dropped: by("shadowtap_capture_dropped_total", "stage"),
            run: finished.summary.clone(),
            verdict: finished.verdict.as_ref().map(|(v, _)| v.clone()),
        }
    }

    /// The human summary (as the demo prints it).
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let e = &self.run.evaluation.overall;
        let c = &self.capture;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "shadowd replay: {} ({:.1} MiB, {} packets, {} segments) in {:.1}s, {:.0} exchanges/s",
            c.path.display(),
            c.bytes as f64 / (1 << 20) as f64,
            c.packets,
            c.segments,
            self.elapsed_seconds,
            self.exchanges_per_second
        );
        let o = &mut out;
        let total = |m: &BTreeMap<String, u64>| m.values().sum::<u64>().to_string();
        row(o, "requests seen in the capture", total(&self.exchanges));
        breakdown(o, &self.exchanges);
        row(o, "mirrored to the shadow", total(&self.mirrored));
        breakdown(o, &self.mirrored);
        row(o, "skipped", total(&self.skipped));
        breakdown(o, &self.skipped);
        row(o, "compared", e.compared.to_string());
        for (unit, a) in [("request", &e.agreement.request), ("row", &e.agreement.row)] {
            let value = match a.ratio {
                Some(r) => format!("{:.1}% ({}/{})", r * 100.0, a.agreed, a.samples),
                None => "n/a".to_string(),
            };
            row(o, &format!("agreement per {unit}"), value);
        }
        let ms = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.2} ms"));
        for (model, l) in [
            ("production", &e.latency_production),
            ("shadow", &e.latency_shadow),
        ] {
            let value = format!("{} / {}", ms(l.p50_ms), ms(l.p99_ms));
            row(o, &format!("latency p50 / p99 ({model})"), value);
        }
        row(o, "errors (production)", total(&e.production_errors));
        row(o, "errors (shadow)", total(&e.shadow_errors));
        row(o, "lost before mirroring", total(&self.dropped));
        breakdown(o, &self.dropped);
        row(o, "discrepancies", total(&e.discrepancies));
        breakdown(o, &e.discrepancies);
        if self.run.evaluation.labels.enabled {
            let counters = &self.run.evaluation.labels.counters;
            row(
                o,
                "ground truth labels joined",
                counters.join.joined.to_string(),
            );
        }
        if let Some(v) = &self.verdict
            && !v.criteria.is_empty()
        {
            out.push('\n');
            out.push_str(&render_table(v));
        }
        out
    }
}

/// One summary line: what, then the value right-aligned.
fn row(out: &mut String, what: &str, value: String) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "  {what:<34} {value:>10}");
}

/// The non-zero entries of `counts`, indented under their total.
fn breakdown(out: &mut String, counts: &BTreeMap<String, u64>) {
    use std::fmt::Write as _;
    for (label, n) in counts.iter().filter(|&(_, &n)| n > 0) {
        let _ = writeln!(out, "    {label:<32} {n:>10}");
    }
}

/// The counters of the metric `name` summed per value of `label` (other labels summed over).
fn counters_by_label(
    families: &[prometheus::proto::MetricFamily],
    name: &str,
    label: &str,
) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for family in families.iter().filter(|f| f.name() == name) {
        for metric in family.get_metric() {
            let Some(value) = metric
                .get_label()
                .iter()
                .find(|l| l.name() == label)
                .map(|l| l.value().to_string())
            else {
                continue;
            };
            *out.entry(value).or_insert(0) += metric.get_counter().get_value() as u64;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        replay: ReplayArgs,
    }

    fn parse(args: &[&str]) -> Result<ReplayArgs, clap::Error> {
        let mut argv = vec!["t"];
        argv.extend_from_slice(args);
        T::try_parse_from(argv).map(|t| t.replay)
    }

    #[test]
    fn flags_become_the_config_run_would_make() {
        let args = parse(&[
            "--pcap",
            "x.pcap",
            "--port",
            "8080",
            "--shadow",
            "http://127.0.0.1:8081",
            "--concurrency",
            "7",
        ])
        .unwrap();
        assert_eq!(args.speed, Speed::Recorded, "1x by default");
        let c = args.effective_config().unwrap();
        assert_eq!(c.capture.ports[0].get(), 8080);
        assert_eq!(c.shadow.concurrency.get(), 7);
        assert_eq!(
            c.mirror.pacing,
            Pacing::Production,
            "1x keeps the configured pacing"
        );
        let max = parse(&[
            "--pcap",
            "x.pcap",
            "-p",
            "8080",
            "--shadow",
            "http://127.0.0.1:8081",
            "--speed",
            "max",
        ])
        .unwrap();
        assert_eq!(max.effective_config().unwrap().mirror.pacing, Pacing::Asap);
    }

    #[test]
    fn bad_arguments_are_refused_with_what_to_write() {
        let err = parse(&["--pcap", "x.pcap", "--speed", "2x"]).err().unwrap();
        assert!(
            err.to_string()
                .contains("expected 1x (recorded pacing) or max"),
            "{err}"
        );
        assert!(parse(&["--port", "8080"]).is_err(), "--pcap is required");
        // The shadow is checked as `run` checks it, naming the flag.
        let args = parse(&["--pcap", "x.pcap", "-p", "8080", "--shadow", "ftp://x"]).unwrap();
        let err = args.effective_config().unwrap_err();
        assert!(err.to_string().contains("--shadow"), "{err}");
        // No port at all.
        let err = main(parse(&["--pcap", "x.pcap", "--shadow", "http://127.0.0.1:1"]).unwrap())
            .unwrap_err();
        assert_eq!(super::super::exit_code(&err), super::super::EXIT_USAGE);
        assert!(err.to_string().contains("--port is required"), "{err}");
    }

    #[test]
    fn a_missing_or_garbage_file_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pcap");
        std::fs::write(&garbage, b"this is not a capture file at all").unwrap();
        let missing = dir.path().join("missing.pcap");
        for (path, says) in [
            (&missing, "cannot open"),
            (&garbage, "is not a pcap or pcapng file"),
        ] {
            let args = parse(&[
                "--pcap",
                path.to_str().unwrap(),
                "-p",
                "8080",
                "--shadow",
                "http://127.0.0.1:1",
            ])
            .unwrap();
            let err = main(args).unwrap_err();
            assert_eq!(
                super::super::exit_code(&err),
                super::super::EXIT_USAGE,
                "{err:#}"
            );
            assert!(format!("{err:#}").contains(says), "{err:#}");
        }
    }

    #[test]
    fn progress_lines_tell_share_rate_and_time_left() {
        let s = Status {
            position: 25 << 20,
            size: 100 << 20,
            read: 1000,
            replayed: 900,
            elapsed: Duration::from_secs(10),
        };
        assert_eq!(s.eta(), Some(Duration::from_secs(30)));
        assert_eq!(
            s.line(),
            "25% of 100.0 MiB, exchanges read 1000 replayed 900 (90/s), ETA 30s"
        );
        let start = Status {
            position: 0,
            elapsed: Duration::ZERO,
            ..s
        };
        assert_eq!(start.eta(), None);
        assert_eq!(start.rate(), 0.0);
    }
}
