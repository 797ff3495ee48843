//! [`ConfigError`]: every problem of a configuration at once, each naming its key and where the
//! value came from (file line:column, flag or default).

use super::raw::{ConfigFile, Origin};
use std::fmt;
use std::path::PathBuf;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file `{}`; check the path given to --config", path.display())]
    Read {
        /// The path given.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// The file or the flags have problems: all of them, in file order, then flags, then
    /// missing values.
    #[error("{}", ProblemList(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The problems found (empty when the file could not be read).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid(problems) => problems,
        }
    }
}

/// One thing wrong with the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The key, `shadow.url`; `None` for TOML syntax errors.
    pub key: Option<String>,
    /// Where the offending value came from.
    pub location: Location,
    /// What is wrong and what to do about it.
    pub message: String,
}

/// Where a value came from, as shown to the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// The config file, 1-based line and column (in characters).
    File {
        /// The config file.
        path: PathBuf,
        /// Line, from 1.
        line: usize,
        /// Column, from 1.
        column: usize,
    },
    /// A command-line flag.
    Flag(&'static str),
    /// The built-in default (the key was not given).
    Default,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::File { path, line, column } => {
                write!(f, "{}:{line}:{column}: ", path.display())?
            }
            Location::Flag(flag) => write!(f, "{flag}: ")?,
            Location::Default => {}
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "invalid configuration, {n} problem{}; fix {} and check again with `shadowd check-config`:",
            if n == 1 { "" } else { "s" },
            if n == 1 { "it" } else { "them all" },
        )?;
        for problem in self.0 {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// A problem before it is located: the key and the value's [`Origin`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Finding {
    pub key: Option<String>,
    pub origin: Origin,
    pub message: String,
}

impl Finding {
    pub fn new(key: impl Into<String>, origin: &Origin, message: impl Into<String>) -> Self {
        Finding {
            key: Some(key.into()),
            origin: origin.clone(),
            message: message.into(),
        }
    }
}

/// Locates and orders findings: file problems by position, then flags, then defaults.
pub(super) fn located(mut findings: Vec<Finding>, file: Option<&ConfigFile>) -> ConfigError {
    findings.sort_by_key(|f| match &f.origin {
        Origin::File(span) => (0, span.start),
        Origin::Flag(_) => (1, 0),
        Origin::Default => (2, 0),
    });
    let problems = findings
        .into_iter()
        .map(|f| Problem {
            key: f.key,
            location: match (f.origin, file) {
                (Origin::File(span), Some(file)) => {
                    let (line, column) = line_column(&file.text, span.start);
                    Location::File {
                        path: file.path.clone(),
                        line,
                        column,
                    }
                }
                (Origin::File(_), None) | (Origin::Default, _) => Location::Default,
                (Origin::Flag(flag), _) => Location::Flag(flag),
            },
            message: f.message,
        })
        .collect();
    ConfigError::Invalid(problems)
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
