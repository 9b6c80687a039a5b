//! Wires the tiers together: opens the directory, runs recovery, owns the background thread, and
//! hands out the `LogStore` / `MetaStore` handles. The read and write paths live in `log_store.rs`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::cold::block::BlockMeta;
use crate::cold::cache::BlockCache;
use crate::cold::store::{Checkpoint, ColdStore};
use crate::compactor::{Compactor, Urgency};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::meta::{AppMetaFile, HardStateFile};
use crate::state::LogState;
use crate::stats::Stats;
use crate::traits::StorageEngine;
use crate::wal::{SparePool, SyncPoint, WalWriter, sync_dir};

pub(crate) const MARKER_FILE: &str = "TIERLOG";
pub(crate) const MARKER_TEXT: &str = "tierlog directory, format 1\n";
/// The marker is written here, fsynced, then renamed to `TIERLOG`.
pub(crate) const MARKER_TMP_FILE: &str = "TIERLOG.tmp";
pub(crate) const WAL_DIR: &str = "wal";
pub(crate) const COLD_FILE: &str = "cold.redb";
pub(crate) const HARD_STATE_FILE: &str = "hardstate";
pub(crate) const APP_META_FILE: &str = "appmeta";
pub(crate) const LOCK_FILE: &str = "LOCK";
/// Accounted memory of one block-index entry (BTreeMap node share plus the meta itself).
const INDEX_ENTRY_COST: u64 = 96;

#[derive(Default)]
pub(crate) struct Counters {
    pub hot_reads: AtomicU64,
    pub cold_reads: AtomicU64,
    pub compactions: AtomicU64,
    pub backpressure_waits: AtomicU64,
}

/// Everything the handles and the background thread share.
pub(crate) struct Inner {
    pub dir: PathBuf,
    pub config: Config,
    pub state: RwLock<LogState>,
    /// Mirror of `state.last_index()` so `last_index()` takes no lock.
    pub last_index: AtomicU64,
    /// Serialises writers: validate, log, apply.
    pub writer: Mutex<WalWriter>,
    pub sync: Arc<SyncPoint>,
    pub spares: Arc<SparePool>,
    pub cold: ColdStore,
    pub checkpoint: Mutex<Checkpoint>,
    pub cache: BlockCache,
    pub hard_state: HardStateFile,
    pub app_meta: AppMetaFile,
    pub counters: Counters,
    /// Set by writers waiting for memory: the next round moves everything movable.
    pub urgent: AtomicBool,
    pub wake: Notify,
    /// Signalled after every compaction round (writers waiting for memory re-check).
    pub room: Notify,
    pub closed: AtomicBool,
    pub last_error: Mutex<Option<String>>,
    /// Hints for the read-ahead thread (bounded: hints beyond its pace are dropped).
    pub read_ahead: Mutex<Option<std::sync::mpsc::SyncSender<BlockMeta>>>,
    redb_cache_bytes: u64,
    /// The directory lock, released on close (not when the last handle drops) so the directory can
    /// be reopened at once.
    lock: Mutex<Option<File>>,
}

impl Inner {
    /// Bytes the ring may hold, given the block index's current size.
    pub(crate) fn ring_budget(&self, blocks: usize) -> u64 {
        // A compaction round's working memory (compressed blocks, redb's dirty pages) comes out of
        // the same budget.
        let working = (self.config.memory_budget_bytes / 8).min(2 * crate::compactor::MAX_ROUND_RAW_BYTES);
        self.config
            .ring_budget_bytes()
            .saturating_sub(self.redb_cache_bytes)
            .saturating_sub(working)
            .saturating_sub(blocks as u64 * INDEX_ENTRY_COST)
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed("the engine was closed".into()));
        }
        Ok(())
    }

    /// Marks the engine closed with no write in flight: writers check `closed` under the writer
    /// lock, so once this returns none of them will touch the write-ahead log again.
    fn mark_closed(&self) {
        let _no_writer = self.writer.lock();
        self.closed.store(true, Ordering::Release);
    }

    /// Releases what another engine on the same directory would need or could be hurt by: redb's
    /// file, the hard-state and application-metadata files and the directory lock. Called after the
    /// background threads have stopped. Stale handles then get [`Error::Closed`] (reads included:
    /// their view is gone).
    fn release_files(&self) {
        self.cold.close();
        self.hard_state.close();
        self.app_meta.close();
        self.cache.clear();
        self.lock.lock().take();
    }
}

