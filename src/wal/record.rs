//! Write-ahead records: one per log operation, framed and checksummed (layout in `docs/format.md`).

use bytes::{Buf, BufMut, Bytes};

use crate::le::{u32_at, u64_at};
use crate::meta::{AppMeta, SlotValue};
use crate::proto::{Entry, GroupId, HardState, LogId};

/// Bytes before a record's body: body length u32, crc32c u32, sequence number u64.
pub(crate) const HEADER_LEN: usize = SEQ_AT + 8;
const LEN_AT: usize = 0;
const CRC_AT: usize = LEN_AT + 4;
const SEQ_AT: usize = CRC_AT + 4;
/// The body starts with the writer's durable watermark (see [`Record::encode`]).
const SYNCED_LEN: usize = 8;
/// Largest body accepted, so a damaged length field cannot make recovery allocate without bound.
pub(crate) const MAX_BODY_LEN: usize = 1 << 30;
/// Body bytes an entry of an append or replace record takes besides its payload: u64 term, u32 length.
pub(crate) const ENTRY_FRAMING: usize = 8 + 4;
/// Body bytes of an append or replace record besides its entries, for the larger of the two
/// (replace) of a group other than 0: the synced watermark, the group prefix, the kind, `from`, the
/// first index (u64) and the count (u32).
pub(crate) const BATCH_FRAMING: usize = SYNCED_LEN + GROUP_PREFIX_LEN + 1 + 8 + 8 + 4;

const KIND_APPEND: u8 = 1;
const KIND_REPLACE: u8 = 2;
const KIND_TRUNCATE: u8 = 3;
const KIND_PURGE: u8 = 4;
const KIND_RESET: u8 = 5;
const KIND_SEAL: u8 = 6;
const KIND_HARD_STATE: u8 = 7;
const KIND_APP_META: u8 = 8;
const KIND_CREATE_GROUP: u8 = 9;
const KIND_REMOVE_GROUP: u8 = 10;
/// Prefix of a record of a group other than 0: this kind, the group id (u64), then the record's own
/// kind and fields. Group 0's records carry no prefix, so a single-group log is written exactly as
/// before groups existed.
const KIND_GROUP: u8 = 16;
/// Body bytes the group prefix adds.
const GROUP_PREFIX_LEN: usize = 1 + 8;

/// The indices a record writes and removes: all that segment retirement needs of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Footprint {
    /// The group whose log the record changes.
    pub group: GroupId,
    /// Highest entry index the record writes (0 when it writes none).
    pub max_index: u64,
    /// The record removes every index from here on (truncate, replace, reset).
    pub removes_from: Option<u64>,
}

/// One logged operation. Replaying the records in sequence order onto an empty log rebuilds it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Record {
    /// Upsert of a contiguous ascending batch.
    Append(Vec<Entry>),
    /// Remove `[from, ∞)` then append `entries` (which start at `from`).
    Replace { from: u64, entries: Vec<Entry> },
    /// Remove `[from, ∞)`.
    Truncate { from: u64 },
    /// Remove every index `<= cutoff.index` and remember `cutoff`.
    Purge { cutoff: LogId },
    /// Clear the log and the purge boundary.
    Reset,
    /// End of a segment: nothing of this segment follows.
    Seal,
    /// The group's hard state (groups other than 0; group 0 keeps its own file).
    HardState(HardState),
    /// The group's application-metadata blob (groups other than 0, like `HardState`).
    AppMeta(Bytes),
    /// The group begins (empty); anything logged for its id before this record belongs to an
    /// earlier group of the same id.
    CreateGroup,
    /// The group ends: its log, hard state and metadata are gone.
    RemoveGroup,
}

/// Most bytes of payloads that [`Record::into_owned`] copies into one shared buffer. Sharing saves
/// the ring two allocations per entry (its own buffer, and the shared header that the compactor's
/// clone of the entry adds), which showed in the many-groups profile. Kept small because a buffer
/// lives until the ring has dropped its last entry: an eviction or truncation that drops only some
/// of its entries keeps up to this much per group that the budget no longer counts. The budget's
/// per-entry overhead, [`crate::hot::ENTRY_OVERHEAD`], counts about 45 bytes per entry more than an
/// entry sharing a buffer costs, which covers one such buffer in a ring of about 100 entries or
/// more; what a smaller ring keeps beyond that falls to the budget's share for what no counter sees.
pub(crate) const SHARED_PAYLOAD_BYTES: usize = 4 << 10;

