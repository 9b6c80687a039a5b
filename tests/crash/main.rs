//! Crash loop with real `SIGKILL`s.
//!
//! This test binary has its own `main` (`harness = false`). Run plainly, it is the *parent*: it
//! starts itself again as a *child* (selected by the `TIERLOG_CRASH_CHILD` variable), which opens a
//! store in a tiny configuration (64 KiB segments, 1 MiB memory budget, a compaction round every
//! 16 KiB) holding several Raft groups: group 0, three groups it creates on its first run (1-3), and
//! groups of a small pool (10-12) that it creates and removes while it runs, so ids are reused.
//! On a random group it runs random appends, overwrites, flushes, purges, truncates,
//! `replace_range`s, resets, hard-state saves and forced compactions forever. Before each
//! operation the child prints `B <op>` and after it returns `A` on stdout; the parent mirrors every
//! acknowledged operation in a model per group and kills the child with `SIGKILL` at a random
//! moment: after a random number of lines plus a random sub-millisecond delay, while a compaction,
//! purge, truncate, group creation or group removal is in flight, or during open/recovery. Then it
//! reopens the directory itself and checks every group against its model.
//!
//! What is checked after each kill:
//! - `open` succeeds (a torn tail is never a reason to refuse);
//! - `groups()` lists exactly the groups whose creation was acknowledged and whose removal was not;
//!   a removed group's id is unknown to `group()` (and when the id is created again, the new group
//!   starts empty: nothing of the removed one comes back);
//! - every group's log equals, entry by entry and byte by byte (index, term, payload), its model
//!   after the last acknowledged operation — or, if an operation was in flight (`B` seen, `A` not),
//!   the models after that operation. Nothing in between is accepted: a batch append,
//!   `replace_range`, `truncate`, `purge`, `reset`, a group's creation and its removal are each one
//!   atomic operation, so a crash keeps all of it or none of it, never a prefix of a batch;
//! - so no hole, no duplicate, no entry of a truncated/overwritten range (each write uses a fresh
//!   term, so a stale entry has the wrong term), nothing at or below the purge boundary, and
//!   nothing another group wrote (each group's payloads come from a seed of its own, and a
//!   truncate, purge or reset of one group must leave every other group's entries as they were);
//! - each group's `last_index()`, `load_purge_boundary()` and `load_hard_state()` equal its model's.
//!
//! The child also checks, after each operation, that every group's `last_index()` is its model's:
//! an operation on one group that moved another group's end fails the run at once.
//!
//! This is a *process* crash: the page cache survives, so every operation that returned is expected
//! back, flushed or not (the contract: `persist_entries` hands the bytes to the OS before returning).
//! Power loss (losing what was not fdatasync'ed) is simulated separately.
//!
//! Default: 120 kills (well under a minute in debug). More:
//! `TIERLOG_CRASH_KILLS=5000 cargo test --release --test crash`; replay one run with
//! `TIERLOG_CRASH_SEED=<seed printed by the failing run>`.

#[path = "../support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;
use std::sync::Arc;

use support::{Model, Rng, config, copy_dir, diff_entries, env_u64, mix};
use tierlog::{
    Config, Error, GroupId, HardState, LogId, LogStore, MetaStore, StorageEngine, TierLogStore,
    TierMetaStore, TieredEngine, VotedFor,
};

const CHILD_ENV: &str = "TIERLOG_CRASH_CHILD";
const TEST_NAME: &str = "crash_loop";

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child_main(PathBuf::from(dir));
    }
    // Behave like a libtest binary for the arguments cargo passes through.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{TEST_NAME}: test");
        return;
    }
    if let Some(filter) = args.iter().find(|a| !a.starts_with('-'))
        && !TEST_NAME.contains(filter.as_str())
    {
        println!("{TEST_NAME}: 0 passed, 0 failed, 1 skipped");
        return;
    }
    if args.iter().any(|a| a == "--ignored") {
        // Nothing here is ignored; `--ignored` runs of the suite must not repeat the loop.
        println!("{TEST_NAME}: 0 passed, 0 failed, 1 skipped");
        return;
    }
    parent_main();
    println!("{TEST_NAME}: 1 passed, 0 failed");
}

