//! The single writer: appends records to the active segment, rotates and recycles segments, and
//! keeps what segment retirement needs to know.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::Recovered;
use super::record::{HEADER_LEN, Record};
use super::segment::{SEGMENT_HEADER_LEN, Tail, encode_header, segment_path};
use super::spare::SparePool;
use super::sync::{SyncPoint, sync_dir};
use crate::error::{Error, Result};

/// A closed or active segment the writer keeps track of for garbage collection.
#[derive(Debug, Clone)]
pub(crate) struct SegmentInfo {
    pub id: u64,
    pub path: PathBuf,
    /// Highest sequence number written into it.
    pub last_seq: u64,
    /// Highest entry index written into it that no later truncation removed.
    pub max_index: u64,
    /// `(seq, max_index before)` of each truncation that lowered `max_index`: until the cold
    /// checkpoint covers that record, the entries it removed may still be needed by replay.
    pub lowered: Vec<(u64, u64)>,
    pub bytes: u64,
}

impl SegmentInfo {
    fn new(id: u64, path: PathBuf, last_seq: u64, bytes: u64) -> Self {
        SegmentInfo {
            id,
            path,
            last_seq,
            max_index: 0,
            lowered: Vec::new(),
            bytes,
        }
    }

    /// Accounts a record written into this segment or a later one.
    fn note(&mut self, seq: u64, rec: &Record, own: bool) {
        let removed_from = match rec {
            Record::Truncate { from } | Record::Replace { from, .. } => Some(*from),
            Record::Reset => Some(1),
            _ => None,
        };
        if let Some(from) = removed_from {
            let bound = from.saturating_sub(1);
            if bound < self.max_index {
                self.lowered.push((seq, self.max_index));
                self.max_index = bound;
            }
        }
        if own {
            self.last_seq = seq;
            self.max_index = self.max_index.max(rec.max_index());
        }
    }

    /// Highest index replay may need from this segment when the checkpoint covers `applied_seq`.
    fn needed_index(&self, applied_seq: u64) -> u64 {
        self.lowered
            .iter()
            .filter(|(seq, _)| *seq > applied_seq)
            .map(|(_, before)| *before)
            .fold(self.max_index, u64::max)
    }
}

struct Active {
    id: u64,
    file: Arc<File>,
    offset: u64,
    capacity: u64,
}

/// The single writer of the write-ahead log. The engine serialises calls with its writer lock.
pub(crate) struct WalWriter {
    dir: PathBuf,
    active: Active,
    /// Closed segments (oldest first) and then the active one.
    segments: VecDeque<SegmentInfo>,
    next_seq: u64,
    segment_bytes: u64,
    buf: Vec<u8>,
    pool: Arc<SparePool>,
    sync: Arc<SyncPoint>,
}

