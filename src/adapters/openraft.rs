//! openraft 0.10.0-alpha.37 log-storage adapter.
//!
//! [`OpenraftLogStore`] implements openraft's `RaftLogStorage` and `RaftLogReader` over a
//! [`TieredEngine`]. Unlike d-engine, openraft reads entries through the store (replication to a
//! lagging follower, applying to the state machine), so old entries really are served from tierlog's
//! cold tier and only the hot ring and block cache stay in memory.
//!
//! ```ignore
//! use std::sync::Arc;
//! use openraft_memstore::{MemStateMachine, TypeConfig};
//! use tierlog::adapters::openraft::OpenraftLogStore;
//!
//! let log_store = OpenraftLogStore::<TypeConfig>::open("/var/lib/node1/raft", tierlog::Config::default()).await?;
//! let state_machine = Arc::new(MemStateMachine::new(Default::default()));
//! let config = Arc::new(openraft::Config::default().validate()?);
//! let raft = openraft::Raft::<TypeConfig, _>::new(1, config, network, log_store, state_machine).await?;
//! ```
//! (`tests/adapters/tests/adapters/openraft_cluster.rs` is the complete, compiled version with an in-process network.)
//!
//! # Many groups on one engine
//! A node hosting several Raft groups (several `Raft` instances) keeps them in one engine, one
//! [`Group`] each, so all share one write-ahead stream, one fdatasync per flush, one cold tier and one
//! memory budget:
//!
//! ```ignore
//! let engine = tierlog::TieredEngine::open("/var/lib/node1/raft-log", tierlog::Config::default()).await?;
//! let group = engine.create_group(7).await?; // after a restart: engine.group(7)?
//! let log_store = OpenraftLogStore::<TypeConfig>::with_group(group, "/var/lib/node1/committed-7.json").await?;
//! ```
//! [`OpenraftLogStore::open`] and [`OpenraftLogStore::with_engine`] serve group 0, so a directory
//! written before groups existed opens unchanged.
//! (`tests/adapters/tests/adapters/openraft_groups.rs`: four groups on three nodes, one engine each.)
//!
//! # Mapping
//! - openraft log index `i` is tierlog index `i + 1` (tierlog reserves 0 for "no entry").
//! - Each openraft entry is serialized whole (serde_json) into tierlog's `payload`; tierlog's `term`
//!   field holds the entry's term (via [`LeaderTerm`]) so `tierlog dump` shows it.
//! - The vote (with its `committed` flag) and the full purged log id (leader id included) do not fit
//!   tierlog's `HardState` / `LogId` for every openraft type configuration (node ids and leader ids
//!   are generic), so they are kept, serialized with serde_json, in the group's meta store as its
//!   application-metadata blob ([`TierMetaStore::save_app_meta`]): durable when the save returns,
//!   never torn (group 0's in two checksummed slots of its own file, other groups' in the shared
//!   write-ahead log).
//!
//! # Durability
//! `append` hands its callback `Ok` only after `flush()` (one group-committed fdatasync) returned, or
//! right away when the engine runs with `sync_on_persist`. `save_vote` returns after the meta store's
//! blob is durable. `truncate_after` also flushes, so a truncation is never lost behind a later durable
//! write. `purge` records the new purged log id durably before it purges the engine, and a purge
//! interrupted by a crash is completed when the store is reopened.
//!
//! `save_committed` writes the committed log id to a second small file with an atomic rename but no
//! fsync: openraft treats it as a hint (it lets an in-memory state machine be re-applied up to the
//! pre-restart commit point on startup), so after a power loss an older or missing value is
//! acceptable, and an unreadable file reads as "unknown" rather than failing the open.

