//! The engine's metrics, through the [`metrics`] facade: every name, its unit and its description
//! are defined here and nowhere else (docs/metrics.md lists them). The library only emits; the
//! application installs a recorder (an exporter) or none, and with none every call below is the
//! facade's no-op.
//!
//! Hot paths emit only what they alone know (an append's size, a flush's latency, a writer's wait
//! for memory). Levels and the totals the engine counts anyway for [`Stats`] are not counted twice:
//! the compactor thread copies them from [`Stats`] after each of its runs (at least every
//! `compaction_interval_ms`), so a scrape sees them at most that old.
//!
//! Names follow Prometheus' conventions (base units, `_total` on counters, `_seconds` and `_bytes`
//! suffixes). None has a label: every figure is the engine's, summed over the groups it hosts (a
//! per-group label would make one series per group and metric, tens of thousands on a node with
//! thousands of groups; `tierlog_groups` says how many there are).

use std::time::{Duration, Instant};

use ::metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::cold::block::BlockMeta;
use crate::stats::Stats;

/// Entries appended (`persist_entries` and `replace_range`).
pub const APPEND_ENTRIES: &str = "tierlog_append_entries_total";
/// Payload bytes appended.
pub const APPEND_BYTES: &str = "tierlog_append_bytes_total";
/// `flush` calls.
pub const FLUSHES: &str = "tierlog_flushes_total";
/// Latency of `flush` (the write-ahead fdatasync, shared by a group commit).
pub const FLUSH_SECONDS: &str = "tierlog_flush_seconds";
/// Times a writer waited for the compactor to free memory (copied from [`Stats`]).
pub const BACKPRESSURE_WAITS: &str = "tierlog_backpressure_waits_total";
/// How long one write waited for memory, from its first wait until it could go on.
pub const BACKPRESSURE_WAIT_SECONDS: &str = "tierlog_backpressure_wait_seconds";
/// Compaction rounds committed (copied from [`Stats`]).
pub const COMPACTION_ROUNDS: &str = "tierlog_compaction_rounds_total";
/// Duration of one compaction round, snapshot to retired segments.
pub const COMPACTION_ROUND_SECONDS: &str = "tierlog_compaction_round_seconds";
/// Entries the compaction rounds wrote into cold blocks.
pub const COMPACTION_ENTRIES: &str = "tierlog_compaction_entries_total";
/// Uncompressed bytes the compaction rounds wrote into cold blocks.
pub const COMPACTION_BYTES: &str = "tierlog_compaction_bytes_total";
/// Cold blocks the compaction rounds wrote.
pub const COMPACTION_BLOCKS: &str = "tierlog_compaction_blocks_total";
/// Entries above the compaction high-water mark (in the hot tier only).
pub const COMPACTION_LAG_ENTRIES: &str = "tierlog_compaction_lag_entries";
/// Accounted bytes of the entries above the compaction high-water mark.
pub const COMPACTION_LAG_BYTES: &str = "tierlog_compaction_lag_bytes";
/// Entries in the hot ring.
pub const HOT_ENTRIES: &str = "tierlog_hot_entries";
/// Accounted bytes of the hot ring.
pub const HOT_BYTES: &str = "tierlog_hot_bytes";
/// Live cold blocks.
pub const COLD_BLOCKS: &str = "tierlog_cold_blocks";
/// Stored (compressed) bytes of the live cold blocks.
pub const COLD_BYTES: &str = "tierlog_cold_bytes";
/// Uncompressed bytes of the live cold blocks.
pub const COLD_RAW_BYTES: &str = "tierlog_cold_raw_bytes";
/// Bytes on disk per file kind (label `file`: `wal`, `redb`).
pub const DISK_BYTES: &str = "tierlog_disk_bytes";
/// Write-ahead segment files on disk.
pub const WAL_SEGMENTS: &str = "tierlog_wal_segments";
/// fdatasyncs of the write-ahead log (copied from [`Stats`]): with many groups flushing at once,
/// far fewer than flushes.
pub const WAL_SYNCS: &str = "tierlog_wal_syncs_total";
/// Groups the engine hosts.
pub const GROUPS: &str = "tierlog_groups";
/// Bytes of the redb file that hold no live block content.
pub const REDB_FRAGMENTED_BYTES: &str = "tierlog_redb_fragmented_bytes";
/// Free pages of the redb file, which a reclamation gives back.
pub const REDB_FREE_BYTES: &str = "tierlog_redb_free_bytes";
/// Reclamations of the redb file run (copied from [`Stats`]).
pub const RECLAMATIONS: &str = "tierlog_reclamations_total";
/// Bytes the reclamations gave back (copied from [`Stats`]).
pub const RECLAIMED_BYTES: &str = "tierlog_reclaimed_bytes_total";
/// Block (frame) cache hits (copied from [`Stats`]).
pub const CACHE_HITS: &str = "tierlog_block_cache_hits_total";
/// Block (frame) cache misses (copied from [`Stats`]).
pub const CACHE_MISSES: &str = "tierlog_block_cache_misses_total";
/// Bytes of decoded blocks in the cache.
pub const CACHE_BYTES: &str = "tierlog_block_cache_bytes";
/// Entries read, per tier (label `tier`: `hot`, `cold`; copied from [`Stats`]).
pub const READ_ENTRIES: &str = "tierlog_read_entries_total";
/// The configured memory budget.
pub const MEMORY_BUDGET_BYTES: &str = "tierlog_memory_budget_bytes";
/// Duration of `TieredEngine::open`, recovery included.
pub const OPEN_SECONDS: &str = "tierlog_open_seconds";

