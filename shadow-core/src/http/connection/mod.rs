//! One connection's HTTP/1.1 parser: fed the two reassembled streams, it pairs requests with
//! production responses FIFO and emits [`Exchange`]s in request order as they complete.
//!
//! Each request gets a slot when its head is parsed; a final response fills the oldest slot
//! still waiting for one (interim 1xx responses do not). Slots leave in order, so pipelined
//! exchanges come out in the order the requests were sent.
//!
//! Every pairing is proven by the TCP sequence numbers: a response whose first segment does
//! not acknowledge the end of a request's head, or that the client had already received when
//! it sent the request (the request's acknowledgment number is past the response's first
//! byte), cannot answer it; without ACK flags, a response captured before the request cannot.
//! A response that answers no waiting request is an orphan: counted
//! ([`HttpStats::orphan_responses`]) and dropped, and not held for the next request once the
//! server had seen no request bytes beyond those already parsed.
//!
//! After anything that can desynchronise the pairing (a gap, unparsable bytes, a stream joined
//! in the middle) the parser resyncs at the next request or status line, and a response may
//! answer any waiting request it can; when it could answer several, they are all marked
//! [`Outcome::Gap`] rather than guessed. A hole where a response should start lost that
//! response: it answered the oldest waiting request (or a lost request before it), which then
//! becomes a gap, so the next response can pair with its own request.

mod message;
mod reader;
mod slot;
pub(crate) mod stream;

use crate::http::config::HttpConfig;
use crate::http::exchange::{Exchange, Header, HttpRequest, Outcome};
use crate::http::h2::H2cUpgrade;
use crate::http::stats::HttpStats;
use crate::reassembly::{CloseReason, StreamEvent};
use crate::segment::{Direction, FlowKey};
use bytes::Bytes;
use message::{Requests, Responses};
use reader::{Cut, DirectionReader, Protocol};
use slot::{PendingExchanges, Slot};

/// HTTP/1.1 parser of one connection. Feed it the connection's [`StreamEvent`]s with
/// [`handle`](Self::handle); finished exchanges are appended to `out` in request order.
pub struct ConnectionParser {
    flow: FlowKey,
    config: HttpConfig,
    requests: DirectionReader<Requests>,
    responses: DirectionReader<Responses>,
    pending: PendingExchanges,
    /// The server closed its side (FIN): a close-delimited response body ends there.
    server_closed: bool,
    /// The connection switched to HTTP/2 (`Upgrade: h2c`): what the HTTP/2 parser takes
    /// over.
    upgrade: Option<H2cUpgrade>,
}

impl ConnectionParser {
    /// A parser for a connection whose streams start at their beginning.
    pub fn new(flow: FlowKey, config: HttpConfig) -> Self {
        Self {
            flow,
            config,
            requests: DirectionReader::new(),
            responses: DirectionReader::new(),
            pending: PendingExchanges::default(),
            server_closed: false,
            upgrade: None,
        }
    }

    /// After an `Upgrade: h2c` request was answered by `101`: the upgraded request and the
    /// bytes after the switch, for the HTTP/2 parser. Anything else still pending ends here
    /// (incomplete) and goes to `out`.
    pub(crate) fn take_h2c_upgrade(&mut self, out: &mut Vec<Exchange>) -> Option<H2cUpgrade> {
        let upgrade = self.upgrade.take()?;
        self.pending.close(Outcome::Incomplete);
        self.pending.emit(self.flow, out);
        Some(upgrade)
    }

    /// Requests seen whose exchange was not emitted yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Bytes this connection's parser holds, approximately: unconsumed stream bytes, and the
    /// heads and bodies of the exchanges not emitted yet. Costs a pass over those exchanges.
    pub fn held_bytes(&self) -> usize {
        self.requests.held_bytes() + self.responses.held_bytes() + self.pending.held_bytes()
    }

    /// Applies one event of this connection.
    pub fn handle(&mut self, event: &StreamEvent, stats: &mut HttpStats, out: &mut Vec<Exchange>) {
        match event {
            StreamEvent::Joined { dir, .. } => self.joined(*dir),
            StreamEvent::Data {
                dir,
                seq,
                ack,
                ts_ns,
                bytes,
                ..
            } => self.data(*dir, *seq, *ack, *ts_ns, bytes, stats),
            StreamEvent::Gap { dir, ts_ns, .. } => self.gap(*dir, *ts_ns, stats),
            StreamEvent::Fin { dir, ts_ns, .. } => self.fin(*dir, *ts_ns, stats),
            StreamEvent::Closed { reason, ts_ns, .. } => self.close(*reason, *ts_ns, stats),
        }
        self.pending.emit(self.flow, out);
    }

    /// A stream was joined in the middle: resync it and confirm pairings by acks.
    fn joined(&mut self, dir: Direction) {
        self.pending.confirm_by_ack = true;
        match dir {
            Direction::Request => self.requests.resync(),
            Direction::Response => self.responses.resync(),
        }
    }

