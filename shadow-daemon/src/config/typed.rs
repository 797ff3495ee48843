//! The checked configuration: every value already in the type its component uses, so nothing
//! downstream parses or validates again.

use crate::capture::CaptureKind;
use hyper::Uri;
use hyper::header::{HeaderName, HeaderValue};
use hyper::http::Method;
use hyper::http::uri::Authority;
use regex::Regex;
use shadow_core::compare::{Comparer, DecodeLimits, DiffOptions, PathPattern, Preset, PresetName};
use shadow_core::criteria::Criteria;
use shadow_core::criteria::CriterionName;
use shadow_core::evaluation::{EvaluationLimits, KeyRules};
use shadow_core::grpc::{GrpcDecoder, ProtoSchema};
use shadow_core::reassembly::ReassemblyConfig;
use shadow_core::rollback::RollbackConfig;
use std::fmt;
use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

/// The whole configuration of `shadowd run`, checked. Built with `Config::try_from(RawConfig)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `[capture]`
    pub capture: CaptureConfig,
    /// `[shadow]`
    pub shadow: ShadowConfig,
    /// `[mirror]`
    pub mirror: MirrorConfig,
    /// `[circuit_breaker]`
    pub circuit_breaker: CircuitBreakerConfig,
    /// `[compare]`
    pub compare: CompareConfig,
    /// `[discrepancy_log]`
    pub discrepancy_log: DiscrepancyLogConfig,
    /// `[admin]`
    pub admin: AdminConfig,
    /// `[ground_truth]`
    pub ground_truth: GroundTruthConfig,
    /// `[criteria]` (every criterion `None` when absent).
    pub criteria: Criteria,
    /// `[state]`
    pub state: StateConfig,
    /// `[rollback]`; `None` outside a reverse-shadow run.
    pub rollback: Option<RollbackSettings>,
    /// `[resources]`
    pub resources: ResourcesConfig,
}

/// The smallest `capture.ring_bytes`: a few ring records (one is a header and a 2 KiB chunk),
/// and a whole number of pages on 4 KiB and 16 KiB page systems.
pub const MIN_RING_BYTES: u32 = 16 * 1024;

/// What to tap: the production model server.
#[derive(Clone, Debug, PartialEq)]
pub struct CaptureConfig {
    /// Interface to tap (`lo`, `eth0`).
    pub interface: String,
    /// Production server TCP ports (at least one).
    pub ports: Vec<NonZeroU16>,
    /// Capture backend.
    pub kind: CaptureKind,
    /// Largest request or response body kept; larger exchanges are `truncated`, not replayed.
    pub max_body_bytes: usize,
    /// Bytes the HTTP parsers hold over all connections (buffered stream bytes, heads and
    /// bodies of exchanges not emitted yet) before the connection holding the most is dropped
    /// (`capture_dropped_total{stage="http_memory"}`). At least twice `max_body_bytes`.
    pub max_http_buffered_bytes: usize,
    /// Depth of the channel carrying exchanges from the HTTP stage to admission.
    pub exchange_channel: NonZeroUsize,
    /// Bytes of the eBPF tap's ring buffer (a power of two, at least [`MIN_RING_BYTES`]).
    pub ring_bytes: u32,
    /// Limits of TCP reassembly (`[capture.reassembly]`).
    pub reassembly: ReassemblyConfig,
}

impl CaptureConfig {
    /// Whether `port` is a tapped production port.
    pub fn taps_port(&self, port: u16) -> bool {
        self.ports.iter().any(|p| p.get() == port)
    }
}

/// The shadow model's base URL: `http://host[:port][/prefix]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShadowUrl {
    uri: Uri,
    authority: Authority,
    host: HeaderValue,
}

