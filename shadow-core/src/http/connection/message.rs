//! The two [`MessageKind`]s: what requests and responses do to the pending exchanges. A
//! request head opens a slot; a final response head is paired with the oldest slot awaiting
//! one, and the request method decides whether it has a body (HEAD, CONNECT, 101).

use super::reader::{Cut, HeadSeen, MessageKind, Protocol, ReaderState};
use super::slot::{PendingExchanges, ResponseStart, SlotId};
use super::stream::StreamBuffer;
use crate::http::body::{Body, BodyReader};
use crate::http::config::HttpConfig;
use crate::http::exchange::{ExchangeTiming, Outcome};
use crate::http::head::{self, BodyKind, Parsed, RequestHead, ResponseHead};
use crate::http::stats::HttpStats;
use bytes::{Bytes, BytesMut};

/// The client's messages.
pub(super) struct Requests;

/// The server's messages.
pub(super) struct Responses;

/// A decoded body, or [`Outcome::Truncated`] if it exceeded the cap.
fn kept(body: Body) -> Result<Bytes, Outcome> {
    body.decoded.ok_or(Outcome::Truncated)
}

impl MessageKind for Requests {
    type Head = RequestHead;
    /// A request body always belongs to the slot its head opened.
    type Owner = SlotId;

    fn starts_message(data: &[u8]) -> Option<bool> {
        head::request_start(data)
    }

    fn parse_head(buf: &mut BytesMut) -> Parsed<(RequestHead, usize)> {
        head::parse_request(buf)
    }

    /// After an `Upgrade: h2c` request, nothing is read until the server answers it.
    fn head_expected(pending: &PendingExchanges, _: Option<u32>) -> bool {
        !pending.awaits_h2c_answer()
    }

    fn head_invalid(pending: &mut PendingExchanges, stream: &StreamBuffer) {
        let timing = ExchangeTiming {
            request_first_byte: stream.front().0,
            request_last_byte: stream.latest_ts(),
            ..ExchangeTiming::default()
        };
        pending.push_no_request(Outcome::Unparsable, timing);
    }

    fn head_parsed(
        pending: &mut PendingExchanges,
        head: RequestHead,
        seen: HeadSeen,
        stream: &StreamBuffer,
        config: &HttpConfig,
        _: &mut HttpStats,
    ) -> ReaderState<SlotId> {
        let reader = BodyReader::new(head.body, config.max_body);
        let timing = ExchangeTiming {
            request_first_byte: seen.first_ts,
            request_last_byte: stream.latest_ts(),
            ..ExchangeTiming::default()
        };
        let owner = pending.push_request(head, seen.end_seq, seen.ack, timing);
        ReaderState::Body { reader, owner }
    }

    fn body_complete(
        pending: &mut PendingExchanges,
        owner: SlotId,
        body: Body,
        last_ts: u64,
    ) -> Protocol {
        if let Some(slot) = pending.get_mut(owner) {
            slot.end_request(kept(body));
            slot.timing.request_last_byte = last_ts;
        }
        Protocol::Http1
    }

    fn body_invalid(pending: &mut PendingExchanges, owner: SlotId, last_ts: u64) {
        if let Some(slot) = pending.get_mut(owner) {
            slot.end_request(Err(Outcome::Unparsable));
            slot.timing.request_last_byte = last_ts;
        }
    }

    fn body_cut(pending: &mut PendingExchanges, owner: SlotId, cut: Cut, ts: u64) {
        let Some(slot) = pending.get_mut(owner) else {
            return;
        };
        match cut {
            Cut::Gap => {
                slot.end_request(Err(Outcome::Gap));
                slot.timing.request_last_byte = ts;
            }
            Cut::End(outcome) => slot.end_request(Err(outcome)),
        }
    }

    /// Bytes of a request whose head was never parsed still make an exchange, so the loss is
    /// counted; a gap makes one even when nothing of the request was seen.
    fn head_cut(
        pending: &mut PendingExchanges,
        stream: &StreamBuffer,
        cut: Cut,
        ts: u64,
        _: &mut HttpStats,
    ) {
        let seen = ExchangeTiming {
            request_first_byte: stream.front().0,
            request_last_byte: stream.latest_ts(),
            ..ExchangeTiming::default()
        };
        match cut {
            Cut::Gap if stream.buf.is_empty() => {
                let timing = ExchangeTiming {
                    request_first_byte: ts,
                    request_last_byte: ts,
                    ..seen
                };
                pending.push_no_request(Outcome::Gap, timing);
            }
            Cut::Gap => pending.push_no_request(Outcome::Gap, seen),
            Cut::End(_) if stream.buf.is_empty() => {}
            Cut::End(outcome) => {
                let timing = ExchangeTiming {
                    request_last_byte: ts,
                    ..seen
                };
                pending.push_no_request(outcome, timing);
            }
        }
    }
}

