//! The many-groups workload (issue 11): G Raft groups on one node, each appending 64-entry batches
//! that are durable one by one, driven by `concurrency` writer threads (each owns every
//! `concurrency`-th group and cycles over them, so that many durable appends are in flight at once
//! and a store with group commit can share one fdatasync among them). A tenth of the groups have a
//! lagging follower that reads old ranges in the second half of the run, and every group purges
//! its prefix behind a retained window (never past what its lagging follower still needs).
//!
//! Three ways to hold the groups: tierlog with G groups in one engine (`tierlog`), raft-engine with
//! G regions in one engine (`raft-engine`), and one tierlog directory and engine per group
//! (`tierlog-dirs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use raft_engine::{Config as ReConfig, Engine, LogBatch};
use tierlog::{Config, Entry, LogId, LogStore, StorageEngine, TierLogStore, TieredEngine};
use tokio::runtime::Runtime;

use crate::others::{EntryMsg, messages, payload_len};
use crate::payload::{PayloadGen, PayloadKind};
use crate::peer::{Ent, R, runtime};
use crate::workloads::{Lat, Outcome, Params, disk_bytes};

/// Each group writes at least this many batches, however many groups share `group_batches`.
pub const MIN_GROUP_BATCHES: u64 = 4;
/// One group in this many has a lagging follower (group 1, 11, 21, ...).
const LAG_EVERY: u64 = 10;
/// Batches a lagging follower reads per round (it reads 4x faster than the group writes).
const LAG_READ_BATCHES: u64 = 4;

/// The stores that can hold many groups.
pub const PEERS: [&str; 3] = ["tierlog", "raft-engine", "tierlog-dirs"];

/// What a store holding many Raft groups must do for this workload. Called from many threads.
pub trait Groups: Sync {
    /// Appends a contiguous batch to group `g`; it survives power loss when this returns.
    fn append(&self, g: u64, batch: &[Ent]) -> R<()>;
    /// Reads `[lo, hi]` of group `g`: (entries, payload bytes).
    fn read_range(&self, g: u64, lo: u64, hi: u64) -> R<(u64, u64)>;
    /// Removes every entry of group `g` up to `upto`.
    fn purge(&self, g: u64, upto: u64) -> R<()>;
    /// Engine-wide upkeep a node runs now and then (raft-engine: drop the files no region needs).
    fn housekeeping(&self) -> R<()> {
        Ok(())
    }
    /// Brings the store to its steady state before its disk is measured.
    fn settle(&mut self) -> R<()>;
    /// Write-ahead fdatasyncs so far.
    fn syncs(&self) -> u64;
    /// Memory budget of all engines together, 0 when the store has none.
    fn budget(&self) -> u64;
    /// Closes everything and opens it again from the directory.
    fn reopen(&mut self) -> R<()>;
}

/// Opens store `name` for `p.groups` groups in `dir`.
pub fn open(name: &str, dir: &Path, p: &Params) -> R<Box<dyn Groups>> {
    Ok(match name {
        "tierlog" => Box::new(TierlogGroups::open(dir, p.groups, p.groups_budget)?),
        "raft-engine" => Box::new(RaftEngineGroups::open(dir)?),
        "tierlog-dirs" => Box::new(TierlogDirs::open(dir, p.groups, p.groups_budget)?),
        other => return Err(format!("{other} cannot hold many groups (use one of {PEERS:?})").into()),
    })
}

fn entries(batch: &[Ent]) -> Vec<Entry> {
    batch
        .iter()
        .map(|e| Entry::new(e.index, e.term, e.payload.clone()))
        .collect()
}

/// Appends and flushes on one tierlog log (the flush joins whatever group commit is under way).
fn tierlog_append(rt: &Runtime, log: &TierLogStore, batch: &[Ent]) -> R<()> {
    rt.block_on(log.persist_entries(entries(batch)))?;
    log.flush()?;
    Ok(())
}

fn tierlog_read(log: &TierLogStore, lo: u64, hi: u64) -> R<(u64, u64)> {
    let got = log.get_entries(lo..=hi)?;
    Ok((got.len() as u64, got.iter().map(|e| e.payload.len() as u64).sum()))
}

fn tierlog_config(budget: u64) -> Config {
    Config {
        memory_budget_bytes: budget,
        ..Config::default()
    }
}

/// tierlog: groups 1..=G in one engine (group 0, which always exists, stays empty).
pub struct TierlogGroups {
    rt: Arc<Runtime>,
    dir: PathBuf,
    config: Config,
    groups: u64,
    engine: Option<TieredEngine>,
    /// Group `g`'s log at `g - 1`.
    logs: Vec<Arc<TierLogStore>>,
}

