//! `TryFrom<RawConfig> for Config`: every value is parsed into its typed form and every problem
//! is recorded (named by key, located by origin) before anything is given up on, so one run
//! reports them all.

use super::error::{ConfigError, Finding, located};
use super::raw::{
    List, Origin, RawAdmin, RawCapture, RawCircuitBreaker, RawCompare, RawConfig,
    RawDiscrepancyLog, RawGroundTruth, RawHeaderRewrite, RawMirror, RawReassembly, RawResources,
    RawRewrite, RawRollback, RawShadow, Setting,
};
use super::typed::{
    AcceptEncoding, AdminConfig, CaptureConfig, CircuitBreakerConfig, CompareConfig, Config,
    DiscrepancyLogConfig, GroundTruthConfig, HeaderRewrite, HostHeader, MethodSet, MirrorConfig,
    Pacing, RateLimit, ResourceTarget, ResourcesConfig, Rewrite, RollbackCommand, RollbackSettings,
    ShadowConfig, ShadowUrl, StateConfig,
};
use crate::security::{MIN_TOKEN_LEN, is_loopback};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Uri};
use regex::Regex;
use shadow_core::compare::{DecodeLimits, DiffOptions, PathPattern, Preset, PresetName};
use shadow_core::criteria::Criteria;
use shadow_core::evaluation::{EvaluationLimits, KeyRules};
use shadow_core::labels::JoinLimits;
use shadow_core::reassembly::ReassemblyConfig;
use shadow_core::rollback::{TRIGGERABLE, criterion_named};
use std::num::{NonZeroU16, NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The smallest rotating discrepancy log.
const MIN_LOG_BYTES: u64 = 4096;
/// The shortest resource sampling interval: CPU time is counted in clock ticks (10 ms).
const MIN_SAMPLE_INTERVAL_MS: u64 = 100;

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Config, ConfigError> {
        let mut checks = Checks::default();
        let capture = capture(&raw.capture, &mut checks);
        let shadow = shadow(&raw.shadow, &mut checks);
        let mirror = mirror(&raw.mirror, &mut checks);
        let circuit_breaker = circuit_breaker(&raw.circuit_breaker, &mut checks);
        let mut compare = compare(&raw.compare, &mut checks);
        let discrepancy_log = discrepancy_log(&raw.discrepancy_log, &mut checks);
        let admin = admin(&raw.admin, &mut checks);
        let ground_truth = ground_truth(&raw.ground_truth, &mut checks);
        let criteria = criteria(raw.criteria.as_ref(), &mut checks);
        let state = StateConfig {
            path: raw.state.path.as_ref().map(|p| p.value.clone()),
            interval: Duration::from_millis(raw.state.interval_ms.value.max(100)),
        };
        let rollback = match &raw.rollback {
            None => Some(None),
            Some(r) => rollback(r, &mut checks).map(Some),
        };
        let resources = resources(&raw.resources, &mut checks);
        if let (Some(capture), Some(shadow)) = (&capture, &shadow) {
            let port = shadow.url.port();
            checks.ensure(
                !capture.taps_port(port),
                "shadow.url",
                url_origin(&raw.shadow),
                || {
                    format!(
                        "`{}` uses port {port}, which is a tapped production port: {}. Run the \
                         shadow on a port that is not in capture.ports",
                        shadow.url,
                        feedback_loop()
                    )
                },
            );
        }
        if let (Some(capture), Some(shadow)) = (&capture, &shadow)
            && let Some(baseline) = &shadow.baseline
        {
            let origin = baseline_origin(&raw.shadow);
            let port = baseline.port();
            checks.ensure(!capture.taps_port(port), "shadow.baseline", origin, || {
                format!(
                    "`{baseline}` uses port {port}, which is a tapped production port: {}. Run \
                     the baseline (a second production instance) on a port that is not in \
                     capture.ports",
                    feedback_loop()
                )
            });
            checks.ensure(
                baseline.authority() != shadow.url.authority(),
                "shadow.baseline",
                origin,
                || {
                    format!(
                        "`{baseline}` is the shadow's server ({}): the baseline must be a second \
                         instance of the production model, so that what differs between it and \
                         production is production's own noise",
                        shadow.url
                    )
                },
            );
        }
        if let (Some(capture), Some(shadow), Some(compare)) = (&capture, &shadow, &mut compare) {
            compare.decode_limits = DecodeLimits {
                production: capture.max_body_bytes,
                shadow: shadow.max_response_bytes,
            };
        }
        if let Some(capture) = &capture {
            let port = admin.addr.port();
            checks.ensure(
                port == 0 || !capture.taps_port(port),
                "admin.addr",
                &raw.admin.addr.origin,
                || {
                    format!(
                        "{} uses a tapped production port: give the admin server another port",
                        admin.addr
                    )
                },
            );
        }
        // Keys the file could not provide are reported once, not again through the defaults
        // standing in for them. (A section is `None` only after a finding, so an error always
        // lists at least one problem.)
        let rejected = raw.file.as_ref().map_or(&[][..], |f| &f.rejected[..]);
        let mut findings = rejected.to_vec();
        findings.extend(checks.findings.into_iter().filter(|f| {
            let stands_in = |gone: &String| {
                f.key
                    .as_ref()
                    .is_some_and(|key| key == gone || key.starts_with(&format!("{gone}.")))
            };
            f.origin != Origin::Default
                || !rejected
                    .iter()
                    .filter_map(|r| r.key.as_ref())
                    .any(stands_in)
        }));
        match (
            capture,
            shadow,
            mirror,
            circuit_breaker,
            compare,
            discrepancy_log,
            ground_truth,
            criteria,
            rollback,
            resources,
        ) {
            (
                Some(capture),
                Some(shadow),
                Some(mirror),
                Some(circuit_breaker),
                Some(compare),
                Some(discrepancy_log),
                Some(ground_truth),
                Some(criteria),
                Some(rollback),
                Some(resources),
            ) if findings.is_empty() => Ok(Config {
                capture,
                shadow,
                mirror,
                circuit_breaker,
                compare,
                discrepancy_log,
                admin,
                ground_truth,
                criteria,
                state,
                rollback,
                resources,
            }),
            _ => Err(located(findings, raw.file.as_ref())),
        }
    }
}

