//! Two peers written here: a straightforward redb log store, and the raw-file physical limit.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use prost::Message;
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use rustix::fs::FallocateFlags;

use crate::peer::{Ent, Peer, R};

const LOG: TableDefinition<[u8; 8], &[u8]> = TableDefinition::new("log");

/// One redb row per entry: big-endian u64 key, prost-encoded entry value; a commit per append.
pub struct RedbStore {
    path: PathBuf,
    db: Option<Database>,
}

impl RedbStore {
    /// Creates or opens `dir/log.redb` with redb's default settings.
    pub fn open(dir: &Path) -> R<RedbStore> {
        let path = dir.join("log.redb");
        let db = Database::create(&path)?;
        let w = db.begin_write()?;
        w.open_table(LOG)?;
        w.commit()?;
        Ok(RedbStore { path, db: Some(db) })
    }

    fn db(&self) -> R<&Database> {
        self.db.as_ref().ok_or_else(|| "redb is closed".into())
    }

    fn commit(&self, durable: bool, f: impl FnOnce(&mut redb::Table<[u8; 8], &[u8]>) -> R<()>) -> R<()> {
        let mut w = self.db()?.begin_write()?;
        w.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        {
            let mut t = w.open_table(LOG)?;
            f(&mut t)?;
        }
        w.commit()?;
        Ok(())
    }
}

impl Peer for RedbStore {
    fn append(&mut self, batch: &[Ent], sync: bool) -> R<()> {
        self.commit(sync, |t| {
            let mut buf = Vec::new();
            for e in batch {
                buf.clear();
                tierlog::Entry::new(e.index, e.term, e.payload.clone()).encode(&mut buf)?;
                t.insert(e.index.to_be_bytes(), buf.as_slice())?;
            }
            Ok(())
        })
    }

    fn flush(&mut self) -> R<()> {
        self.commit(true, |_| Ok(()))
    }

    fn read_range(&mut self, lo: u64, hi: u64) -> R<(u64, u64)> {
        let r = self.db()?.begin_read()?;
        let t = r.open_table(LOG)?;
        let (mut n, mut bytes) = (0, 0);
        for row in t.range(lo.to_be_bytes()..=hi.to_be_bytes())? {
            let (_, v) = row?;
            let e = tierlog::Entry::decode(v.value())?;
            n += 1;
            bytes += e.payload.len() as u64;
        }
        Ok((n, bytes))
    }

    fn read_one(&mut self, index: u64) -> R<Option<usize>> {
        let r = self.db()?.begin_read()?;
        let t = r.open_table(LOG)?;
        match t.get(index.to_be_bytes())? {
            Some(v) => Ok(Some(tierlog::Entry::decode(v.value())?.payload.len())),
            None => Ok(None),
        }
    }

    fn purge(&mut self, upto: u64) -> R<()> {
        self.commit(true, |t| {
            t.retain_in(..=upto.to_be_bytes(), |_, _| false)?;
            Ok(())
        })
    }

    fn reopen(&mut self) -> R<()> {
        self.db = None;
        self.db = Some(Database::create(&self.path)?);
        Ok(())
    }
}

/// The physical limit: frames `[u64 index][u32 len][payload]` appended with one `pwrite` per batch,
/// `fdatasync` when asked; reads are `pread`s of the same bytes, or `memcpy`s from a copy in
/// memory while one is kept. Fixed-size payloads give every index a fixed offset.
pub struct Raw {
    path: PathBuf,
    file: File,
    stride: u64,
    base: u64,
    end: u64,
    /// In-memory copy of every frame written (the memcpy limit for hot reads), if kept.
    mem: Option<Vec<u8>>,
}

impl Raw {
    /// Creates `dir/raw.log`; `prealloc` bytes are written as zeros and synced first, so later
    /// fdatasyncs have no size or extent change to record.
    pub fn open(dir: &Path, payload_size: usize, prealloc: u64, keep_in_memory: bool) -> R<Raw> {
        let path = dir.join("raw.log");
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        if prealloc > 0 {
            let zeros = vec![0u8; 1 << 20];
            let mut off = 0;
            while off < prealloc {
                file.write_all_at(&zeros, off)?;
                off += zeros.len() as u64;
            }
            file.sync_all()?;
        }
        Ok(Raw {
            path,
            file,
            stride: 12 + payload_size as u64,
            base: 0,
            end: 0,
            mem: keep_in_memory.then(Vec::new),
        })
    }

    fn offset(&self, index: u64) -> u64 {
        (index - self.base) * self.stride
    }
}

impl Peer for Raw {
    fn append(&mut self, batch: &[Ent], sync: bool) -> R<()> {
        let Some(first) = batch.first() else { return Ok(()) };
        if self.end == 0 {
            self.base = first.index;
        }
        let mut buf = Vec::with_capacity(batch.len() * self.stride as usize);
        for e in batch {
            if e.payload.len() as u64 + 12 != self.stride {
                return Err("the raw limit needs fixed-size payloads".into());
            }
            buf.extend_from_slice(&e.index.to_le_bytes());
            buf.extend_from_slice(&(e.payload.len() as u32).to_le_bytes());
            buf.extend_from_slice(&e.payload);
        }
        let off = self.offset(first.index);
        self.file.write_all_at(&buf, off)?;
        self.end = self.end.max(off + buf.len() as u64);
        if let Some(mem) = &mut self.mem {
            mem.truncate(off as usize);
            mem.extend_from_slice(&buf);
        }
        if sync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> R<()> {
        Ok(self.file.sync_data()?)
    }

    fn read_range(&mut self, lo: u64, hi: u64) -> R<(u64, u64)> {
        let (start, end) = (self.offset(lo), self.offset(hi + 1).min(self.end));
        if end <= start {
            return Ok((0, 0));
        }
        let mut out = vec![0u8; (end - start) as usize];
        match &self.mem {
            Some(mem) => out.copy_from_slice(&mem[start as usize..end as usize]),
            None => self.file.read_exact_at(&mut out, start)?,
        }
        let n = out.len() as u64 / self.stride;
        Ok((n, n * (self.stride - 12)))
    }

    fn read_one(&mut self, index: u64) -> R<Option<usize>> {
        if index < self.base || self.offset(index) >= self.end {
            return Ok(None);
        }
        let mut frame = vec![0u8; self.stride as usize];
        self.file.read_exact_at(&mut frame, self.offset(index))?;
        Ok(Some(
            u32::from_le_bytes([frame[8], frame[9], frame[10], frame[11]]) as usize,
        ))
    }

    fn purge(&mut self, upto: u64) -> R<()> {
        // Punching a hole frees the blocks, the least work any store can do to drop a prefix.
        let len = self.offset(upto + 1).min(self.end);
        rustix::fs::fallocate(
            &self.file,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            0,
            len,
        )?;
        Ok(())
    }

    fn reopen(&mut self) -> R<()> {
        self.mem = None;
        self.file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        Ok(())
    }
}