impl ShadowUrl {
    /// Parses and checks a base URL; the error says what is wrong and what to write instead.
    pub fn parse(text: &str) -> Result<ShadowUrl, String> {
        if text.is_empty() {
            return Err(
                "is empty: give the shadow model's base URL, e.g. http://127.0.0.1:8081".into(),
            );
        }
        let uri: Uri = text
            .parse()
            .map_err(|e| format!("`{text}` is not a URL ({e}): give http://host:port[/prefix]"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!("`{text}`: https is not supported yet; use http://"));
            }
            _ => return Err(format!("`{text}` must start with http://")),
        }
        let authority = match uri.authority() {
            Some(a) if !a.host().is_empty() => a.clone(),
            _ => return Err(format!("`{text}` has no host: give http://host:port")),
        };
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| {
            format!("`{text}`: the host `{authority}` cannot be sent as a Host header")
        })?;
        Ok(ShadowUrl {
            uri,
            authority,
            host,
        })
    }

    /// The URL.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// `host[:port]`.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The authority as a `Host` header value.
    pub fn host_header(&self) -> &HeaderValue {
        &self.host
    }

    /// The TCP port (80 when the URL names none).
    pub fn port(&self) -> u16 {
        self.authority.port_u16().unwrap_or(80)
    }

    /// The path prefix put before every replayed target, without a trailing `/` (`""` if none).
    pub fn prefix(&self) -> &str {
        self.uri.path().trim_end_matches('/')
    }
}

impl fmt::Display for ShadowUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.uri.fmt(f)
    }
}

/// How `Host` is set on replayed requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum HostHeader {
    /// Keep the production request's `Host` (default).
    #[default]
    Preserve,
    /// Use the shadow URL's authority.
    Shadow,
    /// Use this value.
    Literal(HeaderValue),
}

impl HostHeader {
    /// `preserve` (or empty), `shadow`, or any other string as a literal `Host` value.
    pub fn parse(text: &str) -> Result<HostHeader, String> {
        match text {
            "preserve" | "" => Ok(HostHeader::Preserve),
            "shadow" => Ok(HostHeader::Shadow),
            other => HeaderValue::from_str(other).map(HostHeader::Literal).map_err(|_| {
                format!(
                    "`{other}` is not a valid Host header value: use preserve, shadow or host[:port]"
                )
            }),
        }
    }
}

/// `Accept-Encoding` on replayed requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AcceptEncoding {
    /// Forward production's `Accept-Encoding` (default): the shadow compresses as production
    /// may; both answers are decoded before they are compared.
    #[default]
    Preserve,
    /// Ask the shadow for uncompressed answers (`Accept-Encoding: identity`).
    Identity,
}

impl AcceptEncoding {
    /// `preserve` or `identity`.
    pub fn parse(text: &str) -> Result<AcceptEncoding, String> {
        match text {
            "preserve" => Ok(AcceptEncoding::Preserve),
            "identity" => Ok(AcceptEncoding::Identity),
            other => Err(format!(
                "`{other}` is not an accept_encoding mode: use preserve (forward production's) \
                 or identity (ask the shadow for uncompressed answers)"
            )),
        }
    }

    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            AcceptEncoding::Preserve => "preserve",
            AcceptEncoding::Identity => "identity",
        }
    }
}

/// A regex replacement: the first match of `pattern` is replaced by `replacement` (`$1`,
/// `${name}`: capture groups, checked against the pattern when parsed).
#[derive(Clone, Debug)]
pub struct Rewrite {
    /// What is matched.
    pub pattern: Regex,
    /// What the first match becomes.
    pub replacement: String,
}

impl Rewrite {
    /// `text` with the first match replaced (borrowed when nothing matched).
    pub fn apply<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        self.pattern.replace(text, self.replacement.as_str())
    }
}

impl PartialEq for Rewrite {
    fn eq(&self, other: &Self) -> bool {
        self.pattern.as_str() == other.pattern.as_str() && self.replacement == other.replacement
    }
}

/// `[[shadow.header_rewrite]]`: a [`Rewrite`] of every value of one header.
#[derive(Clone, Debug, PartialEq)]
pub struct HeaderRewrite {
    /// The header whose values are rewritten.
    pub name: HeaderName,
    /// The rewrite of each value.
    pub value: Rewrite,
}

