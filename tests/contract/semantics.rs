//! The semantic rules of the log contract (the rules d-engine's and openraft's storage traits
//! assume: empty store, upsert, reset, `last_index`, range reads), one function per rule. Every rule runs in every [`Mode`]: hot only, reopen after each operation
//! (compaction not started), compacted after each operation, compacted and reopened (compaction
//! finished, reads served by the cold tier), and reopened under an eager background compactor
//! (compaction half done at the drop).

use crate::support::*;
use tierlog::{HardState, LogId, LogStore, MetaStore, StorageEngine, VotedFor};

fn lid(term: u64, index: u64) -> LogId {
    LogId::new(term, index)
}

// ---------------------------------------------------------------------------------------------
// Empty store, persist and read

/// A new store has no entries, last index 0, no purge boundary, no hard state; an empty batch is Ok.
async fn empty_store(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.assert_log(&[], 0, None, "new store").await;
    let log = h.log();
    assert!(log.get_entries(1..=5).unwrap().is_empty());
    assert_eq!(log.entry(1).await.unwrap(), None);
    assert_eq!(h.meta().load_hard_state().unwrap(), None);
    log.persist_entries(vec![]).await.expect("an empty batch is Ok");
    drop(log);
    h.step().await;
    h.assert_log(&[], 0, None, "after an empty batch").await;
    assert_eq!(h.meta().load_hard_state().unwrap(), None);
}
in_every_mode!(empty_store);

/// Persisted entries read back exactly, one at a time and as ranges.
async fn persist_then_read(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.log().persist_entries(vec![ent(1, 1)]).await.unwrap();
    assert_eq!(h.log().entry(1).await.unwrap(), Some(ent(1, 1)));
    h.step().await;
    h.assert_log(&[ent(1, 1)], 1, None, "one entry").await;

    for start in (2..=200).step_by(33) {
        let end = (start + 32).min(200);
        h.log().persist_entries(ents(start..=end, 1)).await.unwrap();
    }
    assert_eq!(h.log().get_entries(25..=75).unwrap(), ents(25..=75, 1));
    h.step().await;
    assert_eq!(h.log().get_entries(25..=75).unwrap().len(), 51);
    assert_eq!(h.log().entry(100).await.unwrap(), Some(ent(100, 1)));
    h.assert_log(&ents(1..=200, 1), 200, None, "200 entries").await;
}
in_every_mode!(persist_then_read);

/// On an empty log the first batch may start at any index above the purge boundary; indexes below
/// it read as absent.
async fn first_batch_on_empty_log_may_start_above_one(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.log().persist_entries(ents(5..=10, 2)).await.unwrap();
    h.step().await;
    h.assert_log(&ents(5..=10, 2), 10, None, "log starting at 5")
        .await;
    assert_eq!(h.log().get_entries(1..=7).unwrap(), ents(5..=7, 2));
    assert_eq!(h.log().entry(4).await.unwrap(), None);
    h.log().persist_entries(ents(11..=12, 2)).await.unwrap();
    h.step().await;
    h.assert_log(&ents(5..=12, 2), 12, None, "appended after a start at 5")
        .await;
}
in_every_mode!(first_batch_on_empty_log_may_start_above_one);

// ---------------------------------------------------------------------------------------------
// Upsert

/// A batch at or below last_index overwrites those indexes in place; entries after the batch stay.
async fn upsert_keeps_entries_after_the_batch(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.log().persist_entries(ents(1..=200, 1)).await.unwrap();
    h.step().await;

    h.log().persist_entries(ents(95..=105, 2)).await.unwrap();
    let want = cat(&[ents(1..=94, 1), ents(95..=105, 2), ents(106..=200, 1)]);
    h.assert_log(&want, 200, None, "after overwriting 95..=105").await;
    h.step().await;
    h.assert_log(&want, 200, None, "after overwriting 95..=105 and a step")
        .await;

    // Overwrite the very first entry, and a batch that overwrites the tail and extends the log.
    h.log().persist_entries(vec![ent(1, 3)]).await.unwrap();
    h.log().persist_entries(ents(190..=210, 3)).await.unwrap();
    let want = cat(&[
        vec![ent(1, 3)],
        ents(2..=94, 1),
        ents(95..=105, 2),
        ents(106..=189, 1),
        ents(190..=210, 3),
    ]);
    h.assert_log(&want, 210, None, "after overwriting 1 and 190..=210")
        .await;
    h.step().await;
    h.assert_log(&want, 210, None, "after overwriting 1 and 190..=210 and a step")
        .await;
}
in_every_mode!(upsert_keeps_entries_after_the_batch);

