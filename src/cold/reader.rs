//! Reading the cold tier: frames from the cache or from redb, sliced to the range asked for, and a
//! read-ahead thread that decodes a sequential reader's next range before it asks.
//!
//! A read decodes only the frames its range overlaps that the cache lacks; when there are several,
//! on rayon's pool (the frames are independent, and a follower's 10k-entry range is dozens of
//! them: decompression is the whole cost of a cold range read, and one core was left idle).

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};

use std::collections::HashSet;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use rayon::prelude::*;

use super::block::{self, BlockMeta, DecodedFrame};
use super::cache::BlockCache;
use super::pool::FramePool;
use super::store::ColdStore;
use crate::error::{Error, Result};
use crate::proto::Entry;

/// Read-ahead hints waiting for the thread; hints beyond its pace are dropped.
const READ_AHEAD_QUEUE: usize = 4;
/// Longest a reader waits for the read-ahead thread to finish a block it needs (the thread is
/// decoding it; waiting is cheaper than decoding it twice on a busy machine).
const READ_AHEAD_WAIT: Duration = Duration::from_millis(50);
/// Fewest frames to decode that go to the thread pool: below this, handing the work over costs
/// more than it saves (a 16 KiB frame decodes in about 15 µs here).
const PARALLEL_MIN_FRAMES: usize = 3;

/// Most frames a reader's decode inserts into the cache: a read missing more is a scan (a follower
/// catching up reads each range once), whose frames would only evict those point readers reuse;
/// its buffers go back to the pool once the reader drops the entries, and the next scan decodes
/// into them instead of fresh pages.
const SCAN_FRAMES: usize = 64;
/// The buffer pool's share of the frame cache's capacity, and its cap: 4 MiB holds the frames of a
/// 10,000-entry range of 256-byte entries.
const POOL_SHARE_DIVISOR: u64 = 16;
const POOL_MAX_BYTES: u64 = 4 << 20;

/// A range a sequential reader will probably ask for next, with the blocks that hold it.
#[derive(Clone, Debug)]
pub(crate) struct Hint {
    pub from: u64,
    pub to: u64,
    pub metas: Vec<BlockMeta>,
}

/// The cold tier as readers see it: the store and the cache of decompressed frames.
pub(crate) struct ColdReader {
    store: ColdStore,
    cache: BlockCache,
    /// Buffers of frames no one holds any more, decoded into again.
    pool: Arc<FramePool>,
    /// Hints for the read-ahead thread, while it runs.
    hints: Mutex<Option<SyncSender<Hint>>>,
    /// Blocks the read-ahead thread is decoding now; a reader that needs one waits on `loaded`
    /// rather than decoding the same frames a second time.
    loading: Mutex<HashSet<u64>>,
    loaded: Condvar,
}

/// Whether decoding ahead can help: a range read already decodes on every core of the pool, so
/// the read-ahead thread only has a core of its own from 4 cores up. Measured on 2 cores
/// (follower-catchup, `docs/performance.md`): a read-ahead of the whole next range made the
/// first cold read slower (3.5 ms against 2.6 ms without), the two competing for the same cores.
fn read_ahead_pays() -> bool {
    static PAYS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PAYS.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() >= 4))
}

/// Who decodes: a reader (on the pool when there are several frames, after letting the read-ahead
/// thread finish a block it is on) or the read-ahead thread (alone, one block at a time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    Reader,
    ReadAhead,
}

/// The part `[lo, hi]` of a read that one block serves, and the frames found for it so far.
struct Part {
    meta: BlockMeta,
    lo: u64,
    hi: u64,
    frames: Vec<Arc<DecodedFrame>>,
    /// First index no cached frame held: from here on the block must be read.
    gap: Option<u64>,
}

impl ColdReader {
    /// The pool's bytes come out of `cache`'s capacity.
    pub(crate) fn new(store: ColdStore, mut cache: BlockCache) -> Self {
        let pool = cache.carve_out((cache.capacity() / POOL_SHARE_DIVISOR).min(POOL_MAX_BYTES));
        ColdReader {
            store,
            cache,
            pool: Arc::new(FramePool::new(pool)),
            hints: Mutex::new(None),
            loading: Mutex::new(HashSet::new()),
            loaded: Condvar::new(),
        }
    }

    pub(crate) fn store(&self) -> &ColdStore {
        &self.store
    }

    pub(crate) fn cache(&self) -> &BlockCache {
        &self.cache
    }

