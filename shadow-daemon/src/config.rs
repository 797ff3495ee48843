//! Daemon configuration: a TOML file (`--config`) with every key optional, overridden by flags,
//! then [`Config::validate`]d. `deploy/shadowtap.example.toml` documents every key.

use crate::capture::CaptureKind;
use serde::{Deserialize, Serialize};
pub use shadow_core::compare::PresetName;
use shadow_core::compare::{Comparer, DiffOptions, PathPattern, Preset};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A configuration problem, phrased for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown keys / wrong types.
    #[error("config file `{path}`: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value is out of range or inconsistent with another.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration of `shadowd run`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub capture: CaptureConfig,
    pub shadow: ShadowConfig,
    pub mirror: MirrorConfig,
    pub circuit_breaker: CircuitBreakerConfig,
    pub compare: CompareConfig,
    pub discrepancy_log: DiscrepancyLogConfig,
    pub admin: AdminConfig,
}

/// What to tap: the production model server.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    /// Interface to tap (`lo`, `eth0`).
    pub interface: String,
    /// Production server TCP ports.
    pub ports: Vec<u16>,
    /// Capture backend.
    #[serde(serialize_with = "serialize_capture_kind")]
    pub kind: CaptureKind,
    /// Largest request or response body kept; larger exchanges are `truncated` and not replayed.
    pub max_body_bytes: usize,
    /// Depth of the channel carrying exchanges from the HTTP stage to the pipeline.
    pub exchange_channel: usize,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            interface: String::new(),
            ports: Vec::new(),
            kind: CaptureKind::Ebpf,
            max_body_bytes: 16 << 20,
            exchange_channel: 4096,
        }
    }
}

fn serialize_capture_kind<S: serde::Serializer>(k: &CaptureKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match k {
        CaptureKind::Ebpf => "ebpf",
        CaptureKind::Afpacket => "afpacket",
    })
}

/// How `Host` is set on replayed requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum HostHeader {
    /// Keep the production request's `Host` (default).
    #[default]
    Preserve,
    /// Use the shadow URL's authority.
    Shadow,
    /// Use this literal value.
    Literal(String),
}

impl Serialize for HostHeader {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            HostHeader::Preserve => s.serialize_str("preserve"),
            HostHeader::Shadow => s.serialize_str("shadow"),
            HostHeader::Literal(v) => s.serialize_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for HostHeader {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(HostHeader::parse(&String::deserialize(d)?))
    }
}

impl HostHeader {
    /// `preserve`, `shadow`, or any other string as a literal Host value.
    pub fn parse(s: &str) -> Self {
        match s {
            "preserve" | "" => HostHeader::Preserve,
            "shadow" => HostHeader::Shadow,
            other => HostHeader::Literal(other.to_string()),
        }
    }
}

/// Where and how requests are replayed.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ShadowConfig {
    /// Base URL of the shadow model server (`http://host:port[/prefix]`).
    pub url: String,
    /// Per-request timeout (connect + response + body), milliseconds.
    pub timeout_ms: u64,
    /// Connect timeout, milliseconds.
    pub connect_timeout_ms: u64,
    /// At most this many replayed requests in flight.
    pub concurrency: usize,
    /// Keep-alive pool: idle connections kept per host.
    pub pool_max_idle: usize,
    /// Keep-alive pool: idle connections closed after this many milliseconds.
    pub pool_idle_timeout_ms: u64,
    /// `Host` header on replayed requests: `preserve`, `shadow` or a literal value.
    pub host_header: HostHeader,
    /// Headers set (added or replaced) on replayed requests.
    pub set_headers: BTreeMap<String, String>,
    /// Headers removed from replayed requests (case-insensitive).
    pub remove_headers: Vec<String>,
    /// Largest shadow response body read; larger counts as a shadow protocol error.
    pub max_response_bytes: usize,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        ShadowConfig {
            url: String::new(),
            timeout_ms: 5_000,
            connect_timeout_ms: 1_000,
            concurrency: 32,
            pool_max_idle: 32,
            pool_idle_timeout_ms: 90_000,
            host_header: HostHeader::Preserve,
            set_headers: BTreeMap::new(),
            remove_headers: Vec::new(),
            max_response_bytes: 16 << 20,
        }
    }
}

