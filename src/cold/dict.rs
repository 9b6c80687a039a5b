//! The store's zstd dictionary: trained once from the store's own frames, stored in the cold
//! file's `dictionaries` table in the same transaction as the first blocks compressed with it, and
//! named by id in each version-2 block header (0: none). Layout in `docs/format.md`.
//!
//! A dictionary pays on small frames: a 16 KiB frame alone has little history for zstd to match
//! against, and the bench's KV payloads share most of their structure (keys, JSON field names).
//! One dictionary per store, trained once and never replaced: a Raft log's commands keep their
//! shape for the life of a state machine, and a replacement would have to stay readable (kept in
//! the file, loaded, accounted) for as long as any block names the old one.

use std::collections::BTreeMap;
use std::sync::Arc;

use zstd::dict::{DecoderDictionary, EncoderDictionary};

/// First bytes of a stored dictionary value (its layout's version).
const MAGIC: &[u8; 4] = b"TLD1";
/// The crc32c of the dictionary's bytes.
const CRC_AT: usize = 4;
/// The dictionary's bytes (zstd's format), to the end of the value.
const BYTES_AT: usize = CRC_AT + 4;

/// The id the first dictionary of a store gets; a block header's 0 means "no dictionary".
pub(crate) const FIRST_ID: u32 = 1;

/// A dictionary as readers use it: its bytes and zstd's digested decoding tables.
pub(crate) struct Dictionary {
    id: u32,
    bytes: Vec<u8>,
    decoder: DecoderDictionary<'static>,
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dictionary")
            .field("id", &self.id)
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl Dictionary {
    /// Digests `bytes` (a zstd dictionary) for decoding.
    pub(crate) fn new(id: u32, bytes: Vec<u8>) -> Result<Self, String> {
        let decoder = DecoderDictionary::try_copy(&bytes)
            .map_err(|e| format!("compression dictionary {id} does not load: {e}"))?;
        Ok(Dictionary { id, bytes, decoder })
    }

    /// A dictionary read back from the `dictionaries` table, checked against its checksum.
    pub(crate) fn from_stored(id: u32, value: &[u8]) -> Result<Self, String> {
        if value.len() < BYTES_AT || &value[..CRC_AT] != MAGIC {
            return Err(format!("compression dictionary {id} has no valid header"));
        }
        let bytes = &value[BYTES_AT..];
        if crc32c::crc32c(bytes) != crate::le::u32_at(value, CRC_AT) {
            return Err(format!("compression dictionary {id} checksum mismatch"));
        }
        Self::new(id, bytes.to_vec())
    }

    /// The value stored in the `dictionaries` table.
    pub(crate) fn stored(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(BYTES_AT + self.bytes.len());
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&crc32c::crc32c(&self.bytes).to_le_bytes());
        v.extend_from_slice(&self.bytes);
        v
    }

    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// Length of the dictionary itself.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn decoder(&self) -> &DecoderDictionary<'static> {
        &self.decoder
    }

    /// Tables the compactor compresses with at `level`.
    pub(crate) fn encoder(&self, level: i32) -> std::io::Result<DictionaryEncoder> {
        Ok(DictionaryEncoder {
            id: self.id,
            encoder: EncoderDictionary::try_copy(&self.bytes, level)?,
        })
    }

    /// Memory it holds: its bytes and zstd's decoding tables.
    #[cfg(test)]
    pub(crate) fn memory_bytes(&self) -> u64 {
        (self.bytes.len() + self.decoder.as_ddict().sizeof()) as u64
    }
}

/// The compactor's side of a dictionary: zstd's compression tables for one level.
pub(crate) struct DictionaryEncoder {
    id: u32,
    encoder: EncoderDictionary<'static>,
}

impl DictionaryEncoder {
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// Compresses `raw` with the dictionary, reusing the context `zstd` (its level is the
    /// dictionary's, fixed when the tables were built).
    pub(crate) fn compress(
        &self,
        zstd: &mut zstd::bulk::Compressor<'_>,
        raw: &[u8],
    ) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(zstd::compress_bound(raw.len()));
        zstd.context_mut()
            .compress_using_cdict(&mut out, raw, self.encoder.as_cdict())
            .map_err(|code| std::io::Error::other(zstd::zstd_safe::get_error_name(code)))?;
        Ok(out)
    }

    /// Memory its tables hold.
    #[cfg(test)]
    pub(crate) fn memory_bytes(&self) -> u64 {
        self.encoder.as_cdict().sizeof() as u64
    }
}

