//! HTTP over the two reassembled byte streams of a connection: HTTP/1.1 requests paired FIFO
//! with production responses, and HTTP/2 streams ([`h2`]), into [`Exchange`]s.
//!
//! - `head`: request/status lines and headers (`httparse`), body framing rules.
//! - `body`: Content-Length, chunked and close-delimited bodies with a size cap.
//! - [`ConnectionParser`] (`connection`): one connection's two streams → exchanges
//!   (pipelining, 1xx, HEAD, protocol switches, resync after gaps).
//! - [`h2`]: HTTP/2 over cleartext (frames, HPACK, streams) → one exchange per stream.
//! - [`ExchangeAssembler`]: segments of many connections → exchanges (reassembly + parsers);
//!   it tells HTTP/2 connections from HTTP/1 ones (client preface, `Upgrade: h2c`, frames
//!   in a connection joined mid-way); [`exchanges_from_segments`] for a whole capture.
//! - [`Exchange`] and its parts (`exchange`), the parser's limits ([`HttpConfig`]) and
//!   counters ([`HttpStats`]).

mod assembler;
mod body;
mod config;
mod connection;
mod exchange;
pub mod h2;
mod head;
mod stats;

pub use assembler::{ExchangeAssembler, exchanges_from_segments};
pub use config::{H2Limits, HttpConfig};
pub use connection::ConnectionParser;
pub use exchange::{
    Exchange, ExchangeTiming, Header, HttpRequest, HttpResponse, Outcome, Protocol,
};
pub use stats::{HttpStats, Refusal, StreamLoss};

#[cfg(test)]
mod bounds_tests;
#[cfg(test)]
pub(crate) mod proptests;
#[cfg(test)]
mod tests;