/// An overwrite of an index already in the cold tier keeps the later cold entries readable, before
/// and after the next compaction and across reopen.
#[tokio::test]
async fn overwrite_of_cold_index_keeps_later_cold_entries() {
    let mut h = Harness::new(Mode::CompactedReopen).await;
    h.log().persist_entries(ents(1..=300, 1)).await.unwrap();
    h.compact().await;
    let stats = h.engine().stats();
    assert_eq!(
        stats.compaction_high_water, 300,
        "compact_now with hot_tail_entries = 0 moves everything"
    );
    assert!(
        stats.cold_blocks >= 10,
        "1 KiB blocks: expected many, got {}",
        stats.cold_blocks
    );

    h.log().persist_entries(ents(123..=127, 2)).await.unwrap();
    let want = cat(&[ents(1..=122, 1), ents(123..=127, 2), ents(128..=300, 1)]);
    h.assert_log(&want, 300, None, "overwrite inside the cold tier")
        .await;
    h.reopen().await;
    h.assert_log(&want, 300, None, "reopened before the next compaction")
        .await;
    h.compact().await;
    h.assert_log(&want, 300, None, "after the next compaction").await;
    h.reopen().await;
    h.assert_log(&want, 300, None, "compacted and reopened").await;
}

// ---------------------------------------------------------------------------------------------
// Reset

/// reset clears every entry and the purge boundary, keeps the hard state, and the log starts again
/// from index 1.
async fn reset_clears_log_and_boundary_keeps_hard_state(mode: Mode) {
    let mut h = Harness::new(mode).await;
    let hs = HardState {
        current_term: 7,
        voted_for: Some(VotedFor {
            voted_for_id: 3,
            voted_for_term: 7,
            committed: true,
        }),
    };
    h.log().persist_entries(ents(1..=200, 1)).await.unwrap();
    h.log().purge(lid(1, 20)).await.unwrap();
    h.meta().save_hard_state(&hs).unwrap();
    h.step().await;

    h.log().reset().await.unwrap();
    h.assert_log(&[], 0, None, "after reset").await;
    assert_eq!(h.meta().load_hard_state().unwrap(), Some(hs));
    h.step().await;
    h.assert_log(&[], 0, None, "after reset, step").await;
    assert_eq!(
        h.meta().load_hard_state().unwrap(),
        Some(hs),
        "reset keeps the hard state"
    );

    h.log().persist_entries(ents(1..=5, 8)).await.unwrap();
    h.step().await;
    h.assert_log(&ents(1..=5, 8), 5, None, "appended from 1 after reset")
        .await;
    assert_eq!(h.meta().load_hard_state().unwrap(), Some(hs));
}
in_every_mode!(reset_clears_log_and_boundary_keeps_hard_state);

/// reset after a purge past the end: the boundary goes, so index 1 is writable again.
async fn reset_after_purge_past_end(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.log().persist_entries(ents(1..=10, 1)).await.unwrap();
    h.log().purge(lid(1, 30)).await.unwrap();
    h.step().await;
    h.log().reset().await.unwrap();
    h.step().await;
    h.assert_log(&[], 0, None, "reset after purge past the end").await;
    h.log().persist_entries(ents(1..=2, 2)).await.unwrap();
    h.step().await;
    h.assert_log(&ents(1..=2, 2), 2, None, "appended from 1").await;
}
in_every_mode!(reset_after_purge_past_end);

/// reset on a new log is harmless.
async fn reset_of_empty_log(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.log().reset().await.unwrap();
    h.step().await;
    h.assert_log(&[], 0, None, "reset of a new log").await;
}
in_every_mode!(reset_of_empty_log);

// ---------------------------------------------------------------------------------------------
// last_index and reads

