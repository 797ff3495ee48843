//! One HTTP/2 stream: the request side (client → server) and the response side, each a
//! head, a body and trailers, and what became of it. A stream becomes one [`Exchange`] once
//! both sides have ended (or failed).

use super::hpack::Field;
use crate::http::exchange::{
    Exchange, ExchangeTiming, Header, HttpRequest, HttpResponse, Outcome, Protocol,
};
use crate::http::stats::{HttpStats, Refusal, StreamLoss};
use crate::segment::{Direction, FlowKey};
use bytes::{Bytes, BytesMut};

/// Where one side of a stream is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Progress {
    /// Nothing of it seen yet (a response: no final head yet).
    Idle,
    /// Its head was seen; more frames follow.
    Open,
    /// END_STREAM seen.
    Ended,
    /// Given up, with this outcome.
    Failed(Outcome),
}

/// A side's head.
#[derive(Debug, Default)]
enum Head {
    /// Not seen yet.
    #[default]
    None,
    /// Its header block could not be decoded (HPACK state unknown).
    Unknown,
    /// Decoded: the pseudo-header values and the other fields.
    Known(Pseudo, Vec<Header>),
}

/// The pseudo-headers kept.
#[derive(Debug, Default)]
struct Pseudo {
    method: Option<String>,
    path: Option<String>,
    authority: Option<String>,
    status: Option<u16>,
}

/// A header block delivered to a side.
pub(super) enum Block {
    /// Decoded fields (`complete` false when the list was over the cap).
    Decoded { fields: Vec<Field>, complete: bool },
    /// Not decodable: HPACK state unknown.
    Unknown,
    /// Not decodable: an HPACK error (the block is unparsable).
    Invalid,
}

/// One side of a stream.
#[derive(Debug)]
pub(super) struct Side {
    pub progress: Progress,
    head: Head,
    body: BytesMut,
    /// The body went over the cap (its bytes are dropped).
    over_cap: bool,
    trailers: Vec<Header>,
}

impl Side {
    fn new() -> Self {
        Self {
            progress: Progress::Idle,
            head: Head::None,
            body: BytesMut::new(),
            over_cap: false,
            trailers: Vec::new(),
        }
    }

    /// Bytes it holds, approximately: its body so far, head and trailers.
    fn held_bytes(&self) -> usize {
        let head = match &self.head {
            Head::Known(pseudo, headers) => {
                let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
                text(&pseudo.method)
                    + text(&pseudo.path)
                    + text(&pseudo.authority)
                    + Header::held_bytes(headers)
            }
            Head::None | Head::Unknown => 0,
        };
        self.body.capacity() + head + Header::held_bytes(&self.trailers)
    }

    /// Ended, failed, or a request never to be seen (a stream known only from its response).
    pub fn terminal(&self) -> bool {
        matches!(self.progress, Progress::Ended | Progress::Failed(_))
            || (self.progress == Progress::Idle && matches!(self.head, Head::Unknown))
    }

    /// Fails the side unless it already ended.
    pub fn fail(&mut self, outcome: Outcome) {
        if !matches!(self.progress, Progress::Ended | Progress::Failed(_)) {
            self.progress = Progress::Failed(outcome);
            self.body = BytesMut::new();
        }
    }

    /// What this side makes of the exchange's outcome (`None`: complete).
    fn failure(&self) -> Option<Outcome> {
        match (&self.head, self.progress) {
            (Head::Unknown, _) => Some(Outcome::Gap),
            (_, Progress::Failed(outcome)) => Some(outcome),
            (_, Progress::Ended) if self.over_cap => Some(Outcome::Truncated),
            (_, Progress::Ended) => None,
            (_, Progress::Idle | Progress::Open) => Some(Outcome::Incomplete),
        }
    }

    fn hpack_unknown(&self) -> bool {
        matches!(self.head, Head::Unknown)
    }