impl TierlogGroups {
    fn open(dir: &Path, groups: u64, budget: u64) -> R<TierlogGroups> {
        let rt = runtime()?;
        let config = tierlog_config(budget);
        let engine = rt.block_on(TieredEngine::open(dir, config.clone()))?;
        let mut logs = Vec::with_capacity(groups as usize);
        for g in 1..=groups {
            logs.push(rt.block_on(engine.create_group(g))?.log_store());
        }
        Ok(TierlogGroups {
            rt,
            dir: dir.to_path_buf(),
            config,
            groups,
            engine: Some(engine),
            logs,
        })
    }

    fn log(&self, g: u64) -> R<&TierLogStore> {
        Ok(self.logs.get((g - 1) as usize).ok_or("no such group")?)
    }

    fn engine(&self) -> R<&TieredEngine> {
        self.engine.as_ref().ok_or_else(|| "tierlog is closed".into())
    }
}

impl Groups for TierlogGroups {
    fn append(&self, g: u64, batch: &[Ent]) -> R<()> {
        tierlog_append(&self.rt, self.log(g)?, batch)
    }

    fn read_range(&self, g: u64, lo: u64, hi: u64) -> R<(u64, u64)> {
        tierlog_read(self.log(g)?, lo, hi)
    }

    fn purge(&self, g: u64, upto: u64) -> R<()> {
        Ok(self.rt.block_on(self.log(g)?.purge(LogId::new(1, upto)))?)
    }

    fn settle(&mut self) -> R<()> {
        Ok(self.rt.block_on(self.engine()?.compact_now())?)
    }

    fn syncs(&self) -> u64 {
        self.engine.as_ref().map_or(0, |e| e.stats().wal_syncs)
    }

    fn budget(&self) -> u64 {
        self.config.memory_budget_bytes
    }

    fn reopen(&mut self) -> R<()> {
        self.logs.clear();
        if let Some(engine) = self.engine.take() {
            self.rt.block_on(engine.close())?;
        }
        let engine = self
            .rt
            .block_on(TieredEngine::open(&self.dir, self.config.clone()))?;
        for g in 1..=self.groups {
            self.logs.push(engine.group(g)?.log_store());
        }
        self.engine = Some(engine);
        Ok(())
    }
}

/// raft-engine 0.4 with its default configuration: group `g` is region `g`, each append one
/// `LogBatch` written with `sync = true` (concurrent writers share a sync through raft-engine's
/// write group).
pub struct RaftEngineGroups {
    cfg: ReConfig,
    engine: Option<Engine>,
}

/// raft-engine's own count of its log fdatasyncs: the samples of its sync-duration histogram in
/// the process's default prometheus registry (one child process runs one store).
fn raft_engine_syncs() -> u64 {
    prometheus::gather()
        .iter()
        .filter(|f| f.get_name() == "raft_engine_sync_log_duration_seconds")
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_histogram().get_sample_count())
        .sum()
}

impl RaftEngineGroups {
    fn open(dir: &Path) -> R<RaftEngineGroups> {
        let cfg = ReConfig {
            dir: dir.display().to_string(),
            ..ReConfig::default()
        };
        let engine = Engine::open(cfg.clone())?;
        Ok(RaftEngineGroups {
            cfg,
            engine: Some(engine),
        })
    }

    fn engine(&self) -> R<&Engine> {
        self.engine.as_ref().ok_or_else(|| "raft-engine is closed".into())
    }
}

impl Groups for RaftEngineGroups {
    fn append(&self, g: u64, batch: &[Ent]) -> R<()> {
        let mut lb = LogBatch::default();
        lb.add_entries::<EntryMsg>(g, &messages(batch))?;
        self.engine()?.write(&mut lb, true)?;
        Ok(())
    }

    fn read_range(&self, g: u64, lo: u64, hi: u64) -> R<(u64, u64)> {
        let mut out = Vec::with_capacity((hi + 1 - lo) as usize);
        self.engine()?
            .fetch_entries_to::<EntryMsg>(g, lo, hi + 1, None, &mut out)?;
        Ok((out.len() as u64, out.iter().map(|e| payload_len(e) as u64).sum()))
    }

    fn purge(&self, g: u64, upto: u64) -> R<()> {
        // What TiKV does after a region's log is applied and snapshotted; the files go in
        // `housekeeping`, as TiKV's periodic purge task does.
        self.engine()?.compact_to(g, upto + 1);
        Ok(())
    }

    fn housekeeping(&self) -> R<()> {
        self.engine()?.purge_expired_files()?;
        Ok(())
    }

