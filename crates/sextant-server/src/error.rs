//! Errors as clients see them: every failure becomes one HTTP status (or gRPC code) and a
//! message in plain words. Internal details are logged, never sent.

use std::time::Duration;

/// A request's failure, ready to be sent.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("too many requests at once; retry later")]
    TooManyRequests,
    #[error("sextant is starting (replaying its write-ahead log); retry shortly")]
    Starting,
    #[error("internal error")]
    Internal,
    #[error(transparent)]
    Ingest(#[from] sextant_ingest::Error),
}

impl ApiError {
    /// The small public code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::TooManyRequests => "overloaded",
            ApiError::Starting => "unavailable",
            ApiError::Internal => "internal",
            ApiError::Ingest(err) => err.code(),
        }
    }

    /// The HTTP status of a code.
    pub fn http_status(&self) -> u16 {
        match self.code() {
            "unauthenticated" => 401,
            "forbidden" => 403,
            "malformed_request" => 400,
            "body_too_large" => 413,
            "unsupported_content_type" | "unsupported_encoding" => 415,
            "rate_limited" | "overloaded" => 429,
            "unavailable" => 503,
            _ => 500,
        }
    }

    /// The gRPC status code of a code.
    pub fn grpc_code(&self) -> tonic::Code {
        match self.http_status() {
            400 | 415 => tonic::Code::InvalidArgument,
            401 => tonic::Code::Unauthenticated,
            403 => tonic::Code::PermissionDenied,
            413 | 429 => tonic::Code::ResourceExhausted,
            503 => tonic::Code::Unavailable,
            _ => tonic::Code::Internal,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::TooManyRequests | ApiError::Starting => Some(Duration::from_secs(1)),
            ApiError::Ingest(err) => err.retry_after(),
            _ => None,
        }
    }

    /// The message a client sees: internal failures are logged and reported generically.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Ingest(err @ sextant_ingest::Error::Storage(_)) => {
                tracing::error!(error = %err, "ingest failed");
                "internal storage error".to_owned()
            }
            other => other.to_string(),
        }
    }
}
