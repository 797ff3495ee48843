//! What each model-quality statistic costs in CPU per comparison: the update of every streaming
//! statistic one labeled comparison feeds, separately and all together, plus the label join
//! and the snapshot-time computations (per snapshot, not per comparison).
//!
//! `cargo bench -p shadow-core --bench stats`

use criterion::{Criterion, criterion_group, criterion_main};
use shadow_core::compare::{Comparison, DiscrepancyKind, Prediction, Side};
use shadow_core::evaluation::{Evaluation, EvaluationLimits, KeyRules, RequestKeys, Truth};
use shadow_core::http::{Header, HttpRequest};
use shadow_core::labels::{JoinLimits, LabelJoin};
use shadow_core::stats::classification::ConfusionMatrix;
use shadow_core::stats::mcnemar::mcnemar;
use shadow_core::stats::proportion::{PairedCounts, Proportion, Z_95, newcombe_paired_difference};
use shadow_core::stats::psi::{Bins, PsiAccumulator};
use shadow_core::stats::regression::RegressionStats;
use std::hint::black_box;
use std::time::Duration;

const CLASSES: [&str; 10] = [
    "cat", "dog", "bird", "fish", "horse", "cow", "sheep", "goat", "pig", "duck",
];

/// Comparison `i`: (truth, production label, shadow label, production score, shadow score).
fn comparison(i: usize) -> (&'static str, &'static str, &'static str, f64, f64) {
    let truth = CLASSES[i % 10];
    let production = CLASSES[(i + usize::from(i.is_multiple_of(7))) % 10];
    let shadow = CLASSES[(i + usize::from(i.is_multiple_of(11))) % 10];
    let score = (i % 100) as f64 / 100.0;
    (truth, production, shadow, score, (score + 0.03).min(1.0))
}

#[derive(Default)]
struct AllStats {
    production_vs_truth: ConfusionMatrix,
    shadow_vs_truth: ConfusionMatrix,
    shadow_vs_production: ConfusionMatrix,
    agreement: Proportion,
    correctness: PairedCounts,
    production_errors: RegressionStats,
    shadow_errors: RegressionStats,
    psi: Option<PsiAccumulator>,
}

impl AllStats {
    fn record(&mut self, i: usize) {
        let (t, p, s, ps, ss) = comparison(i);
        self.production_vs_truth.record(t, p);
        self.shadow_vs_truth.record(t, s);
        self.shadow_vs_production.record(p, s);
        self.agreement.record(p == s);
        self.correctness.record(p == t, s == t);
        self.production_errors.record(ps, 0.5);
        self.shadow_errors.record(ss, 0.5);
        if let Some(psi) = &mut self.psi {
            psi.record_expected(ps);
            psi.record_actual(ss);
        }
    }
}

fn per_comparison(c: &mut Criterion) {
    let mut g = c.benchmark_group("per_comparison");
    let mut i = 0usize;
    let mut m = ConfusionMatrix::default();
    g.bench_function("confusion_matrix_record", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let (t, p, ..) = comparison(i);
            m.record(black_box(t), black_box(p));
        })
    });
    let mut pc = PairedCounts::default();
    let mut agreement = Proportion::default();
    g.bench_function("paired_counts_and_agreement_record", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            pc.record(
                black_box(i.is_multiple_of(3)),
                black_box(i.is_multiple_of(5)),
            );
            agreement.record(black_box(i.is_multiple_of(2)));
        })
    });
    let mut r = RegressionStats::default();
    g.bench_function("regression_record", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            r.record(black_box(i as f64 * 0.01), black_box(1.0));
        })
    });
    let mut psi = PsiAccumulator::new(Bins::unit(10));
    g.bench_function("psi_record_both", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let (.., ps, ss) = comparison(i);
            psi.record_expected(black_box(ps));
            psi.record_actual(black_box(ss));
        })
    });
    let mut all = AllStats {
        psi: Some(PsiAccumulator::new(Bins::unit(10))),
        ..AllStats::default()
    };
    g.bench_function("all_streaming_stats", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            all.record(black_box(i));
        })
    });
    // The join: one insert and its label, at steady state with 10 000 waiting.
    let mut join = LabelJoin::new(JoinLimits {
        max_items: 10_000,
        ..JoinLimits::default()
    });
    let ids: Vec<String> = (0..20_000).map(|k| format!("req-{k:08}")).collect();
    let mut k = 0usize;
    for id in &ids[..10_000] {
        join.insert(id, 0u64, 512, Duration::ZERO);
    }
    g.bench_function("label_join_insert_and_label", |b| {
        b.iter(|| {
            let now = Duration::from_millis(k as u64);
            let new = &ids[(k + 10_000) % ids.len()];
            let old = &ids[k % ids.len()];
            // The oldest waiting item is joined, which frees the slot the new one takes.
            black_box(join.label(old, 1u8, now));
            black_box(join.insert(new, k as u64, 512, now));
            k = (k + 1) % ids.len();
        })
    });
    g.finish();
}

