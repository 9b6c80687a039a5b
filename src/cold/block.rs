//! Cold blocks: a run of consecutive entries stored as one redb value (layouts in
//! `docs/format.md`).
//!
//! The writer writes version 2 (`TLB2`): a header, a frame table and independently zstd-compressed
//! frames of about [`FRAME_TARGET_RAW`] raw bytes each, cut at entry boundaries. A point read
//! decompresses the one frame holding its entry and a range read only the frames it overlaps;
//! every frame has its own checksum, so a read verifies exactly the bytes it decodes (plus the
//! small header and frame table, which have theirs). The reader also accepts version 1 (`TLB1`,
//! the first release's): one zstd frame for the whole block, read as a block of one frame.
//!
//! The compactor packs frames into a block until its stored size approaches a redb page bucket
//! ([`Packing`]): redb gives every large value a leaf of its own, rounded up to 2^k × 4 KiB.

use bytes::{BufMut, Bytes};

use super::dict::{Dictionaries, Dictionary, DictionaryEncoder};
use crate::le::{u32_at, u64_at};
use crate::proto::{Entry, GroupId};

/// Version 1 (first release): one zstd frame per block.
const MAGIC_V1: &[u8; 4] = b"TLB1";
/// Version 2: independently compressed frames behind a frame table.
const MAGIC_V2: &[u8; 4] = b"TLB2";
/// Header fields shared by both versions, each after the previous field.
const ID_AT: usize = 4;
const FIRST_AT: usize = ID_AT + 8;
const COUNT_AT: usize = FIRST_AT + 8;
/// Version 1 only: the raw length and the checksum of header and compressed bytes.
const V1_RAW_LEN_AT: usize = COUNT_AT + 4;
const V1_CRC_AT: usize = V1_RAW_LEN_AT + 4;
const V1_HEADER_LEN: usize = V1_CRC_AT + 4;
/// Version 2 only: the number of frames, the id of the compression dictionary every frame was
/// compressed with (0: none; see `super::dict`) and the checksum of the header's first 32 bytes and the frame table.
const V2_FRAMES_AT: usize = COUNT_AT + 4;
const V2_DICT_AT: usize = V2_FRAMES_AT + 4;
const V2_CRC_AT: usize = V2_DICT_AT + 4;
pub(crate) const V2_HEADER_LEN: usize = V2_CRC_AT + 4;
/// One frame-table slot: the frame's first entry (its position in the block), its raw length, its
/// stored (compressed) length and the checksum of its stored bytes.
const SLOT_FIRST_AT: usize = 0;
const SLOT_RAW_AT: usize = 4;
const SLOT_STORED_AT: usize = 8;
const SLOT_CRC_AT: usize = 12;
pub(crate) const FRAME_SLOT_LEN: usize = 16;

/// Raw bytes a frame is cut at (at an entry boundary; an entry bigger than this gets a frame of its
/// own). 16 KiB keeps a point read's decompression near 15 µs here while losing little ratio
/// against one 64 KiB frame (measurements in `docs/performance.md`).
pub(crate) const FRAME_TARGET_RAW: usize = 16 << 10;
/// Largest decompressed frame accepted, so a damaged length field cannot force a huge allocation.
pub(crate) const MAX_RAW_LEN: usize = 1 << 30;
/// Raw-frame bytes an entry takes besides its payload: its offset-table slot (u32) and term (u64).
pub(crate) const ENTRY_FRAMING: usize = 4 + 8;
/// Raw-frame bytes besides the entries: the offset table's end slot (u32).
pub(crate) const BLOCK_FRAMING: usize = 4;
/// Bytes a redb 4.6 leaf holding one `u64` key and one variable-length value takes besides the
/// value: a 4-byte page header, the value's 4-byte end offset and the 8-byte key
/// (`LeafBuilder::required_bytes` in `redb/src/tree_store/btree_base.rs`).
pub(crate) const REDB_LEAF_OVERHEAD: usize = 16;
/// redb's page size; a leaf takes 2^k of them.
#[cfg(test)]
pub(crate) const REDB_PAGE: usize = 4096;

