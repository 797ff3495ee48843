//! Deterministic sampling: a request is in or out by a hash of its method, target and body, so
//! a rerun over the same traffic samples the same requests.

/// Samples `percent` of requests, deterministically per request content and `seed`.
#[derive(Clone, Copy, Debug)]
pub struct Sampler {
    /// Threshold out of 1_000_000.
    threshold: u64,
    seed: u64,
}

impl Sampler {
    /// `percent` in 0..=100 (validated by the config).
    pub fn new(percent: f64, seed: u64) -> Self {
        Sampler {
            threshold: (percent.clamp(0.0, 100.0) * 10_000.0).round() as u64,
            seed,
        }
    }

    /// Whether this request is in the sample.
    pub fn sampled(&self, method: &str, target: &str, body: &[u8]) -> bool {
        if self.threshold >= 1_000_000 {
            return true;
        }
        let mut h = Fnv1a::new(self.seed);
        h.write(method.as_bytes());
        h.write(&[0]);
        h.write(target.as_bytes());
        h.write(&[0]);
        h.write(body);
        h.finish() % 1_000_000 < self.threshold
    }
}

/// 64-bit FNV-1a: stable across Rust versions and platforms (unlike `DefaultHasher`).
struct Fnv1a(u64);

impl Fnv1a {
    fn new(seed: u64) -> Self {
        let mut h = Fnv1a(0xcbf2_9ce4_8422_2325);
        h.write(&seed.to_le_bytes());
        h
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        // Final avalanche (splitmix64) so that the low digits are well mixed.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies() -> Vec<Vec<u8>> {
        (0..10_000)
            .map(|i| format!("{{\"inputs\":[{i}]}}").into_bytes())
            .collect()
    }

    #[test]
    fn same_request_same_decision_across_samplers() {
        let a = Sampler::new(30.0, 7);
        let b = Sampler::new(30.0, 7);
        let picks_a: Vec<bool> = bodies()
            .iter()
            .map(|x| a.sampled("POST", "/p", x))
            .collect();
        let picks_b: Vec<bool> = bodies()
            .iter()
            .map(|x| b.sampled("POST", "/p", x))
            .collect();
        assert_eq!(picks_a, picks_b);
    }

    #[test]
    fn hash_is_standard_fnv1a_64() {
        // Published FNV-1a 64-bit test vectors: the hash cannot drift between builds.
        for (input, want) in [
            ("", 0xcbf2_9ce4_8422_2325_u64),
            ("a", 0xaf63_dc4c_8601_ec8c),
            ("foobar", 0x8594_4171_f739_67e8),
        ] {
            let mut h = Fnv1a(0xcbf2_9ce4_8422_2325);
            h.write(input.as_bytes());
            assert_eq!(h.0, want, "{input:?}");
        }
    }

    #[test]
    fn fraction_is_close_to_percent_and_edges_are_exact() {
        let s = Sampler::new(25.0, 0);
        let n = bodies()
            .iter()
            .filter(|x| s.sampled("POST", "/p", x))
            .count();
        assert!((2_200..=2_800).contains(&n), "{n} of 10000 at 25%");
        assert!(
            bodies()
                .iter()
                .all(|x| Sampler::new(100.0, 0).sampled("GET", "/", x))
        );
        assert!(
            !bodies()
                .iter()
                .any(|x| Sampler::new(0.0, 0).sampled("GET", "/", x))
        );
    }

    #[test]
    fn seed_changes_the_subset_and_samples_nest() {
        let a: Vec<bool> = bodies()
            .iter()
            .map(|x| Sampler::new(50.0, 1).sampled("POST", "/p", x))
            .collect();
        let b: Vec<bool> = bodies()
            .iter()
            .map(|x| Sampler::new(50.0, 2).sampled("POST", "/p", x))
            .collect();
        assert_ne!(a, b);
        // Raising the percentage keeps every request already sampled.
        for x in bodies() {
            if Sampler::new(10.0, 1).sampled("POST", "/p", &x) {
                assert!(Sampler::new(20.0, 1).sampled("POST", "/p", &x));
            }
        }
    }
}
