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
//! failpoints --test reliability power_loss:: -- --nocapture`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::chain::{Chains, Tracked};
use crate::support::{Model, Rng, batch, config, copy_dir, env_u64, log_matches};
use fail::FailScenario;
use tierlog::{HardState, LogId, LogStore, MetaStore, StorageEngine, TierLogStore, TieredEngine, VotedFor};

const SEED: u64 = 0x90E8;

pub(crate) type Snapshot = Arc<Mutex<HashMap<String, Vec<u8>>>>;

pub(crate) fn read_wal(dir: &Path) -> HashMap<String, Vec<u8>> {
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
pub(crate) enum Mode {
    Synced,
    InOrder,
    AnyPages,
}

/// Rewrites the copy's segment files as a power cut after the last snapshot would leave them.
pub(crate) fn cut_power(wal: &Path, synced: &HashMap<String, Vec<u8>>, mode: Mode, rng: &mut Rng) -> u64 {
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
    log_matches(&e.log_store(), m, SEED)
}

/// Keeps, after every successful write-ahead fdatasync, a copy of `dir`'s segment files: what a
/// power cut at that moment would leave at least.
pub(crate) fn record_synced_wal(dir: &Path) -> Snapshot {
    record_synced_wal_from(dir, HashMap::new())
}

/// Opens a quiet engine on `dir`, recording what each of its fdatasyncs makes durable.
pub(crate) async fn open_recorded(dir: &Path) -> (Snapshot, TieredEngine) {
    let snap = record_synced_wal(dir);
    (snap, TieredEngine::open(dir, config::quiet()).await.unwrap())
}

/// Like [`record_synced_wal`], for a directory whose files are already on disk as `on_disk`.
pub(crate) fn record_synced_wal_from(dir: &Path, on_disk: HashMap<String, Vec<u8>>) -> Snapshot {
    let snap: Snapshot = Arc::new(Mutex::new(on_disk));
    let sink = snap.clone();
    let wal = dir.join("wal");
    // The files are read with the lock held: two fdatasyncs can end at once (the zero-filling
    // thread's and a group commit), and a callback that read the files earlier must not store its
    // copy after one that read them later, or the recorded disk would go back behind a sync that a
    // checkpoint already relied on (a power cut would then lose records no real one can).
    fail::cfg_callback("wal::synced", move || {
        if let Ok(mut s) = sink.lock() {
            *s = read_wal(&wal);
        }
    })
    .unwrap();
    snap
}

/// What a random operation did, beyond changing the log.
enum Op {
    Flushed,
    SavedHardState(HardState),
    Other,
}

/// One random operation (appends, overwrites, flushes, truncates, `replace_range`s, purges, resets,
/// hard-state saves, forced compactions), applied to `m` only when the engine acknowledged it.
async fn random_op(e: &TieredEngine, rng: &mut Rng, m: &mut Model, term: u64) -> tierlog::Result<Op> {
    let log = e.log_store();
    let last = m.last_index();
    let b = m.boundary_index();
    let has = !m.entries.is_empty();
    match rng.below(100) {
        0..=44 => {
            let first = if has { last + 1 } else { b + 1 };
            let len = rng.range(1, 40);
            log.persist_entries(batch(first, len, term, SEED)).await?;
            m.persist(first, len, term);
        }
        45..=54 if has => {
            let first = rng.range(
                m.first_index().unwrap_or(b + 1).max(last.saturating_sub(60)),
                last,
            );
            let len = rng.range(1, 10);
            log.persist_entries(batch(first, len, term, SEED)).await?;
            m.persist(first, len, term);
        }
        55..=69 => {
            log.flush()?;
            return Ok(Op::Flushed);
        }
        70..=74 if has => {
            let from = rng.range((b + 1).max(last.saturating_sub(30)), last);
            log.truncate(from).await?;
            m.truncate(from);
        }
        75..=79 if has => {
            let from = rng.range((b + 1).max(last.saturating_sub(30)), last + 1);
            let len = rng.range(0, 12);
            log.replace_range(from, batch(from, len, term, SEED)).await?;
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
            log.purge(LogId::new(t, cut)).await?;
            m.purge(LogId::new(t, cut));
        }
        85..=91 => e.compact_now().await?,
        92..=96 => {
            let h = HardState {
                current_term: term,
                voted_for: Some(VotedFor {
                    voted_for_id: 1,
                    voted_for_term: term,
                    committed: false,
                }),
            };
            e.meta_store().save_hard_state(&h)?;
            return Ok(Op::SavedHardState(h));
        }
        97 => {
            log.reset().await?;
            m.reset();
        }
        _ => {}
    }
    Ok(Op::Other)
}

/// The history of one log: the model after every acknowledged operation since the last reopen, and
/// the hard state last saved.
struct OneLog {
    states: Vec<Model>,
    /// Indexes the last state a `flush()` (or an open) made durable.
    durable: usize,
    hard: Option<HardState>,
    what: String,
}

impl OneLog {
    fn new(what: String) -> OneLog {
        OneLog {
            states: vec![Model::default()],
            durable: 0,
            hard: None,
            what,
        }
    }

    fn latest(&self) -> Model {
        self.states.last().cloned().unwrap_or_default()
    }
}

impl Tracked for OneLog {
    async fn start(_: &TieredEngine, what: String) -> OneLog {
        OneLog::new(what)
    }

    fn what(&mut self) -> &mut String {
        &mut self.what
    }

    fn span(&self) -> (usize, usize) {
        (self.durable, self.states.len() - 1)
    }

    fn matches(&self, e: &TieredEngine, k: usize) -> Result<(), String> {
        matches(e, &self.states[k])
    }

    fn keep(&mut self, e: &TieredEngine, k: usize) {
        assert_eq!(
            e.meta_store().load_hard_state().unwrap(),
            self.hard,
            "{}: hard state",
            self.what
        );
        self.states = vec![self.states[k].clone()];
        self.durable = 0;
    }

    async fn random_op(&mut self, e: &TieredEngine, rng: &mut Rng, term: u64) -> tierlog::Result<()> {
        let mut m = self.latest();
        let op = random_op(e, rng, &mut m, term).await;
        match op {
            Ok(Op::Flushed) => self.durable = self.states.len() - 1,
            Ok(Op::SavedHardState(h)) => self.hard = Some(h),
            Ok(Op::Other) | Err(_) => {}
        }
        // A failed operation changed nothing: its state is the one before it.
        self.states.push(m);
        op.map(|_| ())
    }
}

/// What one trial found: ops lost of those not flushed, ops not flushed, bytes reverted, and
/// whether the store reopened after the cut holds a compression dictionary.
type TrialResult = (usize, usize, u64, bool);

async fn trial(root: &Path, trial: u64, seed: u64, mode: Mode, after_writes: bool) -> TrialResult {
    let dir = root.join(format!("live{trial}"));
    let (snap, e) = open_recorded(&dir).await;
    let mut rng = Rng::new(seed ^ trial);
    let ops = rng.range(20, 160);
    let mut h = OneLog::new(String::new());
    for term in 1..=ops {
        h.random_op(&e, &mut rng, term).await.unwrap();
    }
    let durable = h.durable;
    let unflushed = h.states.len() - 1 - durable;
    h.what = format!("trial {trial} (seed {seed}, {mode:?}, {ops} ops, flushed through op {durable})");
    let crashed = root.join(format!("cut{trial}"));
    let lost = power_cut(e, &dir, &crashed, &snap, mode, &mut rng);
    if std::env::var_os("TIERLOG_POWER_KEEP").is_some() {
        copy_dir(&crashed, &root.join(format!("cut{trial}.pristine")));
    }
    let (e, lost_ops) = h.reopen(&crashed, false).await;
    let with_dictionary = e.stats().dictionary_bytes > 0;

    if !after_writes {
        drop(e);
        std::fs::remove_dir_all(&dir).ok();
        std::fs::remove_dir_all(&crashed).ok();
        return (lost_ops, unflushed, lost, with_dictionary);
    }
    // Life goes on after the power cut: these writes must survive a clean reopen exactly.
    let mut m = h.latest();
    let what = &h.what;
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
    persist(&log, &mut m, first, 7, 1 << 40).await;
    log.flush().unwrap();
    drop(log);
    drop(e);
    let e = TieredEngine::open(&crashed, config::quiet())
        .await
        .unwrap_or_else(|err| panic!("{what}: second reopen failed: {err}"));
    if let Err(d) = matches(&e, &m) {
        panic!("{what}: writes made after the power cut did not survive a clean reopen: {d}");
    }
    drop(e);
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&crashed).ok();
    (lost_ops, unflushed, lost, with_dictionary)
}