/// `entries` with their payloads copied into buffers of their own, consecutive ones sharing a
/// buffer of at most [`SHARED_PAYLOAD_BYTES`] (a bigger payload gets a buffer to itself).
fn own(entries: Vec<Entry>) -> Vec<Entry> {
    let mut out = Vec::with_capacity(entries.len());
    let mut rest = entries.as_slice();
    while let Some(first) = rest.first() {
        let mut len = first.payload.len();
        let n = 1 + rest[1..]
            .iter()
            .take_while(|e| {
                len += e.payload.len();
                len <= SHARED_PAYLOAD_BYTES
            })
            .count();
        let (run, after) = rest.split_at(n);
        if let [e] = run {
            out.push(Entry::new(e.index, e.term, Bytes::copy_from_slice(&e.payload)));
        } else {
            let mut buf = bytes::BytesMut::with_capacity(run.iter().map(|e| e.payload.len()).sum());
            for e in run {
                buf.extend_from_slice(&e.payload);
            }
            let buf = buf.freeze();
            let mut at = 0;
            for e in run {
                let end = at + e.payload.len();
                out.push(Entry::new(e.index, e.term, buf.slice(at..end)));
                at = end;
            }
        }
        rest = after;
    }
    out
}

impl Record {
    fn encode_body(&self, group: GroupId, out: &mut Vec<u8>) {
        if group != 0 {
            out.put_u8(KIND_GROUP);
            out.put_u64_le(group);
        }
        fn put_entries(out: &mut Vec<u8>, entries: &[Entry]) {
            out.put_u64_le(entries.first().map_or(0, |e| e.index));
            out.put_u32_le(entries.len() as u32);
            for e in entries {
                out.put_u64_le(e.term);
                out.put_u32_le(e.payload.len() as u32);
                out.put_slice(&e.payload);
            }
        }
        match self {
            Record::Append(entries) => {
                out.put_u8(KIND_APPEND);
                put_entries(out, entries);
            }
            Record::Replace { from, entries } => {
                out.put_u8(KIND_REPLACE);
                out.put_u64_le(*from);
                put_entries(out, entries);
            }
            Record::Truncate { from } => {
                out.put_u8(KIND_TRUNCATE);
                out.put_u64_le(*from);
            }
            Record::Purge { cutoff } => {
                out.put_u8(KIND_PURGE);
                out.put_u64_le(cutoff.term);
                out.put_u64_le(cutoff.index);
            }
            Record::Reset => out.put_u8(KIND_RESET),
            Record::Seal => out.put_u8(KIND_SEAL),
            Record::HardState(hs) => {
                out.put_u8(KIND_HARD_STATE);
                hs.put(out);
            }
            Record::AppMeta(blob) => {
                out.put_u8(KIND_APP_META);
                AppMeta(blob.clone()).put(out);
            }
            Record::CreateGroup => out.put_u8(KIND_CREATE_GROUP),
            Record::RemoveGroup => out.put_u8(KIND_REMOVE_GROUP),
        }
    }

