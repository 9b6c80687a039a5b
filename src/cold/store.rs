//! The cold tier's durable home: blocks, their index and the checkpoint, in one redb file.
//!
//! Only the compactor thread writes (one transaction per round, blocks and checkpoint together, so a
//! crash leaves either the old or the new checkpoint). Readers open short read transactions and never
//! hold one across rounds, so redb can reuse freed pages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use redb::{
    Database, Durability, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
};

use super::block::{self, BlockMeta, DecodedBlock};
use crate::error::{Error, Result};
use crate::proto::LogId;

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// first index -> (id, last index, raw bytes, stored bytes): lets `open` build the block index
/// without reading any block.
const INDEX: TableDefinition<u64, (u64, u64, u64, u64)> = TableDefinition::new("block_index");
const CHECKPOINT: TableDefinition<&str, u64> = TableDefinition::new("checkpoint");

/// The durable cold checkpoint: the log at write-ahead sequence `applied_seq`, restricted to indices
/// `<= cold_hi`, is exactly the blocks (minus the purged prefix).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub cold_hi: u64,
    pub applied_seq: u64,
    pub purged: Option<LogId>,
    pub next_block_id: u64,
}

/// Everything one compaction round changes, applied in one transaction.
#[derive(Default)]
pub(crate) struct CommitPlan {
    /// Delete every block starting above this index (truncated or stale content).
    pub cut_above: Option<u64>,
    /// Replace a block straddling the cut by its kept prefix (same id).
    pub trim: Option<(BlockMeta, Vec<u8>)>,
    /// Delete every block whose last index is at or below this (purged).
    pub purge_upto: u64,
    pub inserts: Vec<(BlockMeta, Vec<u8>)>,
    pub checkpoint: Checkpoint,
}

pub(crate) struct ColdStore {
    /// `None` once the engine is closed: redb's file lock goes with the database, so the directory
    /// can be reopened even while stale handles to the old engine still exist.
    db: RwLock<Option<Db>>,
    path: PathBuf,
    /// Where a repaired copy lives (offline tools over a crashed engine's file); declared after
    /// `db` so the database is closed before the directory is removed.
    scratch: Option<tempfile::TempDir>,
}

/// The engine writes; offline tools open the same file read-only so they never modify it.
enum Db {
    ReadWrite(Database),
    ReadOnly(ReadOnlyDatabase),
}

impl Db {
    fn begin_read_tx(&self) -> std::result::Result<ReadTransaction, redb::TransactionError> {
        match self {
            Db::ReadWrite(db) => db.begin_read(),
            Db::ReadOnly(db) => db.begin_read(),
        }
    }

    fn writable(&self) -> Option<&Database> {
        match self {
            Db::ReadWrite(db) => Some(db),
            Db::ReadOnly(_) => None,
        }
    }
}

pub(crate) type BlockIndex = BTreeMap<u64, BlockMeta>;

/// redb's page cache for the offline tools. redb's default is 1 GiB, and `verify` reads every block
/// once, so with the default the cache grew toward the size of the whole file; the engine's own
/// setting tops out at the same 16 MiB.
const OFFLINE_CACHE_BYTES: usize = 16 << 20;

fn closed() -> Error {
    Error::Closed("the engine was closed".into())
}

