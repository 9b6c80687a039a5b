//! What an idle group costs in memory (issue 11, item 4: at most 2 KiB per idle group).
//!
//! One `#[ignore]`d measurement, in a binary of its own so that nothing else runs in the process
//! while it reads its resident set: an engine with default settings gets a warm-up set of groups
//! (so thread pools, caches and allocator arenas exist before the baseline), then `N` more groups
//! (default 10,000), each created, given four 64-byte entries, flushed and compacted to the cold
//! tier, then left idle. The growth of `VmRSS` (`/proc/self/status`) from the baseline to the idle
//! state, divided by `N`, is the cost per idle group, printed beside issue 11's target (at most
//! 2 KiB). The same figure for `N` more groups (lower when memory the ring freed is reused), the
//! growth of the live heap per group (this binary's allocator counts it: what the groups hold,
//! without the freed memory the allocator keeps and `VmRSS` still shows), and the engine's own figures (`stats()`: bytes in the hot ring, which keeps compacted entries until
//! memory is needed, block index bytes, the groups' own structures as the budget accounts them) are
//! printed beside it.
//!
//! Run: `cargo test --release --test memory -- --ignored --nocapture`
//! (`TIERLOG_IDLE_GROUPS=20000` for more groups, `TIERLOG_IDLE_BUDGET_MIB=32` for a budget small
//! enough that the ring evicts the idle groups' entries; the redb file size, compaction rounds and
//! back-pressure waits are printed too, since so small a budget makes appends wait).

#[path = "../support/mod.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::env_u64;
use tierlog::{Config, Entry, GroupId, LogStore, StorageEngine, TieredEngine};

/// Entries each idle group holds, and their payload size.
const ENTRIES_PER_GROUP: u64 = 4;
const PAYLOAD_BYTES: usize = 64;
/// Groups created, written and compacted at once (their creations and flushes share fdatasyncs).
const CHUNK: u64 = 250;

/// The system allocator, counting the heap it holds live: what each idle group's structures take,
/// apart from what the allocator keeps of freed memory and from caches filling up to their caps,
/// which `VmRSS` also shows.
struct Counting;

/// Live heap bytes as glibc's malloc lays them out: each block takes its size plus an 8-byte
/// header, rounded up to 16 bytes, at least 32.
static LIVE_HEAP: AtomicU64 = AtomicU64::new(0);

fn chunk(layout: Layout) -> u64 {
    ((layout.size() as u64 + 8).div_ceil(16) * 16).max(32)
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s contract;
// the counter is only a side effect and never changes what is returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_HEAP.fetch_add(chunk(layout), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_HEAP.fetch_sub(chunk(layout), Ordering::Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this `layout` (the caller's contract).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc` is passed on unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // SAFETY: `new_size` is valid for `layout.align()`: `realloc`'s contract.
            let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            LIVE_HEAP.fetch_add(chunk(new), Ordering::Relaxed);
            LIVE_HEAP.fetch_sub(chunk(layout), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

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
    let budget_mib =
        env_u64("TIERLOG_IDLE_BUDGET_MIB").unwrap_or(Config::default().memory_budget_bytes >> 20);
    let warm_up = 500;
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        memory_budget_bytes: budget_mib << 20,
        ..Config::default()
    };
    let e = TieredEngine::open(dir.path(), cfg).await.unwrap();
    let idle = |e: &TieredEngine| (rss_bytes(), e.stats(), LIVE_HEAP.load(Ordering::Relaxed));
    add_idle_groups(&e, 1..1 + warm_up).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss0, st0, heap0) = idle(&e);

    let t = Instant::now();
    add_idle_groups(&e, 1 + warm_up..1 + warm_up + n).await;
    let took = t.elapsed();
    // Idle: a few background rounds pass with nothing to do.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss1, st1, heap1) = idle(&e);
    add_idle_groups(&e, 1 + warm_up + n..1 + warm_up + 2 * n).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss2, st2, heap2) = idle(&e);
    assert_eq!(e.groups().len() as u64, 1 + warm_up + 2 * n, "every group exists");

    let per = |a: u64, b: u64| (b as f64 - a as f64) / n as f64;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let first = per(rss0, rss1);
    let marginal = per(rss1, rss2);
    eprintln!(
        "memory per idle group ({budget_mib} MiB budget; groups of {ENTRIES_PER_GROUP} entries of \
         {PAYLOAD_BYTES} bytes, created, written, flushed and compacted; {n} groups took {:.1} s): \
         VmRSS {:.1} MiB ({warm_up} groups) -> {:.1} MiB (+{n}) -> {:.1} MiB (+{n} more): \
         {first:.0} bytes per group for the first {n}, {marginal:.0} for the next {n}; live heap \
         {:.0} and {:.0} bytes per group; engine figures \
         per group, first and next: hot ring {:.0} and {:.0} bytes (hot entries {} -> {} -> {}), \
         block index {:.0} and {:.0} bytes, block cache {:.0} and {:.0} bytes, the groups' own \
         structures as accounted {:.0} and {:.0} bytes; redb file {:.1} -> {:.1} -> {:.1} MiB, {} \
         compaction rounds, {} back-pressure waits",
        took.as_secs_f64(),
        mib(rss0),
        mib(rss1),
        mib(rss2),
        per(heap0, heap1),
        per(heap1, heap2),
        per(st0.hot_bytes, st1.hot_bytes),
        per(st1.hot_bytes, st2.hot_bytes),
        st0.hot_entries,
        st1.hot_entries,
        st2.hot_entries,
        per(st0.block_index_bytes, st1.block_index_bytes),
        per(st1.block_index_bytes, st2.block_index_bytes),
        per(st0.block_cache_bytes, st1.block_cache_bytes),
        per(st1.block_cache_bytes, st2.block_cache_bytes),
        per(st0.group_bytes, st1.group_bytes),
        per(st1.group_bytes, st2.group_bytes),
        mib(st0.redb_file_bytes),
        mib(st1.redb_file_bytes),
        mib(st2.redb_file_bytes),
        st2.compactions,
        st2.backpressure_waits,
    );
    // Reported, not asserted: the figure is what the lead compares with the target.
    eprintln!(
        "memory per idle group: {first:.0} bytes, {} the 2 KiB target (issue 11)",
        if first <= 2048.0 { "within" } else { "over" }
    );
    e.close().await.unwrap();
}
