//! The purge, truncate and replace_range rules of the log contract, one function per rule, each
//! run in every [`Mode`] (see `semantics.rs` for the modes).

use crate::support::*;
use tierlog::{Error, LogId, LogStore};

fn lid(term: u64, index: u64) -> LogId {
    LogId::new(term, index)
}

// ---------------------------------------------------------------------------------------------
// Purge

/// purge(cutoff) removes every index <= cutoff.index and records the boundary durably.
async fn purge_is_inclusive_and_durable(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.log().persist_entries(ents(1..=200, 1)).await.unwrap();
    h.step().await;
    h.log().purge(lid(1, 50)).await.unwrap();
    assert_eq!(h.log().entry(50).await.unwrap(), None);
    assert_eq!(h.log().entry(51).await.unwrap(), Some(ent(51, 1)));
    h.assert_log(&ents(51..=200, 1), 200, Some(lid(1, 50)), "purged up to 50")
        .await;
    h.step().await;
    h.assert_log(&ents(51..=200, 1), 200, Some(lid(1, 50)), "purged up to 50, step")
        .await;

    // A second cutoff at an arbitrary (likely mid-block) index.
    h.log().purge(lid(1, 137)).await.unwrap();
    h.step().await;
    h.assert_log(&ents(138..=200, 1), 200, Some(lid(1, 137)), "purged up to 137")
        .await;

    h.log().persist_entries(ents(201..=210, 2)).await.unwrap();
    h.step().await;
    let want = cat(&[ents(138..=200, 1), ents(201..=210, 2)]);
    h.assert_log(&want, 210, Some(lid(1, 137)), "appended after purge")
        .await;
}
in_every_mode!(purge_is_inclusive_and_durable);

/// purge with index 0 is a no-op, on an empty and on a non-empty log.
async fn purge_of_index_zero_is_a_no_op(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.log().purge(lid(0, 0)).await.unwrap();
    h.assert_log(&[], 0, None, "purge(0) on an empty log").await;
    h.step().await;
    h.assert_log(&[], 0, None, "purge(0) on an empty log, step").await;

    h.log().persist_entries(ents(1..=20, 1)).await.unwrap();
    h.log().purge(lid(1, 0)).await.unwrap();
    h.assert_log(&ents(1..=20, 1), 20, None, "purge(0) on a non-empty log")
        .await;
    h.step().await;
    h.assert_log(&ents(1..=20, 1), 20, None, "purge(0) on a non-empty log, step")
        .await;

    h.log().purge(lid(1, 5)).await.unwrap();
    h.log().purge(lid(0, 0)).await.unwrap();
    h.step().await;
    h.assert_log(
        &ents(6..=20, 1),
        20,
        Some(lid(1, 5)),
        "purge(0) keeps an earlier boundary",
    )
    .await;
}
in_every_mode!(purge_of_index_zero_is_a_no_op);

/// Purging past the last entry is accepted and remembered; last_index is then the boundary, and
/// the next append may start right after it.
async fn purge_past_end_is_remembered(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.log().persist_entries(ents(1..=10, 1)).await.unwrap();
    h.step().await;
    h.log().purge(lid(1, 20)).await.unwrap();
    h.assert_log(&[], 20, Some(lid(1, 20)), "purged past the end")
        .await;
    h.step().await;
    h.assert_log(&[], 20, Some(lid(1, 20)), "purged past the end, step")
        .await;

    let err = h.log().persist_entries(ents(20..=22, 2)).await;
    assert!(
        matches!(err, Err(Error::InvalidInput(_))),
        "append at the boundary: {err:?}"
    );
    h.log().persist_entries(ents(21..=25, 2)).await.unwrap();
    h.step().await;
    h.assert_log(
        &ents(21..=25, 2),
        25,
        Some(lid(1, 20)),
        "appended right after the boundary",
    )
    .await;
}
in_every_mode!(purge_past_end_is_remembered);

/// After a purge past the end the log is empty, so (like any empty log) the next batch may start
/// anywhere above the boundary.
async fn append_after_purge_past_end_may_start_above_boundary(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.log().persist_entries(ents(1..=10, 1)).await.unwrap();
    h.log().purge(lid(1, 20)).await.unwrap();
    h.step().await;
    h.log().persist_entries(ents(30..=31, 2)).await.unwrap();
    h.step().await;
    h.assert_log(
        &ents(30..=31, 2),
        31,
        Some(lid(1, 20)),
        "started at 30 above boundary 20",
    )
    .await;
}
in_every_mode!(append_after_purge_past_end_may_start_above_boundary);

