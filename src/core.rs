//! The parts of one open engine, shared by its handles (the read and write paths in `log_store`)
//! and its compactor. Each part keeps its own fields private and its own rules; this module only
//! holds them together and says when the engine is open.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::backpressure::Backpressure;
use crate::budget::Budget;
use crate::cold::block::BlockMeta;
use crate::cold::reader::ColdReader;
use crate::cold::store::Head;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::group::{GroupLog, MetaHome, Opening, Totals};
use crate::proto::GroupId;
use crate::state::LogState;
use crate::stats::{Counters, GroupStats, Stats};
use crate::wal::{Covered, Wal};

pub(crate) struct Core {
    pub(crate) dir: PathBuf,
    pub(crate) config: Config,
    pub(crate) budget: Budget,
    /// Every live group, and removed ones until their deletion is committed.
    groups: RwLock<BTreeMap<GroupId, Arc<GroupLog>>>,
    /// Sums over the groups that the budget needs.
    pub(crate) totals: Totals,
    pub(crate) wal: Wal,
    pub(crate) cold: ColdReader,
    /// What the last commit made durable beside the groups (the compactor's to update).
    pub(crate) head: Mutex<Head>,
    pub(crate) counters: Counters,
    pub(crate) backpressure: Backpressure,
    /// What the metrics recorder last got of `counters` and the cache's totals.
    metrics: crate::metrics::Mirror,
    closed: AtomicBool,
    /// The directory lock, released on close (not when the last handle drops) so the directory can
    /// be reopened at once.
    lock: Mutex<Option<File>>,
    /// Some ring may hold clean entries that no eviction walk has seen since: set when a round
    /// publishes (or a write brings cold entries back into a ring), cleared by a walk that starts.
    /// Without it every writer waiting for memory walked every group, also when nothing was clean
    /// (at 1,000 groups that was 7 % of the CPU of the many-groups bench).
    maybe_clean: AtomicBool,
    /// The group the last eviction walk stopped at; the next one starts there, so walks do not
    /// keep revisiting the groups they have already emptied.
    walk_from: AtomicU64,
}

/// What an engine is made of once its directory is recovered.
pub(crate) struct Parts {
    pub dir: PathBuf,
    pub config: Config,
    pub budget: Budget,
    pub groups: Vec<Opening>,
    pub wal: Wal,
    pub cold: ColdReader,
    pub head: Head,
    pub lock: File,
}

