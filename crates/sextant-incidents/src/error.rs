//! Errors of the incidents crate: bad rules and actions that do not apply.

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
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadMatcher { .. } => "bad_matcher",
            Error::InvalidConfig { .. } => "invalid_config",
            Error::NoOpenIncident { .. } => "no_open_incident",
            Error::BadAction { .. } => "bad_action",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
