//! Many groups in one engine under faults (`--features failpoints`): power cuts, process crashes and
//! I/O errors on a directory whose write-ahead stream carries the records of several groups.
//!
//! The power cut is `power_loss`'s simulation (every segment file reverts to what its last
//! fdatasync held, plus some or none of the rest). What is promised per group:
//! - a `flush()` through any group's handle makes every record of every group appended before it
//!   durable (one shared write-ahead stream);
//! - `create_group`, `remove_group`, and `save_hard_state` / `save_app_meta` of any group are durable
//!   on return, with or without a flush;
//! - after a power cut the groups' logs are, together, the state after one operation at or after
//!   the last flush (never one group's later write without another group's earlier one, never half
//!   an operation), and after a process crash exactly the state after the last acknowledged one;
//! - a truncate, purge or reset of one group changes no other group's log.
//!
//! Payloads come from a seed per group, so an entry read from the wrong group fails the byte
//! compare even where index and term agree. Group ids are never reused within a test here (the
//! crash loop, `tests/crash/`, reuses them).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::chain::{Chains, Tracked};
use crate::power_loss::{Mode, crash, open_recorded, power_cut, read_wal, record_synced_wal_from};
use crate::support::{Model, Rng, batch, env_u64, log_matches, mix};
use fail::FailScenario;
use tierlog::{
    Error, GroupId, HardState, LogId, LogStore, MetaStore, StorageEngine, TierLogStore, TierMetaStore,
    TieredEngine, VotedFor,
};

const SEED: u64 = 0x6E0B;

/// Group `g`'s payload seed.
fn seed_of(g: GroupId) -> u64 {
    SEED ^ mix(g)
}

/// What every group's log should hold, by id.
type Logs = BTreeMap<GroupId, Model>;

fn handles(e: &TieredEngine, g: GroupId) -> tierlog::Result<(Arc<TierLogStore>, Arc<TierMetaStore>)> {
    let grp = e.group(g)?;
    Ok((grp.log_store(), grp.meta_store()))
}

/// The history of a directory under test: the groups' logs after every acknowledged operation since
/// the last reopen, and the durable facts that do not depend on a flush (which groups exist, their
/// hard states and metadata blobs).
struct History {
    /// The logs after every operation; `durable` indexes the last state a `flush()` (or an open)
    /// made durable.
    states: Vec<Logs>,
    durable: usize,
    hard: BTreeMap<GroupId, HardState>,
    app_meta: BTreeMap<GroupId, Vec<u8>>,
    /// The next id a created group gets (ids are not reused here).
    next_id: GroupId,
    /// fdatasyncs are failing: a hard-state or metadata save of a group other than 0 that returns an
    /// error may have taken effect (its write-ahead record was written, only its sync failed). The
    /// history then follows what the engine shows, and every reopen must show the same.
    fsync_failing: bool,
    what: String,
}

impl History {
    fn new(what: String) -> History {
        History {
            states: vec![Logs::from([(0, Model::default())])],
            durable: 0,
            hard: BTreeMap::new(),
            app_meta: BTreeMap::new(),
            next_id: 1,
            fsync_failing: false,
            what,
        }
    }

    fn latest(&self) -> Logs {
        self.states.last().cloned().unwrap_or_default()
    }

    /// Appends `len` entries of `term` at the end of group `g`.
    async fn append(&mut self, e: &TieredEngine, g: GroupId, len: u64, term: u64) -> tierlog::Result<()> {
        let mut m = self.latest();
        let gm = m.get_mut(&g).expect("a live group");
        let first = if gm.entries.is_empty() {
            gm.boundary_index() + 1
        } else {
            gm.last_index() + 1
        };
        handles(e, g)?
            .0
            .persist_entries(batch(first, len, term, seed_of(g)))
            .await?;
        gm.persist(first, len, term);
        self.states.push(m);
        Ok(())
    }

    fn flush(&mut self, e: &TieredEngine, g: GroupId) -> tierlog::Result<()> {
        handles(e, g)?.0.flush()?;
        self.durable = self.states.len() - 1;
        Ok(())
    }

    async fn truncate(&mut self, e: &TieredEngine, g: GroupId, from: u64) -> tierlog::Result<()> {
        let mut m = self.latest();
        handles(e, g)?.0.truncate(from).await?;
        m.get_mut(&g).expect("a live group").truncate(from);
        self.states.push(m);
        Ok(())
    }

