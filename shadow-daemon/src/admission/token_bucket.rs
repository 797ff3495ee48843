//! Token-bucket rate limit on requests sent to the shadow.

use std::time::{Duration, Instant};

/// `rate` tokens per second, at most `burst` stored. Time is passed in, for tests.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `burst` 0 means `max(1, rate)`.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = if burst == 0 {
            rate.max(1.0)
        } else {
            f64::from(burst)
        };
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token if available.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Time until the next token (zero if one is available).
    pub fn wait_hint(&self) -> Duration {
        if self.tokens >= 1.0 || self.rate <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_at_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5, t0);
        assert_eq!((0..8).filter(|_| b.try_take(t0)).count(), 5);
        assert!(!b.try_take(t0));
        assert!(b.wait_hint() > Duration::ZERO);
        // 10/s: 100 ms gives one token, 250 ms two more (fractions carry over).
        assert!(b.try_take(t0 + Duration::from_millis(100)));
        assert!(!b.try_take(t0 + Duration::from_millis(100)));
        let t = t0 + Duration::from_millis(350);
        assert_eq!((0..5).filter(|_| b.try_take(t)).count(), 2);
    }

    #[test]
    fn never_stores_more_than_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, 3, t0);
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.try_take(later)).count(), 3);
    }

    #[test]
    fn default_burst_is_rate_and_time_going_backwards_is_harmless() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut b = TokenBucket::new(2.5, 0, t0);
        assert_eq!((0..5).filter(|_| b.try_take(t0)).count(), 2);
        assert!(!b.try_take(t0 - Duration::from_secs(1)));
    }
}
