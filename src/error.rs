//! The one error type of the crate.

use std::path::PathBuf;

/// Result alias used throughout tierlog.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in tierlog, in variants a caller can match on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed on `path`.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// File or directory the call was about.
        path: PathBuf,
        /// The underlying error (its `kind()` tells ENOSPC, EIO, ...).
        #[source]
        source: std::io::Error,
    },
    /// Stored bytes failed a checksum or structural check.
    #[error("corruption in {} at offset {offset}: {reason}", path.display())]
    Corruption {
        /// File holding the bad bytes.
        path: PathBuf,
        /// Byte offset of the bad record (for cold blocks: the block's first log index).
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// The cold-tier database (redb) reported an error. An operating-system error under redb (ENOSPC,
    /// EIO) is reported as [`Error::Io`] on the redb file instead.
    #[error("cold-tier database {}: {message}", path.display())]
    Database {
        /// The redb file.
        path: PathBuf,
        /// redb's description of the failure.
        message: String,
    },
    /// The caller passed something the log cannot accept; nothing was written.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The engine was closed, or stopped accepting writes after an earlier I/O failure.
    #[error("engine is closed: {0}")]
    Closed(String),
    /// A configuration value or file is wrong, or the directory is not a tierlog directory.
    #[error("configuration error: {0}")]
    Config(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corruption(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corruption {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    pub(crate) fn db(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        Error::Database {
            path: path.into(),
            message: e.to_string(),
        }
    }

    /// True when the error means stored data is damaged (as opposed to a failed call).
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}
