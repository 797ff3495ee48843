use super::*;
use crate::compare::{ErrorClass, Side};

const MINUTE: u64 = 60_000;
/// 2025-11-30T16:00:00Z, a multiple of a minute.
const T0: u64 = 1_764_518_400_000;

fn ring(interval_s: u64, capacity: usize) -> TimeSeries {
    TimeSeries::new(
        Duration::from_secs(interval_s),
        NonZeroUsize::new(capacity).unwrap(),
    )
}

fn side(status: Option<u16>, error: Option<ErrorClass>, latency_ms: u64) -> Side {
    Side {
        status,
        error,
        latency_ns: Some(latency_ms * 1_000_000),
        ..Side::default()
    }
}

/// A comparison of two answers: production's and the shadow's latency in ms, whether they
/// agree (`None`: not defined).
fn comparison(production_ms: u64, shadow: Side, agreement: Option<bool>) -> Comparison {
    Comparison {
        production: side(Some(200), None, production_ms),
        shadow,
        body_equal: agreement,
        agreement,
        diffs: Vec::new(),
        discrepancies: Vec::new(),
    }
}

fn ok(latency_ms: u64) -> Side {
    side(Some(200), None, latency_ms)
}

fn starts(s: &TimeSeriesSnapshot) -> Vec<u64> {
    s.buckets.iter().map(|b| b.start_unix_ms).collect()
}

#[test]
fn events_fill_the_bucket_of_their_interval_and_the_next_interval_opens_a_new_one() {
    let mut ts = ring(60, 10);
    assert!(ts.is_empty());
    assert!(ts.snapshot().buckets.is_empty());
    ts.seen(T0 + 5);
    ts.seen(T0 + MINUTE - 1);
    ts.mirrored(T0 + 10);
    ts.skipped(T0 + 20);
    ts.seen(T0 + MINUTE);
    ts.mirrored(T0 + MINUTE + 59_999);
    let s = ts.snapshot();
    assert_eq!(starts(&s), vec![T0, T0 + MINUTE]);
    let (a, b) = (&s.buckets[0], &s.buckets[1]);
    assert_eq!((a.seen, a.mirrored, a.skipped), (2, 1, 1));
    assert_eq!((b.seen, b.mirrored, b.skipped), (1, 1, 0));
    // A bucket is found by flooring to the interval, not by the first event's time.
    ts.skipped(T0 + 2 * MINUTE + 30_000);
    assert_eq!(ts.snapshot().buckets[2].start_unix_ms, T0 + 2 * MINUTE);
}

#[test]
fn quiet_intervals_are_kept_as_empty_buckets_and_advance_opens_the_current_one() {
    let mut ts = ring(60, 10);
    ts.seen(T0);
    ts.seen(T0 + 3 * MINUTE + 1);
    ts.advance(T0 + 5 * MINUTE);
    let s = ts.snapshot();
    assert_eq!(
        starts(&s),
        (0..=5).map(|i| T0 + i * MINUTE).collect::<Vec<_>>()
    );
    let seen: Vec<u64> = s.buckets.iter().map(|b| b.seen).collect();
    assert_eq!(seen, vec![1, 0, 0, 1, 0, 0]);
    assert_eq!(
        s.buckets[1],
        Bucket {
            start_unix_ms: T0 + MINUTE,
            ..Bucket::default()
        }
    );
}

#[test]
fn the_ring_keeps_at_most_capacity_buckets_dropping_the_oldest() {
    let mut ts = ring(60, 3);
    for i in 0..10 {
        ts.seen(T0 + i * MINUTE);
        assert!(ts.len() <= 3, "after {i}: {}", ts.len());
    }
    let s = ts.snapshot();
    assert_eq!(s.capacity, 3);
    assert_eq!(
        starts(&s),
        vec![T0 + 7 * MINUTE, T0 + 8 * MINUTE, T0 + 9 * MINUTE]
    );
    // A gap longer than the ring: only the newest empty buckets, then the current one.
    ts.seen(T0 + 1000 * MINUTE);
    let s = ts.snapshot();
    assert_eq!(
        starts(&s),
        vec![T0 + 998 * MINUTE, T0 + 999 * MINUTE, T0 + 1000 * MINUTE]
    );
    assert_eq!(s.buckets.iter().map(|b| b.seen).sum::<u64>(), 1);
    // A ring of one bucket holds only the current one.
    let mut one = ring(60, 1);
    one.seen(T0);
    one.seen(T0 + MINUTE);
    one.seen(T0 + MINUTE);
    let s = one.snapshot();
    assert_eq!(starts(&s), vec![T0 + MINUTE]);
    assert_eq!(s.buckets[0].seen, 2);
}

