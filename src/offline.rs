//! Read-only tools over a tierlog directory (what `tierlog inspect/verify/dump` print), plus the
//! offline redb compaction. None of the read-only functions writes a byte to the directory.
//!
//! [`verify`] fails on every damage that makes `TieredEngine::open` (default recovery mode) fail,
//! and on damaged cold blocks, which `open` accepts but reads refuse. [`inspect_with`] and
//! [`dump_with`] take a recovery mode: with [`RecoveryMode::TolerateAnyCorruption`] they skip damage
//! (naming it in their report) and show the good part of a damaged directory.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cold::cache::BlockCache;
use crate::cold::reader::ColdReader;
use crate::cold::store::{Checkpoint, ColdStore};
use crate::config::{Config, RecoveryMode};
use crate::error::{Error, Result};
use crate::layout::{APP_META_FILE, COLD_FILE, HARD_STATE_FILE, WAL_DIR, check_dir};
use crate::meta::AppMeta;
use crate::proto::{Entry, HardState, LogId};
use crate::recovery::read_at_rest;
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
    /// How the segment ends: "sealed", "open" or "torn at byte offset N: REASON".
    pub tail: String,
}

/// What [`inspect`] finds in a directory.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    /// The directory.
    pub dir: PathBuf,
    /// The groups the directory hosts, ascending (group 0 always). The log, hot and cold figures
    /// below are group 0's; the file figures (`redb_*`, segments) are the directory's.
    pub groups: Vec<crate::GroupId>,
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
    /// Size of the store's compression dictionary, when it has trained one (`None`: every block
    /// is compressed without).
    pub dictionary_bytes: Option<u64>,
    /// Bytes the redb file takes on disk (allocated blocks), as [`Stats::redb_file_bytes`](crate::Stats::redb_file_bytes).
    pub redb_file_bytes: u64,
    /// Bytes of the redb file holding no live block content (free pages, page rounding, metadata);
    /// as [`Stats::redb_fragmented_bytes`](crate::Stats::redb_fragmented_bytes).
    pub redb_fragmented_bytes: u64,
    /// The part of it in free pages, which `tierlog compact` (or the engine's reclamation) gives
    /// back; estimated, as [`Stats::redb_free_bytes`](crate::Stats::redb_free_bytes).
    pub redb_free_bytes: u64,
    /// The redb file was not closed cleanly (the engine crashed or is still running), so it was read
    /// through a repaired scratch copy; the directory itself was not modified.
    pub redb_not_closed_cleanly: bool,
    /// Write-ahead segments, oldest first.
    pub segments: Vec<SegmentReport>,
    /// Spare (recycled) segment files.
    pub spare_segments: u64,
    /// The hard-state file has no valid slot (reported only in
    /// [`RecoveryMode::TolerateAnyCorruption`]; other modes fail); `hard_state` is then `None`.
    pub hard_state_damaged: bool,
    /// As `hard_state_damaged`, for the application-metadata file.
    pub app_meta_damaged: bool,
    /// Damage that [`RecoveryMode::TolerateAnyCorruption`] skipped, one message each (the
    /// corruption error that the default mode fails with); empty in the other modes.
    pub damage: Vec<String>,
}

/// What [`dump_with`] passed to its sink and what it skipped.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DumpReport {
    /// Entries passed to the sink.
    pub entries: u64,
    /// Damage that [`RecoveryMode::TolerateAnyCorruption`] skipped: the write-ahead log cut at a bad
    /// record, and each unreadable cold block with the index range it held. Empty in other modes.
    pub damage: Vec<String>,
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
    cold: ColdReader,
    /// Group 0's checkpoint and log (what inspect and dump show).
    cp: Checkpoint,
    state: LogState,
    /// Every other group's log (verify checks them all).
    others: Vec<(crate::GroupId, LogState)>,
    /// Groups the records removed whose deletion the file does not hold yet: their blocks are still
    /// in it.
    removed: Vec<(crate::GroupId, LogState)>,
    /// The write-ahead segments, summarised (recovery hands each record to replay as it reads it,
    /// so no segment's records are held).
    segments: Vec<SegmentReport>,
    /// Bad records the recovery mode cut off: (segment, offset, reason).
    bad_tails: Vec<(PathBuf, u64, String)>,
}

/// Decompressed blocks the offline tools keep: they read the log front to back, so a block is
/// rarely needed twice.
const OFFLINE_BLOCK_CACHE_BYTES: u64 = 16 << 20;

/// Entries read per step when walking the whole log, so it is never held in memory at once.
const READ_CHUNK: u64 = 8192;