    /// The body if it was read whole within the cap, else empty.
    fn kept_body(&mut self) -> Bytes {
        if self.progress == Progress::Ended && !self.over_cap {
            std::mem::take(&mut self.body).freeze()
        } else {
            Bytes::new()
        }
    }
}

/// One stream of an HTTP/2 connection.
#[derive(Debug)]
pub(super) struct H2Stream {
    pub request: Side,
    pub response: Side,
    pub timing: ExchangeTiming,
    /// Why it was not seen whole, for the counters (the first reason is kept).
    loss: Option<StreamLoss>,
    /// A response arrived for it before any of its request (a stream known only from one
    /// side): its request's first byte is unknown.
    seen_first: bool,
}

/// What a side's frame is.
pub(super) struct FrameSeen {
    /// Capture time of the frame's first byte.
    pub first_ts: u64,
    /// Capture time of its last byte.
    pub last_ts: u64,
    /// END_STREAM set.
    pub end_stream: bool,
}

impl H2Stream {
    /// Bytes it holds, approximately (both sides).
    pub fn held_bytes(&self) -> usize {
        std::mem::size_of::<H2Stream>() + self.request.held_bytes() + self.response.held_bytes()
    }

    pub fn new() -> Self {
        Self {
            request: Side::new(),
            response: Side::new(),
            timing: ExchangeTiming::default(),
            loss: None,
            seen_first: false,
        }
    }

    /// A stream whose request was sent as HTTP/1.1 with `Upgrade: h2c` (stream 1).
    pub fn upgraded(request: HttpRequest, timing: ExchangeTiming) -> Self {
        let mut stream = Self::new();
        let pseudo = Pseudo {
            method: Some(request.method),
            path: Some(request.target),
            ..Pseudo::default()
        };
        stream.request.head = Head::Known(pseudo, request.headers);
        stream.request.body = BytesMut::from(&request.body[..]);
        stream.request.progress = Progress::Ended;
        stream.timing = timing;
        stream.seen_first = true;
        stream
    }

    /// `dir`'s side of a stream first seen while that direction's HPACK state is unknown:
    /// its head will never be known.
    pub fn unknown_side(&mut self, dir: Direction) {
        let side = self.side(dir);
        if matches!(side.head, Head::None) {
            side.head = Head::Unknown;
        }
    }

    /// Records why the stream was not seen whole (the first reason counts).
    pub fn lose(&mut self, reason: StreamLoss) {
        self.loss.get_or_insert(reason);
    }

    pub fn side(&mut self, dir: Direction) -> &mut Side {
        match dir {
            Direction::Request => &mut self.request,
            Direction::Response => &mut self.response,
        }
    }

    /// Both sides are done: the exchange can be emitted.
    pub fn finished(&self) -> bool {
        self.request.terminal() && self.response.terminal()
    }

    fn saw(&mut self, dir: Direction, frame: &FrameSeen) {
        if !self.seen_first {
            self.seen_first = true;
            self.timing.request_first_byte = frame.first_ts;
            self.timing.request_last_byte = frame.first_ts;
        }
        if dir == Direction::Request {
            self.timing.request_last_byte = frame.last_ts;
        }
    }

    fn end(&mut self, dir: Direction, frame: &FrameSeen) {
        if frame.end_stream {
            let side = self.side(dir);
            if side.progress == Progress::Open {
                side.progress = Progress::Ended;
                if dir == Direction::Response {
                    self.timing.response_last_byte = Some(frame.last_ts);
                }
            }
        }
    }

