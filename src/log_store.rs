//! The engine's handles: [`TierLogStore`] and [`TierMetaStore`], with the read and write paths
//! behind the `LogStore` and `MetaStore` traits.
//!
//! Writes: validate against the current state, append one write-ahead record, apply it to the
//! in-memory state; all under the writer lock, which readers never take. Reads: plan under a short
//! read lock (hot entries are `Bytes` clones), then fetch cold blocks with no lock held.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use async_trait::async_trait;

use crate::core::Core;
use crate::error::{Error, Result};
use crate::group::{GroupLog, MetaHome};
use crate::meta::AppMeta;
use crate::proto::{Entry, HardState, LogId};
use crate::traits::{LogStore, MetaStore};
use crate::wal::Record;

/// A reader whose view of the block index is older than the last compaction commit looks again;
/// this many misses in a row means something other than a race.
const MAX_READ_ATTEMPTS: usize = 1000;

/// The engine's [`LogStore`] handle. It does not keep the engine open: once every
/// [`TieredEngine`](crate::TieredEngine) clone is dropped (or one is closed), its calls return
/// [`Error::Closed`].
///
/// Each group has its own; every group's records go to the engine's one write-ahead log.
pub struct TierLogStore {
    pub(crate) core: Arc<Core>,
    pub(crate) group: Arc<GroupLog>,
}

/// The engine's [`MetaStore`] handle (one per group); like [`TierLogStore`], it does not keep the
/// engine open.
pub struct TierMetaStore {
    pub(crate) core: Arc<Core>,
    pub(crate) group: Arc<GroupLog>,
}

/// Fails once the engine is closed or the group removed.
fn check_live(core: &Core, g: &GroupLog) -> Result<()> {
    core.check_open()?;
    g.check_live()
}

/// Payload bytes of a batch (what `tierlog_append_bytes_total` counts).
fn payload_bytes(entries: &[Entry]) -> u64 {
    entries.iter().map(|e| e.payload.len() as u64).sum()
}

/// `get_entries` core: the entries of `[a, b]` of group `g` as of one moment.
fn read_range(core: &Core, g: &GroupLog, a: u64, b: u64) -> Result<Vec<Entry>> {
    check_live(core, g)?;
    for _ in 0..MAX_READ_ATTEMPTS {
        let plan = g.state.read().plan_read(a, b);
        let mut out = match &plan.cold {
            Some((ca, cb, metas)) => match core.cold.fetch(*ca, *cb, metas)? {
                Some(v) => v,
                None => {
                    std::thread::yield_now();
                    continue;
                }
            },
            None => Vec::new(),
        };
        if let Some(next) = plan.ahead {
            core.cold.prefetch(next);
        }
        let c = &core.counters;
        c.cold_reads.fetch_add(out.len() as u64, Ordering::Relaxed);
        c.hot_reads.fetch_add(plan.hot.len() as u64, Ordering::Relaxed);
        // A hot-only read hands out the ring's clones as they are: moving 10k entries into an
        // empty vector would copy half a megabyte for nothing.
        if out.is_empty() {
            return Ok(plan.hot);
        }
        out.extend(plan.hot);
        return Ok(out);
    }
    Err(Error::db(
        core.cold.store().path(),
        "cold blocks kept changing under a read; giving up",
    ))
}

/// Waits while the rings are over budget and the compactor can still free memory.
async fn wait_for_room(core: &Core, g: &GroupLog) -> Result<()> {
    let mut since = None;
    let result = wait_for_room_since(core, g, &mut since).await;
    if let Some(t) = since {
        crate::metrics::waited_for_room(t.elapsed());
    }
    result
}

