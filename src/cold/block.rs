//! Cold blocks: a run of consecutive entries, zstd-compressed, with an offset table so one entry is
//! sliced out after one decompression (layout in `docs/format.md`).

use bytes::{BufMut, Bytes};

use crate::le::{u32_at, u64_at};
use crate::proto::Entry;

const MAGIC: &[u8; 4] = b"TLB1";
/// Header field offsets, each after the previous field (layout in `docs/format.md`).
const ID_AT: usize = MAGIC.len();
const FIRST_AT: usize = ID_AT + 8;
const COUNT_AT: usize = FIRST_AT + 8;
const RAW_LEN_AT: usize = COUNT_AT + 4;
const CRC_AT: usize = RAW_LEN_AT + 4;
pub(crate) const BLOCK_HEADER_LEN: usize = CRC_AT + 4;
/// Largest decompressed block accepted, so a damaged length field cannot force a huge allocation.
pub(crate) const MAX_RAW_LEN: usize = 1 << 30;
/// Raw-block bytes an entry takes besides its payload: its offset-table slot (u32) and term (u64).
pub(crate) const ENTRY_FRAMING: usize = 4 + 8;
/// Raw-block bytes besides the entries: the offset table's end slot (u32).
pub(crate) const BLOCK_FRAMING: usize = 4;

/// What the in-memory block index knows of a block without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlockMeta {
    /// Unique for the life of the directory; a trimmed block keeps its id (its kept prefix is
    /// byte-identical), any other rewrite gets a new one. The block cache is keyed by it.
    pub id: u64,
    pub first: u64,
    pub last: u64,
    pub raw_len: u64,
    pub stored_len: u64,
}

/// A decompressed block, shared by the cache and by readers; entries' payloads point into `raw`.
#[derive(Debug)]
pub(crate) struct DecodedBlock {
    pub id: u64,
    pub first: u64,
    count: u64,
    raw: Bytes,
}

impl DecodedBlock {
    pub(crate) fn last(&self) -> u64 {
        self.first + self.count - 1
    }

    pub(crate) fn raw_len(&self) -> u64 {
        self.raw.len() as u64
    }

    fn offset(&self, i: usize) -> usize {
        let p = 4 * i;
        u32_at(&self.raw, p) as usize
    }

    /// The entry at `index`, which must lie in `[first, last]`.
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

    /// Entries of `[from, to]` that this block holds.
    pub(crate) fn range(&self, from: u64, to: u64) -> impl Iterator<Item = Entry> + '_ {
        (from.max(self.first)..=to.min(self.last())).filter_map(|i| self.get(i))
    }
}

/// The raw length of a block holding `entries`: an error when they are none, or more than the
/// reader's [`MAX_RAW_LEN`] (which also keeps every u32 field of the block in range). Reads lengths
/// only.
/// Bytes an entry takes in a block's raw form (its offset slot, term and payload).
pub(crate) fn raw_cost(e: &Entry) -> u64 {
    (ENTRY_FRAMING + e.payload.len()) as u64
}

pub(crate) fn raw_len(entries: &[Entry]) -> std::io::Result<usize> {
    let too_big = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} entries do not fit one cold block ({MAX_RAW_LEN} raw bytes at most)",
                entries.len()
            ),
        )
    };
    if entries.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a cold block holds at least one entry",
        ));
    }
    let mut len = BLOCK_FRAMING;
    for e in entries {
        len = len
            .checked_add(ENTRY_FRAMING + e.payload.len())
            .filter(|&l| l <= MAX_RAW_LEN)
            .ok_or_else(too_big)?;
    }
    Ok(len)
}

/// Encodes consecutive `entries` into a stored block with the given id.
pub(crate) fn encode(
    id: u64,
    entries: &[Entry],
    zstd: &mut zstd::bulk::Compressor<'_>,
) -> std::io::Result<Vec<u8>> {
    // Checked first: every offset, the count and the length below then fit their u32 fields.
    let raw_len = raw_len(entries)?;
    let first = entries.first().map_or(0, |e| e.index);
    let count = entries.len();
    let table = 4 * (count + 1);
    let mut raw = Vec::with_capacity(raw_len);
    let mut off = table;
    for e in entries {
        raw.put_u32_le(off as u32);
        off += 8 + e.payload.len();
    }
    raw.put_u32_le(off as u32);
    for e in entries {
        raw.put_u64_le(e.term);
        raw.put_slice(&e.payload);
    }
    let compressed = zstd.compress(&raw)?;
    let mut out = Vec::with_capacity(BLOCK_HEADER_LEN + compressed.len());
    out.put_slice(MAGIC);
    out.put_u64_le(id);
    out.put_u64_le(first);
    out.put_u32_le(count as u32);
    out.put_u32_le(raw.len() as u32);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out), &compressed);
    out.put_u32_le(crc);
    out.put_slice(&compressed);
    Ok(out)
}

