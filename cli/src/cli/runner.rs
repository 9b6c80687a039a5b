//! The state a workload drives: the open engine, the expected-content model, payload generation,
//! and per-phase recording of latencies and tier attribution.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde::Serialize;
use tierlog::{Entry, LogId, LogStore, Stats, TierLogStore, TieredEngine};

use super::CliResult;
use super::metrics::{Latency, Percentiles, Shared};
use super::model::Model;
use super::payload::{PayloadGen, Rng};

/// Shape of the writes.
#[derive(Clone, Debug, Serialize)]
pub struct Shape {
    /// Entries per `persist_entries` batch.
    pub batch: u64,
    /// Batches between two `flush()` calls.
    pub flush_every: u64,
    /// Entries per phase, if set on the command line (otherwise each phase's default).
    pub entries: Option<u64>,
}

/// Everything a phase needs.
pub struct Run {
    /// The engine under test.
    pub engine: TieredEngine,
    /// Its log handle.
    pub log: Arc<TierLogStore>,
    /// Payload generator.
    pub payloads: Arc<PayloadGen>,
    /// What the log should hold.
    pub model: Model,
    /// Current leader term.
    pub term: u64,
    /// Shared with the sampler.
    pub shared: Arc<Shared>,
    /// Workload randomness (read positions).
    pub rng: Rng,
    /// Write shape.
    pub shape: Shape,
    /// Whether progress bars are drawn.
    pub progress: bool,
}

/// Latencies of reads, split by the tier that served them.
#[derive(Clone, Debug, Default)]
pub struct TierLatency {
    /// Reads answered only from the hot ring.
    pub hot: Latency,
    /// Reads that touched at least one cold block.
    pub cold: Latency,
}

/// What one phase measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PhaseReport {
    /// Phase name.
    pub name: String,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Entries written by `persist_entries` / `replace_range`.
    pub entries_written: u64,
    /// Payload bytes written.
    pub bytes_written: u64,
    /// Seconds spent inside the engine's write calls (persist, replace, flush).
    pub write_seconds: f64,
    /// Entries written per second of engine write time.
    pub entries_per_sec: f64,
    /// Payload MB (10^6 bytes) written per second of engine write time.
    pub mb_per_sec: f64,
    /// Latency of `flush()` (one fdatasync, shared by all waiters).
    pub flush: Percentiles,
    /// Latency of one `persist_entries` call (without the flush).
    pub persist: Percentiles,
    /// Reads served from the hot ring only.
    pub read_hot: Percentiles,
    /// Reads that touched the cold tier.
    pub read_cold: Percentiles,
    /// Entries returned by reads.
    pub entries_read: u64,
    /// Entries returned per second of read time.
    pub read_entries_per_sec: f64,
    /// Entries the engine served from the hot ring during the phase.
    pub hot_reads: u64,
    /// Entries the engine served from cold blocks during the phase.
    pub cold_reads: u64,
    /// Block-cache hits during the phase.
    pub cache_hits: u64,
    /// Block-cache misses during the phase.
    pub cache_misses: u64,
    /// Purge calls.
    pub purges: u64,
    /// `replace_range` calls (simulated leader changes).
    pub replacements: u64,
    #[serde(skip)]
    pub(crate) flush_hist: Latency,
    #[serde(skip)]
    pub(crate) persist_hist: Latency,
    #[serde(skip)]
    pub(crate) read_hist: TierLatency,
    #[serde(skip)]
    pub(crate) read_time: Duration,
    #[serde(skip)]
    pub(crate) write_time: Duration,
}

impl PhaseReport {
    /// A report for phase `name`.
    pub fn new(name: &str) -> PhaseReport {
        PhaseReport {
            name: name.to_string(),
            ..PhaseReport::default()
        }
    }

    /// Derives the summary fields from the recorded samples and the stats before/after.
    pub fn finish(&mut self, wall: Duration, before: &Stats, after: &Stats) {
        self.seconds = wall.as_secs_f64();
        self.write_seconds = self.write_time.as_secs_f64();
        if self.write_seconds > 0.0 {
            self.entries_per_sec = self.entries_written as f64 / self.write_seconds;
            self.mb_per_sec = self.bytes_written as f64 / 1e6 / self.write_seconds;
        }
        let read_secs = self.read_time.as_secs_f64();
        if read_secs > 0.0 {
            self.read_entries_per_sec = self.entries_read as f64 / read_secs;
        }
        self.flush = self.flush_hist.percentiles();
        self.persist = self.persist_hist.percentiles();
        self.read_hot = self.read_hist.hot.percentiles();
        self.read_cold = self.read_hist.cold.percentiles();
        self.hot_reads = after.hot_reads.saturating_sub(before.hot_reads);
        self.cold_reads = after.cold_reads.saturating_sub(before.cold_reads);
        self.cache_hits = after.block_cache_hits.saturating_sub(before.block_cache_hits);
        self.cache_misses = after.block_cache_misses.saturating_sub(before.block_cache_misses);
    }

    /// Records a read of `n` entries that took `d`, attributed by the engine's counters.
    pub fn record_read(&mut self, d: Duration, n: u64, before: &Stats, after: &Stats) {
        self.read_time += d;
        self.entries_read += n;
        if after.cold_reads > before.cold_reads {
            self.read_hist.cold.record(d);
        } else {
            self.read_hist.hot.record(d);
        }
    }

