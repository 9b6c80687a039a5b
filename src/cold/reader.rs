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
    pub(crate) fn new(store: ColdStore, cache: BlockCache) -> Self {
        ColdReader {
            store,
            cache,
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
        let decoded = self.store.with_stored(&metas, |stored| {
            let mut blocks = Vec::with_capacity(stored.len());
            let mut jobs: Vec<(usize, usize)> = Vec::new();
            for (j, s) in stored.iter().enumerate() {
                let (m, p) = (&metas[j], &parts[missing[j]]);
                let Some(s) = s else { return Ok(None) };
                let blk = block::parse(s, &dicts).map_err(|r| self.corrupt(m, r))?;
                if blk.id != m.id || blk.last() < p.hi {
                    return Ok(None);
                }
                if blk.first != m.first {
                    return Err(self.corrupt(m, format!("block starts at index {}", blk.first)));
                }
                let from = p.gap.unwrap_or(p.lo);
                jobs.extend(blk.frames_for(from, p.hi).map(|i| (j, i)));
                blocks.push(blk);
            }
            let decode = |&(j, i): &(usize, usize)| {
                blocks[j]
                    .decode_frame(i)
                    .map(|f| (j, Arc::new(f)))
                    .map_err(|r| self.corrupt(&metas[j], r))
            };
            let frames: Result<Vec<_>> = if jobs.len() >= PARALLEL_MIN_FRAMES && caller == Caller::Reader {
                jobs.par_iter().map(decode).collect()
            } else {
                jobs.iter().map(decode).collect()
            };
            frames.map(Some)
        })?;
        let Some(decoded) = decoded else {
            return Ok(None);
        };
        for (j, f) in decoded {
            self.cache.insert(f.clone());
            parts[missing[j]].frames.push(f);
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
    use crate::cold::store::{BlockIndex, Checkpoint, CommitPlan};

    /// About 2:1 compressible, like the bench's KV payloads (half noise, half a repeated byte).
    fn entry(i: u64) -> Entry {
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
    fn reader_with(n: u64, dir: &std::path::Path) -> (ColdReader, Vec<BlockMeta>) {
        let (store, _, _) = ColdStore::open(&dir.join("cold.redb"), 1 << 20).unwrap();
        let entries: Vec<Entry> = (1..=n).map(entry).collect();
        let mut z = zstd::bulk::Compressor::new(1).unwrap();
        let mut plan = CommitPlan::default();
        let mut rest = &entries[..];
        let mut id = 1;
        while !rest.is_empty() {
            let b = block::encode_packed(id, rest, Packing::new(u64::MAX, 32 << 10), &mut z, None).unwrap();
            let (chunk, after) = rest.split_at(b.entries);
            let m = BlockMeta {
                id,
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
            next_block_id: id,
            ..Checkpoint::default()
        };
        store.commit(&plan, &BlockIndex::new()).unwrap();
        let metas = plan.inserts.iter().map(|(m, _)| *m).collect();
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
