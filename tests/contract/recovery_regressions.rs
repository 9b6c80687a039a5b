//! Deterministic reproductions of recovery failures first found by the crash loop (`tests/crash/`).
//! Each test builds the on-disk situation the crash loop reached, with the public API only, then
//! reopens and checks the log.

use crate::support::{Model, batch, config, diff_entries};
use tierlog::{LogStore, MetaStore, StorageEngine, TieredEngine};

const SEED: u64 = 77;

/// A `reset` that the cold checkpoint already covers (`applied_seq` = the reset's sequence number)
/// while the records before it in the same live segment are still replayed, "restricted" to indices
/// above the checkpoint's `cold_hi` (0 after the reset). Replaying those pre-reset records onto the
/// empty checkpoint state applies an append (1001..=1008) and then an older overwrite (990..=995)
/// whose predecessors were in retired segments; the ring gets 990..=995 followed by 1001.. and
/// `Ring::push_back`'s invariant fails (debug builds panic inside `open`; release builds build a
/// ring with a gap and rely on the later reset to clear it). Found by the crash loop, seed 10.
#[tokio::test]
async fn reopen_after_a_checkpointed_reset_replays_nothing_from_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::default();
    {
        let e = TieredEngine::open(dir.path(), config::tiny()).await.unwrap();
        let log = e.log_store();
        for first in (1..=1000).step_by(40) {
            log.persist_entries(batch(first, 40, 1, SEED)).await.unwrap();
        }
        log.flush().unwrap();
    }
    {
        // A fresh segment starts at this open: it begins with the append below.
        let e = TieredEngine::open(dir.path(), config::tiny()).await.unwrap();
        let log = e.log_store();
        assert_eq!(log.last_index(), 1000);
        log.persist_entries(batch(1001, 8, 2, SEED)).await.unwrap();
        log.persist_entries(batch(990, 6, 3, SEED)).await.unwrap();
        log.reset().await.unwrap();
        // Checkpoint at the reset: every older segment is retired.
        e.compact_now().await.unwrap();
        log.persist_entries(batch(1, 5, 4, SEED)).await.unwrap();
        m.persist(1, 5, 4);
        log.flush().unwrap();
    }
    let e = TieredEngine::open(dir.path(), config::tiny()).await.unwrap();
    let log = e.log_store();
    assert_eq!(log.last_index(), m.last_index());
    assert_eq!(log.load_purge_boundary().unwrap(), None);
    let got = log.get_entries(0..=2000).unwrap();
    if let Some(d) = diff_entries(&got, &m.slice(0, 2000, SEED)) {
        panic!("log after reopen: {d}");
    }
}

