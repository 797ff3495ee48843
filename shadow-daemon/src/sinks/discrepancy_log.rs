//! Discrepancy log (JSON lines).