// ---------------------------------------------------------------------------------------------
// The operations and their one-line encoding on the pipe.

/// The groups the child creates on its first run (or the first run a kill did not stop before) and
/// never removes.
const FIXED_GROUPS: [GroupId; 3] = [1, 2, 3];
/// The groups the child creates and removes as it runs; the ids come back, so a group is created
/// again under the id of a removed one.
const POOL: [GroupId; 3] = [10, 11, 12];

/// What every group should hold, by id.
type Groups = BTreeMap<GroupId, Model>;

/// An operation on one group's log or hard state.
#[derive(Clone, Debug, PartialEq)]
enum Op {
    Persist { first: u64, len: u64, term: u64 },
    Truncate { from: u64 },
    Replace { from: u64, len: u64, term: u64 },
    Purge { cutoff: LogId },
    Reset,
    Hard(HardState),
    Flush,
    Compact,
}

impl Op {
    fn encode(&self) -> String {
        match self {
            Op::Persist { first, len, term } => format!("P {first} {len} {term}"),
            Op::Truncate { from } => format!("T {from}"),
            Op::Replace { from, len, term } => format!("R {from} {len} {term}"),
            Op::Purge { cutoff } => format!("G {} {}", cutoff.index, cutoff.term),
            Op::Reset => "X".into(),
            Op::Hard(h) => match h.voted_for {
                None => format!("H {} -", h.current_term),
                Some(v) => format!(
                    "H {} {} {} {}",
                    h.current_term, v.voted_for_id, v.voted_for_term, v.committed as u8
                ),
            },
            Op::Flush => "F".into(),
            Op::Compact => "C".into(),
        }
    }

    fn decode(s: &str) -> Option<Op> {
        let mut it = s.split(' ');
        let tag = it.next()?;
        let mut num = || -> Option<u64> { it.next()?.parse().ok() };
        Some(match tag {
            "P" => Op::Persist {
                first: num()?,
                len: num()?,
                term: num()?,
            },
            "T" => Op::Truncate { from: num()? },
            "R" => Op::Replace {
                from: num()?,
                len: num()?,
                term: num()?,
            },
            "G" => {
                let index = num()?;
                let term = num()?;
                Op::Purge {
                    cutoff: LogId::new(term, index),
                }
            }
            "X" => Op::Reset,
            "H" => {
                let current_term = num()?;
                let rest: Vec<&str> = it.collect();
                let voted_for = match rest.as_slice() {
                    ["-"] => None,
                    [id, term, c] => Some(VotedFor {
                        voted_for_id: id.parse().ok()?,
                        voted_for_term: term.parse().ok()?,
                        committed: *c == "1",
                    }),
                    _ => return None,
                };
                Op::Hard(HardState {
                    current_term,
                    voted_for,
                })
            }
            "F" => Op::Flush,
            "C" => Op::Compact,
            _ => return None,
        })
    }

    /// The one-letter tag the encoding starts with.
    fn tag(&self) -> &'static str {
        match self {
            Op::Persist { .. } => "P",
            Op::Truncate { .. } => "T",
            Op::Replace { .. } => "R",
            Op::Purge { .. } => "G",
            Op::Reset => "X",
            Op::Hard(_) => "H",
            Op::Flush => "F",
            Op::Compact => "C",
        }
    }

    fn apply(&self, m: &mut Model) {
        match *self {
            Op::Persist { first, len, term } => m.persist(first, len, term),
            Op::Truncate { from } => m.truncate(from),
            Op::Replace { from, len, term } => {
                m.truncate(from);
                m.persist(from, len, term);
            }
            Op::Purge { cutoff } => m.purge(cutoff),
            Op::Reset => m.reset(),
            Op::Hard(h) => m.hard = Some(h),
            Op::Flush | Op::Compact => {}
        }
    }
}

/// One step of the child: an operation on a group, or a group's creation or removal.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    On(GroupId, Op),
    Create(GroupId),
    Remove(GroupId),
}