/// Describes every metric to the installed recorder (so exporters print help and units). The
/// engine calls it on every open; an application that installs its recorder later may call it
/// again. Cheap and idempotent.
pub fn describe() {
    use Unit::{Bytes, Count, Seconds};
    let counters = [
        (
            APPEND_ENTRIES,
            Count,
            "Entries appended (persist_entries and replace_range).",
        ),
        (APPEND_BYTES, Bytes, "Payload bytes appended."),
        (
            FLUSHES,
            Count,
            "flush calls (each an fdatasync of the write-ahead log or a share of one).",
        ),
        (
            BACKPRESSURE_WAITS,
            Count,
            "Times a writer waited for the compactor to free memory.",
        ),
        (COMPACTION_ROUNDS, Count, "Compaction rounds committed."),
        (
            COMPACTION_ENTRIES,
            Count,
            "Entries compaction rounds wrote into cold blocks.",
        ),
        (
            COMPACTION_BYTES,
            Bytes,
            "Uncompressed bytes compaction rounds wrote into cold blocks.",
        ),
        (COMPACTION_BLOCKS, Count, "Cold blocks compaction rounds wrote."),
        (RECLAMATIONS, Count, "Reclamations of the redb file's free pages."),
        (
            WAL_SYNCS,
            Count,
            "fdatasyncs of the write-ahead log (one group commit serves many flushes).",
        ),
        (
            RECLAIMED_BYTES,
            Bytes,
            "Bytes reclamations gave back to the filesystem.",
        ),
        (CACHE_HITS, Count, "Block (frame) cache hits."),
        (
            CACHE_MISSES,
            Count,
            "Block (frame) cache misses, each a redb read and a decompression.",
        ),
        (
            READ_ENTRIES,
            Count,
            "Entries read, by tier (label tier: hot, cold).",
        ),
    ];
    for (name, unit, help) in counters {
        describe_counter!(name, unit, help);
    }
    let gauges = [
        (
            COMPACTION_LAG_ENTRIES,
            Count,
            "Entries above the compaction high-water mark (hot only).",
        ),
        (
            COMPACTION_LAG_BYTES,
            Bytes,
            "Accounted bytes of the entries above the compaction high-water mark.",
        ),
        (HOT_ENTRIES, Count, "Entries in the hot ring."),
        (
            HOT_BYTES,
            Bytes,
            "Accounted bytes of the hot ring (payloads plus per-entry overhead).",
        ),
        (COLD_BLOCKS, Count, "Live cold blocks."),
        (
            COLD_BYTES,
            Bytes,
            "Stored (compressed) bytes of the live cold blocks.",
        ),
        (
            COLD_RAW_BYTES,
            Bytes,
            "Uncompressed bytes of the live cold blocks.",
        ),
        (
            DISK_BYTES,
            Bytes,
            "Bytes on disk by file kind (label file: wal, redb).",
        ),
        (WAL_SEGMENTS, Count, "Write-ahead segment files on disk."),
        (GROUPS, Count, "Groups the engine hosts (group 0 included)."),
        (
            REDB_FRAGMENTED_BYTES,
            Bytes,
            "Bytes of the redb file holding no live block content.",
        ),
        (
            REDB_FREE_BYTES,
            Bytes,
            "Free pages of the redb file (what a reclamation gives back).",
        ),
        (CACHE_BYTES, Bytes, "Bytes of decoded blocks in the block cache."),
        (MEMORY_BUDGET_BYTES, Bytes, "The configured memory budget."),
    ];
    for (name, unit, help) in gauges {
        describe_gauge!(name, unit, help);
    }
    let histograms = [
        (FLUSH_SECONDS, "Latency of flush."),
        (BACKPRESSURE_WAIT_SECONDS, "How long one write waited for memory."),
        (COMPACTION_ROUND_SECONDS, "Duration of one compaction round."),
        (OPEN_SECONDS, "Duration of opening the engine, recovery included."),
    ];
    for (name, help) in histograms {
        describe_histogram!(name, Seconds, help);
    }
}

/// A batch of `entries` entries and `bytes` payload bytes was appended.
pub(crate) fn appended(entries: usize, bytes: u64) {
    counter!(APPEND_ENTRIES).increment(entries as u64);
    counter!(APPEND_BYTES).increment(bytes);
}

/// A `flush` that started at `start` finished.
pub(crate) fn flushed(start: Instant) {
    counter!(FLUSHES).increment(1);
    histogram!(FLUSH_SECONDS).record(start.elapsed());
}

/// A write waited `waited` for memory before it could go on.
pub(crate) fn waited_for_room(waited: Duration) {
    histogram!(BACKPRESSURE_WAIT_SECONDS).record(waited);
}

