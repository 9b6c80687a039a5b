//! Rebuilding the log of a directory: the cold checkpoint from redb, then only the write-ahead
//! records the checkpoint does not already hold (so recovery costs O(hot tier), not O(log)). The
//! engine and the offline tools both open a directory through [`rebuild`].

use std::collections::BTreeMap;
use std::path::Path;

use crate::cold::reader::ColdReader;
use crate::cold::store::{Checkpoint, Opened};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::proto::{Entry, GroupId};
use crate::state::LogState;
use crate::wal::{self, Record};

/// One group as recovery rebuilt it.
pub(crate) struct RebuiltGroup {
    pub state: LogState,
    /// Its durable checkpoint (for a group created in the replayed records: none yet, numbered
    /// from its creation).
    pub checkpoint: Checkpoint,
    /// The file holds blocks or a row of an earlier group of this id (see `GroupLog::wipe`).
    pub wipe: bool,
    /// The file holds no row of this group yet.
    pub unwritten: bool,
    /// The replayed records removed the group; its deletion from the file is not committed.
    pub removed: bool,
}

/// What `rebuild` found.
pub(crate) struct Rebuilt {
    /// Every group the file or the records hold, removed ones whose deletion is pending included.
    pub groups: BTreeMap<GroupId, RebuiltGroup>,
    /// The write-ahead directory as recovery found it (for the writer to take over).
    pub wal: wal::Recovered,
    /// The highest `applied_seq` of any checkpoint (the writer numbers from above it).
    pub reach: u64,
}

/// The log of every group of the directory whose write-ahead log is in `wal_dir` and whose cold
/// tier is `cold` (`opened`: what its file holds), as recovery mode `config.recovery_mode` reads it.
pub(crate) fn rebuild(wal_dir: &Path, config: &Config, cold: &ColdReader, opened: Opened) -> Result<Rebuilt> {
    let span = tracing::info_span!(
        "recovery",
        groups = tracing::field::Empty,
        segments = tracing::field::Empty,
        records = tracing::field::Empty,
        replayed = tracing::field::Empty,
        bytes = tracing::field::Empty,
        duration_us = tracing::field::Empty,
    );
    let _in_span = span.enter();
    let start = std::time::Instant::now();
    let zero_applied = opened.groups.get(&0).map_or(0, |g| g.checkpoint.applied_seq);
    let reach = opened
        .groups
        .values()
        .map(|g| g.checkpoint.applied_seq)
        .max()
        .unwrap_or(0);
    let bounds = wal::Bounds {
        floor: opened.head.wal_floor.unwrap_or(zero_applied),
        reach,
    };
    let mut groups: BTreeMap<GroupId, Replay> = opened
        .groups
        .into_iter()
        .map(|(id, g)| {
            let state = LogState::from_checkpoint(&g.checkpoint, g.index, g.meta);
            (id, Replay::new(state, g.checkpoint, false))
        })
        .collect();
    let (mut total, mut replayed) = (0u64, 0u64);
    let recovered = wal::recover(wal_dir, config.recovery_mode, bounds, &mut |seq, group, rec| {
        total += 1;
        // Payloads read back share their record's frame; the ring must not pin whole frames.
        let rec = rec.into_owned();
        match rec {
            Record::CreateGroup => {
                let covered = groups
                    .get(&group)
                    .is_some_and(|g| !g.removed && g.checkpoint.created_seq >= seq);
                if !covered {
                    // An earlier group of this id whose removal the file does not hold yet leaves
                    // rows behind that the group's first commit deletes.
                    let wipe = groups.get(&group).is_some_and(|g| g.in_file);
                    let cp = Checkpoint {
                        created_seq: seq,
                        ..Checkpoint::default()
                    };
                    let state = LogState::from_checkpoint(&cp, Default::default(), Default::default());
                    let mut g = Replay::new(state, cp, true);
                    g.wipe = wipe;
                    g.in_file = wipe;
                    groups.insert(group, g);
                }
                return Ok(());
            }
            Record::RemoveGroup => {
                if let Some(g) = groups.get_mut(&group)
                    && g.checkpoint.created_seq < seq
                {
                    if g.in_file {
                        g.removed = true;
                    } else {
                        groups.remove(&group);
                    }
                }
                return Ok(());
            }
            _ => {}
        }
        let Some(g) = groups.get_mut(&group) else {
            // A group that is gone: its removal is durable in the file.
            return Ok(());
        };
        if g.removed || seq < g.checkpoint.created_seq {
            return Ok(());
        }
        if g.replay(seq, rec, |st, a, b| read_at_rest(cold, st, a, b))? {
            replayed += 1;
        }
        Ok(())
    })?;
    let mut out = BTreeMap::new();
    for (id, g) in groups {
        out.insert(id, g.finish()?);
    }
    let segments = recovered.segments();
    span.record("groups", out.len());
    span.record("segments", segments.len());
    span.record("bytes", segments.iter().map(|s| s.end).sum::<u64>());
    span.record("records", total);
    span.record("replayed", replayed);
    span.record("duration_us", start.elapsed().as_micros() as u64);
    tracing::info!(
        records = total,
        replayed,
        groups = out.len(),
        "write-ahead log recovered"
    );
    Ok(Rebuilt {
        groups: out,
        wal: recovered,
        reach,
    })
}