    /// Merges another report's samples into this one (for the totals row).
    pub fn absorb(&mut self, other: &PhaseReport) {
        self.entries_written += other.entries_written;
        self.bytes_written += other.bytes_written;
        self.entries_read += other.entries_read;
        self.purges += other.purges;
        self.replacements += other.replacements;
        self.flush_hist.merge(&other.flush_hist);
        self.persist_hist.merge(&other.persist_hist);
        self.read_hist.hot.merge(&other.read_hist.hot);
        self.read_hist.cold.merge(&other.read_hist.cold);
        self.read_time += other.read_time;
        self.write_time += other.write_time;
    }
}

impl Run {
    /// Builds the entries `[from, from + n)` of the current term.
    pub fn make_entries(&self, from: u64, n: u64) -> (Vec<Entry>, u64) {
        let mut bytes = 0;
        let entries = (from..from + n)
            .map(|i| {
                let p = self.payloads.payload(i, self.term);
                bytes += p.len() as u64;
                Entry::new(i, self.term, p)
            })
            .collect();
        (entries, bytes)
    }

    /// Appends `n` entries at the end of the log.
    pub async fn append(&mut self, n: u64, rec: &mut PhaseReport) -> CliResult<()> {
        let from = self.model.last() + 1;
        let (entries, bytes) = self.make_entries(from, n);
        let t = Instant::now();
        self.log.persist_entries(entries).await?;
        let d = t.elapsed();
        rec.persist_hist.record(d);
        rec.write_time += d;
        self.model.write_tail(from, n, self.term);
        rec.entries_written += n;
        rec.bytes_written += bytes;
        self.shared.written.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Simulates a leader change: a new term overwrites the last `n` entries with `replace_range`.
    pub async fn leader_change(&mut self, n: u64, rec: &mut PhaseReport) -> CliResult<()> {
        self.term += 1;
        let from = self.model.last().saturating_sub(n - 1).max(self.model.first());
        let count = self.model.last() + 1 - from;
        let (entries, bytes) = self.make_entries(from, count);
        let t = Instant::now();
        self.log.replace_range(from, entries).await?;
        rec.write_time += t.elapsed();
        self.model.write_tail(from, count, self.term);
        rec.entries_written += count;
        rec.bytes_written += bytes;
        rec.replacements += 1;
        Ok(())
    }

    /// One group-commit `flush()`.
    pub fn flush(&self, rec: &mut PhaseReport) -> CliResult<()> {
        let t = Instant::now();
        self.log.flush()?;
        let d = t.elapsed();
        rec.flush_hist.record(d);
        rec.write_time += d;
        Ok(())
    }

    /// Purges every index `<= cutoff`.
    pub async fn purge(&mut self, cutoff: u64, rec: &mut PhaseReport) -> CliResult<()> {
        let term = self.model.term(cutoff).unwrap_or(self.term);
        self.log.purge(LogId::new(term, cutoff)).await?;
        self.model.purge(cutoff);
        rec.purges += 1;
        Ok(())
    }

    /// Reads one entry, checks it against the model, and records the latency by tier.
    pub async fn point_read(&mut self, index: u64, rec: &mut PhaseReport) -> CliResult<()> {
        let before = self.engine.stats();
        let t = Instant::now();
        let got = self.log.entry(index).await?;
        let d = t.elapsed();
        let after = self.engine.stats();
        rec.record_read(d, got.is_some() as u64, &before, &after);
        let want = self.model.term(index);
        match (got, want) {
            (Some(e), Some(term)) if e.index == index && e.term == term => {
                check_payload(&self.payloads, &e)?;
                Ok(())
            }
            (got, want) => Err(format!(
                "entry({index}) returned {:?}, expected term {want:?}",
                got.map(|e| (e.index, e.term))
            )
            .into()),
        }
    }

    /// A progress bar for a phase of `len` entries (hidden when progress is off).
    pub fn bar(&self, name: &str, len: u64) -> ProgressBar {
        phase_bar(&self.shared, self.progress, name, len)
    }
}

/// A progress bar for a phase of `len` entries, registered with the sampler as the current phase.
pub fn phase_bar(shared: &Shared, progress: bool, name: &str, len: u64) -> ProgressBar {
    let bar = if progress {
        ProgressBar::new(len)
    } else {
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden())
    };
    let style = ProgressStyle::with_template(
        "{prefix:>17} [{bar:28}] {human_pos:>10}/{human_len} {rate:>11} | {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = write!(w, "{:.0}/s", state.per_sec());
    })
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(name.to_string());
    *shared.phase.lock() = (name.to_string(), Some(bar.clone()));
    bar
}

/// Checks that an entry's payload is the one generated for its (index, term).
pub fn check_payload(payloads: &PayloadGen, e: &Entry) -> CliResult<()> {
    if payloads.payload(e.index, e.term) != e.payload {
        return Err(format!(
            "entry {} (term {}) has a payload of {} bytes that differs from what was written",
            e.index,
            e.term,
            e.payload.len()
        )
        .into());
    }
    Ok(())
}
