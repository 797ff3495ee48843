//! Message heads: request and status lines plus header fields, parsed with `httparse`, and the
//! body framing they announce (RFC 9112 §6).

use super::exchange::Header;
use super::stats::Refusal;
use bytes::{Bytes, BytesMut};
use std::mem::MaybeUninit;

/// Header fields parsed per message at most.
const MAX_HEADERS: usize = 128;

/// How the body of a message is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the server closes the connection (responses only).
    CloseDelimited,
}

/// Outcome of one parse attempt over the start of a buffer.
pub(crate) enum Parsed<T> {
    /// The head is complete: its value and its length in bytes.
    Complete(T),
    /// More bytes are needed.
    Partial,
    /// Not a valid head, and why.
    Invalid(Refusal),
}

/// Largest Content-Length or chunk size accepted: sizes of 2^63 and more are refused.
pub(crate) const MAX_SIZE: u64 = (1 << 63) - 1;

/// Why `httparse` refused a head: a folded header line (obs-fold) is named, anything else is
/// an invalid head.
fn head_error(buf: &[u8]) -> Refusal {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len());
    let head = &buf[..end];
    let folded = head
        .windows(2)
        .any(|w| w[0] == b'\n' && (w[1] == b' ' || w[1] == b'\t'));
    if folded {
        Refusal::ObsFold
    } else {
        Refusal::InvalidHead
    }
}

/// A parsed request head.
#[derive(Clone, Debug)]
pub(crate) struct RequestHead {
    pub method: String,
    pub target: String,
    pub version: u8,
    pub headers: Vec<Header>,
    pub body: BodyKind,
}

/// Whether a comma-separated header `name` lists `token` (case-insensitive).
fn lists_token(headers: &[Header], name: &str, token: &[u8]) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

impl RequestHead {
    /// Bytes it holds, approximately.
    pub(crate) fn held_bytes(&self) -> usize {
        self.method.len() + self.target.len() + Header::held_bytes(&self.headers)
    }

    /// The `HTTP2-Settings` value of a request asking to upgrade to HTTP/2 over cleartext
    /// (`Upgrade: h2c`, RFC 7540 §3.2), if it is one.
    pub(crate) fn h2c_settings(&self) -> Option<&Bytes> {
        if !lists_token(&self.headers, "upgrade", b"h2c") {
            return None;
        }
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("http2-settings"))
            .map(|h| &h.value)
    }
}

impl ResponseHead {
    /// Bytes it holds, approximately.
    pub(crate) fn held_bytes(&self) -> usize {
        Header::held_bytes(&self.headers)
    }

    /// A `101 Switching Protocols` to HTTP/2 over cleartext.
    pub(crate) fn switches_to_h2c(&self) -> bool {
        self.status == 101 && lists_token(&self.headers, "upgrade", b"h2c")
    }
}

/// A parsed response head.
#[derive(Clone, Debug)]
pub(crate) struct ResponseHead {
    pub status: u16,
    pub version: u8,
    pub headers: Vec<Header>,
    /// Framing announced by the headers alone (the request method may override it).
    pub body: BodyKind,
}

/// Header name/value offsets into the head bytes, so values can be sliced zero-copy.
type Spans = Vec<(String, usize, usize)>;

fn spans(base: &[u8], headers: &[httparse::Header<'_>]) -> Spans {
    let start = base.as_ptr() as usize;
    headers
        .iter()
        .map(|h| {
            let off = h.value.as_ptr() as usize - start;
            (h.name.to_owned(), off, off + h.value.len())
        })
        .collect()
}

fn to_headers(head: &Bytes, spans: Spans) -> Vec<Header> {
    spans
        .into_iter()
        .map(|(name, from, to)| Header {
            name,
            value: head.slice(from..to),
        })
        .collect()
}

/// Tries to parse a request head at the start of `buf`; on success the head bytes are split
/// off `buf`.
pub(crate) fn parse_request(buf: &mut BytesMut) -> Parsed<(RequestHead, usize)> {
    let mut storage = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut storage) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Invalid(head_error(buf)),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::Invalid(Refusal::InvalidHead);
    };
    let body = match request_framing(req.headers) {
        Ok(body) => body,
        Err(reason) => return Parsed::Invalid(reason),
    };
    let method = method.to_owned();
    let target = target.to_owned();
    let spans = spans(buf, req.headers);
    let head = buf.split_to(len).freeze();
    Parsed::Complete((
        RequestHead {
            method,
            target,
            version,
            headers: to_headers(&head, spans),
            body,
        },
        len,
    ))
}

