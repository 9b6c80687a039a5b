//! The cold tier's durable home: blocks, their index and the checkpoint, in one redb file.
//!
//! Only the compactor thread writes (one transaction per round, blocks and checkpoint together, so a
//! crash leaves either the old or the new checkpoint). Readers open short read transactions and never
//! hold one across rounds, so redb can reuse freed pages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{RwLock, RwLockWriteGuard};

use redb::{
    Database, Durability, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
};

use bytes::{Buf, BufMut};

use super::block::{self, BlockMeta};
use super::dict::{Dictionaries, Dictionary};
use crate::error::{Error, Result};
use crate::meta::{AppMeta, LoggedMeta, SlotValue};
use crate::proto::{GroupId, HardState, LogId};

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// first index -> (id, last index, raw bytes, stored bytes): lets `open` build the block index
/// without reading any block.
const INDEX: TableDefinition<u64, (u64, u64, u64, u64)> = TableDefinition::new("block_index");
const CHECKPOINT: TableDefinition<&str, u64> = TableDefinition::new("checkpoint");
/// (group, first index) -> block, for groups other than 0 (group 0's blocks stay in `blocks`, where
/// a directory written before groups existed has them).
const GROUP_BLOCKS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("group_blocks");
/// (group, first index) -> the same row as `block_index`, for groups other than 0.
const GROUP_INDEX: TableDefinition<(u64, u64), (u64, u64, u64, u64)> =
    TableDefinition::new("group_block_index");
/// Group id -> the group's checkpoint and metadata (a `GroupRow`), for groups other than 0 (group
/// 0's checkpoint is the `checkpoint` table's).
const GROUPS: TableDefinition<u64, &[u8]> = TableDefinition::new("groups");
/// Dictionary id -> the dictionary's stored form (`dict::Dictionary::stored`). Created by the first
/// commit that writes a dictionary: a store without one has no such table.
const DICTIONARIES: TableDefinition<u32, &[u8]> = TableDefinition::new("dictionaries");

/// A group's durable cold checkpoint: the group's log at write-ahead sequence `applied_seq`,
/// restricted to indices `<= cold_hi`, is exactly its blocks (minus the purged prefix).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub cold_hi: u64,
    pub applied_seq: u64,
    pub purged: Option<LogId>,
    /// The sequence number of the record that created the group (0 for group 0): records of its
    /// id before it belong to an earlier group of the same id.
    pub created_seq: u64,
}

/// What the file holds beside the groups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Head {
    /// The next block id to hand out (ids are unique across groups: the frame cache is keyed by it).
    pub next_block_id: u64,
    /// Every write-ahead record after this one may still be needed (see `wal::Bounds::floor`);
    /// `None` in a file written before groups existed (group 0's `applied_seq` then stands for it).
    pub wal_floor: Option<u64>,
}

/// A group as the file holds it.
#[derive(Debug, Default)]
pub(crate) struct StoredGroup {
    pub checkpoint: Checkpoint,
    pub index: BlockIndex,
    /// Hard state and metadata as of `applied_seq` (groups other than 0).
    pub meta: LoggedMeta,
}

/// What one group's part of a compaction round changes.
#[derive(Default)]
pub(crate) struct GroupPlan {
    pub group: GroupId,
    /// The group's blocks before the round (what the deletions below are taken from).
    pub index: Arc<BlockIndex>,
    /// Delete every block stored under the group's id first: they belong to an earlier group of
    /// the same id (removed, then created again before its deletion was committed).
    pub wipe: bool,
    /// Delete every block starting above this index (truncated or stale content).
    pub cut_above: Option<u64>,
    /// Replace a block straddling the cut by its kept prefix (same id).
    pub trim: Option<(BlockMeta, Vec<u8>)>,
    /// Delete every block whose last index is at or below this (purged).
    pub purge_upto: u64,
    pub inserts: Vec<(BlockMeta, Vec<u8>)>,
    pub checkpoint: Checkpoint,
    /// Hard state and metadata as of the checkpoint (groups other than 0).
    pub meta: LoggedMeta,
}

/// Everything one compaction round changes, for every group it serves, applied in one transaction.
#[derive(Default)]
pub(crate) struct CommitPlan {
    pub groups: Vec<GroupPlan>,
    /// Groups removed: their row and every block stored under their id go.
    pub removed: Vec<GroupId>,
    /// A dictionary the round's blocks are the first to name: committed with them, so no durable
    /// block names a dictionary that is not durable too.
    pub dictionary: Option<Arc<Dictionary>>,
    pub head: Head,
}