/// Bytes redb allocates for a stored block of `stored` bytes (its leaf, rounded up to 2^k pages).
#[cfg(test)]
pub(crate) fn allocated_bytes(stored: u64) -> u64 {
    let pages = (stored + REDB_LEAF_OVERHEAD as u64).div_ceil(REDB_PAGE as u64);
    pages.next_power_of_two() * REDB_PAGE as u64
}

/// What the in-memory block index knows of a block without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlockMeta {
    /// Unique for the life of the directory; a trimmed block keeps its id (its kept entries are
    /// byte-identical), any other rewrite gets a new one. The frame cache is keyed by it.
    pub id: u64,
    /// The group whose log the block holds (it decides the table the block is stored in).
    pub group: GroupId,
    pub first: u64,
    pub last: u64,
    pub raw_len: u64,
    pub stored_len: u64,
}

/// A decompressed frame (a whole block for version 1), shared by the cache and by readers;
/// entries' payloads point into `raw`.
#[derive(Debug)]
pub(crate) struct DecodedFrame {
    /// The id of the block the frame belongs to.
    pub block: u64,
    pub first: u64,
    count: u64,
    raw: Bytes,
    /// Bytes the frame's buffer holds (its capacity: a reused buffer may be larger than `raw`).
    held: u64,
}

impl DecodedFrame {
    pub(crate) fn last(&self) -> u64 {
        self.first + self.count - 1
    }

    #[cfg(test)]
    pub(crate) fn raw_len(&self) -> u64 {
        self.raw.len() as u64
    }

    /// Heap bytes the decoded frame keeps alive (what the frame cache accounts).
    pub(crate) fn held_bytes(&self) -> u64 {
        self.held
    }

    /// The frame's raw form (a dictionary's training sample).
    pub(crate) fn raw(&self) -> &[u8] {
        &self.raw
    }

    fn offset(&self, i: usize) -> usize {
        u32_at(&self.raw, 4 * i) as usize
    }

    /// The entry at `index`, or `None` outside `[first, last]`.
    pub(crate) fn get(&self, index: u64) -> Option<Entry> {
        if index < self.first || index > self.last() {
            return None;
        }
        let i = (index - self.first) as usize;
        let (a, b) = (self.offset(i), self.offset(i + 1));
        let term = u64_at(&self.raw, a);
        Some(Entry {
            index,
            term,
            payload: self.raw.slice(a + 8..b),
        })
    }

    /// Entries of `[from, to]` that this frame holds.
    pub(crate) fn range(&self, from: u64, to: u64) -> impl Iterator<Item = Entry> + '_ {
        (from.max(self.first)..=to.min(self.last())).filter_map(|i| self.get(i))
    }
}

/// Bytes an entry takes in a frame's raw form (its offset slot, term and payload).
pub(crate) fn raw_cost(e: &Entry) -> u64 {
    (ENTRY_FRAMING + e.payload.len()) as u64
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

/// When the compactor closes a block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Packing {
    /// Raw bytes after which no further entry is added (`block_target_bytes`).
    pub raw_cap: u64,
    /// Stored bytes a block stays within unless its first frame alone is bigger: the redb page
    /// bucket minus the leaf's own bytes, so a full block wastes little of its allocation.
    pub stored_cap: usize,
}

impl Packing {
    /// Packing for blocks of at most `raw_cap` raw bytes whose stored form fits the page bucket
    /// `bucket_bytes` (a power of two times 4 KiB).
    pub(crate) fn new(raw_cap: u64, bucket_bytes: usize) -> Self {
        Packing {
            raw_cap,
            stored_cap: bucket_bytes - REDB_LEAF_OVERHEAD,
        }
    }

    /// No limit: every entry given goes into the block (a trimmed block keeps all its entries).
    pub(crate) fn unbounded() -> Self {
        Packing {
            raw_cap: u64::MAX,
            stored_cap: usize::MAX,
        }
    }
}

/// A stored block built from a prefix of the entries given.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub stored: Vec<u8>,
    /// How many of the given entries it holds (at least one).
    pub entries: usize,
    /// Sum of its frames' raw lengths.
    pub raw_len: u64,
    /// True when the block stopped at a limit of its [`Packing`] rather than at the end of the
    /// entries: a full block.
    pub full: bool,
}