    /// Appends the framed record to `out`. The checksum covers the segment id too, so a record left
    /// over from a recycled file's previous life never validates in its new one. `synced` is the
    /// highest sequence number known durable when this record was written: after a power cut it
    /// tells damage to unsynced records (expected) from damage to synced ones (corruption).
    pub(crate) fn encode(&self, group: GroupId, segment_id: u64, seq: u64, synced: u64, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + HEADER_LEN, 0);
        out.put_u64_le(synced);
        self.encode_body(group, out);
        let body_len = out.len() - start - HEADER_LEN;
        let crc = checksum(segment_id, seq, &out[start + HEADER_LEN..]);
        let header = &mut out[start..start + HEADER_LEN];
        header[LEN_AT..CRC_AT].copy_from_slice(&(body_len as u32).to_le_bytes());
        header[CRC_AT..SEQ_AT].copy_from_slice(&crc.to_le_bytes());
        header[SEQ_AT..HEADER_LEN].copy_from_slice(&seq.to_le_bytes());
    }

    /// Size of the framed record of `group`.
    pub(crate) fn encoded_len(&self, group: GroupId) -> usize {
        let entries_len =
            |es: &[Entry]| 12 + es.iter().map(|e| ENTRY_FRAMING + e.payload.len()).sum::<usize>();
        HEADER_LEN
            + SYNCED_LEN
            + 1
            + if group == 0 { 0 } else { GROUP_PREFIX_LEN }
            + match self {
                Record::Append(es) => entries_len(es),
                Record::Replace { entries, .. } => 8 + entries_len(entries),
                Record::Truncate { .. } => 8,
                Record::Purge { .. } => 16,
                Record::Reset | Record::Seal | Record::CreateGroup | Record::RemoveGroup => 0,
                Record::HardState(hs) => {
                    let mut b = Vec::new();
                    hs.put(&mut b);
                    b.len()
                }
                Record::AppMeta(blob) => 4 + blob.len(),
            }
    }

    /// What segment retirement needs to know of this record of `group`.
    pub(crate) fn footprint(&self, group: GroupId) -> Footprint {
        let removes_from = match self {
            Record::Truncate { from } | Record::Replace { from, .. } => Some(*from),
            Record::Reset | Record::CreateGroup | Record::RemoveGroup => Some(1),
            _ => None,
        };
        Footprint {
            group,
            max_index: self.max_index(),
            removes_from,
        }
    }

    /// Copies the payloads into buffers of the engine's own. A payload may be a slice of a larger
    /// buffer (a caller's network read, a whole write-ahead frame read back by recovery): kept as
    /// is in the ring, it would pin memory the budget cannot see. Consecutive small payloads share
    /// a buffer of at most [`SHARED_PAYLOAD_BYTES`] (see there).
    pub(crate) fn into_owned(self) -> Record {
        match self {
            Record::Append(es) => Record::Append(own(es)),
            Record::Replace { from, entries } => Record::Replace {
                from,
                entries: own(entries),
            },
            other => other,
        }
    }

    /// Highest entry index the record writes (0 when it writes none).
    pub(crate) fn max_index(&self) -> u64 {
        match self {
            Record::Append(es) | Record::Replace { entries: es, .. } => es.last().map_or(0, |e| e.index),
            _ => 0,
        }
    }

    /// Decodes a body whose checksum already matched: the group and the record. Payloads share
    /// `body`'s buffer.
    pub(crate) fn decode_body(mut body: Bytes) -> Result<(GroupId, Record), String> {
        fn need(b: &Bytes, n: usize) -> Result<(), String> {
            if b.remaining() < n {
                return Err(format!("record body ends early (need {n} more bytes)"));
            }
            Ok(())
        }
        fn get_entries(b: &mut Bytes) -> Result<Vec<Entry>, String> {
            need(b, 12)?;
            let first = b.get_u64_le();
            let count = b.get_u32_le() as usize;
            // Each entry takes at least 12 bytes: bounds the allocation by the body actually present.
            if count > b.remaining() / 12 {
                return Err(format!("entry count {count} exceeds the record body"));
            }
            let mut out = Vec::with_capacity(count);
            for i in 0..count as u64 {
                need(b, 12)?;
                let term = b.get_u64_le();
                let len = b.get_u32_le() as usize;
                need(b, len)?;
                let index = first
                    .checked_add(i)
                    .ok_or_else(|| "entry index overflows u64".to_string())?;
                out.push(Entry {
                    index,
                    term,
                    payload: b.split_to(len),
                });
            }
            Ok(out)
        }
        need(&body, 1)?;
        let mut kind = body.get_u8();
        let mut group = 0;
        if kind == KIND_GROUP {
            need(&body, GROUP_PREFIX_LEN)?;
            group = body.get_u64_le();
            kind = body.get_u8();
            if group == 0 {
                return Err("group prefix names group 0".into());
            }
        }
        let rec = match kind {
            KIND_APPEND => Record::Append(get_entries(&mut body)?),
            KIND_REPLACE => {
                need(&body, 8)?;
                let from = body.get_u64_le();
                Record::Replace {
                    from,
                    entries: get_entries(&mut body)?,
                }
            }
            KIND_TRUNCATE => {
                need(&body, 8)?;
                Record::Truncate {
                    from: body.get_u64_le(),
                }
            }
            KIND_PURGE => {
                need(&body, 16)?;
                let term = body.get_u64_le();
                let index = body.get_u64_le();
                Record::Purge {
                    cutoff: LogId { term, index },
                }
            }
            KIND_RESET => Record::Reset,
            KIND_SEAL if group == 0 => Record::Seal,
            KIND_HARD_STATE => {
                let (hs, len) = HardState::parse(&body).ok_or("hard-state record ends early")?;
                body.advance(len);
                Record::HardState(hs)
            }
            KIND_APP_META => {
                let (meta, len) = AppMeta::parse(&body).ok_or("metadata record ends early or is too long")?;
                body.advance(len);
                Record::AppMeta(meta.0)
            }
            KIND_CREATE_GROUP if group != 0 => Record::CreateGroup,
            KIND_REMOVE_GROUP if group != 0 => Record::RemoveGroup,
            k => return Err(format!("unknown record kind {k} (group {group})")),
        };
        if body.has_remaining() {
            return Err(format!("{} trailing bytes after record", body.remaining()));
        }
        Ok((group, rec))
    }
}

