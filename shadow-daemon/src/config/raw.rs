//! [`RawConfig`]: the TOML schema as written, every key optional with its default, each value
//! remembering where it came from (the file, a flag or the default) so that a problem can be
//! located. Nothing is checked here; [`super::Config`]'s `TryFrom` does that.

use super::error::Finding;
use crate::capture::CaptureKind;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shadow_core::compare::PresetName;
use shadow_core::criteria::Criteria;
use shadow_core::http::HttpConfig;
use shadow_core::reassembly::ReassemblyConfig;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;

/// Where a configuration value came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Origin {
    /// Not given: the built-in default.
    #[default]
    Default,
    /// The config file, at this byte range of its text.
    File(Range<usize>),
    /// This command-line flag (`--shadow`).
    Flag(&'static str),
}

/// A configuration value and where it came from. In TOML it is just the value (read with the
/// `toml` deserializer, which supplies the span).
#[derive(Clone, Debug, PartialEq)]
pub struct Setting<T> {
    /// The value as written.
    pub value: T,
    /// Where it was written.
    pub origin: Origin,
}

/// A list whose elements are located one by one (a bad element is pointed at, not the list).
pub type List<T> = Setting<Vec<Setting<T>>>;

impl<T> Setting<T> {
    /// A built-in default.
    pub fn builtin(value: T) -> Self {
        Setting {
            value,
            origin: Origin::Default,
        }
    }

    /// A value given by a command-line flag.
    pub fn flag(flag: &'static str, value: T) -> Self {
        Setting {
            value,
            origin: Origin::Flag(flag),
        }
    }
}

impl<T> Setting<Vec<Setting<T>>> {
    /// A built-in default list.
    pub fn builtin_list(items: impl IntoIterator<Item = T>) -> Self {
        Setting::builtin(items.into_iter().map(Setting::builtin).collect())
    }

    /// A list given by a (repeatable) command-line flag.
    pub fn flag_list(flag: &'static str, items: impl IntoIterator<Item = T>) -> Self {
        Setting::flag(
            flag,
            items.into_iter().map(|v| Setting::flag(flag, v)).collect(),
        )
    }

    /// The values without their origins.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.value.iter().map(|s| &s.value)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Setting<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = toml::Spanned::<T>::deserialize(d)?;
        Ok(Setting {
            origin: Origin::File(spanned.span()),
            value: spanned.into_inner(),
        })
    }
}

impl<T: Serialize> Serialize for Setting<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

/// The config file a [`RawConfig`] was read from: its text (to turn byte offsets into
/// line:column) and the keys dropped because their value could not be read.
#[derive(Clone, Debug, Default)]
pub struct ConfigFile {
    /// The path given to `--config`.
    pub path: PathBuf,
    /// The file's text.
    pub text: String,
    /// Unknown keys and values of the wrong type, dropped (their defaults stand in).
    pub(super) rejected: Vec<Finding>,
}

/// The whole configuration of `shadowd run` as written: today's TOML schema, `deny_unknown_fields`,
/// every key optional with its default. Flags override keys (`commands::run`); `Config::try_from`
/// checks every value and reports every problem.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    /// `[capture]`
    pub capture: RawCapture,
    /// `[shadow]`
    pub shadow: RawShadow,
    /// `[mirror]`
    pub mirror: RawMirror,
    /// `[circuit_breaker]`
    pub circuit_breaker: RawCircuitBreaker,
    /// `[compare]`
    pub compare: RawCompare,
    /// `[discrepancy_log]`
    pub discrepancy_log: RawDiscrepancyLog,
    /// `[admin]`
    pub admin: RawAdmin,
    /// `[ground_truth]`
    pub ground_truth: RawGroundTruth,
    /// `[criteria]`: the success criteria (absent = none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub criteria: Option<Setting<Criteria>>,
    /// `[state]`
    pub state: RawState,
    /// `[rollback]`: present only in a reverse-shadow run (after a promotion).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RawRollback>,
    /// `[resources]`
    pub resources: RawResources,
    /// The file the values came from, if any.
    #[serde(skip)]
    pub file: Option<ConfigFile>,
}

