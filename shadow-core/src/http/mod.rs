//! HTTP/1.1 over the two reassembled byte streams of a connection: requests paired FIFO with
//! production responses into [`Exchange`]s.
//!
//! - [`head`]: request/status lines and headers (`httparse`), body framing rules.
//! - [`body`]: Content-Length, chunked and close-delimited bodies with a size cap.
//! - [`ConnectionParser`]: one connection's two streams → exchanges (pipelining, 1xx, HEAD,
//!   resync after gaps).
//! - [`ExchangeAssembler`]: segments of many connections → exchanges (reassembly + parsers);
//!   [`exchanges_from_segments`] for a whole capture.

mod assembler;
mod body;
mod connection;
mod exchange;
mod head;

pub use assembler::{ExchangeAssembler, exchanges_from_segments};
pub use connection::{ConnectionParser, HttpConfig, HttpStats};
pub use exchange::{Exchange, ExchangeTiming, Header, HttpRequest, HttpResponse, Outcome};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
