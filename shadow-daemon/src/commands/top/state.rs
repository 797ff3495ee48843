//! What `shadowd top` shows, as data: one [`Reading`] of the daemon's admin endpoints (parsed
//! from `/metrics`, `/api/summary` and `/api/discrepancies`), and the [`TopState`] built from
//! successive readings (rates per second, whether the daemon answers). Pure: no I/O, no clock
//! (the caller passes the times).

use crate::sinks::recent_discrepancies::RecentDiscrepancy;
use anyhow::Context;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Cumulative counters read from `/metrics`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    /// `shadowtap_exchanges_total`, every protocol and outcome.
    pub seen: u64,
    /// `shadowtap_mirrored_requests_total`, every protocol and result.
    pub mirrored: u64,
    /// `shadowtap_mirror_skipped_total`, every reason.
    pub skipped: u64,
    /// `shadowtap_mirror_skipped_total` by reason (non-zero ones).
    pub skipped_by_reason: BTreeMap<String, u64>,
    /// `shadowtap_capture_dropped_total` by stage (non-zero ones).
    pub dropped_by_stage: BTreeMap<String, u64>,
}

impl Counters {
    /// Reads the counters from Prometheus text. Series are summed over their labels; a metric
    /// that is absent counts 0.
    pub fn parse(text: &str) -> Self {
        let mut c = Counters::default();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            // Counters are whole numbers; a bad value must not wrap.
            let n = if value.is_finite() && value > 0.0 {
                value as u64
            } else {
                0
            };
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            match name {
                "shadowtap_exchanges_total" => c.seen += n,
                "shadowtap_mirrored_requests_total" => c.mirrored += n,
                "shadowtap_mirror_skipped_total" => {
                    c.skipped += n;
                    if n > 0 {
                        *c.skipped_by_reason
                            .entry(label(labels, "reason"))
                            .or_default() += n;
                    }
                }
                "shadowtap_capture_dropped_total" if n > 0 => {
                    *c.dropped_by_stage
                        .entry(label(labels, "stage"))
                        .or_default() += n;
                }
                _ => {}
            }
        }
        c
    }

    /// Everything dropped before admission.
    pub fn dropped(&self) -> u64 {
        self.dropped_by_stage.values().sum()
    }
}

/// The value of label `name` in `a="x",b="y"}` (`?` when absent).
fn label(labels: &str, name: &str) -> String {
    labels
        .trim_end_matches('}')
        .split(',')
        .find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

/// A proportion with its 95 % interval, as `/api/summary` has them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Estimate {
    /// The value (`None`: no samples yet).
    pub value: Option<f64>,
    /// The interval.
    pub interval: Option<(f64, f64)>,
    /// Samples it is counted on, where known.
    pub samples: Option<u64>,
}

impl Estimate {
    /// `{"value": v, "interval": {"lo": l, "hi": h}}` (the stats' `Estimate`), or `null`.
    fn of_stats(v: &Value) -> Self {
        Estimate {
            value: v["value"].as_f64(),
            interval: v["interval"]["lo"]
                .as_f64()
                .zip(v["interval"]["hi"].as_f64()),
            samples: None,
        }
    }
}

/// One model's numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ModelView {
    /// Median latency, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, ms.
    pub p99_ms: Option<f64>,
    /// Latencies counted.
    pub latency_count: u64,
    /// Error answers (and, the shadow, failures) per comparison.
    pub error_rate: Estimate,
    /// Accuracy on the ground truth.
    pub accuracy: Estimate,
}

/// The parts of `/api/summary` shown.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SummaryView {
    /// Replays compared.
    pub compared: u64,
    /// Request agreement.
    pub agreement: Estimate,
    /// Production.
    pub production: ModelView,
    /// The shadow.
    pub shadow: ModelView,
    /// `closed`, `open` or `half_open`.
    pub breaker: String,
    /// Replays in flight.
    pub in_flight: u64,
    /// Replays queued.
    pub queued: u64,
    /// Queue depth.
    pub queue_capacity: u64,
    /// The latest verdict's decision, if any.
    pub verdict: Option<String>,
}

