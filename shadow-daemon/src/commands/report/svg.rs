//! Hand-built inline SVG charts for the report: line charts (with shaded interval bands, on a
//! linear or log axis), horizontal grouped bar charts, and a placeholder that says why a chart
//! has no data. Every string is escaped ([`escape`]) and every chart is one well-formed `<svg>`
//! element with `data-chart="<id>"`.
//!
//! Why not `plotters`: the report needs three small chart kinds; building them by hand is a
//! few hundred lines with no new dependency in the daemon, and it keeps the markup ours (CSS
//! classes for print, escaping of every label, `data-chart` ids the tests look for, no
//! embedded fonts).

use super::markup::escape;
use std::fmt::Write as _;

/// The production model's colour in every chart.
pub const PRODUCTION: &str = "#1f5fa8";
/// The shadow model's colour in every chart.
pub const SHADOW: &str = "#d0541b";
/// The colour of a single-series chart.
pub const NEUTRAL: &str = "#4b6b3c";

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 18.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 44.0;

/// How an axis maps values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scale {
    /// Linear.
    Linear,
    /// Base-10 logarithmic (positive values only).
    Log,
}

/// How values are written on an axis and beside bars.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Format {
    /// A plain number.
    Plain,
    /// A fraction shown as a percentage.
    Percent,
    /// Milliseconds.
    Ms,
    /// Unix milliseconds shown as `HH:MM` UTC.
    Clock,
}

/// One axis.
#[derive(Clone, Debug)]
pub struct Axis {
    /// Its caption.
    pub label: String,
    /// Its scale.
    pub scale: Scale,
    /// How its ticks are written.
    pub format: Format,
    /// A fixed range; from the data when `None`.
    pub range: Option<(f64, f64)>,
}

impl Axis {
    /// A linear axis with its range taken from the data.
    pub fn linear(label: &str, format: Format) -> Axis {
        Axis {
            label: label.to_owned(),
            scale: Scale::Linear,
            format,
            range: None,
        }
    }
}

/// One line of a line chart: `points` (a `None` value breaks the line) and an optional band
/// (an interval per x, shaded).
#[derive(Clone, Debug, Default)]
pub struct Line {
    /// Its name in the legend.
    pub name: String,
    /// Its colour.
    pub color: &'static str,
    /// (x, y) points in x order.
    pub points: Vec<(f64, Option<f64>)>,
    /// (x, (low, high)) in x order.
    pub band: Vec<(f64, Option<(f64, f64)>)>,
}

/// Writes a number for a tick or a bar label.
pub fn format_value(v: f64, format: Format) -> String {
    match format {
        Format::Plain => plain(v),
        Format::Percent => {
            let p = v * 100.0;
            if p.abs() >= 10.0 || p == p.round() {
                format!("{p:.0}%")
            } else {
                format!("{p:.1}%")
            }
        }
        Format::Ms => format!("{} ms", plain(v)),
        Format::Clock => clock(v),
    }
}

/// A number with as many decimals as its size calls for.
pub fn plain(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "-".to_owned()
    } else if v == 0.0 {
        // Also -0.0 (an empty f64 sum).
        "0".to_owned()
    } else if a >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim(format!("{v:.2}"))
    } else if a >= 0.01 {
        trim(format!("{v:.3}"))
    } else {
        format!("{v:.2e}")
    }
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// `HH:MM` (UTC) of unix milliseconds.
fn clock(ms: f64) -> String {
    let minutes = (ms / 60_000.0).floor() as i64;
    let day_minutes = minutes.rem_euclid(24 * 60);
    format!("{:02}:{:02}", day_minutes / 60, day_minutes % 60)
}

/// A value → position mapping along one axis.
#[derive(Clone, Copy, Debug)]
struct Mapping {
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
    scale: Scale,
}

impl Mapping {
    fn at(&self, v: f64) -> f64 {
        let t = match self.scale {
            Scale::Linear => (v - self.lo) / (self.hi - self.lo),
            Scale::Log => (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10()),
        };
        self.from + t.clamp(0.0, 1.0) * (self.to - self.from)
    }
}

/// A tick step of 1, 2 or 5 times a power of ten giving about `n` ticks over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    let raw = span / n;
    let magnitude = 10f64.powf(raw.log10().floor());
    let norm = raw / magnitude;
    let factor = if norm < 1.5 {
        1.0
    } else if norm < 3.0 {
        2.0
    } else if norm < 7.0 {
        5.0
    } else {
        10.0
    };
    factor * magnitude
}

