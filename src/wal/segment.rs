//! Segment files: a 32-byte header naming the segment, then records back to back, then zeroes or
//! stale bytes from the file's previous life. Scanning is read-only so offline tools can use it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::record::{Frame, HEADER_LEN, MAX_BODY_LEN, Record, parse_frame};
use crate::error::{Error, Result};

pub(crate) const SEGMENT_HEADER_LEN: u64 = 32;
const MAGIC: &[u8; 8] = b"TLWALSEG";
const VERSION: u32 = 1;
/// Segment id written into a retired file's header: a spare holds no live records.
pub(crate) const SPARE_ID: u64 = 0;

pub(crate) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.wal"))
}

pub(crate) fn spare_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("spare-{n:016x}.wal"))
}

/// Header: magic, version, checksum of the rest, segment id, sequence number of its first record.
pub(crate) fn encode_header(id: u64, first_seq: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&id.to_le_bytes());
    h[24..32].copy_from_slice(&first_seq.to_le_bytes());
    let crc = header_crc(&h);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    h
}

fn header_crc(h: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&h[0..12]), &h[16..32])
}

/// `(segment id, first sequence number)` of a header, or why it is not one.
pub(crate) fn decode_header(h: &[u8]) -> std::result::Result<(u64, u64), String> {
    if h.len() < SEGMENT_HEADER_LEN as usize || &h[0..8] != MAGIC {
        return Err("not a tierlog write-ahead segment (bad magic)".into());
    }
    let crc = u32::from_le_bytes(h[12..16].try_into().unwrap_or_default());
    if header_crc(h) != crc {
        return Err("segment header checksum mismatch".into());
    }
    let version = u32::from_le_bytes(h[8..12].try_into().unwrap_or_default());
    if version != VERSION {
        return Err(format!("unsupported segment version {version}"));
    }
    let u64_at = |p: usize| u64::from_le_bytes(h[p..p + 8].try_into().unwrap_or_default());
    Ok((u64_at(16), u64_at(24)))
}

/// Reads only the header of a segment file.
pub(crate) fn read_segment_id(path: &Path) -> Result<std::result::Result<u64, String>> {
    Ok(read_header(path)?.map(|h| h.0))
}

