//! The shared vocabulary: every enum whose values become metric labels or log fields, so that
//! stages, sinks and tests name the same things the same way (and list them from `ALL`).

pub use crate::compare::{DiscrepancyKind, ErrorClass, Model, ShadowAnswer};
pub use crate::encoding::DecodeFailure;
pub use crate::frame::FrameSkip;
pub use crate::http::{Outcome, Protocol, Refusal, StreamLoss};
pub use crate::rollback::{RollbackAction, RollbackResult};

/// Every [`Outcome`] (label of `exchanges_total{outcome}`), for zero-initialised metrics and
/// for tests that go through all of them.
pub const OUTCOMES: [Outcome; 6] = [
    Outcome::Complete,
    Outcome::Gap,
    Outcome::Truncated,
    Outcome::NoResponse,
    Outcome::Unparsable,
    Outcome::Incomplete,
];

/// Why an exchange was not replayed (label of `mirror_skipped_total{reason}`). Together with
/// the replay results this accounts for every exchange: `exchanges_total` = `mirrored_requests_total`
/// + `mirror_skipped_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The exchange was not seen whole, so it cannot be replayed; the label is its outcome
    /// (`gap`, `truncated`, `no_response`, `unparsable`, ...). Never `Complete`.
    NotReplayable(Outcome),
    /// Method or path not mirrored.
    Filtered,
    /// Not in the deterministic sample.
    SampledOut,
    /// The circuit breaker is open.
    CircuitOpen,
    /// Over the token-bucket rate.
    RateLimited,
    /// The replay queue was full.
    QueueFull,
    /// Queued, but shutdown came before it was sent.
    Abandoned,
}

/// How many [`SkipReason`]s there are: one per outcome other than `complete`, plus six.
const SKIP_REASONS: usize = OUTCOMES.len() - 1 + 6;

impl SkipReason {
    /// Every reason, for zero-initialised metrics (a not-replayable reason per outcome in
    /// [`OUTCOMES`] other than `complete`).
    pub const ALL: [SkipReason; SKIP_REASONS] = {
        let mut all = [SkipReason::Filtered; SKIP_REASONS];
        let mut n = 0;
        let mut i = 0;
        while i < OUTCOMES.len() {
            if !matches!(OUTCOMES[i], Outcome::Complete) {
                all[n] = SkipReason::NotReplayable(OUTCOMES[i]);
                n += 1;
            }
            i += 1;
        }
        let admission = [
            SkipReason::Filtered,
            SkipReason::SampledOut,
            SkipReason::CircuitOpen,
            SkipReason::RateLimited,
            SkipReason::QueueFull,
            SkipReason::Abandoned,
        ];
        let mut j = 0;
        while j < admission.len() {
            all[n] = admission[j];
            n += 1;
            j += 1;
        }
        all
    };

    /// Metric label value (a not-replayable exchange's is its outcome's).
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotReplayable(outcome) => outcome.as_str(),
            SkipReason::Filtered => "filtered",
            SkipReason::SampledOut => "sampled_out",
            SkipReason::CircuitOpen => "circuit_open",
            SkipReason::RateLimited => "rate_limited",
            SkipReason::QueueFull => "queue_full",
            SkipReason::Abandoned => "abandoned",
        }
    }
}

/// Result of one replay attempt (label of `mirrored_requests_total{result}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MirrorResult {
    /// The shadow answered with a complete HTTP response (any status).
    Ok,
    /// Could not connect to the shadow.
    ConnectError,
    /// The shadow did not answer in time.
    Timeout,
    /// The shadow's answer was not valid HTTP, was cut short or too large.
    ProtocolError,
    /// The production request could not be turned into a shadow request (our side).
    RequestError,
}

impl MirrorResult {
    /// Every result, for zero-initialised metrics.
    pub const ALL: [MirrorResult; 5] = [
        MirrorResult::Ok,
        MirrorResult::ConnectError,
        MirrorResult::Timeout,
        MirrorResult::ProtocolError,
        MirrorResult::RequestError,
    ];

    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            MirrorResult::Ok => "ok",
            MirrorResult::ConnectError => "connect_error",
            MirrorResult::Timeout => "timeout",
            MirrorResult::ProtocolError => "protocol_error",
            MirrorResult::RequestError => "request_error",
        }
    }

    /// The result of a shadow answer.
    pub fn of(answer: &ShadowAnswer) -> MirrorResult {
        match answer {
            ShadowAnswer::Response { .. } => MirrorResult::Ok,
            ShadowAnswer::Failed { class, .. } => match class {
                ErrorClass::Connect => MirrorResult::ConnectError,
                ErrorClass::Timeout => MirrorResult::Timeout,
                _ => MirrorResult::ProtocolError,
            },
        }
    }
}

