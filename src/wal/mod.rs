//! The write-ahead log, behind one type, [`Wal`]: numbered segment files of checksummed records
//! (`record`, `segment`), the recovery scan (`recover`), the single writer (`writer`),
//! group-committed fdatasync (`sync`) and recycling of retired segments (`spare`). Every name of a
//! file in the write-ahead directory is made in `segment`.

mod ahead;
mod garbage;
mod record;
mod recover;
mod segment;
mod spare;
mod sync;
mod writer;

use std::path::Path;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

#[cfg(test)]
pub(crate) use record::HEADER_LEN;
pub(crate) use record::{BATCH_FRAMING, ENTRY_FRAMING, MAX_BODY_LEN, Record};
#[cfg(test)]
pub(crate) use record::{Frame, checksum, parse_frame};
pub(crate) use recover::{Bounds, Recovered, list_segments, recover};
pub(crate) use segment::Tail;
#[cfg(test)]
pub(crate) use segment::decode_header;
pub(crate) use sync::sync_dir;

use crate::error::{Error, Result};
use crate::proto::GroupId;
use ahead::{ZeroAhead, step_for};
pub(crate) use garbage::Covered;
use garbage::Segments;
use spare::SparePool;
use sync::SyncPoint;
pub(crate) use writer::SpareLimits;
use writer::WalWriter;

/// The write-ahead log of one directory.
pub(crate) struct Wal {
    writer: Mutex<WalWriter>,
    /// What retirement needs (shared with the writer, which notes every record in it).
    segments: Arc<Mutex<Segments>>,
    sync: Arc<SyncPoint>,
    spares: Arc<SparePool>,
    segment_bytes: u64,
    ahead: Arc<ZeroAhead>,
    /// The zero-filling thread, joined on drop.
    zeroer: Option<std::thread::JoinHandle<()>>,
}

/// The writer lock: whoever holds it is the only one appending, so a caller can validate a
/// mutation against the log, append it and apply it as one step.
pub(crate) struct WalWriterGuard<'a>(MutexGuard<'a, WalWriter>);

impl WalWriterGuard<'_> {
    /// Writes `rec` to the OS (not synced) and returns its sequence number; on error nothing of it
    /// counts as written.
    pub(crate) fn append(&mut self, group: GroupId, rec: &Record) -> Result<u64> {
        self.0.append(group, rec)
    }
}

impl Wal {
    /// Takes over what recovery found in `dir` (see `WalWriter::open`): the recovered log is durable
    /// when this returns, and appends go to a fresh segment numbered from `min_next_seq` at least.
    pub(crate) fn open(
        dir: &Path,
        recovered: &Recovered,
        segment_bytes: u64,
        spares: SpareLimits,
        min_next_seq: u64,
    ) -> Result<Wal> {
        let writer = WalWriter::open(dir, recovered, segment_bytes, spares, min_next_seq)?;
        let ahead = writer.zero_ahead();
        let zeroer = ahead.spawn().map_err(|e| Error::io(dir, e))?;
        Ok(Wal {
            sync: writer.sync_point(),
            spares: writer.spare_pool(),
            segments: writer.segments(),
            writer: Mutex::new(writer),
            segment_bytes,
            ahead,
            zeroer: Some(zeroer),
        })
    }

