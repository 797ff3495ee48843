use super::error::line_column;
use super::*;
use hyper::Method;
use hyper::header::{HeaderName, HeaderValue};
use shadow_core::compare::{PathPattern, Preset};
use std::num::{NonZeroU16, NonZeroUsize};
use std::path::Path;
use std::time::Duration;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("t.toml"))
}

/// `(location, key)` of each problem, rendered as the operator sees them.
fn located(err: &ConfigError) -> Vec<(String, String)> {
    err.problems()
        .iter()
        .map(|p| {
            let at = match &p.location {
                Location::File { path, line, column } => {
                    format!("{}:{line}:{column}", path.display())
                }
                Location::Flag(flag) => flag.to_string(),
                Location::Default => "default".into(),
            };
            (at, p.key.clone().unwrap_or_default())
        })
        .collect()
}

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

#[test]
fn minimal_config_is_valid_and_the_built_in_defaults_hold() {
    let c = test_config("");
    assert_eq!(c.capture.ports, vec![NonZeroU16::new(8080).unwrap()]);
    assert_eq!(c.shadow.url.port(), 8081);
    assert_eq!(c.shadow.timeout, Duration::from_secs(5));
    assert_eq!(c.mirror, MirrorConfig::default());
    assert_eq!(c.circuit_breaker, CircuitBreakerConfig::default());
    assert_eq!(c.compare, CompareConfig::default());
    assert_eq!(c.discrepancy_log, DiscrepancyLogConfig::default());
    assert_eq!(c.admin, AdminConfig::default());
    assert_eq!(c.resources, ResourcesConfig::default());
    assert_eq!(
        c.resources,
        ResourcesConfig {
            enabled: true,
            sample_interval: Duration::from_secs(1),
            production: ResourceTarget::Discover,
            shadow: ResourceTarget::Discover,
        }
    );
    assert_eq!(
        c.capture.reassembly,
        shadow_core::reassembly::ReassemblyConfig::default()
    );
    assert!(c.mirror.methods.contains("GET") && !c.mirror.methods.contains("PUT"));
    assert!(c.mirror.deny_methods.contains("DELETE"));
}

