//! Deterministic reproductions of recovery failures first found by the crash loop (`tests/crash.rs`).
//! Each test builds the on-disk situation the crash loop reached, with the public API only, then
//! reopens and checks the log.

mod common;

use common::{Model, batch, diff_entries, tiny_config};
use tierlog::{LogStore, StorageEngine, TieredEngine};

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
        let e = TieredEngine::open(dir.path(), tiny_config()).await.unwrap();
        let log = e.log_store();
        for first in (1..=1000).step_by(40) {
            log.persist_entries(batch(first, 40, 1, SEED)).await.unwrap();
        }
        log.flush().unwrap();
    }
    {
        // A fresh segment starts at this open: it begins with the append below.
        let e = TieredEngine::open(dir.path(), tiny_config()).await.unwrap();
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
    let e = TieredEngine::open(dir.path(), tiny_config()).await.unwrap();
    let log = e.log_store();
    assert_eq!(log.last_index(), m.last_index());
    assert_eq!(log.load_purge_boundary().unwrap(), None);
    let got = log.get_entries(0..=2000).unwrap();
    if let Some(d) = diff_entries(&got, &m.slice(0, 2000, SEED)) {
        panic!("log after reopen: {d}");
    }
}
