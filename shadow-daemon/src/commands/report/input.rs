//! What the report shows ([`ReportInput`]) and where it comes from: a running daemon's admin
//! address (`/api/summary`, `/metrics`, `/api/timeseries`), or a state file saved by
//! `shadowd run --state`; the top discrepancies from the discrepancy log. The summary JSON is
//! read through this module's own views, tolerant of fields a daemon of another version lacks;
//! the time series through [`shadow_core::timeseries`]'s types, which write it.

use crate::decision::{ResourceMeasures, StateFile};
use crate::resources::ResourceSnapshot;
use serde::Deserialize;
use serde_json::Value;
use shadow_core::criteria::{Measurements, ModelPair, Verdict};
use shadow_core::evaluation::QualitySummary;
use shadow_core::stats::proportion::Estimate;
use shadow_core::timeseries::TimeSeriesSnapshot;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

/// Discrepancies shown in the report.
pub const TOP_DISCREPANCIES: usize = 10;

/// A part of the report that is either there or missing for a reason the report states.
#[derive(Clone, Debug)]
pub enum Part<T> {
    /// The data.
    Have(T),
    /// Why there is none (shown in its place).
    Missing(String),
}

impl<T> Part<T> {
    /// The data, if there is some.
    pub fn have(&self) -> Option<&T> {
        match self {
            Part::Have(t) => Some(t),
            Part::Missing(_) => None,
        }
    }
}

/// Everything the report renders; [`super::html::render`] is a pure function of it.
#[derive(Clone, Debug)]
pub struct ReportInput {
    /// Where the numbers come from (the admin URL or the state file), for the header.
    pub source: String,
    /// When the report was made, Unix milliseconds.
    pub generated_unix_ms: u64,
    /// The verdict shown first.
    pub verdict: Verdict,
    /// Who judged it against which criteria, in a few words.
    pub verdict_origin: String,
    /// The aggregates (`/api/summary`, or the state file's as the daemon would serve them).
    pub summary: SummaryView,
    /// Each model's latency CDF: (milliseconds, fraction at or below).
    pub latency_cdf: Part<ModelPair<Vec<(f64, f64)>>>,
    /// The time series (agreement, accuracy, latency per interval).
    pub timeseries: Part<TimeSeriesSnapshot>,
    /// Capture and admission counters.
    pub capture: Part<CaptureHealth>,
    /// Resource usage as the criteria judge it.
    pub resources: ResourceMeasures,
    /// The latest resource sample of each process (a running daemon only).
    pub resource_sample: Option<ResourceSnapshot>,
    /// The top discrepancies.
    pub discrepancies: Part<Discrepancies>,
}

/// One slice of `/api/summary` (all traffic, or one segment).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SliceView {
    /// Comparisons.
    pub compared: u64,
    /// Replays the shadow did not answer.
    pub shadow_failed: u64,
    /// Agreement per request and per row.
    pub agreement: AgreementSummaryView,
    /// Comparisons with equal bodies.
    pub body_equal: u64,
    /// Comparisons per discrepancy kind.
    pub discrepancies: BTreeMap<String, u64>,
    /// Shadow errors per class.
    pub shadow_errors: BTreeMap<String, u64>,
    /// Production errors per class.
    pub production_errors: BTreeMap<String, u64>,
    /// Each model's error rate with its interval.
    pub error_rate: ErrorRateView,
    /// Production label → shadow label → rows.
    pub confusion: BTreeMap<String, BTreeMap<String, u64>>,
    /// Production latency.
    pub latency_production: LatencyView,
    /// Shadow latency.
    pub latency_shadow: LatencyView,
    /// Both models against the ground truth.
    pub ground_truth: Option<QualitySummary>,
}

/// Agreement per request and per row.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct AgreementSummaryView {
    /// Per request.
    pub request: AgreementView,
    /// Per row.
    pub row: AgreementView,
}

/// Agreement in one unit.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct AgreementView {
    /// Where it is defined.
    pub samples: u64,
    /// Of those, agreeing.
    pub agreed: u64,
    /// agreed / samples.
    pub ratio: Option<f64>,
    /// Wilson 95 % interval.
    pub ci95: Option<(f64, f64)>,
}

/// Each model's error rate.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ErrorRateView {
    /// Production's.
    pub production: Option<Estimate>,
    /// The shadow's.
    pub shadow: Option<Estimate>,
}

