//! Recovery scan: which segments exist, where the valid log ends, and whether the files add up to
//! one continuous log from the cold checkpoint on. Read-only: repairs (sealing, setting damaged
//! segments aside) are `WalWriter::open`'s.
//!
//! The structural rules (each a way a file can go missing, blank or short; `docs/design.md`):
//! - every file named as a segment has a valid header naming that segment;
//! - segment ids are consecutive;
//! - each segment but the newest is sealed, and the next one starts right after the seal (or at
//!   most at `reach + 1`, the highest `applied_seq` of the cold checkpoints: numbers they cover may
//!   be missing);
//! - the oldest segment starts at or below `floor + 1` (see [`Bounds`]), and the log reaches `reach`;
//! - the newest (version 2) segment is never sealed: a writer seals only once the next exists.
//!
//! The one exception is a rotation cut short: the newest segment exists but holds no record, and
//! the one before it is not sealed yet. The newest is then "unstarted" and the one before it is
//! judged as the newest.

use std::path::{Path, PathBuf};

use super::segment::{RecordSink, SegmentScan, Tail, VERSION_1, read_header, scan_segment, segment_id_of};
use crate::config::RecoveryMode;
use crate::error::{Error, Result};

/// What recovery found in the write-ahead directory (the records themselves went to the sink).
pub(crate) struct Recovered {
    /// Live segments, oldest first.
    pub(super) segments: Vec<SegmentScan>,
    /// Spare files ready for reuse.
    pub(super) spares: Vec<PathBuf>,
    /// Segments that `tolerate_any_corruption` dropped (after a damaged or missing part).
    pub(super) dropped: Vec<PathBuf>,
    /// Highest segment id named in the directory (kept, dropped or unstarted).
    pub(super) max_id: u64,
}

impl Recovered {
    /// The segments scanned, oldest first.
    pub(crate) fn segments(&self) -> &[SegmentScan] {
        &self.segments
    }
}

/// Segment files by id (from their names), and spare files.
pub(crate) type SegmentListing = (Vec<(u64, PathBuf)>, Vec<PathBuf>);

/// Lists the write-ahead directory. A file is a segment by its name alone (`{id:016x}.wal`): a
/// segment gets that name only once its header is durable, so a header that does not name it is
/// damage, never a file caught half made. Every other `*.wal` file is a spare. Read-only.
pub(crate) fn list_segments(dir: &Path) -> Result<SegmentListing> {
    let mut segs = Vec::new();
    let mut spares = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        // A missing directory holds no segment; whether that is damage is `recover`'s to judge.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((segs, spares)),
        other => other.map_err(|e| Error::io(dir, e))?,
    };
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(dir, e))?;
        let path = ent.path();
        if path.extension().and_then(|x| x.to_str()) != Some("wal") {
            continue;
        }
        match segment_id_of(&path) {
            Some(id) => segs.push((id, path)),
            None => spares.push(path),
        }
    }
    segs.sort();
    Ok((segs, spares))
}

/// What the cold checkpoints say the write-ahead log must hold.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Bounds {
    /// Every record after this one is still needed (the write-ahead floor the last commit recorded
    /// before retiring segments): the oldest segment starts at or below `floor + 1`.
    pub floor: u64,
    /// The highest `applied_seq` of any group's checkpoint: the log reaches it, and numbers up to
    /// it may be missing between segments (an open after damage skips them).
    pub reach: u64,
}

