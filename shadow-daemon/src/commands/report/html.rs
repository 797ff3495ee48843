//! The report as one self-contained HTML page: a pure function of [`ReportInput`]. No script,
//! no external font, image or style sheet; charts are inline SVG ([`super::svg`]); every string
//! that comes from data is escaped ([`escape`]). Sections are printed on their own A4 pages.

use super::input::{CaptureHealth, Discrepancies, DiscrepancyRecord, Part, ReportInput, SliceView};
use super::markup::escape;
use super::svg::{self, Axis, Format, Line, Scale};
use crate::decision::ResourceMeasures;
use serde_json::Value;
use shadow_core::criteria::{Decision, ModelPair, Status};
use shadow_core::evaluation::QualitySummary;
use shadow_core::stats::proportion::Estimate;
use shadow_core::timeseries::{Accuracy, Bucket, TimeSeriesSnapshot};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The `data-chart` ids of the charts every report has (with data, or saying why not).
pub const CHART_IDS: &[&str] = &[
    "latency-cdf",
    "error-rates",
    "agreement-over-time",
    "accuracy-over-time",
    "latency-over-time",
    "resources",
    "capture-health",
];

const STYLE: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #222; margin: 24px auto; max-width: 1100px; padding: 0 16px; line-height: 1.4; }
h1 { font-size: 24px; margin-bottom: 4px; }
h2 { font-size: 19px; border-bottom: 2px solid #ddd; padding-bottom: 4px; margin-top: 32px; }
h3 { font-size: 15px; margin-bottom: 6px; }
.meta { color: #555; font-size: 13px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #d6d6d6; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { display: inline-block; font-size: 28px; font-weight: bold; padding: 6px 20px; border-radius: 6px; color: #fff; letter-spacing: 1px; }
.verdict.PROMOTE { background: #2e7d32; } .verdict.HOLD { background: #b7791f; } .verdict.REJECT { background: #c62828; }
.status-pass { color: #2e7d32; font-weight: bold; } .status-fail { color: #c62828; font-weight: bold; } .status-not_enough_data { color: #8a6d1f; }
.note { color: #555; font-size: 13px; font-style: italic; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
svg.chart { max-width: 100%; height: auto; border: 1px solid #eee; background: #fff; }
pre { background: #f7f7f7; padding: 4px 6px; margin: 0; white-space: pre-wrap; word-break: break-all; font-size: 12px; max-width: 420px; }
.discrepancy { margin-bottom: 18px; }
.swatch-production { color: #1f5fa8; font-weight: bold; } .swatch-shadow { color: #d0541b; font-weight: bold; }
@media print {
  @page { size: A4; margin: 12mm; }
  body { max-width: none; margin: 0; padding: 0; font-size: 11px; }
  section { break-before: page; page-break-before: always; }
  section:first-of-type { break-before: auto; page-break-before: auto; }
  svg.chart { width: 100%; border: none; break-inside: avoid; }
  table, .discrepancy { break-inside: avoid; page-break-inside: avoid; }
  h2, h3 { break-after: avoid; page-break-after: avoid; }
}
"#;

/// Renders the whole report.
pub fn render(input: &ReportInput) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let decision = input.verdict.decision.as_str();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\
         <title>shadowtap report: {decision}</title><style>{STYLE}</style></head><body>\n"
    );
    let _ = writeln!(
        out,
        "<header><h1>shadowtap report: production vs shadow</h1><p class=\"meta\">From {} · \
         made {} UTC · {} comparisons</p></header>",
        escape(&input.source),
        escape(&datetime(input.generated_unix_ms)),
        input.summary.overall.compared
    );
    verdict_section(&mut out, input);
    latency_section(&mut out, input);
    errors_section(&mut out, &input.summary.overall);
    over_time_section(&mut out, &input.timeseries);
    confusion_section(&mut out, &input.summary.overall);
    segments_section(&mut out, input);
    resources_section(&mut out, input);
    capture_section(&mut out, &input.capture);
    discrepancies_section(&mut out, input);
    out.push_str("</body></html>\n");
    out
}

fn section_open(out: &mut String, id: &str, title: &str) {
    let _ = writeln!(
        out,
        "<section id=\"{}\"><h2>{}</h2>",
        escape(id),
        escape(title)
    );
}

fn note(out: &mut String, text: &str) {
    let _ = writeln!(out, "<p class=\"note\">{}</p>", escape(text));
}

/// A table: header cells, then rows of already-escaped cells (`num` cells right-aligned).
fn table(out: &mut String, class: &str, header: &[&str], rows: &[Vec<Cell>]) {
    let _ = write!(out, "<table class=\"{}\"><thead><tr>", escape(class));
    for h in header {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            match cell {
                Cell::Text(t) => {
                    let _ = write!(out, "<td>{}</td>", escape(t));
                }
                Cell::Num(t) => {
                    let _ = write!(out, "<td class=\"num\">{}</td>", escape(t));
                }
                Cell::Html(h) => {
                    let _ = write!(out, "<td>{h}</td>");
                }
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>\n");
}

/// One table cell.
enum Cell {
    /// Text (escaped when written).
    Text(String),
    /// A number (escaped, right-aligned).
    Num(String),
    /// Markup built here from escaped parts.
    Html(String),
}

fn text(s: impl Into<String>) -> Cell {
    Cell::Text(s.into())
}

fn num(s: impl Into<String>) -> Cell {
    Cell::Num(s.into())
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_owned(), f)
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

fn ms(v: f64) -> String {
    format!("{} ms", svg::plain(v))
}

fn interval_pct(i: Option<(f64, f64)>) -> String {
    i.map_or_else(
        || "-".to_owned(),
        |(lo, hi)| format!("[{}, {}]", pct(lo), pct(hi)),
    )
}

fn estimate_pct(e: Option<Estimate>) -> (String, String) {
    match e {
        Some(e) => (pct(e.value), interval_pct(e.interval.map(|i| (i.lo, i.hi)))),
        None => ("-".into(), "-".into()),
    }
}

/// `YYYY-MM-DD HH:MM:SS` of Unix milliseconds.
fn datetime(unix_ms: u64) -> String {
    let rfc = crate::sinks::discrepancy_log::rfc3339(unix_ms.saturating_mul(1_000_000));
    rfc.get(..19).unwrap_or(&rfc).replace('T', " ")
}

fn verdict_section(out: &mut String, input: &ReportInput) {
    let v = &input.verdict;
    section_open(out, "verdict", "Verdict");
    let decision = v.decision.as_str();
    let _ = writeln!(
        out,
        "<p><span class=\"verdict {decision}\" id=\"decision\">{decision}</span></p>"
    );
    let meaning = match v.decision {
        Decision::Promote => "every criterion passed: the shadow may replace production",
        Decision::Hold => "nothing failed, but not every criterion passed yet (more data needed)",
        Decision::Reject => "a criterion failed: keep production",
    };
    let _ = writeln!(
        out,
        "<p>{} <span class=\"note\">({})</span></p>",
        escape(meaning),
        escape(&input.verdict_origin)
    );
    if v.criteria.is_empty() {
        note(
            out,
            "No criteria configured: pass --criteria FILE (see deploy/criteria.example.toml).",
        );
    } else {
        let rows: Vec<Vec<Cell>> = v
            .criteria
            .iter()
            .map(|c| {
                let status = c.status.as_str();
                vec![
                    text(c.criterion.as_str()),
                    text(c.segment.clone().unwrap_or_else(|| "all traffic".into())),
                    num(opt(c.measured, svg::plain)),
                    num(c.interval.map_or_else(
                        || "-".to_owned(),
                        |i| format!("[{}, {}]", svg::plain(i.lo), svg::plain(i.hi)),
                    )),
                    num(svg::plain(c.threshold)),
                    Cell::Html(format!(
                        "<span class=\"status-{}\">{}</span>",
                        escape(status),
                        escape(status)
                    )),
                    text(c.reason.clone()),
                ]
            })
            .collect();
        table(
            out,
            "criteria",
            &[
                "criterion",
                "segment",
                "measured",
                "95% interval",
                "threshold",
                "status",
                "reason",
            ],
            &rows,
        );
        let failed = v
            .criteria
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count();
        let _ = writeln!(
            out,
            "<p class=\"meta\">{} criteria, {} failed.</p>",
            v.criteria.len(),
            failed
        );
    }
    let o = &input.summary.overall;
    let (p_acc, s_acc) = accuracies(o.ground_truth.as_ref());
    let rows = vec![
        vec![text("comparisons"), num(o.compared.to_string())],
        vec![
            text("agreement per request"),
            num(format!(
                "{} {}",
                opt(o.agreement.request.ratio, pct),
                interval_pct(o.agreement.request.ci95)
            )),
        ],
        vec![
            text("labelled requests"),
            num(o
                .ground_truth
                .as_ref()
                .map_or(0, |g| g.labeled_requests)
                .to_string()),
        ],
        vec![text("accuracy, production"), num(p_acc)],
        vec![text("accuracy, shadow"), num(s_acc)],
    ];
    table(out, "key-numbers", &["", "value"], &rows);
    out.push_str("</section>\n");
}

fn accuracies(truth: Option<&QualitySummary>) -> (String, String) {
    let of = |m: &shadow_core::evaluation::quality::ModelQuality| {
        m.classification
            .as_ref()
            .and_then(|c| c.accuracy)
            .map_or_else(
                || "-".to_owned(),
                |e| {
                    let (v, i) = estimate_pct(Some(e));
                    format!("{v} {i}")
                },
            )
    };
    match truth {
        Some(t) => (of(&t.production), of(&t.shadow)),
        None => ("-".into(), "-".into()),
    }
}

fn latency_section(out: &mut String, input: &ReportInput) {
    section_open(out, "latency", "Latency");
    let x = Axis {
        label: "latency (log scale)".into(),
        scale: Scale::Log,
        format: Format::Ms,
        range: None,
    };
    let y = Axis {
        range: Some((0.0, 1.0)),
        ..Axis::linear("fraction of requests at or below", Format::Percent)
    };
    let chart = match &input.latency_cdf {
        Part::Have(cdf) => {
            let line = |name: &str, color, points: &[(f64, f64)]| Line {
                name: name.into(),
                color,
                points: points.iter().map(|&(x, y)| (x, Some(y))).collect(),
                band: Vec::new(),
            };
            svg::line_chart(
                "latency-cdf",
                "Latency CDF, both models",
                &x,
                &y,
                &[
                    line("production", svg::PRODUCTION, &cdf.production),
                    line("shadow", svg::SHADOW, &cdf.shadow),
                ],
                "no latency measured yet",
            )
        }
        Part::Missing(why) => svg::message_chart("latency-cdf", "Latency CDF, both models", why),
    };
    out.push_str(&chart);
    let o = &input.summary.overall;
    let row = |name: &str, l: &super::input::LatencyView| {
        vec![
            text(name),
            num(l.count.to_string()),
            num(opt(l.p50_ms, ms)),
            num(opt(l.p90_ms, ms)),
            num(opt(l.p99_ms, ms)),
            num(opt(l.mean_ms, ms)),
            num(opt(l.max_ms, ms)),
        ]
    };
    table(
        out,
        "latency",
        &["model", "count", "p50", "p90", "p99", "mean", "max"],
        &[
            row("production", &o.latency_production),
            row("shadow", &o.latency_shadow),
        ],
    );
    note(
        out,
        "Production latency is measured on the wire (last request byte to last response byte); \
         the shadow's from sending the replay to the last byte of its answer.",
    );
    out.push_str("</section>\n");
}

fn errors_section(out: &mut String, o: &SliceView) {
    section_open(out, "errors", "Error rates");
    let classes: std::collections::BTreeSet<&String> = o
        .production_errors
        .keys()
        .chain(o.shadow_errors.keys())
        .collect();
    let rate = |n: u64| (o.compared > 0).then(|| n as f64 / o.compared as f64);
    let mut rows: Vec<(String, Vec<Option<f64>>)> = vec![(
        "all errors".into(),
        vec![
            o.error_rate.production.map(|e| e.value),
            o.error_rate.shadow.map(|e| e.value),
        ],
    )];
    for c in &classes {
        rows.push((
            (*c).clone(),
            vec![
                rate(o.production_errors.get(*c).copied().unwrap_or(0)),
                rate(o.shadow_errors.get(*c).copied().unwrap_or(0)),
            ],
        ));
    }
    out.push_str(&svg::bar_chart(
        "error-rates",
        "Error rate per comparison",
        Format::Percent,
        &[("production", svg::PRODUCTION), ("shadow", svg::SHADOW)],
        &rows,
        "no comparisons yet",
    ));
    let (p, pi) = estimate_pct(o.error_rate.production);
    let (s, si) = estimate_pct(o.error_rate.shadow);
    let mut table_rows = vec![vec![text("all"), num(p), num(pi), num(s), num(si)]];
    for c in classes {
        table_rows.push(vec![
            text(c.clone()),
            num(o.production_errors.get(c).copied().unwrap_or(0).to_string()),
            text(""),
            num(o.shadow_errors.get(c).copied().unwrap_or(0).to_string()),
            text(""),
        ]);
    }
    table(
        out,
        "errors",
        &[
            "error class",
            "production",
            "95% interval",
            "shadow",
            "95% interval",
        ],
        &table_rows,
    );
    let _ = writeln!(
        out,
        "<p class=\"meta\">Of {} comparisons, the shadow gave no usable answer to {}.</p>",
        o.compared, o.shadow_failed
    );
    out.push_str("</section>\n");
}

fn over_time_section(out: &mut String, ts: &Part<TimeSeriesSnapshot>) {
    section_open(out, "over-time", "Agreement and accuracy over time");
    let x = Axis::linear("time (UTC)", Format::Clock);
    let ratio_axis = |label: &str| Axis {
        range: Some((0.0, 1.0)),
        ..Axis::linear(label, Format::Percent)
    };
    match ts {
        Part::Missing(why) => {
            let why = format!("no time series: {why}");
            out.push_str(&svg::message_chart(
                "agreement-over-time",
                "Agreement over time",
                &why,
            ));
            out.push_str(&svg::message_chart(
                "accuracy-over-time",
                "Accuracy over time",
                &why,
            ));
            out.push_str(&svg::message_chart(
                "latency-over-time",
                "Latency p50 / p99 over time",
                &why,
            ));
        }
        Part::Have(ts) => {
            let at = |b: &Bucket| b.start_unix_ms as f64;
            let agreement = Line {
                name: "agreement".into(),
                color: svg::NEUTRAL,
                points: ts
                    .buckets
                    .iter()
                    .map(|b| (at(b), b.agreement.value))
                    .collect(),
                band: ts
                    .buckets
                    .iter()
                    .map(|b| (at(b), b.agreement.low.zip(b.agreement.high)))
                    .collect(),
            };
            out.push_str(&svg::line_chart(
                "agreement-over-time",
                "Agreement over time (95% interval shaded)",
                &x,
                &ratio_axis("requests agreeing"),
                &[agreement],
                "no comparison in the time series yet",
            ));
            let accuracy = |name: &str, color, pick: fn(&Bucket) -> Accuracy| Line {
                name: name.into(),
                color,
                points: ts.buckets.iter().map(|b| (at(b), pick(b).value)).collect(),
                band: ts
                    .buckets
                    .iter()
                    .map(|b| (at(b), pick(b).low.zip(pick(b).high)))
                    .collect(),
            };
            out.push_str(&svg::line_chart(
                "accuracy-over-time",
                "Accuracy against the ground truth over time (95% intervals shaded)",
                &x,
                &ratio_axis("labelled rows correct"),
                &[
                    accuracy("production", svg::PRODUCTION, |b| b.accuracy.production),
                    accuracy("shadow", svg::SHADOW, |b| b.accuracy.shadow),
                ],
                "no labelled request in the time series yet",
            ));
            let quantile = |name: &str, color, pick: fn(&Bucket) -> Option<f64>| Line {
                name: name.into(),
                color,
                points: ts.buckets.iter().map(|b| (at(b), pick(b))).collect(),
                band: Vec::new(),
            };
            out.push_str(&svg::line_chart(
                "latency-over-time",
                "Latency p50 / p99 over time",
                &x,
                &Axis::linear("latency", Format::Ms),
                &[
                    quantile("production p50", svg::PRODUCTION, |b| {
                        b.latency_ms.production.p50
                    }),
                    quantile("production p99", "#7fa6d6", |b| b.latency_ms.production.p99),
                    quantile("shadow p50", svg::SHADOW, |b| b.latency_ms.shadow.p50),
                    quantile("shadow p99", "#eda27f", |b| b.latency_ms.shadow.p99),
                ],
                "no latency in the time series yet",
            ));
            let totals = ts.buckets.iter().fold([0u64; 4], |t, b| {
                [
                    t[0] + b.seen,
                    t[1] + b.mirrored,
                    t[2] + b.compared,
                    t[3] + b.errors.shadow,
                ]
            });
            let _ = writeln!(
                out,
                "<p class=\"meta\">{} buckets of {} s (at most {} kept): {} exchanges seen, {} \
                 mirrored, {} compared, {} shadow errors.</p>",
                ts.buckets.len(),
                ts.interval_seconds,
                ts.capacity,
                totals[0],
                totals[1],
                totals[2],
                totals[3]
            );
        }
    }
    out.push_str("</section>\n");
}

/// A matrix of counts: rows × columns, cells shaded by their share of the row.
fn matrix(
    out: &mut String,
    class: &str,
    corner: &str,
    m: &BTreeMap<String, BTreeMap<String, u64>>,
) {
    let mut columns: Vec<&String> = m.values().flat_map(|r| r.keys()).collect();
    columns.sort();
    columns.dedup();
    let _ = write!(
        out,
        "<table class=\"{}\"><thead><tr><th>{}</th>",
        escape(class),
        escape(corner)
    );
    for c in &columns {
        let _ = write!(out, "<th>{}</th>", escape(c));
    }
    out.push_str("<th>total</th></tr></thead><tbody>");
    for (row, cells) in m {
        let total: u64 = cells.values().sum();
        let _ = write!(out, "<tr><th>{}</th>", escape(row));
        for c in &columns {
            let n = cells.get(*c).copied().unwrap_or(0);
            let share = if total > 0 {
                n as f64 / total as f64
            } else {
                0.0
            };
            let (r, g, b) = if row == *c {
                (46, 125, 50)
            } else {
                (198, 40, 40)
            };
            let _ = write!(
                out,
                "<td class=\"num\" style=\"background: rgba({r},{g},{b},{:.2})\">{n}</td>",
                share * 0.6
            );
        }
        let _ = write!(out, "<td class=\"num\">{total}</td></tr>");
    }
    out.push_str("</tbody></table>\n");
}

fn confusion_section(out: &mut String, o: &SliceView) {
    section_open(out, "confusion", "Confusion matrices");
    out.push_str("<h3>Production's label (rows) against the shadow's (columns)</h3>\n");
    if o.confusion.is_empty() {
        note(
            out,
            "No labels compared yet (the answers carry no class label).",
        );
    } else {
        matrix(out, "confusion", "production \\ shadow", &o.confusion);
    }
    out.push_str("<h3>Against the ground truth</h3>\n");
    let Some(truth) = o.ground_truth.as_ref().filter(|t| t.labeled_requests > 0) else {
        note(
            out,
            "No ground truth joined yet: POST labels to /api/labels (or give `replay --labels`).",
        );
        out.push_str("</section>\n");
        return;
    };
    let p = &truth.paired;
    table(
        out,
        "paired",
        &["", "shadow right", "shadow wrong"],
        &[
            vec![
                text("production right"),
                num(p.both.to_string()),
                num(p.first_only.to_string()),
            ],
            vec![
                text("production wrong"),
                num(p.second_only.to_string()),
                num(p.neither.to_string()),
            ],
        ],
    );
    if let Some(d) = truth.accuracy_difference {
        let (v, i) = estimate_pct(Some(d));
        let _ = writeln!(
            out,
            "<p>Accuracy difference shadow − production: <b>{}</b> {}{}</p>",
            escape(&v),
            escape(&i),
            truth.mcnemar.map_or_else(String::new, |m| format!(
                "; McNemar exact p = {}",
                escape(&svg::plain(m.p_exact))
            ))
        );
    }
    for (name, model) in [("production", &truth.production), ("shadow", &truth.shadow)] {
        let Some(c) = &model.classification else {
            continue;
        };
        let _ = writeln!(
            out,
            "<h3><span class=\"swatch-{name}\">{name}</span>: accuracy {}, macro-F1 {}</h3>",
            escape(&estimate_pct(c.accuracy).0),
            escape(
                &c.macro_f1
                    .map_or_else(|| "-".into(), |e| svg::plain(e.value))
            )
        );
        let rows: Vec<Vec<Cell>> = c
            .per_class
            .iter()
            .map(|(class, s)| {
                vec![
                    text(class.clone()),
                    num(s.support.to_string()),
                    num(s.predicted.to_string()),
                    num(estimate_pct(s.precision).0),
                    num(estimate_pct(s.recall).0),
                    num(opt(s.f1, svg::plain)),
                ]
            })
            .collect();
        table(
            out,
            "per-class",
            &["class", "true", "predicted", "precision", "recall", "F1"],
            &rows,
        );
    }
    out.push_str("</section>\n");
}

fn segments_section(out: &mut String, input: &ReportInput) {
    section_open(out, "segments", "Per segment");
    let seg = &input.summary.segments;
    let field_name = seg
        .field_pointer
        .as_deref()
        .map_or_else(|| "field".to_owned(), |p| format!("field {p}"));
    let mut rows = Vec::new();
    for (dimension, map) in [("path", &seg.path), (field_name.as_str(), &seg.field)] {
        for (value, s) in map {
            let (p_acc, s_acc) = accuracies(s.ground_truth.as_ref());
            rows.push(vec![
                text(dimension),
                text(value.clone()),
                num(s.compared.to_string()),
                num(format!(
                    "{} {}",
                    opt(s.agreement.request.ratio, pct),
                    interval_pct(s.agreement.request.ci95)
                )),
                num(p_acc),
                num(s_acc),
                num(estimate_pct(s.error_rate.production).0),
                num(estimate_pct(s.error_rate.shadow).0),
                num(opt(s.latency_production.p99_ms, ms)),
                num(opt(s.latency_shadow.p99_ms, ms)),
            ]);
        }
    }
    if rows.is_empty() {
        note(out, "No segment measured yet.");
    } else {
        table(
            out,
            "segments",
            &[
                "segment",
                "value",
                "compared",
                "agreement",
                "accuracy production",
                "accuracy shadow",
                "errors production",
                "errors shadow",
                "p99 production",
                "p99 shadow",
            ],
            &rows,
        );
    }
    out.push_str("</section>\n");
}

fn resources_section(out: &mut String, input: &ReportInput) {
    section_open(out, "resources", "Resource usage");
    let ResourceMeasures {
        cpu_seconds_per_request: cpu,
        rss_bytes: rss,
    } = input.resources;
    let ratio = |p: Option<ModelPair<f64>>| {
        p.and_then(|p| (p.production > 0.0).then(|| p.shadow / p.production))
    };
    out.push_str(&svg::bar_chart(
        "resources",
        "Shadow's usage relative to production's (production = 100%)",
        Format::Percent,
        &[("shadow ÷ production", svg::SHADOW)],
        &[
            ("CPU per request".into(), vec![ratio(cpu)]),
            ("resident memory".into(), vec![ratio(rss)]),
        ],
        "no resource usage measured (set [resources] so shadowd finds both model servers)",
    ));
    let mib = |b: f64| format!("{:.1} MiB", b / (1024.0 * 1024.0));
    let cpu_ms = |s: f64| format!("{:.3} ms", s * 1e3);
    let mut rows = vec![
        vec![
            text("CPU per request"),
            num(opt(cpu.map(|c| c.production), cpu_ms)),
            num(opt(cpu.map(|c| c.shadow), cpu_ms)),
        ],
        vec![
            text("resident memory"),
            num(opt(rss.map(|r| r.production), mib)),
            num(opt(rss.map(|r| r.shadow), mib)),
        ],
    ];
    if let Some(sample) = &input.resource_sample {
        let cpu_total = |u: Option<&crate::resources::ProcessUsage>| {
            opt(u.map(|u| u.cpu_seconds), |s| format!("{s:.2} s"))
        };
        rows.push(vec![
            text("CPU seconds this run"),
            num(cpu_total(sample.production.as_ref())),
            num(cpu_total(sample.shadow.as_ref())),
        ]);
        let _ = writeln!(
            out,
            "<p class=\"meta\">shadowd itself: {:.2} CPU seconds, {} resident, over {:.0} s \
             sampled.</p>",
            sample.shadowd.cpu_seconds,
            escape(&mib(sample.shadowd.rss_bytes as f64)),
            sample.elapsed_seconds
        );
    }
    table(out, "resources", &["", "production", "shadow"], &rows);
    out.push_str("</section>\n");
}

fn capture_section(out: &mut String, capture: &Part<CaptureHealth>) {
    section_open(out, "capture", "Capture health");
    match capture {
        Part::Missing(why) => {
            out.push_str(&svg::message_chart(
                "capture-health",
                "Lost and skipped exchanges",
                why,
            ));
        }
        Part::Have(c) => {
            let mut rows: Vec<(String, Vec<Option<f64>>)> = Vec::new();
            for (stage, n) in c.dropped_by_stage.iter().filter(|(_, n)| **n > 0.0) {
                rows.push((format!("dropped: {stage}"), vec![Some(*n)]));
            }
            for (reason, n) in c.h2_streams_lost.iter().filter(|(_, n)| **n > 0.0) {
                rows.push((format!("h2 stream lost: {reason}"), vec![Some(*n)]));
            }
            for (reason, n) in c.skipped_by_reason.iter().filter(|(_, n)| **n > 0.0) {
                rows.push((format!("skipped: {reason}"), vec![Some(*n)]));
            }
            out.push_str(&svg::bar_chart(
                "capture-health",
                "Lost and skipped exchanges",
                Format::Plain,
                &[("count", svg::NEUTRAL)],
                &rows,
                "nothing lost or skipped",
            ));
            let seen: f64 = c.exchanges_by_outcome.values().sum();
            let mirrored: f64 = c.mirrored_by_result.values().sum();
            let skipped: f64 = c.skipped_by_reason.values().sum();
            let dropped: f64 = c.dropped_by_stage.values().sum();
            let mut rows = vec![
                vec![
                    text("segments captured"),
                    num(svg::plain(c.captured_segments)),
                ],
                vec![text("exchanges seen"), num(svg::plain(seen))],
                vec![text("mirrored to the shadow"), num(svg::plain(mirrored))],
                vec![text("skipped (not mirrored)"), num(svg::plain(skipped))],
                vec![text("lost before the pipeline"), num(svg::plain(dropped))],
                vec![
                    text("discrepancy log lines dropped"),
                    num(svg::plain(c.discrepancy_log_dropped)),
                ],
            ];
            for (name, map) in [
                ("exchanges", &c.exchanges_by_outcome),
                ("mirrored", &c.mirrored_by_result),
                ("kernel packets", &c.kernel_packets),
            ] {
                // Zero series are exported for every known label: only what happened.
                for (k, n) in map.iter().filter(|(_, n)| **n > 0.0) {
                    rows.push(vec![text(format!("{name}: {k}")), num(svg::plain(*n))]);
                }
            }
            table(out, "capture", &["counter", "value"], &rows);
        }
    }
    out.push_str("</section>\n");
}

/// Compact JSON of a value (`-` when absent).
fn json(v: Option<&Value>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn side_summary(s: &super::input::SideView) -> String {
    let mut parts = Vec::new();
    if let Some(status) = s.status {
        parts.push(format!("HTTP {status}"));
    }
    if let Some(e) = &s.error {
        parts.push(format!("error {}", json(Some(e))));
    }
    if let Some(l) = s.latency_ms {
        parts.push(ms(l));
    }
    parts.join(", ")
}

fn discrepancies_section(out: &mut String, input: &ReportInput) {
    section_open(out, "discrepancies", "Top discrepancies");
    let kinds = &input.summary.overall.discrepancies;
    if !kinds.is_empty() {
        let rows: Vec<Vec<Cell>> = kinds
            .iter()
            .map(|(k, n)| vec![text(k.clone()), num(n.to_string())])
            .collect();
        table(out, "discrepancy-kinds", &["kind", "comparisons"], &rows);
    }
    match &input.discrepancies {
        Part::Missing(why) => note(out, why),
        Part::Have(d) => discrepancy_table(out, d),
    }
    out.push_str("</section>\n");
}

fn discrepancy_table(out: &mut String, d: &Discrepancies) {
    let _ = writeln!(
        out,
        "<p class=\"meta\">{} of {} lines of {} (label disagreements first, then the most \
         differing fields, then the newest){}. Values are redacted as in the log.</p>",
        d.top.len(),
        d.lines,
        escape(&d.path),
        if d.unreadable > 0 {
            format!("; {} lines unreadable", d.unreadable)
        } else {
            String::new()
        }
    );
    if d.top.is_empty() {
        note(out, "The discrepancy log holds no discrepancy.");
        return;
    }
    out.push_str(
        "<table id=\"discrepancy-table\" class=\"discrepancies\"><thead><tr><th>#</th>\
         <th>request</th><th>production</th><th>shadow</th><th>kinds</th><th>field diff</th>\
         </tr></thead><tbody>",
    );
    for (i, r) in d.top.iter().enumerate() {
        discrepancy_row(out, i + 1, r);
    }
    out.push_str("</tbody></table>\n");
}

fn discrepancy_row(out: &mut String, n: usize, r: &DiscrepancyRecord) {
    let agreement = match r.agreement {
        Some(false) => " · labels disagree",
        Some(true) => " · labels agree",
        None => "",
    };
    let noise = if r.noise == Some(true) {
        " · production noise"
    } else {
        ""
    };
    let _ = write!(
        out,
        "<tr class=\"discrepancy\"><td class=\"num\">{n}</td><td><b>{} {}</b><br/>{}{}<br/>{}</td>\
         <td>{}<pre>{}</pre></td><td>{}<pre>{}</pre></td><td>{}{}</td><td>",
        escape(&r.request.method),
        escape(&r.request.path),
        escape(r.protocol.as_deref().unwrap_or("")),
        escape(agreement),
        escape(&r.time),
        escape(&side_summary(&r.production)),
        escape(&json(r.production.prediction.as_ref())),
        escape(&side_summary(&r.shadow)),
        escape(&json(r.shadow.prediction.as_ref())),
        escape(&r.discrepancies.join(", ")),
        escape(noise),
    );
    if r.diff.is_empty() {
        out.push_str("(no field differs)");
    } else {
        out.push_str(
            "<table class=\"diff\"><thead><tr><th>field</th><th>kind</th><th>production</th>\
             <th>shadow</th></tr></thead><tbody>",
        );
        for d in &r.diff {
            let kind = d
                .kind
                .as_str()
                .map_or_else(|| d.kind.to_string(), str::to_owned);
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td><pre>{}</pre></td><td><pre>{}</pre></td></tr>",
                escape(&d.path),
                escape(&kind),
                escape(&pretty(d.production.as_ref())),
                escape(&pretty(d.shadow.as_ref())),
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</td></tr>");
}

/// Indented JSON of a value (`-` when absent), cut at 2000 characters.
fn pretty(v: Option<&Value>) -> String {
    let s = v.map_or_else(
        || "-".to_owned(),
        |v| serde_json::to_string_pretty(v).unwrap_or_default(),
    );
    if s.chars().count() > 2000 {
        s.chars().take(2000).chain("…".chars()).collect()
    } else {
        s
    }
}