/// [`open_recorded`], with entries 1-50 of term 1 flushed; their model.
async fn open_flushed(dir: &Path) -> (Snapshot, TieredEngine, Model) {
    let (snap, e) = open_recorded(dir).await;
    let mut m = Model::default();
    persist(&e.log_store(), &mut m, 1, 50, 1).await;
    e.log_store().flush().unwrap();
    (snap, e, m)
}

/// Appends `len` entries of `term` from `first` to `log` and to `m`.
async fn persist(log: &TierLogStore, m: &mut Model, first: u64, len: u64, term: u64) {
    log.persist_entries(batch(first, len, term, SEED)).await.unwrap();
    m.persist(first, len, term);
}

async fn power_cuts(mode: Mode, after_writes: bool) {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    let trials = env_u64("TIERLOG_POWER_TRIALS").unwrap_or(16);
    let seed = env_u64("TIERLOG_POWER_SEED").unwrap_or(SEED);
    let mut root = tempfile::tempdir().unwrap();
    // TIERLOG_POWER_KEEP=1 keeps the directories (live and cut copies) for a post-mortem.
    if std::env::var_os("TIERLOG_POWER_KEEP").is_some() {
        root.disable_cleanup(true);
        eprintln!("power_loss {mode:?}: directories under {}", root.path().display());
    }
    let mut lost_ops = 0;
    let mut unflushed_ops = 0;
    let mut lost_bytes = 0;
    let mut with_dictionary = 0;
    for t in 0..trials {
        let (lost, unflushed, bytes, dict) = trial(root.path(), t, seed, mode, after_writes).await;
        lost_ops += lost;
        unflushed_ops += unflushed;
        lost_bytes += bytes;
        with_dictionary += u64::from(dict);
    }
    eprintln!(
        "power_loss {mode:?}: {trials} power cuts, {lost_ops} of {unflushed_ops} unflushed ops lost, \
         {lost_bytes} unsynced bytes reverted, no flushed op lost; {with_dictionary} stores held a \
         compression dictionary"
    );
    // The tiny configuration trains one after 32 KiB of cold entries: the suite must read such
    // stores, not only stores without one.
    assert!(
        trials < 8 || with_dictionary > 0,
        "no power cut hit a store with a compression dictionary in {trials} trials"
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
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("live");
    let (snap, e, mut m) = open_flushed(&dir).await;
    let log = e.log_store();
    // ~100 KiB more: at least one rotation (which syncs the old segment and the new header), and
    // unsynced records at the end of the newest segment; then a checkpoint that covers them all.
    for k in 0..40 {
        persist(&log, &mut m, 51 + k * 10, 10, 2 + k).await;
    }
    e.compact_now().await.unwrap();
    let crashed = root.path().join("cut");
    drop(log);
    power_cut(e, &dir, &crashed, &snap, Mode::Synced, &mut Rng::new(1));

    let e = TieredEngine::open(&crashed, config::quiet()).await.unwrap();
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
    persist(&log, &mut m, first, 7, 100).await;
    log.flush().unwrap();
    matches(&e, &m).unwrap_or_else(|d| panic!("live after the power cut: {d}"));
    drop(log);
    drop(e);
    let e = TieredEngine::open(&crashed, config::quiet()).await.unwrap();
    if let Err(d) = matches(&e, &m) {
        panic!("purge and append made after the power cut were lost on reopen: {d}");
    }
    scenario.teardown();
}

fn synced_now(snap: &Snapshot) -> HashMap<String, Vec<u8>> {
    snap.lock().map(|s| s.clone()).unwrap_or_default()
}

/// Copies the live directory `dir` to `to` (the files as the page cache holds them) and stops
/// recording; returns what the disk holds for sure (the synced snapshot) at the copy. A background
/// round may fdatasync and then commit its checkpoint while the copy runs, and a file copy that
/// overlaps redb commits can hold a mix of pages no crash leaves: the copy is taken again until no
/// fdatasync happened and `cold.redb` did not change during it.
pub(crate) fn copy_at_rest(dir: &Path, to: &Path, snap: &Snapshot) -> HashMap<String, Vec<u8>> {
    let redb = || std::fs::read(dir.join("cold.redb")).ok();
    loop {
        let (before, cold_before) = (synced_now(snap), redb());
        copy_dir(dir, to);
        if synced_now(snap) == before && redb() == cold_before {
            fail::remove("wal::synced");
            return before;
        }
    }
}

/// kill -9 of the engine `e` (its handles already dropped) live on `dir`: the next process finds the
/// files as the page cache holds them, copied to `to`. Returns the write-ahead files the disk holds
/// for sure there (what a power cut would fall back to).
pub(crate) fn crash(e: TieredEngine, dir: &Path, to: &Path, snap: &Snapshot) -> HashMap<String, Vec<u8>> {
    let synced = copy_at_rest(dir, to, snap);
    drop(e);
    synced
}

/// A power cut under the engine `e` (its handles already dropped) live on `dir`: `to` holds what
/// the disk keeps, in writeback model `mode`. Returns how many unsynced bytes it reverted.
pub(crate) fn power_cut(
    e: TieredEngine,
    dir: &Path,
    to: &Path,
    snap: &Snapshot,
    mode: Mode,
    rng: &mut Rng,
) -> u64 {
    let synced = crash(e, dir, to, snap);
    cut_power(&to.join("wal"), &synced, mode, rng)
}

/// Encoded size of an append record of `entries` (record header, watermark, kind, batch header).
fn record_len(entries: &[tierlog::Entry]) -> usize {
    16 + 8 + 1 + 12 + entries.iter().map(|e| 12 + e.payload.len()).sum::<usize>()
}

/// Disk full while a write needs a new segment: the full segment's seal is written and synced, the
/// new segment cannot be made. Space comes back and a smaller batch still fits the old segment.
/// That batch must be numbered after the seal and really fdatasync'ed by `flush()`: written over
/// the seal with the seal's (already synced) sequence number, `flush()` returns without an
/// fdatasync and a power cut takes the acknowledged batch away.
#[tokio::test]
async fn a_batch_flushed_after_a_failed_rotation_survives_a_power_cut() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("live");
    let (snap, e) = open_recorded(&dir).await;
    let log = e.log_store();
    let mut m = Model::default();
    let first = batch(1, 40, 1, SEED);
    let used = 32 + record_len(&first);
    log.persist_entries(first).await.unwrap();
    m.persist(1, 40, 1);
    log.flush().unwrap();
    // A batch too big for what is left of the 64 KiB segment, small enough for a fresh one.
    let mut n = 1;
    while used + record_len(&batch(41, n, 2, SEED)) < (64 << 10) + 1024 {
        n += 1;
    }
    assert!(record_len(&batch(41, n, 2, SEED)) < 60 << 10);
    fail::cfg("wal::segment_create", "return(28)").unwrap();
    assert!(log.persist_entries(batch(41, n, 2, SEED)).await.is_err());
    fail::remove("wal::segment_create");
    // The disk has room again; this batch fits the old segment.
    persist(&log, &mut m, 41, 5, 3).await;
    log.flush().unwrap();
    matches(&e, &m).unwrap();

    let crashed = root.path().join("cut");
    drop(log);
    power_cut(e, &dir, &crashed, &snap, Mode::Synced, &mut Rng::new(1));
    let e = TieredEngine::open(&crashed, config::quiet()).await.unwrap();
    matches(&e, &m).unwrap_or_else(|d| panic!("the flushed batch did not survive the power cut: {d}"));
    scenario.teardown();
}

