//! Read-only tools over a tierlog directory (what `tierlog inspect/verify/dump` print), plus the
//! offline redb compaction. None of the read-only functions writes a byte to the directory.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cold::cache::BlockCache;
use crate::cold::store::{Checkpoint, ColdStore};
use crate::config::{Config, RecoveryMode};
use crate::engine::{
    APP_META_FILE, COLD_FILE, HARD_STATE_FILE, LOCK_FILE, MARKER_FILE, MARKER_TEXT, WAL_DIR,
};
use crate::error::{Error, Result};
use crate::meta::AppMeta;
use crate::proto::{Entry, HardState, LogId};
use crate::state::LogState;
use crate::wal::{self, Tail};

/// One write-ahead segment as found on disk.
#[derive(Clone, Debug, Serialize)]
pub struct SegmentReport {
    /// File path.
    pub path: PathBuf,
    /// Segment id from its header.
    pub id: u64,
    /// Valid records (the seal not counted).
    pub records: u64,
    /// Sequence numbers of the first and last valid record.
    pub seq_range: Option<(u64, u64)>,
    /// Bytes of valid records (header included).
    pub used_bytes: u64,
    /// Allocated file size.
    pub file_bytes: u64,
    /// How the segment ends: "sealed", "open" or "torn at OFFSET: REASON".
    pub tail: String,
}

/// What [`inspect`] finds in a directory.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    /// The directory.
    pub dir: PathBuf,
    /// First and last index of the log (`None` when empty).
    pub index_range: Option<(u64, u64)>,
    /// `last_index()` as the engine would report it.
    pub last_index: u64,
    /// Highest purged log id.
    pub purge_boundary: Option<LogId>,
    /// Saved hard state.
    pub hard_state: Option<HardState>,
    /// Size of the application-metadata blob (`TierMetaStore::save_app_meta`), if one was saved.
    pub app_meta_bytes: Option<usize>,
    /// Entries that would be in the hot ring after opening (not yet in cold blocks).
    pub hot_entries: u64,
    /// Highest index in the durable cold checkpoint.
    pub cold_high_water: u64,
    /// Write-ahead sequence number the cold checkpoint covers.
    pub cold_applied_seq: u64,
    /// Cold blocks holding live entries, and their index range.
    pub cold_blocks: u64,
    /// Index range covered by cold blocks.
    pub cold_index_range: Option<(u64, u64)>,
    /// Uncompressed bytes of those blocks.
    pub cold_raw_bytes: u64,
    /// Stored (compressed) bytes of those blocks.
    pub cold_stored_bytes: u64,
    /// Uncompressed / stored.
    pub compression_ratio: f64,
    /// Size of the redb file.
    pub redb_file_bytes: u64,
    /// The redb file was not closed cleanly (the engine crashed or is still running), so it was read
    /// through a repaired scratch copy; the directory itself was not modified.
    pub redb_not_closed_cleanly: bool,
    /// Write-ahead segments, oldest first.
    pub segments: Vec<SegmentReport>,
    /// Spare (recycled) segment files.
    pub spare_segments: u64,
}

/// What [`verify`] checked.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Write-ahead records whose checksum was verified.
    pub wal_records: u64,
    /// Cold blocks decompressed and checksum-verified.
    pub cold_blocks: u64,
    /// Entries checked to be present and in order over the whole log.
    pub entries: u64,
    /// Torn tail records found (a crash mid-write; cut off on open in the default mode).
    pub torn_tails: Vec<String>,
    /// As [`Inspection::redb_not_closed_cleanly`]: the cold blocks were checked in a repaired copy.
    pub redb_not_closed_cleanly: bool,
}

/// A directory opened read-only: the state the engine would have after recovery.
struct ReadOnlyLog {
    cold: ColdStore,
    cache: BlockCache,
    cp: Checkpoint,
    state: LogState,
    recovered: wal::Recovered,
}

fn check_dir(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        return Err(Error::Config(format!("{} is not a directory", dir.display())));
    }
    match std::fs::read_to_string(dir.join(MARKER_FILE)) {
        Ok(t) if t == MARKER_TEXT => Ok(()),
        _ => Err(Error::Config(format!(
            "{} is not a tierlog directory (no {MARKER_FILE} marker)",
            dir.display()
        ))),
    }
}

fn open_read_only(dir: &Path, mode: RecoveryMode) -> Result<ReadOnlyLog> {
    check_dir(dir)?;
    let (cold, cp, index) = ColdStore::open_read_only(&dir.join(COLD_FILE))?;
    let cache = BlockCache::new(64 << 20);
    let mut state = LogState::from_checkpoint(&cp, index);
    let config = Config {
        recovery_mode: mode,
        ..Config::default()
    };
    let recovered = crate::recovery::replay(&dir.join(WAL_DIR), &config, &cp, &mut state, |st, a, b| {
        crate::log_store::read_cold_once(&cold, &cache, st, a, b)
    })?;
    Ok(ReadOnlyLog {
        cold,
        cache,
        cp,
        state,
        recovered,
    })
}

