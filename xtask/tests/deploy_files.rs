//! The Grafana dashboard and the Prometheus files in `deploy/` parse, have the expected shape,
//! and name only metrics (and labels) that `shadow-daemon/src/sinks/metrics.rs` registers, so
//! they cannot drift from the daemon silently.

mod yaml_subset;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn workspace_file(path: &str) -> String {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// Metric names (with the `shadowtap_` prefix) registered in metrics.rs and their label names.
/// Histograms also expose `_bucket` (with `le`), `_sum` and `_count`.
fn registered_metrics() -> BTreeMap<String, BTreeSet<String>> {
    let source = workspace_file("shadow-daemon/src/sinks/metrics.rs");
    let verdict = workspace_file("shadow-daemon/src/sinks/verdict_metrics.rs");
    let mut metrics = BTreeMap::new();
    let chunks = source
        .split("reg!(")
        .skip(1)
        .chain(verdict.split("reg(\n").skip(1));
    for chunk in chunks {
        let Some(after) = ["opts(", "HistogramOpts::new("]
            .iter()
            .filter_map(|call| chunk.split_once(call).map(|(_, rest)| rest))
            .next()
        else {
            continue;
        };
        let name = string_literals(after).next().expect("metric name literal");
        let labels: BTreeSet<String> = chunk
            .split_once("&[")
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(list, _)| string_literals(list).map(str::to_string).collect())
            .unwrap_or_default();
        let full = format!("shadowtap_{name}");
        if chunk.contains("HistogramOpts") {
            let mut with_le = labels.clone();
            with_le.insert("le".to_string());
            metrics.insert(format!("{full}_bucket"), with_le);
            metrics.insert(format!("{full}_sum"), labels.clone());
            metrics.insert(format!("{full}_count"), labels.clone());
        }
        metrics.insert(full, labels);
    }
    assert!(
        metrics.len() >= 15,
        "metrics.rs changed shape; found only {metrics:?}"
    );
    metrics
}

fn string_literals(text: &str) -> impl Iterator<Item = &str> {
    text.split('"').skip(1).step_by(2)
}

/// Every `shadowtap_*` identifier in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("shadowtap_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Checks a PromQL expression: balanced brackets, and every `shadowtap_x{k="v"}` selector and
/// `by (...)` / `on (...)` clause names labels that exist (`instance` and `job` come from the
/// scrape).
fn check_expr(expr: &str, metrics: &BTreeMap<String, BTreeSet<String>>, context: &str) {
    let mut depth = Vec::new();
    for c in expr.chars() {
        match c {
            '(' | '{' | '[' => depth.push(c),
            ')' | '}' | ']' => {
                let open = depth.pop();
                let want = match c {
                    ')' => '(',
                    '}' => '{',
                    _ => '[',
                };
                assert_eq!(open, Some(want), "{context}: unbalanced `{expr}`");
            }
            _ => {}
        }
    }
    assert!(depth.is_empty(), "{context}: unbalanced `{expr}`");
    let scrape = ["instance", "job"];
    let all_labels: BTreeSet<&str> = metrics
        .values()
        .flatten()
        .map(String::as_str)
        .chain(scrape)
        .collect();
    for name in metric_names(expr) {
        let labels = metrics
            .get(&name)
            .unwrap_or_else(|| panic!("{context}: unknown metric {name} in `{expr}`"));
        for selector in expr.split(&name).skip(1) {
            let Some(body) = selector.strip_prefix('{') else {
                continue;
            };
            let body = &body[..body.find('}').unwrap()];
            for matcher in body.split(',').filter(|m| !m.trim().is_empty()) {
                let key = matcher.split(['=', '!']).next().unwrap().trim().to_string();
                assert!(
                    labels.contains(&key) || scrape.contains(&key.as_str()),
                    "{context}: {name} has no label `{key}` (has {labels:?}) in `{expr}`"
                );
            }
        }
    }
    for clause in ["by (", "on (", "by(", "on("] {
        for part in expr.split(clause).skip(1) {
            for label in part[..part.find(')').unwrap()].split(',') {
                let label = label.trim();
                assert!(
                    all_labels.contains(label),
                    "{context}: unknown label `{label}` in `{expr}`"
                );
            }
        }
    }
}

