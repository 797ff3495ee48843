//! `shadowd report`: one self-contained HTML file (no script, no external font, image or style
//! sheet: it opens offline and prints on A4) showing whether the shadow should be promoted and
//! why: the verdict and its criteria first, then latency CDFs, error rates, agreement and
//! accuracy over time, confusion matrices, segments, resource usage, capture health and the top
//! discrepancies with their field diffs.
//!
//! The numbers come from a running daemon's admin address (`--from`: `/api/summary`,
//! `/metrics`, `/api/timeseries`) or from a state file it saved (`--state`); the discrepancies
//! from its discrepancy log (`--discrepancy-log`). [`input`] gathers them into a
//! [`ReportInput`], [`html::render`] turns that into the page (a pure function), [`svg`] draws
//! the charts.

pub mod html;
pub mod input;
mod markup;
pub mod svg;

pub use input::ReportInput;

use super::admin_client::{self, DEFAULT_FROM};
use super::verdict::{load_criteria, measurements_from_summary};
use super::{CommandResult, EXIT_OK, UsageError};
use crate::decision::{ResourceMeasures, load_state};
use crate::security;
use anyhow::Context;
use clap::Args;
use input::Part;
use shadow_core::criteria::{Criteria, Measurements, Verdict, evaluate};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Flags of `shadowd report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Admin address of the running `shadowd run` (its `admin.addr`), as an http:// URL
    /// [default: http://127.0.0.1:9464].
    #[arg(long, value_name = "URL", conflicts_with = "state")]
    pub from: Option<String>,
    /// Report on a state file saved by `shadowd run --state FILE` instead of a running daemon
    /// (no capture counters then; latency and time series as far as the file holds them).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Where to write the HTML report.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: PathBuf,
    /// The run's discrepancy log (its `discrepancy_log.path`): the report lists its top
    /// discrepancies with their field diffs (redacted as in the log).
    #[arg(long, value_name = "FILE")]
    pub discrepancy_log: Option<PathBuf>,
    /// Success criteria (TOML, see deploy/criteria.example.toml) to judge against. Without it,
    /// the daemon's own verdict is shown (`--from`), or no criterion (`--state`).
    #[arg(long, value_name = "FILE")]
    pub criteria: Option<PathBuf>,
    /// File holding the daemon's admin token (its `admin.token_file`), sent as
    /// `Authorization: Bearer`: needed when the daemon's admin address is not loopback.
    #[arg(
        long,
        value_name = "FILE",
        env = "SHADOWD_ADMIN_TOKEN_FILE",
        conflicts_with = "state"
    )]
    pub token_file: Option<PathBuf>,
}

/// Runs `shadowd report`. Exit codes: 0 written, 1 daemon unreachable or file not written,
/// 2 bad flags, criteria or state file.
pub fn main(args: ReportArgs) -> CommandResult {
    let criteria = match &args.criteria {
        Some(path) => Some((load_criteria(path)?, path.as_path())),
        None => None,
    };
    let mut input = match &args.state {
        Some(path) => from_state(path, criteria)?,
        None => {
            let from = args.from.as_deref().unwrap_or(DEFAULT_FROM);
            let token = args
                .token_file
                .as_deref()
                .map(security::read_token_secret)
                .transpose()?;
            from_admin(from, token.as_deref(), criteria)?
        }
    };
    input.discrepancies = match &args.discrepancy_log {
        Some(path) => input::read_discrepancy_log(path),
        None => Part::Missing(
            "No discrepancy log given: pass --discrepancy-log FILE (the run's \
             discrepancy_log.path) to list the top discrepancies with their diffs."
                .into(),
        ),
    };
    let html = html::render(&input);
    write_private(&args.out, html.as_bytes())
        .with_context(|| format!("cannot write the report to {}", args.out.display()))?;
    eprintln!(
        "shadowd report: verdict {} ({} comparisons)",
        input.verdict.decision.as_str(),
        input.summary.overall.compared
    );
    println!("{}", args.out.display());
    Ok(EXIT_OK)
}

/// Writes `bytes` to `path` readable by its owner only (mode 0600: request paths and diff
/// values are in it, as in the discrepancy log), replacing what was there.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The verdict to show and who judged it: against `--criteria` when given, else the daemon's
/// own, else against no criterion (HOLD).
fn judge(
    criteria: Option<(Criteria, &Path)>,
    daemon: Option<Verdict>,
    m: &Measurements,
) -> (Verdict, String) {
    match (criteria, daemon) {
        (Some((c, path)), _) => (
            evaluate(&c, m),
            format!("judged by shadowd report against {}", path.display()),
        ),
        (None, Some(v)) => (v, "the daemon's own verdict, against its --criteria".into()),
        (None, None) => (
            evaluate(&Criteria::default(), m),
            "no criteria given".into(),
        ),
    }
}

/// Gathers the report from a running daemon's admin address.
fn from_admin(
    base: &str,
    token: Option<&str>,
    criteria: Option<(Criteria, &Path)>,
) -> anyhow::Result<ReportInput> {
    let body = admin_client::get_ok(base, "/api/summary", token).with_context(|| {
        format!(
            "cannot read the summary from {base}: is `shadowd run` running with its admin \
             server there? Pass its admin.addr with --from"
        )
    })?;
    let summary =
        input::parse_summary(&body).with_context(|| format!("{base} did not answer a summary"))?;
    let measurements = measurements_from_summary(&body)
        .with_context(|| format!("{base} did not answer a shadowd summary"))?;
    let (verdict, verdict_origin) = judge(criteria, summary.verdict.clone(), &measurements);
    let metrics = match admin_client::get(base, "/metrics", token) {
        Ok((200, text)) => Ok(input::parse_metrics(&text)),
        Ok((status, _)) => Err(format!("/metrics answered HTTP {status}")),
        Err(e) => Err(format!("cannot read /metrics: {e:#}")),
    };
    let timeseries = match admin_client::get(base, "/api/timeseries", token) {
        Ok((status, body)) => input::timeseries_of_answer(status, &body),
        Err(e) => Part::Missing(format!("cannot read /api/timeseries: {e:#}")),
    };
    let (latency_cdf, capture) = match &metrics {
        Ok(samples) => (
            input::cdf_of_metrics(samples),
            Part::Have(input::capture_health(samples)),
        ),
        Err(why) => (Part::Missing(why.clone()), Part::Missing(why.clone())),
    };
    Ok(ReportInput {
        source: base.to_owned(),
        generated_unix_ms: now_unix_ms(),
        verdict,
        verdict_origin,
        resources: ResourceMeasures {
            cpu_seconds_per_request: measurements.cpu_seconds_per_request,
            rss_bytes: measurements.rss_bytes,
        },
        resource_sample: summary.resources.clone(),
        summary,
        latency_cdf,
        timeseries,
        capture,
        discrepancies: Part::Missing(String::new()),
    })
}

/// Gathers the report from a state file.
fn from_state(path: &Path, criteria: Option<(Criteria, &Path)>) -> anyhow::Result<ReportInput> {
    let Some(state) = load_state(path)? else {
        return Err(UsageError(format!(
            "no state file at {}: pass the path given to `shadowd run --state`",
            path.display()
        ))
        .into());
    };
    let summary = input::summary_of_state(&state).with_context(|| {
        format!(
            "{} holds aggregates this shadowd cannot read",
            path.display()
        )
    })?;
    let (verdict, verdict_origin) = judge(criteria, None, &state.measurements());
    Ok(ReportInput {
        source: format!(
            "state file {} (saved {} UTC)",
            path.display(),
            crate::sinks::discrepancy_log::rfc3339(
                state.saved_at_unix.saturating_mul(1_000_000_000)
            )
            .get(..19)
            .unwrap_or_default()
            .replace('T', " ")
        ),
        generated_unix_ms: now_unix_ms(),
        verdict,
        verdict_origin,
        summary,
        latency_cdf: input::cdf_of_state(&state),
        timeseries: input::timeseries_of_state(state.timeseries),
        capture: Part::Missing(
            "a state file holds no capture counters: make the report with --from on the \
             running daemon to see them"
                .into(),
        ),
        resources: state.resources,
        resource_sample: None,
        discrepancies: Part::Missing(String::new()),
    })
}

#[cfg(test)]
mod tests;
