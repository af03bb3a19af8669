//! Errors of the vocabulary crate: names and values that fail validation.

use crate::ErrorCode;

/// An invalid name or value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A tenant name outside `[a-z0-9_-]{1,64}` (or starting with `-`/`_`).
    #[error("invalid tenant `{name}`: {reason}")]
    InvalidTenant { name: String, reason: &'static str },
    /// A role name that is not one of `admin`, `editor`, `viewer`, `ingest`.
    #[error("unknown role `{name}` (expected one of admin, editor, viewer, ingest)")]
    UnknownRole { name: String },
    /// A signal name that is not one of `logs`, `metrics`, `traces`.
    #[error("unknown signal `{name}` (expected one of logs, metrics, traces)")]
    UnknownSignal { name: String },
    /// A table name that is not one of `logs`, `spans`, `metrics`.
    #[error("unknown table `{name}` (expected one of logs, spans, metrics)")]
    UnknownTable { name: String },
    /// A token scope that is not one of [`crate::Scope::NAMES`].
    #[error(
        "unknown scope `{name}` (expected one of read, edit, admin, ingest, ingest:logs, ingest:metrics, ingest:traces, ingest:alerts)"
    )]
    UnknownScope { name: String },
}

impl Error {
    /// The small public code of this error, stable across versions.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidTenant { .. } => ErrorCode::InvalidTenant,
            Error::UnknownRole { .. } => ErrorCode::UnknownRole,
            Error::UnknownSignal { .. } => ErrorCode::UnknownSignal,
            Error::UnknownTable { .. } => ErrorCode::UnknownTable,
            Error::UnknownScope { .. } => ErrorCode::UnknownScope,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