use std::fmt::Debug;
use std::fs;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use openraft::alias::{LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::vote::{RaftLeaderId, RaftTerm, leader_id_adv, leader_id_std};
use openraft::{NodeId, OptionalSend, RaftTypeConfig};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::{
    Config, Entry, Error, Group, GroupId, LogId, LogStore, StorageEngine, TierLogStore, TierMetaStore,
    TieredEngine,
};

/// Name of the best-effort file holding the last committed log id (see [`OpenraftLogStore`]'s
/// `save_committed`).
pub const COMMITTED_FILE: &str = "openraft-committed.json";
/// Subdirectory of [`OpenraftLogStore::open`]'s directory that holds the tierlog engine.
pub const ENGINE_DIR: &str = "log";

/// Reads the term of an openraft committed leader id as a `u64`, for tierlog's `Entry::term` and
/// purge boundary. tierlog never interprets these terms; openraft's own log ids (kept in the payload
/// and the meta store's blob) stay the source of truth.
pub trait LeaderTerm {
    /// The term as a `u64`.
    fn leader_term(&self) -> u64;
}

impl<T, N> LeaderTerm for leader_id_adv::LeaderId<T, N>
where
    T: RaftTerm + Into<u64>,
    N: NodeId,
{
    fn leader_term(&self) -> u64 {
        self.term.into()
    }
}

impl<T> LeaderTerm for leader_id_std::CommittedLeaderId<T>
where
    T: RaftTerm + Into<u64>,
{
    fn leader_term(&self) -> u64 {
        self.term.into()
    }
}

/// The committed leader id type of a type configuration.
type CommittedOf<C> = <<C as RaftTypeConfig>::LeaderId as RaftLeaderId>::Committed;

/// openraft log storage on a [`TieredEngine`]. Clones (and the log reader) share all state.
pub struct OpenraftLogStore<C: RaftTypeConfig> {
    shared: Arc<Shared<C>>,
}

struct Shared<C: RaftTypeConfig> {
    engine: TieredEngine,
    /// The tierlog group this store serves (0 for [`OpenraftLogStore::open`] / `with_engine`).
    group: GroupId,
    log: Arc<TierLogStore>,
    meta_store: Arc<TierMetaStore>,
    committed_path: PathBuf,
    committed: RwLock<Option<LogIdOf<C>>>,
    /// Serialises read-modify-write saves of the blob, so a vote and a purge never undo each other.
    meta_write: Mutex<()>,
    /// What the blob holds, published only after it is durable.
    meta: RwLock<RaftMeta<C>>,
}

struct RaftMeta<C: RaftTypeConfig> {
    vote: Option<VoteOf<C>>,
    last_purged: Option<LogIdOf<C>>,
}

impl<C: RaftTypeConfig> Clone for RaftMeta<C> {
    fn clone(&self) -> Self {
        RaftMeta {
            vote: self.vote.clone(),
            last_purged: self.last_purged.clone(),
        }
    }
}

/// The blob's form in tierlog's meta store.
#[derive(Serialize, Deserialize)]
struct MetaBlob<V, L> {
    format: u32,
    vote: Option<V>,
    last_purged: Option<L>,
}

const META_FORMAT: u32 = 1;

impl<C: RaftTypeConfig> Clone for OpenraftLogStore<C> {
    fn clone(&self) -> Self {
        OpenraftLogStore {
            shared: self.shared.clone(),
        }
    }
}

impl<C> OpenraftLogStore<C>
where
    C: RaftTypeConfig,
    CommittedOf<C>: LeaderTerm,
{
    /// Opens (or creates) a store in `dir`: the engine in `dir/log`, the committed-log-id hint beside
    /// it.
    pub async fn open(dir: impl AsRef<Path>, config: Config) -> crate::Result<Self> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let engine = TieredEngine::open(dir.join(ENGINE_DIR), config).await?;
        Self::with_engine(engine, dir.join(COMMITTED_FILE)).await
    }

    /// Wraps an open engine and serves its group 0: the group's meta store holds (or will hold) the
    /// vote and purged log id; `committed_path` is the best-effort committed-log-id hint file.
    /// Finishes a purge that a crash interrupted after the purged log id was recorded.
    pub async fn with_engine(
        engine: TieredEngine,
        committed_path: impl Into<PathBuf>,
    ) -> crate::Result<Self> {
        let (log, meta_store) = (engine.log_store(), engine.meta_store());
        Self::with_handles(engine, 0, log, meta_store, committed_path.into()).await
    }

    /// Serves tierlog group `group` of its engine (see [`TieredEngine::create_group`]): the group's
    /// meta store holds (or will hold) the vote and purged log id, `committed_path` is this group's
    /// best-effort committed-log-id hint file (one per group; the caller picks it). Finishes a purge
    /// that a crash interrupted after the purged log id was recorded. Build one store per group and
    /// clone it; two stores built on the same group would each cache their own copy of the vote.
    pub async fn with_group(group: Group, committed_path: impl Into<PathBuf>) -> crate::Result<Self> {
        Self::with_handles(
            group.engine().clone(),
            group.id(),
            group.log_store(),
            group.meta_store(),
            committed_path.into(),
        )
        .await
    }

    async fn with_handles(
        engine: TieredEngine,
        group: GroupId,
        log: Arc<TierLogStore>,
        meta_store: Arc<TierMetaStore>,
        committed_path: PathBuf,
    ) -> crate::Result<Self> {
        let meta = read_meta::<C>(&engine, group, &meta_store)?;
        let committed = read_committed_hint::<C>(&committed_path);
        if let Some(purged) = &meta.last_purged {
            let wanted = to_tier_log_id::<C>(purged);
            let have = log.load_purge_boundary()?.map_or(0, |b| b.index);
            if have < wanted.index {
                log.purge(wanted).await?;
            }
        }
        Ok(OpenraftLogStore {
            shared: Arc::new(Shared {
                engine,
                group,
                log,
                meta_store,
                committed_path,
                committed: RwLock::new(committed),
                meta_write: Mutex::new(()),
                meta: RwLock::new(meta),
            }),
        })
    }

    /// The wrapped engine (for [`TieredEngine::stats`] and [`TieredEngine::compact_now`]), shared
    /// by every group the engine hosts.
    pub fn engine(&self) -> &TieredEngine {
        &self.shared.engine
    }

    /// The tierlog group this store serves.
    pub fn group_id(&self) -> GroupId {
        self.shared.group
    }

    /// Durably replaces the blob in tierlog's meta store, then publishes the new value to readers.
    fn save_meta(&self, update: impl FnOnce(&mut RaftMeta<C>)) -> io::Result<()> {
        let _writer = self.shared.meta_write.lock();
        let mut next = self.shared.meta.read().clone();
        update(&mut next);
        let blob = MetaBlob {
            format: META_FORMAT,
            vote: next.vote.as_ref(),
            last_purged: next.last_purged.as_ref(),
        };
        let bytes = serde_json::to_vec(&blob).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.shared.meta_store.save_app_meta(&bytes).map_err(to_io)?;
        *self.shared.meta.write() = next;
        Ok(())
    }

    async fn flush_log(&self) -> io::Result<()> {
        if self.shared.log.is_write_durable() {
            return Ok(());
        }
        let log = &self.shared.log;
        // fdatasync can take milliseconds: with a tokio runtime, `flush_async` runs it on the blocking
        // pool, and a flush of another group arriving meanwhile awaits that one without a thread.
        match tokio::runtime::Handle::try_current() {
            Ok(_) => log.flush_async().await.map_err(to_io),
            Err(_) => log.flush().map_err(to_io),
        }
    }

    fn decode(entry: &Entry) -> io::Result<C::Entry> {
        let decoded: C::Entry = serde_json::from_slice(&entry.payload).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("tierlog entry {} is not an openraft entry: {e}", entry.index),
            )
        })?;
        if decoded.log_id_parts().1 + 1 != entry.index {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "tierlog entry {} holds openraft entry {} (expected {})",
                    entry.index,
                    decoded.log_id_parts().1,
                    entry.index - 1
                ),
            ));
        }
        Ok(decoded)
    }

    fn encode(entry: &C::Entry) -> io::Result<Entry> {
        let (leader, index) = entry.log_id_parts();
        let payload = serde_json::to_vec(entry).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(Entry {
            index: to_tier_index(index)?,
            term: leader.leader_term(),
            payload: Bytes::from(payload),
        })
    }
}