/// A latency distribution's statistics, ms.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct LatencyView {
    /// Latencies recorded.
    pub count: u64,
    /// Mean.
    pub mean_ms: Option<f64>,
    /// Median.
    pub p50_ms: Option<f64>,
    /// 90th percentile.
    pub p90_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Largest.
    pub max_ms: Option<f64>,
}

/// The segments of `/api/summary`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SegmentsView {
    /// The JSON pointer of the segment field, if configured.
    pub field_pointer: Option<String>,
    /// Per request path.
    pub path: BTreeMap<String, SliceView>,
    /// Per value of the segment field.
    pub field: BTreeMap<String, SliceView>,
}

/// `/api/summary` as the report reads it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SummaryView {
    /// All traffic.
    #[serde(flatten)]
    pub overall: SliceView,
    /// Per segment.
    pub segments: SegmentsView,
    /// The circuit breaker's state (a running daemon only).
    pub circuit_state: Option<String>,
    /// The daemon's own verdict.
    pub verdict: Option<Verdict>,
    /// What it judged.
    pub measurements: Option<Measurements>,
    /// The latest resource sample.
    pub resources: Option<ResourceSnapshot>,
}

/// The capture's and admission's counters, from `/metrics`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CaptureHealth {
    /// TCP segments delivered by the capture.
    pub captured_segments: f64,
    /// Kernel-side packet counts by result.
    pub kernel_packets: BTreeMap<String, f64>,
    /// Segments or exchanges lost before the pipeline, by stage.
    pub dropped_by_stage: BTreeMap<String, f64>,
    /// HTTP/2 streams not seen whole, by reason.
    pub h2_streams_lost: BTreeMap<String, f64>,
    /// Exchanges rebuilt, by outcome.
    pub exchanges_by_outcome: BTreeMap<String, f64>,
    /// Replays by result.
    pub mirrored_by_result: BTreeMap<String, f64>,
    /// Exchanges not replayed, by reason.
    pub skipped_by_reason: BTreeMap<String, f64>,
    /// Discrepancy log lines dropped.
    pub discrepancy_log_dropped: f64,
}

/// The discrepancy log as the report shows it.
#[derive(Clone, Debug, Default)]
pub struct Discrepancies {
    /// The log file read.
    pub path: String,
    /// Lines read.
    pub lines: u64,
    /// Lines that were not a discrepancy record.
    pub unreadable: u64,
    /// The top ones: label disagreements first, then the most differing fields, then the
    /// newest.
    pub top: Vec<DiscrepancyRecord>,
}

/// One discrepancy log line (already redacted by the daemon when it wrote it).
#[derive(Clone, Debug, Deserialize)]
pub struct DiscrepancyRecord {
    /// When it was compared (RFC 3339).
    #[serde(default)]
    pub time: String,
    /// `http1`, `h2` or `grpc`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// The request.
    pub request: RequestView,
    /// Production's side.
    pub production: SideView,
    /// The shadow's side.
    pub shadow: SideView,
    /// Whether the predictions agree.
    #[serde(default)]
    pub agreement: Option<bool>,
    /// The kinds of difference.
    #[serde(default)]
    pub discrepancies: Vec<String>,
    /// The field diff.
    #[serde(default)]
    pub diff: Vec<DiffView>,
    /// Whether it is production's own noise (with a noise baseline).
    #[serde(default)]
    pub noise: Option<bool>,
}

/// The request of a discrepancy.
#[derive(Clone, Debug, Deserialize)]
pub struct RequestView {
    /// Method.
    #[serde(default)]
    pub method: String,
    /// Path and query.
    #[serde(default)]
    pub path: String,
}

/// One model's side of a discrepancy.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SideView {
    /// HTTP status.
    pub status: Option<u16>,
    /// Error class.
    pub error: Option<Value>,
    /// Latency, ms.
    pub latency_ms: Option<f64>,
    /// The prediction read from the answer.
    pub prediction: Option<Value>,
}

/// One differing field.
#[derive(Clone, Debug, Deserialize)]
pub struct DiffView {
    /// JSON pointer.
    pub path: String,
    /// How the values differ.
    #[serde(default)]
    pub kind: Value,
    /// Production's value.
    #[serde(default)]
    pub production: Option<Value>,
    /// The shadow's value.
    #[serde(default)]
    pub shadow: Option<Value>,
}

