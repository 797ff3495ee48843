//! Draws a [`TopState`] (pure: the same state draws the same screen; tested on ratatui's
//! `TestBackend`).

use super::state::{Estimate, ModelView, TopState};
use crate::sinks::recent_discrepancies::{RecentDiscrepancy, RecentSide};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};

/// The whole screen.
pub fn render(state: &TopState, frame: &mut Frame) {
    let [title, top, models, discrepancies] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(8),
        Constraint::Length(5),
        Constraint::Min(3),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(title_line(state)), title);
    let [traffic, quality] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
    render_traffic(state, frame, traffic);
    render_quality(state, frame, quality);
    render_models(state, frame, models);
    render_discrepancies(state, frame, discrepancies);
}

fn title_line(state: &TopState) -> Line<'static> {
    let mut spans = vec![
        Span::styled("shadowd top", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!("  {}", state.from)),
    ];
    match (&state.unreachable, &state.updated) {
        (Some(why), _) => spans.push(Span::styled(
            format!(
                "  UNREACHABLE ({} failed in a row, retrying every second): {why}",
                state.failures
            ),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        )),
        (None, Some(at)) => spans.push(Span::raw(format!("  updated {at} UTC"))),
        (None, None) => spans.push(Span::raw("  connecting...")),
    }
    spans.push(Span::styled(
        "  (q quits)",
        Style::new().fg(Color::DarkGray),
    ));
    Line::from(spans)
}

fn block(title: &str) -> Block<'_> {
    Block::new().borders(Borders::ALL).title(title)
}

/// `12.5/s` or `-` before the second reading.
fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{r:.1}/s"))
}

fn render_traffic(state: &TopState, frame: &mut Frame, area: Rect) {
    let lines = match &state.latest {
        None => vec![Line::raw("no reading yet")],
        Some(r) => {
            let c = &r.counters;
            let row = |name: &str, total: u64, per_s: Option<f64>| {
                Line::raw(format!("{name:<9} total {total:<10} {:>10}", rate(per_s)))
            };
            let rates = state.rates;
            let by = |m: &std::collections::BTreeMap<String, u64>| {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut lines = vec![
                row("seen", c.seen, rates.map(|r| r.seen)),
                row("mirrored", c.mirrored, rates.map(|r| r.mirrored)),
                row("skipped", c.skipped, rates.map(|r| r.skipped)),
                Line::raw(format!("dropped   total {}", c.dropped())),
            ];
            if !c.skipped_by_reason.is_empty() {
                lines.push(Line::raw(format!(
                    "skipped by reason: {}",
                    by(&c.skipped_by_reason)
                )));
            }
            if !c.dropped_by_stage.is_empty() {
                lines.push(Line::styled(
                    format!("dropped by stage: {}", by(&c.dropped_by_stage)),
                    Style::new().fg(Color::Yellow),
                ));
            }
            lines
        }
    };
    frame.render_widget(Paragraph::new(lines).block(block(" Traffic ")), area);
}

/// `0.962 [0.906, 0.985]`, or `-` without samples.
fn estimate(e: &Estimate) -> String {
    match (e.value, e.interval) {
        (Some(v), Some((lo, hi))) => format!("{v:.3} [{lo:.3}, {hi:.3}]"),
        (Some(v), None) => format!("{v:.3}"),
        (None, _) => "-".into(),
    }
}

fn render_quality(state: &TopState, frame: &mut Frame, area: Rect) {
    let lines = match &state.latest {
        None => vec![Line::raw("no reading yet")],
        Some(r) => {
            let s = &r.summary;
            let breaker_style = match s.breaker.as_str() {
                "closed" => Style::new().fg(Color::Green),
                "open" => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
                _ => Style::new().fg(Color::Yellow),
            };
            let accuracy = |m: &ModelView| {
                let n = m.accuracy.samples.unwrap_or(0);
                format!("{} (n={n})", estimate(&m.accuracy))
            };
            vec![
                Line::raw(format!(
                    "agreement  {} of {} compared",
                    estimate(&s.agreement),
                    s.agreement.samples.unwrap_or(0)
                )),
                Line::raw(format!("accuracy   production {}", accuracy(&s.production))),
                Line::raw(format!("           shadow     {}", accuracy(&s.shadow))),
                Line::from(vec![
                    Span::raw("breaker    "),
                    Span::styled(s.breaker.clone(), breaker_style),
                    Span::raw(format!(
                        "   in flight {}   queued {}/{}",
                        s.in_flight, s.queued, s.queue_capacity
                    )),
                ]),
                Line::raw(format!(
                    "verdict    {}",
                    s.verdict.as_deref().unwrap_or("-").to_uppercase()
                )),
            ]
        }
    };
    frame.render_widget(Paragraph::new(lines).block(block(" Quality ")), area);
}

fn render_models(state: &TopState, frame: &mut Frame, area: Rect) {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.2}"));
    let rows: Vec<Row> = match &state.latest {
        None => Vec::new(),
        Some(r) => [
            ("production", &r.summary.production),
            ("shadow", &r.summary.shadow),
        ]
        .into_iter()
        .map(|(name, m)| {
            Row::new(vec![
                name.to_owned(),
                ms(m.p50_ms),
                ms(m.p99_ms),
                m.latency_count.to_string(),
                estimate(&m.error_rate),
            ])
        })
        .collect(),
    };
    let table = Table::new(
        rows,
        [
            Constraint::Length(11),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(9),
            Constraint::Min(20),
        ],
    )
    .header(
        Row::new(vec!["model", "p50 ms", "p99 ms", "answers", "error rate"])
            .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .block(block(" Models "));
    frame.render_widget(table, area);
}

/// `200 [cat]`, `timeout`, ...
fn side(s: &RecentSide) -> String {
    let mut out = match (s.status, &s.error) {
        (Some(status), _) => status.to_string(),
        (None, Some(e)) => e.clone(),
        (None, None) => "-".into(),
    };
    if !s.labels.is_empty() {
        out.push_str(&format!(" [{}]", s.labels.join(",")));
    }
    out
}

fn discrepancy_line(d: &RecentDiscrepancy) -> Line<'static> {
    // `2026-11-30T17:02:03.123Z` → `17:02:03`.
    let time = d.time.get(11..19).unwrap_or(&d.time).to_owned();
    let noise = match d.noise {
        Some(true) => " (noise)",
        _ => "",
    };
    Line::raw(format!(
        "{time} {} {} {}  production {}  shadow {}  {}{noise}",
        d.protocol,
        d.method,
        d.path,
        side(&d.production),
        side(&d.shadow),
        d.kinds.join(",")
    ))
}

