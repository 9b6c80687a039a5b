//! Opening a directory: the cold checkpoint from redb, then only the write-ahead records the
//! checkpoint does not already hold (so recovery costs O(hot tier), not O(log)).

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
    let mut recovered = wal::recover(wal_dir, config.recovery_mode)?;
    let records = std::mem::take(&mut recovered.records);
    let total = records.len();
    let mut replayed = 0u64;
    for (seq, rec) in records {
        if seq <= cp.applied_seq {
            state.apply(seq, rec, Some(cp.cold_hi), Vec::new());
            continue;
        }
        let rehydrated = match &rec {
            Record::Append(batch) => match state.check_append(batch) {
                Ok(Some((a, b))) => read_cold(state, a, b)?,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        state.apply(seq, rec, None, rehydrated);
        replayed += 1;
    }
    tracing::info!(
        records = total,
        replayed,
        applied_seq = cp.applied_seq,
        "write-ahead log recovered"
    );
    Ok(recovered)
}
