//! One connection's HTTP/1.1 parser: fed the two reassembled streams, it pairs requests with
//! production responses FIFO and emits [`Exchange`]s in request order as they complete.
//!
//! Each request gets a slot when its head is parsed; a final response fills the oldest slot
//! still waiting for one (interim 1xx responses do not). Slots leave in order, so pipelined
//! exchanges come out in the order the requests were sent.
//!
//! After anything that can desynchronise the pairing (a gap, unparsable bytes, a stream joined
//! in the middle) the parser resyncs at the next request or status line and checks the TCP
//! acknowledgment number of each response: a response whose segment did not yet acknowledge
//! the end of a request's head cannot answer it. When one response could answer several
//! waiting requests, they are all marked [`Outcome::Gap`] rather than guessed.

use super::body::{Body, BodyReader};
use super::exchange::{Exchange, ExchangeTiming, HttpRequest, HttpResponse, Outcome};
use super::head::{self, BodyKind, Parsed, RequestHead, ResponseHead};
use crate::reassembly::{CloseReason, StreamEvent};
use crate::segment::{Direction, FlowKey};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;

/// Limits of the HTTP parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Largest decoded body kept (request or response); bigger exchanges are
    /// [`Outcome::Truncated`] and never replayed.
    pub max_body: usize,
    /// Largest request or response head.
    pub max_head: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body: 16 << 20,
            max_head: 64 << 10,
        }
    }
}

/// HTTP counters, read by the metrics layer (`exchanges_total{outcome}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Exchanges emitted per [`Outcome`].
    pub complete: u64,
    pub gap: u64,
    pub truncated: u64,
    pub no_response: u64,
    pub unparsable: u64,
    /// Stream bytes fed, per direction.
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// Bytes skipped while looking for the next message start.
    pub skipped_bytes: u64,
    /// 1xx responses seen (not paired).
    pub interim_responses: u64,
    /// Final responses that answered no known request and were dropped.
    pub orphan_responses: u64,
}

impl HttpStats {
    /// Counts one emitted exchange.
    pub fn count(&mut self, outcome: Outcome) {
        *self.outcome_mut(outcome) += 1;
    }

    /// Exchanges emitted with `outcome`.
    pub fn outcome(&self, outcome: Outcome) -> u64 {
        let mut copy = *self;
        *copy.outcome_mut(outcome)
    }

    fn outcome_mut(&mut self, outcome: Outcome) -> &mut u64 {
        match outcome {
            Outcome::Complete => &mut self.complete,
            Outcome::Gap => &mut self.gap,
            Outcome::Truncated => &mut self.truncated,
            Outcome::NoResponse => &mut self.no_response,
            Outcome::Unparsable => &mut self.unparsable,
        }
    }
}

/// `a` is at or before `b` in sequence space.
fn seq_le(a: u32, b: u32) -> bool {
    b.wrapping_sub(a) as i32 >= 0
}

/// Capture time and ack of the segment that carried the stream bytes up to `end`.
#[derive(Debug, Clone, Copy)]
struct ChunkMark {
    /// Stream offset just past the chunk.
    end: u64,
    ts: u64,
    ack: Option<u32>,
}

/// One direction's bytes not yet consumed, with the capture time and ack of the segment each
/// byte came in, so messages get the times of their own first and last bytes.
#[derive(Debug, Default)]
struct Side {
    buf: BytesMut,
    /// Chunks overlapping `buf`, oldest first.
    marks: VecDeque<ChunkMark>,
    /// Stream offset of `buf[0]`.
    taken: u64,
    /// Sequence number of `buf[0]`.
    front_seq: u32,
    /// Capture time of the last byte taken off the front.
    last_taken_ts: u64,
}

impl Side {
    fn append(&mut self, seq: u32, ack: Option<u32>, ts: u64, bytes: &Bytes) {
        if self.buf.is_empty() {
            self.front_seq = seq;
        }
        self.buf.extend_from_slice(bytes);
        self.marks.push_back(ChunkMark {
            end: self.taken + self.buf.len() as u64,
            ts,
            ack,
        });
    }

