//! The bench report: one struct, printed as a table or as JSON.

use std::fmt::Write;

use serde::Serialize;
use tierlog::{Config, Stats};

use super::metrics::{Accounted, Percentiles, Sample};
use super::runner::{PhaseReport, Shape};
use super::sys::human_bytes;
use super::verify::Verification;
use super::workload::Workload;

/// Figures about the two tiers at the end of the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Tiers {
    /// Entries served from the hot ring (whole run).
    pub hot_reads: u64,
    /// Entries served from cold blocks (whole run).
    pub cold_reads: u64,
    /// Block-cache hits.
    pub cache_hits: u64,
    /// Block-cache misses.
    pub cache_misses: u64,
    /// hits / (hits + misses), 0 when there was no cold lookup.
    pub cache_hit_ratio: f64,
    /// Uncompressed / stored bytes of the cold blocks.
    pub compression_ratio: f64,
    /// Cold blocks at the end.
    pub cold_blocks: u64,
    /// Uncompressed bytes of the cold blocks.
    pub cold_raw_bytes: u64,
    /// Stored (compressed) bytes of the cold blocks.
    pub cold_stored_bytes: u64,
    /// Entries in the hot ring at the end.
    pub hot_entries: u64,
    /// Bytes of the hot ring at the end.
    pub hot_bytes: u64,
    /// Compaction rounds.
    pub compactions: u64,
    /// Times a writer waited for the compactor.
    pub backpressure_waits: u64,
}

/// Memory use against the budget.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Memory {
    /// Peak RSS of the whole process (`VmHWM`), including the bench's own buffers.
    pub peak_rss_bytes: u64,
    /// Peak RSS when the workload ended, before the engine was closed and reopened for verification.
    pub peak_rss_workload_bytes: u64,
    /// Largest RSS seen by the sampler.
    pub max_sampled_rss_bytes: u64,
    /// The engine's configured memory budget.
    pub budget_bytes: u64,
    /// `peak_rss_bytes / budget_bytes`.
    pub peak_rss_to_budget: f64,
    /// The sample with the largest RSS: that RSS and the engine's accounting at that moment; the
    /// difference is what the accounting does not see (allocator, threads, the bench's own data).
    pub at_sampled_peak: Option<(u64, Accounted)>,
}

/// Bytes on disk at the end (before the verification reopen).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Disk {
    /// Write-ahead segment files.
    pub wal_bytes: u64,
    /// Write-ahead segment count.
    pub wal_segments: u64,
    /// The redb file.
    pub redb_file_bytes: u64,
    /// Live compressed bytes in cold blocks.
    pub cold_live_bytes: u64,
    /// Whole directory, apparent size.
    pub dir_apparent_bytes: u64,
    /// Whole directory, allocated blocks.
    pub dir_allocated_bytes: u64,
}

impl Disk {
    /// The engine's figures from `stats` beside what the directory `dir` takes on disk.
    pub fn measure(stats: &Stats, dir: &std::path::Path) -> Disk {
        let (apparent, allocated) = super::sys::dir_bytes(dir);
        Disk {
            wal_bytes: stats.wal_bytes,
            wal_segments: stats.wal_segments,
            redb_file_bytes: stats.redb_file_bytes,
            cold_live_bytes: stats.cold_stored_bytes,
            dir_apparent_bytes: apparent,
            dir_allocated_bytes: allocated,
        }
    }
}

/// Everything `tierlog bench` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Workload run.
    pub workload: Workload,
    /// Directory used.
    pub dir: String,
    /// Whether the directory is left in place (false for the default temporary directory).
    pub dir_kept: bool,
    /// Payload kind.
    pub payload: String,
    /// Requested (average) payload size.
    pub entry_size: usize,
    /// Batch shape.
    pub shape: Shape,
    /// Seed of payloads and read positions.
    pub seed: u64,
    /// Engine configuration.
    pub config: Config,
    /// One entry per phase.
    pub phases: Vec<PhaseReport>,
    /// All phases together.
    pub total: PhaseReport,
    /// Tier figures.
    pub tiers: Tiers,
    /// Memory figures.
    pub memory: Memory,
    /// Disk figures.
    pub disk: Disk,
    /// The reopen-and-check pass.
    pub verification: Verification,
    /// `stats()` just before the engine was closed.
    pub final_stats: Stats,
    /// Samples every 200 ms (for plotting).
    pub timeline: Vec<Sample>,
}

impl Tiers {
    /// Builds the tier figures from the last stats snapshot.
    pub fn from_stats(s: &Stats) -> Tiers {
        let lookups = s.block_cache_hits + s.block_cache_misses;
        Tiers {
            hot_reads: s.hot_reads,
            cold_reads: s.cold_reads,
            cache_hits: s.block_cache_hits,
            cache_misses: s.block_cache_misses,
            cache_hit_ratio: if lookups == 0 {
                0.0
            } else {
                s.block_cache_hits as f64 / lookups as f64
            },
            compression_ratio: if s.cold_stored_bytes == 0 {
                0.0
            } else {
                s.cold_raw_bytes as f64 / s.cold_stored_bytes as f64
            },
            cold_blocks: s.cold_blocks,
            cold_raw_bytes: s.cold_raw_bytes,
            cold_stored_bytes: s.cold_stored_bytes,
            hot_entries: s.hot_entries,
            hot_bytes: s.hot_bytes,
            compactions: s.compactions,
            backpressure_waits: s.backpressure_waits,
        }
    }
}

