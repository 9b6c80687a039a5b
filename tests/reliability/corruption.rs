//! Corruption detection: flip, zero and truncate bytes at random places in write-ahead segments
//! (`wal/*.wal`) and in cold blocks (values of redb's `blocks` table), then check
//! `tierlog::offline::verify` and `open` in each recovery mode.
//!
//! The pristine store holds entries 1..=2000 in cold blocks (their segments retired) and
//! 2001..=3000 in write-ahead segments only, every entry flushed. For each damaged copy:
//! - `verify` either reports it (an `Error::Corruption` naming the damaged file, with an offset inside
//!   it — for a cold block, the block's first index — or a torn tail of the newest segment), or the
//!   damage was harmless: the whole log then reads back exactly as written;
//! - `open` with `AbsoluteConsistency` fails on any write-ahead damage with `Error::Corruption`;
//!   `TolerateTornTail` opens only when the damage is a tail of the newest segment (or harmless);
//!   `TolerateAnyCorruption` always opens and keeps a prefix of the log;
//! - after any successful open, every entry a read returns is exactly the one written (index, term,
//!   payload), contiguous; a damaged cold block makes the read fail with `Error::Corruption`, never
//!   return a wrong entry.
//!
//! Default 48 damaged copies; more: `TIERLOG_CORRUPTION_TRIALS=2000 cargo test --release --features
//! failpoints --test reliability corruption:: -- --nocapture` (seed: `TIERLOG_CORRUPTION_SEED`).

use std::path::{Path, PathBuf};

use crate::support::{Model, Rng, batch, config, copy_dir, env_u64};
use redb::{Database, ReadableTable, TableDefinition};
use tierlog::{Config, Error, LogStore, OffsetKind, RecoveryMode, StorageEngine, TieredEngine};

const SEED: u64 = 0xBAD;
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");

