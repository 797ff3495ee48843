//! HTTP/1.1 over the two reassembled byte streams of a connection: requests paired FIFO with
//! production responses into [`Exchange`]s.

mod exchange;

pub use exchange::{Exchange, ExchangeTiming, Header, HttpRequest, HttpResponse, Outcome};
