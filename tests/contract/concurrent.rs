//! Reads concurrent with persist, compaction, purge and truncate never see a wrong, missing or
//! duplicated entry (issue 2, "Tests").
//!
//! One writer behaves like a Raft leader that sometimes loses its uncommitted tail: it appends,
//! advances a commit index, overwrites and truncates only above the commit index, purges only below
//! it, and forces compaction. It publishes, through atomics, what a reader may rely on:
//! - `commit`: every index in (purge boundary, commit] exists with the term recorded in `terms`;
//! - `purge_announced`: raised *before* a purge starts, so entries above it are still guaranteed.
//!
//! Readers check every `get_entries` result: ascending, contiguous, inside the requested range,
//! payload matching (index, term), committed entries with their committed term, and no committed,
//! unpurged index of the range missing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::support::*;
use tierlog::{Entry, LogId, LogStore, TieredEngine};

const MAX_INDEX: usize = 40_000;

struct Shared {
    commit: AtomicU64,
    purge_announced: AtomicU64,
    terms: Vec<AtomicU64>,
    done: AtomicBool,
    reads_checked: AtomicU64,
    entries_checked: AtomicU64,
}

fn check_read(shared: &Shared, lo: u64, hi: u64, got: &[Entry], commit_before: u64, purge_after: u64) {
    for (k, e) in got.iter().enumerate() {
        assert!(
            lo <= e.index && e.index <= hi,
            "entry {} outside {lo}..={hi}",
            e.index
        );
        assert!(
            is_intact(e, SEED),
            "entry {} term {} has a wrong payload",
            e.index,
            e.term
        );
        if k > 0 {
            assert_eq!(
                e.index,
                got[k - 1].index + 1,
                "not contiguous / duplicated in {lo}..={hi}: {:?}",
                indexes(got)
            );
        }
        if e.index <= commit_before && e.index > purge_after {
            let t = shared.terms[e.index as usize].load(Ordering::Acquire);
            assert_eq!(
                e.term, t,
                "committed entry {} has term {}, committed term {t}",
                e.index, e.term
            );
        }
    }
    // Every committed, not-yet-purged index of the range must be present.
    let must_lo = lo.max(purge_after + 1);
    let must_hi = hi.min(commit_before);
    if must_lo <= must_hi {
        let present = |i: u64| got.binary_search_by_key(&i, |e| e.index).is_ok();
        for i in [must_lo, must_hi, must_lo + (must_hi - must_lo) / 2] {
            assert!(
                present(i),
                "committed index {i} missing from {lo}..={hi} (got {:?})",
                indexes(got).first().zip(indexes(got).last())
            );
        }
        let n_present = got
            .iter()
            .filter(|e| e.index >= must_lo && e.index <= must_hi)
            .count() as u64;
        assert_eq!(
            n_present,
            must_hi - must_lo + 1,
            "committed entries missing in {must_lo}..={must_hi}"
        );
    }
}

async fn writer(engine: TieredEngine, shared: Arc<Shared>, seed: u64) {
    use tierlog::StorageEngine;
    let log = engine.log_store();
    let mut rng = Rng::new(seed);
    let mut term = 1u64;
    let mut last = 0u64;
    let mut boundary = 0u64;
    let mut batches = 0u64;
    while last + 64 < MAX_INDEX as u64 - 100 && batches < 1500 {
        batches += 1;
        let n = 1 + rng.below(32);
        log.persist_entries(ents(last + 1..=last + n, term))
            .await
            .unwrap();
        for i in last + 1..=last + n {
            shared.terms[i as usize].store(term, Ordering::Release);
        }
        last += n;
        let commit = shared.commit.load(Ordering::Relaxed);

        match rng.below(20) {
            // Advance the commit index, leaving a short uncommitted tail.
            0..=7 => {
                let c = last.saturating_sub(rng.below(8)).max(commit);
                shared.commit.store(c, Ordering::Release);
            }
            // Lose part of the uncommitted tail, then re-grow it in a new term.
            8 | 9 if last > commit + 1 => {
                let from = commit + 1 + rng.below(last - commit);
                if rng.below(2) == 0 {
                    log.truncate(from).await.unwrap();
                } else {
                    log.replace_range(from, vec![]).await.unwrap();
                }
                term += 1;
                last = from - 1;
                let n = rng.below(10);
                if n > 0 {
                    log.replace_range(from, ents(from..=from + n - 1, term))
                        .await
                        .unwrap();
                    for i in from..from + n {
                        shared.terms[i as usize].store(term, Ordering::Release);
                    }
                    last = from + n - 1;
                }
            }
            // Overwrite part of the uncommitted tail in place (upsert keeps what follows).
            10 if last > commit + 2 => {
                term += 1;
                let from = commit + 1 + rng.below(last - commit - 1);
                let to = (from + rng.below(4)).min(last);
                log.persist_entries(ents(from..=to, term)).await.unwrap();
                for i in from..=to {
                    shared.terms[i as usize].store(term, Ordering::Release);
                }
            }
            // Purge some of the committed prefix (announce first), keeping a long retained log so
            // that with the tiny budget its older part is evicted and read from cold blocks.
            11 | 12 if commit > boundary + 8000 => {
                let cut = boundary + 1 + rng.below((commit - boundary) / 4);
                shared.purge_announced.store(cut, Ordering::Release);
                let t = shared.terms[cut as usize].load(Ordering::Acquire);
                log.purge(LogId::new(t, cut)).await.unwrap();
                boundary = cut;
            }
            13 => engine.compact_now().await.unwrap(),
            _ => {}
        }
        if batches.is_multiple_of(16) {
            tokio::task::yield_now().await;
        }
    }
    shared.done.store(true, Ordering::Release);
}