    async fn purge(&mut self, e: &TieredEngine, g: GroupId, index: u64) -> tierlog::Result<()> {
        let mut m = self.latest();
        let gm = m.get_mut(&g).expect("a live group");
        let t = gm
            .entries
            .get(&index)
            .copied()
            .unwrap_or_else(|| gm.max_term())
            .max(gm.boundary.map_or(0, |b| b.term));
        handles(e, g)?.0.purge(LogId::new(t, index)).await?;
        gm.purge(LogId::new(t, index));
        self.states.push(m);
        Ok(())
    }

    async fn reset(&mut self, e: &TieredEngine, g: GroupId) -> tierlog::Result<()> {
        let mut m = self.latest();
        handles(e, g)?.0.reset().await?;
        m.get_mut(&g).expect("a live group").reset();
        self.states.push(m);
        Ok(())
    }

    fn save_hard(&mut self, e: &TieredEngine, g: GroupId, term: u64) -> tierlog::Result<()> {
        let h = HardState {
            current_term: term,
            voted_for: Some(VotedFor {
                voted_for_id: g,
                voted_for_term: term,
                committed: false,
            }),
        };
        let meta = handles(e, g)?.1;
        if let Err(err) = meta.save_hard_state(&h) {
            // The record may be written and its fdatasync failed: then the save may have happened.
            if self.fsync_failing && meta.load_hard_state().ok().flatten() == Some(h) {
                self.hard.insert(g, h);
            }
            return Err(err);
        }
        self.hard.insert(g, h);
        Ok(())
    }

    fn save_meta(&mut self, e: &TieredEngine, g: GroupId, blob: &[u8]) -> tierlog::Result<()> {
        let meta = handles(e, g)?.1;
        if let Err(err) = meta.save_app_meta(blob) {
            if self.fsync_failing && meta.load_app_meta().ok().flatten().as_deref() == Some(blob) {
                self.app_meta.insert(g, blob.to_vec());
            }
            return Err(err);
        }
        self.app_meta.insert(g, blob.to_vec());
        Ok(())
    }

    /// Creates a group with a fresh id; returns it.
    async fn create(&mut self, e: &TieredEngine) -> tierlog::Result<GroupId> {
        let g = self.next_id;
        self.next_id += 1;
        let grp = e.create_group(g).await?;
        assert_eq!(
            grp.id(),
            g,
            "{}: create_group({g}) returned another group",
            self.what
        );
        let mut m = self.latest();
        m.insert(g, Model::default());
        self.states.push(m);
        Ok(g)
    }

    async fn remove(&mut self, e: &TieredEngine, g: GroupId) -> tierlog::Result<()> {
        e.remove_group(g).await?;
        let mut m = self.latest();
        m.remove(&g);
        self.hard.remove(&g);
        self.app_meta.remove(&g);
        self.states.push(m);
        Ok(())
    }

    /// A failed group creation or removal may or may not have taken effect (as a commit reported
    /// failed can have reached the disk); whichever the engine shows from now on is the truth, and
    /// it must show it again after any reopen.
    fn follow_failed_create_or_remove(&mut self, e: &TieredEngine, g: GroupId) {
        let exists = e.groups().contains(&g);
        let mut m = self.latest();
        if exists && !m.contains_key(&g) {
            m.insert(g, Model::default());
            self.states.push(m);
        } else if !exists && m.contains_key(&g) {
            m.remove(&g);
            self.hard.remove(&g);
            self.app_meta.remove(&g);
            self.states.push(m);
        }
    }
}

impl Tracked for History {
    /// Three groups beside group 0.
    async fn start(e: &TieredEngine, what: String) -> History {
        let mut h = History::new(what);
        for _ in 0..3 {
            h.create(e).await.unwrap();
        }
        h
    }

    fn what(&mut self) -> &mut String {
        &mut self.what
    }

    fn span(&self) -> (usize, usize) {
        (self.durable, self.states.len() - 1)
    }

