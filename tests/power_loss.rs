//! Power-loss simulation (`--features failpoints`): only what was fdatasync'ed is sure to survive.
//!
//! The `wal::synced` failpoint fires after every successful write-ahead fdatasync (group commit,
//! segment rotation, new segment header, seal at open); its callback here copies every segment file.
//! The latest copy is therefore at or after each file's last sync. A random workload runs (appends,
//! overwrites, flushes, truncates, `replace_range`s, purges, resets, hard-state saves, forced
//! compactions; no background compaction, so the redb file is never mid-commit), then the directory
//! is copied as a power cut would leave it: every segment file reverts to its last synced copy, and
//! of the bytes written after it
//! - mode `Synced`: nothing survives;
//! - mode `InOrder`: a random prefix survives (writeback in file order);
//! - mode `AnyPages`: a random subset of 4 KiB pages survives (writeback in any order — what disks
//!   and the page cache really allow).
//!
//! Checks: the copy opens in the default mode; the log equals the model after some operation at
//! or after the last acknowledged `flush()` (everything flushed is there, nothing half-applied);
//! the hard state is the last saved. Then the reopened copy takes more writes (a purge, an append,
//! a flush) and is reopened once more, which must keep exactly those.
//!
//! Default 16 power cuts per mode; more: `TIERLOG_POWER_TRIALS=1000 cargo test --release --features
//! failpoints --test power_loss -- --nocapture`.

#[path = "relcommon/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{Model, Rng, batch, copy_dir, diff_entries, tiny_config};
use fail::FailScenario;
use tierlog::{Config, HardState, LogId, LogStore, MetaStore, StorageEngine, TieredEngine, VotedFor};

const SEED: u64 = 0x90E8;

type Snapshot = Arc<Mutex<HashMap<String, Vec<u8>>>>;

fn quiet_config() -> Config {
    Config {
        memory_budget_bytes: 64 << 20,
        compaction_trigger_bytes: 1 << 40,
        hot_tail_entries: 1 << 20,
        ..tiny_config()
    }
}

fn read_wal(dir: &Path) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for ent in rd.flatten() {
            if let Ok(bytes) = std::fs::read(ent.path()) {
                out.insert(ent.file_name().to_string_lossy().into_owned(), bytes);
            }
        }
    }
    out
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Synced,
    InOrder,
    AnyPages,
}

/// Rewrites the copy's segment files as a power cut after the last snapshot would leave them.
fn cut_power(wal: &Path, synced: &HashMap<String, Vec<u8>>, mode: Mode, rng: &mut Rng) -> u64 {
    let mut lost = 0;
    for (name, now) in read_wal(wal) {
        // Created after the last sync: nothing says it is gone, keep it whole (also a legal outcome).
        let Some(old) = synced.get(&name) else { continue };
        let len = now.len().max(old.len());
        let at = |v: &Vec<u8>, i: usize| v.get(i).copied().unwrap_or(0);
        let mut out: Vec<u8> = (0..len).map(|i| at(old, i)).collect();
        match mode {
            Mode::Synced => {}
            Mode::InOrder => {
                let keep = rng.below(len as u64 + 1) as usize;
                out[..keep].copy_from_slice(&(0..keep).map(|i| at(&now, i)).collect::<Vec<_>>());
            }
            Mode::AnyPages => {
                for page in (0..len).step_by(4096) {
                    if rng.chance(1, 2) {
                        for (i, b) in out.iter_mut().enumerate().skip(page).take(4096) {
                            *b = at(&now, i);
                        }
                    }
                }
            }
        }
        lost += out.iter().zip(now.iter()).filter(|(a, b)| a != b).count() as u64;
        std::fs::write(wal.join(&name), &out).unwrap();
    }
    lost
}

fn matches(e: &TieredEngine, m: &Model) -> Result<(), String> {
    let log = e.log_store();
    if log.last_index() != m.last_index() {
        return Err(format!("last_index {} vs {}", log.last_index(), m.last_index()));
    }
    let b = log.load_purge_boundary().map_err(|e| e.to_string())?;
    if b != m.boundary {
        return Err(format!("boundary {b:?} vs {:?}", m.boundary));
    }
    let got = log
        .get_entries(0..=m.last_index() + 10)
        .map_err(|e| e.to_string())?;
    match diff_entries(&got, &m.slice(0, m.last_index() + 10, SEED)) {
        Some(d) => Err(d),
        None => Ok(()),
    }
}

/// Keeps, after every successful write-ahead fdatasync, a copy of `dir`'s segment files: what a
/// power cut at that moment would leave at least.
fn record_synced_wal(dir: &Path) -> Snapshot {
    let snap: Snapshot = Arc::new(Mutex::new(HashMap::new()));
    let sink = snap.clone();
    let wal = dir.join("wal");
    fail::cfg_callback("wal::synced", move || {
        let files = read_wal(&wal);
        if let Ok(mut s) = sink.lock() {
            *s = files;
        }
    })
    .unwrap();
    snap
}

