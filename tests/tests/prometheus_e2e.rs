//! A real Prometheus (Debian's `prometheus`) scraping a live `shadowd run`: the deploy files
//! work against the daemon as it is, not only against constructed series.
//!
//! In a throw-away namespace: production on :8080, a fake shadow on :8081, `shadowd run`
//! tapping `lo` with its admin address on :9465, and Prometheus on a free loopback port with a
//! temporary storage directory, configured from `deploy/prometheus/prometheus.example.yml`
//! (scrape and evaluation interval 1 s, the target rewritten to the daemon's admin address) and
//! loading `deploy/prometheus/shadowtap-alerts.yml`. After N requests:
//! - Prometheus's HTTP API reports exactly N mirrored (and N served);
//! - every alert rule loaded and evaluates healthy; every expression evaluates without error,
//!   stays quiet on this healthy traffic, and each quantity it compares has data;
//! - every panel query of `deploy/grafana/shadowtap.json` (Grafana's `$instance` and
//!   `$__rate_interval` substituted) evaluates without error and has data, except the queries
//!   listed in [`NO_DATA_BY_DESIGN`] with the reason.
//!
//! Needs root (namespaces, eBPF) and the `prometheus` binary (`cargo xtask bootstrap` installs
//! it); skipped with a message otherwise, unless `SHADOWTAP_E2E_REQUIRED=1`.

use serde_json::Value;
use shadow_core::vocabulary::MirrorResult;
use shadowtap_test_support::http;
use shadowtap_tests::admin::{self, mirrored};
use shadowtap_tests::model::{ModelServer, Req, Role};
use shadowtap_tests::netns::NetNs;
use shadowtap_tests::require_root;
use shadowtap_tests::shadowd::Daemon;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PROD: SocketAddr = local(8080);
const SHADOW: SocketAddr = local(8081);
/// Not the example configuration's 9464: the test must rewrite the target to reach it.
const ADMIN: SocketAddr = local(9465);
/// Requests sent; each is mirrored once.
const N: u64 = 24;
/// Bound on every wait on Prometheus (a 1 s scrape and a 1 s rule evaluation make it seconds).
const WAIT: Duration = Duration::from_secs(90);
/// Grafana's `$__rate_interval` for a 1 s scrape interval: max(4 × scrape, interval + scrape).
const RATE_INTERVAL: &str = "4s";

/// Panel queries (title, legend) that legitimately have no data on this HTTP/1.1 traffic.
const NO_DATA_BY_DESIGN: &[(&str, &str, &str)] = &[(
    "gRPC status by model",
    "{{model}} {{code}}",
    "keeps only codes seen (`> 0`); this traffic has no gRPC call",
)];

const fn local(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

/// The `prometheus` binary on PATH, or `None` (after saying SKIPPED) when skipping is allowed.
fn prometheus_binary(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("prometheus"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("SHADOWTAP_E2E_REQUIRED").is_none_or(|v| v != "1"),
            "{test}: `prometheus` is not installed and SHADOWTAP_E2E_REQUIRED=1 forbids skipping \
             (Debian package `prometheus`; `cargo xtask bootstrap` installs it)"
        );
        eprintln!("SKIPPED {test}: `prometheus` not found (apt-get install prometheus)");
    }
    found
}

/// `deploy/prometheus/prometheus.example.yml` with 1 s intervals and the target rewritten to
/// `target`; panics if the example no longer has what is rewritten.
fn prometheus_config(target: SocketAddr) -> String {
    let example =
        std::fs::read_to_string(workspace().join("deploy/prometheus/prometheus.example.yml"))
            .expect("the example Prometheus configuration");
    let mut config = example.clone();
    for (from, to) in [
        ("scrape_interval: 15s", "scrape_interval: 1s".to_string()),
        (
            "evaluation_interval: 15s",
            "evaluation_interval: 1s".to_string(),
        ),
        ("\"127.0.0.1:9464\"", format!("\"{target}\"")),
    ] {
        assert_eq!(
            config.matches(from).count(),
            1,
            "prometheus.example.yml changed: `{from}` not found once in\n{example}"
        );
        config = config.replace(from, &to);
    }
    config
}

