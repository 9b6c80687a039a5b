//! What every test binary shares: one seeded random generator, one payload scheme, one model of
//! what the log should hold, one set of engine configurations, and a harness that reopens or
//! compacts an engine between the operations of a contract test.
//!
//! Every test payload is a pure function of `(index, term, seed)`. Writers that compare against a
//! [`Model`] never reuse a term for a second write (or give the write its own seed), so a stale
//! entry that comes back from a truncated or overwritten range carries a term or bytes the checker
//! does not expect, and a payload mixed up between entries fails the byte compare.
#![allow(dead_code, unused_imports, unused_macros)]

pub mod config;
mod files;
#[macro_use]
mod harness;
mod model;

pub use files::{copy_dir, damage_block, offline_store};
pub use harness::{Harness, Mode, Snapshot, cat, indexes};
pub use model::{Model, diff_entries, log_matches};

use bytes::Bytes;
use tierlog::Entry;

/// A number from the environment (how long a long run is, which seed it replays), if set.
pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The seed of tests that need no particular one.
pub const SEED: u64 = 0x7E57;

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
/// Lengths vary from empty to a few KiB (so blocks hold very different entry counts and block
/// boundaries fall at irregular indexes) and the bytes are half repetitive, so zstd has something
/// to compress. The stores under `tests/fixtures/` were written with these bytes: changing this
/// function fails the fixture tests.
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

/// True when `e` carries the payload its index and term imply under `seed`.
pub fn is_intact(e: &Entry, seed: u64) -> bool {
    e.payload == payload(e.index, e.term, seed)
}

// Shorthands of the contract tests, which write with [`SEED`].

/// Entry `index` written in `term`.
pub fn ent(index: u64, term: u64) -> Entry {
    entry(index, term, SEED)
}

/// Entries `range` all written in `term`.
pub fn ents(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| ent(i, term)).collect()
}

/// Entries with explicit indexes (for malformed batches).
pub fn ents_at(indexes: &[u64], term: u64) -> Vec<Entry> {
    indexes.iter().map(|&i| ent(i, term)).collect()
}
