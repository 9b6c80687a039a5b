//! The memory budget: how `memory_budget_bytes` is split between the parts that hold memory, and
//! what the ring may hold once the others have their share (`docs/design.md`, "Memory budget").

use crate::config::Config;

/// Upper bound of raw bytes a compaction round moves, so one transaction (and the window in which
/// mutations are recorded for re-application) stays short.
pub(crate) const MAX_ROUND_RAW_BYTES: u64 = 8 << 20;

/// Accounted memory of one block-index entry (BTreeMap node share plus the meta itself).
const INDEX_ENTRY_COST: u64 = 96;

/// Accounted memory of one group beside its entries and blocks: its `GroupLog` (locks, checkpoint,
/// an empty ring, metadata), its share of the engine's group map and the first node of its block
/// index (a B-tree leaf is allocated whole). Measured in docs/performance.md, "Many groups".
const GROUP_COST: u64 = 1024;

/// The fixed shares of one engine's budget.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    /// The ring's share before the fixed costs below come out of it.
    ring_share: u64,
    /// redb's page cache.
    redb_cache: u64,
    /// A compaction round's working memory (compressed blocks, redb's dirty pages).
    round: u64,
    /// What no counter sees but the process still holds because of the engine: memory the
    /// allocator keeps after the engine freed it (blocks and entries churn at a high rate), blocks
    /// that readers still hold after the cache dropped them. Measured with `tierlog bench`
    /// (docs/performance.md, "Where the RSS goes"): without this share the process peaked about a
    /// third above the budget while the engine's live heap stayed inside it.
    unseen: u64,
    /// The cold tier's compression dictionary once trained: its bytes and zstd's decoding and
    /// compression tables (about 125 KiB for the default 16 KiB at level 1; over 0.5 MiB from level 3 up).
    dictionary: u64,
}

/// The share of the budget set aside for `Budget::unseen`.
const UNSEEN_DIVISOR: u64 = 8;

impl Budget {
    pub(crate) fn new(config: &Config) -> Self {
        Budget {
            ring_share: config.ring_budget_bytes(),
            redb_cache: (config.memory_budget_bytes / 32).clamp(256 << 10, 16 << 20),
            round: (config.memory_budget_bytes / 8).min(2 * MAX_ROUND_RAW_BYTES),
            unseen: config.memory_budget_bytes / UNSEEN_DIVISOR,
            dictionary: crate::cold::dict::memory_estimate(
                config.dictionary_bytes as usize,
                config.compression_level,
            ),
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

    /// The share set aside for memory no counter sees (allocator slack, blocks readers hold).
    pub(crate) fn unseen_bytes(&self) -> u64 {
        self.unseen
    }

    /// The share set aside for the compression dictionary.
    pub(crate) fn dictionary_bytes(&self) -> u64 {
        self.dictionary
    }

    /// Accounted memory of a block index of `blocks` entries.
    pub(crate) fn index_bytes(&self, blocks: usize) -> u64 {
        blocks as u64 * INDEX_ENTRY_COST
    }

    /// Accounted memory of `groups` groups' own structures.
    pub(crate) fn group_bytes(&self, groups: usize) -> u64 {
        groups as u64 * GROUP_COST
    }

    /// Bytes the rings together may hold while the block indexes have `blocks` entries over
    /// `groups` groups.
    pub(crate) fn ring_bytes(&self, blocks: usize, groups: usize) -> u64 {
        self.ring_share
            .saturating_sub(self.redb_cache)
            .saturating_sub(self.round)
            .saturating_sub(self.unseen)
            .saturating_sub(self.dictionary)
            .saturating_sub(self.index_bytes(blocks))
            .saturating_sub(self.group_bytes(groups))
    }
}