/// A loopback port nothing in `ns` listens on now.
fn free_port(ns: &NetNs) -> u16 {
    ns.run(|| TcpListener::bind(local(0)))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Percent-encodes a query parameter value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server running in a namespace, reached through its HTTP API.
struct Prometheus<'a> {
    ns: &'a NetNs,
    addr: SocketAddr,
    process: Daemon,
    _dir: tempfile::TempDir,
}

impl<'a> Prometheus<'a> {
    /// Starts `binary` in `ns` scraping `target` with the alert rules loaded; returns once it
    /// is ready.
    fn start(ns: &'a NetNs, binary: &Path, target: SocketAddr) -> Prometheus<'a> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, prometheus_config(target)).unwrap();
        std::fs::copy(
            workspace().join("deploy/prometheus/shadowtap-alerts.yml"),
            dir.path().join("shadowtap-alerts.yml"),
        )
        .expect("copy the alert rules next to the configuration");
        let storage = dir.path().join("data");
        let addr = local(free_port(ns));
        let args = [
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", storage.display()),
            format!("--web.listen-address={addr}"),
            "--log.level=warn".to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = Daemon::spawn_program(binary, Some(ns), &args).expect("spawn prometheus");
        let mut prometheus = Prometheus {
            ns,
            addr,
            process,
            _dir: dir,
        };
        prometheus.wait("ready", |p| {
            matches!(p.get("/-/ready"), Ok((200, _))).then_some(())
        });
        prometheus
    }

    fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        self.ns.run(|| http::get(self.addr, path))
    }

    /// `GET /api/v1/<what>`: the `data` of a `success` answer, or the error Prometheus gave.
    fn api(&self, path: &str) -> Result<Value, String> {
        let (status, body) = self.get(path).map_err(|e| format!("GET {path}: {e}"))?;
        let answer: Value =
            serde_json::from_str(&body).map_err(|e| format!("GET {path}: {e}: {body}"))?;
        if status != 200 || answer["status"] != "success" {
            return Err(format!("GET {path}: {status} {answer}"));
        }
        Ok(answer["data"].clone())
    }

    /// An instant query's result vector (or scalar, as one element).
    fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(promql)))?;
        match data["resultType"].as_str() {
            Some("vector") => Ok(data["result"].as_array().cloned().unwrap_or_default()),
            Some("scalar") => Ok(vec![data["result"].clone()]),
            other => Err(format!("{promql}: result type {other:?}: {data}")),
        }
    }

    /// The single value of `promql`, if it has exactly one sample.
    fn value(&self, promql: &str) -> Option<f64> {
        match self.query(promql).ok()?.as_slice() {
            [sample] => sample["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// Polls (bounded) until `cond` gives a value; panics with Prometheus's log otherwise.
    fn wait<T>(&mut self, what: &str, cond: impl Fn(&Self) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(status) = self.process.wait_timeout(Duration::ZERO).expect("wait") {
                panic!("prometheus exited ({status}):\n{}", self.process.output());
            }
            if let Some(value) = cond(self) {
                return value;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "timed out waiting for Prometheus: {what}\nprometheus output:\n{}",
            self.process.output()
        );
    }
}

/// Splits a PromQL expression as Prometheus prints it at its top-level `and` / `or` /
/// `unless`, and cuts each part's top-level comparison with a constant: the quantities an alert
/// compares (`a > 0.05 and on(instance) b > 100` → `a`, `b`).
fn compared_quantities(expr: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut depth = 0usize;
    let mut in_string = false;
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_string {
            if c == '\\' && i + 1 < chars.len() {
                parts.last_mut().unwrap().push(c);
                i += 1;
            } else if c == '"' {
                in_string = false;
            }
        } else {
            match c {
                '"' => in_string = true,
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                let rest: String = chars[i..].iter().collect();
                if let Some(op) = [" and ", " or ", " unless "]
                    .into_iter()
                    .find(|op| rest.starts_with(op))
                {
                    // Skip a vector-matching modifier: `on(instance)`, `ignoring(x)`.
                    let mut j = i + op.len();
                    let after: String = chars[j..].iter().collect();
                    if after.starts_with("on") || after.starts_with("ignoring") {
                        let close = after.find(')').expect("closed matching modifier");
                        j += close + 1;
                    }
                    parts.push(String::new());
                    i = j;
                    continue;
                }
            }
        }
        parts.last_mut().unwrap().push(c);
        i += 1;
    }
    parts
        .into_iter()
        .map(|part| {
            let part = part.trim();
            for op in [" > ", " < ", " >= ", " <= ", " == ", " != "] {
                if let Some((lhs, rhs)) = part.rsplit_once(op)
                    && rhs.trim().parse::<f64>().is_ok()
                {
                    return lhs.trim().to_string();
                }
            }
            part.to_string()
        })
        .collect()
}

#[test]
fn compared_quantities_are_the_sides_of_an_alert() {
    assert_eq!(
        compared_quantities(
            "shadowtap_agreement_ratio{unit=\"request\"} < 0.9 and on(instance) \
             sum by(instance) (increase(x{a=~\"b|c\"}[30m])) > 100"
        ),
        vec![
            "shadowtap_agreement_ratio{unit=\"request\"}",
            "sum by(instance) (increase(x{a=~\"b|c\"}[30m]))"
        ]
    );
    assert_eq!(
        compared_quantities("(a + b) / (c > 1) > 0.05"),
        vec!["(a + b) / (c > 1)"]
    );
    assert_eq!(
        compared_quantities("absent(up{job=\"shadowtap\"})"),
        vec!["absent(up{job=\"shadowtap\"})"]
    );
}

/// Every panel query of the dashboard: (panel title, legend, expression).
fn dashboard_queries() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(workspace().join("deploy/grafana/shadowtap.json"))
        .expect("the Grafana dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut panels = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        panels.push(p);
        panels.extend(p["panels"].as_array().into_iter().flatten());
    }
    panels
        .into_iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            p["targets"].as_array().into_iter().flatten().map(move |t| {
                (
                    title.clone(),
                    t["legendFormat"].as_str().unwrap_or_default().to_string(),
                    t["expr"].as_str().expect("a query").to_string(),
                )
            })
        })
        .collect()
}

