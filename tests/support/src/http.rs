//! HTTP/1.1 messages as the test peers and clients exchange them: a head, then a body framed
//! by `Content-Length` or `Transfer-Encoding: chunked` (extensions and trailers allowed), or
//! for a response with neither, by the end of the connection.
//!
//! [`parse_message`] works on bytes already received (for async callers and for checking a
//! buffer); [`read_message`] reads them from a blocking stream, carrying bytes read past one
//! message over to the next (pipelining). Deliberately small and strict: it is the yardstick
//! the tests hold the daemon's own parser against, not a second copy of it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Largest message head (or chunk-size line) accepted.
pub const MAX_HEAD: usize = 64 * 1024;

/// One HTTP/1.1 message: start line, headers, decoded body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The request line or status line, without its CRLF.
    pub start_line: String,
    /// `(name, value)` pairs in wire order, trimmed.
    pub headers: Vec<(String, String)>,
    /// The body with any chunked framing removed.
    pub body: Vec<u8>,
}

impl Message {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The status code, when this is a response with a well-formed status line.
    pub fn status(&self) -> Option<u16> {
        status_code(&self.start_line)
    }
}

/// The first of `headers` called `name` (case-insensitive).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn status_code(start_line: &str) -> Option<u16> {
    let rest = start_line.strip_prefix("HTTP/1.")?;
    rest.split(' ').nth(1)?.parse().ok()
}