/// A comparison as the comparer makes it for comparison `i` (one row, a label and a score).
fn compared(i: usize) -> Comparison {
    let (_, p, s, ps, ss) = comparison(i);
    let side = |label: &str, score: f64| Side {
        status: Some(200),
        latency_ns: Some(1_000_000 + (i as u64 % 1000) * 1000),
        prediction: Some(Prediction {
            values: serde_json::json!([label]),
            labels: vec![label.to_owned()],
            scores: vec![score],
        }),
        ..Side::default()
    };
    Comparison {
        production: side(p, ps),
        shadow: side(s, ss),
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

/// The daemon's whole per-comparison cost in the evaluation, as deployed: all traffic, the
/// request's path segment and its field segment (three scoreboards), plus the label join;
/// against the same without ground truth or a field segment.
fn per_request(c: &mut Criterion) {
    let mut g = c.benchmark_group("per_request");
    let comparisons: Vec<Comparison> = (0..1000).map(compared).collect();
    let ids: Vec<String> = (0..1_000_000).map(|k| format!("req-{k:08}")).collect();
    let truths: Vec<Truth> = (0..1000)
        .map(|i| Truth {
            labels: vec![comparison(i).0.to_owned()],
            values: Vec::new(),
        })
        .collect();
    let paths = ["/v2/models/a/infer", "/v2/models/b/infer"];
    let regions = ["eu", "us", "ap", "sa"];
    let mut plain = Evaluation::new(KeyRules::default(), EvaluationLimits::default());
    let mut i = 0usize;
    g.bench_function("evaluation_record_no_labels", |b| {
        b.iter(|| {
            i = (i + 1) % 1000;
            let keys = RequestKeys {
                id: None,
                path: paths[i % 2].to_owned(),
                field: None,
            };
            plain.record(black_box(&comparisons[i]), &keys, Duration::ZERO);
        })
    });
    let rules = KeyRules {
        id_header: Some("x-request-id".into()),
        segment_pointer: Some("/region".into()),
        ..KeyRules::default()
    };
    let mut full = Evaluation::new(rules.clone(), EvaluationLimits::default());
    let mut k = 0usize;
    g.bench_function("evaluation_record_and_label_with_field_segment", |b| {
        b.iter(|| {
            k = (k + 1) % ids.len();
            let i = k % 1000;
            let keys = RequestKeys {
                id: Some(ids[k].clone()),
                path: paths[i % 2].to_owned(),
                field: Some(regions[i % 4].to_owned()),
            };
            let now = Duration::from_millis(k as u64);
            full.record(black_box(&comparisons[i]), &keys, now);
            black_box(full.label(&ids[k], truths[i].clone(), now));
        })
    });
    let request = HttpRequest {
        trailers: Vec::new(),
        method: "POST".into(),
        target: "/v2/models/a/infer".into(),
        version: 1,
        headers: vec![Header {
            name: "X-Request-Id".into(),
            value: bytes::Bytes::from_static(b"req-00000042"),
        }],
        body: bytes::Bytes::from_static(
            br#"{"region": "eu", "inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 11], "data": [7.4, 0.7, 0, 1.9, 0.076, 11, 34, 0.9978, 3.51, 0.56, 9.4]}]}"#,
        ),
    };
    g.bench_function("request_keys_header_id_and_field_pointer", |b| {
        b.iter(|| black_box(rules.keys(black_box(&request))))
    });
    g.bench_function("summary_with_segments", |b| {
        b.iter(|| black_box(full.summary()))
    });
    g.finish();
}

fn per_snapshot(c: &mut Criterion) {
    let mut g = c.benchmark_group("per_snapshot");
    let mut all = AllStats {
        psi: Some(PsiAccumulator::new(Bins::unit(10))),
        ..AllStats::default()
    };
    for i in 0..100_000 {
        all.record(i);
    }
    g.bench_function("classification_report_10_classes", |b| {
        b.iter(|| black_box(all.shadow_vs_truth.report()))
    });
    g.bench_function("newcombe_paired_and_mcnemar", |b| {
        b.iter(|| {
            let t = black_box(all.correctness);
            black_box(newcombe_paired_difference(t, Z_95));
            black_box(mcnemar(t.first_only, t.second_only));
        })
    });
    g.bench_function("mcnemar_1e6_discordant", |b| {
        b.iter(|| black_box(mcnemar(black_box(499_000), black_box(501_000))))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = per_comparison, per_request, per_snapshot
}
criterion_main!(benches);
