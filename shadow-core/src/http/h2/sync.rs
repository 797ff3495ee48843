//! Finding frame boundaries in bytes seen from the middle of a connection (joined mid-way or
//! after a gap). HTTP/2 has no resync marker, so a position is taken as a frame start only if
//! three frame headers in a row there are each strictly plausible (known type, only its
//! defined flags, reserved bit clear, stream id and length rules of the type, at most the
//! default maximum frame size). A complete chain anywhere wins over a candidate whose chain
//! runs past the bytes buffered.
//! What is found this way is only ever counted (HPACK state is unknown), never decoded.

use super::frame::{FrameHeader, HEADER_LEN, kind};

/// Frames in a row that make a position a frame start.
const CHAIN: usize = 3;
/// Longest frame accepted while looking for a start (SETTINGS_MAX_FRAME_SIZE's default).
const MAX_PLAUSIBLE_LEN: u32 = super::frame::DEFAULT_MAX_FRAME_SIZE;

/// Where frames start in a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sync {
    /// At this offset.
    Found(usize),
    /// Not before this offset; more bytes are needed to tell.
    Undecided(usize),
}

/// Flags a frame type defines.
fn defined_flags(kind: u8) -> u8 {
    match kind {
        kind::DATA => 0x09,
        kind::HEADERS => 0x2d,
        kind::SETTINGS | kind::PING => 0x01,
        kind::PUSH_PROMISE => 0x0c,
        kind::CONTINUATION => 0x04,
        _ => 0,
    }
}

/// Whether the 9 bytes at the start of `buf` are a strictly plausible frame header.
fn plausible(buf: &[u8], first: bool) -> Option<FrameHeader> {
    let header = FrameHeader::parse(buf)?;
    let reserved_clear = buf[5] & 0x80 == 0;
    let ok = reserved_clear
        && header.kind <= kind::CONTINUATION
        && header.flags & !defined_flags(header.kind) == 0
        && header.check(MAX_PLAUSIBLE_LEN).is_ok()
        && !(first && header.kind == kind::CONTINUATION);
    ok.then_some(header)
}

/// Looks for the first position where frames start.
pub(crate) fn find_frames(buf: &[u8]) -> Sync {
    let mut undecided = None;
    'start: for start in 0..buf.len() {
        let mut at = start;
        for i in 0..CHAIN {
            let Some(rest) = buf.get(at..).filter(|r| r.len() >= HEADER_LEN) else {
                undecided.get_or_insert(start);
                continue 'start;
            };
            match plausible(rest, i == 0) {
                Some(header) => at += HEADER_LEN + header.len as usize,
                None => continue 'start,
            }
        }
        return Sync::Found(start);
    }
    Sync::Undecided(undecided.unwrap_or(buf.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, len: usize) -> Vec<u8> {
        let mut v = (len as u32).to_be_bytes()[1..].to_vec();
        v.push(kind);
        v.push(flags);
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend(std::iter::repeat_n(0xab, len));
        v
    }

    #[test]
    fn finds_the_frame_after_the_tail_of_another() {
        let mut buf = vec![0x42, 0x00, 0x17, 0xff, 0x00]; // the end of some DATA payload
        buf.extend(frame(kind::DATA, 0, 3, 20));
        buf.extend(frame(kind::WINDOW_UPDATE, 0, 0, 4));
        buf.extend(frame(kind::HEADERS, 0x05, 5, 7));
        assert_eq!(find_frames(&buf), Sync::Found(5));
        // Two frames are not enough to tell; a payload byte may still begin a long frame.
        let cut = 5 + 9 + 20 + 9 + 4;
        assert_eq!(find_frames(&buf[..cut]), Sync::Undecided(1));
    }

    #[test]
    fn http1_text_and_random_bytes_are_never_frames() {
        let text = b"POST /v2/models/m/infer HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(find_frames(text), Sync::Undecided(text.len() - 8));
        let junk: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert!(!matches!(find_frames(&junk), Sync::Found(_)));
    }
}
