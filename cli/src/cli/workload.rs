//! The three workloads, each modelled on a real use of a Raft log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde::Serialize;
use tierlog::{LogStore, TierLogStore, TieredEngine};

use super::CliResult;
use super::payload::PayloadGen;
use super::runner::{PhaseReport, Run, check_payload};

/// Which workload `tierlog bench` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// A leader appending batches with a flush per batch (group commit), compaction running.
    LeaderAppend,
    /// A writer keeps appending while a lagging follower is fed old ranges, then the newest.
    FollowerCatchup,
    /// Millions of entries under a small memory budget, periodic prefix purge, random point reads.
    LongRetention,
    /// The three phases above in sequence, on one log.
    Mixed,
    /// `--groups` Raft groups in one engine, written concurrently: each appends batches with a
    /// flush after every batch, one group in ten has a lagging follower reading old ranges, every
    /// group purges its prefix behind a retained window (see `groups.rs`).
    ManyGroups,
}

/// Entries written by each phase when `--entries` is not given (sized for ~1 minute of `mixed`).
pub const DEFAULT_LEADER: u64 = 1_500_000;
/// See [`DEFAULT_LEADER`].
pub const DEFAULT_CATCHUP: u64 = 1_500_000;
/// See [`DEFAULT_LEADER`].
pub const DEFAULT_RETENTION: u64 = 4_000_000;
/// Entries a follower asks for per `get_entries` call (about one 1 MiB AppendEntries message).
const CATCHUP_CHUNK: u64 = 4096;
/// Batches between two simulated leader changes.
const LEADER_CHANGE_EVERY: u64 = 5000;

impl Workload {
    /// The phases this workload runs, in order.
    pub fn phases(self) -> Vec<Workload> {
        match self {
            Workload::Mixed => vec![
                Workload::LeaderAppend,
                Workload::FollowerCatchup,
                Workload::LongRetention,
            ],
            w => vec![w],
        }
    }

    /// The phase name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::LeaderAppend => "leader-append",
            Workload::FollowerCatchup => "follower-catchup",
            Workload::LongRetention => "long-retention",
            Workload::Mixed => "mixed",
            Workload::ManyGroups => "many-groups",
        }
    }
}

/// Runs one phase and returns what it measured.
pub async fn run_phase(run: &mut Run, phase: Workload) -> CliResult<PhaseReport> {
    let mut rec = PhaseReport::new(phase.name());
    let before = run.engine.stats();
    let start = Instant::now();
    match phase {
        Workload::LeaderAppend => leader_append(run, &mut rec).await?,
        Workload::FollowerCatchup => follower_catchup(run, &mut rec).await?,
        Workload::LongRetention => long_retention(run, &mut rec).await?,
        Workload::Mixed => return Err("mixed is not a single phase".into()),
        Workload::ManyGroups => return Err("many-groups is not a phase of one log".into()),
    }
    let after = run.engine.stats();
    rec.finish(start.elapsed(), &before, &after);
    Ok(rec)
}

fn batches(total: u64, batch: u64) -> impl Iterator<Item = (u64, u64)> {
    (0..total.div_ceil(batch)).map(move |k| (k, batch.min(total - k * batch)))
}

/// A leader: batches, a flush after every `flush_every` batches, a new term every quarter.
async fn leader_append(run: &mut Run, rec: &mut PhaseReport) -> CliResult<()> {
    let n = run.shape.entries.unwrap_or(DEFAULT_LEADER);
    let bar = run.bar("leader-append", n);
    let term_every = (n / 4).max(1);
    let mut since_term = 0;
    for (k, size) in batches(n, run.shape.batch) {
        if since_term >= term_every {
            run.term += 1; // a re-elected leader continues the log in a new term
            since_term = 0;
        }
        run.append(size, rec).await?;
        since_term += size;
        if (k + 1) % run.shape.flush_every == 0 {
            run.flush(rec)?;
        }
        bar.inc(size);
    }
    run.flush(rec)?;
    bar.finish();
    Ok(())
}