/// Tries to parse a response head at the start of `buf`; on success the head bytes are split
/// off `buf`.
pub(crate) fn parse_response(buf: &mut BytesMut) -> Parsed<(ResponseHead, usize)> {
    let mut storage = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut storage,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Invalid(head_error(buf)),
    };
    let (Some(status), Some(version)) = (resp.code, resp.version) else {
        return Parsed::Invalid(Refusal::InvalidHead);
    };
    let body = match response_framing(status, resp.headers) {
        Ok(body) => body,
        Err(reason) => return Parsed::Invalid(reason),
    };
    let spans = spans(buf, resp.headers);
    let head = buf.split_to(len).freeze();
    Parsed::Complete((
        ResponseHead {
            status,
            version,
            headers: to_headers(&head, spans),
            body,
        },
        len,
    ))
}

/// Whether the last transfer coding is `chunked`; `None` when there is no Transfer-Encoding.
fn chunked(headers: &[httparse::Header<'_>]) -> Option<bool> {
    let mut last: Option<&[u8]> = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            for coding in h.value.split(|&b| b == b',') {
                let coding = coding.trim_ascii();
                if !coding.is_empty() {
                    last = Some(coding);
                }
            }
            last.get_or_insert(b"");
        }
    }
    last.map(|c| c.eq_ignore_ascii_case(b"chunked"))
}

/// A decimal size: digits only, leading zeros allowed (`0050` is 50, RFC 9110 §8.6), refused
/// from 2^63 up.
fn decimal_size(digits: &[u8]) -> Result<u64, Refusal> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Refusal::InvalidContentLength);
    }
    let significant = match digits.iter().position(|&d| d != b'0') {
        Some(first) => &digits[first..],
        None => return Ok(0),
    };
    if significant.len() > 19 {
        return Err(Refusal::SizeOverflow);
    }
    let n = significant
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
    if n > MAX_SIZE {
        return Err(Refusal::SizeOverflow);
    }
    Ok(n)
}