/// Scans every segment and decides, per `mode`, where the valid log ends; `bounds` come from the
/// cold checkpoints (the log must continue from them). Every record of the log goes to `sink` in
/// sequence order as it is read, so recovery holds one record at a time; a segment is linked to the
/// chain (from its header) before any of its records goes out. On `Err` the caller discards what
/// the sink built. Read-only: nothing is repaired here (`WalWriter::open` does that).
pub(crate) fn recover(dir: &Path, mode: RecoveryMode, bounds: Bounds, sink: RecordSink) -> Result<Recovered> {
    let Bounds { floor, reach } = bounds;
    let (segs, spares) = list_segments(dir)?;
    let max_id = segs.last().map_or(0, |s| s.0);
    let mut scans: Vec<SegmentScan> = Vec::new();
    let mut dropped = Vec::new();
    let salvage = mode == RecoveryMode::TolerateAnyCorruption;
    // In salvage mode the first damage ends the log: that segment and everything after is dropped.
    let mut damage: Option<Error> = None;
    let n = segs.len();
    for (i, (id, path)) in segs.iter().enumerate() {
        if damage.is_some() {
            dropped.push(path.clone());
            continue;
        }
        let header = match read_header(path) {
            Ok(h) if h.id == *id => h,
            Ok(h) => {
                damage = Some(Error::corruption(
                    path,
                    0,
                    format!("header names segment {} instead", h.id),
                ));
                dropped.push(path.clone());
                continue;
            }
            Err(e) if e.is_corruption() => {
                damage = Some(e);
                dropped.push(path.clone());
                continue;
            }
            Err(e) => return Err(e),
        };
        let link = match scans.last() {
            Some(prev) => check_link(prev, *id, path, header.first_seq, reach),
            None if header.first_seq > floor + 1 => Err(Error::corruption(
                path,
                0,
                format!(
                    "the oldest segment starts at sequence {} but the cold checkpoints cover only up \
                     to {floor}: the segments holding the records between are missing",
                    header.first_seq
                ),
            )),
            None => Ok(()),
        };
        if let Err(e) = link {
            // Not part of the chain: read it only to tell a rotation cut short (the newest segment,
            // never written to, after an unsealed one) from damage.
            let scan = scan_segment(path, &mut |_, _, _| Ok(()))?;
            let prev_open = scans.last().is_some_and(|p| p.seal_seq.is_none());
            let prev_next = scans.last().map_or(0, SegmentScan::next_seq);
            let empty = scan.records.is_empty() && scan.tail == Tail::Clean;
            if !(i + 1 == n && prev_open && empty && scan.first_seq > prev_next) {
                damage = Some(e);
                dropped.push(path.clone());
            }
            // Otherwise the writer replaces the unstarted segment (same id).
            continue;
        }
        let scan = scan_segment(path, sink)?;
        scans.push(scan);
    }
    // The tail of the newest kept segment.
    if let Some(newest) = scans.last() {
        match &newest.tail {
            Tail::Sealed if newest.version != VERSION_1 && damage.is_none() => {
                damage = Some(Error::corruption(
                    &newest.path,
                    newest.end,
                    "the newest segment is sealed, but the segment after it is missing",
                ));
            }
            Tail::Sealed | Tail::Clean => {}
            Tail::Bad {
                more_after,
                synced_after,
                seq,
                offset,
                reason,
            } => {
                let torn = !more_after || synced_after < seq;
                if salvage || (torn && mode == RecoveryMode::TolerateTornTail) {
                    tracing::warn!(path = %newest.path.display(), offset, seq, reason, more_after, "cutting the log at a torn or damaged record");
                } else {
                    let why = if torn {
                        reason.clone()
                    } else {
                        format!("{reason}; records after it carry a durable watermark of {synced_after}")
                    };
                    return Err(Error::corruption(&newest.path, *offset, why));
                }
            }
        }
    }
    let next_seq = scans.last().map_or(1, |s| s.next_seq()).max(1);
    if next_seq <= reach && damage.is_none() {
        let path = scans.last().map_or(dir, |s| s.path.as_path());
        damage = Some(Error::corruption(
            path,
            0,
            format!(
                "the write-ahead log ends before sequence {next_seq}, but the cold checkpoint covers \
                 records up to {reach}: the end of the log is missing"
            ),
        ));
    }
    if let Some(err) = damage {
        if !salvage {
            return Err(err);
        }
        tracing::warn!(error = %err, dropped = dropped.len(), "tolerate_any_corruption: keeping the log before the damage");
    }
    Ok(Recovered {
        segments: scans,
        spares,
        dropped,
        max_id,
    })
}

/// Checks that segment `id` (at `path`, first record `first`) continues `prev`: `prev` sealed and
/// `id` numbered right after the seal, or after a gap the checkpoints cover (`reach`).
fn check_link(prev: &SegmentScan, id: u64, path: &Path, first: u64, reach: u64) -> Result<()> {
    if id != prev.id + 1 {
        return Err(Error::corruption(
            path,
            0,
            format!(
                "segment {id} follows segment {}: the ones between are missing",
                prev.id
            ),
        ));
    }
    let Some(seal) = prev.seal_seq else {
        if let Tail::Bad { offset, reason, .. } = &prev.tail {
            return Err(Error::corruption(&prev.path, *offset, reason.clone()));
        }
        return Err(Error::corruption(
            &prev.path,
            prev.end,
            "segment ends without a seal but is not the newest",
        ));
    };
    if first == seal + 1 || (first > seal + 1 && first <= reach + 1) {
        return Ok(());
    }
    Err(Error::corruption(
        path,
        0,
        format!("segment starts at sequence {first} but the previous one was sealed at {seal}"),
    ))
}
