//! The report page: well-formed (parsed as XML), every section and chart present, every data
//! string escaped, missing parts saying why, and `--state` mode.

use super::html::{CHART_IDS, render};
use super::input::*;
use super::*;
use quick_xml::events::Event;
use shadow_core::criteria::{CriterionName, CriterionResult, Decision, ModelPair, Status};
use shadow_core::stats::proportion::Interval;
use shadow_core::timeseries::{Accuracy, Bucket, PerModel, Quantiles, Ratio, TimeSeriesSnapshot};
use std::collections::BTreeMap;

const EVIL: &str = "<script>alert('x')</script>&\"";

/// Elements (name, attributes) of a page parsed as XML; panics unless it is well-formed.
fn elements(page: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let mut reader = quick_xml::Reader::from_str(page);
    reader.config_mut().check_end_names = true;
    let mut out = Vec::new();
    let mut depth = 0i64;
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.expect("a well-formed attribute");
                        (
                            String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                            String::from_utf8_lossy(&a.value).into_owned(),
                        )
                    })
                    .collect();
                out.push((name, attrs));
            }
            Ok(Event::End(_)) => depth += 1,
            Ok(_) => {}
            Err(e) => panic!(
                "not well-formed at byte {}: {e}\n{}",
                reader.buffer_position(),
                &page[..(reader.buffer_position() as usize).min(page.len())]
                    .chars()
                    .rev()
                    .take(300)
                    .collect::<String>()
                    .chars()
                    .rev()
                    .collect::<String>()
            ),
        }
    }
    assert!(depth > 0);
    out
}

fn slice(compared: u64) -> SliceView {
    let mut confusion = BTreeMap::new();
    confusion.insert(
        "1".to_owned(),
        BTreeMap::from([("1".to_owned(), 90), (EVIL.to_owned(), 3)]),
    );
    SliceView {
        compared,
        shadow_failed: 1,
        agreement: AgreementSummaryView {
            request: AgreementView {
                samples: compared,
                agreed: compared - 3,
                ratio: Some(0.97),
                ci95: Some((0.91, 0.99)),
            },
            row: AgreementView::default(),
        },
        discrepancies: BTreeMap::from([("label".to_owned(), 3)]),
        shadow_errors: BTreeMap::from([("timeout".to_owned(), 1)]),
        confusion,
        latency_production: LatencyView {
            count: compared,
            p50_ms: Some(2.0),
            p99_ms: Some(9.0),
            ..LatencyView::default()
        },
        ..SliceView::default()
    }
}

fn bucket(minute: u64, agreement: Option<f64>) -> Bucket {
    let ratio = |v: Option<f64>| Ratio {
        value: v,
        low: v.map(|v| v - 0.05),
        high: v.map(|v| (v + 0.03).min(1.0)),
    };
    let accuracy = |v| {
        let r = ratio(v);
        Accuracy {
            labelled: 10,
            correct: 9,
            value: r.value,
            low: r.low,
            high: r.high,
        }
    };
    Bucket {
        start_unix_ms: 1_764_518_400_000 + minute * 60_000,
        seen: 10,
        mirrored: 9,
        skipped: 1,
        compared: 9,
        agreed: 8,
        agreement: ratio(agreement),
        accuracy: PerModel {
            production: accuracy(Some(0.8)),
            shadow: accuracy(Some(0.9)),
        },
        latency_ms: PerModel {
            production: Quantiles {
                p50: Some(2.0),
                p99: Some(8.0),
            },
            shadow: Quantiles::default(),
        },
        errors: PerModel {
            production: 0,
            shadow: 1,
        },
    }
}

