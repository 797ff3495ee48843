//! gRPC status codes, the status of a call (`grpc-status`, `grpc-message`) and deadlines
//! (`grpc-timeout`), as the gRPC over HTTP/2 protocol spells them (PROTOCOL-HTTP2.md and
//! statuscodes.md of the grpc/grpc repository).

use crate::http::Header;
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// A gRPC status code (statuscodes.md). A code outside 0..=16 is read as [`GrpcCode::Unknown`]
/// (gRPC clients do the same); [`GrpcStatus::code`] keeps the number as sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GrpcCode {
    /// 0: not an error.
    Ok,
    /// 1: the call was cancelled, typically by the caller.
    Cancelled,
    /// 2: an unknown error (also any code out of range).
    Unknown,
    /// 3: the caller gave an invalid argument.
    InvalidArgument,
    /// 4: the deadline expired before the call completed.
    DeadlineExceeded,
    /// 5: a requested entity (e.g. the model) was not found.
    NotFound,
    /// 6: the entity the caller tried to create already exists.
    AlreadyExists,
    /// 7: the caller may not do this.
    PermissionDenied,
    /// 8: a resource (quota, memory, server capacity) is exhausted.
    ResourceExhausted,
    /// 9: the system is not in a state the call needs.
    FailedPrecondition,
    /// 10: aborted, typically by a concurrency conflict.
    Aborted,
    /// 11: past the valid range.
    OutOfRange,
    /// 12: the method is not implemented or not supported by the server.
    Unimplemented,
    /// 13: an internal error of the server.
    Internal,
    /// 14: the service is unavailable (transient; overload, shutting down).
    Unavailable,
    /// 15: unrecoverable data loss or corruption.
    DataLoss,
    /// 16: no valid authentication credentials.
    Unauthenticated,
}

/// Whose fault a non-OK status is, the gRPC counterpart of 4xx and 5xx (see [`GrpcCode::class`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrpcClass {
    /// The request's (or the caller's) fault: like a 4xx, not held against the server.
    Client,
    /// The server's fault (or its capacity): like a 5xx.
    Server,
}

impl GrpcCode {
    /// Every code, in numeric order (the index is the code).
    pub const ALL: [GrpcCode; 17] = [
        GrpcCode::Ok,
        GrpcCode::Cancelled,
        GrpcCode::Unknown,
        GrpcCode::InvalidArgument,
        GrpcCode::DeadlineExceeded,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::ResourceExhausted,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unimplemented,
        GrpcCode::Internal,
        GrpcCode::Unavailable,
        GrpcCode::DataLoss,
        GrpcCode::Unauthenticated,
    ];

    /// The code with this number; anything out of range is [`GrpcCode::Unknown`].
    pub fn from_u32(code: u32) -> GrpcCode {
        usize::try_from(code)
            .ok()
            .and_then(|i| GrpcCode::ALL.get(i).copied())
            .unwrap_or(GrpcCode::Unknown)
    }

    /// The code's number.
    pub fn value(self) -> u32 {
        self as u32
    }

