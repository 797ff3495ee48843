//! What shadowtap's end-to-end tests (`shadowtap-tests`), the daemon's own integration tests,
//! `cargo xtask` (benchmarks, demo) and the demo's tests share when they talk to servers from
//! the outside:
//!
//! - [`http`]: HTTP/1.1 messages framed by `Content-Length` or chunked encoding, parsed from a
//!   buffer ([`http::parse_message`]) or read from a blocking stream ([`http::read_message`]),
//!   and a one-shot [`http::get`].
//! - [`accept`]: the accept loop of the test servers, one thread per connection, stoppable.
//! - [`prom`]: Prometheus text exposition parsed into samples: one series, sums over label
//!   matches, histogram quantiles.
//! - [`noise_script`]: what each model server of the noise-baseline tests answers.
//!
//! Standard library only: xtask depends on it, and xtask must build on a machine that has
//! nothing but a stable toolchain.

pub mod accept;
pub mod http;
pub mod noise_script;
pub mod prom;
