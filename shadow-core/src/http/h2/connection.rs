//! One HTTP/2 connection: both directions read as frames, header blocks decoded with each
//! direction's HPACK state, frames demultiplexed into streams, one [`Exchange`] per stream
//! once both its sides are done.
//!
//! Each direction is read on its own, in its byte order, so that what comes out does not
//! depend on how the two directions' segments interleave in the capture: server frames of a
//! stream the client has not opened yet wait (up to [`MAX_HELD`] bytes) until the client's
//! HEADERS opens it, and a server FIN takes effect once those frames are read. Nothing else
//! of one direction changes how the other is read: frames are delimited by their own length
//! (bounded by `max_frame_size`, not by the peer's SETTINGS_MAX_FRAME_SIZE) and the HPACK
//! decoders follow the encoders' table size updates (bounded by [`MAX_TABLE_SIZE`], not by
//! the peer's SETTINGS_HEADER_TABLE_SIZE): which SETTINGS a sender had seen cannot be told
//! from a capture, and a peer that broke them would have the connection torn down by the
//! other peer anyway.
//!
//! A direction whose HPACK state is unknown (joined mid-way, a gap, an HPACK or frame error)
//! stays so until the connection ends: its header blocks are never guessed, and the streams
//! they belong to come out as [`Outcome::Gap`], counted under
//! [`StreamLoss::HpackUnknown`](crate::http::StreamLoss::HpackUnknown).

use super::frame::{Frame, FrameHeader, kind, read_frame};
use super::hpack::{Decoder, HeaderList, MAX_TABLE_SIZE};
use super::stream::{Block, FrameSeen, H2Stream};
use super::sync::{Sync, find_frames};
use crate::http::config::HttpConfig;
use crate::http::connection::stream::StreamBuffer;
use crate::http::exchange::{Exchange, ExchangeTiming, HttpRequest, Outcome};
use crate::http::stats::{HttpStats, Refusal, StreamLoss};
use crate::reassembly::StreamEvent;
use crate::segment::{Direction, FlowKey};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::{BTreeMap, VecDeque};

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Finished (or refused) stream ids remembered, so that late frames of theirs open nothing.
const MAX_FINISHED: usize = 1024;
/// Bytes searched for a frame start before they are dropped.
const MAX_SYNC_BUFFER: usize = 256 << 10;
/// Server bytes held while waiting for the client to open the stream they belong to; past
/// this the frames are read anyway (those of streams never opened are ignored).
pub const MAX_HELD: usize = 4 << 20;

/// What an HTTP/1.1 connection hands over when it switches to HTTP/2 (`Upgrade: h2c`
/// answered by `101 Switching Protocols`).
#[derive(Debug)]
pub(crate) struct H2cUpgrade {
    /// The upgraded request: stream 1's, already ended.
    pub request: HttpRequest,
    /// Its wire times.
    pub timing: ExchangeTiming,
    /// Client bytes after the request (the connection preface, frames).
    pub client_rest: StreamBuffer,
    /// Server bytes after the 101 response (its SETTINGS, stream 1's response).
    pub server_rest: StreamBuffer,
}

/// Where a direction's reader is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReaderState {
    /// Expecting the client connection preface.
    Preface,
    /// Reading frames.
    Frames,
    /// Looking for a frame start (joined mid-way, after a gap).
    Sync,
    /// Nothing more is read (invalid frames or preface).
    Dead,
}

/// A header block waiting for its CONTINUATION frames.
#[derive(Debug)]
struct PendingBlock {
    stream: u32,
    /// PUSH_PROMISE's block (decoded for the table, then dropped).
    push: bool,
    end_stream: bool,
    first_ts: u64,
    fragments: BytesMut,
    /// Over `max_header_block`: its fragments are dropped and it cannot be decoded.
    oversized: bool,
}

/// One frame with the capture times of its first and last bytes.
struct Timed {
    frame: Frame,
    first_ts: u64,
    last_ts: u64,
}

/// What a reader produced.
enum Next {
    Frame(Timed),
    /// The direction became unreadable.
    Died,
    /// More bytes are needed.
    Wait,
    /// The next frame belongs to a stream not opened yet: it waits for the other direction.
    Held,
}

