//! Hard state, lifecycle (drop / close and immediate reopen, inside and outside a tokio runtime),
//! durability flags, and `stats()` sanity.

use std::time::Duration;

use crate::support::*;
use tierlog::{Config, HardState, LogId, LogStore, MetaStore, StorageEngine, TieredEngine, VotedFor};

fn hs(term: u64, vote: Option<(u64, u64, bool)>) -> HardState {
    HardState {
        current_term: term,
        voted_for: vote.map(|(id, t, committed)| VotedFor {
            voted_for_id: id,
            voted_for_term: t,
            committed,
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Hard state

/// save/load, overwrite (also back to no vote), and every saved value survives reopen.
#[tokio::test]
async fn hard_state_save_load_overwrite_and_reopen() {
    let mut h = Harness::new(Mode::Reopen).await;
    assert_eq!(
        h.meta().load_hard_state().unwrap(),
        None,
        "new store has no hard state"
    );
    let states = [
        hs(1, Some((2, 1, false))),
        hs(1, Some((2, 1, true))),
        hs(5, None),
        hs(u64::MAX, Some((u64::MAX, u64::MAX, true))),
        hs(6, Some((0, 6, false))),
    ];
    for s in states {
        h.meta().save_hard_state(&s).unwrap();
        assert_eq!(
            h.meta().load_hard_state().unwrap(),
            Some(s),
            "load right after save"
        );
        h.meta().flush().unwrap();
        h.meta().flush_async().await.unwrap();
        h.reopen().await;
        assert_eq!(h.meta().load_hard_state().unwrap(), Some(s), "load after reopen");
    }
}

/// The application-metadata blob: saved durably beside the hard state, independent of it and of
/// the log (reset keeps it), back after reopen; an oversized blob is refused with nothing written.
#[tokio::test]
async fn app_meta_save_load_reopen_and_limit() {
    let mut h = Harness::new(Mode::Reopen).await;
    assert_eq!(h.meta().load_app_meta().unwrap(), None);
    let limit = tierlog::TierMetaStore::APP_META_MAX_BYTES;
    for blob in [b"vote=3".to_vec(), Vec::new(), vec![7u8; limit]] {
        h.meta().save_app_meta(&blob).unwrap();
        h.meta().save_hard_state(&hs(4, None)).unwrap();
        h.log().reset().await.unwrap();
        h.reopen().await;
        assert_eq!(h.meta().load_app_meta().unwrap().as_deref(), Some(&blob[..]));
        assert_eq!(h.meta().load_hard_state().unwrap(), Some(hs(4, None)));
    }
    let err = h.meta().save_app_meta(&vec![1u8; limit + 1]).unwrap_err();
    assert!(matches!(err, tierlog::Error::InvalidInput(_)), "{err}");
    h.reopen().await;
    assert_eq!(h.meta().load_app_meta().unwrap().unwrap().len(), limit);
}

/// The hard state is independent of the log: no log operation (reset included) changes it, and
/// saving it changes nothing in the log.
async fn hard_state_is_independent_of_the_log(mode: Mode) {
    let mut h = Harness::new(mode).await;
    let s = hs(9, Some((4, 9, true)));
    h.meta().save_hard_state(&s).unwrap();
    h.log().persist_entries(ents(1..=150, 1)).await.unwrap();
    h.step().await;
    let log_before = h.snapshot();
    h.meta().save_hard_state(&s).unwrap();
    assert_eq!(h.snapshot(), log_before, "save_hard_state changed the log");

    h.log().purge(LogId::new(1, 30)).await.unwrap();
    h.log().truncate(100).await.unwrap();
    h.log().replace_range(90, ents(90..=95, 2)).await.unwrap();
    h.step().await;
    assert_eq!(
        h.meta().load_hard_state().unwrap(),
        Some(s),
        "[{mode:?}] after purge/truncate/replace"
    );
    h.log().reset().await.unwrap();
    h.step().await;
    assert_eq!(
        h.meta().load_hard_state().unwrap(),
        Some(s),
        "[{mode:?}] after reset"
    );
    let s2 = hs(10, None);
    h.meta().save_hard_state(&s2).unwrap();
    h.step().await;
    assert_eq!(
        h.meta().load_hard_state().unwrap(),
        Some(s2),
        "[{mode:?}] overwrite after reset"
    );
    h.assert_log(&[], 0, None, "log after reset and a hard-state save")
        .await;
}
in_every_mode!(hard_state_is_independent_of_the_log);

// ---------------------------------------------------------------------------------------------
// Lifecycle

async fn write_some(engine: &TieredEngine, term: u64) {
    let log = engine.log_store();
    let next = log.last_index() + 1;
    log.persist_entries(ents(next..=next + 99, term)).await.unwrap();
    engine.meta_store().save_hard_state(&hs(term, None)).unwrap();
}

async fn check_written(engine: &TieredEngine, rounds: u64) {
    let log = engine.log_store();
    assert_eq!(log.last_index(), rounds * 100);
    let got = log.get_entries(1..=rounds * 100).unwrap();
    let want: Vec<_> = (1..=rounds)
        .flat_map(|r| ents((r - 1) * 100 + 1..=r * 100, r))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        engine.meta_store().load_hard_state().unwrap(),
        Some(hs(rounds, None))
    );
}

/// `rounds` times on one directory: open with `cfg`, check what the earlier rounds wrote, write one
/// more round, and let `end` drop the engine; then reopen and check every round.
async fn reopen_rounds(cfg: fn() -> Config, rounds: u64, end: impl AsyncFn(TieredEngine, u64)) {
    let dir = tempfile::tempdir().unwrap();
    for round in 1..=rounds {
        let engine = TieredEngine::open(dir.path(), cfg()).await.unwrap();
        if round > 1 {
            check_written(&engine, round - 1).await;
        }
        write_some(&engine, round).await;
        end(engine, round).await;
    }
    let engine = TieredEngine::open(dir.path(), cfg()).await.unwrap();
    check_written(&engine, rounds).await;
}

/// Drop then immediate reopen of the same directory inside a current_thread runtime (how d-engine
/// drives storage), with an eager background compactor possibly mid-round at the drop.
#[tokio::test]
async fn drop_and_reopen_at_once_in_current_thread_runtime() {
    reopen_rounds(config::eager_compaction, 6, async |engine, round| {
        if round % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        drop(engine);
    })
    .await;
}

/// Drop and immediate reopen with `Config::default()` (full-size, preallocated segments), as
/// d-engine's conformance suite does it.
#[tokio::test]
async fn drop_and_reopen_at_once_with_default_config() {
    reopen_rounds(Config::default, 3, async |engine, _| drop(engine)).await;
}

/// The same on a multi_thread runtime, with the handles dropped in a different order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_and_reopen_at_once_in_multi_thread_runtime() {
    reopen_rounds(config::eager_compaction, 4, async |engine, _| {
        let (log, meta) = (engine.log_store(), engine.meta_store());
        drop(engine);
        drop(meta);
        drop(log);
    })
    .await;
}

/// close().await, then reopen at once.
#[tokio::test]
async fn close_then_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let engine = TieredEngine::open(dir.path(), config::eager_compaction())
        .await
        .unwrap();
    write_some(&engine, 1).await;
    engine.close().await.unwrap();
    let engine = TieredEngine::open(dir.path(), config::eager_compaction())
        .await
        .unwrap();
    check_written(&engine, 1).await;
    engine.close().await.unwrap();
}

/// Dropping or closing the engine releases the directory even while `LogStore`/`MetaStore` handles
/// of it are still alive, and those stale handles can neither read a view that is gone nor write
/// into the files the reopened engine now owns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_that_outlive_the_engine_do_not_hold_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    for close in [false, true] {
        let engine = TieredEngine::open(dir.path(), config::eager_compaction())
            .await
            .unwrap();
        let round = engine.log_store().last_index() / 100 + 1;
        write_some(&engine, round).await;
        engine.log_store().flush().unwrap();
        let (stale_log, stale_meta) = (engine.log_store(), engine.meta_store());
        if close {
            engine.close().await.unwrap();
        } else {
            drop(engine);
        }

        let reopened = TieredEngine::open(dir.path(), config::eager_compaction())
            .await
            .expect("reopen while handles of the old engine are alive");
        let closed = |r: tierlog::Result<()>| matches!(r, Err(tierlog::Error::Closed(_)));
        let next = stale_log.last_index() + 1;
        assert!(closed(stale_log.persist_entries(ents(next..=next, 99)).await));
        assert!(closed(stale_log.truncate(1).await));
        assert!(closed(stale_log.purge(LogId::new(1, 50)).await));
        assert!(closed(stale_log.reset().await));
        assert!(closed(stale_meta.save_hard_state(&hs(99, None))));
        assert!(closed(stale_log.get_entries(1..=10).map(drop)));
        assert!(closed(stale_log.entry(1).await.map(drop)));
        assert!(closed(stale_meta.load_hard_state().map(drop)));
        check_written(&reopened, round).await;
        drop((stale_log, stale_meta));
    }
}

