//! Injected I/O faults (`fail` crate, `--features failpoints`): every I/O site of the engine fails
//! on purpose with ENOSPC (28) or EIO (5), and each test checks that
//! - the operation that hit the fault returns a clear `Error` (the OS error kept where the engine
//!   reports an `Error::Io`),
//! - nothing of a failed mutation is visible, and the engine either keeps working once the fault is
//!   gone or refuses writes with `Error::Poisoned` after a failed fdatasync (never a silent half
//!   state),
//! - a reopen of the directory holds every entry acknowledged before the fault, byte for byte.
//!
//! Failpoints (in `src/`): `wal::append`, `wal::append::torn` (half the record reaches the file),
//! `wal::sync` (group commit and rotation fdatasync), `wal::segment_create`, `wal::segment_retire`,
//! `wal::spare_create`, `wal::zero_ahead` and `wal::zero_ahead::sync` (a step zero-filled ahead of
//! the writer, its write and its fdatasync), `cold::commit` (redb commit of a compaction round), `cold::commit::after` (a
//! commit reported failed although it reached the disk), `cold::read` (block read), `meta::save`
//! (hard state), `engine::marker::torn`, `engine::marker::sync` and `engine::marker::rename` (the
//! marker written while `open` creates a directory). Purge, truncate, `replace_range` and reset
//! records go through `wal::append` like appends.
//!
//! Run: `cargo test --features failpoints --test reliability faults::`.

use std::path::Path;

use crate::support::{Model, batch, config, log_matches};
use fail::FailScenario;
use tierlog::{Config, Error, HardState, LogId, LogStore, MetaStore, StorageEngine, TieredEngine, VotedFor};

const SEED: u64 = 0xFA11;

/// Entries 1..=600, the first 300 compacted into the cold tier, everything flushed.
async fn setup(dir: &Path, config: Config) -> (TieredEngine, Model) {
    let e = TieredEngine::open(dir, config).await.unwrap();
    let log = e.log_store();
    let mut m = Model::default();
    for (k, first) in (1..=600).step_by(20).enumerate() {
        log.persist_entries(batch(first, 20, k as u64 + 1, SEED))
            .await
            .unwrap();
        m.persist(first, 20, k as u64 + 1);
        if first == 281 {
            e.compact_now().await.unwrap();
        }
    }
    log.flush().unwrap();
    (e, m)
}

fn check(e: &TieredEngine, m: &Model, what: &str) {
    if let Err(d) = log_matches(&e.log_store(), m, SEED) {
        panic!("{what}: {d}");
    }
}

async fn reopen_check(dir: &Path, m: &Model, what: &str) -> TieredEngine {
    let e = TieredEngine::open(dir, config::tiny())
        .await
        .unwrap_or_else(|err| panic!("{what}: reopen failed: {err}"));
    check(&e, m, &format!("{what} (after reopen)"));
    e
}

/// The OS error code inside an `Error::Io`.
fn os_code(e: &Error) -> Option<i32> {
    match e {
        Error::Io { source, .. } => source.raw_os_error(),
        _ => None,
    }
}

fn expect_os_error(r: tierlog::Result<()>, code: i32, what: &str) {
    match r {
        Err(e) => assert_eq!(
            os_code(&e),
            Some(code),
            "{what}: expected os error {code}, got {e}"
        ),
        Ok(()) => panic!("{what}: succeeded although the failpoint fired"),
    }
}

/// After a fault: either the engine works again, or (after a failed fdatasync) it refuses writes
/// with `Error::Poisoned`, which keeps the OS error.
/// Returns whether it works.
async fn usable_or_closed(e: &TieredEngine, m: &mut Model, term: u64, what: &str) -> bool {
    let log = e.log_store();
    let first = m.last_index() + 1;
    match log.persist_entries(batch(first, 5, term, SEED)).await {
        Ok(()) => {
            m.persist(first, 5, term);
            check(e, m, &format!("{what}: after recovering from the fault"));
            true
        }
        Err(Error::Poisoned { source, .. }) => {
            assert!(
                source.raw_os_error().is_some(),
                "{what}: the OS error was lost: {source}"
            );
            check(e, m, &format!("{what}: refusing writes"));
            false
        }
        Err(other) => panic!("{what}: after the fault was removed, persist failed with {other}"),
    }
}

