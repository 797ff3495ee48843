//! The exchanges of one connection still in flight: one slot per request, in the order the
//! requests were sent, each in a [`SlotState`]; final responses are paired with the oldest slot
//! still awaiting one, if the TCP sequence numbers show it can be that request's answer
//! ([`Slot::can_answer`]).

use crate::http::exchange::{Exchange, ExchangeTiming, HttpRequest, HttpResponse, Outcome};
use crate::http::head::{RequestHead, ResponseHead};
use crate::segment::FlowKey;
use bytes::Bytes;
use std::collections::VecDeque;

/// Identifies a slot for as long as it is pending. Ids are consecutive in slot order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SlotId(u64);

/// Where one exchange stands.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "NoRequest slots are rare and short-lived; boxing would allocate for every request"
)]
pub(super) enum SlotState {
    /// Where a request should have started the bytes were unparsable or lost in a gap: there
    /// is no request to pair a response with, so the slot is finished from the start.
    NoRequest,
    /// A request head was parsed. Its body and its response progress independently (a server
    /// may answer before the request body ends).
    Request {
        head: RequestHead,
        /// Sequence number just past the head: a response whose segment does not acknowledge
        /// it cannot answer this request.
        head_end_seq: u32,
        /// How far the client had received the response stream (the acknowledgment number of
        /// the request's first segment): a response starting before it was sent before the
        /// request and cannot answer it.
        answer_from: Option<u32>,
        body: RequestBody,
        response: ResponseState,
    },
    /// The request was upgraded to HTTP/2 (`Upgrade: h2c` answered by 101): it continues as
    /// stream 1 of the HTTP/2 parser, and no exchange comes out of this slot.
    HandedOver,
}

/// The body of a parsed request.
#[derive(Debug)]
pub(super) enum RequestBody {
    /// Still arriving.
    Reading,
    /// Ended: the decoded body, empty unless it was read whole within the cap (the outcome
    /// says why).
    Ended(Bytes),
}

/// The production response to a parsed request.
#[derive(Debug)]
pub(super) enum ResponseState {
    /// No final response paired yet.
    Awaiting,
    /// A final response head was paired; its body is arriving.
    Reading(ResponseHead),
    /// Ended: the response and its decoded body, empty unless read whole within the cap (the
    /// outcome says why).
    Received(ResponseHead, Bytes),
    /// Given up without a response (the outcome says why).
    Missing,
}

/// One request and, once seen, its response.
#[derive(Debug)]
pub(super) struct Slot {
    id: SlotId,
    state: SlotState,
    /// [`Outcome::Complete`] until the first failure, which is kept.
    outcome: Outcome,
    pub timing: ExchangeTiming,
}

impl Slot {
    /// Its id.
    pub fn id(&self) -> SlotId {
        self.id
    }

    /// Records a failure; the first one is kept.
    pub fn fail(&mut self, outcome: Outcome) {
        if self.outcome == Outcome::Complete {
            self.outcome = outcome;
        }
    }

    /// The request method, if a request head was parsed.
    pub fn method(&self) -> Option<&str> {
        match &self.state {
            SlotState::Request { head, .. } => Some(&head.method),
            SlotState::NoRequest | SlotState::HandedOver => None,
        }
    }

    /// Bytes it holds, approximately: the slot, its heads and the bodies kept.
    fn held_bytes(&self) -> usize {
        let kept = match &self.state {
            SlotState::Request {
                head,
                body,
                response,
                ..
            } => {
                let body = match body {
                    RequestBody::Ended(body) => body.len(),
                    RequestBody::Reading => 0,
                };
                let response = match response {
                    ResponseState::Reading(head) => head.held_bytes(),
                    ResponseState::Received(head, body) => head.held_bytes() + body.len(),
                    ResponseState::Awaiting | ResponseState::Missing => 0,
                };
                head.held_bytes() + body + response
            }
            SlotState::NoRequest | SlotState::HandedOver => 0,
        };
        std::mem::size_of::<Slot>() + kept
    }

    /// The request body ended: with its decoded bytes if read whole within the cap, else with
    /// the failure. Does nothing to a request body that had already ended.
    pub fn end_request(&mut self, decoded: Result<Bytes, Outcome>) {
        let decoded = self.keep(decoded);
        if let SlotState::Request { body, .. } = &mut self.state
            && matches!(body, RequestBody::Reading)
        {
            *body = RequestBody::Ended(decoded);
        }
    }

    /// The status of the paired final response, if any.
    pub fn response_status(&self) -> Option<u16> {
        match &self.state {
            SlotState::Request {
                response: ResponseState::Reading(head) | ResponseState::Received(head, _),
                ..
            } => Some(head.status),
            _ => None,
        }
    }

