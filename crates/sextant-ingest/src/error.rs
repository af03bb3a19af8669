//! Errors of the ingest path. Each maps to one public code; the HTTP and gRPC layers turn the
//! codes into statuses.

use std::time::Duration;

use sextant_model::{ErrorCode, Signal};
use sextant_tables::BusError;

/// Why a batch was not taken. A rejected batch stores nothing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("malformed {format} {signal} request: {message}")]
    Malformed {
        signal: Signal,
        format: &'static str,
        message: String,
    },
    #[error("unsupported content type `{content_type}` (expected {expected})")]
    UnsupportedContentType {
        content_type: String,
        expected: &'static str,
    },
    #[error("unsupported content encoding `{encoding}` (expected {expected})")]
    UnsupportedEncoding {
        encoding: String,
        expected: &'static str,
    },
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("tenant `{tenant}` is over its {what} limit of {limit}/s")]
    RateLimited {
        tenant: String,
        what: &'static str,
        limit: u64,
        retry_after: Duration,
    },
    #[error("ingest is overloaded ({reason}); retry later")]
    Overloaded {
        reason: &'static str,
        retry_after: Duration,
    },
    #[error("ingest is not available: {reason}")]
    Unavailable { reason: String },
    /// The store's disk is below its free-space reserve (the message says how much is free).
    #[error("{0}")]
    DiskFull(String),
    #[error("storage failed: {0}")]
    Storage(#[source] BusError),
}

impl Error {
    /// The small public code of this error, stable across versions.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Malformed { .. } => ErrorCode::MalformedRequest,
            Error::UnsupportedContentType { .. } => ErrorCode::UnsupportedContentType,
            Error::UnsupportedEncoding { .. } => ErrorCode::UnsupportedEncoding,
            Error::BodyTooLarge { .. } => ErrorCode::BodyTooLarge,
            Error::RateLimited { .. } => ErrorCode::RateLimited,
            Error::Overloaded { .. } => ErrorCode::Overloaded,
            Error::Unavailable { .. } => ErrorCode::Unavailable,
            Error::DiskFull(_) => ErrorCode::DiskFull,
            Error::Storage(_) => ErrorCode::Storage,
        }
    }

    /// How long a client should wait before retrying, when retrying can help.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } | Error::Overloaded { retry_after, .. } => {
                Some(*retry_after)
            }
            Error::Unavailable { .. } => Some(Duration::from_secs(1)),
            Error::DiskFull(_) => Some(Duration::from_secs(30)),
            _ => None,
        }
    }
}

impl From<BusError> for Error {
    fn from(err: BusError) -> Error {
        match err {
            BusError::Overloaded(reason) => Error::Overloaded {
                reason,
                retry_after: Duration::from_secs(1),
            },
            BusError::Closed(reason) => Error::Unavailable {
                reason: reason.into(),
            },
            BusError::NoSpace(message) => Error::DiskFull(message),
            failed @ BusError::Failed(_) => Error::Storage(failed),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