/// Where and how requests are replayed.
#[derive(Clone, Debug, PartialEq)]
pub struct ShadowConfig {
    /// Base URL of the shadow model server.
    pub url: ShadowUrl,
    /// Base URL of a second instance of the production model, the noise baseline: every
    /// replayed request goes there too, and what differs between production and it is
    /// nondeterminism (`shadow_core::noise`). Replayed with these settings, but to
    /// production's own paths (`model` and `rewrites` name the shadow's).
    pub baseline: Option<ShadowUrl>,
    /// Per-request timeout (connect + response + body).
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Replayed requests in flight at most.
    pub concurrency: NonZeroUsize,
    /// Keep-alive pool: idle connections kept per host.
    pub pool_max_idle: usize,
    /// Keep-alive pool: idle connections closed after this long.
    pub pool_idle_timeout: Duration,
    /// `Host` header on replayed requests.
    pub host_header: HostHeader,
    /// Headers set (added or replaced) on replayed requests, names lower-case.
    pub set_headers: Vec<(HeaderName, HeaderValue)>,
    /// Headers removed from replayed requests.
    pub remove_headers: Vec<HeaderName>,
    /// Largest shadow response body read; larger counts as a shadow protocol error.
    pub max_response_bytes: usize,
    /// `Accept-Encoding` on replayed requests.
    pub accept_encoding: AcceptEncoding,
    /// The model name the shadow serves under, put into Open Inference Protocol, TF-Serving /
    /// KServe v1 and MLflow deployment paths (`replay` knows those paths).
    pub model: Option<String>,
    /// `[[shadow.rewrite]]`: rewrites of the request path (not the query), applied in order
    /// after the `model` rewrite.
    pub rewrites: Vec<Rewrite>,
    /// `[[shadow.header_rewrite]]`: rewrites of header values, applied in order.
    pub header_rewrites: Vec<HeaderRewrite>,
}

/// A set of HTTP methods, upper-cased when parsed (config values are case-insensitive; methods
/// on the wire are compared exactly, as RFC 9110 says).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MethodSet(Vec<Method>);

impl MethodSet {
    /// Whether `method` (as received) is in the set.
    pub fn contains(&self, method: &str) -> bool {
        self.0.iter().any(|m| m.as_str() == method)
    }

    /// The methods, in configured order.
    pub fn iter(&self) -> impl Iterator<Item = &Method> {
        self.0.iter()
    }
}

impl FromIterator<Method> for MethodSet {
    fn from_iter<I: IntoIterator<Item = Method>>(iter: I) -> Self {
        let mut set = Vec::new();
        for m in iter {
            if !set.contains(&m) {
                set.push(m);
            }
        }
        MethodSet(set)
    }
}

/// The token bucket limiting requests to the shadow.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Requests per second (> 0).
    pub per_second: f64,
    /// Burst; 0 = max(1, per_second).
    pub burst: u32,
}

/// Which exchanges are mirrored and how fast.
#[derive(Clone, Debug, PartialEq)]
pub struct MirrorConfig {
    /// Methods mirrored.
    pub methods: MethodSet,
    /// Methods never mirrored, even if in `methods`.
    pub deny_methods: MethodSet,
    /// Path prefixes mirrored (each starts with `/`); empty = all paths.
    pub paths: Vec<String>,
    /// Path prefixes never mirrored (each starts with `/`).
    pub deny_paths: Vec<String>,
    /// Percentage of eligible requests mirrored, 0-100. Deterministic per request.
    pub sample_percent: f64,
    /// Seed mixed into the sampling hash.
    pub sample_seed: u64,
    /// Token bucket; `None` = unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Queue between admission and replay; when full, requests are dropped and counted.
    pub queue: NonZeroUsize,
    /// When queued replays are sent.
    pub pacing: Pacing,
}

/// When queued replays are sent to the shadow (`mirror.pacing`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pacing {
    /// Like production: in the order and at the spacing the requests were seen on the wire,
    /// never more in flight than production had at that moment (and `shadow.concurrency` at
    /// most), so the shadow sees production's load and latencies compare like with like.
    #[default]
    Production,
    /// As soon as possible, up to `shadow.concurrency` in flight.
    Asap,
}

