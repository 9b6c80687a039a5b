//! Recovery scan: which segments exist, where the valid log ends in each, per recovery mode.
//! Read-only: repairs (sealing, setting damaged segments aside) are `WalWriter::open`'s.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::record::Record;
use super::segment::{SEGMENT_HEADER_LEN, SPARE_ID, SegmentScan, Tail, read_segment_id, scan_segment};
use crate::config::RecoveryMode;
use crate::error::{Error, Result};

/// What recovery found in the write-ahead directory.
pub(crate) struct Recovered {
    /// Every valid record in sequence order, with the index of the segment it came from.
    pub records: Vec<(u64, Record)>,
    /// Live segments, oldest first.
    pub(super) segments: Vec<SegmentScan>,
    /// Spare files ready for reuse.
    pub(super) spares: Vec<PathBuf>,
    /// Segments after a corruption that `tolerate_any_corruption` dropped.
    pub(super) dropped: Vec<PathBuf>,
    pub(super) max_id: u64,
    pub(super) next_seq: u64,
}

impl Recovered {
    /// The segments scanned, oldest first.
    pub(crate) fn segments(&self) -> &[SegmentScan] {
        &self.segments
    }
}

/// Lists segment files by header id; files whose header says "spare" (or that were never finished
/// being created) are returned separately. Read-only.
/// Segment files by id, and spare files.
pub(crate) type SegmentListing = (Vec<(u64, PathBuf)>, Vec<PathBuf>);

pub(crate) fn list_segments(dir: &Path) -> Result<SegmentListing> {
    let mut segs = Vec::new();
    let mut spares = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(dir, e))?;
        let path = ent.path();
        if path.extension().and_then(|x| x.to_str()) != Some("wal") {
            continue;
        }
        match read_segment_id(&path)? {
            Ok(SPARE_ID) => spares.push(path),
            Ok(id) => segs.push((id, path)),
            // A file is renamed into place before its header is written; a crash in between leaves
            // a segment name over a spare header or over zeroes. Only a never-written header or a
            // spare-*/new-* name is taken for a spare; anything else is damage.
            Err(reason) => {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                let never_written = header_never_written(&path)?;
                if never_written || name.starts_with("spare-") || name.starts_with("new-") {
                    spares.push(path);
                } else {
                    return Err(Error::corruption(&path, 0, reason));
                }
            }
        }
    }
    segs.sort();
    Ok((segs, spares))
}

fn header_never_written(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut head = Vec::with_capacity(SEGMENT_HEADER_LEN as usize);
    File::open(path)
        .and_then(|f| f.take(SEGMENT_HEADER_LEN).read_to_end(&mut head))
        .map_err(|e| Error::io(path, e))?;
    Ok(head.iter().all(|&b| b == 0))
}

/// Scans every segment and decides, per `mode`, where the valid log ends. Read-only: nothing is
/// repaired here (`WalWriter::open` does that).
pub(crate) fn recover(dir: &Path, mode: RecoveryMode) -> Result<Recovered> {
    let (segs, spares) = list_segments(dir)?;
    let mut scans: Vec<SegmentScan> = Vec::new();
    let mut records = Vec::new();
    let n = segs.len();
    let mut cut = false;
    let mut dropped = Vec::new();
    let max_id = segs.last().map_or(0, |s| s.0);
    for (i, (_, path)) in segs.into_iter().enumerate() {
        if cut {
            tracing::warn!(path = %path.display(), "dropping segment after corruption (tolerate_any_corruption)");
            dropped.push(path);
            continue;
        }
        let scan = scan_segment(&path)?;
        let newest = i + 1 == n;
        if let (Some(prev), Some(first)) = (scans.last().and_then(|s| s.last_seq()), scan.records.first())
            && first.0 != prev + 1
            && mode != RecoveryMode::TolerateAnyCorruption
        {
            return Err(Error::corruption(
                &scan.path,
                first.1,
                format!(
                    "sequence {} does not follow {} of the previous segment",
                    first.0, prev
                ),
            ));
        }
        match (&scan.tail, newest, mode) {
            (Tail::Sealed, _, _) => {}
            (_, _, RecoveryMode::TolerateAnyCorruption) => {
                if let Tail::Bad { offset, reason, .. } = &scan.tail {
                    tracing::warn!(path = %scan.path.display(), offset, reason, "cutting the log at a bad record");
                    cut = true;
                } else if !newest {
                    cut = true;
                }
            }
            (Tail::Clean, true, _) => {}
            (
                Tail::Bad {
                    more_after,
                    synced_after,
                    seq,
                    offset,
                    reason,
                },
                true,
                RecoveryMode::TolerateTornTail,
            ) if !more_after || synced_after < seq => {
                // Nothing after it, or only records written before it was known durable: a crash
                // mid-write, or a power cut that wrote back later pages but not this one.
                tracing::warn!(path = %scan.path.display(), offset, reason, more_after, "cutting torn tail record");
            }
            (Tail::Bad { offset, reason, .. }, _, _) => {
                return Err(Error::corruption(&scan.path, *offset, reason.clone()));
            }
            (Tail::Clean, false, _) => {
                return Err(Error::corruption(
                    &scan.path,
                    scan.end,
                    "segment ends without a seal but is not the newest",
                ));
            }
        }
        records.extend(scan.records.iter().map(|(seq, _, r)| (*seq, r.clone())));
        scans.push(scan);
    }
    // A segment's header names its first sequence number even when none of its records survived,
    // and numbers are never reused (a record with an old number reads as stale).
    let next_seq = scans
        .iter()
        .map(|s| s.last_seq().map_or(s.first_seq, |l| l + 1))
        .max()
        .unwrap_or(1)
        .max(1);
    Ok(Recovered {
        records,
        segments: scans,
        spares,
        dropped,
        max_id,
        next_seq,
    })
}
