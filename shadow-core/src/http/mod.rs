//! HTTP/1.1 over the two reassembled byte streams of a connection: requests paired FIFO with
//! production responses into [`Exchange`]s.
//!
//! - `head`: request/status lines and headers (`httparse`), body framing rules.
//! - `body`: Content-Length, chunked and close-delimited bodies with a size cap.
//! - [`ConnectionParser`] (`connection`): one connection's two streams → exchanges
//!   (pipelining, 1xx, HEAD, protocol switches, resync after gaps).
//! - [`ExchangeAssembler`]: segments of many connections → exchanges (reassembly + parsers);
//!   [`exchanges_from_segments`] for a whole capture.
//! - [`Exchange`] and its parts (`exchange`), the parser's limits ([`HttpConfig`]) and
//!   counters ([`HttpStats`]).

mod assembler;
mod body;
mod config;
mod connection;
mod exchange;
mod head;
mod stats;

pub use assembler::{ExchangeAssembler, exchanges_from_segments};
pub use config::HttpConfig;
pub use connection::ConnectionParser;
pub use exchange::{
    Exchange, ExchangeTiming, Header, HttpRequest, HttpResponse, Outcome, Protocol,
};
pub use stats::{HttpStats, Refusal};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