/// The Content-Length value; `Err` when present but invalid, too large or contradictory.
fn content_length(headers: &[httparse::Header<'_>]) -> Result<Option<u64>, Refusal> {
    let mut found: Option<u64> = None;
    for h in headers {
        if !h.name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        for part in h.value.split(|&b| b == b',') {
            let n = decimal_size(part.trim_ascii())?;
            if found.is_some_and(|f| f != n) {
                return Err(Refusal::InvalidContentLength);
            }
            found = Some(n);
        }
    }
    Ok(found)
}

fn has_content_length(headers: &[httparse::Header<'_>]) -> bool {
    headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("content-length"))
}

/// RFC 9112 §6.3 for requests: chunked, else Content-Length, else no body. Ambiguous framing
/// is refused: Transfer-Encoding together with Content-Length (the request smuggling
/// pattern), or a last coding that is not chunked (no way to tell the length).
fn request_framing(headers: &[httparse::Header<'_>]) -> Result<BodyKind, Refusal> {
    match chunked(headers) {
        Some(_) if has_content_length(headers) => Err(Refusal::TransferEncodingWithContentLength),
        Some(true) => Ok(BodyKind::Chunked),
        Some(false) => Err(Refusal::NotChunked),
        None => match content_length(headers)? {
            Some(0) | None => Ok(BodyKind::Empty),
            Some(n) => Ok(BodyKind::Length(n)),
        },
    }
}

/// RFC 9112 §6.3 for responses, before the request method is known. Transfer-Encoding
/// overrides Content-Length, as the client reading it does.
fn response_framing(status: u16, headers: &[httparse::Header<'_>]) -> Result<BodyKind, Refusal> {
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(BodyKind::Empty);
    }
    match chunked(headers) {
        Some(true) => Ok(BodyKind::Chunked),
        Some(false) => Ok(BodyKind::CloseDelimited),
        None => match content_length(headers)? {
            Some(0) => Ok(BodyKind::Empty),
            Some(n) => Ok(BodyKind::Length(n)),
            None => Ok(BodyKind::CloseDelimited),
        },
    }
}

/// HTTP methods recognised when looking for the start of a request in the middle of a stream.
pub(crate) const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
    b"PATCH ",
    b"TRACE ",
    b"CONNECT ",
];

/// How `data` relates to a request line start: `Some(true)` if it begins with a method and a
/// space, `Some(false)` if it could still become one with more bytes, `None` if it cannot.
pub(crate) fn request_start(data: &[u8]) -> Option<bool> {
    let mut maybe = false;
    for m in METHODS {
        if data.starts_with(m) {
            return Some(true);
        }
        if m.starts_with(data) {
            maybe = true;
        }
    }
    maybe.then_some(false)
}

/// Like [`request_start`] for a status line (`HTTP/1.`).
pub(crate) fn response_start(data: &[u8]) -> Option<bool> {
    const PREFIX: &[u8] = b"HTTP/1.";
    if data.starts_with(PREFIX) {
        Some(true)
    } else if PREFIX.starts_with(data) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw: &str) -> Option<(RequestHead, BytesMut)> {
        let mut buf = BytesMut::from(raw.as_bytes());
        match parse_request(&mut buf) {
            Parsed::Complete((h, _)) => Some((h, buf)),
            _ => None,
        }
    }

    #[test]
    fn request_head_keeps_names_values_and_rest() {
        let (h, rest) =
            req("POST /v1/m?x=1 HTTP/1.1\r\nHost: a\r\nX-Y:  z \r\nContent-Length: 3\r\n\r\nabc")
                .unwrap();
        assert_eq!(h.method, "POST");
        assert_eq!(h.target, "/v1/m?x=1");
        assert_eq!(h.version, 1);
        assert_eq!(h.headers.len(), 3);
        assert_eq!(h.headers[1].name, "X-Y");
        assert_eq!(&h.headers[1].value[..], b"z");
        assert_eq!(h.body, BodyKind::Length(3));
        assert_eq!(&rest[..], b"abc");
    }

    /// Why `raw` is refused as a request head.
    fn refusal(raw: &str) -> Option<Refusal> {
        match parse_request(&mut BytesMut::from(raw.as_bytes())) {
            Parsed::Invalid(reason) => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn framing_rules() {
        let te = req("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").unwrap();
        assert_eq!(te.0.body, BodyKind::Chunked);
        assert_eq!(
            refusal("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Some(Refusal::NotChunked)
        );
        assert_eq!(
            refusal("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            Some(Refusal::InvalidContentLength)
        );
        assert_eq!(
            refusal("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            Some(Refusal::InvalidContentLength)
        );
        assert_eq!(
            req("POST / HTTP/1.1\r\nContent-Length: 7, 7\r\n\r\n")
                .unwrap()
                .0
                .body,
            BodyKind::Length(7)
        );
        assert_eq!(
            req("GET / HTTP/1.1\r\n\r\n").unwrap().0.body,
            BodyKind::Empty
        );
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\n\r\n"[..]);
        let Parsed::Complete((r, _)) = parse_response(&mut buf) else {
            panic!()
        };
        assert_eq!(r.body, BodyKind::CloseDelimited);
        let mut buf = BytesMut::from(&b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n"[..]);
        let Parsed::Complete((r, _)) = parse_response(&mut buf) else {
            panic!()
        };
        assert_eq!(r.body, BodyKind::Empty);
    }

    #[test]
    fn content_length_leading_zeros_are_the_number() {
        // zeek's 261/variant-08: 30 leading zeros, value 50.
        let raw = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}50\r\n\r\n",
            "0".repeat(30)
        );
        assert_eq!(req(&raw).unwrap().0.body, BodyKind::Length(50));
        let zeros = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            "0".repeat(40)
        );
        assert_eq!(req(&zeros).unwrap().0.body, BodyKind::Empty);
        let max = "POST / HTTP/1.1\r\nContent-Length: 09223372036854775807\r\n\r\n";
        assert_eq!(req(max).unwrap().0.body, BodyKind::Length(MAX_SIZE));
    }

    #[test]
    fn ambiguous_framing_is_refused_by_reason() {
        for (raw, reason) in [
            // Sizes of 2^63 and more (zeek's 261/variant-02: 2^64 - 1).
            (
                "POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n",
                Refusal::SizeOverflow,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n",
                Refusal::SizeOverflow,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 100000000000000000000000\r\n\r\n",
                Refusal::SizeOverflow,
            ),
            // Transfer-Encoding and Content-Length together (variant-04).
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 50\r\n\r\n",
                Refusal::TransferEncodingWithContentLength,
            ),
            // A folded Transfer-Encoding (variant-09).
            (
                "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
                Refusal::ObsFold,
            ),
            // Last coding not chunked (variant-10).
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
                Refusal::NotChunked,
            ),
            ("GET HTTP/1.1\r\n\r\n", Refusal::InvalidHead),
            ("CONNECT a:25 / HTTP/1.0\r\n\r\n", Refusal::InvalidHead),
        ] {
            assert_eq!(refusal(raw), Some(reason), "{raw:?}");
        }
        // Responses: Transfer-Encoding overrides Content-Length, as clients read them.
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"[..],
        );
        let Parsed::Complete((r, _)) = parse_response(&mut buf) else {
            panic!()
        };
        assert_eq!(r.body, BodyKind::Chunked);
        let mut buf =
            BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n"[..]);
        assert!(matches!(
            parse_response(&mut buf),
            Parsed::Invalid(Refusal::SizeOverflow)
        ));
    }

    #[test]
    fn start_detection() {
        assert_eq!(request_start(b"GET /"), Some(true));
        assert_eq!(request_start(b"PO"), Some(false));
        assert_eq!(request_start(b"xGET"), None);
        assert_eq!(response_start(b"HTTP/1.1 200"), Some(true));
        assert_eq!(response_start(b"HTT"), Some(false));
        assert_eq!(response_start(b"HTTP/2"), None);
    }
}
