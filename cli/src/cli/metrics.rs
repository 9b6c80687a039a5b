//! Latency histograms and the background sampler that records the timeline (for `--plot`) and
//! the sampled RSS.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use parking_lot::Mutex;
use serde::Serialize;
use tierlog::{Stats, TieredEngine};

use super::sys;

/// A latency histogram in nanoseconds (1 ns .. 100 s, 3 significant digits).
#[derive(Clone, Debug)]
pub struct Latency(Histogram<u64>);

/// Percentiles of one histogram, in microseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    /// Samples recorded.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest sample.
    pub max_us: f64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Latency {
        // The bounds are constants that hdrhistogram accepts, so this cannot fail.
        Latency(Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds"))
    }

    /// Records one duration (saturating at the upper bound).
    pub fn record(&mut self, d: Duration) {
        self.0.saturating_record(d.as_nanos().max(1) as u64);
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// The percentiles in microseconds.
    pub fn percentiles(&self) -> Percentiles {
        let us = |q: f64| self.0.value_at_quantile(q) as f64 / 1000.0;
        Percentiles {
            count: self.0.len(),
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: self.0.max() as f64 / 1000.0,
        }
    }
}

/// One timeline point.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Seconds since the run started.
    pub t: f64,
    /// Entries written so far (all phases).
    pub written: u64,
    /// Resident set size.
    pub rss: u64,
    /// Hot-ring bytes.
    pub hot_bytes: u64,
    /// Compressed cold bytes.
    pub cold_stored_bytes: u64,
    /// The engine's memory accounting at that moment.
    pub accounted: Accounted,
    /// Phase running at that moment.
    pub phase: String,
}

/// What the engine accounts for in its memory budget (from `stats()`).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Accounted {
    /// Hot ring (payloads plus per-entry overhead).
    pub ring_bytes: u64,
    /// Decompressed blocks in the cache.
    pub block_cache_bytes: u64,
    /// redb's page cache limit.
    pub redb_cache_bytes: u64,
    /// Block index.
    pub block_index_bytes: u64,
    /// Set aside for a compaction round.
    pub compaction_reserve_bytes: u64,
    /// Set aside for what no counter sees (allocator slack, blocks readers hold).
    pub unseen_reserve_bytes: u64,
}

impl Accounted {
    /// The figures of `s`.
    pub fn of(s: &Stats) -> Accounted {
        Accounted {
            ring_bytes: s.hot_bytes,
            block_cache_bytes: s.block_cache_bytes,
            redb_cache_bytes: s.redb_cache_bytes,
            block_index_bytes: s.block_index_bytes,
            compaction_reserve_bytes: s.compaction_reserve_bytes,
            unseen_reserve_bytes: s.unseen_reserve_bytes,
        }
    }

    /// What the engine counts as held: everything but the reserve for what it cannot see.
    pub fn total(&self) -> u64 {
        self.ring_bytes
            + self.block_cache_bytes
            + self.redb_cache_bytes
            + self.block_index_bytes
            + self.compaction_reserve_bytes
    }
}

/// What the sampler shares with the workload.
#[derive(Default)]
pub struct Shared {
    /// Entries written so far, across phases.
    pub written: AtomicU64,
    /// Current phase name and its progress bar.
    pub phase: Mutex<(String, Option<ProgressBar>)>,
    /// Largest RSS seen by the sampler.
    pub max_rss: AtomicU64,
    /// The engine currently open (replaced on reopen).
    pub engine: Mutex<Option<TieredEngine>>,
}

/// Samples RSS and engine figures every `period` on its own thread.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Sample>>>,
}

impl Sampler {
    /// Starts sampling.
    pub fn start(shared: Arc<Shared>, period: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("tierlog-sampler".into())
            .spawn(move || sample_loop(&shared, &stop2, period))
            .ok();
        Sampler { stop, handle }
    }

    /// Stops sampling and returns the timeline.
    pub fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| {
                h.thread().unpark();
                h.join().ok()
            })
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        // On an early error return the thread must not outlive the run (it holds an engine handle).
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

fn sample_loop(shared: &Shared, stop: &AtomicBool, period: Duration) -> Vec<Sample> {
    let start = Instant::now();
    let mut out = Vec::new();
    // While the engine is closed for the reopen, the tiers still hold what they held.
    let mut last_stats = Stats::default();
    loop {
        // Checked before sampling, so a stopped run still gets its closing sample.
        let last = stop.load(Ordering::Relaxed);
        let rss = sys::rss_bytes();
        shared.max_rss.fetch_max(rss, Ordering::Relaxed);
        let stats = shared.engine.lock().as_ref().map(TieredEngine::stats);
        let (phase, bar) = shared.phase.lock().clone();
        let stats = stats.unwrap_or_else(|| last_stats.clone());
        if let Some(bar) = bar {
            bar.set_message(tier_message(&stats, rss));
        }
        out.push(Sample {
            t: start.elapsed().as_secs_f64(),
            written: shared.written.load(Ordering::Relaxed),
            rss,
            hot_bytes: stats.hot_bytes,
            cold_stored_bytes: stats.cold_stored_bytes,
            accounted: Accounted::of(&stats),
            phase,
        });
        last_stats = stats;
        if last {
            return out;
        }
        std::thread::park_timeout(period);
    }
}

/// The progress-bar message: tier sizes and memory.
pub fn tier_message(s: &Stats, rss: u64) -> String {
    format!(
        "hot {} ({} entries) | cold {} in {} blocks | rss {}",
        sys::human_bytes(s.hot_bytes),
        s.hot_entries,
        sys::human_bytes(s.cold_stored_bytes),
        s.cold_blocks,
        sys::human_bytes(rss)
    )
}