/// Purging exactly the last entry leaves an empty log whose last_index is the boundary.
async fn purge_of_everything(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.log().persist_entries(ents(1..=100, 1)).await.unwrap();
    h.step().await;
    h.log().purge(lid(1, 100)).await.unwrap();
    h.step().await;
    h.assert_log(&[], 100, Some(lid(1, 100)), "purged everything")
        .await;
    h.log().persist_entries(ents(101..=101, 1)).await.unwrap();
    h.step().await;
    h.assert_log(
        &ents(101..=101, 1),
        101,
        Some(lid(1, 100)),
        "appended after full purge",
    )
    .await;
}
in_every_mode!(purge_of_everything);

/// The boundary is the highest LogId ever purged: a lower cutoff later changes nothing.
async fn purge_below_boundary_changes_nothing(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.log().persist_entries(ents(1..=100, 1)).await.unwrap();
    h.log().purge(lid(1, 50)).await.unwrap();
    h.step().await;
    h.log().purge(lid(1, 30)).await.unwrap();
    h.log().purge(lid(1, 50)).await.unwrap();
    h.assert_log(&ents(51..=100, 1), 100, Some(lid(1, 50)), "lower cutoff after 50")
        .await;
    h.step().await;
    h.assert_log(
        &ents(51..=100, 1),
        100,
        Some(lid(1, 50)),
        "lower cutoff after 50, step",
    )
    .await;
}
in_every_mode!(purge_below_boundary_changes_nothing);

// ---------------------------------------------------------------------------------------------
// Truncate

/// truncate(from) removes [from, ∞); last_index becomes from - 1; appends continue from there.
async fn truncate_removes_from_index_onwards(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.log().persist_entries(ents(1..=100, 1)).await.unwrap();
    h.step().await;
    h.log().truncate(76).await.unwrap();
    assert_eq!(h.log().last_index(), 75);
    assert_eq!(h.log().entry(76).await.unwrap(), None);
    h.assert_log(&ents(1..=75, 1), 75, None, "truncate(76)").await;
    h.step().await;
    h.assert_log(&ents(1..=75, 1), 75, None, "truncate(76), step")
        .await;

    h.log().persist_entries(ents(76..=80, 2)).await.unwrap();
    h.step().await;
    let want = cat(&[ents(1..=75, 1), ents(76..=80, 2)]);
    h.assert_log(&want, 80, None, "appended after truncate").await;
}
in_every_mode!(truncate_removes_from_index_onwards);

/// Truncating at or beyond last_index + 1 is a no-op.
async fn truncate_beyond_last_is_a_no_op(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.log().persist_entries(ents(1..=10, 1)).await.unwrap();
    h.log().truncate(11).await.unwrap();
    h.log().truncate(500).await.unwrap();
    h.assert_log(&ents(1..=10, 1), 10, None, "truncate beyond last")
        .await;
    h.step().await;
    h.assert_log(&ents(1..=10, 1), 10, None, "truncate beyond last, step")
        .await;
}
in_every_mode!(truncate_beyond_last_is_a_no_op);

/// truncate(1) empties the log: last_index 0, and the next append starts at 1 again.
async fn truncate_of_everything(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.log().persist_entries(ents(1..=50, 1)).await.unwrap();
    h.step().await;
    h.log().truncate(1).await.unwrap();
    h.step().await;
    h.assert_log(&[], 0, None, "truncate(1)").await;
    h.log().persist_entries(ents(1..=3, 2)).await.unwrap();
    h.step().await;
    h.assert_log(&ents(1..=3, 2), 3, None, "appended after truncate(1)")
        .await;
}
in_every_mode!(truncate_of_everything);

/// A truncate reaching below the purge boundary leaves last_index = the boundary's index.
async fn truncate_below_purge_boundary(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.log().persist_entries(ents(1..=100, 1)).await.unwrap();
    h.log().purge(lid(1, 50)).await.unwrap();
    h.step().await;
    h.log().truncate(30).await.unwrap();
    h.assert_log(&[], 50, Some(lid(1, 50)), "truncate(30) below boundary 50")
        .await;
    h.step().await;
    h.assert_log(&[], 50, Some(lid(1, 50)), "truncate(30) below boundary 50, step")
        .await;
    h.log().persist_entries(ents(51..=55, 2)).await.unwrap();
    h.step().await;
    h.assert_log(&ents(51..=55, 2), 55, Some(lid(1, 50)), "appended after")
        .await;

    h.log().truncate(51).await.unwrap();
    h.step().await;
    h.assert_log(&[], 50, Some(lid(1, 50)), "truncate(boundary + 1)")
        .await;
}
in_every_mode!(truncate_below_purge_boundary);

