//! What an idle group costs in memory (issue 11, item 4: at most 2 KiB per idle group).
//!
//! One `#[ignore]`d measurement, in a binary of its own so that nothing else runs in the process
//! while it reads its resident set: an engine with default settings gets a warm-up set of groups
//! (so thread pools, caches and allocator arenas exist before the baseline), then `N` more groups
//! (default 10,000), each created, given a few small entries, flushed and compacted to the cold
//! tier, then left idle. The growth of `VmRSS` (`/proc/self/status`) from the baseline to the idle
//! state, divided by `N`, is the cost per idle group; the engine's own figures (`stats()`: bytes in
//! the hot ring, block index bytes) are printed beside it, to tell what the engine holds from what
//! the allocator keeps.
//!
//! Run: `cargo test --release --test memory -- --ignored --nocapture`
//! (`TIERLOG_IDLE_GROUPS=100000` for more groups).

#[path = "../support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::env_u64;
use tierlog::{Config, Entry, GroupId, LogStore, StorageEngine, TieredEngine};

/// Entries each idle group holds, and their payload size.
const ENTRIES_PER_GROUP: u64 = 4;
const PAYLOAD_BYTES: usize = 64;
/// Groups created, written and compacted at once (their creations and flushes share fdatasyncs).
const CHUNK: u64 = 250;

/// The process's resident set, from `/proc/self/status`.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line in /proc/self/status");
    kib << 10
}

/// Creates groups `ids`, writes `ENTRIES_PER_GROUP` entries of `PAYLOAD_BYTES` into each, flushes once and
/// compacts everything to the cold tier.
async fn add_idle_groups(e: &TieredEngine, ids: std::ops::Range<GroupId>) {
    let mut start = ids.start;
    while start < ids.end {
        let end = (start + CHUNK).min(ids.end);
        let mut tasks = tokio::task::JoinSet::new();
        for g in start..end {
            let e = e.clone();
            tasks.spawn(async move {
                let grp = e.create_group(g).await?;
                let entries = (1..=ENTRIES_PER_GROUP)
                    .map(|i| Entry::new(i, 1, vec![(g + i) as u8; PAYLOAD_BYTES]))
                    .collect();
                grp.log_store().persist_entries(entries).await
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("task").expect("create and write a group");
        }
        e.log_store().flush().expect("flush");
        start = end;
    }
    e.compact_now().await.expect("compact_now");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run alone, in release (cargo test --release --test memory -- --ignored --nocapture)"]
async fn memory_per_idle_group() {
    let n = env_u64("TIERLOG_IDLE_GROUPS").unwrap_or(10_000);
    let warm_up = 500;
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::default();
    let e = TieredEngine::open(dir.path(), cfg).await.unwrap();
    add_idle_groups(&e, 1..1 + warm_up).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss0, st0) = (rss_bytes(), e.stats());

    let t = Instant::now();
    add_idle_groups(&e, 1 + warm_up..1 + warm_up + n).await;
    let took = t.elapsed();
    // Idle: a few background rounds pass with nothing to do.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss1, st1) = (rss_bytes(), e.stats());
    assert_eq!(e.groups().len() as u64, 1 + warm_up + n, "every group exists");

    let per = |a: u64, b: u64| (b as f64 - a as f64) / n as f64;
    let rss_per_group = per(rss0, rss1);
    eprintln!(
        "memory per idle group: {n} groups of {ENTRIES_PER_GROUP} entries of {PAYLOAD_BYTES} bytes, created, written, flushed \
         and compacted in {:.1} s; VmRSS {:.1} MiB -> {:.1} MiB: {rss_per_group:.0} bytes per group; \
         engine figures per group: hot ring {:.0} bytes ({} -> {} hot entries), block index {:.0} \
         bytes, block cache {:.0} bytes; cold blocks {} -> {}",
        took.as_secs_f64(),
        rss0 as f64 / (1 << 20) as f64,
        rss1 as f64 / (1 << 20) as f64,
        per(st0.hot_bytes, st1.hot_bytes),
        st0.hot_entries,
        st1.hot_entries,
        per(st0.block_index_bytes, st1.block_index_bytes),
        per(st0.block_cache_bytes, st1.block_cache_bytes),
        st0.cold_blocks,
        st1.cold_blocks,
    );
    assert!(
        rss_per_group <= 2048.0,
        "an idle group costs {rss_per_group:.0} bytes of resident memory, over the 2 KiB target"
    );
    e.close().await.unwrap();
}
