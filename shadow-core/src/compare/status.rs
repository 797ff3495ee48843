//! Status codes and error classes of the two answers.
//!
//! HTTP statuses are classed 4xx / 5xx; a gRPC call's non-OK status (HTTP 200 with
//! `grpc-status` ≠ 0) is classed `grpc_client` / `grpc_server` by
//! [`GrpcCode::class`](crate::grpc::GrpcCode::class): the request's fault (like a 4xx,
//! `INVALID_ARGUMENT`, `NOT_FOUND`, ...) or the server's (like a 5xx, `UNAVAILABLE`,
//! `INTERNAL`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, ...).

use crate::grpc::{GrpcClass, GrpcCode};
use serde::Serialize;

/// Which model answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// The tapped production server.
    Production,
    /// The shadow the request was replayed to.
    Shadow,
}

impl Model {
    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Model::Production => "production",
            Model::Shadow => "shadow",
        }
    }
}

/// How an answer failed: at the transport level, or with an error status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum ErrorClass {
    /// The TCP connection could not be made.
    #[serde(rename = "connect")]
    Connect,
    /// No complete answer within the timeout.
    #[serde(rename = "timeout")]
    Timeout,
    /// The answer was not valid HTTP, the connection closed early, or the body was too large.
    #[serde(rename = "protocol")]
    Protocol,
    /// A 5xx status.
    #[serde(rename = "5xx")]
    ServerError,
    /// A 4xx status.
    #[serde(rename = "4xx")]
    ClientError,
    /// A gRPC status that is the request's fault (`INVALID_ARGUMENT`, `NOT_FOUND`, ...).
    #[serde(rename = "grpc_client")]
    GrpcClientError,
    /// A gRPC status that is the server's fault (`UNAVAILABLE`, `INTERNAL`, ...).
    #[serde(rename = "grpc_server")]
    GrpcServerError,
}

impl ErrorClass {
    /// Every class, for zero-initialised metrics.
    pub const ALL: [ErrorClass; 7] = [
        ErrorClass::Connect,
        ErrorClass::Timeout,
        ErrorClass::Protocol,
        ErrorClass::ServerError,
        ErrorClass::ClientError,
        ErrorClass::GrpcClientError,
        ErrorClass::GrpcServerError,
    ];

    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Protocol => "protocol",
            ErrorClass::ServerError => "5xx",
            ErrorClass::ClientError => "4xx",
            ErrorClass::GrpcClientError => "grpc_client",
            ErrorClass::GrpcServerError => "grpc_server",
        }
    }

    /// The error class of a gRPC status code, if it is an error.
    pub fn of_grpc(code: GrpcCode) -> Option<ErrorClass> {
        code.class().map(|c| match c {
            GrpcClass::Client => ErrorClass::GrpcClientError,
            GrpcClass::Server => ErrorClass::GrpcServerError,
        })
    }

    /// The error class of a status code, if it is an error.
    pub fn of_status(status: u16) -> Option<ErrorClass> {
        match status {
            500..=599 => Some(ErrorClass::ServerError),
            400..=499 => Some(ErrorClass::ClientError),
            _ => None,
        }
    }

    /// Whether this counts against the shadow for the circuit breaker (its own fault, not the
    /// request's).
    pub fn is_shadow_failure(self) -> bool {
        !matches!(self, ErrorClass::ClientError | ErrorClass::GrpcClientError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(ErrorClass::of_status(200), None);
        assert_eq!(ErrorClass::of_status(304), None);
        assert_eq!(ErrorClass::of_status(404), Some(ErrorClass::ClientError));
        assert_eq!(ErrorClass::of_status(503), Some(ErrorClass::ServerError));
        assert!(ErrorClass::ServerError.is_shadow_failure());
        assert!(!ErrorClass::ClientError.is_shadow_failure());
    }

    #[test]
    fn grpc_classes_beside_http_ones() {
        assert_eq!(ErrorClass::of_grpc(GrpcCode::Ok), None);
        let server = ErrorClass::of_grpc(GrpcCode::Unavailable).unwrap();
        assert_eq!(
            (server, server.as_str()),
            (ErrorClass::GrpcServerError, "grpc_server")
        );
        assert!(server.is_shadow_failure());
        let client = ErrorClass::of_grpc(GrpcCode::InvalidArgument).unwrap();
        assert_eq!(
            (client, client.as_str()),
            (ErrorClass::GrpcClientError, "grpc_client")
        );
        assert!(!client.is_shadow_failure());
        for class in ErrorClass::ALL {
            assert_eq!(serde_json::to_value(class).unwrap(), class.as_str());
        }
    }
}