    fn settle(&mut self) -> R<()> {
        self.housekeeping()
    }

    fn syncs(&self) -> u64 {
        raft_engine_syncs()
    }

    fn budget(&self) -> u64 {
        0
    }

    fn reopen(&mut self) -> R<()> {
        self.engine = None;
        self.engine = Some(Engine::open(self.cfg.clone())?);
        Ok(())
    }
}

/// One tierlog directory and engine per group (`dir/g<id>`), each flushed on its own; the memory
/// budget is shared out, at least 1 MiB (the least `Config::validate` accepts) per engine.
pub struct TierlogDirs {
    rt: Arc<Runtime>,
    dir: PathBuf,
    config: Config,
    groups: u64,
    /// Group `g`'s engine and log at `g - 1`.
    engines: Vec<(TieredEngine, Arc<TierLogStore>)>,
}

impl TierlogDirs {
    fn open(dir: &Path, groups: u64, budget: u64) -> R<TierlogDirs> {
        let config = tierlog_config((budget / groups.max(1)).max(1 << 20));
        let mut dirs = TierlogDirs {
            rt: runtime()?,
            dir: dir.to_path_buf(),
            config,
            groups,
            engines: Vec::new(),
        };
        dirs.open_all()?;
        Ok(dirs)
    }

    fn open_all(&mut self) -> R<()> {
        for g in 1..=self.groups {
            let engine = self.rt.block_on(TieredEngine::open(
                self.dir.join(format!("g{g}")),
                self.config.clone(),
            ))?;
            let log = engine.log_store();
            self.engines.push((engine, log));
        }
        Ok(())
    }

    fn log(&self, g: u64) -> R<&TierLogStore> {
        Ok(&self.engines.get((g - 1) as usize).ok_or("no such group")?.1)
    }
}

impl Groups for TierlogDirs {
    fn append(&self, g: u64, batch: &[Ent]) -> R<()> {
        tierlog_append(&self.rt, self.log(g)?, batch)
    }

    fn read_range(&self, g: u64, lo: u64, hi: u64) -> R<(u64, u64)> {
        tierlog_read(self.log(g)?, lo, hi)
    }

    fn purge(&self, g: u64, upto: u64) -> R<()> {
        Ok(self.rt.block_on(self.log(g)?.purge(LogId::new(1, upto)))?)
    }

    fn settle(&mut self) -> R<()> {
        for (engine, _) in &self.engines {
            self.rt.block_on(engine.compact_now())?;
        }
        Ok(())
    }

    fn syncs(&self) -> u64 {
        self.engines.iter().map(|(e, _)| e.stats().wal_syncs).sum()
    }

    fn budget(&self) -> u64 {
        self.config.memory_budget_bytes * self.groups
    }

    fn reopen(&mut self) -> R<()> {
        for (engine, log) in self.engines.drain(..) {
            drop(log);
            self.rt.block_on(engine.close())?;
        }
        self.open_all()
    }
}

/// One group's place in the workload.
struct GroupState {
    id: u64,
    first: u64,
    last: u64,
    lagging: bool,
    /// The lagging follower's next index, once it started reading.
    follower: Option<u64>,
}

/// What one writer thread measured.
#[derive(Default)]
struct WorkerOut {
    append: Option<Lat>,
    read: Option<Lat>,
    entries: u64,
    entries_read: u64,
    groups: Vec<GroupState>,
}

/// The sizes every writer thread shares.
struct Plan<'a> {
    store: &'a dyn Groups,
    payloads: &'a PayloadGen,
    batch: u64,
    rounds: u64,
    window: u64,
    step: u64,
    entry_size: u64,
}

