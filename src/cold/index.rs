//! A group's block index: its cold blocks by first index, in a deque kept sorted. Blocks of one group
//! never overlap, so lookups and ranges are binary searches. Not a `BTreeMap`: an engine hosting
//! thousands of mostly idle groups keeps one index per group, and a B-tree allocates a whole
//! 11-slot leaf (about 640 bytes) for the first block, where the deque holds exactly what it has.
//! Blocks are added at the end and purged from the front, both O(1).

use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};

use super::block::BlockMeta;

/// Blocks by first index (see the module docs); the API follows `BTreeMap<u64, BlockMeta>`'s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct BlockIndex(VecDeque<BlockMeta>);

impl BlockIndex {
    pub(crate) fn new() -> Self {
        BlockIndex(VecDeque::new())
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The blocks in index order.
    pub(crate) fn values(&self) -> std::collections::vec_deque::Iter<'_, BlockMeta> {
        self.0.iter()
    }

    /// Position of the first block whose first index is not below `bound`'s start.
    fn lower(&self, bound: Bound<&u64>) -> usize {
        match bound {
            Bound::Included(a) => self.0.partition_point(|m| m.first < *a),
            Bound::Excluded(a) => self.0.partition_point(|m| m.first <= *a),
            Bound::Unbounded => 0,
        }
    }

    /// Position after the last block whose first index is within `bound`'s end.
    fn upper(&self, bound: Bound<&u64>) -> usize {
        match bound {
            Bound::Included(b) => self.0.partition_point(|m| m.first <= *b),
            Bound::Excluded(b) => self.0.partition_point(|m| m.first < *b),
            Bound::Unbounded => self.0.len(),
        }
    }

    /// The blocks whose first index lies in `range`, as `(first index, block)`.
    pub(crate) fn range(
        &self,
        range: impl RangeBounds<u64>,
    ) -> impl DoubleEndedIterator<Item = (&u64, &BlockMeta)> {
        let lo = self.lower(range.start_bound());
        let hi = self.upper(range.end_bound()).max(lo);
        self.0.range(lo..hi).map(|m| (&m.first, m))
    }

    /// The block starting at `first`.
    pub(crate) fn get(&self, first: &u64) -> Option<&BlockMeta> {
        let i = self.0.partition_point(|m| m.first < *first);
        self.0.get(i).filter(|m| m.first == *first)
    }

    /// Adds `m` (starting at `first`), replacing the block that started there.
    pub(crate) fn insert(&mut self, first: u64, m: BlockMeta) -> Option<BlockMeta> {
        debug_assert_eq!(first, m.first);
        let i = self.0.partition_point(|b| b.first < first);
        match self.0.get_mut(i) {
            Some(b) if b.first == first => Some(std::mem::replace(b, m)),
            _ => {
                self.0.insert(i, m);
                None
            }
        }
    }

    /// Gives back the slots a deque keeps beyond its blocks (an index is published once built and
    /// then only read).
    pub(crate) fn shrink_to_fit(&mut self) {
        self.0.shrink_to_fit();
    }

    /// Removes the block starting at `first`.
    pub(crate) fn remove(&mut self, first: &u64) -> Option<BlockMeta> {
        let i = self.0.partition_point(|m| m.first < *first);
        match self.0.get(i) {
            Some(m) if m.first == *first => self.0.remove(i),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn meta(first: u64, last: u64) -> BlockMeta {
        BlockMeta {
            id: first,
            group: 0,
            first,
            last,
            raw_len: 1,
            stored_len: 1,
        }
    }

    /// Every operation agrees with the `BTreeMap` it replaces, over random inserts, removals and
    /// ranges.
    #[test]
    fn agrees_with_a_btree_map() {
        let mut ours = BlockIndex::new();
        let mut map: BTreeMap<u64, BlockMeta> = BTreeMap::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % 64
        };
        for _ in 0..5000 {
            let k = next() * 10 + 1;
            match next() % 3 {
                0 => assert_eq!(ours.remove(&k), map.remove(&k)),
                _ => assert_eq!(ours.insert(k, meta(k, k + 5)), map.insert(k, meta(k, k + 5))),
            }
            let (a, b) = (next() * 10, next() * 10);
            let want: Vec<_> = map.range(a.min(b)..=a.max(b)).collect();
            assert_eq!(ours.range(a.min(b)..=a.max(b)).collect::<Vec<_>>(), want);
            let want: Vec<_> = map.range(..a).rev().collect();
            assert_eq!(ours.range(..a).rev().collect::<Vec<_>>(), want);
            let want: Vec<_> = map.range(a + 1..).collect();
            assert_eq!(ours.range(a + 1..).collect::<Vec<_>>(), want);
            assert_eq!(ours.get(&k), map.get(&k));
            assert_eq!(ours.len(), map.len());
            assert!(ours.values().eq(map.values()));
        }
    }
}
