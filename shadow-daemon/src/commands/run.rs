//! `shadowd run`: the daemon. Tap the production port, replay to the shadow, compare, export.
//!
//! Configuration comes from `--config FILE` (TOML, every key optional) with flags overriding
//! the file; see `deploy/shadowtap.example.toml`.

use super::pipeline::{self, ExchangeSource, Finished, PipelineOptions};
use super::{CommandResult, EXIT_OK, UsageError};
use crate::capture::CaptureKind;
use crate::commands::verdict::load_criteria;
use crate::config::raw::List;
use crate::config::{Config, ConfigChange, ConfigError, Origin, PresetName, RawConfig, Setting};
use crate::privileges::{self, CapSets};
use crate::security::{self, AdminToken, SecurityError};
use crate::service::{self, Heartbeat};
use crate::shutdown::{self, Shutdown};
use crate::sinks::admin::AdminAccess;
use crate::sinks::metrics::{Metrics, ReloadMetric};
use crate::telemetry::Telemetry;
use clap::Args;
use shadow_core::http::Exchange;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, watch};

/// Flags of `shadowd run` (each overrides the config file key named in its help).
#[derive(Clone, Debug, Default, Args)]
pub struct RunArgs {
    /// TOML config file; flags override its keys.
    #[arg(long, short = 'c', env = "SHADOWD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Interface to tap (`capture.interface`), e.g. `lo`, `eth0`.
    #[arg(long, short = 'i')]
    pub interface: Option<String>,
    /// Production server port; repeat for several (`capture.ports`).
    #[arg(long = "port", short = 'p')]
    pub ports: Vec<u16>,
    /// Capture backend (`capture.kind`).
    #[arg(long, value_enum)]
    pub capture: Option<CaptureKind>,
    /// Shadow model base URL (`shadow.url`), e.g. `http://127.0.0.1:8081`.
    #[arg(long)]
    pub shadow: Option<String>,
    /// Base URL of a second instance of the production model (`shadow.baseline`), replayed to
    /// alongside the shadow so that what differs between production and its twin is reported
    /// as noise, apart from the shadow's real discrepancies.
    #[arg(long, value_name = "URL")]
    pub baseline: Option<String>,
    /// Admin address for /metrics, /healthz, /api/summary (`admin.addr`); loopback by
    /// default, any other address needs --admin-token-file.
    #[arg(long)]
    pub admin_addr: Option<SocketAddr>,
    /// File holding the admin API's bearer token (`admin.token_file`), never the token itself:
    /// `POST /api/labels` needs it, and so does every endpoint but /healthz when the admin
    /// address is not loopback. The file must be readable by shadowd's user only.
    #[arg(long, value_name = "FILE", env = "SHADOWD_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Percentage of requests mirrored, 0-100 (`mirror.sample_percent`).
    #[arg(long)]
    pub sample: Option<f64>,
    /// Requests per second to the shadow, 0 = unlimited (`mirror.rate_limit`).
    #[arg(long)]
    pub rate_limit: Option<f64>,
    /// Replay queue depth (`mirror.queue`).
    #[arg(long)]
    pub queue: Option<usize>,
    /// Methods mirrored, replacing the list; repeat (`mirror.methods`).
    #[arg(long = "method")]
    pub methods: Vec<String>,
    /// Replays in flight at most (`shadow.concurrency`).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// When replays are sent: production (its order, spacing and concurrency) or asap
    /// (`mirror.pacing`).
    #[arg(long)]
    pub pacing: Option<String>,
    /// Per-request shadow timeout in milliseconds (`shadow.timeout_ms`).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// `Host` on replayed requests: preserve, shadow, or a literal (`shadow.host_header`).
    #[arg(long)]
    pub host_header: Option<String>,
    /// The model name the shadow serves under, put into Open Inference Protocol, TF-Serving and
    /// MLflow deployment paths in place of production's (`shadow.model`).
    #[arg(long, value_name = "NAME")]
    pub shadow_model: Option<String>,
    /// `Accept-Encoding` on replayed requests: preserve (production's) or identity
    /// (`shadow.accept_encoding`).
    #[arg(long, value_name = "MODE")]
    pub accept_encoding: Option<String>,
    /// Prediction preset: kserve-v2, tfserving, mlflow, kserve-v2-grpc, tfserving-grpc,
    /// json-pointer, none (`compare.preset`).
    #[arg(long, value_parser = parse_preset)]
    pub preset: Option<PresetName>,
    /// JSON pointer of the prediction for `--preset json-pointer` (`compare.prediction_pointer`).
    #[arg(long)]
    pub prediction_pointer: Option<String>,
    /// JSON pointer ignored in body diffs, added to `compare.ignore_paths` (and the preset's
    /// own); repeat for several.
    #[arg(long = "ignore-path", value_name = "POINTER")]
    pub ignore_paths: Vec<String>,
    /// A `.proto` file whose services production serves over gRPC: their messages are decoded
    /// to JSON by it (the method from each request's path) and diffed field by field; added to
    /// `compare.proto`, repeat for several. Compiled at start-up, no `protoc` needed.
    #[arg(long = "proto", value_name = "FILE.proto")]
    pub protos: Vec<PathBuf>,
    /// A directory the `--proto` files' imports are found in (as `protoc -I`); added to
    /// `compare.proto_include`, repeat for several.
    #[arg(long = "proto-include", value_name = "DIR")]
    pub proto_includes: Vec<PathBuf>,
    /// Discrepancy log file (`discrepancy_log.path`).
    #[arg(long)]
    pub discrepancy_log: Option<PathBuf>,
    /// Success criteria file (top-level keys as in `[criteria]`, see
    /// deploy/criteria.example.toml); replaces the config's `[criteria]`. The verdict is
    /// judged every second: /api/verdict, `shadowtap_verdict`.
    #[arg(long, value_name = "FILE")]
    pub criteria: Option<PathBuf>,
    /// Ground truth known in advance, JSON lines `{"id": .., "label": ..}`
    /// (`ground_truth.labels_file`); later labels go to POST /api/labels.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// State file: the aggregates are saved there every `state.interval_ms` and at stop, and
    /// resumed from it at start (`state.path`).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

pub(crate) fn parse_preset(name: &str) -> Result<PresetName, String> {
    serde_json::from_value(name.into()).map_err(|_| {
        "expected kserve-v2, tfserving, mlflow, kserve-v2-grpc, tfserving-grpc, json-pointer \
             or none"
            .to_string()
    })
}

impl From<ConfigError> for UsageError {
    fn from(e: ConfigError) -> Self {
        UsageError(e.to_string())
    }
}

impl RunArgs {
    /// The config file (or defaults) with these flags applied, checked: every problem at once.
    pub fn effective_config(&self) -> Result<Config, ConfigError> {
        let mut raw = RawConfig::load(self.config.as_deref())?;
        self.apply(&mut raw);
        Config::try_from(raw)
    }