    /// The store holds the latest groups, hard states and blobs, and logs equal to `self.states[k]`
    /// (a group created after state `k` is empty there).
    fn matches(&self, e: &TieredEngine, k: usize) -> Result<(), String> {
        let latest = self.states.last().expect("a state");
        let ids: Vec<GroupId> = latest.keys().copied().collect();
        if e.groups() != ids {
            return Err(format!("groups() = {:?}, expected {ids:?}", e.groups()));
        }
        let empty = Model::default();
        for &g in &ids {
            let m = self.states[k].get(&g).unwrap_or(&empty);
            let (log, meta) = handles(e, g).map_err(|err| format!("group {g}: {err}"))?;
            log_matches(&log, m, seed_of(g)).map_err(|d| format!("group {g}: {d}"))?;
            let hard = meta.load_hard_state().map_err(|e| e.to_string())?;
            if hard != self.hard.get(&g).copied() {
                return Err(format!(
                    "group {g}: hard state {hard:?} vs {:?}",
                    self.hard.get(&g)
                ));
            }
            let blob = meta.load_app_meta().map_err(|e| e.to_string())?;
            if blob.as_deref() != self.app_meta.get(&g).map(|v| v.as_slice()) {
                return Err(format!(
                    "group {g}: app meta {blob:?} vs {:?}",
                    self.app_meta.get(&g)
                ));
            }
        }
        Ok(())
    }

    /// Groups created after state `k` exist (creation is durable), empty; removed ones are gone.
    fn keep(&mut self, _: &TieredEngine, k: usize) {
        let latest = self.latest();
        let mut kept = self.states.swap_remove(k);
        kept.retain(|g, _| latest.contains_key(g));
        for g in latest.keys() {
            kept.entry(*g).or_default();
        }
        self.states = vec![kept];
        self.durable = 0;
    }

    async fn random_op(&mut self, e: &TieredEngine, rng: &mut Rng, term: u64) -> tierlog::Result<()> {
        random_op(e, rng, self, term).await
    }

    /// While fdatasyncs fail, a failed save may have taken effect.
    fn io_errors(&mut self, point: Option<&str>) {
        self.fsync_failing = point == Some("wal::sync");
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed sequences

/// A `flush()` through one group's handle makes the earlier appends of every group survive a power
/// cut that loses everything unsynced (the appends after it may go); then, on the cut copy, group
/// creation, removal, hard-state and metadata saves survive a second cut without any flush.
#[tokio::test]
async fn a_flush_of_one_group_makes_every_groups_earlier_appends_survive_a_power_cut() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("live");
    let (snap, e) = open_recorded(&live).await;
    let mut h = History::new("flush of one group".into());
    let g1 = h.create(&e).await.unwrap();
    let g2 = h.create(&e).await.unwrap();
    let g3 = h.create(&e).await.unwrap();
    // The same indexes in every group; the flush goes through group 3's handle only.
    for (k, g) in [0, g1, g2, g3].into_iter().enumerate() {
        h.append(&e, g, 40, 1 + k as u64).await.unwrap();
    }
    h.append(&e, g1, 20, 10).await.unwrap();
    h.flush(&e, g3).unwrap();
    // Not flushed: a power cut may take these.
    h.append(&e, 0, 5, 11).await.unwrap();
    h.append(&e, g2, 5, 12).await.unwrap();
    h.matches(&e, h.states.len() - 1).unwrap();
    let cut = root.path().join("cut");
    power_cut(e, &live, &cut, &snap, Mode::Synced, &mut Rng::new(3));
    let (e, lost_first) = h.reopen(&cut, false).await;

    // On the cut copy: operations durable on their own, no flush after them.
    let snap = record_synced_wal_from(&cut, read_wal(&cut.join("wal")));
    h.append(&e, g1, 5, 13).await.unwrap();
    h.save_hard(&e, g1, 14).unwrap();
    h.save_hard(&e, 0, 15).unwrap();
    h.save_meta(&e, g2, b"g2 meta").unwrap();
    h.save_meta(&e, 0, b"g0 meta").unwrap();
    h.remove(&e, g3).await.unwrap();
    let g4 = h.create(&e).await.unwrap();
    h.save_meta(&e, g4, b"g4 meta").unwrap();
    h.append(&e, g4, 5, 16).await.unwrap();
    let cut2 = root.path().join("cut2");
    power_cut(e, &cut, &cut2, &snap, Mode::Synced, &mut Rng::new(4));
    let (e, lost_second) = h.reopen(&cut2, false).await;
    assert_eq!(
        e.groups(),
        vec![0, g1, g2, g4],
        "created and removed groups after the cut"
    );
    eprintln!(
        "flush of one group: of the unflushed operations, {lost_first} lost in the first power cut, \
         {lost_second} in the second"
    );
    // Life goes on: every group takes writes, and they survive a clean reopen exactly.
    let ids: Vec<GroupId> = h.latest().keys().copied().collect();
    for (k, g) in ids.into_iter().enumerate() {
        h.append(&e, g, 3, 20 + k as u64).await.unwrap();
    }
    h.flush(&e, g4).unwrap();
    e.close().await.unwrap();
    let (e, _) = h.reopen(&cut2, true).await;
    drop(e);
    scenario.teardown();
}

/// The chain the issue names, with groups: I/O errors (appends, then an fdatasync) while several
/// groups write → process crash → reopen and compaction → power cut → writes and a flush → clean
/// reopen. A truncate, purge and reset of one group happen beside the others' entries all along.
#[tokio::test]
async fn groups_keep_every_flushed_operation_through_io_errors_a_crash_and_a_power_cut() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("live");
    let (snap, e) = open_recorded(&live).await;
    let mut h = History::new("I/O errors → crash → power cut".into());
    let g1 = h.create(&e).await.unwrap();
    let g2 = h.create(&e).await.unwrap();
    let g3 = h.create(&e).await.unwrap();
    let mut term = 0;
    for _ in 0..6 {
        for g in [0, g1, g2, g3] {
            term += 1;
            h.append(&e, g, 15, term).await.unwrap();
        }
    }
    h.truncate(&e, g1, 50).await.unwrap();
    h.purge(&e, g2, 30).await.unwrap();
    h.save_hard(&e, g3, 7).unwrap();
    h.flush(&e, g2).unwrap();
    e.compact_now().await.unwrap();
    h.matches(&e, h.states.len() - 1).unwrap();

