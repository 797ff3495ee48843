//! gRPC status codes, the `code` label of `shadowtap_grpc_status_total`, and where an answer
//! carries its code (`grpc-status` in the trailers, or in the headers of a trailers-only
//! answer).
//!
//! This is the only place the daemon reads `grpc-status`: it stands in until `shadow_core`
//! has a gRPC module of its own, which should then provide [`GrpcCode`].

use shadow_core::http::Header;

/// A gRPC status code as a label (the canonical names of the gRPC spec), or
/// [`GrpcCode::Missing`] for an answer without `grpc-status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrpcCode {
    /// 0.
    Ok,
    /// 1.
    Cancelled,
    /// 2, and any value that is not a known code (as the gRPC spec says to read it).
    Unknown,
    /// 3.
    InvalidArgument,
    /// 4.
    DeadlineExceeded,
    /// 5.
    NotFound,
    /// 6.
    AlreadyExists,
    /// 7.
    PermissionDenied,
    /// 8.
    ResourceExhausted,
    /// 9.
    FailedPrecondition,
    /// 10.
    Aborted,
    /// 11.
    OutOfRange,
    /// 12.
    Unimplemented,
    /// 13.
    Internal,
    /// 14.
    Unavailable,
    /// 15.
    DataLoss,
    /// 16.
    Unauthenticated,
    /// The answer has no `grpc-status` at all (e.g. a proxy's HTTP error page).
    Missing,
}

impl GrpcCode {
    /// Every label value, codes 0..=16 in order, then `MISSING`.
    pub const ALL: [GrpcCode; 18] = [
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
        GrpcCode::Missing,
    ];

    /// Metric label value: `OK`, `CANCELLED`, …, `UNAUTHENTICATED`, `MISSING`.
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
            GrpcCode::Missing => "MISSING",
        }
    }

    /// The code a `grpc-status` value names: a decimal 0..=16; anything else is `UNKNOWN`.
    pub fn from_value(value: &[u8]) -> GrpcCode {
        let code = std::str::from_utf8(value)
            .ok()
            .and_then(|text| text.trim().parse::<usize>().ok());
        match code {
            // `ALL` lists the codes by number; index 17 is `Missing`, never a value.
            Some(n) if n < 17 => GrpcCode::ALL[n],
            _ => GrpcCode::Unknown,
        }
    }

    /// The code of an answer: `grpc-status` from its trailers, else from its headers (a
    /// trailers-only answer), else [`GrpcCode::Missing`].
    pub fn of_answer(headers: &[Header], trailers: &[Header]) -> GrpcCode {
        let status = |fields: &[Header]| {
            fields
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("grpc-status"))
                .map(|h| GrpcCode::from_value(&h.value))
        };
        status(trailers)
            .or_else(|| status(headers))
            .unwrap_or(GrpcCode::Missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn header(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: Bytes::from(value.to_string()),
        }
    }

    #[test]
    fn values_name_their_code_and_anything_else_is_unknown() {
        assert_eq!(GrpcCode::from_value(b"0"), GrpcCode::Ok);
        assert_eq!(GrpcCode::from_value(b"4"), GrpcCode::DeadlineExceeded);
        assert_eq!(GrpcCode::from_value(b"14"), GrpcCode::Unavailable);
        assert_eq!(GrpcCode::from_value(b"16"), GrpcCode::Unauthenticated);
        for odd in [&b"17"[..], b"-1", b"", b"OK", b"\xff"] {
            assert_eq!(GrpcCode::from_value(odd), GrpcCode::Unknown, "{odd:?}");
        }
        let names: Vec<&str> = GrpcCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names[12], "UNIMPLEMENTED");
        assert_eq!(names.len(), 18);
    }

    #[test]
    fn trailers_win_then_a_trailers_only_answer_then_missing() {
        let trailers = [header("Grpc-Status", "0"), header("grpc-message", "")];
        let headers = [header("content-type", "application/grpc")];
        assert_eq!(GrpcCode::of_answer(&headers, &trailers), GrpcCode::Ok);
        // Trailers-only: the status comes in the only HEADERS frame.
        let only = [
            header("content-type", "application/grpc"),
            header("grpc-status", "5"),
        ];
        assert_eq!(GrpcCode::of_answer(&only, &[]), GrpcCode::NotFound);
        assert_eq!(GrpcCode::of_answer(&only, &trailers), GrpcCode::Ok);
        assert_eq!(GrpcCode::of_answer(&headers, &[]), GrpcCode::Missing);
    }
}