impl SummaryView {
    /// Reads the shown parts of `/api/summary` JSON (missing parts stay empty).
    pub fn parse(json: &str) -> anyhow::Result<Self> {
        let v: Value = serde_json::from_str(json).context("/api/summary is not JSON")?;
        anyhow::ensure!(
            v.get("compared").is_some(),
            "/api/summary has no `compared`: not a shadowd summary"
        );
        let request = &v["agreement"]["request"];
        let model = |latency: &str, model: &str| ModelView {
            p50_ms: v[latency]["p50_ms"].as_f64(),
            p99_ms: v[latency]["p99_ms"].as_f64(),
            latency_count: v[latency]["count"].as_u64().unwrap_or(0),
            error_rate: Estimate::of_stats(&v["error_rate"][model]),
            accuracy: Estimate {
                samples: v["ground_truth"][model]["classification"]["total"].as_u64(),
                ..Estimate::of_stats(&v["ground_truth"][model]["classification"]["accuracy"])
            },
        };
        Ok(SummaryView {
            compared: v["compared"].as_u64().unwrap_or(0),
            agreement: Estimate {
                value: request["ratio"].as_f64(),
                interval: request["ci95"][0].as_f64().zip(request["ci95"][1].as_f64()),
                samples: request["samples"].as_u64(),
            },
            production: model("latency_production", "production"),
            shadow: model("latency_shadow", "shadow"),
            breaker: v["circuit_state"].as_str().unwrap_or("?").to_owned(),
            in_flight: v["replay"]["in_flight"].as_u64().unwrap_or(0),
            queued: v["replay"]["queued"].as_u64().unwrap_or(0),
            queue_capacity: v["replay"]["queue_capacity"].as_u64().unwrap_or(0),
            verdict: v["verdict"]["decision"].as_str().map(str::to_owned),
        })
    }
}

/// One poll of the daemon.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reading {
    /// From `/metrics`.
    pub counters: Counters,
    /// From `/api/summary`.
    pub summary: SummaryView,
    /// From `/api/discrepancies` (oldest first; empty from a daemon without the endpoint).
    pub discrepancies: Vec<RecentDiscrepancy>,
}

/// Requests per second between two readings.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    /// Exchanges seen.
    pub seen: f64,
    /// Replayed to the shadow.
    pub mirrored: f64,
    /// Not replayed.
    pub skipped: f64,
}

impl Rates {
    fn between(old: &Counters, new: &Counters, elapsed: Duration) -> Self {
        let secs = elapsed.as_secs_f64();
        // A counter that went down: the daemon restarted; no rate this time.
        let rate = |o: u64, n: u64| {
            if secs > 0.0 {
                n.saturating_sub(o) as f64 / secs
            } else {
                0.0
            }
        };
        Rates {
            seen: rate(old.seen, new.seen),
            mirrored: rate(old.mirrored, new.mirrored),
            skipped: rate(old.skipped, new.skipped),
        }
    }
}

/// Everything the screen shows.
#[derive(Clone, Debug, Default)]
pub struct TopState {
    /// The admin address read.
    pub from: String,
    /// The latest reading.
    pub latest: Option<Reading>,
    /// When it was taken (wall clock, `HH:MM:SS` UTC).
    pub updated: Option<String>,
    /// Rates between the last two readings.
    pub rates: Option<Rates>,
    /// Why the last poll failed (`None`: it succeeded).
    pub unreachable: Option<String>,
    /// Polls failed in a row.
    pub failures: u32,
    /// When the latest reading was taken (monotonic, for the rates).
    taken: Option<Instant>,
}

impl TopState {
    /// Nothing read yet from `from`.
    pub fn new(from: &str) -> Self {
        TopState {
            from: from.to_owned(),
            ..TopState::default()
        }
    }