/// `[capture]`: what to tap.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCapture {
    /// Interface to tap (`lo`, `eth0`).
    pub interface: Setting<String>,
    /// Production server TCP ports.
    pub ports: List<u16>,
    /// Capture backend.
    #[serde(serialize_with = "capture_kind_name")]
    pub kind: Setting<CaptureKind>,
    /// Largest request or response body kept.
    pub max_body_bytes: Setting<usize>,
    /// Bytes the HTTP parsers hold over all connections before the largest is dropped.
    pub max_http_buffered_bytes: Setting<usize>,
    /// Depth of the channel from the HTTP stage to admission.
    pub exchange_channel: Setting<usize>,
    /// Bytes of the eBPF tap's ring buffer.
    pub ring_bytes: Setting<u32>,
    /// `[capture.reassembly]`: limits of TCP reassembly.
    pub reassembly: RawReassembly,
}

impl Default for RawCapture {
    fn default() -> Self {
        RawCapture {
            interface: Setting::builtin(String::new()),
            ports: Setting::builtin_list([]),
            kind: Setting::builtin(CaptureKind::Ebpf),
            max_body_bytes: Setting::builtin(16 << 20),
            max_http_buffered_bytes: Setting::builtin(HttpConfig::default().max_buffered),
            exchange_channel: Setting::builtin(4096),
            ring_bytes: Setting::builtin(shadow_common::RING_BYTES),
            reassembly: RawReassembly::default(),
        }
    }
}

fn capture_kind_name<S: Serializer>(kind: &Setting<CaptureKind>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match kind.value {
        CaptureKind::Ebpf => "ebpf",
        CaptureKind::Afpacket => "afpacket",
    })
}

/// `[capture.reassembly]`: limits of TCP reassembly (defaults: [`ReassemblyConfig::default`]).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawReassembly {
    /// Out-of-order bytes buffered per connection before the oldest hole is declared a gap.
    pub max_flow_buffer_bytes: Setting<usize>,
    /// Out-of-order bytes buffered over all connections.
    pub max_buffered_bytes: Setting<usize>,
    /// Connections silent this long (ms, capture time) are closed.
    pub idle_timeout_ms: Setting<u64>,
    /// A hole still open this long (ms) after later bytes arrived is declared a gap.
    pub hole_timeout_ms: Setting<u64>,
    /// Connections tracked; the least recently seen is evicted to make room.
    pub max_flows: Setting<usize>,
}

impl Default for RawReassembly {
    fn default() -> Self {
        let d = ReassemblyConfig::default();
        RawReassembly {
            max_flow_buffer_bytes: Setting::builtin(d.max_flow_buffer),
            max_buffered_bytes: Setting::builtin(d.max_buffered),
            idle_timeout_ms: Setting::builtin(d.idle_timeout_ns / 1_000_000),
            hole_timeout_ms: Setting::builtin(d.hole_timeout_ns / 1_000_000),
            max_flows: Setting::builtin(d.max_flows),
        }
    }
}

/// `[shadow]`: where and how requests are replayed.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawShadow {
    /// Base URL of the shadow model server (`http://host:port[/prefix]`); required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Setting<String>>,
    /// Base URL of a second instance of the production model (the noise baseline); absent =
    /// no baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Setting<String>>,
    /// Per-request timeout (connect + response + body), ms.
    pub timeout_ms: Setting<u64>,
    /// Connect timeout, ms.
    pub connect_timeout_ms: Setting<u64>,
    /// Replayed requests in flight at most.
    pub concurrency: Setting<usize>,
    /// Keep-alive pool: idle connections kept per host.
    pub pool_max_idle: Setting<usize>,
    /// Keep-alive pool: idle connections closed after this many ms.
    pub pool_idle_timeout_ms: Setting<u64>,
    /// `Host` on replayed requests: `preserve`, `shadow` or a literal value.
    pub host_header: Setting<String>,
    /// Headers set (added or replaced) on replayed requests.
    pub set_headers: Setting<BTreeMap<String, Setting<String>>>,
    /// Headers removed from replayed requests (case-insensitive).
    pub remove_headers: List<String>,
    /// Largest shadow response body read.
    pub max_response_bytes: Setting<usize>,
    /// `Accept-Encoding` on replayed requests: `preserve` or `identity`.
    pub accept_encoding: Setting<String>,
    /// The model name the shadow serves under (rewrites OIP, TF-Serving and MLflow paths).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<Setting<String>>,
    /// `[[shadow.rewrite]]`: regex rewrites of the request path, in order.
    pub rewrite: List<RawRewrite>,
    /// `[[shadow.header_rewrite]]`: regex rewrites of header values, in order.
    pub header_rewrite: List<RawHeaderRewrite>,
}

