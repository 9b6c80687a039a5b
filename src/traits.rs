//! The storage traits of d-engine (0.1.3 shape) plus the three `LogStore` methods d-engine 0.2.4 added.
//!
//! Method names, receivers and the sync/async split follow d-engine exactly, so an adapter per Raft
//! library is a thin forwarding layer.

use std::ops::RangeInclusive;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Error;
use crate::proto::{Entry, HardState, LogId};

/// A storage engine: a log store and a metadata store that share one directory.
pub trait StorageEngine: Send + Sync + 'static {
    /// The log store type.
    type LogStore: LogStore;
    /// The metadata store type.
    type MetaStore: MetaStore;

    /// A handle to the log; every handle sees every write made through any other.
    fn log_store(&self) -> Arc<Self::LogStore>;

    /// A handle to the metadata store.
    fn meta_store(&self) -> Arc<Self::MetaStore>;
}

/// The replicated log.
#[async_trait]
pub trait LogStore: Send + Sync + 'static {
    /// Appends or overwrites a strictly ascending, contiguous batch. Entries after the batch stay
    /// (upsert). A batch that would leave a hole, or touches index 0 or the purged prefix, is rejected
    /// whole with [`Error::InvalidInput`]; so is one over the size limits,
    /// [`MAX_ENTRY_BYTES`](crate::MAX_ENTRY_BYTES) per entry and
    /// [`MAX_BATCH_BYTES`](crate::MAX_BATCH_BYTES) per batch (see [`batch_bytes`](crate::batch_bytes)).
    async fn persist_entries(&self, entries: Vec<Entry>) -> Result<(), Error>;

    /// The entry at `index`, or `Ok(None)` when there is none.
    async fn entry(&self, index: u64) -> Result<Option<Entry>, Error>;

    /// The entries of `range` that exist, in order; gaps and out-of-range bounds are not errors.
    fn get_entries(&self, range: RangeInclusive<u64>) -> Result<Vec<Entry>, Error>;

    /// Removes every entry with index `<= cutoff_index.index`; index 0 is a no-op.
    async fn purge(&self, cutoff_index: LogId) -> Result<(), Error>;

    /// Removes `[from_index, ∞)`.
    async fn truncate(&self, from_index: u64) -> Result<(), Error>;

    /// Removes `[from_index, ∞)` and appends `entries` (which must start at `from_index`) as one
    /// atomic operation, also across a crash. `entries` obey the same rules and size limits as a
    /// [`persist_entries`](LogStore::persist_entries) batch; a rejected call removes nothing.
    async fn replace_range(&self, from_index: u64, entries: Vec<Entry>) -> Result<(), Error>;

    /// Makes everything persisted so far survive power loss.
    fn flush(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Async form of [`LogStore::flush`].
    async fn flush_async(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Clears the whole log and the purge boundary; keeps the hard state.
    async fn reset(&self) -> Result<(), Error>;

    /// Index of the last entry, or the purge boundary's index when no entry is left (no I/O).
    fn last_index(&self) -> u64;

    /// True only when a returned `persist_entries` already survives power loss.
    fn is_write_durable(&self) -> bool;

    /// The highest `LogId` ever purged (kept across reopen), or `None`.
    fn load_purge_boundary(&self) -> Result<Option<LogId>, Error> {
        Ok(None)
    }
}

/// Raft's hard state (term and vote).
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Atomically and durably saves the hard state.
    fn save_hard_state(&self, state: &HardState) -> Result<(), Error>;

    /// The last saved hard state, or `None` on a new store.
    fn load_hard_state(&self) -> Result<Option<HardState>, Error>;

    /// Flushes pending writes (saves are already durable).
    fn flush(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Async form of [`MetaStore::flush`].
    async fn flush_async(&self) -> Result<(), Error> {
        Ok(())
    }
}
