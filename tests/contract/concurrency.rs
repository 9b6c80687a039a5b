//! Concurrency stress: readers against a writer, the compactor, purge and truncate.
//!
//! One writer appends batches (each with a fresh term), and now and then truncates, replaces a
//! suffix, purges a prefix and forces a compaction; the tiny configuration (1 MiB budget, a round
//! every 16 KiB, 4 KiB blocks) keeps the background compactor busy and makes readers hit the cold
//! tier. Reader tasks meanwhile call `get_entries` over random ranges and `entry` at random indexes.
//!
//! Every read result must be a contiguous, correct slice of the log as it was at some moment:
//! - indexes ascending with no gap, inside the asked range, nothing at or below the purge boundary
//!   seen before the read started;
//! - each payload is the one written for its `(index, term)`;
//! - where the term changes between neighbours `(i, t1)`, `(i + 1, t2)`: `t2 > t1` and the write of
//!   term `t2` started exactly at `i + 1` (the writer never overwrites in the middle, so at any
//!   moment the log is a run of whole-or-cut batches with rising terms; a read torn across a
//!   truncate/replace mixes runs in a way this catches);
//! - when no truncate/replace overlapped the read, every index in `(boundary after, last before]`
//!   inside the range is present (it existed during the whole read).
//!
//! At the end the whole log is compared with the writer's model, after a reopen too.
//!
//! Default (debug, overflow checks on): 1 500 writer operations. Longer:
//! `TIERLOG_STRESS_OPS=200000 cargo test --release --test concurrency -- --nocapture`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::support::{Model, Rng, batch, config, diff_entries};
use parking_lot::RwLock;
use tierlog::{Entry, LogId, LogStore, StorageEngine, TieredEngine};

const SEED: u64 = 0xFACE;
const READERS: u64 = 3;

/// Where each term's batch started and how long it was.
type Starts = Arc<RwLock<HashMap<u64, (u64, u64)>>>;

struct Shared {
    starts: Starts,
    /// Odd while a truncate/replace is running; bumped before and after each one.
    cutting: AtomicU64,
    done: AtomicBool,
}

