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
    /// Stored bytes failed a checksum or structural check. The message says what `offset` counts:
    /// "corruption in FILE at byte offset N: ...", "... at log index N: ..." or, for damage that has
    /// no one place, "corruption in FILE: ...".
    #[error("corruption in {}{}: {reason}", path.display(), position(*offset_kind, *offset))]
    Corruption {
        /// File holding the bad bytes.
        path: PathBuf,
        /// Where in the file: a byte offset or a log index, as `offset_kind` says (0 for
        /// [`OffsetKind::WholeFile`]).
        offset: u64,
        /// What `offset` counts.
        offset_kind: OffsetKind,
        /// What check failed.
        reason: String,
    },
    /// The cold-tier database (redb) reported an error. An operating-system error under redb (ENOSPC,
    /// EIO) is reported as [`Error::Io`] on the redb file instead.
    #[error("cold-tier database {}: {message}", path.display())]
    Database {
        /// The redb file.
        path: PathBuf,
        /// What failed.
        message: String,
        /// redb's own error, when redb reported it.
        #[source]
        source: Option<Box<redb::Error>>,
    },
    /// The directory is already open, in this process or another (its `LOCK` file is locked).
    #[error("{} is already open in another engine or process", path.display())]
    AlreadyOpen {
        /// The directory.
        path: PathBuf,
    },
    /// The directory is not a tierlog directory (or not a directory at all): nothing was changed.
    #[error("{} is not a tierlog directory: {reason}", path.display())]
    NotATierlogDirectory {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An fdatasync of the write-ahead log failed earlier: the kernel may have dropped the pages it
    /// could not write, so nothing written since the last good sync can be trusted, and the log takes
    /// no more writes or flushes. Reads still work; reopening the directory recovers what is on disk.
    #[error("write-ahead log {} is poisoned by an earlier fsync failure: {source}", path.display())]
    Poisoned {
        /// The file whose fsync failed.
        path: PathBuf,
        /// The error that fsync returned.
        #[source]
        source: std::io::Error,
    },
    /// The caller passed something the log cannot accept; nothing was written.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The engine was closed (by `close()` or by dropping its last clone).
    #[error("engine is closed: {0}")]
    Closed(String),
    /// A configuration value or file is wrong.
    #[error("configuration error: {0}")]
    Config(String),
}

/// What the `offset` of an [`Error::Corruption`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OffsetKind {
    /// A byte offset in the file (write-ahead segments: where the bad record starts).
    ByteOffset,
    /// A log index: a cold block is named by the first index it holds (blocks are keyed by it in
    /// redb, they have no stable byte offset), a gap in the log by the missing index.
    LogIndex,
    /// The damage has no one place: a metadata file with no valid slot, a redb file redb itself
    /// refuses, a block count that does not match the block index. `offset` is 0.
    WholeFile,
}

/// The " at ..." part of a corruption message.
pub(crate) fn position(kind: OffsetKind, offset: u64) -> String {
    match kind {
        OffsetKind::ByteOffset => format!(" at byte offset {offset}"),
        OffsetKind::LogIndex => format!(" at log index {offset}"),
        OffsetKind::WholeFile => String::new(),
    }
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Corruption at a byte offset of `path`.
    pub(crate) fn corruption(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Self::corruption_kind(path, offset, OffsetKind::ByteOffset, reason)
    }

    /// Corruption at log index `index` (cold blocks, gaps in the log).
    pub(crate) fn corruption_at_index(
        path: impl Into<PathBuf>,
        index: u64,
        reason: impl Into<String>,
    ) -> Self {
        Self::corruption_kind(path, index, OffsetKind::LogIndex, reason)
    }

    /// Corruption of `path` as a whole (see [`OffsetKind::WholeFile`]).
    pub(crate) fn corruption_of_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::corruption_kind(path, 0, OffsetKind::WholeFile, reason)
    }

    fn corruption_kind(
        path: impl Into<PathBuf>,
        offset: u64,
        offset_kind: OffsetKind,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corruption {
            path: path.into(),
            offset,
            offset_kind,
            reason: reason.into(),
        }
    }

    /// A cold-tier failure that redb did not report (`message` says what failed).
    pub(crate) fn db(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Error::Database {
            path: path.into(),
            message: message.to_string(),
            source: None,
        }
    }

    /// A redb error: [`Error::Corruption`] of the whole file when redb says the file is damaged
    /// (truncated, not a redb file, a page that fails its checks), else [`Error::Database`] with
    /// redb's error as its source.
    pub(crate) fn redb(path: impl Into<PathBuf>, e: impl Into<redb::Error>) -> Self {
        let e = e.into();
        let damaged = match &e {
            redb::Error::Corrupted(_) => true,
            redb::Error::Io(io) => is_damage(io),
            _ => false,
        };
        if damaged {
            Self::corruption_of_file(path, format!("redb: {e}"))
        } else {
            Error::Database {
                path: path.into(),
                message: e.to_string(),
                source: Some(Box::new(e)),
            }
        }
    }

    /// True when the error means stored data is damaged (as opposed to a failed call).
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}

/// True when redb reports an I/O error that is the file's content, not the device: short or invalid
/// data (a truncated or garbled file).
pub(crate) fn is_damage(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
    )
}
