//! Where results go.
pub mod discrepancy_log;
pub mod metrics;
pub mod report;