/// A writer appends (with occasional leader changes) while a follower that fell behind is fed
/// from the start of the log in `get_entries` chunks until it reaches the newest entries.
async fn follower_catchup(run: &mut Run, rec: &mut PhaseReport) -> CliResult<()> {
    let n = run.shape.entries.unwrap_or(DEFAULT_CATCHUP);
    if run.model.len() < n / 2 {
        // Standalone phase: build the backlog the follower missed and let it go cold.
        let backlog = n / 2 - run.model.len();
        let bar = run.bar("backlog", backlog);
        let mut scratch = PhaseReport::new("backlog");
        for (_, size) in batches(backlog, run.shape.batch) {
            run.append(size, &mut scratch).await?;
            bar.inc(size);
        }
        run.flush(&mut scratch)?;
        run.engine.compact_now().await?;
        bar.finish();
    }
    let bar = run.bar("follower-catchup", n);
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (engine, log, payloads, done) = (
            run.engine.clone(),
            run.log.clone(),
            run.payloads.clone(),
            done.clone(),
        );
        let from = run.model.first();
        std::thread::Builder::new()
            .name("follower-reader".into())
            .spawn(move || follower_reader(&engine, &log, &payloads, from, &done))
            .map_err(|e| format!("cannot start the reader thread: {e}"))?
    };
    let written = async {
        for (k, size) in batches(n, run.shape.batch) {
            if k > 0 && k % LEADER_CHANGE_EVERY == 0 {
                run.leader_change(16, rec).await?;
            }
            run.append(size, rec).await?;
            if (k + 1) % run.shape.flush_every == 0 {
                run.flush(rec)?;
            }
            bar.inc(size);
        }
        run.flush(rec)
    }
    .await;
    done.store(true, Ordering::Release);
    let read = reader.join().map_err(|_| "the reader thread panicked")?;
    written?;
    let read = read?;
    rec.read_hist = read.read_hist;
    rec.read_time = read.read_time;
    rec.entries_read = read.entries_read;
    bar.finish();
    Ok(())
}

/// The follower side: reads forward from `from` until the writer is done and the end is reached.
fn follower_reader(
    engine: &TieredEngine,
    log: &TierLogStore,
    payloads: &PayloadGen,
    from: u64,
    done: &AtomicBool,
) -> CliResult<PhaseReport> {
    let mut rec = PhaseReport::new("reader");
    let mut pos = from;
    loop {
        let finished = done.load(Ordering::Acquire);
        let last = log.last_index();
        if pos > last {
            if finished {
                return Ok(rec);
            }
            std::thread::sleep(Duration::from_micros(200)); // caught up: wait for the leader
            continue;
        }
        let hi = last.min(pos + CATCHUP_CHUNK - 1);
        let before = engine.stats();
        let t = Instant::now();
        let got = log.get_entries(pos..=hi)?;
        let d = t.elapsed();
        let after = engine.stats();
        rec.record_read(d, got.len() as u64, &before, &after);
        if got.is_empty() {
            return Err(format!("get_entries({pos}..={hi}) returned nothing below last_index {last}").into());
        }
        for (i, e) in got.iter().enumerate() {
            if e.index != pos + i as u64 {
                return Err(format!("get_entries({pos}..={hi}) is not contiguous at {}", e.index).into());
            }
            check_payload(payloads, e)?;
        }
        pos += got.len() as u64;
    }
}

/// Keeps a long history under a small memory budget: appends, purges the oldest quarter when the
/// log grows past the retention window, and reads random entries over the whole retained range.
async fn long_retention(run: &mut Run, rec: &mut PhaseReport) -> CliResult<()> {
    let n = run.shape.entries.unwrap_or(DEFAULT_RETENTION);
    let window = (n * 3 / 4).max(1);
    let purge_step = (n / 10).max(1);
    let bar = run.bar("long-retention", n);
    for (k, size) in batches(n, run.shape.batch) {
        run.append(size, rec).await?;
        if (k + 1) % run.shape.flush_every == 0 {
            run.flush(rec)?;
        }
        if run.model.len() > window + purge_step {
            let cutoff = run.model.last() - window;
            run.purge(cutoff, rec).await?;
        }
        if k % 16 == 15 {
            for _ in 0..16 {
                let (lo, hi) = (run.model.first(), run.model.last());
                let i = run.rng.range(lo, hi);
                run.point_read(i, rec).await?;
            }
        }
        bar.inc(size);
    }
    run.flush(rec)?;
    bar.finish();
    Ok(())
}