impl ColdStore {
    /// Opens or creates the redb file with a read cache of `cache_bytes`.
    pub(crate) fn open(path: &Path, cache_bytes: usize) -> Result<(ColdStore, Checkpoint, BlockIndex)> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| Error::redb(path, e))?;
        // Make sure the tables exist so later read transactions never fail on a missing table.
        let mut tx = db.begin_write().map_err(|e| Error::redb(path, e))?;
        tx.set_quick_repair(true);
        {
            let err = |e| Error::redb(path, e);
            tx.open_table(BLOCKS).map_err(err)?;
            tx.open_table(INDEX).map_err(err)?;
            tx.open_table(CHECKPOINT).map_err(err)?;
        }
        tx.commit().map_err(|e| Error::redb(path, e))?;
        let (cp, index) = read_state(&db, path)?;
        Ok((Self::wrap(Db::ReadWrite(db), path, None), cp, index))
    }

    fn wrap(db: Db, path: &Path, scratch: Option<tempfile::TempDir>) -> ColdStore {
        ColdStore {
            db: RwLock::new(Some(db)),
            path: path.to_path_buf(),
            scratch,
        }
    }

    /// Opens an existing file without writing to it (offline tools).
    ///
    /// A file last written by an engine that crashed needs redb's repair before it can be read, and
    /// repair writes. That is exactly when an operator inspects, so instead of failing, the file is
    /// copied into a scratch directory and the copy is repaired and read; the original stays as it
    /// was (the engine repairs it on its next open). [`ColdStore::read_from_repaired_copy`] says so.
    pub(crate) fn open_read_only(path: &Path) -> Result<(ColdStore, Checkpoint, BlockIndex)> {
        if !path.exists() {
            return Err(Error::Config(format!("{} does not exist", path.display())));
        }
        match Database::builder()
            .set_cache_size(OFFLINE_CACHE_BYTES)
            .open_read_only(path)
        {
            Ok(db) => {
                let (cp, index) = read_state(&db, path)?;
                Ok((Self::wrap(Db::ReadOnly(db), path, None), cp, index))
            }
            Err(redb::DatabaseError::RepairAborted) => Self::open_repaired_copy(path),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(Error::Config(format!(
                "{} is open in a running engine; stop it first (a live file cannot be read consistently)",
                path.display()
            ))),
            Err(e) => Err(Error::redb(path, e)),
        }
    }

    fn open_repaired_copy(path: &Path) -> Result<(ColdStore, Checkpoint, BlockIndex)> {
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| Error::Io { path: p, source }
        };
        let scratch = tempfile::Builder::new()
            .prefix("tierlog-inspect-")
            .tempdir()
            .map_err(io(&std::env::temp_dir()))?;
        let copy = scratch.path().join("cold.redb");
        std::fs::copy(path, &copy).map_err(io(path))?;
        // Reports errors against the original file: that is the one the operator named.
        let db = Database::builder()
            .set_cache_size(OFFLINE_CACHE_BYTES)
            .create(&copy)
            .map_err(|e| Error::redb(path, e))?;
        let (cp, index) = read_state(&db, path)?;
        Ok((Self::wrap(Db::ReadWrite(db), path, Some(scratch)), cp, index))
    }

    /// True when an offline tool reads a repaired scratch copy because the file was not closed
    /// cleanly (see [`ColdStore::open_read_only`]).
    pub(crate) fn read_from_repaired_copy(&self) -> bool {
        self.scratch.is_some()
    }

    /// Reads and decodes every stored block in key order, calling `f` with each (offline verify).
    pub(crate) fn for_each_block(
        &self,
        mut f: impl FnMut(u64, std::result::Result<DecodedBlock, String>),
    ) -> Result<()> {
        let tx = self.begin_read()?;
        let table = tx.open_table(BLOCKS).map_err(|e| self.err(e))?;
        for row in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            f(k.value(), block::decode(v.value()));
        }
        Ok(())
    }

    /// Closes the database (the engine is closing; the compactor has stopped). Reads already in a
    /// transaction finish; later ones get [`Error::Closed`].
    pub(crate) fn close(&self) {
        self.db.write().take();
    }

    fn begin_read(&self) -> Result<ReadTransaction> {
        let db = self.db.read();
        let db = db.as_ref().ok_or_else(closed)?;
        db.begin_read_tx().map_err(|e| self.err(e))
    }

    fn err(&self, e: impl Into<redb::Error>) -> Error {
        Error::redb(&self.path, e)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the stored blocks of `metas` in one read transaction. A block that is gone or was
    /// replaced by another (different id) yields `None`: the caller's view of the index is older than
    /// the last commit and it must look again.
    pub(crate) fn read_blocks(&self, metas: &[BlockMeta]) -> Result<Vec<Option<Arc<DecodedBlock>>>> {
        crate::fuzzing::io_fault("cold::read").map_err(|e| self.err(e))?;
        let tx = self.begin_read()?;
        let table = tx.open_table(BLOCKS).map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(metas.len());
        for m in metas {
            let Some(guard) = table.get(m.first).map_err(|e| self.err(e))? else {
                out.push(None);
                continue;
            };
            let stored = guard.value();
            let id = block::check(stored).map(|h| h.0);
            if matches!(id, Ok(id) if id != m.id) {
                out.push(None);
                continue;
            }
            let decoded = block::decode(stored)
                .map_err(|reason| Error::corruption_at_index(&self.path, m.first, reason))?;
            out.push(Some(Arc::new(decoded)));
        }
        Ok(out)
    }

    /// Applies one round durably (fsync before returning).
    pub(crate) fn commit(&self, plan: &CommitPlan, index: &BlockIndex) -> Result<()> {
        crate::fuzzing::io_fault("cold::commit").map_err(|e| self.err(e))?;
        let guard = self.db.read();
        let db = guard
            .as_ref()
            .ok_or_else(closed)?
            .writable()
            .ok_or_else(|| Error::Config("cold store opened read-only".into()))?;
        let mut tx = db.begin_write().map_err(|e| self.err(e))?;
        tx.set_quick_repair(true);
        tx.set_durability(Durability::Immediate)
            .map_err(|e| self.err(e))?;
        {
            let mut blocks = tx.open_table(BLOCKS).map_err(|e| self.err(e))?;
            let mut idx = tx.open_table(INDEX).map_err(|e| self.err(e))?;
            let mut doomed: Vec<u64> = Vec::new();
            if let Some(cut) = plan.cut_above {
                doomed.extend(index.range(cut.saturating_add(1)..).map(|(k, _)| *k));
            }
            doomed.extend(
                index
                    .values()
                    .take_while(|m| m.last <= plan.purge_upto)
                    .map(|m| m.first),
            );
            for k in doomed {
                blocks.remove(k).map_err(|e| self.err(e))?;
                idx.remove(k).map_err(|e| self.err(e))?;
            }
            for (m, stored) in plan.trim.iter().chain(plan.inserts.iter()) {
                blocks
                    .insert(m.first, stored.as_slice())
                    .map_err(|e| self.err(e))?;
                idx.insert(m.first, (m.id, m.last, m.raw_len, m.stored_len))
                    .map_err(|e| self.err(e))?;
            }
            let mut cp = tx.open_table(CHECKPOINT).map_err(|e| self.err(e))?;
            let c = &plan.checkpoint;
            let (pt, pi, has) = c.purged.map_or((0, 0, 0), |p| (p.term, p.index, 1));
            for (k, v) in [
                ("cold_hi", c.cold_hi),
                ("applied_seq", c.applied_seq),
                ("purged_term", pt),
                ("purged_index", pi),
                ("has_purged", has),
                ("next_block_id", c.next_block_id),
            ] {
                cp.insert(k, v).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Size of the redb file.
    pub(crate) fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}

/// Reads checkpoint and block index (shared by `open` and the read-only offline tools).
fn read_state(db: &impl ReadableDatabase, path: &Path) -> Result<(Checkpoint, BlockIndex)> {
    let err = |e: redb::Error| Error::redb(path, e);
    let tx = db.begin_read().map_err(|e| err(e.into()))?;
    let cpt = tx.open_table(CHECKPOINT).map_err(|e| err(e.into()))?;
    let get =
        |k: &str| -> Result<u64> { Ok(cpt.get(k).map_err(|e| err(e.into()))?.map_or(0, |g| g.value())) };
    let purged = (get("has_purged")? == 1).then(|| LogId {
        term: get("purged_term").unwrap_or(0),
        index: get("purged_index").unwrap_or(0),
    });
    let cp = Checkpoint {
        cold_hi: get("cold_hi")?,
        applied_seq: get("applied_seq")?,
        purged,
        next_block_id: get("next_block_id")?.max(1),
    };
    let idx = tx.open_table(INDEX).map_err(|e| err(e.into()))?;
    let mut index = BlockIndex::new();
    for row in idx.iter().map_err(|e| err(e.into()))? {
        let (k, v) = row.map_err(|e| err(e.into()))?;
        let (id, last, raw_len, stored_len) = v.value();
        let first = k.value();
        if last < first {
            return Err(Error::corruption_at_index(
                path,
                first,
                "block index entry ends before it starts",
            ));
        }
        index.insert(
            first,
            BlockMeta {
                id,
                first,
                last,
                raw_len,
                stored_len,
            },
        );
    }
    Ok((cp, index))
}