fn open_read_only(dir: &Path, mode: RecoveryMode) -> Result<ReadOnlyLog> {
    check_dir(dir)?;
    let (store, opened) = ColdStore::open_read_only(&dir.join(COLD_FILE))?;
    let cold = ColdReader::new(store, BlockCache::new(OFFLINE_BLOCK_CACHE_BYTES));
    let config = Config {
        recovery_mode: mode,
        ..Config::default()
    };
    let rebuilt = crate::recovery::rebuild(&dir.join(WAL_DIR), &config, &cold, opened)?;
    let recovered = rebuilt.wal;
    let mut groups = rebuilt.groups;
    let zero = groups
        .remove(&0)
        .ok_or_else(|| Error::corruption_of_file(cold.store().path(), "the file holds no group 0"))?;
    let (cp, state) = (zero.checkpoint, zero.state);
    let (removed, others): (Vec<_>, Vec<_>) = groups.into_iter().partition(|(_, g)| g.removed);
    let others = others.into_iter().map(|(id, g)| (id, g.state)).collect();
    let removed = removed.into_iter().map(|(id, g)| (id, g.state)).collect();
    let segments = recovered
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
                Tail::Bad { offset, reason, .. } => format!("torn at byte offset {offset}: {reason}"),
            },
        })
        .collect();
    let bad_tails = recovered
        .segments()
        .iter()
        .filter_map(|s| match &s.tail {
            Tail::Bad { offset, reason, .. } => Some((s.path.clone(), *offset, reason.clone())),
            _ => None,
        })
        .collect();
    Ok(ReadOnlyLog {
        cold,
        cp,
        state,
        others,
        removed,
        segments,
        bad_tails,
    })
}

impl ReadOnlyLog {
    /// Every group's log, group 0 first.
    fn groups(&self) -> impl Iterator<Item = (crate::GroupId, &LogState)> {
        std::iter::once((0, &self.state)).chain(self.others.iter().map(|(id, st)| (*id, st)))
    }
}

/// Opens read-only in `mode`. In [`RecoveryMode::TolerateAnyCorruption`] the default mode is tried
/// first, so that the damage the salvage cuts away is named in `damage`.
fn open_in_mode(dir: &Path, mode: RecoveryMode, damage: &mut Vec<String>) -> Result<ReadOnlyLog> {
    if mode != RecoveryMode::TolerateAnyCorruption {
        return open_read_only(dir, mode);
    }
    match open_read_only(dir, RecoveryMode::TolerateTornTail) {
        Err(e) if e.is_corruption() => {
            let log = open_read_only(dir, mode)?;
            damage.push(format!(
                "{e} (the log is cut at the first bad write-ahead record; later records are dropped)"
            ));
            Ok(log)
        }
        other => other,
    }
}

/// Reads a metadata file; in [`RecoveryMode::TolerateAnyCorruption`] a damaged one is noted and read
/// as absent.
fn read_meta<V: crate::meta::SlotValue>(
    path: &Path,
    mode: RecoveryMode,
    damage: &mut Vec<String>,
) -> Result<(Option<V>, bool)> {
    match crate::meta::read::<V>(path) {
        Ok(v) => Ok((v.map(|v| v.1), false)),
        Err(e) if e.is_corruption() && mode == RecoveryMode::TolerateAnyCorruption => {
            damage.push(e.to_string());
            Ok((None, true))
        }
        Err(e) => Err(e),
    }
}

/// Describes the tiers, ranges, sizes and hard state of the directory, recovered as the engine
/// would in its default mode. See [`inspect_with`].
pub fn inspect(dir: impl AsRef<Path>) -> Result<Inspection> {
    inspect_with(dir, RecoveryMode::TolerateTornTail)
}

