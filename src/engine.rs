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
use crate::cold::store::ColdStore;
use crate::compactor::CompactorThread;
use crate::config::Config;
use crate::core::{Core, Parts};
use crate::error::{Error, Result};
use crate::layout::{APP_META_FILE, COLD_FILE, HARD_STATE_FILE, WAL_DIR, prepare_dir};
use crate::log_store::{TierLogStore, TierMetaStore};
use crate::meta::{AppMetaFile, HardStateFile};
use crate::stats::Stats;
use crate::traits::StorageEngine;
use crate::wal::{Wal, sync_dir};

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
        let (store, cp, index) = ColdStore::open(&dir.join(COLD_FILE), budget.redb_cache_bytes() as usize)?;
        let cold = ColdReader::new(store, BlockCache::new(config.block_cache_bytes()));
        let wal_dir = dir.join(WAL_DIR);
        let (state, recovered) = crate::recovery::rebuild(&wal_dir, &config, &cold, &cp, index)?;
        let wal = Wal::open(
            &wal_dir,
            &recovered,
            config.segment_bytes,
            crate::wal::SpareLimits {
                count: config.recycle_segments,
                bytes: config.recycle_bytes,
            },
            cp.applied_seq + 1,
        )?;
        drop(recovered);
        let hard_state = HardStateFile::open(&dir.join(HARD_STATE_FILE))?;
        let app_meta = AppMetaFile::open(&dir.join(APP_META_FILE))?;
        sync_dir(&dir)?;
        let core = Arc::new(Core::new(Parts {
            dir,
            config,
            budget,
            state,
            wal,
            cold,
            checkpoint: cp,
            hard_state,
            app_meta,
            lock,
        }));
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
            log: Arc::new(TierLogStore { core: core.clone() }),
            meta: Arc::new(TierMetaStore { core }),
            shared,
        })
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

    /// Runs compaction now, moving every entry up to the last index at the time of the call to the
    /// cold tier (the ring keeps them until memory is needed) and applying pending cold-tier
    /// deletions; returns when the result is durable. Entries appended meanwhile are left to later
    /// rounds, so this returns even while writers keep appending.
    pub async fn compact_now(&self) -> Result<()> {
        let upto = self.shared.core.last_index();
        let rx = match self.shared.threads.lock().as_ref() {
            Some(t) => t.compactor.request(upto)?,
            None => return Err(Error::Closed("the engine was closed".into())),
        };
        rx.await
            .map_err(|_| Error::Closed("the compactor has stopped".into()))?
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