pub(crate) struct ColdStore {
    /// `None` once the engine is closed: redb's file lock goes with the database, so the directory
    /// can be reopened even while stale handles to the old engine still exist. Also `None` while a
    /// reopen after an I/O failure has not succeeded yet (`reopen`). Every use of a transaction
    /// happens under the read guard, so a reopen (write guard) never closes the database under one.
    db: RwLock<Option<Db>>,
    path: PathBuf,
    /// The file's compression dictionaries, read at open; a new one is added before the commit
    /// that stores it, so a reader never meets a block naming a dictionary it lacks.
    dicts: RwLock<Arc<Dictionaries>>,
    /// redb's read cache, for a reopen.
    cache_bytes: usize,
    /// Set when redb reported an I/O error. redb then fails every later call, reads included, with
    /// "Previous I/O error" until the database is closed and opened again, so the next use reopens
    /// it first: a full disk must not leave the cold tier unreadable, nor compaction stopped, until
    /// the engine is restarted.
    needs_reopen: AtomicBool,
    /// Set by `close`: a closed store is never reopened.
    closed: AtomicBool,
    /// Set by an I/O error, cleared by the next successful commit. A failing write makes redb refuse
    /// every read in flight on the same database, so while the disk keeps failing (full) commits
    /// run alone, under the write guard: only the first failure can break a concurrent read, and
    /// that read is tried again on the reopened database (`read`).
    degraded: AtomicBool,
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

/// Tries of a block read that redb refused after an I/O error (see `ColdStore::read`).
const READ_ATTEMPTS: usize = 3;

pub(crate) use super::index::BlockIndex;

/// redb's page cache for the offline tools. redb's default is 1 GiB, and `verify` reads every block
/// once, so with the default the cache grew toward the size of the whole file; the engine's own
/// setting tops out at the same 16 MiB.
const OFFLINE_CACHE_BYTES: usize = 16 << 20;

fn closed() -> Error {
    Error::Closed("the engine was closed".into())
}

impl ColdStore {
    /// Opens or creates the redb file with a read cache of `cache_bytes`.
    pub(crate) fn open(path: &Path, cache_bytes: usize) -> Result<(ColdStore, Opened)> {
        let (db, opened, dicts) = guarded(path, || {
            let db = open_db(path, cache_bytes)?;
            let opened = read_state(&db, path)?;
            let dicts = read_dictionaries(&db, path)?;
            Ok((db, opened, dicts))
        })?;
        let mut store = Self::wrap(Db::ReadWrite(db), path, None, dicts);
        store.cache_bytes = cache_bytes;
        Ok((store, opened))
    }

    fn wrap(db: Db, path: &Path, scratch: Option<tempfile::TempDir>, dicts: Dictionaries) -> ColdStore {
        ColdStore {
            db: RwLock::new(Some(db)),
            path: path.to_path_buf(),
            dicts: RwLock::new(Arc::new(dicts)),
            cache_bytes: 0,
            needs_reopen: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            degraded: AtomicBool::new(false),
            scratch,
        }
    }

    /// Runs `f` on the open database, reopening it first if an earlier call met an I/O error.
    fn with_db<T>(&self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        let guard = if self.needs_reopen.load(Ordering::Acquire) {
            // Downgraded, not released: a failing commit (the disk still full) cannot slip in
            // between the reopen and this call's use of the fresh database and fail it again.
            let mut guard = self.db.write();
            self.reopen(&mut guard);
            RwLockWriteGuard::downgrade(guard)
        } else {
            self.db.read()
        };
        let db = guard.as_ref().ok_or_else(|| self.unavailable())?;
        guarded(&self.path, || f(db)).inspect_err(|e| {
            if e.is_corruption() {
                self.needs_reopen.store(true, Ordering::Release);
            }
        })
    }

    /// Why there is no database.
    fn unavailable(&self) -> Error {
        if self.closed.load(Ordering::Acquire) {
            closed()
        } else {
            Error::db(
                &self.path,
                "the cold-tier database could not be reopened after an I/O error",
            )
        }
    }

    /// Closes the database redb has marked failed and opens it again (redb repairs it from the last
    /// commit). On failure the store stays without a database and the next call tries again.
    fn reopen(&self, guard: &mut Option<Db>) {
        if self.closed.load(Ordering::Acquire) || !self.needs_reopen.load(Ordering::Acquire) {
            return;
        }
        match guard.take() {
            // Offline tools never write; a failed read-only database is left as it is.
            Some(db @ Db::ReadOnly(_)) => {
                *guard = Some(db);
                self.needs_reopen.store(false, Ordering::Release);
                return;
            }
            Some(Db::ReadWrite(db)) => {
                // Reports the latched failure again; closing is what matters.
                let _ = db.close();
            }
            None => {}
        }
        // Plain open: the tables exist, and a disk that is still full has no room for a commit.
        let opened = guarded(&self.path, || {
            Database::builder()
                .set_cache_size(self.cache_bytes)
                .create(&self.path)
                .map_err(|e| Error::redb(&self.path, e))
        });
        match opened {
            Ok(db) => {
                *guard = Some(Db::ReadWrite(db));
                self.needs_reopen.store(false, Ordering::Release);
                tracing::warn!(path = %self.path.display(), "cold-tier database reopened after an I/O error");
            }
            Err(e) => tracing::error!(error = %e, "reopening the cold-tier database failed"),
        }
    }

    /// Opens an existing file without writing to it (offline tools).
    ///
    /// A file last written by an engine that crashed needs redb's repair before it can be read, and
    /// repair writes. That is exactly when an operator inspects, so instead of failing, the file is
    /// copied into a scratch directory and the copy is repaired and read; the original stays as it
    /// was (the engine repairs it on its next open). [`ColdStore::read_from_repaired_copy`] says so.
    pub(crate) fn open_read_only(path: &Path) -> Result<(ColdStore, Opened)> {
        if !path.exists() {
            return Err(Error::io(path, std::io::ErrorKind::NotFound.into()));
        }
        guarded(path, || Self::open_read_only_in(path))
    }

