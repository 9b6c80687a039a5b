use super::*;
use crate::cold::dict::NONE;

fn entries(first: u64, n: u64, payload: usize) -> Vec<Entry> {
    (first..first + n)
        .map(|i| {
            let p: Vec<u8> = (0..payload)
                .map(|k| (i as usize * 31 + k * 7) as u8 % 61)
                .collect();
            Entry::new(i, i / 7, p)
        })
        .collect()
}

fn z() -> zstd::bulk::Compressor<'static> {
    zstd::bulk::Compressor::new(1).unwrap()
}

/// The first release's encoder, kept to check that version-1 blocks still read.
fn encode_v1(id: u64, entries: &[Entry]) -> Vec<u8> {
    let raw = raw_frame(entries).unwrap();
    let compressed = zstd::bulk::compress(&raw, 1).unwrap();
    let mut out = Vec::new();
    out.put_slice(MAGIC_V1);
    out.put_u64_le(id);
    out.put_u64_le(entries[0].index);
    out.put_u32_le(entries.len() as u32);
    out.put_u32_le(raw.len() as u32);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out), &compressed);
    out.put_u32_le(crc);
    out.put_slice(&compressed);
    out
}

fn all(stored: &[u8]) -> Vec<Entry> {
    let b = parse(stored, &NONE).unwrap();
    b.decode_all()
        .unwrap()
        .iter()
        .flat_map(|f| f.range(0, u64::MAX).collect::<Vec<_>>())
        .collect()
}

#[test]
fn round_trip_across_frames_and_damage_detection() {
    let es = entries(10, 400, 256);
    let stored = encode(42, &es, &mut z()).unwrap();
    let b = parse(&stored, &NONE).unwrap();
    assert_eq!((b.id, b.first, b.last()), (42, 10, 409));
    assert!(
        b.frame_count() > 4,
        "400 x 268 raw bytes make several 16 KiB frames"
    );
    assert_eq!(all(&stored), es);
    for pos in [
        0,
        5,
        13,
        21,
        25,
        29,
        33,
        V2_HEADER_LEN + 3,
        V2_HEADER_LEN + FRAME_SLOT_LEN + 9,
        stored.len() / 2,
        stored.len() - 1,
    ] {
        let mut bad = stored.clone();
        bad[pos] ^= 0x40;
        let r = parse(&bad, &NONE).and_then(|b| b.decode_all().map(|_| ()));
        assert!(r.is_err(), "flip at {pos} went unnoticed");
    }
    assert!(parse(&stored[..stored.len() - 1], &NONE).is_err());
}

#[test]
fn frames_are_cut_at_entry_boundaries_near_the_target() {
    let es = entries(1, 1000, 256);
    let stored = encode(1, &es, &mut z()).unwrap();
    let b = parse(&stored, &NONE).unwrap();
    for f in b.decode_all().unwrap().iter().take(b.frame_count() - 1) {
        assert!(f.raw_len() as usize <= FRAME_TARGET_RAW, "{}", f.raw_len());
        assert!(
            f.raw_len() as usize + 268 > FRAME_TARGET_RAW,
            "frame cut early: {}",
            f.raw_len()
        );
    }
}

#[test]
fn an_entry_bigger_than_a_frame_gets_a_frame_of_its_own() {
    let mut es = entries(1, 3, 100);
    es.push(Entry::new(4, 1, vec![9u8; 3 * FRAME_TARGET_RAW]));
    es.extend(entries(5, 3, 100));
    let stored = encode(1, &es, &mut z()).unwrap();
    let b = parse(&stored, &NONE).unwrap();
    assert_eq!(b.frame_count(), 3);
    assert_eq!((b.frame_first(1), b.frame_first(2)), (4, 5));
    assert_eq!(all(&stored), es);
}

#[test]
fn a_point_read_decodes_only_the_frame_holding_its_entry() {
    let es = entries(100, 2000, 256);
    let stored = encode(7, &es, &mut z()).unwrap();
    let b = parse(&stored, &NONE).unwrap();
    for idx in [100, 101, 777, 1500, 2099] {
        let frames = b.frames_for(idx, idx);
        assert_eq!(frames.clone().count(), 1);
        let f = b.decode_frame(*frames.start()).unwrap();
        assert!(f.raw_len() as usize <= FRAME_TARGET_RAW);
        assert_eq!(f.get(idx).as_ref(), Some(&es[(idx - 100) as usize]));
    }
}

#[test]
fn a_damaged_frame_fails_only_the_reads_that_decode_it() {
    let es = entries(1, 500, 256);
    let mut stored = encode(1, &es, &mut z()).unwrap();
    let b = parse(&stored, &NONE).unwrap();
    let victim = b.frames[2];
    let other_first = b.frame_first(0);
    stored[victim.start + 5] ^= 1;
    let b = parse(&stored, &NONE).unwrap();
    assert!(b.decode_frame(2).unwrap_err().contains("checksum"));
    assert_eq!(b.decode_frame(0).unwrap().get(other_first).as_ref(), Some(&es[0]));
}