fn read_header(path: &Path) -> Result<std::result::Result<(u64, u64), String>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    match file.read_exact_at(&mut h, 0) {
        Ok(()) => Ok(decode_header(&h)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Ok(Err("file shorter than a header".into()))
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

/// How a segment's record sequence ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tail {
    /// A seal record: the segment was closed on purpose.
    Sealed,
    /// Zeroes or end of file after the last record.
    Clean,
    /// Bytes at `offset` claim the next sequence number but are not a valid record (a torn write or
    /// damage); `more_after` tells whether a valid record of this segment with a later sequence
    /// number follows (then it is damage, not a torn tail). Bytes that carry an older sequence number
    /// are a recycled file's previous contents and end the segment cleanly instead.
    Bad {
        offset: u64,
        reason: String,
        more_after: bool,
    },
}

/// A whole segment read into memory.
#[derive(Debug)]
pub(crate) struct SegmentScan {
    pub path: PathBuf,
    pub id: u64,
    /// Sequence number its header says the first record has.
    pub first_seq: u64,
    /// Records with their sequence numbers and offsets (the seal is not included).
    pub records: Vec<(u64, u64, Record)>,
    /// Offset right after the last valid record.
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
}

/// Reads and validates every record of the segment at `path`.
/// A segment file read front to back in chunks: a preallocated segment is mostly zeroes after its
/// records, and recovery should not read (or hold) megabytes of them.
struct ChunkReader {
    file: File,
    buf: Vec<u8>,
    len: u64,
    path: PathBuf,
}

impl ChunkReader {
    const CHUNK: usize = 1 << 20;

    /// Makes the first `n` bytes (or the whole file, if shorter) available.
    fn ensure(&mut self, n: usize) -> Result<()> {
        let want = (n as u64).min(self.len) as usize;
        while self.buf.len() < want {
            let start = self.buf.len();
            let grow = (want - start).max(Self::CHUNK).min(self.len as usize - start);
            self.buf.resize(start + grow, 0);
            self.file
                .read_exact_at(&mut self.buf[start..], start as u64)
                .map_err(|e| Error::io(&self.path, e))?;
        }
        Ok(())
    }

    /// The frame starting at `off`, copied out so decoded payloads pin only their own record.
    fn frame_at(&mut self, off: usize) -> Result<Bytes> {
        self.ensure(off + HEADER_LEN)?;
        let body_len = self.body_len_at(off);
        self.ensure(off + HEADER_LEN + body_len)?;
        let end = self.buf.len().min(off + HEADER_LEN + body_len);
        Ok(Bytes::copy_from_slice(&self.buf[off.min(end)..end]))
    }

    fn body_len_at(&self, off: usize) -> usize {
        self.buf
            .get(off..off + 4)
            .map_or(0, |b| {
                u32::from_le_bytes(b.try_into().unwrap_or_default()) as usize
            })
            .min(MAX_BODY_LEN)
    }
}

/// Reads and validates every record of the segment at `path`.
pub(crate) fn scan_segment(path: &Path) -> Result<SegmentScan> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut reader = ChunkReader {
        file,
        buf: Vec::new(),
        len: file_len,
        path: path.to_path_buf(),
    };
    reader.ensure(SEGMENT_HEADER_LEN as usize)?;
    let (id, first_seq) = decode_header(&reader.buf).map_err(|reason| Error::corruption(path, 0, reason))?;
    let mut off = SEGMENT_HEADER_LEN as usize;
    let mut records = Vec::new();
    let mut seal_seq = None;
    let mut last_seq: Option<u64> = None;
    let tail = loop {
        if off as u64 >= file_len {
            break Tail::Clean;
        }
        match parse_frame(id, &reader.frame_at(off)?) {
            Frame::End => break Tail::Clean,
            Frame::Record { seq, record, len } => {
                let expected = last_seq.map_or(first_seq, |s| s + 1);
                if seq < expected {
                    // An older sequence number is a recycled file's previous contents.
                    break Tail::Clean;
                }
                if seq != expected {
                    break Tail::Bad {
                        offset: off as u64,
                        reason: format!("sequence {seq} where {expected} was expected"),
                        more_after: false,
                    };
                }
                last_seq = Some(seq);
                off += len;
                if record == Record::Seal {
                    seal_seq = Some(seq);
                    break Tail::Sealed;
                }
                records.push((seq, (off - len) as u64, record));
            }
            Frame::Bad(reason) => {
                let expected = last_seq.map_or(first_seq, |s| s + 1);
                let claimed = reader
                    .buf
                    .get(off + 8..off + 16)
                    .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
                if claimed.is_some_and(|c| c < expected) {
                    break Tail::Clean;
                }
                reader.ensure(file_len as usize)?;
                let more_after =
                    valid_record_after(id, &Bytes::copy_from_slice(&reader.buf), off + 1, expected);
                break Tail::Bad {
                    offset: off as u64,
                    reason,
                    more_after,
                };
            }
        }
    };
    let end = match &tail {
        Tail::Bad { offset, .. } => *offset,
        _ => off as u64,
    };
    Ok(SegmentScan {
        path: path.to_path_buf(),
        id,
        first_seq,
        records,
        end,
        seal_seq,
        tail,
        file_len,
    })
}

/// True when some offset at or after `from` holds a valid record of segment `id` whose sequence number
/// continues past `last_seq`: then the bad bytes before it are damage in the middle of the log.
fn valid_record_after(id: u64, data: &Bytes, from: usize, expected: u64) -> bool {
    let base = expected;
    let mut off = from;
    while off + HEADER_LEN <= data.len() {
        let seq = u64::from_le_bytes(data[off + 8..off + 16].try_into().unwrap_or_default());
        // Cheap filter before the checksum: only sequence numbers that could follow.
        if seq >= base
            && seq <= base + (1 << 32)
            && matches!(parse_frame(id, &data.slice(off..)), Frame::Record { .. })
        {
            return true;
        }
        off += 1;
    }
    false
}
