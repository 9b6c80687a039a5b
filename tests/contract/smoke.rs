//! End-to-end smoke: both tiers, reopen, purge/truncate into the cold tier.

use tierlog::{Config, Entry, LogId, LogStore, StorageEngine, TieredEngine};

use crate::support::{config, copy_dir, ent as e};

#[tokio::test]
async fn tiers_merge_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let eng = TieredEngine::open(dir.path(), config::small_ring())
            .await
            .unwrap();
        let log = eng.log_store();
        for b in 0..100 {
            let batch: Vec<Entry> = (b * 100 + 1..=b * 100 + 100).map(|i| e(i, 1)).collect();
            log.persist_entries(batch).await.unwrap();
        }
        log.flush().unwrap();
        eng.compact_now().await.unwrap();
        let s = eng.stats();
        assert!(s.cold_blocks > 0, "{s:?}");
        assert_eq!(s.last_index, 10_000);
        let all = log.get_entries(1..=10_000).unwrap();
        assert_eq!(all.len(), 10_000);
        for (k, x) in all.iter().enumerate() {
            assert_eq!(*x, e(k as u64 + 1, 1));
        }
        assert!(eng.stats().cold_reads > 0);
        // Truncate into the cold tier, overwrite, purge.
        log.truncate(5_000).await.unwrap();
        assert_eq!(log.last_index(), 4_999);
        log.persist_entries((5_000..=5_010).map(|i| e(i, 2)).collect())
            .await
            .unwrap();
        log.persist_entries(vec![e(3_000, 3)]).await.unwrap();
        log.purge(LogId::new(1, 100)).await.unwrap();
        eng.compact_now().await.unwrap();
        assert_eq!(log.entry(3_000).await.unwrap(), Some(e(3_000, 3)));
        assert_eq!(log.entry(3_001).await.unwrap(), Some(e(3_001, 1)));
        assert_eq!(log.entry(100).await.unwrap(), None);
        assert_eq!(log.entry(101).await.unwrap(), Some(e(101, 1)));
    }
    let eng = TieredEngine::open(dir.path(), config::small_ring())
        .await
        .unwrap();
    let log = eng.log_store();
    assert_eq!(log.last_index(), 5_010);
    assert_eq!(log.load_purge_boundary().unwrap(), Some(LogId::new(1, 100)));
    let all = log.get_entries(0..=20_000).unwrap();
    assert_eq!(all.len(), 5_010 - 100);
    for x in &all {
        let t = if x.index == 3_000 {
            3
        } else if x.index >= 5_000 {
            2
        } else {
            1
        };
        assert_eq!(*x, e(x.index, t));
    }
}

#[tokio::test]
async fn offline_tools_read_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let eng = TieredEngine::open(dir.path(), config::small_ring())
            .await
            .unwrap();
        let log = eng.log_store();
        log.persist_entries((1..=3000).map(|i| e(i, 1)).collect())
            .await
            .unwrap();
        eng.compact_now().await.unwrap();
        log.persist_entries((3001..=3100).map(|i| e(i, 2)).collect())
            .await
            .unwrap();
        log.purge(LogId::new(1, 10)).await.unwrap();
        eng.meta_store().save_app_meta(b"vote").unwrap();
    }
    let listing = |d: &std::path::Path| {
        let mut v: Vec<_> = walk(d);
        v.sort();
        v
    };
    let before = listing(dir.path());
    let ins = tierlog::offline::inspect(dir.path()).unwrap();
    assert_eq!(ins.index_range, Some((11, 3100)));
    assert_eq!(ins.app_meta_bytes, Some(4));
    assert!(ins.cold_blocks > 0 && ins.compression_ratio > 1.0, "{ins:?}");
    let rep = tierlog::offline::verify(dir.path()).unwrap();
    assert_eq!(rep.entries, 3090);
    let d = tierlog::offline::dump(dir.path(), 3000, 3001).unwrap();
    assert_eq!(d, vec![e(3000, 1), e(3001, 2)]);
    assert_eq!(
        before,
        listing(dir.path()),
        "read-only tools changed the directory"
    );
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("x"), "y").unwrap();
    assert!(matches!(
        tierlog::offline::inspect(other.path()),
        Err(tierlog::Error::NotATierlogDirectory { .. })
    ));
}

