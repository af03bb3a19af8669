//! The one list of error codes. Every failure Sextant reports carries one of these small codes,
//! stable across versions (clients match on them; the server answers `{"error": CODE, ...}`).
//! Each crate's error says which code it is; the server gives each code its HTTP status in one
//! exhaustive match, so a new code cannot reach a client without a status chosen for it.

use std::fmt;

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident => $text:literal,)*) => {
        /// A failure's public code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as clients see it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                }
            }
        }
    };
}

codes! {
    // Who is asking.
    Unauthenticated => "unauthenticated",
    Forbidden => "forbidden",
    /// Too many failed authentications from one address.
    AuthThrottled => "auth_throttled",
    // What was asked for.
    NotFound => "not_found",
    /// The thing is not in a state the request applies to.
    Conflict => "conflict",
    /// An action on an incident that is not open.
    NoOpenIncident => "no_open_incident",
    MethodNotAllowed => "method_not_allowed",
    // A request that is not well formed.
    BadRequest => "bad_request",
    /// A telemetry body that does not decode.
    MalformedRequest => "malformed_request",
    UnsupportedContentType => "unsupported_content_type",
    UnsupportedEncoding => "unsupported_encoding",
    BodyTooLarge => "body_too_large",
    RequestTimeout => "request_timeout",
    InvalidTenant => "invalid_tenant",
    UnknownRole => "unknown_role",
    UnknownSignal => "unknown_signal",
    UnknownTable => "unknown_table",
    UnknownScope => "unknown_scope",
    BadMatcher => "bad_matcher",
    BadAction => "bad_action",
    InvalidConfig => "invalid_config",
    InvalidInput => "invalid_input",
    LengthMismatch => "length_mismatch",
    // Queries the query limits refuse.
    InvalidSql => "invalid_sql",
    QueryTooComplex => "query_too_complex",
    NotAllowed => "not_allowed",
    QueryFailed => "query_failed",
    ScanTooLarge => "scan_too_large",
    ResultTooLarge => "result_too_large",
    Timeout => "timeout",
    // Load and capacity: retry later.
    RateLimited => "rate_limited",
    Overloaded => "overloaded",
    Unavailable => "unavailable",
    DiskFull => "disk_full",
    // Sextant's own failures.
    Internal => "internal",
    InvalidLimits => "invalid_limits",
    InvalidState => "invalid_state",
    Storage => "storage",
    StorageIo => "storage_io",
    StorageCorrupt => "storage_corrupt",
    Metadata => "metadata",
    Encryption => "encryption",
    Unsupported => "unsupported",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_snake_case_words() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "`{text}` twice");
            assert!(
                text.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "`{text}`"
            );
            assert_eq!(*code, text);
            assert_eq!(serde_json::to_value(code).unwrap(), text);
        }
    }
}
