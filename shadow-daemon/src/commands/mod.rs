//! One module per `shadowd` subcommand (its flags and its `main`), and how their outcome maps
//! to an exit code. The command line that dispatches to them is [`crate::cli`].

pub mod admin_client;
pub mod check_config;
pub mod inspect;
pub mod pipeline;
pub mod record;
pub mod replay;
pub mod report;
pub mod run;
pub mod top;
pub mod verdict;

use crate::config::ConfigError;
use crate::error::{CaptureError, ExitClass};
use crate::security::SecurityError;
use shadow_core::pcap::PcapError;
use std::error::Error;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: runtime failure.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code: bad flags, configuration or input file.
pub const EXIT_USAGE: u8 = 2;
/// Exit code of `verdict`: HOLD (nothing failed, not everything passed yet).
pub const EXIT_HOLD: u8 = 3;
/// Exit code of `verdict`: REJECT (a criterion failed).
pub const EXIT_REJECT: u8 = 4;

/// A flag problem, phrased for the user: exits with [`EXIT_USAGE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl ExitClass for UsageError {
    fn is_usage(&self) -> bool {
        true
    }
}

/// An unreadable or invalid config file is the user's to fix.
impl ExitClass for ConfigError {
    fn is_usage(&self) -> bool {
        true
    }
}

/// A file shadowd refuses for its permissions, or a bad token file: the user's to fix.
impl ExitClass for SecurityError {
    fn is_usage(&self) -> bool {
        true
    }
}

/// What a subcommand returns: its exit code, or an error (usage errors exit 2, others 1).
pub type CommandResult = anyhow::Result<u8>;

/// The exit code of a failed command: [`EXIT_USAGE`] when any error in the chain says the
/// user's input caused it, else [`EXIT_RUNTIME`].
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let usage = err
        .chain()
        .any(|e| exit_class(e).is_some_and(ExitClass::is_usage));
    if usage { EXIT_USAGE } else { EXIT_RUNTIME }
}

/// The daemon's error types that can end a command (the only list of them: a type that can
/// reach `main` and is missing here exits with [`EXIT_RUNTIME`]).
fn exit_class<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a dyn ExitClass> {
    fn class<'a, T: ExitClass + Error + 'static>(
        err: &'a (dyn Error + 'static),
    ) -> Option<&'a dyn ExitClass> {
        err.downcast_ref::<T>().map(|e| e as &dyn ExitClass)
    }
    class::<UsageError>(err)
        .or_else(|| class::<CaptureError>(err))
        .or_else(|| class::<PcapError>(err))
        .or_else(|| class::<ConfigError>(err))
        .or_else(|| class::<SecurityError>(err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn the_error_decides_its_exit_code() {
        let unknown = CaptureError::UnknownInterface {
            name: "nosuch0".into(),
            source: io::Error::from_raw_os_error(libc::ENODEV),
        };
        assert_eq!(exit_code(&unknown.into()), EXIT_USAGE);
        let refused = CaptureError::NotPermitted {
            source: Box::new(io::Error::from_raw_os_error(libc::EPERM)),
        };
        assert_eq!(exit_code(&refused.into()), EXIT_RUNTIME);
        let flag = anyhow::Error::new(UsageError("--count must be at least 1".into()));
        assert_eq!(exit_code(&flag.context("record")), EXIT_USAGE);
        let missing = PcapError::Open {
            path: "x.pcap".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(exit_code(&missing.into()), EXIT_USAGE);
        let writable = SecurityError::WritableByOthers {
            what: "config file",
            path: "/etc/shadowtap/shadowtap.toml".into(),
            mode: 0o666,
        };
        assert_eq!(exit_code(&writable.into()), EXIT_USAGE);
        assert_eq!(exit_code(&anyhow::anyhow!("unrelated")), EXIT_RUNTIME);
    }
}
