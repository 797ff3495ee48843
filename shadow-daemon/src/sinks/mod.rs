//! Where results go: [`metrics`] (Prometheus registry), [`timeseries`] (the same per interval,
//! in a bounded ring), [`admin`] (the HTTP server exposing them), [`discrepancy_log`] (JSON
//! lines of differing comparisons), [`recent_discrepancies`] (the last few of them, redacted
//! alike, for the admin API), [`verdict_metrics`] (quality, labels and the verdict as
//! metrics).
pub mod admin;
pub mod discrepancy_log;
pub mod metrics;
pub mod recent_discrepancies;
pub mod timeseries;
pub mod verdict_metrics;
