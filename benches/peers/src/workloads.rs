//! The three workloads, identical for every peer. Each runs in its own child process so that
//! peak RSS (VmHWM) belongs to one store and one workload.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::payload::{PayloadGen, Rng};
use crate::peer::{Ent, Peer, R};

/// Sizes of the workloads.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    /// Payload bytes per entry (exact).
    pub entry_size: usize,
    /// Entries per batch.
    pub batch: u64,
    /// leader-append: batches, each made durable.
    pub append_batches: u64,
    /// follower-catchup: entries in the log before reading.
    pub catchup_entries: u64,
    /// Entries per range read.
    pub range: u64,
    /// Range reads per measurement (hot: repeated on the newest range; cold: disjoint, from the start).
    pub range_calls: u64,
    /// long-retention: entries written.
    pub retention_entries: u64,
    /// tierlog's memory budget in long-retention.
    pub tierlog_budget: u64,
    /// Payload seed.
    pub seed: u64,
    /// `kv` or `random`.
    pub payload: String,
    /// many-groups: Raft groups (set per child from the `--groups` list).
    #[serde(default)]
    pub groups: u64,
    /// many-groups: durable batches written, all groups together (each group writes at least
    /// `MIN_GROUP_BATCHES`).
    #[serde(default)]
    pub group_batches: u64,
    /// many-groups: writer threads, each driving its share of the groups (in-flight durable appends).
    #[serde(default)]
    pub concurrency: u64,
    /// many-groups: tierlog's memory budget for all groups together (one engine's budget; one
    /// directory per group gives each engine its share, at least the 1 MiB `Config::validate` accepts).
    #[serde(default)]
    pub groups_budget: u64,
}

/// What one (peer, workload) run measured. Unmeasured fields stay 0.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// Peer name.
    pub peer: String,
    /// Workload name.
    pub workload: String,
    /// Entries written.
    pub entries: u64,
    /// Entries written per second of time inside the store's write calls.
    pub entries_per_sec: f64,
    /// Median latency of the workload's unit operation (µs).
    pub p50_us: f64,
    /// 99th percentile of the same (µs).
    pub p99_us: f64,
    /// Median time of a hot range read (ms).
    pub hot_range_ms: f64,
    /// 99th percentile of hot range reads (ms).
    pub hot_range_p99_ms: f64,
    /// Median time of a cold first-touch range read (ms).
    pub cold_range_ms: f64,
    /// 99th percentile of cold range reads (ms).
    pub cold_range_p99_ms: f64,
    /// Median time of reading the same cold ranges a second time (ms): the CPU part of a cold read.
    pub cold_repeat_ms: f64,
    /// Time to reopen the store (ms).
    pub reopen_ms: f64,
    /// Allocated bytes of the store's directory at the end.
    pub disk_bytes: u64,
    /// Payload bytes the store holds at the end.
    pub logical_bytes: u64,
    /// Peak RSS of the child process.
    pub peak_rss: u64,
    /// many-groups: groups held.
    #[serde(default)]
    pub groups: u64,
    /// many-groups: writer threads.
    #[serde(default)]
    pub concurrency: u64,
    /// many-groups: write-ahead fdatasyncs per second of the write phase, when the store counts them.
    #[serde(default)]
    pub syncs_per_sec: Option<f64>,
    /// many-groups: the memory budget of the store (all engines together), 0 when it has none.
    #[serde(default)]
    pub budget: u64,
    /// many-groups: entries the lagging followers read.
    #[serde(default)]
    pub entries_read: u64,
    /// many-groups: median time of one lagging-follower range read (µs).
    #[serde(default)]
    pub lag_read_p50_us: f64,
    /// many-groups: 99th percentile of the same (µs).
    #[serde(default)]
    pub lag_read_p99_us: f64,
}

/// A latency histogram (ns).
pub struct Lat(Histogram<u64>);

impl Lat {
    /// An empty histogram.
    pub fn new() -> Lat {
        Lat(Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("constant bounds are valid"))
    }
    /// Records one duration.
    pub fn rec(&mut self, d: Duration) {
        self.0.saturating_record(d.as_nanos().max(1) as u64);
    }
    /// The `q` quantile in µs.
    pub fn us(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / 1e3
    }
    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Lat) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }
}

/// Generates batches of exact-size payloads (outside the timed calls).
pub struct Source {
    payloads: PayloadGen,
    next: u64,
}

impl Source {
    /// A source of `p`'s payload kind, starting at index 1.
    pub fn new(p: &Params) -> R<Source> {
        let kind = crate::payload::PayloadKind::parse(&p.payload)?;
        let payloads = PayloadGen::new(kind, p.seed, p.entry_size)?.exact_size();
        Ok(Source { payloads, next: 1 })
    }

    fn batch(&mut self, n: u64) -> Vec<Ent> {
        let from = self.next;
        self.next += n;
        (from..from + n)
            .map(|index| Ent {
                index,
                term: 1,
                payload: self.payloads.payload(index, 1),
            })
            .collect()
    }
}

/// Allocated bytes of every file under `dir`.
pub fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.blocks() * 512,
                Err(_) => {}
            }
        }
    }
    total
}

/// Syncs and evicts every file under `dir` from the page cache, so the next reads go to the disk.
pub fn drop_page_cache(dir: &Path) -> R<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)?.flatten() {
            let path = e.path();
            if e.metadata()?.is_dir() {
                stack.push(path);
                continue;
            }
            let f = std::fs::File::open(&path)?;
            f.sync_all()?;
            rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed)?;
        }
    }
    Ok(())
}