/// [`inspect`] in a recovery mode: [`RecoveryMode::TolerateAnyCorruption`] describes the good part
/// of a damaged directory (the log up to the first bad write-ahead record; metadata files with no
/// valid slot read as absent) and lists what it skipped in [`Inspection::damage`].
pub fn inspect_with(dir: impl AsRef<Path>, mode: RecoveryMode) -> Result<Inspection> {
    let dir = dir.as_ref();
    let mut damage = Vec::new();
    let log = open_in_mode(dir, mode, &mut damage)?;
    let (hard_state, hard_state_damaged) =
        read_meta::<HardState>(&dir.join(HARD_STATE_FILE), mode, &mut damage)?;
    let (app_meta, app_meta_damaged) = read_meta::<AppMeta>(&dir.join(APP_META_FILE), mode, &mut damage)?;
    let st = &log.state;
    let lo = st.purged_index();
    let live: Vec<_> = st
        .cold
        .blocks
        .values()
        .filter(|m| m.last > lo && m.first <= st.cold.hi)
        .collect();
    let raw: u64 = live.iter().map(|m| m.raw_len).sum();
    let stored: u64 = live.iter().map(|m| m.stored_len).sum();
    let (_, spares) = wal::list_segments(&dir.join(WAL_DIR))?;
    let segments = log.segments.clone();
    let all_blocks: Vec<_> = log
        .groups()
        .chain(log.removed.iter().map(|(id, st)| (*id, st)))
        .flat_map(|(_, st)| st.cold.blocks.values().copied())
        .collect();
    let redb = log.cold.store().footprint(&all_blocks);
    Ok(Inspection {
        dir: dir.to_path_buf(),
        groups: log.groups().map(|(id, _)| id).collect(),
        index_range: (!st.is_empty()).then_some((st.first, st.last)),
        last_index: st.last_index(),
        purge_boundary: st.purged,
        hard_state,
        app_meta_bytes: app_meta.map(|m| m.0.len()),
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
        dictionary_bytes: log.cold.store().dictionaries().current().map(|d| d.len() as u64),
        redb_file_bytes: redb.file_bytes,
        redb_fragmented_bytes: redb.fragmented_bytes,
        redb_free_bytes: redb.free_bytes,
        redb_not_closed_cleanly: log.cold.store().read_from_repaired_copy(),
        segments,
        spare_segments: spares.len() as u64,
        hard_state_damaged,
        app_meta_damaged,
        damage,
    })
}