/// Owns the background threads: when the last engine clone goes (or on `close`), the threads are
/// stopped and joined and then the files are released, so the directory can be reopened at once,
/// even while `LogStore`/`MetaStore` handles of the old engine still exist.
struct Shared {
    inner: Arc<Inner>,
    worker: Mutex<Option<Worker>>,
}

struct Worker {
    thread: JoinHandle<()>,
    read_ahead: JoinHandle<()>,
    /// `compact_now` requests: the last index when it was called, and where to send the result.
    requests: mpsc::UnboundedSender<(u64, oneshot::Sender<Result<()>>)>,
}

impl Shared {
    fn stop(&self) {
        self.inner.mark_closed();
        if let Some(w) = self.worker.lock().take() {
            drop(w.requests);
            self.inner.read_ahead.lock().take();
            self.inner.wake.notify_one();
            // Joining plain threads is fine inside any tokio runtime: they never wait on the caller's
            // runtime.
            if w.thread.join().is_err() || w.read_ahead.join().is_err() {
                tracing::error!("a background thread panicked");
            }
        }
        self.inner.release_files();
        self.inner.room.notify_waiters();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The tiered engine. Cloning is cheap; every clone and every handle shares one state.
#[derive(Clone)]
pub struct TieredEngine {
    shared: Arc<Shared>,
    log: Arc<TierLogStore>,
    meta: Arc<TierMetaStore>,
}

/// The engine's [`LogStore`](crate::LogStore) handle. It does not keep the engine open: once every
/// [`TieredEngine`] clone is dropped (or one is closed), its calls return [`Error::Closed`].
pub struct TierLogStore {
    pub(crate) inner: Arc<Inner>,
}

/// The engine's [`MetaStore`](crate::MetaStore) handle; like [`TierLogStore`], it does not keep the
/// engine open.
pub struct TierMetaStore {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for TieredEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredEngine")
            .field("dir", &self.shared.inner.dir)
            .finish()
    }
}

/// Creates `dir` and any missing ancestor, then fsyncs the parent of each directory it created, so
/// the new entries survive a power cut.
fn create_dir_durably(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut p = dir;
    while !p.exists() {
        missing.push(p.to_path_buf());
        match p.parent() {
            Some(q) if !q.as_os_str().is_empty() => p = q,
            _ => break,
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for created in missing.iter().rev() {
        sync_dir(parent_of(created))?;
    }
    Ok(())
}

fn parent_of(p: &Path) -> &Path {
    p.parent()
        .filter(|q| !q.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes the marker so that no partial `TIERLOG` can ever exist: the text goes to a temporary
/// file, which is fsynced and then renamed over `TIERLOG`; the directory and its parent are then
/// fsynced, so the marker and the directory's own entry survive a power cut.
fn write_marker(dir: &Path) -> Result<()> {
    use std::io::Write;
    let tmp = dir.join(MARKER_TMP_FILE);
    let marker = dir.join(MARKER_FILE);
    (|| {
        let mut f = File::create(&tmp)?;
        crate::fuzzing::torn_write("engine::marker::torn", &f, MARKER_TEXT.as_bytes(), 0)?;
        f.write_all(MARKER_TEXT.as_bytes())?;
        crate::fuzzing::io_fault("engine::marker::sync")?;
        f.sync_all()
    })()
    .map_err(|e| Error::io(&tmp, e))?;
    crate::fuzzing::io_fault("engine::marker::rename")
        .and_then(|_| std::fs::rename(&tmp, &marker))
        .map_err(|e| Error::io(&marker, e))?;
    sync_dir(dir)?;
    sync_dir(parent_of(dir))
}

/// What an interrupted in-place write of the marker (releases before the marker was renamed into
/// place) can leave: nothing, zeroes, or a strict prefix of the text possibly followed by zeroes.
fn is_damaged_marker(bytes: &[u8]) -> bool {
    let text = MARKER_TEXT.as_bytes();
    let kept = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    bytes.len() <= text.len() && kept < text.len() && bytes[..kept] == text[..kept]
}

/// True when `dir` holds anything besides what creating it makes before any data: the marker, its
/// temporary file, `LOCK`, and an empty `wal/`.
fn holds_data(dir: &Path) -> Result<bool> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let empty_wal = name == WAL_DIR
            && std::fs::read_dir(entry.path())
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
        if !(name == MARKER_FILE || name == MARKER_TMP_FILE || name == LOCK_FILE || empty_wal) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Creates the directory or checks that it is a tierlog directory, and takes its lock.
///
/// The marker decides: `TIERLOG` with the expected text is an existing directory (never rewritten);
/// no marker is a new directory, which must be empty but for a `TIERLOG.tmp` left by an interrupted
/// creation; a damaged marker (empty, zeroes, a prefix of the text: what a power cut during an
/// older release's creation could leave) is finished like a new directory when nothing else but
/// `LOCK` and an empty `wal/` is there, and refused when data is there (see `docs/reliability.md`);
/// any other marker is refused.
fn prepare_dir(dir: &Path) -> Result<File> {
    create_dir_durably(dir)?;
    let marker = dir.join(MARKER_FILE);
    match std::fs::read(&marker) {
        Ok(text) if text == MARKER_TEXT.as_bytes() => {}
        Ok(text) if is_damaged_marker(&text) => {
            if holds_data(dir)? {
                return Err(Error::Config(format!(
                    "{} holds data but its {MARKER_FILE} marker is damaged ({} bytes, not the expected \
                     {MARKER_TEXT:?}), as a power cut while an older release created the directory \
                     can leave it; not re-created automatically: check the directory, then write the \
                     expected text to {}",
                    dir.display(),
                    text.len(),
                    marker.display()
                )));
            }
            write_marker(dir)?;
        }
        Ok(_) => {
            return Err(Error::Config(format!(
                "{} has an unknown format marker",
                dir.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
                let entry = entry.map_err(|e| Error::io(dir, e))?;
                if entry.file_name() != MARKER_TMP_FILE {
                    return Err(Error::Config(format!(
                        "{} is not empty and is not a tierlog directory (no {MARKER_FILE} file)",
                        dir.display()
                    )));
                }
            }
            write_marker(dir)?;
        }
        Err(e) => return Err(Error::io(&marker, e)),
    }
    let lock_path = dir.join(LOCK_FILE);
    let lock = File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
    lock.try_lock().map_err(|_| {
        Error::Config(format!(
            "{} is already open in another engine or process",
            dir.display()
        ))
    })?;
    let wal = dir.join(WAL_DIR);
    std::fs::create_dir_all(&wal).map_err(|e| Error::io(&wal, e))?;
    sync_dir(dir)?;
    Ok(lock)
}

impl TieredEngine {
    /// Opens (or creates) the engine in `dir`, recovering whatever a previous run left: the cold
    /// checkpoint from redb, then the write-ahead records it does not cover.
    pub async fn open(dir: impl AsRef<Path>, config: Config) -> Result<TieredEngine> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let lock = prepare_dir(&dir)?;
        let redb_cache = (config.memory_budget_bytes / 32).clamp(256 << 10, 16 << 20);
        let (cold, cp, index) = ColdStore::open(&dir.join(COLD_FILE), redb_cache as usize)?;
        let cache = BlockCache::new(config.block_cache_bytes());
        let mut state = LogState::from_checkpoint(&cp, index);
        let recovered = crate::recovery::replay(&dir.join(WAL_DIR), &config, &cp, &mut state, |st, a, b| {
            crate::log_store::read_cold_once(&cold, &cache, st, a, b)
        })?;
        let writer = WalWriter::open(
            &dir.join(WAL_DIR),
            &recovered,
            config.segment_bytes,
            config.recycle_segments,
            cp.applied_seq + 1,
        )?;
        let hard_state = HardStateFile::open(&dir.join(HARD_STATE_FILE))?;
        let app_meta = AppMetaFile::open(&dir.join(APP_META_FILE))?;
        sync_dir(&dir)?;
        let inner = Arc::new(Inner {
            last_index: AtomicU64::new(state.last_index()),
            state: RwLock::new(state),
            sync: writer.sync_point(),
            spares: writer.spare_pool(),
            writer: Mutex::new(writer),
            checkpoint: Mutex::new(cp),
            cold,
            cache,
            hard_state,
            app_meta,
            counters: Counters::default(),
            urgent: AtomicBool::new(false),
            wake: Notify::new(),
            room: Notify::new(),
            closed: AtomicBool::new(false),
            last_error: Mutex::new(None),
            read_ahead: Mutex::new(None),
            redb_cache_bytes: redb_cache,
            dir,
            config,
            lock: Mutex::new(Some(lock)),
        });
        let worker = spawn_worker(inner.clone())?;
        let shared = Arc::new(Shared {
            inner: inner.clone(),
            worker: Mutex::new(Some(worker)),
        });
        Ok(TieredEngine {
            log: Arc::new(TierLogStore { inner: inner.clone() }),
            meta: Arc::new(TierMetaStore { inner }),
            shared,
        })
    }

    /// The directory the engine lives in.
    pub fn dir(&self) -> &Path {
        &self.shared.inner.dir
    }

    /// fdatasyncs the write-ahead log, stops the background threads and releases every file, so the
    /// directory can be reopened at once. Dropping the last clone of the engine does the same
    /// (without reporting a failed sync). Every clone and every `LogStore`/`MetaStore` handle of
    /// this engine gets [`Error::Closed`] afterwards.
    pub async fn close(self) -> Result<()> {
        let inner = self.shared.inner.clone();
        let sync = inner.sync.sync(&inner.dir);
        self.shared.stop();
        sync
    }

    /// A snapshot of the engine's figures.
    pub fn stats(&self) -> Stats {
        let inner = &self.shared.inner;
        let (wal_segments, wal_bytes) = inner.writer.lock().disk_usage();
        let st = inner.state.read();
        let lo = st.lo();
        let visible = st.cold.blocks.values().filter(|m| m.last > lo);
        let (mut cold_blocks, mut raw, mut stored) = (0, 0, 0);
        for m in visible {
            cold_blocks += 1;
            raw += m.raw_len;
            stored += m.stored_len;
        }
        let c = &inner.counters;
        Stats {
            first_index: if st.is_empty() { 0 } else { st.first },
            last_index: st.last_index(),
            hot_entries: st.ring.len(),
            hot_bytes: st.ring.bytes(),
            cold_blocks,
            cold_raw_bytes: raw,
            cold_stored_bytes: stored,
            compaction_high_water: inner.checkpoint.lock().cold_hi,
            block_cache_bytes: inner.cache.bytes(),
            block_cache_hits: inner.cache.hits.load(Ordering::Relaxed),
            block_cache_misses: inner.cache.misses.load(Ordering::Relaxed),
            hot_reads: c.hot_reads.load(Ordering::Relaxed),
            cold_reads: c.cold_reads.load(Ordering::Relaxed),
            compactions: c.compactions.load(Ordering::Relaxed),
            backpressure_waits: c.backpressure_waits.load(Ordering::Relaxed),
            wal_segments,
            wal_bytes,
            redb_file_bytes: inner.cold.file_bytes(),
            purge_boundary: st.purged,
            memory_budget_bytes: inner.config.memory_budget_bytes,
        }
    }

    /// Runs compaction now, moving every entry up to the last index at the time of the call to the
    /// cold tier (the ring keeps them until memory is needed) and applying pending cold-tier
    /// deletions; returns when the result is durable. Entries appended meanwhile are left to later
    /// rounds, so this returns even while writers keep appending.
    pub async fn compact_now(&self) -> Result<()> {
        let upto = self.shared.inner.last_index.load(Ordering::Acquire);
        let rx = {
            let worker = self.shared.worker.lock();
            let w = worker
                .as_ref()
                .ok_or_else(|| Error::Closed("the engine was closed".into()))?;
            let (tx, rx) = oneshot::channel();
            w.requests
                .send((upto, tx))
                .map_err(|_| Error::Closed("compactor has stopped".into()))?;
            rx
        };
        rx.await
            .map_err(|_| Error::Closed("compactor has stopped".into()))?
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

fn spawn_worker(inner: Arc<Inner>) -> Result<Worker> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, oneshot::Sender<Result<()>>)>();
    let mut compactor = Compactor::new(inner.config.compression_level)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| Error::io(&inner.dir, e))?;
    let dir = inner.dir.clone();
    let inner_for_hints = inner.clone();
    let thread = std::thread::Builder::new()
        .name("tierlog-compactor".into())
        .spawn(move || {
            rt.block_on(async move {
                let interval = std::time::Duration::from_millis(inner.config.compaction_interval_ms);
                loop {
                    let request = tokio::select! {
                        r = rx.recv() => match r {
                            Some(reply) => Some(reply),
                            None => break,
                        },
                        _ = inner.wake.notified() => None,
                        _ = tokio::time::sleep(interval) => None,
                    };
                    if inner.closed.load(Ordering::Acquire) {
                        if let Some((_, reply)) = request {
                            let _ = reply.send(Err(Error::Closed("the engine was closed".into())));
                        }
                        break;
                    }
                    let urgency = match &request {
                        Some((upto, _)) => Urgency::Force { upto: *upto },
                        None => Urgency::Normal,
                    };
                    let res = compactor.run(&inner, urgency).map(|_| ());
                    // Also when no round ran: a round published while a writer held its lock left
                    // its eviction undone.
                    crate::compactor::evict_clean(&inner);
                    *inner.last_error.lock() = match &res {
                        Err(e) => {
                            tracing::error!(error = %e, "compaction round failed");
                            Some(e.to_string())
                        }
                        Ok(()) => None,
                    };
                    inner.room.notify_waiters();
                    if let Some((_, reply)) = request {
                        let _ = reply.send(res);
                    }
                }
            })
        })
        .map_err(|e| Error::io(&dir, e))?;
    let (hint_tx, hint_rx) = std::sync::mpsc::sync_channel(8);
    *inner_for_hints.read_ahead.lock() = Some(hint_tx);
    let read_ahead = std::thread::Builder::new()
        .name("tierlog-read-ahead".into())
        .spawn(move || inner_for_hints.read_ahead_loop(hint_rx))
        .map_err(|e| Error::io(&dir, e))?;
    Ok(Worker {
        thread,
        read_ahead,
        requests: tx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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
    /// `Error::Config` that says so and how to repair, and changes nothing; once the operator has
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
                Err(Error::Config(msg)) => assert!(
                    msg.contains("damaged") && msg.contains(MARKER_FILE),
                    "marker {i}: the message does not explain: {msg}"
                ),
                other => panic!("marker {i} {damaged:?}: expected Error::Config, got {other:?}"),
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
                Err(Error::Config(msg)) => assert!(msg.contains("unknown format marker"), "{text:?}: {msg}"),
                other => panic!("{text:?}: expected Error::Config, got {other:?}"),
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