#[tokio::test]
async fn wal_append_faults_reject_every_mutation_whole() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let (e, mut m) = setup(dir.path(), config::tiny()).await;
    let log = e.log_store();
    let mut injected = 0;
    for code in [28, 5] {
        fail::cfg("wal::append", &format!("return({code})")).unwrap();
        let last = m.last_index();
        expect_os_error(
            log.persist_entries(batch(last + 1, 10, 100, SEED)).await,
            code,
            "append",
        );
        expect_os_error(
            log.persist_entries(batch(last - 50, 10, 100, SEED)).await,
            code,
            "overwrite",
        );
        expect_os_error(log.purge(LogId::new(3, 40)).await, code, "purge");
        expect_os_error(log.truncate(last - 100).await, code, "truncate");
        expect_os_error(
            log.replace_range(last - 20, batch(last - 20, 3, 101, SEED)).await,
            code,
            "replace_range",
        );
        expect_os_error(log.reset().await, code, "reset");
        injected += 6;
        check(&e, &m, "after failed mutations");
        fail::remove("wal::append");
        assert!(usable_or_closed(&e, &mut m, 200 + code as u64, "wal::append").await);
    }
    // The same mutations go through once the disk is back.
    log.purge(LogId::new(3, 40)).await.unwrap();
    m.purge(LogId::new(3, 40));
    log.truncate(550).await.unwrap();
    m.truncate(550);
    check(&e, &m, "after the mutations succeed");
    drop(log);
    drop(e);
    drop(reopen_check(dir.path(), &m, "wal::append").await);
    eprintln!("faults: wal::append injected {injected}");
    scenario.teardown();
}

#[tokio::test]
async fn torn_wal_append_is_invisible_and_overwritten() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let (e, mut m) = setup(dir.path(), config::tiny()).await;
    let log = e.log_store();
    fail::cfg("wal::append::torn", "1*return(28)").unwrap();
    let first = m.last_index() + 1;
    expect_os_error(
        log.persist_entries(batch(first, 30, 300, SEED)).await,
        28,
        "torn append",
    );
    check(&e, &m, "after the torn append");
    // The next record is written where the torn one started.
    log.persist_entries(batch(first, 4, 301, SEED)).await.unwrap();
    m.persist(first, 4, 301);
    log.flush().unwrap();
    // A second torn write that nothing overwrites: the reopen finds it as a torn tail.
    fail::cfg("wal::append::torn", "1*return(5)").unwrap();
    expect_os_error(
        log.persist_entries(batch(first + 4, 30, 302, SEED)).await,
        5,
        "torn append at the tail",
    );
    fail::remove("wal::append::torn");
    check(&e, &m, "after the second torn append");
    drop(log);
    drop(e);
    drop(reopen_check(dir.path(), &m, "torn append").await);
    scenario.teardown();
}

#[tokio::test]
async fn fdatasync_failure_poisons_writes_but_keeps_acknowledged_entries() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let (e, mut m) = setup(dir.path(), config::tiny()).await;
    let log = e.log_store();
    let first = m.last_index() + 1;
    log.persist_entries(batch(first, 10, 400, SEED)).await.unwrap();
    m.persist(first, 10, 400);
    fail::cfg("wal::sync", "return(5)").unwrap();
    match log.flush() {
        Err(err @ Error::Io { .. }) => assert!(
            err.to_string().contains("os error 5"),
            "flush error does not say EIO: {err}"
        ),
        other => panic!("flush with a failing fdatasync returned {other:?}"),
    }
    fail::remove("wal::sync");
    // After a failed fdatasync nothing written since the last good one can be trusted on disk:
    // the engine must refuse further writes and flushes, clearly.
    let works = usable_or_closed(&e, &mut m, 401, "wal::sync").await;
    assert!(!works, "writes were accepted after a failed fdatasync");
    assert!(matches!(log.flush(), Err(Error::Poisoned { .. })));
    check(&e, &m, "reads after the poisoned sync");
    drop(log);
    drop(e);
    // The process did not crash: what persist acknowledged is still in the page cache.
    drop(reopen_check(dir.path(), &m, "wal::sync").await);
    scenario.teardown();
}

