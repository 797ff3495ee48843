//! Daemon configuration, parsed once into the types the components use.
//!
//! ```text
//! TOML file ──RawConfig::load──▶ RawConfig ◀── flags (commands::run)
//!                                    │ Config::try_from: every problem, with key and line:column
//!                                    ▼
//!                                  Config ──▶ ShadowClient, RequestFilter, Comparer, reassembly …
//! ```
//!
//! [`RawConfig`] is the TOML schema as written (every key optional, `deny_unknown_fields`); each
//! value remembers where it came from (file span, flag or default). [`Config`] holds checked,
//! typed values: a [`ShadowUrl`], [`MethodSet`]s, header names and values, `Duration`s, non-zero
//! limits, the comparer's preset and diff options and the reassembly limits. A bad configuration
//! is one [`ConfigError`] listing every problem. `deploy/shadowtap.example.toml` documents every
//! key.

mod error;
mod file;
mod parse;
mod print;
mod proto;
pub mod raw;
pub mod reload;
mod typed;

pub use error::{ConfigError, Location, Problem, line_column};
pub use raw::{Origin, RawConfig, Setting};
pub use reload::ConfigChange;
pub use shadow_core::compare::PresetName;
pub use typed::{
    AcceptEncoding, AdminConfig, CaptureConfig, CircuitBreakerConfig, CompareConfig, Config,
    DiscrepancyLogConfig, HeaderRewrite, HostHeader, MethodSet, MirrorConfig, Pacing, RateLimit,
    ResourceTarget, ResourcesConfig, Rewrite, RollbackCommand, RollbackSettings, ShadowConfig,
    ShadowUrl,
};

/// A checked config for unit tests: production port 8080, shadow at 127.0.0.1:8081, plus
/// `extra` TOML (sections other than `[capture]` and `[shadow]`).
#[cfg(test)]
pub(crate) fn test_config(extra: &str) -> Config {
    let text = format!(
        "[capture]\ninterface = \"lo\"\nports = [8080]\n[shadow]\nurl = \"http://127.0.0.1:8081\"\n{extra}"
    );
    match Config::from_toml(&text, std::path::Path::new("test.toml")) {
        Ok(c) => c,
        Err(e) => panic!("test config is invalid: {e}"),
    }
}

#[cfg(test)]
mod tests;
