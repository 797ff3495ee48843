//! Segments in, exchanges out: a [`Reassembler`] feeding one parser per connection, HTTP/1.1
//! ([`ConnectionParser`]) or HTTP/2 ([`H2Connection`]). This is what the live daemon,
//! `inspect` and `replay` use.
//!
//! Which protocol a connection speaks is told by its first request bytes: the HTTP/2 client
//! preface (prior knowledge) makes it HTTP/2; anything else HTTP/1.1, which may itself switch
//! to HTTP/2 (`Upgrade: h2c` answered by `101`). A connection joined mid-way is HTTP/2 if its
//! request bytes hold HTTP/2 frames (strictly checked, never an HTTP/1 request line); its
//! HPACK state is unknown, so its streams are only counted. Until the first request bytes
//! decide, a connection's events wait (at most [`DETECT_BYTES`] of each direction).
//!
//! What the parsers of all connections hold together is kept within
//! [`HttpConfig::max_buffered`]: after each event the connection's parser is measured, and over
//! the cap the connection holding the most is dropped (its pending exchanges end as gaps,
//! counted in [`HttpStats::memory_evictions`]) and read on from there as if joined mid-way.

use super::config::HttpConfig;
use super::connection::ConnectionParser;
use super::exchange::Exchange;
use super::h2::{H2Connection, PREFACE, Sync, find_frames};
use super::stats::HttpStats;
use crate::reassembly::{CloseReason, Reassembler, ReassemblyConfig, ReassemblyStats, StreamEvent};
use crate::segment::{Direction, FlowKey, Segment};
use bytes::BytesMut;
use std::collections::HashMap;

/// Bytes of each direction held at most while a connection's protocol is undecided.
pub const DETECT_BYTES: usize = 64 << 10;

/// A connection's parser, once its protocol is known.
enum Parser {
    /// Not known yet: its events so far.
    Detecting(Detector),
    Http1(Box<ConnectionParser>),
    H2(Box<H2Connection>),
}

impl Parser {
    /// Bytes the parser holds, approximately (with the parser itself once its protocol is
    /// known; a detector that holds no bytes counts as nothing, so evicting frees memory).
    fn held_bytes(&self) -> usize {
        match self {
            Parser::Detecting(detector) => detector.held_bytes(),
            Parser::Http1(conn) => std::mem::size_of::<ConnectionParser>() + conn.held_bytes(),
            Parser::H2(conn) => std::mem::size_of::<H2Connection>() + conn.held_bytes(),
        }
    }
}

/// A connection's parser and the bytes it held after its last event.
struct Conn {
    parser: Parser,
    held: usize,
}

/// What the first request bytes say.
enum Verdict {
    Wait,
    Http1,
    /// HTTP/2 from the preface on.
    H2,
    /// HTTP/2 frames in a connection joined mid-way.
    H2Joined,
}

/// The events of a connection whose protocol is not known yet.
#[derive(Default)]
struct Detector {
    events: Vec<StreamEvent>,
    /// The first request bytes.
    request: BytesMut,
    response_bytes: usize,
    /// The request stream was joined mid-way.
    joined: bool,
    /// Payload bytes of the events kept.
    event_bytes: usize,
}

impl Detector {
    /// Payload bytes held (a fresh detector holds none, which is what makes an eviction
    /// free memory for sure).
    fn held_bytes(&self) -> usize {
        self.request.capacity() + self.event_bytes
    }

    fn push(&mut self, event: &StreamEvent) -> Verdict {
        if let StreamEvent::Data { bytes, .. } = event {
            self.event_bytes += bytes.len();
        }
        self.events.push(event.clone());
        match event {
            StreamEvent::Joined {
                dir: Direction::Request,
                ..
            } => {
                self.joined = true;
                Verdict::Wait
            }
            StreamEvent::Joined { .. } => Verdict::Wait,
            StreamEvent::Data {
                dir: Direction::Request,
                bytes,
                ..
            } => {
                let room = DETECT_BYTES.saturating_sub(self.request.len());
                self.request
                    .extend_from_slice(&bytes[..bytes.len().min(room)]);
                self.judge()
            }
            StreamEvent::Data { bytes, .. } => {
                self.response_bytes += bytes.len();
                if self.response_bytes > DETECT_BYTES {
                    Verdict::Http1
                } else {
                    Verdict::Wait
                }
            }
            // The server's stream may end or have a hole before the client's first bytes
            // are delivered (a reordered capture): still undecided.
            StreamEvent::Gap {
                dir: Direction::Response,
                ..
            }
            | StreamEvent::Fin {
                dir: Direction::Response,
                ..
            } => Verdict::Wait,
            // The request stream cut or ended before its first bytes, or the connection
            // gone: HTTP/1 knows what to make of it.
            StreamEvent::Gap { .. } | StreamEvent::Fin { .. } | StreamEvent::Closed { .. } => {
                Verdict::Http1
            }
        }
    }