/// The same failed rotation, failing after the new segment's file was renamed into place (its
/// directory fsync fails): the writer must not go on appending to the old segment behind an empty
/// newer one, or even a clean restart is refused ("ends without a seal but is not the newest").
#[tokio::test]
async fn a_rotation_that_fails_after_creating_its_file_leaves_a_store_that_opens() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("live");
    let e = TieredEngine::open(&dir, config::quiet()).await.unwrap();
    let log = e.log_store();
    let mut m = Model::default();
    let first = batch(1, 40, 1, SEED);
    let used = 32 + record_len(&first);
    log.persist_entries(first).await.unwrap();
    m.persist(1, 40, 1);
    let mut n = 1;
    while used + record_len(&batch(41, n, 2, SEED)) < (64 << 10) + 1024 {
        n += 1;
    }
    fail::cfg("wal::sync_dir", "return(5)").unwrap();
    assert!(log.persist_entries(batch(41, n, 2, SEED)).await.is_err());
    fail::remove("wal::sync_dir");
    persist(&log, &mut m, 41, 2, 3).await;
    log.flush().unwrap();
    drop(log);
    e.close().await.unwrap();
    let e = TieredEngine::open(&dir, config::quiet())
        .await
        .unwrap_or_else(|err| panic!("clean restart after a failed rotation: {err}"));
    matches(&e, &m).unwrap();
    scenario.teardown();
}

