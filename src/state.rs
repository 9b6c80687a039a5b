//! The in-memory view of the log: the hot ring, the cold tier's index and bounds, and the rules that
//! apply each write-ahead record to them. The same `apply` runs on the write path and on recovery
//! replay, so what recovery rebuilds is what the writer had.
//!
//! Indices `[first, last]` exist. Those at or above `ring.first()` are served by the ring; the ones
//! below are served by cold blocks, which are valid for `(lo, cold.hi]` except from `cold.dirty_from`
//! on, where the ring shadows stale block content until the compactor rewrites it.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cold::block::BlockMeta;
use crate::cold::reader::Hint;
use crate::cold::store::{BlockIndex, Checkpoint};
use crate::error::{Error, Result};
use crate::hot::Ring;
use crate::meta::LoggedMeta;
use crate::proto::{Entry, LogId};
use crate::wal::Record;

/// The cold tier as readers and the compactor see it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ColdView {
    /// Blocks as committed in redb (may include blocks above `hi` or below `lo` not yet deleted).
    pub blocks: Arc<BlockIndex>,
    /// Cold blocks serve indices up to here.
    pub hi: u64,
    /// From here up, block content is stale (overwritten in the ring); always `<= hi`.
    pub dirty_from: Option<u64>,
}

/// A mutation's effect on the cold view, kept while a compaction round is in flight so the round's
/// result can be brought up to date before it is published.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ColdEffect {
    Overwrite(u64),
    Truncate(u64),
    Purge(u64),
    Reset,
}

#[derive(Debug)]
pub(crate) struct LogState {
    pub ring: Ring,
    pub cold: ColdView,
    pub purged: Option<LogId>,
    /// First existing index; `first > last` means the log is empty (then `last` is the boundary).
    pub first: u64,
    pub last: u64,
    /// Sequence number of the last write-ahead record applied.
    pub seq: u64,
    /// Cold effects since the in-flight compaction round took its snapshot.
    pub in_flight: Option<Vec<ColdEffect>>,
    /// Hard state and metadata of a group that keeps them in the write-ahead log (not group 0).
    pub meta: LoggedMeta,
}

/// Shortest cold range read whose successor is decoded ahead.
const READ_AHEAD_MIN_ENTRIES: u64 = 32;
/// Most blocks one read-ahead hint covers (about 12 MiB raw with the default packing).
const READ_AHEAD_MAX_BLOCKS: usize = 64;

/// What a read must fetch: hot entries already cloned, plus the cold blocks for `[cold_from, cold_to]`.
pub(crate) struct ReadPlan {
    pub hot: Vec<Entry>,
    pub cold: Option<(u64, u64, Vec<BlockMeta>)>,
    /// The range right after a cold range read, as long as it (within the cold tier): a sequential
    /// reader (a follower catching up) will want it next, so it is worth decompressing ahead of
    /// time. Point reads and short reads get none (they are rarely sequential).
    pub ahead: Option<Hint>,
}

impl LogState {
    /// The state a checkpoint describes (with the group's metadata as of it), before any
    /// write-ahead record is replayed.
    pub(crate) fn from_checkpoint(cp: &Checkpoint, blocks: BlockIndex, meta: LoggedMeta) -> Self {
        let lo = cp.purged.map_or(0, |p| p.index);
        let hi = cp.cold_hi.max(lo);
        let first_block = blocks.values().find(|m| m.last > lo).map(|m| m.first.max(lo + 1));
        let (first, last) = match first_block {
            Some(f) if f <= hi => (f, hi),
            _ => (lo + 1, lo),
        };
        LogState {
            ring: Ring::new(hi + 1),
            cold: ColdView {
                blocks: Arc::new(blocks),
                hi,
                dirty_from: None,
            },
            purged: cp.purged,
            first,
            last,
            seq: cp.applied_seq,
            in_flight: None,
            meta,
        }
    }

    /// Index of the purge boundary (0 when nothing was purged): everything at or below it is gone.
    pub(crate) fn purged_index(&self) -> u64 {
        self.purged.map_or(0, |p| p.index)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first > self.last
    }

    /// Checks a batch for `persist_entries` (already known contiguous and ascending, index >= 1).
    /// Returns the range of cold entries the ring must take back when the batch overwrites below it.
    pub(crate) fn check_append(&self, batch: &[Entry]) -> Result<Option<(u64, u64)>> {
        let (Some(head), Some(tail)) = (batch.first(), batch.last()) else {
            return Ok(None);
        };
        let (k, m) = (head.index, tail.index);
        if k <= self.purged_index() {
            return Err(Error::InvalidInput(format!(
                "entry {k} is at or below the purge boundary {}",
                self.purged_index()
            )));
        }
        if self.is_empty() {
            return Ok(None);
        }
        if k > self.last + 1 {
            return Err(Error::InvalidInput(format!(
                "entry {k} would leave a hole after the last index {}",
                self.last
            )));
        }
        if k < self.first && m + 1 < self.first {
            return Err(Error::InvalidInput(format!(
                "entries {k}..={m} would leave a hole before the first index {}",
                self.first
            )));
        }
        let ring_first = self.ring.first();
        if k < ring_first && m + 1 < ring_first {
            return Ok(Some((m + 1, ring_first - 1)));
        }
        Ok(None)
    }