    /// A complete header block of `dir` for this stream.
    pub fn headers(
        &mut self,
        dir: Direction,
        block: Block,
        frame: FrameSeen,
        stats: &mut HttpStats,
    ) {
        if self.side(dir).terminal() && !self.side(dir).hpack_unknown() {
            return;
        }
        self.saw(dir, &frame);
        let (fields, complete) = match block {
            Block::Decoded { fields, complete } => (fields, complete),
            Block::Unknown => {
                let side = self.side(dir);
                side.head = Head::Unknown;
                if side.progress == Progress::Idle {
                    side.progress = Progress::Open;
                }
                self.lose(StreamLoss::HpackUnknown);
                self.end(dir, &frame);
                return;
            }
            Block::Invalid => {
                self.side(dir).fail(Outcome::Unparsable);
                return;
            }
        };
        if !complete {
            stats.refuse(Refusal::HeadTooLarge);
            self.side(dir).fail(Outcome::Unparsable);
            return;
        }
        let side = self.side(dir);
        let trailers = side.progress == Progress::Open;
        if trailers {
            // A second block ends the side: trailers, no pseudo-headers (RFC 9113 §8.1).
            match regular_fields(&fields) {
                Some(headers) if frame.end_stream => side.trailers = headers,
                _ => {
                    stats.refuse(Refusal::H2Malformed);
                    side.fail(Outcome::Unparsable);
                    return;
                }
            }
            self.end(dir, &frame);
            return;
        }
        let Some((pseudo, headers)) = split_pseudo(&fields) else {
            stats.refuse(Refusal::H2Malformed);
            side.fail(Outcome::Unparsable);
            return;
        };
        let valid = match dir {
            Direction::Request => {
                pseudo.method.is_some()
                    && (pseudo.path.is_some() || pseudo.method.as_deref() == Some("CONNECT"))
                    && pseudo.status.is_none()
            }
            Direction::Response => pseudo.status.is_some() && pseudo.method.is_none(),
        };
        if !valid {
            stats.refuse(Refusal::H2Malformed);
            side.fail(Outcome::Unparsable);
            return;
        }
        if let Some(status) = pseudo.status.filter(|s| (100..200).contains(s)) {
            // Interim response (100 Continue, 103 Early Hints): not paired, never ends the
            // stream.
            stats.interim_responses += 1;
            if frame.end_stream || status == 101 {
                stats.refuse(Refusal::H2Malformed);
                side.fail(Outcome::Unparsable);
            }
            return;
        }
        side.head = Head::Known(pseudo, headers);
        side.progress = Progress::Open;
        if dir == Direction::Response {
            self.timing.response_first_byte = Some(frame.first_ts);
        }
        self.end(dir, &frame);
    }

    /// A DATA frame of `dir` for this stream (payload without padding).
    pub fn data(&mut self, dir: Direction, data: &Bytes, frame: FrameSeen, max_body: usize) {
        let side = self.side(dir);
        match side.progress {
            Progress::Open => {}
            Progress::Idle if side.hpack_unknown() => side.progress = Progress::Open,
            Progress::Idle => {
                // DATA before HEADERS: malformed.
                side.fail(Outcome::Unparsable);
                return;
            }
            Progress::Ended | Progress::Failed(_) => return,
        }
        if !side.over_cap && !side.hpack_unknown() {
            if side.body.len() + data.len() > max_body {
                side.over_cap = true;
                side.body = BytesMut::new();
            } else {
                side.body.extend_from_slice(data);
            }
        }
        self.saw(dir, &frame);
        self.end(dir, &frame);
    }

    /// The stream was reset (RST_STREAM from either peer): what has not ended fails.
    pub fn reset(&mut self) {
        self.lose(StreamLoss::Reset);
        self.request.fail(Outcome::Incomplete);
        if self.response.progress == Progress::Idle {
            self.response.fail(Outcome::NoResponse);
        } else {
            self.response.fail(Outcome::Incomplete);
        }
    }

    /// No response will come on this stream (GOAWAY above its id, or the server closed):
    /// a response not started is missing, one started is cut short with `cut`.
    pub fn no_more_response(&mut self, cut: Outcome) {
        if self.response.progress == Progress::Idle && !self.response.hpack_unknown() {
            self.response.fail(Outcome::NoResponse);
        } else {
            self.response.fail(cut);
        }
    }

