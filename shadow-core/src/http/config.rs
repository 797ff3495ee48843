//! How much the HTTP parsers keep: the size limits of heads and bodies, HTTP/2's stream and
//! header block limits, and the cap on what all connections hold together.

/// Limits of the HTTP parsers (HTTP/1.x and HTTP/2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Largest decoded body kept (request or response); bigger exchanges are
    /// [`Outcome::Truncated`](super::Outcome::Truncated) and never replayed.
    pub max_body: usize,
    /// Largest request or response head (HTTP/2: decoded header list, RFC 9113 §6.5.2
    /// sizes).
    pub max_head: usize,
    /// HTTP/2 limits.
    pub h2: H2Limits,
    /// Bytes held over all connections (buffered stream bytes, heads and bodies of exchanges
    /// not emitted yet) before the connection holding the most is dropped
    /// ([`HttpStats::memory_evictions`](super::HttpStats::memory_evictions)): its pending
    /// exchanges end as [`Outcome::Gap`](super::Outcome::Gap) and it is read on as if joined
    /// mid-way.
    pub max_buffered: usize,
}

/// What one HTTP/2 connection may make the parser keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H2Limits {
    /// Streams followed at once per connection; streams opened beyond it are counted
    /// ([`StreamLoss::OverLimit`](super::StreamLoss::OverLimit)), not kept.
    pub max_concurrent_streams: usize,
    /// Largest encoded header block (HEADERS + CONTINUATION) buffered for decoding; a larger
    /// one cannot be decoded, and the direction's HPACK state is lost with it.
    pub max_header_block: usize,
    /// Largest frame read (a frame is buffered whole); a longer one makes its direction
    /// unreadable ([`Refusal::H2Frame`](super::Refusal::H2Frame)). The peers' own
    /// SETTINGS_MAX_FRAME_SIZE is not enforced (see [`h2`](super::h2)).
    pub max_frame_size: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body: 16 << 20,
            max_head: 64 << 10,
            h2: H2Limits::default(),
            max_buffered: 256 << 20,
        }
    }
}

impl Default for H2Limits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 256,
            max_header_block: 256 << 10,
            max_frame_size: 1 << 20,
        }
    }
}