/// A process crash leaves unflushed records in the page cache only. The next process must not count
/// them as durable: its first compaction round has to fdatasync them before its checkpoint covers
/// them. Otherwise a power cut takes them from the log while the checkpoint (durable in redb) keeps
/// their sequence numbers, the next open continues the numbering inside the surviving segment
/// behind a gap, and the open after that cuts everything from the gap on as a torn tail, flushed
/// writes included. Chain: kill -9 → reopen → compaction → power cut → writes + flush → reopen.
#[tokio::test]
async fn a_tail_recovered_after_a_process_crash_is_synced_before_a_checkpoint_covers_it() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("live");
    let (snap, e, mut m) = open_flushed(&live).await;
    let log = e.log_store();
    persist(&log, &mut m, 51, 50, 2).await;
    // kill -9: the next process finds the files as the page cache holds them, and the disk holds
    // only what was synced.
    let crashed = root.path().join("crashed");
    drop(log);
    let on_disk = crash(e, &live, &crashed, &snap);

    let snap = record_synced_wal_from(&crashed, on_disk);
    let e = TieredEngine::open(&crashed, config::quiet()).await.unwrap();
    matches(&e, &m).unwrap();
    e.compact_now().await.unwrap();
    let cut = root.path().join("cut");
    power_cut(e, &crashed, &cut, &snap, Mode::Synced, &mut Rng::new(2));

    let e = TieredEngine::open(&cut, config::quiet()).await.unwrap();
    matches(&e, &m).unwrap_or_else(|d| panic!("after the power cut: {d}"));
    let log = e.log_store();
    persist(&log, &mut m, 101, 7, 3).await;
    log.flush().unwrap();
    drop(log);
    drop(e);
    let e = TieredEngine::open(&cut, config::quiet()).await.unwrap();
    matches(&e, &m).unwrap_or_else(|d| panic!("writes flushed after the power cut were lost: {d}"));
    scenario.teardown();
}

