//! The single writer: appends records to the active segment, rotates and recycles segments, and
//! keeps what segment retirement needs to know.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::Recovered;
use super::ahead::{ZeroAhead, step_for};
use super::garbage::Segments;
use super::record::{HEADER_LEN, Record};
use super::segment::{SEGMENT_HEADER_LEN, Tail, building_path, encode_header, segment_path, set_aside_path};
use super::spare::SparePool;
use super::sync::{SyncPoint, sync_dir};
use crate::error::{Error, Result};
use crate::proto::GroupId;

struct Active {
    id: u64,
    file: Arc<File>,
    offset: u64,
    capacity: u64,
    /// `[0, allocated)` was already written (zeroes or a recycled file's old bytes) when it became
    /// the active segment.
    allocated: u64,
}

/// The single writer of the write-ahead log. The engine serialises calls with its writer lock.
pub(crate) struct WalWriter {
    dir: PathBuf,
    active: Active,
    /// Set once a rotation has started: the active segment may already have a successor on disk,
    /// so it takes no more records, and the next append finishes the rotation first.
    rotating: bool,
    /// Closed segments (oldest first) and then the active one, with what their retirement needs;
    /// shared with the compactor, which reads it without taking the writer lock.
    segments: Arc<Mutex<Segments>>,
    next_seq: u64,
    segment_bytes: u64,
    buf: Vec<u8>,
    pool: Arc<SparePool>,
    sync: Arc<SyncPoint>,
    ahead: Arc<ZeroAhead>,
    /// The zero-filled frontier of the active segment as last seen (see `ahead`): writes ending
    /// well below it need no lock.
    frontier: u64,
}

impl WalWriter {
    /// Takes over the recovered segments and always starts a fresh segment: the newest one is sealed
    /// at its last valid record (so torn, stale or discarded bytes after it can never be read as
    /// records, and the fdatasync of the seal makes its recovered tail durable before anything counts
    /// on it). `min_next_seq`: numbers at or below the cold checkpoint's `applied_seq` are taken, even
    /// if damage removed their records from the log; the new segment then starts above them.
    pub(crate) fn open(
        dir: &Path,
        rec: &Recovered,
        segment_bytes: u64,
        spares: SpareLimits,
        min_next_seq: u64,
    ) -> Result<Self> {
        let pool = Arc::new(SparePool {
            dir: dir.to_path_buf(),
            files: Mutex::new(rec.spares.clone()),
            max: spares.count,
            max_bytes: spares.bytes,
        });
        // Spares beyond the limits (a store written with larger segments or more spares) go now.
        pool.trim()?;
        let mut segments = Segments::default();
        for sc in &rec.segments {
            segments.push(sc.id, sc.path.clone(), sc.first_seq.saturating_sub(1));
            // Re-derive retirement bounds exactly as the writer kept them.
            for (seq, _, r) in &sc.records {
                segments.note(*seq, *r);
            }
            segments.ends_at(sc.next_seq().saturating_sub(1));
        }
        // Segments recovery dropped (tolerate_any_corruption) are kept for a post-mortem under a
        // name recovery does not read, so their ids can be reused.
        for path in &rec.dropped {
            let aside = set_aside_path(path);
            std::fs::rename(path, &aside).map_err(|e| Error::io(path, e))?;
        }
        let newest = rec.segments.last();
        // A newest segment that never got a record (the previous open's) is replaced under its own
        // id rather than sealed, so reopening an idle store does not pile up segments.
        let empty =
            newest.filter(|sc| sc.records.is_empty() && sc.tail == Tail::Clean && sc.seal_seq.is_none());
        let to_seal = newest.filter(|sc| sc.seal_seq.is_none() && empty.is_none());
        // Ids stay consecutive: the new segment follows the newest kept one (an unstarted or dropped
        // file with that id is replaced or already set aside). The seal of the newest segment, if it
        // is not sealed yet, takes the number after its last record.
        let (id, next_seq) = match (empty, newest) {
            (Some(sc), _) => (sc.id, sc.first_seq),
            (None, Some(sc)) => (sc.id + 1, sc.next_seq() + u64::from(to_seal.is_some())),
            (None, None) => (rec.max_id + 1, 1),
        };
        let next_seq = next_seq.max(min_next_seq);
        if empty.is_some() {
            segments.pop_newest();
        }
        // The successor exists, durably, before the seal: a sealed newest segment is damage.
        let active = new_active(dir, &pool, id, next_seq, segment_bytes)?;
        if let Some(sc) = to_seal {
            let seal_seq = sc.next_seq();
            let file = OpenOptions::new()
                .write(true)
                .open(&sc.path)
                .map_err(|e| Error::io(&sc.path, e))?;
            let mut buf = Vec::new();
            // What was durable before this segment's records: the fdatasync below has not happened
            // yet, and a power cut before it may keep the seal but lose a record before it.
            let durable = sc.first_seq.saturating_sub(1);
            Record::Seal.encode(0, sc.id, seal_seq, durable, &mut buf);
            file.write_all_at(&buf, sc.end)
                .and_then(|_| file.sync_data())
                .map_err(|e| Error::io(&sc.path, e))?;
            crate::failpoints::synced();
            segments.ends_at(seal_seq);
        }
        segments.push(id, segment_path(dir, id), next_seq - 1);
        let sync = Arc::new(SyncPoint::default());
        sync.reset(active.file.clone(), segment_path(dir, id), next_seq - 1);
        let ahead = ZeroAhead::new(sync.clone(), segment_bytes);
        ahead.reset(
            active.file.clone(),
            segment_path(dir, id),
            active.allocated,
            active.offset,
            active.capacity,
        );
        Ok(WalWriter {
            frontier: active.allocated,
            ahead,
            dir: dir.to_path_buf(),
            active,
            rotating: false,
            segments: Arc::new(Mutex::new(segments)),
            next_seq,
            segment_bytes,
            buf: Vec::new(),
            pool,
            sync,
        })
    }

