//! One Raft group's part of an open engine: its log in memory, its durable cold checkpoint and
//! where its hard state lives. The engine's shared parts (write-ahead log, cold store, budget) are
//! in `core`; a group holds only what is its own, so an idle group costs a few hundred bytes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::cold::store::Checkpoint;
use crate::error::{Error, Result};
use crate::meta::{AppMetaFile, HardStateFile};
use crate::proto::GroupId;
use crate::state::LogState;
use crate::stats::GroupStats;
use crate::wal::Covered;

/// Group 0's metadata files.
pub(crate) struct MetaFiles {
    pub hard_state: HardStateFile,
    pub app_meta: AppMetaFile,
}

/// Where a group's hard state and application metadata live.
pub(crate) enum MetaHome {
    /// Group 0: in two-slot files of their own, as before groups existed (boxed: every other
    /// group would otherwise carry their size).
    Files(Box<MetaFiles>),
    /// Every other group: in the write-ahead log (a record, then an fdatasync shared with other
    /// groups' flushes) and in the group's cold checkpoint row; the current values are in the
    /// group's `LogState`.
    Logged,
}

pub(crate) struct GroupLog {
    pub(crate) id: GroupId,
    /// The log in memory: the ring and the view of the cold tier.
    pub(crate) state: RwLock<LogState>,
    /// Mirror of `state.last_index()` so `last_index()` takes no lock.
    last_index: AtomicU64,
    /// What `state` held the last time the engine's totals were updated (`Totals::publish`).
    published: Mutex<Published>,
    /// The cold checkpoint the last commit made durable for this group.
    pub(crate) checkpoint: Mutex<Checkpoint>,
    pub(crate) meta: MetaHome,
    /// The file holds blocks or a row of an earlier group of this id that the next commit must
    /// delete (set when the group is created over one whose removal was not committed yet).
    wipe: AtomicBool,
    /// No commit has written the group's row yet (a group created since).
    unwritten: AtomicBool,
    /// Set when the group is removed: its handles fail with `Error::Closed`.
    removed: AtomicBool,
}

/// What a group last contributed to the engine's totals.
#[derive(Default)]
struct Published {
    ring_bytes: u64,
    blocks: u64,
}

/// The sums over every group that the memory budget needs, kept without visiting the groups.
#[derive(Default)]
pub(crate) struct Totals {
    ring_bytes: AtomicU64,
    blocks: AtomicU64,
    groups: AtomicU64,
}

impl Totals {
    /// Accounted bytes of every group's ring.
    pub(crate) fn ring_bytes(&self) -> u64 {
        self.ring_bytes.load(Ordering::Acquire)
    }

    /// Blocks in every group's index.
    pub(crate) fn blocks(&self) -> u64 {
        self.blocks.load(Ordering::Acquire)
    }

    /// Groups in memory (removed ones until their deletion commits).
    pub(crate) fn groups(&self) -> u64 {
        self.groups.load(Ordering::Acquire)
    }
}

/// How a group comes to be.
pub(crate) struct Opening {
    pub id: GroupId,
    pub state: LogState,
    pub checkpoint: Checkpoint,
    pub meta: MetaHome,
    /// See `GroupLog::wipe`.
    pub wipe: bool,
    /// See `GroupLog::unwritten`.
    pub unwritten: bool,
    /// Removed, its deletion not committed yet.
    pub removed: bool,
}

impl GroupLog {
    pub(crate) fn new(o: Opening, totals: &Totals) -> GroupLog {
        let g = GroupLog {
            id: o.id,
            last_index: AtomicU64::new(o.state.last_index()),
            state: RwLock::new(o.state),
            published: Mutex::new(Published::default()),
            checkpoint: Mutex::new(o.checkpoint),
            meta: o.meta,
            wipe: AtomicBool::new(o.wipe),
            unwritten: AtomicBool::new(o.unwritten),
            removed: AtomicBool::new(o.removed),
        };
        totals.groups.fetch_add(1, Ordering::AcqRel);
        g.publish(&g.state.read(), totals);
        g
    }

