//! HTTP/2 over cleartext (h2c): one connection's two reassembled byte streams → one
//! [`Exchange`](crate::http::Exchange) per stream.
//!
//! - [`frame`]: frames off the front of a buffer (check the 9-byte header, then wait for the
//!   payload); padding and priority removed.
//! - [`hpack`]: the header compression, one decoder per direction.
//! - `stream`: one stream's request and response (head, body, trailers, outcome).
//! - `sync`: frame boundaries in bytes seen from the middle (only ever counted).
//! - [`H2Connection`]: the connection (preface, SETTINGS, CONTINUATION, RST_STREAM,
//!   GOAWAY, FIN) and its streams.
//!
//! Connections are routed here per connection by
//! [`ExchangeAssembler`](crate::http::ExchangeAssembler): the client preface (prior
//! knowledge), an HTTP/1.1 `Upgrade: h2c` answered by `101`, or frames found in a connection
//! joined mid-way.

mod connection;
pub mod frame;
pub mod hpack;
mod stream;
mod sync;

pub(crate) use connection::H2cUpgrade;
pub use connection::{H2Connection, PREFACE};
pub(crate) use sync::{Sync, find_frames};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
