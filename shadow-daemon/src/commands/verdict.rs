//! `shadowd verdict`: read the measurements of a running daemon (`/api/summary` on its admin
//! address) or of a state file it saved (`--state`, no daemon needed), judge them against
//! success criteria ([`shadow_core::criteria`]) and print each criterion and the decision; the
//! exit code is the decision (PROMOTE 0, HOLD 3, REJECT 4), so a CI job can gate on it.

use super::admin_client::{self, DEFAULT_FROM};
use super::{CommandResult, EXIT_HOLD, EXIT_OK, EXIT_REJECT, UsageError};
use crate::config::line_column;
use crate::decision::load_state;
use crate::security;
use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use shadow_core::criteria::{
    Criteria, CriterionResult, Decision, Measurements, ModelPair, Verdict, evaluate,
};
use shadow_core::stats::proportion::Proportion;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Flags of `shadowd verdict`.
#[derive(Debug, Args)]
pub struct VerdictArgs {
    /// Admin address of the running `shadowd run` (its `admin.addr`), as an http:// URL
    /// [default: http://127.0.0.1:9464].
    #[arg(long, value_name = "URL", conflicts_with = "state")]
    pub from: Option<String>,
    /// Judge a state file saved by `shadowd run --state FILE` instead of a running daemon.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Success criteria, a TOML file of top-level keys (see deploy/criteria.example.toml).
    /// Without it no criterion is configured and the verdict is HOLD.
    #[arg(long, value_name = "FILE")]
    pub criteria: Option<PathBuf>,
    /// Print the verdict as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
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

/// Runs `shadowd verdict`. Exit codes: 0 PROMOTE, 3 HOLD, 4 REJECT, 1 daemon unreachable,
/// 2 bad criteria file.
pub fn main(args: VerdictArgs) -> CommandResult {
    let criteria = match &args.criteria {
        Some(path) => load_criteria(path)?,
        None => Criteria::default(),
    };
    let measurements = match &args.state {
        Some(path) => match load_state(path)? {
            Some(state) => state.measurements(),
            None => {
                return Err(UsageError(format!(
                    "no state file at {}: pass the path given to `shadowd run --state`",
                    path.display()
                ))
                .into());
            }
        },
        None => {
            let from = args.from.as_deref().unwrap_or(DEFAULT_FROM);
            let token = args
                .token_file
                .as_deref()
                .map(security::read_token_secret)
                .transpose()?;
            let body = admin_client::get_ok(from, "/api/summary", token.as_deref()).with_context(
                || {
                    format!(
                        "cannot read the summary from {from}: is `shadowd run` running with its \
                     admin server there? Pass its admin.addr with --from"
                    )
                },
            )?;
            measurements_from_summary(&body)
                .with_context(|| format!("{from} did not answer a shadowd summary"))?
        }
    };
    let verdict = evaluate(&criteria, &measurements);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    } else {
        print!("{}", render_table(&verdict));
    }
    Ok(exit_code(verdict.decision))
}

/// The exit code of a decision.
pub fn exit_code(decision: Decision) -> u8 {
    match decision {
        Decision::Promote => EXIT_OK,
        Decision::Hold => EXIT_HOLD,
        Decision::Reject => EXIT_REJECT,
    }
}

/// Reads and checks a criteria file; problems are [`UsageError`]s naming
/// `file:line:column` and the key.
pub fn load_criteria(path: &Path) -> Result<Criteria, UsageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read criteria file {}: {e}", path.display())))?;
    parse_criteria(&text, path)
}

/// Parses and checks criteria TOML read from `path` (used in messages only).
pub fn parse_criteria(text: &str, path: &Path) -> Result<Criteria, UsageError> {
    let criteria: Criteria = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|s| s.start);
        let key = at.and_then(|offset| key_at(text, offset));
        UsageError(locate(text, path, at, key.as_deref(), e.message().trim()))
    })?;
    criteria.validate().map_err(|e| {
        let at = key_offset(text, e.key);
        UsageError(locate(text, path, at, Some(e.key), &e.to_string()))
    })?;
    Ok(criteria)
}

/// `path:line:column: `key`: message` (position and key where known).
fn locate(text: &str, path: &Path, at: Option<usize>, key: Option<&str>, message: &str) -> String {
    let mut out = path.display().to_string();
    if let Some(offset) = at {
        let (line, column) = line_column(text, offset);
        let _ = write!(out, ":{line}:{column}");
    }
    out.push_str(": ");
    if let Some(key) = key {
        let _ = write!(out, "`{key}`: ");
    }
    out.push_str(message);
    out
}

/// The key of the `key = value` line holding byte `offset`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty() && !key.starts_with('#')).then(|| key.to_owned())
}

/// Byte offset of the line that sets `key`.
fn key_offset(text: &str, key: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if let Some((k, _)) = line.split_once('=')
            && k.trim().trim_matches('"') == key
        {
            return Some(offset + (line.len() - line.trim_start().len()));
        }
        offset += line.len();
    }
    None
}

