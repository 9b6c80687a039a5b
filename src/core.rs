//! The parts of one open engine, shared by its handles (the read and write paths in `log_store`)
//! and its compactor. Each part keeps its own fields private and its own rules; this module only
//! holds them together and says when the engine is open.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::backpressure::Backpressure;
use crate::budget::Budget;
use crate::cold::reader::ColdReader;
use crate::cold::store::Checkpoint;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::meta::{AppMetaFile, HardStateFile};
use crate::state::LogState;
use crate::stats::{Counters, Stats};
use crate::wal::Wal;

pub(crate) struct Core {
    pub(crate) dir: PathBuf,
    pub(crate) config: Config,
    pub(crate) budget: Budget,
    /// The log in memory: the ring and the view of the cold tier.
    pub(crate) state: RwLock<LogState>,
    /// Mirror of `state.last_index()` so `last_index()` takes no lock.
    last_index: AtomicU64,
    pub(crate) wal: Wal,
    pub(crate) cold: ColdReader,
    /// The cold checkpoint the last commit made durable.
    pub(crate) checkpoint: Mutex<Checkpoint>,
    pub(crate) hard_state: HardStateFile,
    pub(crate) app_meta: AppMetaFile,
    pub(crate) counters: Counters,
    pub(crate) backpressure: Backpressure,
    /// What the metrics recorder last got of `counters` and the cache's totals.
    metrics: crate::metrics::Mirror,
    closed: AtomicBool,
    /// The directory lock, released on close (not when the last handle drops) so the directory can
    /// be reopened at once.
    lock: Mutex<Option<File>>,
}

/// What an engine is made of once its directory is recovered.
pub(crate) struct Parts {
    pub dir: PathBuf,
    pub config: Config,
    pub budget: Budget,
    pub state: LogState,
    pub wal: Wal,
    pub cold: ColdReader,
    pub checkpoint: Checkpoint,
    pub hard_state: HardStateFile,
    pub app_meta: AppMetaFile,
    pub lock: File,
}

impl Core {
    pub(crate) fn new(p: Parts) -> Core {
        Core {
            last_index: AtomicU64::new(p.state.last_index()),
            state: RwLock::new(p.state),
            dir: p.dir,
            config: p.config,
            budget: p.budget,
            wal: p.wal,
            cold: p.cold,
            checkpoint: Mutex::new(p.checkpoint),
            hard_state: p.hard_state,
            app_meta: p.app_meta,
            counters: Counters::default(),
            backpressure: Backpressure::default(),
            metrics: Default::default(),
            closed: AtomicBool::new(false),
            lock: Mutex::new(Some(p.lock)),
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
    /// file, the hard-state and application-metadata files and the directory lock. Called after the
    /// background threads have stopped. Stale handles then get [`Error::Closed`] (reads included:
    /// their view is gone).
    pub(crate) fn release_files(&self) {
        self.cold.store().close();
        self.hard_state.close();
        self.app_meta.close();
        self.cold.cache().clear();
        self.lock.lock().take();
        self.backpressure.announce_room();
    }

    /// The log's last index (see `LogStore::last_index`), without a lock.
    pub(crate) fn last_index(&self) -> u64 {
        self.last_index.load(Ordering::Acquire)
    }

    /// Publishes `st`'s last index; called under the state write lock after every change.
    pub(crate) fn publish_last_index(&self, st: &LogState) {
        self.last_index.store(st.last_index(), Ordering::Release);
    }

    /// Bytes the ring may hold now.
    pub(crate) fn ring_budget(&self, st: &LogState) -> u64 {
        self.budget.ring_bytes(st.cold.blocks.len())
    }

    /// Drops cold (clean) ring entries while the ring is over its budget. A writer holding its lock
    /// may be rehydrating against the current ring, so eviction is skipped rather than waited for;
    /// the writer evicts after applying, and a writer waiting for room evicts before it waits.
    pub(crate) fn evict_clean(&self) {
        if let Some(_no_writer) = self.wal.try_writer() {
            let mut st = self.state.write();
            let budget = self.ring_budget(&st);
            st.evict(budget);
        }
    }

    /// The figures of [`TieredEngine::stats`](crate::TieredEngine::stats).
    pub(crate) fn stats(&self) -> Stats {
        let (wal_segments, wal_bytes) = self.wal.disk_usage();
        let st = self.state.read();
        let lo = st.purged_index();
        let visible = st.cold.blocks.values().filter(|m| m.last > lo);
        let (mut cold_blocks, mut raw, mut stored) = (0, 0, 0);
        for m in visible {
            cold_blocks += 1;
            raw += m.raw_len;
            stored += m.stored_len;
        }
        let redb = self.cold.store().footprint(&st.cold.blocks);
        let c = &self.counters;
        let cache = self.cold.cache();
        Stats {
            first_index: if st.is_empty() { 0 } else { st.first },
            last_index: st.last_index(),
            hot_entries: st.ring.len(),
            hot_bytes: st.ring.bytes(),
            cold_blocks,
            cold_raw_bytes: raw,
            cold_stored_bytes: stored,
            compaction_high_water: self.checkpoint.lock().cold_hi,
            block_cache_bytes: cache.bytes(),
            redb_cache_bytes: self.budget.redb_cache_bytes(),
            block_index_bytes: self.budget.index_bytes(st.cold.blocks.len()),
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
            redb_file_bytes: redb.file_bytes,
            redb_fragmented_bytes: redb.fragmented_bytes,
            redb_free_bytes: redb.free_bytes,
            reclamations: c.reclamations.load(Ordering::Relaxed),
            reclaimed_bytes: c.reclaimed_bytes.load(Ordering::Relaxed),
            reclaim_pause_max_us: c.reclaim_pause_max_us.load(Ordering::Relaxed),
            purge_boundary: st.purged,
            memory_budget_bytes: self.config.memory_budget_bytes,
        }
    }

    /// Copies the figures into the metrics recorder (see `crate::metrics`).
    pub(crate) fn publish_metrics(&self) {
        let lag = {
            let st = self.state.read();
            let hi = st.cold.hi;
            (
                st.last_index().saturating_sub(hi),
                st.ring.estimate_bytes_from(hi + 1),
            )
        };
        self.metrics.publish(&self.stats(), lag);
    }
}
