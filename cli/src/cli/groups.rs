//! `tierlog bench --workload many-groups`: many Raft groups in one engine (issue 11).
//!
//! Groups 1..=G are created in one engine (group 0, which always exists, stays empty) and written
//! concurrently by `--concurrency` writer tasks on the bench's two-thread tokio runtime (as a Raft
//! node drives its groups: tasks, not a thread per group), each cycling over every
//! `concurrency`-th group: a `--batch`-entry `persist_entries` then a `flush_async()`, so up to
//! `concurrency` flushes are in flight and share the write-ahead log's fdatasyncs (group commit). One group in ten has a
//! lagging follower that, in the second half of the run, reads the group's log from its oldest
//! retained entry in 4-batch ranges (faster than the group writes, so it catches up). Every group
//! purges its prefix once it holds more than half of what it will write plus an eighth, never past
//! what its lagging follower still has to read. At the end the engine is closed, reopened (timed),
//! and every group's retained entries are read back and compared.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use serde::Serialize;
use tierlog::{Config, Entry, LogId, LogStore, Stats, StorageEngine, TierLogStore, TieredEngine};
use tokio::runtime::Runtime;

use super::metrics::{Latency, Percentiles, Sampler, Shared};
use super::model::Model;
use super::payload::PayloadGen;
use super::report::{Disk, Memory};
use super::runner::{Shape, phase_bar};
use super::sys::{self, human_bytes};
use super::verify::check_log;
use super::workload::Workload;
use super::{BenchArgs, CliResult};

/// Entries written by all groups together when `--entries` is not given.
pub const DEFAULT_ENTRIES: u64 = 2_000_000;
/// Each group writes at least this many batches, however many groups share `--entries`.
pub const MIN_GROUP_BATCHES: u64 = 4;
/// One group in this many (groups 1, 11, 21, ...) has a lagging follower.
pub const LAG_EVERY: u64 = 10;
/// Batches a lagging follower reads per round (4x what its group writes).
const LAG_READ_BATCHES: u64 = 4;

/// Reads of the lagging followers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LagReads {
    /// Groups with a lagging follower.
    pub groups: u64,
    /// Entries they read.
    pub entries: u64,
    /// Latency of one range read.
    pub latency: Percentiles,
    /// Entries the engine served from the hot ring during the run (only these reads read).
    pub hot_reads: u64,
    /// Entries the engine served from cold blocks during the run.
    pub cold_reads: u64,
}

/// The reopen-and-check pass over every group.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GroupsVerification {
    /// True when every group matched what was written.
    pub ok: bool,
    /// Groups checked.
    pub groups_checked: u64,
    /// Entries read back and compared, all groups together.
    pub entries_checked: u64,
    /// Seconds `TieredEngine::open` took on the closed directory.
    pub reopen_seconds: f64,
    /// Seconds to read and check every group.
    pub check_seconds: f64,
    /// The first problem found, if any.
    pub error: Option<String>,
}

/// Everything `tierlog bench --workload many-groups` prints.
#[derive(Clone, Debug, Serialize)]
pub struct GroupsReport {
    /// Always many-groups.
    pub workload: Workload,
    /// Directory used.
    pub dir: String,
    /// Whether the directory is left in place.
    pub dir_kept: bool,
    /// Payload kind.
    pub payload: String,
    /// Requested (average) payload size.
    pub entry_size: usize,
    /// Batch shape (`flush_every` is always 1; `entries` is all groups together).
    pub shape: Shape,
    /// Seed of payloads.
    pub seed: u64,
    /// Engine configuration.
    pub config: Config,
    /// Groups written (ids 1..=groups).
    pub groups: u64,
    /// Writer threads (flushes in flight at most).
    pub concurrency: u64,
    /// Batches each group wrote.
    pub batches_per_group: u64,
    /// Wall-clock seconds of the write phase (all writers, lagging reads and purges included).
    pub seconds: f64,
    /// Entries written, all groups together.
    pub entries_written: u64,
    /// Payload bytes written.
    pub bytes_written: u64,
    /// Durable entries per wall-clock second, all groups together.
    pub entries_per_sec: f64,
    /// Payload MB (10^6 bytes) per wall-clock second.
    pub mb_per_sec: f64,
    /// Latency of one durable batch: `persist_entries` and its `flush()`.
    pub append: Percentiles,
    /// Latency of the `flush()` alone.
    pub flush: Percentiles,
    /// Write-ahead fdatasyncs during the write phase (`Stats::wal_syncs`).
    pub wal_syncs: u64,
    /// `wal_syncs` per second of the write phase.
    pub wal_syncs_per_sec: f64,
    /// Purge calls, all groups together.
    pub purges: u64,
    /// The lagging followers' reads.
    pub lag_reads: LagReads,
    /// Payload bytes the groups retain at the end.
    pub retained_logical_bytes: u64,
    /// Allocated bytes of the directory / `retained_logical_bytes`.
    pub disk_per_retained_byte: f64,
    /// Memory figures.
    pub memory: Memory,
    /// Disk figures at the end of the write phase.
    pub disk: Disk,
    /// The reopen-and-check pass.
    pub verification: GroupsVerification,
    /// `stats()` (all groups) just before the engine was closed.
    pub final_stats: Stats,
}