    /// The code's name as gRPC writes it: `OK`, `CANCELLED`, ..., `UNAUTHENTICATED`.
    pub fn as_str(self) -> &'static str {
        match self {
            GrpcCode::Ok => "OK",
            GrpcCode::Cancelled => "CANCELLED",
            GrpcCode::Unknown => "UNKNOWN",
            GrpcCode::InvalidArgument => "INVALID_ARGUMENT",
            GrpcCode::DeadlineExceeded => "DEADLINE_EXCEEDED",
            GrpcCode::NotFound => "NOT_FOUND",
            GrpcCode::AlreadyExists => "ALREADY_EXISTS",
            GrpcCode::PermissionDenied => "PERMISSION_DENIED",
            GrpcCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            GrpcCode::FailedPrecondition => "FAILED_PRECONDITION",
            GrpcCode::Aborted => "ABORTED",
            GrpcCode::OutOfRange => "OUT_OF_RANGE",
            GrpcCode::Unimplemented => "UNIMPLEMENTED",
            GrpcCode::Internal => "INTERNAL",
            GrpcCode::Unavailable => "UNAVAILABLE",
            GrpcCode::DataLoss => "DATA_LOSS",
            GrpcCode::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// Whose fault the status is; `None` for `OK`.
    ///
    /// Client (the request's fault, like a 4xx): `CANCELLED`, `INVALID_ARGUMENT`, `NOT_FOUND`,
    /// `ALREADY_EXISTS`, `PERMISSION_DENIED`, `FAILED_PRECONDITION`, `ABORTED`, `OUT_OF_RANGE`,
    /// `UNAUTHENTICATED` — the codes that the standard HTTP mapping of google.rpc.Code sends
    /// as 4xx (499, 400, 404, 409, 403, 400, 409, 400, 401).
    ///
    /// Server (like a 5xx): `UNKNOWN`, `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`, `INTERNAL`,
    /// `UNAVAILABLE`, `DATA_LOSS`, and `RESOURCE_EXHAUSTED`. The last one maps to HTTP 429, but
    /// from a shadow it means the shadow ran out of capacity (or quota) for a request that
    /// production served: its fault, counted like an overloaded 503.
    pub fn class(self) -> Option<GrpcClass> {
        match self {
            GrpcCode::Ok => None,
            GrpcCode::Cancelled
            | GrpcCode::InvalidArgument
            | GrpcCode::NotFound
            | GrpcCode::AlreadyExists
            | GrpcCode::PermissionDenied
            | GrpcCode::FailedPrecondition
            | GrpcCode::Aborted
            | GrpcCode::OutOfRange
            | GrpcCode::Unauthenticated => Some(GrpcClass::Client),
            GrpcCode::Unknown
            | GrpcCode::DeadlineExceeded
            | GrpcCode::ResourceExhausted
            | GrpcCode::Unimplemented
            | GrpcCode::Internal
            | GrpcCode::Unavailable
            | GrpcCode::DataLoss => Some(GrpcClass::Server),
        }
    }

    /// The status a gRPC client gives a response whose HTTP status is not 200 and that has no
    /// `grpc-status` (PROTOCOL-HTTP2.md, "HTTP to gRPC Status Code Mapping").
    pub fn of_http_status(status: u16) -> GrpcCode {
        match status {
            400 => GrpcCode::Internal,
            401 => GrpcCode::Unauthenticated,
            403 => GrpcCode::PermissionDenied,
            404 => GrpcCode::Unimplemented,
            429 | 502 | 503 | 504 => GrpcCode::Unavailable,
            _ => GrpcCode::Unknown,
        }
    }
}

impl fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status a gRPC call ended with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcStatus {
    /// The code as sent (may be out of range: see [`GrpcStatus::kind`]).
    pub code: u32,
    /// `grpc-message`, percent-decoded; empty when absent.
    pub message: String,
    /// Where the status came from.
    pub source: StatusSource,
}

/// Where a call's status was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusSource {
    /// The trailers (the usual case).
    Trailers,
    /// The response headers: a trailers-only response (no messages, status in the one HEADERS).
    Headers,
    /// Neither had a `grpc-status`: derived from the HTTP status as a gRPC client would
    /// (`INTERNAL` for a 200 without one; see [`GrpcCode::of_http_status`] otherwise).
    Http,
}

impl GrpcStatus {
    /// The status in `fields` (`grpc-status` and `grpc-message`), if they hold one. A
    /// `grpc-status` that is not a number is `UNKNOWN`.
    pub fn parse(fields: &[Header], source: StatusSource) -> Option<GrpcStatus> {
        let status = header(fields, "grpc-status")?;
        let code = std::str::from_utf8(status)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(GrpcCode::Unknown.value());
        let message = header(fields, "grpc-message")
            .map(percent_decode)
            .unwrap_or_default();
        Some(GrpcStatus {
            code,
            message,
            source,
        })
    }

    /// The status of a gRPC response: from its trailers, else from its headers (trailers-only
    /// response), else derived from its HTTP status.
    pub fn of_response(http_status: u16, headers: &[Header], trailers: &[Header]) -> GrpcStatus {
        GrpcStatus::parse(trailers, StatusSource::Trailers)
            .or_else(|| GrpcStatus::parse(headers, StatusSource::Headers))
            .unwrap_or_else(|| {
                let (code, message) = if http_status == 200 {
                    (
                        GrpcCode::Internal,
                        "no grpc-status in the response".to_string(),
                    )
                } else {
                    (
                        GrpcCode::of_http_status(http_status),
                        format!("HTTP status {http_status} without grpc-status"),
                    )
                };
                GrpcStatus {
                    code: code.value(),
                    message,
                    source: StatusSource::Http,
                }
            })
    }