/// Entries `[a, b]` of `st` when nothing can change the cold tier meanwhile (recovery, the offline
/// tools).
pub(crate) fn read_at_rest(cold: &ColdReader, st: &LogState, a: u64, b: u64) -> Result<Vec<Entry>> {
    let plan = st.plan_read(a, b);
    match plan.cold {
        Some((ca, cb, metas)) => {
            let mut out = cold.fetch(ca, cb, &metas)?.ok_or_else(|| {
                Error::corruption_at_index(cold.store().path(), ca, "cold block vanished during recovery")
            })?;
            out.extend(plan.hot);
            Ok(out)
        }
        None => Ok(plan.hot),
    }
}

/// One group's replay.
struct Replay {
    state: LogState,
    checkpoint: Checkpoint,
    /// Entries above the checkpoint's high-water mark rebuilt from the records it covers (see
    /// `replay`).
    above: BTreeMap<u64, Entry>,
    /// No record above the checkpoint's `applied_seq` has come yet.
    covered: bool,
    /// The file holds a row of the group's id (this group's or an earlier one's), or it is group 0.
    in_file: bool,
    /// The group was created by a replayed record: the file holds no row of it.
    created: bool,
    wipe: bool,
    removed: bool,
}

impl Replay {
    fn new(state: LogState, checkpoint: Checkpoint, created: bool) -> Self {
        Replay {
            state,
            checkpoint,
            above: BTreeMap::new(),
            covered: true,
            in_file: !created,
            created,
            wipe: false,
            removed: false,
        }
    }

    /// Applies record `seq` of the group; returns whether it was above the checkpoint.
    ///
    /// Records the checkpoint covers matter only above its high-water mark. They are applied as
    /// plain index-map operations, because their predecessors may sit in retired segments:
    /// retirement guarantees that whatever those wrote above the mark was removed by a later
    /// (still present) record, so the map ends up holding exactly the log above the mark as of
    /// `applied_seq`. `read_cold` serves the rare replayed overwrite that reaches below the ring
    /// (it needs the cold entries that follow the overwritten range).
    fn replay(
        &mut self,
        seq: u64,
        rec: Record,
        read_cold: impl FnOnce(&LogState, u64, u64) -> Result<Vec<Entry>>,
    ) -> Result<bool> {
        let cp = &self.checkpoint;
        if seq <= cp.applied_seq {
            apply_to_map(&mut self.above, rec, cp.cold_hi);
            return Ok(false);
        }
        if self.covered {
            self.covered = false;
            self.state
                .install_above(std::mem::take(&mut self.above), cp.applied_seq)?;
        }
        let rehydrated = match &rec {
            Record::Append(batch) => match self.state.check_append(batch) {
                Ok(Some((a, b))) => read_cold(&self.state, a, b)?,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        self.state.apply(seq, rec, rehydrated);
        Ok(true)
    }

    fn finish(mut self) -> Result<RebuiltGroup> {
        if self.covered {
            self.state
                .install_above(std::mem::take(&mut self.above), self.checkpoint.applied_seq)?;
        }
        Ok(RebuiltGroup {
            state: self.state,
            checkpoint: self.checkpoint,
            wipe: self.wipe,
            unwritten: self.created,
            removed: self.removed,
        })
    }
}

fn apply_to_map(map: &mut BTreeMap<u64, Entry>, rec: Record, floor: u64) {
    fn put(map: &mut BTreeMap<u64, Entry>, es: Vec<Entry>, floor: u64) {
        for e in es.into_iter().filter(|e| e.index > floor) {
            map.insert(e.index, e);
        }
    }
    match rec {
        Record::Append(es) => put(map, es, floor),
        Record::Replace { from, entries } => {
            map.split_off(&from);
            put(map, entries, floor);
        }
        Record::Truncate { from } => {
            map.split_off(&from);
        }
        Record::Reset => map.clear(),
        Record::Purge { cutoff } => *map = map.split_off(&cutoff.index.saturating_add(1)),
        // The checkpoint holds the metadata as of `applied_seq`; groups come and go above this.
        Record::Seal
        | Record::HardState(_)
        | Record::AppMeta(_)
        | Record::CreateGroup
        | Record::RemoveGroup => {}
    }
}
