//! Opens, wires and closes: takes the directory, recovers the tiers, starts the compactor and
//! read-ahead threads, hands out the `LogStore` / `MetaStore` handles, and on close stops the
//! threads and releases the files. The read and write paths live in `log_store.rs`, the rounds in
//! `compactor.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::Mutex;

use crate::budget::Budget;
use crate::cold::cache::BlockCache;
use crate::cold::reader::ColdReader;
use crate::cold::store::Checkpoint;
use crate::cold::store::ColdStore;
use crate::compactor::CompactorThread;
use crate::config::Config;
use crate::core::{Core, Parts};
use crate::error::{Error, Result};
use crate::group::{GroupLog, MetaFiles, MetaHome, Opening};
use crate::layout::{APP_META_FILE, COLD_FILE, HARD_STATE_FILE, WAL_DIR, prepare_dir};
use crate::log_store::{TierLogStore, TierMetaStore};
use crate::meta::{AppMetaFile, HardStateFile};
use crate::proto::GroupId;
use crate::state::LogState;
use crate::stats::{GroupStats, Stats};
use crate::traits::StorageEngine;
use crate::wal::{Record, Wal, sync_dir};

/// Owns the background threads: when the last engine clone goes (or on `close`), the threads are
/// stopped and joined and then the files are released, so the directory can be reopened at once,
/// even while `LogStore`/`MetaStore` handles of the old engine still exist.
struct Shared {
    core: Arc<Core>,
    threads: Mutex<Option<Threads>>,
}

struct Threads {
    compactor: CompactorThread,
    read_ahead: JoinHandle<()>,
}

impl Shared {
    fn stop(&self) {
        self.core.mark_closed();
        if let Some(t) = self.threads.lock().take() {
            self.core.cold.stop_read_ahead();
            let compactor_ok = t.compactor.stop(&self.core);
            if !compactor_ok || t.read_ahead.join().is_err() {
                tracing::error!("a background thread panicked");
            }
        }
        // The compactor copies the figures at most every so often: the last ones too.
        self.core.publish_metrics();
        self.core.release_files();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The tiered engine. Cloning is cheap; every clone and every handle shares one state.
///
/// An engine hosts any number of Raft groups ([`TieredEngine::create_group`]), each with its own log
/// and hard state behind the same traits; all of them share one write-ahead log (so concurrent
/// flushes of many groups cost one fdatasync), one cold-tier file and one memory budget. Group 0
/// always exists: it is what [`StorageEngine::log_store`] and [`StorageEngine::meta_store`] serve,
/// so a single-group user never names a group.
#[derive(Clone)]
pub struct TieredEngine {
    shared: Arc<Shared>,
    log: Arc<TierLogStore>,
    meta: Arc<TierMetaStore>,
}

impl std::fmt::Debug for TieredEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredEngine")
            .field("dir", &self.shared.core.dir)
            .finish()
    }
}

impl TieredEngine {
    /// Opens (or creates) the engine in `dir`, recovering whatever a previous run left: the cold
    /// checkpoint from redb, then the write-ahead records it does not cover. What it recovers is
    /// durable when it returns.
    pub async fn open(dir: impl AsRef<Path>, config: Config) -> Result<TieredEngine> {
        crate::metrics::describe();
        let dir = dir.as_ref().to_path_buf();
        let span = tracing::info_span!(
            "open",
            dir = %dir.display(),
            hot_entries = tracing::field::Empty,
            cold_blocks = tracing::field::Empty,
            duration_us = tracing::field::Empty,
        );
        let start = Instant::now();
        let engine = span.in_scope(|| TieredEngine::open_here(dir, config))?;
        let took = start.elapsed();
        let st = engine.stats();
        span.record("hot_entries", st.hot_entries);
        span.record("cold_blocks", st.cold_blocks);
        span.record("duration_us", took.as_micros() as u64);
        crate::metrics::opened(took);
        engine.shared.core.publish_metrics();
        Ok(engine)
    }

