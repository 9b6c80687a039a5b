//! The memory budget: how `memory_budget_bytes` is split between the parts that hold memory, and
//! what the ring may hold once the others have their share (`docs/design.md`, "Memory budget").

use crate::config::Config;

/// Upper bound of raw bytes a compaction round moves, so one transaction (and the window in which
/// mutations are recorded for re-application) stays short.
pub(crate) const MAX_ROUND_RAW_BYTES: u64 = 8 << 20;

/// Accounted memory of one block-index entry (BTreeMap node share plus the meta itself).
const INDEX_ENTRY_COST: u64 = 96;

/// The fixed shares of one engine's budget.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    /// The ring's share before the fixed costs below come out of it.
    ring_share: u64,
    /// redb's page cache.
    redb_cache: u64,
    /// A compaction round's working memory (compressed blocks, redb's dirty pages).
    round: u64,
}

impl Budget {
    pub(crate) fn new(config: &Config) -> Self {
        Budget {
            ring_share: config.ring_budget_bytes(),
            redb_cache: (config.memory_budget_bytes / 32).clamp(256 << 10, 16 << 20),
            round: (config.memory_budget_bytes / 8).min(2 * MAX_ROUND_RAW_BYTES),
        }
    }

    /// The page cache redb is opened with.
    pub(crate) fn redb_cache_bytes(&self) -> u64 {
        self.redb_cache
    }

    /// A compaction round's working memory, set aside in the budget.
    pub(crate) fn round_bytes(&self) -> u64 {
        self.round
    }

    /// Accounted memory of a block index of `blocks` entries.
    pub(crate) fn index_bytes(&self, blocks: usize) -> u64 {
        blocks as u64 * INDEX_ENTRY_COST
    }

    /// Bytes the ring may hold while the block index has `blocks` entries.
    pub(crate) fn ring_bytes(&self, blocks: usize) -> u64 {
        self.ring_share
            .saturating_sub(self.redb_cache)
            .saturating_sub(self.round)
            .saturating_sub(self.index_bytes(blocks))
    }
}