struct FrameOut {
    first_pos: u32,
    raw_len: u32,
    bytes: Vec<u8>,
}

/// The raw length of a frame holding `entries`: an error when it would be over the reader's
/// [`MAX_RAW_LEN`] (which also keeps every u32 field of the frame in range). Reads lengths only.
pub(crate) fn frame_raw_len(entries: &[Entry]) -> Result<usize, std::io::Error> {
    entries
        .iter()
        .try_fold(BLOCK_FRAMING, |l, e| {
            l.checked_add(ENTRY_FRAMING + e.payload.len())
                .filter(|&l| l <= MAX_RAW_LEN)
        })
        .ok_or_else(|| {
            invalid(format!(
                "{} entries do not fit one cold frame ({MAX_RAW_LEN} raw bytes at most)",
                entries.len()
            ))
        })
}

/// The raw form of a frame holding `entries` (the version-1 block layout).
fn raw_frame(entries: &[Entry]) -> Result<Vec<u8>, std::io::Error> {
    let len = frame_raw_len(entries)?;
    let mut raw = Vec::with_capacity(len);
    let mut off = 4 * (entries.len() + 1);
    for e in entries {
        raw.put_u32_le(off as u32);
        off += 8 + e.payload.len();
    }
    raw.put_u32_le(off as u32);
    for e in entries {
        raw.put_u64_le(e.term);
        raw.put_slice(&e.payload);
    }
    Ok(raw)
}

/// How many entries from the front of `entries` go into the next frame: up to
/// [`FRAME_TARGET_RAW`] raw bytes, at least one entry, at most `raw_budget` raw bytes unless that
/// leaves none; and no entry after the one that brings the block to `block_left` raw bytes (the
/// block's raw cap; the entry crossing it is the block's last, like the first release's blocks).
fn frame_len(entries: &[Entry], raw_budget: usize, block_left: u64) -> usize {
    let cap = FRAME_TARGET_RAW.min(raw_budget);
    let mut raw = BLOCK_FRAMING;
    let mut n = 0;
    for e in entries {
        let c = ENTRY_FRAMING + e.payload.len();
        if n > 0 && (raw + c > cap || raw as u64 >= block_left) {
            break;
        }
        raw += c;
        n += 1;
    }
    n
}

/// Compresses one raw frame, with the store's dictionary when there is one.
fn compress(
    zstd: &mut zstd::bulk::Compressor<'_>,
    dict: Option<&DictionaryEncoder>,
    raw: &[u8],
) -> std::io::Result<Vec<u8>> {
    match dict {
        Some(d) => d.compress(zstd, raw),
        None => zstd.compress(raw),
    }
}