    /// Whether a final response starting at `start` can answer this request: the response's
    /// segment acknowledges the request's head, and the response was not already received by
    /// the client when it sent the request. Without acknowledgment numbers the capture times
    /// decide: a response that started before the request cannot answer it.
    pub fn can_answer(&self, start: &ResponseStart) -> bool {
        let SlotState::Request {
            head_end_seq,
            answer_from,
            ..
        } = self.state
        else {
            return false;
        };
        let head_acknowledged = start.ack.is_none_or(|ack| seq_le(head_end_seq, ack));
        let sent_after_request = match (answer_from, start.ack) {
            (Some(from), Some(_)) => seq_le(from, start.seq),
            _ => self.timing.request_first_byte <= start.ts,
        };
        head_acknowledged && sent_after_request
    }

    /// Whether it awaits a final response.
    pub fn awaits_response(&self) -> bool {
        matches!(
            self.state,
            SlotState::Request {
                response: ResponseState::Awaiting,
                ..
            }
        )
    }

    /// Pairs the head of a final response with this slot.
    pub fn start_response(&mut self, head: ResponseHead) {
        if let SlotState::Request { response, .. } = &mut self.state {
            *response = ResponseState::Reading(head);
        }
    }

    /// The response ended: with its decoded body if read whole within the cap, else with the
    /// failure. A response never paired is given up as missing; one that had already ended is
    /// left as it was.
    pub fn end_response(&mut self, decoded: Result<Bytes, Outcome>) {
        let decoded = self.keep(decoded);
        if let SlotState::Request { response, .. } = &mut self.state {
            *response = match std::mem::replace(response, ResponseState::Missing) {
                ResponseState::Reading(head) => ResponseState::Received(head, decoded),
                ResponseState::Awaiting | ResponseState::Missing => ResponseState::Missing,
                received @ ResponseState::Received(..) => received,
            };
        }
    }

    /// The bytes to keep of a body that ended, recording its failure if there was one.
    fn keep(&mut self, decoded: Result<Bytes, Outcome>) -> Bytes {
        decoded.unwrap_or_else(|failure| {
            self.fail(failure);
            Bytes::new()
        })
    }

    /// Request and response have both ended: ready to be emitted.
    fn finished(&self) -> bool {
        match &self.state {
            SlotState::NoRequest | SlotState::HandedOver => true,
            SlotState::Request { body, response, .. } => {
                matches!(body, RequestBody::Ended(_))
                    && matches!(
                        response,
                        ResponseState::Received(..) | ResponseState::Missing
                    )
            }
        }
    }

    /// The slot's request, its decoded body and its times, if this slot is a whole
    /// `Upgrade: h2c` request answered by `101` (to h2c): the slot then emits nothing.
    pub fn hand_over_h2c(&mut self) -> Option<(RequestHead, Bytes, ExchangeTiming)> {
        let SlotState::Request {
            head,
            body: RequestBody::Ended(_),
            response: ResponseState::Received(response, _),
            ..
        } = &self.state
        else {
            return None;
        };
        if self.outcome != Outcome::Complete
            || head.h2c_settings().is_none()
            || !response.switches_to_h2c()
        {
            return None;
        }
        match std::mem::replace(&mut self.state, SlotState::HandedOver) {
            SlotState::Request {
                head,
                body: RequestBody::Ended(body),
                ..
            } => Some((head, body, self.timing)),
            _ => None,
        }
    }

    /// Whether this slot is an `Upgrade: h2c` request still waiting for its response: the
    /// bytes after it are HTTP/1 only if the server declines.
    fn awaits_h2c_answer(&self) -> bool {
        matches!(
            &self.state,
            SlotState::Request {
                head,
                response: ResponseState::Awaiting,
                ..
            } if head.h2c_settings().is_some()
        )
    }

    fn into_exchange(self, flow: FlowKey) -> Option<Exchange> {
        let (request, prod_response) = match self.state {
            SlotState::HandedOver => return None,
            SlotState::NoRequest => (None, None),
            SlotState::Request {
                head,
                body,
                response,
                ..
            } => {
                let request = HttpRequest {
                    trailers: Vec::new(),
                    method: head.method,
                    target: head.target,
                    version: head.version,
                    headers: head.headers,
                    body: match body {
                        RequestBody::Ended(body) => body,
                        RequestBody::Reading => Bytes::new(),
                    },
                };
                let response = match response {
                    ResponseState::Awaiting | ResponseState::Missing => None,
                    ResponseState::Reading(head) => Some((head, Bytes::new())),
                    ResponseState::Received(head, body) => Some((head, body)),
                };
                let response = response.map(|(head, body)| HttpResponse {
                    trailers: Vec::new(),
                    status: head.status,
                    version: head.version,
                    headers: head.headers,
                    body,
                });
                (Some(request), response)
            }
        };
        Some(Exchange {
            protocol: crate::http::Protocol::Http1,
            flow,
            request,
            prod_response,
            timing: self.timing,
            outcome: self.outcome,
        })
    }
}

