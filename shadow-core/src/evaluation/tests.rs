use super::*;
use crate::compare::{Prediction, Side};
use crate::criteria::{Criteria, Decision, Status, evaluate};
use serde_json::json;

const T0: Duration = Duration::ZERO;

fn labelled(p: &str, s: &str) -> Comparison {
    rows(&[p], &[s])
}

/// A comparison of two batch answers, one label per row.
fn rows(p: &[&str], s: &[&str]) -> Comparison {
    let pred = |l: &[&str]| Prediction {
        values: json!(l),
        labels: l.iter().map(|x| x.to_string()).collect(),
        scores: Vec::new(),
    };
    Comparison {
        production: Side {
            status: Some(200),
            prediction: Some(pred(p)),
            latency_ns: Some(2_000_000),
            ..Side::default()
        },
        shadow: Side {
            status: Some(200),
            prediction: Some(pred(s)),
            latency_ns: Some(4_000_000),
            ..Side::default()
        },
        body_equal: Some(p == s),
        agreement: Some(p == s),
        diffs: Vec::new(),
        discrepancies: if p == s {
            vec![]
        } else {
            vec![DiscrepancyKind::Label]
        },
    }
}

fn keys(id: &str, path: &str) -> RequestKeys {
    RequestKeys {
        id: Some(id.into()),
        path: path.into(),
        field: None,
    }
}

fn truth(label: &str) -> Truth {
    Truth {
        labels: vec![label.into()],
        values: Vec::new(),
    }
}

fn with_ids() -> Evaluation {
    Evaluation::new(
        KeyRules {
            id_header: Some("x-request-id".into()),
            ..KeyRules::default()
        },
        EvaluationLimits::default(),
    )
}

