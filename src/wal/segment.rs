//! Segment files: a 32-byte header naming the segment, then records back to back, then zeroes or
//! stale bytes from the file's previous life. Scanning is read-only so offline tools can use it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::record::{Footprint, Frame, HEADER_LEN, MAX_BODY_LEN, Record, parse_frame};
use crate::error::{Error, Result};
use crate::le::{u32_at, u64_at};
use crate::proto::GroupId;

pub(crate) const SEGMENT_HEADER_LEN: u64 = 32;
const MAGIC: &[u8; 8] = b"TLWALSEG";
/// Header field offsets, each after the previous field (layout in `docs/format.md`).
const VERSION_AT: usize = MAGIC.len();
const CRC_AT: usize = VERSION_AT + 4;
const ID_AT: usize = CRC_AT + 4;
const FIRST_SEQ_AT: usize = ID_AT + 8;
/// Version 2 adds no field; it promises two things about how the file was made (see
/// `docs/format.md`): its header was durable before it got a segment's name, and a segment was
/// sealed only once its successor existed. Recovery holds version-2 segments to both.
pub(crate) const VERSION: u32 = 2;
/// Segments written by the first release: still read, with that release's looser rules.
pub(crate) const VERSION_1: u32 = 1;
/// Segment id written into a retired file's header: a spare holds no live records.
pub(crate) const SPARE_ID: u64 = 0;

/// The name of segment `id`'s file; every other `.wal` name in the directory is a spare.
pub(crate) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.wal"))
}

/// The segment id a file name stands for, or `None` for spares and foreign files.
pub(crate) fn segment_id_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let hex = name.strip_suffix(".wal")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().filter(|&id| id != SPARE_ID)
}

pub(crate) fn spare_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("spare-{n:016x}.wal"))
}

/// Name under which a new segment file is built before it is renamed into place.
pub(crate) fn building_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("new-{id:016x}.wal"))
}

/// Name under which a zero-filled spare is built before it joins the pool.
pub(crate) fn building_spare_path(dir: &Path) -> PathBuf {
    dir.join("new-spare.wal")
}

/// Where `tolerate_any_corruption` sets a segment aside: a name recovery never reads.
pub(crate) fn set_aside_path(segment: &Path) -> PathBuf {
    segment.with_extension("wal.corrupt")
}

/// A decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub id: u64,
    /// Sequence number of the segment's first record.
    pub first_seq: u64,
    pub version: u32,
}

/// Header: magic, version, checksum of the rest, segment id, sequence number of its first record.
pub(crate) fn encode_header(id: u64, first_seq: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..VERSION_AT].copy_from_slice(MAGIC);
    h[VERSION_AT..CRC_AT].copy_from_slice(&VERSION.to_le_bytes());
    h[ID_AT..FIRST_SEQ_AT].copy_from_slice(&id.to_le_bytes());
    h[FIRST_SEQ_AT..].copy_from_slice(&first_seq.to_le_bytes());
    let crc = header_crc(&h);
    h[CRC_AT..ID_AT].copy_from_slice(&crc.to_le_bytes());
    h
}

fn header_crc(h: &[u8]) -> u32 {
    crc32c::crc32c_append(
        crc32c::crc32c(&h[..CRC_AT]),
        &h[ID_AT..SEGMENT_HEADER_LEN as usize],
    )
}

/// `(segment id, first sequence number)` of a header, or why it is not one.
#[cfg(test)]
pub(crate) fn decode_header(h: &[u8]) -> std::result::Result<(u64, u64), String> {
    parse_header(h).map(|h| (h.id, h.first_seq))
}

pub(crate) fn parse_header(h: &[u8]) -> std::result::Result<Header, String> {
    if h.len() < SEGMENT_HEADER_LEN as usize || &h[..VERSION_AT] != MAGIC {
        return Err("not a tierlog write-ahead segment (bad magic)".into());
    }
    if header_crc(h) != u32_at(h, CRC_AT) {
        return Err("segment header checksum mismatch".into());
    }
    let version = u32_at(h, VERSION_AT);
    if version != VERSION && version != VERSION_1 {
        return Err(format!("unsupported segment version {version}"));
    }
    Ok(Header {
        id: u64_at(h, ID_AT),
        first_seq: u64_at(h, FIRST_SEQ_AT),
        version,
    })
}

/// How a segment's record sequence ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tail {
    /// A seal record: the segment was closed on purpose.
    Sealed,
    /// Zeroes or end of file after the last record, and no valid record of this segment further on.
    Clean,
    /// The record numbered `seq` was expected at `offset` but is not there: the bytes are not a
    /// valid record (torn or damaged), or they are zeroes with valid records of this segment
    /// further on. `more_after` tells whether such later records exist, and `synced_after` the
    /// highest durable watermark they carry: if it reaches `seq`, the missing record had been
    /// fdatasynced, so this is corruption; if not, it is what a power cut with out-of-order
    /// writeback leaves. Bytes that carry an older sequence number are a recycled file's previous
    /// contents and end the segment cleanly instead.
    Bad {
        offset: u64,
        seq: u64,
        reason: String,
        more_after: bool,
        synced_after: u64,
    },
}