/// One direction of the connection.
#[derive(Debug)]
struct Reader {
    buf: StreamBuffer,
    state: ReaderState,
    /// `None`: the HPACK state is unknown.
    hpack: Option<Decoder>,
    block: Option<PendingBlock>,
    /// The sender closed (FIN) or the connection ended, with this outcome for what it has not
    /// finished; applied once the frames before it are read.
    closing: Option<Outcome>,
    /// The sender is gone (applied `closing`, or the direction died): with this outcome for
    /// what it has not finished.
    gone: Option<Outcome>,
}

impl Reader {
    /// Bytes it holds: unconsumed stream bytes and a header block being gathered.
    fn held_bytes(&self) -> usize {
        self.buf.held_bytes() + self.block.as_ref().map_or(0, |b| b.fragments.capacity())
    }

    fn new(state: ReaderState) -> Self {
        Self {
            buf: StreamBuffer::default(),
            state,
            hpack: Some(Decoder::with_table_limit(MAX_TABLE_SIZE)),
            block: None,
            closing: None,
            gone: None,
        }
    }

    /// The HPACK state is lost for good; frames are looked for again.
    fn lose_sync(&mut self, stats: &mut HttpStats) {
        self.hpack = None;
        self.block = None;
        self.buf.reset(stats);
        if self.state != ReaderState::Dead {
            self.state = ReaderState::Sync;
        }
    }

    fn die(&mut self, stats: &mut HttpStats) {
        self.state = ReaderState::Dead;
        self.hpack = None;
        self.block = None;
        self.buf.reset(stats);
        self.gone.get_or_insert(Outcome::Unparsable);
    }

    /// Whether this direction still sends frames that can open streams (the client, read
    /// from its preface on, not gone).
    fn opens_streams(&self) -> bool {
        self.hpack.is_some() && self.gone.is_none() && self.state != ReaderState::Dead
    }

    /// The next frame. Frames of client streams above `hold_above` (not opened yet) are held
    /// back while fewer than [`MAX_HELD`] bytes wait.
    fn next(
        &mut self,
        max_frame_size: u32,
        hold_above: Option<u32>,
        stats: &mut HttpStats,
    ) -> Next {
        loop {
            match self.state {
                ReaderState::Dead => {
                    self.buf.reset(stats);
                    return Next::Wait;
                }
                ReaderState::Preface => {
                    let n = self.buf.buf.len().min(PREFACE.len());
                    if self.buf.buf[..n] != PREFACE[..n] {
                        stats.refuse(Refusal::H2Frame);
                        self.die(stats);
                        return Next::Died;
                    }
                    if n < PREFACE.len() {
                        return Next::Wait;
                    }
                    self.buf.buf.advance(n);
                    self.buf.consumed(n);
                    self.state = ReaderState::Frames;
                }
                ReaderState::Sync => match find_frames(&self.buf.buf) {
                    Sync::Found(at) => {
                        self.buf.discard(at, stats);
                        self.state = ReaderState::Frames;
                    }
                    Sync::Undecided(at) => {
                        self.buf.discard(at, stats);
                        if self.buf.buf.len() > MAX_SYNC_BUFFER {
                            self.buf.reset(stats);
                        }
                        return Next::Wait;
                    }
                },
                ReaderState::Frames => {
                    if let (Some(open), Some(header)) =
                        (hold_above, FrameHeader::parse(&self.buf.buf))
                    {
                        let stream_frame = matches!(
                            header.kind,
                            kind::DATA | kind::HEADERS | kind::RST_STREAM | kind::PUSH_PROMISE
                        );
                        if stream_frame
                            && header.stream % 2 == 1
                            && header.stream > open
                            && self.buf.buf.len() <= MAX_HELD
                        {
                            return Next::Held;
                        }
                    }
                    let first_ts = self.buf.front().0;
                    let before = self.buf.buf.len();
                    match read_frame(&mut self.buf.buf, max_frame_size) {
                        Ok(None) => return Next::Wait,
                        Ok(Some(frame)) => {
                            let last_ts = self.buf.consumed(before - self.buf.buf.len());
                            return Next::Frame(Timed {
                                frame,
                                first_ts,
                                last_ts,
                            });
                        }
                        Err(_) => {
                            stats.refuse(Refusal::H2Frame);
                            self.die(stats);
                            return Next::Died;
                        }
                    }
                }
            }
        }
    }
}