    /// Checks `replace_range(from, entries)`.
    pub(crate) fn check_replace(&self, from: u64, entries: &[Entry]) -> Result<()> {
        if from == 0 {
            return Err(Error::InvalidInput("replace_range from index 0".into()));
        }
        if let Some(head) = entries.first()
            && head.index != from
        {
            return Err(Error::InvalidInput(format!(
                "replace_range({from}, ..) entries start at {}",
                head.index
            )));
        }
        if entries.is_empty() {
            return Ok(());
        }
        if from <= self.purged_index() {
            return Err(Error::InvalidInput(format!(
                "replace_range({from}, ..) is at or below the purge boundary {}",
                self.purged_index()
            )));
        }
        let empties = self.is_empty() || from <= self.first;
        if !empties && from > self.last + 1 {
            return Err(Error::InvalidInput(format!(
                "replace_range({from}, ..) would leave a hole after the last index {}",
                self.last
            )));
        }
        Ok(())
    }

    fn note(&mut self, effect: ColdEffect) {
        self.cold_effect(effect);
        if let Some(list) = &mut self.in_flight {
            list.push(effect);
        }
    }

    /// How a mutation changes the cold view (also replayed onto a freshly committed view).
    pub(crate) fn cold_effect(&mut self, effect: ColdEffect) {
        let c = &mut self.cold;
        match effect {
            ColdEffect::Overwrite(k) => {
                if k <= c.hi {
                    c.dirty_from = Some(c.dirty_from.map_or(k, |d| d.min(k)));
                }
            }
            ColdEffect::Truncate(from) => c.hi = c.hi.min(from.saturating_sub(1)),
            ColdEffect::Purge(cut) => {
                c.hi = c.hi.max(cut);
                c.dirty_from = c.dirty_from.map(|d| d.max(cut + 1));
            }
            ColdEffect::Reset => {
                c.hi = 0;
                c.dirty_from = None;
            }
        }
        let hi = c.hi;
        c.dirty_from = c.dirty_from.filter(|d| *d <= hi);
    }

    /// Applies one record. `rehydrated`: cold entries the ring must take back for a deep overwrite
    /// (see `check_append`).
    pub(crate) fn apply(&mut self, seq: u64, rec: Record, rehydrated: Vec<Entry>) {
        self.seq = self.seq.max(seq);
        match rec {
            Record::Append(es) => self.append(es, rehydrated),
            Record::Replace { from, entries } => {
                self.truncate(from);
                self.append(entries, Vec::new());
            }
            Record::Truncate { from } => self.truncate(from),
            Record::Purge { cutoff } => self.purge(cutoff),
            Record::Reset => self.reset(),
            Record::HardState(hs) => self.meta.hard_state = Some(hs),
            Record::AppMeta(blob) => self.meta.app_meta = Some(blob),
            // The engine creates and removes groups; the seal is not an operation on a log.
            Record::Seal | Record::CreateGroup | Record::RemoveGroup => {}
        }
    }

    /// Recovery: puts the entries above the cold checkpoint (rebuilt from the records it covers)
    /// into the ring. They must continue the cold part without a gap.
    pub(crate) fn install_above(&mut self, above: BTreeMap<u64, Entry>, seq: u64) -> Result<()> {
        self.seq = self.seq.max(seq);
        let Some(&k) = above.keys().next() else {
            return Ok(());
        };
        let gap = |at: u64| {
            Err(Error::corruption_at_index(
                "wal",
                at,
                format!("write-ahead records leave index {at} missing above the cold checkpoint"),
            ))
        };
        if !self.is_empty() && k != self.last + 1 {
            return gap(self.last + 1);
        }
        if self.is_empty() {
            self.ring.clear(k);
            self.first = k;
        }
        for (i, e) in above.into_values().enumerate() {
            if e.index != k + i as u64 {
                return gap(k + i as u64);
            }
            self.last = e.index;
            self.ring.push_back(e);
        }
        Ok(())
    }

