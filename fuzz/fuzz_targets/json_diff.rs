//! Two arbitrary JSON documents (and path patterns) → `compare::json_diff`. Input: one options
//! byte, then production's document, `0xFF`, the shadow's document, and optionally `0xFF` and
//! pattern lines (`!/path` ignores, `/path` compares an array unordered).
//!
//! Checks that a document never differs from itself, that `equal` agrees with `diff`, that the
//! difference cap holds, that every difference's path points at exactly the values it reports
//! on each side (JSON pointer escaping), and, without unordered arrays, that the diff is
//! symmetric (the same paths both ways, missing and extra swapped).

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use shadow_core::compare::json_diff::{DiffKind, DiffOptions, FieldDiff, PathPattern, diff, equal};

const TOLERANCES: [f64; 4] = [0.0, 1e-6, 0.01, 1.0];

fuzz_target!(|data: &[u8]| {
    let Some((&options, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.split(|&b| b == 0xff);
    let (Some(a), Some(b)) = (parts.next(), parts.next()) else {
        return;
    };
    let (Ok(production), Ok(shadow)) = (
        serde_json::from_slice::<Value>(a),
        serde_json::from_slice::<Value>(b),
    ) else {
        return;
    };
    let mut opts = DiffOptions {
        abs_tolerance: TOLERANCES[usize::from(options & 3)],
        rel_tolerance: TOLERANCES[usize::from((options >> 2) & 3)],
        max_diffs: usize::from(options >> 4),
        ..DiffOptions::default()
    };
    if let Some(patterns) = parts.next().and_then(|p| std::str::from_utf8(p).ok()) {
        for line in patterns.lines() {
            match line.strip_prefix('!') {
                Some(ignored) => opts.ignore.push(PathPattern::parse(ignored)),
                None => opts.unordered.push(PathPattern::parse(line)),
            }
        }
    }
    let uncapped = DiffOptions {
        max_diffs: 0,
        ..opts.clone()
    };

    for doc in [&production, &shadow] {
        assert!(
            diff(doc, doc, &uncapped).is_empty(),
            "a document differs from itself"
        );
        assert!(equal(doc, doc, &opts));
    }
    let all = diff(&production, &shadow, &uncapped);
    assert_eq!(equal(&production, &shadow, &opts), all.is_empty());
    let capped = diff(&production, &shadow, &opts);
    if opts.max_diffs > 0 {
        assert!(capped.len() <= opts.max_diffs);
        assert_eq!(
            capped[..],
            all[..capped.len()],
            "the cap keeps the first differences"
        );
    } else {
        assert_eq!(capped, all);
    }
    for d in &all {
        assert_eq!(production.pointer(&d.path), d.production.as_ref(), "{d:?}");
        assert_eq!(shadow.pointer(&d.path), d.shadow.as_ref(), "{d:?}");
    }
    if opts.unordered.is_empty() {
        let mut forward: Vec<(String, DiffKind)> = all.iter().map(key).collect();
        let mut backward: Vec<(String, DiffKind)> = diff(&shadow, &production, &uncapped)
            .iter()
            .map(key)
            .map(|(path, kind)| (path, mirrored(kind)))
            .collect();
        forward.sort_by(|x, y| x.0.cmp(&y.0));
        backward.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(forward, backward);
    }
    let _ = serde_json::to_string(&all).expect("differences serialise");
});

fn key(d: &FieldDiff) -> (String, DiffKind) {
    (d.path.clone(), d.kind)
}

fn mirrored(kind: DiffKind) -> DiffKind {
    match kind {
        DiffKind::MissingInShadow => DiffKind::ExtraInShadow,
        DiffKind::ExtraInShadow => DiffKind::MissingInShadow,
        other => other,
    }
}