fn lat(p: &Percentiles, three: bool) -> String {
    if p.count == 0 {
        return "-".into();
    }
    if three {
        format!("{:.0}/{:.0}/{:.0}", p.p50_us, p.p99_us, p.p999_us)
    } else {
        format!("{:.0}/{:.0}", p.p50_us, p.p99_us)
    }
}

fn row(out: &mut String, p: &PhaseReport) {
    let _ = writeln!(
        out,
        "{:<17} {:>10} {:>8.1} {:>11.0} {:>7.1} {:>18} {:>13} {:>13} {:>11} {:>11}",
        p.name,
        p.entries_written,
        p.seconds,
        p.entries_per_sec,
        p.mb_per_sec,
        lat(&p.flush, true),
        lat(&p.read_hot, false),
        lat(&p.read_cold, false),
        p.hot_reads,
        p.cold_reads,
    );
}

/// The human-readable table.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\ntierlog bench: {} | payload {} (~{} B) | batch {} | flush every {} batch(es) | budget {} | dir {}{}",
        r.workload.name(),
        r.payload,
        r.entry_size,
        r.shape.batch,
        r.shape.flush_every,
        human_bytes(r.config.memory_budget_bytes),
        r.dir,
        if r.dir_kept { "" } else { " (temporary, removed)" },
    );
    let _ = writeln!(
        out,
        "\n{:<17} {:>10} {:>8} {:>11} {:>7} {:>18} {:>13} {:>13} {:>11} {:>11}",
        "phase",
        "written",
        "wall s",
        "entries/s",
        "MB/s",
        "flush p50/99/999",
        "read hot",
        "read cold",
        "hot reads",
        "cold reads"
    );
    for p in &r.phases {
        row(&mut out, p);
    }
    if r.phases.len() > 1 {
        row(&mut out, &r.total);
    }
    let _ = writeln!(
        out,
        "(entries/s and MB/s count time inside persist_entries/replace_range/flush; latencies in µs;\n \
         read hot/cold = p50/p99 per read call, a call is 'cold' if the engine served any entry of it from a cold block)"
    );
    let t = &r.tiers;
    let served = (t.hot_reads + t.cold_reads).max(1) as f64;
    let _ = writeln!(
        out,
        "\nreads served   hot {} ({:.1}%), cold {} ({:.1}%); block cache hit ratio {:.1}% ({} hits, {} misses)",
        t.hot_reads,
        100.0 * t.hot_reads as f64 / served,
        t.cold_reads,
        100.0 * t.cold_reads as f64 / served,
        100.0 * t.cache_hit_ratio,
        t.cache_hits,
        t.cache_misses,
    );
    let _ = writeln!(
        out,
        "cold tier      {} blocks, {} raw -> {} stored: compression {:.2}x; {} compactions, {} back-pressure waits",
        t.cold_blocks,
        human_bytes(t.cold_raw_bytes),
        human_bytes(t.cold_stored_bytes),
        t.compression_ratio,
        t.compactions,
        t.backpressure_waits,
    );
    let _ = writeln!(
        out,
        "hot tier       {} entries, {} at the end",
        t.hot_entries,
        human_bytes(t.hot_bytes)
    );
    let m = &r.memory;
    let _ = writeln!(
        out,
        "memory         peak RSS {} (VmHWM, whole process; {} before the verification reopen), sampled max {}, engine budget {}",
        human_bytes(m.peak_rss_bytes),
        human_bytes(m.peak_rss_workload_bytes),
        human_bytes(m.max_sampled_rss_bytes),
        human_bytes(m.budget_bytes),
    );
    if let Some((rss, a)) = &m.at_sampled_peak {
        let _ = writeln!(
            out,
            "               peak / budget {:.2}x; at the sampled peak ({}) the engine accounted {}: ring {}, block cache {}, \
             redb cache {}, block index {}, compaction reserve {} (+ {} set aside for what it cannot see); not accounted {}",
            m.peak_rss_to_budget,
            human_bytes(*rss),
            human_bytes(a.total()),
            human_bytes(a.ring_bytes),
            human_bytes(a.block_cache_bytes),
            human_bytes(a.redb_cache_bytes),
            human_bytes(a.block_index_bytes),
            human_bytes(a.compaction_reserve_bytes),
            human_bytes(a.unseen_reserve_bytes),
            human_bytes(rss.saturating_sub(a.total())),
        );
    }
    let d = &r.disk;
    let _ = writeln!(
        out,
        "disk           write-ahead {} in {} segments, redb file {} ({} fragmented, {} of it free pages; {} reclamations gave back {}, longest pause {:.1} ms), live cold {}, directory {} ({} allocated)",
        human_bytes(d.wal_bytes),
        d.wal_segments,
        human_bytes(d.redb_file_bytes),
        human_bytes(r.final_stats.redb_fragmented_bytes),
        human_bytes(r.final_stats.redb_free_bytes),
        r.final_stats.reclamations,
        human_bytes(r.final_stats.reclaimed_bytes),
        r.final_stats.reclaim_pause_max_us as f64 / 1000.0,
        human_bytes(d.cold_live_bytes),
        human_bytes(d.dir_apparent_bytes),
        human_bytes(d.dir_allocated_bytes),
    );
    let v = &r.verification;
    let _ = writeln!(
        out,
        "verification   reopened in {:.0} ms; {} entries ({}..={}) read back and compared in {:.1} s: {}",
        v.reopen_seconds * 1000.0,
        v.entries_checked,
        v.first_index,
        v.last_index,
        v.check_seconds,
        match &v.error {
            None if v.ok =>
                "OK, every retained entry matches what was written, purged entries stay gone".to_string(),
            None => "NOT RUN".to_string(),
            Some(e) => format!("FAILED: {e}"),
        }
    );
    out
}