/// `[[shadow.rewrite]]`: one rewrite of the request path.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRewrite {
    /// Regular expression matched against the path (without the query).
    pub path: Setting<String>,
    /// What its first match becomes (`$1`, `${name}`: capture groups).
    pub replacement: Setting<String>,
}

/// `[[shadow.header_rewrite]]`: one rewrite of a header's values.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderRewrite {
    /// The header (case-insensitive).
    pub name: Setting<String>,
    /// Regular expression matched against each of its values.
    pub value: Setting<String>,
    /// What the first match becomes (`$1`, `${name}`: capture groups).
    pub replacement: Setting<String>,
}

impl Default for RawShadow {
    fn default() -> Self {
        RawShadow {
            url: None,
            baseline: None,
            timeout_ms: Setting::builtin(5_000),
            connect_timeout_ms: Setting::builtin(1_000),
            concurrency: Setting::builtin(32),
            pool_max_idle: Setting::builtin(32),
            pool_idle_timeout_ms: Setting::builtin(90_000),
            host_header: Setting::builtin("preserve".into()),
            set_headers: Setting::builtin(BTreeMap::new()),
            remove_headers: Setting::builtin_list([]),
            max_response_bytes: Setting::builtin(16 << 20),
            accept_encoding: Setting::builtin("preserve".into()),
            model: None,
            rewrite: Setting::builtin_list([]),
            header_rewrite: Setting::builtin_list([]),
        }
    }
}

/// `[mirror]`: which exchanges are mirrored and how fast.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawMirror {
    /// Methods mirrored (any case).
    pub methods: List<String>,
    /// Methods never mirrored, even if listed in `methods`.
    pub deny_methods: List<String>,
    /// Path prefixes mirrored; empty = all paths.
    pub paths: List<String>,
    /// Path prefixes never mirrored.
    pub deny_paths: List<String>,
    /// Percentage of eligible requests mirrored, 0-100.
    pub sample_percent: Setting<f64>,
    /// Seed mixed into the sampling hash.
    pub sample_seed: Setting<u64>,
    /// Requests per second sent to the shadow; 0 = unlimited.
    pub rate_limit: Setting<f64>,
    /// Token-bucket burst; 0 = max(1, rate_limit).
    pub burst: Setting<u32>,
    /// Queue between admission and replay.
    pub queue: Setting<usize>,
    /// When queued replays are sent: `production` (production's pacing) or `asap`.
    pub pacing: Setting<String>,
}

impl Default for RawMirror {
    fn default() -> Self {
        let strings = |v: &[&str]| Setting::builtin_list(v.iter().map(|s| s.to_string()));
        RawMirror {
            methods: strings(&["GET", "POST", "HEAD"]),
            deny_methods: strings(&["PUT", "PATCH", "DELETE"]),
            paths: Setting::builtin_list([]),
            deny_paths: Setting::builtin_list([]),
            sample_percent: Setting::builtin(100.0),
            sample_seed: Setting::builtin(0),
            rate_limit: Setting::builtin(0.0),
            burst: Setting::builtin(0),
            queue: Setting::builtin(1024),
            pacing: Setting::builtin("production".into()),
        }
    }
}

/// `[circuit_breaker]`: pauses mirroring while the shadow is failing.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCircuitBreaker {
    /// Turn the breaker off entirely.
    pub enabled: Setting<bool>,
    /// Outcomes remembered (sliding window, in requests).
    pub window: Setting<usize>,
    /// No decision before this many outcomes are in the window.
    pub min_requests: Setting<usize>,
    /// Open when the failure fraction reaches this, (0, 1].
    pub failure_ratio: Setting<f64>,
    /// Stay open this long before probing, ms.
    pub open_ms: Setting<u64>,
    /// Requests let through while half-open.
    pub probes: Setting<usize>,
    /// A shadow answer slower than this (ms) counts as a failure; 0 = off.
    pub slow_call_ms: Setting<u64>,
}