/// The axis range (widened to nice bounds unless fixed) and its ticks.
fn range_and_ticks(axis: &Axis, values: &[f64]) -> (f64, f64, Vec<f64>) {
    let finite: Vec<f64> = values
        .iter()
        .copied()
        .filter(|v| v.is_finite() && (axis.scale == Scale::Linear || *v > 0.0))
        .collect();
    let (mut lo, mut hi) = axis.range.unwrap_or_else(|| {
        let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) }
    });
    match axis.scale {
        Scale::Log => {
            lo = 10f64.powf(lo.max(1e-9).log10().floor());
            hi = 10f64.powf(hi.max(1e-9).log10().ceil());
            if hi <= lo {
                hi = lo * 10.0;
            }
            // 1-2-5 ticks over up to three decades; over more, decades only (no overlap).
            let multiples: &[f64] = if hi / lo > 1_000.5 {
                &[1.0]
            } else {
                &[1.0, 2.0, 5.0]
            };
            let mut ticks = Vec::new();
            let mut decade = lo;
            while decade <= hi * 1.000_001 {
                for &m in multiples {
                    let t = decade * m;
                    if t >= lo * 0.999_999 && t <= hi * 1.000_001 {
                        ticks.push(t);
                    }
                }
                decade *= 10.0;
            }
            (lo, hi, ticks)
        }
        Scale::Linear => {
            if hi <= lo {
                let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
                lo -= pad;
                hi += pad;
            }
            let step = if axis.format == Format::Clock {
                clock_step(hi - lo)
            } else {
                nice_step(hi - lo, 5.0)
            };
            if axis.range.is_none() {
                lo = (lo / step).floor() * step;
                hi = (hi / step).ceil() * step;
            }
            let mut ticks = Vec::new();
            let mut t = (lo / step).ceil() * step;
            while t <= hi + step * 1e-9 && ticks.len() < 50 {
                ticks.push(t);
                t += step;
            }
            (lo, hi, ticks)
        }
    }
}

/// A tick step in ms for a time axis spanning `span_ms`: whole minutes, about 6 ticks.
fn clock_step(span_ms: f64) -> f64 {
    const MINUTES: [f64; 11] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 360.0, 720.0, 1440.0,
    ];
    let minutes = span_ms / 60_000.0 / 6.0;
    MINUTES
        .iter()
        .copied()
        .find(|m| *m >= minutes)
        .unwrap_or(1440.0)
        * 60_000.0
}

/// The opening `<svg>` of a chart and its title.
fn open(out: &mut String, id: &str, title: &str, width: f64, height: f64) {
    let _ = write!(
        out,
        r##"<svg class="chart" data-chart="{id}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{title}" font-family="sans-serif" font-size="11"><title>{title}</title><text x="{x}" y="18" font-size="14" font-weight="bold" fill="#222">{title}</text>"##,
        id = escape(id),
        title = escape(title),
        x = LEFT,
    );
}

/// The legend, right-aligned under the title.
fn legend(out: &mut String, entries: &[(&str, &str)], width: f64) {
    let mut x = width - RIGHT;
    for (name, color) in entries.iter().rev() {
        let text_width = 6.5 * name.chars().count() as f64;
        x -= text_width + 22.0;
        let _ = write!(
            out,
            r##"<rect x="{x:.1}" y="24" width="12" height="10" fill="{color}"/><text x="{tx:.1}" y="33" fill="#222">{name}</text>"##,
            tx = x + 16.0,
            name = escape(name),
            color = escape(color),
        );
    }
}

/// A chart that only says why it has nothing to show.
pub fn message_chart(id: &str, title: &str, message: &str) -> String {
    let height = 90.0;
    let mut out = String::new();
    open(&mut out, id, title, WIDTH, height);
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="30" width="{w}" height="48" fill="#f4f4f4" stroke="#ccc"/><text class="no-data" x="{cx}" y="58" text-anchor="middle" fill="#555">{message}</text></svg>"##,
        w = WIDTH - LEFT - RIGHT,
        cx = LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        message = escape(message),
    );
    out
}