/// `flush_each`: flush after every batch (a Raft leader's pattern), so every record carries the
/// durable watermark of the one before it.
async fn build_pristine(dir: &Path, config: Config, flush_each: bool) -> Model {
    let mut m = Model::default();
    let e = TieredEngine::open(dir, config).await.unwrap();
    let log = e.log_store();
    let mut term = 0;
    for first in (1..=3000).step_by(25) {
        term += 1;
        log.persist_entries(batch(first, 25, term, SEED)).await.unwrap();
        m.persist(first, 25, term);
        if flush_each {
            log.flush().unwrap();
        }
        if first == 1976 {
            e.compact_now().await.unwrap();
        }
    }
    log.flush().unwrap();
    e.close().await.unwrap();
    m
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Damage {
    Flip,
    Zero,
    Truncate,
}

#[derive(Debug)]
enum Target {
    Wal { path: PathBuf, newest: bool },
    Block { first: u64 },
}

/// Damages `dir` at a random place; returns what was hit (for the checks and the messages).
fn damage(dir: &Path, rng: &mut Rng) -> (Target, Damage, u64) {
    let kind = match rng.below(3) {
        0 => Damage::Flip,
        1 => Damage::Zero,
        _ => Damage::Truncate,
    };
    let report = tierlog::offline::inspect(dir).expect("inspect pristine copy");
    let live: Vec<_> = report.segments.iter().filter(|s| s.records > 0).collect();
    if rng.chance(1, 2) && !live.is_empty() {
        let k = rng.below(live.len() as u64) as usize;
        let seg = live[k];
        let newest = k + 1 == live.len();
        let mut bytes = std::fs::read(&seg.path).unwrap();
        // Only the written part: zeroes past it are not data.
        let off = rng.below(seg.used_bytes) as usize;
        match kind {
            Damage::Flip => bytes[off] ^= 1 << rng.below(8),
            Damage::Zero => {
                let n = rng.range(1, 64) as usize;
                let end = (off + n).min(bytes.len());
                bytes[off..end].iter_mut().for_each(|b| *b = 0);
            }
            Damage::Truncate => bytes.truncate(off),
        }
        std::fs::write(&seg.path, &bytes).unwrap();
        (
            Target::Wal {
                path: seg.path.clone(),
                newest,
            },
            kind,
            off as u64,
        )
    } else {
        let db = Database::open(dir.join("cold.redb")).expect("open cold.redb");
        let tx = db.begin_write().unwrap();
        let (first, off) = {
            let mut t = tx.open_table(BLOCKS).unwrap();
            let keys: Vec<u64> = t.iter().unwrap().map(|r| r.unwrap().0.value()).collect();
            assert!(!keys.is_empty(), "pristine store has no cold block");
            let first = keys[rng.below(keys.len() as u64) as usize];
            let mut v = t.get(first).unwrap().unwrap().value().to_vec();
            let off = rng.below(v.len() as u64) as usize;
            match kind {
                Damage::Flip => v[off] ^= 1 << rng.below(8),
                Damage::Zero => {
                    let n = rng.range(1, 64) as usize;
                    let end = (off + n).min(v.len());
                    v[off..end].iter_mut().for_each(|b| *b = 0);
                }
                Damage::Truncate => v.truncate(off),
            }
            t.insert(first, v.as_slice()).unwrap();
            (first, off as u64)
        };
        tx.commit().unwrap();
        (Target::Block { first }, kind, off)
    }
}

/// Reads the whole log; every returned entry must be the one written, contiguous. Returns the
/// number of entries, or the corruption error a read reported.
async fn read_all_checked(e: &TieredEngine, m: &Model, what: &str) -> Result<usize, Error> {
    let log = e.log_store();
    let last = log.last_index();
    let mut out = 0;
    let mut prev: Option<u64> = None;
    // In chunks, so a damaged block fails only its own range.
    let mut from = 0;
    while from <= last {
        let to = (from + 199).min(last);
        let got = match log.get_entries(from..=to) {
            Ok(g) => g,
            Err(err) => {
                assert!(
                    err.is_corruption(),
                    "{what}: read {from}..={to} failed with a non-corruption error: {err}"
                );
                return Err(err);
            }
        };
        for en in &got {
            let want_term = m.entries.get(&en.index).copied();
            assert_eq!(
                Some(en.term),
                want_term,
                "{what}: entry {} returned with term {} never written there",
                en.index,
                en.term
            );
            assert_eq!(
                en.payload,
                crate::support::payload(en.index, en.term, SEED),
                "{what}: entry {} returned with a corrupted payload",
                en.index
            );
            if let Some(p) = prev {
                assert_eq!(en.index, p + 1, "{what}: hole in the returned log");
            }
            prev = Some(en.index);
        }
        out += got.len();
        from = to + 1;
    }
    Ok(out)
}

fn mode_config(mode: RecoveryMode) -> Config {
    Config {
        recovery_mode: mode,
        ..config::tiny()
    }
}

#[derive(Default, Debug)]
struct Tally {
    trials: u64,
    wal: u64,
    blocks: u64,
    verify_corruption: u64,
    verify_torn_tail: u64,
    harmless: u64,
    absolute_refused: u64,
    torn_tail_refused: u64,
    any_opened_prefix: u64,
    reads_refused: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_is_detected_with_file_and_offset_and_never_read_as_valid() {
    let _fp = crate::failpoints_off();
    let trials = env_u64("TIERLOG_CORRUPTION_TRIALS").unwrap_or(48);
    let seed = env_u64("TIERLOG_CORRUPTION_SEED").unwrap_or(SEED);
    let root = tempfile::tempdir().unwrap();
    let pristine = root.path().join("pristine");
    let m = build_pristine(&pristine, config::tiny(), false).await;
    let total = m.entries.len();
    {
        let report = tierlog::offline::verify(&pristine).expect("pristine store verifies");
        assert_eq!(report.entries as usize, total);
        assert!(report.torn_tails.is_empty());
        assert!(report.cold_blocks > 0 && report.wal_records > 0, "{report:?}");
    }
    let mut rng = Rng::new(seed);
    let mut t = Tally::default();
    for trial in 0..trials {
        let dir = root.path().join(format!("t{trial}"));
        copy_dir(&pristine, &dir);
        let (target, kind, off) = damage(&dir, &mut rng);
        let what = format!("trial {trial} (seed {seed}): {kind:?} at {off} of {target:?}");
        t.trials += 1;
        let wal_damage = matches!(target, Target::Wal { .. });
        if wal_damage {
            t.wal += 1;
        } else {
            t.blocks += 1;
        }

        // 1. verify names the file and an offset inside it, or the damage is harmless.
        let verified = tierlog::offline::verify(&dir);
        let flagged = match &verified {
            Err(Error::Corruption {
                path,
                offset,
                offset_kind,
                ..
            }) => {
                match &target {
                    Target::Wal { path: p, .. } => {
                        assert_eq!(*offset_kind, OffsetKind::ByteOffset, "{what}");
                        assert_eq!(path, p, "{what}: verify blamed another file");
                        let len = std::fs::metadata(p).unwrap().len();
                        assert!(*offset <= len, "{what}: offset {offset} past the file ({len})");
                    }
                    Target::Block { first } => {
                        assert_eq!(*offset_kind, OffsetKind::LogIndex, "{what}");
                        assert!(path.ends_with("cold.redb"), "{what}: verify blamed {path:?}");
                        assert_eq!(offset, first, "{what}: verify named another block");
                    }
                }
                t.verify_corruption += 1;
                true
            }
            Err(other) => panic!("{what}: verify failed without naming corruption: {other}"),
            Ok(r) if !r.torn_tails.is_empty() => {
                assert!(
                    matches!(target, Target::Wal { newest: true, .. }),
                    "{what}: torn tail reported for damage elsewhere: {r:?}"
                );
                t.verify_torn_tail += 1;
                true
            }
            Ok(_) => false,
        };

        // 2. AbsoluteConsistency: any write-ahead damage that verify saw refuses to open.
        match TieredEngine::open(&dir, mode_config(RecoveryMode::AbsoluteConsistency)).await {
            Ok(e) => {
                let r = read_all_checked(&e, &m, &format!("{what} [absolute]")).await;
                if !flagged {
                    // Nothing flagged: the log must be whole.
                    assert_eq!(
                        r.as_ref().ok().copied(),
                        Some(total),
                        "{what}: verify saw nothing but the log is not whole: {r:?}"
                    );
                    t.harmless += 1;
                } else {
                    assert!(
                        !wal_damage,
                        "{what}: AbsoluteConsistency opened over write-ahead damage"
                    );
                    assert!(r.is_err(), "{what}: damaged block read back without error");
                    t.reads_refused += 1;
                }
                drop(e);
            }
            Err(err) => {
                assert!(err.is_corruption(), "{what}: absolute open failed oddly: {err}");
                assert!(flagged, "{what}: open refused what verify passed: {err}");
                t.absolute_refused += 1;
            }
        }

        // 3. TolerateTornTail: refuses damage that is not a tail of the newest segment.
        match TieredEngine::open(&dir, mode_config(RecoveryMode::TolerateTornTail)).await {
            Ok(e) => {
                if let Ok(n) = read_all_checked(&e, &m, &format!("{what} [torn-tail]")).await
                    && n < total
                {
                    assert!(
                        matches!(target, Target::Wal { newest: true, .. }),
                        "{what}: entries lost without an error ({n} of {total})"
                    );
                }
            }
            Err(err) => {
                assert!(err.is_corruption(), "{what}: torn-tail open failed oddly: {err}");
                t.torn_tail_refused += 1;
            }
        }

        // 4. TolerateAnyCorruption: opens, keeps a correct prefix (cold damage: reads refuse).
        let e = TieredEngine::open(&dir, mode_config(RecoveryMode::TolerateAnyCorruption))
            .await
            .unwrap_or_else(|err| panic!("{what}: tolerate-any open failed: {err}"));
        if let Ok(n) = read_all_checked(&e, &m, &format!("{what} [any]")).await {
            let first = m.first_index().unwrap_or(0);
            let last = e.log_store().last_index();
            assert_eq!(
                n as u64,
                last.saturating_sub(first) + 1,
                "{what}: tolerate-any kept a log with holes"
            );
            if n < total {
                t.any_opened_prefix += 1;
            }
        }
        drop(e);
        std::fs::remove_dir_all(&dir).ok();
    }
    eprintln!("corruption: {t:?}");
    assert_eq!(t.trials, trials);
    assert!(
        t.verify_corruption + t.verify_torn_tail > 0,
        "no damage was ever detected: {t:?}"
    );
}

/// The write-ahead segment files of `dir`, oldest first (spares left out).
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".wal") && !name.starts_with("spare-") && !name.starts_with("new-")
        })
        .collect();
    segs.sort();
    segs
}

