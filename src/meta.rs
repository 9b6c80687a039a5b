//! Small metadata files that must be durable and never torn: the hard state (term and vote) and the
//! application's metadata blob. Each lives in its own file, so saving it never queues behind a
//! cold-tier redb commit.
//!
//! A file is two fixed-size slots; each save writes the slot the previous save did not use, then
//! fdatasyncs. A save torn by a crash damages only its own slot (caught by the checksum), and the
//! other slot still holds the previous value, so a value is never torn.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::le::{u32_at, u64_at};
use crate::proto::{HardState, VotedFor};

/// What one slot holds after its magic and sequence number; the checksum follows it.
pub(crate) trait SlotValue: Clone + Sized {
    const MAGIC: &'static [u8; 4];
    /// Slot size in bytes (a slot is written whole).
    const SLOT: u64;
    /// For messages: what the file holds.
    const WHAT: &'static str;
    fn put(&self, out: &mut Vec<u8>);
    /// Parses a value from the bytes after the sequence number; returns it and the bytes it took.
    /// Must be safe on garbage: the checksum is verified after.
    fn parse(b: &[u8]) -> Option<(Self, usize)>;
}

impl SlotValue for HardState {
    const MAGIC: &'static [u8; 4] = b"TLHS";
    const SLOT: u64 = 64;
    const WHAT: &'static str = "hard-state";

    fn put(&self, b: &mut Vec<u8>) {
        b.put_u64_le(self.current_term);
        let v = self.voted_for.unwrap_or_default();
        b.put_u8(self.voted_for.is_some() as u8 | (v.committed as u8) << 1);
        b.put_u64_le(v.voted_for_id);
        b.put_u64_le(v.voted_for_term);
    }

    fn parse(b: &[u8]) -> Option<(Self, usize)> {
        // Field offsets within the value, each after the previous field (`docs/format.md`).
        const TERM_AT: usize = 0;
        const FLAGS_AT: usize = TERM_AT + 8;
        const VOTED_ID_AT: usize = FLAGS_AT + 1;
        const VOTED_TERM_AT: usize = VOTED_ID_AT + 8;
        const LEN: usize = VOTED_TERM_AT + 8;
        let b = b.get(..LEN)?;
        let flags = b[FLAGS_AT];
        let voted_for = VotedFor {
            voted_for_id: u64_at(b, VOTED_ID_AT),
            voted_for_term: u64_at(b, VOTED_TERM_AT),
            committed: flags & 2 == 2,
        };
        let hs = HardState {
            current_term: u64_at(b, TERM_AT),
            voted_for: (flags & 1 == 1).then_some(voted_for),
        };
        Some((hs, LEN))
    }
}

/// The hard state and metadata blob of a group other than 0, which keeps them in the write-ahead
/// log and its cold checkpoint instead of in files of its own (group 0's are `HardStateFile` and
/// `AppMetaFile`, as before groups existed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LoggedMeta {
    pub hard_state: Option<HardState>,
    pub app_meta: Option<Bytes>,
}

/// The application's metadata blob (see `TierMetaStore::save_app_meta`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AppMeta(pub Bytes);

impl AppMeta {
    /// The largest blob a 4 KiB slot holds next to its magic, sequence number, length and checksum.
    pub(crate) const MAX_LEN: usize = 4096 - 4 - 8 - 4 - 4;
}

impl SlotValue for AppMeta {
    const MAGIC: &'static [u8; 4] = b"TLAM";
    const SLOT: u64 = 4096;
    const WHAT: &'static str = "application metadata";

    fn put(&self, b: &mut Vec<u8>) {
        b.put_u32_le(self.0.len() as u32);
        b.put_slice(&self.0);
    }