impl Pacing {
    /// `production` or `asap`.
    pub fn parse(text: &str) -> Result<Pacing, String> {
        match text {
            "production" => Ok(Pacing::Production),
            "asap" => Ok(Pacing::Asap),
            other => Err(format!(
                "`{other}` is not a pacing: use \"production\" (production's order, spacing and \
                 concurrency) or \"asap\" (as fast as shadow.concurrency allows)"
            )),
        }
    }

    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            Pacing::Production => "production",
            Pacing::Asap => "asap",
        }
    }
}

/// Pauses mirroring while the shadow is failing.
#[derive(Clone, Debug, PartialEq)]
pub struct CircuitBreakerConfig {
    /// Turn the breaker off entirely.
    pub enabled: bool,
    /// Outcomes remembered (sliding window, in requests).
    pub window: NonZeroUsize,
    /// No decision before this many outcomes are in the window (at most `window`).
    pub min_requests: NonZeroUsize,
    /// Open when the failure fraction reaches this, in (0, 1].
    pub failure_ratio: f64,
    /// Stay open this long before probing.
    pub open_for: Duration,
    /// Requests let through while half-open; all must succeed to close again.
    pub probes: NonZeroUsize,
    /// A shadow answer slower than this counts as a failure too.
    pub slow_call: Option<Duration>,
}

/// How answers are compared: the preset and diff options of a [`Comparer`].
#[derive(Clone, Debug)]
pub struct CompareConfig {
    /// The preset as configured (`tfserving` and `mlflow` extract alike).
    pub preset_name: PresetName,
    /// Where the prediction is found.
    pub preset: Preset,
    /// Tolerances, the configured ignored paths, unordered arrays, diff limit.
    pub diff: DiffOptions,
    /// Whether the preset's per-response fields ([`PresetName::default_ignores`]) are ignored
    /// too.
    pub preset_ignores: bool,
    /// Caps on decoded bodies: `capture.max_body_bytes` for production's answers,
    /// `shadow.max_response_bytes` for the shadow's.
    pub decode_limits: DecodeLimits,
    /// The user's `.proto` files (`compare.proto`), as given.
    pub proto_files: Vec<PathBuf>,
    /// Their import directories (`compare.proto_include`), as given.
    pub proto_include: Vec<PathBuf>,
    /// Compiled from `proto_files` at start-up: decodes the gRPC methods they define.
    pub proto_schema: Option<ProtoSchema>,
}

impl CompareConfig {
    /// The comparer these settings describe.
    pub fn comparer(&self) -> Comparer {
        let mut diff = self.diff.clone();
        diff.ignore.extend(
            self.preset_ignore_paths()
                .iter()
                .map(|p| PathPattern::parse(p)),
        );
        let grpc = GrpcDecoder::new(self.preset_name.grpc_preset(), self.proto_schema.clone());
        Comparer::new(self.preset.clone(), diff)
            .with_decode_limits(self.decode_limits)
            .with_grpc_decoder(grpc)
    }

    /// The preset's ignored paths in effect (none when `preset_ignores` is off).
    pub fn preset_ignore_paths(&self) -> &'static [&'static str] {
        if self.preset_ignores {
            self.preset_name.default_ignores()
        } else {
            &[]
        }
    }
}

impl PartialEq for CompareConfig {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&self.diff, &other.diff);
        self.preset_name == other.preset_name
            && self.preset == other.preset
            && a.abs_tolerance == b.abs_tolerance
            && a.rel_tolerance == b.rel_tolerance
            && a.ignore == b.ignore
            && a.unordered == b.unordered
            && a.max_diffs == b.max_diffs
            && self.preset_ignores == other.preset_ignores
            && self.decode_limits == other.decode_limits
            && self.proto_files == other.proto_files
            && self.proto_include == other.proto_include
    }
}