    /// Capture time and ack of the segment holding `buf[0]`.
    fn front(&self) -> (u64, Option<u32>) {
        self.marks
            .front()
            .map_or((self.last_taken_ts, None), |m| (m.ts, m.ack))
    }

    /// Capture time of the newest bytes.
    fn latest_ts(&self) -> u64 {
        self.marks.back().map_or(self.last_taken_ts, |m| m.ts)
    }

    /// `n` bytes were taken off the front of `buf`; returns the capture time of the last one.
    fn consumed(&mut self, n: usize) -> u64 {
        if n > 0 {
            self.taken += n as u64;
            self.front_seq = self.front_seq.wrapping_add(n as u32);
            let last = self.taken - 1;
            while self.marks.front().is_some_and(|m| m.end <= last) {
                self.marks.pop_front();
            }
            if let Some(m) = self.marks.front() {
                self.last_taken_ts = m.ts;
            }
            while self.marks.front().is_some_and(|m| m.end <= self.taken) {
                self.marks.pop_front();
            }
        }
        self.last_taken_ts
    }

    /// Drops `n` bytes that belong to no message.
    fn discard(&mut self, n: usize, stats: &mut HttpStats) {
        if n == 0 {
            return;
        }
        self.buf.advance(n);
        stats.skipped_bytes += n as u64;
        self.consumed(n);
    }

    /// Forgets everything after a gap.
    fn reset(&mut self, stats: &mut HttpStats) {
        let n = self.buf.len();
        self.buf.clear();
        stats.skipped_bytes += n as u64;
        self.consumed(n);
    }
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

enum ReqState {
    /// Looking for a request line.
    Resync,
    /// Expecting a request head; `resynced` if found by [`ReqState::Resync`] (a parse
    /// failure then means "not a request start after all").
    Head { resynced: bool },
    /// Reading the body of the request in slot `.1`.
    Body(BodyReader, u64),
}

enum RespState {
    Resync,
    Head {
        resynced: bool,
    },
    /// Reading a response body for slot `slot` (`None`: an orphan being skipped).
    Body {
        reader: BodyReader,
        slot: Option<u64>,
    },
}

/// One request and, once seen, its response.
struct Slot {
    id: u64,
    head: Option<RequestHead>,
    body: Option<Body>,
    req_done: bool,
    /// Waits for a response (false for request bytes that could not be parsed).
    awaiting: bool,
    response: Option<(ResponseHead, Option<Body>)>,
    resp_done: bool,
    head_end_seq: u32,
    outcome: Outcome,
    timing: ExchangeTiming,
}

impl Slot {
    fn fail(&mut self, outcome: Outcome) {
        if self.outcome == Outcome::Complete {
            self.outcome = outcome;
        }
    }

    fn finished(&self) -> bool {
        self.req_done && (!self.awaiting || self.resp_done)
    }

    fn open_for_response(&self) -> bool {
        self.awaiting && !self.resp_done && self.response.is_none()
    }

    fn into_exchange(self, flow: FlowKey) -> Exchange {
        let request = self.head.map(|h| {
            let body = self.body.and_then(|b| b.decoded).unwrap_or_default();
            HttpRequest {
                method: h.method,
                target: h.target,
                version: h.version,
                headers: h.headers,
                body,
            }
        });
        let prod_response = self.response.map(|(h, body)| HttpResponse {
            status: h.status,
            version: h.version,
            headers: h.headers,
            body: body.and_then(|b| b.decoded).unwrap_or_default(),
        });
        Exchange {
            flow,
            request,
            prod_response,
            timing: self.timing,
            outcome: self.outcome,
        }
    }
}

/// HTTP/1.1 parser of one connection. Feed it the connection's [`StreamEvent`]s with
/// [`handle`](Self::handle); finished exchanges are appended to `out` in request order.
pub struct ConnectionParser {
    flow: FlowKey,
    config: HttpConfig,
    req: Side,
    resp: Side,
    req_state: ReqState,
    resp_state: RespState,
    slots: VecDeque<Slot>,
    next_id: u64,
    /// Pairing must be confirmed by acknowledgment numbers (after a desync).
    ack_check: bool,
    /// The connection switched protocols (101, CONNECT): the rest is not HTTP/1.
    opaque: bool,
    /// When the server's FIN was delivered.
    resp_fin: Option<u64>,
}

impl ConnectionParser {
    /// A parser for a connection whose streams start at their beginning.
    pub fn new(flow: FlowKey, config: HttpConfig) -> Self {
        Self {
            flow,
            config,
            req: Side::default(),
            resp: Side::default(),
            req_state: ReqState::Head { resynced: false },
            resp_state: RespState::Head { resynced: false },
            slots: VecDeque::new(),
            next_id: 0,
            ack_check: false,
            opaque: false,
            resp_fin: None,
        }
    }

