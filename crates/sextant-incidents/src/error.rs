//! Errors of the incidents crate: bad rules and actions that do not apply.

use sextant_model::ErrorCode;

/// Something the caller asked for cannot be done.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A label matcher that does not parse.
    #[error("bad matcher `{matcher}`: {reason}")]
    BadMatcher { matcher: String, reason: String },
    /// A configuration field outside its allowed range.
    #[error("invalid config field `{field}`: {reason}")]
    InvalidConfig {
        field: &'static str,
        reason: &'static str,
    },
    /// No open incident has this id.
    #[error("no open incident `{id}`")]
    NoOpenIncident { id: u64 },
    /// The action cannot apply to the incidents named (what and why in `reason`).
    #[error("cannot {action}: {reason}")]
    BadAction {
        action: &'static str,
        reason: String,
    },
}

impl Error {
    /// The small public code of this error, stable across versions.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::BadMatcher { .. } => ErrorCode::BadMatcher,
            Error::InvalidConfig { .. } => ErrorCode::InvalidConfig,
            Error::NoOpenIncident { .. } => ErrorCode::NoOpenIncident,
            Error::BadAction { .. } => ErrorCode::BadAction,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