/// HTTP/2 parser of one connection (cleartext: prior knowledge or upgraded from HTTP/1.1).
/// Feed it the connection's [`StreamEvent`]s; exchanges come out as their streams finish.
#[derive(Debug)]
pub struct H2Connection {
    flow: FlowKey,
    config: HttpConfig,
    client: Reader,
    server: Reader,
    streams: BTreeMap<u32, H2Stream>,
    /// Highest client stream id opened or refused.
    highest: u32,
    finished: VecDeque<u32>,
    /// The server's GOAWAY: streams above this id get no response.
    goaway: Option<u32>,
}

impl H2Connection {
    /// A connection whose client starts with the preface (prior knowledge).
    pub fn new(flow: FlowKey, config: HttpConfig) -> Self {
        Self {
            flow,
            config,
            client: Reader::new(ReaderState::Preface),
            server: Reader::new(ReaderState::Frames),
            streams: BTreeMap::new(),
            highest: 0,
            finished: VecDeque::new(),
            goaway: None,
        }
    }

    /// A connection that switched from HTTP/1.1: stream 1 carries the upgraded request, the
    /// bytes after the switch are read as HTTP/2.
    pub(crate) fn upgraded(
        flow: FlowKey,
        config: HttpConfig,
        upgrade: H2cUpgrade,
        stats: &mut HttpStats,
        out: &mut Vec<Exchange>,
    ) -> Self {
        let mut conn = Self::new(flow, config);
        conn.client.buf = upgrade.client_rest;
        conn.server.buf = upgrade.server_rest;
        conn.streams
            .insert(1, H2Stream::upgraded(upgrade.request, upgrade.timing));
        conn.highest = 1;
        conn.run(Direction::Request, stats);
        conn.run(Direction::Response, stats);
        conn.emit(stats, out);
        conn
    }

    /// Streams seen whose exchange was not emitted yet.
    pub fn pending(&self) -> usize {
        self.streams.len()
    }

    /// Bytes this connection's parser holds, approximately: unconsumed stream bytes, header
    /// blocks being gathered and the streams not emitted yet (a pass over them, at most
    /// `max_concurrent_streams`).
    pub fn held_bytes(&self) -> usize {
        self.client.held_bytes()
            + self.server.held_bytes()
            + self
                .streams
                .values()
                .map(H2Stream::held_bytes)
                .sum::<usize>()
            + self.finished.len() * std::mem::size_of::<u32>()
    }

    /// Applies one event of this connection; finished streams' exchanges are appended to
    /// `out` in stream id order.
    pub fn handle(&mut self, event: &StreamEvent, stats: &mut HttpStats, out: &mut Vec<Exchange>) {
        match event {
            StreamEvent::Joined {
                dir: Direction::Response,
                ..
            } if self.client.hpack.is_some() => {
                // The client was seen from its preface on, so the server bytes missed were
                // sent before any request: at most its SETTINGS, never a header block. Its
                // HPACK state is known and its first byte seen starts a frame.
            }
            StreamEvent::Joined { dir, .. } => self.reader(*dir).lose_sync(stats),
            StreamEvent::Data {
                dir,
                seq,
                ack,
                ts_ns,
                bytes,
                ..
            } => {
                match dir {
                    Direction::Request => stats.request_bytes += bytes.len() as u64,
                    Direction::Response => stats.response_bytes += bytes.len() as u64,
                }
                self.reader(*dir).buf.append(*seq, *ack, *ts_ns, bytes);
                self.run(*dir, stats);
            }
            StreamEvent::Gap { dir, .. } => {
                for stream in self.streams.values_mut() {
                    stream.side(*dir).fail(Outcome::Gap);
                }
                self.reader(*dir).lose_sync(stats);
            }
            StreamEvent::Fin { dir, .. } => {
                self.reader(*dir).closing.get_or_insert(Outcome::Incomplete);
                self.run(*dir, stats);
            }
            StreamEvent::Closed { reason, .. } => {
                let cut = if reason.is_connection_end() {
                    Outcome::Incomplete
                } else {
                    Outcome::Gap
                };
                // The client first: then nothing of the server's waits for it any more.
                self.client.closing.get_or_insert(cut);
                self.run(Direction::Request, stats);
                self.server.closing.get_or_insert(cut);
                self.run(Direction::Response, stats);
            }
        }
        self.emit(stats, out);
    }

    fn reader(&mut self, dir: Direction) -> &mut Reader {
        match dir {
            Direction::Request => &mut self.client,
            Direction::Response => &mut self.server,
        }
    }