/// Encodes a block with the given id from the longest prefix of consecutive `entries` that
/// `packing` allows (at least one entry), compressing its frames with `dict` when given. Frames are cut at [`FRAME_TARGET_RAW`] from the block's
/// first entry, so a block re-encoded from a prefix of its entries (a trim) has the same frames
/// up to its last, which holds a prefix of the original frame's entries.
pub(crate) fn encode_packed(
    id: u64,
    entries: &[Entry],
    packing: Packing,
    zstd: &mut zstd::bulk::Compressor<'_>,
    dict: Option<&DictionaryEncoder>,
) -> std::io::Result<Encoded> {
    if entries.is_empty() {
        return Err(invalid("a cold block holds at least one entry".into()));
    }
    if entries.len() > u32::MAX as usize {
        return Err(invalid(format!(
            "{} entries do not fit one cold block",
            entries.len()
        )));
    }
    let mut frames: Vec<FrameOut> = Vec::new();
    let mut stored = V2_HEADER_LEN;
    let mut pos = 0usize;
    let mut raw_total = 0u64;
    let mut full = false;
    while pos < entries.len() {
        if raw_total >= packing.raw_cap {
            full = true;
            break;
        }
        let block_left = packing.raw_cap - raw_total;
        let n = frame_len(&entries[pos..], usize::MAX, block_left);
        let raw = raw_frame(&entries[pos..pos + n])?;
        let mut bytes = compress(zstd, dict, &raw)?;
        let mut frame = (n, raw.len());
        let room = packing.stored_cap.saturating_sub(stored + FRAME_SLOT_LEN);
        if !frames.is_empty() && bytes.len() > room {
            // The last frame of a full block: as many entries as its ratio so far suggests fit the
            // room left (one try; cut at 7/8 of the estimate so most tries fit).
            full = true;
            let ratio = raw.len() as f64 / bytes.len().max(1) as f64;
            let budget = (room as f64 * ratio * 7.0 / 8.0) as usize;
            let m = frame_len(&entries[pos..], budget, block_left);
            if m == n || m == 0 || BLOCK_FRAMING + ENTRY_FRAMING > budget {
                break;
            }
            let raw = raw_frame(&entries[pos..pos + m])?;
            bytes = compress(zstd, dict, &raw)?;
            if bytes.len() > room {
                break;
            }
            frame = (m, raw.len());
        }
        stored += FRAME_SLOT_LEN + bytes.len();
        raw_total += frame.1 as u64;
        frames.push(FrameOut {
            first_pos: pos as u32,
            raw_len: frame.1 as u32,
            bytes,
        });
        pos += frame.0;
        if full {
            break;
        }
    }
    let count = pos;
    let mut out = Vec::with_capacity(stored);
    out.put_slice(MAGIC_V2);
    out.put_u64_le(id);
    out.put_u64_le(entries[0].index);
    out.put_u32_le(count as u32);
    out.put_u32_le(frames.len() as u32);
    out.put_u32_le(dict.map_or(0, DictionaryEncoder::id));
    out.put_u32_le(0); // the header checksum, written below
    for f in &frames {
        out.put_u32_le(f.first_pos);
        out.put_u32_le(f.raw_len);
        out.put_u32_le(f.bytes.len() as u32);
        out.put_u32_le(crc32c::crc32c(&f.bytes));
    }
    let crc = header_crc(&out);
    out[V2_CRC_AT..V2_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    for f in &frames {
        out.put_slice(&f.bytes);
    }
    Ok(Encoded {
        stored: out,
        entries: count,
        raw_len: raw_total,
        full: full || pos < entries.len() || raw_total >= packing.raw_cap,
    })
}

/// Encodes all of `entries` (consecutive) into one stored block with the given id.
#[cfg(test)]
pub(crate) fn encode(
    id: u64,
    entries: &[Entry],
    zstd: &mut zstd::bulk::Compressor<'_>,
) -> std::io::Result<Vec<u8>> {
    encode_packed(id, entries, Packing::unbounded(), zstd, None).map(|e| e.stored)
}

/// Encodes all of `entries` (consecutive) into one stored block compressed with `dict`.
#[cfg(test)]
pub(crate) fn encode_with(
    id: u64,
    entries: &[Entry],
    zstd: &mut zstd::bulk::Compressor<'_>,
    dict: &DictionaryEncoder,
) -> std::io::Result<Vec<u8>> {
    encode_packed(id, entries, Packing::unbounded(), zstd, Some(dict)).map(|e| e.stored)
}

/// The version-2 header checksum over the header (checksum field excluded) and the frame table.
fn header_crc(header_and_table: &[u8]) -> u32 {
    crc32c::crc32c_append(
        crc32c::crc32c(&header_and_table[..V2_CRC_AT]),
        &header_and_table[V2_HEADER_LEN..],
    )
}

/// Where one frame lies in a stored block and what it holds.
#[derive(Clone, Copy, Debug)]
struct FrameRef {
    /// Position of its first entry in the block.
    first_pos: u64,
    raw_len: usize,
    /// Byte range of its compressed bytes in the stored block.
    start: usize,
    end: usize,
    crc: Option<u32>,
}

/// A stored block whose header (and frame table) checked out; frames are verified and
/// decompressed one at a time, when asked for.
#[derive(Debug)]
pub(crate) struct Block<'a> {
    stored: &'a [u8],
    pub id: u64,
    pub first: u64,
    count: u64,
    frames: Vec<FrameRef>,
    /// The dictionary its frames were compressed with.
    dict: Option<&'a Dictionary>,
}