impl WalWriter {
    /// Takes over the recovered segments: seals the newest one at its last valid record (so torn or
    /// stale bytes after it can never be mistaken for records) and starts a fresh segment.
    /// `min_next_seq`: numbers at or below the cold checkpoint's `applied_seq` are taken, even if a
    /// power cut removed their records from the log.
    pub(crate) fn open(
        dir: &Path,
        rec: &Recovered,
        segment_bytes: u64,
        max_spares: usize,
        min_next_seq: u64,
    ) -> Result<Self> {
        let pool = Arc::new(SparePool {
            dir: dir.to_path_buf(),
            files: Mutex::new(rec.spares.clone()),
            max: max_spares,
        });
        let mut next_seq = rec.next_seq.max(min_next_seq);
        let mut segments = VecDeque::new();
        // The newest segment, unless sealed or nearly full, stays the active one: every write ends
        // with a zeroed header, so appending right after its last valid record is safe, and reopening
        // does not leave a segment behind each time.
        let reuse = rec.segments.last().filter(|sc| {
            let tail_ok = match &sc.tail {
                Tail::Clean => true,
                // Valid records after a cut stay beyond the write position; a seal must hide them.
                Tail::Bad { more_after, .. } => !more_after,
                Tail::Sealed => false,
            };
            tail_ok && sc.end + 4 * HEADER_LEN as u64 + SEGMENT_HEADER_LEN < sc.file_len
        });
        for sc in &rec.segments {
            let is_reused = reuse.is_some_and(|r| r.id == sc.id);
            if sc.tail != Tail::Sealed && !is_reused {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&sc.path)
                    .map_err(|e| Error::io(&sc.path, e))?;
                let mut buf = Vec::new();
                Record::Seal.encode(sc.id, next_seq, next_seq - 1, &mut buf);
                file.write_all_at(&buf, sc.end)
                    .map_err(|e| Error::io(&sc.path, e))?;
                file.sync_data().map_err(|e| Error::io(&sc.path, e))?;
                crate::fuzzing::synced();
                next_seq += 1;
            }
            segments.push_back(SegmentInfo::new(sc.id, sc.path.clone(), 0, sc.file_len));
            // Re-derive retirement bounds exactly as the writer kept them.
            for (seq, _, r) in &sc.records {
                let n = segments.len();
                for (i, info) in segments.iter_mut().enumerate() {
                    info.note(*seq, r, i + 1 == n);
                }
            }
            if let Some(info) = segments.back_mut() {
                info.last_seq = match sc.tail {
                    Tail::Sealed => sc.last_seq().unwrap_or(0),
                    _ if is_reused => sc.last_seq().unwrap_or(sc.first_seq.saturating_sub(1)),
                    _ => next_seq - 1,
                };
            }
        }
        // Segments recovery dropped (tolerate_any_corruption) are kept for a post-mortem under a
        // name recovery does not read, so their ids can be reused.
        for path in &rec.dropped {
            let aside = path.with_extension("wal.corrupt");
            std::fs::rename(path, &aside).map_err(|e| Error::io(path, e))?;
        }
        let sync = Arc::new(SyncPoint::default());
        let active = match reuse {
            Some(sc) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&sc.path)
                    .map_err(|e| Error::io(&sc.path, e))?;
                Active {
                    id: sc.id,
                    file: Arc::new(file),
                    offset: sc.end,
                    capacity: sc.file_len,
                }
            }
            None => {
                let next_id = rec.max_id + 1;
                let active = new_active(dir, &pool, next_id, next_seq, segment_bytes)?;
                segments.push_back(SegmentInfo::new(
                    next_id,
                    segment_path(dir, next_id),
                    next_seq.saturating_sub(1),
                    active.capacity,
                ));
                active
            }
        };
        sync.reset(active.file.clone(), next_seq.saturating_sub(1));
        Ok(WalWriter {
            dir: dir.to_path_buf(),
            active,
            segments,
            next_seq,
            segment_bytes,
            buf: Vec::new(),
            pool,
            sync,
        })
    }

    pub(crate) fn sync_point(&self) -> Arc<SyncPoint> {
        self.sync.clone()
    }

    pub(crate) fn spare_pool(&self) -> Arc<SparePool> {
        self.pool.clone()
    }

    /// Writes `rec` to the OS (not synced) and returns its sequence number. On error nothing counts
    /// as written: the next record goes to the same offset.
    pub(crate) fn append(&mut self, rec: &Record) -> Result<u64> {
        self.sync.check_healthy()?;
        let len = rec.encoded_len() as u64;
        // Every write ends with an all-zero record header, so the byte after the last record always
        // reads as "end", never as a recycled file's old bytes (which would look torn).
        let trailer = HEADER_LEN as u64;
        let seal_len = Record::Seal.encoded_len() as u64;
        if self.active.offset > SEGMENT_HEADER_LEN
            && self.active.offset + len + seal_len + trailer > self.active.capacity
        {
            self.rotate()?;
        }
        let seq = self.next_seq;
        self.buf.clear();
        rec.encode(self.active.id, seq, self.sync.synced(), &mut self.buf);
        self.buf.resize(self.buf.len() + HEADER_LEN, 0);
        let path = segment_path(&self.dir, self.active.id);
        crate::fuzzing::torn_write(
            "wal::append::torn",
            &self.active.file,
            &self.buf,
            self.active.offset,
        )
        .and_then(|_| crate::fuzzing::io_fault("wal::append"))
        .map_err(|e| Error::io(&path, e))?;
        self.active
            .file
            .write_all_at(&self.buf, self.active.offset)
            .map_err(|e| Error::io(&path, e))?;
        self.active.offset += len;
        self.next_seq += 1;
        // Entries a truncation removes stop keeping older segments alive (once the checkpoint covers
        // the truncation); the record's own entries (a replace_range's) are counted after that.
        let n = self.segments.len();
        for (i, info) in self.segments.iter_mut().enumerate() {
            info.note(seq, rec, i + 1 == n);
        }
        if let Some(info) = self.segments.back_mut() {
            info.bytes = info.bytes.max(self.active.offset);
        }
        self.sync.note_written(seq);
        Ok(seq)
    }

    fn rotate(&mut self) -> Result<()> {
        let seq = self.next_seq;
        self.buf.clear();
        Record::Seal.encode(self.active.id, seq, self.sync.synced(), &mut self.buf);
        let path = segment_path(&self.dir, self.active.id);
        self.active
            .file
            .write_all_at(&self.buf, self.active.offset)
            .map_err(|e| Error::io(&path, e))?;
        // The seal must be durable before a newer segment exists, or recovery could see a
        // newer segment after an unsealed one and call it damage.
        self.sync.sync_file(&self.active.file, seq, &path)?;
        let id = self.active.id + 1;
        let next = new_active(&self.dir, &self.pool, id, seq + 1, self.segment_bytes)?;
        self.next_seq += 1;
        if let Some(info) = self.segments.back_mut() {
            info.last_seq = seq;
        }
        self.sync.reset(next.file.clone(), seq);
        self.segments.push_back(SegmentInfo::new(
            id,
            segment_path(&self.dir, id),
            seq,
            next.capacity,
        ));
        self.active = next;
        Ok(())
    }

    /// Removes from the list (oldest first) the closed segments whose every record is in the cold
    /// checkpoint (`seq <= applied_seq`) and whose entries are all at or below `cold_hi` or removed by
    /// a truncation the checkpoint covers; the caller retires them outside the writer lock.
    pub(crate) fn take_garbage(&mut self, applied_seq: u64, cold_hi: u64) -> Vec<SegmentInfo> {
        for s in &mut self.segments {
            s.lowered.retain(|(seq, _)| *seq > applied_seq);
        }
        let mut out = Vec::new();
        while self.segments.len() > 1 {
            let s = &self.segments[0];
            if s.last_seq <= applied_seq && s.needed_index(applied_seq) <= cold_hi {
                out.extend(self.segments.pop_front());
            } else {
                break;
            }
        }
        out
    }

    /// Puts segments `take_garbage` returned, but that could not be retired, back at the front.
    pub(crate) fn give_back(&mut self, segs: Vec<SegmentInfo>) {
        for s in segs.into_iter().rev() {
            self.segments.push_front(s);
        }
    }

    /// Share of the active segment already written: a spare is prepared only when a rotation is near.
    pub(crate) fn active_fill(&self) -> f64 {
        self.active.offset as f64 / self.active.capacity.max(1) as f64
    }

    /// Segment files and their bytes.
    pub(crate) fn disk_usage(&self) -> (u64, u64) {
        let spares = self.pool.files.lock();
        let spare_bytes: u64 = spares
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        (
            (self.segments.len() + spares.len()) as u64,
            self.segments.iter().map(|s| s.bytes).sum::<u64>() + spare_bytes,
        )
    }
}

