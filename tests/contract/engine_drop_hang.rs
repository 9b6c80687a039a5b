//! Regression test for an engine bug found by d-engine's and openraft's suites under a small memory
//! budget: the compactor livelocked, so dropping a `TieredEngine` never returned (Drop joins the
//! compactor thread) and `compact_now` never completed.
//!
//! Cause: a Normal round started when the ring bytes above the cold high-water (payload plus the
//! ring's per-entry overhead) reached `compaction_trigger_bytes`, but only full blocks (raw bytes >=
//! `block_target_bytes`) were moved. When the trigger was reached but no full block formed (always
//! with a trigger below the block size, and also at equal sizes because the ring counts more
//! overhead per entry), the round moved nothing, still committed, and reported progress, so
//! `Compactor::run` looped forever. Fixed in main by "compaction rounds always make progress".
//!
//! The test mirrors d-engine's `StorageEngineTestSuite` sequence with tierlog's own API, reopening the
//! same directory for every step, and fails (instead of hanging) when a drop takes over 20 s.

use std::sync::mpsc;
use std::time::Duration;

use tierlog::{Config, Entry, LogId, LogStore, StorageEngine, TieredEngine};

fn small_budget() -> Config {
    Config {
        memory_budget_bytes: 1 << 20,
        compaction_trigger_bytes: 1 << 10,
        hot_tail_entries: 4,
        ..Config::default()
    }
}

fn entries(range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    range
        .map(|i| Entry::new(i, i, format!("insert key_{i} value_{i}")))
        .collect()
}

/// Drops the engine on another thread and fails the test if that does not finish in time.
fn drop_within(engine: TieredEngine, step: &str) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        drop(engine);
        let _ = tx.send(());
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(20)).is_ok(),
        "dropping the engine after step `{step}` did not return within 20 s (compactor never stops)"
    );
}

async fn run(config: Config) {
    let dir = tempfile::tempdir().unwrap();
    let open = || TieredEngine::open(dir.path().join("e"), config.clone());

    let e = open().await.unwrap();
    assert_eq!(e.log_store().last_index(), 0);
    drop_within(e, "empty");

    let e = open().await.unwrap();
    e.log_store().persist_entries(entries(1..=1)).await.unwrap();
    drop_within(e, "single");

    let e = open().await.unwrap();
    e.log_store().persist_entries(entries(1..=100)).await.unwrap();
    drop_within(e, "batch");

    let e = open().await.unwrap();
    e.log_store().persist_entries(entries(1..=100)).await.unwrap();
    e.log_store().purge(LogId::new(50, 50)).await.unwrap();
    assert!(e.log_store().entry(50).await.unwrap().is_none());
    drop_within(e, "purge");

    let e = open().await.unwrap();
    e.log_store().reset().await.unwrap();
    e.log_store().persist_entries(entries(1..=100)).await.unwrap();
    e.log_store().truncate(76).await.unwrap();
    assert_eq!(e.log_store().last_index(), 75);
    drop_within(e, "truncate");

    let e = open().await.unwrap();
    e.log_store().persist_entries(entries(1..=50)).await.unwrap();
    e.log_store().reset().await.unwrap();
    assert_eq!(e.log_store().last_index(), 0);
    drop_within(e, "reset");

    let e = open().await.unwrap();
    e.log_store().persist_entries(entries(1..=10)).await.unwrap();
    e.log_store().purge(LogId::new(0, 0)).await.unwrap();
    drop_within(e, "purge 0");

    let e = open().await.unwrap();
    e.log_store().persist_entries(entries(1..=100)).await.unwrap();
    e.log_store().truncate(76).await.unwrap();
    drop_within(e, "truncate durability");

    let e = open().await.unwrap();
    assert_eq!(e.log_store().last_index(), 75);
    e.log_store().persist_entries(entries(1..=100)).await.unwrap();
    e.log_store().purge(LogId::new(50, 50)).await.unwrap();
    drop_within(e, "purge durability");

    let e = open().await.unwrap();
    assert!(e.log_store().entry(50).await.unwrap().is_none());
    assert!(e.log_store().entry(51).await.unwrap().is_some());
    drop_within(e, "final");
}

#[tokio::test(flavor = "current_thread")]
async fn drop_returns_with_small_budget_current_thread() {
    run(small_budget()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_returns_with_small_budget_multi_thread() {
    run(small_budget()).await;
}

/// Trigger equal to the block size also livelocks (the ring's per-entry overhead is larger than the
/// block's, so the trigger is reached before a block is full).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_returns_when_blocks_fit_the_trigger() {
    run(Config {
        block_target_bytes: 1 << 10,
        ..small_budget()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_returns_with_default_config() {
    run(Config::default()).await;
}
