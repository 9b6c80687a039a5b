//! Many Raft groups in one engine: each group is a log, a hard state and an application-metadata
//! blob of its own behind the same contract as group 0, and nothing done to one group shows in
//! another. Checked in every harness [`Mode`] (so across reopens, compactions and background
//! rounds): the same indexes written in several groups, then a truncate, a purge, a reset, a
//! `replace_range`, hard-state and metadata saves each in one group, and every other group read
//! back unchanged. Also: creation is idempotent, unknown groups and the removal of group 0 are
//! refused, a removed group's handles return `Error::Closed`, and a removed id created again is
//! empty. (That a flush of one group makes every group's earlier appends survive a power cut is in
//! `tests/reliability/groups.rs`, which can simulate one.)

use std::collections::BTreeMap;

use crate::support::*;
use tierlog::{
    Entry, Error, GroupId, HardState, LogId, LogStore, MetaStore, StorageEngine, TieredEngine, VotedFor,
};

/// What one group should hold.
#[derive(Clone, Debug, Default)]
struct Expected {
    entries: Vec<Entry>,
    boundary: Option<LogId>,
    hard: Option<HardState>,
    app_meta: Option<Vec<u8>>,
}

impl Expected {
    fn last_index(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.boundary.map_or(0, |b| b.index), |e| e.index)
    }
}

/// The group's handles (group 0 through `group(0)`, which must serve the same log as `log_store()`).
fn handles(e: &TieredEngine, g: GroupId) -> tierlog::Group {
    e.group(g).unwrap_or_else(|err| panic!("group({g}): {err}"))
}

/// Every group holds exactly what `want` says, and `groups()` lists exactly its keys.
async fn assert_groups(e: &TieredEngine, want: &BTreeMap<GroupId, Expected>, ctx: &str) {
    assert_eq!(
        e.groups(),
        want.keys().copied().collect::<Vec<_>>(),
        "{ctx}: groups()"
    );
    for (g, x) in want {
        let ctx = format!("{ctx}, group {g}");
        let grp = handles(e, *g);
        assert_eq!(grp.id(), *g, "{ctx}: id()");
        let log = grp.log_store();
        let meta = grp.meta_store();
        assert_eq!(log.last_index(), x.last_index(), "{ctx}: last_index");
        assert_eq!(
            log.load_purge_boundary().unwrap(),
            x.boundary,
            "{ctx}: purge boundary"
        );
        let got = log.get_entries(0..=x.last_index() + 64).unwrap();
        if let Some(d) = diff_entries(&got, &x.entries) {
            panic!("{ctx}: get_entries: {d}");
        }
        for probe in x.entries.iter().map(|e| e.index).chain([x.last_index() + 1]) {
            let want = x.entries.iter().find(|e| e.index == probe);
            assert_eq!(
                log.entry(probe).await.unwrap().as_ref(),
                want,
                "{ctx}: entry({probe})"
            );
        }
        assert_eq!(meta.load_hard_state().unwrap(), x.hard, "{ctx}: hard state");
        assert_eq!(
            meta.load_app_meta().unwrap().as_deref(),
            x.app_meta.as_deref(),
            "{ctx}: app meta"
        );
    }
    // Group 0 through the single-group accessors is the same group as `group(0)`.
    let x = &want[&0];
    assert_eq!(
        e.log_store().last_index(),
        x.last_index(),
        "{ctx}: log_store() is group 0"
    );
    assert_eq!(
        e.meta_store().load_hard_state().unwrap(),
        x.hard,
        "{ctx}: meta_store() is group 0"
    );
}

fn hard(term: u64, vote: u64) -> HardState {
    HardState {
        current_term: term,
        voted_for: Some(VotedFor {
            voted_for_id: vote,
            voted_for_term: term,
            committed: true,
        }),
    }
}

/// Entries `range` of term `term` with group `g`'s payloads: every group writes bytes of its own, so
/// an entry read from the wrong group fails the compare even where index and term agree.
fn gents(g: GroupId, range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| entry(i, term, SEED ^ mix(g))).collect()
}