    /// The code (out of range: `UNKNOWN`).
    pub fn kind(&self) -> GrpcCode {
        GrpcCode::from_u32(self.code)
    }

    /// Whether the call succeeded.
    pub fn is_ok(&self) -> bool {
        self.code == 0
    }
}

impl Serialize for GrpcStatus {
    /// `{"code": 14, "name": "UNAVAILABLE", "message": "...", "source": "trailers"}` (no
    /// `message` when empty).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("GrpcStatus", 4)?;
        s.serialize_field("code", &self.code)?;
        s.serialize_field("name", self.kind().as_str())?;
        if self.message.is_empty() {
            s.skip_field("message")?;
        } else {
            s.serialize_field("message", &self.message)?;
        }
        s.serialize_field("source", &self.source)?;
        s.end()
    }
}

fn header<'a>(fields: &'a [Header], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_ref())
}

/// `grpc-message` percent-decoding: `%XX` is the byte XX, anything else (a `%` not followed
/// by two hex digits too) is kept as is; the bytes are read as UTF-8, invalid sequences
/// replaced.
pub fn percent_decode(value: &[u8]) -> String {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        if b == b'%'
            && let (Some(hi), Some(lo)) = (
                value.get(i + 1).and_then(|c| hex(*c)),
                value.get(i + 2).and_then(|c| hex(*c)),
            )
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// A `grpc-timeout` value that is not `1*8DIGIT unit`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a grpc-timeout (1 to 8 digits, then H, M, S, m, u or n: e.g. `100m` for 100 ms)"
)]
pub struct TimeoutError(pub String);

/// Parses a `grpc-timeout` value: at most 8 ASCII digits and a unit, `H` hours, `M` minutes,
/// `S` seconds, `m` milliseconds, `u` microseconds, `n` nanoseconds.
pub fn parse_timeout(value: &str) -> Result<Duration, TimeoutError> {
    let bad = || TimeoutError(value.to_string());
    let split = value.len().checked_sub(1).ok_or_else(bad)?;
    let (digits, unit) = (value.get(..split).ok_or_else(bad)?, value.get(split..));
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    Ok(match unit {
        Some("H") => Duration::from_secs(n * 3600),
        Some("M") => Duration::from_secs(n * 60),
        Some("S") => Duration::from_secs(n),
        Some("m") => Duration::from_millis(n),
        Some("u") => Duration::from_micros(n),
        Some("n") => Duration::from_nanos(n),
        _ => return Err(bad()),
    })
}