    /// `open` inside its span.
    fn open_here(dir: PathBuf, config: Config) -> Result<TieredEngine> {
        config.validate()?;
        let lock = prepare_dir(&dir)?;
        let budget = Budget::new(&config);
        let (store, opened) = ColdStore::open(&dir.join(COLD_FILE), budget.redb_cache_bytes() as usize)?;
        let head = opened.head;
        let cold = ColdReader::new(store, BlockCache::new(config.block_cache_bytes()));
        let wal_dir = dir.join(WAL_DIR);
        let rebuilt = crate::recovery::rebuild(&wal_dir, &config, &cold, opened)?;
        let wal = Wal::open(
            &wal_dir,
            &rebuilt.wal,
            config.segment_bytes,
            crate::wal::SpareLimits {
                count: config.recycle_segments,
                bytes: config.recycle_bytes,
            },
            rebuilt.reach + 1,
        )?;
        // Recovery in `tolerate_any_corruption` may have dropped segments the file's write-ahead
        // floor still counts on: the floor moves up to what is left, or the next open would call
        // the dropped records missing.
        let floor = head
            .wal_floor
            .or_else(|| rebuilt.groups.get(&0).map(|g| g.checkpoint.applied_seq))
            .unwrap_or(0);
        let mut head = head;
        if floor + 1 < wal.oldest_seq() {
            head.wal_floor = Some(wal.oldest_seq() - 1);
            let plan = crate::cold::store::CommitPlan {
                head,
                ..Default::default()
            };
            cold.store().commit(&plan)?;
        }
        let mut groups = Vec::with_capacity(rebuilt.groups.len());
        for (id, g) in rebuilt.groups {
            let meta = if id == 0 {
                MetaHome::Files(Box::new(MetaFiles {
                    hard_state: HardStateFile::open(&dir.join(HARD_STATE_FILE))?,
                    app_meta: AppMetaFile::open(&dir.join(APP_META_FILE))?,
                }))
            } else {
                MetaHome::Logged
            };
            // A removed group's log is gone; only its checkpoint matters until its deletion commits.
            let state = if g.removed {
                LogState::from_checkpoint(&Checkpoint::default(), Default::default(), Default::default())
            } else {
                g.state
            };
            groups.push(Opening {
                id,
                state,
                checkpoint: g.checkpoint,
                meta,
                wipe: g.wipe,
                unwritten: g.unwritten,
                removed: g.removed,
            });
        }
        sync_dir(&dir)?;
        let core = Arc::new(Core::new(Parts {
            dir,
            config,
            budget,
            groups,
            wal,
            cold,
            head,
            lock,
        }));
        let zero = core.group(0).ok_or_else(|| {
            Error::corruption_of_file(core.cold.store().path(), "the file holds no group 0")
        })?;
        let compactor = CompactorThread::spawn(core.clone())?;
        let hints = core.cold.start_read_ahead();
        let read_ahead = std::thread::Builder::new()
            .name("tierlog-read-ahead".into())
            .spawn({
                let core = core.clone();
                move || core.cold.read_ahead(hints)
            })
            .map_err(|e| Error::io(&core.dir, e))?;
        let shared = Arc::new(Shared {
            core: core.clone(),
            threads: Mutex::new(Some(Threads {
                compactor,
                read_ahead,
            })),
        });
        Ok(TieredEngine {
            log: Arc::new(TierLogStore {
                core: core.clone(),
                group: zero.clone(),
            }),
            meta: Arc::new(TierMetaStore { core, group: zero }),
            shared,
        })
    }