impl Block<'_> {
    /// Id of the dictionary its frames were compressed with, 0 for none.
    #[cfg(test)]
    pub(crate) fn dictionary_id(&self) -> u32 {
        self.dict.map_or(0, Dictionary::id)
    }
}

/// Parses and checks a stored block's header: for version 1 the checksum of the whole block, for
/// version 2 that of the header and frame table (each frame's own is checked when it is decoded).
/// A version-2 block naming a dictionary `dicts` lacks (or holds damaged) is an error.
pub(crate) fn parse<'a>(stored: &'a [u8], dicts: &'a Dictionaries) -> Result<Block<'a>, String> {
    match stored.get(..4) {
        Some(m) if m == MAGIC_V2 => parse_v2(stored, dicts),
        Some(m) if m == MAGIC_V1 => parse_v1(stored),
        _ => Err("not a tierlog block (bad magic or too short)".into()),
    }
}

fn parse_v1(stored: &[u8]) -> Result<Block<'_>, String> {
    if stored.len() < V1_HEADER_LEN {
        return Err("not a tierlog block (bad magic or too short)".into());
    }
    let (id, first, count, raw_len, crc) = (
        u64_at(stored, ID_AT),
        u64_at(stored, FIRST_AT),
        u32_at(stored, COUNT_AT) as u64,
        u32_at(stored, V1_RAW_LEN_AT) as usize,
        u32_at(stored, V1_CRC_AT),
    );
    if crc32c::crc32c_append(crc32c::crc32c(&stored[..V1_CRC_AT]), &stored[V1_HEADER_LEN..]) != crc {
        return Err("block checksum mismatch".into());
    }
    if count == 0 || raw_len > MAX_RAW_LEN || raw_len < 4 * (count as usize + 1) + 8 * count as usize {
        return Err(format!(
            "block header is inconsistent (count {count}, raw length {raw_len})"
        ));
    }
    first
        .checked_add(count - 1)
        .ok_or_else(|| "block index range overflows u64".to_string())?;
    Ok(Block {
        stored,
        id,
        first,
        count,
        frames: vec![FrameRef {
            first_pos: 0,
            raw_len,
            start: V1_HEADER_LEN,
            end: stored.len(),
            crc: None,
        }],
        dict: None,
    })
}

fn parse_v2<'a>(stored: &'a [u8], dicts: &'a Dictionaries) -> Result<Block<'a>, String> {
    if stored.len() < V2_HEADER_LEN {
        return Err("not a tierlog block (bad magic or too short)".into());
    }
    let (id, first, count, nframes, dict) = (
        u64_at(stored, ID_AT),
        u64_at(stored, FIRST_AT),
        u32_at(stored, COUNT_AT) as u64,
        u32_at(stored, V2_FRAMES_AT) as usize,
        u32_at(stored, V2_DICT_AT),
    );
    let table_end = nframes
        .checked_mul(FRAME_SLOT_LEN)
        .and_then(|t| t.checked_add(V2_HEADER_LEN))
        .filter(|&e| e <= stored.len())
        .ok_or_else(|| format!("block frame table ({nframes} frames) runs past the block"))?;
    if header_crc(&stored[..table_end]) != u32_at(stored, V2_CRC_AT) {
        return Err("block header checksum mismatch".into());
    }
    let dict = match dict {
        0 => None,
        id => Some(dicts.get(id)?),
    };
    if count == 0 || nframes == 0 || nframes as u64 > count {
        return Err(format!(
            "block header is inconsistent (count {count}, {nframes} frames)"
        ));
    }
    first
        .checked_add(count - 1)
        .ok_or_else(|| "block index range overflows u64".to_string())?;
    let mut frames = Vec::with_capacity(nframes);
    let mut start = table_end;
    for i in 0..nframes {
        let slot = V2_HEADER_LEN + i * FRAME_SLOT_LEN;
        let first_pos = u32_at(stored, slot + SLOT_FIRST_AT) as u64;
        let raw_len = u32_at(stored, slot + SLOT_RAW_AT) as usize;
        let len = u32_at(stored, slot + SLOT_STORED_AT) as usize;
        let end = start + len;
        let expected_first = frames.last().map_or(Some(0), |_: &FrameRef| None);
        let in_order = match (expected_first, frames.last()) {
            (Some(z), _) => first_pos == z,
            (None, Some(prev)) => first_pos > prev.first_pos && first_pos < count,
            (None, None) => false,
        };
        if !in_order || raw_len > MAX_RAW_LEN || end > stored.len() {
            return Err(format!("block frame table slot {i} is inconsistent"));
        }
        frames.push(FrameRef {
            first_pos,
            raw_len,
            start,
            end,
            crc: Some(u32_at(stored, slot + SLOT_CRC_AT)),
        });
        start = end;
    }
    if start != stored.len() {
        return Err(format!("block frames end at byte {start} of {}", stored.len()));
    }
    Ok(Block {
        stored,
        id,
        first,
        count,
        frames,
        dict,
    })
}

