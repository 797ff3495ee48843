//! Counters of the HTTP layer: exchanges per outcome, bytes fed and skipped, responses that
//! paired with nothing, messages refused and why, bytes held and connections dropped to stay
//! within the memory cap.

use super::exchange::Outcome;

/// Why the parser refused a message (it becomes [`Outcome::Unparsable`]). Ambiguous framing
/// is refused rather than guessed: a proxy and a server could read it differently. The `H2*`
/// and `Hpack` reasons are HTTP/2's; a header list over `max_head` is `HeadTooLarge` in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Not an HTTP/1.x head (request or status line, header syntax).
    InvalidHead,
    /// A header line continued on the next one (obs-fold), e.g. a folded Transfer-Encoding.
    ObsFold,
    /// A request with both Transfer-Encoding and Content-Length (request smuggling).
    TransferEncodingWithContentLength,
    /// A request whose last transfer coding is not `chunked`: its length is unknown.
    NotChunked,
    /// Content-Length not a number, or several different ones.
    InvalidContentLength,
    /// A Content-Length or chunk size of 2^63 or more.
    SizeOverflow,
    /// Chunked framing that is not valid (size line, chunk end, trailers).
    InvalidChunk,
    /// A head longer than the configured limit.
    HeadTooLarge,
    /// HTTP/2 bytes that are not valid frames (bad preface, size, length, stream id,
    /// padding, CONTINUATION out of sequence): the direction is read no further.
    H2Frame,
    /// An HTTP/2 header block HPACK cannot decode: the direction's HPACK state is lost.
    Hpack,
    /// An HTTP/2 message that is malformed (pseudo-headers missing, repeated, unknown or
    /// after a field; trailers without END_STREAM; DATA before HEADERS).
    H2Malformed,
}

impl Refusal {
    /// Every reason, for summaries.
    pub const ALL: [Refusal; 11] = [
        Refusal::InvalidHead,
        Refusal::ObsFold,
        Refusal::TransferEncodingWithContentLength,
        Refusal::NotChunked,
        Refusal::InvalidContentLength,
        Refusal::SizeOverflow,
        Refusal::InvalidChunk,
        Refusal::HeadTooLarge,
        Refusal::H2Frame,
        Refusal::Hpack,
        Refusal::H2Malformed,
    ];

    /// Label value (inspect summary, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::InvalidHead => "invalid_head",
            Refusal::ObsFold => "obs_fold",
            Refusal::TransferEncodingWithContentLength => "te_with_content_length",
            Refusal::NotChunked => "not_chunked",
            Refusal::InvalidContentLength => "invalid_content_length",
            Refusal::SizeOverflow => "size_overflow",
            Refusal::InvalidChunk => "invalid_chunk",
            Refusal::HeadTooLarge => "head_too_large",
            Refusal::H2Frame => "h2_frame",
            Refusal::Hpack => "hpack",
            Refusal::H2Malformed => "h2_malformed",
        }
    }
}

/// Why an HTTP/2 stream was not seen whole, beyond its outcome: the streams counted here are
/// emitted with a non-complete outcome, or (`OverLimit`, `PushPromise`) not emitted at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamLoss {
    /// A header block of the stream could not be decoded because its direction's HPACK state
    /// is unknown (connection joined mid-way, a gap, an earlier HPACK error): outcome `gap`,
    /// never guessed. Recovers only on a new connection.
    HpackUnknown,
    /// Reset by RST_STREAM before both sides ended.
    Reset,
    /// Above the last stream id of the server's GOAWAY: never processed.
    GoAway,
    /// Opened while `max_concurrent_streams` streams were followed: not kept.
    OverLimit,
    /// A server push (PUSH_PROMISE): pushed streams are not followed.
    PushPromise,
}

impl StreamLoss {
    /// Every reason, for summaries.
    pub const ALL: [StreamLoss; 5] = [
        StreamLoss::HpackUnknown,
        StreamLoss::Reset,
        StreamLoss::GoAway,
        StreamLoss::OverLimit,
        StreamLoss::PushPromise,
    ];

    /// Label value (inspect summary, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            StreamLoss::HpackUnknown => "hpack_unknown",
            StreamLoss::Reset => "rst_stream",
            StreamLoss::GoAway => "goaway",
            StreamLoss::OverLimit => "over_stream_limit",
            StreamLoss::PushPromise => "push_promise",
        }
    }
}

/// HTTP counters, read by the metrics layer (`exchanges_total{outcome}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Exchanges emitted as [`Outcome::Complete`].
    pub complete: u64,
    /// Exchanges emitted as [`Outcome::Gap`].
    pub gap: u64,
    /// Exchanges emitted as [`Outcome::Truncated`].
    pub truncated: u64,
    /// Exchanges emitted as [`Outcome::NoResponse`].
    pub no_response: u64,
    /// Exchanges emitted as [`Outcome::Unparsable`].
    pub unparsable: u64,
    /// Exchanges emitted as [`Outcome::Incomplete`].
    pub incomplete: u64,
    /// Request stream bytes fed to the parsers.
    pub request_bytes: u64,
    /// Response stream bytes fed to the parsers.
    pub response_bytes: u64,
    /// Bytes skipped while looking for the next message start.
    pub skipped_bytes: u64,
    /// 1xx responses seen (not paired).
    pub interim_responses: u64,
    /// Final responses that answered no known request and were dropped.
    pub orphan_responses: u64,
    /// Bytes the parsers of all connections hold now, approximately (buffered stream bytes,
    /// heads and bodies of exchanges not emitted yet): `memory_bytes{stage="http"}`.
    pub bytes_held: u64,
    /// Connections whose parser state was dropped to stay within
    /// [`HttpConfig::max_buffered`](super::HttpConfig::max_buffered), the largest first
    /// (`capture_dropped_total{stage="http_memory"}`).
    pub memory_evictions: u64,
    /// Messages refused, by [`Refusal`] (indexed like [`Refusal::ALL`]; read with
    /// [`HttpStats::refused`]).
    refusals: [u64; Refusal::ALL.len()],
    /// HTTP/2 streams not seen whole, by [`StreamLoss`] (read with [`HttpStats::lost`]).
    losses: [u64; StreamLoss::ALL.len()],
}

impl HttpStats {
    /// Counts one emitted exchange.
    pub fn count(&mut self, outcome: Outcome) {
        *self.outcome_mut(outcome) += 1;
    }

    /// Counts one refused message.
    pub fn refuse(&mut self, reason: Refusal) {
        self.refusals[reason as usize] += 1;
    }

    /// Messages refused for `reason`.
    pub fn refused(&self, reason: Refusal) -> u64 {
        self.refusals[reason as usize]
    }

    /// Counts one HTTP/2 stream not seen whole.
    pub fn lose(&mut self, reason: StreamLoss) {
        self.losses[reason as usize] += 1;
    }

    /// HTTP/2 streams not seen whole for `reason`.
    pub fn lost(&self, reason: StreamLoss) -> u64 {
        self.losses[reason as usize]
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
            Outcome::Incomplete => &mut self.incomplete,
        }
    }
}