    /// Requests seen whose exchange was not emitted yet.
    pub fn pending(&self) -> usize {
        self.slots.len()
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
        self.emit(out);
    }

    /// Moves finished exchanges at the front to `out`.
    fn emit(&mut self, out: &mut Vec<Exchange>) {
        while self.slots.front().is_some_and(Slot::finished) {
            let slot = self.slots.pop_front().expect("front exists");
            out.push(slot.into_exchange(self.flow));
        }
    }

    fn joined(&mut self, dir: Direction) {
        self.ack_check = true;
        match dir {
            Direction::Request => self.req_state = ReqState::Resync,
            Direction::Response => self.resp_state = RespState::Resync,
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
        if self.opaque {
            return;
        }
        match dir {
            Direction::Request => {
                stats.request_bytes += bytes.len() as u64;
                self.req.append(seq, ack, ts, bytes);
                self.run_requests(stats);
            }
            Direction::Response => {
                stats.response_bytes += bytes.len() as u64;
                self.resp.append(seq, ack, ts, bytes);
            }
        }
        self.run_responses(stats);
    }

    fn new_slot(&mut self, head: Option<RequestHead>, outcome: Outcome) -> &mut Slot {
        let id = self.next_id;
        self.next_id += 1;
        let awaiting = head.is_some();
        let done = head.is_none();
        self.slots.push_back(Slot {
            id,
            head,
            body: None,
            req_done: done,
            awaiting,
            response: None,
            resp_done: false,
            head_end_seq: 0,
            outcome,
            timing: ExchangeTiming {
                request_first_byte: self.req.front().0,
                request_last_byte: self.req.latest_ts(),
                ..ExchangeTiming::default()
            },
        });
        self.slots.back_mut().expect("just pushed")
    }

    fn slot_mut(&mut self, id: u64) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.id == id)
    }

    /// Bytes that should have been a request head are not one.
    fn request_unparsable(&mut self, resynced: bool, stats: &mut HttpStats) {
        if !resynced {
            self.new_slot(None, Outcome::Unparsable);
            self.ack_check = true;
        }
        self.req.discard(1, stats);
        self.req_state = ReqState::Resync;
    }