impl Config {
    /// Parses a TOML document (every key optional) into a checked config.
    pub fn from_toml(text: &str, path: &std::path::Path) -> Result<Config, ConfigError> {
        Config::try_from(RawConfig::from_toml(text, path)?)
    }
}

/// Why no replay may go to a tapped port, whatever its host.
fn feedback_loop() -> &'static str {
    "the tap selects packets by port on both sides of a connection, so replays sent there would \
     be tapped and mirrored again: the mirror would mirror itself in a feedback loop. Whatever \
     the host: a remote one reached through the tapped interface is tapped the same way, and one \
     that is or resolves to this machine (localhost, any of its addresses) is production itself"
}

fn url_origin(raw: &RawShadow) -> &Origin {
    raw.url.as_ref().map_or(&Origin::Default, |u| &u.origin)
}

fn baseline_origin(raw: &RawShadow) -> &Origin {
    raw.baseline
        .as_ref()
        .map_or(&Origin::Default, |u| &u.origin)
}

/// The problems found so far. Every check runs (recording what is wrong) before any section
/// is given up on, so that all problems are reported together.
#[derive(Default)]
pub(super) struct Checks {
    findings: Vec<Finding>,
}

impl Checks {
    pub(super) fn problem(
        &mut self,
        key: impl Into<String>,
        origin: &Origin,
        message: impl Into<String>,
    ) {
        self.findings.push(Finding::new(key, origin, message));
    }

    /// Records a problem unless `ok`; `Some(())` when ok, for `?`.
    pub(super) fn ensure(
        &mut self,
        ok: bool,
        key: &str,
        origin: &Origin,
        message: impl FnOnce() -> String,
    ) -> Option<()> {
        if !ok {
            self.problem(key, origin, message());
        }
        ok.then_some(())
    }

    /// Parses one setting, recording the problem if it fails.
    pub(super) fn value<T, U>(
        &mut self,
        key: &str,
        setting: &Setting<T>,
        parse: impl FnOnce(&T) -> Result<U, String>,
    ) -> Option<U> {
        parse(&setting.value)
            .map_err(|message| self.problem(key, &setting.origin, message))
            .ok()
    }

    /// Parses every element of a list, recording each bad one; `None` if any was bad.
    pub(super) fn list<T, U>(
        &mut self,
        key: &str,
        list: &List<T>,
        parse: impl Fn(&T) -> Result<U, String>,
    ) -> Option<Vec<U>> {
        let parsed: Vec<Option<U>> = list
            .value
            .iter()
            .map(|item| self.value(key, item, &parse))
            .collect();
        parsed.into_iter().collect()
    }
}

fn at_least_one(n: &usize) -> Result<NonZeroUsize, String> {
    NonZeroUsize::new(*n).ok_or_else(|| format!("{n} is too small: give at least 1"))
}

fn millis(ms: &u64) -> Duration {
    Duration::from_millis(*ms)
}

fn positive_millis(ms: &u64) -> Result<Duration, String> {
    if *ms == 0 {
        return Err("0 ms is not a timeout: give at least 1".into());
    }
    Ok(millis(ms))
}

/// Milliseconds (> 0) as nanoseconds, for the capture-time clock of reassembly.
fn positive_nanos(ms: &u64) -> Result<u64, String> {
    let d = positive_millis(ms)?;
    u64::try_from(d.as_nanos()).map_err(|_| {
        format!(
            "{ms} ms is too long: give at most {} ms",
            u64::MAX / 1_000_000
        )
    })
}

/// A duration written as one or more `<integer><unit>` parts, unit `ms`, `s`, `m` or `h`:
/// `"30s"`, `"10m"`, `"1h30m"`, `"1500ms"`.
pub(super) fn duration_text(text: &String) -> Result<Duration, String> {
    let hint = "give a duration such as \"30s\", \"10m\" or \"1h30m\" (units ms, s, m, h)";
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(format!("is empty: {hint}"));
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_len = rest[digits..]
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len() - digits);
        let (number, unit) = (&rest[..digits], &rest[digits..digits + unit_len]);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a duration: {hint}"))?;
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => n
                .checked_mul(60)
                .map(Duration::from_secs)
                .unwrap_or(Duration::MAX),
            "h" => n
                .checked_mul(3600)
                .map(Duration::from_secs)
                .unwrap_or(Duration::MAX),
            "" if digits == rest.len() => {
                return Err(format!("`{text}` has a number without a unit: {hint}"));
            }
            "" => return Err(format!("`{text}` is not a duration: {hint}")),
            other => return Err(format!("`{text}`: `{other}` is not a unit: {hint}")),
        };
        total = total.saturating_add(part);
        rest = rest[digits + unit_len..].trim_start();
    }
    Ok(total)
}