/// The deadline a request carries in `grpc-timeout`, if any: `None` when absent, an error
/// when malformed.
pub fn request_timeout(headers: &[Header]) -> Option<Result<Duration, TimeoutError>> {
    header(headers, "grpc-timeout").map(|v| parse_timeout(&String::from_utf8_lossy(v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn h(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: Bytes::from(value.to_string()),
        }
    }

    #[test]
    fn codes_round_trip_their_numbers_and_names() {
        for (i, code) in GrpcCode::ALL.iter().enumerate() {
            assert_eq!(code.value() as usize, i);
            assert_eq!(GrpcCode::from_u32(code.value()), *code);
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str());
        }
        assert_eq!(GrpcCode::from_u32(17), GrpcCode::Unknown);
        assert_eq!(GrpcCode::from_u32(u32::MAX), GrpcCode::Unknown);
        assert_eq!(GrpcCode::Unauthenticated.as_str(), "UNAUTHENTICATED");
        assert_eq!(GrpcCode::DeadlineExceeded.to_string(), "DEADLINE_EXCEEDED");
    }

    #[test]
    fn classes_split_request_faults_from_server_faults() {
        use GrpcClass::*;
        assert_eq!(GrpcCode::Ok.class(), None);
        for code in [
            GrpcCode::InvalidArgument,
            GrpcCode::NotFound,
            GrpcCode::PermissionDenied,
            GrpcCode::Unauthenticated,
            GrpcCode::Cancelled,
        ] {
            assert_eq!(code.class(), Some(Client), "{code}");
        }
        for code in [
            GrpcCode::Unavailable,
            GrpcCode::Internal,
            GrpcCode::DeadlineExceeded,
            GrpcCode::ResourceExhausted,
            GrpcCode::Unimplemented,
            GrpcCode::Unknown,
        ] {
            assert_eq!(code.class(), Some(Server), "{code}");
        }
        assert!(GrpcCode::ALL.iter().skip(1).all(|c| c.class().is_some()));
    }

    #[test]
    fn status_from_trailers_then_headers_then_http() {
        let trailers = [
            h("grpc-status", "14"),
            h("grpc-message", "no%20capacity%3A%20try%20later"),
        ];
        let s = GrpcStatus::of_response(200, &[], &trailers);
        assert_eq!((s.code, s.kind()), (14, GrpcCode::Unavailable));
        assert_eq!(s.message, "no capacity: try later");
        assert_eq!(s.source, StatusSource::Trailers);
        assert!(!s.is_ok());
        // Trailers-only: the status is in the headers.
        let headers = [h("content-type", "application/grpc"), h("Grpc-Status", "5")];
        let s = GrpcStatus::of_response(200, &headers, &[]);
        assert_eq!(
            (s.kind(), s.source),
            (GrpcCode::NotFound, StatusSource::Headers)
        );
        // Trailers win over headers.
        let s = GrpcStatus::of_response(200, &headers, &[h("grpc-status", "0")]);
        assert!(s.is_ok());
        // Neither: derived from HTTP.
        let s = GrpcStatus::of_response(200, &[], &[]);
        assert_eq!(
            (s.kind(), s.source),
            (GrpcCode::Internal, StatusSource::Http)
        );
        assert_eq!(
            GrpcStatus::of_response(503, &[], &[]).kind(),
            GrpcCode::Unavailable
        );
        assert_eq!(
            GrpcStatus::of_response(404, &[], &[]).kind(),
            GrpcCode::Unimplemented
        );
        assert_eq!(
            GrpcStatus::of_response(500, &[], &[]).kind(),
            GrpcCode::Unknown
        );
        // Not a number; out of range, kept as sent.
        let s = GrpcStatus::of_response(200, &[], &[h("grpc-status", "x")]);
        assert_eq!(s.kind(), GrpcCode::Unknown);
        let s = GrpcStatus::of_response(200, &[], &[h("grpc-status", "42")]);
        assert_eq!((s.code, s.kind()), (42, GrpcCode::Unknown));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": 42, "name": "UNKNOWN", "source": "trailers"})
        );
    }

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(percent_decode(b"a%20b"), "a b");
        assert_eq!(percent_decode(b"100%"), "100%");
        assert_eq!(percent_decode(b"%zz%4"), "%zz%4");
        assert_eq!(percent_decode(b"caf%C3%A9"), "café");
        assert_eq!(percent_decode(b"%FF"), "\u{fffd}");
        assert_eq!(percent_decode(b""), "");
    }

    #[test]
    fn timeouts_in_every_unit() {
        assert_eq!(parse_timeout("1H"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("2M"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_timeout("3S"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_timeout("100m"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_timeout("250u"), Ok(Duration::from_micros(250)));
        assert_eq!(
            parse_timeout("99999999n"),
            Ok(Duration::from_nanos(99_999_999))
        );
        assert_eq!(parse_timeout("0S"), Ok(Duration::ZERO));
        for bad in [
            "",
            "S",
            "100",
            "123456789S",
            "10s",
            "1.5S",
            "-1S",
            " 1S",
            "1é",
            "١S",
        ] {
            assert!(parse_timeout(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            request_timeout(&[h("grpc-timeout", "5S")]),
            Some(Ok(Duration::from_secs(5)))
        );
        assert_eq!(request_timeout(&[]), None);
        assert!(matches!(
            request_timeout(&[h("grpc-timeout", "x")]),
            Some(Err(_))
        ));
    }
}