/// Ways a file of the write-ahead log can go missing, blank or short. Every entry of the pristine
/// store was flushed, so each of these loses acknowledged entries and must be refused, not opened
/// as a shorter log.
#[derive(Debug, Clone, Copy)]
enum Shortening {
    /// The first 4 KiB of the newest segment zeroed: it looks like an unused spare.
    BlankNewestHeader,
    NewestDeleted,
    NewestEmptied,
    /// Cut inside its 32-byte header.
    NewestCutInHeader,
    /// A page of flushed records in the newest segment zeroed, records after it that were written
    /// once it was durable (their watermark says so).
    ZeroedPageInNewest,
    MiddleDeleted,
    /// The oldest live segment holds records the cold checkpoint does not cover.
    OldestDeleted,
    AllSegmentsDeleted,
    WalDirDeleted,
}

fn shorten(dir: &Path, how: Shortening) {
    let segs = segment_files(dir);
    assert!(segs.len() >= 3, "the store needs several segments: {segs:?}");
    let newest = segs.last().unwrap();
    match how {
        Shortening::BlankNewestHeader => {
            let mut b = std::fs::read(newest).unwrap();
            b[..4096].iter_mut().for_each(|x| *x = 0);
            std::fs::write(newest, b).unwrap();
        }
        Shortening::NewestDeleted => std::fs::remove_file(newest).unwrap(),
        Shortening::NewestEmptied => std::fs::write(newest, b"").unwrap(),
        Shortening::NewestCutInHeader => {
            let b = std::fs::read(newest).unwrap();
            std::fs::write(newest, &b[..20]).unwrap();
        }
        Shortening::ZeroedPageInNewest => {
            let mut b = std::fs::read(newest).unwrap();
            b[8192..12288].iter_mut().for_each(|x| *x = 0);
            std::fs::write(newest, b).unwrap();
        }
        Shortening::MiddleDeleted => std::fs::remove_file(&segs[segs.len() / 2]).unwrap(),
        Shortening::OldestDeleted => std::fs::remove_file(&segs[0]).unwrap(),
        Shortening::AllSegmentsDeleted => segs.iter().for_each(|s| std::fs::remove_file(s).unwrap()),
        Shortening::WalDirDeleted => std::fs::remove_dir_all(dir.join("wal")).unwrap(),
    }
}