/// Which exchanges are mirrored and how fast.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MirrorConfig {
    /// Methods mirrored (case-insensitive). Default GET, POST, HEAD.
    pub methods: Vec<String>,
    /// Methods never mirrored, even if listed in `methods`. Default PUT, PATCH, DELETE.
    pub deny_methods: Vec<String>,
    /// Path prefixes mirrored; empty = all paths.
    pub paths: Vec<String>,
    /// Path prefixes never mirrored.
    pub deny_paths: Vec<String>,
    /// Percentage of eligible requests mirrored, 0-100. Deterministic per request.
    pub sample_percent: f64,
    /// Seed mixed into the sampling hash (change it to sample a different subset).
    pub sample_seed: u64,
    /// Requests per second sent to the shadow (token bucket); 0 = unlimited.
    pub rate_limit: f64,
    /// Token-bucket burst; 0 = max(1, rate_limit).
    pub burst: u32,
    /// Queue between pipeline and replay; when full, requests are dropped and counted.
    pub queue: usize,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            methods: vec!["GET".into(), "POST".into(), "HEAD".into()],
            deny_methods: vec!["PUT".into(), "PATCH".into(), "DELETE".into()],
            paths: Vec::new(),
            deny_paths: Vec::new(),
            sample_percent: 100.0,
            sample_seed: 0,
            rate_limit: 0.0,
            burst: 0,
            queue: 1024,
        }
    }
}

/// Pauses mirroring while the shadow is failing.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Turn the breaker off entirely.
    pub enabled: bool,
    /// Outcomes remembered (sliding window, in requests).
    pub window: usize,
    /// No decision before this many outcomes are in the window.
    pub min_requests: usize,
    /// Open when the failure fraction (connect errors, timeouts, garbage, 5xx) reaches this, 0-1.
    pub failure_ratio: f64,
    /// Stay open this long before probing, milliseconds.
    pub open_ms: u64,
    /// Requests let through while half-open; all must succeed to close again.
    pub probes: usize,
    /// A shadow answer slower than this (ms) counts as a failure too; 0 = off.
    pub slow_call_ms: u64,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            enabled: true,
            window: 50,
            min_requests: 10,
            failure_ratio: 0.5,
            open_ms: 10_000,
            probes: 3,
            slow_call_ms: 0,
        }
    }
}

/// How answers are compared.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CompareConfig {
    /// Prediction extraction preset.
    pub preset: PresetName,
    /// JSON pointer to the prediction when `preset = "json-pointer"`.
    pub prediction_pointer: Option<String>,
    /// KServe v2: name of the output holding class labels (default: an integer/string output if
    /// any, else argmax of the first score output).
    pub label_output: Option<String>,
    /// Numbers are equal when |a-b| <= abs_tolerance ...
    pub abs_tolerance: f64,
    /// ... or |a-b| <= rel_tolerance * max(|a|, |b|).
    pub rel_tolerance: f64,
    /// JSON pointers ignored in body diffs (`*` matches any one segment), e.g. `/id`.
    pub ignore_paths: Vec<String>,
    /// JSON pointers of arrays compared without regard to order.
    pub unordered_arrays: Vec<String>,
    /// At most this many field differences kept per comparison.
    pub max_diffs: usize,
}

impl Default for CompareConfig {
    fn default() -> Self {
        CompareConfig {
            preset: PresetName::KserveV2,
            prediction_pointer: None,
            label_output: None,
            abs_tolerance: 1e-6,
            rel_tolerance: 1e-6,
            ignore_paths: Vec::new(),
            unordered_arrays: Vec::new(),
            max_diffs: 50,
        }
    }
}