    // I/O errors: every mutation of every group fails whole while the write-ahead append fails.
    fail::cfg("wal::append", "return(5)").unwrap();
    assert!(h.append(&e, g1, 5, 100).await.is_err(), "append under EIO");
    assert!(h.truncate(&e, g2, 40).await.is_err(), "truncate under EIO");
    assert!(h.reset(&e, g3).await.is_err(), "reset under EIO");
    assert!(h.purge(&e, 0, 60).await.is_err(), "purge under EIO");
    let next = h.next_id;
    if h.create(&e).await.is_err() {
        h.follow_failed_create_or_remove(&e, next);
    }
    if h.remove(&e, g3).await.is_err() {
        h.follow_failed_create_or_remove(&e, g3);
    }
    fail::remove("wal::append");
    h.matches(&e, h.states.len() - 1)
        .unwrap_or_else(|d| panic!("failed operations changed a group: {d}"));
    let ids: Vec<GroupId> = h.latest().keys().copied().collect();
    // The disk is back: every group takes writes again.
    for &g in &ids {
        term += 1;
        h.append(&e, g, 10, term).await.unwrap();
    }
    h.flush(&e, 0).unwrap();
    // A failed fdatasync: the flush fails, writes are refused from then on; a restart follows.
    for &g in &ids {
        term += 1;
        h.append(&e, g, 4, term).await.unwrap();
    }
    fail::cfg("wal::sync", "return(5)").unwrap();
    assert!(h.flush(&e, g1).is_err(), "flush under a failing fdatasync");
    fail::remove("wal::sync");
    let refused = h.append(&e, g2, 1, 1_000).await;
    assert!(
        matches!(refused, Err(Error::Poisoned { .. })),
        "a write after a failed fdatasync: {refused:?}"
    );

    // Process crash: the next process sees what the page cache holds.
    let crashed = root.path().join("crashed");
    let on_disk = crash(e, &live, &crashed, &snap);
    let snap = record_synced_wal_from(&crashed, on_disk);
    let (e, _) = h.reopen(&crashed, true).await;
    // Work on the reopened directory: one group's truncate and reset beside the others, a new group,
    // a removal, unflushed appends, then a compaction whose checkpoint covers them.
    h.truncate(&e, 0, 20).await.unwrap();
    h.reset(&e, g1).await.unwrap();
    let g5 = h.create(&e).await.unwrap();
    for g in [0, g1, g2, g5] {
        term += 1;
        h.append(&e, g, 12, term).await.unwrap();
    }
    if h.latest().contains_key(&g3) {
        h.remove(&e, g3).await.unwrap();
    }
    h.flush(&e, g5).unwrap();
    for g in [0, g1, g2, g5] {
        term += 1;
        h.append(&e, g, 6, term).await.unwrap();
    }
    e.compact_now().await.unwrap();