    /// Fetches the frames of `[a, b]` (cache first) and slices the entries out of them. `Ok(None)`:
    /// a block was replaced or deleted since the plan was made.
    pub(crate) fn fetch(&self, a: u64, b: u64, metas: &[BlockMeta]) -> Result<Option<Vec<Entry>>> {
        let Some(parts) = self.load(a, b, metas, Caller::Reader)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity((b - a + 1) as usize);
        for p in &parts {
            let mut next = p.lo;
            for f in &p.frames {
                if f.first > next {
                    return Ok(None);
                }
                out.extend(f.range(next, p.hi));
                next = next.max(f.last().saturating_add(1));
            }
            if next <= p.hi {
                return Ok(None);
            }
        }
        Ok(Some(out))
    }

    /// The frames covering `[a, b]`, per block, decoding (and caching) those the cache lacks.
    fn load(&self, a: u64, b: u64, metas: &[BlockMeta], caller: Caller) -> Result<Option<Vec<Part>>> {
        let mut parts = Vec::with_capacity(metas.len());
        let mut next = a;
        for m in metas {
            let hi = b.min(m.last);
            if m.first > next || hi < next {
                return Ok(None);
            }
            let mut p = Part {
                meta: *m,
                lo: next,
                hi,
                frames: Vec::new(),
                gap: None,
            };
            if caller == Caller::Reader {
                self.wait_for_read_ahead(m.id);
            }
            let mut i = next;
            while i <= hi {
                match self.cache.get(m.id, i) {
                    Some(f) => {
                        i = f.last().saturating_add(1);
                        p.frames.push(f);
                    }
                    None => {
                        p.gap = Some(i);
                        break;
                    }
                }
            }
            parts.push(p);
            next = hi + 1;
        }
        if next != b + 1 {
            return Err(Error::corruption_at_index(
                self.store.path(),
                next,
                format!("cold tier has no block holding index {next}"),
            ));
        }
        let missing: Vec<usize> = (0..parts.len()).filter(|&k| parts[k].gap.is_some()).collect();
        if missing.is_empty() {
            return Ok(Some(parts));
        }
        let _span = tracing::debug_span!("cold_read", blocks = missing.len()).entered();
        let metas: Vec<BlockMeta> = missing.iter().map(|&k| parts[k].meta).collect();
        let dicts = self.store.dictionaries();
        // Verifies block `j`'s header and decodes the frames its part still needs; `None`: the
        // block was replaced or deleted since the plan was made.
        let decode_block =
            |j: usize, stored: Option<&[u8]>, pool: bool| -> Result<Option<Vec<Arc<DecodedFrame>>>> {
                let (m, p) = (&metas[j], &parts[missing[j]]);
                let Some(s) = stored else { return Ok(None) };
                let blk = block::parse(s, &dicts).map_err(|r| self.corrupt(m, r))?;
                if blk.id != m.id || blk.last() < p.hi {
                    return Ok(None);
                }
                if blk.first != m.first {
                    return Err(self.corrupt(m, format!("block starts at index {}", blk.first)));
                }
                let frames = blk.frames_for(p.gap.unwrap_or(p.lo), p.hi);
                let decode = |i: usize| {
                    blk.decode_frame_into(i, self.pool.take(blk.frame_raw_len(i)), |b| self.pool.own(b))
                        .map(Arc::new)
                        .map_err(|r| self.corrupt(m, r))
                };
                if pool && frames.clone().count() >= PARALLEL_MIN_FRAMES {
                    frames
                        .into_par_iter()
                        .map(decode)
                        .collect::<Result<Vec<_>>>()
                        .map(Some)
                } else {
                    frames.map(decode).collect::<Result<Vec<_>>>().map(Some)
                }
            };
        let decoded: Option<Vec<Vec<Arc<DecodedFrame>>>> = if metas.len() >= 2 && caller == Caller::Reader {
            // One task per block: each reads its block and decodes it, so disk reads overlap
            // decompression and each other.
            let per_block = self
                .store
                .map_stored_par(&metas, |j, s| decode_block(j, s, false))?;
            per_block.into_iter().collect()
        } else {
            self.store.with_stored(&metas, |stored| {
                let per_block = stored
                    .iter()
                    .enumerate()
                    .map(|(j, s)| decode_block(j, *s, caller == Caller::Reader))
                    .collect::<Result<Vec<_>>>()?;
                Ok(per_block.into_iter().collect())
            })?
        };
        let Some(decoded) = decoded else {
            return Ok(None);
        };
        let scan = caller == Caller::Reader && decoded.iter().map(Vec::len).sum::<usize>() > SCAN_FRAMES;
        for (j, frames) in decoded.into_iter().enumerate() {
            for f in frames {
                if !scan {
                    self.cache.insert(f.clone());
                }
                parts[missing[j]].frames.push(f);
            }
        }
        Ok(Some(parts))
    }

