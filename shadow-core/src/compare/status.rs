//! Status codes and error classes of the two answers.

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
}

impl ErrorClass {
    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Protocol => "protocol",
            ErrorClass::ServerError => "5xx",
            ErrorClass::ClientError => "4xx",
        }
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
        !matches!(self, ErrorClass::ClientError)
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
}
