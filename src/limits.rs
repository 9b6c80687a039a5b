//! Size limits on what the log accepts, checked before anything is written: every entry and every
//! batch within them can be read back by every reader of the on-disk formats (`docs/format.md`,
//! "Size limits"). Each limit is derived from the format constant it protects.

use crate::cold::block;
use crate::config::MAX_BLOCK_TARGET_BYTES;
use crate::error::{Error, Result};
use crate::proto::Entry;
use crate::wal;

/// Largest payload of one entry: 1 GiB − 16 MiB − 16 bytes (1,056,964,592 bytes).
///
/// An entry must fit a cold frame, and a frame decompresses to at most 1 GiB (the block reader's
/// limit). Version-2 blocks give an entry bigger than a frame's 16 KiB target a frame of its own;
/// the limit still leaves the room a version-1 block needed (its writer closed a block once its raw
/// size reached `block_target_bytes`, at most 16 MiB, so it held less than that before its last
/// entry; the rest of the 1 GiB is the last entry, its 12 bytes of framing (offset and term) and
/// the 4-byte end offset).
pub const MAX_ENTRY_BYTES: usize =
    block::MAX_RAW_LEN - MAX_BLOCK_TARGET_BYTES as usize - block::BLOCK_FRAMING - block::ENTRY_FRAMING;

/// Bytes each entry adds to a batch's size besides its payload (12: its term and its length in the
/// write-ahead record). See [`batch_bytes`].
pub const BATCH_ENTRY_OVERHEAD_BYTES: usize = wal::ENTRY_FRAMING;

/// Largest batch (`persist_entries` or `replace_range`), measured by [`batch_bytes`]: 1 GiB − 38
/// bytes (1,073,741,786 bytes).
///
/// A batch is written as one write-ahead record, and recovery reads a record body of at most
/// 1 GiB; the body holds the batch plus 38 bytes of framing (sync watermark, the group prefix of a
/// group other than 0, kind, `from`, first index, count).
pub const MAX_BATCH_BYTES: usize = wal::MAX_BODY_LEN - wal::BATCH_FRAMING;

// Every length and count a batch at the limits produces fits its u32 field in both formats.
const _: () = {
    assert!(MAX_ENTRY_BYTES + BATCH_ENTRY_OVERHEAD_BYTES <= MAX_BATCH_BYTES);
    assert!(MAX_BATCH_BYTES <= u32::MAX as usize);
    assert!(block::MAX_RAW_LEN <= u32::MAX as usize);
};

/// The size of a batch as [`MAX_BATCH_BYTES`] counts it: the sum of its payload lengths plus
/// [`BATCH_ENTRY_OVERHEAD_BYTES`] per entry.
pub fn batch_bytes(entries: &[Entry]) -> u64 {
    entries.iter().fold(0u64, |sum, e| {
        sum.saturating_add(e.payload.len() as u64)
            .saturating_add(BATCH_ENTRY_OVERHEAD_BYTES as u64)
    })
}