    fn data(
        &mut self,
        dir: Direction,
        seq: u32,
        ack: Option<u32>,
        ts: u64,
        bytes: &Bytes,
        stats: &mut HttpStats,
    ) {
        if self.responses.switched() {
            return;
        }
        match dir {
            Direction::Request => {
                stats.request_bytes += bytes.len() as u64;
                self.pending.request_stream_end = Some(seq.wrapping_add(bytes.len() as u32));
                self.requests.append(seq, ack, ts, bytes);
                self.run_requests(stats);
            }
            Direction::Response => {
                stats.response_bytes += bytes.len() as u64;
                self.responses.append(seq, ack, ts, bytes);
            }
        }
        // New requests may be what a buffered response was waiting for.
        self.run_responses(stats);
    }

    fn run_requests(&mut self, stats: &mut HttpStats) {
        self.requests.run(&mut self.pending, &self.config, stats);
        self.pending.requests_held = self.pending.awaits_h2c_answer() && self.requests.holds_head();
    }

    fn run_responses(&mut self, stats: &mut HttpStats) {
        let waited = self.pending.awaits_h2c_answer();
        let protocol = self.responses.run(&mut self.pending, &self.config, stats);
        self.after_response(protocol);
        // The server declined an `Upgrade: h2c`: the requests held behind it are HTTP/1.
        if waited && !self.pending.awaits_h2c_answer() && !self.responses.switched() {
            self.run_requests(stats);
            let protocol = self.responses.run(&mut self.pending, &self.config, stats);
            self.after_response(protocol);
        }
    }

    /// After a switch of protocols, the request stream is not HTTP/1 anymore either. A switch
    /// to h2c hands the upgraded request and the bytes after it over to HTTP/2; any other
    /// switch drops them.
    fn after_response(&mut self, protocol: Protocol) {
        if protocol != Protocol::Switched {
            return;
        }
        self.requests.switch();
        let handed = self
            .pending
            .switched
            .take()
            .and_then(|id| self.pending.get_mut(id))
            .and_then(Slot::hand_over_h2c);
        match handed {
            Some((head, body, timing)) => {
                let request = HttpRequest {
                    method: head.method,
                    target: head.target,
                    version: head.version,
                    headers: head
                        .headers
                        .into_iter()
                        .filter(|h| !connection_specific(h))
                        .collect(),
                    body,
                    trailers: Vec::new(),
                };
                self.upgrade = Some(H2cUpgrade {
                    request,
                    timing,
                    client_rest: self.requests.take_stream(),
                    server_rest: self.responses.take_stream(),
                });
            }
            None => self.responses.drop_buffered(),
        }
        self.pending.cut_unfinished_requests(Outcome::Unparsable);
    }

    /// A hole in one stream: the message it hit fails and that stream resyncs; pairings are
    /// confirmed by acks until a response completes.
    fn gap(&mut self, dir: Direction, ts: u64, stats: &mut HttpStats) {
        self.pending.confirm_by_ack = true;
        match dir {
            Direction::Request => self.requests.cut(&mut self.pending, Cut::Gap, ts, stats),
            Direction::Response => self.responses.cut(&mut self.pending, Cut::Gap, ts, stats),
        }
        self.run_responses(stats);
    }

    fn fin(&mut self, dir: Direction, ts: u64, stats: &mut HttpStats) {
        match dir {
            Direction::Request => {
                let end = Cut::End(Outcome::Incomplete);
                self.requests.cut(&mut self.pending, end, ts, stats);
            }
            Direction::Response => {
                self.server_closed = true;
                self.finish_close_delimited();
                // A response still waiting for its request (held back by a hole in the
                // request stream) is judged when the connection closes.
                let waiting = self.responses.holds_head() && !self.pending.any_awaiting();
                if !waiting {
                    let end = Cut::End(Outcome::Incomplete);
                    self.responses.cut(&mut self.pending, end, ts, stats);
                }
            }
        }
    }

    /// After the server's FIN, a close-delimited body being read is complete.
    fn finish_close_delimited(&mut self) {
        if self.server_closed {
            let protocol = self.responses.finish_at_close(&mut self.pending);
            self.after_response(protocol);
        }
    }

    fn close(&mut self, reason: CloseReason, ts: u64, stats: &mut HttpStats) {
        let incomplete = if reason.is_connection_end() {
            Outcome::Incomplete
        } else {
            Outcome::Gap
        };
        let end = Cut::End(incomplete);
        self.requests.cut(&mut self.pending, end, ts, stats);
        // Responses held for requests that will never come are read now, each an orphan.
        self.pending.closing = true;
        self.run_responses(stats);
        self.finish_close_delimited();
        self.responses.cut(&mut self.pending, end, ts, stats);
        self.pending.close(incomplete);
    }
}

/// Fields that belong to the HTTP/1.1 connection, not to the request carried on as an
/// HTTP/2 stream (RFC 9113 §8.2.2, RFC 7540 §3.2).
fn connection_specific(header: &Header) -> bool {
    const NAMES: [&str; 7] = [
        "connection",
        "upgrade",
        "http2-settings",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
    ];
    NAMES.iter().any(|n| header.name.eq_ignore_ascii_case(n))
}