    // Power cut: everything not synced is lost.
    let cut = root.path().join("cut");
    power_cut(e, &crashed, &cut, &snap, Mode::Synced, &mut Rng::new(11));
    let (e, lost) = h.reopen(&cut, false).await;
    let ids: Vec<GroupId> = h.latest().keys().copied().collect();
    assert!(!ids.contains(&g3), "the removed group came back: {ids:?}");
    assert!(ids.contains(&g5), "the created group is gone: {ids:?}");
    for &g in &ids {
        term += 1;
        h.append(&e, g, 7, term).await.unwrap();
    }
    h.flush(&e, g2).unwrap();
    e.close().await.unwrap();
    let (e, _) = h.reopen(&cut, true).await;
    eprintln!("groups chain: {lost} unflushed operations lost in the power cut; groups {ids:?}");
    drop(e);
    scenario.teardown();
}

// ---------------------------------------------------------------------------------------------
// Random chains

/// One random operation on a random group, or a group's creation or removal.
async fn random_op(e: &TieredEngine, rng: &mut Rng, h: &mut History, term: u64) -> tierlog::Result<()> {
    let latest = h.latest();
    let ids: Vec<GroupId> = latest.keys().copied().collect();
    let others: Vec<GroupId> = ids.iter().copied().filter(|&g| g != 0).collect();
    let roll = rng.below(100);
    if roll < 3 {
        let g = h.next_id;
        return match h.create(e).await {
            Ok(_) => Ok(()),
            Err(err) => {
                h.follow_failed_create_or_remove(e, g);
                Err(err)
            }
        };
    }
    if roll < 5 && !others.is_empty() {
        let g = others[rng.below(others.len() as u64) as usize];
        return match h.remove(e, g).await {
            Ok(()) => Ok(()),
            Err(err) => {
                h.follow_failed_create_or_remove(e, g);
                Err(err)
            }
        };
    }
    let g = ids[rng.below(ids.len() as u64) as usize];
    let m = &latest[&g];
    let (last, b, has) = (m.last_index(), m.boundary_index(), !m.entries.is_empty());
    match rng.below(100) {
        0..=49 => h.append(e, g, rng.range(1, 30), term).await,
        50..=64 => h.flush(e, g),
        65..=71 if has => {
            h.truncate(e, g, rng.range((b + 1).max(last.saturating_sub(30)), last))
                .await
        }
        72..=78 if has => h.purge(e, g, rng.range(b + 1, last)).await,
        79..=85 => e.compact_now().await,
        86..=92 => h.save_hard(e, g, term),
        93..=95 => h.save_meta(e, g, format!("{g}:{term}").as_bytes()),
        96 => h.reset(e, g).await,
        _ => Ok(()),
    }
}

/// Chains of 2-4 faults (process crash, power cut in any writeback model, I/O errors at a random
/// failpoint for a few operations, clean restart) on one directory holding several groups, between
/// random workloads over all of them (appends, flushes through any group, truncates, purges,
/// resets, hard-state and metadata saves, compactions, groups created and removed). Every reopen
/// is checked against the history: the groups that exist, every group's hard state and blob, and
/// the logs of all groups together at one operation at or after the last flush (exactly the last
/// after a crash or a clean restart). Default 12 chains; more: `TIERLOG_GROUP_CHAIN_TRIALS=1000
/// cargo test --release --features failpoints --test reliability groups:: -- --nocapture` (seed:
/// `TIERLOG_GROUP_CHAIN_SEED`; replay chain `k` alone: `TIERLOG_GROUP_CHAIN_FIRST=k
/// TIERLOG_GROUP_CHAIN_TRIALS=1`).
#[tokio::test]
async fn chains_of_faults_keep_every_groups_flushed_operations() {
    let _alone = crate::failpoints_exclusive();
    let scenario = FailScenario::setup();
    let chains = Chains {
        name: "group chain",
        // Replays one chain of a failed run: TIERLOG_GROUP_CHAIN_FIRST=<its number>.
        first: env_u64("TIERLOG_GROUP_CHAIN_FIRST").unwrap_or(0),
        trials: env_u64("TIERLOG_GROUP_CHAIN_TRIALS").unwrap_or(12),
        seed: env_u64("TIERLOG_GROUP_CHAIN_SEED").unwrap_or(SEED),
        ops: (20, 80),
    };
    let mut most_groups = 0;
    let tally = chains
        .run(|h: &History| most_groups = most_groups.max(h.latest().len()))
        .await;
    let trials = chains.trials;
    eprintln!("group chains: {trials} chains, events {tally:?}, up to {most_groups} groups at once");
    scenario.teardown();
}