    fn open_read_only_in(path: &Path) -> Result<(ColdStore, Opened)> {
        match Database::builder()
            .set_cache_size(OFFLINE_CACHE_BYTES)
            .open_read_only(path)
        {
            Ok(db) => {
                let opened = read_state(&db, path)?;
                let dicts = read_dictionaries(&db, path)?;
                Ok((Self::wrap(Db::ReadOnly(db), path, None, dicts), opened))
            }
            Err(redb::DatabaseError::RepairAborted) => Self::open_repaired_copy(path),
            // A live file cannot be read consistently under its writer.
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(Error::AlreadyOpen {
                path: path.to_path_buf(),
            }),
            Err(e) => Err(Error::redb(path, e)),
        }
    }

    fn open_repaired_copy(path: &Path) -> Result<(ColdStore, Opened)> {
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
        let opened = read_state(&db, path)?;
        let dicts = read_dictionaries(&db, path)?;
        Ok((Self::wrap(Db::ReadWrite(db), path, Some(scratch), dicts), opened))
    }

    /// True when an offline tool reads a repaired scratch copy because the file was not closed
    /// cleanly (see [`ColdStore::open_read_only`]).
    pub(crate) fn read_from_repaired_copy(&self) -> bool {
        self.scratch.is_some()
    }

    /// Reads and decodes every stored block in (group, first index) order, calling `f` with the
    /// group, the first index and the result (offline verify).
    pub(crate) fn for_each_block(
        &self,
        mut f: impl FnMut(GroupId, u64, std::result::Result<block::Verified, String>),
    ) -> Result<()> {
        let dicts = self.dictionaries();
        self.with_db(|db| {
            let tx = db.begin_read_tx().map_err(|e| self.err(e))?;
            let table = tx.open_table(BLOCKS).map_err(|e| self.err(e))?;
            for row in table.iter().map_err(|e| self.err(e))? {
                let (k, v) = row.map_err(|e| self.err(e))?;
                f(0, k.value(), block::verify(v.value(), &dicts));
            }
            if let Some(table) = open_optional(&tx, GROUP_BLOCKS).map_err(|e| self.err(e))? {
                for row in table.iter().map_err(|e| self.err(e))? {
                    let (k, v) = row.map_err(|e| self.err(e))?;
                    let (g, first) = k.value();
                    f(g, first, block::verify(v.value(), &dicts));
                }
            }
            Ok(())
        })
    }

    /// Closes the database (the engine is closing; the compactor has stopped). Reads already in a
    /// transaction finish; later ones get [`Error::Closed`].
    pub(crate) fn close(&self) {
        let mut guard = self.db.write();
        self.closed.store(true, Ordering::Release);
        guard.take();
    }

    /// A redb error as the crate's: an operating-system error stays an [`Error::Io`] (so a caller
    /// sees ENOSPC or EIO by its kind), damage the file's content shows is an [`Error::Corruption`],
    /// anything else an [`Error::Database`]. An I/O error, or
    /// redb's refusal after an earlier one, makes the next call reopen the database.
    fn err(&self, e: impl Into<redb::Error>) -> Error {
        match e.into() {
            redb::Error::Io(source) if !crate::error::is_damage(&source) => {
                self.degraded.store(true, Ordering::Release);
                self.needs_reopen.store(true, Ordering::Release);
                Error::io(&self.path, source)
            }
            e @ redb::Error::PreviousIo => {
                self.degraded.store(true, Ordering::Release);
                self.needs_reopen.store(true, Ordering::Release);
                Error::redb(&self.path, e)
            }
            e => Error::redb(&self.path, e),
        }
    }

    /// The last write failed with an I/O error and no commit has succeeded since (a full disk, say).
    pub(crate) fn writes_failing(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The compression dictionaries blocks may name (a snapshot: cheap to take per read).
    pub(crate) fn dictionaries(&self) -> Arc<Dictionaries> {
        self.dicts.read().clone()
    }

    /// Makes `d` known to readers. The compactor calls it before the commit that stores `d` with
    /// the first blocks naming it: until that commit no reader can meet such a block, and if the
    /// commit fails, `d` is only an unused entry (the next round stores it again, same id).
    pub(crate) fn add_dictionary(&self, d: Arc<Dictionary>) {
        let mut dicts = self.dicts.write();
        let mut next = (**dicts).clone();
        next.insert(d);
        *dicts = Arc::new(next);
    }

    /// Runs `f` on the stored bytes of the blocks of `metas` (`None` where no block starts at a
    /// meta's first index), all read in one read transaction. The caller checks that each is the
    /// block it planned (same id): its view of the index may be older than the last commit.
    pub(crate) fn with_stored<T>(
        &self,
        metas: &[BlockMeta],
        mut f: impl FnMut(&[Option<&[u8]>]) -> Result<T>,
    ) -> Result<T> {
        self.read(|db| self.with_stored_in(db, metas, &mut f))
    }

    /// Runs the block read `body` on the open database. A commit failing at the same moment (a
    /// full disk) makes redb refuse the read too: the database is reopened (by this call or
    /// another) and the read tried again, up to [`READ_ATTEMPTS`] times.
    fn read<T>(&self, mut body: impl FnMut(&Db) -> Result<T>) -> Result<T> {
        crate::failpoints::io_fault("cold::read").map_err(|e| Error::io(&self.path, e))?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.with_db(&mut body) {
                Err(Error::Io { .. } | Error::Database { .. }) if attempts < READ_ATTEMPTS => {}
                r => return r,
            }
        }
    }

