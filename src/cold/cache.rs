//! A bounded cache of decompressed cold frames, keyed by block id and the frame's first index (a
//! block id's kept content never changes, so a cached frame can never be stale for the indices a
//! reader asks of it; after a trim, frames of the old and the new cut may both be cached, and
//! either is right for the indices it holds).
//!
//! Lookups come from many reader threads at once, so the map is a `DashMap` and a lookup takes no
//! other lock; eviction is CLOCK (second chance) over insertion order, which keeps a follower's
//! sequential scan from thrashing frames that other readers reuse.
//!
//! Every change to the map, the CLOCK queue and the byte count happens under the one `clock` lock,
//! so they always agree: each cached frame is queued exactly once, the queue holds nothing else, and
//! `bytes` is the sum of the cached frames' costs (an `insert` racing `clear` or `invalidate` cannot
//! leave a frame unqueued or make the count wrap).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dashmap::DashMap;
use parking_lot::Mutex;

use super::block::DecodedFrame;

struct Slot {
    frame: Arc<DecodedFrame>,
    referenced: AtomicBool,
    /// The slot's key in `Clock::queue`.
    pos: u64,
}

/// A cached frame's key: its block id and first index.
type FrameKey = (u64, u64);

/// The CLOCK queue and the byte count; the lock around it also serialises every change to the map.
#[derive(Default)]
struct Clock {
    /// Queue position → frame, oldest first: exactly the frames in the map, each once.
    queue: BTreeMap<u64, FrameKey>,
    next_pos: u64,
    /// Sum of the cached frames' costs.
    bytes: u64,
}

impl Clock {
    fn enqueue(&mut self, key: FrameKey) -> u64 {
        let pos = self.next_pos;
        self.next_pos += 1;
        self.queue.insert(pos, key);
        pos
    }
}