/// A report with every part present and hostile strings wherever data flows in.
fn full_input() -> ReportInput {
    let mut summary = SummaryView {
        overall: slice(100),
        ..SummaryView::default()
    };
    summary.segments.path.insert(EVIL.to_owned(), slice(40));
    let record: DiscrepancyRecord = serde_json::from_value(serde_json::json!({
        "time": "2026-11-30T10:00:00.000Z", "protocol": "http1",
        "request": {"method": "POST", "path": format!("/v2/{EVIL}")},
        "production": {"status": 200, "latency_ms": 1.5, "prediction": {"labels": ["1"]}},
        "shadow": {"status": 200, "latency_ms": 2.5, "prediction": {"labels": [EVIL]}},
        "agreement": false, "discrepancies": ["label"],
        "diff": [{"path": "/outputs/0/data/0", "kind": "value", "production": 1, "shadow": EVIL},
                 {"path": "/secret", "kind": "value", "production": "[REDACTED]", "shadow": "[REDACTED]"}]
    }))
    .unwrap();
    ReportInput {
        source: format!("http://127.0.0.1:9464/{EVIL}"),
        generated_unix_ms: 1_764_518_400_000,
        verdict: Verdict {
            decision: Decision::Reject,
            criteria: vec![CriterionResult {
                criterion: CriterionName::MinAgreement,
                status: Status::Fail,
                measured: Some(0.5),
                interval: Some(Interval { lo: 0.4, hi: 0.6 }),
                threshold: 0.9,
                reason: EVIL.to_owned(),
                segment: Some(format!("path={EVIL}")),
            }],
        },
        verdict_origin: "judged".into(),
        summary,
        latency_cdf: Part::Have(ModelPair {
            production: vec![(1.0, 0.0), (2.0, 0.5), (8.0, 1.0)],
            shadow: vec![(1.5, 0.0), (3.0, 0.6), (12.0, 1.0)],
        }),
        timeseries: Part::Have(TimeSeriesSnapshot {
            interval_seconds: 60,
            capacity: 1440,
            buckets: (0..5).map(|m| bucket(m, (m != 2).then_some(0.9))).collect(),
        }),
        capture: Part::Have(CaptureHealth {
            captured_segments: 1000.0,
            dropped_by_stage: BTreeMap::from([(EVIL.to_owned(), 2.0)]),
            skipped_by_reason: BTreeMap::from([
                ("queue_full".to_owned(), 5.0),
                ("sampled_out".to_owned(), 0.0),
            ]),
            ..CaptureHealth::default()
        }),
        resources: ResourceMeasures {
            cpu_seconds_per_request: Some(ModelPair {
                production: 0.001,
                shadow: 0.0015,
            }),
            rss_bytes: Some(ModelPair {
                production: 100e6,
                shadow: 150e6,
            }),
        },
        resource_sample: None,
        discrepancies: Part::Have(Discrepancies {
            path: "/var/log/d.jsonl".into(),
            lines: 3,
            unreadable: 0,
            top: vec![record],
        }),
    }
}

#[test]
fn the_page_is_well_formed_with_every_section_and_chart_and_nothing_external() {
    let page = render(&full_input());
    let elements = elements(&page);
    let ids: Vec<&str> = elements
        .iter()
        .filter_map(|(_, a)| a.get("id").map(String::as_str))
        .collect();
    for id in [
        "verdict",
        "decision",
        "latency",
        "errors",
        "over-time",
        "confusion",
        "segments",
        "resources",
        "capture",
        "discrepancies",
        "discrepancy-table",
    ] {
        assert!(ids.contains(&id), "no #{id} in {ids:?}");
    }
    let charts: Vec<&str> = elements
        .iter()
        .filter(|(n, _)| n == "svg")
        .filter_map(|(_, a)| a.get("data-chart").map(String::as_str))
        .collect();
    assert_eq!(charts, CHART_IDS, "every chart once, in order");
    // Every chart drew something: lines for the line charts, bars for the bar charts.
    assert!(elements.iter().any(|(n, _)| n == "polyline"));
    assert!(
        elements
            .iter()
            .any(|(n, a)| n == "path" && a["class"] == "band")
    );
    assert!(elements.iter().any(|(n, _)| n == "rect"));
    for (name, attrs) in &elements {
        assert!(
            !["script", "img", "link", "iframe", "object", "embed"].contains(&name.as_str()),
            "<{name}> in the page"
        );
        for key in ["src", "href", "xlink:href"] {
            assert!(!attrs.contains_key(key), "<{name} {key}=...>");
        }
        assert!(
            !attrs.keys().any(|k| k.starts_with("on")),
            "<{name}> has a handler"
        );
    }
    assert!(page.contains("<span class=\"verdict REJECT\" id=\"decision\">REJECT</span>"));
    assert!(page.contains("skipped: queue_full"));
    assert!(!page.contains("sampled_out"), "zero counters are left out");
    assert!(page.contains("@media print"));
    assert!(page.contains("size: A4"));
}

#[test]
fn every_string_from_data_is_escaped() {
    let page = render(&full_input());
    assert!(!page.contains("<script"), "raw markup from data");
    assert!(!page.contains(EVIL));
    let escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;";
    // Source, criterion reason and segment, confusion class, segment path, stage, request
    // path, prediction and diff value (the last two inside JSON, escaped once more).
    assert!(
        page.matches(escaped).count() >= 7,
        "{}",
        page.matches(escaped).count()
    );
    assert!(page.contains("[REDACTED]"));
}