fn check_names_exist(text: &str, metrics: &BTreeMap<String, BTreeSet<String>>, file: &str) {
    let names = metric_names(text);
    assert!(!names.is_empty(), "{file} names no shadowtap metric");
    for name in names {
        assert!(
            metrics.contains_key(&name),
            "{file} names {name}, which metrics.rs does not register"
        );
    }
}

/// Every panel, including those nested in collapsed rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

#[test]
fn grafana_dashboard_is_importable_and_matches_the_daemon() {
    let text = workspace_file("deploy/grafana/shadowtap.json");
    let metrics = registered_metrics();
    check_names_exist(&text, &metrics, "shadowtap.json");
    let d: Value = serde_json::from_str(&text).expect("dashboard is valid JSON");
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    assert!(d["title"].is_string() && d["uid"].is_string());
    let vars = d["templating"]["list"].as_array().expect("templating");
    assert!(
        vars.iter().any(|v| v["name"] == "DS_PROMETHEUS"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a `DS_PROMETHEUS` datasource variable picks the Prometheus data source"
    );
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for p in panels(&d) {
        let title = p["title"].as_str().expect("panel title");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "{title}: duplicate id"
        );
        let g = &p["gridPos"];
        for k in ["h", "w", "x", "y"] {
            assert!(g[k].is_u64(), "{title}: gridPos.{k}");
        }
        assert!(
            g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
            "{title}: too wide"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
            let expr = t["expr"].as_str().expect("expr");
            check_expr(expr, &metrics, title);
            queries += 1;
        }
    }
    assert!(queries >= 20, "only {queries} queries");
    // The panels the dashboard promises, by the metric they plot.
    for needed in [
        "shadowtap_mirrored_requests_total",
        "shadowtap_mirror_skipped_total",
        "shadowtap_agreement_ratio",
        "shadowtap_discrepancies_total",
        "shadowtap_latency_seconds_bucket",
        "shadowtap_errors_total",
        "shadowtap_circuit_state",
        "shadowtap_capture_dropped_total",
        "shadowtap_flows_active",
        "shadowtap_reassembly_bytes",
        "shadowtap_resource_cpu_seconds_total",
        "shadowtap_resource_memory_bytes",
        "shadowtap_replays_in_flight",
        "shadowtap_production_in_flight",
        "shadowtap_replay_queue_length",
        "shadowtap_replay_queue_wait_seconds_bucket",
        "shadowtap_grpc_status_total",
        // Traffic per protocol (JSON-escaped quotes).
        r#"sum by (protocol) (rate(shadowtap_exchanges_total{instance=~\"$instance\"}"#,
        // Agreement per row as well as per request (JSON-escaped quotes).
        r#"shadowtap_agreement_ratio{instance=~\"$instance\",unit=\"row\"}"#,
        // Shadow availability counts the requests the open breaker kept from the shadow.
        r#"shadowtap_mirror_skipped_total{instance=~\"$instance\",reason=\"circuit_open\"}"#,
    ] {
        assert!(text.contains(needed), "no panel plots {needed}");
    }
    // A missing target must not read as a green 0.
    assert!(
        !text.contains("vector(0)"),
        "a panel hides a missing target"
    );
}