    fn with_stored_in<T>(
        &self,
        db: &Db,
        metas: &[BlockMeta],
        f: &mut impl FnMut(&[Option<&[u8]>]) -> Result<T>,
    ) -> Result<T> {
        let tx = db.begin_read_tx().map_err(|e| self.err(e))?;
        let tables = BlockTables::open(&tx, metas).map_err(|e| self.err(e))?;
        let mut guards = Vec::with_capacity(metas.len());
        for m in metas {
            guards.push(tables.get(m).map_err(|e| self.err(e))?);
        }
        let stored: Vec<Option<&[u8]>> = guards.iter().map(|g| g.as_ref().map(|g| g.value())).collect();
        f(&stored)
    }

    /// Runs `f(j, stored)` for each block of `metas` on rayon's pool, all read in one read
    /// transaction (`stored`: `None` where no block starts at the meta's first index). Each block
    /// is read by the thread that then decodes it, so one block's disk read overlaps another's
    /// decompression and two reads are in flight at once (a range read after the page cache was
    /// dropped spent about 40 % of its time waiting on one read at a time).
    pub(crate) fn map_stored_par<T: Send>(
        &self,
        metas: &[BlockMeta],
        f: impl Fn(usize, Option<&[u8]>) -> Result<T> + Sync,
    ) -> Result<Vec<T>> {
        use rayon::prelude::*;
        self.read(|db| {
            let tx = db.begin_read_tx().map_err(|e| self.err(e))?;
            let tables = BlockTables::open(&tx, metas).map_err(|e| self.err(e))?;
            (0..metas.len())
                .into_par_iter()
                .with_max_len(1)
                .map(|j| {
                    let g = tables.get(&metas[j]).map_err(|e| self.err(e))?;
                    f(j, g.as_ref().map(|g| g.value()))
                })
                .collect()
        })
    }

    /// Applies one round durably (fsync before returning).
    pub(crate) fn commit(&self, plan: &CommitPlan) -> Result<()> {
        crate::failpoints::io_fault("cold::commit").map_err(|e| Error::io(&self.path, e))?;
        if self.degraded.load(Ordering::Acquire) {
            let mut guard = self.db.write();
            if self.needs_reopen.load(Ordering::Acquire) {
                self.reopen(&mut guard);
            }
            let db = guard.as_ref().ok_or_else(|| self.unavailable())?;
            guarded(&self.path, || self.commit_in(db, plan)).inspect_err(|e| {
                if e.is_corruption() {
                    self.needs_reopen.store(true, Ordering::Release);
                }
            })?;
        } else {
            self.with_db(|db| self.commit_in(db, plan))?;
        }
        self.degraded.store(false, Ordering::Release);
        // Stands for a failure redb reports after the commit reached the disk (its last fsync).
        crate::failpoints::io_fault("cold::commit::after").map_err(|e| {
            self.needs_reopen.store(true, Ordering::Release);
            Error::io(&self.path, e)
        })
    }

    /// Group `group`'s checkpoint as the file holds it (after a failed commit: did it land?);
    /// `None` when the file holds no such group.
    pub(crate) fn durable_checkpoint(&self, group: GroupId) -> Result<Option<Checkpoint>> {
        self.with_db(|db| {
            let tx = db.begin_read_tx().map_err(|e| self.err(e))?;
            if group == 0 {
                return read_checkpoint(&tx, &self.path).map(|(cp, _)| Some(cp));
            }
            let Some(rows) = open_optional(&tx, GROUPS).map_err(|e| self.err(e))? else {
                return Ok(None);
            };
            let row = rows.get(group).map_err(|e| self.err(e))?;
            row.map(|r| decode_group_row(r.value()).map(|(cp, _)| cp))
                .transpose()
                .map_err(|reason| Error::corruption_of_file(&self.path, format!("group {group}: {reason}")))
        })
    }