    /// Overrides config keys with the flags that were given (each remembers its flag, so a
    /// problem with its value names the flag).
    pub fn apply(&self, c: &mut RawConfig) {
        if let Some(v) = &self.interface {
            c.capture.interface = Setting::flag("--interface", v.clone());
        }
        if !self.ports.is_empty() {
            c.capture.ports = Setting::flag_list("--port", self.ports.iter().copied());
        }
        if let Some(v) = self.capture {
            c.capture.kind = Setting::flag("--capture", v);
        }
        if let Some(v) = &self.shadow {
            c.shadow.url = Some(Setting::flag("--shadow", v.clone()));
        }
        if let Some(v) = &self.baseline {
            c.shadow.baseline = Some(Setting::flag("--baseline", v.clone()));
        }
        if let Some(v) = self.admin_addr {
            c.admin.addr = Setting::flag("--admin-addr", v);
        }
        if let Some(v) = &self.admin_token_file {
            c.admin.token_file = Some(Setting::flag("--admin-token-file", v.clone()));
        }
        if let Some(v) = self.sample {
            c.mirror.sample_percent = Setting::flag("--sample", v);
        }
        if let Some(v) = self.rate_limit {
            c.mirror.rate_limit = Setting::flag("--rate-limit", v);
        }
        if let Some(v) = self.queue {
            c.mirror.queue = Setting::flag("--queue", v);
        }
        if !self.methods.is_empty() {
            c.mirror.methods = Setting::flag_list("--method", self.methods.iter().cloned());
        }
        if let Some(v) = self.concurrency {
            c.shadow.concurrency = Setting::flag("--concurrency", v);
        }
        if let Some(v) = &self.pacing {
            c.mirror.pacing = Setting::flag("--pacing", v.clone());
        }
        if let Some(v) = self.timeout_ms {
            c.shadow.timeout_ms = Setting::flag("--timeout-ms", v);
        }
        if let Some(v) = &self.host_header {
            c.shadow.host_header = Setting::flag("--host-header", v.clone());
        }
        if let Some(v) = &self.shadow_model {
            c.shadow.model = Some(Setting::flag("--shadow-model", v.clone()));
        }
        if let Some(v) = &self.accept_encoding {
            c.shadow.accept_encoding = Setting::flag("--accept-encoding", v.clone());
        }
        if let Some(v) = self.preset {
            c.compare.preset = Setting::flag("--preset", v);
        }
        if let Some(v) = &self.prediction_pointer {
            c.compare.prediction_pointer = Some(Setting::flag("--prediction-pointer", v.clone()));
        }
        // Added to the file's list (each element remembers its flag), not replacing it.
        let added = self
            .ignore_paths
            .iter()
            .map(|p| Setting::flag("--ignore-path", p.clone()));
        c.compare.ignore_paths.value.extend(added);
        // Added to the file's lists too; a list only the flags gave is named by its flag.
        extend_list(&mut c.compare.proto, "--proto", &self.protos);
        extend_list(
            &mut c.compare.proto_include,
            "--proto-include",
            &self.proto_includes,
        );
        if let Some(v) = &self.discrepancy_log {
            c.discrepancy_log.path = Some(Setting::flag("--discrepancy-log", v.clone()));
        }
        if let Some(v) = &self.labels {
            c.ground_truth.labels_file = Some(Setting::flag("--labels", v.clone()));
        }
        if let Some(v) = &self.state {
            c.state.path = Some(Setting::flag("--state", v.clone()));
        }
    }
}

/// Appends `items` given by `flag` to `list`; a list the config file did not give is then
/// named by the flag.
fn extend_list<T: Clone>(list: &mut List<T>, flag: &'static str, items: &[T]) {
    if items.is_empty() {
        return;
    }
    if list.origin == Origin::Default {
        list.origin = Origin::Flag(flag);
    }
    list.value
        .extend(items.iter().map(|v| Setting::flag(flag, v.clone())));
}

/// The checks made before anything is opened or attached (docs/security.md): the config file
/// and the token file writable by their owner only (the token file also unreadable by
/// others), the directories shadowd writes into not world-writable; returns who may use the
/// admin API.
pub fn check_files(args: &RunArgs, config: &Config) -> Result<AdminAccess, SecurityError> {
    if let Some(path) = &args.config {
        security::refuse_writable_by_others(path, "config file")?;
    }
    if let Some(path) = &config.discrepancy_log.path {
        security::refuse_world_writable_dir(path, "discrepancy log")?;
    }
    if let Some(path) = &config.state.path {
        security::refuse_world_writable_dir(path, "state file")?;
    }
    let token = match &config.admin.token_file {
        Some(path) => Some(AdminToken::read(path)?),
        None => None,
    };
    Ok(AdminAccess::new(config.admin.addr, token))
}

/// Runs `shadowd run`.
pub fn main(args: RunArgs) -> CommandResult {
    let mut config = args.effective_config().map_err(UsageError::from)?;
    if let Some(path) = &args.criteria {
        config.criteria = load_criteria(path)?;
    }
    let access = check_files(&args, &config)?;
    let config = Arc::new(config);
    // One runtime thread for the whole daemon (the capture reader has its own): every hand-off
    // between stages stays on it, where a multi-threaded runtime woke an idle worker for most
    // of them — a fifth of the daemon's CPU went to futex waits and context switches
    // (`cargo xtask bench cost`). It also bounds what the daemon can take from production's
    // cores to about one.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("shadowd")
        .build()?;
    runtime.block_on(run(config, access, args))
}

async fn run(config: Arc<Config>, access: AdminAccess, args: RunArgs) -> CommandResult {
    // Every thread started from here on drops its capabilities; this one, after the attach.
    privileges::announce_drop();
    // First: a SIGHUP from now on reloads (once attached) instead of ending the process.
    let hangups = signal(SignalKind::hangup())?;
    let (trigger, _) = shutdown::channel();
    trigger.trip_on_signals();
    let metrics = pipeline::metrics(&config);
    let reload_metric = ReloadMetric::register(&metrics)?;
    let (reloads, reloaded) = watch::channel(config.clone());
    let options = PipelineOptions {
        admin: Some(access),
        resources: true,
        rollback: true,
        wait_for_room: false,
        resume_state: true,
        reloads: Some(reloaded),
    };
    let status_metrics = metrics.clone();
    let source: ExchangeSource = Box::new(move |config, telemetry, shutdown| {
        let heartbeat = Heartbeat::new();
        let exchanges =
            start_exchange_source(config, telemetry, heartbeat.clone(), shutdown.clone())?;
        // Attached: nothing from here on needs a capability (see `privileges`).
        let held = CapSets::of_this_thread();
        let left = privileges::drop_all()?;
        tracing::info!(
            before = %format!("eff={:#x} prm={:#x} bnd={:#x}", held.effective, held.permitted, held.bounding),
            after = %format!("eff={:#x} prm={:#x} bnd={:#x}", left.effective, left.permitted, left.bounding),
            "capabilities dropped"
        );
        // Loading the tap parsed the kernel's BTF: tens of MiB, all freed by now.
        crate::allocator::release_freed_memory();
        tracing::info!(
            interface = %config.capture.interface,
            ports = ?config.capture.ports,
            shadow = %config.shadow.url,
            baseline = config.shadow.baseline.as_ref().map(tracing::field::display),
            "mirroring"
        );
        service::ready(&format!(
            "mirroring {} port(s) {:?} to {}",
            config.capture.interface, config.capture.ports, config.shadow.url
        ));
        let describe = move || status_line(&status_metrics);
        tokio::spawn(service::supervise(heartbeat, describe, shutdown.clone()));
        let reloader = Reloader {
            args,
            current: reloads,
            metric: reload_metric,
        };
        tokio::spawn(reloader.run(hangups, shutdown.clone()));
        tokio::spawn({
            let mut shutdown = shutdown.clone();
            async move {
                shutdown.requested().await;
                service::stopping();
            }
        });
        Ok(exchanges)
    });
    let Finished {
        summary,
        source_ended,
        ..
    } = pipeline::run(config, options, metrics, trigger, source).await?;
    tracing::info!(
        exchanges = summary.admission.exchanges,
        replayed = summary.replayed,
        skipped = summary.admission.skipped.values().sum::<u64>(),
        abandoned = summary.abandoned,
        agreement = ?summary.evaluation.overall.agreement.request.ratio,
        row_agreement = ?summary.evaluation.overall.agreement.row.ratio,
        noise_discrepancies = summary.noise.as_ref().map(|n| n.shadow.noise),
        real_discrepancies = summary.noise.as_ref().map(|n| n.shadow.real),
        "stopped"
    );
    if source_ended {
        // The exchanges ended with no signal: the capture stopped on an error logged above.
        anyhow::bail!(
            "the capture stopped on its own (its error is logged above): nothing more can be \
             mirrored; fix the cause and restart shadowd"
        );
    }
    Ok(EXIT_OK)
}

/// Applies SIGHUP reloads: re-reads the config file (and `--criteria`), with the same flags
/// and checks as at start, and publishes it when every changed key may change while running
/// ([`ConfigChange`]); otherwise the running configuration stays and the log says why.
struct Reloader {
    args: RunArgs,
    /// The configuration in force, watched by the mirror, the decision loop and the
    /// discrepancy log's redaction (`pipeline`).
    current: watch::Sender<Arc<Config>>,
    metric: ReloadMetric,
}

impl Reloader {
    /// Reloads on every SIGHUP until shutdown.
    async fn run(self, mut hangups: Signal, mut shutdown: Shutdown) {
        loop {
            tokio::select! {
                _ = shutdown.requested() => return,
                got = hangups.recv() => if got.is_none() { return },
            }
            service::reloading();
            let result = self.reload();
            self.metric.count(result.is_ok());
            match result {
                Ok(changed) if changed.is_empty() => {
                    tracing::info!("SIGHUP: configuration re-read, nothing changed");
                    service::reloaded("configuration re-read: nothing changed");
                }
                Ok(changed) => {
                    tracing::info!(changed = ?changed, "SIGHUP: configuration reloaded");
                    service::reloaded(&format!("configuration reloaded: {}", changed.join(", ")));
                }
                Err(why) => {
                    tracing::warn!("SIGHUP: configuration reload refused: {why}");
                    service::reloaded("configuration reload refused (see the log)");
                }
            }
        }
    }

