//! Helpers shared by the reliability tests (crash loop, model test, concurrency stress, faults,
//! corruption): a seeded PRNG, deterministic payloads and small engine configurations that make
//! compaction, segment rotation and recycling happen all the time.
//!
//! Every test payload is a pure function of `(index, term, seed)`. Writers never reuse a term for a
//! second write, so a stale entry that comes back (from a truncated or overwritten range) carries a
//! term the checker does not expect, and a payload mixed up between entries fails the byte compare.
#![allow(dead_code)]

use std::collections::BTreeMap;

use bytes::Bytes;
use tierlog::{Config, Entry, HardState, LogId, RecoveryMode};

/// splitmix64 finaliser: a cheap bijective scrambler of a 64-bit word.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small deterministic PRNG (splitmix64); tests print their seed so a failure can be replayed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose whole stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(mix(seed ^ 0x5EED_5EED_5EED_5EED))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (0 when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `lo..=hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.below(hi - lo + 1)
        }
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

/// The payload of the entry `(index, term)` in a run seeded with `seed`.
///
/// Lengths vary from empty to a few KiB (so blocks hold very different entry counts) and the bytes
/// are half repetitive, so zstd has something to compress.
pub fn payload(index: u64, term: u64, seed: u64) -> Bytes {
    let h = mix(index ^ mix(term ^ mix(seed)));
    let len = match h % 32 {
        0 => 0,
        1 => 1_000 + (h >> 8) % 3_000,
        _ => 8 + (h >> 8) % 300,
    } as usize;
    let mut out = Vec::with_capacity(len);
    let mut word = h;
    let mut n = 0u64;
    while out.len() < len {
        let bytes = if n.is_multiple_of(2) {
            word = mix(word);
            word.to_le_bytes()
        } else {
            (index ^ term.rotate_left(32)).to_le_bytes()
        };
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&bytes[..take]);
        n += 1;
    }
    Bytes::from(out)
}

/// The entry `(index, term)` with its deterministic payload.
pub fn entry(index: u64, term: u64, seed: u64) -> Entry {
    Entry::new(index, term, payload(index, term, seed))
}

/// A batch `first..first+len` all of term `term`.
pub fn batch(first: u64, len: u64, term: u64, seed: u64) -> Vec<Entry> {
    (first..first + len).map(|i| entry(i, term, seed)).collect()
}

/// The smallest configuration `Config::validate` accepts, tuned so that every few dozen KiB of
/// appends rotate a segment and trigger a compaction round, and the ring must evict to stay in budget.
pub fn tiny_config() -> Config {
    Config {
        memory_budget_bytes: 1 << 20,
        block_cache_fraction: 0.25,
        sync_on_persist: false,
        segment_bytes: 64 << 10,
        recycle_segments: 2,
        block_target_bytes: 4 << 10,
        compression_level: 1,
        compaction_trigger_bytes: 16 << 10,
        hot_tail_entries: 16,
        compaction_interval_ms: 5,
        recovery_mode: RecoveryMode::TolerateTornTail,
    }
}

/// What the log should hold: index -> term (payloads follow from the seed), the purge boundary,
/// and the last saved hard state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    /// Live entries, index -> term.
    pub entries: BTreeMap<u64, u64>,
    /// Highest purged log id.
    pub boundary: Option<LogId>,
    /// Last saved hard state.
    pub hard: Option<HardState>,
}

impl Model {
    /// Index of the purge boundary (0 when none).
    pub fn boundary_index(&self) -> u64 {
        self.boundary.map_or(0, |b| b.index)
    }

    /// The contract's `last_index()`: last entry, else the purge boundary's index, else 0.
    pub fn last_index(&self) -> u64 {
        self.entries
            .last_key_value()
            .map_or(self.boundary_index(), |(i, _)| *i)
    }

    /// First live index, if any.
    pub fn first_index(&self) -> Option<u64> {
        self.entries.first_key_value().map(|(i, _)| *i)
    }

    /// Highest term held by any live entry or the boundary (0 when none).
    pub fn max_term(&self) -> u64 {
        let e = self.entries.values().copied().max().unwrap_or(0);
        e.max(self.boundary.map_or(0, |b| b.term))
    }

    /// True when a batch starting at `first` (non-empty, contiguous) would be accepted.
    pub fn accepts_batch_at(&self, first: u64) -> bool {
        first > 0
            && first > self.boundary_index()
            && (self.entries.is_empty() || first <= self.last_index() + 1)
    }

    /// Upsert of a contiguous batch of one term.
    pub fn persist(&mut self, first: u64, len: u64, term: u64) {
        for i in first..first + len {
            self.entries.insert(i, term);
        }
    }

    /// Remove `[from, ∞)`.
    pub fn truncate(&mut self, from: u64) {
        self.entries.split_off(&from);
    }

    /// Remove `[1, cutoff.index]` and remember the boundary (a cutoff at or below the current one
    /// changes nothing).
    pub fn purge(&mut self, cutoff: LogId) {
        if cutoff.index == 0 || cutoff.index <= self.boundary_index() {
            return;
        }
        self.entries = self.entries.split_off(&(cutoff.index + 1));
        self.boundary = Some(cutoff);
    }

