//! Command line of `shadowd` (clap derive) and its dispatch. Each subcommand's flags live beside
//! its code in [`crate::commands`]; this module depends on them, never the other way round.

use crate::commands::{self, check_config, inspect, record, replay, report, run, top, verdict};
use crate::logging::{self, LogFormat};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use sha2::{Digest, Sha256};
use std::process::ExitCode;

/// shadowtap: shadow-test a new model version on real production traffic, with zero changes to
/// the application. The production model server is tapped with eBPF; its requests are replayed
/// to the shadow model and the answers compared.
///
/// Exit codes: 0 success, 1 runtime error, 2 usage, configuration or input-file error;
/// `verdict` also exits 3 for HOLD and 4 for REJECT (0 is PROMOTE).
#[derive(Debug, Parser)]
#[command(name = "shadowd", version, propagate_version = true)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info`, `debug`, `shadow_daemon=trace`;
    /// `info,shadowtap::ebpf=debug` adds the kernel-side trace of the eBPF tap (one line per
    /// TCP packet on the interface: for when a capture sees nothing).
    #[arg(long, global = true, env = "SHADOWD_LOG", default_value = "info")]
    pub log: String,

    /// Log line format: auto (human-readable; under journald without colours or timestamps),
    /// plain (human-readable, colours only on a terminal) or json (one object per line).
    #[arg(
        long,
        global = true,
        env = "SHADOWD_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Auto
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tap the production port and write every captured TCP segment to a pcap file.
    Record(record::RecordArgs),
    /// Rebuild HTTP exchanges from a pcap/pcapng file and print them as JSON lines.
    Inspect(inspect::InspectArgs),
    /// Run the daemon: tap, replay to the shadow, compare, serve metrics.
    Run(run::RunArgs),
    /// Shadow-test a recorded capture (pcap/pcapng) offline: replay its requests to the shadow,
    /// compare with the recorded answers, print the summary (exit code as `verdict` with
    /// criteria).
    Replay(replay::ReplayArgs),
    /// Validate a config file (and flags) as `run` would and print the effective config.
    CheckConfig(check_config::CheckConfigArgs),
    /// Judge a running daemon's summary against success criteria: print each criterion and
    /// PROMOTE (exit 0), HOLD (exit 3) or REJECT (exit 4).
    Verdict(verdict::VerdictArgs),
    /// Watch a running daemon live in the terminal (read-only): requests per second, agreement
    /// and accuracy, latency and errors per model, the breaker, drops, the last discrepancies.
    Top(top::TopArgs),
    /// Write one self-contained HTML report (verdict, charts, discrepancies) of a running
    /// daemon (`--from`) or of a state file (`--state`).
    Report(report::ReportArgs),
}

/// What `shadowd --version` prints after the name: the version, the git commit it was built
/// from (`unknown` outside a git checkout) and the SHA-256 of the eBPF object embedded in this
/// binary (the program that runs in the kernel).
pub fn version_text() -> String {
    let object = crate::capture::ebpf::EBPF_OBJECT;
    let ebpf = if object.is_empty() {
        "no eBPF object embedded (built with AYA_BUILD_SKIP)".to_string()
    } else {
        let digest = Sha256::digest(object);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("eBPF object sha256 {hex} ({} bytes)", object.len())
    };
    format!(
        "{} (commit {}; {ebpf})",
        env!("CARGO_PKG_VERSION"),
        env!("SHADOWD_GIT_COMMIT")
    )
}

impl Cli {
    /// Parses the process's arguments (exits on `--help`, `--version` or a usage error);
    /// `--version` prints [`version_text`].
    pub fn parse_args() -> Cli {
        let version: &'static str = Box::leak(version_text().into_boxed_str());
        let matches = Cli::command().version(version).get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    /// Runs the parsed command line; an error is printed with its causes and mapped to its
    /// exit code ([`commands::exit_code`]).
    pub fn run(self) -> ExitCode {
        logging::init(&self.log, self.log_format);
        // A JSON log stays JSON to its last line.
        let json = self.log_format == LogFormat::Json;
        let result = match self.command {
            Command::Record(args) => record::main(args),
            Command::Inspect(args) => inspect::main(args),
            Command::Run(args) => run::main(args),
            Command::Replay(args) => replay::main(args),
            Command::CheckConfig(args) => check_config::main(args),
            Command::Verdict(args) => verdict::main(args),
            Command::Top(args) => top::main(args),
            Command::Report(args) => report::main(args),
        };
        match result {
            Ok(code) => ExitCode::from(code),
            Err(err) => {
                if json {
                    tracing::error!("shadowd: error: {err:#}");
                } else {
                    eprintln!("shadowd: error: {err:#}");
                }
                ExitCode::from(commands::exit_code(&err))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_names_the_commit_and_the_embedded_object() {
        let text = version_text();
        assert!(text.starts_with(env!("CARGO_PKG_VERSION")), "{text}");
        assert!(text.contains("(commit "), "{text}");
        let object = crate::capture::ebpf::EBPF_OBJECT;
        if object.is_empty() {
            assert!(text.contains("no eBPF object embedded"), "{text}");
        } else {
            let hex = text
                .split("sha256 ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .unwrap_or_default();
            assert_eq!(hex.len(), 64, "{text}");
            assert!(
                text.contains(&format!("({} bytes)", object.len())),
                "{text}"
            );
        }
    }
}