    fn corrupt(&self, m: &BlockMeta, reason: String) -> Error {
        Error::corruption_at_index(self.store.path(), m.first, reason)
    }

    /// Entries `[m.first, upto]` of block `m` (the compactor's trim of a block cut in the middle).
    pub(crate) fn block_prefix(&self, m: &BlockMeta, upto: u64) -> Result<Vec<Entry>> {
        self.fetch(m.first, upto, &[*m])?
            .ok_or_else(|| Error::corruption_at_index(self.store.path(), m.first, "block to trim is missing"))
    }

    /// Asks the read-ahead thread to decode `hint` into the cache, unless its ends are cached, the
    /// thread is busy (read-ahead is a hint: dropping it costs only latency), or the machine has
    /// no core to spare for it ([`read_ahead_pays`]).
    pub(crate) fn prefetch(&self, hint: Hint) {
        if !read_ahead_pays() {
            return;
        }
        let (Some(first), Some(last)) = (hint.metas.first(), hint.metas.last()) else {
            return;
        };
        if self.cache.contains(first.id, hint.from) && self.cache.contains(last.id, hint.to) {
            return;
        }
        if let Some(tx) = self.hints.lock().as_ref() {
            let _ = tx.try_send(hint);
        }
    }

    /// Starts taking hints; the read-ahead thread runs [`ColdReader::read_ahead`] on the receiver.
    pub(crate) fn start_read_ahead(&self) -> Receiver<Hint> {
        let (tx, rx) = std::sync::mpsc::sync_channel(READ_AHEAD_QUEUE);
        *self.hints.lock() = Some(tx);
        rx
    }

    /// Stops taking hints: the read-ahead thread's loop ends.
    pub(crate) fn stop_read_ahead(&self) {
        self.hints.lock().take();
    }

    /// Waits (bounded) while the read-ahead thread decodes block `id`.
    fn wait_for_read_ahead(&self, id: u64) {
        let mut loading = self.loading.lock();
        while loading.contains(&id) {
            if self.loaded.wait_for(&mut loading, READ_AHEAD_WAIT).timed_out() {
                return;
            }
        }
    }