/// The header fields of a stored block, after checking magic and checksum.
pub(crate) fn check(stored: &[u8]) -> Result<(u64, u64, u64, usize), String> {
    if stored.len() < BLOCK_HEADER_LEN || &stored[..ID_AT] != MAGIC {
        return Err("not a tierlog block (bad magic or too short)".into());
    }
    let (id, first, count, raw_len, crc) = (
        u64_at(stored, ID_AT),
        u64_at(stored, FIRST_AT),
        u32_at(stored, COUNT_AT) as u64,
        u32_at(stored, RAW_LEN_AT) as usize,
        u32_at(stored, CRC_AT),
    );
    if crc32c::crc32c_append(crc32c::crc32c(&stored[..CRC_AT]), &stored[BLOCK_HEADER_LEN..]) != crc {
        return Err("block checksum mismatch".into());
    }
    if count == 0 || raw_len > MAX_RAW_LEN || raw_len < 4 * (count as usize + 1) + 8 * count as usize {
        return Err(format!(
            "block header is inconsistent (count {count}, raw length {raw_len})"
        ));
    }
    Ok((id, first, count, raw_len))
}

thread_local! {
    /// One decompression context per reading thread: creating one per block measured as a large
    /// share of a cold range read (each allocates and initialises its tables).
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::new().ok());
}

/// Checks and decompresses a stored block, validating its offset table.
pub(crate) fn decode(stored: &[u8]) -> Result<DecodedBlock, String> {
    let (id, first, count, raw_len) = check(stored)?;
    let raw = DECOMPRESSOR
        .with(|d| match d.borrow_mut().as_mut() {
            Some(d) => d.decompress(&stored[BLOCK_HEADER_LEN..], raw_len),
            None => zstd::bulk::decompress(&stored[BLOCK_HEADER_LEN..], raw_len),
        })
        .map_err(|e| format!("zstd: {e}"))?;
    if raw.len() != raw_len {
        return Err(format!(
            "block decompressed to {} bytes, header says {raw_len}",
            raw.len()
        ));
    }
    let table = 4 * (count as usize + 1);
    let mut prev = table;
    for i in 0..=count as usize {
        let off = u32_at(&raw, 4 * i) as usize;
        let min = if i == 0 { table } else { prev + 8 };
        if off < min || off > raw_len || (i == 0 && off != table) {
            return Err(format!("block offset table entry {i} is out of order"));
        }
        prev = off;
    }
    if prev != raw_len {
        return Err("block offset table does not end at the block's end".into());
    }
    first
        .checked_add(count - 1)
        .ok_or_else(|| "block index range overflows u64".to_string())?;
    Ok(DecodedBlock {
        id,
        first,
        count,
        raw: Bytes::from(raw),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_detection() {
        let entries: Vec<Entry> = (10..60)
            .map(|i| Entry::new(i, i / 7, format!("payload-{i}")))
            .collect();
        let mut z = zstd::bulk::Compressor::new(1).unwrap();
        let stored = encode(42, &entries, &mut z).unwrap();
        let b = decode(&stored).unwrap();
        assert_eq!((b.id, b.first, b.last()), (42, 10, 59));
        assert_eq!(b.range(0, 100).collect::<Vec<_>>(), entries);
        assert_eq!(b.get(9), None);
        for pos in [0, 5, 13, 21, 25, 29, BLOCK_HEADER_LEN + 3, stored.len() - 1] {
            let mut bad = stored.clone();
            bad[pos] ^= 0x40;
            assert!(decode(&bad).is_err(), "flip at {pos} went unnoticed");
        }
        assert!(decode(&stored[..stored.len() - 1]).is_err());
    }

    /// Entries whose raw block is exactly `raw` bytes, all payloads slices of `buf` (so a block of
    /// gigabytes costs no more memory than `buf`).
    fn entries_with_raw_len(raw: usize, buf: &Bytes) -> Vec<Entry> {
        let per = ENTRY_FRAMING + buf.len();
        let mut left = raw - BLOCK_FRAMING;
        let mut out = Vec::new();
        while left > 0 {
            let take = left.min(per);
            assert!(
                take >= ENTRY_FRAMING,
                "sizes chosen so every entry has its framing"
            );
            out.push(Entry {
                index: 1 + out.len() as u64,
                term: 1,
                payload: buf.slice(..take - ENTRY_FRAMING),
            });
            left -= take;
        }
        out
    }

    /// The encoder used to write whatever it was given: a block over the reader's 1 GiB limit was
    /// written and then unreadable, and past 4 GiB the u32 offsets and length wrapped (a corrupt
    /// block in release builds, an overflow panic in debug ones). Now it refuses with an error, and
    /// does so before building anything.
    #[test]
    fn encoder_refuses_a_block_its_reader_would_reject() {
        let buf = Bytes::from(vec![0u8; 64 << 20]);
        let mut z = zstd::bulk::Compressor::new(1).unwrap();
        let at = entries_with_raw_len(MAX_RAW_LEN, &buf);
        assert_eq!(raw_len(&at).unwrap(), MAX_RAW_LEN);
        let over = entries_with_raw_len(MAX_RAW_LEN + 1, &buf);
        assert!(raw_len(&over).is_err());
        match encode(1, &over, &mut z) {
            Ok(stored) => panic!("a block over MAX_RAW_LEN was encoded ({} bytes)", stored.len()),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput),
        }
        let past_u32 = entries_with_raw_len((5 << 30) + 7, &buf);
        assert!(encode(1, &past_u32, &mut z).is_err());
        assert!(
            encode(1, &[], &mut z).is_err(),
            "an empty block is unreadable too"
        );
    }
}
