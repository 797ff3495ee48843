//! A small parser for the Prometheus text exposition format, enough for xtask to read
//! `shadowd`'s `/metrics`: samples with labels, sums over label matches, histogram quantiles.

use std::collections::BTreeMap;

/// Prometheus text exposition, parsed into samples: (name, labels, value).
pub struct Metrics(Vec<(String, BTreeMap<String, String>, f64)>);

impl Metrics {
    /// Parses exposition text; comments and malformed lines are skipped.
    pub fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            samples.push((name.to_string(), labels, value));
        }
        Self(samples)
    }

    pub fn series(&self, name: &str) -> Vec<(&BTreeMap<String, String>, f64)> {
        self.0
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, v)| (l, *v))
            .collect()
    }

    /// Sum of the samples of `name` whose labels include every `(key, value)` of `matching`.
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

    /// The first sample of `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.series(name).first().map(|(_, v)| *v)
    }

    /// Linear interpolation inside the bucket holding quantile `q` (as Prometheus does).
    pub fn histogram_quantile(&self, name: &str, label: (&str, &str), q: f64) -> Option<f64> {
        let mut buckets: Vec<(f64, f64)> = self
            .series(&format!("{name}_bucket"))
            .into_iter()
            .filter(|(l, _)| l.get(label.0).is_some_and(|v| v == label.1))
            .filter_map(|(l, v)| {
                let le = l.get("le")?;
                Some((
                    if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().ok()?
                    },
                    v,
                ))
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

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for pair in text.split("\",") {
        if let Some((k, v)) = pair.split_once('=') {
            labels.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x\n\
shadowtap_mirrored_requests_total{result=\"ok\"} 90\n\
shadowtap_mirrored_requests_total{result=\"error\"} 10\n\
shadowtap_agreement_ratio 0.75\n\
shadowtap_latency_seconds_bucket{model=\"shadow\",le=\"0.001\"} 50\n\
shadowtap_latency_seconds_bucket{model=\"shadow\",le=\"0.002\"} 100\n\
shadowtap_latency_seconds_bucket{model=\"shadow\",le=\"+Inf\"} 100\n";

    #[test]
    fn metrics_text_is_summed_and_interpolated() {
        let m = Metrics::parse(TEXT);
        assert_eq!(m.sum("shadowtap_mirrored_requests_total", &[]), 100.0);
        assert_eq!(
            m.sum("shadowtap_mirrored_requests_total", &[("result", "error")]),
            10.0
        );
        assert_eq!(m.get("shadowtap_agreement_ratio"), Some(0.75));
        let p50 = m
            .histogram_quantile("shadowtap_latency_seconds", ("model", "shadow"), 0.5)
            .unwrap();
        assert!((p50 - 0.001).abs() < 1e-12, "{p50}");
        let p75 = m
            .histogram_quantile("shadowtap_latency_seconds", ("model", "shadow"), 0.75)
            .unwrap();
        assert!((p75 - 0.0015).abs() < 1e-12, "{p75}");
    }
}
