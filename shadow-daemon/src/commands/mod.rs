//! One module per `shadowd` subcommand: its flags and its `main`; [`crate::cli`] dispatches to
//! them.

pub mod check_config;
pub mod inspect;
pub mod record;
pub mod run;

use std::process::ExitCode;

/// Exit code: success, or verdict "promote".
pub const EXIT_OK: u8 = 0;
/// Exit code: runtime failure.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code: bad flags or configuration.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: verdict "hold" (not enough evidence yet).
pub const EXIT_HOLD: u8 = 3;
/// Exit code: verdict "reject".
pub const EXIT_REJECT: u8 = 4;

/// An error caused by the user's input (flags, config file): exits with [`EXIT_USAGE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// What a subcommand returns: its exit code, or an error (usage errors exit 2, others 1).
pub type CommandResult = anyhow::Result<u8>;

/// The exit code of a subcommand's outcome (printing the error, if any).
pub fn exit_code(result: CommandResult) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("shadowd: error: {err:#}");
            let usage = err.chain().any(|e| {
                e.is::<UsageError>()
                    || e.downcast_ref::<crate::error::CaptureError>()
                        .is_some_and(|c| {
                            matches!(
                                c,
                                crate::error::CaptureError::UnknownInterface(_)
                                    | crate::error::CaptureError::InvalidPort(_)
                                    | crate::error::CaptureError::TooManyPorts(_)
                            )
                        })
            });
            ExitCode::from(if usage { EXIT_USAGE } else { EXIT_RUNTIME })
        }
    }
}

/// Logs to stderr, filtered by `filter` (tracing `EnvFilter` syntax; `info` if invalid).
pub fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