/// The dictionaries of a store by id, and those whose stored form is damaged (a block naming one
/// of them fails to read; blocks naming none still read).
#[derive(Debug, Default, Clone)]
pub(crate) struct Dictionaries {
    usable: BTreeMap<u32, Arc<Dictionary>>,
    damaged: BTreeMap<u32, String>,
}

/// No dictionaries: what blocks of a store that never trained one (and version-1 blocks) need.
#[cfg(test)]
pub(crate) static NONE: Dictionaries = Dictionaries::new();

impl Dictionaries {
    #[cfg(test)]
    pub(crate) const fn new() -> Self {
        Dictionaries {
            usable: BTreeMap::new(),
            damaged: BTreeMap::new(),
        }
    }

    /// The dictionary a block header names, or why it cannot be used.
    pub(crate) fn get(&self, id: u32) -> Result<&Dictionary, String> {
        if let Some(d) = self.usable.get(&id) {
            return Ok(d);
        }
        Err(match self.damaged.get(&id) {
            Some(reason) => format!("block names a damaged compression dictionary: {reason}"),
            None => format!("block names compression dictionary {id}, which this store does not have"),
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.usable.is_empty() && self.damaged.is_empty()
    }

    /// The dictionary new blocks are compressed with: the newest, if it is usable.
    pub(crate) fn current(&self) -> Option<&Arc<Dictionary>> {
        let newest = self.usable.keys().chain(self.damaged.keys()).max()?;
        self.usable.get(newest)
    }

    pub(crate) fn insert(&mut self, d: Arc<Dictionary>) {
        self.damaged.remove(&d.id);
        self.usable.insert(d.id, d);
    }

    pub(crate) fn insert_damaged(&mut self, id: u32, reason: String) {
        self.damaged.insert(id, reason);
    }

    /// Ids of damaged dictionaries and why.
    pub(crate) fn damaged(&self) -> impl Iterator<Item = (u32, &str)> {
        self.damaged.iter().map(|(id, r)| (*id, r.as_str()))
    }
}

/// Memory a dictionary of `len` bytes holds once loaded (its bytes, zstd's decoding tables, and
/// the compactor's compression tables for `level`), measured on zstd's own structures for a
/// dictionary of that size: the memory budget sets it aside before any dictionary exists.
pub(crate) fn memory_estimate(len: usize, level: i32) -> u64 {
    if len == 0 {
        return 0;
    }
    // A raw-content dictionary of `len` bytes: zstd sizes its tables by length and level alone.
    let content = vec![0x5Au8; len];
    let decoder = DecoderDictionary::try_copy(&content).map_or(0, |d| d.as_ddict().sizeof());
    let encoder = EncoderDictionary::try_copy(&content, level).map_or(0, |d| d.as_cdict().sizeof());
    (len + decoder + encoder) as u64
}

/// Training samples: raw frames, one after the other in one buffer (zstd's trainer takes them so;
/// one buffer rather than one allocation per frame keeps the round's memory at the samples' size).
#[derive(Default)]
pub(crate) struct Samples {
    bytes: Vec<u8>,
    sizes: Vec<usize>,
}

impl Samples {
    pub(crate) fn push(&mut self, frame: &[u8]) {
        self.bytes.extend_from_slice(frame);
        self.sizes.push(frame.len());
    }

    pub(crate) fn len(&self) -> usize {
        self.sizes.len()
    }

    /// Raw bytes held.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.len()
    }
}

/// Trains a dictionary of at most `max_bytes` from `samples`. Fails when zstd finds too little to
/// train on.
pub(crate) fn train(samples: &Samples, max_bytes: usize) -> std::io::Result<Vec<u8>> {
    zstd::dict::from_continuous(&samples.bytes, &samples.sizes, max_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u64) -> Vec<u8> {
        format!(
            "PUT user:{i} {{\"name\":\"n{}\",\"city\":\"c{}\",\"age\":{}}}",
            i % 97,
            i % 13,
            i % 80
        )
        .repeat(40)
        .into_bytes()
    }

    fn trained() -> Dictionary {
        let mut samples = Samples::default();
        (0..400).for_each(|i| samples.push(&sample(i)));
        Dictionary::new(FIRST_ID, train(&samples, 4096).unwrap()).unwrap()
    }

    #[test]
    fn a_stored_dictionary_reads_back_and_damage_is_detected() {
        let d = trained();
        let stored = d.stored();
        let back = Dictionary::from_stored(FIRST_ID, &stored).unwrap();
        assert_eq!(back.bytes, d.bytes);
        for pos in [0, CRC_AT + 1, BYTES_AT, stored.len() - 1] {
            let mut bad = stored.clone();
            bad[pos] ^= 0x10;
            assert!(Dictionary::from_stored(FIRST_ID, &bad).is_err(), "flip at {pos}");
        }
        assert!(Dictionary::from_stored(FIRST_ID, &stored[..BYTES_AT - 1]).is_err());
    }

    #[test]
    fn the_memory_estimate_covers_a_trained_dictionary() {
        let d = trained();
        for level in [1, 3, 19] {
            let actual = d.memory_bytes() + d.encoder(level).unwrap().memory_bytes();
            let estimate = memory_estimate(d.len(), level);
            assert!(actual <= estimate, "level {level}: {actual} > {estimate}");
            assert!(
                estimate < actual + actual / 4,
                "level {level}: {estimate} far above {actual}"
            );
        }
        assert_eq!(memory_estimate(0, 1), 0);
    }

    #[test]
    fn lookups_name_missing_and_damaged_dictionaries() {
        let mut ds = Dictionaries::default();
        assert!(ds.current().is_none() && ds.is_empty());
        ds.insert(Arc::new(trained()));
        assert_eq!(ds.current().unwrap().id(), FIRST_ID);
        assert!(ds.get(2).unwrap_err().contains("does not have"));
        ds.insert_damaged(2, "compression dictionary 2 checksum mismatch".into());
        assert!(ds.get(2).unwrap_err().contains("checksum mismatch"));
        // The newest is damaged: new blocks use none rather than an older one.
        assert!(ds.current().is_none());
    }
}

/// The measurement behind the defaults (`docs/performance.md`, "Compression dictionary"): over the
/// frames of a store written without a dictionary, the stored/raw ratio of every seventh frame
/// without and with dictionaries of several sizes trained from the store's first N MiB of frames.
/// `TIERLOG_DICT_STORE=DIR/cold.redb cargo test --release --lib training_choices -- --ignored --nocapture`
#[cfg(test)]
mod measurement {
    use super::*;
    use crate::cold::block;
    use crate::cold::store::ColdStore;