    fn commit_in(&self, db: &Db, plan: &CommitPlan) -> Result<()> {
        let db = db
            .writable()
            .ok_or_else(|| Error::db(&self.path, "the cold store was opened read-only"))?;
        let mut tx = db.begin_write().map_err(|e| self.err(e))?;
        tx.set_quick_repair(true);
        tx.set_durability(Durability::Immediate)
            .map_err(|e| self.err(e))?;
        {
            let mut t = WriteTables {
                blocks: tx.open_table(BLOCKS).map_err(|e| self.err(e))?,
                index: tx.open_table(INDEX).map_err(|e| self.err(e))?,
                group_blocks: tx.open_table(GROUP_BLOCKS).map_err(|e| self.err(e))?,
                group_index: tx.open_table(GROUP_INDEX).map_err(|e| self.err(e))?,
                groups: tx.open_table(GROUPS).map_err(|e| self.err(e))?,
            };
            for &g in &plan.removed {
                t.wipe(g).map_err(|e| self.err(e))?;
                t.groups.remove(g).map_err(|e| self.err(e))?;
            }
            for gp in &plan.groups {
                t.apply(gp).map_err(|e| self.err(e))?;
            }
            if let Some(d) = &plan.dictionary {
                let mut dicts = tx.open_table(DICTIONARIES).map_err(|e| self.err(e))?;
                dicts
                    .insert(d.id(), d.stored().as_slice())
                    .map_err(|e| self.err(e))?;
            }
            let mut cp = tx.open_table(CHECKPOINT).map_err(|e| self.err(e))?;
            let mut rows = vec![("next_block_id", plan.head.next_block_id)];
            rows.extend(plan.head.wal_floor.map(|f| ("wal_floor", f)));
            if let Some(gp) = plan.groups.iter().find(|gp| gp.group == 0) {
                let c = &gp.checkpoint;
                let (pt, pi, has) = c.purged.map_or((0, 0, 0), |p| (p.term, p.index, 1));
                rows.extend([
                    ("cold_hi", c.cold_hi),
                    ("applied_seq", c.applied_seq),
                    ("purged_term", pt),
                    ("purged_index", pi),
                    ("has_purged", has),
                ]);
            }
            for (k, v) in rows {
                cp.insert(k, v).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Bytes the redb file takes on disk (its allocated blocks, as `du` counts them). Not its
    /// length: redb extends the file ahead of use (doubling it while small) without writing the new
    /// tail, which takes no space until pages there are written.
    pub(crate) fn file_bytes(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&self.path).map_or(0, |m| m.blocks() * 512)
    }

    /// Gives the file's free pages back to the filesystem: redb's `compact()` moves the pages in
    /// use toward the start of the file and truncates it. It needs the database to itself, so it
    /// runs under the write guard: every read waits for it (`Reclaimed::pause`). Each step of redb's
    /// compaction is an ordinary two-phase commit of the same content, so a crash or an I/O error
    /// in the middle leaves the last committed state, which the next open (or `reopen`) repairs.
    pub(crate) fn reclaim(&self) -> Result<Reclaimed> {
        crate::failpoints::io_fault("cold::reclaim").map_err(|e| Error::io(&self.path, e))?;
        let mut guard = self.db.write();
        if self.needs_reopen.load(Ordering::Acquire) {
            self.reopen(&mut guard);
        }
        let before = self.file_bytes();
        let start = Instant::now();
        let db = match guard.as_mut() {
            Some(Db::ReadWrite(db)) => db,
            Some(Db::ReadOnly(_)) => {
                return Err(Error::db(&self.path, "the cold store was opened read-only"));
            }
            None => return Err(self.unavailable()),
        };
        let compacted = guarded(&self.path, || {
            db.compact().map_err(|e| self.err(redb::Error::from(e)))
        })
        .inspect_err(|e| {
            if e.is_corruption() {
                self.needs_reopen.store(true, Ordering::Release);
            }
        });
        let pause = start.elapsed();
        drop(guard);
        compacted?;
        // Stands for a failure redb reports once the compaction's commits reached the disk.
        crate::failpoints::io_fault("cold::reclaim::after").map_err(|e| {
            self.needs_reopen.store(true, Ordering::Release);
            Error::io(&self.path, e)
        })?;
        Ok(Reclaimed {
            before,
            after: self.file_bytes(),
            pause,
        })
    }
}

/// What one [`ColdStore::reclaim`] did.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reclaimed {
    /// File size before.
    pub before: u64,
    /// File size after.
    pub after: u64,
    /// How long reads were held off (the write guard was held).
    pub pause: Duration,
}

/// redb's page size; every value is stored in a run of 2^k pages.
const PAGE: u64 = 4096;
/// A leaf holding one block beyond the block's bytes (node header, offsets, the u64 key), rounded up.
const LEAF_OVERHEAD: u64 = 64;
/// Per block, its `block_index` row and its share of branch pages in both tables, rounded up.
const META_PER_BLOCK: u64 = 128;
/// redb's header, region allocator state and system tables, rounded up.
const FIXED_OVERHEAD: u64 = 128 << 10;

/// What the redb file takes on disk against the blocks it holds (`stats()`, `tierlog inspect` and
/// the reclamation trigger all read it from here).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Footprint {
    /// The file's allocated bytes ([`ColdStore::file_bytes`]).
    pub file_bytes: u64,
    /// Bytes holding no block content: free pages, page rounding, redb's metadata.
    pub fragmented_bytes: u64,
    /// The part of it in free pages, estimated ([`estimated_bytes_in_use`]).
    pub free_bytes: u64,
}

impl ColdStore {
    /// The file's footprint against `index`, every block the file holds (purged ones included until
    /// their deletion commits).
    pub(crate) fn footprint(&self, blocks: &[BlockMeta]) -> Footprint {
        let file_bytes = self.file_bytes();
        let stored: u64 = blocks.iter().map(|m| m.stored_len).sum();
        Footprint {
            file_bytes,
            fragmented_bytes: file_bytes.saturating_sub(stored),
            free_bytes: file_bytes.saturating_sub(estimated_bytes_in_use(blocks)),
        }
    }
}

/// Bytes of the file the blocks of `index` occupy, estimated from redb's allocation rule (each block
/// is the only pair of its leaf, which takes the next power of two of 4 KiB pages). Blocks small
/// enough to share a leaf are over-counted, so the free space derived from it errs low: the
/// reclamation it triggers never runs for space that is not there. Reading the exact figure needs
/// redb's `stats()`, which reads every leaf page, i.e. the whole file.
fn estimated_bytes_in_use<'a>(blocks: impl IntoIterator<Item = &'a BlockMeta>) -> u64 {
    blocks
        .into_iter()
        .map(|m| {
            let pages = (m.stored_len.saturating_add(LEAF_OVERHEAD))
                .div_ceil(PAGE)
                .next_power_of_two();
            pages.saturating_mul(PAGE).saturating_add(META_PER_BLOCK)
        })
        .fold(FIXED_OVERHEAD, u64::saturating_add)
}

