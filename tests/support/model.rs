//! What the log should hold, and readable differences between entry lists.

use std::collections::BTreeMap;

use tierlog::{Entry, HardState, LogId, LogStore, TierLogStore};

use super::entry;

/// What the log should hold: index -> term (payloads follow from the seed), the purge boundary,
/// and the last saved hard state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    /// Live entries, index -> term.
    pub entries: BTreeMap<u64, u64>,
    /// Payload seeds of the live entries written with a seed of their own ([`Model::persist_seeded`]);
    /// every other entry's payload comes from the seed the reader passes.
    pub seeds: BTreeMap<u64, u64>,
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
            self.seeds.remove(&i);
        }
    }

    /// Upsert of a contiguous batch of one term whose payloads were made with `seed` (a write
    /// that may reuse an `(index, term)` pair gives itself a fresh seed, so the two writes differ).
    pub fn persist_seeded(&mut self, first: u64, len: u64, term: u64, seed: u64) {
        for i in first..first + len {
            self.entries.insert(i, term);
            self.seeds.insert(i, seed);
        }
    }

    /// Remove `[from, ∞)`.
    pub fn truncate(&mut self, from: u64) {
        self.entries.split_off(&from);
        self.seeds.split_off(&from);
    }

    /// Remove `[1, cutoff.index]` and remember the boundary (a cutoff at or below the current one
    /// changes nothing).
    pub fn purge(&mut self, cutoff: LogId) {
        if cutoff.index == 0 || cutoff.index <= self.boundary_index() {
            return;
        }
        self.entries = self.entries.split_off(&(cutoff.index + 1));
        self.seeds = self.seeds.split_off(&(cutoff.index + 1));
        self.boundary = Some(cutoff);
    }

    /// Clear entries and the boundary, keep the hard state.
    pub fn reset(&mut self) {
        self.entries.clear();
        self.seeds.clear();
        self.boundary = None;
    }

    /// The entry at `index`, if live, with its payload (`seed` unless it was written with its own).
    pub fn entry(&self, index: u64, seed: u64) -> Option<Entry> {
        let term = *self.entries.get(&index)?;
        Some(entry(index, term, *self.seeds.get(&index).unwrap_or(&seed)))
    }

    /// The entries of `lo..=hi` that exist, with their payloads.
    pub fn slice(&self, lo: u64, hi: u64, seed: u64) -> Vec<Entry> {
        if lo > hi {
            return Vec::new();
        }
        self.entries
            .range(lo..=hi)
            .map(|(i, t)| entry(*i, *t, *self.seeds.get(i).unwrap_or(&seed)))
            .collect()
    }
}

/// Whether `log` holds exactly the log `m` describes (payloads from `seed`): its last index, its
/// purge boundary and every entry, none past the last. `Err` says the first difference.
pub fn log_matches(log: &TierLogStore, m: &Model, seed: u64) -> Result<(), String> {
    if log.last_index() != m.last_index() {
        return Err(format!("last_index {} vs {}", log.last_index(), m.last_index()));
    }
    let b = log.load_purge_boundary().map_err(|e| e.to_string())?;
    if b != m.boundary {
        return Err(format!("boundary {b:?} vs {:?}", m.boundary));
    }
    let got = log
        .get_entries(0..=m.last_index() + 10)
        .map_err(|e| e.to_string())?;
    match diff_entries(&got, &m.slice(0, m.last_index() + 10, seed)) {
        Some(d) => Err(d),
        None => Ok(()),
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