    pub(super) fn sync_point(&self) -> Arc<SyncPoint> {
        self.sync.clone()
    }

    pub(super) fn spare_pool(&self) -> Arc<SparePool> {
        self.pool.clone()
    }

    pub(super) fn segments(&self) -> Arc<Mutex<Segments>> {
        self.segments.clone()
    }

    pub(super) fn zero_ahead(&self) -> Arc<ZeroAhead> {
        self.ahead.clone()
    }

    /// Makes sure `[.., end)` of the active segment may be written: below the zero-filled frontier,
    /// or past it once no zero-fill step can overlap (see `ahead`).
    fn make_room(&mut self, end: u64) {
        if end + self.ahead.step() > self.frontier {
            self.frontier = self.ahead.reserve(end);
        }
    }

    /// Writes `rec` to the OS (not synced) and returns its sequence number. On error nothing counts
    /// as written: the next record goes to the same offset (or, once a rotation has started, to the
    /// next segment).
    pub(crate) fn append(&mut self, group: GroupId, rec: &Record) -> Result<u64> {
        self.sync.check_healthy()?;
        let len = rec.encoded_len(group) as u64;
        // Every write ends with an all-zero record header, so the byte after the last record always
        // reads as "end", never as a recycled file's old bytes (which would look torn).
        let trailer = HEADER_LEN as u64;
        let seal_len = Record::Seal.encoded_len(0) as u64;
        if self.rotating
            || (self.active.offset > SEGMENT_HEADER_LEN
                && self.active.offset + len + seal_len + trailer > self.active.capacity)
        {
            self.rotate()?;
        }
        let seq = self.next_seq;
        self.buf.clear();
        rec.encode(group, self.active.id, seq, self.sync.synced(), &mut self.buf);
        self.buf.resize(self.buf.len() + HEADER_LEN, 0);
        self.make_room(self.active.offset + self.buf.len() as u64);
        let path = segment_path(&self.dir, self.active.id);
        crate::failpoints::torn_write(
            "wal::append::torn",
            &self.active.file,
            &self.buf,
            self.active.offset,
        )
        .and_then(|_| crate::failpoints::io_fault("wal::append"))
        .map_err(|e| Error::io(&path, e))?;
        self.active
            .file
            .write_all_at(&self.buf, self.active.offset)
            .map_err(|e| Error::io(&path, e))?;
        self.active.offset += len;
        self.next_seq += 1;
        // Entries a truncation removes stop keeping older segments alive (once the checkpoint covers
        // the truncation); the record's own entries (a replace_range's) are counted after that.
        self.segments.lock().note(seq, rec.footprint(group));
        self.sync.note_written(seq);
        Ok(seq)
    }