impl Step {
    fn encode(&self) -> String {
        match self {
            Step::On(g, op) => format!("{g} {}", op.encode()),
            Step::Create(g) => format!("N {g}"),
            Step::Remove(g) => format!("D {g}"),
        }
    }

    fn decode(s: &str) -> Option<Step> {
        let (head, rest) = s.split_once(' ')?;
        Some(match head {
            "N" => Step::Create(rest.parse().ok()?),
            "D" => Step::Remove(rest.parse().ok()?),
            g => Step::On(g.parse().ok()?, Op::decode(rest)?),
        })
    }

    fn tag(&self) -> &'static str {
        match self {
            Step::On(_, op) => op.tag(),
            Step::Create(_) => "N",
            Step::Remove(_) => "D",
        }
    }

    /// Applies the step to the models; `Err` when it names a group the models do not hold (the
    /// child never does that: it would be a bug of this test).
    fn apply(&self, gs: &mut Groups) -> Result<(), String> {
        match self {
            Step::On(g, op) => op.apply(
                gs.get_mut(g)
                    .ok_or_else(|| format!("{}: no group {g} in the model", self.encode()))?,
            ),
            // Creating an existing group is idempotent: it keeps what the group holds.
            Step::Create(g) => {
                gs.entry(*g).or_default();
            }
            Step::Remove(g) => {
                gs.remove(g);
            }
        }
        Ok(())
    }
}

/// The payload seed of group `g`'s entries: each group writes bytes of its own, so an entry that
/// shows up in the wrong group fails the byte compare even where index and term agree.
fn group_seed(seed: u64, g: GroupId) -> u64 {
    if g == 0 { seed } else { mix(seed ^ g) }
}

// ---------------------------------------------------------------------------------------------
// Child: random operations until killed.

fn child_config(sync: bool) -> Config {
    Config {
        sync_on_persist: sync,
        ..config::tiny()
    }
}

/// Writes one whole line with a single `write` call, so the parent never sees half a line from a
/// kill (pipe writes up to PIPE_BUF bytes are atomic).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    // A broken pipe means the parent is gone; nothing useful is left to do.
    if out.write_all(buf.as_bytes()).and_then(|_| out.flush()).is_err() {
        std::process::exit(4);
    }
}

