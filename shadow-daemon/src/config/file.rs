//! Reading a TOML config file into a [`RawConfig`], collecting every unreadable key.
//!
//! Serde stops at the first unknown key or wrong type. To report them all, the document is
//! parsed once into a spanned table; each deserialization error's span names the offending
//! entry, which is recorded and removed before trying again, until the rest deserializes.
//! Syntax errors (all of them, from the recovering parser) end reading at once.

use super::error::{ConfigError, Finding, located};
use super::raw::{ConfigFile, Origin, RawConfig};
use serde::Deserialize;
use std::ops::Range;
use std::path::Path;
use toml::de::{DeTable, DeValue};

impl RawConfig {
    /// Reads the TOML file at `path`, or the defaults when there is none.
    pub fn load(path: Option<&Path>) -> Result<RawConfig, ConfigError> {
        match path {
            None => Ok(RawConfig::default()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                RawConfig::from_toml(&text, p)
            }
        }
    }

    /// Parses a TOML document (every key optional). Unknown keys and values of the wrong type
    /// are kept as problems for `Config::try_from`, which reports them with the rest; syntax
    /// errors fail here, all of them at once.
    pub fn from_toml(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
        let mut file = ConfigFile {
            path: path.to_path_buf(),
            text: text.to_string(),
            rejected: Vec::new(),
        };
        let (mut table, syntax) = DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            let findings = syntax.iter().map(syntax_finding).collect();
            return Err(located(findings, Some(&file)));
        }
        // Each round removes one entry, so this ends.
        loop {
            match RawConfig::deserialize(toml::de::Deserializer::from(table.clone())) {
                Ok(mut raw) => {
                    raw.file = Some(file);
                    return Ok(raw);
                }
                Err(e) => {
                    let removed = e
                        .span()
                        .and_then(|span| remove_entry(table.get_mut(), &span));
                    match removed {
                        Some(key) => file.rejected.push(Finding {
                            key: Some(key),
                            origin: e.span().map_or(Origin::Default, Origin::File),
                            message: format!("{}; fix or remove it", e.message()),
                        }),
                        None => {
                            file.rejected.push(syntax_finding(&e));
                            let findings = std::mem::take(&mut file.rejected);
                            return Err(located(findings, Some(&file)));
                        }
                    }
                }
            }
        }
    }
}

fn syntax_finding(e: &toml::de::Error) -> Finding {
    Finding {
        key: None,
        origin: e.span().map_or(Origin::Default, Origin::File),
        message: format!("{} (TOML syntax)", e.message().trim_end()),
    }
}

/// Removes the innermost table entry whose key or value covers `span`; returns its dotted key.
fn remove_entry(table: &mut DeTable<'_>, span: &Range<usize>) -> Option<String> {
    let covers = |r: Range<usize>| r.start <= span.start && span.end <= r.end;
    let mut hit = None;
    for (key, value) in table.iter_mut() {
        let (key_span, value_span) = (key.span(), value.span());
        if let DeValue::Table(inner) = value.get_mut()
            && let Some(path) = remove_entry(inner, span)
        {
            return Some(format!("{}.{path}", key.get_ref()));
        }
        if covers(key_span) || covers(value_span) {
            hit = Some(key.clone());
            break;
        }
    }
    let key = hit?;
    table.remove(&key);
    Some(key.into_inner().into_owned())
}