    /// `dir`'s sender will send nothing more: what it has not finished ends with `cut`.
    fn sender_gone(&mut self, dir: Direction, cut: Outcome, stats: &mut HttpStats) {
        let reader = self.reader(dir);
        reader.gone.get_or_insert(cut);
        reader.block = None;
        reader.buf.reset(stats);
        for stream in self.streams.values_mut() {
            match dir {
                Direction::Request => stream.no_more_request(cut),
                Direction::Response => stream.no_more_response(cut),
            }
        }
    }

    /// Reads `dir`'s frames as far as they go; the server's are read again after the
    /// client's (they may have been waiting for a stream to open), and a FIN is applied once
    /// everything before it was read.
    fn run(&mut self, dir: Direction, stats: &mut HttpStats) {
        let max_frame_size = self.config.h2.max_frame_size;
        loop {
            let hold_above = match dir {
                Direction::Response if self.client.opens_streams() => Some(self.highest),
                _ => None,
            };
            match self.reader(dir).next(max_frame_size, hold_above, stats) {
                Next::Held => return,
                Next::Wait => break,
                Next::Died => {
                    for stream in self.streams.values_mut() {
                        stream.side(dir).fail(Outcome::Unparsable);
                    }
                }
                Next::Frame(timed) => self.frame(dir, timed, stats),
            }
        }
        if let Some(cut) = self.reader(dir).closing.take() {
            self.sender_gone(dir, cut, stats);
        }
        if dir == Direction::Request && !self.server.buf.buf.is_empty() {
            self.run(Direction::Response, stats);
        }
    }