/// `wait_for_room`, setting `since` when it first waits.
async fn wait_for_room_since(core: &Core, g: &GroupLog, since: &mut Option<Instant>) -> Result<()> {
    loop {
        let announced = core.backpressure.room_announced();
        tokio::pin!(announced);
        announced.as_mut().enable();
        if !core.over_budget() {
            return Ok(());
        }
        {
            // Over budget: first drop what is already cold. The compactor skips eviction when it
            // publishes a round while a writer holds the writer lock, and with nothing left to
            // compact it runs no further round, so without this a writer could wait for room that
            // only an eviction makes (a livelock seen in CI). The writer lock keeps any other
            // writer from rehydrating against the ring meanwhile.
            let _no_writer = core.wal.writer();
            core.evict_any(g);
            if !core.over_budget() {
                return Ok(());
            }
            // The compactor's last run failed: waiting could last forever, so the budget is
            // exceeded (the failure is logged) rather than the log stalled.
            if core.backpressure.compactor_failing() {
                return Ok(());
            }
        }
        check_live(core, g)?;
        core.counters.backpressure_waits.fetch_add(1, Ordering::Relaxed);
        core.backpressure.ask_for_room();
        since.get_or_insert_with(Instant::now);
        announced.await;
    }
}

/// Validates `rec` against group `g`'s current log, logs it and applies it: the one path every
/// mutation takes. Nothing is written when validation fails.
fn log_and_apply(core: &Core, g: &GroupLog, rec: Record) -> Result<()> {
    check_live(core, g)?;
    let rec = rec.into_owned();
    let mut w = core.wal.writer();
    // Again under the lock: `close` marks the engine closed while holding it (and a removal
    // marks the group removed), so a write that raced with either cannot reach a log that a
    // reopened engine, or a new group of the same id, now owns.
    check_live(core, g)?;
    // Under the writer lock the log cannot change, and the compactor does not evict while the
    // lock is held, so the rehydration range stays exact until `apply`.
    let rehydrate = {
        let st = g.state.read();
        match &rec {
            Record::Append(batch) => st.check_append(batch)?,
            Record::Replace { from, entries } => st.check_replace(*from, entries).map(|_| None)?,
            _ => None,
        }
    };
    let rehydrated = match rehydrate {
        Some((a, b)) => read_range(core, g, a, b)?,
        None => Vec::new(),
    };
    let seq = w.append(g.id, &rec)?;
    let mut st = g.state.write();
    if !rehydrated.is_empty() {
        // Entries read back from the cold tier are clean: an eviction walk may drop them again.
        core.note_clean();
    }
    st.apply(seq, rec, rehydrated);
    g.publish(&st, &core.totals);
    core.evict(g, &mut st);
    let uncompacted = st.lag_bytes();
    drop(st);
    drop(w);
    if uncompacted >= core.config.compaction_trigger_bytes {
        core.backpressure.wake_compactor();
    }
    if core.config.sync_on_persist {
        core.wal.sync()?;
    }
    Ok(())
}

fn check_batch(entries: &[Entry]) -> Result<()> {
    crate::limits::check_sizes(entries)?;
    for (i, e) in entries.iter().enumerate() {
        if e.index == 0 || e.index == u64::MAX {
            return Err(Error::InvalidInput(format!(
                "entry index {} is reserved",
                e.index
            )));
        }
        if i > 0 && e.index != entries[i - 1].index + 1 {
            return Err(Error::InvalidInput(format!(
                "batch is not contiguous and ascending: {} follows {}",
                e.index,
                entries[i - 1].index
            )));
        }
    }
    Ok(())
}

#[async_trait]
impl LogStore for TierLogStore {
    async fn persist_entries(&self, entries: Vec<Entry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        check_batch(&entries)?;
        wait_for_room(&self.core, &self.group).await?;
        let _span = tracing::debug_span!("persist", first = entries[0].index, n = entries.len()).entered();
        let (n, bytes) = (entries.len(), payload_bytes(&entries));
        log_and_apply(&self.core, &self.group, Record::Append(entries))?;
        crate::metrics::appended(n, bytes);
        Ok(())
    }

    async fn entry(&self, index: u64) -> Result<Option<Entry>> {
        Ok(read_range(&self.core, &self.group, index, index)?.pop())
    }

    fn get_entries(&self, range: RangeInclusive<u64>) -> Result<Vec<Entry>> {
        let (a, b) = (*range.start(), *range.end());
        if a > b {
            return Ok(Vec::new());
        }
        read_range(&self.core, &self.group, a, b)
    }