/// A [`duration_text`] that is not zero.
fn positive_duration(text: &String) -> Result<Duration, String> {
    let d = duration_text(text)?;
    if d.is_zero() {
        return Err(format!("`{text}` is zero: give a positive duration"));
    }
    Ok(d)
}

/// `name` as written in a dotted TOML key: bare if it can be, else quoted.
fn toml_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare {
        name.to_string()
    } else {
        format!("{name:?}")
    }
}

fn header_name(name: &String) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{name}` is not a valid header name"))
}

fn method(text: &String) -> Result<Method, String> {
    let upper = text.to_ascii_uppercase();
    if upper.is_empty() {
        return Err("an empty string is not an HTTP method".into());
    }
    Method::from_bytes(upper.as_bytes())
        .map_err(|_| format!("`{text}` is not an HTTP method (a token such as GET or POST)"))
}

fn path_prefix(path: &String) -> Result<String, String> {
    if path.starts_with('/') {
        Ok(path.clone())
    } else {
        Err(format!(
            "`{path}` must start with `/` (a path prefix such as /v2/models/)"
        ))
    }
}

/// A JSON pointer pattern (`""` is the whole document, `*` matches any one segment).
fn json_pointer(pointer: &String) -> Result<PathPattern, String> {
    if pointer.is_empty() || pointer.starts_with('/') {
        Ok(PathPattern::parse(pointer))
    } else {
        Err(format!(
            "`{pointer}` is not a JSON pointer: start it with `/` (`*` = any segment)"
        ))
    }
}

/// A regular expression (the `regex` crate's syntax).
fn regex(pattern: &String) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| {
        let why = e.to_string();
        let last = why.lines().last().unwrap_or_default().trim();
        format!("`{pattern}` is not a regular expression: {last}")
    })
}

/// A replacement for `pattern`'s first match: every `$group` / `${group}` it refers to must be
/// a group of the pattern (the `regex` crate would silently put nothing there).
fn replacement(pattern: &Regex, text: &String) -> Result<String, String> {
    let mut rest = text.as_str();
    while let Some(at) = rest.find('$') {
        let after = &rest[at + 1..];
        let (name, consumed) = if let Some(tail) = after.strip_prefix('$') {
            rest = tail;
            continue;
        } else if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => {
                    return Err(format!(
                        "`{text}` has an unclosed `${{`: write ${{1}} or ${{name}}, or $$ for a `$`"
                    ));
                }
            }
        } else {
            let end = after
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        rest = &after[consumed..];
        if name.is_empty() {
            continue;
        }
        let exists = match name.parse::<usize>() {
            Ok(index) => index < pattern.captures_len(),
            Err(_) => pattern.capture_names().flatten().any(|n| n == name),
        };
        if !exists {
            let hint = match name.find(|ch: char| !ch.is_ascii_digit()) {
                Some(cut) if cut > 0 => format!(
                    ": write ${{{}}}{} to follow group {} with text",
                    &name[..cut],
                    &name[cut..],
                    &name[..cut]
                ),
                _ => String::new(),
            };
            return Err(format!(
                "`{text}` refers to group `{name}`, which `{}` does not have (it has {} \
                 numbered groups){hint}",
                pattern.as_str(),
                pattern.captures_len() - 1
            ));
        }
    }
    Ok(text.clone())
}

/// A pattern and its replacement, each located on its own key.
fn rewrite(
    c: &mut Checks,
    key: &str,
    pattern: &Setting<String>,
    pattern_key: &str,
    replacement_setting: &Setting<String>,
) -> Option<Rewrite> {
    let pattern = c.value(&format!("{key}.{pattern_key}"), pattern, regex)?;
    let replacement = c.value(&format!("{key}.replacement"), replacement_setting, |text| {
        replacement(&pattern, text)
    })?;
    Some(Rewrite {
        pattern,
        replacement,
    })
}

/// A model name that can stand in a path segment as is (also before TF-Serving's `:predict`).
fn model_name(name: &String) -> Result<String, String> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if ok {
        Ok(name.clone())
    } else {
        Err(format!(
            "`{name}` cannot be put into a path as a model name (letters, digits, `-`, `.`, `_`, \
             `~`): write a [[shadow.rewrite]] rule instead"
        ))
    }
}

fn capture(raw: &RawCapture, c: &mut Checks) -> Option<CaptureConfig> {
    let ports = c.list("capture.ports", &raw.ports, |port| {
        NonZeroU16::new(*port).ok_or_else(|| {
            "port 0 is not a valid production port: give the model server's TCP port (1-65535)"
                .to_string()
        })
    });
    let some_port = c.ensure(
        !raw.ports.value.is_empty(),
        "capture.ports",
        &raw.ports.origin,
        || {
            "is empty: give the production model server's TCP port (--port 8080 or \
             capture.ports = [8080])"
                .into()
        },
    );
    let exchange_channel = c.value(
        "capture.exchange_channel",
        &raw.exchange_channel,
        at_least_one,
    );
    let ring_bytes = c.value("capture.ring_bytes", &raw.ring_bytes, ring_size);
    let reassembly = reassembly(&raw.reassembly, c);
    let (body, http) = (raw.max_body_bytes.value, raw.max_http_buffered_bytes.value);
    let http_fits = c.ensure(
        body.checked_mul(2).is_some_and(|two| two <= http),
        "capture.max_http_buffered_bytes",
        &raw.max_http_buffered_bytes.origin,
        || {
            format!(
                "{http} is less than twice max_body_bytes ({body}): one exchange holds a request \
                 and a response body, so it would be dropped alone. Raise it or lower \
                 max_body_bytes"
            )
        },
    );
    some_port?;
    http_fits?;
    Some(CaptureConfig {
        interface: raw.interface.value.clone(),
        ports: ports?,
        kind: raw.kind.value,
        max_body_bytes: body,
        max_http_buffered_bytes: http,
        exchange_channel: exchange_channel?,
        ring_bytes: ring_bytes?,
        reassembly: reassembly?,
    })
}

/// The eBPF ring's size: the kernel wants a power of two and whole pages.
fn ring_size(bytes: &u32) -> Result<u32, String> {
    use super::typed::MIN_RING_BYTES;
    if bytes.is_power_of_two() && *bytes >= MIN_RING_BYTES {
        Ok(*bytes)
    } else {
        Err(format!(
            "{bytes} is not a power of two of at least {MIN_RING_BYTES} bytes (the default is \
             {})",
            shadow_common::RING_BYTES
        ))
    }
}

fn reassembly(raw: &RawReassembly, c: &mut Checks) -> Option<ReassemblyConfig> {
    const KEY: &str = "capture.reassembly";
    let idle = c.value(
        &format!("{KEY}.idle_timeout_ms"),
        &raw.idle_timeout_ms,
        positive_nanos,
    );
    let hole = c.value(
        &format!("{KEY}.hole_timeout_ms"),
        &raw.hole_timeout_ms,
        positive_nanos,
    );
    let max_flows = c.value(&format!("{KEY}.max_flows"), &raw.max_flows, at_least_one);
    let (per_flow, total) = (
        raw.max_flow_buffer_bytes.value,
        raw.max_buffered_bytes.value,
    );
    let buffers = c.ensure(
        per_flow <= total,
        &format!("{KEY}.max_flow_buffer_bytes"),
        &raw.max_flow_buffer_bytes.origin,
        || {
            format!(
                "{per_flow} is more than max_buffered_bytes ({total}), the limit over all \
                 connections: lower it or raise max_buffered_bytes"
            )
        },
    );
    buffers?;
    Some(ReassemblyConfig {
        max_flow_buffer: per_flow,
        max_buffered: total,
        idle_timeout_ns: idle?,
        hole_timeout_ns: hole?,
        max_flows: max_flows?.get(),
    })
}

fn shadow(raw: &RawShadow, c: &mut Checks) -> Option<ShadowConfig> {
    let url = match &raw.url {
        Some(url) => c.value("shadow.url", url, |u| ShadowUrl::parse(u)),
        None => {
            c.problem(
                "shadow.url",
                &Origin::Default,
                "is missing: give the shadow model's base URL (--shadow http://127.0.0.1:8081 \
                 or shadow.url)",
            );
            None
        }
    };
    let baseline = match &raw.baseline {
        Some(b) => c.value("shadow.baseline", b, |u| baseline_url(u)).map(Some),
        None => Some(None),
    };
    let timeout = c.value("shadow.timeout_ms", &raw.timeout_ms, positive_millis);
    let connect_timeout = c.value(
        "shadow.connect_timeout_ms",
        &raw.connect_timeout_ms,
        positive_millis,
    );
    let concurrency = c.value("shadow.concurrency", &raw.concurrency, at_least_one);
    let host_header = c.value("shadow.host_header", &raw.host_header, |h| {
        HostHeader::parse(h)
    });
    let set_headers: Vec<Option<(HeaderName, HeaderValue)>> = raw
        .set_headers
        .value
        .iter()
        .map(|(name, value)| {
            let key = format!("shadow.set_headers.{}", toml_key(name));
            let name = c.value(&key, value, |_| header_name(name));
            let value = c.value(&key, value, |v| {
                HeaderValue::from_str(v).map_err(|_| format!("`{v}` is not a valid header value"))
            });
            Some((name?, value?))
        })
        .collect();
    let remove_headers = c.list("shadow.remove_headers", &raw.remove_headers, header_name);
    let accept_encoding = c.value("shadow.accept_encoding", &raw.accept_encoding, |a| {
        AcceptEncoding::parse(a)
    });
    let model = match &raw.model {
        Some(m) => c.value("shadow.model", m, model_name).map(Some),
        None => Some(None),
    };
    let rewrites: Vec<Option<Rewrite>> = raw
        .rewrite
        .values()
        .enumerate()
        .map(|(i, rule): (usize, &RawRewrite)| {
            let key = format!("shadow.rewrite[{i}]");
            rewrite(c, &key, &rule.path, "path", &rule.replacement)
        })
        .collect();
    let header_rewrites: Vec<Option<HeaderRewrite>> = raw
        .header_rewrite
        .values()
        .enumerate()
        .map(|(i, rule): (usize, &RawHeaderRewrite)| {
            let key = format!("shadow.header_rewrite[{i}]");
            let name = c.value(&format!("{key}.name"), &rule.name, header_name);
            let value = rewrite(c, &key, &rule.value, "value", &rule.replacement);
            Some(HeaderRewrite {
                name: name?,
                value: value?,
            })
        })
        .collect();
    Some(ShadowConfig {
        url: url?,
        baseline: baseline?,
        timeout: timeout?,
        connect_timeout: connect_timeout?,
        concurrency: concurrency?,
        pool_max_idle: raw.pool_max_idle.value,
        pool_idle_timeout: millis(&raw.pool_idle_timeout_ms.value),
        host_header: host_header?,
        set_headers: set_headers.into_iter().collect::<Option<_>>()?,
        remove_headers: remove_headers?,
        max_response_bytes: raw.max_response_bytes.value,
        accept_encoding: accept_encoding?,
        model: model?,
        rewrites: rewrites.into_iter().collect::<Option<_>>()?,
        header_rewrites: header_rewrites.into_iter().collect::<Option<_>>()?,
    })
}

/// `shadow.baseline`: a base URL like the shadow's, named as what it is.
fn baseline_url(text: &str) -> Result<ShadowUrl, String> {
    if text.is_empty() {
        return Err(
            "is empty: give the base URL of a second instance of the production model \
                    (e.g. http://127.0.0.1:8082), or leave shadow.baseline out"
                .into(),
        );
    }
    ShadowUrl::parse(text)
}

fn mirror(raw: &RawMirror, c: &mut Checks) -> Option<MirrorConfig> {
    let methods = c.list("mirror.methods", &raw.methods, method);
    let deny_methods = c.list("mirror.deny_methods", &raw.deny_methods, method);
    let paths = c.list("mirror.paths", &raw.paths, path_prefix);
    let deny_paths = c.list("mirror.deny_paths", &raw.deny_paths, path_prefix);
    let sample_percent = c.value("mirror.sample_percent", &raw.sample_percent, |p| {
        if (0.0..=100.0).contains(p) {
            Ok(*p)
        } else {
            Err(format!("{p} is outside 0..=100: give a percentage"))
        }
    });
    let rate_limit = c.value("mirror.rate_limit", &raw.rate_limit, |r| {
        if !r.is_finite() || *r < 0.0 {
            Err(format!(
                "{r} must be a number >= 0 (requests per second; 0 = unlimited)"
            ))
        } else {
            Ok((*r > 0.0).then_some(RateLimit {
                per_second: *r,
                burst: raw.burst.value,
            }))
        }
    });
    let queue = c.value("mirror.queue", &raw.queue, at_least_one);
    let pacing = c.value("mirror.pacing", &raw.pacing, |p| Pacing::parse(p));
    Some(MirrorConfig {
        methods: methods?.into_iter().collect(),
        deny_methods: deny_methods?.into_iter().collect::<MethodSet>(),
        paths: paths?,
        deny_paths: deny_paths?,
        sample_percent: sample_percent?,
        sample_seed: raw.sample_seed.value,
        rate_limit: rate_limit?,
        queue: queue?,
        pacing: pacing?,
    })
}

fn circuit_breaker(raw: &RawCircuitBreaker, c: &mut Checks) -> Option<CircuitBreakerConfig> {
    const KEY: &str = "circuit_breaker";
    let enabled = raw.enabled.value;
    // A disabled breaker's other settings are unused: they are not held against the config.
    let mut count = |name: &str, s: &Setting<usize>| {
        if enabled {
            c.value(&format!("{KEY}.{name}"), s, at_least_one)
        } else {
            Some(NonZeroUsize::new(s.value).unwrap_or(NonZeroUsize::MIN))
        }
    };
    let window = count("window", &raw.window);
    let min_requests = count("min_requests", &raw.min_requests);
    let probes = count("probes", &raw.probes);
    let within_window = match (window, min_requests) {
        (Some(w), Some(m)) => c.ensure(
            !enabled || m <= w,
            &format!("{KEY}.min_requests"),
            &raw.min_requests.origin,
            || {
                format!(
                    "{m} is more than window ({w}): the window could never hold enough outcomes"
                )
            },
        ),
        _ => None,
    };
    let failure_ratio = c.value(&format!("{KEY}.failure_ratio"), &raw.failure_ratio, |r| {
        if !enabled || (*r > 0.0 && *r <= 1.0) {
            Ok(*r)
        } else {
            Err(format!(
                "{r} must be in (0, 1]: the failing fraction that opens the breaker"
            ))
        }
    });
    within_window?;
    Some(CircuitBreakerConfig {
        enabled,
        window: window?,
        min_requests: min_requests?,
        failure_ratio: failure_ratio?,
        open_for: millis(&raw.open_ms.value),
        probes: probes?,
        slow_call: (raw.slow_call_ms.value > 0).then(|| millis(&raw.slow_call_ms.value)),
    })
}

fn compare(raw: &RawCompare, c: &mut Checks) -> Option<CompareConfig> {
    let tolerance = |c: &mut Checks, key: &str, s: &Setting<f64>| {
        c.value(key, s, |t| {
            if *t >= 0.0 {
                Ok(*t)
            } else {
                Err(format!("{t} must be >= 0"))
            }
        })
    };
    let abs_tolerance = tolerance(c, "compare.abs_tolerance", &raw.abs_tolerance);
    let rel_tolerance = tolerance(c, "compare.rel_tolerance", &raw.rel_tolerance);
    let pointer = match &raw.prediction_pointer {
        Some(p) => c
            .value("compare.prediction_pointer", p, json_pointer)
            .map(|_| Some(p.value.clone())),
        None => Some(None),
    };
    let preset_name = raw.preset.value;
    let has_pointer = c.ensure(
        preset_name != PresetName::JsonPointer || raw.prediction_pointer.is_some(),
        "compare.preset",
        &raw.preset.origin,
        || {
            "\"json-pointer\" needs compare.prediction_pointer (--prediction-pointer), the JSON \
             pointer of the prediction, e.g. /result/scores"
                .into()
        },
    );
    let ignore = c.list("compare.ignore_paths", &raw.ignore_paths, json_pointer);
    let unordered = c.list(
        "compare.unordered_arrays",
        &raw.unordered_arrays,
        json_pointer,
    );
    let proto_schema = super::proto::schema(raw, c);
    has_pointer?;
    let label_output = raw.label_output.as_ref().map(|l| l.value.clone());
    Some(CompareConfig {
        preset_name,
        preset: Preset::named(preset_name, label_output, pointer?),
        diff: DiffOptions {
            abs_tolerance: abs_tolerance?,
            rel_tolerance: rel_tolerance?,
            ignore: ignore?,
            unordered: unordered?,
            max_diffs: raw.max_diffs.value,
        },
        preset_ignores: raw.preset_ignores.value,
        decode_limits: DecodeLimits::default(),
        proto_files: raw.proto.value.iter().map(|p| p.value.clone()).collect(),
        proto_include: raw
            .proto_include
            .value
            .iter()
            .map(|p| p.value.clone())
            .collect(),
        proto_schema: proto_schema?,
    })
}

fn discrepancy_log(raw: &RawDiscrepancyLog, c: &mut Checks) -> Option<DiscrepancyLogConfig> {
    let path = raw.path.as_ref().map(|p| p.value.clone());
    let max_bytes = c.value("discrepancy_log.max_bytes", &raw.max_bytes, |b| {
        if path.is_none() || *b >= MIN_LOG_BYTES {
            Ok(*b)
        } else {
            Err(format!("{b} is too small: give at least {MIN_LOG_BYTES}"))
        }
    });
    let redact_headers = c.list(
        "discrepancy_log.redact_headers",
        &raw.redact_headers,
        header_name,
    );
    let redact_fields = c.list(
        "discrepancy_log.redact_fields",
        &raw.redact_fields,
        json_pointer,
    );
    Some(DiscrepancyLogConfig {
        path,
        max_bytes: max_bytes?,
        max_files: raw.max_files.value,
        body_max_bytes: raw.body_max_bytes.value,
        redact_headers: redact_headers?,
        redact_fields: redact_fields?,
    })
}

fn ground_truth(raw: &RawGroundTruth, c: &mut Checks) -> Option<GroundTruthConfig> {
    let pointer = |c: &mut Checks, key: &str, p: &Option<Setting<String>>| match p {
        Some(p) => c
            .value(key, p, json_pointer)
            .map(|_| Some(p.value.clone()).filter(|v| !v.is_empty())),
        None => Some(None),
    };
    let id_pointer = pointer(c, "ground_truth.id_pointer", &raw.id_pointer);
    let segment_field = pointer(c, "ground_truth.segment_field", &raw.segment_field);
    let id_header = c.value("ground_truth.id_header", &raw.id_header, |h| {
        if h.is_empty() {
            Ok(None)
        } else {
            header_name(h).map(|n| Some(n.as_str().to_owned()))
        }
    });
    let positive = |c: &mut Checks, key: &str, s: &Setting<usize>| {
        c.value(key, s, |n| {
            if *n > 0 {
                Ok(*n)
            } else {
                Err("must be at least 1".to_owned())
            }
        })
    };
    let max_pending = positive(c, "ground_truth.max_pending", &raw.max_pending);
    let max_bytes = positive(c, "ground_truth.max_pending_bytes", &raw.max_pending_bytes);
    let max_segments = positive(c, "ground_truth.max_segments", &raw.max_segments);
    let join = JoinLimits {
        max_items: max_pending?,
        max_bytes: max_bytes?,
        max_wait: Duration::from_millis(raw.max_wait_ms.value),
        remembered_ids: max_pending?,
    };
    Some(GroundTruthConfig {
        rules: KeyRules {
            id_header: id_header?,
            id_pointer: id_pointer?,
            segment_pointer: segment_field?,
        },
        limits: EvaluationLimits {
            max_segments: max_segments?,
            join,
            ..EvaluationLimits::default()
        },
        labels_file: raw.labels_file.as_ref().map(|p| p.value.clone()),
    })
}

fn criteria(raw: Option<&Setting<Criteria>>, c: &mut Checks) -> Option<Criteria> {
    let Some(raw) = raw else {
        return Some(Criteria::default());
    };
    match raw.value.validate() {
        Ok(()) => Some(raw.value.clone()),
        Err(e) => {
            c.ensure(false, &format!("criteria.{}", e.key), &raw.origin, || {
                e.to_string()
            });
            None
        }
    }
}

/// A criterion that can fail, by its config key.
fn trigger(name: &String) -> Result<shadow_core::criteria::CriterionName, String> {
    let names: Vec<&str> = TRIGGERABLE.iter().map(|c| c.as_str()).collect();
    match criterion_named(name) {
        Some(c) if TRIGGERABLE.contains(&c) => Ok(c),
        Some(_) => Err(format!(
            "`{name}` never fails (below it the other criteria are not-enough-data), so it \
             cannot trigger a rollback: use one of {}",
            names.join(", ")
        )),
        None => Err(format!(
            "`{name}` is not a criterion: use one of {}",
            names.join(", ")
        )),
    }
}

/// The rollback program: an absolute path (no `PATH` lookup, no shell).
fn program(path: &String) -> Result<PathBuf, String> {
    if Path::new(path).is_absolute() {
        Ok(PathBuf::from(path))
    } else {
        Err(format!(
            "`{path}` is not an absolute path: give the program's full path (e.g. \
             /usr/local/bin/kubectl); the command runs without a shell and without a PATH lookup"
        ))
    }
}

/// The rollback webhook: `http://host[:port][/path]`.
fn webhook(text: &String) -> Result<Uri, String> {
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("`{text}` is not a URL ({e}): give http://host:port/path"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "`{text}`: https is not supported, only http://; point it at a local relay \
                 (e.g. a sidecar) that forwards over TLS"
            ));
        }
        _ => return Err(format!("`{text}` must start with http://")),
    }
    if uri.authority().is_none_or(|a| a.host().is_empty()) {
        return Err(format!("`{text}` has no host: give http://host:port/path"));
    }
    Ok(uri)
}