/// Reverts, in each file that existed at the last sync, what follows the first record written since:
/// the record reached the disk, the bytes after it (its zeroed end-of-log trailer) did not.
fn lose_the_trailer_of_the_first_unsynced_record(wal: &Path, synced: &HashMap<String, Vec<u8>>) {
    for (name, now) in read_wal(wal) {
        let Some(old) = synced.get(&name) else { continue };
        let Some(d) = (0..now.len().min(old.len())).find(|&i| now[i] != old[i]) else {
            continue;
        };
        let body = u32::from_le_bytes(now[d..d + 4].try_into().unwrap()) as usize;
        let keep = (d + 16 + body).min(now.len());
        let mut out = old.clone();
        out[..keep].copy_from_slice(&now[..keep]);
        std::fs::write(wal.join(&name), &out).unwrap();
    }
}

/// A power cut left the newest segment with records 1-4, a zeroed page where record 5 was, and
/// records 6-10 (never synced) after it: recovery ends the log at 4, correctly. The records after
/// the zeroes belong to a discarded timeline, and no later write may bring them back: a record
/// written where record 5 was, of the same length, whose trailer a second power cut loses, must
/// not be followed by the old record 6.
#[tokio::test]
async fn records_after_a_zeroed_page_never_come_back_behind_new_writes() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("live");
    {
        let e = TieredEngine::open(&dir, config::quiet()).await.unwrap();
        let log = e.log_store();
        for i in 1..=4 {
            log.persist_entries(batch(i, 1, 1, SEED)).await.unwrap();
        }
        log.flush().unwrap();
        for i in 5..=10 {
            log.persist_entries(batch(i, 1, 1, SEED)).await.unwrap();
        }
    }
    // The power cut: record 5's header is zeroes. The store's only segment is its first, and
    // records follow its 32-byte header back to back, each 16 header bytes plus the body length
    // its first 4 bytes give (docs/format.md).
    let seg = dir.join("wal").join(format!("{:016x}.wal", 1));
    let mut bytes = std::fs::read(&seg).unwrap();
    let mut off = 32;
    for _ in 1..5 {
        off += 16 + u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
    }
    bytes[off..off + 16].iter_mut().for_each(|b| *b = 0);
    std::fs::write(&seg, &bytes).unwrap();

    let snap = record_synced_wal_from(&dir, read_wal(&dir.join("wal")));
    let e = TieredEngine::open(&dir, config::quiet()).await.unwrap();
    let log = e.log_store();
    assert_eq!(log.last_index(), 4);
    let old5 = crate::support::payload(5, 1, SEED).len();
    log.persist_entries(vec![tierlog::Entry::new(5, 2, vec![b'z'; old5])])
        .await
        .unwrap();
    let cut = root.path().join("cut");
    drop(log);
    let synced = crash(e, &dir, &cut, &snap);
    lose_the_trailer_of_the_first_unsynced_record(&cut.join("wal"), &synced);

    let e = TieredEngine::open(&cut, config::quiet()).await.unwrap();
    let log = e.log_store();
    let got = log.get_entries(1..=20).unwrap();
    let terms: Vec<u64> = got.iter().map(|e| e.term).collect();
    assert!(
        terms == [1, 1, 1, 1] || terms == [1, 1, 1, 1, 2],
        "the log is not a prefix of what was written: terms {terms:?}"
    );
    scenario.teardown();
}

/// Chains of 2-4 faults on one directory, each between random workloads, each checked against the
/// model: acknowledged-and-flushed operations survive, the log is always the state after some
/// operation (never half of one, never a later one without an earlier one), the hard state is the
/// last saved. Default 24 chains; more: `TIERLOG_CHAIN_TRIALS=2000 cargo test --release --features
/// failpoints --test reliability chains -- --nocapture` (seed: `TIERLOG_CHAIN_SEED`).
#[tokio::test]
async fn chains_of_faults_keep_every_flushed_operation() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    let chains = Chains {
        name: "chain",
        first: 0,
        trials: env_u64("TIERLOG_CHAIN_TRIALS").unwrap_or(24),
        seed: env_u64("TIERLOG_CHAIN_SEED").unwrap_or(SEED),
        ops: (10, 60),
    };
    let tally = chains.run(|_: &OneLog| {}).await;
    let trials = chains.trials;
    eprintln!("power_loss chains: {trials} chains, events {tally:?}");
    scenario.teardown();
}