/// A line chart of `lines` on axes `x` and `y` (bands shaded under the lines). Without any
/// point it is a [`message_chart`] saying `empty`.
pub fn line_chart(
    id: &str,
    title: &str,
    x: &Axis,
    y: &Axis,
    lines: &[Line],
    empty: &str,
) -> String {
    let has_points = lines
        .iter()
        .any(|l| l.points.iter().any(|(_, v)| v.is_some()));
    if !has_points {
        return message_chart(id, title, empty);
    }
    let xs: Vec<f64> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|(x, _)| *x))
        .collect();
    let ys: Vec<f64> = lines
        .iter()
        .flat_map(|l| {
            l.points.iter().filter_map(|(_, v)| *v).chain(
                l.band
                    .iter()
                    .filter_map(|(_, b)| *b)
                    .flat_map(|(a, b)| [a, b]),
            )
        })
        .collect();
    let (x_lo, x_hi, x_ticks) = range_and_ticks(x, &xs);
    let (y_lo, y_hi, y_ticks) = range_and_ticks(y, &ys);
    let mx = Mapping {
        lo: x_lo,
        hi: x_hi,
        from: LEFT,
        to: WIDTH - RIGHT,
        scale: x.scale,
    };
    let my = Mapping {
        lo: y_lo,
        hi: y_hi,
        from: HEIGHT - BOTTOM,
        to: TOP,
        scale: y.scale,
    };
    let mut out = String::new();
    open(&mut out, id, title, WIDTH, HEIGHT);
    let entries: Vec<(&str, &str)> = lines.iter().map(|l| (l.name.as_str(), l.color)).collect();
    legend(&mut out, &entries, WIDTH);
    axes(&mut out, x, y, &mx, &my, &x_ticks, &y_ticks);
    for line in lines {
        for run in runs(&line.band) {
            if run.len() < 2 {
                continue;
            }
            let mut d = String::new();
            for (i, (px, (lo, _))) in run.iter().enumerate() {
                let _ = write!(
                    d,
                    "{}{:.1},{:.1} ",
                    if i == 0 { "M" } else { "L" },
                    mx.at(*px),
                    my.at(*lo)
                );
            }
            for (px, (_, hi)) in run.iter().rev() {
                let _ = write!(d, "L{:.1},{:.1} ", mx.at(*px), my.at(*hi));
            }
            let _ = write!(
                out,
                r#"<path class="band" d="{d}Z" fill="{c}" fill-opacity="0.18" stroke="none"/>"#,
                c = escape(line.color)
            );
        }
    }
    for line in lines {
        let color = escape(line.color);
        let sparse = line.points.len() <= 60;
        for run in runs(&line.points) {
            let coords: Vec<String> = run
                .iter()
                .map(|(px, py)| format!("{:.1},{:.1}", mx.at(*px), my.at(*py)))
                .collect();
            if coords.len() > 1 {
                let _ = write!(
                    out,
                    r#"<polyline class="line" points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                    coords.join(" ")
                );
            }
            if sparse || coords.len() == 1 {
                for (px, py) in &run {
                    let _ = write!(
                        out,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"/>"#,
                        mx.at(*px),
                        my.at(*py)
                    );
                }
            }
        }
    }
    out.push_str("</svg>");
    out
}