    /// No more request bytes will come (the client closed, or the connection is gone).
    pub fn no_more_request(&mut self, cut: Outcome) {
        if self.request.progress == Progress::Idle {
            self.request.fail(Outcome::Gap);
        } else {
            self.request.fail(cut);
        }
    }

    /// The exchange; counts its loss reason.
    pub fn into_exchange(mut self, flow: FlowKey, stats: &mut HttpStats) -> Exchange {
        if self.request.hpack_unknown() || self.response.hpack_unknown() {
            self.lose(StreamLoss::HpackUnknown);
        }
        let outcome = self
            .request
            .failure()
            .or_else(|| self.response.failure())
            .unwrap_or(Outcome::Complete);
        if let Some(reason) = self.loss.filter(|_| outcome != Outcome::Complete) {
            stats.lose(reason);
        }
        let request_body = self.request.kept_body();
        let response_body = self.response.kept_body();
        let request = match std::mem::take(&mut self.request.head) {
            Head::Known(pseudo, headers) => Some(HttpRequest {
                method: pseudo.method.unwrap_or_default(),
                target: pseudo.path.or(pseudo.authority).unwrap_or_default(),
                version: 0,
                headers,
                body: request_body,
                trailers: std::mem::take(&mut self.request.trailers),
            }),
            Head::None | Head::Unknown => None,
        };
        let response = match std::mem::take(&mut self.response.head) {
            Head::Known(pseudo, headers) => Some(HttpResponse {
                status: pseudo.status.unwrap_or_default(),
                version: 0,
                headers,
                body: response_body,
                trailers: std::mem::take(&mut self.response.trailers),
            }),
            Head::None | Head::Unknown => None,
        };
        let grpc = request.as_ref().is_some_and(|r| {
            r.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("content-type")
                    && h.value.starts_with(b"application/grpc")
            })
        });
        Exchange {
            flow,
            protocol: if grpc { Protocol::Grpc } else { Protocol::H2 },
            request,
            prod_response: response,
            timing: self.timing,
            outcome,
        }
    }
}

/// A field name as a string: HTTP/2 names are lower-case tokens, so one that is not UTF-8 is
/// malformed.
fn name_of(field: &Field) -> Option<String> {
    String::from_utf8(field.name.to_vec()).ok()
}

/// Fields without pseudo-headers (trailers), or `None` if one is there.
fn regular_fields(fields: &[Field]) -> Option<Vec<Header>> {
    fields
        .iter()
        .map(|f| {
            let name = name_of(f).filter(|n| !n.starts_with(':'))?;
            Some(Header {
                name,
                value: f.value.clone(),
            })
        })
        .collect()
}

/// Pseudo-headers (all first, each once, known names) and the other fields; `None` when
/// malformed (RFC 9113 §8.3).
fn split_pseudo(fields: &[Field]) -> Option<(Pseudo, Vec<Header>)> {
    let mut pseudo = Pseudo::default();
    let mut headers = Vec::with_capacity(fields.len());
    for field in fields {
        let name = name_of(field)?;
        if !name.starts_with(':') {
            headers.push(Header {
                name,
                value: field.value.clone(),
            });
            continue;
        }
        if !headers.is_empty() {
            return None;
        }
        let value = || String::from_utf8(field.value.to_vec()).ok();
        let slot = match name.as_str() {
            ":method" => &mut pseudo.method,
            ":path" => &mut pseudo.path,
            ":authority" => &mut pseudo.authority,
            ":scheme" | ":protocol" => continue,
            ":status" => {
                let status = value()?
                    .parse::<u16>()
                    .ok()
                    .filter(|s| (100..1000).contains(s))?;
                if pseudo.status.replace(status).is_some() {
                    return None;
                }
                continue;
            }
            _ => return None,
        };
        if slot.replace(value()?).is_some() {
            return None;
        }
    }
    Some((pseudo, headers))
}
