//! Errors of the query engine, each with a small stable code for the HTTP layer.

use std::time::Duration;

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use sextant_model::ErrorCode;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// The SQL does not parse or does not plan (unknown table or column, wrong types, ...).
    #[error("invalid query: {message}")]
    InvalidSql { message: String },
    /// The query is too long or too deeply nested to plan safely (see [`crate::complexity`]).
    #[error("query too complex: {message}")]
    TooComplex { message: String },
    /// The statement would change something or reach outside the tenant's tables.
    #[error("{what} is not allowed: queries are read-only")]
    NotAllowed { what: String },
    #[error("query took longer than its limit of {limit:?}")]
    Timeout { limit: Duration },
    /// Refused before any data was read.
    #[error(
        "query would scan at least {bytes} bytes, more than the limit of {limit} bytes; narrow the time range"
    )]
    ScanTooLarge { bytes: u64, limit: u64 },
    /// The query planned but failed while running (a bad cast, division by zero, out of memory).
    #[error("query failed: {message}")]
    Execution { message: String },
    /// The answer would be larger than its endpoint allows.
    #[error("{message}")]
    ResultTooLarge { message: String },
    #[error("invalid query limits: {message}")]
    InvalidLimits { message: String },
    /// Anything the client cannot fix (an unreadable segment, a bug); logged, not shown.
    #[error("internal error: {message}")]
    Internal { message: String },
}

impl Error {
    /// A short stable code for this kind of error; the HTTP layer maps codes to statuses.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidSql { .. } => ErrorCode::InvalidSql,
            Error::TooComplex { .. } => ErrorCode::QueryTooComplex,
            Error::NotAllowed { .. } => ErrorCode::NotAllowed,
            Error::Timeout { .. } => ErrorCode::Timeout,
            Error::ScanTooLarge { .. } => ErrorCode::ScanTooLarge,
            Error::Execution { .. } => ErrorCode::QueryFailed,
            Error::ResultTooLarge { .. } => ErrorCode::ResultTooLarge,
            Error::InvalidLimits { .. } => ErrorCode::InvalidLimits,
            Error::Internal { .. } => ErrorCode::Internal,
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Error {
        Error::Internal {
            message: message.into(),
        }
    }
}

impl From<DataFusionError> for Error {
    fn from(err: DataFusionError) -> Error {
        // Our own refusals travel through DataFusion as `External` errors; find them first.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
        while let Some(current) = source {
            if let Some(ours) = current.downcast_ref::<Error>() {
                return ours.clone();
            }
            source = current.source();
        }
        let root = err.find_root();
        match root {
            DataFusionError::SQL(parser_error, _) => Error::InvalidSql {
                message: match parser_error.as_ref() {
                    ParserError::TokenizerError(message) | ParserError::ParserError(message) => {
                        clean_message(&format!("syntax error: {message}"))
                    }
                    ParserError::RecursionLimitExceeded => {
                        "syntax error: the query is nested too deeply".to_owned()
                    }
                },
            },
            DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Configuration(_) => Error::InvalidSql {
                message: clean_message(&root.message()),
            },
            DataFusionError::Execution(_)
            | DataFusionError::ResourcesExhausted(_)
            | DataFusionError::ArrowError(..) => Error::Execution {
                message: clean_message(&root.message()),
            },
            DataFusionError::Internal(message) => Error::internal(clean_message(message)),
            other => Error::internal(clean_message(&other.message())),
        }
    }
}

/// DataFusion's message in plain words: no backtrace, no "Error during planning:"-style
/// prefixes, no default catalog and schema in table names, lowercase first, no trailing period.
fn clean_message(message: &str) -> String {
    const PREFIXES: &[&str] = &[
        "Error during planning: ",
        "Execution error: ",
        "Arrow error: ",
        "Parquet error: ",
        "Schema error: ",
        "This feature is not implemented: ",
        "Invalid or Unsupported Configuration: ",
        "Resources exhausted: ",
        "Internal error: ",
        "External error: ",
        "Object Store error: ",
        "IO error: ",
        "Invalid argument error: ",
        "Compute error: ",
        "Cast error: ",
        "Parser error: ",
        "Divide by zero error",
    ];
    let mut text = message
        .split(DataFusionError::BACK_TRACE_SEP)
        .next()
        .unwrap_or_default()
        .trim();
    // Only the first line: DataFusion sometimes appends hints for its own developers.
    if let Some((first, _)) = text.split_once('\n') {
        text = first.trim();
    }
    let mut text = text.to_owned();
    loop {
        let before = text.len();
        for prefix in PREFIXES {
            if let Some(rest) = text.strip_prefix(prefix) {
                text = if rest.is_empty() {
                    // "Divide by zero error" carries its meaning in the prefix itself.
                    prefix.to_lowercase()
                } else {
                    rest.to_owned()
                };
            }
        }
        if text.len() == before {
            break;
        }
    }
    let text = text
        .replace("datafusion.public.", "")
        .trim_end_matches('.')
        .to_owned();
    let mut chars = text.chars();
    match chars.next() {
        // Keep acronyms ("SQL", "DDL") as they are; lowercase an ordinary capitalised word.
        Some(first) if first.is_uppercase() && !chars.next().is_some_and(char::is_uppercase) => {
            first
                .to_lowercase()
                .chain(text[first.len_utf8()..].chars())
                .collect()
        }
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(clean_message(input), expected);
    }

    #[test]
    fn messages_lose_prefixes_and_catalog_names() {
        check(
            "Error during planning: table 'datafusion.public.nope' not found",
            "table 'nope' not found",
        );
        check(
            "Execution error: Arrow error: Cast error: Cannot cast string 'x' to value of Int64 type",
            "cannot cast string 'x' to value of Int64 type",
        );
        check("Arrow error: Divide by zero error", "divide by zero error");
        check(
            "Schema error: No field named nope. Valid fields are logs.time.",
            "no field named nope. Valid fields are logs.time",
        );
        check(
            "DDL not supported: CreateMemoryTable",
            "DDL not supported: CreateMemoryTable",
        );
        check("Plain words.\n\nbacktrace: ...", "plain words");
    }

    #[test]
    fn codes_are_stable() {
        let limit = Duration::from_secs(1);
        assert_eq!(Error::Timeout { limit }.code(), "timeout");
        let scan = Error::ScanTooLarge { bytes: 2, limit: 1 };
        assert_eq!(scan.code(), "scan_too_large");
        assert_eq!(
            scan.to_string(),
            "query would scan at least 2 bytes, more than the limit of 1 bytes; narrow the time range"
        );
    }
}