fn ops() -> u64 {
    std::env::var("TIERLOG_STRESS_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_500)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn readers_see_contiguous_correct_slices_under_writes_compaction_purge_truncate() {
    let dir = tempfile::tempdir().unwrap();
    let engine = TieredEngine::open(dir.path(), config::tiny()).await.unwrap();
    let shared = Arc::new(Shared {
        starts: Arc::new(RwLock::new(HashMap::new())),
        cutting: AtomicU64::new(0),
        done: AtomicBool::new(false),
    });

    let mut readers = Vec::new();
    for r in 0..READERS {
        let log = engine.log_store();
        let shared = shared.clone();
        readers.push(tokio::spawn(async move { reader(log, shared, r).await }));
    }

    let model = writer(&engine, &shared, ops()).await;
    shared.done.store(true, Ordering::SeqCst);
    let mut total_reads = 0;
    let mut total_entries = 0;
    for r in readers {
        let (reads, entries) = r.await.expect("reader task panicked");
        total_reads += reads;
        total_entries += entries;
    }
    let stats = engine.stats();
    eprintln!(
        "concurrency: {} writer ops, {total_reads} reads checked ({total_entries} entries), \
         {} compactions, {} cold reads, {} hot reads",
        ops(),
        stats.compactions,
        stats.cold_reads,
        stats.hot_reads
    );
    assert!(total_reads > 0, "readers never completed a read");
    assert!(
        stats.compactions > 0 && stats.cold_reads > 0,
        "the stress never reached the cold tier: {stats:?}"
    );

    let last = model.last_index();
    let got = engine.log_store().get_entries(0..=last + 8).unwrap();
    if let Some(d) = diff_entries(&got, &model.slice(0, last + 8, SEED)) {
        panic!("final log differs from the writer's model: {d}");
    }
    drop(engine);
    let engine = TieredEngine::open(dir.path(), config::tiny()).await.unwrap();
    let log = engine.log_store();
    assert_eq!(log.last_index(), last);
    assert_eq!(log.load_purge_boundary().unwrap(), model.boundary);
    let got = log.get_entries(0..=last + 8).unwrap();
    if let Some(d) = diff_entries(&got, &model.slice(0, last + 8, SEED)) {
        panic!("log after reopen differs from the writer's model: {d}");
    }
}

async fn writer(engine: &TieredEngine, shared: &Shared, n: u64) -> Model {
    let log = engine.log_store();
    let mut m = Model::default();
    let mut rng = Rng::new(SEED);
    let mut term = 0;
    for k in 0..n {
        term += 1;
        let last = m.last_index();
        let b = m.boundary_index();
        let has = !m.entries.is_empty();
        let roll = rng.below(100);
        if roll < 80 || !has {
            let first = if has { last + 1 } else { b + 1 };
            let len = rng.range(1, 32);
            shared.starts.write().insert(term, (first, len));
            log.persist_entries(batch(first, len, term, SEED))
                .await
                .unwrap_or_else(|e| panic!("op {k}: persist at {first}: {e}"));
            m.persist(first, len, term);
        } else if roll < 88 {
            let from = rng.range((b + 1).max(last.saturating_sub(40)), last);
            let len = rng.range(0, 24);
            shared.starts.write().insert(term, (from, len));
            shared.cutting.fetch_add(1, Ordering::SeqCst);
            let r = if rng.chance(1, 2) || len == 0 {
                log.truncate(from).await.map(|()| 0)
            } else {
                log.replace_range(from, batch(from, len, term, SEED))
                    .await
                    .map(|()| len)
            };
            shared.cutting.fetch_add(1, Ordering::SeqCst);
            let len = r.unwrap_or_else(|e| panic!("op {k}: truncate/replace at {from}: {e}"));
            m.truncate(from);
            m.persist(from, len, term);
        } else if roll < 95 {
            // Keep about 2 000 entries; purge a random part of the older half.
            let span = last - b;
            let cutoff = if span > 2_000 {
                last - 2_000 + rng.below(500)
            } else {
                b + rng.below(span / 4 + 1)
            };
            if cutoff > b {
                let t = m.entries.get(&cutoff).copied().unwrap_or(term);
                let id = LogId::new(t.max(m.boundary.map_or(0, |x| x.term)), cutoff);
                log.purge(id)
                    .await
                    .unwrap_or_else(|e| panic!("op {k}: purge({cutoff}): {e}"));
                m.purge(id);
            }
        } else if roll < 97 {
            engine
                .compact_now()
                .await
                .unwrap_or_else(|e| panic!("op {k}: compact_now: {e}"));
        } else {
            log.flush().unwrap_or_else(|e| panic!("op {k}: flush: {e}"));
        }
        assert_eq!(log.last_index(), m.last_index(), "op {k}: last_index");
        if k % 16 == 0 {
            tokio::task::yield_now().await;
        }
    }
    m
}

/// Returns (reads, entries checked).
async fn reader(log: Arc<tierlog::TierLogStore>, shared: Arc<Shared>, id: u64) -> (u64, u64) {
    let mut rng = Rng::new(SEED ^ ((id + 1) << 40));
    let mut reads = 0;
    let mut entries = 0;
    while !shared.done.load(Ordering::SeqCst) {
        let b0 = boundary(&log);
        let cut0 = shared.cutting.load(Ordering::SeqCst);
        let last0 = log.last_index();
        let (lo, hi) = match rng.below(10) {
            0 => (0, last0 + 10),
            1..=3 => {
                // Old ranges: likely cold, likely straddling the purge boundary.
                let lo = b0.saturating_sub(20) + rng.below(200);
                (lo, lo + rng.below(400))
            }
            _ => {
                let lo = b0.saturating_sub(5) + rng.below(last0 - b0 + 10);
                (lo, lo + rng.below(300))
            }
        };
        let point = rng.chance(1, 4);
        let got: Vec<Entry> = if point {
            log.entry(lo)
                .await
                .unwrap_or_else(|e| panic!("reader {id}: entry({lo}): {e}"))
                .into_iter()
                .collect()
        } else {
            log.get_entries(lo..=hi)
                .unwrap_or_else(|e| panic!("reader {id}: get_entries({lo}..={hi}): {e}"))
        };
        let hi = if point { lo } else { hi };
        let cut1 = shared.cutting.load(Ordering::SeqCst);
        let b1 = boundary(&log);
        let what = format!("reader {id}: read {lo}..={hi} (boundary {b0}->{b1}, last {last0})");
        check_slice(&got, lo, hi, b0, &shared.starts).unwrap_or_else(|e| panic!("{what}: {e}"));
        if cut0 == cut1 && cut0.is_multiple_of(2) {
            // Nothing was cut during the read: what existed throughout must all be there.
            let must_lo = lo.max(b1 + 1);
            let must_hi = hi.min(last0);
            if must_lo <= must_hi {
                let have = |i: u64| got.iter().any(|e| e.index == i);
                if !have(must_lo) || !have(must_hi) {
                    panic!(
                        "{what}: {must_lo}..={must_hi} existed during the whole read but the \
                         result is {}",
                        span(&got)
                    );
                }
            }
        }
        reads += 1;
        entries += got.len() as u64;
        if reads % 8 == 0 {
            tokio::task::yield_now().await;
        }
    }
    (reads, entries)
}

fn boundary(log: &tierlog::TierLogStore) -> u64 {
    log.load_purge_boundary()
        .expect("load_purge_boundary")
        .map_or(0, |b| b.index)
}

fn span(v: &[Entry]) -> String {
    match (v.first(), v.last()) {
        (Some(a), Some(z)) => format!("{}..={}", a.index, z.index),
        _ => "empty".into(),
    }
}

fn check_slice(got: &[Entry], lo: u64, hi: u64, b0: u64, starts: &Starts) -> Result<(), String> {
    let starts = starts.read();
    for (k, e) in got.iter().enumerate() {
        if e.index < lo || e.index > hi {
            return Err(format!("index {} outside the range", e.index));
        }
        if e.index <= b0 {
            return Err(format!(
                "index {} was purged (boundary {b0}) before the read began",
                e.index
            ));
        }
        if e.payload != crate::support::payload(e.index, e.term, SEED) {
            return Err(format!(
                "entry ({}, {}) has a payload never written for it",
                e.index, e.term
            ));
        }
        let Some(&(start, len)) = starts.get(&e.term) else {
            return Err(format!("entry {} has term {} never written", e.index, e.term));
        };
        if e.index < start || e.index >= start + len {
            return Err(format!(
                "entry {} has term {} whose batch covered {start}..{}",
                e.index,
                e.term,
                start + len
            ));
        }
        if k > 0 {
            let p = &got[k - 1];
            if e.index != p.index + 1 {
                return Err(format!(
                    "not contiguous: {} after {} in {}",
                    e.index,
                    p.index,
                    span(got)
                ));
            }
            if e.term != p.term && (e.term < p.term || start != e.index) {
                return Err(format!(
                    "torn read: ({}, term {}) next to ({}, term {}) never coexisted",
                    p.index, p.term, e.index, e.term
                ));
            }
        }
    }
    Ok(())
}