/// Checks every write-ahead record and every cold block against its checksum, that the block index
/// matches the blocks, that the log's index range reads back contiguous, and that the hard-state
/// and application-metadata files each have a valid slot. Damage is an [`Error::Corruption`]
/// naming the file and where in it ([`crate::OffsetKind`]: a byte offset in a segment, the first log
/// index of a cold block, or the whole file, e.g. a redb file redb refuses to open). Every damage
/// that makes `TieredEngine::open` fail in the default recovery mode fails `verify` too.
///
/// Memory stays bounded on any log size: blocks are checked one at a time, the log is read back in
/// chunks, and recovery holds one write-ahead record at a time besides the hot tier it rebuilds
/// (as `open` does).
pub fn verify(dir: impl AsRef<Path>) -> Result<VerifyReport> {
    let dir = dir.as_ref();
    let log = open_read_only(dir, RecoveryMode::TolerateTornTail)?;
    crate::meta::read::<HardState>(&dir.join(HARD_STATE_FILE))?;
    crate::meta::read::<AppMeta>(&dir.join(APP_META_FILE))?;
    let mut report = VerifyReport {
        redb_not_closed_cleanly: log.cold.store().read_from_repaired_copy(),
        ..VerifyReport::default()
    };
    report.wal_records = log.segments.iter().map(|s| s.records).sum();
    for (path, offset, reason) in &log.bad_tails {
        report
            .torn_tails
            .push(format!("{} at byte offset {offset}: {reason}", path.display()));
    }
    // Damage no block may need yet (a block naming the dictionary fails below anyway).
    if let Some((_, reason)) = log.cold.store().dictionaries().damaged().next() {
        return Err(Error::corruption_of_file(
            log.cold.store().path(),
            reason.to_string(),
        ));
    }
    let indexes: std::collections::HashMap<crate::GroupId, _> = log
        .groups()
        .chain(log.removed.iter().map(|(id, st)| (*id, st)))
        .map(|(id, st)| (id, st.cold.blocks.clone()))
        .collect();
    let indexed: usize = indexes.values().map(|i| i.len()).sum();
    let mut first_error: Option<Error> = None;
    let mut seen = 0u64;
    log.cold.store().for_each_block(|group, key, decoded| {
        seen += 1;
        if first_error.is_some() {
            return;
        }
        let err = |reason: String| {
            let reason = if group == 0 {
                reason
            } else {
                format!("group {group}: {reason}")
            };
            Some(Error::corruption_at_index(log.cold.store().path(), key, reason))
        };
        match (decoded, indexes.get(&group).and_then(|i| i.get(&key))) {
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
    if seen != indexed as u64 {
        return Err(Error::corruption_of_file(
            log.cold.store().path(),
            format!("{indexed} index entries but {seen} blocks"),
        ));
    }
    report.cold_blocks = seen;
    for (_, st) in log.groups() {
        report.entries += check_contiguous(&log.cold, st)?;
    }
    Ok(report)
}

/// Reads `st`'s whole log back in chunks and checks it is contiguous; returns how many entries.
fn check_contiguous(cold: &ColdReader, st: &LogState) -> Result<u64> {
    let mut entries = 0;
    if !st.is_empty() {
        let mut next = st.first;
        while next <= st.last {
            let to = st.last.min(next + (READ_CHUNK - 1));
            let chunk = read_at_rest(cold, st, next, to)?;
            for e in &chunk {
                if e.index != next {
                    return Err(Error::corruption_at_index(
                        cold.store().path(),
                        next,
                        format!("index {next} missing (found {})", e.index),
                    ));
                }
                next += 1;
            }
            if chunk.is_empty() {
                return Err(Error::corruption_at_index(
                    cold.store().path(),
                    next,
                    format!("index {next} missing"),
                ));
            }
            entries += chunk.len() as u64;
        }
    }
    Ok(entries)
}

/// The entries of `[from, to]` that exist, read without modifying the directory. For a long range,
/// [`dump_with`] streams instead of collecting.
pub fn dump(dir: impl AsRef<Path>, from: u64, to: u64) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    dump_with(dir, from, to, RecoveryMode::TolerateTornTail, &mut |e: &Entry| {
        out.push(e.clone());
        true
    })?;
    Ok(out)
}

/// Calls `sink` with every existing entry of `[from, to]` in index order, until it returns false;
/// the directory is opened once and read in chunks, so any range costs bounded memory.
///
/// In [`RecoveryMode::TolerateAnyCorruption`] (salvage) damage is skipped and listed in
/// [`DumpReport::damage`]: the log ends at the first bad write-ahead record, and the entries of an
/// unreadable cold block are left out (the entries around them are passed on). In the other modes
/// damage is an [`Error::Corruption`], returned after the entries before it went to the sink.
pub fn dump_with(
    dir: impl AsRef<Path>,
    from: u64,
    to: u64,
    mode: RecoveryMode,
    sink: &mut dyn FnMut(&Entry) -> bool,
) -> Result<DumpReport> {
    let mut report = DumpReport::default();
    let log = open_in_mode(dir.as_ref(), mode, &mut report.damage)?;
    let st = &log.state;
    if st.is_empty() {
        return Ok(report);
    }
    let (from, to) = (from.max(st.first), to.min(st.last));
    let salvage = mode == RecoveryMode::TolerateAnyCorruption;
    let mut pos = from;
    while pos <= to {
        let hi = to.min(pos.saturating_add(READ_CHUNK - 1));
        let (entries, next) = read_range(&log, pos, hi, to, salvage, &mut report.damage)?;
        for e in entries {
            report.entries += 1;
            if !sink(&e) {
                return Ok(report);
            }
        }
        pos = next;
    }
    Ok(report)
}

/// The entries of `[a, b]` and the index to read next (`b + 1`, or past a skipped block). With
/// `salvage`, an unreadable cold block is noted in `damage` (its range clipped to `limit`) and its
/// entries are left out instead of failing the read.
fn read_range(
    log: &ReadOnlyLog,
    a: u64,
    b: u64,
    limit: u64,
    salvage: bool,
    damage: &mut Vec<String>,
) -> Result<(Vec<Entry>, u64)> {
    let mut out = Vec::new();
    let mut pos = a;
    while pos <= b {
        let err = match read_at_rest(&log.cold, &log.state, pos, b) {
            Ok(entries) => {
                out.extend(entries);
                break;
            }
            Err(e) => e,
        };
        let bad = match &err {
            Error::Corruption {
                path,
                offset,
                offset_kind: crate::error::OffsetKind::LogIndex,
                ..
            } if salvage && path == log.cold.store().path() && *offset <= b => *offset,
            _ => return Err(err),
        };
        // The block named by the error (blocks are keyed by their first index), else just that index.
        let (first, last) = log
            .state
            .cold
            .blocks
            .get(&bad)
            .map_or((bad, bad), |m| (m.first, m.last));
        let (skip_from, skip_to) = (first.max(pos), last.min(limit));
        if skip_to < skip_from {
            return Err(err);
        }
        if skip_from > pos {
            // Blocks are read in order, so the part before the bad one reads (or names an earlier bad
            // block the same way).
            out.extend(read_range(log, pos, skip_from - 1, limit, salvage, damage)?.0);
        }
        damage.push(format!("entries {skip_from}..={skip_to} skipped: {err}"));
        pos = skip_to + 1;
    }
    Ok((out, pos.max(b + 1)))
}

/// Compacts the redb file of a directory no engine has open; returns its size before and after.
pub fn compact(dir: impl AsRef<Path>) -> Result<(u64, u64)> {
    let dir = dir.as_ref();
    check_dir(dir)?;
    let _lock = crate::layout::lock(dir)?;
    let path = dir.join(COLD_FILE);
    let size = || {
        std::fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| Error::io(&path, e))
    };
    let before = size()?;
    let mut db = redb::Database::open(&path).map_err(|e| Error::redb(&path, e))?;
    while db.compact().map_err(|e| Error::redb(&path, e))? {}
    drop(db);
    Ok((before, size()?))
}