/// Where the live front end can lose data (`capture_dropped_total{stage}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropStage {
    /// The tap's ring buffer or socket was full (kernel side or the segment channel).
    Capture,
    /// A segment was longer than the tap copies.
    SegmentTruncated,
    /// Reassembly declared holes early to stay within its memory caps.
    Reassembly,
    /// The channel from the HTTP stage to the mirror was full.
    ExchangeChannel,
    /// A captured packet of a watched port was an IP fragment (fragments are not
    /// reassembled; the bytes become a gap).
    IpFragment,
    /// A captured packet's headers were cut before the TCP header ended.
    FrameTruncated,
    /// A captured packet's headers could not be right (lengths, version).
    FrameMalformed,
    /// A production response answered no request that could be proven to be its own (more
    /// responses than requests, or a response sent before the request it would answer).
    OrphanResponse,
    /// Reassembly's connection table was full (`capture.reassembly.max_flows`): the least
    /// recently seen connection was closed to make room (counted per connection).
    FlowEvicted,
    /// The HTTP parsers held more than `capture.max_http_buffered_bytes`: the connection
    /// holding the most was dropped, its pending exchanges ended (counted per connection).
    HttpMemory,
}

impl DropStage {
    /// Every stage, for zero-valued series at start.
    pub const ALL: [DropStage; 10] = [
        DropStage::Capture,
        DropStage::SegmentTruncated,
        DropStage::Reassembly,
        DropStage::ExchangeChannel,
        DropStage::IpFragment,
        DropStage::FrameTruncated,
        DropStage::FrameMalformed,
        DropStage::OrphanResponse,
        DropStage::FlowEvicted,
        DropStage::HttpMemory,
    ];

    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropStage::Capture => "capture",
            DropStage::SegmentTruncated => "segment_truncated",
            DropStage::Reassembly => "reassembly",
            DropStage::ExchangeChannel => "exchange_channel",
            DropStage::IpFragment => "ip_fragment",
            DropStage::FrameTruncated => "frame_truncated",
            DropStage::FrameMalformed => "frame_malformed",
            DropStage::OrphanResponse => "orphan_response",
            DropStage::FlowEvicted => "flow_evicted",
            DropStage::HttpMemory => "http_memory",
        }
    }

    /// The stage a frame that yielded no segment is a loss at; `None` for traffic that is
    /// not ours.
    pub fn of_frame(skip: FrameSkip) -> Option<DropStage> {
        match skip {
            FrameSkip::Fragment => Some(DropStage::IpFragment),
            FrameSkip::Truncated => Some(DropStage::FrameTruncated),
            FrameSkip::Malformed => Some(DropStage::FrameMalformed),
            FrameSkip::NotIp | FrameSkip::NotTcp | FrameSkip::OtherPort => None,
        }
    }
}

/// What holds bytes in proportion to the traffic (label `stage` of `shadowtap_memory_bytes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryStage {
    /// Captured segments waiting for the exchange source (cap: 64 MiB, `LIVE_CHANNEL_BYTES`).
    Capture,
    /// Out-of-order bytes buffered by TCP reassembly (cap `capture.reassembly.max_buffered_bytes`).
    Reassembly,
    /// What the HTTP parsers hold: unconsumed stream bytes, heads and bodies of exchanges not
    /// emitted yet (cap `capture.max_http_buffered_bytes`).
    Http,
}

impl MemoryStage {
    /// Every stage, for zero-valued series at start.
    pub const ALL: [MemoryStage; 3] = [
        MemoryStage::Capture,
        MemoryStage::Reassembly,
        MemoryStage::Http,
    ];

    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            MemoryStage::Capture => "capture",
            MemoryStage::Reassembly => "reassembly",
            MemoryStage::Http => "http",
        }
    }
}

/// The `result` label of `shadowtap_kernel_packets_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelPacketResult {
    /// TCP segments to or from a watched port.
    Matched,
    /// Packets whose headers could not be read (any port: the port is not known yet).
    Malformed,
    /// Segments longer than the tap copies (their tail was not captured).
    TooLong,
}

impl KernelPacketResult {
    /// Every result, for pre-registering the metric's series.
    pub const ALL: [KernelPacketResult; 3] = [
        KernelPacketResult::Matched,
        KernelPacketResult::Malformed,
        KernelPacketResult::TooLong,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            KernelPacketResult::Matched => "matched",
            KernelPacketResult::Malformed => "malformed",
            KernelPacketResult::TooLong => "too_long",
        }
    }
}

/// How the circuit breaker counted one judged replay (label `counted_as` of
/// `shadowtap_breaker_outcomes_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerOutcome {
    /// No worse than production's answer to the same request.
    Success,
    /// Worse than production's answer: held against the shadow.
    Failure,
    /// Failed as production did (both 5xx, both gRPC server errors, ...): agreement, held
    /// neither for nor against the shadow.
    SharedFailure,
    /// The answer to a request admitted before the breaker last changed state: not counted.
    Late,
}

impl BreakerOutcome {
    /// Every outcome, for pre-registering the metric's series.
    pub const ALL: [BreakerOutcome; 4] = [
        BreakerOutcome::Success,
        BreakerOutcome::Failure,
        BreakerOutcome::SharedFailure,
        BreakerOutcome::Late,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerOutcome::Success => "success",
            BreakerOutcome::Failure => "failure",
            BreakerOutcome::SharedFailure => "shared_failure",
            BreakerOutcome::Late => "late",
        }
    }
}