    /// Takes the writer lock (see [`WalWriterGuard`]).
    pub(crate) fn writer(&self) -> WalWriterGuard<'_> {
        WalWriterGuard(self.writer.lock())
    }

    /// The writer lock if nobody holds it.
    pub(crate) fn try_writer(&self) -> Option<WalWriterGuard<'_>> {
        self.writer.try_lock().map(WalWriterGuard)
    }

    /// Returns once every record appended before the call is on stable storage (one fdatasync
    /// shared by concurrent callers). A failed fdatasync poisons the log: this and every later
    /// append or sync fail (`Error::Poisoned`).
    pub(crate) fn sync(&self) -> Result<()> {
        self.sync.sync()
    }

    /// `sync` without holding the caller's thread while another caller's fdatasync is in flight.
    pub(crate) async fn sync_async(&self) -> Result<()> {
        self.sync.clone().sync_async().await
    }

    /// How many of the oldest closed segments every group's replay can do without, given what
    /// each group's durable cold checkpoint covers (`covered`; `None` for a group that is gone),
    /// and the sequence number just before the first segment that would then remain: a checkpoint
    /// commit records it (the write-ahead floor) before `retire` deletes them, so recovery can tell
    /// retired segments from missing ones.
    pub(crate) fn retirable(&self, covered: &dyn Fn(GroupId) -> Option<Covered>) -> (usize, u64) {
        self.segments.lock().retirable(covered)
    }

    /// When more than `allowed` closed segments are alive, the groups whose records keep the oldest
    /// of the others alive, each with the highest index its replay needs from them: a round that
    /// compacts the group up to that index (and so records everything it logged) releases them.
    pub(crate) fn pinning(
        &self,
        covered: &dyn Fn(GroupId) -> Option<Covered>,
        allowed: usize,
    ) -> Vec<(GroupId, u64)> {
        self.segments.lock().pinning(covered, allowed)
    }

    /// Retires, oldest first, at most `limit` closed segments that every group's replay can do
    /// without (every record of a group in them has `seq <= applied_seq` of the group's
    /// checkpoint, and every entry they wrote is `<= cold_hi` or was removed by a truncation the
    /// checkpoint covers; records of a group that is gone, or of an earlier group of the same id,
    /// count as covered). Retired files become spares (or are deleted). Then, when a rotation is
    /// near, makes sure a zero-filled spare is ready. Runs outside the writer lock but for the
    /// bookkeeping; a failed retirement leaves the segment tracked for the next call.
    pub(crate) fn retire(&self, covered: &dyn Fn(GroupId) -> Option<Covered>, limit: usize) -> Result<()> {
        let mut garbage = self.segments.lock().take_garbage(covered, limit).into_iter();
        while let Some(seg) = garbage.next() {
            if let Err(e) = self.spares.retire(&seg.path, seg.id) {
                // Once renamed or removed the segment is gone, even if the directory fsync failed.
                let kept = seg.path.exists().then_some(seg);
                self.segments
                    .lock()
                    .give_back(kept.into_iter().chain(garbage).collect());
                return Err(e);
            }
        }
        if self.writer.lock().active_fill() > 0.5 {
            // Only the start of the next segment: the zero-filling thread does the rest. (A whole
            // zero-filled segment made here gave no clearly better leader-append latency in the
            // peers bench, 1.07-1.37x raw-prealloc's p50 against 1.05-1.17x, for 6 MiB more on disk.)
            self.spares
                .ensure_one(self.segment_bytes.min(2 * step_for(self.segment_bytes)))?;
        }
        Ok(())
    }

    /// The first sequence number of the oldest live segment: every record before it is gone.
    pub(crate) fn oldest_seq(&self) -> u64 {
        self.segments.lock().oldest_seq()
    }

    /// fdatasyncs of the log that succeeded since open.
    pub(crate) fn syncs(&self) -> u64 {
        self.sync.count()
    }

    /// Segment files (live and spare) and their bytes.
    pub(crate) fn disk_usage(&self) -> (u64, u64) {
        let segments = self.segments.lock();
        let spares = self.spares.files.lock();
        let (mut n, mut bytes) = (0, 0);
        for p in segments.paths().chain(spares.iter()) {
            n += 1;
            bytes += std::fs::metadata(p).map_or(0, |m| m.len());
        }
        (n, bytes)
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.ahead.stop();
        if let Some(t) = self.zeroer.take() {
            // A panic there has been reported by the panic hook already; nothing is left to undo.
            let _ = t.join();
        }
    }
}