    /// Moves to segment `id + 1`: first the new segment, durably; then the seal of the old one,
    /// fdatasynced (which also makes every record before it durable, since later syncs touch only
    /// the new file). A failure at any step leaves nothing recovery refuses: before the seal, the
    /// new segment is an unstarted one; the seal is the last step, so once it is durable its number
    /// is used up. Until a rotation completes, the old segment takes no more records.
    fn rotate(&mut self) -> Result<()> {
        self.rotating = true;
        let seal_seq = self.next_seq;
        let id = self.active.id + 1;
        let next = new_active(&self.dir, &self.pool, id, seal_seq + 1, self.segment_bytes)?;
        self.buf.clear();
        Record::Seal.encode(0, self.active.id, seal_seq, self.sync.synced(), &mut self.buf);
        self.make_room(self.active.offset + self.buf.len() as u64);
        let path = segment_path(&self.dir, self.active.id);
        self.active
            .file
            .write_all_at(&self.buf, self.active.offset)
            .map_err(|e| Error::io(&path, e))?;
        self.sync
            .sync_file("wal::sync", &self.active.file, seal_seq, &path)?;
        self.next_seq = seal_seq + 1;
        self.rotating = false;
        self.segments.lock().ends_at(seal_seq);
        self.sync
            .reset(next.file.clone(), segment_path(&self.dir, id), seal_seq);
        self.ahead.reset(
            next.file.clone(),
            segment_path(&self.dir, id),
            next.allocated,
            next.offset,
            next.capacity,
        );
        self.frontier = next.allocated;
        self.segments
            .lock()
            .push(id, segment_path(&self.dir, id), seal_seq);
        self.active = next;
        Ok(())
    }

    /// Share of the active segment already written: a spare is prepared only when a rotation is near.
    pub(super) fn active_fill(&self) -> f64 {
        self.active.offset as f64 / self.active.capacity.max(1) as f64
    }
}

/// Makes segment `id` (first record `first_seq`) from a spare or a new file. The header is written
/// and fdatasynced under the file's spare or temporary name, and only then is the file renamed to
/// the segment's name and the directory synced: a file under a segment's name always has that
/// segment's header, so recovery can call any other content damage. An earlier attempt's file of the
/// same id (an unstarted segment) is replaced by the rename.
fn new_active(dir: &Path, pool: &SparePool, id: u64, first_seq: u64, segment_bytes: u64) -> Result<Active> {
    let path = segment_path(dir, id);
    crate::failpoints::io_fault("wal::segment_create").map_err(|e| Error::io(&path, e))?;
    let (from, file, capacity, allocated) = match pool.files.lock().pop() {
        Some(spare) => {
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&spare)
                .and_then(|f| Ok((f.metadata()?, f)));
            match opened {
                Ok((meta, f)) => (spare, f, meta.len().max(segment_bytes), allocated_prefix(&meta)),
                Err(e) => {
                    pool.files.lock().push(spare.clone());
                    return Err(Error::io(&spare, e));
                }
            }
        }
        None => {
            // The first step is zero-filled here (and made durable with the header), so the
            // first appends already go to allocated space; `ahead` fills the rest as it is needed.
            let tmp = building_path(dir, id);
            let first = step_for(segment_bytes).min(segment_bytes);
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .and_then(|f| f.write_all_at(&vec![0u8; first as usize], 0).map(|_| f))
                .map_err(|e| Error::io(&tmp, e))?;
            (tmp, f, segment_bytes, first)
        }
    };
    let prepared = file
        .write_all_at(&encode_header(id, first_seq), 0)
        .and_then(|_| file.sync_data());
    if let Err(e) = prepared {
        // Still a spare by its name: it can serve again.
        pool.files.lock().push(from.clone());
        return Err(Error::io(&from, e));
    }
    crate::failpoints::synced();
    std::fs::rename(&from, &path).map_err(|e| Error::io(&from, e))?;
    sync_dir(dir)?;
    Ok(Active {
        id,
        file: Arc::new(file),
        offset: SEGMENT_HEADER_LEN,
        capacity,
        allocated: allocated.max(SEGMENT_HEADER_LEN),
    })
}

/// How much of a file, from its start, is allocated: a recycled segment of an older release was
/// created sparse and may have a hole after its records, which is counted as not allocated (blocks
/// are assumed to be allocated from the start, which is how segments are written).
fn allocated_prefix(meta: &std::fs::Metadata) -> u64 {
    meta.len().min(meta.blocks() * 512)
}