#[tokio::test]
async fn fdatasync_failure_in_sync_on_persist_mode_fails_the_persist() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        sync_on_persist: true,
        ..config::tiny()
    };
    let (e, m) = setup(dir.path(), config).await;
    let log = e.log_store();
    assert!(log.is_write_durable());
    fail::cfg("wal::sync", "return(28)").unwrap();
    let first = m.last_index() + 1;
    let r = log.persist_entries(batch(first, 10, 500, SEED)).await;
    assert!(r.is_err(), "persist returned Ok without a durable write");
    fail::remove("wal::sync");
    drop(log);
    drop(e);
    // The failed persist may or may not be on disk (it reached the OS); all before it must be.
    let e = TieredEngine::open(dir.path(), config::tiny()).await.unwrap();
    let last = e.log_store().last_index();
    let mut with = m.clone();
    with.persist(first, 10, 500);
    if last == with.last_index() {
        check(&e, &with, "sync-on-persist fault (entries kept)");
    } else {
        check(&e, &m, "sync-on-persist fault (entries dropped)");
    }
    scenario.teardown();
}

#[tokio::test]
async fn segment_creation_failure_fails_the_write_that_rotates() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let (e, mut m) = setup(dir.path(), config::tiny()).await;
    let log = e.log_store();
    fail::cfg("wal::segment_create", "return(28)").unwrap();
    let mut failed = false;
    // 64 KiB segments: a few dozen batches must rotate.
    for k in 0..200u64 {
        let first = m.last_index() + 1;
        match log.persist_entries(batch(first, 10, 600 + k, SEED)).await {
            Ok(()) => m.persist(first, 10, 600 + k),
            Err(err) => {
                assert_eq!(os_code(&err), Some(28), "rotation failure: {err}");
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "no write needed a new segment");
    check(&e, &m, "after the failed rotation");
    fail::remove("wal::segment_create");
    let works = usable_or_closed(&e, &mut m, 900, "wal::segment_create").await;
    if works {
        for k in 0..50u64 {
            let first = m.last_index() + 1;
            log.persist_entries(batch(first, 10, 901 + k, SEED))
                .await
                .unwrap();
            m.persist(first, 10, 901 + k);
        }
        log.flush().unwrap();
    }
    drop(log);
    drop(e);
    drop(reopen_check(dir.path(), &m, "wal::segment_create").await);
    scenario.teardown();
}

/// Faults of the compactor's I/O: the round (run by `compact_now`) reports the error, the log
/// stays whole and readable, and the next round once the fault is gone succeeds.
async fn compaction_fault(point: &str, code: i32, fresh: bool) {
    let dir = tempfile::tempdir().unwrap();
    // Background rounds never find work, so the fault is met by the compact_now below.
    let quiet = config::quiet();
    let (e, mut m) = if fresh {
        (
            TieredEngine::open(dir.path(), quiet).await.unwrap(),
            Model::default(),
        )
    } else {
        setup(dir.path(), quiet).await
    };
    let log = e.log_store();
    // New hot data: several segments (some retirable after the round), or, on a fresh store, the
    // first segment more than half full (the round then prepares a spare segment).
    let mut written = 0u64;
    for k in 0..40u64 {
        let first = m.last_index() + 1;
        let b = batch(first, if fresh { 5 } else { 20 }, 1000 + k, SEED);
        written += 29 + b.iter().map(|e| 12 + e.payload.len() as u64).sum::<u64>();
        log.persist_entries(b).await.unwrap();
        m.persist(first, if fresh { 5 } else { 20 }, 1000 + k);
        // 60% of the 64 KiB segment, with room for the rest of a batch.
        if fresh && written > 40 << 10 {
            break;
        }
    }
    log.flush().unwrap();
    fail::cfg(point, &format!("return({code})")).unwrap();
    let r = e.compact_now().await;
    let err = r.expect_err(&format!("{point}: compact_now hid the fault"));
    assert!(
        os_code(&err) == Some(code) || err.to_string().contains(&format!("os error {code}")),
        "{point}: unclear error {err}"
    );
    check(&e, &m, &format!("{point}: after the failed round"));
    fail::remove(point);
    let works = usable_or_closed(&e, &mut m, 2000, point).await;
    if works {
        e.compact_now().await.unwrap();
        check(&e, &m, &format!("{point}: after a good round"));
        // Every segment file on disk is still tracked (retired later, counted in the stats): a
        // failed round must not forget segments it had already taken off the writer's list.
        let on_disk = std::fs::read_dir(dir.path().join("wal"))
            .unwrap()
            .filter(|f| {
                f.as_ref()
                    .is_ok_and(|f| f.path().extension().is_some_and(|x| x == "wal"))
            })
            .count() as u64;
        assert_eq!(
            e.stats().wal_segments,
            on_disk,
            "{point}: segment files on disk vs segments the engine tracks"
        );
    }
    drop(log);
    drop(e);
    drop(reopen_check(dir.path(), &m, point).await);
}

#[tokio::test]
async fn cold_commit_failure_is_reported_and_retried() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    compaction_fault("cold::commit", 28, false).await;
    compaction_fault("cold::commit", 5, false).await;
    scenario.teardown();
}