    /// Creates group `id` and returns its handles; when this returns, the creation survives power
    /// loss. If the group exists already, returns its handles (so a node can call this for every
    /// group it hosts on every start). A new group is empty, and nothing of an earlier group of the
    /// same id (removed) comes back.
    pub async fn create_group(&self, id: GroupId) -> Result<Group> {
        let core = &self.shared.core;
        core.check_open()?;
        if let Some(g) = core.group(id).filter(|g| !g.is_removed()) {
            return Ok(self.handles(g));
        }
        let g = {
            let mut w = core.wal.writer();
            // Under the writer lock: `close` and other creations and removals take it too.
            core.check_open()?;
            if let Some(g) = core.group(id).filter(|g| !g.is_removed()) {
                return Ok(self.handles(g));
            }
            let seq = w.append(id, &Record::CreateGroup)?;
            let checkpoint = Checkpoint {
                created_seq: seq,
                ..Checkpoint::default()
            };
            core.insert_group(Opening {
                id,
                state: LogState::from_checkpoint(&checkpoint, Default::default(), Default::default()),
                checkpoint,
                meta: MetaHome::Logged,
                // The file may still hold what an earlier group of this id left.
                wipe: core.group(id).is_some(),
                unwritten: true,
                removed: false,
            })
        };
        core.wal.sync()?;
        Ok(self.handles(g))
    }

    /// The handles of group `id`; [`Error::InvalidInput`] when the engine hosts no such group.
    pub fn group(&self, id: GroupId) -> Result<Group> {
        let core = &self.shared.core;
        core.check_open()?;
        match core.group(id).filter(|g| !g.is_removed()) {
            Some(g) => Ok(self.handles(g)),
            None => Err(Error::InvalidInput(format!("the engine hosts no group {id}"))),
        }
    }

    /// Removes group `id`: its log, hard state and metadata are gone, and when this returns that
    /// survives power loss. Its cold blocks are deleted and its write-ahead records become garbage
    /// in the background. Handles of the group fail with [`Error::Closed`] afterwards. Group 0
    /// cannot be removed, and an id the engine does not host is [`Error::InvalidInput`].
    pub async fn remove_group(&self, id: GroupId) -> Result<()> {
        let core = &self.shared.core;
        core.check_open()?;
        if id == 0 {
            return Err(Error::InvalidInput("group 0 cannot be removed".into()));
        }
        {
            let mut w = core.wal.writer();
            core.check_open()?;
            let Some(g) = core.group(id).filter(|g| !g.is_removed()) else {
                return Err(Error::InvalidInput(format!("the engine hosts no group {id}")));
            };
            w.append(id, &Record::RemoveGroup)?;
            g.mark_removed();
            let mut st = g.state.write();
            st.ring.clear(1);
            g.publish(&st, &core.totals);
        }
        core.wal.sync()?;
        core.backpressure.wake_compactor();
        Ok(())
    }

    /// The ids of the groups the engine hosts, ascending (group 0 included).
    pub fn groups(&self) -> Vec<GroupId> {
        self.shared
            .core
            .groups()
            .iter()
            .filter(|g| !g.is_removed())
            .map(|g| g.id)
            .collect()
    }

    fn handles(&self, g: Arc<GroupLog>) -> Group {
        let core = &self.shared.core;
        Group {
            engine: self.clone(),
            log: Arc::new(TierLogStore {
                core: core.clone(),
                group: g.clone(),
            }),
            meta: Arc::new(TierMetaStore {
                core: core.clone(),
                group: g,
            }),
        }
    }

    /// The directory the engine lives in.
    pub fn dir(&self) -> &Path {
        &self.shared.core.dir
    }

    /// fdatasyncs the write-ahead log, stops the background threads and releases every file, so the
    /// directory can be reopened at once. Dropping the last clone of the engine does the same
    /// (without reporting a failed sync). Every clone and every `LogStore`/`MetaStore` handle of
    /// this engine gets [`Error::Closed`] afterwards.
    pub async fn close(self) -> Result<()> {
        let sync = self.shared.core.wal.sync();
        self.shared.stop();
        sync
    }

    /// A snapshot of the engine's figures.
    pub fn stats(&self) -> Stats {
        self.shared.core.stats()
    }

