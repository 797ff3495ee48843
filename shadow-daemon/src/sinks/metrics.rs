//! Prometheus registry and admin HTTP server.