    /// The read-ahead thread's body: decodes hinted ranges into the cache until hints stop.
    ///
    /// Blocks are decoded one at a time on this thread alone, last block first: a reader that asks
    /// for the range before the thread is done decodes from the front on the pool, so the two meet
    /// in the middle instead of racing over the same frames (measured: front-to-back read-ahead
    /// made the follower-catchup cold read slower than none).
    pub(crate) fn read_ahead(&self, hints: Receiver<Hint>) {
        while let Ok(h) = hints.recv() {
            for m in h.metas.iter().rev() {
                let (lo, hi) = (h.from.max(m.first), h.to.min(m.last));
                if lo > hi || (self.cache.contains(m.id, lo) && self.cache.contains(m.id, hi)) {
                    continue;
                }
                self.loading.lock().insert(m.id);
                let r = self.load(lo, hi, std::slice::from_ref(m), Caller::ReadAhead);
                self.loading.lock().remove(&m.id);
                self.loaded.notify_all();
                if let Err(e) = r {
                    tracing::warn!(error = %e, "read-ahead failed");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::cold::block::Packing;
    use crate::cold::store::{Checkpoint, CommitPlan, GroupPlan, Head};

    /// About 2:1 compressible, like the bench's KV payloads (half noise, half a repeated byte).
    pub(super) fn entry(i: u64) -> Entry {
        let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let p: Vec<u8> = (0..256)
            .map(|k| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if k < 128 { x as u8 } else { b'v' }
            })
            .collect();
        Entry::new(i, 1 + i / 1000, p)
    }

    /// A cold tier holding entries `1..=n` in blocks packed like the compactor packs them, and the
    /// blocks' metas.
    pub(super) fn reader_with(n: u64, dir: &std::path::Path) -> (ColdReader, Vec<BlockMeta>) {
        reader_packed(n, dir, 32 << 10, entry)
    }

    /// [`reader_with`] with blocks packed to `bucket` stored bytes.
    pub(super) fn reader_packed(
        n: u64,
        dir: &std::path::Path,
        bucket: usize,
        entry: impl Fn(u64) -> Entry,
    ) -> (ColdReader, Vec<BlockMeta>) {
        let (store, _) = ColdStore::open(&dir.join("cold.redb"), 1 << 20).unwrap();
        let entries: Vec<Entry> = (1..=n).map(entry).collect();
        let mut z = zstd::bulk::Compressor::new(1).unwrap();
        let mut plan = GroupPlan::default();
        let mut rest = &entries[..];
        let mut id = 1;
        while !rest.is_empty() {
            let b = block::encode_packed(id, rest, Packing::new(u64::MAX, bucket), &mut z, None).unwrap();
            let (chunk, after) = rest.split_at(b.entries);
            let m = BlockMeta {
                id,
                group: 0,
                first: chunk[0].index,
                last: chunk[chunk.len() - 1].index,
                raw_len: b.raw_len,
                stored_len: b.stored.len() as u64,
            };
            plan.inserts.push((m, b.stored));
            rest = after;
            id += 1;
        }
        plan.checkpoint = Checkpoint {
            cold_hi: n,
            ..Checkpoint::default()
        };
        let metas = plan.inserts.iter().map(|(m, _)| *m).collect();
        let plan = CommitPlan {
            groups: vec![plan],
            head: Head {
                next_block_id: id,
                wal_floor: None,
            },
            ..CommitPlan::default()
        };
        store.commit(&plan).unwrap();
        (ColdReader::new(store, BlockCache::new(64 << 20)), metas)
    }

    fn metas_for(metas: &[BlockMeta], a: u64, b: u64) -> Vec<BlockMeta> {
        metas
            .iter()
            .filter(|m| m.last >= a && m.first <= b)
            .copied()
            .collect()
    }

    #[test]
    fn a_point_read_decodes_one_frame_and_a_second_one_none() {
        let dir = tempfile::tempdir().unwrap();
        let (r, metas) = reader_with(3000, dir.path());
        assert!(
            metas.len() >= 2 && metas[0].last - metas[0].first > 100,
            "blocks of several frames"
        );
        let decoded = || r.cache().inserted.load(Ordering::Relaxed);
        for (k, i) in [777u64, 1, 2999, 1500].into_iter().enumerate() {
            let before = decoded();
            let got = r.fetch(i, i, &metas_for(&metas, i, i)).unwrap().unwrap();
            assert_eq!(got, vec![entry(i)]);
            assert_eq!(
                decoded() - before,
                1,
                "read {k} of entry {i} decoded more than its frame"
            );
            let again = r.fetch(i, i, &metas_for(&metas, i, i)).unwrap().unwrap();
            assert_eq!(again, vec![entry(i)]);
            assert_eq!(decoded() - before, 1, "a cached frame was decoded again");
        }
        // Only the frames read are cached, and the accounting is theirs.
        assert!(r.cache().bytes() <= 4 * (block::FRAME_TARGET_RAW as u64 + 128));
    }

    #[test]
    fn range_reads_return_exactly_the_entries_in_order_across_frame_and_block_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let (r, metas) = reader_with(5000, dir.path());
        assert!(metas.len() >= 4);
        let b0 = metas[0].last;
        for (a, b) in [
            (1, 5000),
            (b0 - 70, b0 + 70),
            (b0, b0 + 1),
            (2, 63),
            (4000, 4999),
            (1, 1),
        ] {
            let got = r.fetch(a, b, &metas_for(&metas, a, b)).unwrap().unwrap();
            let want: Vec<Entry> = (a..=b).map(entry).collect();
            assert_eq!(got.len(), want.len(), "[{a}, {b}]");
            assert!(got == want, "[{a}, {b}] differs");
        }
        // Half cached (the reads above), half not: still exact.
        r.cache().clear();
        r.fetch(100, 200, &metas_for(&metas, 100, 200)).unwrap().unwrap();
        let got = r.fetch(50, 3000, &metas_for(&metas, 50, 3000)).unwrap().unwrap();
        assert!(got == (50..=3000).map(entry).collect::<Vec<_>>());
    }

    #[test]
    fn a_range_read_decodes_only_the_frames_it_overlaps() {
        let dir = tempfile::tempdir().unwrap();
        let (r, metas) = reader_with(3000, dir.path());
        // 60 entries of 268 raw bytes span at most two 16 KiB frames.
        r.fetch(1000, 1059, &metas_for(&metas, 1000, 1059))
            .unwrap()
            .unwrap();
        assert!(r.cache().inserted.load(Ordering::Relaxed) <= 2);
    }

    #[test]
    fn a_scan_leaves_the_cache_alone_and_the_next_scan_decodes_into_its_buffers() {
        let dir = tempfile::tempdir().unwrap();
        let (r, metas) = reader_with(20_000, dir.path());
        r.fetch(7, 7, &metas_for(&metas, 7, 7)).unwrap().unwrap();
        let (cached, inserted) = (r.cache().bytes(), r.cache().inserted.load(Ordering::Relaxed));
        assert!(cached > 0, "a point read's frame is cached");
        let scan = |a: u64, b: u64| r.fetch(a, b, &metas_for(&metas, a, b)).unwrap().unwrap();
        let got = scan(1000, 9000);
        assert!(got == (1000..=9000).map(entry).collect::<Vec<_>>());
        assert_eq!(r.cache().bytes(), cached, "a scan's frames are not cached");
        assert_eq!(r.cache().inserted.load(Ordering::Relaxed), inserted);
        assert_eq!(r.pool.kept(), 0, "the reader still holds the scan's buffers");
        drop(got);
        let kept = r.pool.kept();
        assert!(kept > SCAN_FRAMES, "the scan's buffers came back ({kept})");
        let got = scan(11_000, 19_000);
        assert!(got == (11_000..=19_000).map(entry).collect::<Vec<_>>());
        assert!(
            r.pool.kept() < kept / 4,
            "the second scan decoded into kept buffers"
        );
        assert!(r.pool.kept_bytes() <= POOL_MAX_BYTES);
    }

    #[test]
    fn a_replaced_block_is_reported_as_a_stale_plan() {
        let dir = tempfile::tempdir().unwrap();
        let (r, metas) = reader_with(1000, dir.path());
        let mut stale = metas[0];
        stale.id += 100;
        assert_eq!(r.fetch(1, 5, &[stale]).unwrap(), None);
    }

    #[test]
    fn read_ahead_decodes_the_hinted_range_into_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (r, metas) = reader_with(4000, dir.path());
        // The thread's body, fed directly (`prefetch` sends nothing on machines under 4 cores).
        let (tx, hints) = std::sync::mpsc::sync_channel(1);
        tx.send(Hint {
            from: 2001,
            to: 4000,
            metas: metas_for(&metas, 2001, 4000),
        })
        .unwrap();
        drop(tx);
        r.read_ahead(hints);
        let last = metas.last().unwrap();
        assert!(
            r.cache().contains(last.id, 4000)
                && r.cache().contains(metas_for(&metas, 2001, 2001)[0].id, 2001)
        );
        let before = r.cache().inserted.load(Ordering::Relaxed);
        r.fetch(2001, 4000, &metas_for(&metas, 2001, 4000))
            .unwrap()
            .unwrap();
        assert_eq!(
            r.cache().inserted.load(Ordering::Relaxed),
            before,
            "the read found every frame decoded"
        );
    }
}

/// The peers benchmark's payload generator, for [`breakdown`].
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../cli/src/cli/payload.rs"]
mod bench_payload;

/// Where a cold read's time goes, part by part (`cargo test --release --lib -- --ignored
/// --nocapture cold_read_breakdown`; figures in docs/performance.md). Not a timed test: it prints
/// and asserts only that the reads are right.
#[cfg(test)]
mod breakdown {
    use std::time::{Duration, Instant};