fn rollback(raw: &RawRollback, c: &mut Checks) -> Option<RollbackSettings> {
    const KEY: &str = "rollback";
    let triggers = c.list(&format!("{KEY}.triggers"), &raw.triggers, trigger);
    let some_trigger = c.ensure(
        !raw.triggers.value.is_empty(),
        &format!("{KEY}.triggers"),
        &raw.triggers.origin,
        || {
            format!(
                "is empty: name the criteria that must keep holding after the promotion, e.g. \
                 triggers = [\"accuracy_margin\", \"max_error_rate_delta\"] (any of {})",
                TRIGGERABLE.map(|t| t.as_str()).join(", ")
            )
        },
    );
    let cooldown = c.value(&format!("{KEY}.cooldown"), &raw.cooldown, positive_duration);
    let action_timeout = c.value(
        &format!("{KEY}.action_timeout"),
        &raw.action_timeout,
        positive_duration,
    );
    let command = match &raw.command {
        None => Some(None),
        Some(argv) => {
            let key = format!("{KEY}.command");
            let nonempty = c.ensure(!argv.value.is_empty(), &key, &argv.origin, || {
                "is empty: give the program's absolute path and its arguments, e.g. \
                 [\"/usr/local/bin/kubectl\", \"rollout\", \"undo\", \"deployment/model\"]"
                    .into()
            });
            let program = match argv.value.first() {
                Some(first) => c.value(&key, first, program),
                None => None,
            };
            nonempty?;
            let args = argv.value[1..].iter().map(|a| a.value.clone()).collect();
            program.map(|program| Some(RollbackCommand { program, args }))
        }
    };
    let hook = match &raw.webhook {
        None => Some(None),
        Some(w) => c.value(&format!("{KEY}.webhook"), w, webhook).map(Some),
    };
    let dry_run = raw.dry_run.value;
    let acts = c.ensure(
        dry_run || raw.command.is_some() || raw.webhook.is_some(),
        &format!("{KEY}.dry_run"),
        &raw.dry_run.origin,
        || {
            "is false but no action is configured: give rollback.command and/or \
             rollback.webhook, or keep dry_run = true"
                .into()
        },
    );
    some_trigger?;
    acts?;
    Some(RollbackSettings {
        triggers: triggers?,
        cooldown: cooldown?,
        dry_run,
        command: command?,
        webhook: hook?,
        action_timeout: action_timeout?,
    })
}

