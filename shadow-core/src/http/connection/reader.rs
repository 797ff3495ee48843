//! One direction of a connection read as a sequence of HTTP/1 messages: a state machine that
//! looks for a message start after a desync, parses heads and reads bodies. It is the same for
//! both directions; what differs (how a head is parsed, which body a response has, what a
//! finished message does to the pending exchanges) is the [`MessageKind`].

use super::slot::PendingExchanges;
use super::stream::StreamBuffer;
use crate::http::body::{Body, BodyError, BodyReader};
use crate::http::config::HttpConfig;
use crate::http::exchange::Outcome;
use crate::http::head::Parsed;
use crate::http::stats::{HttpStats, Refusal};
use bytes::{Bytes, BytesMut};
use std::marker::PhantomData;

/// Whether the connection still carries HTTP/1 after a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Protocol {
    /// More HTTP/1 messages may follow.
    Http1,
    /// The connection switched protocols (101, CONNECT): the rest is not HTTP/1.
    Switched,
}

/// Why a stream stopped before a message ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cut {
    /// A hole in the capture; the stream goes on after it.
    Gap,
    /// The stream ended (FIN, reset, eviction, end of capture); an unfinished message fails
    /// with this outcome.
    End(Outcome),
}

/// Where and when a parsed head was seen.
#[derive(Clone, Copy, Debug)]
pub(super) struct HeadSeen {
    /// Capture time of its first byte.
    pub first_ts: u64,
    /// Ack of the segment its first byte came in.
    pub ack: Option<u32>,
    /// Sequence number of its first byte.
    pub start_seq: u32,
    /// Sequence number just past it.
    pub end_seq: u32,
}

/// What differs between the request and the response direction.
pub(super) trait MessageKind {
    /// A parsed message head.
    type Head;
    /// Whom a body being read belongs to.
    type Owner: Copy;

    /// `Some(true)` if `data` begins with a message start, `Some(false)` if it could with
    /// more bytes, `None` if it cannot.
    fn starts_message(data: &[u8]) -> Option<bool>;

    /// Parses a head at the front of `buf`, splitting it off on success.
    fn parse_head(buf: &mut BytesMut) -> Parsed<(Self::Head, usize)>;

    /// Whether a head at the front, whose first segment carried `front_ack`, may be parsed
    /// yet (a response waits, up to the head limit, for the request it may answer).
    fn head_expected(pending: &PendingExchanges, front_ack: Option<u32>) -> bool;

    /// The bytes at the front should have been a head but are not one.
    fn head_invalid(pending: &mut PendingExchanges, stream: &StreamBuffer);

    /// A head was parsed (its bytes are consumed): what to read next.
    fn head_parsed(
        pending: &mut PendingExchanges,
        head: Self::Head,
        seen: HeadSeen,
        stream: &StreamBuffer,
        config: &HttpConfig,
        stats: &mut HttpStats,
    ) -> ReaderState<Self::Owner>;

    /// A body was read whole; its last byte was captured at `last_ts`.
    fn body_complete(
        pending: &mut PendingExchanges,
        owner: Self::Owner,
        body: Body,
        last_ts: u64,
    ) -> Protocol;

    /// The bytes at the front are not a valid body; the last byte consumed was captured at
    /// `last_ts`.
    fn body_invalid(pending: &mut PendingExchanges, owner: Self::Owner, last_ts: u64);

    /// The stream was cut at capture time `ts` while a body was being read.
    fn body_cut(pending: &mut PendingExchanges, owner: Self::Owner, cut: Cut, ts: u64);

    /// The stream was cut at capture time `ts` while a head was expected; `stream` holds the
    /// bytes read since (possibly none).
    fn head_cut(
        pending: &mut PendingExchanges,
        stream: &StreamBuffer,
        cut: Cut,
        ts: u64,
        stats: &mut HttpStats,
    );
}