/// Splits a message head (without its final blank line) into the start line and the
/// `(name, value)` header pairs.
pub fn parse_head(head: &[u8]) -> io::Result<(String, Vec<(String, String)>)> {
    let head = std::str::from_utf8(head).map_err(|_| io::Error::other("non-UTF-8 message head"))?;
    let mut lines = head.split("\r\n");
    let start_line = lines.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| io::Error::other(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok((start_line, headers))
}

/// The complete message at the start of `buf` and the number of bytes it took; `Ok(None)`
/// while more bytes are needed (a response delimited by the end of the connection is never
/// complete here: [`read_message`] and [`get`] finish it at EOF).
pub fn parse_message(buf: &[u8]) -> io::Result<Option<(Message, usize)>> {
    parse(buf, false)
}

/// [`parse_message`], where `at_eof` says no more bytes will come.
fn parse(buf: &[u8], at_eof: bool) -> io::Result<Option<(Message, usize)>> {
    let Some(head_end) = head_end(buf)? else {
        return Ok(None);
    };
    let (start_line, headers) = parse_head(&buf[..head_end - 4])?;
    let Some((body, end)) = body(buf, head_end, &start_line, &headers, at_eof)? else {
        return Ok(None);
    };
    let message = Message {
        start_line,
        headers,
        body,
    };
    Ok(Some((message, end)))
}

/// The end of the head (after its blank line), once `buf` holds all of it.
fn head_end(buf: &[u8]) -> io::Result<Option<usize>> {
    match find(buf, b"\r\n\r\n") {
        Some(pos) => Ok(Some(pos + 4)),
        None if buf.len() > MAX_HEAD => Err(io::Error::other("message head too large")),
        None => Ok(None),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// How the body after a head is delimited.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

fn framing(start_line: &str, headers: &[(String, String)]) -> io::Result<Framing> {
    if header(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        return Ok(Framing::Chunked);
    }
    if let Some(len) = header(headers, "content-length") {
        let len = len
            .parse()
            .map_err(|_| io::Error::other(format!("bad Content-Length {len:?}")))?;
        return Ok(Framing::Length(len));
    }
    // Requests without either have no body; so have 1xx, 204 and 304 responses.
    match status_code(start_line) {
        Some(status) if !(status < 200 || status == 204 || status == 304) => {
            Ok(Framing::UntilClose)
        }
        _ => Ok(Framing::Length(0)),
    }
}

/// The decoded body starting at `from` and where the message ends, once `buf` holds all of it.
/// Copies the body only when it is complete.
fn body(
    buf: &[u8],
    from: usize,
    start_line: &str,
    headers: &[(String, String)],
    at_eof: bool,
) -> io::Result<Option<(Vec<u8>, usize)>> {
    match framing(start_line, headers)? {
        Framing::Length(len) => {
            Ok((buf.len() >= from + len).then(|| (buf[from..from + len].to_vec(), from + len)))
        }
        Framing::UntilClose => Ok(at_eof.then(|| (buf[from..].to_vec(), buf.len()))),
        Framing::Chunked => {
            let Some((chunks, end)) = chunks(buf, from)? else {
                return Ok(None);
            };
            let body = chunks.into_iter().flat_map(|(at, len)| &buf[at..at + len]);
            Ok(Some((body.copied().collect(), end)))
        }
    }
}

/// Where each chunk's data lies in the buffer: (start, length).
type ChunkRanges = Vec<(usize, usize)>;

/// Where each chunk's data lies and where the message (trailers included) ends, once `buf`
/// holds all of it.
fn chunks(buf: &[u8], mut pos: usize) -> io::Result<Option<(ChunkRanges, usize)>> {
    let mut chunks = Vec::new();
    loop {
        let Some(end) = line_end(buf, pos)? else {
            return Ok(None);
        };
        let size_line = std::str::from_utf8(&buf[pos..end])
            .map_err(|_| io::Error::other("bad chunk size line"))?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| io::Error::other(format!("bad chunk size {size_line:?}")))?;
        pos = end + 2;
        if size == 0 {
            // Trailer lines up to an empty one.
            loop {
                let Some(end) = line_end(buf, pos)? else {
                    return Ok(None);
                };
                let empty = end == pos;
                pos = end + 2;
                if empty {
                    return Ok(Some((chunks, pos)));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err(io::Error::other("chunk not followed by CRLF"));
        }
        chunks.push((pos, size));
        pos += size + 2;
    }
}

/// Index of the `\r\n` ending the line that starts at `from`, once `buf` holds it.
fn line_end(buf: &[u8], from: usize) -> io::Result<Option<usize>> {
    match find(&buf[from..], b"\r\n") {
        Some(p) => Ok(Some(from + p)),
        None if buf.len() - from > MAX_HEAD => Err(io::Error::other("line too long")),
        None => Ok(None),
    }
}

/// Reads more bytes into `buf`; `false` at EOF.
fn fill(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; 64 * 1024];
    let n = stream.read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

/// Reads one message; `Ok(None)` on a clean EOF before any byte. `buf` carries bytes read
/// past the previous message (pipelining) and keeps those read past this one.
pub fn read_message(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Option<Message>> {
    read_message_with(stream, buf, |_| Ok(()))
}

/// [`read_message`], calling `on_head` with the head (empty body) before reading the body
/// (to answer `Expect: 100-continue`).
pub fn read_message_with(
    stream: &mut impl Read,
    buf: &mut Vec<u8>,
    on_head: impl FnOnce(&Message) -> io::Result<()>,
) -> io::Result<Option<Message>> {
    let head_end = loop {
        if let Some(end) = head_end(buf)? {
            break end;
        }
        if !fill(stream, buf)? {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    };
    let (start_line, headers) = parse_head(&buf[..head_end - 4])?;
    let mut message = Message {
        start_line,
        headers,
        body: Vec::new(),
    };
    on_head(&message)?;
    let mut at_eof = false;
    loop {
        let parsed = body(buf, head_end, &message.start_line, &message.headers, at_eof)?;
        if let Some((body, end)) = parsed {
            message.body = body;
            buf.drain(..end);
            return Ok(Some(message));
        }
        if at_eof {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        at_eof = !fill(stream, buf)?;
    }
}

/// `GET path` on `addr` over a fresh connection (`Connection: close`; connecting, reading and
/// writing each bounded); returns the status code and the body.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    let incomplete = || {
        io::Error::other(format!(
            "GET {path}: incomplete response {:?}",
            String::from_utf8_lossy(&bytes)
        ))
    };
    let (response, _) = parse(&bytes, true)?.ok_or_else(incomplete)?;
    let status = response.status().ok_or_else(incomplete)?;
    Ok((status, String::from_utf8_lossy(&response.body).into_owned()))
}

/// `POST path` with `body` (`content_type`) on `addr` over a fresh connection (`Connection:
/// close`, each step bounded); returns the status code and the body.
pub fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> io::Result<(u16, String)> {
    post_authorized(addr, path, content_type, body, None)
}

/// [`post`] with `Authorization: Bearer <token>` when a token is given (shadowd's
/// `POST /api/labels` needs its admin token).
pub fn post_authorized(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &[u8],
    bearer: Option<&str>,
) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let authorization = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n\
         {authorization}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    let incomplete = || {
        io::Error::other(format!(
            "POST {path}: incomplete response {:?}",
            String::from_utf8_lossy(&bytes)
        ))
    };
    let (response, _) = parse(&bytes, true)?.ok_or_else(incomplete)?;
    let status = response.status().ok_or_else(incomplete)?;
    Ok((status, String::from_utf8_lossy(&response.body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(wire: &[u8]) -> Vec<Message> {
        let (mut stream, mut buf, mut out) = (wire, Vec::new(), Vec::new());
        while let Some(message) = read_message(&mut stream, &mut buf).unwrap() {
            out.push(message);
        }
        out
    }

    #[test]
    fn post_authorized_sends_the_bearer_token_and_the_body() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let request = read_message(&mut stream, &mut Vec::new()).unwrap().unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
            request
        });
        let (status, body) = post_authorized(
            addr,
            "/api/labels",
            "application/x-ndjson",
            b"{}\n",
            Some("t0ken"),
        )
        .unwrap();
        assert_eq!((status, body.as_str()), (200, "ok"));
        let request = server.join().unwrap();
        assert_eq!(request.start_line, "POST /api/labels HTTP/1.1");
        assert_eq!(request.header("authorization"), Some("Bearer t0ken"));
        assert_eq!(&request.body[..], b"{}\n");
    }

    #[test]
    fn pipelined_length_chunked_and_bodyless_messages() {
        let wire = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
            POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
            2;ext=1\r\nde\r\n1\r\nf\r\n0\r\nX-Trailer: t\r\n\r\n\
            GET /c HTTP/1.1\r\nhost: h\r\n\r\n";
        let messages = parse_all(wire);
        let bodies: Vec<&[u8]> = messages.iter().map(|m| &m.body[..]).collect();
        assert_eq!(bodies, [&b"abc"[..], b"def", b""]);
        assert_eq!(messages[2].start_line, "GET /c HTTP/1.1");
        assert_eq!(messages[2].header("Host"), Some("h"));
        assert_eq!(messages[2].status(), None);
    }

    #[test]
    fn incomplete_until_the_last_byte() {
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        for cut in 0..wire.len() {
            assert_eq!(parse_message(&wire[..cut]).unwrap(), None, "cut at {cut}");
        }
        let (message, used) = parse_message(wire).unwrap().unwrap();
        assert_eq!(
            (message.status(), &message.body[..], used),
            (Some(200), &b"abc"[..], wire.len())
        );
    }

    #[test]
    fn responses_without_length_end_at_eof_except_interim_ones() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nto the end";
        let messages = parse_all(wire);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].body, b"");
        assert_eq!(messages[1].body, b"to the end");
        assert_eq!(parse_message(&wire[25..]).unwrap(), None, "open until EOF");
    }

    #[test]
    fn malformed_input_is_an_error() {
        for wire in [
            &b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nno colon\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
        ] {
            assert!(
                parse_message(wire).is_err(),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        let truncated = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab";
        let err = read_message(&mut &truncated[..], &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(parse_message(&vec![b'a'; MAX_HEAD + 1]).is_err());
    }

    #[test]
    fn get_reads_status_and_body() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let request = read_message(&mut stream, &mut Vec::new()).unwrap().unwrap();
            let body = request.start_line.clone();
            write!(
                stream,
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        });
        assert_eq!(
            get(addr, "/x").unwrap(),
            (404, "GET /x HTTP/1.1".to_owned())
        );
        server.join().unwrap();
    }
}