    use super::tests::reader_packed;
    use super::*;

    use super::bench_payload as payload;

    /// The peers benchmark's kv payloads (256 bytes, exact size, seed 42).
    fn entry(i: u64) -> Entry {
        static GEN: std::sync::OnceLock<payload::PayloadGen> = std::sync::OnceLock::new();
        let g = GEN.get_or_init(|| {
            payload::PayloadGen::new(payload::PayloadKind::Kv, 42, 256)
                .unwrap()
                .exact_size()
        });
        Entry::new(i, 1, g.payload(i, 1))
    }

    fn p50(mut v: Vec<Duration>) -> f64 {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e6
    }

    /// GNU dd's `nocache` drops the file's pages (the library has no fadvise of its own).
    fn drop_page_cache(path: &std::path::Path) {
        std::fs::File::open(path).unwrap().sync_all().unwrap();
        let ok = std::process::Command::new("dd")
            .arg(format!("if={}", path.display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    #[test]
    #[ignore]
    fn cold_read_breakdown() {
        let dir = tempfile::tempdir().unwrap();
        let n = 300_000u64;
        // Packed like the compactor packs them (64 KiB page buckets), redb's cache as the peers
        // long-retention engine's (64 MiB budget / 32).
        let (r, metas) = reader_packed(n, dir.path(), 64 << 10, entry);
        println!(
            "{} blocks, {:.0} stored bytes each",
            metas.len(),
            metas.iter().map(|m| m.stored_len).sum::<u64>() as f64 / metas.len() as f64
        );
        let meta_of = |i: u64| *metas.iter().find(|m| m.first <= i && i <= m.last).unwrap();
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            1 + x % n
        };
        let samples = 3000;
        let (
            mut tx,
            mut parse,
            mut crc,
            mut zstd_fresh,
            mut zstd_reuse,
            mut decode,
            mut insert,
            mut get,
            mut total,
        ) = (
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
        );
        let mut reuse = Vec::with_capacity(1 << 20);
        let mut d = zstd::bulk::Decompressor::new().unwrap();
        for _ in 0..samples {
            let i = rand();
            let m = meta_of(i);
            let t = Instant::now();
            let stored = r.store.with_stored(&[m], |s| Ok(s[0].map(|b| b.len()))).unwrap();
            tx.push(t.elapsed());
            assert!(stored.is_some());
            let copy = r.store.with_stored(&[m], |s| Ok(s[0].unwrap().to_vec())).unwrap();
            let t = Instant::now();
            let dicts = r.store.dictionaries();
            let blk = block::parse(&copy, &dicts).unwrap();
            parse.push(t.elapsed());
            let k = blk.frame_of(i);
            let (fs, fe, raw_len) = blk.frame_bytes(k);
            let t = Instant::now();
            std::hint::black_box(crc32c::crc32c(&copy[fs..fe]));
            crc.push(t.elapsed());
            // Alternate which goes first: the first decompression also brings the compressed
            // bytes into the CPU cache.
            let fresh_first = tx.len() % 2 == 0;
            for k in 0..2 {
                if (k == 0) == fresh_first {
                    let t = Instant::now();
                    std::hint::black_box(d.decompress(&copy[fs..fe], raw_len).unwrap());
                    zstd_fresh.push(t.elapsed());
                } else {
                    let t = Instant::now();
                    reuse.clear();
                    d.decompress_to_buffer(&copy[fs..fe], &mut reuse).unwrap();
                    zstd_reuse.push(t.elapsed());
                }
            }
            let t = Instant::now();
            let f = Arc::new(blk.decode_frame(k).unwrap());
            decode.push(t.elapsed());
            let t = Instant::now();
            r.cache.insert(f.clone());
            insert.push(t.elapsed());
            let t = Instant::now();
            let e = f.get(i).unwrap();
            get.push(t.elapsed());
            assert_eq!(e, entry(i));
            r.cache.clear();
            let t = Instant::now();
            let got = r.fetch(i, i, &[m]).unwrap().unwrap();
            total.push(t.elapsed());
            assert_eq!(got, vec![entry(i)]);
            r.cache.clear();
        }
        println!(
            "point read p50 µs: redb tx+get {:.1} | parse {:.2} | crc32c of frame {:.2} | zstd fresh buf {:.1} | \
             zstd reused buf {:.1} | decode_frame {:.1} | cache insert {:.2} | entry {:.2} | fetch total {:.1}",
            p50(tx),
            p50(parse),
            p50(crc),
            p50(zstd_fresh),
            p50(zstd_reuse),
            p50(decode),
            p50(insert),
            p50(get),
            p50(total)
        );
        // Cold 10k ranges, page cache dropped before each, cache empty.
        let path = dir.path().join("cold.redb");
        let mut cold = vec![];
        let mut warm = vec![];
        for k in 0..20u64 {
            let (a, b) = (1 + k * 10_000, (k + 1) * 10_000);
            let ms: Vec<BlockMeta> = metas
                .iter()
                .filter(|m| m.last >= a && m.first <= b)
                .copied()
                .collect();
            r.cache.clear();
            drop_page_cache(&path);
            let t = Instant::now();
            let got = r.fetch(a, b, &ms).unwrap().unwrap();
            cold.push(t.elapsed());
            assert_eq!(got.len(), 10_000);
            r.cache.clear();
            let t = Instant::now();
            let got = r.fetch(a, b, &ms).unwrap().unwrap();
            warm.push(t.elapsed());
            assert_eq!(got.len(), 10_000);
        }
        println!(
            "10k range p50 µs: page cache dropped {:.0} | page cache warm {:.0} (frame cache empty in both)",
            p50(cold),
            p50(warm)
        );
    }
}