#[test]
fn agreement_confusion_and_scores() {
    let mut e = Evaluation::default();
    for (p, s) in [("a", "a"), ("a", "a"), ("a", "b"), ("b", "b")] {
        e.record(&labelled(p, s), &RequestKeys::default(), T0);
    }
    let s = e.summary();
    let o = &s.overall;
    assert_eq!(o.compared, 4);
    assert_eq!(o.agreement.request.agreed, 3);
    assert_eq!(o.agreement.request.ratio, Some(0.75));
    assert_eq!(o.agreement.row, o.agreement.request, "one row per request");
    assert_eq!(o.confusion["a"]["b"], 1);
    assert_eq!(o.confusion["a"]["a"], 2);
    // Class a: tp 2, predicted 2, support 3 -> p 1, r 2/3. Class b: tp 1, predicted 2, support 1.
    let pc = &o.shadow_vs_production_labels.per_class;
    assert_eq!(pc["a"].precision.unwrap().value, 1.0);
    assert!((pc["a"].recall.unwrap().value - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(pc["b"].precision.unwrap().value, 0.5);
    assert_eq!(pc["b"].recall.unwrap().value, 1.0);
    assert_eq!(o.discrepancies["label"], 1);
    assert_eq!(o.latency_shadow.count, 4);
    assert_eq!(o.latency_shadow.mean_ms, Some(4.0));
    assert_eq!(o.latency_shadow.p50_ms, Some(4.0));
    assert_eq!(o.latency_production.p99_ms, Some(2.0));
    let (lo, hi) = o.agreement.request.ci95.unwrap();
    assert!(lo < 0.75 && 0.75 < hi);
    // Without an id rule nothing waits for labels.
    assert!(!s.labels.enabled);
    assert_eq!(s.labels.waiting, 0);
}

#[test]
fn agreement_per_request_and_per_row() {
    let mut e = Evaluation::default();
    assert_eq!(e.agreement_ratio(AgreementUnit::Request), None);
    assert_eq!(e.agreement_ratio(AgreementUnit::Row), None);
    // 3 requests of 4 rows, 4 + 3 + 0 rows agree: 1 of 3 requests, 7 of 12 rows.
    let mut whole = rows(&["a", "b", "a", "b"], &["a", "b", "a", "b"]);
    whole.agreement = Some(true);
    let mut one_off = rows(&["a", "b", "a", "b"], &["a", "b", "a", "a"]);
    one_off.agreement = Some(false);
    let mut missing = rows(&["a", "b", "a", "b"], &["a"]);
    missing.shadow.prediction = None;
    missing.agreement = Some(false);
    for c in [&whole, &one_off, &missing] {
        e.record(c, &RequestKeys::default(), T0);
    }
    // A failed replay defines neither.
    let mut failed = rows(&["a"], &["a"]);
    failed.shadow = Side::default();
    failed.agreement = None;
    e.record(&failed, &RequestKeys::default(), T0);
    let s = e.summary().overall;
    assert_eq!(
        (s.agreement.request.samples, s.agreement.request.agreed),
        (3, 1)
    );
    assert_eq!((s.agreement.row.samples, s.agreement.row.agreed), (12, 7));
    assert_eq!(e.agreement_ratio(AgreementUnit::Row), Some(7.0 / 12.0));
    assert_eq!(e.agreement_ratio(AgreementUnit::Request), Some(1.0 / 3.0));
    // The confusion matrix counts rows of same-length predictions.
    assert_eq!(s.confusion["b"]["a"], 1);
    assert_eq!(s.confusion["a"]["a"], 4);
    // Error rates: the failed replay has no error class here, so 0 of 4.
    assert_eq!(s.error_rate.shadow.unwrap().value, 0.0);
}

#[test]
fn empty_summary_has_nulls_not_zeros() {
    let mut e = Evaluation::default();
    let json = serde_json::to_value(e.summary()).unwrap();
    for unit in ["request", "row"] {
        assert!(json["agreement"][unit]["ratio"].is_null(), "{json}");
        assert_eq!(json["agreement"][unit]["samples"], 0);
    }
    assert!(json["latency_shadow"]["p50_ms"].is_null(), "{json}");
    assert!(
        json["ground_truth"]["accuracy_difference"].is_null(),
        "{json}"
    );
    assert!(json["ground_truth"]["mcnemar"].is_null(), "{json}");
    e.record_queue_wait(3_000_000);
    assert_eq!(e.summary().queue_wait.max_ms, Some(3.0));
}

#[test]
fn late_labels_join_and_strays_are_counted() {
    let mut e = with_ids();
    let at = Duration::from_secs;
    // r1: both right; r2: production right, shadow wrong; r3: never labeled.
    e.record(&labelled("a", "a"), &keys("r1", "/p"), at(0));
    e.record(&labelled("b", "a"), &keys("r2", "/p"), at(1));
    e.record(&labelled("a", "a"), &keys("r3", "/p"), at(2));
    let no_id = RequestKeys {
        path: "/p".into(),
        ..RequestKeys::default()
    };
    e.record(&labelled("a", "a"), &no_id, at(2));
    assert_eq!(e.summary().labels.waiting, 3);
    assert_eq!(e.label("r1", truth("a"), at(100)), LabelResult::Joined);
    assert_eq!(e.label("r2", truth("b"), at(200)), LabelResult::Joined);
    assert_eq!(e.label("r1", truth("a"), at(201)), LabelResult::Duplicate);
    assert_eq!(e.label("nobody", truth("a"), at(202)), LabelResult::Unknown);
    let s = e.summary();
    let gt = &s.overall.ground_truth;
    assert_eq!(gt.labeled_requests, 2);
    assert_eq!(gt.paired.both, 1);
    assert_eq!(gt.paired.first_only, 1);
    let p = gt.production.classification.as_ref().unwrap();
    let sh = gt.shadow.classification.as_ref().unwrap();
    assert_eq!(p.accuracy.unwrap().value, 1.0);
    assert_eq!(sh.accuracy.unwrap().value, 0.5);
    assert_eq!(s.labels.waiting, 1);
    assert_eq!(s.labels.counters.without_id, 1);
    assert_eq!(s.labels.counters.join.unknown_labels, 1);
    assert_eq!(s.labels.counters.join.duplicate_labels, 1);
    // The segment got the same.
    assert_eq!(s.segments.path["/p"].ground_truth.labeled_requests, 2);
    // r3 expires after the default hour; its label is then late.
    e.expire(at(3_700));
    assert_eq!(e.label("r3", truth("a"), at(3_701)), LabelResult::Late);
    let c = e.summary().labels.counters.join;
    assert_eq!((c.expired, c.late_labels), (1, 1));
}

#[test]
fn preloaded_labels_join_when_the_request_comes() {
    let mut e = with_ids();
    assert!(e.preload("r1".into(), truth("b")));
    e.record(&labelled("b", "a"), &keys("r1", "/p"), T0);
    let s = e.summary();
    assert_eq!(s.labels.counters.preloaded_joined, 1);
    assert_eq!(s.labels.waiting, 0);
    assert_eq!(s.overall.ground_truth.paired.first_only, 1);
}

#[test]
fn segments_are_capped_with_the_rest_in_other() {
    let mut e = Evaluation::new(
        KeyRules::default(),
        EvaluationLimits {
            max_segments: 2,
            ..EvaluationLimits::default()
        },
    );
    for path in ["/a", "/b", "/c", "/d", "/a"] {
        e.record(&labelled("x", "x"), &keys("i", path), T0);
    }
    let s = e.summary();
    let names: Vec<&String> = s.segments.path.keys().collect();
    assert_eq!(names, ["(other)", "/a", "/b"]);
    assert_eq!(s.segments.path["/a"].compared, 2);
    assert_eq!(s.segments.path["(other)"].compared, 2);
    assert!(e.measurements().segments.contains_key("path=/a"));
}

#[test]
fn segment_floors_can_reject_what_the_whole_passes() {
    // 300 requests on /good all agree; 120 on /bad agree 50 %. Overall agreement 360/420 =
    // 0.857 passes a 0.8 floor (Wilson lower bound 0.82); /bad's interval (0.41, 0.59) is
    // below a 0.8 segment floor.
    let mut e = Evaluation::default();
    for _ in 0..300 {
        e.record(&labelled("a", "a"), &keys("i", "/good"), T0);
    }
    for i in 0..120 {
        let s = if i % 2 == 0 { "a" } else { "b" };
        e.record(&labelled("a", s), &keys("i", "/bad"), T0);
    }
    let m = e.measurements();
    let overall = Criteria {
        min_agreement: Some(0.8),
        ..Criteria::default()
    };
    assert_eq!(evaluate(&overall, &m).decision, Decision::Promote);
    let with_floor = Criteria {
        segment_min_agreement: Some(0.8),
        ..overall
    };
    let v = evaluate(&with_floor, &m);
    assert_eq!(v.decision, Decision::Reject);
    let bad = v
        .criteria
        .iter()
        .find(|r| r.segment.as_deref() == Some("path=/bad"))
        .unwrap();
    assert_eq!(bad.status, Status::Fail);
}

#[test]
fn state_round_trips_through_json_and_resumes() {
    let mut e = with_ids();
    e.record(&labelled("a", "b"), &keys("r1", "/p"), T0);
    e.record(&labelled("a", "a"), &keys("r2", "/p"), T0);
    e.label("r1", truth("a"), Duration::from_secs(1));
    e.record_queue_wait(1_000_000);
    let text = serde_json::to_string(&e.state()).unwrap();
    let state: EvaluationState = serde_json::from_str(&text).unwrap();
    assert_eq!(state.measurements(), e.measurements());
    let mut resumed = with_ids();
    resumed.restore(state).unwrap();
    resumed.record(&labelled("a", "a"), &keys("r3", "/p"), T0);
    let s = resumed.summary();
    assert_eq!(s.overall.compared, 3);
    assert_eq!(s.overall.ground_truth.labeled_requests, 1);
    assert_eq!(s.labels.counters.join.joined, 1, "counters carry over");
    assert_eq!(s.labels.waiting, 1, "only the new request waits");
    assert_eq!(s.queue_wait.count, 1);
    let mut bad: serde_json::Value = serde_json::from_str(&text).unwrap();
    bad["version"] = json!(99);
    let bad: EvaluationState = serde_json::from_value(bad).unwrap();
    assert_eq!(resumed.restore(bad), Err(StateError::Version(99)));
}
