//! Reads racing writes: every result a reader gets while a writer appends, overwrites, truncates,
//! replaces, purges and forces compactions (and the background compactor runs) must be a correct
//! slice of the log. Two writers, each with the checks its behaviour allows:
//!
//! - [`leader`]: a Raft leader that publishes a commit index; committed entries must be there with
//!   their committed term.
//! - [`stress`]: a writer that truncates and replaces anywhere in its recent log, with a tiny
//!   configuration; reads must never be torn across a cut.

mod leader {
    //! Reads concurrent with persist, compaction, purge and truncate never see a wrong, missing or
    //! duplicated entry.
    //!
    //! One writer behaves like a Raft leader that sometimes loses its uncommitted tail: it
    //! appends, advances a commit index, overwrites and truncates only above the commit index,
    //! purges only below it, and forces compaction. It publishes, through atomics, what a reader
    //! may rely on:
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
}

mod stress {
    //! Stress: readers against a writer, the compactor, purge and truncate.
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
    //! `TIERLOG_STRESS_OPS=200000 cargo test --release --test contract concurrency::stress -- --nocapture`.

    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use crate::support::{Model, Rng, batch, config, diff_entries, is_intact};
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
        crate::support::env_u64("TIERLOG_STRESS_OPS").unwrap_or(1_500)
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
            if !is_intact(e, SEED) {
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
}