/// Three groups beside group 0 hold the same indexes; a truncate, a purge, a reset, a
/// `replace_range`, hard-state and metadata saves in one group leave every other group as it was.
async fn groups_are_independent(mode: Mode) {
    let mut h = Harness::new(mode).await;
    let mut want: BTreeMap<GroupId, Expected> = BTreeMap::from([(0, Expected::default())]);
    for g in [1, 2, 3] {
        let grp = h.engine().create_group(g).await.unwrap();
        assert_eq!(grp.id(), g);
        want.insert(g, Expected::default());
    }
    assert_groups(h.engine(), &want, "created").await;
    h.step().await;
    assert_groups(h.engine(), &want, "created, stepped").await;

    // The same indexes 1..=60 in every group, in two batches, each group with its own term.
    for g in [0, 1, 2, 3] {
        let log = handles(h.engine(), g).log_store();
        log.persist_entries(gents(g, 1..=30, 10 + g)).await.unwrap();
        log.persist_entries(gents(g, 31..=60, 10 + g)).await.unwrap();
        want.get_mut(&g).unwrap().entries = gents(g, 1..=60, 10 + g);
    }
    handles(h.engine(), 3).log_store().flush().unwrap();
    assert_groups(h.engine(), &want, "written").await;
    h.step().await;
    assert_groups(h.engine(), &want, "written, stepped").await;

    // A truncate in group 1.
    handles(h.engine(), 1).log_store().truncate(21).await.unwrap();
    want.get_mut(&1).unwrap().entries.truncate(20);
    assert_groups(h.engine(), &want, "group 1 truncated at 21").await;
    h.step().await;
    assert_groups(h.engine(), &want, "group 1 truncated at 21, stepped").await;

    // A purge in group 2.
    let cut = LogId::new(12, 40);
    handles(h.engine(), 2).log_store().purge(cut).await.unwrap();
    let x = want.get_mut(&2).unwrap();
    x.entries.retain(|e| e.index > 40);
    x.boundary = Some(cut);
    assert_groups(h.engine(), &want, "group 2 purged through 40").await;
    h.step().await;
    assert_groups(h.engine(), &want, "group 2 purged through 40, stepped").await;

    // A reset of group 0 (the single-group accessor), a replace_range in group 3.
    h.engine().log_store().reset().await.unwrap();
    want.get_mut(&0).unwrap().entries.clear();
    let log3 = handles(h.engine(), 3).log_store();
    log3.replace_range(25, gents(3, 25..=27, 20)).await.unwrap();
    let x = want.get_mut(&3).unwrap();
    x.entries.truncate(24);
    x.entries.extend(gents(3, 25..=27, 20));
    assert_groups(h.engine(), &want, "group 0 reset, group 3 replaced from 25").await;
    h.step().await;
    assert_groups(
        h.engine(),
        &want,
        "group 0 reset, group 3 replaced from 25, stepped",
    )
    .await;

    // Hard states and metadata per group.
    for (g, term) in [(1, 5), (2, 6)] {
        handles(h.engine(), g)
            .meta_store()
            .save_hard_state(&hard(term, g))
            .unwrap();
        want.get_mut(&g).unwrap().hard = Some(hard(term, g));
    }
    for (g, blob) in [(0, b"zero".to_vec()), (3, b"three".to_vec())] {
        handles(h.engine(), g).meta_store().save_app_meta(&blob).unwrap();
        want.get_mut(&g).unwrap().app_meta = Some(blob);
    }
    assert_groups(h.engine(), &want, "hard states and app meta saved").await;
    h.step().await;
    assert_groups(h.engine(), &want, "hard states and app meta saved, stepped").await;

    // Appends after all that continue each group where it ends.
    for g in [0, 1, 2, 3] {
        let first = want[&g].last_index() + 1;
        let log = handles(h.engine(), g).log_store();
        log.persist_entries(gents(g, first..=first + 9, 30 + g))
            .await
            .unwrap();
        want.get_mut(&g)
            .unwrap()
            .entries
            .extend(gents(g, first..=first + 9, 30 + g));
    }
    handles(h.engine(), 1).log_store().flush().unwrap();
    assert_groups(h.engine(), &want, "appended after").await;
    h.reopen().await;
    assert_groups(h.engine(), &want, "appended after, reopened").await;
    h.compact().await;
    h.reopen().await;
    assert_groups(h.engine(), &want, "appended after, compacted and reopened").await;
}
in_every_mode!(groups_are_independent);