fn new_active(dir: &Path, pool: &SparePool, id: u64, first_seq: u64, segment_bytes: u64) -> Result<Active> {
    let path = segment_path(dir, id);
    crate::fuzzing::io_fault("wal::segment_create").map_err(|e| Error::io(&path, e))?;
    let spare = pool.files.lock().pop();
    let (file, capacity) = match spare {
        Some(sp) => {
            std::fs::rename(&sp, &path).map_err(|e| Error::io(&sp, e))?;
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            let cap = f
                .metadata()
                .map_err(|e| Error::io(&path, e))?
                .len()
                .max(segment_bytes);
            (f, cap)
        }
        None => {
            // Built under a temporary name, so a crash mid-creation leaves a file recovery treats as
            // a spare rather than a segment without a header.
            let tmp = dir.join(format!("new-{id:016x}.wal"));
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(|e| Error::io(&tmp, e))?;
            f.set_len(segment_bytes).map_err(|e| Error::io(&tmp, e))?;
            f.write_all_at(&encode_header(id, first_seq), 0)
                .map_err(|e| Error::io(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| Error::io(&tmp, e))?;
            (f, segment_bytes)
        }
    };
    file.write_all_at(&encode_header(id, first_seq), 0)
        .map_err(|e| Error::io(&path, e))?;
    // The header must reach the disk with the first synced record; the directory entry of a new
    // file must too, or power loss could lose a segment whose records were synced.
    file.sync_data().map_err(|e| Error::io(&path, e))?;
    crate::fuzzing::synced();
    sync_dir(dir)?;
    Ok(Active {
        id,
        file: Arc::new(file),
        offset: SEGMENT_HEADER_LEN,
        capacity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RecoveryMode;
    use crate::proto::Entry;
    use crate::wal::recover;
    use crate::wal::segment::scan_segment;

    /// Appends `n` records, fdatasyncing after each when `flush`.
    fn write_log_with(dir: &Path, n: u64, flush: bool) -> PathBuf {
        let rec = recover(dir, RecoveryMode::TolerateTornTail).unwrap();
        let mut w = WalWriter::open(dir, &rec, 1 << 20, 2, 1).unwrap();
        for i in 1..=n {
            w.append(&Record::Append(vec![Entry::new(i, 1, vec![7u8; 100])]))
                .unwrap();
            if flush {
                w.sync_point().sync(dir).unwrap();
            }
        }
        w.segments.back().unwrap().path.clone()
    }

    fn write_log(dir: &Path, n: u64) -> PathBuf {
        write_log_with(dir, n, true)
    }

    #[test]
    fn damage_to_records_never_synced_reads_as_a_power_cut_not_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_log_with(dir.path(), 10, false);
        let scan = scan_segment(&path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        // Record 5 lost, 6..10 written back: out-of-order writeback of unsynced pages.
        bytes[scan.records[4].1 as usize + 20] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let rec = recover(dir.path(), RecoveryMode::TolerateTornTail).unwrap();
        assert_eq!(rec.records.len(), 4);
        assert!(recover(dir.path(), RecoveryMode::AbsoluteConsistency).is_err());
    }

    #[test]
    fn torn_tail_is_cut_but_damage_before_valid_records_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_log(dir.path(), 10);
        let scan = scan_segment(&path).unwrap();
        assert_eq!(scan.records.len(), 10);
        let last_off = scan.records[9].1 as usize;
        let mid_off = scan.records[4].1 as usize;
        let pristine = std::fs::read(&path).unwrap();

        // Tear the last record: recovery keeps the first nine.
        let mut torn = pristine.clone();
        torn[last_off + 20] ^= 0xff;
        std::fs::write(&path, &torn).unwrap();
        let rec = recover(dir.path(), RecoveryMode::TolerateTornTail).unwrap();
        assert_eq!(rec.records.len(), 9);
        let err = recover(dir.path(), RecoveryMode::AbsoluteConsistency)
            .err()
            .unwrap();
        assert!(err.is_corruption());

        // Damage in the middle, valid records after it: an error naming the offset.
        let mut mid = pristine.clone();
        mid[mid_off + 20] ^= 0xff;
        std::fs::write(&path, &mid).unwrap();
        match recover(dir.path(), RecoveryMode::TolerateTornTail) {
            Err(crate::Error::Corruption { offset, .. }) => assert_eq!(offset, mid_off as u64),
            other => panic!("expected corruption, got {:?}", other.map(|r| r.records.len())),
        }
        let salvaged = recover(dir.path(), RecoveryMode::TolerateAnyCorruption).unwrap();
        assert_eq!(salvaged.records.len(), 4);
    }

    #[test]
    fn reopen_continues_the_newest_segment_and_the_sequence() {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), 3);
        write_log(dir.path(), 2);
        let rec = recover(dir.path(), RecoveryMode::AbsoluteConsistency).unwrap();
        let seqs: Vec<u64> = rec.records.iter().map(|r| r.0).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        assert_eq!(
            rec.segments().len(),
            1,
            "reopening must not leave a segment behind"
        );
    }

    #[test]
    fn writing_after_a_cut_torn_tail_is_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_log(dir.path(), 5);
        let scan = scan_segment(&path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[scan.records[4].1 as usize + 30] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        write_log(dir.path(), 1);
        let rec = recover(dir.path(), RecoveryMode::AbsoluteConsistency).unwrap();
        let seqs: Vec<u64> = rec.records.iter().map(|r| r.0).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    }
}