    /// Runs compaction now, moving every entry of every group up to its last index at the time of
    /// the call to the cold tier (the ring keeps them until memory is needed) and applying pending
    /// cold-tier deletions; returns when the result is durable. Entries appended meanwhile are left
    /// to later rounds, so this returns even while writers keep appending.
    pub async fn compact_now(&self) -> Result<()> {
        let rx = match self.shared.threads.lock().as_ref() {
            Some(t) => t.compactor.request()?,
            None => return Err(Error::Closed("the engine was closed".into())),
        };
        rx.await
            .map_err(|_| Error::Closed("the compactor has stopped".into()))?
    }
}

/// One group's handles (see [`TieredEngine::create_group`]). Cheap to clone; like an engine clone,
/// it keeps the engine open. Its `LogStore` and `MetaStore` have exactly the semantics of a
/// single-group engine's; `flush()` of any group makes every group's earlier records durable.
#[derive(Clone)]
pub struct Group {
    engine: TieredEngine,
    log: Arc<TierLogStore>,
    meta: Arc<TierMetaStore>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("id", &self.id()).finish()
    }
}

impl Group {
    /// The group's id.
    pub fn id(&self) -> GroupId {
        self.log.group.id
    }

    /// The engine hosting the group.
    pub fn engine(&self) -> &TieredEngine {
        &self.engine
    }

    /// A snapshot of the group's own figures (the engine's, summed over every group, are
    /// [`TieredEngine::stats`]).
    pub fn stats(&self) -> GroupStats {
        self.log.group.stats()
    }
}

impl StorageEngine for Group {
    type LogStore = TierLogStore;
    type MetaStore = TierMetaStore;
    fn log_store(&self) -> Arc<TierLogStore> {
        self.log.clone()
    }
    fn meta_store(&self) -> Arc<TierMetaStore> {
        self.meta.clone()
    }
}

impl StorageEngine for TieredEngine {
    type LogStore = TierLogStore;
    type MetaStore = TierMetaStore;
    fn log_store(&self) -> Arc<TierLogStore> {
        self.log.clone()
    }
    fn meta_store(&self) -> Arc<TierMetaStore> {
        self.meta.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{LOCK_FILE, MARKER_FILE, MARKER_TEXT};
    use crate::proto::Entry;
    use crate::traits::LogStore;

    fn config() -> Config {
        Config {
            segment_bytes: 64 << 10,
            ..Config::default()
        }
    }

    /// What a power cut during creation could leave of a marker written in place without fsync (as
    /// releases before this fix wrote it): nothing, zeroes (the length reached the disk, the data
    /// did not), a prefix, a prefix then zeroes.
    fn damaged_markers() -> Vec<Vec<u8>> {
        let text = MARKER_TEXT.as_bytes();
        vec![
            Vec::new(),
            vec![0; text.len()],
            text[..10].to_vec(),
            [&text[..7], &[0u8; 9][..]].concat(),
            text[..text.len() - 1].to_vec(),
        ]
    }

    /// A damaged marker in a directory holding nothing but what creation makes before any data
    /// (`LOCK`, an empty `wal/`): creation was cut short, so open finishes it.
    #[tokio::test]
    async fn a_damaged_marker_in_an_otherwise_empty_directory_is_rewritten() {
        for (i, damaged) in damaged_markers().into_iter().enumerate() {
            let root = tempfile::tempdir().unwrap();
            let dir = root.path();
            std::fs::write(dir.join(MARKER_FILE), &damaged).unwrap();
            std::fs::write(dir.join(LOCK_FILE), b"").unwrap();
            std::fs::create_dir(dir.join(WAL_DIR)).unwrap();
            let e = TieredEngine::open(dir, config())
                .await
                .unwrap_or_else(|err| panic!("marker {i} {damaged:?}: {err}"));
            assert_eq!(
                std::fs::read_to_string(dir.join(MARKER_FILE)).unwrap(),
                MARKER_TEXT
            );
            e.log_store()
                .persist_entries(vec![Entry::new(1, 1, "x")])
                .await
                .unwrap();
            e.close().await.unwrap();
            let e = TieredEngine::open(dir, config()).await.unwrap();
            assert_eq!(e.log_store().last_index(), 1);
        }
    }

    /// A damaged marker beside data is not silently re-created: the node may hold a vote and entries,
    /// and a damaged marker means the directory did not come through intact. Open fails with an
    /// `Error::Corruption` of the marker that says so and how to repair, and changes nothing; once the operator has
    /// restored the marker the directory opens with its data.
    #[tokio::test]
    async fn a_damaged_marker_beside_data_is_refused_and_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        let e = TieredEngine::open(dir, config()).await.unwrap();
        e.log_store()
            .persist_entries(vec![Entry::new(1, 1, "x")])
            .await
            .unwrap();
        e.close().await.unwrap();
        for (i, damaged) in damaged_markers().into_iter().enumerate() {
            std::fs::write(dir.join(MARKER_FILE), &damaged).unwrap();
            match TieredEngine::open(dir, config()).await {
                Err(err @ Error::Corruption { .. }) => {
                    let msg = err.to_string();
                    assert!(
                        msg.contains("damaged") && msg.contains(MARKER_FILE),
                        "marker {i}: the message does not explain: {msg}"
                    )
                }
                other => panic!("marker {i} {damaged:?}: expected Error::Corruption, got {other:?}"),
            }
            assert_eq!(
                std::fs::read(dir.join(MARKER_FILE)).unwrap(),
                damaged,
                "marker {i} was rewritten"
            );
        }
        std::fs::write(dir.join(MARKER_FILE), MARKER_TEXT).unwrap();
        let e = TieredEngine::open(dir, config()).await.unwrap();
        assert_eq!(e.log_store().last_index(), 1);
    }

