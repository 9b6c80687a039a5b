//! The cold tier's compression dictionary: trained once the store holds
//! `dictionary_training_bytes` of cold data, stored in the cold file with the first blocks that
//! use it. Blocks written before and after it read back exactly, through reopen and offline
//! compaction; a damaged or missing dictionary is corruption of `cold.redb`, never wrong entries.

use redb::{Database, ReadableTable, TableDefinition};

use crate::support::*;
use tierlog::{Config, Entry, Error, LogStore, StorageEngine, TieredEngine};

const DICTIONARIES: TableDefinition<u32, &[u8]> = TableDefinition::new("dictionaries");

/// Compaction only when asked, and a dictionary trained once 32 KiB of raw entries are cold.
fn config() -> Config {
    config::tiny_forced_only()
}

/// Writes `range` and compacts it all.
async fn write_cold(engine: &TieredEngine, range: std::ops::RangeInclusive<u64>) {
    engine.log_store().persist_entries(ents(range, 1)).await.unwrap();
    engine.compact_now().await.unwrap();
}

async fn read_all(engine: &TieredEngine, last: u64) -> Result<Vec<Entry>, Error> {
    engine.log_store().get_entries(1..=last)
}

/// A store whose first blocks (1..=200) were written before the dictionary existed and whose later
/// ones (201..=last) after; returns `last` and the dictionary's size.
async fn store_across_training(dir: &std::path::Path) -> (u64, u64) {
    let engine = TieredEngine::open(dir, config()).await.unwrap();
    // About 24 KiB raw: below the training threshold.
    write_cold(&engine, 1..=200).await;
    assert_eq!(engine.stats().dictionary_bytes, 0, "trained below the threshold");
    // The round that finds 32 KiB cold trains; the blocks of this and later rounds use it.
    write_cold(&engine, 201..=500).await;
    write_cold(&engine, 501..=1200).await;
    let s = engine.stats();
    assert!(s.dictionary_bytes > 0, "no dictionary trained: {s:?}");
    assert!(s.dictionary_bytes <= config().dictionary_bytes);
    let got = read_all(&engine, 1200).await.unwrap();
    assert!(got == ents(1..=1200, 1), "entries differ before reopen");
    engine.close().await.unwrap();
    (1200, s.dictionary_bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_before_and_after_the_dictionary_read_back_exactly_also_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (last, dict_bytes) = store_across_training(dir.path()).await;
    let engine = TieredEngine::open(dir.path(), config()).await.unwrap();
    assert_eq!(
        engine.stats().dictionary_bytes,
        dict_bytes,
        "reopen lost the dictionary"
    );
    let got = read_all(&engine, last).await.unwrap();
    assert!(got == ents(1..=last, 1), "entries differ after reopen");
    // Everything compacted is read from the cold tier after a reopen.
    assert_eq!(
        engine.stats().cold_reads,
        last,
        "reads did not all come from the cold tier"
    );
    // The dictionary is trained once: more rounds keep it.
    write_cold(&engine, last + 1..=last + 300).await;
    assert_eq!(engine.stats().dictionary_bytes, dict_bytes);
    let got = read_all(&engine, last + 300).await.unwrap();
    assert!(got == ents(1..=last + 300, 1));
    engine.close().await.unwrap();

    let inspection = tierlog::offline::inspect(dir.path()).unwrap();
    assert_eq!(inspection.dictionary_bytes, Some(dict_bytes));
    let report = tierlog::offline::verify(dir.path()).unwrap();
    assert_eq!(report.entries, last + 300);
    let dumped = tierlog::offline::dump(dir.path(), 1, last + 300).unwrap();
    assert!(dumped == ents(1..=last + 300, 1), "dump differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_compaction_keeps_the_dictionary() {
    let dir = tempfile::tempdir().unwrap();
    let (last, dict_bytes) = store_across_training(dir.path()).await;
    tierlog::offline::compact(dir.path()).unwrap();
    assert_eq!(
        tierlog::offline::inspect(dir.path()).unwrap().dictionary_bytes,
        Some(dict_bytes)
    );
    let engine = TieredEngine::open(dir.path(), config()).await.unwrap();
    let got = read_all(&engine, last).await.unwrap();
    assert!(got == ents(1..=last, 1));
}

#[tokio::test]
async fn a_store_with_dictionaries_off_never_trains_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        dictionary_bytes: 0,
        ..config()
    };
    let engine = TieredEngine::open(dir.path(), cfg.clone()).await.unwrap();
    engine
        .log_store()
        .persist_entries(ents(1..=1200, 1))
        .await
        .unwrap();
    engine.compact_now().await.unwrap();
    engine
        .log_store()
        .persist_entries(ents(1201..=1300, 1))
        .await
        .unwrap();
    engine.compact_now().await.unwrap();
    assert_eq!(engine.stats().dictionary_bytes, 0);
    assert_eq!(engine.stats().dictionary_reserve_bytes, 0);
    engine.close().await.unwrap();
    assert_eq!(
        tierlog::offline::inspect(dir.path()).unwrap().dictionary_bytes,
        None
    );
}

/// Rewrites (or with `None` deletes) the stored dictionary 1.
fn tamper_dictionary(dir: &std::path::Path, f: impl FnOnce(&mut Vec<u8>) -> bool) {
    let db = Database::open(dir.join("cold.redb")).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut t = tx.open_table(DICTIONARIES).unwrap();
        let mut v = t
            .get(1)
            .unwrap()
            .expect("dictionary 1 is stored")
            .value()
            .to_vec();
        if f(&mut v) {
            t.insert(1, v.as_slice()).unwrap();
        } else {
            t.remove(1).unwrap();
        }
    }
    tx.commit().unwrap();
}

/// Blocks written before the dictionary still read; a read that needs the dictionary is an
/// `Error::Corruption` of `cold.redb`; `verify` fails the same way.
async fn assert_dictionary_damage_is_reported(dir: &std::path::Path, last: u64, what: &str) {
    let engine = TieredEngine::open(dir, config()).await.unwrap();
    let before = engine.log_store().get_entries(1..=150).unwrap();
    assert!(
        before == ents(1..=150, 1),
        "{what}: blocks without the dictionary differ"
    );
    match read_all(&engine, last).await {
        Err(e @ Error::Corruption { .. }) => {
            assert!(e.to_string().contains("cold.redb"), "{what}: {e}");
            assert!(e.to_string().contains("dictionary"), "{what}: {e}");
        }
        Err(e) => panic!("{what}: not a corruption error: {e}"),
        Ok(got) => panic!("{what}: read {} entries through a broken dictionary", got.len()),
    }
    engine.close().await.unwrap();
    match tierlog::offline::verify(dir) {
        Err(e @ Error::Corruption { .. }) => assert!(e.to_string().contains("cold.redb"), "{e}"),
        other => panic!("{what}: verify did not report corruption: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_dictionary_is_corruption_of_the_cold_file_not_wrong_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (last, _) = store_across_training(dir.path()).await;
    tamper_dictionary(dir.path(), |v| {
        let mid = v.len() / 2;
        v[mid] ^= 0x20;
        true
    });
    assert_dictionary_damage_is_reported(dir.path(), last, "flipped byte").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_naming_a_missing_dictionary_is_corruption_of_the_cold_file() {
    let dir = tempfile::tempdir().unwrap();
    let (last, _) = store_across_training(dir.path()).await;
    tamper_dictionary(dir.path(), |_| false);
    assert_dictionary_damage_is_reported(dir.path(), last, "deleted").await;
}