/// `a` is at or before `b` in sequence space.
fn seq_le(a: u32, b: u32) -> bool {
    b.wrapping_sub(a) as i32 >= 0
}

/// Where a final response starts: what pairing checks it against a request.
#[derive(Clone, Copy, Debug)]
pub(super) struct ResponseStart {
    /// Sequence number of its first byte (response stream).
    pub seq: u32,
    /// Acknowledgment number of the segment its first byte came in (request stream), if the
    /// ACK flag was set.
    pub ack: Option<u32>,
    /// Capture time of its first byte.
    pub ts: u64,
}

/// The slots of one connection, oldest first, and how responses are paired with them.
#[derive(Debug, Default)]
pub(super) struct PendingExchanges {
    slots: VecDeque<Slot>,
    next_id: u64,
    /// The streams may be out of step (after a gap, unparsable bytes or a mid-stream join):
    /// a response may answer any waiting request it [can answer](Slot::can_answer), not only
    /// the oldest one; if it could answer several, they are all given up.
    pub confirm_by_ack: bool,
    /// Sequence number just past the newest request-stream byte delivered so far.
    pub request_stream_end: Option<u32>,
    /// The connection is gone: no request is still to come.
    pub closing: bool,
    /// Ids of the requests that were lost or unparsable ([`SlotState::NoRequest`]; their
    /// slots may be gone) whose answer has not been accounted for yet: in HTTP/1 order the
    /// server answered them too, so a response lost or dropped before the next parsed
    /// request's answer was theirs.
    lost_requests: VecDeque<u64>,
    /// The slot whose response switched protocols, until the connection parser looks.
    pub switched: Option<SlotId>,
    /// Request bytes delivered but not parsed: held behind an `Upgrade: h2c` request still
    /// unanswered. A response cannot be proven an orphan by its ack meanwhile.
    pub requests_held: bool,
}

/// Lost requests remembered at most per connection (the oldest are forgotten first).
const MAX_LOST_REQUESTS: usize = 64;

impl PendingExchanges {
    /// Slots not emitted yet.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Bytes the slots hold, approximately (a sum over the slots).
    pub fn held_bytes(&self) -> usize {
        self.slots.iter().map(Slot::held_bytes).sum::<usize>()
            + self.lost_requests.len() * std::mem::size_of::<u64>()
    }

    fn push(&mut self, state: SlotState, outcome: Outcome, timing: ExchangeTiming) -> SlotId {
        let id = SlotId(self.next_id);
        self.next_id += 1;
        self.slots.push_back(Slot {
            id,
            state,
            outcome,
            timing,
        });
        id
    }

    /// A slot for bytes where a request should have been, failed with `outcome`.
    pub fn push_no_request(&mut self, outcome: Outcome, timing: ExchangeTiming) {
        let id = self.push(SlotState::NoRequest, outcome, timing);
        if self.lost_requests.len() == MAX_LOST_REQUESTS {
            self.lost_requests.pop_front();
        }
        self.lost_requests.push_back(id.0);
    }

    /// Accounts one response that answered no parsed request (dropped, lost or unparsable)
    /// to the oldest lost request older than every request still awaiting a response, if
    /// there is one. Returns whether it did.
    fn answer_lost_request(&mut self) -> bool {
        let oldest_awaiting = self.awaiting_index().map(|i| self.slots[i].id.0);
        match self.lost_requests.front() {
            Some(&lost) if oldest_awaiting.is_none_or(|awaiting| lost < awaiting) => {
                self.lost_requests.pop_front();
                true
            }
            _ => false,
        }
    }

    /// The next response in the stream was lost (a hole where it starts) or unparsable: it
    /// answered a lost request older than every waiting one, or else the oldest waiting
    /// request, which fails with `failure`.
    pub fn lose_next_response(&mut self, failure: Outcome) {
        if !self.answer_lost_request()
            && let Some(slot) = self.oldest_awaiting()
        {
            slot.end_response(Err(failure));
        }
    }

    /// A response was dropped as an orphan: if a lost request is older than every waiting
    /// one, it was probably that request's answer.
    pub fn orphan_dropped(&mut self) {
        self.answer_lost_request();
    }

