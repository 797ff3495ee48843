//! shadowtap daemon: taps the traffic of a production model server, replays each request to a
//! shadow model and compares the two answers. The sans-IO parts (segments, reassembly, HTTP,
//! comparison, evaluation, the shared vocabulary) are in `shadow_core`.
//!
//! # Layout
//!
//! Follow one request from the wire to the comparison by reading the modules in this order:
//!
//! 1. [`capture`]: TCP segments from the eBPF tap or AF_PACKET.
//! 2. [`exchange_source`]: segments → reassembly → HTTP exchanges (`shadow_core`), on a channel.
//! 3. [`admission`]: outcome, filters, sampling, circuit breaker, rate limit, bounded queue
//!    (never backpressures capture).
//! 4. [`replay`]: the request re-sent to the shadow model.
//! 5. [`mirror`]: the runtime joining admission → replay → compare (`shadow_core::compare`) →
//!    evaluation, and handing the results on.
//! 6. [`sinks`]: Prometheus metrics and the admin server (also where ground-truth labels
//!    arrive), discrepancy log.
//! 7. [`decision`]: once a second, measurements → success criteria → the verdict (published
//!    through the sinks, handed to the rollback plan), and the state file.
//!
//! [`rollback`] runs `[rollback]`'s actions (command, webhook) when a reverse-shadow run's
//! verdict fails a trigger criterion (`shadow_core::rollback` decides when).
//!
//! Beside the data path, [`resources`] samples the CPU and memory of both model servers and of
//! shadowd for the metrics and `/api/summary`.
//!
//! # Dependencies point one way
//!
//! A module imports only from the layers before it (checked by `xtask/tests/layers.rs`):
//!
//! ```text
//! allocator, shutdown, error, security, privileges, logging → capture, service → config, telemetry
//!   → exchange_source, admission, replay, resources → mirror → rollback → sinks → decision
//!   → commands → cli
//! ```
//!
//! Stages never name a sink: they report events through [`telemetry::Telemetry`] (which
//! [`sinks::metrics::Metrics`] implements), the mirror hands differing comparisons to a
//! [`mirror::DiscrepancySink`] (which the discrepancy log implements), and
//! [`commands`] wires stages and sinks together.
//!
//! [`cli`] parses the `shadowd` command line and dispatches to [`commands`]; [`config`] is the
//! TOML/flag configuration of `shadowd run`; [`error`] holds one error enum per boundary;
//! [`shutdown`] coordinates Ctrl-C/SIGTERM; [`security`] holds the checks made before anything
//! privileged (file and directory permissions, the admin API's bearer token); [`privileges`]
//! drops every capability once the tap is attached; [`service`] tells systemd (`Type=notify`)
//! when the tap is ready, how it is doing (`STATUS=`, watchdog keep-alives) and when it stops;
//! [`logging`] sets up the log format (`--log-format`) and rate-limits repeated warnings.

pub mod admission;
pub mod allocator;
pub mod capture;
pub mod cli;
pub mod commands;
pub mod config;
pub mod decision;
pub mod error;
pub mod exchange_source;
pub mod logging;
pub mod mirror;
pub mod privileges;
pub mod replay;
pub mod resources;
pub mod rollback;
pub mod security;
pub mod service;
pub mod shutdown;
pub mod sinks;
pub mod telemetry;