/// JSON-lines log of the comparisons that differ.
#[derive(Clone, Debug, PartialEq)]
pub struct DiscrepancyLogConfig {
    /// File path; `None` = no log.
    pub path: Option<PathBuf>,
    /// Rotate when the file would exceed this many bytes (at least 4096 when logging).
    pub max_bytes: u64,
    /// Rotated files kept (`path.1` .. `path.N`).
    pub max_files: u32,
    /// Request body bytes copied into each line (0, the default = only the sha256 and length:
    /// request bodies are users' data, logged only when asked for).
    pub body_max_bytes: usize,
    /// Headers redacted in addition to the defaults.
    pub redact_headers: Vec<HeaderName>,
    /// Body fields redacted (`*` = any segment).
    pub redact_fields: Vec<PathPattern>,
}

/// The admin HTTP server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminConfig {
    /// Listen address for `/metrics`, `/healthz`, `/api/summary`.
    pub addr: SocketAddr,
    /// File holding the bearer token (read and checked at start by
    /// [`crate::security::AdminToken::read`]): required by `POST /api/labels`, and by every
    /// endpoint but `/healthz` when `addr` is not loopback (which needs a token file).
    pub token_file: Option<PathBuf>,
    /// Length of one bucket of `/api/timeseries`.
    pub timeseries_interval: Duration,
    /// Buckets `/api/timeseries` keeps.
    pub timeseries_buckets: NonZeroUsize,
}

/// Request ids, the ground-truth join and segments.
#[derive(Clone, Debug, PartialEq)]
pub struct GroundTruthConfig {
    /// Where request ids and the segment field are read.
    pub rules: KeyRules,
    /// The join's and the segments' caps.
    pub limits: EvaluationLimits,
    /// Labels known in advance, read at start.
    pub labels_file: Option<PathBuf>,
}

/// Where the aggregates are saved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateConfig {
    /// The state file (none = not saved).
    pub path: Option<PathBuf>,
    /// How often it is written.
    pub interval: Duration,
}

/// `[rollback]`: a reverse-shadow run's rollback triggers and actions (docs/rollback.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollbackSettings {
    /// The criteria whose failure calls for a rollback (never empty; each one can fail).
    pub triggers: Vec<CriterionName>,
    /// At most one firing per this long (> 0).
    pub cooldown: Duration,
    /// Only log what would run, run nothing.
    pub dry_run: bool,
    /// The command run on a firing, without a shell.
    pub command: Option<RollbackCommand>,
    /// The `http://` URL a firing is POSTed to.
    pub webhook: Option<Uri>,
    /// How long each action may take (> 0); a command still running then is killed.
    pub action_timeout: Duration,
}

impl RollbackSettings {
    /// The pure policy's part (`shadow_core::rollback`).
    pub fn policy(&self) -> RollbackConfig {
        RollbackConfig {
            triggers: self.triggers.clone(),
            cooldown: self.cooldown,
        }
    }
}

/// A program and its arguments, run as given: no shell, no globbing, no `$VAR` expansion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollbackCommand {
    /// Absolute path of the program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
}

impl fmt::Display for RollbackCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.program.display())?;
        for arg in &self.args {
            write!(f, " {arg:?}")?;
        }
        Ok(())
    }
}

/// CPU and memory of the model servers and of shadowd (`[resources]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcesConfig {
    /// Measure the model servers at all (shadowd's own usage is always measured).
    pub enabled: bool,
    /// Time between samples.
    pub sample_interval: Duration,
    /// Where the production server's usage is read.
    pub production: ResourceTarget,
    /// Where the shadow server's usage is read.
    pub shadow: ResourceTarget,
}

/// Where one model server's CPU and memory are read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ResourceTarget {
    /// The processes holding the socket that listens on the server's port (production: the
    /// first capture port; the shadow: its URL's port, when the URL names this host).
    #[default]
    Discover,
    /// This process (`*_pid`).
    Pid(NonZeroU32),
    /// This cgroup v2 directory (`*_cgroup`): `cpu.stat` and `memory.current`.
    Cgroup(PathBuf),
}