/// Damage that makes the log end earlier than the surviving files say it must is corruption in
/// both default modes (with the file named); only `TolerateAnyCorruption` opens, and then with a
/// correct prefix of the log.
#[tokio::test]
async fn damage_that_would_shorten_the_log_is_refused_not_opened_as_a_shorter_log() {
    let _fp = crate::failpoints_off();
    let root = tempfile::tempdir().unwrap();
    let pristine = root.path().join("pristine");
    // No background rounds: the checkpoint is the one `compact_now` takes at index 2000, so the
    // newest segments hold flushed entries that exist nowhere else. A zeroed page at the end of the
    // newest segment, with nothing after it, is what a power cut leaves of unflushed writes; no
    // file says otherwise, so that case is not in this list.
    let m = build_pristine(&pristine, config::quiet(), true).await;
    let total = m.entries.len();
    use Shortening::*;
    for how in [
        BlankNewestHeader,
        NewestDeleted,
        NewestEmptied,
        NewestCutInHeader,
        ZeroedPageInNewest,
        MiddleDeleted,
        OldestDeleted,
        AllSegmentsDeleted,
        WalDirDeleted,
    ] {
        let dir = root.path().join(format!("{how:?}"));
        copy_dir(&pristine, &dir);
        shorten(&dir, how);
        let what = format!("{how:?}");
        match tierlog::offline::verify(&dir) {
            Err(err) => assert!(err.is_corruption(), "{what}: verify failed oddly: {err}"),
            Ok(r) => panic!("{what}: verify passed a store that lost flushed entries: {r:?}"),
        }
        for mode in [RecoveryMode::TolerateTornTail, RecoveryMode::AbsoluteConsistency] {
            match TieredEngine::open(&dir, mode_config(mode)).await {
                Err(err) => assert!(err.is_corruption(), "{what} [{mode:?}]: open failed oddly: {err}"),
                Ok(e) => panic!(
                    "{what} [{mode:?}]: opened with {} of {total} flushed entries",
                    read_all_checked(&e, &m, &what).await.unwrap_or(0)
                ),
            }
        }
        let e = TieredEngine::open(&dir, mode_config(RecoveryMode::TolerateAnyCorruption))
            .await
            .unwrap_or_else(|err| panic!("{what}: tolerate-any open failed: {err}"));
        let n = read_all_checked(&e, &m, &format!("{what} [any]")).await.unwrap();
        let first = m.first_index().unwrap_or(0);
        assert_eq!(
            n as u64,
            e.log_store().last_index().saturating_sub(first) + 1,
            "{what}: tolerate-any kept a log with holes"
        );
        // The salvaged store takes writes and opens again in the default mode.
        let log = e.log_store();
        let next = log.last_index() + 1;
        log.persist_entries(batch(next, 3, 1 << 30, SEED)).await.unwrap();
        log.flush().unwrap();
        drop(log);
        e.close().await.unwrap();
        let e = TieredEngine::open(&dir, config::tiny())
            .await
            .unwrap_or_else(|err| panic!("{what}: the salvaged store does not reopen: {err}"));
        assert_eq!(e.log_store().last_index(), next + 2, "{what}: salvaged writes");
    }
}

