//! shadowtap daemon: taps the traffic of a production model server, replays each request to a
//! shadow model and compares the two answers.
//!
//! # Layout
//!
//! Follow one request from the wire to the comparison by reading the modules in this order:
//!
//! 1. [`capture`]: TCP segments from the eBPF tap, AF_PACKET or a pcap file ([`capture::Segment`]).
//! 2. [`reassembly`]: ordered byte streams per connection and direction; gaps are detected, never guessed.
//! 3. [`http`]: HTTP/1.1 requests paired with production responses ([`http::Exchange`]).
//! 4. [`pipeline`]: filters, sampling, rate limit, bounded queue (never backpressures capture).
//! 5. [`replay`]: the request re-sent to the shadow model.
//! 6. [`compare`]: status, latency and body/prediction differences.
//! 7. [`evaluation`]: running agreement, accuracy, precision, recall, F1, latency.
//! 8. [`sinks`]: Prometheus metrics and the admin server, discrepancy log.
//!
//! [`mirror`] joins stages 4-8 behind a channel of exchanges; [`config`] is the TOML/flag
//! configuration of `shadowd run`.
//!
//! [`cli`] and [`commands`] wire these into the `shadowd` subcommands; [`error`] holds one error
//! enum per boundary; [`shutdown`] coordinates Ctrl-C/SIGTERM. [`testkit`] builds synthetic
//! captures for tests, benchmarks and fuzzing.

pub mod admission;
pub mod capture;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod exchange_source;
pub mod mirror;
pub mod replay;
pub mod shutdown;
pub mod sinks;