/// `create_group` of an existing group returns its handles and changes nothing, group 0 included.
#[tokio::test]
async fn create_group_is_idempotent() {
    let mut h = Harness::new(Mode::Reopen).await;
    let g = h.engine().create_group(5).await.unwrap();
    g.log_store().persist_entries(gents(5, 1..=10, 1)).await.unwrap();
    g.meta_store().save_hard_state(&hard(1, 2)).unwrap();
    h.engine()
        .log_store()
        .persist_entries(gents(0, 1..=3, 2))
        .await
        .unwrap();
    let want = BTreeMap::from([
        (
            0,
            Expected {
                entries: gents(0, 1..=3, 2),
                ..Expected::default()
            },
        ),
        (
            5,
            Expected {
                entries: gents(5, 1..=10, 1),
                hard: Some(hard(1, 2)),
                ..Expected::default()
            },
        ),
    ]);
    let again = h.engine().create_group(5).await.unwrap();
    assert_eq!(again.id(), 5);
    assert_eq!(
        again.log_store().last_index(),
        10,
        "a second create_group sees the group's log"
    );
    let zero = h.engine().create_group(0).await.unwrap();
    assert_eq!(zero.id(), 0);
    assert_eq!(zero.log_store().last_index(), 3, "create_group(0) is group 0");
    assert_groups(h.engine(), &want, "created twice").await;
    // A `Group` keeps its engine open, like an engine clone.
    drop((g, again, zero));
    h.reopen().await;
    h.engine().create_group(5).await.unwrap();
    assert_groups(h.engine(), &want, "reopened, created a third time").await;
}

/// `group()` of an id never created and `remove_group(0)` are refused with `InvalidInput`; group 0
/// keeps working.
#[tokio::test]
async fn unknown_groups_and_removing_group_zero_are_refused() {
    let h = Harness::new(Mode::Hot).await;
    h.engine()
        .log_store()
        .persist_entries(ents(1..=5, 1))
        .await
        .unwrap();
    for g in [1, 7, u64::MAX] {
        match h.engine().group(g) {
            Err(Error::InvalidInput(_)) => {}
            Err(e) => panic!("group({g}) of an unknown group: {e}, expected InvalidInput"),
            Ok(_) => panic!("group({g}) of an unknown group succeeded"),
        }
    }
    match h.engine().remove_group(0).await {
        Err(Error::InvalidInput(_)) => {}
        other => panic!("remove_group(0) = {other:?}, expected InvalidInput"),
    }
    assert_eq!(h.engine().groups(), vec![0]);
    assert_eq!(h.log().get_entries(1..=10).unwrap(), ents(1..=5, 1));
    h.log().persist_entries(ents(6..=7, 1)).await.unwrap();
    assert_eq!(h.log().last_index(), 7);
}