/// The engine outlives the runtime that opened it: dropped after that runtime is gone (outside any
/// runtime), then the directory is reopened in a new runtime.
#[test]
fn drop_after_runtime_is_gone_then_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = rt.block_on(async {
        let engine = TieredEngine::open(dir.path(), config::eager_compaction())
            .await
            .unwrap();
        write_some(&engine, 1).await;
        engine
    });
    drop(rt);
    drop(engine);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let engine = TieredEngine::open(dir.path(), config::eager_compaction())
            .await
            .unwrap();
        check_written(&engine, 1).await;
        write_some(&engine, 2).await;
    });
    drop(rt);

    // And dropped outside block_on while its runtime still exists.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let engine = rt.block_on(async {
        let engine = TieredEngine::open(dir.path(), config::eager_compaction())
            .await
            .unwrap();
        check_written(&engine, 2).await;
        engine
    });
    drop(engine);
    let engine = rt
        .block_on(TieredEngine::open(dir.path(), config::eager_compaction()))
        .unwrap();
    rt.block_on(check_written(&engine, 2));
}

/// Reopening a small log again and again must not grow the write-ahead log: recovery costs O(hot
/// tier), so segments that hold no live record cannot pile up (each one is read at open).
/// Bound: the active segment, one spare, and the recycle pool.
#[tokio::test]
async fn repeated_reopen_does_not_accumulate_segments() {
    let mut h = Harness::new(Mode::Reopen).await;
    h.log().persist_entries(ents(1..=16, 1)).await.unwrap();
    let bound = 2 + h.cfg.recycle_segments as u64;
    let mut seen = Vec::new();
    for _ in 0..10 {
        h.reopen().await;
        let s = h.engine().stats();
        seen.push(s.wal_segments);
        assert_eq!(h.log().get_entries(1..=16).unwrap(), ents(1..=16, 1));
    }
    assert!(
        seen.iter().all(|&n| n <= bound),
        "wal_segments after each of 10 reopens of a 16-entry log: {seen:?} (bound {bound})"
    );
}

