//! The red wine quality dataset and its deterministic train / held-out split.
//!
//! The data (1599 rows, 11 physico-chemical features, quality score 3..=8) ships inside the
//! `linfa-datasets` crate, so nothing is downloaded at run time. See `demo/README.md` for its
//! origin and licence.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

/// Number of input features per row.
pub const N_FEATURES: usize = 11;

/// Share of each class that goes to the held-out set.
pub const HELD_OUT_FRACTION: f64 = 0.2;

/// Seed used by both binaries unless `--seed` says otherwise.
pub const DEFAULT_SEED: u64 = 42;

/// Names of the 11 input features, in column order.
pub const FEATURE_NAMES: [&str; N_FEATURES] = [
    "fixed acidity",
    "volatile acidity",
    "citric acid",
    "residual sugar",
    "chlorides",
    "free sulfur dioxide",
    "total sulfur dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
];

/// The whole dataset: one row per wine, label = quality score.
#[derive(Debug, Clone)]
pub struct WineData {
    /// Feature matrix, `rows x 11`.
    pub features: Array2<f64>,
    /// Quality score of each row.
    pub labels: Array1<usize>,
    /// Sorted distinct labels (the class axis of every probability output).
    pub classes: Vec<usize>,
}

impl WineData {
    /// Loads the red wine quality data embedded in `linfa-datasets`.
    pub fn load() -> Self {
        let ds = linfa_datasets::winequality();
        let features = ds.records;
        let labels = ds.targets;
        let mut classes: Vec<usize> = labels.to_vec();
        classes.sort_unstable();
        classes.dedup();
        Self {
            features,
            labels,
            classes,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no rows (never for the embedded data).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Features of the given rows, in the given order.
    pub fn features_of(&self, rows: &[usize]) -> Array2<f64> {
        self.features.select(Axis(0), rows)
    }

    /// Labels of the given rows, in the given order.
    pub fn labels_of(&self, rows: &[usize]) -> Array1<usize> {
        self.labels.select(Axis(0), rows)
    }

    /// One row's features.
    pub fn row(&self, row: usize) -> ArrayView1<'_, f64> {
        self.features.row(row)
    }

    /// All features as a view.
    pub fn view(&self) -> ArrayView2<'_, f64> {
        self.features.view()
    }
}

/// Row indices of the training and held-out sets; disjoint, each sorted ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Rows the models are trained on.
    pub train: Vec<usize>,
    /// Rows kept back: served as traffic and used for evaluation.
    pub held_out: Vec<usize>,
}

impl Split {
    /// Stratified split: for every class, a seeded shuffle of its rows sends
    /// `round(n * HELD_OUT_FRACTION)` of them (at least one, never all) to the held-out set.
    /// Same labels and seed give the same split on every machine (no external RNG).
    pub fn stratified(labels: ArrayView1<'_, usize>, seed: u64) -> Self {
        let mut classes: Vec<usize> = labels.to_vec();
        classes.sort_unstable();
        classes.dedup();
        let mut rng = SplitMix64::new(seed);
        let mut train = Vec::new();
        let mut held_out = Vec::new();
        for class in classes {
            let mut rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
            rng.shuffle(&mut rows);
            let n = rows.len();
            let k = if n < 2 {
                0
            } else {
                ((n as f64 * HELD_OUT_FRACTION).round() as usize).clamp(1, n - 1)
            };
            held_out.extend_from_slice(&rows[..k]);
            train.extend_from_slice(&rows[k..]);
        }
        train.sort_unstable();
        held_out.sort_unstable();
        Self { train, held_out }
    }
}

/// Small, portable PRNG (Steele et al., "SplitMix64") so the split never depends on a crate version.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform integer in `0..bound` (`bound > 0`), by rejection to avoid modulo bias.
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        let zone = u64::MAX - (u64::MAX % bound);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % bound;
            }
        }
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_data_has_expected_shape() {
        let data = WineData::load();
        assert_eq!(data.len(), 1599);
        assert_eq!(data.features.ncols(), N_FEATURES);
        assert_eq!(data.classes, vec![3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn split_is_deterministic_disjoint_and_complete() {
        let data = WineData::load();
        let a = Split::stratified(data.labels.view(), DEFAULT_SEED);
        let b = Split::stratified(data.labels.view(), DEFAULT_SEED);
        assert_eq!(a, b);
        let c = Split::stratified(data.labels.view(), DEFAULT_SEED + 1);
        assert_ne!(a.held_out, c.held_out);

        let mut all: Vec<usize> = a.train.iter().chain(&a.held_out).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..data.len()).collect::<Vec<_>>());
        // ~20% held out.
        assert!(
            (300..=340).contains(&a.held_out.len()),
            "{}",
            a.held_out.len()
        );
    }

    #[test]
    fn split_is_stratified() {
        let data = WineData::load();
        let split = Split::stratified(data.labels.view(), 7);
        for &class in &data.classes {
            let in_train = split
                .train
                .iter()
                .filter(|&&r| data.labels[r] == class)
                .count();
            let held = split
                .held_out
                .iter()
                .filter(|&&r| data.labels[r] == class)
                .count();
            assert!(in_train > 0 && held > 0, "class {class}: {in_train}/{held}");
        }
    }

    #[test]
    fn splitmix_known_first_value() {
        // Reference value of SplitMix64 seeded with 0.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }
}