/// Removing a group: its handles return `Error::Closed` from then on, `group()` refuses its id, the
/// other groups are untouched, and it stays removed across a reopen (and a compaction: its cold
/// blocks are gone, not read back). Created again, the id is an empty group, and the old handles
/// still do not reach it.
#[tokio::test]
async fn a_removed_group_is_gone_and_its_handles_are_closed() {
    let mut h = Harness::with_config(Mode::Reopen, config::on_demand_compaction()).await;
    let mut want: BTreeMap<GroupId, Expected> = BTreeMap::from([(0, Expected::default())]);
    for g in [1, 2] {
        let grp = h.engine().create_group(g).await.unwrap();
        grp.log_store()
            .persist_entries(gents(g, 1..=200, g))
            .await
            .unwrap();
        grp.meta_store().save_hard_state(&hard(g, g)).unwrap();
        grp.meta_store().save_app_meta(b"meta").unwrap();
        want.insert(
            g,
            Expected {
                entries: gents(g, 1..=200, g),
                hard: Some(hard(g, g)),
                app_meta: Some(b"meta".to_vec()),
                ..Expected::default()
            },
        );
    }
    // Part of group 2 in the cold tier, the rest hot.
    h.compact().await;
    let g2 = h.engine().group(2).unwrap();
    g2.log_store()
        .persist_entries(gents(2, 201..=220, 3))
        .await
        .unwrap();
    let (log2, meta2) = (g2.log_store(), g2.meta_store());
    drop(g2);

    h.engine().remove_group(2).await.unwrap();
    want.remove(&2);
    let closed = |what: &str, r: tierlog::Result<()>| match r {
        Err(Error::Closed(_)) => {}
        other => panic!("{what} on a removed group's handle: {other:?}, expected Error::Closed"),
    };
    closed(
        "persist_entries",
        log2.persist_entries(gents(2, 221..=221, 4)).await,
    );
    closed("get_entries", log2.get_entries(1..=10).map(drop));
    closed("entry", log2.entry(5).await.map(drop));
    closed("truncate", log2.truncate(5).await);
    closed("purge", log2.purge(LogId::new(2, 5)).await);
    closed("flush", log2.flush());
    closed("save_hard_state", meta2.save_hard_state(&hard(9, 9)));
    closed("load_hard_state", meta2.load_hard_state().map(drop));
    closed("save_app_meta", meta2.save_app_meta(b"x"));
    assert!(
        matches!(h.engine().group(2), Err(Error::InvalidInput(_))),
        "group(2) after its removal"
    );
    assert_groups(h.engine(), &want, "group 2 removed").await;
    h.reopen().await;
    assert_groups(h.engine(), &want, "group 2 removed, reopened").await;
    h.compact().await;
    h.reopen().await;
    assert_groups(h.engine(), &want, "group 2 removed, compacted, reopened").await;

    // The id again: a new, empty group; the old handles stay closed.
    let new2 = h.engine().create_group(2).await.unwrap();
    want.insert(2, Expected::default());
    assert_groups(h.engine(), &want, "group 2 created again").await;
    closed("get_entries", log2.get_entries(1..=10).map(drop));
    new2.log_store()
        .persist_entries(gents(2, 1..=5, 7))
        .await
        .unwrap();
    want.get_mut(&2).unwrap().entries = gents(2, 1..=5, 7);
    drop(new2);
    h.reopen().await;
    assert_groups(h.engine(), &want, "group 2 created again and written, reopened").await;
}

/// Everything of every group comes back after a clean close and open: hot and cold entries, purge
/// boundaries, hard states and metadata blobs, for ids far apart.
#[tokio::test]
async fn reopen_restores_every_group() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config::on_demand_compaction();
    let e = TieredEngine::open(dir.path(), cfg.clone()).await.unwrap();
    let mut want: BTreeMap<GroupId, Expected> = BTreeMap::new();
    let ids: [GroupId; 5] = [0, 1, 2, 40, 1 << 40];
    for &g in &ids {
        let grp = e.create_group(g).await.unwrap();
        let log = grp.log_store();
        log.persist_entries(gents(g, 1..=100, 1)).await.unwrap();
        want.insert(
            g,
            Expected {
                entries: gents(g, 1..=100, 1),
                ..Expected::default()
            },
        );
    }
    e.compact_now().await.unwrap();
    for (k, &g) in ids.iter().enumerate() {
        let grp = e.group(g).unwrap();
        let x = want.get_mut(&g).unwrap();
        grp.log_store()
            .persist_entries(gents(g, 101..=120, 2))
            .await
            .unwrap();
        x.entries.extend(gents(g, 101..=120, 2));
        if k % 2 == 1 {
            let cut = LogId::new(1, 30 + k as u64);
            grp.log_store().purge(cut).await.unwrap();
            x.entries.retain(|e| e.index > cut.index);
            x.boundary = Some(cut);
        }
        let hs = hard(3 + k as u64, k as u64);
        grp.meta_store().save_hard_state(&hs).unwrap();
        x.hard = Some(hs);
        let blob = format!("group {g}").into_bytes();
        grp.meta_store().save_app_meta(&blob).unwrap();
        x.app_meta = Some(blob);
    }
    assert_groups(&e, &want, "written").await;
    e.close().await.unwrap();
    let e = TieredEngine::open(dir.path(), cfg.clone()).await.unwrap();
    assert_groups(&e, &want, "closed and opened").await;
    // Dropped without close (no final sync): a process that ends without closing.
    drop(e);
    let e = TieredEngine::open(dir.path(), cfg).await.unwrap();
    assert_groups(&e, &want, "dropped and opened").await;
}