/// is_write_durable() is exactly config.sync_on_persist; flush works in both modes, and a
/// sync-on-persist engine keeps its writes across reopen like the default one.
#[tokio::test]
async fn is_write_durable_matches_sync_on_persist() {
    for sync in [false, true] {
        let cfg = Config {
            sync_on_persist: sync,
            ..config::eager_compaction()
        };
        let dir = tempfile::tempdir().unwrap();
        let engine = TieredEngine::open(dir.path(), cfg.clone()).await.unwrap();
        let log = engine.log_store();
        assert_eq!(log.is_write_durable(), sync);
        log.persist_entries(ents(1..=40, 1)).await.unwrap();
        log.flush().unwrap();
        log.persist_entries(ents(41..=50, 1)).await.unwrap();
        log.flush_async().await.unwrap();
        drop((log, engine));
        let engine = TieredEngine::open(dir.path(), cfg).await.unwrap();
        assert_eq!(engine.log_store().is_write_durable(), sync);
        assert_eq!(engine.log_store().get_entries(1..=50).unwrap(), ents(1..=50, 1));
    }
}

/// Many concurrent flushes all succeed (group commit must not lose a waiter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_flushes_all_return() {
    let h = Harness::new(Mode::Hot).await;
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let log = h.log();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                log.flush_async().await.unwrap();
                let log2 = log.clone();
                tokio::task::spawn_blocking(move || log2.flush().unwrap())
                    .await
                    .unwrap();
            }
            t
        }));
    }
    h.log().persist_entries(ents(1..=10, 1)).await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(h.log().get_entries(1..=10).unwrap(), ents(1..=10, 1));
}

// ---------------------------------------------------------------------------------------------
// Stats