impl Default for RawCircuitBreaker {
    fn default() -> Self {
        RawCircuitBreaker {
            enabled: Setting::builtin(true),
            window: Setting::builtin(50),
            min_requests: Setting::builtin(10),
            failure_ratio: Setting::builtin(0.5),
            open_ms: Setting::builtin(10_000),
            probes: Setting::builtin(3),
            slow_call_ms: Setting::builtin(0),
        }
    }
}

/// `[compare]`: how answers are compared.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCompare {
    /// Prediction extraction preset.
    pub preset: Setting<PresetName>,
    /// JSON pointer to the prediction when `preset = "json-pointer"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction_pointer: Option<Setting<String>>,
    /// KServe v2: name of the output holding class labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_output: Option<Setting<String>>,
    /// Numbers are equal when |a-b| <= abs_tolerance ...
    pub abs_tolerance: Setting<f64>,
    /// ... or |a-b| <= rel_tolerance * max(|a|, |b|).
    pub rel_tolerance: Setting<f64>,
    /// JSON pointers ignored in body diffs.
    pub ignore_paths: List<String>,
    /// Ignore the preset's per-response fields (`/id`, `/model_name`, ... for kserve-v2) too.
    pub preset_ignores: Setting<bool>,
    /// JSON pointers of arrays compared without regard to order.
    pub unordered_arrays: List<String>,
    /// At most this many field differences kept per comparison.
    pub max_diffs: Setting<usize>,
    /// `.proto` files whose services decode gRPC messages to JSON (`--proto`).
    pub proto: List<PathBuf>,
    /// Directories the `.proto` files' imports are found in (`--proto-include`).
    pub proto_include: List<PathBuf>,
}

impl Default for RawCompare {
    fn default() -> Self {
        RawCompare {
            preset: Setting::builtin(PresetName::KserveV2),
            prediction_pointer: None,
            label_output: None,
            abs_tolerance: Setting::builtin(1e-6),
            rel_tolerance: Setting::builtin(1e-6),
            ignore_paths: Setting::builtin_list([]),
            preset_ignores: Setting::builtin(true),
            unordered_arrays: Setting::builtin_list([]),
            max_diffs: Setting::builtin(50),
            proto: Setting::builtin_list([]),
            proto_include: Setting::builtin_list([]),
        }
    }
}

/// `[discrepancy_log]`: JSON-lines log of the comparisons that differ.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawDiscrepancyLog {
    /// File path; absent = no log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Setting<PathBuf>>,
    /// Rotate when the file would exceed this many bytes.
    pub max_bytes: Setting<u64>,
    /// Rotated files kept.
    pub max_files: Setting<u32>,
    /// Request body bytes copied into each line (0, the default: only the sha256 and length).
    pub body_max_bytes: Setting<usize>,
    /// Headers redacted in addition to the defaults.
    pub redact_headers: List<String>,
    /// JSON pointers of body fields redacted.
    pub redact_fields: List<String>,
}

impl Default for RawDiscrepancyLog {
    fn default() -> Self {
        RawDiscrepancyLog {
            path: None,
            max_bytes: Setting::builtin(64 << 20),
            max_files: Setting::builtin(5),
            body_max_bytes: Setting::builtin(0),
            redact_headers: Setting::builtin_list([]),
            redact_fields: Setting::builtin_list([]),
        }
    }
}

/// `[admin]`: the admin HTTP server.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAdmin {
    /// Listen address for `/metrics`, `/healthz`, `/api/summary`.
    pub addr: Setting<SocketAddr>,
    /// File holding the bearer token the admin API requires (`POST /api/labels` always, every
    /// endpoint but `/healthz` when `addr` is not loopback); absent = none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<Setting<PathBuf>>,
    /// Length of one bucket of `/api/timeseries`, seconds.
    pub timeseries_interval_seconds: Setting<u64>,
    /// Buckets `/api/timeseries` keeps (the oldest go first).
    pub timeseries_buckets: Setting<usize>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            addr: Setting::builtin(SocketAddr::from(([127, 0, 0, 1], 9464))),
            token_file: None,
            timeseries_interval_seconds: Setting::builtin(
                shadow_core::timeseries::DEFAULT_INTERVAL.as_secs(),
            ),
            timeseries_buckets: Setting::builtin(shadow_core::timeseries::DEFAULT_BUCKETS),
        }
    }
}