    fn append(&mut self, batch: Vec<Entry>, rehydrated: Vec<Entry>) {
        let (Some(k), Some(m)) = (batch.first().map(|e| e.index), batch.last().map(|e| e.index)) else {
            return;
        };
        if self.is_empty() {
            self.ring.clear(k);
            batch.into_iter().for_each(|e| self.ring.push_back(e));
            self.first = k;
            self.last = m;
            if k <= self.cold.hi {
                self.note(ColdEffect::Truncate(k));
            }
            return;
        }
        if k == self.last + 1 {
            batch.into_iter().for_each(|e| self.ring.push_back(e));
            self.last = m;
            return;
        }
        if k < self.ring.first() {
            let mut old = std::mem::replace(&mut self.ring, Ring::new(k));
            old.drop_before(m + 1);
            for e in batch.into_iter().chain(rehydrated).chain(old.take_all()) {
                self.ring.push_back(e);
            }
        } else {
            self.ring.overwrite(batch);
        }
        self.first = self.first.min(k);
        self.last = self.last.max(m);
        self.note(ColdEffect::Overwrite(k));
    }

    fn truncate(&mut self, from: u64) {
        if self.is_empty() || from > self.last {
            return;
        }
        if from <= self.first {
            let lo = self.purged_index();
            self.ring.clear(lo + 1);
            self.first = lo + 1;
            self.last = lo;
        } else {
            self.ring.truncate_from(from);
            self.last = from - 1;
        }
        self.note(ColdEffect::Truncate(from));
    }

    fn purge(&mut self, cutoff: LogId) {
        let c = cutoff.index;
        if c == 0 || c <= self.purged_index() {
            return;
        }
        self.purged = Some(cutoff);
        if self.is_empty() || c >= self.last {
            self.ring.clear(c + 1);
            self.first = c + 1;
            self.last = c;
        } else if c >= self.first {
            self.ring.drop_before(c + 1);
            self.first = c + 1;
        }
        self.note(ColdEffect::Purge(c));
    }

    fn reset(&mut self) {
        self.ring.clear(1);
        self.purged = None;
        self.first = 1;
        self.last = 0;
        self.note(ColdEffect::Reset);
    }

    /// Index the log reports as last (the boundary when empty).
    pub(crate) fn last_index(&self) -> u64 {
        if self.is_empty() {
            self.purged_index()
        } else {
            self.last
        }
    }

    /// Entries above the cold tier's high-water mark (in the ring only): the compaction lag.
    pub(crate) fn lag_entries(&self) -> u64 {
        self.last_index().saturating_sub(self.cold.hi)
    }

    /// Accounted ring bytes above the cold tier's high-water mark (estimated from the ring's mean
    /// entry size): what compaction has still to move.
    pub(crate) fn lag_bytes(&self) -> u64 {
        self.ring.estimate_bytes_from(self.cold.hi + 1)
    }

    /// Highest ring index that may be dropped from memory: its cold copy is committed and current.
    pub(crate) fn evictable_upto(&self) -> u64 {
        let clean = self.cold.dirty_from.map_or(self.cold.hi, |d| d - 1);
        clean.min(self.cold.hi)
    }

    /// Drops clean ring entries, oldest first, until the ring holds at most `budget` bytes.
    pub(crate) fn evict(&mut self, budget: u64) {
        let upto = self.evictable_upto();
        while self.ring.bytes() > budget && self.ring.len() > 0 && self.ring.first() <= upto {
            self.ring.pop_front();
        }
    }

    /// What `get_entries(a..=b)` must fetch.
    pub(crate) fn plan_read(&self, a: u64, b: u64) -> ReadPlan {
        let (a, b) = (a.max(self.first), b.min(self.last));
        if self.is_empty() || a > b {
            return ReadPlan {
                hot: Vec::new(),
                cold: None,
                ahead: None,
            };
        }
        let rf = self.ring.first();
        let hot = self.ring.range(a.max(rf), b);
        let cold = (a < rf).then(|| {
            let to = b.min(rf - 1);
            let metas: Vec<BlockMeta> = self
                .cold
                .blocks
                .range(..=to)
                .rev()
                .take_while(|(_, m)| m.last >= a)
                .map(|(_, m)| *m)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            (a, to, metas)
        });
        let ahead = cold.as_ref().and_then(|&(from, to, _)| {
            let len = to - from + 1;
            if to != b || len < READ_AHEAD_MIN_ENTRIES {
                return None;
            }
            let end = to.saturating_add(len).min(rf - 1).min(self.cold.hi);
            let metas: Vec<BlockMeta> = self
                .cold
                .blocks
                .range(..=end)
                .rev()
                .take_while(|(_, m)| m.last > to)
                .map(|(_, m)| *m)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .take(READ_AHEAD_MAX_BLOCKS)
                .collect();
            let last = metas.last()?.last.min(end);
            (end > to && metas[0].first <= to + 1).then_some(Hint {
                from: to + 1,
                to: last,
                metas,
            })
        });
        ReadPlan { hot, cold, ahead }
    }
}