async fn trial(root: &Path, trial: u64, seed: u64, mode: Mode, after_writes: bool) -> (usize, usize, u64) {
    let dir = root.join(format!("live{trial}"));
    let snap = record_synced_wal(&dir);
    let mut rng = Rng::new(seed ^ trial);
    let e = TieredEngine::open(&dir, quiet_config()).await.unwrap();
    let log = e.log_store();
    let meta = e.meta_store();
    let mut m = Model::default();
    let mut states = vec![m.clone()];
    let mut durable = 0usize;
    let mut hard: Option<HardState> = None;
    let ops = rng.range(20, 160);
    let mut term = 0;
    for _ in 0..ops {
        term += 1;
        let last = m.last_index();
        let b = m.boundary_index();
        let has = !m.entries.is_empty();
        match rng.below(100) {
            0..=44 => {
                let first = if has { last + 1 } else { b + 1 };
                let len = rng.range(1, 40);
                log.persist_entries(batch(first, len, term, SEED)).await.unwrap();
                m.persist(first, len, term);
            }
            45..=54 if has => {
                let first = rng.range(
                    m.first_index().unwrap_or(b + 1).max(last.saturating_sub(60)),
                    last,
                );
                let len = rng.range(1, 10);
                log.persist_entries(batch(first, len, term, SEED)).await.unwrap();
                m.persist(first, len, term);
            }
            55..=69 => {
                log.flush().unwrap();
                durable = states.len() - 1;
            }
            70..=74 if has => {
                let from = rng.range((b + 1).max(last.saturating_sub(30)), last);
                log.truncate(from).await.unwrap();
                m.truncate(from);
            }
            75..=79 if has => {
                let from = rng.range((b + 1).max(last.saturating_sub(30)), last + 1);
                let len = rng.range(0, 12);
                log.replace_range(from, batch(from, len, term, SEED))
                    .await
                    .unwrap();
                m.truncate(from);
                m.persist(from, len, term);
            }
            80..=84 if has => {
                let cut = rng.range(b + 1, last);
                let t = m
                    .entries
                    .get(&cut)
                    .copied()
                    .unwrap_or(term)
                    .max(m.boundary.map_or(0, |x| x.term));
                log.purge(LogId::new(t, cut)).await.unwrap();
                m.purge(LogId::new(t, cut));
            }
            85..=91 => e.compact_now().await.unwrap(),
            92..=96 => {
                let h = HardState {
                    current_term: term,
                    voted_for: Some(VotedFor {
                        voted_for_id: 1,
                        voted_for_term: term,
                        committed: false,
                    }),
                };
                meta.save_hard_state(&h).unwrap();
                hard = Some(h);
            }
            97 => {
                log.reset().await.unwrap();
                m.reset();
            }
            _ => {}
        }
        states.push(m.clone());
    }
    // The power cut: copy the directory as it is, then revert what was not synced.
    let crashed = root.join(format!("cut{trial}"));
    let synced = snap.lock().map(|s| s.clone()).unwrap_or_default();
    fail::remove("wal::synced");
    copy_dir(&dir, &crashed);
    drop(log);
    drop(meta);
    drop(e);
    let lost = cut_power(&crashed.join("wal"), &synced, mode, &mut rng);
    if std::env::var_os("TIERLOG_POWER_KEEP").is_some() {
        copy_dir(&crashed, &root.join(format!("cut{trial}.pristine")));
    }

    let what = format!("trial {trial} (seed {seed}, {mode:?}, {ops} ops, flushed through op {durable})");
    let e = TieredEngine::open(&crashed, quiet_config())
        .await
        .unwrap_or_else(|err| panic!("{what}: open after power loss failed: {err}"));
    let k = (durable..states.len())
        .rev()
        .find(|&k| matches(&e, &states[k]).is_ok())
        .unwrap_or_else(|| {
            panic!(
                "{what}: the log matches no state at or after the last flush: {}",
                matches(&e, &states[durable]).unwrap_err()
            )
        });
    assert_eq!(
        e.meta_store().load_hard_state().unwrap(),
        hard,
        "{what}: hard state"
    );

    if !after_writes {
        drop(e);
        std::fs::remove_dir_all(&dir).ok();
        std::fs::remove_dir_all(&crashed).ok();
        return (states.len() - 1 - k, states.len() - 1 - durable, lost);
    }
    // Life goes on after the power cut: these writes must survive a clean reopen exactly.
    let mut m = states[k].clone();
    let log = e.log_store();
    if let Some(first) = m.first_index() {
        let cut = first + (m.last_index() - first) / 2;
        let t = m.max_term();
        log.purge(LogId::new(t, cut)).await.unwrap();
        m.purge(LogId::new(t, cut));
    }
    let first = if m.entries.is_empty() {
        m.boundary_index() + 1
    } else {
        m.last_index() + 1
    };
    log.persist_entries(batch(first, 7, 1 << 40, SEED)).await.unwrap();
    m.persist(first, 7, 1 << 40);
    log.flush().unwrap();
    drop(log);
    drop(e);
    let e = TieredEngine::open(&crashed, quiet_config())
        .await
        .unwrap_or_else(|err| panic!("{what}: second reopen failed: {err}"));
    if let Err(d) = matches(&e, &m) {
        panic!("{what}: writes made after the power cut did not survive a clean reopen: {d}");
    }
    drop(e);
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&crashed).ok();
    (states.len() - 1 - k, states.len() - 1 - durable, lost)
}