    fn frame(&mut self, dir: Direction, timed: Timed, stats: &mut HttpStats) {
        let Timed {
            frame,
            first_ts,
            last_ts,
        } = timed;
        let max_block = self.config.h2.max_header_block;
        // A header block in progress admits only its own CONTINUATION frames.
        if let Some(mut block) = self.reader(dir).block.take() {
            match frame {
                Frame::Continuation {
                    stream,
                    end_headers,
                    fragment,
                } if stream == block.stream => {
                    if block.fragments.len() + fragment.len() > max_block {
                        block.oversized = true;
                        block.fragments = BytesMut::new();
                    }
                    if !block.oversized {
                        block.fragments.extend_from_slice(&fragment);
                    }
                    if end_headers {
                        self.header_block(dir, block, last_ts, stats);
                    } else {
                        self.reader(dir).block = Some(block);
                    }
                }
                _ => self.protocol_error(dir, stats),
            }
            return;
        }
        let seen = |end_stream| FrameSeen {
            first_ts,
            last_ts,
            end_stream,
        };
        match frame {
            Frame::Data {
                stream,
                end_stream,
                data,
            } => {
                let max_body = self.config.max_body;
                if let Some(s) = self.stream_for(dir, stream, false, stats) {
                    s.data(dir, &data, seen(end_stream), max_body);
                }
            }
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                fragment,
            } => self.start_block(
                dir,
                stream,
                false,
                end_stream,
                end_headers,
                fragment,
                seen(false),
                stats,
            ),
            Frame::PushPromise {
                stream,
                end_headers,
                fragment,
                ..
            } => self.start_block(
                dir,
                stream,
                true,
                false,
                end_headers,
                fragment,
                seen(false),
                stats,
            ),
            Frame::Continuation { .. } => self.protocol_error(dir, stats),
            Frame::RstStream { stream, .. } => {
                if let Some(s) = self.streams.get_mut(&stream) {
                    s.reset();
                }
            }
            Frame::GoAway { last_stream, .. } if dir == Direction::Response => {
                let last = self.goaway.map_or(last_stream, |was| was.min(last_stream));
                self.goaway = Some(last);
                for (_, s) in self.streams.range_mut(last.saturating_add(1)..) {
                    s.lose(StreamLoss::GoAway);
                    s.no_more_response(Outcome::Incomplete);
                }
            }
            Frame::Settings { .. }
            | Frame::GoAway { .. }
            | Frame::Priority { .. }
            | Frame::Ping
            | Frame::WindowUpdate
            | Frame::Unknown { .. } => {}
        }
    }

    /// Frames out of sequence (a CONTINUATION without its HEADERS, anything else inside a
    /// header block): `dir` is read no further.
    fn protocol_error(&mut self, dir: Direction, stats: &mut HttpStats) {
        stats.refuse(Refusal::H2Frame);
        self.reader(dir).die(stats);
        for stream in self.streams.values_mut() {
            stream.side(dir).fail(Outcome::Unparsable);
        }
    }

    /// A HEADERS or PUSH_PROMISE frame: its block is decoded now or once its CONTINUATION
    /// frames are in.
    #[allow(clippy::too_many_arguments)]
    fn start_block(
        &mut self,
        dir: Direction,
        stream: u32,
        push: bool,
        end_stream: bool,
        end_headers: bool,
        fragment: Bytes,
        seen: FrameSeen,
        stats: &mut HttpStats,
    ) {
        let oversized = fragment.len() > self.config.h2.max_header_block;
        let block = PendingBlock {
            stream,
            push,
            end_stream,
            first_ts: seen.first_ts,
            fragments: if oversized {
                BytesMut::new()
            } else {
                BytesMut::from(&fragment[..])
            },
            oversized,
        };
        if end_headers {
            self.header_block(dir, block, seen.last_ts, stats);
        } else {
            self.reader(dir).block = Some(block);
        }
    }

    /// A whole header block: decoded (always, so the dynamic table stays in step), then
    /// given to its stream.
    fn header_block(
        &mut self,
        dir: Direction,
        block: PendingBlock,
        last_ts: u64,
        stats: &mut HttpStats,
    ) {
        let max_list = self.config.max_head;
        let reader = self.reader(dir);
        let decoded = match reader.hpack.as_mut() {
            None => Block::Unknown,
            Some(_) if block.oversized => {
                stats.refuse(Refusal::HeadTooLarge);
                reader.hpack = None;
                Block::Invalid
            }
            Some(decoder) => {
                let mut fields = Vec::new();
                match decoder.decode(&block.fragments.freeze(), max_list, &mut fields) {
                    Ok(list) => Block::Decoded {
                        fields,
                        complete: list == HeaderList::Complete,
                    },
                    Err(_) => {
                        stats.refuse(Refusal::Hpack);
                        reader.hpack = None;
                        Block::Invalid
                    }
                }
            }
        };
        if block.push {
            stats.lose(StreamLoss::PushPromise);
            return;
        }
        let seen = FrameSeen {
            first_ts: block.first_ts,
            last_ts,
            end_stream: block.end_stream,
        };
        if let Some(s) = self.stream_for(dir, block.stream, true, stats) {
            s.headers(dir, decoded, seen, stats);
        }
    }

    /// The stream a frame of `dir` belongs to, opening it if the frame does. Requests open
    /// streams (a HEADERS frame on a new odd id); while the client's HPACK state is unknown,
    /// any frame of an odd id not seen before does, as a stream whose request is unknown.
    /// Server-initiated (pushed) streams are not followed.
    fn stream_for(
        &mut self,
        dir: Direction,
        id: u32,
        headers: bool,
        stats: &mut HttpStats,
    ) -> Option<&mut H2Stream> {
        if self.streams.contains_key(&id) {
            return self.streams.get_mut(&id);
        }
        if id.is_multiple_of(2) || self.finished.contains(&id) {
            return None;
        }
        let blind = self.client.hpack.is_none();
        let opens = blind || (dir == Direction::Request && headers && id > self.highest);
        if !opens {
            return None;
        }
        self.highest = self.highest.max(id);
        if self.streams.len() >= self.config.h2.max_concurrent_streams {
            stats.lose(StreamLoss::OverLimit);
            self.remember_finished(id);
            return None;
        }
        let mut stream = H2Stream::new();
        if blind {
            stream.unknown_side(Direction::Request);
        }
        if let Some(cut) = self.server.gone {
            stream.no_more_response(cut);
        }
        if self.goaway.is_some_and(|last| id > last) {
            stream.lose(StreamLoss::GoAway);
            stream.no_more_response(Outcome::Incomplete);
        }
        Some(self.streams.entry(id).or_insert(stream))
    }

    fn remember_finished(&mut self, id: u32) {
        if self.finished.len() == MAX_FINISHED {
            self.finished.pop_front();
        }
        self.finished.push_back(id);
    }

    /// Emits finished streams in id order.
    fn emit(&mut self, stats: &mut HttpStats, out: &mut Vec<Exchange>) {
        let done: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| s.finished())
            .map(|(&id, _)| id)
            .collect();
        for id in done {
            if let Some(stream) = self.streams.remove(&id) {
                self.remember_finished(id);
                out.push(stream.into_exchange(self.flow, stats));
            }
        }
    }
}