#[test]
fn an_event_stamped_before_the_current_bucket_counts_in_it() {
    let mut ts = ring(60, 10);
    ts.seen(T0 + 2 * MINUTE);
    ts.seen(T0); // the clock was set back
    let s = ts.snapshot();
    assert_eq!(starts(&s), vec![T0 + 2 * MINUTE]);
    assert_eq!(s.buckets[0].seen, 2);
}

#[test]
fn latency_quantiles_match_a_known_distribution() {
    let mut ts = ring(60, 10);
    // Production: 1, 2, ..., 1000 ms (p50 = 500, p99 = 990 by nearest rank); the shadow: twice
    // as slow. Shuffled order (a stride coprime with 1000).
    for i in 0..1000u64 {
        let ms = (i * 337) % 1000 + 1;
        ts.compared(T0 + i, &comparison(ms, ok(2 * ms), Some(true)));
    }
    // Next bucket: one production sample only; the shadow failed (no answer, no latency).
    let failed = Side {
        status: None,
        error: Some(ErrorClass::Timeout),
        latency_ns: Some(5_000_000_000),
        ..Side::default()
    };
    ts.compared(T0 + MINUTE, &comparison(7, failed, None));
    let s = ts.snapshot();
    let close = |got: Option<f64>, want: f64| {
        let got = got.expect("a quantile");
        assert!(
            (got - want).abs() <= want * 0.011,
            "got {got}, want {want} within 1.1 %"
        );
    };
    let l = &s.buckets[0].latency_ms;
    close(l.production.p50, 500.0);
    close(l.production.p99, 990.0);
    close(l.shadow.p50, 1000.0);
    close(l.shadow.p99, 1980.0);
    let l = &s.buckets[1].latency_ms;
    assert_eq!(
        l.production,
        Quantiles {
            p50: Some(7.0),
            p99: Some(7.0)
        }
    );
    assert_eq!(l.shadow, Quantiles::default(), "no answer, no latency");
    assert_eq!(
        s.buckets[1].errors,
        PerModel {
            production: 0,
            shadow: 1
        }
    );
    assert_eq!((s.buckets[1].compared, s.buckets[1].agreed), (0, 0));
}

#[test]
fn ground_truth_counts_what_the_totals_grew_by() {
    let mut ts = ring(60, 10);
    let totals = |both, first_only, second_only, neither| PairedCounts {
        both,
        first_only,
        second_only,
        neither,
    };
    // The first totals (e.g. resumed from a state file) are where counting starts.
    ts.truth_totals(T0, totals(100, 10, 10, 10));
    ts.truth_totals(T0 + 1000, totals(103, 11, 10, 10));
    ts.truth_totals(T0 + MINUTE, totals(103, 11, 12, 11));
    // Totals that went down (the evaluation was restored): start again from them.
    ts.truth_totals(T0 + MINUTE + 1, totals(1, 0, 0, 0));
    ts.truth_totals(T0 + MINUTE + 2, totals(2, 0, 0, 0));
    let s = ts.snapshot();
    let a = &s.buckets[0].accuracy;
    assert_eq!((a.production.labelled, a.production.correct), (4, 4));
    assert_eq!((a.shadow.labelled, a.shadow.correct), (4, 3));
    assert_eq!(a.shadow.value, Some(0.75));
    let a = &s.buckets[1].accuracy;
    assert_eq!((a.production.labelled, a.production.correct), (4, 1));
    assert_eq!((a.shadow.labelled, a.shadow.correct), (4, 3));
}

#[test]
fn a_restored_ring_reads_back_the_same_and_goes_on_counting() {
    let mut ts = ring(60, 4);
    for i in 0..6 {
        ts.seen(T0 + i * MINUTE);
        ts.compared(T0 + i * MINUTE, &comparison(3, ok(4), Some(i % 2 == 0)));
    }
    let saved = ts.snapshot();
    let json = serde_json::to_string(&saved).unwrap();
    let back: TimeSeriesSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, saved);

    let mut resumed = ring(60, 4);
    resumed.restore(back.clone());
    assert_eq!(resumed.snapshot(), saved);
    // Still in the last bucket: its counters go on, its latency stays as saved.
    resumed.seen(T0 + 5 * MINUTE + 1);
    let s = resumed.snapshot();
    assert_eq!(s.buckets.len(), 4);
    assert_eq!(s.buckets[3].seen, 2);
    assert_eq!(s.buckets[3].latency_ms, saved.buckets[3].latency_ms);
    // Later: a new bucket.
    resumed.seen(T0 + 6 * MINUTE);
    assert_eq!(starts(&resumed.snapshot()).last(), Some(&(T0 + 6 * MINUTE)));

    // Fewer buckets kept than saved: the newest. Another interval: nothing.
    let mut small = ring(60, 2);
    small.restore(back.clone());
    assert_eq!(
        starts(&small.snapshot()),
        vec![T0 + 4 * MINUTE, T0 + 5 * MINUTE]
    );
    let mut other = ring(10, 4);
    other.restore(back);
    assert!(other.is_empty());
}