// ---------------------------------------------------------------------------------------------
// Random interleavings (proptest)

/// One step of a random sequence over groups 0-3; `g` picks a live group (modulo their number) and
/// positions are relative, so a shrunk sequence stays meaningful.
#[derive(Clone, Debug)]
enum Step {
    Append {
        g: u8,
        len: u8,
    },
    Overwrite {
        g: u8,
        at: u16,
        len: u8,
    },
    Truncate {
        g: u8,
        at: u16,
    },
    Purge {
        g: u8,
        at: u16,
    },
    Replace {
        g: u8,
        at: u16,
        len: u8,
    },
    Reset {
        g: u8,
    },
    Hard {
        g: u8,
    },
    Flush {
        g: u8,
    },
    /// Removes group 3 when it exists, creates it (empty) when not.
    Toggle,
    Compact,
    Reopen,
}

fn step_strategy() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        12 => (any::<u8>(), 1u8..30).prop_map(|(g, len)| Step::Append { g, len }),
        3 => (any::<u8>(), any::<u16>(), 1u8..10).prop_map(|(g, at, len)| Step::Overwrite { g, at, len }),
        3 => (any::<u8>(), any::<u16>()).prop_map(|(g, at)| Step::Truncate { g, at }),
        3 => (any::<u8>(), any::<u16>()).prop_map(|(g, at)| Step::Purge { g, at }),
        2 => (any::<u8>(), any::<u16>(), 0u8..10).prop_map(|(g, at, len)| Step::Replace { g, at, len }),
        1 => any::<u8>().prop_map(|g| Step::Reset { g }),
        2 => any::<u8>().prop_map(|g| Step::Hard { g }),
        2 => any::<u8>().prop_map(|g| Step::Flush { g }),
        2 => Just(Step::Toggle),
        2 => Just(Step::Compact),
        2 => Just(Step::Reopen),
    ]
}

/// `at` mapped into `lo..=hi`.
fn pick(at: u16, lo: u64, hi: u64) -> u64 {
    if hi <= lo {
        lo
    } else {
        lo + u64::from(at) % (hi - lo + 1)
    }
}

/// Every group of the engine equals its model, and no other group exists.
fn check_models(e: &TieredEngine, models: &BTreeMap<GroupId, Model>) -> Result<(), String> {
    let ids: Vec<GroupId> = models.keys().copied().collect();
    if e.groups() != ids {
        return Err(format!("groups() = {:?}, expected {ids:?}", e.groups()));
    }
    for (g, m) in models {
        let grp = e.group(*g).map_err(|err| format!("group({g}): {err}"))?;
        let (log, meta) = (grp.log_store(), grp.meta_store());
        log_matches(&log, m, SEED ^ mix(*g)).map_err(|d| format!("group {g}: {d}"))?;
        let hard = meta.load_hard_state().map_err(|e| e.to_string())?;
        if hard != m.hard {
            return Err(format!("group {g}: hard state {hard:?} vs {:?}", m.hard));
        }
    }
    Ok(())
}