thread_local! {
    /// One decompression context per reading thread: creating one per frame measured as a large
    /// share of a cold range read (each allocates and initialises its tables).
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::new().ok());
    /// The same for frames compressed with a dictionary: the dictionary is passed with each frame
    /// (zstd's prepared `DDict`, digested once per store), so one context serves every dictionary.
    static DICT_DECOMPRESSOR: std::cell::RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
        std::cell::RefCell::new(zstd::zstd_safe::DCtx::try_create());
}

/// Decompresses one frame of exactly `raw_len` bytes with `dict`, on this thread's context.
fn decompress_with(
    bytes: &[u8],
    raw_len: usize,
    mut raw: Vec<u8>,
    dict: &Dictionary,
) -> Result<Vec<u8>, String> {
    // Our frames record their size (the caller reserved it after checking any recorded size).
    if !matches!(zstd::zstd_safe::get_frame_content_size(bytes), Ok(Some(n)) if n == raw_len as u64) {
        return Err(format!(
            "zstd frame does not record the {raw_len} raw bytes its slot says"
        ));
    }
    let ddict = dict.decoder().as_ddict();
    let r = DICT_DECOMPRESSOR.with(|d| match d.borrow_mut().as_mut() {
        Some(d) => Some(d.decompress_using_ddict(&mut raw, bytes, ddict)),
        None => {
            zstd::zstd_safe::DCtx::try_create().map(|mut d| d.decompress_using_ddict(&mut raw, bytes, ddict))
        }
    });
    match r {
        Some(Ok(_)) => Ok(raw),
        Some(Err(code)) => Err(format!("zstd: {}", zstd::zstd_safe::get_error_name(code))),
        None => Err("zstd: no decompression context (out of memory)".into()),
    }
}

