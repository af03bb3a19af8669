//! Errors of the storage crate.

use std::path::PathBuf;

use sextant_model::ErrorCode;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o error on `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record that fails its checksum or framing anywhere but the tail of the newest segment.
    #[error("write-ahead log segment `{path}` is corrupt at offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The log cannot take more appends right now; the caller should retry later.
    #[error("write-ahead log queue is full")]
    Overloaded,
    /// The data directory's file system has less free space than the reserve kept for
    /// flushing and compaction: appends are refused until space returns.
    #[error(
        "the disk is full: {free} bytes free in the data directory, below the reserve of \
         {reserve} bytes kept for flushing and compaction (`storage.min_free_bytes`)"
    )]
    DiskFull { free: u64, reserve: u64 },
    /// The write-ahead log found no space for a batch (the file system filled up under the
    /// reserve): the batch was not kept, and later batches are tried again.
    #[error(
        "the disk is full: the write-ahead log could not write this batch ({0}); nothing of it \
         was kept, later batches are tried again as space returns"
    )]
    NoSpace(String),
    /// The log was closed, or failed and stopped accepting appends.
    #[error("write-ahead log is closed")]
    Closed,
    /// A write or fsync failed; the batch is not durable.
    #[error("write-ahead log write failed: {0}")]
    WriteFailed(String),
    #[error("metadata store error: {0}")]
    Metadata(#[from] rusqlite::Error),
    #[error("no token with id `{id}`")]
    TokenNotFound { id: String },
    /// Something asked for by id does not exist (for this tenant).
    #[error("{0}")]
    NotFound(String),
    #[error("invalid stored record: {0}")]
    Decode(String),
    #[error("segment storage error: {0}")]
    ObjectStore(String),
    /// Encryption at rest: a wrong or missing key, or data that does not decrypt.
    #[error("encryption: {0}")]
    Crypto(String),
    /// The storage in use cannot do this (for example, erasure on a read-only source).
    #[error("not supported by this storage: {0}")]
    Unsupported(&'static str),
}

impl From<sextant_tables::schema::PayloadError> for Error {
    fn from(err: sextant_tables::schema::PayloadError) -> Error {
        Error::Decode(err.to_string())
    }
}

impl Error {
    /// The small public code of this error, stable across versions.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Io { .. } | Error::WriteFailed(_) | Error::ObjectStore(_) => {
                ErrorCode::StorageIo
            }
            Error::Corrupt { .. } | Error::Decode(_) => ErrorCode::StorageCorrupt,
            Error::Overloaded => ErrorCode::Overloaded,
            Error::DiskFull { .. } | Error::NoSpace(_) => ErrorCode::DiskFull,
            Error::Closed => ErrorCode::Unavailable,
            Error::Metadata(_) => ErrorCode::Metadata,
            Error::TokenNotFound { .. } | Error::NotFound(_) => ErrorCode::NotFound,
            Error::Unsupported(_) => ErrorCode::Unsupported,
            Error::Crypto(_) => ErrorCode::Encryption,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