/// `[admin]`: an address other hosts can reach needs a token file (the token itself is read
/// at start, `security::AdminToken::read`).
fn admin(raw: &RawAdmin, c: &mut Checks) -> AdminConfig {
    let addr = raw.addr.value;
    c.ensure(
        is_loopback(&addr) || raw.token_file.is_some(),
        "admin.addr",
        &raw.addr.origin,
        || {
            format!(
                "{addr} is not a loopback address, so the admin API (ground truth in, metrics, \
                 summaries and verdicts out) would be open to the network without a password. \
                 Give it a bearer token: set admin.token_file (or --admin-token-file, or \
                 SHADOWD_ADMIN_TOKEN_FILE) to a file only shadowd's user can read holding one \
                 line of at least {MIN_TOKEN_LEN} characters (`head -c 32 /dev/urandom | base64 \
                 > FILE && chmod 600 FILE`); or listen on 127.0.0.1"
            )
        },
    );
    let timeseries_interval = c
        .value(
            "admin.timeseries_interval_seconds",
            &raw.timeseries_interval_seconds,
            |s| {
                if (1..=MAX_TIMESERIES_INTERVAL_SECONDS).contains(s) {
                    Ok(Duration::from_secs(*s))
                } else {
                    Err(format!(
                        "{s} s is not a bucket length: give 1 to \
                         {MAX_TIMESERIES_INTERVAL_SECONDS} (60: one bucket a minute)"
                    ))
                }
            },
        )
        .unwrap_or(shadow_core::timeseries::DEFAULT_INTERVAL);
    let timeseries_buckets = c
        .value(
            "admin.timeseries_buckets",
            &raw.timeseries_buckets,
            |n| match NonZeroUsize::new(*n) {
                Some(n) if n.get() <= MAX_TIMESERIES_BUCKETS => Ok(n),
                _ => Err(format!(
                    "{n} buckets: give 1 to {MAX_TIMESERIES_BUCKETS} (1440: a day of minutes)"
                )),
            },
        )
        .unwrap_or(NonZeroUsize::MIN);
    AdminConfig {
        addr,
        token_file: raw.token_file.as_ref().map(|p| p.value.clone()),
        timeseries_interval,
        timeseries_buckets,
    }
}