/// Durable leader append: `append_batches` batches, each synced before the next.
pub fn leader_append(peer: &mut dyn Peer, p: &Params, dir: &Path) -> R<Outcome> {
    let mut src = Source::new(p)?;
    let mut lat = Lat::new();
    let mut busy = Duration::ZERO;
    for _ in 0..p.append_batches {
        let batch = src.batch(p.batch);
        let t = Instant::now();
        peer.append(&batch, true)?;
        let d = t.elapsed();
        lat.rec(d);
        busy += d;
    }
    let entries = p.append_batches * p.batch;
    Ok(Outcome {
        entries,
        entries_per_sec: entries as f64 / busy.as_secs_f64(),
        p50_us: lat.us(0.5),
        p99_us: lat.us(0.99),
        disk_bytes: disk_bytes(dir),
        logical_bytes: entries * p.entry_size as u64,
        ..Outcome::default()
    })
}

fn check_range(got: (u64, u64), lo: u64, hi: u64, p: &Params) -> R<()> {
    let want = hi + 1 - lo;
    if got != (want, want * p.entry_size as u64) {
        return Err(format!("range {lo}..={hi} returned {got:?}, expected {want} entries").into());
    }
    Ok(())
}

/// A lagging follower: the log is written (synced every 16 batches), then the newest `range`
/// entries are read `range_calls` times (hot), the store is reopened with an empty page cache and
/// `range_calls` disjoint ranges from the start are read once each (cold).
pub fn follower_catchup(peer: &mut dyn Peer, p: &Params, dir: &Path) -> R<Outcome> {
    if p.catchup_entries < p.range * p.range_calls {
        return Err("catchup_entries must cover range * range_calls".into());
    }
    let mut src = Source::new(p)?;
    let mut busy = Duration::ZERO;
    let batches = p.catchup_entries.div_ceil(p.batch);
    for k in 0..batches {
        let batch = src.batch(p.batch);
        let t = Instant::now();
        peer.append(&batch, k % 16 == 15)?;
        busy += t.elapsed();
    }
    let t = Instant::now();
    peer.flush()?;
    busy += t.elapsed();
    let last = batches * p.batch;
    let mut hot = Lat::new();
    for _ in 0..p.range_calls {
        let lo = last + 1 - p.range;
        let t = Instant::now();
        let got = peer.read_range(lo, last)?;
        hot.rec(t.elapsed());
        check_range(got, lo, last, p)?;
    }
    peer.settle()?;
    drop_page_cache(dir)?;
    let t = Instant::now();
    peer.reopen()?;
    let reopen = t.elapsed();
    drop_page_cache(dir)?;
    let mut cold = Lat::new();
    for k in 0..p.range_calls {
        let lo = 1 + k * p.range;
        let hi = lo + p.range - 1;
        let t = Instant::now();
        let got = peer.read_range(lo, hi)?;
        cold.rec(t.elapsed());
        check_range(got, lo, hi, p)?;
    }
    let mut repeat = Lat::new();
    for k in 0..p.range_calls {
        let lo = 1 + k * p.range;
        let hi = lo + p.range - 1;
        let t = Instant::now();
        let got = peer.read_range(lo, hi)?;
        repeat.rec(t.elapsed());
        check_range(got, lo, hi, p)?;
    }
    Ok(Outcome {
        entries: last,
        cold_repeat_ms: repeat.us(0.5) / 1e3,
        entries_per_sec: last as f64 / busy.as_secs_f64(),
        p50_us: cold.us(0.5),
        p99_us: cold.us(0.99),
        hot_range_ms: hot.us(0.5) / 1e3,
        hot_range_p99_ms: hot.us(0.99) / 1e3,
        cold_range_ms: cold.us(0.5) / 1e3,
        cold_range_p99_ms: cold.us(0.99) / 1e3,
        reopen_ms: reopen.as_secs_f64() * 1e3,
        disk_bytes: disk_bytes(dir),
        logical_bytes: last * p.entry_size as u64,
        ..Outcome::default()
    })
}

/// A long history: append (synced every 16 batches), keep the newest 3/4 by purging a prefix
/// whenever a tenth more has accumulated, and read 16 random retained entries every 16 batches.
pub fn long_retention(peer: &mut dyn Peer, p: &Params, dir: &Path) -> R<Outcome> {
    let mut src = Source::new(p)?;
    let mut rng = Rng::new(p.seed ^ 0xBEEF);
    let n = p.retention_entries;
    let window = n * 3 / 4;
    let step = (n / 10).max(1);
    let (mut first, mut last) = (1u64, 0u64);
    let mut busy = Duration::ZERO;
    let mut reads = Lat::new();
    for k in 0..n.div_ceil(p.batch) {
        let batch = src.batch(p.batch);
        let t = Instant::now();
        peer.append(&batch, k % 16 == 15)?;
        busy += t.elapsed();
        last += p.batch;
        if last + 1 - first > window + step {
            let upto = last - window;
            peer.purge(upto)?;
            first = upto + 1;
        }
        if k % 16 == 15 {
            for _ in 0..16 {
                let i = rng.range(first, last);
                let t = Instant::now();
                let got = peer.read_one(i)?;
                reads.rec(t.elapsed());
                if got != Some(p.entry_size) {
                    return Err(format!("entry {i} read back as {got:?}").into());
                }
            }
        }
    }
    peer.flush()?;
    peer.settle()?;
    Ok(Outcome {
        entries: last,
        entries_per_sec: last as f64 / busy.as_secs_f64(),
        p50_us: reads.us(0.5),
        p99_us: reads.us(0.99),
        disk_bytes: disk_bytes(dir),
        logical_bytes: (last + 1 - first) * p.entry_size as u64,
        ..Outcome::default()
    })
}
