//! The `code` label of `shadowtap_grpc_status_total`: the gRPC status code an answer carries
//! (`shadow_core::grpc`: `grpc-status` in its trailers, else in the headers of a trailers-only
//! answer), or `MISSING` for an answer without one.

use shadow_core::grpc::{GrpcCode, GrpcStatus, StatusSource};
use shadow_core::http::Header;

/// A gRPC answer's code as a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrpcStatusLabel {
    /// The answer's `grpc-status`.
    Code(GrpcCode),
    /// The answer had no `grpc-status` at all.
    Missing,
}

impl GrpcStatusLabel {
    /// Every label value: the codes in number order, then `MISSING`.
    pub fn all() -> impl Iterator<Item = GrpcStatusLabel> {
        GrpcCode::ALL
            .into_iter()
            .map(GrpcStatusLabel::Code)
            .chain([GrpcStatusLabel::Missing])
    }

    /// The canonical code name (`OK`, `UNAVAILABLE`, ...) or `MISSING`.
    pub fn as_str(self) -> &'static str {
        match self {
            GrpcStatusLabel::Code(code) => code.as_str(),
            GrpcStatusLabel::Missing => "MISSING",
        }
    }

    /// The code of an answer: `grpc-status` from its trailers, else from its headers (a
    /// trailers-only answer), else `MISSING`.
    pub fn of_answer(headers: &[Header], trailers: &[Header]) -> GrpcStatusLabel {
        GrpcStatus::parse(trailers, StatusSource::Trailers)
            .or_else(|| GrpcStatus::parse(headers, StatusSource::Headers))
            .map_or(GrpcStatusLabel::Missing, |s| {
                GrpcStatusLabel::Code(s.kind())
            })
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
    fn trailers_win_then_a_trailers_only_answer_then_missing() {
        let code = GrpcStatusLabel::Code;
        let trailers = [header("Grpc-Status", "0"), header("grpc-message", "")];
        let headers = [header("content-type", "application/grpc")];
        assert_eq!(
            GrpcStatusLabel::of_answer(&headers, &trailers),
            code(GrpcCode::Ok)
        );
        // Trailers-only: the status comes in the only HEADERS frame.
        let only = [
            header("content-type", "application/grpc"),
            header("grpc-status", "5"),
        ];
        assert_eq!(
            GrpcStatusLabel::of_answer(&only, &[]),
            code(GrpcCode::NotFound)
        );
        assert_eq!(
            GrpcStatusLabel::of_answer(&only, &trailers),
            code(GrpcCode::Ok)
        );
        assert_eq!(
            GrpcStatusLabel::of_answer(&headers, &[]),
            GrpcStatusLabel::Missing
        );
        // Not a number: UNKNOWN, as the gRPC spec says to read it.
        let odd = [header("grpc-status", "OK")];
        assert_eq!(
            GrpcStatusLabel::of_answer(&odd, &[]),
            code(GrpcCode::Unknown)
        );
        let names: Vec<&str> = GrpcStatusLabel::all()
            .map(GrpcStatusLabel::as_str)
            .collect();
        assert_eq!(names.len(), 18);
        assert_eq!((names[14], names[17]), ("UNAVAILABLE", "MISSING"));
    }
}
