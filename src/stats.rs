//! A plain snapshot of what the engine holds and has done.

use serde::Serialize;

use crate::proto::LogId;

/// Point-in-time figures of a [`TieredEngine`](crate::TieredEngine), from [`TieredEngine::stats`](crate::TieredEngine::stats).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Groups the engine hosts (group 0 included). The log bounds below (`first_index`,
    /// `last_index`, `compaction_high_water`, `purge_boundary`) are group 0's; what the tiers hold
    /// is summed over every group.
    pub groups: u64,
    /// First index present (0 when the log is empty).
    pub first_index: u64,
    /// Last index (the purge boundary's index when the log is empty).
    pub last_index: u64,
    /// Entries held in the hot ring (some may already also be in the cold tier).
    pub hot_entries: u64,
    /// Accounted bytes of the hot ring (payloads plus per-entry overhead).
    pub hot_bytes: u64,
    /// Entries above the cold tier's high-water mark, summed over the groups (hot only).
    pub compaction_lag_entries: u64,
    /// Accounted bytes of those entries (estimated from each ring's mean entry size).
    pub compaction_lag_bytes: u64,
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
    /// redb's page cache limit, a fixed share of the memory budget (redb fills it as it reads and
    /// writes, and keeps what it filled).
    pub redb_cache_bytes: u64,
    /// Accounted memory of the block index (a fixed cost per block, inside the budget).
    pub block_index_bytes: u64,
    /// Accounted memory of the groups' own structures (about 1 KiB each), also set aside from the
    /// ring's share.
    pub group_bytes: u64,
    /// Memory set aside in the budget for a compaction round (compressed blocks, redb's dirty pages).
    pub compaction_reserve_bytes: u64,
    /// Memory set aside in the budget for what no counter sees: memory the allocator keeps after
    /// the engine freed it, and blocks readers still hold after the cache dropped them.
    pub unseen_reserve_bytes: u64,
    /// Memory set aside in the budget for the cold tier's compression dictionary (its bytes and
    /// zstd's tables; 0 when `dictionary_bytes` is 0).
    pub dictionary_reserve_bytes: u64,
    /// Size of the cold tier's compression dictionary: 0 until the store has trained one (blocks
    /// written before it stay without).
    pub dictionary_bytes: u64,
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
    /// fdatasyncs of the write-ahead log since open (group commits, rotations, open): with many
    /// groups flushing at once, far fewer than flushes.
    pub wal_syncs: u64,
    /// Bytes the redb file takes on disk (allocated blocks; redb's unwritten tail takes none).
    pub redb_file_bytes: u64,
    /// Bytes of the redb file that hold no live block content: free pages, the rounding of every
    /// block up to a power-of-two number of 4 KiB pages, and redb's metadata
    /// (`redb_file_bytes` minus the stored bytes of every block in the file, including purged
    /// blocks whose deletion has not been committed yet).
    pub redb_fragmented_bytes: u64,
    /// The part of `redb_fragmented_bytes` in free pages, which a reclamation gives back: the file
    /// bytes on disk minus the pages the blocks occupy, estimated from redb's allocation rule (it errs low).
    pub redb_free_bytes: u64,
    /// Reclamations run (brief exclusive compactions of the redb file, see `reclaim_free_share`).
    pub reclamations: u64,
    /// Bytes the reclamations gave back to the filesystem, in total.
    pub reclaimed_bytes: u64,
    /// Longest time cold reads waited for a reclamation, in microseconds.
    pub reclaim_pause_max_us: u64,
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
    pub reclamations: std::sync::atomic::AtomicU64,
    pub reclaimed_bytes: std::sync::atomic::AtomicU64,
    pub reclaim_pause_max_us: std::sync::atomic::AtomicU64,
}

/// Point-in-time figures of one group, from [`Group::stats`](crate::Group::stats).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GroupStats {
    /// The group's id.
    pub group: crate::GroupId,
    /// First index present (0 when the log is empty).
    pub first_index: u64,
    /// Last index (the purge boundary's index when the log is empty).
    pub last_index: u64,
    /// The purge boundary.
    pub purge_boundary: Option<LogId>,
    /// Entries held in the group's hot ring.
    pub hot_entries: u64,
    /// Accounted bytes of the group's hot ring.
    pub hot_bytes: u64,
    /// The group's live cold blocks.
    pub cold_blocks: u64,
    /// Uncompressed bytes of those blocks.
    pub cold_raw_bytes: u64,
    /// Compressed bytes of those blocks as stored.
    pub cold_stored_bytes: u64,
    /// Highest index durably stored in the cold tier.
    pub compaction_high_water: u64,
    /// Entries above the cold tier's high-water mark (hot only).
    pub compaction_lag_entries: u64,
    /// Accounted bytes of those entries (estimated from the ring's mean entry size).
    pub compaction_lag_bytes: u64,
}