/// Index figures, tier figures and file figures follow the log.
#[tokio::test]
async fn stats_follow_the_log() {
    let mut h = Harness::new(Mode::CompactedReopen).await;
    let s = h.engine().stats();
    assert_eq!(
        (s.first_index, s.last_index, s.purge_boundary),
        (0, 0, None),
        "new: {s:?}"
    );
    assert_eq!(s.memory_budget_bytes, h.cfg.memory_budget_bytes);
    assert_eq!(s.cold_blocks, 0);

    h.log().persist_entries(ents(1..=300, 1)).await.unwrap();
    let s = h.engine().stats();
    assert_eq!((s.first_index, s.last_index), (1, 300), "{s:?}");
    assert_eq!(s.hot_entries, 300, "nothing compacted yet: {s:?}");
    assert!(
        s.hot_bytes
            >= ents(1..=300, 1)
                .iter()
                .map(|e| e.payload.len() as u64)
                .sum::<u64>()
    );
    assert!(s.wal_bytes > 0 && s.wal_segments >= 1, "{s:?}");

    h.log().purge(LogId::new(1, 10)).await.unwrap();
    let s = h.engine().stats();
    assert_eq!((s.first_index, s.last_index), (11, 300), "{s:?}");
    assert_eq!(s.purge_boundary, Some(LogId::new(1, 10)));

    h.compact().await;
    let s = h.engine().stats();
    assert!(s.cold_blocks > 0, "{s:?}");
    assert_eq!(s.compaction_high_water, 300, "{s:?}");
    assert!(s.compactions >= 1, "{s:?}");
    assert!(s.cold_raw_bytes > 0 && s.cold_stored_bytes > 0, "{s:?}");
    assert!(
        s.cold_stored_bytes < s.cold_raw_bytes,
        "repetitive payloads compress: {s:?}"
    );
    assert!(s.redb_file_bytes > 0, "{s:?}");

    h.reopen().await;
    let s = h.engine().stats();
    assert_eq!((s.first_index, s.last_index), (11, 300), "after reopen: {s:?}");
    assert_eq!(s.purge_boundary, Some(LogId::new(1, 10)));
    assert!(
        s.cold_blocks > 0 && s.compaction_high_water == 300,
        "after reopen: {s:?}"
    );

    h.log().reset().await.unwrap();
    h.compact().await;
    let s = h.engine().stats();
    assert_eq!(
        (s.first_index, s.last_index, s.purge_boundary),
        (0, 0, None),
        "reset: {s:?}"
    );
    assert_eq!((s.cold_blocks, s.hot_entries), (0, 0), "reset: {s:?}");
}

/// After compaction and reopen the ring holds nothing below the cold high-water: reads are served
/// by the cold tier through the block cache (miss first, hit on a repeat).
#[tokio::test]
async fn cold_reads_after_compaction_and_reopen() {
    let mut h = Harness::new(Mode::CompactedReopen).await;
    h.log().persist_entries(ents(1..=300, 1)).await.unwrap();
    h.compact().await;
    h.reopen().await;
    let s0 = h.engine().stats();
    assert_eq!(h.log().get_entries(1..=300).unwrap(), ents(1..=300, 1));
    let s1 = h.engine().stats();
    assert!(
        s1.cold_reads >= s0.cold_reads + 300,
        "before {s0:?}\nafter {s1:?}"
    );
    assert!(
        s1.block_cache_misses > s0.block_cache_misses,
        "before {s0:?}\nafter {s1:?}"
    );
    assert!(s1.block_cache_bytes > 0, "{s1:?}");

    assert_eq!(h.log().get_entries(100..=120).unwrap(), ents(100..=120, 1));
    let s2 = h.engine().stats();
    assert!(
        s2.block_cache_hits > s1.block_cache_hits,
        "warm read: before {s1:?}\nafter {s2:?}"
    );
    assert!(s2.cold_reads >= s1.cold_reads + 21, "before {s1:?}\nafter {s2:?}");
}

/// With the smallest budget (1 MiB) the ring cannot keep everything: compacted entries are evicted,
/// reads of old entries come from the cold tier, and the budget holds.
#[tokio::test]
async fn cold_reads_with_tiny_memory_budget() {
    let h = Harness::with_config(Mode::Hot, config::tiny_memory()).await;
    let n = 20_000u64;
    for start in (1..=n).step_by(100) {
        h.log()
            .persist_entries(ents(start..=start + 99, 1))
            .await
            .unwrap();
    }
    h.compact().await;
    let s0 = h.engine().stats();
    assert!(s0.cold_blocks > 0, "{s0:?}");
    assert!(
        s0.hot_bytes + s0.block_cache_bytes <= s0.memory_budget_bytes,
        "memory budget exceeded: {s0:?}"
    );
    assert!(
        s0.hot_entries < n,
        "1 MiB cannot hold ~1.5 MB of entries in the ring: {s0:?}"
    );

    assert_eq!(h.log().get_entries(1..=1000).unwrap(), ents(1..=1000, 1));
    let s1 = h.engine().stats();
    assert!(s1.cold_reads > s0.cold_reads, "before {s0:?}\nafter {s1:?}");
    assert_eq!(h.log().get_entries(1..=n).unwrap(), ents(1..=n, 1), "whole log");
    let s2 = h.engine().stats();
    assert!(
        s2.hot_bytes + s2.block_cache_bytes <= s2.memory_budget_bytes,
        "memory budget exceeded after reads: {s2:?}"
    );
    assert!(
        s2.hot_reads + s2.cold_reads >= s0.hot_reads + s0.cold_reads + n + 1000,
        "{s2:?}"
    );
}
