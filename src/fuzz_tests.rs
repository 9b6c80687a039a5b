//! Property-based fuzzing of everything that parses bytes or text from disk: the write-ahead frame
//! and record decoders, the segment header, the cold block decoder (frames with and without the
//! store's compression dictionary), and the config parser.
//!
//! Inputs are random bytes, valid encodings with random damage, and forged encodings whose checksum
//! is valid but whose length and count fields are hostile (the case a plain random fuzzer almost
//! never reaches). Properties: no panic; a decoded frame never claims more bytes than it was given;
//! a valid encoding round-trips; and — checked in a child process running under `ulimit -v` — no
//! length field makes a decoder reserve a buffer far beyond its input.
//!
//! CI runs 256 cases per property; more: `PROPTEST_CASES=100000 cargo test --release --lib
//! fuzz_tests`.

use crate::fuzzing;
use crate::{Config, Entry};
use bytes::Bytes;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn entries_strategy() -> impl Strategy<Value = (u64, Vec<(u64, Vec<u8>)>)> {
    (
        1u64..u64::MAX / 2,
        proptest::collection::vec(
            (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64)),
            1..12,
        ),
    )
}

fn to_entries(first: u64, v: &[(u64, Vec<u8>)]) -> Vec<Entry> {
    v.iter()
        .enumerate()
        .map(|(i, (t, p))| Entry::new(first + i as u64, *t, Bytes::from(p.clone())))
        .collect()
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Extend(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(p, b)| Mutation::Flip(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, v)| Mutation::Set(p, v)),
        any::<usize>().prop_map(Mutation::Truncate),
        proptest::collection::vec(any::<u8>(), 1..32).prop_map(Mutation::Extend),
    ]
}

fn apply(mut b: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        if b.is_empty() {
            break;
        }
        let n = b.len();
        match m {
            Mutation::Flip(p, bit) => b[p % n] ^= 1 << bit,
            Mutation::Set(p, v) => b[p % n] = *v,
            Mutation::Truncate(p) => b.truncate(p % n),
            Mutation::Extend(x) => b.extend_from_slice(x),
        }
    }
    b
}

/// A write-ahead frame around `body` with a valid checksum (header: len, crc, seq).
fn forge_frame(segment_id: u64, seq: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&fuzzing::wal_checksum(segment_id, seq, body).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// A stored block with hostile header fields but a valid checksum.
fn forge_block(id: u64, first: u64, count: u32, raw_len: u32, compressed: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(32 + compressed.len());
    h.extend_from_slice(b"TLB1");
    h.extend_from_slice(&id.to_le_bytes());
    h.extend_from_slice(&first.to_le_bytes());
    h.extend_from_slice(&count.to_le_bytes());
    h.extend_from_slice(&raw_len.to_le_bytes());
    let crc = fuzzing::block_checksum(&h[..28], compressed);
    h.extend_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(compressed);
    h
}

/// A version-2 stored block with hostile header and frame-table fields but valid checksums: frames
/// are `(first entry position, raw length, compressed bytes)`, all compressed with dictionary
/// `dict` (0: none).
fn forge_block_v2(id: u64, first: u64, count: u32, dict: u32, frames: &[(u32, u32, &[u8])]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(b"TLB2");
    h.extend_from_slice(&id.to_le_bytes());
    h.extend_from_slice(&first.to_le_bytes());
    h.extend_from_slice(&count.to_le_bytes());
    h.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    h.extend_from_slice(&dict.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    for (pos, raw, bytes) in frames {
        h.extend_from_slice(&pos.to_le_bytes());
        h.extend_from_slice(&raw.to_le_bytes());
        h.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        h.extend_from_slice(&crc32c::crc32c(bytes).to_le_bytes());
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[..32]), &h[36..]);
    h[32..36].copy_from_slice(&crc.to_le_bytes());
    for (_, _, bytes) in frames {
        h.extend_from_slice(bytes);
    }
    h
}

/// Entries big enough that a block of them has several frames.
fn multi_frame_entries_strategy() -> impl Strategy<Value = (u64, Vec<(u64, Vec<u8>)>)> {
    (
        1u64..u64::MAX / 2,
        proptest::collection::vec(
            (
                any::<u64>(),
                (0usize..6000, any::<u8>()).prop_map(|(n, b)| {
                    (0..n)
                        .map(|k| b.wrapping_add((k % 13) as u8))
                        .collect::<Vec<u8>>()
                }),
            ),
            1..40,
        ),
    )
}

/// Record bodies whose count/length fields claim far more than is there.
fn hostile_bodies() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for kind in [1u8, 2] {
        for count in [u32::MAX, 1 << 28, 1 << 20, 3] {
            for len in [u32::MAX, 1 << 30, 1 << 20, 7] {
                let mut b = vec![kind];
                if kind == 2 {
                    b.extend_from_slice(&5u64.to_le_bytes());
                }
                b.extend_from_slice(&5u64.to_le_bytes());
                b.extend_from_slice(&count.to_le_bytes());
                b.extend_from_slice(&9u64.to_le_bytes());
                b.extend_from_slice(&len.to_le_bytes());
                b.extend_from_slice(b"abc");
                v.push(b);
            }
        }
    }
    v
}