/// Describes the tiers, ranges, sizes and hard state of the directory.
pub fn inspect(dir: impl AsRef<Path>) -> Result<Inspection> {
    let dir = dir.as_ref();
    let log = open_read_only(dir, RecoveryMode::TolerateTornTail)?;
    let st = &log.state;
    let lo = st.lo();
    let live: Vec<_> = st
        .cold
        .blocks
        .values()
        .filter(|m| m.last > lo && m.first <= st.cold.hi)
        .collect();
    let raw: u64 = live.iter().map(|m| m.raw_len).sum();
    let stored: u64 = live.iter().map(|m| m.stored_len).sum();
    let (_, spares) = wal::list_segments(&dir.join(WAL_DIR))?;
    let segments = log
        .recovered
        .segments()
        .iter()
        .map(|s| SegmentReport {
            path: s.path.clone(),
            id: s.id,
            records: s.records.len() as u64,
            seq_range: s.records.first().zip(s.records.last()).map(|(a, b)| (a.0, b.0)),
            used_bytes: s.end,
            file_bytes: s.file_len,
            tail: match &s.tail {
                Tail::Sealed => "sealed".into(),
                Tail::Clean => "open".into(),
                Tail::Bad { offset, reason, .. } => format!("torn at {offset}: {reason}"),
            },
        })
        .collect();
    Ok(Inspection {
        dir: dir.to_path_buf(),
        index_range: (!st.is_empty()).then_some((st.first, st.last)),
        last_index: st.last_index(),
        purge_boundary: st.purged,
        hard_state: crate::meta::read::<HardState>(&dir.join(HARD_STATE_FILE))?.map(|h| h.1),
        app_meta_bytes: crate::meta::read::<AppMeta>(&dir.join(APP_META_FILE))?.map(|m| m.1.0.len()),
        hot_entries: st.ring.len(),
        cold_high_water: log.cp.cold_hi,
        cold_applied_seq: log.cp.applied_seq,
        cold_blocks: live.len() as u64,
        cold_index_range: live
            .first()
            .zip(live.last())
            .map(|(a, b)| (a.first.max(lo + 1), b.last)),
        cold_raw_bytes: raw,
        cold_stored_bytes: stored,
        compression_ratio: if stored == 0 {
            0.0
        } else {
            raw as f64 / stored as f64
        },
        redb_file_bytes: log.cold.file_bytes(),
        redb_not_closed_cleanly: log.cold.read_from_repaired_copy(),
        segments,
        spare_segments: spares.len() as u64,
    })
}

/// Checks every write-ahead record and every cold block against its checksum, that the block index
/// matches the blocks, and that the log's index range reads back contiguous. Corruption is an
/// [`Error::Corruption`] naming the file and offset (for cold blocks: the block's first index).
pub fn verify(dir: impl AsRef<Path>) -> Result<VerifyReport> {
    let dir = dir.as_ref();
    let log = open_read_only(dir, RecoveryMode::TolerateTornTail)?;
    let mut report = VerifyReport {
        redb_not_closed_cleanly: log.cold.read_from_repaired_copy(),
        ..VerifyReport::default()
    };
    for s in log.recovered.segments() {
        report.wal_records += s.records.len() as u64;
        if let Tail::Bad { offset, reason, .. } = &s.tail {
            report
                .torn_tails
                .push(format!("{} at {offset}: {reason}", s.path.display()));
        }
    }
    let index = log.state.cold.blocks.clone();
    let mut first_error: Option<Error> = None;
    let mut seen = 0u64;
    log.cold.for_each_block(|key, decoded| {
        seen += 1;
        if first_error.is_some() {
            return;
        }
        let err = |reason: String| Some(Error::corruption(log.cold.path(), key, reason));
        match (decoded, index.get(&key)) {
            (Err(reason), _) => first_error = err(reason),
            (Ok(_), None) => first_error = err("block has no index entry".into()),
            (Ok(b), Some(m)) if b.id != m.id || b.first != key || b.last() != m.last => {
                first_error = err(format!(
                    "block (id {}, {}..={}) does not match its index entry (id {}, {}..={})",
                    b.id,
                    b.first,
                    b.last(),
                    m.id,
                    m.first,
                    m.last
                ))
            }
            (Ok(_), Some(_)) => {}
        }
    })?;
    if let Some(e) = first_error {
        return Err(e);
    }
    if seen != index.len() as u64 {
        return Err(Error::corruption(
            log.cold.path(),
            0,
            format!("{} index entries but {seen} blocks", index.len()),
        ));
    }
    report.cold_blocks = seen;
    let st = &log.state;
    if !st.is_empty() {
        let mut next = st.first;
        while next <= st.last {
            let to = st.last.min(next + 65_535);
            let chunk = crate::log_store::read_cold_once(&log.cold, &log.cache, st, next, to)?;
            for e in &chunk {
                if e.index != next {
                    return Err(Error::corruption(
                        log.cold.path(),
                        next,
                        format!("index {next} missing (found {})", e.index),
                    ));
                }
                next += 1;
            }
            if chunk.is_empty() {
                return Err(Error::corruption(
                    log.cold.path(),
                    next,
                    format!("index {next} missing"),
                ));
            }
            report.entries += chunk.len() as u64;
        }
    }
    Ok(report)
}

/// The entries of `[from, to]` that exist, read without modifying the directory.
pub fn dump(dir: impl AsRef<Path>, from: u64, to: u64) -> Result<Vec<Entry>> {
    let log = open_read_only(dir.as_ref(), RecoveryMode::TolerateTornTail)?;
    if from > to {
        return Ok(Vec::new());
    }
    crate::log_store::read_cold_once(&log.cold, &log.cache, &log.state, from, to)
}

/// Compacts the redb file of a directory no engine has open; returns its size before and after.
pub fn compact(dir: impl AsRef<Path>) -> Result<(u64, u64)> {
    let dir = dir.as_ref();
    check_dir(dir)?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = std::fs::File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
    lock.try_lock()
        .map_err(|_| Error::Config(format!("{} is open in an engine; close it first", dir.display())))?;
    let path = dir.join(COLD_FILE);
    let size = || {
        std::fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| Error::io(&path, e))
    };
    let before = size()?;
    let mut db = redb::Database::open(&path).map_err(|e| Error::db(&path, e))?;
    while db.compact().map_err(|e| Error::db(&path, e))? {}
    drop(db);
    Ok((before, size()?))
}
