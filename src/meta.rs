//! Hard state (term and vote) in its own small file, so saving it never queues behind a cold-tier
//! redb commit.
//!
//! Two 64-byte slots; each save writes the slot the previous save did not use, then fdatasyncs. A save
//! torn by a crash damages only its own slot (caught by the checksum), and the other slot still holds
//! the previous state, so the state is never torn.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::BufMut;
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::proto::{HardState, VotedFor};

const SLOT: u64 = 64;
const MAGIC: &[u8; 4] = b"TLHS";

pub(crate) struct HardStateFile {
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    /// `None` once the engine is closed, so a stale handle cannot write over a reopened engine's
    /// hard state.
    file: Option<File>,
    seq: u64,
    current: Option<HardState>,
}

fn encode(seq: u64, hs: &HardState) -> Vec<u8> {
    let mut b = Vec::with_capacity(SLOT as usize);
    b.put_slice(MAGIC);
    b.put_u64_le(seq);
    b.put_u64_le(hs.current_term);
    let v = hs.voted_for.unwrap_or_default();
    b.put_u8(hs.voted_for.is_some() as u8 | (v.committed as u8) << 1);
    b.put_u64_le(v.voted_for_id);
    b.put_u64_le(v.voted_for_term);
    b.put_u32_le(crc32c::crc32c(&b));
    b.resize(SLOT as usize, 0);
    b
}

fn decode(b: &[u8]) -> Option<(u64, HardState)> {
    if b.len() < 41 || &b[0..4] != MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(b[37..41].try_into().ok()?);
    if crc32c::crc32c(&b[..37]) != crc {
        return None;
    }
    let u64_at = |p: usize| u64::from_le_bytes(b[p..p + 8].try_into().unwrap_or_default());
    let flags = b[20];
    let voted_for = (flags & 1 == 1).then(|| VotedFor {
        voted_for_id: u64_at(21),
        voted_for_term: u64_at(29),
        committed: flags & 2 == 2,
    });
    Some((
        u64_at(4),
        HardState {
            current_term: u64_at(12),
            voted_for,
        },
    ))
}

/// Reads the newest valid slot of a hard-state file without opening it for writing.
///
/// One bad slot is what a crash mid-save leaves (the other slot holds the previous state). No valid
/// slot at all is "never saved" only while at most one slot holds any bytes (a first save torn by a
/// crash); with both slots written and neither valid, the vote is lost and that is corruption, never
/// an empty state: a Raft node that forgets its vote can vote twice in one term.
pub(crate) fn read(path: &Path) -> Result<Option<(u64, HardState)>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let slots = bytes.chunks(SLOT as usize);
    if let Some(newest) = slots.clone().filter_map(decode).max_by_key(|(seq, _)| *seq) {
        return Ok(Some(newest));
    }
    if slots.filter(|s| s.iter().any(|&b| b != 0)).count() >= 2 {
        return Err(Error::corruption(
            path,
            0,
            "neither hard-state slot passes its checksum",
        ));
    }
    Ok(None)
}

impl HardStateFile {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let newest = read(path)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(HardStateFile {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                file: Some(file),
                seq: newest.map_or(0, |n| n.0),
                current: newest.map(|n| n.1),
            }),
        })
    }

    /// Writes the other slot and fdatasyncs; returns when the state survives power loss.
    pub(crate) fn save(&self, hs: &HardState) -> Result<()> {
        let mut inner = self.inner.lock();
        let seq = inner.seq + 1;
        let slot = seq % 2;
        let file = inner
            .file
            .as_ref()
            .ok_or_else(|| Error::Closed("the engine was closed".into()))?;
        crate::fuzzing::io_fault("meta::save").map_err(|e| Error::io(&self.path, e))?;
        file.write_all_at(&encode(seq, hs), slot * SLOT)
            .and_then(|_| file.sync_data())
            .map_err(|e| Error::io(&self.path, e))?;
        inner.seq = seq;
        inner.current = Some(*hs);
        Ok(())
    }

    pub(crate) fn load(&self) -> Option<HardState> {
        self.inner.lock().current
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
        assert_eq!(read(&path).unwrap().unwrap().1, b);
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
    fn a_torn_first_save_reads_as_never_saved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hardstate");
        // The first save (seq 1) goes to slot 1; a crash mid-write leaves slot 0 a hole of zeroes.
        let mut bytes = vec![0u8; SLOT as usize];
        bytes.extend_from_slice(&encode(1, &HardState::default())[..20]);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(HardStateFile::open(&path).unwrap().load(), None);
    }
}