    /// The log's last index (see `LogStore::last_index`), without a lock.
    pub(crate) fn last_index(&self) -> u64 {
        self.last_index.load(Ordering::Acquire)
    }

    /// Publishes `st`'s last index and its share of the engine's totals; called under the state
    /// write lock after every change.
    pub(crate) fn publish(&self, st: &LogState, totals: &Totals) {
        self.last_index.store(st.last_index(), Ordering::Release);
        let mut p = self.published.lock();
        let now = Published {
            ring_bytes: st.ring.bytes(),
            blocks: st.cold.blocks.len() as u64,
        };
        totals.ring_bytes.fetch_add(now.ring_bytes, Ordering::AcqRel);
        totals.ring_bytes.fetch_sub(p.ring_bytes, Ordering::AcqRel);
        totals.blocks.fetch_add(now.blocks, Ordering::AcqRel);
        totals.blocks.fetch_sub(p.blocks, Ordering::AcqRel);
        *p = now;
    }

    /// Takes the group's share out of the totals (it is gone from memory).
    pub(crate) fn unpublish(&self, totals: &Totals) {
        totals.groups.fetch_sub(1, Ordering::AcqRel);
        let p = std::mem::take(&mut *self.published.lock());
        totals.ring_bytes.fetch_sub(p.ring_bytes, Ordering::AcqRel);
        totals.blocks.fetch_sub(p.blocks, Ordering::AcqRel);
    }

    /// What segment retirement needs of the group's durable checkpoint.
    pub(crate) fn covered(&self) -> Covered {
        covered_by(&self.checkpoint.lock())
    }

    /// The group's figures (see [`GroupStats`]).
    pub(crate) fn stats(&self) -> GroupStats {
        let st = self.state.read();
        let lo = st.purged_index();
        let live = st.cold.blocks.values().filter(|m| m.last > lo);
        let (mut cold_blocks, mut raw, mut stored) = (0, 0, 0);
        for m in live {
            cold_blocks += 1;
            raw += m.raw_len;
            stored += m.stored_len;
        }
        GroupStats {
            group: self.id,
            first_index: if st.is_empty() { 0 } else { st.first },
            last_index: st.last_index(),
            purge_boundary: st.purged,
            hot_entries: st.ring.len(),
            hot_bytes: st.ring.bytes(),
            cold_blocks,
            cold_raw_bytes: raw,
            cold_stored_bytes: stored,
            compaction_high_water: self.checkpoint.lock().cold_hi,
            compaction_lag_entries: st.lag_entries(),
            compaction_lag_bytes: st.lag_bytes(),
        }
    }

    pub(crate) fn check_live(&self) -> Result<()> {
        if self.is_removed() {
            return Err(Error::Closed(format!("group {} was removed", self.id)));
        }
        Ok(())
    }

    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    pub(crate) fn mark_removed(&self) {
        self.removed.store(true, Ordering::Release);
    }

    /// Whether the next commit must first delete what an earlier group of this id left.
    pub(crate) fn needs_wipe(&self) -> bool {
        self.wipe.load(Ordering::Acquire)
    }

    /// Whether the group's row still has to be written.
    pub(crate) fn is_unwritten(&self) -> bool {
        self.unwritten.load(Ordering::Acquire)
    }

    /// A commit wrote the group's row (and wiped what the id held before).
    pub(crate) fn written(&self) {
        self.wipe.store(false, Ordering::Release);
        self.unwritten.store(false, Ordering::Release);
    }
}

/// What segment retirement needs of a group's checkpoint.
pub(crate) fn covered_by(cp: &Checkpoint) -> Covered {
    Covered {
        applied_seq: cp.applied_seq,
        cold_hi: cp.cold_hi,
        created_seq: cp.created_seq,
    }
}
