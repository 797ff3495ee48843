//! What a reload (SIGHUP) may change while the tap stays attached, and what needs a restart.
//!
//! Both configurations are written back to their TOML schema ([`RawConfig::from`]) and compared
//! key by key: a reload is accepted when every changed key is one of [`RELOADABLE`], and refused
//! otherwise, naming the keys. Interface, ports and capture kind would need a new attach, and
//! shadowd dropped the capabilities an attach needs once the first one succeeded; other keys
//! size or connect parts built once at start (queue, shadow client, admin server, state file,
//! evaluation rules) and changing them in place would lose aggregates or connections.

use super::{Config, RawConfig};
use std::collections::BTreeMap;

/// Keys (or whole tables, ending in `.`) a reload applies in place.
pub const RELOADABLE: &[&str] = &[
    "mirror.methods",
    "mirror.deny_methods",
    "mirror.paths",
    "mirror.deny_paths",
    "mirror.sample_percent",
    "mirror.sample_seed",
    "mirror.rate_limit",
    "mirror.burst",
    "compare.",
    "criteria.",
    "discrepancy_log.redact_headers",
    "discrepancy_log.redact_fields",
    "discrepancy_log.body_max_bytes",
];

/// Keys only a new attach could apply.
const NEEDS_ATTACH: &[&str] = &["capture.interface", "capture.ports", "capture.kind"];

/// What changed between the running configuration and the new one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigChange {
    /// Changed keys a reload applies.
    pub applied: Vec<String>,
    /// Changed keys that need a restart.
    pub need_restart: Vec<String>,
}

impl ConfigChange {
    /// The keys that differ between `old` and `new`, sorted into the two lists.
    pub fn between(old: &Config, new: &Config) -> ConfigChange {
        let (old, new) = (flatten(old), flatten(new));
        let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
        keys.sort();
        keys.dedup();
        let mut change = ConfigChange::default();
        for key in keys {
            if old.get(key) == new.get(key) {
                continue;
            }
            if is_reloadable(key) {
                change.applied.push(key.clone());
            } else {
                change.need_restart.push(key.clone());
            }
        }
        change
    }

    /// Why the reload is refused (`None`: it can be applied).
    pub fn refusal(&self) -> Option<String> {
        if self.need_restart.is_empty() {
            return None;
        }
        let attach: Vec<&str> = self
            .need_restart
            .iter()
            .map(String::as_str)
            .filter(|k| NEEDS_ATTACH.iter().any(|a| k.starts_with(a)))
            .collect();
        let why = if attach.is_empty() {
            "these parts are built once at start".to_string()
        } else {
            format!(
                "{} need a new attach of the tap, and shadowd dropped the capabilities an \
                 attach needs once the tap was attached",
                attach.join(", ")
            )
        };
        Some(format!(
            "{} cannot change while shadowd runs ({why}): restart it (`systemctl restart \
             shadowtap`) to apply them; the running configuration stays in force. A reload \
             changes only {}",
            self.need_restart.join(", "),
            RELOADABLE.join(", ")
        ))
    }
}

fn is_reloadable(key: &str) -> bool {
    RELOADABLE.iter().any(|r| {
        if r.ends_with('.') {
            key.starts_with(r)
        } else {
            key == *r || key.starts_with(&format!("{r}."))
        }
    })
}

/// Every leaf key of the config's TOML form (`table.key` → its value as TOML text); arrays
/// are leaves.
fn flatten(config: &Config) -> BTreeMap<String, String> {
    let mut keys = BTreeMap::new();
    if let Ok(value) = toml::Value::try_from(RawConfig::from(config)) {
        walk("", &value, &mut keys);
    }
    keys
}

fn walk(prefix: &str, value: &toml::Value, keys: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(table) => {
            for (name, v) in table {
                let key = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                walk(&key, v, keys);
            }
        }
        leaf => {
            keys.insert(prefix.to_string(), leaf.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_config;

    #[test]
    fn sampling_filters_compare_criteria_and_redaction_are_applied() {
        let old = test_config("[mirror]\nsample_percent = 100.0\n");
        let new = test_config(
            "[mirror]\nsample_percent = 5.0\ndeny_paths = [\"/x\"]\n[compare]\npreset = \"mlflow\"\n\
             [discrepancy_log]\nredact_fields = [\"/user\"]\n[criteria]\nmin_samples = 10\n",
        );
        let change = ConfigChange::between(&old, &new);
        assert!(change.need_restart.is_empty(), "{change:?}");
        for key in [
            "mirror.sample_percent",
            "mirror.deny_paths",
            "compare.preset",
            "discrepancy_log.redact_fields",
            "criteria.min_samples",
        ] {
            assert!(change.applied.iter().any(|k| k == key), "{key}: {change:?}");
        }
        assert_eq!(change.refusal(), None);
        assert_eq!(ConfigChange::between(&old, &old), ConfigChange::default());
    }

    #[test]
    fn interface_ports_and_the_rest_need_a_restart_and_say_so() {
        let old = test_config("");
        let text = "[capture]\ninterface = \"eth0\"\nports = [9090]\n[shadow]\n\
                    url = \"http://127.0.0.1:8081\"\ntimeout_ms = 50\n[mirror]\nsample_percent = 1.0\n";
        let new = Config::from_toml(text, std::path::Path::new("t.toml")).unwrap();
        let change = ConfigChange::between(&old, &new);
        assert_eq!(
            change.need_restart,
            ["capture.interface", "capture.ports", "shadow.timeout_ms"],
            "{change:?}"
        );
        assert_eq!(change.applied, ["mirror.sample_percent"]);
        let why = change.refusal().unwrap();
        assert!(
            why.contains("capture.interface, capture.ports need a new attach"),
            "{why}"
        );
        assert!(why.contains("systemctl restart shadowtap"), "{why}");
    }
}