async fn power_cuts(mode: Mode, after_writes: bool) {
    let scenario = FailScenario::setup();
    let trials = std::env::var("TIERLOG_POWER_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16u64);
    let seed = std::env::var("TIERLOG_POWER_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SEED);
    let mut root = tempfile::tempdir().unwrap();
    // TIERLOG_POWER_KEEP=1 keeps the directories (live and cut copies) for a post-mortem.
    if std::env::var_os("TIERLOG_POWER_KEEP").is_some() {
        root.disable_cleanup(true);
        eprintln!("power_loss {mode:?}: directories under {}", root.path().display());
    }
    let mut lost_ops = 0;
    let mut unflushed_ops = 0;
    let mut lost_bytes = 0;
    for t in 0..trials {
        let (lost, unflushed, bytes) = trial(root.path(), t, seed, mode, after_writes).await;
        lost_ops += lost;
        unflushed_ops += unflushed;
        lost_bytes += bytes;
    }
    eprintln!(
        "power_loss {mode:?}: {trials} power cuts, {lost_ops} of {unflushed_ops} unflushed ops lost, \
         {lost_bytes} unsynced bytes reverted, no flushed op lost"
    );
    scenario.teardown();
}

#[tokio::test]
async fn power_cut_losing_everything_unsynced() {
    power_cuts(Mode::Synced, true).await;
}

#[tokio::test]
async fn power_cut_with_in_order_writeback_of_a_prefix() {
    power_cuts(Mode::InOrder, true).await;
}

/// Fails on the engine at the time of writing: with a random subset of the unsynced pages written
/// back, a valid later record can follow a missing one in the newest segment, and the default mode
/// (`TolerateTornTail`) then refuses to open ("record checksum mismatch" in the middle of the
/// segment), although nothing that was flushed is damaged. (Writes after the cut are left to the
/// two tests above, so this one shows only the open.)
#[tokio::test]
async fn power_cut_with_out_of_order_page_writeback() {
    power_cuts(Mode::AnyPages, false).await;
}

/// A forced compaction checkpoints records that were written but not yet fdatasync'ed; a power cut
/// then takes those records out of the write-ahead log while the checkpoint (durable in redb) keeps
/// their effect. The write-ahead sequence must still continue above the checkpoint's
/// `applied_seq`: if it restarts below, the next records look "already applied" to the following
/// recovery, which then replays them restricted (a purge is skipped, a reset only truncates).
#[tokio::test]
async fn records_written_after_a_power_cut_are_not_mistaken_for_checkpointed_ones() {
    let scenario = FailScenario::setup();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("live");
    let snap = record_synced_wal(&dir);
    let e = TieredEngine::open(&dir, quiet_config()).await.unwrap();
    let log = e.log_store();
    let mut m = Model::default();
    log.persist_entries(batch(1, 50, 1, SEED)).await.unwrap();
    m.persist(1, 50, 1);
    log.flush().unwrap();
    // ~100 KiB more: at least one rotation (which syncs the old segment and the new header), and
    // unsynced records at the end of the newest segment; then a checkpoint that covers them all.
    for k in 0..40 {
        log.persist_entries(batch(51 + k * 10, 10, 2 + k, SEED))
            .await
            .unwrap();
        m.persist(51 + k * 10, 10, 2 + k);
    }
    e.compact_now().await.unwrap();
    let crashed = root.path().join("cut");
    let synced = snap.lock().map(|s| s.clone()).unwrap_or_default();
    fail::remove("wal::synced");
    copy_dir(&dir, &crashed);
    drop(log);
    drop(e);
    cut_power(&crashed.join("wal"), &synced, Mode::Synced, &mut Rng::new(1));

    let e = TieredEngine::open(&crashed, quiet_config()).await.unwrap();
    // Either the compacted (unflushed) entries survived in the cold tier, or only the flushed ones.
    if matches(&e, &m).is_err() {
        let mut flushed = Model::default();
        flushed.persist(1, 50, 1);
        matches(&e, &flushed).unwrap_or_else(|d| panic!("after the power cut: {d}"));
        m = flushed;
    }
    let log = e.log_store();
    let cut = m.last_index() - 5;
    let id = LogId::new(m.entries[&cut], cut);
    log.purge(id).await.unwrap();
    m.purge(id);
    let first = m.last_index() + 1;
    log.persist_entries(batch(first, 7, 100, SEED)).await.unwrap();
    m.persist(first, 7, 100);
    log.flush().unwrap();
    matches(&e, &m).unwrap_or_else(|d| panic!("live after the power cut: {d}"));
    drop(log);
    drop(e);
    let e = TieredEngine::open(&crashed, quiet_config()).await.unwrap();
    if let Err(d) = matches(&e, &m) {
        panic!("purge and append made after the power cut were lost on reopen: {d}");
    }
    scenario.teardown();
}
