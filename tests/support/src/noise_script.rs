//! The script of the noise-baseline tests (the daemon's `tests/noise_baseline.rs` and the
//! end-to-end `noise_baseline_e2e.rs`): what production, its twin the baseline and the shadow
//! answer to request `id`, so that both tests derive their expected counts from one place and
//! never from the code under test.
//!
//! Every instance fills `/request_id` and `/timestamp` at random and sometimes jitters
//! `/meta/jitter` (noise); the shadow also predicts another class on some requests and moves a
//! score beyond tolerance on others (real differences).

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Which model server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The production model.
    Production,
    /// Its twin, the noise baseline.
    Baseline,
    /// The shadow model.
    Shadow,
}

/// The class production (and its twin) predicts for request `id`.
pub fn class(id: u64) -> usize {
    (id % 3) as usize
}

/// Requests where the shadow predicts another class: a label disagreement.
pub fn shadow_flips_label(id: u64) -> bool {
    id % 5 == 4
}

/// Requests where the shadow moves a score beyond tolerance, keeping the label.
pub fn shadow_moves_score(id: u64) -> bool {
    id % 5 == 2
}

/// Whether `role` jitters `/meta/jitter` on request `id` (a fixed subset, so the expected
/// counts are known; the jitter itself is random).
pub fn jitters(role: Role, id: u64) -> bool {
    match role {
        Role::Production => id % 4 == 1,
        Role::Baseline => id.is_multiple_of(2),
        Role::Shadow => id.is_multiple_of(3),
    }
}

/// A random 64-bit number (std's randomly seeded hasher over a counter).
pub fn random() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// The scores `role` answers for request `id` (the label is their argmax).
pub fn scores(role: Role, id: u64) -> [f64; 3] {
    let mut scores = [0.1, 0.1, 0.1];
    let winner = if role == Role::Shadow && shadow_flips_label(id) {
        (class(id) + 1) % 3
    } else {
        class(id)
    };
    scores[winner] = 0.8;
    if role == Role::Shadow && shadow_moves_score(id) {
        scores[(class(id) + 1) % 3] += 0.05;
    }
    scores
}

/// The Open Inference Protocol answer (JSON text) of `role` to request `id`: the scores, a
/// random `request_id`, the time as text (as a number a nanosecond clock would be equal within
/// the relative tolerance), and `/meta/jitter`.
pub fn answer(role: Role, id: u64) -> String {
    let jitter = if jitters(role, id) {
        // 1e-3 .. 2e-3: well beyond the default tolerance of 1e-6.
        0.5 + 1e-3 * (1.0 + (random() % 1000) as f64 / 1000.0)
    } else {
        0.5
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let [a, b, c] = scores(role, id);
    format!(
        r#"{{"model_name": "m", "id": "{id}", "request_id": "{:016x}", "timestamp": "{}.{:09}", "meta": {{"jitter": {jitter:?}}}, "outputs": [{{"name": "probabilities", "shape": [1, 3], "datatype": "FP64", "data": [{a:?}, {b:?}, {c:?}]}}]}}"#,
        random(),
        now.as_secs(),
        now.subsec_nanos()
    )
}

/// The inference request for `id`.
pub fn request_body(id: u64) -> Vec<u8> {
    format!(
        r#"{{"id": "{id}", "inputs": [{{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [{:?}, 1.0, 2.0]}}]}}"#,
        id as f64
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_json_with_the_scripted_scores() {
        // A label flip: the shadow's winner moves to the next class.
        assert_eq!(scores(Role::Production, 4), [0.1, 0.8, 0.1]);
        assert_eq!(scores(Role::Shadow, 4), [0.1, 0.1, 0.8]);
        let a = answer(Role::Baseline, 2);
        assert!(a.starts_with(r#"{"model_name": "m", "id": "2""#), "{a}");
        assert!(a.contains(r#""data": [0.1, 0.1, 0.8]"#), "{a}");
        let body = String::from_utf8(request_body(7)).unwrap();
        assert!(body.contains(r#""data": [7.0, 1.0, 2.0]"#), "{body}");
    }
}
