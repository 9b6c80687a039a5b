//! The on-disk decoders as the fuzz tests (`fuzz_tests.rs`) drive them: plain inputs and outputs,
//! so a property reads like what it checks. Test-only.

use bytes::Bytes;

use std::sync::{Arc, OnceLock};

use crate::cold::block;
use crate::cold::dict::{self, Dictionaries, Dictionary, DictionaryEncoder};
use crate::proto::Entry;
use crate::wal::{Frame, Record, checksum, decode_header, parse_frame};

/// What one write-ahead frame decodes to: `Ok(Some((seq, framed length, entries)))` for a valid
/// record of segment `segment_id`, `Ok(None)` for the zeroed end of a segment, `Err` for anything
/// else (torn, stale or damaged bytes).
pub(crate) fn wal_frame(segment_id: u64, bytes: &[u8]) -> Result<Option<(u64, usize, usize)>, String> {
    match parse_frame(segment_id, &Bytes::copy_from_slice(bytes)) {
        Frame::Record { seq, record, len, .. } => {
            let entries = match &record {
                Record::Append(es) | Record::Replace { entries: es, .. } => es.len(),
                _ => 0,
            };
            Ok(Some((seq, len, entries)))
        }
        Frame::End => Ok(None),
        Frame::Bad(reason) => Err(reason),
    }
}

/// Decodes a record body as if its checksum had matched (the decoder's own bounds checks only).
pub(crate) fn wal_record_body(body: &[u8]) -> Result<usize, String> {
    Record::decode_body(Bytes::copy_from_slice(body)).map(|(_, r)| match r {
        Record::Append(es) | Record::Replace { entries: es, .. } => es.len(),
        _ => 0,
    })
}

/// The framed bytes of an append record (to mutate valid input).
pub(crate) fn wal_encode_append(segment_id: u64, seq: u64, entries: Vec<Entry>) -> Vec<u8> {
    let mut out = Vec::new();
    Record::Append(entries).encode(0, segment_id, seq, 0, &mut out);
    out
}

/// The record checksum, so a fuzz test can build frames whose checksum matches arbitrary bodies.
pub(crate) fn wal_checksum(segment_id: u64, seq: u64, body: &[u8]) -> u32 {
    checksum(segment_id, seq, body)
}

/// Decodes a segment header: `(segment id, first sequence number)`.
pub(crate) fn wal_segment_header(bytes: &[u8]) -> Result<(u64, u64), String> {
    decode_header(bytes)
}

/// The id of [`block_encode_with_dictionary`]'s dictionary: the one a store's first training
/// writes, so forged headers naming it reach the dictionary decoder.
pub(crate) const DICTIONARY_ID: u32 = dict::FIRST_ID;

/// The dictionaries the block decoders below read with: one, trained once from KV-like payloads.
fn dictionaries() -> &'static (Dictionaries, DictionaryEncoder) {
    static D: OnceLock<(Dictionaries, DictionaryEncoder)> = OnceLock::new();
    D.get_or_init(|| {
        let mut samples = dict::Samples::default();
        for i in 0..300u64 {
            let s = format!(
                "PUT user:{i} {{\"name\":\"n{}\",\"city\":\"c{}\"}};",
                i % 31,
                i % 7
            );
            samples.push(s.repeat(1 + (i % 9) as usize).as_bytes());
        }
        let bytes = dict::train(&samples, 2048).unwrap_or_else(|e| panic!("zstd training: {e}"));
        let d = Dictionary::new(DICTIONARY_ID, bytes).unwrap_or_else(|e| panic!("{e}"));
        let enc = d.encoder(1).unwrap_or_else(|e| panic!("zstd: {e}"));
        let mut ds = Dictionaries::default();
        ds.insert(Arc::new(d));
        (ds, enc)
    })
}

/// Checks and decompresses a stored cold block (either version, with or without the dictionary)
/// and returns its entries.
pub(crate) fn block_decode(stored: &[u8]) -> Result<Vec<Entry>, String> {
    let b = block::parse(stored, &dictionaries().0)?;
    let mut out = Vec::new();
    for f in b.decode_all()? {
        out.extend(f.range(0, u64::MAX));
    }
    Ok(out)
}

/// The entries `[from, to]` of a stored cold block as a reader gets them: decoding only the frames
/// that range overlaps.
pub(crate) fn block_read(stored: &[u8], from: u64, to: u64) -> Result<Vec<Entry>, String> {
    let b = block::parse(stored, &dictionaries().0)?;
    let mut out = Vec::new();
    for i in b.frames_for(from, to) {
        out.extend(b.decode_frame(i)?.range(from, to));
    }
    Ok(out)
}

/// Encodes `entries` (consecutive) as a stored cold block with id `id`.
pub(crate) fn block_encode(id: u64, entries: &[Entry]) -> Vec<u8> {
    let mut z = zstd::bulk::Compressor::new(1).unwrap_or_else(|e| panic!("zstd: {e}"));
    block::encode(id, entries, &mut z).unwrap_or_else(|e| panic!("zstd: {e}"))
}

/// As [`block_encode`], every frame compressed with the dictionary [`DICTIONARY_ID`].
pub(crate) fn block_encode_with_dictionary(id: u64, entries: &[Entry]) -> Vec<u8> {
    let mut z = zstd::bulk::Compressor::new(1).unwrap_or_else(|e| panic!("zstd: {e}"));
    block::encode_with(id, entries, &mut z, &dictionaries().1).unwrap_or_else(|e| panic!("zstd: {e}"))
}

/// Compresses `raw` with the dictionary [`DICTIONARY_ID`] (to forge frames that name it).
pub(crate) fn compress_with_dictionary(raw: &[u8]) -> Vec<u8> {
    let mut z = zstd::bulk::Compressor::new(1).unwrap_or_else(|e| panic!("zstd: {e}"));
    dictionaries()
        .1
        .compress(&mut z, raw)
        .unwrap_or_else(|e| panic!("zstd: {e}"))
}

/// A version-1 stored block's checksum over its header and compressed bytes, as the reader computes it,
/// so a fuzz test can forge blocks with a valid checksum and hostile header fields.
pub(crate) fn block_checksum(header_28: &[u8], compressed: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(header_28), compressed)
}