/// Parses `/api/summary` JSON.
pub fn parse_summary(json: &str) -> serde_json::Result<SummaryView> {
    serde_json::from_str(json)
}

/// The summary a daemon resumed from `state` would serve (without its live parts).
pub fn summary_of_state(state: &StateFile) -> anyhow::Result<SummaryView> {
    let mut evaluation = shadow_core::evaluation::Evaluation::default();
    evaluation.restore(state.evaluation.clone())?;
    Ok(serde_json::from_value(serde_json::to_value(
        evaluation.summary(),
    )?)?)
}

/// Each model's latency CDF from a state file's histograms.
pub fn cdf_of_state(state: &StateFile) -> Part<ModelPair<Vec<(f64, f64)>>> {
    let latency = state.evaluation.latency();
    cdf_part(ModelPair {
        production: latency.production.cdf_ms(),
        shadow: latency.shadow.cdf_ms(),
    })
}

fn cdf_part(cdf: ModelPair<Vec<(f64, f64)>>) -> Part<ModelPair<Vec<(f64, f64)>>> {
    if cdf.production.is_empty() && cdf.shadow.is_empty() {
        Part::Missing("no latency measured yet".into())
    } else {
        Part::Have(cdf)
    }
}

/// A state file's `timeseries` ([`StateFile::timeseries`]; absent in state files of older
/// daemons).
pub fn timeseries_of_state(saved: Option<TimeSeriesSnapshot>) -> Part<TimeSeriesSnapshot> {
    match saved {
        Some(ts) => Part::Have(ts),
        None => Part::Missing(
            "no time series in this state file (saved by a shadowd without one)".into(),
        ),
    }
}

/// `GET /api/timeseries`'s answer: 404 (a daemon without the endpoint) is no time series.
pub fn timeseries_of_answer(status: u16, body: &str) -> Part<TimeSeriesSnapshot> {
    match status {
        200 => match serde_json::from_str(body) {
            Ok(ts) => Part::Have(ts),
            Err(e) => Part::Missing(format!("/api/timeseries is unreadable: {e}")),
        },
        404 => Part::Missing("this shadowd serves no time series (/api/timeseries)".into()),
        other => Part::Missing(format!("/api/timeseries answered HTTP {other}")),
    }
}

/// One sample of Prometheus text exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name (with `_bucket`, `_count` ... suffixes).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// Parses Prometheus text exposition (comments skipped; lines that do not parse are skipped).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_sample)
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &inner[i + 1..];
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            '"' => break,
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The totals of `name` per value of `label` (summed over the other labels).
fn by_label(samples: &[Sample], name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == name) {
        let key = s.labels.get(label).cloned().unwrap_or_default();
        *out.entry(key).or_insert(0.0) += s.value;
    }
    out
}