    fn run_requests(&mut self, stats: &mut HttpStats) {
        loop {
            match &mut self.req_state {
                ReqState::Resync => match find_start(&self.req.buf, head::request_start) {
                    Start::Found(pos) => {
                        self.req.discard(pos, stats);
                        self.req_state = ReqState::Head { resynced: true };
                    }
                    Start::Maybe(pos) => {
                        self.req.discard(pos, stats);
                        return;
                    }
                    Start::None => {
                        let all = self.req.buf.len();
                        self.req.discard(all, stats);
                        return;
                    }
                },
                ReqState::Head { resynced } => {
                    let resynced = *resynced;
                    if self.req.buf.is_empty() {
                        return;
                    }
                    let first_ts = self.req.front().0;
                    let start_seq = self.req.front_seq;
                    match head::parse_request(&mut self.req.buf) {
                        Parsed::Partial if self.req.buf.len() <= self.config.max_head => return,
                        Parsed::Partial | Parsed::Invalid => {
                            self.request_unparsable(resynced, stats)
                        }
                        Parsed::Complete((head, len)) => {
                            self.req.consumed(len);
                            let reader = BodyReader::new(head.body, self.config.max_body);
                            let slot = self.new_slot(Some(head), Outcome::Complete);
                            slot.timing.request_first_byte = first_ts;
                            slot.head_end_seq = start_seq.wrapping_add(len as u32);
                            let id = slot.id;
                            self.req_state = ReqState::Body(reader, id);
                        }
                    }
                }
                ReqState::Body(reader, id) => {
                    let id = *id;
                    let before = self.req.buf.len();
                    let result = reader.feed(&mut self.req.buf);
                    let used = before - self.req.buf.len();
                    let last_ts = self.req.consumed(used);
                    let slot = self.slots.iter_mut().find(|s| s.id == id);
                    match result {
                        Ok(None) => return,
                        Ok(Some(body)) => {
                            if let Some(slot) = slot {
                                if body.decoded.is_none() {
                                    slot.fail(Outcome::Truncated);
                                }
                                slot.body = Some(body);
                                slot.req_done = true;
                                slot.timing.request_last_byte = last_ts;
                            }
                            self.req_state = ReqState::Head { resynced: false };
                        }
                        Err(_) => {
                            if let Some(slot) = slot {
                                slot.fail(Outcome::Unparsable);
                                slot.req_done = true;
                                slot.timing.request_last_byte = last_ts;
                            }
                            self.ack_check = true;
                            self.req_state = ReqState::Resync;
                        }
                    }
                }
            }
        }
    }

    /// Index of the oldest slot still waiting for its response.
    fn candidate(&self) -> Option<usize> {
        self.slots.iter().position(Slot::open_for_response)
    }

    /// Picks the slot a response starting in a segment with `ack` answers, or `None` to drop
    /// the response. Under `ack_check`, a response can only answer requests whose head it
    /// acknowledges; if it could answer several, they are all given up as gaps.
    fn pair(&mut self, ack: Option<u32>) -> Option<usize> {
        let first = self.candidate()?;
        if !self.ack_check {
            return Some(first);
        }
        let Some(ack) = ack else {
            return Some(first);
        };
        let covered: Vec<usize> = (first..self.slots.len())
            .filter(|&i| self.slots[i].open_for_response())
            .take_while(|&i| seq_le(self.slots[i].head_end_seq, ack))
            .collect();
        match covered.len() {
            0 => None,
            1 => Some(first),
            _ => {
                for i in covered {
                    let slot = &mut self.slots[i];
                    slot.fail(Outcome::Gap);
                    slot.resp_done = true;
                }
                None
            }
        }
    }

    fn run_responses(&mut self, stats: &mut HttpStats) {
        loop {
            if self.opaque {
                self.resp.buf.clear();
                return;
            }
            match &mut self.resp_state {
                RespState::Resync => match find_start(&self.resp.buf, head::response_start) {
                    Start::Found(pos) => {
                        self.resp.discard(pos, stats);
                        self.resp_state = RespState::Head { resynced: true };
                    }
                    Start::Maybe(pos) => {
                        self.resp.discard(pos, stats);
                        return;
                    }
                    Start::None => {
                        let all = self.resp.buf.len();
                        self.resp.discard(all, stats);
                        return;
                    }
                },
                RespState::Head { resynced } => {
                    let resynced = *resynced;
                    if self.resp.buf.is_empty() {
                        return;
                    }
                    // Wait for the request a response answers (bounded).
                    if self.candidate().is_none() && self.resp.buf.len() <= self.config.max_head {
                        return;
                    }
                    let (first_ts, ack) = self.resp.front();
                    match head::parse_response(&mut self.resp.buf) {
                        Parsed::Partial if self.resp.buf.len() <= self.config.max_head => return,
                        Parsed::Partial | Parsed::Invalid => {
                            if !resynced {
                                if let Some(i) = self.candidate() {
                                    let slot = &mut self.slots[i];
                                    slot.fail(Outcome::Unparsable);
                                    slot.resp_done = true;
                                }
                                self.ack_check = true;
                            }
                            self.resp.discard(1, stats);
                            self.resp_state = RespState::Resync;
                        }
                        Parsed::Complete((head, len)) => {
                            self.resp.consumed(len);
                            self.response_head(head, first_ts, ack, stats);
                        }
                    }
                }
                RespState::Body { reader, slot } => {
                    let slot_id = *slot;
                    let before = self.resp.buf.len();
                    let result = reader.feed(&mut self.resp.buf);
                    let used = before - self.resp.buf.len();
                    let last_ts = self.resp.consumed(used);
                    match result {
                        Ok(None) => return,
                        Ok(Some(body)) => self.response_done(slot_id, body, last_ts),
                        Err(_) => {
                            if let Some(slot) = slot_id.and_then(|id| self.slot_mut(id)) {
                                slot.fail(Outcome::Unparsable);
                                slot.resp_done = true;
                            }
                            self.ack_check = true;
                            self.resp_state = RespState::Resync;
                        }
                    }
                }
            }
        }
    }