/// The parts of `/api/summary` the verdict reads.
#[derive(Debug, Deserialize)]
struct SummaryView {
    compared: u64,
    agreement: AgreementView,
    #[serde(default)]
    shadow_errors: BTreeMap<String, u64>,
    #[serde(default)]
    production_errors: BTreeMap<String, u64>,
    latency_production: LatencyView,
    latency_shadow: LatencyView,
}

#[derive(Debug, Deserialize)]
struct AgreementView {
    request: CountView,
}

#[derive(Debug, Deserialize)]
struct CountView {
    samples: u64,
    agreed: u64,
}

#[derive(Debug, Deserialize)]
struct LatencyView {
    p99_ms: Option<f64>,
}

/// Builds [`Measurements`] from `/api/summary` JSON: the daemon's own `measurements` (what its
/// decision loop judged: ground truth, segments and resources included) when present; else,
/// from an older daemon, samples = comparisons, agreement = agreed requests / requests where
/// agreement is defined, p99 latency of each model, errors = each model's error answers /
/// comparisons.
pub fn measurements_from_summary(json: &str) -> anyhow::Result<Measurements> {
    let v: serde_json::Value = serde_json::from_str(json).context("parsing /api/summary")?;
    if let Some(m) = v.get("measurements").filter(|m| !m.is_null()) {
        return Measurements::deserialize(m).context("parsing /api/summary measurements");
    }
    let s: SummaryView = serde_json::from_value(v).context("parsing /api/summary")?;
    let request = &s.agreement.request;
    let errors = |m: &BTreeMap<String, u64>| Proportion::new(m.values().sum(), s.compared);
    Ok(Measurements {
        samples: s.compared,
        agreement: (request.samples > 0).then(|| Proportion::new(request.agreed, request.samples)),
        p99_latency_ms: s
            .latency_production
            .p99_ms
            .zip(s.latency_shadow.p99_ms)
            .map(|(production, shadow)| ModelPair { production, shadow }),
        errors: (s.compared > 0).then(|| ModelPair {
            production: errors(&s.production_errors),
            shadow: errors(&s.shadow_errors),
        }),
        ..Measurements::default()
    })
}

/// The table: one row per criterion, then the decision.
pub fn render_table(verdict: &Verdict) -> String {
    let header = [
        "criterion",
        "measured",
        "95% interval",
        "threshold",
        "status",
    ];
    let rows: Vec<[String; 5]> = verdict.criteria.iter().map(row).collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 5], reason: &str| {
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let sep = if i == 0 { "" } else { "  " };
            let _ = write!(out, "{sep}{cell:<w$}");
        }
        let _ = writeln!(out, "{reason}");
    };
    line(header, "  reason");
    for (r, c) in rows.iter().zip(&verdict.criteria) {
        line(
            [&r[0], &r[1], &r[2], &r[3], &r[4]],
            &format!("  {}", c.reason),
        );
    }
    if verdict.criteria.is_empty() {
        out.push_str("(no criteria configured: pass --criteria FILE)\n");
    }
    let _ = writeln!(out, "verdict: {}", verdict.decision.as_str());
    out
}