    #[test]
    #[ignore = "measurement over the store named by TIERLOG_DICT_STORE"]
    fn training_choices() {
        let Ok(path) = std::env::var("TIERLOG_DICT_STORE") else {
            return;
        };
        let (store, opened) = ColdStore::open_read_only(std::path::Path::new(&path)).unwrap();
        let metas: Vec<_> = opened.groups[&0].index.values().copied().collect();
        let dicts = store.dictionaries();
        let frames: Vec<Vec<u8>> = store
            .with_stored(&metas, |stored| {
                let mut out = Vec::new();
                for s in stored.iter().flatten() {
                    for f in block::parse(s, &dicts).unwrap().decode_all().unwrap() {
                        out.push(f.raw().to_vec());
                    }
                }
                Ok(out)
            })
            .unwrap();
        let test: Vec<&Vec<u8>> = frames.iter().step_by(7).collect();
        let raw: usize = test.iter().map(|f| f.len()).sum();
        let mut z = zstd::bulk::Compressor::new(1).unwrap();
        let none: usize = test.iter().map(|f| z.compress(f).unwrap().len()).sum();
        eprintln!(
            "{} frames; without a dictionary {:.4}",
            frames.len(),
            none as f64 / raw as f64
        );
        for train_mib in [1usize, 2, 4, 16] {
            let mut samples = Samples::default();
            for f in &frames {
                if samples.bytes() >= train_mib << 20 {
                    break;
                }
                samples.push(f);
            }
            // The same bytes with every entry a sample of its own.
            let mut entries = Samples::default();
            for f in frames.iter().take(samples.len()) {
                let n = crate::le::u32_at(f, 0) as usize / 4 - 1;
                for i in 0..n {
                    let (a, b) = (
                        crate::le::u32_at(f, 4 * i) as usize,
                        crate::le::u32_at(f, 4 * i + 4) as usize,
                    );
                    entries.push(&f[a..b]);
                }
            }
            for (size, per_entry) in [16usize << 10, 32 << 10, 64 << 10]
                .into_iter()
                .flat_map(|s| [(s, false), (s, true)])
            {
                let t = std::time::Instant::now();
                let d = Dictionary::new(
                    1,
                    train(if per_entry { &entries } else { &samples }, size).unwrap(),
                )
                .unwrap();
                let ms = t.elapsed().as_millis();
                let e = d.encoder(1).unwrap();
                let with: usize = test.iter().map(|f| e.compress(&mut z, f).unwrap().len()).sum();
                eprintln!(
                    "trained on {train_mib} MiB, {} KiB, {}: {:.4} (training {ms} ms)",
                    size >> 10,
                    if per_entry {
                        "entries as samples"
                    } else {
                        "frames as samples"
                    },
                    with as f64 / raw as f64
                );
            }
        }
    }
}
