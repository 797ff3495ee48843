//! shadowtap's sans-IO core: everything between captured bytes and a comparison that does no
//! I/O of its own, so it builds, tests and fuzzes on stable Rust with no eBPF toolchain.
//!
//! Follow one request from the wire to the comparison by reading the modules in this order:
//!
//! 1. [`segment`]: one TCP segment of a tapped connection ([`segment::Segment`]), as every
//!    capture source produces it; [`frame`] decodes and encodes raw packets, [`pcap`] reads
//!    capture files and [`pcap_writer`] writes them; [`ring_record`] decodes the eBPF tap's
//!    ring-buffer records and [`chunks`] rejoins the chunks of a large segment.
//! 2. [`reassembly`]: ordered byte streams per connection and direction; gaps are detected,
//!    never guessed.
//! 3. [`http`]: HTTP/1.1 requests paired with production responses, and HTTP/2 streams
//!    ([`http::h2`]), as [`http::Exchange`]s.
//! 4. [`compare`]: a shadow answer against the production response: status, latency, body and
//!    prediction differences, after [`encoding`] has undone both bodies' content codings; a
//!    gRPC call's status and messages are read by [`grpc`] (framing, `grpc-encoding`,
//!    protobuf → JSON by a preset, a user `.proto` or the raw wire format).
//! 5. [`evaluation`]: running agreement, accuracy, precision, recall, F1, latency.
//! 6. [`noise`]: what differs between production and a second production instance (the noise
//!    baseline) is nondeterminism, kept apart from the shadow's real discrepancies.
//! 7. [`labels`]: comparisons wait, bounded, for their ground-truth label.
//! 8. [`stats`]: model-quality statistics against ground truth (Wilson and Newcombe
//!    intervals, McNemar's test, confusion matrices, regression errors, PSI).
//! 9. [`criteria`]: success criteria judged on those statistics → PROMOTE / HOLD / REJECT.
//! 10. [`rollback`]: after promotion (reverse shadow), when a failed criterion calls for
//!     rolling back, at most once per cooldown.
//! 11. [`timeseries`]: the same numbers per interval (agreement, accuracy, latency
//!     quantiles, counts) in a bounded ring, for charts over time.
//!
//! [`vocabulary`] names the outcomes, skip reasons, drop stages and results that every later
//! layer (daemon, metrics, logs, tests) reports. `testkit` (feature `testkit`) builds synthetic
//! captures for tests, benchmarks and fuzzing.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chunks;
pub mod compare;
pub mod criteria;
pub mod encoding;
pub mod evaluation;
pub mod frame;
pub mod grpc;
pub mod http;
pub mod labels;
pub mod noise;
pub mod pcap;
pub mod pcap_writer;
pub mod reassembly;
pub mod ring_record;
pub mod rollback;
pub mod segment;
pub mod stats;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod timeseries;
pub mod vocabulary;
