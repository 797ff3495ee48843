//! A checked [`Config`] written back as TOML (`shadowd check-config` prints it): the same schema
//! as the file, with every effective value, so the output is itself a valid config file.

use super::raw::{
    RawAdmin, RawCapture, RawCircuitBreaker, RawCompare, RawConfig, RawDiscrepancyLog,
    RawGroundTruth, RawHeaderRewrite, RawMirror, RawReassembly, RawResources, RawRewrite,
    RawRollback, RawShadow, RawState, Setting,
};
use super::typed::{Config, HostHeader, MethodSet, ResourceTarget, RollbackSettings};
use hyper::header::HeaderValue;
use shadow_core::compare::{PathPattern, Preset};
use shadow_core::criteria::Criteria;
use std::time::Duration;

impl Config {
    /// The effective configuration as a TOML document.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(&RawConfig::from(self))
    }
}

fn b<T>(value: T) -> Setting<T> {
    Setting::builtin(value)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A duration as the config writes it (`"10m"`, `"90s"`, `"1500ms"`): the largest unit that
/// holds it exactly.
fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms > 0 && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

fn rollback(r: &RollbackSettings) -> RawRollback {
    RawRollback {
        triggers: Setting::builtin_list(r.triggers.iter().map(|t| t.as_str().to_string())),
        cooldown: b(duration_text(r.cooldown)),
        dry_run: b(r.dry_run),
        command: r.command.as_ref().map(|c| {
            let program = c.program.to_string_lossy().into_owned();
            Setting::builtin_list(std::iter::once(program).chain(c.args.iter().cloned()))
        }),
        webhook: r.webhook.as_ref().map(|w| b(w.to_string())),
        action_timeout: b(duration_text(r.action_timeout)),
    }
}

fn header_text(v: &HeaderValue) -> String {
    String::from_utf8_lossy(v.as_bytes()).into_owned()
}

fn methods(set: &MethodSet) -> Vec<String> {
    set.iter().map(|m| m.as_str().to_string()).collect()
}

/// The JSON pointer a pattern was parsed from (`~` and `/` escaped again).
fn pointer(p: &PathPattern) -> String {
    p.segments()
        .iter()
        .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
        .collect()
}

fn pointers(patterns: &[PathPattern]) -> Vec<String> {
    patterns.iter().map(pointer).collect()
}

impl From<&Config> for RawConfig {
    fn from(c: &Config) -> RawConfig {
        let (capture, shadow, mirror) = (&c.capture, &c.shadow, &c.mirror);
        let (breaker, compare, log) = (&c.circuit_breaker, &c.compare, &c.discrepancy_log);
        let r = &capture.reassembly;
        let gt = &c.ground_truth;
        let (prediction_pointer, label_output) = match &compare.preset {
            Preset::Pointer(p) => (Some(p.clone()), None),
            Preset::KserveV2 { label_output } => (None, label_output.clone()),
            Preset::Predictions | Preset::None => (None, None),
        };
        RawConfig {
            capture: RawCapture {
                interface: b(capture.interface.clone()),
                ports: Setting::builtin_list(capture.ports.iter().map(|p| p.get())),
                kind: b(capture.kind),
                max_body_bytes: b(capture.max_body_bytes),
                max_http_buffered_bytes: b(capture.max_http_buffered_bytes),
                exchange_channel: b(capture.exchange_channel.get()),
                ring_bytes: b(capture.ring_bytes),
                reassembly: RawReassembly {
                    max_flow_buffer_bytes: b(r.max_flow_buffer),
                    max_buffered_bytes: b(r.max_buffered),
                    idle_timeout_ms: b(r.idle_timeout_ns / 1_000_000),
                    hole_timeout_ms: b(r.hole_timeout_ns / 1_000_000),
                    max_flows: b(r.max_flows),
                },
            },
            shadow: RawShadow {
                url: Some(b(shadow.url.to_string())),
                baseline: shadow.baseline.as_ref().map(|u| b(u.to_string())),
                timeout_ms: b(ms(shadow.timeout)),
                connect_timeout_ms: b(ms(shadow.connect_timeout)),
                concurrency: b(shadow.concurrency.get()),
                pool_max_idle: b(shadow.pool_max_idle),
                pool_idle_timeout_ms: b(ms(shadow.pool_idle_timeout)),
                host_header: b(match &shadow.host_header {
                    HostHeader::Preserve => "preserve".to_string(),
                    HostHeader::Shadow => "shadow".to_string(),
                    HostHeader::Literal(v) => header_text(v),
                }),
                set_headers: b(shadow
                    .set_headers
                    .iter()
                    .map(|(n, v)| (n.as_str().to_string(), b(header_text(v))))
                    .collect()),
                remove_headers: Setting::builtin_list(
                    shadow.remove_headers.iter().map(|n| n.as_str().to_string()),
                ),
                max_response_bytes: b(shadow.max_response_bytes),
                accept_encoding: b(shadow.accept_encoding.as_str().to_string()),
                model: shadow.model.clone().map(b),
                rewrite: Setting::builtin_list(shadow.rewrites.iter().map(|r| RawRewrite {
                    path: b(r.pattern.as_str().to_string()),
                    replacement: b(r.replacement.clone()),
                })),
                header_rewrite: Setting::builtin_list(shadow.header_rewrites.iter().map(|r| {
                    RawHeaderRewrite {
                        name: b(r.name.as_str().to_string()),
                        value: b(r.value.pattern.as_str().to_string()),
                        replacement: b(r.value.replacement.clone()),
                    }
                })),
            },
            mirror: RawMirror {
                methods: Setting::builtin_list(methods(&mirror.methods)),
                deny_methods: Setting::builtin_list(methods(&mirror.deny_methods)),
                paths: Setting::builtin_list(mirror.paths.clone()),
                deny_paths: Setting::builtin_list(mirror.deny_paths.clone()),
                sample_percent: b(mirror.sample_percent),
                sample_seed: b(mirror.sample_seed),
                rate_limit: b(mirror.rate_limit.map_or(0.0, |r| r.per_second)),
                burst: b(mirror.rate_limit.map_or(0, |r| r.burst)),
                queue: b(mirror.queue.get()),
                pacing: b(mirror.pacing.as_str().to_string()),
            },
            circuit_breaker: RawCircuitBreaker {
                enabled: b(breaker.enabled),
                window: b(breaker.window.get()),
                min_requests: b(breaker.min_requests.get()),
                failure_ratio: b(breaker.failure_ratio),
                open_ms: b(ms(breaker.open_for)),
                probes: b(breaker.probes.get()),
                slow_call_ms: b(breaker.slow_call.map_or(0, ms)),
            },
            compare: RawCompare {
                preset: b(compare.preset_name),
                prediction_pointer: prediction_pointer.map(b),
                label_output: label_output.map(b),
                abs_tolerance: b(compare.diff.abs_tolerance),
                rel_tolerance: b(compare.diff.rel_tolerance),
                ignore_paths: Setting::builtin_list(pointers(&compare.diff.ignore)),
                preset_ignores: b(compare.preset_ignores),
                unordered_arrays: Setting::builtin_list(pointers(&compare.diff.unordered)),
                max_diffs: b(compare.diff.max_diffs),
                proto: Setting::builtin_list(compare.proto_files.iter().cloned()),
                proto_include: Setting::builtin_list(compare.proto_include.iter().cloned()),
            },
            discrepancy_log: RawDiscrepancyLog {
                path: log.path.clone().map(b),
                max_bytes: b(log.max_bytes),
                max_files: b(log.max_files),
                body_max_bytes: b(log.body_max_bytes),
                redact_headers: Setting::builtin_list(
                    log.redact_headers.iter().map(|n| n.as_str().to_string()),
                ),
                redact_fields: Setting::builtin_list(pointers(&log.redact_fields)),
            },
            admin: RawAdmin {
                addr: b(c.admin.addr),
                token_file: c.admin.token_file.clone().map(b),
                timeseries_interval_seconds: b(c.admin.timeseries_interval.as_secs()),
                timeseries_buckets: b(c.admin.timeseries_buckets.get()),
            },
            ground_truth: RawGroundTruth {
                id_header: b(gt.rules.id_header.clone().unwrap_or_default()),
                id_pointer: gt.rules.id_pointer.clone().map(b),
                segment_field: gt.rules.segment_pointer.clone().map(b),
                max_wait_ms: b(ms(gt.limits.join.max_wait)),
                max_pending: b(gt.limits.join.max_items),
                max_pending_bytes: b(gt.limits.join.max_bytes),
                max_segments: b(gt.limits.max_segments),
                labels_file: gt.labels_file.clone().map(b),
            },
            criteria: (c.criteria != Criteria::default()).then(|| b(c.criteria.clone())),
            state: RawState {
                path: c.state.path.clone().map(b),
                interval_ms: b(ms(c.state.interval)),
            },
            rollback: c.rollback.as_ref().map(rollback),
            resources: raw_resources(&c.resources),
            file: None,
        }
    }
}

fn raw_resources(r: &super::typed::ResourcesConfig) -> RawResources {
    let pid = |t: &ResourceTarget| match t {
        ResourceTarget::Pid(p) => Some(b(p.get())),
        _ => None,
    };
    let cgroup = |t: &ResourceTarget| match t {
        ResourceTarget::Cgroup(dir) => Some(b(dir.clone())),
        _ => None,
    };
    RawResources {
        enabled: b(r.enabled),
        sample_interval_ms: b(ms(r.sample_interval)),
        production_pid: pid(&r.production),
        production_cgroup: cgroup(&r.production),
        shadow_pid: pid(&r.shadow),
        shadow_cgroup: cgroup(&r.shadow),
    }
}
