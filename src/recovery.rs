//! Opening a directory: the cold checkpoint from redb, then only the write-ahead records the
//! checkpoint does not already hold (so recovery costs O(hot tier), not O(log)).

use std::collections::BTreeMap;
use std::path::Path;

use crate::cold::store::Checkpoint;
use crate::config::Config;
use crate::error::Result;
use crate::proto::Entry;
use crate::state::LogState;
use crate::wal::{self, Record};

/// Rebuilds the in-memory state. `read_cold` serves the rare replayed overwrite that reaches below the
/// ring (it needs the cold entries that follow the overwritten range).
pub(crate) fn replay(
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