/// The span of one compaction round; `round_wrote` and `round_finished` fill in its figures.
pub(crate) fn round_span(seq: u64, entries: usize) -> tracing::Span {
    use tracing::field::Empty;
    tracing::info_span!(
        "compaction_round",
        seq,
        entries,
        entries_moved = Empty,
        bytes_moved = Empty,
        blocks_written = Empty,
        blocks_removed = Empty,
        duration_us = Empty
    )
}

/// A compaction round committed, writing the blocks `written` and deleting `removed` blocks;
/// recorded on the round's span too.
pub(crate) fn round_wrote<'a>(written: impl Iterator<Item = &'a BlockMeta>, removed: usize) {
    let (mut blocks, mut entries, mut raw_bytes) = (0u64, 0u64, 0u64);
    for m in written {
        blocks += 1;
        entries += m.last + 1 - m.first;
        raw_bytes += m.raw_len;
    }
    counter!(COMPACTION_BLOCKS).increment(blocks);
    counter!(COMPACTION_ENTRIES).increment(entries);
    counter!(COMPACTION_BYTES).increment(raw_bytes);
    let span = tracing::Span::current();
    span.record("blocks_written", blocks);
    span.record("blocks_removed", removed as u64);
    span.record("entries_moved", entries);
    span.record("bytes_moved", raw_bytes);
}

/// A compaction round that started at `start` committed; recorded on its span too.
pub(crate) fn round_finished(start: Instant) {
    let took = start.elapsed();
    histogram!(COMPACTION_ROUND_SECONDS).record(took);
    tracing::Span::current().record("duration_us", took.as_micros() as u64);
}

/// Calls its closure at most once per [`Throttle::PERIOD`] (the compactor thread copies the
/// figures after its runs, which come back to back under load).
#[derive(Default)]
pub(crate) struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    const PERIOD: Duration = Duration::from_millis(100);

    pub(crate) fn run(&mut self, f: impl FnOnce()) {
        if self.last.is_none_or(|t| t.elapsed() >= Self::PERIOD) {
            self.last = Some(Instant::now());
            f();
        }
    }
}

/// An open took `took`.
pub(crate) fn opened(took: Duration) {
    histogram!(OPEN_SECONDS).record(took);
}

/// What one engine last copied of the totals it keeps for [`Stats`]: the recorder's counters
/// get the increase since then, so they add up across engines and never go back when an engine is
/// reopened (its totals start again at zero).
#[derive(Default)]
pub(crate) struct Mirror {
    last: parking_lot::Mutex<[u64; 9]>,
}

impl Mirror {
    /// Copies the levels and the increase of the totals into the recorder.
    pub(crate) fn publish(&self, s: &Stats) {
        let totals = [
            s.backpressure_waits,
            s.compactions,
            s.reclamations,
            s.reclaimed_bytes,
            s.block_cache_hits,
            s.block_cache_misses,
            s.hot_reads,
            s.cold_reads,
            s.wal_syncs,
        ];
        let mut last = self.last.lock();
        let d: Vec<u64> = totals
            .iter()
            .zip(last.iter())
            .map(|(now, was)| now.saturating_sub(*was))
            .collect();
        *last = totals;
        drop(last);
        counter!(BACKPRESSURE_WAITS).increment(d[0]);
        counter!(COMPACTION_ROUNDS).increment(d[1]);
        counter!(RECLAMATIONS).increment(d[2]);
        counter!(RECLAIMED_BYTES).increment(d[3]);
        counter!(CACHE_HITS).increment(d[4]);
        counter!(CACHE_MISSES).increment(d[5]);
        counter!(READ_ENTRIES, "tier" => "hot").increment(d[6]);
        counter!(READ_ENTRIES, "tier" => "cold").increment(d[7]);
        counter!(WAL_SYNCS).increment(d[8]);
        publish_levels(s);
    }
}

fn publish_levels(s: &Stats) {
    let levels = [
        (COMPACTION_LAG_ENTRIES, s.compaction_lag_entries),
        (COMPACTION_LAG_BYTES, s.compaction_lag_bytes),
        (HOT_ENTRIES, s.hot_entries),
        (HOT_BYTES, s.hot_bytes),
        (COLD_BLOCKS, s.cold_blocks),
        (COLD_BYTES, s.cold_stored_bytes),
        (COLD_RAW_BYTES, s.cold_raw_bytes),
        (WAL_SEGMENTS, s.wal_segments),
        (GROUPS, s.groups),
        (REDB_FRAGMENTED_BYTES, s.redb_fragmented_bytes),
        (REDB_FREE_BYTES, s.redb_free_bytes),
        (CACHE_BYTES, s.block_cache_bytes),
        (MEMORY_BUDGET_BYTES, s.memory_budget_bytes),
    ];
    for (name, v) in levels {
        gauge!(name).set(v as f64);
    }
    gauge!(DISK_BYTES, "file" => "wal").set(s.wal_bytes as f64);
    gauge!(DISK_BYTES, "file" => "redb").set(s.redb_file_bytes as f64);
}