/// last_index through every kind of operation: max index present, or the boundary's index when no
/// entry is left, 0 on a new or reset log.
async fn last_index_rules(mode: Mode) {
    let mut h = Harness::new(mode).await;
    let steps: Vec<(&str, u64)> = vec![
        ("new", 0),
        ("persist 1..=10", 10),
        ("upsert 3..=4", 10),
        ("purge 5", 10),
        ("truncate 8", 7),
        ("purge 7 (everything)", 7),
        ("purge 9 (past end)", 9),
        ("persist 10..=12", 12),
        ("truncate 5 (below boundary 9)", 9),
        ("reset", 0),
    ];
    for (what, want) in steps {
        let log = h.log();
        match what {
            "new" => {}
            "persist 1..=10" => log.persist_entries(ents(1..=10, 1)).await.unwrap(),
            "upsert 3..=4" => log.persist_entries(ents(3..=4, 2)).await.unwrap(),
            "purge 5" => log.purge(lid(1, 5)).await.unwrap(),
            "truncate 8" => log.truncate(8).await.unwrap(),
            "purge 7 (everything)" => log.purge(lid(1, 7)).await.unwrap(),
            "purge 9 (past end)" => log.purge(lid(1, 9)).await.unwrap(),
            "persist 10..=12" => log.persist_entries(ents(10..=12, 2)).await.unwrap(),
            "truncate 5 (below boundary 9)" => log.truncate(5).await.unwrap(),
            "reset" => log.reset().await.unwrap(),
            other => unreachable!("{other}"),
        }
        assert_eq!(log.last_index(), want, "[{mode:?}] last_index after {what}");
        drop(log);
        h.step().await;
        assert_eq!(
            h.log().last_index(),
            want,
            "[{mode:?}] last_index after {what}, step"
        );
    }
}
in_every_mode!(last_index_rules);

/// get_entries returns exactly the entries that exist in the range, never an error for a range
/// below the first entry, past the end, or empty.
async fn get_entries_returns_only_existing(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.log().persist_entries(ents(1..=100, 1)).await.unwrap();
    h.log().purge(lid(1, 20)).await.unwrap();
    h.step().await;
    let log = h.log();
    assert_eq!(
        log.get_entries(1..=30).unwrap(),
        ents(21..=30, 1),
        "starts below the first"
    );
    assert_eq!(
        log.get_entries(95..=200).unwrap(),
        ents(95..=100, 1),
        "ends past the last"
    );
    assert_eq!(
        log.get_entries(1..=200).unwrap(),
        ents(21..=100, 1),
        "covers everything"
    );
    assert!(
        log.get_entries(150..=300).unwrap().is_empty(),
        "wholly past the end"
    );
    assert!(log.get_entries(1..=20).unwrap().is_empty(), "wholly purged");
    assert!(log.get_entries(0..=0).unwrap().is_empty(), "index 0");
    assert!(
        log.get_entries(20..=20).unwrap().is_empty(),
        "the boundary itself"
    );
    assert_eq!(
        log.get_entries(21..=21).unwrap(),
        ents(21..=21, 1),
        "first entry alone"
    );
    assert_eq!(
        log.get_entries(100..=100).unwrap(),
        ents(100..=100, 1),
        "last entry alone"
    );
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = log.get_entries(60..=50).unwrap();
    assert!(reversed.is_empty(), "an empty (reversed) range");
    assert_eq!(log.entry(20).await.unwrap(), None);
    assert_eq!(log.entry(101).await.unwrap(), None);
}
in_every_mode!(get_entries_returns_only_existing);

/// Extreme bounds (0 and u64::MAX) are ordinary ranges.
async fn get_entries_with_extreme_bounds(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.log().persist_entries(ents(1..=30, 1)).await.unwrap();
    h.step().await;
    let log = h.log();
    assert_eq!(log.get_entries(0..=u64::MAX).unwrap(), ents(1..=30, 1));
    assert!(log.get_entries(u64::MAX..=u64::MAX).unwrap().is_empty());
    assert!(log.get_entries(31..=u64::MAX).unwrap().is_empty());
    assert_eq!(log.entry(u64::MAX).await.unwrap(), None);
}
in_every_mode!(get_entries_with_extreme_bounds);

/// A reader handle taken before writes sees them (handles share state).
#[tokio::test]
async fn handles_share_state() {
    let h = Harness::new(Mode::Hot).await;
    let reader = h.log();
    let writer = h.engine().clone().log_store();
    writer.persist_entries(ents(1..=3, 1)).await.unwrap();
    assert_eq!(reader.get_entries(1..=3).unwrap(), ents(1..=3, 1));
    assert_eq!(reader.last_index(), 3);
}