/// A 1xx other than 101: an interim response, never paired.
fn interim(status: u16) -> bool {
    (100..200).contains(&status) && status != 101
}

/// A final response with this status to a request with this method switches protocols.
fn switches_protocols(method: Option<&str>, status: u16) -> bool {
    status == 101 || (method == Some("CONNECT") && (200..300).contains(&status))
}

impl MessageKind for Responses {
    type Head = ResponseHead;
    /// The slot a response body answers; `None` for an orphan response being skipped.
    type Owner = Option<SlotId>;

    fn starts_message(data: &[u8]) -> Option<bool> {
        head::response_start(data)
    }

    fn parse_head(buf: &mut BytesMut) -> Parsed<(ResponseHead, usize)> {
        head::parse_response(buf)
    }

    /// A response head is read when a request awaits it, or when it provably answers no
    /// request still to come (then as an orphan); otherwise it waits for its request.
    fn head_expected(pending: &PendingExchanges, front_ack: Option<u32>) -> bool {
        pending.any_awaiting() || pending.answers_nothing_to_come(front_ack)
    }

    fn head_invalid(pending: &mut PendingExchanges, _: &StreamBuffer) {
        pending.lose_next_response(Outcome::Unparsable);
    }

    fn head_parsed(
        pending: &mut PendingExchanges,
        head: ResponseHead,
        seen: HeadSeen,
        _: &StreamBuffer,
        config: &HttpConfig,
        stats: &mut HttpStats,
    ) -> ReaderState<Option<SlotId>> {
        if interim(head.status) {
            stats.interim_responses += 1;
            return ReaderState::Head { resynced: false };
        }
        let start = ResponseStart {
            seq: seen.start_seq,
            ack: seen.ack,
            ts: seen.first_ts,
        };
        let Some(slot) = pending.pair(&start) else {
            stats.orphan_responses += 1;
            pending.orphan_dropped();
            return ReaderState::Body {
                reader: BodyReader::new(head.body, config.max_body),
                owner: None,
            };
        };
        let method = slot.method();
        let kind = if method == Some("HEAD") || switches_protocols(method, head.status) {
            BodyKind::Empty
        } else {
            head.body
        };
        slot.timing.response_first_byte = Some(seen.first_ts);
        slot.start_response(head);
        ReaderState::Body {
            reader: BodyReader::new(kind, config.max_body),
            owner: Some(slot.id()),
        }
    }

    fn body_complete(
        pending: &mut PendingExchanges,
        owner: Option<SlotId>,
        body: Body,
        last_ts: u64,
    ) -> Protocol {
        let Some(slot) = owner.and_then(|id| pending.get_mut(id)) else {
            return Protocol::Http1;
        };
        slot.timing.response_last_byte = Some(last_ts);
        let switched = slot
            .response_status()
            .is_some_and(|status| switches_protocols(slot.method(), status));
        let id = slot.id();
        slot.end_response(kept(body));
        // A paired response completed: the streams are in step again.
        pending.confirm_by_ack = false;
        if switched {
            pending.switched = Some(id);
            Protocol::Switched
        } else {
            Protocol::Http1
        }
    }

    fn body_invalid(pending: &mut PendingExchanges, owner: Option<SlotId>, _: u64) {
        if let Some(slot) = owner.and_then(|id| pending.get_mut(id)) {
            slot.end_response(Err(Outcome::Unparsable));
        }
    }

    fn body_cut(pending: &mut PendingExchanges, owner: Option<SlotId>, cut: Cut, _: u64) {
        let failure = match cut {
            Cut::Gap => Outcome::Gap,
            Cut::End(outcome) => outcome,
        };
        if let Some(slot) = owner.and_then(|id| pending.get_mut(id)) {
            slot.end_response(Err(failure));
        }
    }

    /// A cut where a response head was expected. A gap there hides the start of the next
    /// response (a keep-alive server's next byte after a response begins the next one): the
    /// oldest waiting request lost its answer. At the end of the stream, bytes of a head never
    /// parsed answered nothing known.
    fn head_cut(
        pending: &mut PendingExchanges,
        stream: &StreamBuffer,
        cut: Cut,
        _: u64,
        stats: &mut HttpStats,
    ) {
        match cut {
            Cut::Gap => pending.lose_next_response(Outcome::Gap),
            Cut::End(_) if stream.buf.is_empty() => {}
            Cut::End(_) => stats.orphan_responses += 1,
        }
    }
}