#[tokio::test]
async fn segment_retirement_failure_is_reported_and_leaks_no_segment_file() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    compaction_fault("wal::segment_retire", 5, false).await;
    scenario.teardown();
}

/// A retirement renames the segment and then fsyncs the directory; when only the fsync fails, the
/// segment is already gone under its old name, and the next round must not try to rename it again.
/// Found by the fault chains (`power_loss.rs`): every later round failed with ENOENT.
#[tokio::test]
async fn directory_sync_failure_while_retiring_is_reported_and_the_next_round_succeeds() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    compaction_fault("wal::sync_dir", 5, false).await;
    scenario.teardown();
}

#[tokio::test]
async fn spare_segment_creation_failure_is_reported_and_harmless() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    compaction_fault("wal::spare_create", 28, true).await;
    scenario.teardown();
}

#[tokio::test]
async fn hard_state_save_failure_keeps_the_previous_state() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let (e, m) = setup(dir.path(), config::tiny()).await;
    let meta = e.meta_store();
    let h1 = HardState {
        current_term: 7,
        voted_for: Some(VotedFor {
            voted_for_id: 2,
            voted_for_term: 7,
            committed: false,
        }),
    };
    meta.save_hard_state(&h1).unwrap();
    fail::cfg("meta::save", "return(28)").unwrap();
    let h2 = HardState {
        current_term: 8,
        voted_for: None,
    };
    expect_os_error(meta.save_hard_state(&h2), 28, "save_hard_state");
    assert_eq!(meta.load_hard_state().unwrap(), Some(h1));
    fail::remove("meta::save");
    drop(meta);
    drop(e);
    let e = reopen_check(dir.path(), &m, "meta::save").await;
    let meta = e.meta_store();
    assert_eq!(meta.load_hard_state().unwrap(), Some(h1));
    meta.save_hard_state(&h2).unwrap();
    drop(meta);
    drop(e);
    let e = reopen_check(dir.path(), &m, "meta::save").await;
    assert_eq!(e.meta_store().load_hard_state().unwrap(), Some(h2));
    scenario.teardown();
}

#[tokio::test]
async fn cold_block_read_failure_is_an_error_not_a_short_read() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let e = TieredEngine::open(dir.path(), config::tiny()).await.unwrap();
    let log = e.log_store();
    let mut m = Model::default();
    // ~3 MiB against a 1 MiB budget: the oldest entries leave the ring and live only in blocks.
    let mut first = 1;
    while first < 12_000 {
        log.persist_entries(batch(first, 100, first, SEED)).await.unwrap();
        m.persist(first, 100, first);
        first += 100;
        if first % 2_000 == 1 {
            e.compact_now().await.unwrap();
        }
    }
    e.compact_now().await.unwrap();
    let stats = e.stats();
    let ring_first = stats.last_index + 1 - stats.hot_entries;
    assert!(ring_first > 1_000, "nothing was evicted: {stats:?}");
    fail::cfg("cold::read", "return(5)").unwrap();
    let r = log.get_entries(10..=500);
    match r {
        Err(err) => assert!(
            err.to_string().contains("os error 5"),
            "cold read error does not say EIO: {err}"
        ),
        Ok(v) => panic!("cold read with a failing block read returned {} entries", v.len()),
    }
    let r = log.entry(20).await;
    assert!(r.is_err(), "entry() over a failing block read: {r:?}");
    fail::remove("cold::read");
    check(&e, &m, "cold::read");
    drop(log);
    drop(e);
    drop(reopen_check(dir.path(), &m, "cold::read").await);
    scenario.teardown();
}

