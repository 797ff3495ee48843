//! The exchanges of one connection still in flight: one slot per request, in the order the
//! requests were sent, each in a [`SlotState`]; final responses are paired with the oldest slot
//! still awaiting one.

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
        body: RequestBody,
        response: ResponseState,
    },
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
            SlotState::NoRequest => None,
        }
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
            SlotState::NoRequest => true,
            SlotState::Request { body, response, .. } => {
                matches!(body, RequestBody::Ended(_))
                    && matches!(
                        response,
                        ResponseState::Received(..) | ResponseState::Missing
                    )
            }
        }
    }

    fn into_exchange(self, flow: FlowKey) -> Exchange {
        let (request, prod_response) = match self.state {
            SlotState::NoRequest => (None, None),
            SlotState::Request {
                head,
                body,
                response,
                ..
            } => {
                let request = HttpRequest {
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
                    status: head.status,
                    version: head.version,
                    headers: head.headers,
                    body,
                });
                (Some(request), response)
            }
        };
        Exchange {
            flow,
            request,
            prod_response,
            timing: self.timing,
            outcome: self.outcome,
        }
    }
}

/// `a` is at or before `b` in sequence space.
fn seq_le(a: u32, b: u32) -> bool {
    b.wrapping_sub(a) as i32 >= 0
}

/// The slots of one connection, oldest first, and how responses are paired with them.
#[derive(Debug, Default)]
pub(super) struct PendingExchanges {
    slots: VecDeque<Slot>,
    next_id: u64,
    /// The streams may be out of step (after a gap, unparsable bytes or a mid-stream join):
    /// a response must acknowledge a request's head to be paired with it.
    pub confirm_by_ack: bool,
}

impl PendingExchanges {
    /// Slots not emitted yet.
    pub fn len(&self) -> usize {
        self.slots.len()
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
        self.push(SlotState::NoRequest, outcome, timing);
    }

    /// A slot for a parsed request head ending at sequence number `head_end_seq`, whose body
    /// is still to be read.
    pub fn push_request(
        &mut self,
        head: RequestHead,
        head_end_seq: u32,
        timing: ExchangeTiming,
    ) -> SlotId {
        let state = SlotState::Request {
            head,
            head_end_seq,
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

    /// Whether some request still awaits its response.
    pub fn any_awaiting(&self) -> bool {
        self.awaiting_index().is_some()
    }

    /// The oldest slot still awaiting its response.
    pub fn oldest_awaiting(&mut self) -> Option<&mut Slot> {
        let i = self.awaiting_index()?;
        self.slots.get_mut(i)
    }

    /// The slot a final response starting in a segment with `ack` answers, or `None` to drop
    /// the response. Under [`confirm_by_ack`](Self::confirm_by_ack), a response can only
    /// answer requests whose head it acknowledges; if it could answer several, they are all
    /// given up as gaps rather than guessed.
    pub fn pair(&mut self, ack: Option<u32>) -> Option<&mut Slot> {
        let first = self.awaiting_index()?;
        let ack = match ack {
            Some(ack) if self.confirm_by_ack => ack,
            _ => return self.slots.get_mut(first),
        };
        let acknowledged = |slot: &Slot| match slot.state {
            SlotState::Request { head_end_seq, .. } => seq_le(head_end_seq, ack),
            SlotState::NoRequest => false,
        };
        let covered: Vec<usize> = (first..self.slots.len())
            .filter(|&i| self.slots[i].awaits_response())
            .take_while(|&i| acknowledged(&self.slots[i]))
            .collect();
        match covered[..] {
            [] => None,
            [only] => self.slots.get_mut(only),
            _ => {
                for i in covered {
                    self.slots[i].end_response(Err(Outcome::Gap));
                }
                None
            }
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
            if let Some(slot) = self.slots.pop_front() {
                out.push(slot.into_exchange(flow));
            }
        }
    }
}
