//! Counters of the HTTP layer: exchanges per outcome, bytes fed and skipped, responses that
//! paired with nothing.

use super::exchange::Outcome;

/// HTTP counters, read by the metrics layer (`exchanges_total{outcome}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Exchanges emitted as [`Outcome::Complete`].
    pub complete: u64,
    /// Exchanges emitted as [`Outcome::Gap`].
    pub gap: u64,
    /// Exchanges emitted as [`Outcome::Truncated`].
    pub truncated: u64,
    /// Exchanges emitted as [`Outcome::NoResponse`].
    pub no_response: u64,
    /// Exchanges emitted as [`Outcome::Unparsable`].
    pub unparsable: u64,
    /// Request stream bytes fed to the parsers.
    pub request_bytes: u64,
    /// Response stream bytes fed to the parsers.
    pub response_bytes: u64,
    /// Bytes skipped while looking for the next message start.
    pub skipped_bytes: u64,
    /// 1xx responses seen (not paired).
    pub interim_responses: u64,
    /// Final responses that answered no known request and were dropped.
    pub orphan_responses: u64,
}

impl HttpStats {
    /// Counts one emitted exchange.
    pub fn count(&mut self, outcome: Outcome) {
        *self.outcome_mut(outcome) += 1;
    }

    /// Exchanges emitted with `outcome`.
    pub fn outcome(&self, outcome: Outcome) -> u64 {
        let mut copy = *self;
        *copy.outcome_mut(outcome)
    }

    fn outcome_mut(&mut self, outcome: Outcome) -> &mut u64 {
        match outcome {
            Outcome::Complete => &mut self.complete,
            Outcome::Gap => &mut self.gap,
            Outcome::Truncated => &mut self.truncated,
            Outcome::NoResponse => &mut self.no_response,
            Outcome::Unparsable => &mut self.unparsable,
        }
    }
}