    /// Another format's marker (or any text that is not a prefix of ours) is still refused.
    #[tokio::test]
    async fn a_foreign_marker_is_refused() {
        for text in [
            "tierlog directory, format 2\n",
            "something else",
            "tierlog directory, format 1\nmore",
        ] {
            let root = tempfile::tempdir().unwrap();
            std::fs::write(root.path().join(MARKER_FILE), text).unwrap();
            match TieredEngine::open(root.path(), config()).await {
                Err(Error::NotATierlogDirectory { reason, .. }) => {
                    assert!(reason.contains("unknown format marker"), "{text:?}: {reason}")
                }
                other => panic!("{text:?}: expected Error::NotATierlogDirectory, got {other:?}"),
            }
            assert_eq!(
                std::fs::read_to_string(root.path().join(MARKER_FILE)).unwrap(),
                text
            );
        }
    }

    /// Opening an existing directory reads the marker and never writes it again (same file, same
    /// modification time, no temporary file).
    #[tokio::test]
    async fn open_does_not_rewrite_an_existing_marker() {
        use std::os::unix::fs::MetadataExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a").join("b");
        TieredEngine::open(&dir, config())
            .await
            .unwrap()
            .close()
            .await
            .unwrap();
        let before = std::fs::metadata(dir.join(MARKER_FILE)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        for _ in 0..2 {
            TieredEngine::open(&dir, config())
                .await
                .unwrap()
                .close()
                .await
                .unwrap();
            let after = std::fs::metadata(dir.join(MARKER_FILE)).unwrap();
            assert_eq!(
                (after.ino(), after.mtime(), after.mtime_nsec()),
                (before.ino(), before.mtime(), before.mtime_nsec())
            );
            assert!(!dir.join("TIERLOG.tmp").exists());
        }
    }
}

#[cfg(test)]
mod group_tests {
    use super::*;
    use crate::proto::{Entry, HardState};
    use crate::traits::{LogStore, MetaStore};

    fn config() -> Config {
        Config {
            segment_bytes: 64 << 10,
            compaction_interval_ms: 3_600_000,
            compaction_trigger_bytes: u64::MAX / 2,
            ..Config::default()
        }
    }

