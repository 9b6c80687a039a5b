//! Space that comes back: after purges free most of the cold tier, the compactor gives the redb
//! file's free pages back (`reclaim_free_share`), and nothing a reader or a reopen sees changes.

use std::time::{Duration, Instant};

use crate::support::*;
use tierlog::{Config, Entry, LogId, LogStore, StorageEngine, TieredEngine};

/// 8 KiB payloads zstd cannot shrink, so 64 KiB blocks take 128 KiB pages and the file is large
/// enough for the page arithmetic to matter.
fn incompressible(index: u64) -> Entry {
    let mut out = Vec::with_capacity(8 << 10);
    let mut w = mix(index);
    while out.len() < 8 << 10 {
        w = mix(w);
        out.extend_from_slice(&w.to_le_bytes());
    }
    Entry::new(index, 1, out)
}

fn config() -> Config {
    Config {
        block_target_bytes: 64 << 10,
        compaction_trigger_bytes: 1 << 40,
        hot_tail_entries: 1 << 20,
        reclaim_free_share: 0.5,
        reclaim_min_bytes: 1 << 20,
        reclaim_interval_ms: 0,
        ..config::tiny()
    }
}

async fn wait_for_reclamation(engine: &TieredEngine, after: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.stats().reclamations <= after {
        assert!(
            Instant::now() < deadline,
            "no reclamation within 30 s: {:?}",
            engine.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_that_free_most_blocks_shrink_the_file_and_keep_the_content() {
    let dir = tempfile::tempdir().unwrap();
    let want: Vec<Entry> = (1901..=2000).map(incompressible).collect();
    {
        let engine = TieredEngine::open(dir.path(), config()).await.unwrap();
        let log = engine.log_store();
        for first in (1..=2000).step_by(100) {
            log.persist_entries((first..first + 100).map(incompressible).collect())
                .await
                .unwrap();
        }
        engine.compact_now().await.unwrap();
        let full = engine.stats();
        assert!(full.cold_blocks > 200, "{full:?}");
        log.purge(LogId { term: 1, index: 1900 }).await.unwrap();
        let before = engine.stats().reclamations;
        engine.compact_now().await.unwrap();
        wait_for_reclamation(&engine, before).await;
        let after = engine.stats();
        assert!(
            after.redb_file_bytes * 4 < full.redb_file_bytes,
            "the file did not shrink: {} -> {} bytes ({after:?})",
            full.redb_file_bytes,
            after.redb_file_bytes
        );
        assert!(after.reclaimed_bytes > 0);
        assert!(
            after.redb_free_bytes < after.redb_file_bytes / 2,
            "still mostly free after the reclamation: {after:?}"
        );
        // The 1 MiB budget leaves the ring a few dozen of these entries: the rest come from blocks.
        assert_eq!(log.get_entries(1901..=2000).unwrap(), want);
        assert_eq!(log.get_entries(1..=1900).unwrap(), Vec::<Entry>::new());
        engine.close().await.unwrap();
    }
    let engine = TieredEngine::open(dir.path(), config()).await.unwrap();
    let log = engine.log_store();
    assert_eq!(log.get_entries(0..=u64::MAX - 1).unwrap(), want);
    assert_eq!(log.last_index(), 2000);
}

/// Readers of cold ranges, a writer that appends and purges, compaction rounds and reclamations
/// all at once: every read returns exactly what was written, and the store reopens with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reclamation_racing_readers_and_rounds_is_safe() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        compaction_trigger_bytes: 256 << 10,
        hot_tail_entries: 0,
        compaction_interval_ms: 2,
        reclaim_free_share: 0.2,
        reclaim_min_bytes: 256 << 10,
        ..config()
    };
    let engine = TieredEngine::open(dir.path(), cfg.clone()).await.unwrap();
    let log = engine.log_store();
    let purged = Arc::new(AtomicU64::new(0));
    let last = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2u64)
        .map(|r| {
            let (log, purged, last, stop) = (log.clone(), purged.clone(), last.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(r + 1);
                let mut checked = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let (lo, hi) = (purged.load(Ordering::Acquire) + 1, last.load(Ordering::Acquire));
                    if hi < lo + 8 {
                        continue;
                    }
                    let from = rng.range(lo, hi - 7);
                    let got = log.get_entries(from..=from + 7).unwrap();
                    // A purge may land during the read: a prefix may be missing, never a middle.
                    let first = got.first().map_or(from + 8, |e| e.index);
                    let expect: Vec<Entry> = (first..=from + 7).map(incompressible).collect();
                    assert_eq!(got, expect, "read {from}..={}", from + 7);
                    checked += 1;
                }
                checked
            })
        })
        .collect();
    let mut next = 1u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while engine.stats().reclamations < 3 && Instant::now() < deadline {
        log.persist_entries((next..next + 64).map(incompressible).collect())
            .await
            .unwrap();
        next += 64;
        last.store(next - 1, Ordering::Release);
        // Keep about 600 entries (~5 MiB): each purge frees blocks the next reclamation gives back.
        if next > 1200 && next % 1024 < 64 {
            let upto = next - 600;
            log.purge(LogId { term: 1, index: upto }).await.unwrap();
            purged.store(upto, Ordering::Release);
        }
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::Relaxed);
    let checked: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    let stats = engine.stats();
    assert!(
        stats.reclamations >= 3,
        "only {} reclamations in 60 s: {stats:?}",
        stats.reclamations
    );
    assert!(checked > 0);
    let lo = purged.load(Ordering::Relaxed) + 1;
    let want: Vec<Entry> = (lo..next).map(incompressible).collect();
    assert_eq!(log.get_entries(lo..=next - 1).unwrap(), want);
    engine.close().await.unwrap();
    let engine = TieredEngine::open(dir.path(), cfg).await.unwrap();
    assert_eq!(engine.log_store().get_entries(lo..=next - 1).unwrap(), want);
}