    fn response_head(
        &mut self,
        head: ResponseHead,
        first_ts: u64,
        ack: Option<u32>,
        stats: &mut HttpStats,
    ) {
        if (100..200).contains(&head.status) && head.status != 101 {
            stats.interim_responses += 1;
            self.resp_state = RespState::Head { resynced: false };
            return;
        }
        let Some(i) = self.pair(ack) else {
            stats.orphan_responses += 1;
            self.resp_state = RespState::Body {
                reader: BodyReader::new(head.body, self.config.max_body),
                slot: None,
            };
            return;
        };
        let slot = &mut self.slots[i];
        let method = slot.head.as_ref().map_or("", |h| h.method.as_str());
        let kind = if method == "HEAD"
            || (method == "CONNECT" && (200..300).contains(&head.status))
            || head.status == 101
        {
            BodyKind::Empty
        } else {
            head.body
        };
        slot.timing.response_first_byte = Some(first_ts);
        slot.response = Some((head, None));
        self.resp_state = RespState::Body {
            reader: BodyReader::new(kind, self.config.max_body),
            slot: Some(slot.id),
        };
    }

    fn response_done(&mut self, slot_id: Option<u64>, body: Body, last_ts: u64) {
        self.resp_state = RespState::Head { resynced: false };
        let Some(slot) = slot_id.and_then(|id| self.slot_mut(id)) else {
            return;
        };
        if body.decoded.is_none() {
            slot.fail(Outcome::Truncated);
        }
        slot.timing.response_last_byte = Some(last_ts);
        let mut upgrade = false;
        if let Some((head, b)) = slot.response.as_mut() {
            let connect = slot.head.as_ref().is_some_and(|h| h.method == "CONNECT");
            upgrade = head.status == 101 || (connect && (200..300).contains(&head.status));
            *b = Some(body);
        }
        slot.resp_done = true;
        // A paired response completed: the streams are in step again.
        self.ack_check = false;
        if upgrade {
            self.opaque = true;
            self.req_state = ReqState::Resync;
            // Bytes after the switch are not HTTP/1: a request still being read is not one.
            for slot in self.slots.iter_mut().filter(|s| !s.req_done) {
                slot.fail(Outcome::Unparsable);
                slot.req_done = true;
            }
        }
    }