/// The stretches of consecutive defined values.
fn runs<T: Copy>(points: &[(f64, Option<T>)]) -> Vec<Vec<(f64, T)>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for (x, v) in points {
        match v {
            Some(v) if x.is_finite() => current.push((*x, *v)),
            _ => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Grid lines, ticks and captions of both axes.
fn axes(
    out: &mut String,
    x: &Axis,
    y: &Axis,
    mx: &Mapping,
    my: &Mapping,
    x_ticks: &[f64],
    y_ticks: &[f64],
) {
    let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP);
    for t in y_ticks {
        let py = my.at(*t);
        let _ = write!(
            out,
            r##"<line x1="{x0}" y1="{py:.1}" x2="{x1}" y2="{py:.1}" stroke="#e3e3e3"/><text x="{tx}" y="{ty:.1}" text-anchor="end" fill="#444">{label}</text>"##,
            tx = x0 - 6.0,
            ty = py + 4.0,
            label = escape(&format_value(*t, y.format)),
        );
    }
    for t in x_ticks {
        let px = mx.at(*t);
        let _ = write!(
            out,
            r##"<line x1="{px:.1}" y1="{y0}" x2="{px:.1}" y2="{y1}" stroke="#eeeeee"/><text x="{px:.1}" y="{ty}" text-anchor="middle" fill="#444">{label}</text>"##,
            ty = y0 + 16.0,
            label = escape(&format_value(*t, x.format)),
        );
    }
    let _ = write!(
        out,
        r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#666"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#666"/><text x="{cx}" y="{by}" text-anchor="middle" fill="#222">{xl}</text><text x="14" y="{cy}" text-anchor="middle" fill="#222" transform="rotate(-90 14 {cy})">{yl}</text>"##,
        cx = (x0 + x1) / 2.0,
        by = HEIGHT - 8.0,
        cy = (y0 + y1) / 2.0,
        xl = escape(&x.label),
        yl = escape(&y.label),
    );
}

/// A horizontal bar chart: one group per row (its label on the left), one bar per series in
/// each group (`None`: no bar, "n/a"). Without any value it is a [`message_chart`] saying
/// `empty`.
pub fn bar_chart(
    id: &str,
    title: &str,
    format: Format,
    series: &[(&str, &str)],
    rows: &[(String, Vec<Option<f64>>)],
    empty: &str,
) -> String {
    let max = rows
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .copied()
        .filter(|v| v.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return message_chart(id, title, empty);
    }
    const LABELS: f64 = 190.0;
    const BAR: f64 = 13.0;
    let per_row = BAR * series.len().max(1) as f64 + 10.0;
    let height = TOP + per_row * rows.len() as f64 + BOTTOM;
    let axis = Axis {
        label: String::new(),
        scale: Scale::Linear,
        format,
        range: Some((0.0, if max > 0.0 { max * 1.15 } else { 1.0 })),
    };
    let (lo, hi, ticks) = range_and_ticks(&axis, &[]);
    let mx = Mapping {
        lo,
        hi,
        from: LABELS,
        to: WIDTH - RIGHT - 40.0,
        scale: Scale::Linear,
    };
    let mut out = String::new();
    open(&mut out, id, title, WIDTH, height);
    if series.len() > 1 {
        legend(&mut out, series, WIDTH);
    }
    let bottom = height - BOTTOM;
    for t in &ticks {
        let px = mx.at(*t);
        let _ = write!(
            out,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{bottom}" stroke="#e3e3e3"/><text x="{px:.1}" y="{ty}" text-anchor="middle" fill="#444">{label}</text>"##,
            ty = bottom + 16.0,
            label = escape(&format_value(*t, format)),
        );
    }
    for (i, (label, values)) in rows.iter().enumerate() {
        let top = TOP + 4.0 + per_row * i as f64;
        let shown: String = if label.chars().count() > 30 {
            label.chars().take(29).chain(['…']).collect()
        } else {
            label.clone()
        };
        let _ = write!(
            out,
            r##"<text x="{lx}" y="{ly:.1}" text-anchor="end" fill="#222"><title>{full}</title>{shown}</text>"##,
            lx = LABELS - 6.0,
            ly = top + per_row / 2.0,
            full = escape(label),
            shown = escape(&shown),
        );
        for (j, value) in values.iter().enumerate() {
            let color = series.get(j).map_or(NEUTRAL, |s| s.1);
            let y = top + BAR * j as f64;
            match value {
                Some(v) if v.is_finite() => {
                    let w = (mx.at(*v) - LABELS).max(if *v > 0.0 { 1.0 } else { 0.0 });
                    let _ = write!(
                        out,
                        r##"<rect x="{LABELS}" y="{y:.1}" width="{w:.1}" height="{h}" fill="{c}"/><text x="{tx:.1}" y="{ty:.1}" fill="#222">{text}</text>"##,
                        h = BAR - 2.0,
                        c = escape(color),
                        tx = LABELS + w + 4.0,
                        ty = y + BAR - 4.0,
                        text = escape(&format_value(*v, format)),
                    );
                }
                _ => {
                    let _ = write!(
                        out,
                        r##"<text x="{tx}" y="{ty:.1}" fill="#777">n/a</text>"##,
                        tx = LABELS + 4.0,
                        ty = y + BAR - 4.0,
                    );
                }
            }
        }
    }
    let _ = write!(
        out,
        r##"<line x1="{LABELS}" y1="{TOP}" x2="{LABELS}" y2="{bottom}" stroke="#666"/></svg>"##
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_numbers_covering_the_data() {
        let (lo, hi, ticks) = range_and_ticks(&Axis::linear("", Format::Plain), &[0.3, 9.2]);
        assert_eq!((lo, hi), (0.0, 10.0));
        assert_eq!(ticks, vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let log = Axis {
            scale: Scale::Log,
            ..Axis::linear("", Format::Ms)
        };
        let (lo, hi, ticks) = range_and_ticks(&log, &[1.5, 40.0]);
        assert_eq!((lo, hi), (1.0, 100.0));
        assert_eq!(ticks.len(), 7, "{ticks:?}");
    }

    #[test]
    fn values_are_written_for_their_axis() {
        assert_eq!(format_value(0.953, Format::Percent), "95%");
        assert_eq!(format_value(0.0526, Format::Percent), "5.3%");
        assert_eq!(format_value(12.5, Format::Ms), "12.5 ms");
        assert_eq!(
            format_value(1_764_518_400_000.0 + 90_000.0, Format::Clock),
            "16:01"
        );
        assert_eq!(plain(0.004), "4.00e-3");
    }

    #[test]
    fn a_gap_breaks_the_line() {
        let r = runs(&[
            (0.0, Some(1.0)),
            (1.0, None),
            (2.0, Some(2.0)),
            (3.0, Some(3.0)),
        ]);
        assert_eq!(r, vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]);
    }
}