fn render_discrepancies(state: &TopState, frame: &mut Frame, area: Rect) {
    let shown = usize::from(area.height.saturating_sub(2));
    let lines: Vec<Line> = match &state.latest {
        Some(r) if !r.discrepancies.is_empty() => r
            .discrepancies
            .iter()
            .rev()
            .take(shown)
            .map(discrepancy_line)
            .collect(),
        Some(_) => vec![Line::raw("none yet")],
        None => Vec::new(),
    };
    frame.render_widget(
        Paragraph::new(lines).block(block(" Last discrepancies (newest first) ")),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::super::state::{Counters, Rates, Reading, SummaryView};
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use std::time::Instant;

    /// The screen as text, one string per row.
    fn screen(state: &TopState, width: u16, height: u16) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| render(state, f)).unwrap();
        let buffer = terminal.backend().buffer();
        (0..height)
            .map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect())
            .collect()
    }

    fn has(rows: &[String], text: &str) -> bool {
        rows.iter().any(|r| r.contains(text))
    }

    fn reading() -> Reading {
        Reading {
            counters: Counters {
                seen: 120,
                mirrored: 110,
                skipped: 10,
                skipped_by_reason: [("sampled_out".to_string(), 10)].into(),
                dropped_by_stage: [("ring".to_string(), 3)].into(),
            },
            summary: SummaryView {
                compared: 105,
                agreement: Estimate {
                    value: Some(0.962),
                    interval: Some((0.906, 0.985)),
                    samples: Some(105),
                },
                production: ModelView {
                    p50_ms: Some(3.1),
                    p99_ms: Some(9.8),
                    latency_count: 110,
                    error_rate: Estimate {
                        value: Some(0.0),
                        interval: Some((0.0, 0.034)),
                        samples: None,
                    },
                    accuracy: Estimate {
                        value: Some(0.925),
                        interval: Some((0.8, 0.97)),
                        samples: Some(40),
                    },
                },
                shadow: ModelView {
                    p50_ms: Some(3.5),
                    p99_ms: None,
                    latency_count: 108,
                    ..ModelView::default()
                },
                breaker: "open".into(),
                in_flight: 2,
                queued: 7,
                queue_capacity: 1024,
                verdict: Some("hold".into()),
            },
            discrepancies: vec![RecentDiscrepancy {
                time: "2026-11-30T17:02:03.123Z".into(),
                protocol: "http1".into(),
                method: "POST".into(),
                path: "/v2/models/m/infer".into(),
                production: RecentSide {
                    status: Some(200),
                    labels: vec!["cat".into()],
                    ..RecentSide::default()
                },
                shadow: RecentSide {
                    status: None,
                    error: Some("timeout".into()),
                    ..RecentSide::default()
                },
                kinds: vec!["status".into(), "label".into()],
                diff: Vec::new(),
                noise: None,
            }],
        }
    }

    #[test]
    fn a_reading_shows_counts_rates_quality_latency_breaker_and_discrepancies() {
        let mut state = TopState::new("http://127.0.0.1:9464");
        state.update(Ok(reading()), Instant::now(), "17:02:04");
        state.rates = Some(Rates {
            seen: 12.0,
            mirrored: 11.5,
            skipped: 0.5,
        });
        let rows = screen(&state, 160, 30);
        let all = rows.join("\n");
        for text in [
            "http://127.0.0.1:9464",
            "updated 17:02:04 UTC",
            "seen      total 120",
            "12.0/s",
            "mirrored  total 110",
            "11.5/s",
            "skipped   total 10",
            "dropped   total 3",
            "dropped by stage: ring 3",
            "skipped by reason: sampled_out 10",
            "agreement  0.962 [0.906, 0.985] of 105 compared",
            "accuracy   production 0.925 [0.800, 0.970] (n=40)",
            "shadow     - (n=0)",
            "breaker    open",
            "queued 7/1024",
            "verdict    HOLD",
            "17:02:03 http1 POST /v2/models/m/infer  production 200 [cat]  shadow timeout  status,label",
        ] {
            assert!(has(&rows, text), "{text:?} not on screen:\n{all}");
        }
        // The models table: production's p50 and p99, the shadow's missing p99.
        let production = rows.iter().find(|r| r.contains("│production")).unwrap();
        assert!(
            production.contains("3.10") && production.contains("9.80"),
            "{production}"
        );
        assert!(production.contains("0.000 [0.000, 0.034]"), "{production}");
        let shadow = rows.iter().find(|r| r.contains("│shadow ")).unwrap();
        assert!(
            shadow.contains("3.50") && shadow.contains(" - "),
            "{shadow}"
        );
    }

    #[test]
    fn before_any_reading_and_when_unreachable_it_says_so() {
        let mut state = TopState::new("http://127.0.0.1:1");
        let rows = screen(&state, 100, 24);
        assert!(has(&rows, "connecting..."), "{}", rows.join("\n"));
        assert!(has(&rows, "no reading yet"));
        state.update(Err("connection refused".into()), Instant::now(), "x");
        state.update(Err("connection refused".into()), Instant::now(), "x");
        let rows = screen(&state, 160, 24);
        assert!(
            has(
                &rows,
                "UNREACHABLE (2 failed in a row, retrying every second): connection refused"
            ),
            "{}",
            rows.join("\n")
        );
        // Rates before a second reading are a dash; no discrepancies is said.
        let mut state = TopState::new("http://x");
        let mut r = reading();
        r.discrepancies.clear();
        state.update(Ok(r), Instant::now(), "00:00:00");
        let rows = screen(&state, 160, 24);
        assert!(has(&rows, "none yet"));
        let mirrored = rows
            .iter()
            .find(|r| r.contains("mirrored  total 110"))
            .unwrap();
        assert!(
            mirrored.contains(" - ") && !mirrored.contains("/s"),
            "{mirrored}"
        );
    }

    #[test]
    fn a_small_terminal_does_not_panic() {
        let mut state = TopState::new("http://127.0.0.1:9464");
        state.update(Ok(reading()), Instant::now(), "17:02:04");
        for (w, h) in [(1, 1), (20, 5), (80, 24)] {
            screen(&state, w, h);
        }
    }
}
