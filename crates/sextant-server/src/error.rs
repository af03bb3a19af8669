//! Errors as clients see them: every failure becomes one HTTP status (or gRPC code) and a
//! message in plain words. Internal details are logged, never sent.

use std::time::Duration;

use sextant_model::ErrorCode;

/// A request's failure, ready to be sent.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("too many requests at once; retry later")]
    TooManyRequests,
    /// This source address failed to authenticate too often lately.
    #[error("too many failed authentications from this address; retry in {} s", .0.as_secs().max(1))]
    AuthThrottled(Duration),
    #[error("sextant is starting (replaying its write-ahead log); retry shortly")]
    Starting,
    #[error("internal error")]
    Internal,
    #[error(transparent)]
    Ingest(#[from] sextant_ingest::Error),
    #[error(transparent)]
    Query(#[from] sextant_query::Error),
    /// A request to the API that is not well formed (not JSON, a missing field).
    #[error("{0}")]
    BadRequest(String),
    /// The thing asked for does not exist (in the caller's tenant).
    #[error("{0}")]
    NotFound(String),
    /// The thing exists but is not in a state the request applies to (a resolved incident).
    #[error("{0}")]
    Conflict(String),
}

impl From<sextant_store::Error> for ApiError {
    /// A storage failure: "not found" is the caller's to know; anything else is logged and
    /// reported as internal.
    fn from(err: sextant_store::Error) -> ApiError {
        match err {
            sextant_store::Error::NotFound(message) => ApiError::NotFound(message),
            other => {
                tracing::error!(error = %other, "storage failure behind an API request");
                ApiError::Internal
            }
        }
    }
}

/// The HTTP status of each code, the one place that decides it: the match has no default,
/// so a new code does not compile until it has a status.
pub fn http_status(code: ErrorCode) -> u16 {
    use ErrorCode::*;
    match code {
        Unauthenticated => 401,
        Forbidden => 403,
        NotFound => 404,
        MethodNotAllowed => 405,
        RequestTimeout => 408,
        Conflict | NoOpenIncident => 409,
        MalformedRequest | BadRequest | InvalidSql | QueryTooComplex | NotAllowed | QueryFailed
        | ScanTooLarge | ResultTooLarge | InvalidTenant | UnknownRole | UnknownSignal
        | UnknownTable | UnknownScope | BadMatcher | BadAction | InvalidConfig | InvalidInput
        | LengthMismatch => 400,
        BodyTooLarge => 413,
        UnsupportedContentType | UnsupportedEncoding => 415,
        RateLimited | Overloaded | AuthThrottled => 429,
        Internal | InvalidLimits | InvalidState | Storage | StorageIo | StorageCorrupt
        | Metadata | Encryption | Unsupported => 500,
        Unavailable => 503,
        Timeout => 504,
        DiskFull => 507,
    }
}

/// The gRPC status code of an HTTP status that [`http_status`] gives: a client's mistake
/// never becomes `Internal`.
pub fn grpc_code(status: u16) -> tonic::Code {
    match status {
        400 | 415 => tonic::Code::InvalidArgument,
        401 => tonic::Code::Unauthenticated,
        403 => tonic::Code::PermissionDenied,
        404 => tonic::Code::NotFound,
        405 => tonic::Code::Unimplemented,
        408 | 504 => tonic::Code::DeadlineExceeded,
        409 => tonic::Code::FailedPrecondition,
        413 | 429 | 507 => tonic::Code::ResourceExhausted,
        503 => tonic::Code::Unavailable,
        _ => tonic::Code::Internal,
    }
}

impl ApiError {
    /// The small public code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::TooManyRequests => ErrorCode::Overloaded,
            ApiError::AuthThrottled(_) => ErrorCode::AuthThrottled,
            ApiError::Starting => ErrorCode::Unavailable,
            ApiError::Internal => ErrorCode::Internal,
            ApiError::Ingest(err) => err.code(),
            ApiError::Query(err) => err.code(),
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::Conflict(_) => ErrorCode::Conflict,
        }
    }

    /// The HTTP status of this error: its code's ([`http_status`]).
    pub fn http_status(&self) -> u16 {
        http_status(self.code())
    }

    /// The gRPC status code of this error: its HTTP status's ([`grpc_code`]).
    pub fn grpc_code(&self) -> tonic::Code {
        grpc_code(self.http_status())
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::TooManyRequests | ApiError::Starting => Some(Duration::from_secs(1)),
            ApiError::AuthThrottled(wait) => Some(*wait),
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
            ApiError::Query(err @ sextant_query::Error::Internal { .. }) => {
                tracing::error!(error = %err, "query failed");
                "internal query error".to_owned()
            }
            other => other.to_string(),
        }
    }
}