pub(crate) fn checksum(segment_id: u64, seq: u64, body: &[u8]) -> u32 {
    let mut crc = crc32c::crc32c(&segment_id.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &seq.to_le_bytes());
    crc32c::crc32c_append(crc, body)
}

/// What sits at one offset of a segment.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A valid record of this segment, the durable watermark it carries, and its framed length.
    Record {
        seq: u64,
        synced: u64,
        group: GroupId,
        record: Record,
        len: usize,
    },
    /// Zeroed space: the segment's written part ended before this offset.
    End,
    /// Bytes that are not a valid record of this segment (torn, stale or damaged).
    Bad(String),
}

/// Parses the frame at the start of `buf` (a segment's bytes from some offset on).
pub(crate) fn parse_frame(segment_id: u64, buf: &Bytes) -> Frame {
    if buf.len() < HEADER_LEN {
        return if buf.iter().all(|&b| b == 0) {
            Frame::End
        } else {
            Frame::Bad("partial record header".into())
        };
    }
    let body_len = u32_at(buf, LEN_AT) as usize;
    let crc = u32_at(buf, CRC_AT);
    let seq = u64_at(buf, SEQ_AT);
    if body_len == 0 && crc == 0 && seq == 0 {
        return Frame::End;
    }
    if body_len > MAX_BODY_LEN || HEADER_LEN + body_len > buf.len() {
        return Frame::Bad(format!("record length {body_len} runs past the segment"));
    }
    let body = buf.slice(HEADER_LEN..HEADER_LEN + body_len);
    if checksum(segment_id, seq, &body) != crc {
        return Frame::Bad("record checksum mismatch".into());
    }
    if body.len() < SYNCED_LEN {
        return Frame::Bad("record body too short".into());
    }
    let synced = u64_at(&body, 0);
    match Record::decode_body(body.slice(SYNCED_LEN..)) {
        Ok((group, record)) => Frame::Record {
            seq,
            synced,
            group,
            record,
            len: HEADER_LEN + body_len,
        },
        Err(e) => Frame::Bad(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ring never keeps a caller's buffer: every payload is copied, byte for byte; runs of
    /// small payloads share one buffer of at most `SHARED_PAYLOAD_BYTES`, and a payload bigger
    /// than that has one to itself.
    #[test]
    fn owned_payloads_are_copies_small_ones_sharing_bounded_buffers() {
        let sizes = [100, 0, 3000, 1500, 5000, 10, 20, 4096, 1];
        let caller = Bytes::from(
            (0..sizes.iter().sum::<usize>())
                .map(|i| i as u8)
                .collect::<Vec<u8>>(),
        );
        let mut at = 0;
        let entries: Vec<Entry> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                at += n;
                Entry::new(i as u64 + 1, 7, caller.slice(at - n..at))
            })
            .collect();
        let Record::Append(owned) = Record::Append(entries.clone()).into_owned() else {
            panic!("an append stays an append");
        };
        assert_eq!(owned, entries, "indexes, terms and payload bytes are kept");
        let inside = |b: &Bytes| caller.as_ptr_range().contains(&b.as_ptr());
        assert!(owned.iter().all(|e| e.payload.is_empty() || !inside(&e.payload)));
        // Lengths of the runs of (non-empty) payloads that lie back to back in one buffer.
        let mut runs: Vec<usize> = Vec::new();
        let mut end = std::ptr::null();
        for p in owned.iter().map(|e| &e.payload).filter(|p| !p.is_empty()) {
            match runs.last_mut() {
                Some(n) if p.as_ptr() == end => *n += p.len(),
                _ => runs.push(p.len()),
            }
            end = p.as_ptr_range().end;
        }
        assert_eq!(runs, [100 + 3000, 1500, 5000, 10 + 20, 4096, 1]);
        // The sizes above are chosen around the limit.
        const { assert!(SHARED_PAYLOAD_BYTES >= 4096 && SHARED_PAYLOAD_BYTES < 5000) };
    }

    fn all_kinds() -> Vec<Record> {
        let es = vec![Entry::new(5, 2, "abc"), Entry::new(6, 2, "")];
        vec![
            Record::Append(es.clone()),
            Record::Replace { from: 5, entries: es },
            Record::Replace {
                from: 9,
                entries: vec![],
            },
            Record::Truncate { from: 3 },
            Record::Purge {
                cutoff: LogId::new(4, 40),
            },
            Record::Reset,
            Record::Seal,
        ]
    }

    #[test]
    fn every_kind_round_trips_with_its_encoded_len() {
        let meta = [
            Record::HardState(HardState {
                current_term: 9,
                voted_for: Some(crate::VotedFor {
                    voted_for_id: 2,
                    voted_for_term: 9,
                    committed: true,
                }),
            }),
            Record::HardState(HardState::default()),
            Record::AppMeta(Bytes::from_static(b"blob")),
            Record::AppMeta(Bytes::new()),
            Record::CreateGroup,
            Record::RemoveGroup,
        ];
        let cases = all_kinds()
            .into_iter()
            .flat_map(|r| [(0, r.clone()), (u64::MAX, r)])
            .filter(|(g, r)| *g == 0 || *r != Record::Seal)
            .chain(meta.into_iter().map(|r| (5, r)));
        for (i, (group, r)) in cases.enumerate() {
            let mut buf = Vec::new();
            r.encode(group, 7, 100 + i as u64, 90, &mut buf);
            assert_eq!(buf.len(), r.encoded_len(group), "{r:?}");
            match parse_frame(7, &Bytes::from(buf)) {
                Frame::Record {
                    seq,
                    synced,
                    group: g,
                    record,
                    len,
                } => {
                    assert_eq!((seq, synced, g, &record), (100 + i as u64, 90, group, &r));
                    assert_eq!(len, r.encoded_len(group));
                }
                other => panic!("{r:?} parsed as {other:?}"),
            }
        }
    }

    /// Group 0's records are byte for byte what a release before groups wrote (no prefix), and a
    /// prefix naming group 0, or group-only kinds without one, are refused.
    #[test]
    fn group_zero_records_carry_no_prefix_and_malformed_prefixes_are_refused() {
        let mut zero = Vec::new();
        Record::Truncate { from: 3 }.encode(0, 7, 1, 0, &mut zero);
        assert_eq!(zero[HEADER_LEN + SYNCED_LEN], KIND_TRUNCATE);
        let mut body = vec![0u8; SYNCED_LEN];
        body.push(KIND_GROUP);
        body.extend_from_slice(&0u64.to_le_bytes());
        body.push(KIND_RESET);
        assert!(Record::decode_body(Bytes::from(body[SYNCED_LEN..].to_vec())).is_err());
        for kind in [KIND_CREATE_GROUP, KIND_REMOVE_GROUP] {
            assert!(Record::decode_body(Bytes::from(vec![kind])).is_err());
        }
        let mut seal = vec![KIND_GROUP];
        seal.extend_from_slice(&4u64.to_le_bytes());
        seal.push(KIND_SEAL);
        assert!(Record::decode_body(Bytes::from(seal)).is_err());
    }

    /// The framing constants the write limits are derived from (`crate::limits`) match the encoder.
    #[test]
    fn batch_framing_constants_match_the_encoder() {
        let es = vec![Entry::new(5, 2, "abc"), Entry::new(6, 2, vec![1u8; 1000])];
        let payloads: usize = es.iter().map(|e| e.payload.len()).sum();
        let replace = Record::Replace {
            from: 5,
            entries: es.clone(),
        };
        let mut buf = Vec::new();
        replace.encode(3, 7, 1, 0, &mut buf);
        assert_eq!(
            buf.len(),
            HEADER_LEN + BATCH_FRAMING + es.len() * ENTRY_FRAMING + payloads
        );
        assert!(Record::Append(es.clone()).encoded_len(3) < replace.encoded_len(3));
        assert!(replace.encoded_len(0) < replace.encoded_len(3));
    }

    #[test]
    fn another_segments_record_and_flipped_bits_do_not_validate() {
        let mut buf = Vec::new();
        Record::Truncate { from: 3 }.encode(0, 7, 1, 0, &mut buf);
        assert!(matches!(parse_frame(8, &Bytes::from(buf.clone())), Frame::Bad(_)));
        for bit in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(parse_frame(7, &Bytes::from(b)), Frame::Record { .. }),
                "bit {bit}"
            );
        }
        assert!(matches!(parse_frame(7, &Bytes::from(vec![0u8; 40])), Frame::End));
    }
}