    fn parse(b: &[u8]) -> Option<(Self, usize)> {
        const BLOB_AT: usize = 4;
        let len = u32_at(b.get(..BLOB_AT)?, 0) as usize;
        if len > Self::MAX_LEN {
            return None;
        }
        let blob = b.get(BLOB_AT..BLOB_AT + len)?;
        Some((AppMeta(Bytes::copy_from_slice(blob)), BLOB_AT + len))
    }
}

fn encode<V: SlotValue>(seq: u64, value: &V) -> Vec<u8> {
    let mut b = Vec::with_capacity(V::SLOT as usize);
    b.put_slice(V::MAGIC);
    b.put_u64_le(seq);
    value.put(&mut b);
    b.put_u32_le(crc32c::crc32c(&b));
    debug_assert!(b.len() <= V::SLOT as usize);
    b.resize(V::SLOT as usize, 0);
    b
}

/// Slot field offsets: magic, sequence number, value, then the checksum of all before it.
const SEQ_AT: usize = 4;
const VALUE_AT: usize = SEQ_AT + 8;

fn decode<V: SlotValue>(b: &[u8]) -> Option<(u64, V)> {
    if b.get(..SEQ_AT)? != V::MAGIC {
        return None;
    }
    let seq = u64_at(b.get(..VALUE_AT)?, SEQ_AT);
    let (value, len) = V::parse(b.get(VALUE_AT..)?)?;
    let end = VALUE_AT + len;
    let crc = u32_at(b.get(end..end + 4)?, 0);
    (crc32c::crc32c(&b[..end]) == crc).then_some((seq, value))
}

/// Reads the newest valid slot of a slot file without opening it for writing.
///
/// One bad slot is what a crash mid-save leaves (the other slot holds the previous value). No valid
/// slot at all is "never saved" only while at most one slot holds any bytes (a first save torn by a
/// crash); with both slots written and neither valid, the value is lost and that is corruption, never
/// an empty state: a Raft node that forgets its vote can vote twice in one term.
pub(crate) fn read<V: SlotValue>(path: &Path) -> Result<Option<(u64, V)>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let slots = bytes.chunks(V::SLOT as usize);
    if let Some(newest) = slots.clone().filter_map(decode::<V>).max_by_key(|(seq, _)| *seq) {
        return Ok(Some(newest));
    }
    if slots.filter(|s| s.iter().any(|&b| b != 0)).count() >= 2 {
        return Err(Error::corruption_of_file(
            path,
            format!("neither {} slot passes its checksum", V::WHAT),
        ));
    }
    Ok(None)
}

/// A two-slot file holding one value of type `V`, cached in memory.
pub(crate) struct SlotFile<V> {
    path: PathBuf,
    inner: Mutex<Inner<V>>,
}

/// The hard-state file.
pub(crate) type HardStateFile = SlotFile<HardState>;
/// The application-metadata file.
pub(crate) type AppMetaFile = SlotFile<AppMeta>;

struct Inner<V> {
    /// `None` once the engine is closed, so a stale handle cannot write over a reopened engine's
    /// file.
    file: Option<File>,
    seq: u64,
    current: Option<V>,
}