/// Every number in `expected` is matched within 1e-9 (the Wilson bounds were computed by
/// hand), every other value exactly, and both have the same keys.
fn assert_json_matches(got: &serde_json::Value, expected: &serde_json::Value, at: &str) {
    use serde_json::Value;
    match (got, expected) {
        (Value::Object(g), Value::Object(e)) => {
            let gk: Vec<&String> = g.keys().collect();
            let ek: Vec<&String> = e.keys().collect();
            assert_eq!(gk, ek, "keys at {at}");
            for (k, v) in e {
                assert_json_matches(&g[k], v, &format!("{at}.{k}"));
            }
        }
        (Value::Array(g), Value::Array(e)) => {
            assert_eq!(g.len(), e.len(), "length at {at}");
            for (i, (g, e)) in g.iter().zip(e).enumerate() {
                assert_json_matches(g, e, &format!("{at}[{i}]"));
            }
        }
        (Value::Number(g), Value::Number(e)) if !(g.is_u64() && e.is_u64()) => {
            let (g, e) = (g.as_f64().unwrap(), e.as_f64().unwrap());
            assert!((g - e).abs() < 1e-9, "{at}: got {g}, want {e}");
        }
        _ => assert_eq!(got, expected, "at {at}"),
    }
}

#[test]
fn the_json_is_the_api_timeseries_contract() {
    let mut ts = ring(60, 1440);
    ts.truth_totals(T0, PairedCounts::default());
    ts.seen(T0 + 1);
    ts.seen(T0 + 2);
    ts.seen(T0 + 3);
    ts.mirrored(T0 + 4);
    ts.mirrored(T0 + 5);
    ts.skipped(T0 + 6);
    ts.compared(T0 + 7, &comparison(2, ok(3), Some(true)));
    ts.compared(
        T0 + 8,
        &comparison(
            4,
            side(Some(503), Some(ErrorClass::ServerError), 5),
            Some(false),
        ),
    );
    ts.truth_totals(
        T0 + 9,
        PairedCounts {
            both: 3,
            first_only: 1,
            second_only: 0,
            neither: 0,
        },
    );
    ts.advance(T0 + MINUTE + 30_000);
    let got = serde_json::to_value(ts.snapshot()).unwrap();
    // Written from docs (the contract), not produced by the code: agreement 1/2 and accuracy
    // 4/4 and 3/4 with their Wilson 95 % intervals; with two samples p50 is the smaller and
    // p99 the larger; the empty current bucket has nulls.
    let expected: serde_json::Value = serde_json::from_str(
        r#"{
          "interval_seconds": 60,
          "capacity": 1440,
          "buckets": [
            {
              "start_unix_ms": 1764518400000,
              "seen": 3,
              "mirrored": 2,
              "skipped": 1,
              "compared": 2,
              "agreed": 1,
              "agreement": {"value": 0.5, "low": 0.09453120573423074, "high": 0.9054687942657693},
              "accuracy": {
                "production": {"labelled": 4, "correct": 4, "value": 1.0, "low": 0.5101091635454027, "high": 1.0},
                "shadow": {"labelled": 4, "correct": 3, "value": 0.75, "low": 0.30064184258240184, "high": 0.9544127391902995}
              },
              "latency_ms": {
                "production": {"p50": 2.0, "p99": 4.0},
                "shadow": {"p50": 3.0, "p99": 5.0}
              },
              "errors": {"production": 0, "shadow": 1}
            },
            {
              "start_unix_ms": 1764518460000,
              "seen": 0,
              "mirrored": 0,
              "skipped": 0,
              "compared": 0,
              "agreed": 0,
              "agreement": {"value": null, "low": null, "high": null},
              "accuracy": {
                "production": {"labelled": 0, "correct": 0, "value": null, "low": null, "high": null},
                "shadow": {"labelled": 0, "correct": 0, "value": null, "low": null, "high": null}
              },
              "latency_ms": {
                "production": {"p50": null, "p99": null},
                "shadow": {"p50": null, "p99": null}
              },
              "errors": {"production": 0, "shadow": 0}
            }
          ]
        }"#,
    )
    .unwrap();
    assert_json_matches(&got, &expected, "$");
}