/// Runs a call into redb, turning a panic into [`Error::Corruption`] of the whole file. redb 4.6
/// panics (slice indices out of range) on some damaged pages instead of returning an error; the
/// engine must report damage, not lose its compactor thread or a caller's. The database is reopened
/// before its next use (the caller marks it), since a panic may have left redb's state inconsistent.
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        Err(Error::corruption_of_file(
            path,
            format!("redb failed on a damaged page ({what})"),
        ))
    })
}

/// Opens (or creates) the engine's redb file and makes sure its tables exist, so later read
/// transactions never fail on a missing table.
fn open_db(path: &Path, cache_bytes: usize) -> Result<Database> {
    let db = Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(|e| Error::redb(path, e))?;
    let mut tx = db.begin_write().map_err(|e| Error::redb(path, e))?;
    tx.set_quick_repair(true);
    {
        let err = |e| Error::redb(path, e);
        tx.open_table(BLOCKS).map_err(err)?;
        tx.open_table(INDEX).map_err(err)?;
        tx.open_table(CHECKPOINT).map_err(err)?;
        tx.open_table(GROUP_BLOCKS).map_err(err)?;
        tx.open_table(GROUP_INDEX).map_err(err)?;
        tx.open_table(GROUPS).map_err(err)?;
    }
    tx.commit().map_err(|e| Error::redb(path, e))?;
    Ok(db)
}

/// What a file holds when it is opened: the head and every group (group 0 always).
#[derive(Debug, Default)]
pub(crate) struct Opened {
    pub head: Head,
    pub groups: BTreeMap<GroupId, StoredGroup>,
}

/// Reads the head, every group's checkpoint and metadata and every block index (shared by `open`
/// and the read-only offline tools).
fn read_state(db: &impl ReadableDatabase, path: &Path) -> Result<Opened> {
    let err = |e: redb::Error| Error::redb(path, e);
    let tx = db.begin_read().map_err(|e| err(e.into()))?;
    let (cp0, head) = read_checkpoint(&tx, path)?;
    let mut groups = BTreeMap::new();
    // A row the encoder could not have written (a block ending before it starts, or larger than
    // a block may be) is damage: reported here, not carried into arithmetic on block sizes.
    let meta_of = |first: u64, row: (u64, u64, u64, u64)| {
        let (id, last, raw_len, stored_len) = row;
        let max = block::MAX_RAW_LEN as u64;
        (last >= first && raw_len <= max && stored_len <= max).then_some((id, last, raw_len, stored_len))
    };
    let mut index0 = BlockIndex::new();
    let idx = tx.open_table(INDEX).map_err(|e| err(e.into()))?;
    for row in idx.iter().map_err(|e| err(e.into()))? {
        let (k, v) = row.map_err(|e| err(e.into()))?;
        let first = k.value();
        let (id, last, raw_len, stored_len) = meta_of(first, v.value()).ok_or_else(|| {
            Error::corruption_at_index(path, first, "block index entry is impossible (it ends before it starts, or is larger than a block can be)")
        })?;
        index0.insert(
            first,
            BlockMeta {
                id,
                group: 0,
                first,
                last,
                raw_len,
                stored_len,
            },
        );
    }
    groups.insert(
        0,
        StoredGroup {
            checkpoint: cp0,
            index: index0,
            meta: LoggedMeta::default(),
        },
    );
    if let Some(rows) = open_optional(&tx, GROUPS).map_err(err)? {
        for row in rows.iter().map_err(|e| err(e.into()))? {
            let (k, v) = row.map_err(|e| err(e.into()))?;
            let g = k.value();
            let (checkpoint, meta) = decode_group_row(v.value())
                .map_err(|reason| Error::corruption_of_file(path, format!("group {g}: {reason}")))?;
            groups.insert(
                g,
                StoredGroup {
                    checkpoint,
                    index: BlockIndex::new(),
                    meta,
                },
            );
        }
    }
    if let Some(idx) = open_optional(&tx, GROUP_INDEX).map_err(err)? {
        for row in idx.iter().map_err(|e| err(e.into()))? {
            let (k, v) = row.map_err(|e| err(e.into()))?;
            let (g, first) = k.value();
            let (id, last, raw_len, stored_len) = meta_of(first, v.value()).ok_or_else(|| {
                Error::corruption_at_index(path, first, "block index entry is impossible (it ends before it starts, or is larger than a block can be)")
            })?;
            // Blocks of a group whose removal was committed are deleted in the same transaction; a
            // row without its group is damage.
            let group = groups.get_mut(&g).ok_or_else(|| {
                Error::corruption_of_file(path, format!("blocks of group {g}, which the file does not hold"))
            })?;
            group.index.insert(
                first,
                BlockMeta {
                    id,
                    group: g,
                    first,
                    last,
                    raw_len,
                    stored_len,
                },
            );
        }
    }
    for g in groups.values_mut() {
        g.index.shrink_to_fit();
    }
    Ok(Opened { head, groups })
}

