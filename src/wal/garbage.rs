//! What segment retirement needs to know: for each live segment, per group with records in it,
//! the highest sequence number and entry index those records wrote and the truncations that
//! lowered them. The writer notes every record here; the compactor asks which segments every
//! group's cold checkpoint covers. Behind its own lock, so asking never waits for a writer.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;

use super::record::Footprint;
use crate::proto::GroupId;

/// A closed or active segment the writer keeps track of for garbage collection.
#[derive(Debug, Clone)]
pub(super) struct SegmentInfo {
    pub id: u64,
    pub path: PathBuf,
    /// Sequence number of its first record.
    first_seq: u64,
    /// Highest sequence number written into it.
    pub last_seq: u64,
    /// What each group with records in it needs of it.
    parts: HashMap<GroupId, Part>,
}

/// One group's records in one segment.
#[derive(Debug, Clone, Default)]
struct Part {
    /// Highest sequence number of the group's records in the segment.
    last_seq: u64,
    /// Highest entry index the group's records in it wrote that no later truncation removed.
    max_index: u64,
    /// `(seq, max_index before)` of each truncation that lowered `max_index`: until the group's cold
    /// checkpoint covers that record, the entries it removed may still be needed by replay.
    lowered: Vec<(u64, u64)>,
}

/// What a group's durable cold checkpoint covers, as segment retirement needs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Covered {
    pub applied_seq: u64,
    pub cold_hi: u64,
    /// The group's records below this sequence number belong to an earlier group of the same id.
    pub created_seq: u64,
}

impl Part {
    /// Highest index replay may need from this part when the checkpoint covers `applied_seq`.
    fn needed_index(&self, applied_seq: u64) -> u64 {
        self.lowered
            .iter()
            .filter(|(seq, _)| *seq > applied_seq)
            .map(|(_, before)| *before)
            .fold(self.max_index, u64::max)
    }

    /// Whether replay of the group, as `covered` (or `None`: the group is gone) describes its
    /// checkpoint, can do without this part.
    fn retirable(&self, covered: Option<Covered>) -> bool {
        covered.is_none_or(|c| {
            self.last_seq < c.created_seq
                || (self.last_seq <= c.applied_seq && self.needed_index(c.applied_seq) <= c.cold_hi)
        })
    }
}

impl SegmentInfo {
    /// Segment `id`, whose first record will follow `last_seq`.
    fn new(id: u64, path: PathBuf, last_seq: u64) -> Self {
        SegmentInfo {
            id,
            path,
            first_seq: last_seq + 1,
            last_seq,
            parts: HashMap::new(),
        }
    }

    /// Accounts a record written into this segment (`own`) or a later one.
    fn note(&mut self, seq: u64, rec: Footprint, own: bool) {
        if let Some(from) = rec.removes_from
            && let Some(p) = self.parts.get_mut(&rec.group)
        {
            let bound = from.saturating_sub(1);
            if bound < p.max_index {
                p.lowered.push((seq, p.max_index));
                p.max_index = bound;
            }
        }
        if own {
            self.last_seq = seq;
            let p = self.parts.entry(rec.group).or_default();
            p.last_seq = seq;
            p.max_index = p.max_index.max(rec.max_index);
        }
    }

    /// Whether every group's replay can do without this segment.
    fn retirable(&self, covered: &dyn Fn(GroupId) -> Option<Covered>) -> bool {
        self.parts.iter().all(|(g, p)| p.retirable(covered(*g)))
    }

    /// Forgets truncations every group's checkpoint covers.
    fn prune(&mut self, covered: &dyn Fn(GroupId) -> Option<Covered>) {
        for (g, p) in &mut self.parts {
            let applied = covered(*g).map_or(u64::MAX, |c| c.applied_seq);
            p.lowered.retain(|(seq, _)| *seq > applied);
        }
    }
}

/// The live segments, oldest first (the last one is the active segment).
#[derive(Debug, Default)]
pub(crate) struct Segments(VecDeque<SegmentInfo>);

impl Segments {
    /// A new newest segment, whose first record will follow `last_seq`.
    pub(super) fn push(&mut self, id: u64, path: PathBuf, last_seq: u64) {
        self.0.push_back(SegmentInfo::new(id, path, last_seq));
    }

    /// Forgets the newest segment (an unstarted one that the writer replaces).
    pub(super) fn pop_newest(&mut self) {
        self.0.pop_back();
    }

    /// The newest segment's last sequence number is `seq` (its seal, or its last record).
    pub(super) fn ends_at(&mut self, seq: u64) {
        if let Some(s) = self.0.back_mut() {
            s.last_seq = seq;
        }
    }

    /// Accounts record `seq`, written into the newest segment. Entries a truncation removes stop
    /// keeping older segments alive (once the checkpoint covers the truncation); the record's own
    /// entries (a replace_range's) are counted after that.
    pub(super) fn note(&mut self, seq: u64, rec: Footprint) {
        let n = self.0.len();
        for (i, info) in self.0.iter_mut().enumerate() {
            info.note(seq, rec, i + 1 == n);
        }
    }

    /// How many of the oldest closed segments every group's replay can do without, given what
    /// each group's durable checkpoint covers (`covered`; `None`: the group is gone), and the
    /// sequence number just before the first segment that would then remain. Changes nothing.
    pub(super) fn retirable(&self, covered: &dyn Fn(GroupId) -> Option<Covered>) -> (usize, u64) {
        let closed = self.0.len().saturating_sub(1);
        let n = self
            .0
            .iter()
            .take(closed)
            .take_while(|s| s.retirable(covered))
            .count();
        let floor = self.0.get(n).map_or(0, |s| s.first_seq.saturating_sub(1));
        (n, floor)
    }

    /// When more than `allowed` closed segments are alive: the groups whose records keep the
    /// oldest of the others alive, each with the highest index its replay needs from them.
    pub(super) fn pinning(
        &self,
        covered: &dyn Fn(GroupId) -> Option<Covered>,
        allowed: usize,
    ) -> Vec<(GroupId, u64)> {
        let closed = self.0.len().saturating_sub(1);
        let mut out: BTreeMap<GroupId, u64> = BTreeMap::new();
        for s in self.0.iter().take(closed.saturating_sub(allowed)) {
            for (g, p) in &s.parts {
                let c = covered(*g);
                if !p.retirable(c) {
                    let need = p.needed_index(c.map_or(0, |c| c.applied_seq));
                    let e = out.entry(*g).or_default();
                    *e = (*e).max(need);
                }
            }
        }
        out.into_iter().collect()
    }

    /// Removes from the list at most `limit` of the oldest closed segments that every group's
    /// replay can do without (see `retirable`); the caller retires them.
    pub(super) fn take_garbage(
        &mut self,
        covered: &dyn Fn(GroupId) -> Option<Covered>,
        limit: usize,
    ) -> Vec<SegmentInfo> {
        for s in &mut self.0 {
            s.prune(covered);
        }
        let mut out = Vec::new();
        while out.len() < limit && self.0.len() > 1 && self.0[0].retirable(covered) {
            out.extend(self.0.pop_front());
        }
        out
    }

    /// Puts segments `take_garbage` returned, but that could not be retired, back at the front.
    pub(super) fn give_back(&mut self, segs: Vec<SegmentInfo>) {
        for s in segs.into_iter().rev() {
            self.0.push_front(s);
        }
    }

    /// The first sequence number of the oldest live segment.
    pub(super) fn oldest_seq(&self) -> u64 {
        self.0.front().map_or(1, |s| s.first_seq)
    }

    /// The live segments' paths, oldest first.
    pub(super) fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.0.iter().map(|s| &s.path)
    }
}