#[test]
fn missing_parts_say_why_in_place_of_their_charts() {
    let mut input = full_input();
    input.latency_cdf = Part::Missing("this state file holds no latency".into());
    input.timeseries = Part::Missing("this shadowd serves no time series".into());
    input.capture = Part::Missing("a state file holds no capture counters".into());
    input.discrepancies = Part::Missing("No discrepancy log given".into());
    input.resources = ResourceMeasures::default();
    let page = render(&input);
    let charts = elements(&page)
        .into_iter()
        .filter(|(n, _)| n == "svg")
        .count();
    assert_eq!(charts, CHART_IDS.len(), "each chart is still there");
    for why in [
        "this state file holds no latency",
        "no time series: this shadowd serves no time series",
        "a state file holds no capture counters",
        "No discrepancy log given",
        "no resource usage measured",
    ] {
        assert!(page.contains(why), "{why}");
    }
    assert!(!page.contains("discrepancy-table"));
}

#[test]
fn state_mode_reports_what_the_state_file_holds() {
    let telemetry = std::sync::Arc::new(crate::telemetry::Recorder::new());
    let config = std::sync::Arc::new(crate::config::test_config(""));
    let status = crate::mirror::Mirror::new(config, telemetry).status();
    let state = crate::decision::StateFile {
        saved_at_unix: 1_764_518_400,
        evaluation: status.state(),
        resources: ResourceMeasures::default(),
        timeseries: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    crate::decision::save_state(&path, &state).unwrap();
    let input = from_state(&path, None).unwrap();
    assert_eq!(input.verdict.decision, Decision::Hold);
    assert!(input.verdict.criteria.is_empty());
    assert!(
        input.source.contains("2025-11-30 16:00:00"),
        "{}",
        input.source
    );
    assert!(matches!(&input.latency_cdf, Part::Missing(m) if m.contains("no latency")));
    assert!(matches!(&input.timeseries, Part::Missing(m) if m.contains("no time series")));
    assert!(matches!(&input.capture, Part::Missing(m) if m.contains("--from")));
    let page = render(&input);
    assert_eq!(
        elements(&page).iter().filter(|(n, _)| n == "svg").count(),
        CHART_IDS.len()
    );
    assert!(page.contains("No criteria configured"));

    // A state file with the time series (and criteria given) shows both.
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["timeseries"] = serde_json::json!({
        "interval_seconds": 60, "capacity": 3, "buckets": []
    });
    std::fs::write(&path, json.to_string()).unwrap();
    let criteria_path = dir.path().join("c.toml");
    let criteria = load_criteria_text("min_samples = 10\n", &criteria_path);
    let input = from_state(&path, Some((criteria, criteria_path.as_path()))).unwrap();
    assert!(matches!(&input.timeseries, Part::Have(ts) if ts.capacity == 3));
    assert_eq!(input.verdict.criteria.len(), 1);
    assert_eq!(input.verdict.criteria[0].status, Status::NotEnoughData);
    assert!(input.verdict_origin.contains("c.toml"));

    let missing = from_state(&dir.path().join("none.json"), None).unwrap_err();
    assert_eq!(super::super::exit_code(&missing), super::super::EXIT_USAGE);
}

fn load_criteria_text(text: &str, path: &std::path::Path) -> Criteria {
    super::super::verdict::parse_criteria(text, path).unwrap()
}

#[test]
fn each_chart_is_well_formed_on_its_own() {
    let line = svg::Line {
        name: EVIL.into(),
        color: svg::PRODUCTION,
        points: vec![(1.0, Some(0.5)), (2.0, None), (3.0, Some(0.7))],
        band: vec![(1.0, Some((0.4, 0.6))), (3.0, Some((0.6, 0.8)))],
    };
    let charts = [
        svg::line_chart(
            "a",
            EVIL,
            &svg::Axis::linear(EVIL, svg::Format::Plain),
            &svg::Axis::linear("y", svg::Format::Percent),
            &[line],
            "empty",
        ),
        svg::line_chart(
            "b",
            "t",
            &svg::Axis::linear("x", svg::Format::Plain),
            &svg::Axis::linear("y", svg::Format::Plain),
            &[],
            EVIL,
        ),
        svg::bar_chart(
            "c",
            "t",
            svg::Format::Plain,
            &[(EVIL, "#000")],
            &[(EVIL.into(), vec![Some(3.0), None])],
            "empty",
        ),
        svg::message_chart("d", EVIL, EVIL),
    ];
    for chart in &charts {
        assert!(!chart.contains("<script"));
        let e = elements(chart);
        assert_eq!(e[0].0, "svg", "{chart}");
    }
    assert!(charts[1].contains("no-data"), "no points: the message");
}
