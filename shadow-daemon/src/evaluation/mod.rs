//! Running aggregates over comparisons.
