//! HTTP/2 frames (RFC 9113 §4, §6) read off the front of one direction's reassembled bytes:
//! the 9-byte header is checked first (size, stream id, fixed lengths), then the payload is
//! split off only once it is all there. Payloads are zero-copy slices; padding is removed.

use bytes::{Buf, Bytes, BytesMut};

/// Length of a frame header.
pub const HEADER_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE until a peer announces another (RFC 9113 §6.5.2).
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 1 << 14;
/// The largest SETTINGS_MAX_FRAME_SIZE a peer may announce.
pub const MAX_FRAME_SIZE_LIMIT: u32 = (1 << 24) - 1;

/// Frame type codes.
pub mod kind {
    /// DATA.
    pub const DATA: u8 = 0x0;
    /// HEADERS.
    pub const HEADERS: u8 = 0x1;
    /// PRIORITY.
    pub const PRIORITY: u8 = 0x2;
    /// RST_STREAM.
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS.
    pub const SETTINGS: u8 = 0x4;
    /// PUSH_PROMISE.
    pub const PUSH_PROMISE: u8 = 0x5;
    /// PING.
    pub const PING: u8 = 0x6;
    /// GOAWAY.
    pub const GOAWAY: u8 = 0x7;
    /// WINDOW_UPDATE.
    pub const WINDOW_UPDATE: u8 = 0x8;
    /// CONTINUATION.
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flag {
    /// DATA, HEADERS: the last frame of the stream from this side.
    pub const END_STREAM: u8 = 0x1;
    /// SETTINGS, PING: an acknowledgment.
    pub const ACK: u8 = 0x1;
    /// HEADERS, PUSH_PROMISE, CONTINUATION: the header block ends here.
    pub const END_HEADERS: u8 = 0x4;
    /// DATA, HEADERS, PUSH_PROMISE: a pad length byte leads, padding trails.
    pub const PADDED: u8 = 0x8;
    /// HEADERS: a 5-byte priority block leads the fragment.
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS parameter identifiers (the parser reads SETTINGS frames but enforces none of
/// them: see `H2Connection`).
pub mod setting {
    /// SETTINGS_HEADER_TABLE_SIZE.
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    /// SETTINGS_MAX_FRAME_SIZE.
    pub const MAX_FRAME_SIZE: u16 = 0x5;
}

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length.
    pub len: u32,
    /// Type code ([`kind`]).
    pub kind: u8,
    /// Flags ([`flag`]).
    pub flags: u8,
    /// Stream identifier (the reserved bit cleared).
    pub stream: u32,
}

impl FrameHeader {
    /// The header at the start of `buf`, if 9 bytes are there.
    pub fn parse(buf: &[u8]) -> Option<Self> {
        let h: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Self {
            len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        })
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// What is wrong with this header on its own (size, stream id, fixed lengths), if
    /// anything: checked before the payload is waited for.
    pub fn check(&self, max_frame_size: u32) -> Result<(), FrameError> {
        if self.len > max_frame_size {
            return Err(FrameError::TooLarge {
                len: self.len,
                max: max_frame_size,
            });
        }
        let stream_zero = matches!(self.kind, kind::SETTINGS | kind::PING | kind::GOAWAY);
        let stream_any = self.kind == kind::WINDOW_UPDATE || self.kind > kind::CONTINUATION;
        if !stream_any && stream_zero != (self.stream == 0) {
            return Err(FrameError::StreamId {
                kind: self.kind,
                stream: self.stream,
            });
        }
        let fixed = match self.kind {
            kind::PRIORITY => Some(5),
            kind::RST_STREAM | kind::WINDOW_UPDATE => Some(4),
            kind::PING => Some(8),
            kind::SETTINGS if self.has(flag::ACK) => Some(0),
            _ => None,
        };
        let bad_length = fixed.is_some_and(|n| self.len != n)
            || (self.kind == kind::SETTINGS && !self.len.is_multiple_of(6))
            || (self.kind == kind::GOAWAY && self.len < 8)
            || (self.kind == kind::PUSH_PROMISE && self.len < 4);
        if bad_length {
            return Err(FrameError::Length {
                kind: self.kind,
                len: self.len,
            });
        }
        Ok(())
    }
}

/// One frame, payload without padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// DATA.
    Data {
        /// Stream.
        stream: u32,
        /// END_STREAM set.
        end_stream: bool,
        /// Payload without padding.
        data: Bytes,
    },
    /// HEADERS.
    Headers {
        /// Stream.
        stream: u32,
        /// END_STREAM set.
        end_stream: bool,
        /// END_HEADERS set (else CONTINUATION frames follow).
        end_headers: bool,
        /// Header block fragment (without padding and priority).
        fragment: Bytes,
    },
    /// PRIORITY (ignored).
    Priority {
        /// Stream.
        stream: u32,
    },
    /// RST_STREAM.
    RstStream {
        /// Stream.
        stream: u32,
        /// Error code.
        error_code: u32,
    },
    /// SETTINGS.
    Settings {
        /// ACK set (no parameters).
        ack: bool,
        /// (identifier, value) pairs in order.
        params: Vec<(u16, u32)>,
    },
    /// PUSH_PROMISE (its header block is decoded for the dynamic table, the promised stream
    /// is not followed).
    PushPromise {
        /// The stream it is associated with.
        stream: u32,
        /// The promised stream.
        promised: u32,
        /// END_HEADERS set.
        end_headers: bool,
        /// Header block fragment.
        fragment: Bytes,
    },
    /// PING (ignored).
    Ping,
    /// GOAWAY.
    GoAway {
        /// Highest stream id the sender may have processed.
        last_stream: u32,
        /// Error code.
        error_code: u32,
    },
    /// WINDOW_UPDATE (ignored: flow control is the peers' business).
    WindowUpdate,
    /// CONTINUATION.
    Continuation {
        /// Stream.
        stream: u32,
        /// END_HEADERS set.
        end_headers: bool,
        /// Header block fragment.
        fragment: Bytes,
    },
    /// A type this parser does not know (extensions): ignored, as RFC 9113 §4.1 requires.
    Unknown {
        /// Its type code.
        kind: u8,
    },
}

/// Why bytes are not a valid frame: a connection error for the peers, the end of parsing for
/// this direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Longer than the receiver's SETTINGS_MAX_FRAME_SIZE.
    #[error("frame of {len} bytes, over the maximum frame size {max}")]
    TooLarge {
        /// Payload length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// A length the frame type does not allow.
    #[error("frame type {kind} with a {len}-byte payload")]
    Length {
        /// Frame type.
        kind: u8,
        /// Payload length.
        len: u32,
    },
    /// Stream 0 where a stream is needed, or a stream where 0 is needed.
    #[error("frame type {kind} on stream {stream}")]
    StreamId {
        /// Frame type.
        kind: u8,
        /// Stream id.
        stream: u32,
    },
    /// Padding as long as the payload or longer.
    #[error("padding longer than the frame")]
    Padding,
}

/// Reads one frame off the front of `buf`: `Ok(None)` (nothing consumed) until it is all
/// there; an error as soon as the header shows one.
pub fn read_frame(buf: &mut BytesMut, max_frame_size: u32) -> Result<Option<Frame>, FrameError> {
    let Some(header) = FrameHeader::parse(buf) else {
        return Ok(None);
    };
    header.check(max_frame_size)?;
    let total = HEADER_LEN + header.len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let mut payload = buf.split_to(total).freeze();
    payload.advance(HEADER_LEN);
    decode_payload(header, payload).map(Some)
}

/// Removes the padding of a PADDED frame.
fn unpad(header: &FrameHeader, mut payload: Bytes) -> Result<Bytes, FrameError> {
    if !header.has(flag::PADDED) {
        return Ok(payload);
    }
    let pad = usize::from(*payload.first().ok_or(FrameError::Padding)?);
    payload.advance(1);
    // Padding as long as the whole payload (pad length byte included) or longer is an error
    // (RFC 9113 §6.1); all of the rest being padding is not.
    if pad > payload.len() {
        return Err(FrameError::Padding);
    }
    payload.truncate(payload.len() - pad);
    Ok(payload)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn decode_payload(header: FrameHeader, payload: Bytes) -> Result<Frame, FrameError> {
    let stream = header.stream;
    Ok(match header.kind {
        kind::DATA => Frame::Data {
            stream,
            end_stream: header.has(flag::END_STREAM),
            data: unpad(&header, payload)?,
        },
        kind::HEADERS => {
            let mut fragment = unpad(&header, payload)?;
            if header.has(flag::PRIORITY) {
                if fragment.len() < 5 {
                    return Err(FrameError::Length {
                        kind: header.kind,
                        len: header.len,
                    });
                }
                fragment.advance(5);
            }
            Frame::Headers {
                stream,
                end_stream: header.has(flag::END_STREAM),
                end_headers: header.has(flag::END_HEADERS),
                fragment,
            }
        }
        kind::PRIORITY => Frame::Priority { stream },
        kind::RST_STREAM => Frame::RstStream {
            stream,
            error_code: be32(&payload),
        },
        kind::SETTINGS => Frame::Settings {
            ack: header.has(flag::ACK),
            params: payload
                .chunks_exact(6)
                .map(|p| (u16::from_be_bytes([p[0], p[1]]), be32(&p[2..])))
                .collect(),
        },
        kind::PUSH_PROMISE => {
            let mut fragment = unpad(&header, payload)?;
            if fragment.len() < 4 {
                return Err(FrameError::Length {
                    kind: header.kind,
                    len: header.len,
                });
            }
            let promised = be32(&fragment) & 0x7fff_ffff;
            fragment.advance(4);
            Frame::PushPromise {
                stream,
                promised,
                end_headers: header.has(flag::END_HEADERS),
                fragment,
            }
        }
        kind::PING => Frame::Ping,
        kind::GOAWAY => Frame::GoAway {
            last_stream: be32(&payload) & 0x7fff_ffff,
            error_code: be32(&payload[4..]),
        },
        kind::WINDOW_UPDATE => Frame::WindowUpdate,
        kind::CONTINUATION => Frame::Continuation {
            stream,
            end_headers: header.has(flag::END_HEADERS),
            fragment: payload,
        },
        other => Frame::Unknown { kind: other },
    })
}