/// Writer thread `w` of `workers`: cycles over groups `w + 1, w + 1 + workers, ...` for `rounds`
/// rounds; worker 0 also runs the store's housekeeping once per round.
fn writer(plan: &Plan, w: u64, workers: u64, groups: u64) -> R<WorkerOut> {
    let mut states: Vec<GroupState> = (w + 1..=groups)
        .step_by(workers as usize)
        .map(|id| GroupState {
            id,
            first: 1,
            last: 0,
            lagging: (id - 1) % LAG_EVERY == 0,
            follower: None,
        })
        .collect();
    let (mut append, mut read) = (Lat::new(), Lat::new());
    let (mut written, mut entries_read) = (0, 0);
    let store = plan.store;
    for round in 0..plan.rounds {
        for st in &mut states {
            // The payload depends on the group too (its id takes the place of the term in the
            // generator's seed), so groups do not hold identical logs.
            let batch: Vec<Ent> = (st.last + 1..=st.last + plan.batch)
                .map(|index| Ent {
                    index,
                    term: 1,
                    payload: plan.payloads.payload(index, st.id),
                })
                .collect();
            let t = Instant::now();
            store.append(st.id, &batch)?;
            append.rec(t.elapsed());
            st.last += plan.batch;
            written += plan.batch;

            if st.lagging && round >= plan.rounds / 2 {
                let pos = *st.follower.get_or_insert(st.first);
                if pos <= st.last {
                    let hi = st.last.min(pos + LAG_READ_BATCHES * plan.batch - 1);
                    let t = Instant::now();
                    let got = store.read_range(st.id, pos, hi)?;
                    read.rec(t.elapsed());
                    let want = hi + 1 - pos;
                    if got != (want, want * plan.entry_size) {
                        return Err(format!(
                            "group {}: range {pos}..={hi} returned {got:?}, expected {want} entries",
                            st.id
                        )
                        .into());
                    }
                    entries_read += want;
                    st.follower = Some(hi + 1);
                }
            }

            if st.last + 1 - st.first > plan.window + plan.step {
                // A leader keeps what a follower still has to read.
                let keep_from = match st.follower {
                    Some(pos) if pos <= st.last => pos,
                    _ => u64::MAX,
                };
                let upto = (st.last - plan.window).min(keep_from.saturating_sub(1));
                if upto >= st.first {
                    store.purge(st.id, upto)?;
                    st.first = upto + 1;
                }
            }
        }
        if w == 0 {
            store.housekeeping()?;
        }
    }
    Ok(WorkerOut {
        append: Some(append),
        read: Some(read),
        entries: written,
        entries_read,
        groups: states,
    })
}

/// Runs the workload on `store` (opened for `p.groups` groups in `dir`).
pub fn many_groups(store: &mut dyn Groups, p: &Params, dir: &Path) -> R<Outcome> {
    let groups = p.groups.max(1);
    let rounds = p.group_batches.div_ceil(groups).max(MIN_GROUP_BATCHES);
    let workers = p.concurrency.clamp(1, groups);
    let payloads = PayloadGen::new(PayloadKind::parse(&p.payload)?, p.seed, p.entry_size)?.exact_size();
    // Retain the newest half of what a group writes; purge a further eighth at a time.
    let window = rounds.div_ceil(2) * p.batch;
    let step = (rounds / 8).max(1) * p.batch;
    let plan = Plan {
        store: &*store,
        payloads: &payloads,
        batch: p.batch,
        rounds,
        window,
        step,
        entry_size: p.entry_size as u64,
    };
    let syncs_before = store.syncs();
    let start = Instant::now();
    let outs: Vec<R<WorkerOut>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let plan = &plan;
                s.spawn(move || writer(plan, w, workers, groups))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a writer thread panicked".into()))
            })
            .collect()
    });
    let wall = start.elapsed();
    let syncs = store.syncs().saturating_sub(syncs_before);
    let (mut append, mut read) = (Lat::new(), Lat::new());
    let (mut entries, mut entries_read) = (0, 0);
    let mut states = Vec::new();
    for out in outs {
        let mut out = out?;
        if let Some(l) = out.append.take() {
            append.merge(&l);
        }
        if let Some(l) = out.read.take() {
            read.merge(&l);
        }
        entries += out.entries;
        entries_read += out.entries_read;
        states.append(&mut out.groups);
    }
    store.settle()?;
    let disk = disk_bytes(dir);
    let retained: u64 = states.iter().map(|s| s.last + 1 - s.first).sum();

    let t = Instant::now();
    store.reopen()?;
    let reopen = t.elapsed();
    // Every group's first retained and last entry are there after the reopen.
    for st in &states {
        for i in [st.first, st.last] {
            let got = store.read_range(st.id, i, i)?;
            if got != (1, p.entry_size as u64) {
                return Err(format!("group {} entry {i} read back after reopen as {got:?}", st.id).into());
            }
        }
    }
    Ok(Outcome {
        entries,
        entries_per_sec: entries as f64 / wall.as_secs_f64(),
        p50_us: append.us(0.5),
        p99_us: append.us(0.99),
        reopen_ms: reopen.as_secs_f64() * 1e3,
        disk_bytes: disk,
        logical_bytes: retained * p.entry_size as u64,
        groups,
        concurrency: workers,
        syncs_per_sec: Some(syncs as f64 / wall.as_secs_f64()),
        budget: store.budget(),
        entries_read,
        lag_read_p50_us: if entries_read > 0 { read.us(0.5) } else { 0.0 },
        lag_read_p99_us: if entries_read > 0 { read.us(0.99) } else { 0.0 },
        ..Outcome::default()
    })
}