/// One segment's records and how they end.
#[derive(Debug)]
pub(crate) struct SegmentScan {
    pub path: PathBuf,
    pub id: u64,
    /// Header version (see [`VERSION`]).
    pub version: u32,
    /// Sequence number its header says the first record has.
    pub first_seq: u64,
    /// Sequence number, offset and footprint of each record (the seal is not included); the records
    /// themselves went to the scan's sink.
    pub records: Vec<(u64, u64, Footprint)>,
    /// Offset right after the last valid record (after the seal when sealed).
    pub end: u64,
    /// Sequence number of the seal, when sealed.
    pub seal_seq: Option<u64>,
    pub tail: Tail,
    /// Allocated length of the file.
    pub file_len: u64,
}

impl SegmentScan {
    /// Highest sequence number in the segment (records and seal).
    pub(crate) fn last_seq(&self) -> Option<u64> {
        self.seal_seq.or_else(|| self.records.last().map(|r| r.0))
    }

    /// The sequence number the segment's next record (or seal) would take.
    pub(crate) fn next_seq(&self) -> u64 {
        self.last_seq().map_or(self.first_seq, |s| s + 1)
    }
}

/// A segment file read front to back in chunks: a preallocated segment is mostly zeroes after its
/// records, and recovery should not read (or hold) megabytes of them.
struct ChunkReader {
    file: File,
    /// Bytes `[base, base + buf.len())` of the file.
    buf: Vec<u8>,
    base: u64,
    len: u64,
    path: PathBuf,
    /// Bytes copied out as frames, for tests that bound the work of a scan.
    #[cfg(test)]
    copied: u64,
}

impl ChunkReader {
    const CHUNK: usize = 1 << 20;

    /// Makes bytes `[at, at + n)` (or up to the end of the file) available and returns them.
    fn window(&mut self, at: u64, n: usize) -> Result<&[u8]> {
        let end = (at + n as u64).min(self.len);
        let at = at.min(end);
        if at < self.base || end > self.base + self.buf.len() as u64 {
            let want = ((end - at) as usize).max(Self::CHUNK);
            let read_end = (at + want as u64).min(self.len);
            self.buf.resize((read_end - at) as usize, 0);
            self.file
                .read_exact_at(&mut self.buf, at)
                .map_err(|e| Error::io(&self.path, e))?;
            self.base = at;
        }
        let from = (at - self.base) as usize;
        Ok(&self.buf[from..from + (end - at) as usize])
    }

    /// The frame starting at `off`, copied out so decoded payloads pin only their own record.
    fn frame_at(&mut self, off: u64) -> Result<Bytes> {
        let head = self.window(off, HEADER_LEN)?;
        let body_len = head
            .get(..4)
            .map_or(0, |b| u32_at(b, 0) as usize)
            .min(MAX_BODY_LEN);
        let frame = Bytes::copy_from_slice(self.window(off, HEADER_LEN + body_len)?);
        #[cfg(test)]
        {
            self.copied += frame.len() as u64;
        }
        Ok(frame)
    }

    /// Whether the length field of a frame header at `off` describes a body that ends inside the file.
    fn body_fits(&mut self, off: u64) -> Result<bool> {
        let len = self.len;
        let head = self.window(off, HEADER_LEN)?;
        Ok(head.len() == HEADER_LEN
            && off + HEADER_LEN as u64 + u64::from(u32_at(head, 0)) <= len
            && (u32_at(head, 0) as usize) <= MAX_BODY_LEN)
    }

    /// The sequence number field of a frame header at `off`, if the file holds one there.
    fn seq_at(&mut self, off: u64) -> Result<Option<u64>> {
        let head = self.window(off, HEADER_LEN)?;
        Ok((head.len() == HEADER_LEN).then(|| u64_at(head, 8)))
    }
}

/// Reads a segment file's header; a file too short for one, or whose header does not decode, is
/// damage.
pub(crate) fn read_header(path: &Path) -> Result<Header> {
    open_segment(path).map(|(h, _)| h)
}

fn open_segment(path: &Path) -> Result<(Header, ChunkReader)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut reader = ChunkReader {
        #[cfg(test)]
        copied: 0,
        file,
        buf: Vec::new(),
        base: 0,
        len: file_len,
        path: path.to_path_buf(),
    };
    let head = reader.window(0, SEGMENT_HEADER_LEN as usize)?;
    if head.len() < SEGMENT_HEADER_LEN as usize {
        return Err(Error::corruption(path, 0, "file shorter than a segment header"));
    }
    let header = parse_header(head).map_err(|reason| Error::corruption(path, 0, reason))?;
    Ok((header, reader))
}

/// Where a scan's valid records go, in sequence order, as they are read.
pub(crate) type RecordSink<'a> = &'a mut dyn FnMut(u64, GroupId, Record) -> Result<()>;

