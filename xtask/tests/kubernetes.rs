//! The Kubernetes manifests in `deploy/kubernetes/` parse as the Kubernetes API types
//! (`k8s-openapi`) with no field the types do not know (a typo would be dropped silently by
//! the API server's lenient decoding, so every manifest must read back identical after a round
//! trip through its type), and hold together: the DaemonSet runs unprivileged on the host
//! network with only the tap's capabilities, mounts the ConfigMap key its `--config` names and
//! the token Secret its config names, the Service and ServiceMonitor select its pods, and the
//! PrometheusRule carries `deploy/prometheus/shadowtap-alerts.yml` verbatim.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Service, Volume};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .join("deploy")
        .join(path)
}

fn read(path: &str) -> String {
    let file = deploy(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The manifest as untyped YAML.
fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The manifest as its API type; panics if it has a field the type does not know (or a value
/// of the wrong shape), found by reading it back.
fn typed<T: DeserializeOwned + Serialize>(path: &str) -> T {
    let original = yaml(path);
    let object: T = serde_yaml::from_value(original.clone())
        .unwrap_or_else(|e| panic!("{path} is not a valid {}: {e}", std::any::type_name::<T>()));
    let back = serde_yaml::to_value(&object).expect("serialize back");
    assert_eq!(
        strip_nulls(back),
        strip_nulls(original),
        "{path}: fields the API type does not know (or of the wrong type) are lost in a round trip"
    );
    object
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Mapping(m) => Value::Mapping(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Sequence(s) => Value::Sequence(s.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

fn pod_spec(ds: &DaemonSet) -> &PodSpec {
    ds.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod template")
}

fn shadowd(ds: &DaemonSet) -> &Container {
    let containers = &pod_spec(ds).containers;
    assert_eq!(containers.len(), 1, "one container: shadowd");
    &containers[0]
}

fn volume<'a>(spec: &'a PodSpec, container: &Container, path: &Path) -> (&'a Volume, PathBuf) {
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| path.starts_with(&m.mount_path))
        .max_by_key(|m| m.mount_path.len())
        .unwrap_or_else(|| panic!("nothing mounted at {}", path.display()));
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .unwrap_or_else(|| panic!("no volume {}", mount.name));
    let rest = path
        .strip_prefix(&mount.mount_path)
        .expect("under the mount")
        .to_path_buf();
    (volume, rest)
}

/// The TOML of the ConfigMap's `shadowtap.toml`, as `key = "value"` pairs per `[section]`
/// (enough to read the paths and the address the manifests must agree with).
fn config_values(config: &ConfigMap, key: &str) -> BTreeMap<String, String> {
    let text = config
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .unwrap_or_else(|| panic!("the ConfigMap has no key {key}"));
    let mut section = String::new();
    let mut values = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((k, v)) = line.split_once(" = ")
            && !line.starts_with('#')
        {
            values.insert(format!("{section}.{k}"), v.trim_matches('"').to_string());
        }
    }
    values
}

#[test]
fn the_daemonset_is_unprivileged_on_the_host_network_with_only_the_tap_capabilities() {
    let ds: DaemonSet = typed("kubernetes/daemonset.yaml");
    let spec = pod_spec(&ds);
    assert_eq!(
        spec.host_network,
        Some(true),
        "the node's network namespace"
    );
    assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
    assert_ne!(spec.host_pid, Some(true));
    assert_ne!(spec.host_ipc, Some(true));
    let c = shadowd(&ds);
    let sc = c.security_context.as_ref().expect("a securityContext");
    assert_eq!(sc.privileged, Some(false), "never privileged");
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    let mut add = caps.add.clone().unwrap_or_default();
    add.sort();
    assert_eq!(
        add,
        ["BPF", "NET_ADMIN", "PERFMON"],
        "eBPF capture's, no more"
    );
    for (name, v) in [
        ("hostPath", "/"),
        ("hostPath", "/proc"),
        ("hostPath", "/dev"),
    ] {
        assert!(
            !spec
                .volumes
                .iter()
                .flatten()
                .any(|vol| vol.host_path.as_ref().is_some_and(|h| h.path == v)),
            "{name} {v} mounted"
        );
    }
    // The pods carry the labels the DaemonSet selects.
    let selector = ds
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .expect("matchLabels");
    let labels = ds
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone();
    for (k, v) in &selector {
        assert_eq!(labels.as_ref().and_then(|l| l.get(k)), Some(v), "{k}");
    }
    // Probes on /healthz, the admin endpoint that needs no token.
    for probe in [&c.readiness_probe, &c.liveness_probe] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("an HTTP probe");
        assert_eq!(get.path.as_deref(), Some("/healthz"));
    }
}

#[test]
fn the_daemonset_mounts_what_its_arguments_and_config_name() {
    let ds: DaemonSet = typed("kubernetes/daemonset.yaml");
    let config: ConfigMap = typed("kubernetes/configmap.yaml");
    let (spec, c) = (pod_spec(&ds), shadowd(&ds));
    let args = c.args.clone().unwrap_or_default();
    assert_eq!(args.first().map(String::as_str), Some("run"), "{args:?}");
    let path = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
        .expect("run --config FILE");
    // --config names a key of the ConfigMap, mounted where it says.
    let (vol, key) = volume(spec, c, Path::new(path));
    let source = vol
        .config_map
        .as_ref()
        .expect("--config is on the ConfigMap volume");
    assert_eq!(Some(&source.name), config.metadata.name.as_ref());
    let key = key.to_str().unwrap();
    let values = config_values(&config, key);
    assert_eq!(
        values["capture.kind"], "ebpf",
        "the capabilities are eBPF's"
    );
    // The admin token file is on a Secret volume; the ServiceMonitor scrapes with that Secret.
    let token = Path::new(&values["admin.token_file"]);
    let (vol, key) = volume(spec, c, token);
    let secret = vol
        .secret
        .as_ref()
        .expect("the token file is on a Secret volume");
    let monitor = yaml("kubernetes/servicemonitor.yaml");
    let credentials = &monitor["spec"]["endpoints"][0]["authorization"]["credentials"];
    assert_eq!(credentials["name"].as_str(), secret.secret_name.as_deref());
    assert_eq!(credentials["key"].as_str(), key.to_str());
    // Token readable by its owner only, config written by no one (shadowd refuses otherwise).
    assert_eq!(secret.default_mode.map(|m| m & 0o077), Some(0));
    assert_eq!(source.default_mode.map(|m| m & 0o222), Some(0));
    // The discrepancy log and the state file go to a host directory: never world-writable
    // like an emptyDir, which shadowd refuses to write into.
    for file in ["discrepancy_log.path", "state.path"] {
        let (vol, _) = volume(spec, c, Path::new(&values[file]));
        assert!(vol.host_path.is_some() && vol.empty_dir.is_none(), "{file}");
    }
    // The admin address listens on the container port the probes and the Service use.
    let port = values["admin.addr"]
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<i32>()
        .unwrap();
    let metrics = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .expect("a `metrics` port");
    assert_eq!(metrics.container_port, port);
}

#[test]
fn the_service_and_servicemonitor_select_the_daemonset_pods_as_job_shadowtap() {
    let ds: DaemonSet = typed("kubernetes/daemonset.yaml");
    let service: Service = typed("kubernetes/service.yaml");
    let pod_labels = ds.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    // The scrape job is named after the Service: the alert rules expect job="shadowtap".
    assert_eq!(service.metadata.name.as_deref(), Some("shadowtap"));
    let spec = service.spec.expect("a Service spec");
    assert_eq!(
        spec.cluster_ip.as_deref(),
        Some("None"),
        "headless: every pod"
    );
    for (k, v) in spec.selector.expect("a selector") {
        assert_eq!(pod_labels.get(&k), Some(&v), "{k}");
    }
    let port = &spec.ports.expect("ports")[0];
    assert_eq!(port.name.as_deref(), Some("metrics"));
    let monitor = yaml("kubernetes/servicemonitor.yaml");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["kind"], "ServiceMonitor");
    let service_labels = service.metadata.labels.unwrap();
    let wanted = monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels");
    for (k, v) in wanted {
        assert_eq!(
            service_labels.get(k.as_str().unwrap()).map(String::as_str),
            v.as_str()
        );
    }
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
}

#[test]
fn the_prometheusrule_carries_the_alert_rules_verbatim() {
    let rule = yaml("kubernetes/prometheusrule.yaml");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    let alerts = yaml("prometheus/shadowtap-alerts.yml");
    assert!(
        alerts["groups"]
            .as_sequence()
            .is_some_and(|g| !g.is_empty())
    );
    assert_eq!(
        rule["spec"]["groups"], alerts["groups"],
        "deploy/kubernetes/prometheusrule.yaml differs from deploy/prometheus/shadowtap-alerts.yml: \
         copy that file's `groups:` under `spec:`, indented by two spaces"
    );
}

#[test]
fn the_kustomization_lists_every_manifest_in_one_namespace() {
    let k = yaml("kubernetes/kustomization.yaml");
    let listed: Vec<&str> = k["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let mut files: Vec<String> = std::fs::read_dir(deploy("kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    files.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, files);
    for file in listed {
        let m = yaml(&format!("kubernetes/{file}"));
        assert_eq!(m["metadata"]["namespace"], k["namespace"], "{file}");
        assert_eq!(
            m["metadata"]["labels"]["app.kubernetes.io/name"], "shadowtap",
            "{file}"
        );
    }
}