fn to_tier_index(index: u64) -> io::Result<u64> {
    index
        .checked_add(1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "log index u64::MAX cannot be stored"))
}

fn to_tier_log_id<C>(id: &LogIdOf<C>) -> LogId
where
    C: RaftTypeConfig,
    CommittedOf<C>: LeaderTerm,
{
    LogId::new(
        id.committed_leader_id().leader_term(),
        id.index().saturating_add(1),
    )
}

/// Maps a tierlog error to the `io::Error` openraft expects, keeping the message (and path).
pub fn to_io(e: Error) -> io::Error {
    let kind = match &e {
        Error::Io { source, .. } => source.kind(),
        Error::Corruption { .. } => io::ErrorKind::InvalidData,
        Error::InvalidInput(_) => io::ErrorKind::InvalidInput,
        Error::Closed(_) => io::ErrorKind::BrokenPipe,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

fn read_meta<C: RaftTypeConfig>(
    engine: &TieredEngine,
    group: GroupId,
    meta_store: &TierMetaStore,
) -> crate::Result<RaftMeta<C>> {
    let Some(bytes) = meta_store.load_app_meta()? else {
        return Ok(RaftMeta {
            vote: None,
            last_purged: None,
        });
    };
    // The blob passed its checksum, so a parse failure is a blob some other program stored. Group
    // 0's blob has a file of its own; other groups' blobs live in the write-ahead log, so the error
    // names the engine directory and the group.
    let (path, whose) = if group == 0 {
        (engine.dir().join(crate::layout::APP_META_FILE), String::new())
    } else {
        (engine.dir().to_path_buf(), format!("group {group}: "))
    };
    let blob: MetaBlob<VoteOf<C>, LogIdOf<C>> = serde_json::from_slice(&bytes).map_err(|e| {
        Error::corruption_of_file(&path, format!("{whose}not the openraft adapter's metadata: {e}"))
    })?;
    if blob.format != META_FORMAT {
        return Err(Error::corruption_of_file(
            &path,
            format!("{whose}unknown openraft metadata format {}", blob.format),
        ));
    }
    Ok(RaftMeta {
        vote: blob.vote,
        last_purged: blob.last_purged,
    })
}

fn read_committed_hint<C: RaftTypeConfig>(path: &Path) -> Option<LogIdOf<C>> {
    let bytes = fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable committed-log-id hint");
            None
        }
    }
}