/// The `TIERLOG` marker was once written in place and never fsynced, so a power cut
/// during creation could leave it empty or partial, and every later open failed with "unknown format
/// marker". Now it is written to `TIERLOG.tmp`, fsynced and renamed: whatever step fails (a write
/// torn half way, the fsync, the rename), no `TIERLOG` exists afterwards, and the next open creates
/// the directory normally and keeps what it is given.
#[tokio::test]
async fn an_interrupted_marker_write_leaves_no_marker_and_the_next_open_succeeds() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    for (point, code) in [
        ("engine::marker::torn", 28),
        ("engine::marker::sync", 5),
        ("engine::marker::rename", 5),
    ] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("node");
        fail::cfg(point, &format!("return({code})")).unwrap();
        let r = TieredEngine::open(&dir, config::tiny()).await.map(drop);
        fail::remove(point);
        expect_os_error(r, code, point);
        assert!(
            !dir.join("TIERLOG").exists(),
            "{point}: a marker was left: {:?}",
            std::fs::read_to_string(dir.join("TIERLOG"))
        );

        let e = TieredEngine::open(&dir, config::tiny())
            .await
            .unwrap_or_else(|err| panic!("{point}: the next open failed: {err}"));
        assert_eq!(
            std::fs::read_to_string(dir.join("TIERLOG")).unwrap(),
            "tierlog directory, format 1\n",
            "{point}"
        );
        assert!(
            !dir.join("TIERLOG.tmp").exists(),
            "{point}: the temporary file stayed"
        );
        let mut m = Model::default();
        e.log_store()
            .persist_entries(batch(1, 10, 1, SEED))
            .await
            .unwrap();
        m.persist(1, 10, 1);
        e.close().await.unwrap();
        drop(reopen_check(&dir, &m, point).await);
    }
    scenario.teardown();
}

/// redb can report a commit as failed after it reached the disk (its last fsync failed). The cold
/// store now reopens redb after an I/O error instead of refusing every later call, so the engine
/// carries on in the same process: it must notice that the file holds the round's checkpoint,
/// or the next rounds would build on the old one while the file holds blocks its index does not
/// know (and a reopen would load them).
#[tokio::test]
async fn a_cold_commit_that_failed_after_reaching_the_disk_counts_as_done() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let quiet = config::quiet();
    let (e, mut m) = setup(dir.path(), quiet).await;
    let log = e.log_store();
    for k in 0..20u64 {
        let first = m.last_index() + 1;
        log.persist_entries(batch(first, 20, 3000 + k, SEED))
            .await
            .unwrap();
        m.persist(first, 20, 3000 + k);
    }
    let last = m.last_index();
    fail::cfg("cold::commit::after", "1*return(5)").unwrap();
    let r = e.compact_now().await;
    fail::remove("cold::commit::after");
    r.unwrap_or_else(|err| panic!("the round's commit reached the disk, yet compact_now failed: {err}"));
    assert_eq!(e.stats().compaction_high_water, last);
    check(&e, &m, "after the commit that reported a failure");
    // Rewrite part of what that round moved with entries of other sizes, compact, reopen.
    log.truncate(last - 150).await.unwrap();
    m.truncate(last - 150);
    for k in 0..10u64 {
        let first = m.last_index() + 1;
        log.persist_entries(batch(first, 7, 3100 + k, SEED))
            .await
            .unwrap();
        m.persist(first, 7, 3100 + k);
    }
    e.compact_now().await.unwrap();
    check(&e, &m, "after the rewrite");
    log.flush().unwrap();
    drop(log);
    drop(e);
    drop(reopen_check(dir.path(), &m, "cold::commit::after").await);
    scenario.teardown();
}

/// Writes batches of 20 (term 600 on) and flushes each, until `n` batches or an error.
async fn write_flushed(e: &TieredEngine, m: &mut Model, n: u64) -> tierlog::Result<()> {
    let log = e.log_store();
    for k in 0..n {
        let first = m.last_index() + 1;
        log.persist_entries(batch(first, 20, 600 + k, SEED)).await?;
        m.persist(first, 20, 600 + k);
        log.flush()?;
    }
    Ok(())
}

/// [`config::tiny`] with no recycled segments: every new segment is a new file, which the
/// write-ahead log zero-fills ahead of the writer. A recycled segment needs no zero-filling, and
/// with spares at hand (whether there are any depends on how fast the compactor retires segments)
/// the zero-fill tests below could run without a single zero-filled step.
fn zero_filled() -> Config {
    Config {
        recycle_segments: 0,
        ..config::tiny()
    }
}