#[test]
fn version_1_blocks_still_read_as_one_frame() {
    let es = entries(5, 300, 256);
    let stored = encode_v1(3, &es);
    let b = parse(&stored, &NONE).unwrap();
    assert_eq!((b.id, b.first, b.last(), b.frame_count()), (3, 5, 304, 1));
    assert_eq!(b.frames_for(100, 200), 0..=0);
    assert_eq!(all(&stored), es);
    let mut bad = stored.clone();
    bad[40] ^= 2;
    assert!(parse(&bad, &NONE).is_err());
}

#[test]
fn packing_fills_a_page_bucket_and_leaves_the_rest() {
    let es = entries(1, 5000, 256);
    let packing = Packing::new(u64::MAX, 32 << 10);
    let built = encode_packed(1, &es, packing, &mut z(), None).unwrap();
    assert!(built.full);
    assert!(built.entries < es.len());
    assert!(built.stored.len() <= (32 << 10) - REDB_LEAF_OVERHEAD);
    assert_eq!(allocated_bytes(built.stored.len() as u64), 32 << 10);
    assert!(
        built.stored.len() > 28 << 10,
        "bucket under-filled: {}",
        built.stored.len()
    );
    assert_eq!(all(&built.stored), es[..built.entries]);
    let raw: u64 = es[..built.entries].iter().map(raw_cost).sum();
    assert_eq!(
        built.raw_len,
        raw + (BLOCK_FRAMING * parse(&built.stored, &NONE).unwrap().frame_count()) as u64
    );
    // Fewer entries than a bucket's worth: all go in, and the block is not full.
    let small = encode_packed(1, &es[..20], packing, &mut z(), None).unwrap();
    assert_eq!((small.entries, small.full), (20, false));
    // The raw cap ends a block too.
    let capped = encode_packed(1, &es, Packing::new(20 << 10, 1 << 20), &mut z(), None).unwrap();
    assert!(capped.full && capped.raw_len >= 20 << 10 && capped.raw_len < 40 << 10);
}

#[test]
fn a_trimmed_block_keeps_the_frames_of_its_prefix() {
    let es = entries(1, 900, 256);
    let whole = encode(9, &es, &mut z()).unwrap();
    let trimmed = encode(9, &es[..500], &mut z()).unwrap();
    let (w, t) = (parse(&whole, &NONE).unwrap(), parse(&trimmed, &NONE).unwrap());
    for i in 0..t.frame_count() {
        assert_eq!(w.frame_first(i), t.frame_first(i));
    }
    assert_eq!(all(&trimmed), es[..500]);
}

#[test]
fn the_encoder_refuses_what_its_reader_would_reject() {
    assert_eq!(
        encode(1, &[], &mut z()).unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
    // A frame holds one entry at most this big; build its payload from one slice per call.
    let huge = Entry {
        index: 1,
        term: 1,
        payload: Bytes::from(vec![0u8; MAX_RAW_LEN - BLOCK_FRAMING - ENTRY_FRAMING + 1]),
    };
    assert!(encode(1, std::slice::from_ref(&huge), &mut z()).is_err());
}

#[test]
fn allocated_bytes_follows_redb_page_buckets() {
    assert_eq!(allocated_bytes(1), 4096);
    assert_eq!(allocated_bytes(4096 - 16), 4096);
    assert_eq!(allocated_bytes(4096 - 15), 8192);
    assert_eq!(allocated_bytes(22 << 10), 32 << 10);
    assert_eq!(allocated_bytes((64 << 10) - 16), 64 << 10);
    assert_eq!(allocated_bytes(64 << 10), 128 << 10);
}

#[test]
fn dictionary_blocks_round_trip_name_their_dictionary_and_need_it() {
    use crate::cold::dict::{self, Dictionaries, Dictionary};
    let es = entries(1, 2000, 256);
    let plain = encode(1, &es, &mut z()).unwrap();
    let mut samples = dict::Samples::default();
    for f in parse(&plain, &NONE).unwrap().decode_all().unwrap() {
        samples.push(f.raw());
    }
    let d = Dictionary::new(dict::FIRST_ID, dict::train(&samples, 4096).unwrap()).unwrap();
    let encoder = d.encoder(1).unwrap();
    let mut dicts = Dictionaries::default();
    dicts.insert(std::sync::Arc::new(d));
    let stored = encode_with(1, &es, &mut z(), &encoder).unwrap();
    assert_eq!(u32_at(&stored, V2_DICT_AT), dict::FIRST_ID);
    let b = parse(&stored, &dicts).unwrap();
    let got: Vec<Entry> = b
        .decode_all()
        .unwrap()
        .iter()
        .flat_map(|f| f.range(0, u64::MAX).collect::<Vec<_>>())
        .collect();
    assert_eq!(got, es);
    // Without the dictionary the block does not parse; with a damaged frame that frame fails.
    assert!(parse(&stored, &NONE).unwrap_err().contains("dictionary 1"));
    let victim = b.frames[1];
    let mut bad = stored.clone();
    bad[victim.start + 3] ^= 4;
    let b = parse(&bad, &dicts).unwrap();
    assert!(b.decode_frame(1).is_err());
    assert_eq!(b.decode_frame(0).unwrap().get(1).as_ref(), Some(&es[0]));
}
