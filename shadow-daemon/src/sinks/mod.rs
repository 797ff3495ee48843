//! Where results go: [`metrics`] (Prometheus registry), [`admin`] (the HTTP server exposing it),
//! [`discrepancy_log`] (JSON lines of differing comparisons).
pub mod admin;
pub mod discrepancy_log;
pub mod metrics;