/// Runs `steps` on an engine with groups 0-3 in the tiny configuration (background compaction
/// every 16 KiB, 1 MiB budget), comparing every group with its model after each step.
fn run_group_steps(steps: &[Step]) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let cfg = config::tiny();
    rt.block_on(async {
        let mut e = TieredEngine::open(dir.path(), cfg.clone())
            .await
            .map_err(|e| e.to_string())?;
        let mut models: BTreeMap<GroupId, Model> = BTreeMap::from([(0, Model::default())]);
        for g in [1, 2, 3] {
            e.create_group(g).await.map_err(|e| e.to_string())?;
            models.insert(g, Model::default());
        }
        for (k, step) in steps.iter().enumerate() {
            let term = k as u64 + 1;
            let ids: Vec<GroupId> = models.keys().copied().collect();
            let at_group = |g: u8| ids[usize::from(g) % ids.len()];
            let what = format!("step {k} {step:?}");
            let r: tierlog::Result<()> = async {
                match *step {
                    Step::Append { g, len } => {
                        let g = at_group(g);
                        let m = models.get_mut(&g).expect("live");
                        let first = m.last_index() + 1;
                        let log = e.group(g)?.log_store();
                        log.persist_entries(batch(first, len.into(), term, SEED ^ mix(g)))
                            .await?;
                        m.persist(first, len.into(), term);
                    }
                    Step::Overwrite { g, at, len } => {
                        let g = at_group(g);
                        let m = models.get_mut(&g).expect("live");
                        let Some(lo) = m.first_index() else { return Ok(()) };
                        let first = pick(at, lo, m.last_index());
                        let log = e.group(g)?.log_store();
                        log.persist_entries(batch(first, len.into(), term, SEED ^ mix(g)))
                            .await?;
                        m.persist(first, len.into(), term);
                    }
                    Step::Truncate { g, at } => {
                        let g = at_group(g);
                        let m = models.get_mut(&g).expect("live");
                        let from = pick(at, m.boundary_index() + 1, m.last_index() + 1);
                        e.group(g)?.log_store().truncate(from).await?;
                        m.truncate(from);
                    }
                    Step::Purge { g, at } => {
                        let g = at_group(g);
                        let m = models.get_mut(&g).expect("live");
                        let index = pick(at, m.boundary_index() + 1, m.last_index() + 2);
                        let t = m
                            .entries
                            .get(&index)
                            .copied()
                            .unwrap_or(term)
                            .max(m.boundary.map_or(0, |b| b.term));
                        e.group(g)?.log_store().purge(LogId::new(t, index)).await?;
                        m.purge(LogId::new(t, index));
                    }
                    Step::Replace { g, at, len } => {
                        let g = at_group(g);
                        let m = models.get_mut(&g).expect("live");
                        let from = pick(at, m.boundary_index() + 1, m.last_index() + 1);
                        let log = e.group(g)?.log_store();
                        log.replace_range(from, batch(from, len.into(), term, SEED ^ mix(g)))
                            .await?;
                        m.truncate(from);
                        m.persist(from, len.into(), term);
                    }
                    Step::Reset { g } => {
                        let g = at_group(g);
                        e.group(g)?.log_store().reset().await?;
                        models.get_mut(&g).expect("live").reset();
                    }
                    Step::Hard { g } => {
                        let g = at_group(g);
                        let h = hard(term, g);
                        e.group(g)?.meta_store().save_hard_state(&h)?;
                        models.get_mut(&g).expect("live").hard = Some(h);
                    }
                    Step::Flush { g } => e.group(at_group(g))?.log_store().flush()?,
                    Step::Toggle => {
                        use std::collections::btree_map::Entry as Slot;
                        match models.entry(3) {
                            Slot::Occupied(live) => {
                                e.remove_group(3).await?;
                                live.remove();
                            }
                            Slot::Vacant(gone) => {
                                e.create_group(3).await?;
                                gone.insert(Model::default());
                            }
                        }
                    }
                    Step::Compact => e.compact_now().await?,
                    Step::Reopen => {
                        e.clone().close().await?;
                        e = TieredEngine::open(dir.path(), cfg.clone()).await?;
                    }
                }
                Ok(())
            }
            .await;
            r.map_err(|err| format!("{what}: {err}"))?;
            check_models(&e, &models).map_err(|d| format!("after {what}: {d}"))?;
        }
        e.close().await.map_err(|e| e.to_string())?;
        let e = TieredEngine::open(dir.path(), cfg)
            .await
            .map_err(|e| e.to_string())?;
        check_models(&e, &models).map_err(|d| format!("after the final reopen: {d}"))
    })
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(16),
        max_shrink_iters: 500,
        ..proptest::test_runner::Config::default()
    })]

    /// Random interleavings of every operation over four groups (one removed and created again
    /// and again), with compactions and reopens: every group equals its model after every step.
    #[test]
    fn interleaved_group_steps_match_their_models(steps in proptest::collection::vec(step_strategy(), 1..60)) {
        run_group_steps(&steps).map_err(proptest::test_runner::TestCaseError::fail)?;
    }
}