/// How many retired segment files, and how many bytes of them, are kept for reuse.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpareLimits {
    pub count: usize,
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RecoveryMode;
    use crate::proto::Entry;
    use crate::wal::Recovered;
    use crate::wal::segment::{SegmentScan, scan_segment, spare_path};

    /// Recovery with a fresh store's checkpoint; also returns the sequence numbers of the records.
    fn recover(dir: &Path, mode: RecoveryMode) -> crate::Result<(Recovered, Vec<u64>)> {
        let mut seqs = Vec::new();
        let rec = crate::wal::recover(dir, mode, Default::default(), &mut |seq, _, _| {
            seqs.push(seq);
            Ok(())
        })?;
        Ok((rec, seqs))
    }

    fn scan(path: &Path) -> SegmentScan {
        scan_segment(path, &mut |_, _, _| Ok(())).unwrap()
    }

    /// Appends `n` records, fdatasyncing after each when `flush`.
    fn write_log_with(dir: &Path, n: u64, flush: bool) -> PathBuf {
        let (rec, _) = recover(dir, RecoveryMode::TolerateTornTail).unwrap();
        let limits = SpareLimits {
            count: 2,
            bytes: 4 << 20,
        };
        let mut w = WalWriter::open(dir, &rec, 1 << 20, limits, 1).unwrap();
        for i in 1..=n {
            w.append(0, &Record::Append(vec![Entry::new(i, 1, vec![7u8; 100])]))
                .unwrap();
            if flush {
                w.sync_point().sync().unwrap();
            }
        }
        w.segments.lock().paths().last().unwrap().clone()
    }

    fn write_log(dir: &Path, n: u64) -> PathBuf {
        write_log_with(dir, n, true)
    }

    #[test]
    fn damage_to_records_never_synced_reads_as_a_power_cut_not_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_log_with(dir.path(), 10, false);
        let scan = scan(&path);
        let mut bytes = std::fs::read(&path).unwrap();
        // Record 5 lost, 6..10 written back: out-of-order writeback of unsynced pages.
        bytes[scan.records[4].1 as usize + 20] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (_, seqs) = recover(dir.path(), RecoveryMode::TolerateTornTail).unwrap();
        assert_eq!(seqs.len(), 4);
        assert!(recover(dir.path(), RecoveryMode::AbsoluteConsistency).is_err());
    }

    /// A power cut while `open` seals the newest segment, before its fdatasync completed: the seal
    /// reached the disk, an earlier record that was never synced did not. That is a torn tail, not
    /// corruption, so the seal must not claim the records before it were durable when it was written.
    #[test]
    fn a_seal_written_at_open_claims_only_what_was_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_log_with(dir.path(), 10, false);
        // Opening again seals the segment (and starts another, left empty).
        write_log_with(dir.path(), 0, false);
        let scan = scan(&path);
        assert_eq!(scan.seal_seq, Some(11));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[scan.records[4].1 as usize + 20] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (_, seqs) = recover(dir.path(), RecoveryMode::TolerateTornTail).unwrap();
        assert_eq!(seqs, vec![1, 2, 3, 4]);
    }

    #[test]
    fn torn_tail_is_cut_but_damage_before_valid_records_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_log(dir.path(), 10);
        let scan = scan(&path);
        assert_eq!(scan.records.len(), 10);
        let last_off = scan.records[9].1 as usize;
        let mid_off = scan.records[4].1 as usize;
        let pristine = std::fs::read(&path).unwrap();

        // Tear the last record: recovery keeps the first nine.
        let mut torn = pristine.clone();
        torn[last_off + 20] ^= 0xff;
        std::fs::write(&path, &torn).unwrap();
        let (_, seqs) = recover(dir.path(), RecoveryMode::TolerateTornTail).unwrap();
        assert_eq!(seqs.len(), 9);
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
            other => panic!("expected corruption, got {:?}", other.map(|r| r.1.len())),
        }
        let (_, salvaged) = recover(dir.path(), RecoveryMode::TolerateAnyCorruption).unwrap();
        assert_eq!(salvaged.len(), 4);
    }

    /// Reopening never appends to a segment an earlier run wrote: the newest one is sealed (the
    /// seal takes the next number) and the sequence continues in a new segment.
    #[test]
    fn reopen_seals_the_newest_segment_and_continues_in_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), 3);
        write_log(dir.path(), 2);
        let (rec, seqs) = recover(dir.path(), RecoveryMode::AbsoluteConsistency).unwrap();
        assert_eq!(seqs, vec![1, 2, 3, 5, 6]);
        let segs = rec.segments();
        assert_eq!(segs.len(), 2);
        assert_eq!((segs[0].tail.clone(), segs[0].seal_seq), (Tail::Sealed, Some(4)));
        assert_eq!((segs[1].id, segs[1].first_seq), (segs[0].id + 1, 5));
    }

    #[test]
    fn writing_after_a_cut_torn_tail_is_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_log(dir.path(), 5);
        let scan = scan(&path);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[scan.records[4].1 as usize + 30] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        write_log(dir.path(), 1);
        let (_, seqs) = recover(dir.path(), RecoveryMode::AbsoluteConsistency).unwrap();
        // The seal took number 5 where the torn record was.
        assert_eq!(seqs, vec![1, 2, 3, 4, 6]);
    }

    const KIB: u64 = 1 << 10;

    /// Opens a writer on `dir` with `segment_bytes` and its zero-filling thread running.
    fn open_zeroing(dir: &Path, segment_bytes: u64, limits: SpareLimits) -> (WalWriter, Arc<ZeroAhead>) {
        let (rec, _) = recover(dir, RecoveryMode::AbsoluteConsistency).unwrap();
        let w = WalWriter::open(dir, &rec, segment_bytes, limits, 1).unwrap();
        let ahead = w.zero_ahead();
        let thread = ahead.spawn().unwrap();
        // Detached: `stop` ends it when the test is done with the writer.
        drop(thread);
        (w, ahead)
    }

    fn append_kib(w: &mut WalWriter, from: u64, n: u64) {
        for i in from..from + n {
            w.append(
                0,
                &Record::Append(vec![Entry::new(i, 1, vec![(i % 251) as u8; 1000])]),
            )
            .unwrap();
        }
    }

    /// Waits (bounded) until the zero-filling thread has caught up with the writer.
    fn settle(w: &mut WalWriter) {
        for _ in 0..2000 {
            let end = w.active.offset + HEADER_LEN as u64;
            w.frontier = w.ahead.reserve(end);
            if w.frontier >= (end + 2 * w.ahead.step()).min(w.active.capacity) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("the zero-filling thread never caught up");
    }

    const LIMITS: SpareLimits = SpareLimits {
        count: 2,
        bytes: 1 << 20,
    };

    /// A segment file is as long as its records plus at most two zero-filled steps, never its whole
    /// capacity; everything past the records is zeroes on allocated blocks (no holes, so fdatasync
    /// after an append commits no allocation).
    #[test]
    fn a_segment_grows_with_its_records_in_zero_filled_steps() {
        let dir = tempfile::tempdir().unwrap();
        let seg = 1 << 20;
        let (mut w, ahead) = open_zeroing(dir.path(), seg, LIMITS);
        let step = ahead.step();
        assert_eq!(step, 128 * KIB);
        append_kib(&mut w, 1, 300);
        w.sync_point().sync().unwrap();
        settle(&mut w);
        let path = segment_path(dir.path(), w.active.id);
        let meta = std::fs::metadata(&path).unwrap();
        let end = w.active.offset;
        assert!(meta.len() >= end + 2 * step, "len {} end {end}", meta.len());
        assert!(
            meta.len() <= end + 3 * step + HEADER_LEN as u64,
            "len {} end {end}",
            meta.len()
        );
        assert!(meta.len() < seg);
        assert!(meta.blocks() * 512 >= meta.len(), "a hole in the segment");
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes[end as usize..].iter().all(|&b| b == 0));
        ahead.stop();
        drop(w);
        let (_, seqs) = recover(dir.path(), RecoveryMode::AbsoluteConsistency).unwrap();
        assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
    }

    /// A power cut in the middle of a zero-fill step leaves the file shorter, or with a hole, or
    /// with only some of the zeroes: each reads as the end of the log after the last record.
    #[test]
    fn a_power_cut_in_the_middle_of_a_zero_fill_step_reads_as_the_end_of_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, ahead) = open_zeroing(dir.path(), 1 << 20, LIMITS);
        append_kib(&mut w, 1, 200);
        w.sync_point().sync().unwrap();
        settle(&mut w);
        let path = segment_path(dir.path(), w.active.id);
        let end = w.active.offset;
        ahead.stop();
        drop(w);
        let pristine = std::fs::read(&path).unwrap();
        let cuts = [
            end,
            end + 1,
            end + HEADER_LEN as u64 + 7,
            end + 4 * KIB + 1,
            pristine.len() as u64 - 1,
        ];
        for cut in cuts {
            let f = OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(cut).unwrap();
            // The size update landed but not the zeroes: a hole up to where the step would end.
            f.set_len(cut + 64 * KIB).unwrap();
            drop(f);
            let (rec, seqs) = recover(dir.path(), RecoveryMode::AbsoluteConsistency).unwrap();
            assert_eq!(seqs.len(), 200, "cut at {cut}");
            assert_eq!(rec.segments()[0].tail, Tail::Clean, "cut at {cut}");
            std::fs::write(&path, &pristine).unwrap();
        }
    }

    /// A recycled segment keeps its old records past where the new ones end, and the zero-filling
    /// thread extends it past its old length: the new records are read back, the old ones end the
    /// segment cleanly, also when the newest record was lost to a power cut.
    #[test]
    fn a_recycled_segments_old_records_after_the_new_ones_end_it_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let seg = 256 * KIB;
        {
            let (mut w, ahead) = open_zeroing(dir.path(), seg, LIMITS);
            append_kib(&mut w, 1, 400);
            w.sync_point().sync().unwrap();
            ahead.stop();
        }
        // Segment 1 retired as the checkpoint covers it (what `Wal::retire` does).
        let (rec, _) = recover(dir.path(), RecoveryMode::AbsoluteConsistency).unwrap();
        let first = &rec.segments()[0];
        let applied = first.seal_seq.expect("400 KiB rotated a 256 KiB segment");
        std::fs::rename(&first.path, spare_path(dir.path(), first.id)).unwrap();
        let recover_from = |mode| {
            let mut seqs = Vec::new();
            let bounds = crate::wal::Bounds {
                floor: applied,
                reach: applied,
            };
            let rec = crate::wal::recover(dir.path(), mode, bounds, &mut |seq, _, _| {
                seqs.push(seq);
                Ok(())
            })
            .unwrap();
            (rec, seqs)
        };
        let (rec, kept) = recover_from(RecoveryMode::AbsoluteConsistency);
        assert_eq!(rec.spares.len(), 1);
        let mut w = WalWriter::open(dir.path(), &rec, seg, LIMITS, applied + 1).unwrap();
        let ahead = w.zero_ahead();
        drop(ahead.spawn().unwrap());
        assert!(
            w.pool.files.lock().is_empty(),
            "the spare became the active segment"
        );
        append_kib(&mut w, 1000, 20);
        w.sync_point().sync().unwrap();
        settle(&mut w);
        let path = segment_path(dir.path(), w.active.id);
        let end = w.active.offset;
        ahead.stop();
        drop(w);
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            bytes[end as usize + HEADER_LEN..].iter().any(|&b| b != 0),
            "old records remain after the new ones"
        );
        let (rec, seqs) = recover_from(RecoveryMode::AbsoluteConsistency);
        assert_eq!(seqs.len(), kept.len() + 20);
        assert_eq!(rec.segments().last().unwrap().tail, Tail::Clean);
        // The newest record torn by a power cut: a torn tail, the rest kept.
        let last = scan(&path).records[19].1 as usize;
        let mut torn = bytes.clone();
        torn[last + 20] ^= 0xff;
        std::fs::write(&path, &torn).unwrap();
        let (_, seqs) = recover_from(RecoveryMode::TolerateTornTail);
        assert_eq!(seqs.len(), kept.len() + 19);
    }

    /// A store of the previous release: 64 MiB segments created sparse and 64 MiB spares. It opens
    /// with smaller limits, keeps every record, deletes the spares beyond the byte cap, and its new
    /// segment is small.
    #[test]
    fn a_store_with_64_mib_segments_and_spares_opens_and_sheds_its_spares() {
        let dir = tempfile::tempdir().unwrap();
        let big = 64 << 20;
        write_log(dir.path(), 10);
        let seg = segment_path(dir.path(), 1);
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(big)
            .unwrap();
        for n in [7, 8] {
            let f = std::fs::File::create(spare_path(dir.path(), n)).unwrap();
            f.set_len(big).unwrap();
        }
        let limits = SpareLimits {
            count: 4,
            bytes: 8 << 20,
        };
        let (mut w, ahead) = open_zeroing(dir.path(), 8 << 20, limits);
        assert!(w.pool.files.lock().is_empty());
        append_kib(&mut w, 11, 5);
        w.sync_point().sync().unwrap();
        let active_len = std::fs::metadata(segment_path(dir.path(), w.active.id))
            .unwrap()
            .len();
        assert!(active_len <= 4 << 20, "new segment is {active_len} bytes");
        ahead.stop();
        drop(w);
        let (rec, seqs) = recover(dir.path(), RecoveryMode::AbsoluteConsistency).unwrap();
        assert_eq!(seqs, (1..=10).chain(12..=16).collect::<Vec<_>>());
        assert!(rec.spares.is_empty());
    }
}