impl<C> RaftLogReader<C> for OpenraftLogStore<C>
where
    C: RaftTypeConfig,
    CommittedOf<C>: LeaderTerm,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s.saturating_add(1),
            Bound::Excluded(&s) => s.saturating_add(2),
            Bound::Unbounded => 1,
        };
        let last = self.shared.log.last_index();
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&0) => return Ok(Vec::new()),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => last,
        }
        .min(last);
        if start > end {
            return Ok(Vec::new());
        }
        self.shared
            .log
            .get_entries(start..=end)
            .map_err(to_io)?
            .iter()
            .map(Self::decode)
            .collect()
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.shared.meta.read().vote.clone())
    }
}

impl<C> RaftLogStorage<C> for OpenraftLogStore<C>
where
    C: RaftTypeConfig,
    CommittedOf<C>: LeaderTerm,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let last_purged = self.shared.meta.read().last_purged.clone();
        let last_index = self.shared.log.last_index();
        let last_entry = if last_index == 0 {
            None
        } else {
            self.shared.log.entry(last_index).await.map_err(to_io)?
        };
        let last_log_id = match last_entry {
            Some(e) => Some(Self::decode(&e)?.log_id()),
            None => last_purged.clone(),
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        self.save_meta(|m| m.vote = Some(vote.clone()))
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let bytes =
            serde_json::to_vec(&committed).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let path = &self.shared.committed_path;
        let tmp = path.with_extension("json.tmp");
        let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        // No fsync on purpose: the value is a hint that may go back in time after a power loss.
        fs::write(&tmp, &bytes).map_err(with_path)?;
        fs::rename(&tmp, path).map_err(with_path)?;
        *self.shared.committed.write() = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self.shared.committed.read().clone())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let batch = entries
            .into_iter()
            .map(|e| Self::encode(&e))
            .collect::<io::Result<Vec<_>>>()?;
        if !batch.is_empty() {
            self.shared.log.persist_entries(batch).await.map_err(to_io)?;
        }
        // Entries are readable now; openraft may count them only once they are durable.
        match self.flush_log().await {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = match last_log_id {
            Some(id) => to_tier_index(id.index())?.saturating_add(1),
            None => 1,
        };
        self.shared.log.truncate(from).await.map_err(to_io)?;
        self.flush_log().await
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        let boundary = to_tier_log_id::<C>(&log_id);
        // Recorded first: a crash before the engine purge is completed on reopen, while the opposite
        // order could leave openraft looking for entries that are gone.
        self.save_meta(|m| m.last_purged = Some(log_id.clone()))?;
        self.shared.log.purge(boundary).await.map_err(to_io)
    }
}