    /// A slot for a parsed request head ending at sequence number `head_end_seq`, sent when
    /// the client had received the response stream up to `answer_from`, whose body is still to
    /// be read.
    pub fn push_request(
        &mut self,
        head: RequestHead,
        head_end_seq: u32,
        answer_from: Option<u32>,
        timing: ExchangeTiming,
    ) -> SlotId {
        let state = SlotState::Request {
            head,
            head_end_seq,
            answer_from,
            body: RequestBody::Reading,
            response: ResponseState::Awaiting,
        };
        self.push(state, Outcome::Complete, timing)
    }

    /// The slot `id`, if it is still pending.
    pub fn get_mut(&mut self, id: SlotId) -> Option<&mut Slot> {
        let front = self.slots.front()?.id.0;
        let index = usize::try_from(id.0.checked_sub(front)?).ok()?;
        self.slots.get_mut(index)
    }

    /// Index of the oldest slot still awaiting its response.
    fn awaiting_index(&self) -> Option<usize> {
        self.slots.iter().position(Slot::awaits_response)
    }

    /// Whether the newest request asked to upgrade to h2c and awaits its answer: requests
    /// after it wait (a client sends HTTP/2 after the upgrade, never more HTTP/1).
    pub fn awaits_h2c_answer(&self) -> bool {
        self.slots.back().is_some_and(Slot::awaits_h2c_answer)
    }

    /// Whether some request still awaits its response.
    pub fn any_awaiting(&self) -> bool {
        self.awaiting_index().is_some()
    }

    /// The oldest slot still awaiting its response.
    fn oldest_awaiting(&mut self) -> Option<&mut Slot> {
        let i = self.awaiting_index()?;
        self.slots.get_mut(i)
    }

    /// The slot the final response starting at `start` answers, or `None` to drop it as an
    /// orphan. It answers the oldest slot awaiting a response if it [can](Slot::can_answer);
    /// if it cannot, it answers no request (later requests were sent later still). Under
    /// [`confirm_by_ack`](Self::confirm_by_ack) it may answer any awaiting request it can; if
    /// it could answer several, they are all given up as gaps rather than guessed.
    pub fn pair(&mut self, start: &ResponseStart) -> Option<&mut Slot> {
        let first = self.awaiting_index()?;
        let chosen = if !self.confirm_by_ack {
            self.slots[first].can_answer(start).then_some(first)
        } else {
            let covered: Vec<usize> = (first..self.slots.len())
                .filter(|&i| self.slots[i].awaits_response())
                .take_while(|&i| self.slots[i].can_answer(start))
                .collect();
            match covered[..] {
                [] => None,
                [only] => Some(only),
                _ => {
                    for i in covered {
                        self.slots[i].end_response(Err(Outcome::Gap));
                    }
                    None
                }
            }
        };
        let index = chosen?;
        // Requests lost before this one were answered before it.
        let id = self.slots[index].id.0;
        self.lost_requests.retain(|&lost| lost > id);
        self.slots.get_mut(index)
    }

    /// Whether a response whose first segment carries `ack` can answer no request still to
    /// come: the server had not received any request bytes beyond those already delivered,
    /// and any request still to be parsed ends beyond them. Such a response is dropped as an
    /// orphan right away instead of being held for the next request.
    pub fn answers_nothing_to_come(&self, ack: Option<u32>) -> bool {
        if self.closing {
            return true;
        }
        if self.requests_held {
            return false;
        }
        match (ack, self.request_stream_end) {
            (Some(ack), Some(end)) => seq_le(ack, end),
            _ => false,
        }
    }

    /// Every request body still being read ends with `failure` (the connection switched
    /// protocols, or is gone).
    pub fn cut_unfinished_requests(&mut self, failure: Outcome) {
        for slot in &mut self.slots {
            if let SlotState::Request {
                body: RequestBody::Reading,
                ..
            } = slot.state
            {
                slot.end_request(Err(failure));
            }
        }
    }

    /// The connection is gone: every request still being read fails with `incomplete`, every
    /// response still being read too, and requests never answered get
    /// [`Outcome::NoResponse`].
    pub fn close(&mut self, incomplete: Outcome) {
        self.cut_unfinished_requests(incomplete);
        for slot in &mut self.slots {
            let failure = match slot.state {
                SlotState::Request {
                    response: ResponseState::Awaiting,
                    ..
                } => Outcome::NoResponse,
                SlotState::Request {
                    response: ResponseState::Reading(_),
                    ..
                } => incomplete,
                _ => continue,
            };
            slot.end_response(Err(failure));
        }
    }

    /// Moves the finished exchanges at the front to `out`, in request order.
    pub fn emit(&mut self, flow: FlowKey, out: &mut Vec<Exchange>) {
        while self.slots.front().is_some_and(Slot::finished) {
            if let Some(exchange) = self.slots.pop_front().and_then(|s| s.into_exchange(flow)) {
                out.push(exchange);
            }
        }
    }
}