    fn gap(&mut self, dir: Direction, ts: u64, stats: &mut HttpStats) {
        self.ack_check = true;
        match dir {
            Direction::Request => {
                match self.req_state {
                    ReqState::Body(_, id) => {
                        if let Some(slot) = self.slot_mut(id) {
                            slot.fail(Outcome::Gap);
                            slot.req_done = true;
                            slot.timing.request_last_byte = ts;
                        }
                    }
                    ReqState::Head { .. } => {
                        let empty = self.req.buf.is_empty();
                        let slot = self.new_slot(None, Outcome::Gap);
                        if empty {
                            slot.timing.request_first_byte = ts;
                            slot.timing.request_last_byte = ts;
                        }
                    }
                    ReqState::Resync => {}
                }
                self.req.reset(stats);
                self.req_state = ReqState::Resync;
            }
            Direction::Response => {
                let hit = match &self.resp_state {
                    RespState::Body { slot, .. } => *slot,
                    RespState::Head { .. } if !self.resp.buf.is_empty() => {
                        self.candidate().map(|i| self.slots[i].id)
                    }
                    _ => None,
                };
                if let Some(slot) = hit.and_then(|id| self.slot_mut(id)) {
                    slot.fail(Outcome::Gap);
                    slot.resp_done = true;
                }
                self.resp.reset(stats);
                self.resp_state = RespState::Resync;
            }
        }
        self.run_responses(stats);
    }

    fn fin(&mut self, dir: Direction, ts: u64, stats: &mut HttpStats) {
        match dir {
            Direction::Request => self.end_requests(Outcome::Unparsable, ts, stats),
            Direction::Response => {
                self.resp_fin = Some(ts);
                self.finish_close_delimited();
                // A response still waiting for its request (held back by a hole in the
                // request stream) is judged when the connection closes.
                let waiting = matches!(self.resp_state, RespState::Head { .. })
                    && !self.resp.buf.is_empty()
                    && self.candidate().is_none();
                if !waiting {
                    self.end_responses(Outcome::Unparsable, stats);
                }
            }
        }
    }

    /// After the server's FIN, a close-delimited body being read is complete.
    fn finish_close_delimited(&mut self) {
        if self.resp_fin.is_none() {
            return;
        }
        let before = self.resp.buf.len();
        if let RespState::Body { reader, slot } = &mut self.resp_state
            && let Some(body) = reader.finish_at_close(&mut self.resp.buf)
        {
            let slot = *slot;
            let last_ts = self.resp.consumed(before - self.resp.buf.len());
            self.response_done(slot, body, last_ts);
        }
    }

    /// The request stream ended: an unfinished request fails with `outcome`.
    fn end_requests(&mut self, outcome: Outcome, ts: u64, stats: &mut HttpStats) {
        match self.req_state {
            ReqState::Body(_, id) => {
                if let Some(slot) = self.slot_mut(id) {
                    slot.fail(outcome);
                    slot.req_done = true;
                }
            }
            ReqState::Head { .. } if !self.req.buf.is_empty() => {
                self.new_slot(None, outcome).timing.request_last_byte = ts;
            }
            _ => {}
        }
        self.req.reset(stats);
        self.req_state = ReqState::Resync;
    }

    /// The response stream ended: an unfinished response fails with `outcome`.
    fn end_responses(&mut self, outcome: Outcome, stats: &mut HttpStats) {
        match &self.resp_state {
            RespState::Body { slot, .. } => {
                if let Some(slot) = slot.and_then(|id| self.slot_mut(id)) {
                    slot.fail(outcome);
                    slot.resp_done = true;
                }
            }
            RespState::Head { .. } if !self.resp.buf.is_empty() => stats.orphan_responses += 1,
            _ => {}
        }
        self.resp.reset(stats);
        self.resp_state = RespState::Resync;
    }

    fn close(&mut self, reason: CloseReason, ts: u64, stats: &mut HttpStats) {
        let incomplete = if reason.is_connection_end() {
            Outcome::Unparsable
        } else {
            Outcome::Gap
        };
        self.end_requests(incomplete, ts, stats);
        self.finish_close_delimited();
        self.end_responses(incomplete, stats);
        for slot in self.slots.iter_mut() {
            if !slot.req_done {
                slot.fail(incomplete);
                slot.req_done = true;
            }
            if slot.awaiting && !slot.resp_done {
                slot.fail(if slot.response.is_some() {
                    incomplete
                } else {
                    Outcome::NoResponse
                });
                slot.resp_done = true;
            }
        }
    }
}
