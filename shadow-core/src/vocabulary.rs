//! The shared vocabulary: every enum whose values become metric labels or log fields, so that
//! stages, sinks and tests name the same things the same way (and list them from `ALL`).

pub use crate::compare::{DiscrepancyKind, ErrorClass, Model, ShadowAnswer};
pub use crate::frame::FrameSkip;
pub use crate::http::{Outcome, Refusal};

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

/// Why an exchange was not replayed (label of `mirror_skipped_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// Not in the deterministic sample.
    SampledOut,
    /// Over the token-bucket rate.
    RateLimited,
    /// The replay queue was full.
    QueueFull,
    /// The circuit breaker is open.
    CircuitOpen,
    /// Method or path not mirrored.
    Filtered,
    /// A body exceeded the capture cap.
    Truncated,
}

impl SkipReason {
    /// Every reason, for zero-initialised metrics.
    pub const ALL: [SkipReason; 6] = [
        SkipReason::SampledOut,
        SkipReason::RateLimited,
        SkipReason::QueueFull,
        SkipReason::CircuitOpen,
        SkipReason::Filtered,
        SkipReason::Truncated,
    ];

    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::SampledOut => "sampled_out",
            SkipReason::RateLimited => "rate_limited",
            SkipReason::QueueFull => "queue_full",
            SkipReason::CircuitOpen => "circuit_open",
            SkipReason::Filtered => "filtered",
            SkipReason::Truncated => "truncated",
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
}

impl DropStage {
    /// Every stage, for zero-valued series at start.
    pub const ALL: [DropStage; 8] = [
        DropStage::Capture,
        DropStage::SegmentTruncated,
        DropStage::Reassembly,
        DropStage::ExchangeChannel,
        DropStage::IpFragment,
        DropStage::FrameTruncated,
        DropStage::FrameMalformed,
        DropStage::OrphanResponse,
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