/// Rejects a batch holding an entry over [`MAX_ENTRY_BYTES`] or totalling over
/// [`MAX_BATCH_BYTES`]. Reads lengths only: payloads are neither copied nor touched.
pub(crate) fn check_sizes(entries: &[Entry]) -> Result<()> {
    if let Some(e) = entries.iter().find(|e| e.payload.len() > MAX_ENTRY_BYTES) {
        return Err(Error::InvalidInput(format!(
            "entry {} has a {}-byte payload; the limit is {MAX_ENTRY_BYTES} bytes (tierlog::MAX_ENTRY_BYTES)",
            e.index,
            e.payload.len()
        )));
    }
    let size = batch_bytes(entries);
    if size > MAX_BATCH_BYTES as u64 {
        return Err(Error::InvalidInput(format!(
            "batch of {} entries is {size} bytes (payloads plus {BATCH_ENTRY_OVERHEAD_BYTES} per entry); \
             the limit is {MAX_BATCH_BYTES} bytes (tierlog::MAX_BATCH_BYTES): split it",
            entries.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::wal::Record;

    /// Entries `1..` whose [`batch_bytes`] is exactly `size`, every payload a slice of `buf` (a
    /// batch of a gigabyte then costs no more memory than `buf`).
    fn batch_of_size(size: usize, buf: &Bytes) -> Vec<Entry> {
        let per = BATCH_ENTRY_OVERHEAD_BYTES + buf.len();
        let mut left = size;
        let mut out = Vec::new();
        while left > 0 {
            let take = left.min(per);
            out.push(Entry {
                index: 1 + out.len() as u64,
                term: 1,
                payload: buf.slice(..take - BATCH_ENTRY_OVERHEAD_BYTES),
            });
            left -= take;
        }
        assert_eq!(batch_bytes(&out), size as u64);
        out
    }

    fn rejected(entries: &[Entry]) -> bool {
        matches!(check_sizes(entries), Err(Error::InvalidInput(_)))
    }

    #[test]
    fn a_batch_at_the_limit_passes_and_one_byte_more_does_not() {
        let buf = Bytes::from(vec![0u8; 64 << 20]);
        check_sizes(&batch_of_size(MAX_BATCH_BYTES, &buf)).unwrap();
        assert!(rejected(&batch_of_size(MAX_BATCH_BYTES + 1, &buf)));
        check_sizes(&[]).unwrap();
    }

    #[test]
    fn an_entry_at_the_limit_passes_and_one_byte_more_does_not() {
        // Zeroed and never read: the kernel maps no page of it.
        let buf = Bytes::from(vec![0u8; MAX_ENTRY_BYTES + 1]);
        let entry = |len: usize| Entry {
            index: 1,
            term: 1,
            payload: buf.slice(..len),
        };
        check_sizes(&[entry(MAX_ENTRY_BYTES)]).unwrap();
        assert!(rejected(&[entry(MAX_ENTRY_BYTES + 1)]));
        // Also inside a batch that is itself small enough.
        let mut batch = vec![Entry::new(1, 1, "a"), entry(MAX_ENTRY_BYTES + 1)];
        batch[1].index = 2;
        assert!(batch_bytes(&batch) <= MAX_BATCH_BYTES as u64);
        assert!(rejected(&batch));
    }

    /// What the limits promise: a batch at `MAX_BATCH_BYTES` is a write-ahead record whose body
    /// recovery reads (at most `MAX_BODY_LEN`), as an append and as a replace.
    #[test]
    fn a_batch_at_the_limit_is_a_record_recovery_reads() {
        let buf = Bytes::from(vec![0u8; 64 << 20]);
        let batch = batch_of_size(MAX_BATCH_BYTES, &buf);
        let replace = Record::Replace {
            from: 1,
            entries: batch.clone(),
        };
        // The largest record: a replace of a group other than 0 (its records carry a group prefix).
        assert_eq!(replace.encoded_len(u64::MAX) - wal::HEADER_LEN, wal::MAX_BODY_LEN);
        assert!(Record::Append(batch).encoded_len(u64::MAX) - wal::HEADER_LEN <= wal::MAX_BODY_LEN);
    }

    /// ... and an entry at `MAX_ENTRY_BYTES` fits a cold block the block reader accepts, even as
    /// the last entry of a block the compactor filled to just under the largest target.
    #[test]
    fn an_entry_at_the_limit_fits_a_full_cold_block() {
        let buf = Bytes::from(vec![0u8; MAX_ENTRY_BYTES]);
        let target = MAX_BLOCK_TARGET_BYTES as usize;
        let filler = Entry {
            index: 1,
            term: 1,
            // Raw cost target - 1: the compactor does not close the block yet.
            payload: buf.slice(..target - 1 - block::ENTRY_FRAMING),
        };
        let last = Entry {
            index: 2,
            term: 1,
            payload: buf.clone(),
        };
        // Version 1 (one frame per block, still read): the filled block plus the entry.
        let len = block::frame_raw_len(&[filler, last.clone()]).unwrap();
        assert!(len <= block::MAX_RAW_LEN, "{len}");
        // Version 2: an entry over the frame target gets a frame of its own.
        assert!(block::frame_raw_len(&[last]).unwrap() <= block::MAX_RAW_LEN);
    }
}