fn total(samples: &[Sample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

/// The capture and admission counters of `/metrics`.
pub fn capture_health(samples: &[Sample]) -> CaptureHealth {
    CaptureHealth {
        captured_segments: total(samples, "shadowtap_captured_segments_total"),
        kernel_packets: by_label(samples, "shadowtap_kernel_packets_total", "result"),
        dropped_by_stage: by_label(samples, "shadowtap_capture_dropped_total", "stage"),
        h2_streams_lost: by_label(samples, "shadowtap_h2_streams_lost_total", "reason"),
        exchanges_by_outcome: by_label(samples, "shadowtap_exchanges_total", "outcome"),
        mirrored_by_result: by_label(samples, "shadowtap_mirrored_requests_total", "result"),
        skipped_by_reason: by_label(samples, "shadowtap_mirror_skipped_total", "reason"),
        discrepancy_log_dropped: total(samples, "shadowtap_discrepancy_log_dropped_total"),
    }
}

/// Each model's latency CDF from the `shadowtap_latency_seconds` histogram: (upper bound in
/// ms, fraction at or below) per bucket, from the last empty bucket to the first full one.
pub fn cdf_of_metrics(samples: &[Sample]) -> Part<ModelPair<Vec<(f64, f64)>>> {
    let of = |model: &str| {
        let mut buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| {
                s.name == "shadowtap_latency_seconds_bucket"
                    && s.labels.get("model").is_some_and(|m| m == model)
            })
            .filter_map(|s| Some((s.labels.get("le")?.parse::<f64>().ok()?, s.value)))
            .filter(|(le, _)| le.is_finite())
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let count = samples
            .iter()
            .find(|s| {
                s.name == "shadowtap_latency_seconds_count"
                    && s.labels.get("model").is_some_and(|m| m == model)
            })
            .map_or(0.0, |s| s.value);
        if count <= 0.0 {
            return Vec::new();
        }
        let first = buckets
            .iter()
            .position(|(_, n)| *n > 0.0)
            .map_or(0, |i| i.saturating_sub(1));
        let last = buckets
            .iter()
            .position(|(_, n)| *n >= count)
            .unwrap_or(buckets.len().saturating_sub(1));
        buckets
            .get(first..=last)
            .unwrap_or_default()
            .iter()
            .map(|(le, n)| (le * 1e3, n / count))
            .collect()
    };
    cdf_part(ModelPair {
        production: of("production"),
        shadow: of("shadow"),
    })
}

/// Reads the discrepancy log at `path` (JSON lines, as `shadowd run --discrepancy-log`
/// writes them) and keeps the [`TOP_DISCREPANCIES`].
pub fn read_discrepancy_log(path: &Path) -> Part<Discrepancies> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            return Part::Missing(format!(
                "cannot read the discrepancy log {}: {e}",
                path.display()
            ));
        }
    };
    let mut out = Discrepancies {
        path: path.display().to_string(),
        ..Discrepancies::default()
    };
    // (rank, record): kept to a few times the top while reading.
    type Ranked = ((bool, usize, u64), DiscrepancyRecord);
    let mut kept: Vec<Ranked> = Vec::new();
    let rank = |r: &DiscrepancyRecord, line: u64| (r.agreement == Some(false), r.diff.len(), line);
    for line in std::io::BufReader::new(file).lines() {
        let Ok(line) = line else {
            out.unreadable += 1;
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        out.lines += 1;
        match serde_json::from_str::<DiscrepancyRecord>(&line) {
            Ok(r) => kept.push((rank(&r, out.lines), r)),
            Err(_) => out.unreadable += 1,
        }
        if kept.len() >= 4 * TOP_DISCREPANCIES {
            kept.sort_by_key(|(k, _)| Reverse(*k));
            kept.truncate(TOP_DISCREPANCIES);
        }
    }
    kept.sort_by_key(|(k, _)| Reverse(*k));
    kept.truncate(TOP_DISCREPANCIES);
    out.top = kept.into_iter().map(|(_, r)| r).collect();
    Part::Have(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# HELP shadowtap_latency_seconds Response latency per model.
# TYPE shadowtap_latency_seconds histogram
shadowtap_latency_seconds_bucket{model=\"production\",le=\"0.001\"} 0
shadowtap_latency_seconds_bucket{model=\"production\",le=\"0.002\"} 0
shadowtap_latency_seconds_bucket{model=\"production\",le=\"0.004\"} 3
shadowtap_latency_seconds_bucket{model=\"production\",le=\"0.008\"} 4
shadowtap_latency_seconds_bucket{model=\"production\",le=\"0.016\"} 4
shadowtap_latency_seconds_bucket{model=\"production\",le=\"+Inf\"} 4
shadowtap_latency_seconds_count{model=\"production\"} 4
shadowtap_latency_seconds_count{model=\"shadow\"} 0
shadowtap_capture_dropped_total{stage=\"ring\"} 2
shadowtap_capture_dropped_total{stage=\"reassembly\"} 1
shadowtap_mirror_skipped_total{reason=\"queue_full\"} 5
shadowtap_exchanges_total{protocol=\"http1\",outcome=\"complete\"} 7
shadowtap_exchanges_total{protocol=\"h2\",outcome=\"complete\"} 3
odd{label=\"a \\\"quoted\\\" value\"} 1
";

    #[test]
    fn metrics_give_the_cdf_and_the_capture_counters() {
        let samples = parse_metrics(METRICS);
        let odd = samples.iter().find(|s| s.name == "odd").unwrap();
        assert_eq!(odd.labels["label"], "a \"quoted\" value");
        let Part::Have(cdf) = cdf_of_metrics(&samples) else {
            panic!("a production CDF")
        };
        assert_eq!(cdf.production, vec![(2.0, 0.0), (4.0, 0.75), (8.0, 1.0)]);
        assert!(cdf.shadow.is_empty());
        let health = capture_health(&samples);
        assert_eq!(health.dropped_by_stage["ring"], 2.0);
        assert_eq!(health.skipped_by_reason["queue_full"], 5.0);
        assert_eq!(health.exchanges_by_outcome["complete"], 10.0);
        assert!(matches!(cdf_of_metrics(&[]), Part::Missing(_)));
    }

    const BUCKET: &str = r#"{
      "start_unix_ms": 1764518400000, "seen": 120, "mirrored": 110, "skipped": 10,
      "compared": 105, "agreed": 101,
      "agreement": {"value": 0.962, "low": 0.906, "high": 0.985},
      "accuracy": {
        "production": {"labelled": 40, "correct": 37, "value": 0.925, "low": 0.80, "high": 0.97},
        "shadow": {"labelled": 0, "correct": 0, "value": null, "low": null, "high": null}
      },
      "latency_ms": {"production": {"p50": 3.1, "p99": 9.8}, "shadow": {"p50": null, "p99": null}},
      "errors": {"production": 0, "shadow": 2}
    }"#;

    #[test]
    fn the_time_series_contract_reads_and_its_absence_is_no_time_series() {
        let body =
            format!("{{\"interval_seconds\": 60, \"capacity\": 1440, \"buckets\": [{BUCKET}]}}");
        let Part::Have(ts) = timeseries_of_answer(200, &body) else {
            panic!("the contract's example reads")
        };
        let b = &ts.buckets[0];
        assert_eq!((ts.interval_seconds, b.compared, b.agreed), (60, 105, 101));
        assert_eq!(
            (b.agreement.low, b.agreement.high),
            (Some(0.906), Some(0.985))
        );
        assert_eq!(b.accuracy.production.value, Some(0.925));
        assert_eq!(b.accuracy.shadow.value, None);
        assert_eq!(b.latency_ms.production.p99, Some(9.8));
        assert_eq!(
            (b.latency_ms.shadow.p50, b.latency_ms.shadow.p99),
            (None, None)
        );
        assert_eq!(b.errors.shadow, 2);
        assert!(
            matches!(timeseries_of_answer(404, "not found\n"), Part::Missing(m) if m.contains("no time series"))
        );
        assert!(
            matches!(timeseries_of_answer(200, "{\"buckets\": 3}"), Part::Missing(m) if m.contains("unreadable"))
        );
        assert!(matches!(timeseries_of_state(None), Part::Missing(_)));
        assert!(matches!(timeseries_of_state(Some(ts)), Part::Have(_)));
    }

    #[test]
    fn the_log_keeps_label_disagreements_and_big_diffs_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        let line = |path: &str, agreement: bool, diffs: usize| {
            let diff: Vec<Value> = (0..diffs)
                .map(|i| serde_json::json!({"path": format!("/outputs/{i}"), "kind": "value", "production": 1, "shadow": 2}))
                .collect();
            serde_json::json!({
                "time": "2026-11-30T10:00:00.000Z", "flow": "f", "protocol": "http1",
                "request": {"method": "POST", "path": path, "headers": [], "body_sha256": "x",
                            "body_len": 0, "body_encoding": "omitted", "body_truncated": false},
                "production": {"status": 200, "error": null, "latency_ms": 1.0, "prediction": null},
                "shadow": {"status": 200, "error": null, "latency_ms": 2.0, "prediction": null},
                "agreement": agreement, "discrepancies": ["prediction"], "diff": diff
            })
            .to_string()
        };
        let mut text = String::new();
        for i in 0..30 {
            text.push_str(&line(&format!("/small/{i}"), true, 1));
            text.push('\n');
        }
        text.push_str(&line("/label", false, 1));
        text.push_str("\nnot json\n");
        text.push_str(&line("/big", true, 5));
        text.push('\n');
        std::fs::write(&path, text).unwrap();
        let Part::Have(d) = read_discrepancy_log(&path) else {
            panic!("the log reads")
        };
        assert_eq!(
            (d.lines, d.unreadable, d.top.len()),
            (33, 1, TOP_DISCREPANCIES)
        );
        assert_eq!(d.top[0].request.path, "/label");
        assert_eq!(d.top[1].request.path, "/big");
        // Then the newest of the equal ones.
        assert_eq!(d.top[2].request.path, "/small/29");
        assert!(matches!(
            read_discrepancy_log(&dir.path().join("none")),
            Part::Missing(_)
        ));
    }
}
