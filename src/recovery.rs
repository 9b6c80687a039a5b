//! Rebuilding the log of a directory: the cold checkpoint from redb, then only the write-ahead
//! records the checkpoint does not already hold (so recovery costs O(hot tier), not O(log)). The
//! engine and the offline tools both open a directory through [`rebuild`].

use std::collections::BTreeMap;
use std::path::Path;

use crate::cold::reader::ColdReader;
use crate::cold::store::{BlockIndex, Checkpoint};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::proto::Entry;
use crate::state::LogState;
use crate::wal::{self, Record};

/// The log of the directory whose write-ahead log is in `wal_dir` and whose cold tier is `cold`
/// (checkpoint `cp`, block index `index`), as recovery mode `config.recovery_mode` reads it; and
/// what recovery found in the write-ahead directory (for the writer to take over).
pub(crate) fn rebuild(
    wal_dir: &Path,
    config: &Config,
    cold: &ColdReader,
    cp: &Checkpoint,
    index: BlockIndex,
) -> Result<(LogState, wal::Recovered)> {
    let span = tracing::info_span!(
        "recovery",
        segments = tracing::field::Empty,
        records = tracing::field::Empty,
        replayed = tracing::field::Empty,
        bytes = tracing::field::Empty,
        duration_us = tracing::field::Empty,
    );
    let _in_span = span.enter();
    let start = std::time::Instant::now();
    let mut state = LogState::from_checkpoint(cp, index);
    let recovered = replay(wal_dir, config, cp, &mut state, |st, a, b| {
        read_at_rest(cold, st, a, b)
    })?;
    let segments = recovered.segments();
    span.record("segments", segments.len());
    span.record("bytes", segments.iter().map(|s| s.end).sum::<u64>());
    span.record("duration_us", start.elapsed().as_micros() as u64);
    Ok((state, recovered))
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

/// Rebuilds the in-memory state. `read_cold` serves the rare replayed overwrite that reaches below the
/// ring (it needs the cold entries that follow the overwritten range).
fn replay(
    wal_dir: &Path,
    config: &Config,
    cp: &Checkpoint,
    state: &mut LogState,
    mut read_cold: impl FnMut(&LogState, u64, u64) -> Result<Vec<Entry>>,
) -> Result<wal::Recovered> {
    // Records the checkpoint covers matter only above its high-water mark. They are applied as
    // plain index-map operations, because their predecessors may sit in retired segments: retirement
    // guarantees that whatever those wrote above the mark was removed by a later (still present)
    // record, so the map ends up holding exactly the log above the mark as of `applied_seq`.
    let mut above: BTreeMap<u64, Entry> = BTreeMap::new();
    let mut covered = true;
    let (mut total, mut replayed) = (0u64, 0u64);
    let recovered = wal::recover(wal_dir, config.recovery_mode, cp.applied_seq, &mut |seq, rec| {
        total += 1;
        // Payloads read back share their record's frame; the ring must not pin whole frames.
        let rec = rec.into_owned();
        if seq <= cp.applied_seq {
            apply_to_map(&mut above, rec, cp.cold_hi);
            return Ok(());
        }
        if covered {
            covered = false;
            state.install_above(std::mem::take(&mut above), cp.applied_seq)?;
        }
        let rehydrated = match &rec {
            Record::Append(batch) => match state.check_append(batch) {
                Ok(Some((a, b))) => read_cold(state, a, b)?,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        state.apply(seq, rec, rehydrated);
        replayed += 1;
        Ok(())
    })?;
    if covered {
        state.install_above(above, cp.applied_seq)?;
    }
    let span = tracing::Span::current();
    span.record("records", total);
    span.record("replayed", replayed);
    tracing::info!(
        records = total,
        replayed,
        applied_seq = cp.applied_seq,
        "write-ahead log recovered"
    );
    Ok(recovered)
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
        Record::Seal => {}
    }
}
