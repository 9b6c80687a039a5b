//! Reading the cold tier: blocks from the cache or from redb, sliced to the range asked for, and a
//! read-ahead thread that loads a sequential reader's next block before it asks.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};

use parking_lot::Mutex;

use super::block::{BlockMeta, DecodedBlock};
use super::cache::BlockCache;
use super::store::ColdStore;
use crate::error::{Error, Result};
use crate::proto::Entry;

/// Read-ahead hints waiting for the thread; hints beyond its pace are dropped.
const READ_AHEAD_QUEUE: usize = 8;

/// The cold tier as readers see it: the store and the cache of decompressed blocks.
pub(crate) struct ColdReader {
    store: ColdStore,
    cache: BlockCache,
    /// Hints for the read-ahead thread, while it runs.
    hints: Mutex<Option<SyncSender<BlockMeta>>>,
}

impl ColdReader {
    pub(crate) fn new(store: ColdStore, cache: BlockCache) -> Self {
        ColdReader {
            store,
            cache,
            hints: Mutex::new(None),
        }
    }

    pub(crate) fn store(&self) -> &ColdStore {
        &self.store
    }

    pub(crate) fn cache(&self) -> &BlockCache {
        &self.cache
    }

    /// Fetches cold blocks (cache first) and slices `[a, b]` out of them. `Ok(None)`: a block was
    /// replaced or deleted since the plan was made.
    pub(crate) fn fetch(&self, a: u64, b: u64, metas: &[BlockMeta]) -> Result<Option<Vec<Entry>>> {
        let (cold, cache) = (&self.store, &self.cache);
        let mut blocks: Vec<Option<Arc<DecodedBlock>>> = metas.iter().map(|m| cache.get(m.id)).collect();
        let missing: Vec<BlockMeta> = metas
            .iter()
            .zip(&blocks)
            .filter(|(_, b)| b.is_none())
            .map(|(m, _)| *m)
            .collect();
        if !missing.is_empty() {
            let _span = tracing::debug_span!("cold_read", blocks = missing.len()).entered();
            let mut fetched = cold.read_blocks(&missing)?.into_iter();
            for slot in blocks.iter_mut().filter(|b| b.is_none()) {
                match fetched.next().flatten() {
                    Some(block) => {
                        cache.insert(block.clone());
                        *slot = Some(block);
                    }
                    None => return Ok(None),
                }
            }
        }
        let mut out = Vec::with_capacity((b - a + 1) as usize);
        let mut next = a;
        for (m, block) in metas.iter().zip(blocks) {
            let Some(block) = block else { return Ok(None) };
            let upto = b.min(m.last);
            if block.last() < upto || block.first > next {
                return Ok(None);
            }
            for e in block.range(next, upto) {
                out.push(e);
            }
            next = upto + 1;
        }
        if next != b + 1 {
            return Err(Error::corruption_at_index(
                cold.path(),
                next,
                format!("cold tier has no block holding index {next}"),
            ));
        }
        Ok(Some(out))
    }

    /// Entries `[m.first, upto]` of block `m` (the compactor's trim of a block cut in the middle).
    pub(crate) fn block_prefix(&self, m: &BlockMeta, upto: u64) -> Result<Vec<Entry>> {
        self.fetch(m.first, upto, &[*m])?
            .ok_or_else(|| Error::corruption_at_index(self.store.path(), m.first, "block to trim is missing"))
    }

    /// Asks the read-ahead thread to load `m` into the cache, unless it is there or the thread is
    /// busy (read-ahead is a hint: dropping it costs only latency).
    pub(crate) fn prefetch(&self, m: BlockMeta) {
        if self.cache.contains(m.id) {
            return;
        }
        if let Some(tx) = self.hints.lock().as_ref() {
            let _ = tx.try_send(m);
        }
    }

    /// Starts taking hints; the read-ahead thread runs [`ColdReader::read_ahead`] on the receiver.
    pub(crate) fn start_read_ahead(&self) -> Receiver<BlockMeta> {
        let (tx, rx) = std::sync::mpsc::sync_channel(READ_AHEAD_QUEUE);
        *self.hints.lock() = Some(tx);
        rx
    }

    /// Stops taking hints: the read-ahead thread's loop ends.
    pub(crate) fn stop_read_ahead(&self) {
        self.hints.lock().take();
    }

    /// The read-ahead thread's body: loads hinted blocks into the cache until hints stop.
    pub(crate) fn read_ahead(&self, hints: Receiver<BlockMeta>) {
        while let Ok(m) = hints.recv() {
            if self.cache.contains(m.id) {
                continue;
            }
            match self.store.read_blocks(&[m]) {
                Ok(mut v) => {
                    if let Some(Some(b)) = v.pop() {
                        self.cache.insert(b);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "read-ahead failed"),
            }
        }
    }
}