/// Where a direction reader is.
pub(super) enum ReaderState<O> {
    /// Looking for the next message start after a desync.
    Resync,
    /// Expecting a head at the front of the buffer. `resynced` if the start was found by
    /// [`ReaderState::Resync`]: a parse failure then means "not a message start after all"
    /// rather than unparsable bytes.
    Head { resynced: bool },
    /// Reading the body of a message belonging to `owner`.
    Body { reader: BodyReader, owner: O },
    /// The connection switched protocols: nothing more is parsed.
    Switched,
}

/// Where the next message could start in a stream being resynced.
enum Start {
    /// At this offset.
    Found(usize),
    /// Possibly at this offset, once more bytes arrive.
    Maybe(usize),
    /// Nowhere in the buffer.
    None,
}

/// Looks for a message start anywhere in `buf`: after a gap the next message rarely follows a
/// line break (a body precedes it), and a false start is caught by the full head parse.
fn find_start(buf: &[u8], test: fn(&[u8]) -> Option<bool>) -> Start {
    for pos in 0..buf.len() {
        // Every method and `HTTP/1.` begin with an upper-case letter.
        if !buf[pos].is_ascii_uppercase() {
            continue;
        }
        match test(&buf[pos..]) {
            Some(true) => return Start::Found(pos),
            Some(false) => return Start::Maybe(pos),
            None => {}
        }
    }
    Start::None
}

/// One direction of a connection: its unconsumed bytes and where the parse is.
pub(super) struct DirectionReader<M: MessageKind> {
    stream: StreamBuffer,
    state: ReaderState<M::Owner>,
    kind: PhantomData<M>,
}

impl<M: MessageKind> DirectionReader<M> {
    /// A reader at the beginning of its stream.
    pub fn new() -> Self {
        Self {
            stream: StreamBuffer::default(),
            state: ReaderState::Head { resynced: false },
            kind: PhantomData,
        }
    }

    /// Whether the connection switched protocols.
    pub fn switched(&self) -> bool {
        matches!(self.state, ReaderState::Switched)
    }

    /// Whether bytes wait at the front for a head to be parsed.
    pub fn holds_head(&self) -> bool {
        matches!(self.state, ReaderState::Head { .. }) && !self.stream.buf.is_empty()
    }

    /// Bytes held: unconsumed stream bytes and a chunked body decoded so far.
    pub fn held_bytes(&self) -> usize {
        let body = match &self.state {
            ReaderState::Body { reader, .. } => reader.held_bytes(),
            _ => 0,
        };
        self.stream.held_bytes() + body
    }

    /// Stream bytes arrived.
    pub fn append(&mut self, seq: u32, ack: Option<u32>, ts: u64, bytes: &Bytes) {
        self.stream.append(seq, ack, ts, bytes);
    }

    /// The unconsumed bytes, taken (after a switch to HTTP/2).
    pub fn take_stream(&mut self) -> StreamBuffer {
        std::mem::take(&mut self.stream)
    }

    /// Drops the unconsumed bytes (after a switch to another protocol).
    pub fn drop_buffered(&mut self) {
        self.stream.buf.clear();
    }

    /// The stream may be out of step: look for the next message start.
    pub fn resync(&mut self) {
        if !self.switched() {
            self.state = ReaderState::Resync;
        }
    }

    /// The connection switched protocols: stop parsing (bytes already buffered are dropped
    /// when the stream is cut).
    pub fn switch(&mut self) {
        self.state = ReaderState::Switched;
    }