impl axum::response::IntoResponse for ApiError {
    /// The JSON error of the HTTP API: `{"error": CODE, "message": TEXT}`.
    fn into_response(self) -> axum::response::Response {
        let status = axum::http::StatusCode::from_u16(self.http_status())
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({"error": self.code(), "message": self.public_message()});
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(delay) = self.retry_after() {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(delay.as_secs().max(1)),
            );
        }
        if status == axum::http::StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// A middleware over every route: an error answered in plain text (what the web framework
/// answers for a body past its limit, a missing route's method, a bad `Content-Type`) is
/// answered in the API's JSON error shape instead, with a code for its status.
pub async fn json_errors(response: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    let status = response.status();
    // Plain text, or nothing at all (a 405 says nothing).
    let plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    let code = match status.as_u16() {
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        408 => ErrorCode::RequestTimeout,
        413 => ErrorCode::BodyTooLarge,
        415 => ErrorCode::UnsupportedContentType,
        400..=499 => ErrorCode::BadRequest,
        _ => ErrorCode::Internal,
    };
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let mut message = String::from_utf8_lossy(&text).trim().to_owned();
    if message.is_empty() {
        message = match status.as_u16() {
            405 => "this route does not take this method (see the `Allow` header)".to_owned(),
            _ => status.canonical_reason().unwrap_or("error").to_owned(),
        };
    }
    let mut answer = (
        status,
        axum::Json(serde_json::json!({"error": code, "message": message})),
    )
        .into_response();
    for name in [axum::http::header::RETRY_AFTER, axum::http::header::ALLOW] {
        if let Some(value) = parts.headers.get(&name) {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_an_error_status_and_the_old_ones_keep_theirs() {
        let before = [
            ("unauthenticated", 401),
            ("forbidden", 403),
            ("not_found", 404),
            ("conflict", 409),
            ("malformed_request", 400),
            ("bad_request", 400),
            ("invalid_sql", 400),
            ("query_too_complex", 400),
            ("not_allowed", 400),
            ("query_failed", 400),
            ("scan_too_large", 400),
            ("result_too_large", 400),
            ("timeout", 504),
            ("body_too_large", 413),
            ("unsupported_content_type", 415),
            ("unsupported_encoding", 415),
            ("rate_limited", 429),
            ("overloaded", 429),
            ("auth_throttled", 429),
            ("unavailable", 503),
            ("disk_full", 507),
            ("internal", 500),
            ("storage", 500),
        ];
        for (text, status) in before {
            let code = ErrorCode::ALL.iter().find(|c| **c == text).unwrap();
            assert_eq!(http_status(*code), status, "{text}");
        }
        for code in ErrorCode::ALL {
            let status = http_status(*code);
            assert!((400..600).contains(&status), "{code}");
            assert_eq!(
                grpc_code(status) == tonic::Code::Internal,
                status >= 500 && status != 503 && status != 504 && status != 507,
                "{code}: {status}"
            );
        }
    }

    #[test]
    fn query_refusals_are_client_errors_with_their_reason() {
        let too_large = ApiError::Query(sextant_query::Error::ResultTooLarge {
            message: "the range holds more than 50000000 data points; narrow `from`/`to`".into(),
        });
        assert_eq!(
            (too_large.code().as_str(), too_large.http_status()),
            ("result_too_large", 400)
        );
        assert!(too_large.public_message().contains("narrow"));
        let scan = ApiError::Query(sextant_query::Error::ScanTooLarge { bytes: 2, limit: 1 });
        assert_eq!(scan.http_status(), 400);
        let timeout = ApiError::Query(sextant_query::Error::Timeout {
            limit: Duration::from_secs(1),
        });
        assert_eq!(timeout.http_status(), 504);
    }
}