    fn judge(&self) -> Verdict {
        let seen = &self.request[..];
        let n = seen.len().min(PREFACE.len());
        if seen[..n] == PREFACE[..n] {
            return if n == PREFACE.len() {
                Verdict::H2
            } else {
                Verdict::Wait
            };
        }
        if !self.joined || seen.first().is_some_and(u8::is_ascii_uppercase) {
            return Verdict::Http1;
        }
        match find_frames(seen) {
            Sync::Found(_) => Verdict::H2Joined,
            Sync::Undecided(at) if at < seen.len() && seen.len() < DETECT_BYTES => Verdict::Wait,
            Sync::Undecided(_) => Verdict::Http1,
        }
    }
}

/// Rebuilds HTTP exchanges from the segments of many connections, incrementally.
///
/// Exchanges of one HTTP/1 connection come out in the order its requests were sent; those of
/// an HTTP/2 connection as its streams finish.
#[derive(Default)]
pub struct ExchangeAssembler {
    reassembler: Reassembler,
    http: HttpConfig,
    conns: HashMap<FlowKey, Conn>,
    stats: HttpStats,
    events: Vec<StreamEvent>,
    /// Bytes held by all parsers after their last event (the sum of [`Conn::held`]).
    held: usize,
    /// Capture time of the latest event, for the close of an evicted connection.
    latest_ns: u64,
}

impl ExchangeAssembler {
    /// An assembler with the given limits.
    pub fn new(reassembly: ReassemblyConfig, http: HttpConfig) -> Self {
        Self {
            reassembler: Reassembler::new(reassembly),
            http,
            ..Self::default()
        }
    }

    /// Takes one segment; exchanges it completes are appended to `out`.
    pub fn push(&mut self, segment: Segment, out: &mut Vec<Exchange>) {
        self.push_cut(segment, 0, out);
    }

    /// Takes a segment whose payload was cut by the capture, `missing` bytes short.
    pub fn push_cut(&mut self, segment: Segment, missing: u32, out: &mut Vec<Exchange>) {
        let mut events = std::mem::take(&mut self.events);
        self.reassembler.push_cut(segment, missing, &mut events);
        self.apply(&mut events, out);
        self.events = events;
    }

    /// Closes connections idle at capture time `now_ns` (the live daemon's periodic flush):
    /// their requests still waiting come out as [`super::Outcome::NoResponse`].
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<Exchange>) {
        let mut events = std::mem::take(&mut self.events);
        self.reassembler.expire(now_ns, &mut events);
        self.apply(&mut events, out);
        self.events = events;
    }

    /// End of capture: every connection is closed and everything pending comes out.
    pub fn finish(&mut self, out: &mut Vec<Exchange>) {
        let mut events = std::mem::take(&mut self.events);
        self.reassembler.finish(&mut events);
        self.apply(&mut events, out);
        self.events = events;
    }

    /// HTTP counters (exchanges per outcome, bytes, refusals, HTTP/2 stream losses, bytes held
    /// and memory evictions).
    pub fn http_stats(&self) -> HttpStats {
        let mut stats = self.stats;
        stats.bytes_held = self.held as u64;
        stats
    }

    /// Reassembly counters (flows, buffered bytes, gaps, evictions).
    pub fn reassembly_stats(&self) -> ReassemblyStats {
        self.reassembler.stats()
    }

    /// What the parsers hold, measured afresh (the running total must equal it).
    #[cfg(test)]
    pub(crate) fn recount_held(&self) -> usize {
        self.conns.values().map(|c| c.parser.held_bytes()).sum()
    }

    fn apply(&mut self, events: &mut Vec<StreamEvent>, out: &mut Vec<Exchange>) {
        let first_new = out.len();
        for event in events.drain(..) {
            let flow = event.flow();
            if let Some(ts) = event_ts(&event) {
                self.latest_ns = self.latest_ns.max(ts);
            }
            let conn = self.conns.entry(flow).or_insert_with(|| Conn {
                parser: Parser::Detecting(Detector::default()),
                held: 0,
            });
            handle(
                &mut conn.parser,
                flow,
                self.http,
                &event,
                &mut self.stats,
                out,
            );
            let held = conn.parser.held_bytes();
            self.held = self.held - conn.held + held;
            conn.held = held;
            if matches!(event, StreamEvent::Closed { .. }) {
                self.held -= conn.held;
                self.conns.remove(&flow);
            }
            self.enforce_cap(out);
        }
        for exchange in &out[first_new..] {
            self.stats.count(exchange.outcome);
        }
    }

    /// Over [`HttpConfig::max_buffered`], drops the parsers holding the most until the rest
    /// fits.
    fn enforce_cap(&mut self, out: &mut Vec<Exchange>) {
        while self.held > self.http.max_buffered {
            let Some(flow) = self
                .conns
                .iter()
                .filter(|(_, c)| c.held > 0)
                .max_by_key(|(k, c)| (c.held, std::cmp::Reverse(**k)))
                .map(|(k, _)| *k)
            else {
                return;
            };
            self.evict(flow, out);
        }
    }

    /// Drops what a connection's parser holds: its pending exchanges come out as gaps (an
    /// eviction is not the connection's end), and its next bytes are read as those of a
    /// connection joined mid-way (resync at the next message or frames).
    fn evict(&mut self, flow: FlowKey, out: &mut Vec<Exchange>) {
        let Some(mut conn) = self.conns.remove(&flow) else {
            return;
        };
        self.held -= conn.held;
        self.stats.memory_evictions += 1;
        let closed = StreamEvent::Closed {
            flow,
            reason: CloseReason::Evicted,
            ts_ns: self.latest_ns,
        };
        handle(
            &mut conn.parser,
            flow,
            self.http,
            &closed,
            &mut self.stats,
            out,
        );
        let mut parser = Parser::Detecting(Detector::default());
        for dir in [Direction::Request, Direction::Response] {
            let joined = StreamEvent::Joined { flow, dir };
            handle(&mut parser, flow, self.http, &joined, &mut self.stats, out);
        }
        let held = parser.held_bytes();
        self.held += held;
        self.conns.insert(flow, Conn { parser, held });
    }
}

