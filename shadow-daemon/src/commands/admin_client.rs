//! A minimal HTTP/1.1 client for a running daemon's admin address (`shadowd verdict --from`,
//! `shadowd report --from`): one `GET` per connection, bounded in time and size, with the
//! admin bearer token when given.

use super::UsageError;
use anyhow::Context;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Where the daemon's admin server listens by default.
pub const DEFAULT_FROM: &str = "http://127.0.0.1:9464";
/// How long to wait for the admin server to accept and to answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read.
const MAX_RESPONSE: u64 = 16 << 20;

/// `GET <base><path>` with a plain HTTP/1.1 request; returns the status and the body. A 401
/// is an error saying to pass the token; other statuses are the caller's to judge.
pub fn get(base: &str, path: &str, token: Option<&str>) -> anyhow::Result<(u16, String)> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| UsageError(format!("--from {base}: only http:// URLs are supported")))?;
    let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let addr_text = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addr = addr_text
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let prefix = prefix.trim_end_matches('/');
    let target = if prefix.is_empty() {
        path.to_owned()
    } else {
        format!("/{prefix}{path}")
    };
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\n\
         {authorization}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.take(MAX_RESPONSE).read_to_end(&mut raw)?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(&raw)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => anyhow::bail!("the answer ended inside its headers"),
    };
    let status = response.code.unwrap_or(0);
    if status == 401 {
        anyhow::bail!(
            "GET {target} answered HTTP 401: the daemon's admin API needs its bearer token; pass \
             the file holding it with --token-file (or SHADOWD_ADMIN_TOKEN_FILE)"
        );
    }
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        });
    let body = &raw[head_len..];
    let body = length.map_or(body, |n| &body[..n.min(body.len())]);
    Ok((status, String::from_utf8_lossy(body).into_owned()))
}

/// `GET <base><path>`, the body of a 200; any other status is an error.
pub fn get_ok(base: &str, path: &str, token: Option<&str>) -> anyhow::Result<String> {
    match get(base, path, token)? {
        (200, body) => Ok(body),
        (status, _) => anyhow::bail!("GET {path} answered HTTP {status}"),
    }
}