impl Block<'_> {
    pub(crate) fn last(&self) -> u64 {
        self.first + self.count - 1
    }

    #[cfg(test)]
    pub(crate) fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// Entries in frame `i`.
    fn frame_entries(&self, i: usize) -> u64 {
        let end = self.frames.get(i + 1).map_or(self.count, |f| f.first_pos);
        end - self.frames[i].first_pos
    }

    /// First index of frame `i`.
    pub(crate) fn frame_first(&self, i: usize) -> u64 {
        self.first + self.frames[i].first_pos
    }

    /// The frame holding `index` (which must lie in the block; clamped to its ends otherwise).
    pub(crate) fn frame_of(&self, index: u64) -> usize {
        let pos = index.saturating_sub(self.first);
        self.frames
            .partition_point(|f| f.first_pos <= pos)
            .saturating_sub(1)
    }

    /// Frames overlapping `[from, to]`.
    pub(crate) fn frames_for(&self, from: u64, to: u64) -> std::ops::RangeInclusive<usize> {
        self.frame_of(from)..=self.frame_of(to)
    }

    /// Raw length frame `i`'s slot declares (0 for a frame the block lacks).
    pub(crate) fn frame_raw_len(&self, i: usize) -> usize {
        self.frames.get(i).map_or(0, |f| f.raw_len)
    }

    /// Byte range of frame `i`'s compressed bytes in the stored block, and its raw length.
    #[cfg(test)]
    pub(crate) fn frame_bytes(&self, i: usize) -> (usize, usize, usize) {
        let f = &self.frames[i];
        (f.start, f.end, f.raw_len)
    }

    /// Verifies and decompresses frame `i`, validating its offset table.
    pub(crate) fn decode_frame(&self, i: usize) -> Result<DecodedFrame, String> {
        self.decode_frame_into(i, Vec::new(), Bytes::from)
    }

    /// [`Block::decode_frame`] into `buf` (its contents are discarded; a reader passes a buffer
    /// it reuses), which `own` turns into the frame's bytes once it checked out.
    pub(crate) fn decode_frame_into(
        &self,
        i: usize,
        mut buf: Vec<u8>,
        own: impl FnOnce(Vec<u8>) -> Bytes,
    ) -> Result<DecodedFrame, String> {
        let f = self
            .frames
            .get(i)
            .ok_or_else(|| format!("block has no frame {i}"))?;
        let bytes = &self.stored[f.start..f.end];
        if f.crc.is_some_and(|crc| crc32c::crc32c(bytes) != crc) {
            return Err(format!("block frame {i} checksum mismatch"));
        }
        let count = self.frame_entries(i) as usize;
        let raw_len = f.raw_len;
        if raw_len < 4 * (count + 1) + 8 * count {
            return Err(format!(
                "block frame {i} is inconsistent ({count} entries, raw length {raw_len})"
            ));
        }
        // The frame's own header bounds the buffer too: a slot claiming more than the frame holds
        // must not make a reader reserve it.
        if let Ok(Some(n)) = zstd::zstd_safe::get_frame_content_size(bytes)
            && n != raw_len as u64
        {
            return Err(format!(
                "block frame {i} holds {n} bytes, its header says {raw_len}"
            ));
        }
        buf.clear();
        // Fallible: a forged frame can claim the length its slot claims (up to `MAX_RAW_LEN`).
        buf.try_reserve_exact(raw_len)
            .map_err(|e| format!("block frame {i} of {raw_len} bytes: {e}"))?;
        let raw = match self.dict {
            Some(dict) => decompress_with(bytes, raw_len, buf, dict)?,
            None => DECOMPRESSOR
                .with(|d| match d.borrow_mut().as_mut() {
                    Some(d) => d.decompress_to_buffer(bytes, &mut buf).map(|_| buf),
                    None => zstd::bulk::decompress(bytes, raw_len),
                })
                .map_err(|e| format!("zstd: {e}"))?,
        };
        if raw.len() != raw_len {
            return Err(format!(
                "block frame {i} decompressed to {} bytes, its header says {raw_len}",
                raw.len()
            ));
        }
        let table = 4 * (count + 1);
        let mut prev = table;
        for k in 0..=count {
            let off = u32_at(&raw, 4 * k) as usize;
            let min = if k == 0 { table } else { prev + 8 };
            if off < min || off > raw_len || (k == 0 && off != table) {
                return Err(format!("block frame {i} offset table entry {k} is out of order"));
            }
            prev = off;
        }
        if prev != raw_len {
            return Err(format!(
                "block frame {i} offset table does not end at the frame's end"
            ));
        }
        let held = raw.capacity() as u64;
        Ok(DecodedFrame {
            block: self.id,
            first: self.frame_first(i),
            count: count as u64,
            raw: own(raw),
            held,
        })
    }

    /// Verifies and decompresses every frame (offline verify, tests).
    pub(crate) fn decode_all(&self) -> Result<Vec<DecodedFrame>, String> {
        (0..self.frames.len()).map(|i| self.decode_frame(i)).collect()
    }
}

/// What offline verification learns of a stored block once every byte of it checked out.
#[derive(Debug)]
pub(crate) struct Verified {
    pub id: u64,
    pub first: u64,
    last: u64,
}

impl Verified {
    pub(crate) fn last(&self) -> u64 {
        self.last
    }
}

/// Checks every byte of a stored block (header, frame table, every frame).
pub(crate) fn verify(stored: &[u8], dicts: &Dictionaries) -> Result<Verified, String> {
    let b = parse(stored, dicts)?;
    b.decode_all()?;
    Ok(Verified {
        id: b.id,
        first: b.first,
        last: b.last(),
    })
}

#[cfg(test)]
mod tests;