/// A block of `entries`, compressed with a trained dictionary or without.
fn encode(id: u64, entries: &[Entry], with_dictionary: bool) -> Vec<u8> {
    if with_dictionary {
        fuzzing::block_encode_with_dictionary(id, entries)
    } else {
        fuzzing::block_encode(id, entries)
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // Failure seeds go next to this file (`fuzz.proptest-regressions`), not to the
        // `tests/proptest-regressions/` that proptest's default derives from `main.rs`.
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn wal_frame_decoder_never_panics_on_random_bytes(
        id in any::<u64>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        if let Ok(Some((_, len, _))) = fuzzing::wal_frame(id, &bytes) {
            prop_assert!(len <= bytes.len());
        }
        let _ = fuzzing::wal_record_body(&bytes);
        let _ = fuzzing::wal_segment_header(&bytes);
    }

    #[test]
    fn wal_frames_round_trip_and_damage_is_rejected(
        id in 1u64..u64::MAX,
        seq in 1u64..u64::MAX,
        (first, es) in entries_strategy(),
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let entries = to_entries(first, &es);
        let framed = fuzzing::wal_encode_append(id, seq, entries.clone());
        prop_assert_eq!(
            fuzzing::wal_frame(id, &framed),
            Ok(Some((seq, framed.len(), entries.len())))
        );
        // Another segment's id never validates (recycled-segment protection).
        prop_assert!(fuzzing::wal_frame(id ^ 1, &framed).is_err());
        let damaged = apply(framed.clone(), &muts);
        match fuzzing::wal_frame(id, &damaged) {
            Ok(Some((s, len, n))) => {
                // Only an extension past the frame keeps it valid, and then it is the same frame.
                prop_assert!(damaged.starts_with(&framed), "damaged frame accepted");
                prop_assert_eq!((s, len, n), (seq, framed.len(), entries.len()));
            }
            Ok(None) => prop_assert!(damaged.iter().take(16).all(|b| *b == 0)),
            Err(_) => {}
        }
    }

    #[test]
    fn forged_frames_with_hostile_lengths_are_rejected(
        id in any::<u64>(),
        seq in any::<u64>(),
        pick in any::<prop::sample::Index>(),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let bodies = hostile_bodies();
        let mut body = pick.get(&bodies).clone();
        body.extend_from_slice(&tail);
        let frame = forge_frame(id, seq, &body);
        // The checksum matches, so only the decoder's own bounds stand between the fields and memory.
        prop_assert!(fuzzing::wal_frame(id, &frame).is_err());
        prop_assert!(fuzzing::wal_record_body(&body).is_err());
    }

    #[test]
    fn block_decoder_round_trips_and_rejects_damage(
        id in any::<u64>(),
        (first, es) in entries_strategy(),
        muts in proptest::collection::vec(mutation(), 1..4),
        with_dictionary in any::<bool>(),
    ) {
        let entries = to_entries(first, &es);
        let stored = encode(id, &entries, with_dictionary);
        prop_assert_eq!(fuzzing::block_decode(&stored), Ok(entries.clone()));
        let damaged = apply(stored.clone(), &muts);
        if damaged != stored {
            prop_assert!(fuzzing::block_decode(&damaged).is_err(), "damaged block accepted");
        }
    }

    #[test]
    fn block_decoder_never_panics_on_random_or_forged_input(
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
        count in any::<u32>(),
        raw_len in 0u32..(1 << 22),
        first in any::<u64>(),
    ) {
        let _ = fuzzing::block_decode(&bytes);
        // Valid checksum, arbitrary counts and lengths (raw_len kept small here; large claims are
        // checked under a memory cap below).
        let forged = forge_block(1, first, count, raw_len, &bytes);
        if let Ok(es) = fuzzing::block_decode(&forged) {
            prop_assert_eq!(es.len() as u64, u64::from(count));
        }
        let z = zstd::bulk::compress(&bytes, 1).unwrap();
        let forged = forge_block(1, first, count, raw_len, &z);
        let _ = fuzzing::block_decode(&forged);
    }

    #[test]
    fn multi_frame_blocks_round_trip_and_damage_never_yields_a_wrong_entry(
        id in any::<u64>(),
        (first, es) in multi_frame_entries_strategy(),
        muts in proptest::collection::vec(mutation(), 1..4),
        (lo, len) in (0usize..40, 0usize..40),
        with_dictionary in any::<bool>(),
    ) {
        let entries = to_entries(first, &es);
        let stored = encode(id, &entries, with_dictionary);
        prop_assert_eq!(fuzzing::block_decode(&stored), Ok(entries.clone()));
        let lo = lo % entries.len();
        let hi = (lo + len).min(entries.len() - 1);
        let (from, to) = (entries[lo].index, entries[hi].index);
        let want = entries[lo..=hi].to_vec();
        prop_assert_eq!(fuzzing::block_read(&stored, from, to), Ok(want.clone()));
        let damaged = apply(stored.clone(), &muts);
        if damaged != stored {
            prop_assert!(fuzzing::block_decode(&damaged).is_err(), "damaged block accepted");
            // A read of part of the block may not touch the damage, but what it returns is right.
            if let Ok(got) = fuzzing::block_read(&damaged, from, to) {
                prop_assert_eq!(got, want, "a damaged block returned a wrong entry");
            }
        }
    }

    #[test]
    fn v2_block_decoder_never_panics_on_forged_frame_tables(
        count in any::<u32>(),
        first in any::<u64>(),
        frames in proptest::collection::vec(
            (any::<u32>(), 0u32..(1 << 22), proptest::collection::vec(any::<u8>(), 0..256), any::<bool>()),
            0..6,
        ),
        from in any::<u64>(),
        to in any::<u64>(),
        dict in prop_oneof![Just(0u32), Just(fuzzing::DICTIONARY_ID), any::<u32>()],
    ) {
        // Frames compressed as the header says (with the dictionary it names, when it is the one
        // the decoder has), or not at all.
        let zs: Vec<(u32, u32, Vec<u8>)> = frames
            .iter()
            .map(|(pos, raw, bytes, compress)| {
                let b = match (*compress, dict) {
                    (false, _) => bytes.clone(),
                    (true, fuzzing::DICTIONARY_ID) => fuzzing::compress_with_dictionary(bytes),
                    (true, _) => zstd::bulk::compress(bytes, 1).unwrap(),
                };
                (*pos, *raw, b)
            })
            .collect();
        let refs: Vec<(u32, u32, &[u8])> = zs.iter().map(|(p, r, b)| (*p, *r, b.as_slice())).collect();
        let forged = forge_block_v2(1, first, count, dict, &refs);
        if let Ok(es) = fuzzing::block_decode(&forged) {
            prop_assert_eq!(es.len() as u64, u64::from(count));
            for (k, e) in es.iter().enumerate() {
                prop_assert_eq!(e.index, first + k as u64);
            }
        }
        if let Ok(es) = fuzzing::block_read(&forged, from.min(to), from.max(to)) {
            prop_assert!(es.iter().all(|e| e.index >= from.min(to) && e.index <= from.max(to)));
        }
    }

    #[test]
    fn config_parser_never_panics_and_accepts_only_valid_configs(
        text in "[a-z_ =\"0-9.\\n\\[\\]-]{0,200}",
        key in prop::sample::select(vec![
            "memory_budget_bytes", "block_cache_fraction", "sync_on_persist", "segment_bytes",
            "recycle_segments", "recycle_bytes", "block_target_bytes", "compression_level", "compaction_trigger_bytes",
            "hot_tail_entries", "compaction_interval_ms", "recovery_mode", "nonsense",
        ]),
        value in prop_oneof![
            any::<i64>().prop_map(|v| v.to_string()),
            any::<f64>().prop_map(|v| format!("{v:?}")),
            Just("true".to_string()),
            Just("\"tolerate_any_corruption\"".to_string()),
            Just("\"bogus\"".to_string()),
            Just("18446744073709551615".to_string()),
            Just("-1".to_string()),
        ],
    ) {
        for doc in [text.clone(), format!("{key} = {value}\n"), format!("{key} = {value}\n{text}")] {
            if let Ok(c) = Config::from_toml_str(&doc) {
                prop_assert!(c.validate().is_ok(), "accepted an invalid config: {doc:?}");
            }
        }
    }
}

/// Runs the hostile-length decoders in a child limited to 512 MiB of address space: a decoder that
/// reserves a buffer from an unchecked length field aborts the child.
#[test]
fn hostile_length_fields_never_reserve_huge_buffers() {
    let exe = std::env::current_exe().unwrap();
    let child = child_test_name();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 524288 && exec \"$0\" --exact \"$1\" --ignored --nocapture --test-threads=1")
        .arg(&exe)
        .arg(&child)
        .env("TIERLOG_FUZZ_CHILD", "1")
        .output()
        .expect("run the capped child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "a decoder ran out of a 512 MiB address-space cap on a forged length field ({}); \
         run `cargo test --lib -- --ignored --exact {child}` to see which\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // A filter that matches no test also exits successfully: the child must have run.
    assert!(
        stdout.contains(CHILD_DONE),
        "the capped child `{child}` did not run its checks:\n{stdout}"
    );
}

/// Printed by the child once every hostile input was rejected.
const CHILD_DONE: &str = "hostile_lengths_child: every forged length rejected";

/// The libtest name of [`hostile_lengths_child`] in this binary (its module path without the
/// crate name), so the child is found wherever this file sits.
fn child_test_name() -> String {
    let path = module_path!();
    let module = path.split_once("::").map_or("", |(_, rest)| rest);
    if module.is_empty() {
        "hostile_lengths_child".to_string()
    } else {
        format!("{module}::hostile_lengths_child")
    }
}

#[test]
#[ignore = "child of hostile_length_fields_never_reserve_huge_buffers (run under a memory cap)"]
fn hostile_lengths_child() {
    for body in hostile_bodies() {
        assert!(fuzzing::wal_frame(7, &forge_frame(7, 1, &body)).is_err());
        assert!(fuzzing::wal_record_body(&body).is_err());
    }
    // A tiny valid zstd frame under a header claiming up to u32::MAX raw bytes.
    let z = zstd::bulk::compress(b"0123456789abcdef", 1).unwrap();
    let zd = fuzzing::compress_with_dictionary(b"0123456789abcdef");
    // A zstd frame that itself claims (1 GiB - 1) bytes of content but holds 16: magic, a frame
    // header with a 4-byte content size and no window descriptor, one raw last block.
    let mut liar = vec![0x28, 0xB5, 0x2F, 0xFD, 0b1010_0000];
    liar.extend_from_slice(&((1u32 << 30) - 1).to_le_bytes());
    liar.extend_from_slice(&[(16 << 3) | 1, 0, 0]);
    liar.extend_from_slice(b"0123456789abcdef");
    for frame in [&z, &zd, &liar] {
        for raw_len in [u32::MAX, 1 << 30, (1 << 30) - 1, 1 << 29, 1 << 24] {
            for count in [1u32, 1000, u32::MAX] {
                let forged = forge_block(1, 1, count, raw_len, frame);
                assert!(
                    fuzzing::block_decode(&forged).is_err(),
                    "forged block (count {count}, raw_len {raw_len}) decoded"
                );
                for dict in [0, fuzzing::DICTIONARY_ID] {
                    let forged = forge_block_v2(1, 1, count, dict, &[(0, raw_len, frame)]);
                    assert!(
                        fuzzing::block_decode(&forged).is_err(),
                        "forged v2 block (count {count}, raw_len {raw_len}, dictionary {dict}) decoded"
                    );
                }
            }
        }
    }
    println!("{CHILD_DONE}");
}