/// An operator inspects a directory right after a crash, when redb's file still says "in use" and
/// opening it read-only would need a repair (a write). The tools must still answer, from a repaired
/// scratch copy, and leave the directory as it was.
#[tokio::test]
async fn offline_tools_read_a_directory_left_by_a_crash() {
    let live = tempfile::tempdir().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    let eng = TieredEngine::open(live.path(), config::small_ring())
        .await
        .unwrap();
    let log = eng.log_store();
    log.persist_entries((1..=3000).map(|i| e(i, 1)).collect())
        .await
        .unwrap();
    eng.compact_now().await.unwrap();
    log.flush().unwrap();
    // A copy taken while the engine runs is what a crash leaves behind.
    copy_dir(live.path(), crashed.path());
    // The live directory itself is refused while its engine runs: its file cannot be read
    // consistently under a writer.
    match tierlog::offline::inspect(live.path()) {
        Err(tierlog::Error::AlreadyOpen { .. }) => {}
        other => panic!("inspect of a running engine's directory: {other:?}"),
    }
    eng.close().await.unwrap();

    let mut before = walk(crashed.path());
    before.sort();
    let ins = tierlog::offline::inspect(crashed.path()).unwrap();
    assert!(ins.redb_not_closed_cleanly, "{ins:?}");
    assert_eq!(ins.index_range, Some((1, 3000)));
    assert!(ins.cold_blocks > 0, "{ins:?}");
    let rep = tierlog::offline::verify(crashed.path()).unwrap();
    assert!(rep.redb_not_closed_cleanly);
    assert_eq!(rep.entries, 3000);
    assert_eq!(
        tierlog::offline::dump(crashed.path(), 1500, 1500).unwrap(),
        vec![e(1500, 1)]
    );
    let mut after = walk(crashed.path());
    after.sort();
    assert_eq!(before, after, "read-only tools changed the crashed directory");

    // The cleanly closed original needs no copy.
    assert!(
        !tierlog::offline::inspect(live.path())
            .unwrap()
            .redb_not_closed_cleanly
    );
}

fn walk(d: &std::path::Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    for ent in std::fs::read_dir(d).unwrap() {
        let p = ent.unwrap().path();
        let m = std::fs::metadata(&p).unwrap();
        if m.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push((p.display().to_string(), m.len(), m.modified().unwrap()));
        }
    }
    out
}

/// The ring never holds more than its share of the budget plus the batch being written: writers wait
/// for the compactor instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_budget_holds_under_sustained_writes() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        memory_budget_bytes: 2 << 20,
        segment_bytes: 1 << 20,
        ..Config::default()
    };
    let ring_share = config.ring_budget_bytes();
    let eng = TieredEngine::open(dir.path(), config).await.unwrap();
    let log = eng.log_store();
    let payload = bytes::Bytes::from(vec![42u8; 1000]);
    let batch_bytes = 64 * (1000 + 96);
    let mut peak = 0;
    for b in 0..400u64 {
        let batch: Vec<Entry> = (b * 64 + 1..=b * 64 + 64)
            .map(|i| Entry::new(i, 1, payload.clone()))
            .collect();
        log.persist_entries(batch).await.unwrap();
        peak = peak.max(eng.stats().hot_bytes);
    }
    let s = eng.stats();
    assert!(
        peak <= ring_share + batch_bytes,
        "peak {peak} > {ring_share} + {batch_bytes}"
    );
    assert!(s.cold_blocks > 0 && s.backpressure_waits > 0, "{s:?}");
    // Everything is still readable, mostly from the cold tier.
    let all = log.get_entries(1..=400 * 64).unwrap();
    assert_eq!(all.len(), 400 * 64);
    assert!(
        all.iter()
            .enumerate()
            .all(|(k, e)| e.index == k as u64 + 1 && e.payload == payload)
    );
    assert!(eng.stats().cold_reads > 0);
}