/// Zero-filling ahead of the writer fails (a full disk): appends grow the file themselves, every
/// write and flush succeeds, and everything reads back, also after a reopen.
#[tokio::test]
async fn zero_fill_write_failure_only_stops_zero_filling() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let (e, mut m) = setup(dir.path(), zero_filled()).await;
    fail::cfg("wal::zero_ahead", "return(28)").unwrap();
    // Several 64 KiB segments' worth, each zero-filled in 8 KiB steps.
    write_flushed(&e, &mut m, 150).await.unwrap();
    fail::remove("wal::zero_ahead");
    write_flushed(&e, &mut m, 10).await.unwrap();
    check(&e, &m, "wal::zero_ahead");
    drop(e);
    drop(reopen_check(dir.path(), &m, "wal::zero_ahead").await);
    scenario.teardown();
}

/// The fdatasync of a zero-filled step fails: it may have dropped records' pages too, so the log is
/// poisoned, and the writer learns it at its next write or flush; what was flushed before stays.
#[tokio::test]
async fn zero_fill_fdatasync_failure_poisons_the_log() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let (e, mut m) = setup(dir.path(), zero_filled()).await;
    fail::cfg("wal::zero_ahead::sync", "return(5)").unwrap();
    let res = write_flushed(&e, &mut m, 150).await;
    fail::remove("wal::zero_ahead::sync");
    match res {
        Err(Error::Poisoned { source, .. }) => assert_eq!(source.raw_os_error(), Some(5)),
        other => panic!("150 flushed batches past failing zero-fill fdatasyncs returned {other:?}"),
    }
    let works = usable_or_closed(&e, &mut m, 900, "wal::zero_ahead::sync").await;
    assert!(!works, "writes were accepted after a failed fdatasync");
    drop(e);
    drop(reopen_check(dir.path(), &m, "wal::zero_ahead::sync").await);
    scenario.teardown();
}

/// A reclamation (the exclusive compaction of the redb file) that fails, before redb starts or
/// after its commits reached the disk, leaves the cold tier readable in the same engine; once purges
/// free space again the next reclamation succeeds, and the store reopens with everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reclamation_failure_leaves_the_store_whole_and_the_next_one_succeeds() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    for point in ["cold::reclaim", "cold::reclaim::after"] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            reclaim_free_share: 0.3,
            reclaim_min_bytes: 64 << 10,
            reclaim_interval_ms: 0,
            ..config::tiny()
        };
        let e = TieredEngine::open(dir.path(), cfg).await.unwrap();
        let log = e.log_store();
        let mut m = Model::default();
        // Writes 20,000 entries after the model's last, compacts them, then purges all but the
        // newest 1,000: the redb file then holds mostly free pages.
        async fn fill_then_purge(e: &TieredEngine, m: &mut Model) -> tierlog::Stats {
            let log = e.log_store();
            let start = m.last_index() + 1;
            for first in (start..start + 20_000).step_by(100) {
                log.persist_entries(batch(first, 100, 1, SEED)).await.unwrap();
                m.persist(first, 100, 1);
            }
            e.compact_now().await.unwrap();
            let full = e.stats();
            let cutoff = LogId {
                term: 1,
                index: m.last_index() - 1_000,
            };
            log.purge(cutoff).await.unwrap();
            m.purge(cutoff);
            e.compact_now().await.unwrap();
            full
        }
        // Fails the first try only.
        fail::cfg(point, "1*return(5)").unwrap();
        let full = fill_then_purge(&e, &mut m).await;
        check(&e, &m, &format!("{point}: after the failed reclamation"));
        fail::remove(point);
        // New free space for the next try: `cold::reclaim::after` stands for a compaction whose
        // commits reached the disk, so that one already gave the first purge's space back.
        let full = if point == "cold::reclaim::after" {
            fill_then_purge(&e, &mut m).await
        } else {
            full
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        // Counted from before the purge: the retry may have run already.
        while e.stats().reclamations == full.reclamations || e.stats().redb_file_bytes >= full.redb_file_bytes
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{point}: no reclamation succeeded in 30 s: {:?}",
                e.stats()
            );
            e.compact_now().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        check(&e, &m, &format!("{point}: after the reclamation"));
        drop(log);
        drop(e);
        drop(reopen_check(dir.path(), &m, point).await);
    }
    scenario.teardown();
}
