//! Where results go: [`metrics`] (Prometheus registry), [`admin`] (the HTTP server exposing it),
//! [`discrepancy_log`] (JSON lines of differing comparisons), [`verdict_metrics`] (quality, labels
//! and the verdict as metrics).
pub mod admin;
pub mod discrepancy_log;
pub mod metrics;
pub mod verdict_metrics;
