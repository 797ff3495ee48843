//! Statistics over a bench's repetitions: min / median / max of a figure, and ratios taken per
//! repetition against the baseline of the same repetition (so a noisy moment moves both sides of
//! a ratio alike).

use serde_json::{Value, json};

/// Min, median and max of one figure over the repetitions that produced it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    /// How many repetitions produced a value.
    pub n: usize,
}

impl Spread {
    /// The spread of the finite values in `values`; `None` if there is none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            min: v[0],
            median,
            max: v[n - 1],
            n,
        })
    }
}

/// `variant[i] / baseline[i]` for every repetition `i` where both exist and the baseline is
/// not zero (`None` in the others, so positions keep naming repetitions).
pub fn ratios_per_rep(variant: &[Option<f64>], baseline: &[Option<f64>]) -> Vec<Option<f64>> {
    variant
        .iter()
        .zip(baseline)
        .map(|(v, b)| match (v, b) {
            (Some(v), Some(b)) if *b != 0.0 && v.is_finite() && b.is_finite() => Some(v / b),
            _ => None,
        })
        .collect()
}

/// The spread of the values present in `per_rep`.
pub fn spread(per_rep: &[Option<f64>]) -> Option<Spread> {
    Spread::of(&per_rep.iter().flatten().copied().collect::<Vec<_>>())
}

/// A figure's raw values per repetition and their spread, as JSON: `{"per_rep": [...], "min",
/// "median", "max", "n"}` (`null` where a repetition has no value; no spread keys if none has).
pub fn figure_json(per_rep: &[Option<f64>]) -> Value {
    let mut v = json!({ "per_rep": per_rep });
    if let (Some(s), Some(obj)) = (spread(per_rep), v.as_object_mut()) {
        obj.insert("min".into(), s.min.into());
        obj.insert("median".into(), s.median.into());
        obj.insert("max".into(), s.max.into());
        obj.insert("n".into(), s.n.into());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_odd_and_even_counts() {
        assert_eq!(
            Spread::of(&[3.0, 1.0, 2.0]),
            Some(Spread {
                min: 1.0,
                median: 2.0,
                max: 3.0,
                n: 3
            })
        );
        let s = Spread::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.min, s.median, s.max, s.n), (1.0, 2.5, 4.0, 4));
        let one = Spread::of(&[7.0]).unwrap();
        assert_eq!((one.min, one.median, one.max), (7.0, 7.0, 7.0));
    }

    #[test]
    fn spread_ignores_non_finite_values() {
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[f64::NAN, f64::INFINITY]), None);
        let s = Spread::of(&[f64::NAN, 5.0, 1.0]).unwrap();
        assert_eq!((s.min, s.median, s.max, s.n), (1.0, 3.0, 5.0, 2));
    }

    #[test]
    fn ratios_pair_each_rep_with_its_own_baseline() {
        let variant = [Some(90.0), Some(50.0), None, Some(10.0)];
        let baseline = [Some(100.0), Some(50.0), Some(10.0), Some(0.0)];
        assert_eq!(
            ratios_per_rep(&variant, &baseline),
            vec![Some(0.9), Some(1.0), None, None]
        );
        // Not the ratio of medians: per rep 0.9 and 1.0 → median 0.95.
        let s = spread(&ratios_per_rep(&variant, &baseline)).unwrap();
        assert!((s.median - 0.95).abs() < 1e-12, "{s:?}");
        assert_eq!((s.min, s.max, s.n), (0.9, 1.0, 2));
    }

    #[test]
    fn figure_json_keeps_positions_and_adds_the_spread() {
        let v = figure_json(&[Some(2.0), None, Some(4.0)]);
        assert_eq!(v["per_rep"], json!([2.0, null, 4.0]));
        assert_eq!(v["median"], json!(3.0));
        assert_eq!(v["n"], json!(2));
        let empty = figure_json(&[None]);
        assert_eq!(empty, json!({"per_rep": [null]}));
    }
}