/// Reads and validates every record of the segment at `path`, handing each valid one to `sink`
/// (so that no more than one record is held at a time).
pub(crate) fn scan_segment(path: &Path, sink: RecordSink) -> Result<SegmentScan> {
    let (header, mut reader) = open_segment(path)?;
    let file_len = reader.len;
    let id = header.id;
    let mut off = SEGMENT_HEADER_LEN;
    let mut records = Vec::new();
    let mut seal_seq = None;
    let mut last_seq: Option<u64> = None;
    let tail = loop {
        let expected = last_seq.map_or(header.first_seq, |s| s + 1);
        if off >= file_len {
            break Tail::Clean;
        }
        let bad = |reason: String, later: Option<u64>| Tail::Bad {
            offset: off,
            seq: expected,
            reason,
            more_after: later.is_some(),
            synced_after: later.unwrap_or(0),
        };
        match parse_frame(id, &reader.frame_at(off)?) {
            Frame::End => match records_after(&mut reader, id, off + 1, expected)? {
                None => break Tail::Clean,
                Some(synced) => {
                    break bad(
                        format!("zeroes where record {expected} was expected, valid records after them"),
                        Some(synced),
                    );
                }
            },
            Frame::Record {
                seq,
                group,
                record,
                len,
                ..
            } => {
                if seq < expected {
                    // An older sequence number is a recycled file's previous contents.
                    break Tail::Clean;
                }
                if seq != expected {
                    break bad(format!("sequence {seq} where {expected} was expected"), None);
                }
                last_seq = Some(seq);
                off += len as u64;
                if record == Record::Seal {
                    seal_seq = Some(seq);
                    break Tail::Sealed;
                }
                records.push((seq, off - len as u64, record.footprint(group)));
                sink(seq, group, record)?;
            }
            Frame::Bad(reason) => {
                if reader.seq_at(off)?.is_some_and(|c| c < expected) {
                    break Tail::Clean;
                }
                let later = records_after(&mut reader, id, off + 1, expected)?;
                break bad(reason, later);
            }
        }
    };
    let end = match &tail {
        Tail::Bad { offset, .. } => *offset,
        _ => off,
    };
    Ok(SegmentScan {
        path: path.to_path_buf(),
        id,
        version: header.version,
        first_seq: header.first_seq,
        records,
        end,
        seal_seq,
        tail,
        file_len,
    })
}

/// Looks for valid records of segment `id` at or after `from` whose sequence numbers continue past
/// `expected`; returns the highest durable watermark they carry, or `None` when there are none.
/// Streams the file; all-zero stretches (preallocated space) are skipped a page at a time.
fn records_after(reader: &mut ChunkReader, id: u64, from: u64, expected: u64) -> Result<Option<u64>> {
    const PAGE: u64 = 4096;
    let mut off = from;
    while off + HEADER_LEN as u64 <= reader.len {
        // A record's length field is never zero: skip whole zero pages.
        if off.is_multiple_of(PAGE) && reader.window(off, PAGE as usize)?.iter().all(|&b| b == 0) {
            off += PAGE;
            continue;
        }
        let Some(seq) = reader.seq_at(off)? else { break };
        // Cheap filters before the checksum: only sequence numbers that could follow, and only a
        // length that fits in the file (a recycled file's old bytes pass the first often enough, and
        // each candidate would otherwise copy everything up to the end of the file).
        if seq >= expected
            && seq <= expected + (1 << 32)
            && reader.body_fits(off)?
            && let Frame::Record { .. } = parse_frame(id, &reader.frame_at(off)?)
        {
            // Records run back to back from the first one found.
            let mut max_synced = 0;
            while let Frame::Record { synced, len, .. } = parse_frame(id, &reader.frame_at(off)?) {
                max_synced = max_synced.max(synced);
                off += len as u64;
            }
            return Ok(Some(max_synced));
        }
        off += 1;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the search for records after a gap copied, for every offset whose bytes looked
    /// like a following sequence number, the claimed body up to the end of the file before the
    /// checksum rejected it. A recycled file's old records are full of such bytes (small integers):
    /// reopening a 50,000-entry bench store took 7.7 s. Candidates whose length runs past the file
    /// are now rejected before the copy, so the search copies little more than the file.
    #[test]
    fn searching_past_a_gap_does_not_copy_the_rest_of_the_file_per_candidate() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 5);
        let mut bytes = encode_header(5, 1).to_vec();
        // Old bytes: 16-byte frames claiming a 16 MiB body and sequence number 2.
        while bytes.len() < 64 << 10 {
            bytes.extend_from_slice(&(16u32 << 20).to_le_bytes());
            bytes.extend_from_slice(&[0xAB; 4]);
            bytes.extend_from_slice(&2u64.to_le_bytes());
        }
        std::fs::write(&path, &bytes).unwrap();
        let (_, mut reader) = open_segment(&path).unwrap();
        let found = records_after(&mut reader, 5, SEGMENT_HEADER_LEN, 2).unwrap();
        assert_eq!(found, None);
        assert!(
            reader.copied <= 4 * bytes.len() as u64,
            "copied {} bytes to search a {}-byte file",
            reader.copied,
            bytes.len()
        );
    }
}