/// One group as a writer thread drives it.
struct GroupRun {
    id: u64,
    log: Arc<TierLogStore>,
    payloads: PayloadGen,
    model: Model,
    lagging: bool,
    /// The lagging follower's next index, once it started reading.
    follower: Option<u64>,
}

/// What one writer thread measured.
#[derive(Default)]
struct WriterOut {
    append: Latency,
    flush: Latency,
    read: Latency,
    entries: u64,
    bytes: u64,
    entries_read: u64,
    purges: u64,
}

/// Sizes every writer shares.
struct Plan {
    shared: Arc<Shared>,
    bar: ProgressBar,
    batch: u64,
    rounds: u64,
    /// Entries a group keeps after a purge.
    window: u64,
    /// Entries above the window that trigger a purge.
    step: u64,
}

/// The payload generator of group `id`.
fn group_payloads(base: &PayloadGen, id: u64) -> PayloadGen {
    base.reseeded(base.seed() ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Runs the workload (`bench::main` checked the arguments); `rt` is the runtime the engine's
/// async calls block on.
pub fn run(
    args: &BenchArgs,
    config: Config,
    dir: &Path,
    payloads: PayloadGen,
    dir_kept: bool,
    rt: &Runtime,
) -> CliResult<GroupsReport> {
    let progress = std::io::stderr().is_terminal();
    let groups = args.groups;
    let total = args.entries.unwrap_or(DEFAULT_ENTRIES);
    let rounds = total.div_ceil(args.batch * groups).max(MIN_GROUP_BATCHES);
    let workers = args.concurrency.min(groups);
    let shared = Arc::new(Shared::default());
    let sampler = Sampler::start(shared.clone(), Duration::from_millis(200));
    let engine = rt.block_on(TieredEngine::open(dir, config.clone()))?;
    *shared.engine.lock() = Some(engine.clone());

    let mut runs = Vec::with_capacity(groups as usize);
    for id in 1..=groups {
        runs.push(GroupRun {
            id,
            log: rt.block_on(engine.create_group(id))?.log_store(),
            payloads: group_payloads(&payloads, id),
            model: Model::new(),
            lagging: (id - 1) % LAG_EVERY == 0,
            follower: None,
        });
    }
    let lagging = runs.iter().filter(|g| g.lagging).count() as u64;
    // Writer w drives groups w+1, w+1+workers, ...
    let mut shares: Vec<Vec<GroupRun>> = (0..workers).map(|_| Vec::new()).collect();
    for (k, g) in runs.into_iter().enumerate() {
        shares[k % workers as usize].push(g);
    }
    let bar = phase_bar(&shared, progress, "many-groups", rounds * args.batch * groups);
    let plan = Arc::new(Plan {
        shared: shared.clone(),
        bar: bar.clone(),
        batch: args.batch,
        rounds,
        window: rounds.div_ceil(2) * args.batch,
        step: (rounds / 8).max(1) * args.batch,
    });
    let before = engine.stats();
    let start = Instant::now();
    let tasks: Vec<_> = shares
        .into_iter()
        .map(|share| rt.spawn(writer(plan.clone(), share)))
        .collect();
    let outs: Vec<CliResult<(WriterOut, Vec<GroupRun>)>> = tasks
        .into_iter()
        .map(|t| {
            rt.block_on(t)
                .unwrap_or_else(|e| Err(format!("a writer task failed: {e}").into()))
        })
        .collect();
    let wall = start.elapsed().as_secs_f64();
    bar.finish();
    let final_stats = engine.stats();
    let mut total_out = WriterOut::default();
    let mut groups_runs: Vec<GroupRun> = Vec::with_capacity(groups as usize);
    for out in outs {
        let (out, share) = out?;
        groups_runs.extend(share);
        total_out.append.merge(&out.append);
        total_out.flush.merge(&out.flush);
        total_out.read.merge(&out.read);
        total_out.entries += out.entries;
        total_out.bytes += out.bytes;
        total_out.entries_read += out.entries_read;
        total_out.purges += out.purges;
    }
    let syncs = final_stats.wal_syncs.saturating_sub(before.wal_syncs);
    let peak_rss_workload = sys::peak_rss_bytes();
    let disk = Disk::measure(&final_stats, dir);
    let retained: u64 = groups_runs
        .iter()
        .map(|g| {
            (g.model.first()..=g.model.last())
                .map(|i| g.payloads.payload(i, 1).len() as u64)
                .sum::<u64>()
        })
        .sum();

    // Close, reopen (timed) and read every group back.
    *shared.engine.lock() = None;
    let mut models = Vec::with_capacity(groups_runs.len());
    for g in groups_runs {
        models.push((g.id, g.model, g.payloads));
    }
    rt.block_on(engine.close())?;
    let t = Instant::now();
    let engine = rt.block_on(TieredEngine::open(dir, config.clone()))?;
    let reopen_seconds = t.elapsed().as_secs_f64();
    *shared.engine.lock() = Some(engine.clone());
    let verification = verify_groups(&engine, &models, &shared, progress, reopen_seconds)?;
    *shared.engine.lock() = None;
    rt.block_on(engine.close())?;
    let timeline = sampler.finish();

    let peak = sys::peak_rss_bytes();
    Ok(GroupsReport {
        workload: Workload::ManyGroups,
        dir: dir.display().to_string(),
        dir_kept,
        payload: payloads.label(),
        entry_size: args.entry_size,
        shape: Shape {
            batch: args.batch,
            flush_every: 1,
            entries: args.entries,
        },
        seed: args.seed,
        groups,
        concurrency: workers,
        batches_per_group: rounds,
        seconds: wall,
        entries_written: total_out.entries,
        bytes_written: total_out.bytes,
        entries_per_sec: total_out.entries as f64 / wall,
        mb_per_sec: total_out.bytes as f64 / 1e6 / wall,
        append: total_out.append.percentiles(),
        flush: total_out.flush.percentiles(),
        wal_syncs: syncs,
        wal_syncs_per_sec: syncs as f64 / wall,
        purges: total_out.purges,
        lag_reads: LagReads {
            groups: lagging,
            entries: total_out.entries_read,
            latency: total_out.read.percentiles(),
            hot_reads: final_stats.hot_reads.saturating_sub(before.hot_reads),
            cold_reads: final_stats.cold_reads.saturating_sub(before.cold_reads),
        },
        retained_logical_bytes: retained,
        disk_per_retained_byte: disk.dir_allocated_bytes as f64 / retained.max(1) as f64,
        memory: Memory {
            peak_rss_bytes: peak,
            peak_rss_workload_bytes: peak_rss_workload,
            max_sampled_rss_bytes: shared.max_rss.load(Ordering::Relaxed),
            budget_bytes: config.memory_budget_bytes,
            peak_rss_to_budget: peak as f64 / config.memory_budget_bytes as f64,
            at_sampled_peak: timeline
                .iter()
                .max_by_key(|s| s.rss)
                .map(|s| (s.rss, s.accounted)),
        },
        config,
        disk,
        verification,
        final_stats,
    })
}

/// One writer task: `rounds` rounds over its groups, each round a durable batch per group, the
/// lagging followers' reads and the purges.
async fn writer(plan: Arc<Plan>, mut groups: Vec<GroupRun>) -> CliResult<(WriterOut, Vec<GroupRun>)> {
    let mut out = WriterOut::default();
    for round in 0..plan.rounds {
        for g in groups.iter_mut() {
            let from = g.model.last() + 1;
            let mut bytes = 0;
            let entries: Vec<Entry> = (from..from + plan.batch)
                .map(|i| {
                    let p = g.payloads.payload(i, 1);
                    bytes += p.len() as u64;
                    Entry::new(i, 1, p)
                })
                .collect();
            let t = Instant::now();
            g.log.persist_entries(entries).await?;
            let f = Instant::now();
            g.log.flush_async().await?;
            out.flush.record(f.elapsed());
            out.append.record(t.elapsed());
            g.model.write_tail(from, plan.batch, 1);
            out.entries += plan.batch;
            out.bytes += bytes;
            plan.shared.written.fetch_add(plan.batch, Ordering::Relaxed);
            plan.bar.inc(plan.batch);

            if g.lagging && round >= plan.rounds / 2 {
                let pos = *g.follower.get_or_insert(g.model.first());
                if pos <= g.model.last() {
                    let hi = g.model.last().min(pos + LAG_READ_BATCHES * plan.batch - 1);
                    let t = Instant::now();
                    let got = g.log.get_entries(pos..=hi)?;
                    out.read.record(t.elapsed());
                    if got.len() as u64 != hi + 1 - pos
                        || got
                            .iter()
                            .zip(pos..)
                            .any(|(e, i)| e.index != i || e.payload != g.payloads.payload(i, 1))
                    {
                        return Err(format!(
                            "group {}: get_entries({pos}..={hi}) did not return what was written",
                            g.id
                        )
                        .into());
                    }
                    out.entries_read += got.len() as u64;
                    g.follower = Some(hi + 1);
                }
            }

            if g.model.len() > plan.window + plan.step {
                // A leader keeps what a follower still has to read.
                let keep_from = match g.follower {
                    Some(pos) if pos <= g.model.last() => pos,
                    _ => u64::MAX,
                };
                let upto = (g.model.last() - plan.window).min(keep_from.saturating_sub(1));
                if upto >= g.model.first() {
                    g.log.purge(LogId::new(1, upto)).await?;
                    g.model.purge(upto);
                    out.purges += 1;
                }
            }
        }
    }
    Ok((out, groups))
}

/// Reads every group of the reopened engine back and compares it with its model.
fn verify_groups(
    engine: &TieredEngine,
    models: &[(u64, Model, PayloadGen)],
    shared: &Shared,
    progress: bool,
    reopen_seconds: f64,
) -> CliResult<GroupsVerification> {
    let start = Instant::now();
    let total = models.iter().map(|(_, m, _)| m.len()).sum();
    let bar = phase_bar(shared, progress, "verify", total);
    let mut v = GroupsVerification {
        reopen_seconds,
        ..GroupsVerification::default()
    };
    v.ok = true;
    for (id, model, payloads) in models {
        let log = engine.group(*id)?.log_store();
        match check_log(&log, model, payloads, &bar, &mut v.entries_checked)? {
            Ok(()) => v.groups_checked += 1,
            Err(e) => {
                v.ok = false;
                v.error = Some(format!("group {id}: {e}"));
                break;
            }
        }
    }
    bar.finish();
    v.check_seconds = start.elapsed().as_secs_f64();
    Ok(v)
}

/// The human-readable report.
pub fn table(r: &GroupsReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\ntierlog bench: many-groups | {} groups, {} writer tasks | payload {} (~{} B) | batch {}, flush after each | {} batches per group | budget {} | dir {}{}\n",
        r.groups,
        r.concurrency,
        r.payload,
        r.entry_size,
        r.shape.batch,
        r.batches_per_group,
        human_bytes(r.config.memory_budget_bytes),
        r.dir,
        if r.dir_kept { "" } else { " (temporary, removed)" },
    );
    let lat = |p: &Percentiles| {
        if p.count == 0 {
            "-".to_string()
        } else {
            format!(
                "p50 {:.0} / p99 {:.0} / p99.9 {:.0} µs",
                p.p50_us, p.p99_us, p.p999_us
            )
        }
    };
    let _ = writeln!(
        out,
        "written        {} entries ({:.1} MB) in {:.1} s: {:.0} durable entries/s, {:.1} MB/s (wall clock, all groups)",
        r.entries_written,
        r.bytes_written as f64 / 1e6,
        r.seconds,
        r.entries_per_sec,
        r.mb_per_sec,
    );
    let _ = writeln!(out, "durable batch  {} (persist_entries + flush)", lat(&r.append));
    let _ = writeln!(out, "flush          {}", lat(&r.flush));
    let _ = writeln!(
        out,
        "fdatasyncs     {} ({:.0}/s, {:.1} durable batches per fdatasync)",
        r.wal_syncs,
        r.wal_syncs_per_sec,
        r.append.count as f64 / r.wal_syncs.max(1) as f64
    );
    let l = &r.lag_reads;
    let _ = writeln!(
        out,
        "lagging reads  {} groups read {} entries, {}; engine served {} entries hot, {} cold",
        l.groups,
        l.entries,
        lat(&l.latency),
        l.hot_reads,
        l.cold_reads,
    );
    let _ = writeln!(out, "purges         {}", r.purges);
    let m = &r.memory;
    let _ = writeln!(
        out,
        "memory         peak RSS {} (VmHWM, whole process; {} before the reopen), budget {}: peak / budget {:.2}x",
        human_bytes(m.peak_rss_bytes),
        human_bytes(m.peak_rss_workload_bytes),
        human_bytes(m.budget_bytes),
        m.peak_rss_to_budget,
    );
    let d = &r.disk;
    let _ = writeln!(
        out,
        "disk           directory {} allocated ({} write-ahead in {} segments, redb file {}); retained logical {}: {:.3} disk bytes per retained byte",
        human_bytes(d.dir_allocated_bytes),
        human_bytes(d.wal_bytes),
        d.wal_segments,
        human_bytes(d.redb_file_bytes),
        human_bytes(r.retained_logical_bytes),
        r.disk_per_retained_byte,
    );
    let v = &r.verification;
    let _ = writeln!(
        out,
        "verification   reopened in {:.0} ms; {} groups, {} entries read back and compared in {:.1} s: {}",
        v.reopen_seconds * 1000.0,
        v.groups_checked,
        v.entries_checked,
        v.check_seconds,
        match &v.error {
            None if v.ok => "OK".to_string(),
            None => "NOT RUN".to_string(),
            Some(e) => format!("FAILED: {e}"),
        }
    );
    out
}