impl<V: SlotValue> SlotFile<V> {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let newest = read::<V>(path)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let (seq, current) = match newest {
            Some((seq, v)) => (seq, Some(v)),
            None => (0, None),
        };
        Ok(SlotFile {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                file: Some(file),
                seq,
                current,
            }),
        })
    }

    /// Writes the other slot and fdatasyncs; returns when the value survives power loss.
    pub(crate) fn save(&self, value: &V) -> Result<()> {
        let mut inner = self.inner.lock();
        let seq = inner.seq + 1;
        let slot = seq % 2;
        let file = inner
            .file
            .as_ref()
            .ok_or_else(|| Error::Closed("the engine was closed".into()))?;
        crate::failpoints::io_fault("meta::save").map_err(|e| Error::io(&self.path, e))?;
        file.write_all_at(&encode(seq, value), slot * V::SLOT)
            .and_then(|_| file.sync_data())
            .map_err(|e| Error::io(&self.path, e))?;
        inner.seq = seq;
        inner.current = Some(value.clone());
        Ok(())
    }

    pub(crate) fn load(&self) -> Option<V> {
        self.inner.lock().current.clone()
    }

    /// Releases the file; a save in flight finishes first (it holds the lock), later ones fail.
    pub(crate) fn close(&self) {
        self.inner.lock().file = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_valid_slot_wins_and_a_torn_slot_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hardstate");
        let f = HardStateFile::open(&path).unwrap();
        assert_eq!(f.load(), None);
        let a = HardState {
            current_term: 3,
            voted_for: Some(VotedFor {
                voted_for_id: 2,
                voted_for_term: 3,
                committed: true,
            }),
        };
        let b = HardState {
            current_term: 4,
            voted_for: None,
        };
        f.save(&a).unwrap();
        f.save(&b).unwrap();
        drop(f);
        assert_eq!(read::<HardState>(&path).unwrap().unwrap().1, b);
        // Damage the newer slot (seq 2 lives in slot 0): the older state must come back.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[14] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(HardStateFile::open(&path).unwrap().load(), Some(a));
        // Both slots damaged: the vote is gone, which must be reported, not read as "no vote".
        bytes[64 + 14] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let err = HardStateFile::open(&path).err().expect("both slots bad");
        assert!(err.is_corruption(), "{err}");
        assert!(err.to_string().contains("hardstate"), "{err}");
    }

    #[test]
    fn hard_state_slot_layout_is_the_documented_one() {
        // docs/format.md: magic, seq, term, flags, id, vote term, crc32c of bytes 0..37, zeroes.
        let hs = HardState {
            current_term: 7,
            voted_for: Some(VotedFor {
                voted_for_id: 3,
                voted_for_term: 6,
                committed: true,
            }),
        };
        let b = encode(9, &hs);
        assert_eq!(b.len(), 64);
        assert_eq!(&b[0..4], b"TLHS");
        assert_eq!(b[4..12], 9u64.to_le_bytes());
        assert_eq!(b[12..20], 7u64.to_le_bytes());
        assert_eq!(b[20], 0b11);
        assert_eq!(b[21..29], 3u64.to_le_bytes());
        assert_eq!(b[29..37], 6u64.to_le_bytes());
        assert_eq!(b[37..41], crc32c::crc32c(&b[..37]).to_le_bytes());
        assert!(b[41..].iter().all(|&x| x == 0));
        assert_eq!(decode::<HardState>(&b), Some((9, hs)));
    }

    #[test]
    fn app_meta_round_trips_up_to_its_limit_and_survives_a_torn_slot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("appmeta");
        let f = AppMetaFile::open(&path).unwrap();
        assert_eq!(f.load(), None);
        let small = AppMeta(Bytes::from_static(b"{\"vote\":1}"));
        let full = AppMeta(Bytes::from(vec![0xA5; AppMeta::MAX_LEN]));
        f.save(&small).unwrap();
        f.save(&full).unwrap();
        drop(f);
        assert_eq!(AppMetaFile::open(&path).unwrap().load(), Some(full));
        // Tear the newer slot (seq 2, slot 0): the previous blob comes back.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[2000] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(AppMetaFile::open(&path).unwrap().load(), Some(small));
        // A length field pointing past the slot is garbage, not a panic or a huge allocation.
        bytes[4096 + 12..4096 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert!(AppMetaFile::open(&path).err().unwrap().is_corruption());
    }

    #[test]
    fn a_torn_first_save_reads_as_never_saved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hardstate");
        // The first save (seq 1) goes to slot 1; a crash mid-write leaves slot 0 a hole of zeroes.
        let mut bytes = vec![0u8; HardState::SLOT as usize];
        bytes.extend_from_slice(&encode(1, &HardState::default())[..20]);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(HardStateFile::open(&path).unwrap().load(), None);
    }
}