fn reader(log: Arc<tierlog::TierLogStore>, shared: Arc<Shared>, seed: u64) {
    let mut rng = Rng::new(seed);
    while !shared.done.load(Ordering::Acquire) {
        let commit_before = shared.commit.load(Ordering::Acquire);
        let top = log.last_index() + 8;
        let (lo, hi) = match rng.below(3) {
            // Around the commit index (hot, racing with truncates and overwrites).
            0 => {
                let lo = commit_before.saturating_sub(rng.below(300));
                (lo, lo + rng.below(400))
            }
            // Anywhere, long ranges (cold reads racing with purges and compaction).
            1 => {
                let lo = rng.below(top + 1);
                (lo, lo + rng.below(3000))
            }
            // From the start of the retained log.
            _ => (0, rng.below(top + 1)),
        };
        let got = log.get_entries(lo..=hi).unwrap();
        let purge_after = shared.purge_announced.load(Ordering::Acquire);
        check_read(&shared, lo, hi, &got, commit_before, purge_after);
        shared.reads_checked.fetch_add(1, Ordering::Relaxed);
        shared
            .entries_checked
            .fetch_add(got.len() as u64, Ordering::Relaxed);
    }
}

async fn run(cfg: tierlog::Config, seed: u64) {
    use tierlog::StorageEngine;
    let dir = tempfile::tempdir().unwrap();
    let engine = TieredEngine::open(dir.path(), cfg).await.unwrap();
    let shared = Arc::new(Shared {
        commit: AtomicU64::new(0),
        purge_announced: AtomicU64::new(0),
        terms: (0..=MAX_INDEX).map(|_| AtomicU64::new(0)).collect(),
        done: AtomicBool::new(false),
        reads_checked: AtomicU64::new(0),
        entries_checked: AtomicU64::new(0),
    });
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (log, shared) = (engine.log_store(), shared.clone());
            tokio::task::spawn_blocking(move || reader(log, shared, seed ^ ((r + 1) * 0x9e37_79b9)))
        })
        .collect();
    let w = tokio::spawn(writer(engine.clone(), shared.clone(), seed));
    let w_result = w.await;
    shared.done.store(true, Ordering::Release);
    for r in readers {
        r.await
            .expect("a reader found a wrong, missing or duplicated entry");
    }
    w_result.expect("writer failed");
    let reads = shared.reads_checked.load(Ordering::Relaxed);
    let s = engine.stats();
    eprintln!(
        "{reads} concurrent reads checked, {} entries; final commit {}, purge boundary {}; \
         hot_reads {} cold_reads {} compactions {}",
        shared.entries_checked.load(Ordering::Relaxed),
        shared.commit.load(Ordering::Relaxed),
        shared.purge_announced.load(Ordering::Relaxed),
        s.hot_reads,
        s.cold_reads,
        s.compactions
    );
    assert!(reads > 10, "readers ran only {reads} reads");
    assert!(shared.entries_checked.load(Ordering::Relaxed) > 0);

    // Finally the log itself is right: committed prefix with recorded terms, contiguous.
    let log = engine.log_store();
    let got = log.get_entries(0..=log.last_index()).unwrap();
    check_read(
        &shared,
        0,
        log.last_index(),
        &got,
        shared.commit.load(Ordering::Acquire),
        shared.purge_announced.load(Ordering::Acquire),
    );
    assert_eq!(got.last().map(|e| e.index), Some(log.last_index()));
}

/// Background compaction eager, default memory budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_during_writes_with_eager_compaction() {
    run(config::eager_compaction(), 0x1234_5678_9abc_def1).await;
}

/// Smallest memory budget: readers hit evicted entries in the cold tier while the writer works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_during_writes_with_tiny_memory_budget() {
    run(config::tiny_memory(), 0x0fed_cba9_8765_4321).await;
}