/// Opens a table a file written before groups existed (or opened read-only) may lack.
fn open_optional<K: redb::Key + 'static, V: redb::Value + 'static>(
    tx: &ReadTransaction,
    def: TableDefinition<K, V>,
) -> std::result::Result<Option<redb::ReadOnlyTable<K, V>>, redb::Error> {
    match tx.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The block tables a read needs (the group one only when a block of a group other than 0 is
/// read: a file written before groups existed, opened read-only, has none).
struct BlockTables {
    blocks: redb::ReadOnlyTable<u64, &'static [u8]>,
    group_blocks: Option<redb::ReadOnlyTable<(u64, u64), &'static [u8]>>,
}

impl BlockTables {
    fn open(tx: &ReadTransaction, metas: &[BlockMeta]) -> std::result::Result<Self, redb::Error> {
        let group_blocks = if metas.iter().any(|m| m.group != 0) {
            open_optional(tx, GROUP_BLOCKS)?
        } else {
            None
        };
        Ok(BlockTables {
            blocks: tx.open_table(BLOCKS)?,
            group_blocks,
        })
    }

    fn get(
        &self,
        m: &BlockMeta,
    ) -> std::result::Result<Option<redb::AccessGuard<'_, &'static [u8]>>, redb::Error> {
        Ok(match (m.group, &self.group_blocks) {
            (0, _) => self.blocks.get(m.first)?,
            (g, Some(t)) => t.get((g, m.first))?,
            (_, None) => None,
        })
    }
}

/// The tables a commit writes.
struct WriteTables<'tx> {
    blocks: redb::Table<'tx, u64, &'static [u8]>,
    index: redb::Table<'tx, u64, (u64, u64, u64, u64)>,
    group_blocks: redb::Table<'tx, (u64, u64), &'static [u8]>,
    group_index: redb::Table<'tx, (u64, u64), (u64, u64, u64, u64)>,
    groups: redb::Table<'tx, u64, &'static [u8]>,
}

impl WriteTables<'_> {
    fn remove_block(&mut self, g: GroupId, first: u64) -> std::result::Result<(), redb::Error> {
        if g == 0 {
            self.blocks.remove(first)?;
            self.index.remove(first)?;
        } else {
            self.group_blocks.remove((g, first))?;
            self.group_index.remove((g, first))?;
        }
        Ok(())
    }

    fn insert_block(&mut self, m: &BlockMeta, stored: &[u8]) -> std::result::Result<(), redb::Error> {
        let row = (m.id, m.last, m.raw_len, m.stored_len);
        if m.group == 0 {
            self.blocks.insert(m.first, stored)?;
            self.index.insert(m.first, row)?;
        } else {
            self.group_blocks.insert((m.group, m.first), stored)?;
            self.group_index.insert((m.group, m.first), row)?;
        }
        Ok(())
    }

    /// Deletes every block stored under group `g` (never group 0's: it is never removed).
    fn wipe(&mut self, g: GroupId) -> std::result::Result<(), redb::Error> {
        let firsts: Vec<u64> = self
            .group_index
            .range((g, 0)..=(g, u64::MAX))?
            .map(|row| row.map(|(k, _)| k.value().1))
            .collect::<std::result::Result<_, _>>()?;
        for first in firsts {
            self.remove_block(g, first)?;
        }
        Ok(())
    }

    fn apply(&mut self, gp: &GroupPlan) -> std::result::Result<(), redb::Error> {
        let g = gp.group;
        if gp.wipe && g != 0 {
            self.wipe(g)?;
        } else {
            let mut doomed: Vec<u64> = Vec::new();
            if let Some(cut) = gp.cut_above {
                doomed.extend(gp.index.range(cut.saturating_add(1)..).map(|(k, _)| *k));
            }
            doomed.extend(
                gp.index
                    .values()
                    .take_while(|m| m.last <= gp.purge_upto)
                    .map(|m| m.first),
            );
            for k in doomed {
                self.remove_block(g, k)?;
            }
        }
        for (m, stored) in gp.trim.iter().chain(gp.inserts.iter()) {
            self.insert_block(m, stored)?;
        }
        if g != 0 {
            self.groups
                .insert(g, encode_group_row(&gp.checkpoint, &gp.meta).as_slice())?;
        }
        Ok(())
    }
}

/// Version of the `groups` rows this release writes.
const GROUP_ROW_VERSION: u8 = 1;

/// A group's row: version u8, created_seq, cold_hi, applied_seq (u64 each), purge flag u8, purged
/// term and index (u64), hard-state flag u8 and the hard state in its slot form (`meta.rs`),
/// metadata flag u8 and the blob in its slot form (u32 length, bytes), crc32c of all before.
fn encode_group_row(cp: &Checkpoint, meta: &LoggedMeta) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.put_u8(GROUP_ROW_VERSION);
    b.put_u64_le(cp.created_seq);
    b.put_u64_le(cp.cold_hi);
    b.put_u64_le(cp.applied_seq);
    let p = cp.purged.unwrap_or_default();
    b.put_u8(cp.purged.is_some() as u8);
    b.put_u64_le(p.term);
    b.put_u64_le(p.index);
    b.put_u8(meta.hard_state.is_some() as u8);
    if let Some(hs) = &meta.hard_state {
        hs.put(&mut b);
    }
    b.put_u8(meta.app_meta.is_some() as u8);
    if let Some(blob) = &meta.app_meta {
        AppMeta(blob.clone()).put(&mut b);
    }
    b.put_u32_le(crc32c::crc32c(&b));
    b
}