    /// Clear entries and the boundary, keep the hard state.
    pub fn reset(&mut self) {
        self.entries.clear();
        self.boundary = None;
    }

    /// The entries of `lo..=hi` that exist, with their payloads.
    pub fn slice(&self, lo: u64, hi: u64, seed: u64) -> Vec<Entry> {
        if lo > hi {
            return Vec::new();
        }
        self.entries
            .range(lo..=hi)
            .map(|(i, t)| entry(*i, *t, seed))
            .collect()
    }
}

/// Describes the first difference between two entry lists (for readable failures).
pub fn diff_entries(got: &[Entry], want: &[Entry]) -> Option<String> {
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        if g != w {
            return Some(format!(
                "position {k}: got (index {}, term {}, {} bytes), want (index {}, term {}, {} bytes){}",
                g.index,
                g.term,
                g.payload.len(),
                w.index,
                w.term,
                w.payload.len(),
                if g.index == w.index && g.term == w.term {
                    " (payload bytes differ)"
                } else {
                    ""
                }
            ));
        }
    }
    if got.len() != want.len() {
        let show = |v: &[Entry]| {
            v.first()
                .map(|e| format!("{}..={}", e.index, v.last().map_or(0, |l| l.index)))
                .unwrap_or_else(|| "nothing".into())
        };
        return Some(format!(
            "got {} entries ({}), want {} ({})",
            got.len(),
            show(got),
            want.len(),
            show(want)
        ));
    }
    None
}

/// Copies a store directory (for post-mortems and for damaging a copy). A live engine's background
/// round may rename a file while it is copied (a segment retired to a spare, a spare put in place);
/// a copy taken while the file names changed is taken again, so the copy never lacks a file that
/// existed under one name or the other throughout.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for _ in 0..100 {
        std::fs::remove_dir_all(to).ok();
        let before = names(from);
        match try_copy_dir(from, to) {
            Ok(()) if names(from) == before => return,
            Ok(()) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("copy {} to {}: {e}", from.display(), to.display()),
        }
    }
    panic!("copy {}: files kept vanishing", from.display());
}

/// Every path under `dir`, sorted.
fn names(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for ent in rd.flatten() {
            out.push(ent.path());
            if ent.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(names(&ent.path()));
            }
        }
    }
    out.sort();
    out
}

fn try_copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for ent in std::fs::read_dir(from)? {
        let ent = ent?;
        let target = to.join(ent.file_name());
        if ent.file_type()?.is_dir() {
            try_copy_dir(&ent.path(), &target)?;
        } else {
            std::fs::copy(ent.path(), &target)?;
        }
    }
    Ok(())
}

/// The configuration of [`offline_store`]: `tiny_config` with 64 KiB segments, but compaction only
/// when asked (or when the ring outgrows 8 MiB).
pub fn offline_store_config() -> Config {
    Config {
        memory_budget_bytes: 8 << 20,
        compaction_trigger_bytes: 4 << 20,
        ..tiny_config()
    }
}

/// A store for the offline tools' tests: entries 1..=3000 (the term of each 25-entry batch is its
/// number), those up to about 2000 in cold blocks (one compaction after 2000 was written), the rest
/// in several write-ahead segments only, all flushed; a hard state (terms 7, 8) and an
/// application-metadata blob saved twice each, so both slots of their files are written. Closed
/// cleanly.
pub async fn offline_store(dir: &std::path::Path, seed: u64) {
    use tierlog::{LogStore, MetaStore, StorageEngine, TieredEngine};
    let e = TieredEngine::open(dir, offline_store_config()).await.unwrap();
    let log = e.log_store();
    for (term, first) in (1..=3000).step_by(25).enumerate() {
        log.persist_entries(batch(first, 25, term as u64 + 1, seed))
            .await
            .unwrap();
        if first == 1976 {
            e.compact_now().await.unwrap();
        }
    }
    log.flush().unwrap();
    let meta = e.meta_store();
    for term in [7, 8] {
        meta.save_hard_state(&HardState {
            current_term: term,
            voted_for: None,
        })
        .unwrap();
        meta.save_app_meta(format!("blob of term {term}").as_bytes())
            .unwrap();
    }
    e.close().await.unwrap();
}

/// Flips a byte in the middle of the cold block holding `index`; returns the block's first index.
pub fn damage_block(dir: &std::path::Path, index: u64) -> u64 {
    let db = redb::Database::open(dir.join("cold.redb")).unwrap();
    let tx = db.begin_write().unwrap();
    let first = {
        use redb::ReadableTable;
        let mut t = tx
            .open_table(redb::TableDefinition::<u64, &[u8]>::new("blocks"))
            .unwrap();
        let first = t
            .range(..=index)
            .unwrap()
            .next_back()
            .expect("a block at or below the index")
            .unwrap()
            .0
            .value();
        let mut v = t.get(first).unwrap().unwrap().value().to_vec();
        let mid = v.len() / 2;
        v[mid] ^= 0x10;
        t.insert(first, v.as_slice()).unwrap();
        first
    };
    tx.commit().unwrap();
    first
}