/// Capture time of an event, if it carries one.
fn event_ts(event: &StreamEvent) -> Option<u64> {
    match event {
        StreamEvent::Data { ts_ns, .. }
        | StreamEvent::Gap { ts_ns, .. }
        | StreamEvent::Fin { ts_ns, .. }
        | StreamEvent::Closed { ts_ns, .. } => Some(*ts_ns),
        StreamEvent::Joined { .. } => None,
    }
}

/// Applies one event to a connection's parser, deciding its protocol on the way.
fn handle(
    parser: &mut Parser,
    flow: FlowKey,
    config: HttpConfig,
    event: &StreamEvent,
    stats: &mut HttpStats,
    out: &mut Vec<Exchange>,
) {
    match parser {
        Parser::Detecting(detector) => {
            let verdict = detector.push(event);
            let events = match verdict {
                Verdict::Wait => return,
                _ => std::mem::take(&mut detector.events),
            };
            match verdict {
                Verdict::Http1 | Verdict::Wait => {
                    *parser = Parser::Http1(Box::new(ConnectionParser::new(flow, config)));
                    for event in &events {
                        handle(parser, flow, config, event, stats, out);
                    }
                }
                Verdict::H2 | Verdict::H2Joined => {
                    let mut conn = H2Connection::new(flow, config);
                    let joined = matches!(verdict, Verdict::H2Joined);
                    if joined {
                        // Frames found from the middle: the client's HPACK state is unknown
                        // before anything else is read.
                        conn.handle(
                            &StreamEvent::Joined {
                                flow,
                                dir: Direction::Request,
                            },
                            stats,
                            out,
                        );
                    }
                    for event in &events {
                        // The preface at the first byte seen: the client's start was seen
                        // after all, whatever the missing SYN says.
                        let skip = matches!(
                            event,
                            StreamEvent::Joined {
                                dir: Direction::Request,
                                ..
                            }
                        );
                        if !skip {
                            conn.handle(event, stats, out);
                        }
                    }
                    *parser = Parser::H2(Box::new(conn));
                }
            }
        }
        Parser::Http1(conn) => {
            conn.handle(event, stats, out);
            if let Some(upgrade) = conn.take_h2c_upgrade(out) {
                *parser = Parser::H2(Box::new(H2Connection::upgraded(
                    flow, config, upgrade, stats, out,
                )));
            }
        }
        Parser::H2(conn) => conn.handle(event, stats, out),
    }
}

/// Every exchange of a finished capture, with default limits.
pub fn exchanges_from_segments(segments: impl IntoIterator<Item = Segment>) -> Vec<Exchange> {
    let mut assembler = ExchangeAssembler::default();
    let mut out = Vec::new();
    for segment in segments {
        assembler.push(segment, &mut out);
    }
    assembler.finish(&mut out);
    out
}