#[test]
fn a_real_prometheus_scrapes_shadowd_and_answers_every_alert_and_panel_query() {
    const TEST: &str = "a_real_prometheus_scrapes_shadowd_and_answers_every_alert_and_panel_query";
    if !require_root(TEST) {
        return;
    }
    let Some(binary) = prometheus_binary(TEST) else {
        return;
    };
    let ns = NetNs::new("prom").expect("netns");
    let _prod = ModelServer::start(
        ns.run(|| TcpListener::bind(PROD)).unwrap(),
        Role::Production,
    )
    .unwrap();
    let _shadow =
        ModelServer::start(ns.run(|| TcpListener::bind(SHADOW)).unwrap(), Role::Shadow).unwrap();
    let mut daemon = admin::run_daemon(&ns, PROD, SHADOW, ADMIN, &["--preset", "kserve-v2"]);
    let mut prometheus = Prometheus::start(&ns, &binary, ADMIN);

    // N requests on one keep-alive connection, every one mirrored.
    let reqs: Vec<Req> = (1..=N).map(Req::post).collect();
    let stream = ns.run(|| TcpStream::connect(PROD)).unwrap();
    assert_eq!(
        shadowtap_tests::model::send(stream, &reqs, false).expect("production answers"),
        reqs.len()
    );
    admin::wait_metrics(&ns, &mut daemon, ADMIN, "N mirrored", |t| {
        mirrored(t, MirrorResult::Ok) >= N as f64
    });

    // Prometheus reports exactly the mirrored count (never more), and the served count.
    let mirrored_ok = "sum(shadowtap_mirrored_requests_total{job=\"shadowtap\",result=\"ok\"})";
    let seen = prometheus.wait("the mirrored count scraped", |p| {
        p.value(mirrored_ok).filter(|&v| v >= N as f64)
    });
    assert_eq!(seen, N as f64, "{mirrored_ok}");
    assert_eq!(
        prometheus.value("sum(shadowtap_exchanges_total{job=\"shadowtap\"})"),
        Some(N as f64)
    );
    assert_eq!(
        prometheus.value("shadowtap_latency_seconds_count{job=\"shadowtap\",model=\"production\"}"),
        Some(N as f64),
        "production's latency for every exchange"
    );
    let instance = prometheus
        .query("up{job=\"shadowtap\"} == 1")
        .ok()
        .and_then(|v| {
            v.first()?["metric"]["instance"]
                .as_str()
                .map(str::to_string)
        })
        .expect("the shadowtap target is up");
    assert_eq!(instance, ADMIN.to_string());

    // Every alert rule loaded, and evaluated healthy (wait for a full evaluation after the
    // traffic).
    let rules_file =
        std::fs::read_to_string(workspace().join("deploy/prometheus/shadowtap-alerts.yml"))
            .unwrap();
    let alerts_in_file = rules_file
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert: "))
        .count();
    std::thread::sleep(Duration::from_secs(2));
    let rules: Vec<Value> = prometheus.wait("every rule evaluated", |p| {
        let groups = p.api("/api/v1/rules?type=alert").ok()?;
        let rules: Vec<Value> = groups["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        (rules.len() == alerts_in_file
            && rules
                .iter()
                .all(|r| r["health"] == "ok" && r["lastEvaluation"] != "0001-01-01T00:00:00Z"))
        .then_some(rules)
    });
    let mut problems = Vec::new();
    let mut evaluated = 0;
    for rule in &rules {
        let name = rule["name"].as_str().unwrap_or_default();
        let expr = rule["query"].as_str().expect("a rule query");
        assert_eq!(
            rule["state"], "inactive",
            "{name} on healthy traffic: {rule}"
        );
        match prometheus.query(expr) {
            Ok(v) if v.is_empty() => {}
            Ok(v) => problems.push(format!("alert {name} fires on healthy traffic: {v:?}")),
            Err(e) => problems.push(format!("alert {name}: {e}")),
        }
        for quantity in compared_quantities(expr) {
            evaluated += 1;
            match prometheus.query(&quantity) {
                // absent() has data only when the target is missing.
                Ok(v) if v.is_empty() && quantity.starts_with("absent(") => {}
                Ok(v) if v.is_empty() => {
                    problems.push(format!("alert {name}: no data for `{quantity}`"))
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("alert {name}: {e}")),
            }
        }
    }
    assert!(evaluated > rules.len(), "every alert compares something");

    // Every panel query, as Grafana would send it for this instance.
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{queries:?}");
    for (title, legend, expr) in &queries {
        let promql = expr
            .replace("$__rate_interval", RATE_INTERVAL)
            .replace("$instance", &instance);
        assert!(
            !promql.contains('$'),
            "{title}: a variable left in `{promql}`"
        );
        let no_data_ok = NO_DATA_BY_DESIGN
            .iter()
            .any(|(t, l, _)| t == title && l == legend);
        match prometheus.query(&promql) {
            Ok(v) if v.is_empty() && !no_data_ok => {
                problems.push(format!("panel {title} ({legend}): no data for `{promql}`"))
            }
            Ok(_) => {}
            Err(e) => problems.push(format!("panel {title} ({legend}): {e}")),
        }
    }
    for (title, legend, why) in NO_DATA_BY_DESIGN {
        assert!(
            queries.iter().any(|(t, l, _)| t == title && l == legend),
            "NO_DATA_BY_DESIGN names a query the dashboard no longer has: {title} ({legend})"
        );
        println!("no data by design: {title} ({legend}): {why}");
    }
    println!(
        "prometheus: {N} mirrored scraped; {} alert rules, {evaluated} compared quantities and {} \
         panel queries evaluated",
        rules.len(),
        queries.len()
    );
    assert!(
        problems.is_empty(),
        "{}\nshadowd output:\n{}",
        problems.join("\n"),
        daemon.output()
    );
    let status = daemon.stop(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "shadowd: {status}\n{}", daemon.output());
}