    async fn purge(&self, cutoff: LogId) -> Result<()> {
        if cutoff.index == 0 {
            return Ok(());
        }
        if cutoff.index == u64::MAX {
            return Err(Error::InvalidInput(
                "purge cutoff index u64::MAX is reserved".into(),
            ));
        }
        let span = tracing::info_span!("purge", index = cutoff.index, entries = tracing::field::Empty);
        let _in_span = span.enter();
        {
            let st = self.group.state.read();
            if cutoff.index <= st.purged_index() {
                return Ok(());
            }
            if !st.is_empty() {
                span.record(
                    "entries",
                    (cutoff.index.min(st.last) + 1).saturating_sub(st.first),
                );
            }
        }
        log_and_apply(&self.core, &self.group, Record::Purge { cutoff })?;
        // Cold blocks and segments go in the background.
        self.core.backpressure.wake_compactor();
        Ok(())
    }

    async fn truncate(&self, from: u64) -> Result<()> {
        let _span = tracing::debug_span!("truncate", from).entered();
        {
            let st = self.group.state.read();
            if st.is_empty() || from > st.last {
                return Ok(());
            }
        }
        log_and_apply(&self.core, &self.group, Record::Truncate { from: from.max(1) })
    }

    async fn replace_range(&self, from: u64, entries: Vec<Entry>) -> Result<()> {
        check_batch(&entries)?;
        wait_for_room(&self.core, &self.group).await?;
        let _span = tracing::debug_span!("replace_range", from, n = entries.len()).entered();
        let (n, bytes) = (entries.len(), payload_bytes(&entries));
        log_and_apply(&self.core, &self.group, Record::Replace { from, entries })?;
        crate::metrics::appended(n, bytes);
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        let _span = tracing::debug_span!("flush").entered();
        check_live(&self.core, &self.group)?;
        let start = Instant::now();
        self.core.wal.sync()?;
        crate::metrics::flushed(start);
        Ok(())
    }

    /// As `flush`, but a caller arriving while another's fdatasync is in flight awaits it without
    /// holding its runtime thread: thousands of groups flushing at once on a few runtime threads
    /// share one fdatasync.
    async fn flush_async(&self) -> Result<()> {
        use tracing::Instrument;
        check_live(&self.core, &self.group)?;
        let start = Instant::now();
        self.core
            .wal
            .sync_async()
            .instrument(tracing::debug_span!("flush"))
            .await?;
        crate::metrics::flushed(start);
        Ok(())
    }

    async fn reset(&self) -> Result<()> {
        let _span = tracing::debug_span!("reset").entered();
        log_and_apply(&self.core, &self.group, Record::Reset)?;
        self.core.cold.cache().clear();
        self.core.backpressure.wake_compactor();
        Ok(())
    }

    fn last_index(&self) -> u64 {
        self.group.last_index()
    }

    fn is_write_durable(&self) -> bool {
        self.core.config.sync_on_persist
    }

    fn load_purge_boundary(&self) -> Result<Option<LogId>> {
        check_live(&self.core, &self.group)?;
        Ok(self.group.state.read().purged)
    }
}

#[async_trait]
impl MetaStore for TierMetaStore {
    fn save_hard_state(&self, state: &HardState) -> Result<()> {
        check_live(&self.core, &self.group)?;
        match &self.group.meta {
            MetaHome::Files(f) => f.hard_state.save(state),
            MetaHome::Logged => self.log_meta(Record::HardState(*state)),
        }
    }

    fn load_hard_state(&self) -> Result<Option<HardState>> {
        check_live(&self.core, &self.group)?;
        Ok(match &self.group.meta {
            MetaHome::Files(f) => f.hard_state.load(),
            MetaHome::Logged => self.group.state.read().meta.hard_state,
        })
    }
}

impl TierMetaStore {
    /// The largest blob [`TierMetaStore::save_app_meta`] accepts (4,076 bytes).
    pub const APP_META_MAX_BYTES: usize = AppMeta::MAX_LEN;