/// The longest `/api/timeseries` bucket: a day.
const MAX_TIMESERIES_INTERVAL_SECONDS: u64 = 86_400;
/// Most `/api/timeseries` buckets: a week of minutes (about 250 bytes each in memory, 600 in
/// the JSON answer and the state file).
const MAX_TIMESERIES_BUCKETS: usize = 10_080;

fn resources(raw: &RawResources, c: &mut Checks) -> Option<ResourcesConfig> {
    const KEY: &str = "resources";
    let interval = c.value(
        &format!("{KEY}.sample_interval_ms"),
        &raw.sample_interval_ms,
        |ms| {
            if *ms >= MIN_SAMPLE_INTERVAL_MS {
                Ok(millis(ms))
            } else {
                Err(format!(
                    "{ms} ms is too short: give at least {MIN_SAMPLE_INTERVAL_MS} (CPU time is \
                     counted in 10 ms ticks)"
                ))
            }
        },
    );
    let production = resource_target(c, "production", &raw.production_pid, &raw.production_cgroup);
    let shadow = resource_target(c, "shadow", &raw.shadow_pid, &raw.shadow_cgroup);
    Some(ResourcesConfig {
        enabled: raw.enabled.value,
        sample_interval: interval?,
        production: production?,
        shadow: shadow?,
    })
}

