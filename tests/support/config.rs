//! The engine configurations the tests run under, from the most to the least eager compactor.
//! Tests that need one more setting spell it out as `Config { x, ..config::tiny() }`.

use tierlog::{Config, RecoveryMode};

/// Smallest write-ahead segments (64 KiB): test logs span several segments, so rollover and
/// segment retirement are exercised, and each engine does not preallocate 64 MiB files.
pub const TEST_SEGMENT_BYTES: u64 = 64 << 10;

/// The smallest configuration `Config::validate` accepts, tuned so that every few dozen KiB of
/// appends rotate a segment and trigger a compaction round, and the ring must evict to stay in
/// budget (1 MiB budget, 4 KiB blocks, a round every 16 KiB, a hot tail of 16 entries, a compression
/// dictionary trained once 32 KiB are cold).
pub fn tiny() -> Config {
    Config {
        memory_budget_bytes: 1 << 20,
        block_cache_fraction: 0.25,
        sync_on_persist: false,
        segment_bytes: TEST_SEGMENT_BYTES,
        recycle_segments: 2,
        recycle_bytes: 1 << 20,
        block_target_bytes: 4 << 10,
        compression_level: 1,
        compaction_trigger_bytes: 16 << 10,
        hot_tail_entries: 16,
        compaction_interval_ms: 5,
        recovery_mode: RecoveryMode::TolerateTornTail,
        // Reclamation (an exclusive compaction of the redb file) as often as purges make room for
        // it, so every test that reads while purging also reads across reclamations.
        reclaim_free_share: 0.3,
        reclaim_min_bytes: 64 << 10,
        reclaim_interval_ms: 20,
        // A dictionary as soon as 32 KiB of raw entries are cold, so every suite running on this
        // configuration reads and writes blocks both before and after the store has one.
        dictionary_bytes: 1 << 10,
        dictionary_training_bytes: 32 << 10,
    }
}

/// [`tiny`], but background rounds never move entries (trigger and hot tail out of reach): only
/// `compact_now` does. The 1 MiB budget still makes the ring evict what was compacted.
pub fn tiny_forced_only() -> Config {
    Config {
        compaction_trigger_bytes: 1 << 40,
        hot_tail_entries: 1 << 20,
        ..tiny()
    }
}

/// [`tiny_forced_only`] with a 64 MiB budget: nothing is evicted and nothing moves unless a test
/// asks, so a test decides exactly which I/O happens when.
pub fn quiet() -> Config {
    Config {
        memory_budget_bytes: 64 << 20,
        ..tiny_forced_only()
    }
}

/// [`tiny`] with compaction only when asked (or when the ring outgrows 8 MiB): the configuration
/// of [`super::offline_store`].
pub fn offline_store() -> Config {
    Config {
        memory_budget_bytes: 8 << 20,
        compaction_trigger_bytes: 4 << 20,
        ..tiny()
    }
}

/// Small cold blocks (1 KiB) and an eager background compactor (4 KiB trigger, 1 ms interval), no
/// protected hot tail, otherwise the defaults: compaction runs at arbitrary points between and
/// during operations.
pub fn eager_compaction() -> Config {
    Config {
        block_target_bytes: 1024,
        compaction_trigger_bytes: 4096,
        hot_tail_entries: 0,
        compaction_interval_ms: 1,
        segment_bytes: TEST_SEGMENT_BYTES,
        ..Config::default()
    }
}

/// The smallest memory budget the config accepts (1 MiB), with eager compaction, so older entries
/// are evicted from the ring and reads must go to the cold tier.
pub fn tiny_memory() -> Config {
    Config {
        memory_budget_bytes: 1 << 20,
        ..eager_compaction()
    }
}

/// A 1 MiB budget, 4 KiB blocks, a round every 16 KiB, no hot tail and 256 KiB segments: both tiers
/// fill with a few thousand entries.
pub fn small_ring() -> Config {
    Config {
        memory_budget_bytes: 1 << 20,
        block_target_bytes: 4 << 10,
        compaction_trigger_bytes: 16 << 10,
        hot_tail_entries: 0,
        segment_bytes: 256 << 10,
        ..Config::default()
    }
}

/// No automatic compaction at all: everything stays in the hot tier unless `compact_now` is called.
pub fn hot_only() -> Config {
    Config {
        compaction_trigger_bytes: u64::MAX,
        compaction_interval_ms: 3_600_000,
        segment_bytes: TEST_SEGMENT_BYTES,
        ..Config::default()
    }
}

/// Small cold blocks (1 KiB) and no protected hot tail, so `compact_now` moves every entry to the
/// cold tier; automatic compaction stays off, so what is cold is exactly what the test compacted.
pub fn on_demand_compaction() -> Config {
    Config {
        block_target_bytes: 1024,
        hot_tail_entries: 0,
        ..hot_only()
    }
}