    /// Saves an opaque blob for the application beside the hard state, with the same guarantees:
    /// when this returns the blob survives power loss, and a crash mid-save leaves the previous
    /// blob. For what a Raft library keeps that does not fit [`HardState`] (the openraft adapter
    /// keeps its vote and purged log id here). A blob over [`Self::APP_META_MAX_BYTES`] is rejected
    /// with nothing written.
    ///
    /// Group 0 keeps it in a file of its own (an fdatasync of its slot, never queued behind a
    /// cold-tier commit); every other group logs it in the write-ahead log and fdatasyncs it
    /// there, in the same group commit as other groups' flushes.
    pub fn save_app_meta(&self, blob: &[u8]) -> Result<()> {
        check_live(&self.core, &self.group)?;
        if blob.len() > AppMeta::MAX_LEN {
            return Err(Error::InvalidInput(format!(
                "application metadata of {} bytes exceeds the {}-byte limit",
                blob.len(),
                AppMeta::MAX_LEN
            )));
        }
        let blob = bytes::Bytes::copy_from_slice(blob);
        match &self.group.meta {
            MetaHome::Files(f) => f.app_meta.save(&AppMeta(blob)),
            MetaHome::Logged => self.log_meta(Record::AppMeta(blob)),
        }
    }

    /// The blob last saved with [`TierMetaStore::save_app_meta`], or `None` if there never was one.
    pub fn load_app_meta(&self) -> Result<Option<bytes::Bytes>> {
        check_live(&self.core, &self.group)?;
        Ok(match &self.group.meta {
            MetaHome::Files(f) => f.app_meta.load().map(|m| m.0),
            MetaHome::Logged => self.group.state.read().meta.app_meta.clone(),
        })
    }

    /// Logs a metadata record of a group that keeps its metadata in the write-ahead log and makes
    /// it durable before returning.
    fn log_meta(&self, rec: Record) -> Result<()> {
        log_and_apply(&self.core, &self.group, rec)?;
        self.core.wal.sync()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{Config, StorageEngine, TieredEngine};

    /// An engine whose compactor runs only when asked (or when a writer waits for memory).
    async fn engine_without_background_rounds(dir: &std::path::Path, budget: u64) -> TieredEngine {
        let cfg = Config {
            memory_budget_bytes: budget,
            compaction_trigger_bytes: u64::MAX,
            compaction_interval_ms: 3_600_000,
            ..Config::default()
        };
        TieredEngine::open(dir, cfg).await.unwrap()
    }

    fn over_budget(core: &Core) -> bool {
        core.over_budget()
    }

    fn entry(index: u64) -> Entry {
        Entry {
            index,
            term: 1,
            payload: bytes::Bytes::from(vec![index as u8; 1000]),
        }
    }

    /// A writer parked in back-pressure must be woken after the first round that made
    /// room, not only when the whole forced run ends (which, with another writer appending, could be
    /// never). The run here needs three rounds (each moves at most `MAX_ROUND_RAW_BYTES`); the parked
    /// write must be through before the last of them is published.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_parked_writer_is_woken_after_the_first_round_that_made_room() {
        let dir = tempfile::tempdir().unwrap();
        // The ring's share must exceed two rounds' cap (16 MiB) for the run to need three rounds.
        let engine = engine_without_background_rounds(dir.path(), 40 << 20).await;
        let log = engine.log_store();
        let core = log.core.clone();
        let big = |index: u64| Entry {
            index,
            term: 1,
            payload: bytes::Bytes::from(vec![index as u8; 4000]),
        };
        let mut next = 1;
        while !over_budget(&core) {
            log.persist_entries(vec![big(next)]).await.unwrap();
            next += 1;
        }
        let filled = next - 1;
        let raw: u64 = (1..=filled).map(|i| crate::cold::block::raw_cost(&big(i))).sum();
        assert!(
            raw > 2 * crate::budget::MAX_ROUND_RAW_BYTES,
            "the forced run must need three rounds"
        );
        assert_eq!(core.counters.compactions.load(Ordering::Relaxed), 0);
        // This write parks (nothing is cold yet) and asks for a forced run.
        let parked = tokio::spawn({
            let (log, core) = (log.clone(), core.clone());
            async move {
                log.persist_entries(vec![big(filled + 1)]).await.unwrap();
                let hi = log.group.state.read().cold.hi;
                (hi, core.counters.compactions.load(Ordering::Relaxed))
            }
        });
        let (hi, rounds) = tokio::time::timeout(Duration::from_secs(60), parked)
            .await
            .expect("the parked writer never got through")
            .unwrap();
        assert!(core.counters.backpressure_waits.load(Ordering::Relaxed) >= 1);
        assert!(
            hi < filled,
            "the parked writer was woken only after the whole run (cold high-water {hi} of \
             {filled}, {rounds} rounds)"
        );
        engine.compact_now().await.unwrap();
        assert_eq!(log.get_entries(1..=filled + 1).unwrap().len() as u64, filled + 1);
    }