/// `replace_range(from, entries)` lowers the write-ahead segment's "highest live index" to `from - 1`
/// *after* counting the record's own entries (`log_and_apply`: `w.append(&rec)` then
/// `w.note_truncate(from)`), so the segment holding the replacement entries claims it holds nothing
/// above `from - 1`. Once the cold checkpoint reaches `from - 1` and passes the segment's sequence
/// numbers (here: a purge-only checkpoint round), the compactor retires the segment and the
/// replacement entries exist nowhere on disk: a plain drop + reopen loses them. Found by the crash
/// loop (seed 4: entries 595..=603 gone, then recovery wrote later entries into the wrong ring
/// slots).
#[tokio::test]
async fn replace_range_entries_survive_segment_retirement_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    // No compaction unless forced, so the checkpoint's cold_hi stays where compact_now put it.
    let quiet = config::quiet();
    let mut m = Model::default();
    {
        let e = TieredEngine::open(dir.path(), quiet.clone()).await.unwrap();
        let log = e.log_store();
        log.persist_entries(batch(1, 100, 1, SEED)).await.unwrap();
        m.persist(1, 100, 1);
        e.compact_now().await.unwrap();
        log.replace_range(101, batch(101, 10, 2, SEED)).await.unwrap();
        m.persist(101, 10, 2);
        // Big entries: the segment holding the replace is sealed and a new one started.
        let big: Vec<tierlog::Entry> = (111..=114)
            .map(|i| tierlog::Entry::new(i, 3, vec![i as u8; 30_000]))
            .collect();
        log.persist_entries(big.clone()).await.unwrap();
        log.flush().unwrap();
        let segments_before = e.stats().wal_segments;
        // A purge moves the checkpoint without moving entries; the background round then retires
        // every closed segment it believes the checkpoint covers.
        log.purge(tierlog::LogId::new(1, 5)).await.unwrap();
        m.purge(tierlog::LogId::new(1, 5));
        for _ in 0..200 {
            if e.stats().wal_segments < segments_before {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let got = log.get_entries(0..=200).unwrap();
        assert_eq!(got.len(), 109, "live log before reopen");
        for b in big {
            m.entries.insert(b.index, b.term);
        }
    }
    let e = TieredEngine::open(dir.path(), quiet).await.unwrap();
    let log = e.log_store();
    assert_eq!(log.last_index(), 114);
    let got = log.get_entries(0..=200).unwrap();
    let want: Vec<(u64, u64)> = m.entries.iter().map(|(i, t)| (*i, *t)).collect();
    let have: Vec<(u64, u64)> = got.iter().map(|e| (e.index, e.term)).collect();
    assert_eq!(have, want, "log after reopen (index, term)");
}

/// An overwrite (upsert) below the cold high-water marks the cold tier dirty from the batch's first
/// index; the next compaction round cuts every cold block above that point (`cut_above`) and, when
/// it does not rewrite the rest at once (a normal round below the trigger), commits a checkpoint
/// with `cold_hi` just below the batch. The entries *after* the overwritten batch (kept by upsert
/// semantics) then live only in the ring: their write-ahead segments were retired when they first
/// went cold. A drop + reopen loses them. Found by the model test (last_index 38 where 68
/// entries were acknowledged).
#[tokio::test]
async fn entries_after_a_cold_overwrite_survive_the_next_round_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    // Normal rounds never move entries (trigger and hot tail out of reach); only compact_now does.
    let quiet = config::quiet();
    let mut m = Model::default();
    {
        let e = TieredEngine::open(dir.path(), quiet.clone()).await.unwrap();
        let log = e.log_store();
        for first in (1..=2000).step_by(50) {
            log.persist_entries(batch(first, 50, 1, SEED)).await.unwrap();
        }
        m.persist(1, 2000, 1);
        e.compact_now().await.unwrap();
        let rounds = e.stats().compactions;
        log.persist_entries(batch(100, 6, 2, SEED)).await.unwrap();
        m.persist(100, 6, 2);
        log.flush().unwrap();
        // Let the background thread run the round the dirty cold range asks for.
        for _ in 0..500 {
            if e.stats().compactions > rounds {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let got = log.get_entries(0..=3000).unwrap();
        if let Some(d) = diff_entries(&got, &m.slice(0, 3000, SEED)) {
            panic!("live log: {d}");
        }
    }
    let e = TieredEngine::open(dir.path(), quiet).await.unwrap();
    let log = e.log_store();
    assert_eq!(log.last_index(), 2000, "last_index after reopen");
    let got = log.get_entries(0..=3000).unwrap();
    if let Some(d) = diff_entries(&got, &m.slice(0, 3000, SEED)) {
        panic!("log after reopen: {d}");
    }
}

/// Writes ~3 MiB (compacting as it goes so the ring can evict) and returns the index of an entry
/// well inside the evicted, cold-only range, with the compaction count at that moment.
async fn fill_past_the_ring(e: &TieredEngine, m: &mut Model) -> (u64, u64) {
    let log = e.log_store();
    let mut next = 1;
    while next < 12_000 {
        log.persist_entries(batch(next, 100, 1, SEED)).await.unwrap();
        m.persist(next, 100, 1);
        next += 100;
        if next % 1_000 == 1 {
            e.compact_now().await.unwrap();
        }
    }
    e.compact_now().await.unwrap();
    let stats = e.stats();
    let ring_first = stats.last_index + 1 - stats.hot_entries;
    assert!(
        ring_first > 500,
        "the ring still holds the old entries: {stats:?}"
    );
    (ring_first - 300, stats.compactions)
}

/// Flushes, waits for the background round after `rounds`, and checks the live log against `m`.
async fn settle_and_check(e: &TieredEngine, m: &Model, rounds: u64) {
    let log = e.log_store();
    log.flush().unwrap();
    for _ in 0..500 {
        if e.stats().compactions > rounds {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let last = m.last_index();
    let got = log.get_entries(0..=last).unwrap();
    if let Some(d) = diff_entries(&got, &m.slice(0, last, SEED)) {
        panic!("live log: {d}");
    }
}

/// Reopens `dir` and checks the log against `m`.
async fn check_after_reopen(dir: &std::path::Path, cfg: tierlog::Config, m: &Model) {
    let e = TieredEngine::open(dir, cfg).await.unwrap();
    let log = e.log_store();
    let last = m.last_index();
    assert_eq!(log.last_index(), last, "last_index after reopen");
    let got = log.get_entries(0..=last).unwrap();
    if let Some(d) = diff_entries(&got, &m.slice(0, last, SEED)) {
        panic!("log after reopen: {d}");
    }
}

/// Like the test above, but the overwritten range and the entries after it have been evicted from
/// the ring (1 MiB budget), so they are only in cold blocks when the overwrite lands in the middle
/// of a block. The next round must not leave a checkpoint whose `cold_hi` stops before entries
/// that no longer exist in any write-ahead segment. (Crash loop seed 202 reached "write-ahead
/// records leave index 1336 missing above the cold checkpoint" at open after a kill.)
#[tokio::test]
async fn overwrite_inside_an_evicted_cold_block_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::default();
    {
        let e = TieredEngine::open(dir.path(), config::tiny_forced_only())
            .await
            .unwrap();
        let (k, rounds) = fill_past_the_ring(&e, &mut m).await;
        e.log_store().persist_entries(batch(k, 3, 2, SEED)).await.unwrap();
        m.persist(k, 3, 2);
        settle_and_check(&e, &m, rounds).await;
    }
    check_after_reopen(dir.path(), config::tiny_forced_only(), &m).await;
}

/// The crash-loop sequence of seed 202 in miniature: an overwrite inside the evicted cold range,
/// then a `replace_range` starting a little below it (cutting the cold tier there).
#[tokio::test]
async fn overwrite_then_replace_below_it_in_cold_blocks_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::default();
    {
        let e = TieredEngine::open(dir.path(), config::tiny_forced_only())
            .await
            .unwrap();
        let log = e.log_store();
        let (k, rounds) = fill_past_the_ring(&e, &mut m).await;
        log.persist_entries(batch(k, 9, 2, SEED)).await.unwrap();
        m.persist(k, 9, 2);
        log.persist_entries(batch(k + 300, 1, 3, SEED)).await.unwrap();
        m.persist(k + 300, 1, 3);
        log.replace_range(k - 7, batch(k - 7, 13, 4, SEED)).await.unwrap();
        m.truncate(k - 7);
        m.persist(k - 7, 13, 4);
        settle_and_check(&e, &m, rounds).await;
    }
    check_after_reopen(dir.path(), config::tiny_forced_only(), &m).await;
}

/// The seed of the fixture's payloads.
const FIXTURE_SEED: u64 = 0xF1C5;

/// A copy of the fixture store `tests/fixtures/<name>` and the model of what it holds (every fixture
/// holds the same log).
fn fixture_store(name: &str) -> (tempfile::TempDir, Model) {
    let dir = tempfile::tempdir().unwrap();
    crate::support::copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
        dir.path(),
    );
    let mut m = Model::default();
    for (k, first) in (1..=600u64).step_by(20).enumerate() {
        m.persist(first, 20, k as u64 + 1);
    }
    m.purge(tierlog::LogId::new(3, 50));
    m.truncate(590);
    (dir, m)
}

/// A store written by the first release (write-ahead segments of version 1, `TLB1` cold blocks),
/// kept under `tests/fixtures/store-v1`: entries 1..=600 in batches of 20 (batch k has term k + 1),
/// 1..=300 compacted, then a purge through (3, 50), a truncation from 590, a hard state and an
/// application-metadata blob, closed cleanly. It opens, reads back whole, verifies, and takes writes
/// that survive the next open.
#[tokio::test]
async fn a_store_written_by_the_first_release_opens_and_reads() {
    fixture_opens_and_reads("store-v1", b"app-meta-v1").await;
}

/// The same log written by the release before the cold format v2 and the stepped write-ahead files
/// (main `3ebed44`: version-2 segment headers, `TLB1` blocks, fixed-size segments and a recycled
/// spare), kept under `tests/fixtures/store-v2`.
#[tokio::test]
async fn a_store_written_by_the_previous_release_opens_and_reads() {
    fixture_opens_and_reads("store-v2", b"app-meta-v2").await;
}

/// The same log written by the release before groups (main `0b4cff3`, with that release's `tiny()`
/// configuration): directory marker format 1, version-2 segment headers, write-ahead files grown in
/// zero-filled steps (the open segment is 32 KiB of 64) and a recycled spare, `TLB2` blocks of one
/// frame each, the first ten compressed without a dictionary and the last six with the store's
/// trained one (a `TLD1` row in `dictionaries`, id 1); no group records or tables. Kept under
/// `tests/fixtures/store-v3`.
#[tokio::test]
async fn a_store_written_by_the_release_before_groups_opens_and_reads() {
    fixture_opens_and_reads("store-v3", b"app-meta-v3").await;
}

/// Every store written before groups existed opens as group 0 alone, takes a second group, and
/// both groups survive a clean reopen: group 1's log, hard state and metadata (written to the
/// write-ahead log and to the fixture's cold file) read back, and group 0 still reads the
/// fixture's log, hard state and metadata unchanged.
#[tokio::test]
async fn fixture_stores_written_before_groups_take_a_second_group() {
    use tierlog::{HardState, VotedFor};
    // Group 1's payloads differ from group 0's, so an entry read from the wrong group shows.
    const GROUP_SEED: u64 = FIXTURE_SEED ^ 0x6801;
    for (name, app_meta) in [
        ("store-v1", &b"app-meta-v1"[..]),
        ("store-v2", b"app-meta-v2"),
        ("store-v3", b"app-meta-v3"),
    ] {
        let (dir, m0) = fixture_store(name);
        let mut m1 = Model::default();
        let hard1 = HardState {
            current_term: 7,
            voted_for: Some(VotedFor {
                voted_for_id: 3,
                voted_for_term: 7,
                committed: false,
            }),
        };
        let check = |e: &TieredEngine, m1: &Model, what: &str| {
            assert_eq!(e.groups(), vec![0, 1], "{name} {what}");
            let log0 = e.log_store();
            assert_eq!(log0.last_index(), m0.last_index(), "{name} {what}");
            assert_eq!(log0.load_purge_boundary().unwrap(), m0.boundary, "{name} {what}");
            let got = log0.get_entries(0..=1000).unwrap();
            if let Some(d) = diff_entries(&got, &m0.slice(0, 1000, FIXTURE_SEED)) {
                panic!("{name} {what}, group 0: {d}");
            }
            let meta0 = e.meta_store();
            let hard0 = meta0.load_hard_state().unwrap().expect("hard state");
            assert_eq!(hard0.current_term, 31, "{name} {what}");
            assert_eq!(
                meta0.load_app_meta().unwrap().as_deref(),
                Some(app_meta),
                "{name} {what}"
            );
            let g1 = e.group(1).unwrap();
            let log1 = g1.log_store();
            assert_eq!(log1.last_index(), m1.last_index(), "{name} {what}");
            let got = log1.get_entries(0..=1000).unwrap();
            if let Some(d) = diff_entries(&got, &m1.slice(0, 1000, GROUP_SEED)) {
                panic!("{name} {what}, group 1: {d}");
            }
            let meta1 = g1.meta_store();
            assert_eq!(meta1.load_hard_state().unwrap(), Some(hard1), "{name} {what}");
            assert_eq!(
                meta1.load_app_meta().unwrap().as_deref(),
                Some(&b"group-1-meta"[..]),
                "{name} {what}"
            );
        };
        let e = TieredEngine::open(dir.path(), config::tiny()).await.unwrap();
        assert_eq!(
            e.groups(),
            vec![0],
            "{name}: a store written before groups hosts group 0 only"
        );
        let g1 = e.create_group(1).await.unwrap();
        assert_eq!(g1.id(), 1);
        let log1 = g1.log_store();
        // The first 200 entries reach the fixture's cold file, the rest stay in the write-ahead log.
        for (k, first) in (1..=240u64).step_by(40).enumerate() {
            log1.persist_entries(crate::support::batch(first, 40, k as u64 + 1, GROUP_SEED))
                .await
                .unwrap();
            m1.persist(first, 40, k as u64 + 1);
            if first == 161 {
                log1.flush().unwrap();
                let blocks_before = e.stats().cold_blocks;
                e.compact_now().await.unwrap();
                assert!(
                    e.stats().cold_blocks > blocks_before,
                    "{name}: group 1 wrote no cold block"
                );
            }
        }
        log1.flush().unwrap();
        let meta1 = g1.meta_store();
        meta1.save_hard_state(&hard1).unwrap();
        meta1.save_app_meta(b"group-1-meta").unwrap();
        check(&e, &m1, "before the reopen");
        drop((log1, meta1, g1));
        e.close().await.unwrap();
        let report = tierlog::offline::verify(dir.path()).expect("the store with two groups verifies");
        assert_eq!(
            report.entries,
            (m0.entries.len() + m1.entries.len()) as u64,
            "{name}"
        );
        let e = TieredEngine::open(dir.path(), config::tiny()).await.unwrap();
        check(&e, &m1, "after the reopen");
        e.close().await.unwrap();
    }
}

async fn fixture_opens_and_reads(name: &str, app_meta: &[u8]) {
    let (dir, mut m) = fixture_store(name);
    let check = |e: &TieredEngine, m: &Model| {
        let log = e.log_store();
        assert_eq!(log.last_index(), m.last_index(), "{name}");
        assert_eq!(log.load_purge_boundary().unwrap(), m.boundary, "{name}");
        let got = log.get_entries(0..=1000).unwrap();
        if let Some(d) = diff_entries(&got, &m.slice(0, 1000, FIXTURE_SEED)) {
            panic!("fixture store {name}: {d}");
        }
    };
    let report = tierlog::offline::verify(dir.path()).expect("the fixture verifies");
    assert_eq!(report.entries, m.entries.len() as u64, "{name}");
    let e = TieredEngine::open(dir.path(), config::tiny()).await.unwrap();
    check(&e, &m);
    // The entries came out of the fixture's cold blocks (`TLB1` in store-v1 and store-v2, `TLB2` in
    // store-v3), not only the write-ahead log.
    assert!(
        e.stats().cold_reads > 0,
        "{name}: no entry of the fixture was read from a cold block"
    );
    let meta = e.meta_store();
    let hard = meta.load_hard_state().unwrap().expect("hard state");
    assert_eq!(hard.current_term, 31, "{name}");
    assert_eq!(meta.load_app_meta().unwrap().as_deref(), Some(app_meta), "{name}");
    let log = e.log_store();
    log.persist_entries(crate::support::batch(590, 30, 100, FIXTURE_SEED))
        .await
        .unwrap();
    m.persist(590, 30, 100);
    log.flush().unwrap();
    e.compact_now().await.unwrap();
    drop((log, meta));
    e.close().await.unwrap();
    let e = TieredEngine::open(dir.path(), config::tiny()).await.unwrap();
    check(&e, &m);
}

/// A store of the first release gets version-2 blocks beside its version-1 ones: a truncation in the
/// middle of a `TLB1` block makes the compactor trim it (re-encoded as `TLB2` under the same id),
/// new entries go to `TLB2` blocks, a purge deletes `TLB1` blocks below it; every entry reads back
/// right from the mix, `verify` checks every block, and so does the next open.
#[tokio::test]
async fn a_first_release_store_compacts_into_a_mix_of_block_versions() {
    use tierlog::LogStore;
    let (dir, mut m) = fixture_store("store-v1");
    let check = |e: &TieredEngine, m: &Model, what: &str| {
        let log = e.log_store();
        assert_eq!(log.last_index(), m.last_index(), "{what}");
        let got = log.get_entries(0..=2000).unwrap();
        if let Some(d) = diff_entries(&got, &m.slice(0, 2000, FIXTURE_SEED)) {
            panic!("{what}: {d}");
        }
    };
    let e = TieredEngine::open(dir.path(), config::tiny()).await.unwrap();
    let blocks_before = e.stats().cold_blocks;
    assert!(blocks_before > 2, "the fixture has several cold blocks");
    let log = e.log_store();
    // Index 301 lies inside a version-1 block (the fixture's blocks hold dozens of entries each).
    log.truncate(301).await.unwrap();
    m.truncate(301);
    log.persist_entries(crate::support::batch(301, 400, 200, FIXTURE_SEED))
        .await
        .unwrap();
    m.persist(301, 400, 200);
    log.purge(tierlog::LogId::new(7, 130)).await.unwrap();
    m.purge(tierlog::LogId::new(7, 130));
    e.compact_now().await.unwrap();
    check(&e, &m, "after compaction");
    drop(log);
    e.close().await.unwrap();
    let report = tierlog::offline::verify(dir.path()).expect("the mixed store verifies");
    assert_eq!(report.entries, m.entries.len() as u64);
    let e = TieredEngine::open(dir.path(), config::tiny()).await.unwrap();
    // Compaction covered every record, so the reopened ring is empty and every read is cold.
    check(&e, &m, "after reopen");
    assert!(e.stats().cold_reads >= m.entries.len() as u64);
    e.close().await.unwrap();
}