    fn batch(group: u64, from: u64, n: u64) -> Vec<Entry> {
        (from..from + n)
            .map(|i| Entry::new(i, 1, format!("g{group}:{i}:{}", "x".repeat(200))))
            .collect()
    }

    /// Groups share one log but not their contents; each comes back after a reopen with its own
    /// entries, hard state and metadata, from both tiers.
    #[tokio::test]
    async fn groups_keep_their_own_logs_across_compaction_and_reopen() {
        let root = tempfile::tempdir().unwrap();
        let e = TieredEngine::open(root.path(), config()).await.unwrap();
        for g in 1..=3 {
            let grp = e.create_group(g).await.unwrap();
            let log = grp.log_store();
            log.persist_entries(batch(g, 1, 50 * g)).await.unwrap();
            grp.meta_store()
                .save_hard_state(&HardState {
                    current_term: g,
                    voted_for: None,
                })
                .unwrap();
            grp.meta_store()
                .save_app_meta(format!("meta{g}").as_bytes())
                .unwrap();
        }
        e.log_store().persist_entries(batch(0, 1, 10)).await.unwrap();
        e.compact_now().await.unwrap();
        e.group(2).unwrap().log_store().truncate(40).await.unwrap();
        e.group(3).unwrap().log_store().flush().unwrap();
        assert_eq!(e.groups(), vec![0, 1, 2, 3]);
        e.close().await.unwrap();
        let e = TieredEngine::open(root.path(), config()).await.unwrap();
        assert_eq!(e.groups(), vec![0, 1, 2, 3]);
        for g in 1..=3u64 {
            let grp = e.group(g).unwrap();
            let want = if g == 2 { 39 } else { 50 * g };
            let got = grp.log_store().get_entries(1..=1000).unwrap();
            assert_eq!(got, batch(g, 1, want), "group {g}");
            assert_eq!(
                grp.meta_store().load_hard_state().unwrap().unwrap().current_term,
                g
            );
            assert_eq!(
                grp.meta_store().load_app_meta().unwrap().unwrap(),
                format!("meta{g}").as_bytes()
            );
        }
        assert_eq!(e.log_store().get_entries(1..=100).unwrap(), batch(0, 1, 10));
    }

    /// A removed group stays removed across a reopen, its id can be created again empty, and
    /// nothing of the earlier group comes back, whether or not its deletion was committed.
    #[tokio::test]
    async fn a_removed_group_is_gone_and_its_id_starts_empty() {
        for compact_between in [false, true] {
            let root = tempfile::tempdir().unwrap();
            let e = TieredEngine::open(root.path(), config()).await.unwrap();
            let g = e.create_group(5).await.unwrap();
            g.log_store().persist_entries(batch(5, 1, 30)).await.unwrap();
            e.compact_now().await.unwrap();
            e.remove_group(5).await.unwrap();
            assert!(matches!(g.log_store().get_entries(1..=2), Err(Error::Closed(_))));
            assert!(e.group(5).is_err());
            if compact_between {
                e.compact_now().await.unwrap();
            }
            let again = e.create_group(5).await.unwrap();
            assert_eq!(again.log_store().last_index(), 0);
            again.log_store().persist_entries(batch(9, 1, 3)).await.unwrap();
            again.log_store().flush().unwrap();
            e.close().await.unwrap();
            let e = TieredEngine::open(root.path(), config()).await.unwrap();
            let g = e.group(5).unwrap();
            assert_eq!(g.log_store().get_entries(1..=100).unwrap(), batch(9, 1, 3));
            e.compact_now().await.unwrap();
            e.close().await.unwrap();
            let e = TieredEngine::open(root.path(), config()).await.unwrap();
            let g = e.group(5).unwrap();
            assert_eq!(g.log_store().get_entries(1..=100).unwrap(), batch(9, 1, 3));
            assert_eq!(e.stats().cold_blocks, 1, "compact {compact_between}");
        }
    }
}