fn decode_group_row(row: &[u8]) -> std::result::Result<(Checkpoint, LoggedMeta), String> {
    let Some(body_len) = row.len().checked_sub(4) else {
        return Err("row shorter than its checksum".into());
    };
    let (body, crc) = row.split_at(body_len);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().map_err(|_| "bad checksum field")?) {
        return Err("row checksum mismatch".into());
    }
    let mut b = body;
    let short = || "row ends early".to_string();
    if b.remaining() < 1 + 3 * 8 + 1 + 2 * 8 + 1 {
        return Err(short());
    }
    let version = b.get_u8();
    if version != GROUP_ROW_VERSION {
        return Err(format!("unknown row version {version}"));
    }
    let created_seq = b.get_u64_le();
    let cold_hi = b.get_u64_le();
    let applied_seq = b.get_u64_le();
    let has_purged = b.get_u8() == 1;
    let purged = LogId {
        term: b.get_u64_le(),
        index: b.get_u64_le(),
    };
    let mut meta = LoggedMeta::default();
    if b.get_u8() == 1 {
        let (hs, len) = HardState::parse(b).ok_or_else(short)?;
        meta.hard_state = Some(hs);
        b.advance(len);
    }
    if b.remaining() < 1 {
        return Err(short());
    }
    if b.get_u8() == 1 {
        let (blob, len) = AppMeta::parse(b).ok_or_else(short)?;
        meta.app_meta = Some(blob.0);
        b.advance(len);
    }
    if b.has_remaining() {
        return Err(format!("{} bytes after the row", b.remaining()));
    }
    let cp = Checkpoint {
        cold_hi,
        applied_seq,
        purged: has_purged.then_some(purged),
        created_seq,
    };
    Ok((cp, meta))
}

/// Reads the compression dictionaries (none when the file has no `dictionaries` table: a store
/// written before dictionaries, or one that has not trained its own yet). A damaged one is
/// recorded as such: only the blocks naming it fail to read.
fn read_dictionaries(db: &impl ReadableDatabase, path: &Path) -> Result<Dictionaries> {
    let err = |e: redb::Error| Error::redb(path, e);
    let tx = db.begin_read().map_err(|e| err(e.into()))?;
    let table = match tx.open_table(DICTIONARIES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Dictionaries::default()),
        Err(e) => return Err(err(e.into())),
    };
    let mut dicts = Dictionaries::default();
    for row in table.iter().map_err(|e| err(e.into()))? {
        let (k, v) = row.map_err(|e| err(e.into()))?;
        let id = k.value();
        match Dictionary::from_stored(id, v.value()) {
            Ok(d) => dicts.insert(Arc::new(d)),
            Err(reason) => {
                tracing::error!(path = %path.display(), %reason, "damaged compression dictionary");
                dicts.insert_damaged(id, reason);
            }
        }
    }
    Ok(dicts)
}

/// Reads group 0's checkpoint and the head.
fn read_checkpoint(tx: &ReadTransaction, path: &Path) -> Result<(Checkpoint, Head)> {
    let err = |e: redb::Error| Error::redb(path, e);
    let cpt = tx.open_table(CHECKPOINT).map_err(|e| err(e.into()))?;
    let get =
        |k: &str| -> Result<Option<u64>> { Ok(cpt.get(k).map_err(|e| err(e.into()))?.map(|g| g.value())) };
    let purged = (get("has_purged")? == Some(1)).then(|| LogId {
        term: get("purged_term").ok().flatten().unwrap_or(0),
        index: get("purged_index").ok().flatten().unwrap_or(0),
    });
    let cp = Checkpoint {
        cold_hi: get("cold_hi")?.unwrap_or(0),
        applied_seq: get("applied_seq")?.unwrap_or(0),
        purged,
        created_seq: 0,
    };
    let head = Head {
        next_block_id: get("next_block_id")?.unwrap_or(0).max(1),
        wal_floor: get("wal_floor")?,
    };
    Ok((cp, head))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block index row that damage made impossible (here a stored size near `u64::MAX`, as a
    /// damaged redb page gave the reliability suite's `damaged_redb_pages_give_errors_not_panics`
    /// in one run: "attempt to multiply with overflow" in the footprint, on the compactor's thread
    /// and on the caller's) is reported when the file is opened, not carried into arithmetic.
    #[test]
    fn an_impossible_block_index_row_is_corruption_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cold.redb");
        drop(ColdStore::open(&path, 1 << 20).unwrap());
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(INDEX)
                .unwrap()
                .insert(7, (1, 9, 100, u64::MAX - 3))
                .unwrap();
            tx.commit().unwrap();
        }
        match ColdStore::open(&path, 1 << 20) {
            Err(e) => assert!(e.is_corruption(), "{e}"),
            Ok(_) => panic!("a block index row with an impossible size was accepted"),
        }
    }

    /// The footprint's arithmetic saturates: whatever sizes the blocks claim, it never panics.
    #[test]
    fn the_footprint_of_absurd_sizes_saturates() {
        let m = BlockMeta {
            id: 1,
            group: 0,
            first: 1,
            last: 2,
            raw_len: u64::MAX,
            stored_len: u64::MAX - 3,
        };
        assert_eq!(estimated_bytes_in_use(&[m, m]), u64::MAX);
    }
}