    /// Parses as far as the buffered bytes go.
    pub fn run(
        &mut self,
        pending: &mut PendingExchanges,
        config: &HttpConfig,
        stats: &mut HttpStats,
    ) -> Protocol {
        loop {
            match &mut self.state {
                ReaderState::Switched => {
                    self.stream.buf.clear();
                    return Protocol::Switched;
                }
                ReaderState::Resync => match find_start(&self.stream.buf, M::starts_message) {
                    Start::Found(pos) => {
                        self.stream.discard(pos, stats);
                        self.state = ReaderState::Head { resynced: true };
                    }
                    Start::Maybe(pos) => {
                        self.stream.discard(pos, stats);
                        return Protocol::Http1;
                    }
                    Start::None => {
                        let all = self.stream.buf.len();
                        self.stream.discard(all, stats);
                        return Protocol::Http1;
                    }
                },
                ReaderState::Head { resynced } => {
                    let resynced = *resynced;
                    let (first_ts, ack) = self.stream.front();
                    if self.stream.buf.is_empty()
                        || (!M::head_expected(pending, ack)
                            && self.stream.buf.len() <= config.max_head)
                    {
                        return Protocol::Http1;
                    }
                    let start_seq = self.stream.front_seq();
                    match M::parse_head(&mut self.stream.buf) {
                        Parsed::Partial if self.stream.buf.len() <= config.max_head => {
                            return Protocol::Http1;
                        }
                        parsed @ (Parsed::Partial | Parsed::Invalid(_)) => {
                            if !resynced {
                                stats.refuse(match parsed {
                                    Parsed::Invalid(reason) => reason,
                                    _ => Refusal::HeadTooLarge,
                                });
                                M::head_invalid(pending, &self.stream);
                                pending.confirm_by_ack = true;
                            }
                            self.stream.discard(1, stats);
                            self.state = ReaderState::Resync;
                        }
                        Parsed::Complete((head, len)) => {
                            self.stream.consumed(len);
                            let seen = HeadSeen {
                                first_ts,
                                ack,
                                start_seq,
                                end_seq: start_seq.wrapping_add(len as u32),
                            };
                            self.state =
                                M::head_parsed(pending, head, seen, &self.stream, config, stats);
                        }
                    }
                }
                ReaderState::Body { reader, owner } => {
                    let owner = *owner;
                    let before = self.stream.buf.len();
                    let result = reader.feed(&mut self.stream.buf);
                    let last_ts = self.stream.consumed(before - self.stream.buf.len());
                    match result {
                        Ok(None) => return Protocol::Http1,
                        Ok(Some(body)) => {
                            if self.body_complete(pending, owner, body, last_ts)
                                == Protocol::Switched
                            {
                                return Protocol::Switched;
                            }
                        }
                        Err(BodyError(reason)) => {
                            stats.refuse(reason);
                            M::body_invalid(pending, owner, last_ts);
                            pending.confirm_by_ack = true;
                            self.state = ReaderState::Resync;
                        }
                    }
                }
            }
        }
    }

    /// A body ended: the next message follows, unless the protocol switched.
    fn body_complete(
        &mut self,
        pending: &mut PendingExchanges,
        owner: M::Owner,
        body: Body,
        last_ts: u64,
    ) -> Protocol {
        self.state = ReaderState::Head { resynced: false };
        let protocol = M::body_complete(pending, owner, body, last_ts);
        if protocol == Protocol::Switched {
            // The bytes after the switch stay until the connection parser takes them (h2c)
            // or drops them.
            self.switch();
        }
        protocol
    }

    /// The peer closed its side: a close-delimited body being read ends here.
    pub fn finish_at_close(&mut self, pending: &mut PendingExchanges) -> Protocol {
        let before = self.stream.buf.len();
        if let ReaderState::Body { reader, owner } = &mut self.state
            && let Some(body) = reader.finish_at_close(&mut self.stream.buf)
        {
            let owner = *owner;
            let last_ts = self.stream.consumed(before - self.stream.buf.len());
            return self.body_complete(pending, owner, body, last_ts);
        }
        if self.switched() {
            Protocol::Switched
        } else {
            Protocol::Http1
        }
    }

    /// The stream was cut at capture time `ts`: the message being read fails, buffered bytes
    /// are dropped and parsing resumes at the next message start.
    pub fn cut(
        &mut self,
        pending: &mut PendingExchanges,
        cut: Cut,
        ts: u64,
        stats: &mut HttpStats,
    ) {
        match &self.state {
            ReaderState::Body { owner, .. } => M::body_cut(pending, *owner, cut, ts),
            ReaderState::Head { .. } => M::head_cut(pending, &self.stream, cut, ts, stats),
            ReaderState::Resync | ReaderState::Switched => {}
        }
        self.stream.reset(stats);
        self.resync();
    }
}