    /// The livelock CI hit: a compaction round published while a writer held the writer lock, so the
    /// compactor skipped eviction; the ring stayed over budget holding only cold (clean) entries, no
    /// further round had anything to do, and the next writer waited for room forever while the
    /// compactor spun. Now the compactor evicts after every run once the lock is free, and a writer
    /// that finds no room evicts clean entries itself before it waits (with neither, the write below
    /// times out).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clean_entries_over_budget_never_starve_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine_without_background_rounds(dir.path(), 1 << 20).await;
        let log = engine.log_store();
        let core = log.core.clone();
        // Fill the ring past its budget (a write is admitted while the ring is still under it).
        let mut next = 1;
        while !over_budget(&core) {
            log.persist_entries(vec![entry(next)]).await.unwrap();
            next += 1;
        }
        let last = next - 1;

        // Compact everything while "a writer" holds the writer lock: the round publishes the new
        // cold high-water, cannot evict, and then waits for the lock to retire segments.
        let writer = core.wal.writer();
        let compacting = tokio::spawn({
            let engine = engine.clone();
            async move { engine.compact_now().await }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while log.group.state.read().cold.hi < last {
            assert!(std::time::Instant::now() < deadline, "the round never published");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(writer);
        compacting.await.unwrap().unwrap();
        assert!(!over_budget(&core), "the compactor left cold entries over budget");

        let write = log.persist_entries(vec![entry(next)]);
        tokio::time::timeout(Duration::from_secs(30), write)
            .await
            .expect("the writer waited for room that only an eviction makes")
            .unwrap();
        assert_eq!(log.last_index(), next);
        assert!(!over_budget(&core));
    }

    /// Many groups flushing at once on one runtime thread share fdatasyncs: a flush that finds
    /// another in flight awaits it instead of holding the thread (with a blocking flush, the 200
    /// flushes below would run one after another, one fdatasync each).
    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_async_flushes_of_many_groups_share_fdatasyncs() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine_without_background_rounds(dir.path(), 64 << 20).await;
        let mut groups = Vec::new();
        for id in 1..=200 {
            groups.push(engine.create_group(id).await.unwrap());
        }
        let before = engine.stats().wal_syncs;
        let tasks: Vec<_> = groups
            .into_iter()
            .map(|g| {
                tokio::spawn(async move {
                    let log = g.log_store();
                    log.persist_entries(vec![entry(1)]).await.unwrap();
                    log.flush_async().await.unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let syncs = engine.stats().wal_syncs - before;
        assert!(syncs <= 40, "200 concurrent flushes took {syncs} fdatasyncs");
    }

    /// The fdatasync that concurrent async flushes share runs on one blocking thread: a flush that
    /// arrives after another has claimed the commit awaits it instead of starting a blocking task
    /// of its own (each of those was a thread: about 60 at once in the many-groups bench; this test
    /// caught it in 3 of 10 runs before the fix, with 10, 14 and 18 threads, since it is a race).
    #[test]
    fn concurrent_async_flushes_start_few_blocking_threads() {
        use std::sync::atomic::AtomicUsize;
        let started = Arc::new(AtomicUsize::new(0));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .on_thread_start({
                let started = started.clone();
                move || {
                    started.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let engine = engine_without_background_rounds(dir.path(), 64 << 20).await;
            let mut groups = Vec::new();
            for id in 1..=200 {
                groups.push(engine.create_group(id).await.unwrap());
            }
            for round in 1..=10 {
                let tasks: Vec<_> = groups
                    .iter()
                    .map(|g| {
                        let log = g.log_store();
                        tokio::spawn(async move {
                            let from = round * 64 - 63;
                            log.persist_entries((from..from + 64).map(entry).collect())
                                .await
                                .unwrap();
                            log.flush_async().await.unwrap();
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            }
            drop(groups);
            engine.close().await.unwrap();
        });
        let threads = started.load(Ordering::Relaxed);
        // The runtime's 2 workers, and a blocking thread or two for the commits.
        assert!(threads <= 8, "2,000 async flushes started {threads} threads");
    }
}