impl CompareConfig {
    /// The comparer these settings describe.
    pub fn comparer(&self) -> Comparer {
        let patterns = |v: &[String]| v.iter().map(|p| PathPattern::parse(p)).collect();
        let body = DiffOptions {
            abs_tolerance: self.abs_tolerance,
            rel_tolerance: self.rel_tolerance,
            ignore: patterns(&self.ignore_paths),
            unordered: patterns(&self.unordered_arrays),
            max_diffs: self.max_diffs,
        };
        let preset = Preset::named(
            self.preset,
            self.label_output.clone(),
            self.prediction_pointer.clone(),
        );
        Comparer::new(preset, body)
    }
}

/// JSON-lines log of the comparisons that differ.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DiscrepancyLogConfig {
    /// File path; absent = no log.
    pub path: Option<PathBuf>,
    /// Rotate when the file would exceed this many bytes.
    pub max_bytes: u64,
    /// Rotated files kept (`path.1` .. `path.N`).
    pub max_files: u32,
    /// Request body bytes copied into each line (0 = only the sha256).
    pub body_max_bytes: usize,
    /// Headers replaced by `[REDACTED]` (case-insensitive), in addition to the defaults
    /// `authorization`, `cookie`, `set-cookie`, `proxy-authorization`.
    pub redact_headers: Vec<String>,
    /// JSON pointers (`*` = any segment) of body fields replaced by `[REDACTED]`.
    pub redact_fields: Vec<String>,
}

impl Default for DiscrepancyLogConfig {
    fn default() -> Self {
        DiscrepancyLogConfig {
            path: None,
            max_bytes: 64 << 20,
            max_files: 5,
            body_max_bytes: 4096,
            redact_headers: Vec::new(),
            redact_fields: Vec::new(),
        }
    }
}

/// The admin HTTP server.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Listen address for `/metrics`, `/healthz`, `/api/summary`.
    pub addr: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