fn child_main(dir: PathBuf) -> ! {
    let seed = env_u64("TIERLOG_CRASH_SEED").unwrap_or(0);
    let term_base = env_u64("TIERLOG_CRASH_TERM_BASE").unwrap_or(1);
    let sync = env_u64("TIERLOG_CRASH_SYNC") == Some(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(child_loop(&dir, seed, term_base, sync));
    // Only an error gets here: the loop runs until the parent kills the process.
    say(&format!("E {}", result.unwrap_err().replace('\n', " ")));
    std::process::exit(3);
}

/// Group `g`'s log and metadata handles. Group 0 is reached through the single-group accessors
/// (what a user written before groups existed calls), the others through `group()`.
fn handles(engine: &TieredEngine, g: GroupId) -> tierlog::Result<(Arc<TierLogStore>, Arc<TierMetaStore>)> {
    if g == 0 {
        return Ok((engine.log_store(), engine.meta_store()));
    }
    let group = engine.group(g)?;
    Ok((group.log_store(), group.meta_store()))
}

async fn load_model(log: &TierLogStore, meta: &TierMetaStore) -> tierlog::Result<Model> {
    let last = log.last_index();
    let mut m = Model {
        boundary: log.load_purge_boundary()?,
        hard: meta.load_hard_state()?,
        ..Model::default()
    };
    for e in log.get_entries(0..=last)? {
        m.entries.insert(e.index, e.term);
    }
    Ok(m)
}

/// Every group the engine holds, read back into models.
async fn load_groups(engine: &TieredEngine) -> tierlog::Result<Groups> {
    let mut gs = Groups::new();
    for g in engine.groups() {
        let (log, meta) = handles(engine, g)?;
        gs.insert(g, load_model(&log, &meta).await?);
    }
    Ok(gs)
}

async fn run_op(
    engine: &TieredEngine,
    log: &TierLogStore,
    meta: &TierMetaStore,
    op: &Op,
    seed: u64,
) -> tierlog::Result<()> {
    match op {
        Op::Persist { first, len, term } => {
            log.persist_entries(support::batch(*first, *len, *term, seed))
                .await
        }
        Op::Truncate { from } => log.truncate(*from).await,
        Op::Replace { from, len, term } => {
            log.replace_range(*from, support::batch(*from, *len, *term, seed))
                .await
        }
        Op::Purge { cutoff } => log.purge(*cutoff).await,
        Op::Reset => log.reset().await,
        Op::Hard(h) => meta.save_hard_state(h),
        Op::Flush => log.flush(),
        Op::Compact => engine.compact_now().await,
    }
}

async fn child_loop(dir: &Path, seed: u64, term_base: u64, sync: bool) -> Result<(), String> {
    let engine = TieredEngine::open(dir, child_config(sync))
        .await
        .map_err(|e| format!("open: {e}"))?;
    let mut gs = load_groups(&engine).await.map_err(|e| format!("load: {e}"))?;
    say(&format!("O {}", gs.len()));
    let mut rng = Rng::new(seed ^ term_base);
    let mut term = term_base;
    let mut unmade: Vec<GroupId> = FIXED_GROUPS
        .iter()
        .copied()
        .filter(|g| !gs.contains_key(g))
        .collect();
    loop {
        term += 1;
        let step = match unmade.pop() {
            Some(g) => Step::Create(g),
            None => pick_step(&mut rng, &gs, term, &engine).await?,
        };
        say(&format!("B {}", step.encode()));
        let res = match &step {
            Step::Create(g) => engine.create_group(*g).await.map(drop),
            Step::Remove(g) => engine.remove_group(*g).await,
            Step::On(g, op) => match handles(&engine, *g) {
                Ok((log, meta)) => run_op(&engine, &log, &meta, op, group_seed(seed, *g)).await,
                Err(e) => Err(e),
            },
        };
        res.map_err(|e| format!("{}: {e}", step.encode()))?;
        step.apply(&mut gs)?;
        if engine.groups() != gs.keys().copied().collect::<Vec<_>>() {
            return Err(format!(
                "after {}: groups() = {:?}, expected {:?}",
                step.encode(),
                engine.groups(),
                gs.keys()
            ));
        }
        // Every group ends where its model does: an operation on one group moved no other's end.
        for (g, m) in &gs {
            let (log, _) =
                handles(&engine, *g).map_err(|e| format!("after {}: group {g}: {e}", step.encode()))?;
            if log.last_index() != m.last_index() {
                return Err(format!(
                    "after {}: group {g}: last_index() = {}, expected {}",
                    step.encode(),
                    log.last_index(),
                    m.last_index()
                ));
            }
        }
        say("A");
    }
}

async fn pick_step(rng: &mut Rng, gs: &Groups, term: u64, engine: &TieredEngine) -> Result<Step, String> {
    let live_pool: Vec<GroupId> = POOL.iter().copied().filter(|g| gs.contains_key(g)).collect();
    match rng.below(1000) {
        // The id may exist already: creation is idempotent.
        0..=9 => return Ok(Step::Create(POOL[rng.below(POOL.len() as u64) as usize])),
        10..=17 if !live_pool.is_empty() => {
            return Ok(Step::Remove(
                live_pool[rng.below(live_pool.len() as u64) as usize],
            ));
        }
        _ => {}
    }
    let ids: Vec<GroupId> = gs.keys().copied().collect();
    if ids.is_empty() {
        return Err("the engine lists no group (group 0 always exists)".into());
    }
    let g = ids[rng.below(ids.len() as u64) as usize];
    let (log, _) = handles(engine, g).map_err(|e| format!("group {g}: {e}"))?;
    Ok(Step::On(g, pick_op(rng, &gs[&g], term, &log).await?))
}

async fn pick_op(rng: &mut Rng, m: &Model, term: u64, log: &TierLogStore) -> Result<Op, String> {
    let last = m.last_index();
    let b = m.boundary_index();
    let has = !m.entries.is_empty();
    let roll = rng.below(1000);
    // Keep each group's retained log short so each check after a kill stays cheap.
    if m.entries.len() > 1_500 && roll < 100 {
        return purge_op(m, last - 500, term, log).await;
    }
    Ok(match roll {
        0..=449 => {
            let first = if has { last + 1 } else { b + 1 + rng.below(3) };
            let len = if rng.chance(1, 4) {
                rng.range(17, 64)
            } else {
                rng.range(1, 16)
            };
            Op::Persist { first, len, term }
        }
        450..=529 if has => {
            // An overwrite must start inside the log: below its first entry it would leave a hole.
            let lo = m.first_index().unwrap_or(b + 1).max(last.saturating_sub(50));
            Op::Persist {
                first: rng.range(lo, last),
                len: rng.range(1, 20),
                term,
            }
        }
        530..=679 => Op::Flush,
        680..=729 if has => {
            let lo = (b + 1).max(last.saturating_sub(30));
            Op::Truncate {
                from: rng.range(lo, last + 1),
            }
        }
        730..=789 => {
            let from = if has {
                rng.range((b + 1).max(last.saturating_sub(30)), last + 1)
            } else {
                b + 1
            };
            Op::Replace {
                from,
                len: rng.range(0, 20),
                term,
            }
        }
        790..=849 if has || rng.chance(1, 4) => {
            let cutoff = if !has || rng.chance(1, 20) {
                last + rng.range(1, 5)
            } else {
                rng.range(b + 1, b + 1 + (last - b) / 2)
            };
            purge_op(m, cutoff, term, log).await?
        }
        850..=899 => {
            let voted_for = rng.chance(2, 3).then(|| VotedFor {
                voted_for_id: rng.range(1, 5),
                voted_for_term: term,
                committed: rng.chance(1, 2),
            });
            Op::Hard(HardState {
                current_term: term,
                voted_for,
            })
        }
        900..=929 => Op::Compact,
        930..=933 => Op::Reset,
        _ => Op::Flush,
    })
}

/// A purge at `index` whose log id never sorts below the current boundary, so "highest purged"
/// is unambiguous whichever way the engine orders log ids.
async fn purge_op(m: &Model, index: u64, term: u64, log: &TierLogStore) -> Result<Op, String> {
    let entry_term = log
        .entry(index)
        .await
        .map_err(|e| format!("entry({index}) before purge: {e}"))?
        .map_or(term, |e| e.term);
    let t = entry_term.max(m.boundary.map_or(0, |x| x.term));
    Ok(Op::Purge {
        cutoff: LogId::new(t, index),
    })
}

// ---------------------------------------------------------------------------------------------
// Parent: kill, reopen, compare.

#[derive(Default, Debug)]
struct Tally {
    kills: u64,
    acked: u64,
    in_flight_kept: u64,
    in_flight_dropped: u64,
    in_flight_either: u64,
    killed_during_open: u64,
    killed_mid_compaction: u64,
    killed_mid_purge: u64,
    killed_mid_truncate_or_replace: u64,
    killed_mid_append: u64,
    killed_mid_create_or_remove: u64,
    groups_created: u64,
    groups_removed: u64,
    /// Acknowledged truncates, `replace_range`s, purges and resets of a group while another group
    /// held entries (each then checked not to have touched that group at the next reopen).
    cuts_beside_other_groups: u64,
    /// Group logs compared after reopens.
    groups_verified: u64,
    verified_entries: u64,
    /// Reopens that found a compression dictionary in the store.
    with_dictionary: u64,
}

enum Trigger {
    /// Kill this long after spawning, whatever the child is doing (often inside open/recovery).
    Timer(Duration),
    /// Kill after this many lines, then a random delay below 500 µs.
    Lines(u64),
    /// Kill while a step with this tag is in flight.
    InFlight(&'static str),
}

fn parent_main() {
    let kills = env_u64("TIERLOG_CRASH_KILLS").unwrap_or(120);
    let seed = env_u64("TIERLOG_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(7, |d| d.as_nanos() as u64)
    });
    eprintln!("{TEST_NAME}: seed {seed} (replay with TIERLOG_CRASH_SEED={seed}), {kills} kills");
    let tmp = tempfile::tempdir().expect("tempdir");
    // TIERLOG_CRASH_DIR keeps the store (and a copy of it as the last kill left it, in
    // `<dir>.killed`) for a post-mortem.
    let keep = std::env::var_os("TIERLOG_CRASH_DIR").map(PathBuf::from);
    let dir = keep.clone().unwrap_or_else(|| tmp.path().join("store"));
    let exe = std::env::current_exe().expect("current_exe");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rng = Rng::new(seed);
    // A new directory holds group 0, empty.
    let mut model = Groups::from([(0, Model::default())]);
    let mut tally = Tally::default();
    let started = Instant::now();

    for round in 0..kills {
        let sync = rng.chance(1, 4);
        let trigger = match rng.below(11) {
            0 => Trigger::Timer(Duration::from_micros(rng.below(40_000))),
            1 => Trigger::InFlight("C"),
            2 => Trigger::InFlight("G"),
            3 => Trigger::InFlight(if rng.chance(1, 2) { "T" } else { "R" }),
            4 => Trigger::InFlight(if rng.chance(1, 2) { "N" } else { "D" }),
            _ => Trigger::Lines(rng.range(1, 600)),
        };
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, &dir)
            .env("TIERLOG_CRASH_SEED", seed.to_string())
            .env("TIERLOG_CRASH_TERM_BASE", ((round + 1) << 32).to_string())
            .env("TIERLOG_CRASH_SYNC", (sync as u8).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn crash child");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    // A line cut by the kill has no newline: it was never said.
                    Ok(0) | Err(_) => break,
                    Ok(_) if !line.ends_with('\n') => break,
                    Ok(_) => {
                        line.pop();
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });

        let spawned = Instant::now();
        let mut pending: Option<Step> = None;
        let mut opened = false;
        let mut lines = 0u64;
        let mut round_log: Vec<String> = Vec::new();
        let mut handle = |line: String,
                          pending: &mut Option<Step>,
                          model: &mut Groups,
                          opened: &mut bool,
                          tally: &mut Tally| {
            if keep.is_some() {
                round_log.push(line.clone());
            }
            if let Some(rest) = line.strip_prefix("B ") {
                let step = Step::decode(rest)
                    .unwrap_or_else(|| panic!("round {round}: bad line from child: {line:?}"));
                assert!(pending.is_none(), "round {round}: B while a step is pending");
                *pending = Some(step);
            } else if line == "A" {
                let step = pending
                    .take()
                    .unwrap_or_else(|| panic!("round {round}: A without B"));
                match &step {
                    Step::Create(g) if !model.contains_key(g) => tally.groups_created += 1,
                    Step::Remove(_) => tally.groups_removed += 1,
                    Step::On(g, Op::Truncate { .. } | Op::Replace { .. } | Op::Purge { .. } | Op::Reset)
                        if model.iter().any(|(o, m)| o != g && !m.entries.is_empty()) =>
                    {
                        tally.cuts_beside_other_groups += 1
                    }
                    _ => {}
                }
                step.apply(model)
                    .unwrap_or_else(|e| panic!("round {round}: acknowledged {e}"));
                tally.acked += 1;
            } else if line.starts_with("O ") {
                *opened = true;
            } else if let Some(msg) = line.strip_prefix("E ") {
                if let Some(k) = &keep {
                    let _ = std::fs::write(k.with_extension("failops"), round_log.join("\n"));
                }
                panic!("round {round} (seed {seed}): child failed: {msg}");
            } else {
                panic!("round {round}: unexpected line from child: {line:?}");
            }
        };
        loop {
            let wait = match trigger {
                Trigger::Timer(d) => d.saturating_sub(spawned.elapsed()),
                _ => Duration::from_secs(60),
            };
            match rx.recv_timeout(wait) {
                Ok(line) => {
                    lines += 1;
                    handle(line, &mut pending, &mut model, &mut opened, &mut tally);
                    let fire = match trigger {
                        Trigger::Lines(n) => lines >= n,
                        Trigger::InFlight(tag) => pending.as_ref().is_some_and(|p| p.tag() == tag),
                        Trigger::Timer(_) => false,
                    } || lines >= 3_000;
                    if fire {
                        busy_wait(Duration::from_micros(rng.below(500)));
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if matches!(trigger, Trigger::Timer(_)) {
                        break;
                    }
                    panic!("round {round}: child silent for 60 s");
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().expect("wait child");
                    panic!("round {round} (seed {seed}): child exited by itself: {status}");
                }
            }
        }
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("wait child");
        assert!(
            status.code().is_none(),
            "round {round} (seed {seed}): child ended on its own ({status})"
        );
        // Lines written before the kill are still in the pipe: they were acknowledged.
        while let Ok(line) = rx.recv() {
            handle(line, &mut pending, &mut model, &mut opened, &mut tally);
        }
        reader.join().expect("reader thread");
        tally.kills += 1;
        if !opened {
            tally.killed_during_open += 1;
        }
        match pending.as_ref().map(Step::tag) {
            Some("C") => tally.killed_mid_compaction += 1,
            Some("G") => tally.killed_mid_purge += 1,
            Some("T" | "R") => tally.killed_mid_truncate_or_replace += 1,
            Some("P") => tally.killed_mid_append += 1,
            Some("N" | "D") => tally.killed_mid_create_or_remove += 1,
            _ => {}
        }

        if let Some(k) = &keep {
            let copy = k.with_extension("killed");
            let prev = k.with_extension("prev");
            let _ = std::fs::remove_dir_all(&prev);
            let _ = std::fs::rename(&copy, &prev);
            copy_dir(&dir, &copy);
            let _ = std::fs::rename(k.with_extension("ops"), k.with_extension("prevops"));
            let _ = std::fs::write(k.with_extension("ops"), round_log.join("\n"));
        }
        let before = model.clone();
        let after = pending.as_ref().map(|step| {
            let mut m = model.clone();
            step.apply(&mut m)
                .unwrap_or_else(|e| panic!("round {round}: in flight {e}"));
            m
        });
        let outcome = rt.block_on(async {
            let engine = TieredEngine::open(&dir, config::tiny())
                .await
                .unwrap_or_else(|e| panic!("round {round} (seed {seed}): open after SIGKILL failed: {e}"));
            let with_dictionary = engine.stats().dictionary_bytes > 0;
            let r_before = check_groups(&engine, &before, seed).await;
            let r_after = match &after {
                Some(a) if r_before.is_err() => Some(check_groups(&engine, a, seed).await),
                _ => None,
            };
            drop(engine);
            (r_before, r_after, with_dictionary)
        });
        let (r_before, r_after, with_dictionary) = outcome;
        tally.with_dictionary += u64::from(with_dictionary);
        let outcome = (r_before, r_after);
        match outcome {
            (Ok(n), _) => {
                tally.verified_entries += n;
                tally.groups_verified += before.len() as u64;
                if let Some(a) = &after {
                    if *a == before {
                        tally.in_flight_either += 1;
                    } else {
                        tally.in_flight_dropped += 1;
                    }
                }
            }
            (Err(_), Some(Ok(n))) => {
                tally.verified_entries += n;
                tally.in_flight_kept += 1;
                model = after.expect("after state");
                tally.groups_verified += model.len() as u64;
            }
            (Err(eb), ra) => panic!(
                "round {round} (seed {seed}): after SIGKILL the store matches neither the state \
                 before the in-flight step ({eb}) nor after it ({}); in flight: {:?}",
                match ra {
                    Some(Err(ea)) => ea,
                    _ => "no step in flight".into(),
                },
                pending
            ),
        }
    }
    eprintln!(
        "{TEST_NAME}: {} kills survived in {:.1}s: {} ops acknowledged, {} group logs and {} entries \
         verified; groups created {}, removed {}, {} truncates/purges/resets beside another group's \
         entries; in flight at the kill: {} kept, {} dropped, {} no-ops; killed during open {}, \
         mid-compaction {}, mid-purge {}, mid-truncate/replace {}, mid-append {}, mid-create/remove \
         {}; final groups {:?}; {} reopens found a compression dictionary",
        tally.kills,
        started.elapsed().as_secs_f64(),
        tally.acked,
        tally.groups_verified,
        tally.verified_entries,
        tally.groups_created,
        tally.groups_removed,
        tally.cuts_beside_other_groups,
        tally.in_flight_kept,
        tally.in_flight_dropped,
        tally.in_flight_either,
        tally.killed_during_open,
        tally.killed_mid_compaction,
        tally.killed_mid_purge,
        tally.killed_mid_truncate_or_replace,
        tally.killed_mid_append,
        tally.killed_mid_create_or_remove,
        model
            .iter()
            .map(|(g, m)| (*g, m.last_index()))
            .collect::<Vec<_>>(),
        tally.with_dictionary,
    );
    // The tiny configuration trains a dictionary once 32 KiB are cold: the loop must reopen such
    // stores, not only stores without one.
    assert!(
        tally.kills < 50 || tally.with_dictionary > 0,
        "{TEST_NAME}: no reopen found a compression dictionary in {} kills",
        tally.kills
    );
    // A run long enough to matter must have removed a group and created one in its place.
    assert!(
        tally.kills < 50 || (tally.groups_removed > 0 && tally.groups_created > FIXED_GROUPS.len() as u64),
        "{TEST_NAME}: {} kills created {} groups and removed {}: the run never exercised both",
        tally.kills,
        tally.groups_created,
        tally.groups_removed
    );
}

fn busy_wait(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Compares the reopened store with `gs`, group by group; returns the number of entries compared.
async fn check_groups(engine: &TieredEngine, gs: &Groups, seed: u64) -> Result<u64, String> {
    let ids: Vec<GroupId> = gs.keys().copied().collect();
    if engine.groups() != ids {
        return Err(format!("groups() = {:?}, expected {ids:?}", engine.groups()));
    }
    for g in POOL {
        if gs.contains_key(&g) {
            continue;
        }
        match engine.group(g) {
            Err(Error::InvalidInput(_)) => {}
            Err(e) => {
                return Err(format!(
                    "group({g}) of a removed group: {e}, expected InvalidInput"
                ));
            }
            Ok(_) => return Err(format!("group({g}) exists, but it was removed or never created")),
        }
    }
    let mut n = 0;
    for (g, m) in gs {
        let (log, meta) = handles(engine, *g).map_err(|e| format!("group {g}: {e}"))?;
        n += check(&log, &meta, m, group_seed(seed, *g))
            .await
            .map_err(|e| format!("group {g}: {e}"))?;
    }
    Ok(n)
}

/// Compares one reopened group with `m`; returns the number of entries compared.
async fn check(log: &TierLogStore, meta: &TierMetaStore, m: &Model, seed: u64) -> Result<u64, String> {
    let last = log.last_index();
    if last != m.last_index() {
        return Err(format!("last_index {last}, expected {}", m.last_index()));
    }
    let boundary = log
        .load_purge_boundary()
        .map_err(|e| format!("load_purge_boundary: {e}"))?;
    if boundary != m.boundary {
        return Err(format!("purge boundary {boundary:?}, expected {:?}", m.boundary));
    }
    let hard = meta
        .load_hard_state()
        .map_err(|e| format!("load_hard_state: {e}"))?;
    if hard != m.hard {
        return Err(format!("hard state {hard:?}, expected {:?}", m.hard));
    }
    let got = log
        .get_entries(0..=last + 64)
        .map_err(|e| format!("get_entries: {e}"))?;
    let want = m.slice(0, last + 64, seed);
    if let Some(d) = diff_entries(&got, &want) {
        return Err(format!("get_entries(0..={}): {d}", last + 64));
    }
    // Point reads at the edges: the boundary itself, just past the end, first and last entries.
    let mut probes = vec![m.boundary_index(), last + 1];
    probes.extend(m.first_index());
    probes.push(last);
    for i in probes {
        let got = log.entry(i).await.map_err(|e| format!("entry({i}): {e}"))?;
        let want = m.entries.get(&i).map(|t| support::entry(i, *t, seed));
        if got != want {
            return Err(format!(
                "entry({i}) = {:?}, expected {:?}",
                got.map(|e| (e.index, e.term)),
                want.map(|e| (e.index, e.term))
            ));
        }
    }
    Ok(got.len() as u64)
}
