//! Errors of the analytics crate: invalid configurations and mismatched inputs.

use sextant_model::ErrorCode;

/// Something the caller passed in cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A configuration field outside its allowed range.
    #[error("invalid config field `{field}`: {reason}")]
    InvalidConfig {
        field: &'static str,
        reason: &'static str,
    },
    /// Predictions and ground truth of different lengths.
    #[error("length mismatch: {predicted} predictions for {truth} ground-truth labels")]
    LengthMismatch { predicted: usize, truth: usize },
    /// A persisted state that contradicts itself or is of another version.
    #[error("invalid state: {reason}")]
    InvalidState { reason: &'static str },
    /// Input data that cannot be used (no values, malformed rows).
    #[error("invalid input: {reason}")]
    InvalidInput { reason: &'static str },
}

impl Error {
    /// The small public code of this error, stable across versions.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidConfig { .. } => ErrorCode::InvalidConfig,
            Error::LengthMismatch { .. } => ErrorCode::LengthMismatch,
            Error::InvalidState { .. } => ErrorCode::InvalidState,
            Error::InvalidInput { .. } => ErrorCode::InvalidInput,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
