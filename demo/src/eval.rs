//! Small evaluation helpers shared by the model server, the traffic driver and the tests.

/// Share of positions where `pred` equals `truth` (0 when empty). Panics if lengths differ.
pub fn accuracy(pred: &[usize], truth: &[usize]) -> f64 {
    assert_eq!(
        pred.len(),
        truth.len(),
        "prediction and truth lengths differ"
    );
    if truth.is_empty() {
        return 0.0;
    }
    let hits = pred.iter().zip(truth).filter(|(p, t)| p == t).count();
    hits as f64 / truth.len() as f64
}

/// Share of rows on which two models give the same label (same as [`accuracy`]).
pub fn agreement(a: &[usize], b: &[usize]) -> f64 {
    accuracy(a, b)
}

/// Most frequent label (smallest one on ties); `None` when empty.
pub fn majority_class(labels: &[usize]) -> Option<usize> {
    let mut counts = std::collections::BTreeMap::new();
    for &l in labels {
        *counts.entry(l).or_insert(0usize) += 1;
    }
    let max = counts.values().copied().max()?;
    counts.into_iter().find(|&(_, c)| c == max).map(|(l, _)| l)
}

/// Nearest-rank percentile (`q` in 0..=100) of unsorted values; `None` when empty.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_and_agreement() {
        assert_eq!(accuracy(&[1, 2, 3, 4], &[1, 2, 0, 0]), 0.5);
        assert_eq!(agreement(&[], &[]), 0.0);
    }

    #[test]
    fn majority_prefers_smallest_on_tie() {
        assert_eq!(majority_class(&[5, 6, 6, 5, 7]), Some(5));
        assert_eq!(majority_class(&[]), None);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