fn row(c: &CriterionResult) -> [String; 5] {
    let number = |x: f64| {
        if x.fract() == 0.0 && x.abs() < 1e15 {
            format!("{x:.0}")
        } else {
            format!("{x:.4}")
        }
    };
    [
        c.criterion.as_str().to_owned(),
        c.measured.map_or_else(|| "-".to_owned(), number),
        c.interval
            .map_or_else(|| "-".to_owned(), |i| format!("[{:.4}, {:.4}]", i.lo, i.hi)),
        number(c.threshold),
        c.status.as_str().to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadow_core::criteria::{CriterionName, Status};

    /// A summary as the admin server serves it (fields the verdict ignores included).
    const SUMMARY: &str = r#"{
        "compared": 200, "shadow_failed": 3,
        "agreement": {
            "request": {"samples": 190, "agreed": 171, "ratio": 0.9, "ci95": [0.85, 0.93]},
            "row": {"samples": 400, "agreed": 380, "ratio": 0.95, "ci95": [0.92, 0.97]}
        },
        "body_equal": 150, "discrepancies": {"label": 19},
        "shadow_errors": {"timeout": 3, "http_5xx": 5},
        "production_errors": {"http_5xx": 2},
        "confusion": {}, "per_class": {}, "macro_f1": null,
        "latency_production": {"count": 200, "mean_ms": 10.0, "max_ms": 40.0,
                               "p50_ms": 9.0, "p90_ms": 20.0, "p99_ms": 35.5},
        "latency_shadow": {"count": 197, "mean_ms": 12.0, "max_ms": 60.0,
                           "p50_ms": 11.0, "p90_ms": 25.0, "p99_ms": 50.0},
        "queue_wait": {"count": 0, "mean_ms": null, "max_ms": null,
                       "p50_ms": null, "p90_ms": null, "p99_ms": null},
        "circuit_state": "closed", "replay": {}
    }"#;

    #[test]
    fn summary_becomes_measurements() {
        let m = measurements_from_summary(SUMMARY).unwrap();
        assert_eq!(m.samples, 200);
        assert_eq!(m.agreement, Some(Proportion::new(171, 190)));
        assert_eq!(
            m.p99_latency_ms,
            Some(ModelPair {
                production: 35.5,
                shadow: 50.0
            })
        );
        // Errors of every class over the comparisons: 2 / 200 and (3 + 5) / 200.
        assert_eq!(
            m.errors,
            Some(ModelPair {
                production: Proportion::new(2, 200),
                shadow: Proportion::new(8, 200)
            })
        );
        assert_eq!(m.correctness, None);
        assert_eq!(m.macro_f1, None);
        assert_eq!(m.cpu_seconds_per_request, None);
        assert_eq!(m.rss_bytes, None);
    }

    #[test]
    fn an_empty_summary_measures_nothing() {
        let empty = SUMMARY
            .replace("\"compared\": 200", "\"compared\": 0")
            .replace(
                "\"samples\": 190, \"agreed\": 171",
                "\"samples\": 0, \"agreed\": 0",
            )
            .replace("\"p99_ms\": 50.0", "\"p99_ms\": null");
        let m = measurements_from_summary(&empty).unwrap();
        assert_eq!(m.samples, 0);
        assert_eq!(m.agreement, None);
        assert_eq!(m.p99_latency_ms, None);
        assert_eq!(m.errors, None);
    }

    #[test]
    fn not_a_summary_is_an_error() {
        let err = measurements_from_summary("{\"status\": \"ok\"}").unwrap_err();
        assert!(format!("{err:#}").contains("missing field"), "{err:#}");
    }

    #[test]
    fn criteria_errors_name_line_column_and_key() {
        let path = Path::new("c.toml");
        let unknown = parse_criteria("min_samples = 10\nmin_agrement = 0.9\n", path).unwrap_err();
        assert!(
            unknown
                .0
                .starts_with("c.toml:2:1: `min_agrement`: unknown field"),
            "{}",
            unknown.0
        );
        let wrong_type = parse_criteria("min_samples = \"ten\"\n", path).unwrap_err();
        assert!(
            wrong_type.0.starts_with("c.toml:1:15: `min_samples`: "),
            "{}",
            wrong_type.0
        );
        let out_of_range =
            parse_criteria("min_samples = 10\n  min_agreement = 1.5\n", path).unwrap_err();
        assert!(
            out_of_range
                .0
                .starts_with("c.toml:2:3: `min_agreement`: criteria: `min_agreement` = 1.5"),
            "{}",
            out_of_range.0
        );
        let syntax = parse_criteria("min_samples = \n", path).unwrap_err();
        assert!(syntax.0.starts_with("c.toml:1:"), "{}", syntax.0);
        let ok = parse_criteria("min_samples = 10\nmax_p99_latency_ratio = 1.5\n", path).unwrap();
        assert_eq!(ok.min_samples, Some(10));
        assert_eq!(ok.max_p99_latency_ratio, Some(1.5));
    }

    #[test]
    fn the_example_criteria_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/criteria.example.toml");
        let c = load_criteria(&path).unwrap_or_else(|e| panic!("{}", e.0));
        // Every key is set in the example.
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json.as_object().unwrap().len(), 12, "{json}");
    }

    #[test]
    fn decisions_map_to_exit_codes() {
        assert_eq!(exit_code(Decision::Promote), 0);
        assert_eq!(exit_code(Decision::Hold), 3);
        assert_eq!(exit_code(Decision::Reject), 4);
    }

    #[test]
    fn label_criteria_are_not_enough_data_today() {
        let m = measurements_from_summary(SUMMARY).unwrap();
        let c = Criteria {
            min_samples: Some(100),
            accuracy_margin: Some(0.02),
            max_p99_latency_ratio: Some(2.0),
            ..Criteria::default()
        };
        let v = evaluate(&c, &m);
        assert_eq!(v.decision, Decision::Hold);
        let status = |n| v.criteria.iter().find(|r| r.criterion == n).unwrap().status;
        assert_eq!(status(CriterionName::MinSamples), Status::Pass);
        assert_eq!(status(CriterionName::MaxP99LatencyRatio), Status::Pass);
        assert_eq!(status(CriterionName::AccuracyMargin), Status::NotEnoughData);
        let table = render_table(&v);
        assert!(table.contains("max_p99_latency_ratio  1.4085"), "{table}");
        assert!(table.ends_with("verdict: HOLD\n"), "{table}");
    }
}