/// Successive truncates at arbitrary indexes (with 1 KiB blocks, most cut a cold block in the
/// middle) keep every entry of the prefix.
async fn truncate_keeps_prefix_of_a_cut_block(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.log().persist_entries(ents(1..=300, 1)).await.unwrap();
    h.step().await;
    let mut last = 300;
    for (round, from) in [257u64, 203, 104, 55].into_iter().enumerate() {
        h.log().truncate(from).await.unwrap();
        last = from - 1;
        h.assert_log(&ents(1..=last, 1), last, None, &format!("truncate({from})"))
            .await;
        h.step().await;
        h.assert_log(&ents(1..=last, 1), last, None, &format!("truncate({from}), step"))
            .await;
        if round == 1 {
            // Re-grow and truncate again inside the fresh part.
            h.log().persist_entries(ents(from..=from + 20, 2)).await.unwrap();
            h.step().await;
            h.log().truncate(from + 7).await.unwrap();
            let want = cat(&[ents(1..=from - 1, 1), ents(from..=from + 6, 2)]);
            h.assert_log(&want, from + 6, None, "re-grown then truncated")
                .await;
            h.step().await;
            h.assert_log(&want, from + 6, None, "re-grown then truncated, step")
                .await;
            h.log().truncate(from).await.unwrap();
        }
    }
    h.log()
        .persist_entries(ents(last + 1..=last + 30, 3))
        .await
        .unwrap();
    h.step().await;
    let want = cat(&[ents(1..=last, 1), ents(last + 1..=last + 30, 3)]);
    h.assert_log(&want, last + 30, None, "appended after the truncates")
        .await;
}
in_every_mode!(truncate_keeps_prefix_of_a_cut_block);

// ---------------------------------------------------------------------------------------------
// replace_range

/// replace_range(from, entries) = truncate [from, ∞) then append entries: unlike persist, entries
/// after the new ones are gone.
async fn replace_range_truncates_then_appends(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.log().persist_entries(ents(1..=200, 1)).await.unwrap();
    h.step().await;
    h.log().replace_range(95, ents(95..=97, 2)).await.unwrap();
    let want = cat(&[ents(1..=94, 1), ents(95..=97, 2)]);
    h.assert_log(&want, 97, None, "replace_range(95, 95..=97)").await;
    h.step().await;
    h.assert_log(&want, 97, None, "replace_range(95, 95..=97), step")
        .await;

    // Longer than the tail it replaces.
    h.log().replace_range(96, ents(96..=150, 3)).await.unwrap();
    let want = cat(&[ents(1..=94, 1), ents(95..=95, 2), ents(96..=150, 3)]);
    h.step().await;
    h.assert_log(&want, 150, None, "replace_range(96, 96..=150)")
        .await;

    // At last_index + 1 it is a plain append.
    h.log().replace_range(151, ents(151..=152, 3)).await.unwrap();
    let want = cat(&[want, ents(151..=152, 3)]);
    h.step().await;
    h.assert_log(&want, 152, None, "replace_range(last + 1, ..)")
        .await;
}
in_every_mode!(replace_range_truncates_then_appends);

/// replace_range with no entries only truncates.
async fn replace_range_with_no_entries_only_truncates(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.log().persist_entries(ents(1..=100, 1)).await.unwrap();
    h.step().await;
    h.log().replace_range(61, vec![]).await.unwrap();
    h.assert_log(&ents(1..=60, 1), 60, None, "replace_range(61, [])")
        .await;
    h.step().await;
    h.assert_log(&ents(1..=60, 1), 60, None, "replace_range(61, []), step")
        .await;
    h.log().replace_range(500, vec![]).await.unwrap();
    h.assert_log(
        &ents(1..=60, 1),
        60,
        None,
        "replace_range beyond the end, no entries",
    )
    .await;
}
in_every_mode!(replace_range_with_no_entries_only_truncates);

/// replace_range above a purge boundary, including the whole retained log.
async fn replace_range_after_purge(mode: Mode) {
    let mut h = Harness::new(mode).await;
    h.log().persist_entries(ents(1..=100, 1)).await.unwrap();
    h.log().purge(lid(1, 40)).await.unwrap();
    h.step().await;
    h.log().replace_range(41, ents(41..=45, 2)).await.unwrap();
    h.step().await;
    h.assert_log(
        &ents(41..=45, 2),
        45,
        Some(lid(1, 40)),
        "replaced the whole retained log",
    )
    .await;
}
in_every_mode!(replace_range_after_purge);
