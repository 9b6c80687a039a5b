//! A plain snapshot of what the engine holds and has done.

use serde::Serialize;

use crate::proto::LogId;

/// Point-in-time figures of a [`TieredEngine`](crate::TieredEngine), from [`TieredEngine::stats`](crate::TieredEngine::stats).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// First index present (0 when the log is empty).
    pub first_index: u64,
    /// Last index (the purge boundary's index when the log is empty).
    pub last_index: u64,
    /// Entries held in the hot ring (some may already also be in the cold tier).
    pub hot_entries: u64,
    /// Accounted bytes of the hot ring (payloads plus per-entry overhead).
    pub hot_bytes: u64,
    /// Cold blocks in redb.
    pub cold_blocks: u64,
    /// Uncompressed bytes of the cold blocks.
    pub cold_raw_bytes: u64,
    /// Compressed bytes of the cold blocks as stored.
    pub cold_stored_bytes: u64,
    /// Highest index durably stored in the cold tier.
    pub compaction_high_water: u64,
    /// Bytes of decompressed blocks in the cache.
    pub block_cache_bytes: u64,
    /// Block-cache hits.
    pub block_cache_hits: u64,
    /// Block-cache misses (each one a redb read and a decompression).
    pub block_cache_misses: u64,
    /// Entries returned from the hot ring.
    pub hot_reads: u64,
    /// Entries returned from cold blocks.
    pub cold_reads: u64,
    /// Compaction rounds committed.
    pub compactions: u64,
    /// Times a writer waited for the compactor to free memory.
    pub backpressure_waits: u64,
    /// Write-ahead segment files and their bytes on disk (allocated size).
    pub wal_segments: u64,
    /// Bytes of write-ahead segment files on disk.
    pub wal_bytes: u64,
    /// Size of the redb file.
    pub redb_file_bytes: u64,
    /// Highest purged log id.
    pub purge_boundary: Option<LogId>,
    /// The configured memory budget.
    pub memory_budget_bytes: u64,
}

/// Running totals kept by the read path, the write path and the compactor.
#[derive(Default)]
pub(crate) struct Counters {
    pub hot_reads: std::sync::atomic::AtomicU64,
    pub cold_reads: std::sync::atomic::AtomicU64,
    pub compactions: std::sync::atomic::AtomicU64,
    pub backpressure_waits: std::sync::atomic::AtomicU64,
}