/// Damage anywhere in `cold.redb` (not only inside block values, which carry their own checksums):
/// redb's own pages. Opening, reading everything back and compacting must end in a value or an
/// error, never in a panic (which would take down a caller's thread or stop the compactor for
/// good: later rounds would all fail with "the compactor has stopped").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_redb_pages_give_errors_not_panics() {
    let trials = env_u64("TIERLOG_REDB_DAMAGE_TRIALS").unwrap_or(40);
    let root = tempfile::tempdir().unwrap();
    let pristine = root.path().join("pristine");
    let m = build_pristine(&pristine, config::tiny(), false).await;
    let len = std::fs::metadata(pristine.join("cold.redb")).unwrap().len();
    let mut rng = Rng::new(SEED ^ 0x4EDB);
    let mut outcomes = std::collections::BTreeMap::<&str, u64>::new();
    for trial in 0..trials {
        let dir = root.path().join(format!("redb{trial}"));
        copy_dir(&pristine, &dir);
        let path = dir.join("cold.redb");
        let mut bytes = std::fs::read(&path).unwrap();
        // Past redb's header page: a damaged header is refused at open.
        let at = rng.range(4096, len - 64) as usize;
        for b in &mut bytes[at..at + 32] {
            *b = rng.next_u64() as u8;
        }
        std::fs::write(&path, &bytes).unwrap();
        let what = format!("trial {trial}: 32 random bytes at {at} of cold.redb");
        let opened = TieredEngine::open(&dir, mode_config(RecoveryMode::TolerateAnyCorruption)).await;
        let e = match opened {
            Ok(e) => e,
            Err(_) => {
                *outcomes.entry("open refused").or_default() += 1;
                continue;
            }
        };
        let log = e.log_store();
        let last = log.last_index();
        for from in (0..=last).step_by(500) {
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                log.get_entries(from..=from + 499)
            }));
            let got = read.unwrap_or_else(|_| panic!("{what}: reading {from}.. panicked"));
            if let Ok(got) = got {
                for en in got {
                    assert_eq!(Some(&en.term), m.entries.get(&en.index), "{what}: wrong entry");
                }
            }
        }
        let next = log.last_index() + 1;
        if log.persist_entries(batch(next, 50, 1 << 31, SEED)).await.is_ok() {
            let first = e.compact_now().await;
            let second = e.compact_now().await;
            if let (Err(a), Err(b)) = (&first, &second) {
                assert!(
                    !b.to_string().contains("stopped"),
                    "{what}: the compactor died after {a}: {b}"
                );
            }
        }
        *outcomes.entry("opened").or_default() += 1;
        drop(log);
        drop(e);
    }
    eprintln!("redb damage: {outcomes:?}");
}