/// `[ground_truth]`: request ids, the label join and segments.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawGroundTruth {
    /// Header holding the request id; `""` reads no header.
    pub id_header: Setting<String>,
    /// JSON pointer of the request id in the request body (when the header is absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_pointer: Option<Setting<String>>,
    /// JSON pointer of the input field whose value segments the statistics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment_field: Option<Setting<String>>,
    /// Longest a compared request waits for its label, in milliseconds.
    pub max_wait_ms: Setting<u64>,
    /// Most compared requests waiting for their label.
    pub max_pending: Setting<usize>,
    /// Most bytes they may take.
    pub max_pending_bytes: Setting<usize>,
    /// Distinct paths and field values tracked, each; the rest count as `(other)`.
    pub max_segments: Setting<usize>,
    /// Labels known in advance (JSON lines), read at start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels_file: Option<Setting<PathBuf>>,
}

impl Default for RawGroundTruth {
    fn default() -> Self {
        RawGroundTruth {
            id_header: Setting::builtin("x-request-id".into()),
            id_pointer: None,
            segment_field: None,
            max_wait_ms: Setting::builtin(3_600_000),
            max_pending: Setting::builtin(100_000),
            max_pending_bytes: Setting::builtin(64 << 20),
            max_segments: Setting::builtin(32),
            labels_file: None,
        }
    }
}

/// `[state]`: where the aggregates are saved, to survive a restart.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawState {
    /// The state file; absent = nothing saved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Setting<PathBuf>>,
    /// How often it is written, in milliseconds (and at stop).
    pub interval_ms: Setting<u64>,
}

impl Default for RawState {
    fn default() -> Self {
        RawState {
            path: None,
            interval_ms: Setting::builtin(10_000),
        }
    }
}

/// `[rollback]`: what to do when a promoted model fails a trigger criterion (reverse shadow,
/// see docs/rollback.md).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRollback {
    /// Criteria (by config key) whose failure calls for a rollback; at least one.
    pub triggers: List<String>,
    /// At most one firing per this long (`"10m"`, `"90s"`, `"1h30m"`).
    pub cooldown: Setting<String>,
    /// Only log what would run.
    pub dry_run: Setting<bool>,
    /// The program and its arguments, run without a shell; the program an absolute path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<List<String>>,
    /// `http://host:port/path` the firing is POSTed to as JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Setting<String>>,
    /// How long each action may take; a command still running then is killed.
    pub action_timeout: Setting<String>,
}

impl Default for RawRollback {
    fn default() -> Self {
        RawRollback {
            triggers: Setting::builtin_list([]),
            cooldown: Setting::builtin("10m".into()),
            dry_run: Setting::builtin(true),
            command: None,
            webhook: None,
            action_timeout: Setting::builtin("30s".into()),
        }
    }
}

/// `[resources]`: CPU and memory of the model servers and of shadowd.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawResources {
    /// Measure the model servers at all (shadowd's own usage is always measured).
    pub enabled: Setting<bool>,
    /// Time between samples, ms.
    pub sample_interval_ms: Setting<u64>,
    /// The production server's pid, instead of finding the process listening on its port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub production_pid: Option<Setting<u32>>,
    /// The production server's cgroup v2 directory, instead of a process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub production_cgroup: Option<Setting<PathBuf>>,
    /// The shadow server's pid, instead of finding the process listening on its port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_pid: Option<Setting<u32>>,
    /// The shadow server's cgroup v2 directory, instead of a process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_cgroup: Option<Setting<PathBuf>>,
}

impl Default for RawResources {
    fn default() -> Self {
        RawResources {
            enabled: Setting::builtin(true),
            sample_interval_ms: Setting::builtin(1_000),
            production_pid: None,
            production_cgroup: None,
            shadow_pid: None,
            shadow_cgroup: None,
        }
    }
}
