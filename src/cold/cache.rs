//! A bounded cache of decompressed cold blocks, keyed by block id (a block id's kept content never
//! changes, so a cached block can never be stale for the indices a reader asks of it).
//!
//! Lookups come from many reader threads at once, so the map is a `DashMap`; eviction is CLOCK
//! (second chance) over insertion order, which keeps a follower's sequential scan from thrashing
//! blocks that other readers reuse.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dashmap::DashMap;
use parking_lot::Mutex;

use super::block::DecodedBlock;

struct Slot {
    block: Arc<DecodedBlock>,
    referenced: AtomicBool,
}

pub(crate) struct BlockCache {
    map: DashMap<u64, Slot>,
    clock: Mutex<VecDeque<u64>>,
    bytes: AtomicU64,
    capacity: u64,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
}

/// Accounted cost of one cached block beyond its decompressed bytes.
const SLOT_OVERHEAD: u64 = 128;

impl BlockCache {
    pub(crate) fn new(capacity: u64) -> Self {
        BlockCache {
            map: DashMap::new(),
            clock: Mutex::new(VecDeque::new()),
            bytes: AtomicU64::new(0),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub(crate) fn get(&self, id: u64) -> Option<Arc<DecodedBlock>> {
        match self.map.get(&id) {
            Some(slot) => {
                slot.referenced.store(true, Ordering::Relaxed);
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(slot.block.clone())
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// True when block `id` is cached (no hit/miss counted).
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.map.contains_key(&id)
    }

    pub(crate) fn insert(&self, block: Arc<DecodedBlock>) {
        let cost = block.raw_len() + SLOT_OVERHEAD;
        if cost > self.capacity {
            return;
        }
        let id = block.id;
        let slot = Slot {
            block,
            referenced: AtomicBool::new(false),
        };
        if let Some(old) = self.map.insert(id, slot) {
            self.bytes
                .fetch_sub(old.block.raw_len() + SLOT_OVERHEAD, Ordering::Relaxed);
        } else {
            self.clock.lock().push_back(id);
        }
        self.bytes.fetch_add(cost, Ordering::Relaxed);
        self.evict();
    }

    fn evict(&self) {
        let mut clock = self.clock.lock();
        let mut spins = 2 * clock.len();
        while self.bytes.load(Ordering::Relaxed) > self.capacity && spins > 0 {
            spins -= 1;
            let Some(id) = clock.pop_front() else { break };
            let second_chance = self
                .map
                .get(&id)
                .map(|s| s.referenced.swap(false, Ordering::Relaxed));
            match second_chance {
                Some(true) => clock.push_back(id),
                Some(false) => self.remove_locked(id),
                None => {}
            }
        }
    }

    fn remove_locked(&self, id: u64) {
        if let Some((_, slot)) = self.map.remove(&id) {
            self.bytes
                .fetch_sub(slot.block.raw_len() + SLOT_OVERHEAD, Ordering::Relaxed);
        }
    }

    /// Drops a block whose stored form changed or went away.
    pub(crate) fn invalidate(&self, id: u64) {
        self.remove_locked(id);
        // Its id stays in the clock queue until it comes round; eviction skips missing ids.
    }

    pub(crate) fn clear(&self) {
        self.map.clear();
        self.clock.lock().clear();
        self.bytes.store(0, Ordering::Relaxed);
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}