    /// A poll ended at `at` (`clock`: its wall-clock time to show): a reading, or why none.
    pub fn update(&mut self, poll: Result<Reading, String>, at: Instant, clock: &str) {
        match poll {
            Ok(reading) => {
                if let (Some(old), Some(then)) = (&self.latest, self.taken) {
                    self.rates = Some(Rates::between(
                        &old.counters,
                        &reading.counters,
                        at.saturating_duration_since(then),
                    ));
                }
                self.latest = Some(reading);
                self.taken = Some(at);
                self.updated = Some(clock.to_owned());
                self.unreachable = None;
                self.failures = 0;
            }
            Err(why) => {
                self.unreachable = Some(why);
                self.failures = self.failures.saturating_add(1);
                // Rates across an outage would mislead.
                self.rates = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# HELP shadowtap_exchanges_total Exchanges rebuilt.
# TYPE shadowtap_exchanges_total counter
shadowtap_exchanges_total{outcome=\"complete\",protocol=\"http1\"} 30
shadowtap_exchanges_total{outcome=\"gap\",protocol=\"http1\"} 2
shadowtap_exchanges_total{outcome=\"complete\",protocol=\"grpc\"} 8
shadowtap_mirrored_requests_total{protocol=\"http1\",result=\"ok\"} 27
shadowtap_mirrored_requests_total{protocol=\"http1\",result=\"timeout\"} 1
shadowtap_mirror_skipped_total{reason=\"gap\"} 2
shadowtap_mirror_skipped_total{reason=\"sampled_out\"} 10
shadowtap_mirror_skipped_total{reason=\"queue_full\"} 0
shadowtap_capture_dropped_total{stage=\"ring\"} 5
shadowtap_capture_dropped_total{stage=\"exchange_channel\"} 0
shadowtap_latency_seconds_count{model=\"production\"} 28
";

    #[test]
    fn counters_are_summed_over_labels_from_prometheus_text() {
        let c = Counters::parse(METRICS);
        assert_eq!((c.seen, c.mirrored, c.skipped), (40, 28, 12));
        assert_eq!(
            c.skipped_by_reason,
            BTreeMap::from([("gap".into(), 2), ("sampled_out".into(), 10)])
        );
        assert_eq!(c.dropped_by_stage, BTreeMap::from([("ring".into(), 5)]));
        assert_eq!(c.dropped(), 5);
        assert_eq!(Counters::parse("garbage\n{}\nx y z\n"), Counters::default());
    }

    #[test]
    fn the_summary_parts_are_read_and_missing_ones_stay_empty() {
        let json = r#"{
            "compared": 28,
            "agreement": {"request": {"samples": 25, "agreed": 24, "ratio": 0.96,
                                      "ci95": [0.8, 0.99]}},
            "latency_production": {"count": 28, "p50_ms": 1.5, "p99_ms": 4.0},
            "latency_shadow": {"count": 27, "p50_ms": 2.5, "p99_ms": null},
            "error_rate": {"production": {"value": 0.0, "interval": {"lo": 0.0, "hi": 0.12}},
                           "shadow": null},
            "ground_truth": {"production": {"classification": {"total": 10,
                                 "accuracy": {"value": 0.9, "interval": {"lo": 0.6, "hi": 0.98}}}},
                             "shadow": {"classification": null}},
            "circuit_state": "closed",
            "replay": {"in_flight": 2, "queued": 3, "queue_capacity": 1024},
            "verdict": {"decision": "hold"}
        }"#;
        let s = SummaryView::parse(json).unwrap();
        assert_eq!(s.compared, 28);
        assert_eq!(
            s.agreement,
            Estimate {
                value: Some(0.96),
                interval: Some((0.8, 0.99)),
                samples: Some(25)
            }
        );
        assert_eq!((s.production.p50_ms, s.shadow.p99_ms), (Some(1.5), None));
        assert_eq!(s.production.error_rate.interval, Some((0.0, 0.12)));
        assert_eq!(s.shadow.error_rate, Estimate::default());
        assert_eq!(s.production.accuracy.value, Some(0.9));
        assert_eq!(s.production.accuracy.samples, Some(10));
        assert_eq!(s.shadow.accuracy, Estimate::default());
        assert_eq!((s.breaker.as_str(), s.queued), ("closed", 3));
        assert_eq!(s.verdict.as_deref(), Some("hold"));
        assert!(SummaryView::parse("{}").is_err());
        assert!(SummaryView::parse("<html>").is_err());
    }

    #[test]
    fn rates_come_from_successive_readings_and_an_outage_clears_them() {
        let t0 = Instant::now();
        let mut s = TopState::new("http://127.0.0.1:9464");
        let reading = |seen, mirrored| Reading {
            counters: Counters {
                seen,
                mirrored,
                ..Counters::default()
            },
            ..Reading::default()
        };
        s.update(Ok(reading(10, 5)), t0, "12:00:00");
        assert_eq!(s.rates, None, "one reading: no rate yet");
        s.update(Ok(reading(30, 9)), t0 + Duration::from_secs(2), "12:00:02");
        assert_eq!(
            s.rates,
            Some(Rates {
                seen: 10.0,
                mirrored: 2.0,
                skipped: 0.0
            })
        );
        s.update(
            Err("connection refused".into()),
            t0 + Duration::from_secs(3),
            "x",
        );
        assert_eq!((s.failures, s.rates), (1, None));
        assert_eq!(s.updated.as_deref(), Some("12:00:02"), "the last good one");
        assert!(s.latest.is_some(), "the last reading stays on screen");
        // Counters that went down (a restart): no negative rate.
        s.update(Ok(reading(30, 9)), t0 + Duration::from_secs(4), "12:00:04");
        s.update(Ok(reading(3, 1)), t0 + Duration::from_secs(5), "12:00:05");
        assert_eq!(s.rates, Some(Rates::default()));
        assert_eq!((s.failures, s.unreachable.as_deref()), (0, None));
    }
}