impl Core {
    pub(crate) fn new(p: Parts) -> Core {
        let totals = Totals::default();
        let groups = p
            .groups
            .into_iter()
            .map(|o| (o.id, Arc::new(GroupLog::new(o, &totals))))
            .collect();
        Core {
            groups: RwLock::new(groups),
            totals,
            dir: p.dir,
            config: p.config,
            budget: p.budget,
            wal: p.wal,
            cold: p.cold,
            head: Mutex::new(p.head),
            counters: Counters::default(),
            backpressure: Backpressure::default(),
            metrics: Default::default(),
            closed: AtomicBool::new(false),
            lock: Mutex::new(Some(p.lock)),
            maybe_clean: AtomicBool::new(true),
            walk_from: AtomicU64::new(0),
        }
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed("the engine was closed".into()));
        }
        Ok(())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Marks the engine closed with no write in flight: writers check `closed` under the writer
    /// lock, so once this returns none of them will touch the write-ahead log again.
    pub(crate) fn mark_closed(&self) {
        let _no_writer = self.wal.writer();
        self.closed.store(true, Ordering::Release);
    }

    /// Releases what another engine on the same directory would need or could be hurt by: redb's
    /// file, group 0's hard-state and application-metadata files and the directory lock. Called
    /// after the background threads have stopped. Stale handles then get [`Error::Closed`] (reads
    /// included: their view is gone).
    pub(crate) fn release_files(&self) {
        self.cold.store().close();
        if let Some(g) = self.groups.read().get(&0)
            && let MetaHome::Files(files) = &g.meta
        {
            files.hard_state.close();
            files.app_meta.close();
        }
        self.cold.cache().clear();
        self.lock.lock().take();
        self.backpressure.announce_room();
    }

    /// Group `id`, live or removed (its deletion not committed yet).
    pub(crate) fn group(&self, id: GroupId) -> Option<Arc<GroupLog>> {
        self.groups.read().get(&id).cloned()
    }

    /// Every group, live or removed (their deletion not committed yet), by id.
    pub(crate) fn groups(&self) -> Vec<Arc<GroupLog>> {
        self.groups.read().values().cloned().collect()
    }

    /// Adds a group (the caller holds the writer lock and has logged its creation).
    pub(crate) fn insert_group(&self, o: Opening) -> Arc<GroupLog> {
        let g = Arc::new(GroupLog::new(o, &self.totals));
        if let Some(old) = self.groups.write().insert(g.id, g.clone()) {
            old.mark_removed();
            old.unpublish(&self.totals);
        }
        g
    }

    /// Forgets groups whose deletion is committed.
    pub(crate) fn drop_groups(&self, ids: &[GroupId]) {
        let mut groups = self.groups.write();
        for id in ids {
            if groups.get(id).is_some_and(|g| g.is_removed())
                && let Some(g) = groups.remove(id)
            {
                g.unpublish(&self.totals);
            }
        }
    }

    /// What segment retirement needs of group `id`'s durable checkpoint (`None`: the group is
    /// gone, its deletion committed).
    pub(crate) fn covered(&self, id: GroupId) -> Option<Covered> {
        self.groups.read().get(&id).map(|g| g.covered())
    }

    /// Bytes every ring together may hold now.
    pub(crate) fn ring_budget(&self) -> u64 {
        self.budget
            .ring_bytes(self.totals.blocks() as usize, self.totals.groups() as usize)
    }

    /// Whether the rings together hold more than their budget.
    pub(crate) fn over_budget(&self) -> bool {
        self.totals.ring_bytes() > self.ring_budget()
    }

    /// Drops clean entries of `g`'s ring (`st`), oldest first, while the rings together are over
    /// their budget; the caller holds the writer lock (no writer rehydrates against the ring).
    pub(crate) fn evict(&self, g: &GroupLog, st: &mut LogState) {
        let excess = self.totals.ring_bytes().saturating_sub(self.ring_budget());
        if excess > 0 {
            let before = st.ring.bytes();
            st.evict(before.saturating_sub(excess));
            // A writer over budget calls this after every append, mostly with nothing clean to
            // drop: publishing only a change keeps it off the group's lock and the shared totals.
            if st.ring.bytes() != before {
                g.publish(st, &self.totals);
            }
        }
    }

    /// Some ring may now hold clean entries (see `maybe_clean`).
    pub(crate) fn note_clean(&self) {
        self.maybe_clean.store(true, Ordering::Release);
    }

    /// Drops clean entries of `first`'s ring, then of the other groups', while the rings together
    /// are over their budget; the caller holds the writer lock (a writer about to wait for room:
    /// clean entries of idle groups free memory without any compaction).
    pub(crate) fn evict_any(&self, first: &GroupLog) {
        self.evict(first, &mut first.state.write());
        self.walk(|g| {
            self.evict(g, &mut g.state.write());
            true
        });
    }

    /// Drops cold (clean) ring entries of any group while the rings together are over their
    /// budget. A writer holding its lock may be rehydrating against the current ring, so eviction
    /// is skipped rather than waited for; the writer evicts after applying, and a writer waiting
    /// for room evicts before it waits.
    pub(crate) fn evict_clean(&self) {
        self.walk(|g| {
            // Per group, so writers never wait for a walk over thousands of groups.
            match self.wal.try_writer() {
                Some(_no_writer) => {
                    self.evict(g, &mut g.state.write());
                    true
                }
                None => false,
            }
        });
    }

    /// Calls `evict` on every group, from where the last walk stopped, while the rings are over
    /// their budget and some ring may hold clean entries (`maybe_clean`); `evict` returns false to
    /// stop. A walk that stops early leaves `maybe_clean` set, since the groups after it were not
    /// seen; one that ends over budget has found every clean entry there was when it started.
    fn walk(&self, mut evict: impl FnMut(&Arc<GroupLog>) -> bool) {
        if !self.over_budget() || !self.maybe_clean.swap(false, Ordering::AcqRel) {
            return;
        }
        let from = self.walk_from.load(Ordering::Relaxed);
        let groups: Vec<Arc<GroupLog>> = {
            let map = self.groups.read();
            map.range(from..)
                .chain(map.range(..from))
                .map(|(_, g)| g.clone())
                .collect()
        };
        for g in &groups {
            if !self.over_budget() || !evict(g) {
                self.walk_from.store(g.id, Ordering::Relaxed);
                self.note_clean();
                return;
            }
        }
    }

    /// The figures of [`TieredEngine::stats`](crate::TieredEngine::stats): group 0's log bounds,
    /// sums over every group for what the tiers hold.
    pub(crate) fn stats(&self) -> Stats {
        let (wal_segments, wal_bytes) = self.wal.disk_usage();
        let groups: Vec<GroupStats> = self
            .groups()
            .iter()
            .filter(|g| !g.is_removed())
            .map(|g| g.stats())
            .collect();
        let sum = |f: fn(&GroupStats) -> u64| groups.iter().map(f).sum::<u64>();
        let zero = groups.iter().find(|g| g.group == 0).cloned().unwrap_or_default();
        let all_blocks = self.all_blocks();
        let redb = self.cold.store().footprint(&all_blocks);
        let c = &self.counters;
        let cache = self.cold.cache();
        Stats {
            groups: groups.len() as u64,
            first_index: zero.first_index,
            last_index: zero.last_index,
            hot_entries: sum(|g| g.hot_entries),
            compaction_lag_entries: sum(|g| g.compaction_lag_entries),
            compaction_lag_bytes: sum(|g| g.compaction_lag_bytes),
            hot_bytes: sum(|g| g.hot_bytes),
            cold_blocks: sum(|g| g.cold_blocks),
            cold_raw_bytes: sum(|g| g.cold_raw_bytes),
            cold_stored_bytes: sum(|g| g.cold_stored_bytes),
            compaction_high_water: zero.compaction_high_water,
            block_cache_bytes: cache.bytes(),
            redb_cache_bytes: self.budget.redb_cache_bytes(),
            block_index_bytes: self.budget.index_bytes(all_blocks.len()),
            group_bytes: self.budget.group_bytes(self.totals.groups() as usize),
            compaction_reserve_bytes: self.budget.round_bytes(),
            unseen_reserve_bytes: self.budget.unseen_bytes(),
            dictionary_reserve_bytes: self.budget.dictionary_bytes(),
            dictionary_bytes: self
                .cold
                .store()
                .dictionaries()
                .current()
                .map_or(0, |d| d.len() as u64),
            block_cache_hits: cache.hits.load(Ordering::Relaxed),
            block_cache_misses: cache.misses.load(Ordering::Relaxed),
            hot_reads: c.hot_reads.load(Ordering::Relaxed),
            cold_reads: c.cold_reads.load(Ordering::Relaxed),
            compactions: c.compactions.load(Ordering::Relaxed),
            backpressure_waits: c.backpressure_waits.load(Ordering::Relaxed),
            wal_segments,
            wal_bytes,
            wal_syncs: self.wal.syncs(),
            redb_file_bytes: redb.file_bytes,
            redb_fragmented_bytes: redb.fragmented_bytes,
            redb_free_bytes: redb.free_bytes,
            reclamations: c.reclamations.load(Ordering::Relaxed),
            reclaimed_bytes: c.reclaimed_bytes.load(Ordering::Relaxed),
            reclaim_pause_max_us: c.reclaim_pause_max_us.load(Ordering::Relaxed),
            purge_boundary: zero.purge_boundary,
            memory_budget_bytes: self.config.memory_budget_bytes,
        }
    }

    /// Every group's blocks (removed groups' too, until their deletion commits): what the
    /// cold-tier file holds.
    pub(crate) fn all_blocks(&self) -> Vec<BlockMeta> {
        let mut all = Vec::with_capacity(self.totals.blocks() as usize);
        for g in self.groups() {
            all.extend(g.state.read().cold.blocks.values().copied());
        }
        all
    }

    /// Copies the figures into the metrics recorder (see `crate::metrics`).
    pub(crate) fn publish_metrics(&self) {
        self.metrics.publish(&self.stats());
    }
}
