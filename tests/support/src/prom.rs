//! Prometheus text exposition (what `shadowd`'s `/metrics` serves), parsed into samples:
//! the value of one series, sums over label matches, histogram quantiles.

use std::collections::BTreeMap;

/// The labels of one sample, by name.
pub type Labels = BTreeMap<String, String>;

/// One scrape, parsed: every sample as (metric name, labels, value).
#[derive(Clone, Debug, Default)]
pub struct Metrics(Vec<(String, Labels, f64)>);

impl Metrics {
    /// Parses exposition text; comments, blank lines and lines that are not a sample are
    /// skipped.
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|line| {
                let (series, value) = line.trim().rsplit_once(' ')?;
                let value = value.parse::<f64>().ok()?;
                let (name, labels) = parse_series(series)?;
                Some((name, labels, value))
            })
            .collect();
        Self(samples)
    }

    /// Every sample of the metric `name`, with its labels.
    pub fn series(&self, name: &str) -> Vec<(&Labels, f64)> {
        self.0
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, v)| (l, *v))
            .collect()
    }

    /// The value of one series written as Prometheus renders it (`name` or
    /// `name{label="value",...}`, labels in any order); 0 when the scrape lacks it, as for a
    /// counter that was never incremented.
    pub fn value(&self, series: &str) -> f64 {
        let Some((name, labels)) = parse_series(series) else {
            panic!("not a series: {series:?}");
        };
        self.0
            .iter()
            .find(|(n, l, _)| *n == name && *l == labels)
            .map_or(0.0, |(_, _, v)| *v)
    }

    /// Sum of the samples of `name` whose labels include every `(label, value)` of
    /// `matching` (all of them for an empty `matching`).
    pub fn sum(&self, name: &str, matching: &[(&str, &str)]) -> f64 {
        self.series(name)
            .into_iter()
            .filter(|(labels, _)| {
                matching
                    .iter()
                    .all(|(k, v)| labels.get(*k).is_some_and(|x| x == v))
            })
            .map(|(_, v)| v)
            .sum::<f64>()
            + 0.0 // the empty sum is -0.0
    }

    /// The first sample of `name`, if any.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.series(name).first().map(|(_, v)| *v)
    }

    /// Quantile `q` of histogram `name` over the series with `label`, interpolating linearly
    /// inside the bucket that holds it (as Prometheus' `histogram_quantile` does); `None` for
    /// an empty histogram.
    pub fn histogram_quantile(&self, name: &str, label: (&str, &str), q: f64) -> Option<f64> {
        let mut buckets: Vec<(f64, f64)> = self
            .series(&format!("{name}_bucket"))
            .into_iter()
            .filter(|(l, _)| l.get(label.0).is_some_and(|v| v == label.1))
            .filter_map(|(l, v)| {
                let le = l.get("le")?;
                let upper = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((upper, v))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last()?.1;
        if total == 0.0 {
            return None;
        }
        let rank = q * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for (upper, count) in buckets {
            if count >= rank {
                if upper.is_infinite() {
                    return Some(lower);
                }
                let within = (rank - below) / (count - below).max(f64::MIN_POSITIVE);
                return Some(lower + (upper - lower) * within);
            }
            (lower, below) = (upper, count);
        }
        None
    }
}

/// `name` or `name{label="value",...}` (values escaped as the exposition format does).
fn parse_series(series: &str) -> Option<(String, Labels)> {
    let Some((name, rest)) = series.split_once('{') else {
        return Some((series.to_owned(), Labels::new()));
    };
    let mut labels = Labels::new();
    let mut rest = rest.strip_suffix('}')?;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => value.push(match chars.next()?.1 {
                    'n' => '\n',
                    other => other,
                }),
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.trim_start_matches(',').trim().to_owned(), value);
        rest = &after[end + 1..];
    }
    Some((name.to_owned(), labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x\n\
shadowtap_mirrored_requests_total{result=\"ok\"} 90\n\
shadowtap_mirrored_requests_total{result=\"error\"} 10\n\
shadowtap_errors_total{class=\"5xx\",model=\"shadow\"} 3\n\
shadowtap_agreement_ratio 0.75\n\
odd{path=\"a \\\"q\\\", b\\\\\"} 1\n\
shadowtap_latency_seconds_bucket{model=\"shadow\",le=\"0.001\"} 50\n\
shadowtap_latency_seconds_bucket{model=\"shadow\",le=\"0.002\"} 100\n\
shadowtap_latency_seconds_bucket{model=\"shadow\",le=\"+Inf\"} 100\n";

    #[test]
    fn series_are_read_exactly_and_summed() {
        let m = Metrics::parse(TEXT);
        assert_eq!(m.sum("shadowtap_mirrored_requests_total", &[]), 100.0);
        assert_eq!(
            m.sum("shadowtap_mirrored_requests_total", &[("result", "error")]),
            10.0
        );
        assert_eq!(m.sum("absent_total", &[]).to_bits(), 0.0f64.to_bits());
        assert_eq!(m.get("shadowtap_agreement_ratio"), Some(0.75));
        assert_eq!(
            m.value("shadowtap_errors_total{model=\"shadow\",class=\"5xx\"}"),
            3.0,
            "labels in any order"
        );
        assert_eq!(
            m.value("shadowtap_errors_total{model=\"shadow\"}"),
            0.0,
            "exact label set"
        );
        assert_eq!(
            m.value("shadowtap_mirrored_requests_total{result=\"ok\"}"),
            90.0
        );
        assert_eq!(m.value("odd{path=\"a \\\"q\\\", b\\\\\"}"), 1.0);
        assert_eq!(m.series("odd")[0].0["path"], "a \"q\", b\\");
    }

    #[test]
    fn histogram_quantiles_interpolate_within_a_bucket() {
        let m = Metrics::parse(TEXT);
        let q = |q| {
            m.histogram_quantile("shadowtap_latency_seconds", ("model", "shadow"), q)
                .unwrap()
        };
        assert!((q(0.5) - 0.001).abs() < 1e-12, "{}", q(0.5));
        assert!((q(0.75) - 0.0015).abs() < 1e-12, "{}", q(0.75));
        assert_eq!(
            m.histogram_quantile("shadowtap_latency_seconds", ("model", "production"), 0.5),
            None
        );
    }
}