#[test]
fn prometheus_alert_rules_are_well_formed_and_match_the_daemon() {
    let text = workspace_file("deploy/prometheus/shadowtap-alerts.yml");
    let metrics = registered_metrics();
    check_names_exist(&text, &metrics, "shadowtap-alerts.yml");
    let doc = yaml_subset::parse(&text).expect("alert rules are YAML (in the subset we write)");
    let groups = doc["groups"].as_array().expect("groups");
    let mut alerts = BTreeSet::new();
    for group in groups {
        assert!(group["name"].is_string(), "group name");
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            assert!(alerts.insert(name.to_string()), "{name}: duplicate");
            let expr = rule["expr"].as_str().expect("expr");
            check_expr(expr, &metrics, name);
            let r#for = rule["for"].as_str().expect("for");
            assert!(
                r#for.len() > 1
                    && r#for[..r#for.len() - 1].chars().all(|c| c.is_ascii_digit())
                    && r#for.ends_with(['s', 'm', 'h']),
                "{name}: for `{for}`"
            );
            let severity = rule["labels"]["severity"].as_str().expect("severity");
            assert!(
                ["info", "warning", "critical"].contains(&severity),
                "{name}"
            );
            for key in ["summary", "description"] {
                let a = rule["annotations"][key].as_str().expect(key);
                assert!(!a.is_empty(), "{name}: {key}");
                assert_eq!(
                    a.matches("{{").count(),
                    a.matches("}}").count(),
                    "{name}: {key} template braces"
                );
            }
        }
    }
    // One alert per condition the rules promise, found by what its expression watches.
    let exprs: Vec<String> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect();
    for watched in [
        "shadowtap_capture_dropped_total",
        "shadowtap_mirror_skipped_total",
        "shadowtap_circuit_state",
        "shadowtap_errors_total{model=\"shadow\"",
        "shadowtap_grpc_status_total{model=\"shadow\"",
        "shadowtap_agreement_ratio{unit=\"request\"}",
        "up{job=\"shadowtap\"} == 0",
        "absent(up{job=\"shadowtap\"})",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(watched)),
            "no alert watches {watched}"
        );
    }
    assert!(
        !exprs.iter().any(|e| e.contains("vector(0)")),
        "an alert hides a missing target"
    );
    // The shadow's error rate keeps a denominator once the breaker stops replays: circuit_open
    // skips count as failures and as requests meant for the shadow.
    let shadow_errors = exprs
        .iter()
        .find(|e| e.contains("shadowtap_errors_total{model=\"shadow\""))
        .expect("a shadow error-rate alert");
    assert_eq!(
        shadow_errors
            .matches("shadowtap_mirror_skipped_total{reason=\"circuit_open\"}")
            .count(),
        2,
        "{shadow_errors}"
    );
}

#[test]
fn example_prometheus_config_scrapes_the_job_the_alerts_expect() {
    let doc = yaml_subset::parse(&workspace_file("deploy/prometheus/prometheus.example.yml"))
        .expect("example config is YAML");
    assert_eq!(doc["rule_files"][0], "shadowtap-alerts.yml");
    assert_eq!(doc["scrape_configs"][0]["job_name"], "shadowtap");
    assert_eq!(
        doc["scrape_configs"][0]["static_configs"][0]["targets"][0],
        "127.0.0.1:9464"
    );
}

#[test]
fn flagger_and_argo_gates_query_the_verdict_the_daemon_exports() {
    let metrics = registered_metrics();
    assert!(metrics.contains_key("shadowtap_verdict"), "{metrics:?}");
    let flagger_text = workspace_file("deploy/gates/flagger-metric-template.yaml");
    let flagger = yaml_subset::parse(&flagger_text).expect("Flagger template is YAML");
    assert_eq!(flagger["kind"], "MetricTemplate");
    assert_eq!(flagger["apiVersion"], "flagger.app/v1beta1");
    let query = flagger["spec"]["query"].as_str().expect("a query");
    check_expr(query, &metrics, "flagger query");
    assert!(query.contains("decision=\"PROMOTE\""), "{query}");
    let argo_text = workspace_file("deploy/gates/argo-analysis-template.yaml");
    let argo = yaml_subset::parse(&argo_text).expect("Argo template is YAML");
    assert_eq!(argo["kind"], "AnalysisTemplate");
    let gates = argo["spec"]["metrics"].as_array().expect("metrics");
    assert_eq!(gates.len(), 2);
    for gate in gates {
        let query = gate["provider"]["prometheus"]["query"]
            .as_str()
            .expect("a Prometheus query");
        check_expr(query, &metrics, "argo query");
        assert!(gate["successCondition"].is_string(), "{gate}");
    }
    check_names_exist(&flagger_text, &metrics, "flagger-metric-template.yaml");
    check_names_exist(&argo_text, &metrics, "argo-analysis-template.yaml");
}