pub(crate) struct BlockCache {
    /// Block id → its cached frames by first index. Read without the `clock` lock; changed only
    /// while holding it. A block with no cached frame has no entry.
    map: DashMap<u64, BTreeMap<u64, Slot>>,
    clock: Mutex<Clock>,
    capacity: u64,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    /// Frames decompressed and inserted (by readers and read-ahead): what a point read costs, for
    /// tests that check it decodes one frame.
    pub(crate) inserted: AtomicU64,
    /// Runs inside `clear` between emptying the map and emptying the queue (tests drive a racing
    /// `insert` from it).
    #[cfg(test)]
    clear_hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

/// Accounted cost of one cached frame beyond its buffer.
const SLOT_OVERHEAD: u64 = 128;

fn cost(frame: &DecodedFrame) -> u64 {
    frame.held_bytes() + SLOT_OVERHEAD
}

impl BlockCache {
    pub(crate) fn new(capacity: u64) -> Self {
        BlockCache {
            map: DashMap::new(),
            clock: Mutex::new(Clock::default()),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            inserted: AtomicU64::new(0),
            #[cfg(test)]
            clear_hook: Mutex::new(None),
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Gives up `bytes` of the cache's capacity (to the reader's buffer pool, which the same share
    /// of the budget pays for); returns the bytes given.
    pub(crate) fn carve_out(&mut self, bytes: u64) -> u64 {
        let given = bytes.min(self.capacity);
        self.capacity -= given;
        given
    }

    /// The cached frame of block `block` holding `index`, if any (counts a hit or a miss).
    pub(crate) fn get(&self, block: u64, index: u64) -> Option<Arc<DecodedFrame>> {
        let found = self.map.get(&block).and_then(|frames| {
            let (_, slot) = frames.range(..=index).next_back()?;
            (slot.frame.last() >= index).then(|| {
                slot.referenced.store(true, Ordering::Relaxed);
                slot.frame.clone()
            })
        });
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// True when a cached frame of block `block` holds `index` (no hit/miss counted).
    pub(crate) fn contains(&self, block: u64, index: u64) -> bool {
        self.map.get(&block).is_some_and(|frames| {
            frames
                .range(..=index)
                .next_back()
                .is_some_and(|(_, s)| s.frame.last() >= index)
        })
    }

    pub(crate) fn insert(&self, frame: Arc<DecodedFrame>) {
        self.inserted.fetch_add(1, Ordering::Relaxed);
        let cost = cost(&frame);
        if cost > self.capacity {
            return;
        }
        let key = (frame.block, frame.first);
        let mut clock = self.clock.lock();
        let mut frames = self.map.entry(key.0).or_default();
        // A frame already cached keeps its place in the queue.
        let pos = match frames.get(&key.1) {
            Some(old) => {
                clock.bytes = clock.bytes.saturating_sub(self::cost(&old.frame));
                old.pos
            }
            None => clock.enqueue(key),
        };
        frames.insert(
            key.1,
            Slot {
                frame,
                referenced: AtomicBool::new(false),
                pos,
            },
        );
        drop(frames);
        clock.bytes += cost;
        self.evict(&mut clock);
    }

    fn evict(&self, clock: &mut Clock) {
        let mut spins = 2 * clock.queue.len();
        while clock.bytes > self.capacity && spins > 0 {
            spins -= 1;
            let Some((_, key)) = clock.queue.pop_first() else {
                break;
            };
            let second_chance = self
                .map
                .get(&key.0)
                .and_then(|f| f.get(&key.1).map(|s| s.referenced.swap(false, Ordering::Relaxed)));
            match second_chance {
                Some(true) => {
                    let pos = clock.enqueue(key);
                    if let Some(slot) = self.map.get_mut(&key.0).as_mut().and_then(|f| f.get_mut(&key.1)) {
                        slot.pos = pos;
                    }
                }
                Some(false) => {
                    if let Some(slot) = self.remove_frame(key) {
                        clock.bytes = clock.bytes.saturating_sub(cost(&slot.frame));
                    }
                }
                // Unreachable while the map and the queue agree; nothing to undo either way.
                None => {}
            }
        }
    }

    /// Removes one frame, and its block's entry when it was the last. Under the `clock` lock.
    fn remove_frame(&self, key: FrameKey) -> Option<Slot> {
        let mut frames = self.map.get_mut(&key.0)?;
        let slot = frames.remove(&key.1);
        let empty = frames.is_empty();
        drop(frames);
        if empty {
            self.map.remove_if(&key.0, |_, f| f.is_empty());
        }
        slot
    }

    /// Drops every cached frame of a block whose stored form changed or went away.
    pub(crate) fn invalidate(&self, block: u64) {
        let mut clock = self.clock.lock();
        if let Some((_, frames)) = self.map.remove(&block) {
            for slot in frames.values() {
                clock.queue.remove(&slot.pos);
                clock.bytes = clock.bytes.saturating_sub(cost(&slot.frame));
            }
        }
    }

    pub(crate) fn clear(&self) {
        let mut clock = self.clock.lock();
        self.map.clear();
        #[cfg(test)]
        if let Some(hook) = self.clear_hook.lock().take() {
            hook();
        }
        clock.queue.clear();
        clock.bytes = 0;
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.clock.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::cold::block;
    use crate::proto::Entry;

    fn block(id: u64, payload: usize) -> Arc<DecodedFrame> {
        let mut z = zstd::bulk::Compressor::new(1).unwrap();
        let stored = block::encode(id, &[Entry::new(1, 1, vec![7u8; payload])], &mut z).unwrap();
        Arc::new(
            block::parse(&stored, &crate::cold::dict::NONE)
                .unwrap()
                .decode_frame(0)
                .unwrap(),
        )
    }

    impl BlockCache {
        fn queue_len(&self) -> usize {
            self.clock.lock().queue.len()
        }

        /// The cache's invariants: every cached block is in the CLOCK queue exactly once, the queue
        /// holds nothing else, and `bytes` is the sum of the cached blocks' costs.
        fn check(&self) -> Result<(), String> {
            let clock = self.clock.lock();
            let queued: Vec<FrameKey> = clock.queue.values().copied().collect();
            let mut mapped: Vec<(FrameKey, u64)> = Vec::new();
            for b in self.map.iter() {
                if b.value().is_empty() {
                    return Err(format!("block {} is mapped with no frame", b.key()));
                }
                for (first, s) in b.value() {
                    let key = (*b.key(), *first);
                    if clock.queue.get(&s.pos) != Some(&key) {
                        return Err(format!("cached frame {key:?} is not at its queue position"));
                    }
                    if (s.frame.block, s.frame.first) != key {
                        return Err(format!("cached frame {key:?} holds another frame"));
                    }
                    mapped.push((key, cost(&s.frame)));
                }
            }
            let queued_set: HashSet<FrameKey> = queued.iter().copied().collect();
            if queued.len() != mapped.len() || queued_set.len() != queued.len() {
                return Err(format!(
                    "queue holds {} keys ({} distinct) for {} cached frames",
                    queued.len(),
                    queued_set.len(),
                    mapped.len()
                ));
            }
            if let Some((key, _)) = mapped.iter().find(|(k, _)| !queued_set.contains(k)) {
                return Err(format!("cached frame {key:?} is not in the CLOCK queue"));
            }
            let sum: u64 = mapped.iter().map(|(_, c)| c).sum();
            if clock.bytes != sum {
                return Err(format!(
                    "bytes = {} but the cached frames cost {sum}",
                    clock.bytes
                ));
            }
            Ok(())
        }
    }

    /// Invalidated ids left the map but stayed in the CLOCK queue, which then grew without bound
    /// while the cache stayed under capacity (eviction, the only thing that drained it, never ran).
    #[test]
    fn invalidate_removes_the_id_from_the_clock_queue() {
        let cache = BlockCache::new(1 << 20);
        for id in 0..1000 {
            cache.insert(block(id, 100));
            cache.invalidate(id);
        }
        assert_eq!(cache.bytes(), 0);
        assert_eq!(cache.queue_len(), 0, "invalidated ids stay queued");
        cache.check().unwrap();
    }

    /// An `insert` that lands in the middle of `clear` (a reset while a reader fetches cold blocks):
    /// with the map, the queue and the byte count updated separately, the block stayed mapped but
    /// left the queue with `bytes` = 0, and invalidating it wrapped `bytes` to about 2^64, which
    /// disabled the cache for good (every insert then evicted everything).
    #[test]
    fn insert_racing_clear_keeps_accounting_and_queue_consistent() {
        let cache = Arc::new(BlockCache::new(1 << 20));
        cache.insert(block(1, 100));
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let inserter = {
            let cache = cache.clone();
            std::thread::spawn(move || {
                go_rx.recv().unwrap();
                cache.insert(block(2, 100));
                let _ = done_tx.send(());
            })
        };
        *cache.clear_hook.lock() = Some(Box::new(move || {
            go_tx.send(()).unwrap();
            // Without a common lock the insert completes inside `clear`; with one it waits until
            // `clear` returns (the timeout only bounds how long this hook waits to find out).
            let _ = done_rx.recv_timeout(Duration::from_millis(300));
        }));
        cache.clear();
        inserter.join().unwrap();
        cache.check().unwrap();
        cache.invalidate(2);
        assert!(
            cache.bytes() <= cache.capacity,
            "bytes wrapped: {}",
            cache.bytes()
        );
        cache.check().unwrap();
        // The cache still caches.
        cache.insert(block(3, 100));
        assert!(cache.contains(3, 1));
        cache.check().unwrap();
    }

    /// A deterministic random mix of inserts (new and repeated ids), hits, invalidations and clears
    /// under a small capacity keeps every invariant after every step.
    #[test]
    fn random_operations_keep_the_invariants() {
        let blocks: Vec<Arc<DecodedFrame>> = (0..64).map(|id| block(id, 200 + 40 * id as usize)).collect();
        let cache = BlockCache::new(8 << 10);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for step in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = (x >> 8) % 64;
            match x % 100 {
                0..=49 => cache.insert(blocks[id as usize].clone()),
                50..=79 => {
                    let _ = cache.get(id, 1);
                }
                80..=98 => cache.invalidate(id),
                _ => cache.clear(),
            }
            cache.check().unwrap_or_else(|e| panic!("step {step}: {e}"));
            assert!(cache.bytes() <= cache.capacity, "step {step}: over capacity");
        }
    }

    /// Frames of one block are found by any index they hold, counted exactly, and all go when
    /// their block is invalidated.
    #[test]
    fn frames_are_found_by_index_and_invalidated_with_their_block() {
        let entries: Vec<Entry> = (1..=400).map(|i| Entry::new(i, 1, vec![i as u8; 256])).collect();
        let mut z = zstd::bulk::Compressor::new(1).unwrap();
        let stored = block::encode(9, &entries, &mut z).unwrap();
        let parsed = block::parse(&stored, &crate::cold::dict::NONE).unwrap();
        let frames: Vec<Arc<DecodedFrame>> = parsed.decode_all().unwrap().into_iter().map(Arc::new).collect();
        assert!(frames.len() > 2);
        let cache = BlockCache::new(1 << 20);
        cache.insert(frames[1].clone());
        let f1 = &frames[1];
        assert!(cache.contains(9, f1.first) && cache.contains(9, f1.last()));
        assert!(!cache.contains(9, f1.last() + 1) && !cache.contains(9, f1.first - 1));
        assert_eq!(cache.get(9, f1.first + 1).map(|f| f.first), Some(f1.first));
        assert!(cache.get(8, f1.first).is_none(), "another block's index");
        for f in &frames {
            cache.insert(f.clone());
        }
        let sum: u64 = frames.iter().map(|f| cost(f)).sum();
        assert_eq!(cache.bytes(), sum);
        cache.check().unwrap();
        cache.insert(block(10, 100));
        cache.invalidate(9);
        assert!((1..=400).all(|i| !cache.contains(9, i)));
        assert!(cache.contains(10, 1));
        assert_eq!(cache.bytes(), cost(&block(10, 100)));
        cache.check().unwrap();
    }
}