/// `resources.{role}_pid` or `resources.{role}_cgroup` (not both), or discovery.
fn resource_target(
    c: &mut Checks,
    role: &str,
    pid: &Option<Setting<u32>>,
    cgroup: &Option<Setting<PathBuf>>,
) -> Option<ResourceTarget> {
    let pid_key = format!("resources.{role}_pid");
    let cgroup_key = format!("resources.{role}_cgroup");
    let pid = match pid {
        Some(p) => c
            .value(&pid_key, p, |p| {
                NonZeroU32::new(*p)
                    .ok_or_else(|| "0 is not a process id: give the server's pid".to_string())
            })
            .map(Some),
        None => Some(None),
    };
    let cgroup = match cgroup {
        Some(dir) => c
            .value(&cgroup_key, dir, |dir| {
                if dir.is_absolute() {
                    Ok(dir.clone())
                } else {
                    Err(format!(
                        "`{}` is not an absolute path: give the cgroup v2 directory, e.g. \
                         /sys/fs/cgroup/system.slice/model.service",
                        dir.display()
                    ))
                }
            })
            .map(|d| Some((d, dir.origin.clone()))),
        None => Some(None),
    };
    match (pid?, cgroup?) {
        (Some(_), Some((_, origin))) => {
            c.problem(
                cgroup_key,
                &origin,
                format!("{pid_key} is set too: give one of them (a pid or a cgroup)"),
            );
            None
        }
        (Some(pid), None) => Some(ResourceTarget::Pid(pid)),
        (None, Some((dir, _))) => Some(ResourceTarget::Cgroup(dir)),
        (None, None) => Some(ResourceTarget::Discover),
    }
}

/// The built-in defaults of the sections that have valid ones (used by tests and as a base).
macro_rules! default_from_raw {
    ($typed:ty, $raw:ty, $parse:ident) => {
        impl Default for $typed {
            fn default() -> Self {
                $parse(&<$raw>::default(), &mut Checks::default()).expect(concat!(
                    "the built-in ",
                    stringify!($raw),
                    " defaults are valid"
                ))
            }
        }
    };
}

default_from_raw!(MirrorConfig, RawMirror, mirror);
default_from_raw!(CircuitBreakerConfig, RawCircuitBreaker, circuit_breaker);
default_from_raw!(CompareConfig, RawCompare, compare);
default_from_raw!(DiscrepancyLogConfig, RawDiscrepancyLog, discrepancy_log);
default_from_raw!(ResourcesConfig, RawResources, resources);

impl Default for AdminConfig {
    fn default() -> Self {
        admin(&RawAdmin::default(), &mut Checks::default())
    }
}