/// How a replay failed (circuit breaker window, warnings): no usable answer, a 5xx, a gRPC
/// status that is the server's fault, an answer slower than `slow_call_ms`, or a request we
/// could not send. The breaker holds it against the shadow only when production's answer to
/// the same request was better ([`BreakerOutcome`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ShadowFailure {
    /// Could not connect.
    Connect,
    /// No complete answer within the timeout.
    Timeout,
    /// The answer was not valid HTTP, was cut short or too large.
    Protocol,
    /// A 5xx answer.
    ServerError,
    /// A gRPC answer whose status is the server's fault (`UNAVAILABLE`, `INTERNAL`, ...: see
    /// [`crate::grpc::GrpcCode::class`]).
    GrpcServerError,
    /// An answer slower than `circuit_breaker.slow_call_ms`.
    Slow,
    /// The production request could not be turned into a shadow request (our side; not held
    /// against the shadow by the breaker).
    Request,
}

impl ShadowFailure {
    /// Every failure, in a fixed order (logs list counts in this order).
    pub const ALL: [ShadowFailure; 7] = [
        ShadowFailure::Connect,
        ShadowFailure::Timeout,
        ShadowFailure::Protocol,
        ShadowFailure::ServerError,
        ShadowFailure::GrpcServerError,
        ShadowFailure::Slow,
        ShadowFailure::Request,
    ];

    /// Log name.
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowFailure::Connect => "connect",
            ShadowFailure::Timeout => "timeout",
            ShadowFailure::Protocol => "protocol",
            ShadowFailure::ServerError => "5xx",
            ShadowFailure::GrpcServerError => "grpc_server",
            ShadowFailure::Slow => "slow",
            ShadowFailure::Request => "request",
        }
    }

    /// The failure an [`ErrorClass`] stands for (`None` for 4xx and `grpc_client`, the
    /// request's fault).
    pub fn of_class(class: ErrorClass) -> Option<ShadowFailure> {
        match class {
            ErrorClass::Connect => Some(ShadowFailure::Connect),
            ErrorClass::Timeout => Some(ShadowFailure::Timeout),
            ErrorClass::Protocol => Some(ShadowFailure::Protocol),
            ErrorClass::ServerError => Some(ShadowFailure::ServerError),
            ErrorClass::GrpcServerError => Some(ShadowFailure::GrpcServerError),
            ErrorClass::ClientError | ErrorClass::GrpcClientError => None,
        }
    }
}

/// What an agreement ratio counts (label `unit` of `shadowtap_agreement_ratio`): whole
/// requests, or the rows of multi-row requests (Open Inference Protocol batches: one label per
/// row).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AgreementUnit {
    /// A request agrees when every one of its labels (or its prediction) agrees.
    Request,
    /// Each labelled row of a prediction, on its own.
    Row,
}

impl AgreementUnit {
    /// Both units.
    pub const ALL: [AgreementUnit; 2] = [AgreementUnit::Request, AgreementUnit::Row];

    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AgreementUnit::Request => "request",
            AgreementUnit::Row => "row",
        }
    }
}

/// A protocol other than cleartext HTTP recognised on a tapped port (named in a warning: its
/// exchanges cannot be mirrored). HTTP/2 over cleartext is not foreign: the HTTP stage reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ForeignProtocol {
    /// A TLS handshake: encrypted traffic.
    Tls,
}

impl ForeignProtocol {
    /// The protocol a connection's first request bytes announce, if they announce one.
    pub fn detect(first_bytes: &[u8]) -> Option<ForeignProtocol> {
        if first_bytes.len() >= 3
            && first_bytes[0] == 0x16
            && first_bytes[1] == 0x03
            && first_bytes[2] <= 0x04
        {
            // A TLS record of type handshake, version 3.x (SSL 3.0 .. TLS 1.3).
            Some(ForeignProtocol::Tls)
        } else {
            None
        }
    }

    /// How logs name it.
    pub fn name(self) -> &'static str {
        match self {
            ForeignProtocol::Tls => "TLS handshake",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_non_complete_outcome_is_a_skip_reason_and_labels_are_unique() {
        for outcome in OUTCOMES {
            let listed = SkipReason::ALL.contains(&SkipReason::NotReplayable(outcome));
            assert_eq!(listed, outcome != Outcome::Complete, "{outcome:?}");
        }
        let mut labels: Vec<&str> = SkipReason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), SkipReason::ALL.len(), "{labels:?}");
        assert_eq!(
            SkipReason::NotReplayable(Outcome::Truncated).as_str(),
            "truncated"
        );
    }

    #[test]
    fn foreign_protocols_are_recognised_by_their_first_bytes() {
        let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert_eq!(ForeignProtocol::detect(h2), None, "HTTP/2 is not foreign");
        assert_eq!(
            ForeignProtocol::detect(&[0x16, 0x03, 0x01, 0x02, 0x00]),
            Some(ForeignProtocol::Tls)
        );
        assert_eq!(ForeignProtocol::detect(b"POST /v2 HTTP/1.1\r\n"), None);
        assert_eq!(ForeignProtocol::detect(b"PRI"), None);
    }
}