impl Config {
    /// Parses a TOML document (all keys optional).
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Reads a TOML file, or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Ok(Config::default()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                Config::from_toml(&text, p)
            }
        }
    }

    /// The shadow URL, parsed (call after [`Config::validate`]).
    pub fn shadow_uri(&self) -> Result<hyper::Uri, ConfigError> {
        let uri: hyper::Uri = self.shadow.url.parse().map_err(|e| {
            ConfigError::Invalid(format!(
                "shadow.url `{}` is not a URL: {e}",
                self.shadow.url
            ))
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(ConfigError::Invalid(format!(
                    "shadow.url `{}`: https is not supported yet; use http://",
                    self.shadow.url
                )));
            }
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "shadow.url `{}` must start with http://",
                    self.shadow.url
                )));
            }
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(ConfigError::Invalid(format!(
                "shadow.url `{}` has no host",
                self.shadow.url
            )));
        }
        Ok(uri)
    }

    /// Checks every value; the message names the key and what is expected.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.capture.ports.is_empty() {
            return bad("capture.ports is empty: give the production port (--port)".into());
        }
        if self.capture.ports.contains(&0) {
            return bad("capture.ports: port 0 is not a valid production port".into());
        }
        if self.capture.exchange_channel == 0 {
            return bad("capture.exchange_channel must be at least 1".into());
        }
        if self.shadow.url.is_empty() {
            return bad("shadow.url is missing: give the shadow model's URL (--shadow)".into());
        }
        let uri = self.shadow_uri()?;
        let shadow_port = uri.port_u16().unwrap_or(80);
        if self.capture.ports.contains(&shadow_port) {
            return bad(format!(
                "shadow.url `{}` uses port {shadow_port}, which is a tapped production port: the \
                 tap filters by port, so replayed requests would be captured and mirrored again. \
                 Run the shadow on another port",
                self.shadow.url
            ));
        }
        if self.shadow.timeout_ms == 0 {
            return bad("shadow.timeout_ms must be > 0".into());
        }
        if self.shadow.connect_timeout_ms == 0 {
            return bad("shadow.connect_timeout_ms must be > 0".into());
        }
        if self.shadow.concurrency == 0 {
            return bad("shadow.concurrency must be at least 1".into());
        }
        for name in self
            .shadow
            .set_headers
            .keys()
            .chain(self.shadow.remove_headers.iter())
        {
            if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return bad(format!("shadow header `{name}` is not a valid header name"));
            }
        }
        for (name, value) in &self.shadow.set_headers {
            if hyper::header::HeaderValue::from_str(value).is_err() {
                return bad(format!(
                    "shadow.set_headers.{name}: value is not a valid header value"
                ));
            }
        }
        if let HostHeader::Literal(h) = &self.shadow.host_header
            && hyper::header::HeaderValue::from_str(h).is_err()
        {
            return bad(format!(
                "shadow.host_header `{h}` is not a valid header value"
            ));
        }
        let m = &self.mirror;
        if !(0.0..=100.0).contains(&m.sample_percent) {
            return bad(format!(
                "mirror.sample_percent = {} is outside 0..=100",
                m.sample_percent
            ));
        }
        if !m.rate_limit.is_finite() || m.rate_limit < 0.0 {
            return bad(format!(
                "mirror.rate_limit = {} must be >= 0 (0 = unlimited)",
                m.rate_limit
            ));
        }
        if m.queue == 0 {
            return bad("mirror.queue must be at least 1".into());
        }
        for method in m.methods.iter().chain(m.deny_methods.iter()) {
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                return bad(format!("mirror methods: `{method}` is not an HTTP method"));
            }
        }
        for p in m.paths.iter().chain(m.deny_paths.iter()) {
            if !p.starts_with('/') {
                return bad(format!("mirror paths: `{p}` must start with `/`"));
            }
        }
        let cb = &self.circuit_breaker;
        if cb.enabled {
            if cb.window == 0 || cb.min_requests == 0 || cb.min_requests > cb.window {
                return bad(format!(
                    "circuit_breaker: need 1 <= min_requests ({}) <= window ({})",
                    cb.min_requests, cb.window
                ));
            }
            if !(cb.failure_ratio > 0.0 && cb.failure_ratio <= 1.0) {
                return bad(format!(
                    "circuit_breaker.failure_ratio = {} must be in (0, 1]",
                    cb.failure_ratio
                ));
            }
            if cb.probes == 0 {
                return bad("circuit_breaker.probes must be at least 1".into());
            }
        }
        let c = &self.compare;
        if !(c.abs_tolerance >= 0.0 && c.rel_tolerance >= 0.0) {
            return bad("compare tolerances must be >= 0".into());
        }
        match (c.preset, &c.prediction_pointer) {
            (PresetName::JsonPointer, None) => {
                return bad(
                    "compare.preset = \"json-pointer\" needs compare.prediction_pointer".into(),
                );
            }
            (_, Some(p)) if !p.is_empty() && !p.starts_with('/') => {
                return bad(format!(
                    "compare.prediction_pointer `{p}` must be a JSON pointer (start with `/`)"
                ));
            }
            _ => {}
        }
        for p in c
            .ignore_paths
            .iter()
            .chain(c.unordered_arrays.iter())
            .chain(self.discrepancy_log.redact_fields.iter())
        {
            if !p.is_empty() && !p.starts_with('/') {
                return bad(format!(
                    "`{p}` is not a JSON pointer (start with `/`, `*` = any segment)"
                ));
            }
        }
        let d = &self.discrepancy_log;
        if d.path.is_some() && d.max_bytes < 4096 {
            return bad("discrepancy_log.max_bytes must be at least 4096".into());
        }
        if self.admin.addr.port() != 0 && self.capture.ports.contains(&self.admin.addr.port()) {
            return bad(format!(
                "admin.addr {} uses a tapped production port",
                self.admin.addr
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Config {
        let mut c = Config::default();
        c.capture.interface = "lo".into();
        c.capture.ports = vec![8080];
        c.shadow.url = "http://127.0.0.1:8081".into();
        c
    }

    #[test]
    fn minimal_config_is_valid() {
        minimal().validate().unwrap();
    }

    #[test]
    fn shadow_on_production_port_is_rejected() {
        let mut c = minimal();
        c.shadow.url = "http://127.0.0.1:8080".into();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("tapped production port"), "{err}");
        c.shadow.url = "http://shadow.internal".into();
        c.capture.ports = vec![80];
        assert!(c.validate().is_err());
    }

    #[test]
    fn bad_values_are_rejected_with_the_key_named() {
        let mut c = minimal();
        c.mirror.sample_percent = 100.5;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("sample_percent")
        );
        let mut c = minimal();
        c.shadow.url = "not a url".into();
        assert!(c.validate().unwrap_err().to_string().contains("shadow.url"));
        let mut c = minimal();
        c.shadow.url = "ftp://127.0.0.1:9".into();
        assert!(c.validate().is_err());
        let mut c = minimal();
        c.compare.preset = PresetName::JsonPointer;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("prediction_pointer")
        );
    }

    #[test]
    fn toml_keys_parse_and_unknown_keys_fail() {
        let text = r#"
            [capture]
            interface = "eth0"
            ports = [8080, 8443]
            [shadow]
            url = "http://10.0.0.2:9000"
            host_header = "shadow"
            set_headers = { "x-shadowtap" = "1" }
            [mirror]
            sample_percent = 12.5
            [compare]
            preset = "json-pointer"
            prediction_pointer = "/result/score"
        "#;
        let c = Config::from_toml(text, Path::new("t.toml")).unwrap();
        assert_eq!(c.capture.ports, vec![8080, 8443]);
        assert_eq!(c.shadow.host_header, HostHeader::Shadow);
        assert_eq!(c.mirror.sample_percent, 12.5);
        assert_eq!(c.compare.preset, PresetName::JsonPointer);
        assert_eq!(c.mirror.methods, vec!["GET", "POST", "HEAD"]);
        c.validate().unwrap();
        let err = Config::from_toml("[shadow]\nurll = \"x\"", Path::new("t.toml")).unwrap_err();
        assert!(err.to_string().contains("url"), "{err}");
    }

    #[test]
    fn example_config_parses_and_documents_every_key() {
        let text = include_str!("../../deploy/shadowtap.example.toml");
        let c = Config::from_toml(text, Path::new("example")).unwrap();
        c.validate().unwrap();
        // Every key serialized from the defaults appears in the example file.
        let full = toml::to_string(&Config {
            discrepancy_log: DiscrepancyLogConfig {
                path: Some("x".into()),
                ..Default::default()
            },
            compare: CompareConfig {
                prediction_pointer: Some("/x".into()),
                label_output: Some("x".into()),
                ..Default::default()
            },
            ..Config::default()
        })
        .unwrap();
        let mut section = String::new();
        for line in full.lines() {
            let documented = |key: &str| {
                text.lines().any(|l| {
                    l.trim_start_matches('#')
                        .trim_start()
                        .starts_with(&format!("{key} ="))
                })
            };
            if line.starts_with('[') {
                section = line.to_string();
                // A sub-table (`[shadow.set_headers]`) may be documented inline.
                let inline = section
                    .trim_matches(['[', ']'])
                    .rsplit_once('.')
                    .is_some_and(|(_, key)| documented(key));
                assert!(text.contains(&section) || inline, "example lacks {section}");
            } else if let Some((key, _)) = line.split_once(" = ") {
                assert!(documented(key), "example lacks {section} {key}");
            }
        }
    }
}