    /// The keys a reload changed, or why it is refused.
    fn reload(&self) -> Result<Vec<String>, String> {
        let mut config = self.args.effective_config().map_err(|e| e.to_string())?;
        if let Some(path) = &self.args.criteria {
            config.criteria = load_criteria(path).map_err(|e| format!("{e:#}"))?;
        }
        check_files(&self.args, &config).map_err(|e| e.to_string())?;
        let change = ConfigChange::between(&self.current.borrow(), &config);
        if let Some(why) = change.refusal() {
            return Err(why);
        }
        if change.applied.is_empty() {
            return Ok(Vec::new());
        }
        self.current.send_replace(Arc::new(config));
        Ok(change.applied)
    }
}

/// The `STATUS=` line: exchanges seen, mirrored and skipped so far (from the metrics).
fn status_line(metrics: &Metrics) -> String {
    let total = |name: &str| -> u64 {
        metrics
            .registry()
            .gather()
            .iter()
            .filter(|family| family.name() == name)
            .flat_map(|family| family.get_metric())
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    };
    format!(
        "seen {} exchanges, mirrored {}, skipped {}",
        total("shadowtap_exchanges_total"),
        total("shadowtap_mirrored_requests_total"),
        total("shadowtap_mirror_skipped_total")
    )
}

/// Starts the live front end (capture → reassembly → http) and returns the channel of
/// exchanges it produces, of depth `config.capture.exchange_channel`. The front end must never
/// block on this channel: `try_send`, and report a full channel with
/// `telemetry.dropped(DropStage::ExchangeChannel, 1)`. It should stop when `shutdown` fires
/// (dropping the sender ends the mirror cleanly). Capture counters go to
/// [`Telemetry::segments_captured`], [`Telemetry::dropped`] and [`Telemetry::reassembly_load`].
pub fn start_exchange_source(
    config: &Config,
    telemetry: Arc<dyn Telemetry>,
    heartbeat: Heartbeat,
    shutdown: Shutdown,
) -> anyhow::Result<mpsc::Receiver<Exchange>> {
    crate::exchange_source::start(config, telemetry, heartbeat, shutdown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Location;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn flags_alone_make_a_valid_config() {
        let t = T::parse_from([
            "t",
            "--interface",
            "lo",
            "--port",
            "8080",
            "--shadow",
            "http://127.0.0.1:8081",
            "--admin-addr",
            "127.0.0.1:9464",
            "--method",
            "put",
        ]);
        let c = t.run.effective_config().unwrap();
        assert_eq!(
            c.capture.ports,
            vec![std::num::NonZeroU16::new(8080).unwrap()]
        );
        assert_eq!(c.shadow.url.uri(), "http://127.0.0.1:8081/");
        assert!(c.mirror.methods.contains("PUT"));
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[capture]\ninterface = \"eth0\"\nports = [9000]\n[shadow]\nurl = \"http://10.0.0.2:9001\"\ntimeout_ms = 50\n[mirror]\nsample_percent = 5.0\n",
        )
        .unwrap();
        let t = T::parse_from([
            "t",
            "--config",
            path.to_str().unwrap(),
            "--sample",
            "50",
            "--preset",
            "mlflow",
            "--timeout-ms",
            "70",
        ]);
        let c = t.run.effective_config().unwrap();
        assert_eq!(c.capture.interface, "eth0", "kept from the file");
        assert_eq!(c.mirror.sample_percent, 50.0);
        assert_eq!(c.compare.preset_name, PresetName::Mlflow);
        assert_eq!(c.shadow.timeout, std::time::Duration::from_millis(70));
        let bad = T::parse_from([
            "t",
            "--config",
            path.to_str().unwrap(),
            "--shadow",
            "http://10.0.0.2:9000",
        ]);
        let err = bad.run.effective_config().unwrap_err();
        assert_eq!(
            err.problems()[0].location,
            Location::Flag("--shadow"),
            "{err}"
        );
    }

    #[test]
    fn flag_and_file_problems_are_reported_together() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[shadow]\nurl = \"http://10.0.0.2:9001\"\nconcurrency = 0\n",
        )
        .unwrap();
        let t = T::parse_from([
            "t",
            "--config",
            path.to_str().unwrap(),
            "--port",
            "0",
            "--sample",
            "101",
        ]);
        let err = t.run.effective_config().unwrap_err();
        let got: Vec<(Location, Option<String>)> = err
            .problems()
            .iter()
            .map(|p| (p.location.clone(), p.key.clone()))
            .collect();
        let file = |line, column| Location::File {
            path: path.clone(),
            line,
            column,
        };
        assert_eq!(
            got,
            vec![
                (file(3, 15), Some("shadow.concurrency".into())),
                (Location::Flag("--port"), Some("capture.ports".into())),
                (
                    Location::Flag("--sample"),
                    Some("mirror.sample_percent".into())
                ),
            ],
            "{err}"
        );
        assert!(
            UsageError::from(err)
                .to_string()
                .contains("--sample: mirror.sample_percent: 101")
        );
    }

    #[test]
    fn model_encoding_and_ignore_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[capture]\nports = [9000]\n[shadow]\nurl = \"http://10.0.0.2:9001\"\n[compare]\nignore_paths = [\"/a\"]\n",
        )
        .unwrap();
        let t = T::parse_from([
            "t",
            "--config",
            path.to_str().unwrap(),
            "--shadow-model",
            "wine-v2",
            "--accept-encoding",
            "identity",
            "--ignore-path",
            "/b",
            "--ignore-path",
            "/outputs/*/parameters",
        ]);
        let c = t.run.effective_config().unwrap();
        assert_eq!(c.shadow.model.as_deref(), Some("wine-v2"));
        assert_eq!(
            c.shadow.accept_encoding,
            crate::config::AcceptEncoding::Identity
        );
        let ignored: Vec<String> = c
            .compare
            .diff
            .ignore
            .iter()
            .map(|p| p.segments().join("/"))
            .collect();
        assert_eq!(ignored, vec!["a", "b", "outputs/*/parameters"]);
        let bad = T::parse_from([
            "t",
            "--config",
            path.to_str().unwrap(),
            "--ignore-path",
            "id",
            "--shadow-model",
            "a/b",
            "--accept-encoding",
            "br",
        ]);
        let err = bad.run.effective_config().unwrap_err();
        let flags: Vec<Location> = err.problems().iter().map(|p| p.location.clone()).collect();
        assert_eq!(
            flags,
            vec![
                Location::Flag("--accept-encoding"),
                Location::Flag("--shadow-model"),
                Location::Flag("--ignore-path"),
            ],
            "{err}"
        );
    }

    #[test]
    fn proto_flags_add_files_and_includes_and_name_their_problems() {
        let dir = tempfile::tempdir().unwrap();
        let include = dir.path().join("protos");
        std::fs::create_dir_all(include.join("acme")).unwrap();
        std::fs::write(
            include.join("acme/types.proto"),
            "syntax = \"proto3\";\npackage acme;\nmessage Out { double score = 1; }\n",
        )
        .unwrap();
        let service = dir.path().join("svc.proto");
        std::fs::write(
            &service,
            "syntax = \"proto3\";\npackage acme;\nimport \"acme/types.proto\";\n\
             service Svc { rpc Run(Out) returns (Out); }\n",
        )
        .unwrap();
        let args = |extra: &[&str]| {
            let mut argv = vec!["t", "--port", "9000", "--shadow", "http://10.0.0.2:9001"];
            argv.extend_from_slice(extra);
            T::parse_from(argv).run.effective_config()
        };
        let (svc, inc) = (service.to_str().unwrap(), include.to_str().unwrap());
        let c = args(&[
            "--preset",
            "kserve-v2-grpc",
            "--proto",
            svc,
            "--proto-include",
            inc,
        ])
        .unwrap();
        assert_eq!(c.compare.preset_name, PresetName::KserveV2Grpc);
        assert_eq!(c.compare.proto_files, std::slice::from_ref(&service));
        assert_eq!(c.compare.proto_include, std::slice::from_ref(&include));
        let schema = c.compare.proto_schema.as_ref().unwrap();
        assert!(schema.method("/acme.Svc/Run").is_some());
        // Without the include, the import is not found: reported at the flag.
        let err = args(&["--proto", svc]).unwrap_err();
        let at: Vec<Location> = err.problems().iter().map(|p| p.location.clone()).collect();
        assert_eq!(at, [Location::Flag("--proto")], "{err}");
        assert!(err.to_string().contains("acme/types.proto"), "{err}");
        let err = args(&["--proto-include", inc]).unwrap_err();
        let at: Vec<Location> = err.problems().iter().map(|p| p.location.clone()).collect();
        assert_eq!(at, [Location::Flag("--proto-include")], "{err}");
    }

    #[test]
    fn the_baseline_flag_sets_shadow_baseline_and_is_located() {
        let args = |baseline: &str| {
            T::parse_from([
                "t",
                "--port",
                "8080",
                "--shadow",
                "http://127.0.0.1:8081",
                "--baseline",
                baseline,
            ])
        };
        let c = args("http://127.0.0.1:8082")
            .run
            .effective_config()
            .unwrap();
        assert_eq!(
            c.shadow.baseline.map(|u| u.to_string()),
            Some("http://127.0.0.1:8082/".to_string())
        );
        let err = args("http://127.0.0.1:8080")
            .run
            .effective_config()
            .unwrap_err();
        assert_eq!(err.problems()[0].location, Location::Flag("--baseline"));
        assert_eq!(err.problems()[0].key.as_deref(), Some("shadow.baseline"));
    }

    #[test]
    fn files_others_could_change_are_refused_before_anything_starts() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let chmod = |path: &std::path::Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        let config = dir.path().join("c.toml");
        std::fs::write(
            &config,
            "[capture]\nports = [8080]\n[shadow]\nurl = \"http://127.0.0.1:8081\"\n",
        )
        .unwrap();
        let token = dir.path().join("admin.token");
        std::fs::write(&token, "0123456789abcdef0123456789\n").unwrap();
        chmod(&token, 0o600);
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        chmod(&shared, 0o1777);
        let args = |extra: &[&str]| {
            let mut argv = vec!["t", "--config", config.to_str().unwrap()];
            argv.extend_from_slice(extra);
            T::parse_from(argv).run
        };
        let check = |run: &RunArgs| {
            let c = run.effective_config().unwrap();
            check_files(run, &c)
        };

        chmod(&config, 0o664);
        let err = check(&args(&[])).unwrap_err();
        assert!(
            matches!(&err, SecurityError::WritableByOthers { path, .. } if *path == config),
            "{err}"
        );
        assert!(err.to_string().contains("chmod go-w"), "{err}");
        chmod(&config, 0o644);
        let access = check(&args(&[])).unwrap();
        assert!(!access.has_token() && !access.reads_need_token());

        let token_arg = token.to_str().unwrap();
        let access = check(&args(&["--admin-token-file", token_arg])).unwrap();
        assert!(access.has_token() && !access.reads_need_token());
        let public = args(&[
            "--admin-addr",
            "0.0.0.0:9464",
            "--admin-token-file",
            token_arg,
        ]);
        assert!(check(&public).unwrap().reads_need_token());
        chmod(&token, 0o644);
        let err = check(&args(&["--admin-token-file", token_arg])).unwrap_err();
        assert!(
            matches!(err, SecurityError::TokenReadableByOthers { .. }),
            "{err}"
        );
        chmod(&token, 0o600);

        // Off loopback without a token: a config problem, located at the flag.
        let err = args(&["--admin-addr", "0.0.0.0:9464"])
            .effective_config()
            .unwrap_err();
        assert_eq!(err.problems()[0].location, Location::Flag("--admin-addr"));
        assert_eq!(err.problems()[0].key.as_deref(), Some("admin.addr"));

        for flag in ["--discrepancy-log", "--state"] {
            let in_shared = shared.join("f.json");
            let err = check(&args(&[flag, in_shared.to_str().unwrap()])).unwrap_err();
            assert!(
                matches!(&err, SecurityError::WorldWritableDirectory { dir, .. } if *dir == shared),
                "{flag}: {err}"
            );
            let private = dir.path().join("f.json");
            check(&args(&[flag, private.to_str().unwrap()])).unwrap();
        }
    }

    #[test]
    fn an_unknown_preset_is_a_flag_error() {
        let err = T::try_parse_from(["t", "--preset", "sklearn"])
            .err()
            .unwrap();
        assert!(err.to_string().contains("kserve-v2, tfserving"), "{err}");
    }
}