#[test]
fn every_mistake_is_reported_at_once_with_its_line_and_column() {
    let text = r#"[capture]
ports = [8080, 0]
kind = "xdp"
[shadow]
url = "ftp://10.0.0.2:9000"
timeout_ms = 0
colour = "blue"
[mirror]
methods = ["GET", "P OST"]
sample_percent = 150.0
queue = "big"
[circuit_breaker]
min_requests = 60
[compare]
preset = "json-pointer"
ignore_paths = ["/ok", "id"]
"#;
    let err = parse(text).unwrap_err();
    let want = [
        ("t.toml:2:16", "capture.ports"),
        ("t.toml:3:8", "capture.kind"),
        ("t.toml:5:7", "shadow.url"),
        ("t.toml:6:14", "shadow.timeout_ms"),
        ("t.toml:7:1", "shadow.colour"),
        ("t.toml:9:19", "mirror.methods"),
        ("t.toml:10:18", "mirror.sample_percent"),
        ("t.toml:11:9", "mirror.queue"),
        ("t.toml:13:16", "circuit_breaker.min_requests"),
        ("t.toml:15:10", "compare.preset"),
        ("t.toml:16:24", "compare.ignore_paths"),
    ];
    let got = located(&err);
    let got: Vec<(&str, &str)> = got.iter().map(|(a, k)| (a.as_str(), k.as_str())).collect();
    assert_eq!(got, want, "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("invalid configuration, 11 problems; fix them all"),
        "{text}"
    );
    for needle in [
        "t.toml:2:16: capture.ports: port 0 is not a valid production port",
        "t.toml:3:8: capture.kind: unknown variant `xdp`, expected `ebpf` or `afpacket`; fix or remove it",
        "t.toml:5:7: shadow.url: `ftp://10.0.0.2:9000` must start with http://",
        "t.toml:7:1: shadow.colour: unknown field `colour`",
        "t.toml:10:18: mirror.sample_percent: 150 is outside 0..=100",
        "t.toml:13:16: circuit_breaker.min_requests: 60 is more than window (50)",
        "t.toml:16:24: compare.ignore_paths: `id` is not a JSON pointer",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

#[test]
fn a_rejected_key_is_not_reported_again_through_its_default() {
    // `ports` of the wrong type is dropped; its default (no port) must not add "is empty".
    let err = parse("[capture]\nports = \"8080\"\n[shadow]\nurl = \"http://h:1\"\n").unwrap_err();
    assert_eq!(
        located(&err),
        vec![("t.toml:2:9".to_string(), "capture.ports".to_string())],
        "{err}"
    );
    // A misspelt key is reported, and so is the key it was meant to be.
    let err = parse("[capture]\nports = [8080]\n[shadow]\nurll = \"http://h:1\"\n").unwrap_err();
    assert_eq!(
        located(&err),
        vec![
            ("t.toml:4:1".to_string(), "shadow.urll".to_string()),
            ("default".to_string(), "shadow.url".to_string()),
        ],
        "{err}"
    );
}

#[test]
fn syntax_errors_are_all_reported() {
    let err = parse("[capture]\nports = [8080\n[shadow]\nurl = \n").unwrap_err();
    let problems = err.problems();
    assert!(problems.len() >= 2, "{err}");
    assert!(problems.iter().all(|p| p.key.is_none()), "{err}");
    assert!(err.to_string().contains("(TOML syntax)"), "{err}");
}

#[test]
fn missing_file_is_a_read_error_naming_the_path() {
    let err = RawConfig::load(Some(Path::new("/nonexistent/shadowtap.toml"))).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(
        err.to_string().contains("/nonexistent/shadowtap.toml"),
        "{err}"
    );
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn missing_required_values_name_the_flag_to_give() {
    let err = Config::try_from(RawConfig::default()).unwrap_err();
    let text = err.to_string();
    assert_eq!(
        located(&err),
        vec![
            ("default".to_string(), "capture.ports".to_string()),
            ("default".to_string(), "shadow.url".to_string()),
        ]
    );
    assert!(
        text.contains("--port") && text.contains("--shadow"),
        "{text}"
    );
}

#[test]
fn shadow_on_a_production_port_is_rejected() {
    let err = parse("[capture]\nports = [8080]\n[shadow]\nurl = \"http://127.0.0.1:8080\"\n")
        .unwrap_err();
    assert!(err.to_string().contains("tapped production port"), "{err}");
    // No port in the URL means 80.
    let err =
        parse("[capture]\nports = [80]\n[shadow]\nurl = \"http://shadow.internal\"\n").unwrap_err();
    assert_eq!(located(&err)[0].1, "shadow.url");
    let err = parse(
        "[capture]\nports = [9464]\n[shadow]\nurl = \"http://h:1\"\n[admin]\naddr = \"0.0.0.0:9464\"\ntoken_file = \"/t\"\n",
    )
    .unwrap_err();
    assert_eq!(
        located(&err),
        vec![("t.toml:6:8".to_string(), "admin.addr".to_string())]
    );
}

#[test]
fn an_admin_address_off_loopback_needs_a_token_file() {
    let base = "[capture]\nports = [8080]\n[shadow]\nurl = \"http://127.0.0.1:8081\"\n[admin]\n";
    for addr in ["127.0.0.1:9464", "127.0.0.2:0", "[::1]:9464"] {
        let c = parse(&format!("{base}addr = \"{addr}\"\n")).unwrap();
        assert_eq!(c.admin.token_file, None, "{addr}: no token needed");
    }
    for addr in ["0.0.0.0:9464", "[::]:9464", "10.1.2.3:9464"] {
        let err = parse(&format!("{base}addr = \"{addr}\"\n")).unwrap_err();
        assert_eq!(
            located(&err),
            vec![("t.toml:6:8".to_string(), "admin.addr".to_string())],
            "{addr}"
        );
        let text = err.to_string();
        for hint in [
            "not a loopback address",
            "admin.token_file",
            "--admin-token-file",
            "chmod 600",
            "127.0.0.1",
        ] {
            assert!(text.contains(hint), "{addr}: {hint}: {text}");
        }
        let c = parse(&format!(
            "{base}addr = \"{addr}\"\ntoken_file = \"/run/secrets/shadowd\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.admin.token_file.as_deref(),
            Some(Path::new("/run/secrets/shadowd"))
        );
        let again = parse(&c.to_toml().unwrap()).unwrap();
        assert_eq!(again.admin, c.admin, "round trip");
    }
}

#[test]
fn request_bodies_are_left_out_of_the_discrepancy_log_unless_asked_for() {
    let c = test_config("[discrepancy_log]\npath = \"/var/lib/shadowtap/d.jsonl\"\n");
    assert_eq!(c.discrepancy_log.body_max_bytes, 0, "redacted by default");
    let c = test_config("[discrepancy_log]\nbody_max_bytes = 4096\n");
    assert_eq!(
        c.discrepancy_log.body_max_bytes, 4096,
        "the explicit opt-out"
    );
}

#[test]
fn no_replay_goes_to_a_tapped_port_whatever_the_host() {
    let base = "[capture]\nports = [8080, 9000]\n[shadow]\n";
    for host in [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "0.0.0.0",
        "10.0.0.7",
        "shadow.internal",
    ] {
        for port in [8080, 9000] {
            let url = format!("http://{host}:{port}");
            let err = parse(&format!("{base}url = \"{url}\"\n")).unwrap_err();
            assert_eq!(located(&err)[0].1, "shadow.url", "{url}");
            let text = err.to_string();
            for why in [
                "feedback loop",
                "resolves to this machine",
                "not in capture.ports",
            ] {
                assert!(text.contains(why), "{url}: {why}: {text}");
            }
            let err = parse(&format!(
                "{base}url = \"http://127.0.0.1:8081\"\nbaseline = \"{url}\"\n"
            ))
            .unwrap_err();
            assert_eq!(located(&err)[0].1, "shadow.baseline", "{url}");
            assert!(err.to_string().contains("feedback loop"), "{err}");
        }
        parse(&format!("{base}url = \"http://{host}:8081\"\n")).unwrap();
    }
}

#[test]
fn shadow_urls_must_be_plain_http_with_a_host() {
    for (url, why) in [
        ("not a url", "is not a URL"),
        ("https://h:1", "https is not supported"),
        ("127.0.0.1:8081", "must start with http://"),
        ("", "is empty"),
    ] {
        let err = parse(&format!(
            "[capture]\nports = [8080]\n[shadow]\nurl = \"{url}\"\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains(why), "{url}: {err}");
    }
    let url = ShadowUrl::parse("http://10.0.0.2:9000/prefix/").unwrap();
    assert_eq!(url.authority().as_str(), "10.0.0.2:9000");
    assert_eq!(url.host_header(), "10.0.0.2:9000");
    assert_eq!(url.prefix(), "/prefix");
    assert_eq!(url.port(), 9000);
}

/// A file setting every key to something other than its default.
const EVERY_KEY: &str = r#"
[capture]
interface = "eth1"
ports = [8080, 8443]
kind = "afpacket"
max_body_bytes = 1024
exchange_channel = 7
ring_bytes = 65536
[capture.reassembly]
max_flow_buffer_bytes = 2048
max_buffered_bytes = 4096
idle_timeout_ms = 30000
hole_timeout_ms = 250
max_flows = 3
[shadow]
url = "http://10.0.0.2:9000/v1"
timeout_ms = 1500
connect_timeout_ms = 200
concurrency = 4
pool_max_idle = 2
pool_idle_timeout_ms = 1000
host_header = "shadow.internal"
set_headers = { "X-Shadowtap" = "1" }
remove_headers = ["Authorization"]
max_response_bytes = 999
[mirror]
methods = ["get", "post", "GET"]
deny_methods = ["delete"]
paths = ["/v2/"]
deny_paths = ["/v2/admin"]
sample_percent = 12.5
sample_seed = 42
rate_limit = 2.5
burst = 5
queue = 9
pacing = "asap"
[circuit_breaker]
enabled = true
window = 20
min_requests = 5
failure_ratio = 0.25
open_ms = 3000
probes = 2
slow_call_ms = 700
[compare]
preset = "json-pointer"
prediction_pointer = "/result/scores"
abs_tolerance = 0.01
rel_tolerance = 0.02
ignore_paths = ["/id", "/a~1b/*"]
unordered_arrays = ["/tags"]
max_diffs = 7
[discrepancy_log]
path = "/tmp/d.jsonl"
max_bytes = 8192
max_files = 2
body_max_bytes = 10
redact_headers = ["X-Api-Key"]
redact_fields = ["/user"]
[admin]
addr = "127.0.0.1:9999"
token_file = "/etc/shadowtap/admin.token"
[resources]
enabled = false
sample_interval_ms = 250
production_pid = 4321
shadow_cgroup = "/sys/fs/cgroup/system.slice/shadow.service"
"#;

#[test]
fn every_typed_field_is_parsed_and_round_trips() {
    let c = parse(EVERY_KEY).unwrap();
    let cap = &c.capture;
    assert_eq!(cap.interface, "eth1");
    assert_eq!(
        cap.ports,
        vec![
            NonZeroU16::new(8080).unwrap(),
            NonZeroU16::new(8443).unwrap()
        ]
    );
    assert_eq!(cap.kind, crate::capture::CaptureKind::Afpacket);
    assert_eq!(cap.max_body_bytes, 1024);
    assert_eq!(cap.exchange_channel, nz(7));
    assert_eq!(cap.ring_bytes, 65536);
    assert_eq!(
        cap.reassembly,
        shadow_core::reassembly::ReassemblyConfig {
            max_flow_buffer: 2048,
            max_buffered: 4096,
            idle_timeout_ns: 30_000_000_000,
            hole_timeout_ns: 250_000_000,
            max_flows: 3,
        }
    );
    let s = &c.shadow;
    assert_eq!(s.url.uri(), "http://10.0.0.2:9000/v1");
    assert_eq!(s.timeout, Duration::from_millis(1500));
    assert_eq!(s.connect_timeout, Duration::from_millis(200));
    assert_eq!(s.concurrency, nz(4));
    assert_eq!(s.pool_max_idle, 2);
    assert_eq!(s.pool_idle_timeout, Duration::from_secs(1));
    assert_eq!(
        s.host_header,
        HostHeader::Literal(HeaderValue::from_static("shadow.internal"))
    );
    assert_eq!(
        s.set_headers,
        vec![(
            HeaderName::from_static("x-shadowtap"),
            HeaderValue::from_static("1")
        )]
    );
    assert_eq!(s.remove_headers, vec![hyper::header::AUTHORIZATION]);
    assert_eq!(s.max_response_bytes, 999);
    let m = &c.mirror;
    assert_eq!(
        m.methods.iter().collect::<Vec<_>>(),
        vec![&Method::GET, &Method::POST],
        "upper-cased, duplicates removed"
    );
    assert_eq!(
        m.deny_methods.iter().collect::<Vec<_>>(),
        vec![&Method::DELETE]
    );
    assert_eq!(m.paths, vec!["/v2/"]);
    assert_eq!(m.deny_paths, vec!["/v2/admin"]);
    assert_eq!(m.sample_percent, 12.5);
    assert_eq!(m.sample_seed, 42);
    assert_eq!(
        m.rate_limit,
        Some(RateLimit {
            per_second: 2.5,
            burst: 5
        })
    );
    assert_eq!(m.queue, nz(9));
    assert_eq!(m.pacing, super::Pacing::Asap);
    assert_eq!(
        c.circuit_breaker,
        CircuitBreakerConfig {
            enabled: true,
            window: nz(20),
            min_requests: nz(5),
            failure_ratio: 0.25,
            open_for: Duration::from_secs(3),
            probes: nz(2),
            slow_call: Some(Duration::from_millis(700)),
        }
    );
    let cmp = &c.compare;
    assert_eq!(cmp.preset_name, PresetName::JsonPointer);
    assert_eq!(cmp.preset, Preset::Pointer("/result/scores".into()));
    assert_eq!(cmp.diff.abs_tolerance, 0.01);
    assert_eq!(cmp.diff.rel_tolerance, 0.02);
    assert_eq!(
        cmp.diff.ignore,
        vec![PathPattern::parse("/id"), PathPattern::parse("/a~1b/*")]
    );
    assert_eq!(cmp.diff.ignore[1].segments(), ["a/b", "*"]);
    assert_eq!(cmp.diff.unordered, vec![PathPattern::parse("/tags")]);
    assert_eq!(cmp.diff.max_diffs, 7);
    let d = &c.discrepancy_log;
    assert_eq!(d.path.as_deref(), Some(Path::new("/tmp/d.jsonl")));
    assert_eq!((d.max_bytes, d.max_files, d.body_max_bytes), (8192, 2, 10));
    assert_eq!(d.redact_headers, vec![HeaderName::from_static("x-api-key")]);
    assert_eq!(d.redact_fields, vec![PathPattern::parse("/user")]);
    assert_eq!(c.admin.addr, "127.0.0.1:9999".parse().unwrap());
    assert_eq!(
        c.admin.token_file.as_deref(),
        Some(Path::new("/etc/shadowtap/admin.token"))
    );
    assert_eq!(
        c.resources,
        ResourcesConfig {
            enabled: false,
            sample_interval: Duration::from_millis(250),
            production: ResourceTarget::Pid(std::num::NonZeroU32::new(4321).unwrap()),
            shadow: ResourceTarget::Cgroup("/sys/fs/cgroup/system.slice/shadow.service".into()),
        }
    );

    // What check-config prints is a config file that parses back to the same config.
    let printed = c.to_toml().unwrap();
    assert_eq!(parse(&printed).unwrap(), c, "{printed}");
    let defaults = test_config("");
    assert_eq!(parse(&defaults.to_toml().unwrap()).unwrap(), defaults);
}

#[test]
fn host_header_words_and_kserve_label_output() {
    let c = test_config("[compare]\nlabel_output = \"label\"\n");
    assert_eq!(
        c.compare.preset,
        Preset::KserveV2 {
            label_output: Some("label".into())
        }
    );
    assert_eq!(parse(&c.to_toml().unwrap()).unwrap(), c);
    assert_eq!(HostHeader::parse("shadow"), Ok(HostHeader::Shadow));
    assert_eq!(HostHeader::parse(""), Ok(HostHeader::Preserve));
    assert!(HostHeader::parse("bad\nhost").is_err());
}

#[test]
fn a_disabled_breaker_does_not_hold_its_settings_against_the_config() {
    let c = test_config("[circuit_breaker]\nenabled = false\nwindow = 0\nfailure_ratio = 7.0\n");
    assert!(!c.circuit_breaker.enabled);
    let err = parse(
        "[capture]\nports = [1]\n[shadow]\nurl = \"http://h:2\"\n[circuit_breaker]\nwindow = 0\nfailure_ratio = 7.0\n",
    )
    .unwrap_err();
    assert_eq!(
        located(&err),
        vec![
            (
                "t.toml:6:10".to_string(),
                "circuit_breaker.window".to_string()
            ),
            (
                "t.toml:7:17".to_string(),
                "circuit_breaker.failure_ratio".to_string()
            ),
        ],
        "{err}"
    );
}

#[test]
fn reassembly_limits_are_checked() {
    let err = parse(
        "[capture]\nports = [1]\n[capture.reassembly]\nmax_flows = 0\nidle_timeout_ms = 0\nmax_flow_buffer_bytes = 10\nmax_buffered_bytes = 5\n[shadow]\nurl = \"http://h:2\"\n",
    )
    .unwrap_err();
    assert_eq!(
        located(&err)
            .into_iter()
            .map(|(_, k)| k)
            .collect::<Vec<_>>(),
        vec![
            "capture.reassembly.max_flows",
            "capture.reassembly.idle_timeout_ms",
            "capture.reassembly.max_flow_buffer_bytes",
        ],
        "{err}"
    );
}

#[test]
fn the_http_memory_cap_is_read_and_holds_two_bodies() {
    let text = |cap: u64| {
        format!(
            "[capture]\nports = [1]\nmax_body_bytes = 1000\nmax_http_buffered_bytes = {cap}\n\
             [shadow]\nurl = \"http://h:2\"\n"
        )
    };
    assert_eq!(
        parse(&text(2000)).unwrap().capture.max_http_buffered_bytes,
        2000
    );
    let err = parse(&text(1999)).unwrap_err();
    assert_eq!(
        located(&err)
            .into_iter()
            .map(|(_, k)| k)
            .collect::<Vec<_>>(),
        vec!["capture.max_http_buffered_bytes"],
        "{err}"
    );
    assert!(err.to_string().contains("twice max_body_bytes"), "{err}");
    let defaults = parse("[capture]\nports = [1]\n[shadow]\nurl = \"http://h:2\"\n").unwrap();
    assert_eq!(defaults.capture.max_http_buffered_bytes, 256 << 20);
}

#[test]
fn line_column_counts_characters_from_one() {
    let text = "a = 1\nb = \"é\" # x\n";
    assert_eq!(line_column(text, 0), (1, 1));
    assert_eq!(line_column(text, 4), (1, 5));
    assert_eq!(line_column(text, 6), (2, 1));
    // After the two-byte `é`, the closing quote is the 7th character of line 2.
    let quote = text.rfind('"').unwrap();
    assert_eq!(line_column(text, quote), (2, 7));
}

#[test]
fn example_config_parses_and_documents_every_key() {
    let text = include_str!("../../../deploy/shadowtap.example.toml");
    let c = parse(text).unwrap();
    assert_eq!(c.capture.reassembly, Default::default());
    // Every key of the schema, optional ones included, appears in the example file.
    let mut raw = RawConfig::default();
    raw.shadow.url = Some(Setting::builtin("http://x".into()));
    raw.shadow.baseline = Some(Setting::builtin("http://y".into()));
    raw.compare.prediction_pointer = Some(Setting::builtin("/x".into()));
    raw.compare.label_output = Some(Setting::builtin("x".into()));
    raw.discrepancy_log.path = Some(Setting::builtin("x".into()));
    raw.admin.token_file = Some(Setting::builtin("x".into()));
    raw.shadow.model = Some(Setting::builtin("x".into()));
    raw.resources.production_pid = Some(Setting::builtin(1));
    raw.resources.production_cgroup = Some(Setting::builtin("/x".into()));
    raw.resources.shadow_pid = Some(Setting::builtin(1));
    raw.resources.shadow_cgroup = Some(Setting::builtin("/x".into()));
    raw.shadow.rewrite = Setting::builtin_list([raw::RawRewrite {
        path: Setting::builtin("x".into()),
        replacement: Setting::builtin("x".into()),
    }]);
    raw.shadow.header_rewrite = Setting::builtin_list([raw::RawHeaderRewrite {
        name: Setting::builtin("x".into()),
        value: Setting::builtin("x".into()),
        replacement: Setting::builtin("x".into()),
    }]);
    raw.rollback = Some(raw::RawRollback {
        command: Some(Setting::builtin_list(["/x".to_string()])),
        webhook: Some(Setting::builtin("http://x/".into())),
        ..raw::RawRollback::default()
    });
    let full = toml::to_string(&raw).unwrap();
    let mut section = String::new();
    let mut keys = 0;
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
            keys += 1;
        }
    }
    assert!(keys >= 50, "only {keys} keys found in:\n{full}");
}

#[test]
fn accept_encoding_model_and_rewrites_are_parsed_and_round_trip() {
    let c = test_config("");
    assert_eq!(c.shadow.accept_encoding, AcceptEncoding::Preserve);
    assert_eq!(c.shadow.model, None);
    assert!(c.shadow.rewrites.is_empty() && c.shadow.header_rewrites.is_empty());
    let text = r#"[capture]
ports = [8080]
[shadow]
url = "http://127.0.0.1:8081"
accept_encoding = "identity"
model = "wine-v2"
[[shadow.rewrite]]
path = "^/v2/models/(?P<name>[^/]+)/infer$"
replacement = "/v2/models/${name}-shadow/infer"
[[shadow.rewrite]]
path = "^/predict$"
replacement = "/invocations"
[[shadow.header_rewrite]]
name = "Host"
value = "^wine\\."
replacement = "wine-v2."
"#;
    let c = parse(text).unwrap();
    assert_eq!(c.shadow.accept_encoding, AcceptEncoding::Identity);
    assert_eq!(c.shadow.model.as_deref(), Some("wine-v2"));
    let rules: Vec<(&str, &str)> = c
        .shadow
        .rewrites
        .iter()
        .map(|r| (r.pattern.as_str(), r.replacement.as_str()))
        .collect();
    assert_eq!(
        rules,
        vec![
            (
                "^/v2/models/(?P<name>[^/]+)/infer$",
                "/v2/models/${name}-shadow/infer"
            ),
            ("^/predict$", "/invocations")
        ]
    );
    assert_eq!(
        c.shadow.rewrites[0].apply("/v2/models/a/infer"),
        "/v2/models/a-shadow/infer"
    );
    let h = &c.shadow.header_rewrites[0];
    assert_eq!(h.name, HeaderName::from_static("host"));
    assert_eq!(h.value.apply("wine.example"), "wine-v2.example");
    let printed = c.to_toml().unwrap();
    assert!(printed.contains("[[shadow.rewrite]]"), "{printed}");
    assert_eq!(parse(&printed).unwrap(), c, "{printed}");
}

#[test]
fn bad_rewrites_are_located_and_say_what_to_write() {
    let text = r#"[capture]
ports = [8080]
[shadow]
url = "http://127.0.0.1:8081"
accept_encoding = "gzip"
model = "org/model"
[[shadow.rewrite]]
path = "^/v2/models/([^/]+"
replacement = "/x"
[[shadow.rewrite]]
path = "^/v2/models/([^/]+)/infer$"
replacement = "/v2/models/$1v2/infer"
[[shadow.rewrite]]
path = "^/a$"
replacement = "/${b"
[[shadow.header_rewrite]]
name = "bad header"
value = "("
replacement = "$9"
"#;
    let err = parse(text).unwrap_err();
    assert_eq!(
        located(&err),
        vec![
            (
                "t.toml:5:19".to_string(),
                "shadow.accept_encoding".to_string()
            ),
            ("t.toml:6:9".to_string(), "shadow.model".to_string()),
            (
                "t.toml:8:8".to_string(),
                "shadow.rewrite[0].path".to_string()
            ),
            (
                "t.toml:12:15".to_string(),
                "shadow.rewrite[1].replacement".to_string()
            ),
            (
                "t.toml:15:15".to_string(),
                "shadow.rewrite[2].replacement".to_string()
            ),
            (
                "t.toml:17:8".to_string(),
                "shadow.header_rewrite[0].name".to_string()
            ),
            (
                "t.toml:18:9".to_string(),
                "shadow.header_rewrite[0].value".to_string()
            ),
        ],
        "{err}"
    );
    let text = err.to_string();
    for hint in [
        "use preserve (forward production's) or identity",
        "write a [[shadow.rewrite]] rule instead",
        "write ${1}v2 to follow group 1 with text",
        "unclosed `${`",
    ] {
        assert!(text.contains(hint), "no `{hint}` in:\n{text}");
    }
    // `$$` is a dollar sign, `${0}` the whole match: both fine.
    let c = test_config("[[shadow.rewrite]]\npath = \"^/a$\"\nreplacement = \"/b$$${0}\"\n");
    assert_eq!(c.shadow.rewrites[0].apply("/a"), "/b$/a");
}

#[test]
fn preset_ignores_join_the_configured_ones_unless_turned_off() {
    let c = test_config("[compare]\nignore_paths = [\"/trace\"]\n");
    assert!(c.compare.preset_ignores);
    assert_eq!(c.compare.diff.ignore, vec![PathPattern::parse("/trace")]);
    assert_eq!(
        c.compare.preset_ignore_paths(),
        &["/id", "/model_name", "/model_version"]
    );
    // Two answers that differ in every ignored field agree.
    let answer = |id: &str, name: &str, trace: u32| {
        shadow_core::http::HttpResponse {
            trailers: Vec::new(),
            status: 200,
            version: 1,
            headers: Vec::new(),
            body: bytes::Bytes::from(
                serde_json::json!({"id": id, "model_name": name, "model_version": name,
                    "trace": trace, "outputs": [{"name": "p", "shape": [1], "datatype": "INT64", "data": [1]}]})
                .to_string(),
            ),
        }
    };
    let shadow =
        |r: shadow_core::http::HttpResponse| shadow_core::compare::ShadowAnswer::Response {
            trailers: Vec::new(),
            status: r.status,
            headers: r.headers,
            body: r.body,
            latency_ns: 1,
        };
    let (prod, other) = (answer("a", "m", 1), answer("b", "m2", 2));
    let cmp = c
        .compare
        .comparer()
        .compare(&prod, None, &shadow(other.clone()));
    assert!(cmp.discrepancies.is_empty(), "{cmp:?}");
    let off = test_config("[compare]\npreset_ignores = false\n");
    assert!(off.compare.preset_ignore_paths().is_empty());
    let cmp = off.compare.comparer().compare(&prod, None, &shadow(other));
    assert_eq!(cmp.diffs.len(), 4, "{cmp:?}");
    assert_eq!(parse(&off.to_toml().unwrap()).unwrap(), off);
    // Other presets have none.
    let tf = test_config("[compare]\npreset = \"tfserving\"\n");
    assert!(tf.compare.preset_ignore_paths().is_empty());
}

#[test]
fn decoded_bodies_are_capped_like_the_bodies_on_the_wire() {
    let c = test_config("");
    assert_eq!(
        c.compare.decode_limits,
        shadow_core::compare::DecodeLimits {
            production: 16 << 20,
            shadow: 16 << 20
        }
    );
    let text = "[capture]\nports = [8080]\nmax_body_bytes = 1000\n[shadow]\nurl = \"http://h:1\"\nmax_response_bytes = 2000\n";
    let c = parse(text).unwrap();
    assert_eq!(
        c.compare.decode_limits,
        shadow_core::compare::DecodeLimits {
            production: 1000,
            shadow: 2000
        }
    );
}

#[test]
fn pacing_is_production_by_default_and_a_bad_value_names_both() {
    let c =
        parse("[capture]\nports = [8080]\n[shadow]\nurl = \"http://127.0.0.1:8081\"\n").unwrap();
    assert_eq!(c.mirror.pacing, super::Pacing::Production);
    let err = parse(
        "[capture]\nports = [8080]\n[shadow]\nurl = \"http://127.0.0.1:8081\"\n[mirror]\npacing = \"fast\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("mirror.pacing"), "{err}");
    assert!(err.contains("production") && err.contains("asap"), "{err}");
}

#[test]
fn the_noise_baseline_is_optional_checked_and_round_trips() {
    assert_eq!(test_config("").shadow.baseline, None);
    let base = "[capture]\nports = [8080]\n[shadow]\nurl = \"http://127.0.0.1:8081\"\n";
    let c = parse(&format!("{base}baseline = \"http://127.0.0.1:8082/p\"\n")).unwrap();
    let baseline = c.shadow.baseline.clone().unwrap();
    assert_eq!((baseline.port(), baseline.prefix()), (8082, "/p"));
    let again = parse(&c.to_toml().unwrap()).unwrap();
    assert_eq!(again.shadow.baseline, c.shadow.baseline);
    // Located at its value, with what to do.
    for (value, why) in [
        ("\"\"", "second instance of the production model"),
        ("\"https://h:1\"", "https is not supported"),
        ("\"http://127.0.0.1:8080\"", "tapped production port"),
        ("\"http://127.0.0.1:8081\"", "is the shadow's server"),
    ] {
        let err = parse(&format!("{base}baseline = {value}\n")).unwrap_err();
        assert_eq!(
            located(&err),
            vec![("t.toml:5:12".to_string(), "shadow.baseline".to_string())],
            "{value}"
        );
        assert!(err.to_string().contains(why), "{value}: {err}");
    }
}

#[test]
fn rollback_is_absent_by_default_and_parsed_with_its_defaults() {
    assert_eq!(test_config("").rollback, None);
    let c = test_config("[rollback]\ntriggers = [\"accuracy_margin\"]\n");
    let r = c.rollback.as_ref().expect("[rollback] given");
    assert_eq!(
        *r,
        RollbackSettings {
            triggers: vec![shadow_core::criteria::CriterionName::AccuracyMargin],
            cooldown: Duration::from_secs(600),
            dry_run: true,
            command: None,
            webhook: None,
            action_timeout: Duration::from_secs(30),
        }
    );
    assert_eq!(parse(&c.to_toml().unwrap()).unwrap(), c);
}

#[test]
fn rollback_keys_are_typed_and_round_trip() {
    use shadow_core::criteria::CriterionName;
    let c = test_config(
        r#"[rollback]
triggers = ["accuracy_margin", "max_error_rate_delta", "min_agreement"]
cooldown = "1h30m"
dry_run = false
command = ["/usr/local/bin/kubectl", "rollout", "undo", "deployment/wine", "--to-revision=$REV"]
webhook = "http://127.0.0.1:9000/hooks/rollback?team=ml"
action_timeout = "1500ms"
"#,
    );
    let r = c.rollback.as_ref().unwrap();
    assert_eq!(
        r.triggers,
        vec![
            CriterionName::AccuracyMargin,
            CriterionName::MaxErrorRateDelta,
            CriterionName::MinAgreement
        ]
    );
    assert_eq!(r.cooldown, Duration::from_secs(5400));
    assert!(!r.dry_run);
    assert_eq!(
        r.command,
        Some(RollbackCommand {
            program: "/usr/local/bin/kubectl".into(),
            // As written: no shell, so `$REV` stays literal.
            args: ["rollout", "undo", "deployment/wine", "--to-revision=$REV"]
                .map(String::from)
                .to_vec(),
        })
    );
    assert_eq!(
        r.webhook.as_ref().map(|u| u.to_string()).as_deref(),
        Some("http://127.0.0.1:9000/hooks/rollback?team=ml")
    );
    assert_eq!(r.action_timeout, Duration::from_millis(1500));
    assert_eq!(
        r.policy(),
        shadow_core::rollback::RollbackConfig {
            triggers: r.triggers.clone(),
            cooldown: r.cooldown
        }
    );
    let printed = c.to_toml().unwrap();
    assert!(printed.contains("cooldown = \"90m\""), "{printed}");
    assert!(printed.contains("action_timeout = \"1500ms\""), "{printed}");
    assert_eq!(parse(&printed).unwrap(), c, "{printed}");
}

#[test]
fn rollback_mistakes_are_located_and_say_what_to_write() {
    let text = r#"[capture]
ports = [8080]
[shadow]
url = "http://127.0.0.1:8081"
[rollback]
triggers = ["accuracy", "min_samples", "f1_margin"]
cooldown = "0s"
dry_run = false
command = ["kubectl", "rollout", "undo"]
webhook = "https://hooks.example/rollback"
action_timeout = "30 seconds"
"#;
    let err = parse(text).unwrap_err();
    assert_eq!(
        located(&err),
        [
            ("t.toml:6:13", "rollback.triggers"),
            ("t.toml:6:25", "rollback.triggers"),
            ("t.toml:7:12", "rollback.cooldown"),
            ("t.toml:9:12", "rollback.command"),
            ("t.toml:10:11", "rollback.webhook"),
            ("t.toml:11:18", "rollback.action_timeout"),
        ]
        .map(|(a, k)| (a.to_string(), k.to_string()))
        .to_vec(),
        "{err}"
    );
    let text = err.to_string();
    for hint in [
        "`accuracy` is not a criterion: use one of min_agreement, accuracy_margin, f1_margin, \
         max_p99_latency_ratio, max_error_rate_delta, max_cpu_ratio, max_rss_ratio",
        "`min_samples` never fails",
        "`0s` is zero",
        "`kubectl` is not an absolute path",
        "https is not supported, only http://",
        "`30 seconds` is not a duration",
    ] {
        assert!(text.contains(hint), "no `{hint}` in:\n{text}");
    }

    // No trigger; an active rollback without an action; an empty command.
    let base = "[capture]\nports = [8080]\n[shadow]\nurl = \"http://h:1\"\n[rollback]\n";
    let err = parse(&format!("{base}dry_run = false\n")).unwrap_err();
    assert_eq!(
        located(&err),
        vec![
            ("t.toml:6:11".to_string(), "rollback.dry_run".to_string()),
            ("default".to_string(), "rollback.triggers".to_string()),
        ],
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("no action is configured"), "{text}");
    assert!(
        text.contains("name the criteria that must keep holding"),
        "{text}"
    );
    let err = parse(&format!("{base}triggers = [\"f1_margin\"]\ncommand = []\n")).unwrap_err();
    assert_eq!(
        located(&err),
        vec![("t.toml:7:11".to_string(), "rollback.command".to_string())],
        "{err}"
    );
    // An unknown key in the table is reported like any other.
    let err = parse(&format!("{base}triggers = [\"f1_margin\"]\nshell = true\n")).unwrap_err();
    assert_eq!(
        located(&err),
        vec![("t.toml:7:1".to_string(), "rollback.shell".to_string())],
        "{err}"
    );
}

#[test]
fn durations_are_written_with_units() {
    use super::parse::duration_text;
    let d = |t: &str| duration_text(&t.to_string());
    assert_eq!(d("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(d("10m"), Ok(Duration::from_secs(600)));
    assert_eq!(d("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(d("1h 30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(d("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(d("0s"), Ok(Duration::ZERO));
    for bad in ["", "10", "1.5h", "-3s", "3d", "m", "10 m s"] {
        assert!(d(bad).is_err(), "{bad:?} accepted");
    }
    assert!(d("10").unwrap_err().contains("without a unit"));
}

#[test]
fn the_example_rollback_table_parses_once_uncommented() {
    let text = include_str!("../../../deploy/shadowtap.example.toml");
    let start = text
        .find("\n# [rollback]\n")
        .expect("example documents [rollback]");
    let is_key = |l: &str| {
        l.split_once(" = ")
            .is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    };
    let uncommented: String = text[start..]
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest == "[rollback]" || is_key(rest) => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let c = parse(&format!("{}{uncommented}", &text[..start])).unwrap();
    let r = c.rollback.expect("[rollback] uncommented");
    assert_eq!(r.triggers.len(), 2);
    assert!(r.dry_run && r.command.is_some() && r.webhook.is_some());
    assert_eq!(
        (r.cooldown, r.action_timeout),
        (Duration::from_secs(600), Duration::from_secs(30))
    );
}

#[test]
fn resource_targets_are_one_pid_or_one_absolute_cgroup_per_server() {
    let c = test_config("[resources]\nshadow_pid = 77\nproduction_cgroup = \"/sys/fs/cgroup/a\"\n");
    assert_eq!(
        c.resources.shadow,
        ResourceTarget::Pid(std::num::NonZeroU32::new(77).unwrap())
    );
    assert_eq!(
        c.resources.production,
        ResourceTarget::Cgroup("/sys/fs/cgroup/a".into())
    );
    assert_eq!(parse(&c.to_toml().unwrap()).unwrap(), c);
    let err = parse(
        "[capture]\nports = [1]\n[shadow]\nurl = \"http://h:2\"\n[resources]\nsample_interval_ms = 50\nproduction_pid = 0\nshadow_pid = 3\nshadow_cgroup = \"/sys/fs/cgroup/b\"\nproduction_cgroup = \"relative/dir\"\n",
    )
    .unwrap_err();
    assert_eq!(
        located(&err),
        vec![
            (
                "t.toml:6:22".to_string(),
                "resources.sample_interval_ms".to_string()
            ),
            (
                "t.toml:7:18".to_string(),
                "resources.production_pid".to_string()
            ),
            (
                "t.toml:9:17".to_string(),
                "resources.shadow_cgroup".to_string()
            ),
            (
                "t.toml:10:21".to_string(),
                "resources.production_cgroup".to_string()
            ),
        ],
        "{err}"
    );
    let text = err.to_string();
    for needle in [
        "50 ms is too short: give at least 100",
        "0 is not a process id",
        "`relative/dir` is not an absolute path",
        "resources.shadow_pid is set too: give one of them",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

/// `compare.proto` with its imports under `compare.proto_include`, written to a temp dir.
fn proto_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let acme = dir.path().join("acme");
    std::fs::create_dir(&acme).unwrap();
    std::fs::write(
        acme.join("common.proto"),
        "syntax = \"proto3\";\npackage acme;\nmessage Label { string name = 1; }\n",
    )
    .unwrap();
    std::fs::write(
        acme.join("scorer.proto"),
        "syntax = \"proto3\";\npackage acme;\nimport \"acme/common.proto\";\n\
         import \"google/protobuf/wrappers.proto\";\n\
         service Scorer { rpc Score(Req) returns (acme.Label); }\n\
         message Req { google.protobuf.DoubleValue x = 1; }\n",
    )
    .unwrap();
    dir
}

fn compare_section(dir: &Path, protos: &[&str], includes: &[&Path]) -> String {
    let list = |items: Vec<String>| {
        items
            .iter()
            .map(|i| format!("{i:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "[capture]\nports = [8080]\n[shadow]\nurl = \"http://127.0.0.1:8081\"\n[compare]\n\
         proto = [{}]\nproto_include = [{}]\n",
        list(
            protos
                .iter()
                .map(|p| dir.join(p).display().to_string())
                .collect()
        ),
        list(includes.iter().map(|p| p.display().to_string()).collect()),
    )
}

#[test]
fn proto_files_compile_at_start_up_with_their_imports() {
    let dir = proto_dir();
    let text = compare_section(dir.path(), &["acme/scorer.proto"], &[dir.path()]);
    let c = parse(&text).unwrap();
    let schema = c.compare.proto_schema.as_ref().expect("compiled");
    let m = schema.method("/acme.Scorer/Score").unwrap();
    assert_eq!(m.output.full_name(), "acme.Label");
    assert_eq!(
        c.compare.proto_files,
        [dir.path().join("acme/scorer.proto")]
    );
    // The comparer decodes that method with it.
    let decoder = c.compare.comparer();
    assert_eq!(
        decoder.grpc_decoder().decoding(Some("/acme.Scorer/Score")),
        shadow_core::grpc::Decoding::Schema
    );
    // The effective config prints and reads back the same.
    assert_eq!(parse(&c.to_toml().unwrap()).unwrap(), c);
    // Without an include directory the file's own directory is searched, under its file name:
    // `acme/common.proto` is then not found beside `acme/scorer.proto`.
    let beside = compare_section(dir.path(), &["acme/scorer.proto"], &[]);
    let err = parse(&beside).unwrap_err();
    assert_eq!(
        located(&err),
        [("t.toml:6:9".into(), "compare.proto".into())]
    );
    let message = err.to_string();
    assert!(message.contains("acme/common.proto"), "{message}");
    assert!(
        message.contains("scorer.proto:3:"),
        "located in the .proto: {message}"
    );
    assert!(
        message.contains("scorer.proto = "),
        "names the file: {message}"
    );
}

#[test]
fn proto_problems_are_located() {
    let dir = proto_dir();
    std::fs::write(
        dir.path().join("bad.proto"),
        "syntax = \"proto3\";\nservice S { rpc M(A) returns (A); }\nmessage A { int32 x = ; }\n",
    )
    .unwrap();
    let err = parse(&compare_section(dir.path(), &["bad.proto"], &[])).unwrap_err();
    assert!(err.to_string().contains("bad.proto:3:"), "{err}");
    // A missing file and an include that is no directory: each at its own list element.
    let text = compare_section(
        dir.path(),
        &["acme/scorer.proto", "missing.proto"],
        &[&dir.path().join("nope")],
    );
    let err = parse(&text).unwrap_err();
    let at: Vec<String> = located(&err)
        .into_iter()
        .map(|(at, key)| format!("{at} {key}"))
        .collect();
    assert_eq!(at.len(), 2, "{err}");
    // In file order: the missing file's list element, then the include's.
    assert!(
        at[0].starts_with("t.toml:6:") && at[0].ends_with(" compare.proto"),
        "{at:?}"
    );
    assert!(
        at[1].starts_with("t.toml:7:") && at[1].ends_with(" compare.proto_include"),
        "{at:?}"
    );
    assert!(
        err.to_string().contains("missing.proto: No such file"),
        "{err}"
    );
    assert!(err.to_string().contains("is not a directory"), "{err}");
    // Include directories alone decode nothing.
    let err = parse(&compare_section(dir.path(), &[], &[dir.path()])).unwrap_err();
    assert_eq!(located(&err)[0].1, "compare.proto_include");
    // A file without a service.
    let err = parse(&compare_section(
        dir.path(),
        &["acme/common.proto"],
        &[dir.path()],
    ))
    .unwrap_err();
    assert!(err.to_string().contains("define no service"), "{err}");
}

#[test]
fn the_ring_size_is_a_power_of_two_of_at_least_16_kib() {
    assert_eq!(
        test_config("").capture.ring_bytes,
        shadow_common::RING_BYTES
    );
    let small =
        parse("[capture]\nports = [1]\nring_bytes = 16384\n[shadow]\nurl = \"http://h:2\"\n");
    assert_eq!(small.unwrap().capture.ring_bytes, 16384);
    for bad in [0, 8192, 100_000] {
        let err = parse(&format!(
            "[capture]\nports = [1]\nring_bytes = {bad}\n[shadow]\nurl = \"http://h:2\"\n"
        ))
        .unwrap_err();
        assert_eq!(
            located(&err),
            vec![("t.toml:3:14".to_string(), "capture.ring_bytes".to_string())],
            "{err}"
        );
        assert!(err.to_string().contains("power of two"), "{err}");
    }
}

#[test]
fn the_time_series_shape_is_configured_within_bounds() {
    let c = test_config("");
    assert_eq!(
        (c.admin.timeseries_interval, c.admin.timeseries_buckets),
        (Duration::from_secs(60), nz(1440))
    );
    let base = "[capture]\nports = [8080]\n[shadow]\nurl = \"http://127.0.0.1:8081\"\n[admin]\n";
    let c = parse(&format!(
        "{base}timeseries_interval_seconds = 10\ntimeseries_buckets = 6\n"
    ))
    .unwrap();
    assert_eq!(
        (c.admin.timeseries_interval, c.admin.timeseries_buckets),
        (Duration::from_secs(10), nz(6))
    );
    for (key, bad) in [
        ("timeseries_interval_seconds", 0),
        ("timeseries_interval_seconds", 86_401),
        ("timeseries_buckets", 0),
        ("timeseries_buckets", 10_081),
    ] {
        let err = parse(&format!("{base}{key} = {bad}\n")).unwrap_err();
        assert_eq!(
            located(&err),
            vec![(
                "t.toml:6:".to_string() + &(key.len() + 4).to_string(),
                format!("admin.{key}")
            )],
            "{key} = {bad}"
        );
    }
}
