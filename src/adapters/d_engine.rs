//! d-engine 0.2.4 storage adapter.
//!
//! [`DEngineStorage`] implements d-engine's `StorageEngine`, `LogStore` and `MetaStore` over a
//! [`TieredEngine`], so a d-engine node keeps its Raft log and hard state in tierlog. d-engine 0.2.4
//! runs one Raft group per node, so the adapter serves the engine's group 0:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use tierlog::adapters::d_engine::DEngineStorage;
//!
//! let storage = Arc::new(DEngineStorage::open("/var/lib/node1/raft-log", tierlog::Config::default()).await?);
//! let state_machine = Arc::new(d_engine::FileStateMachine::new("/var/lib/node1/sm".into()).await?);
//! let node = d_engine::EmbeddedEngine::start_custom(storage, state_machine, Some("node1.toml")).await?;
//! node.wait_ready(std::time::Duration::from_secs(10)).await?;
//! # Ok(()) }
//! ```
//!
//! Entries cross the boundary with one prost encode (d-engine -> tierlog) or one decode (tierlog ->
//! d-engine) of the `EntryPayload` message: a tierlog [`Entry`] with the encoded payload message in its
//! `payload` field is byte-identical on the wire to d-engine's `Entry`, so nothing else is copied or
//! re-encoded. A d-engine entry without a payload is stored with an empty payload and read back
//! without one.
//!
//! Durability is the engine's: `is_write_durable()` reports [`Config::sync_on_persist`](crate::Config)
//! unchanged, so with the default configuration d-engine calls `flush()` (one group-committed
//! fdatasync) after each batch before it counts entries as durable.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use d_engine::common::{Entry as DEntry, EntryPayload, LogId as DLogId};
use d_engine::{Error as DError, HardState as DHardState, StorageError};
use d_engine_proto::server::election::VotedFor as DVotedFor;
use prost013::Message as _;

use crate::{
    Config, Entry, Error, HardState, LogId, LogStore, MetaStore, StorageEngine, TierLogStore, TierMetaStore,
    TieredEngine, VotedFor,
};

/// A [`TieredEngine`] seen as a d-engine 0.2.4 `StorageEngine`.
///
/// Cloning is cheap and every clone shares the same engine.
#[derive(Clone)]
pub struct DEngineStorage {
    engine: TieredEngine,
    log: Arc<DEngineLogStore>,
    meta: Arc<DEngineMetaStore>,
}

/// d-engine's `LogStore` over tierlog's log. It keeps the engine open: d-engine may hold the log
/// and meta stores longer than the storage engine that handed them out.
pub struct DEngineLogStore {
    inner: Arc<TierLogStore>,
    _engine: TieredEngine,
}

/// d-engine's `MetaStore` over tierlog's hard-state store; keeps the engine open like
/// [`DEngineLogStore`].
pub struct DEngineMetaStore {
    inner: Arc<TierMetaStore>,
    _engine: TieredEngine,
}

impl DEngineStorage {
    /// Opens (or creates) a tierlog engine in `dir` and wraps it.
    pub async fn open(dir: impl AsRef<Path>, config: Config) -> crate::Result<Self> {
        Ok(Self::new(TieredEngine::open(dir, config).await?))
    }

    /// Wraps an already open engine.
    pub fn new(engine: TieredEngine) -> Self {
        let log = Arc::new(DEngineLogStore {
            inner: engine.log_store(),
            _engine: engine.clone(),
        });
        let meta = Arc::new(DEngineMetaStore {
            inner: engine.meta_store(),
            _engine: engine.clone(),
        });
        DEngineStorage { engine, log, meta }
    }

    /// The wrapped engine (for [`TieredEngine::stats`] and [`TieredEngine::compact_now`]).
    pub fn engine(&self) -> &TieredEngine {
        &self.engine
    }
}

impl fmt::Debug for DEngineStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // d-engine's NodeBuilder requires Debug; the figures are the useful part to print.
        let stats = self.engine.stats();
        f.debug_struct("DEngineStorage")
            .field("first_index", &stats.first_index)
            .field("last_index", &stats.last_index)
            .field("hot_entries", &stats.hot_entries)
            .field("cold_blocks", &stats.cold_blocks)
            .finish()
    }
}

impl d_engine::StorageEngine for DEngineStorage {
    type LogStore = DEngineLogStore;
    type MetaStore = DEngineMetaStore;

    fn log_store(&self) -> Arc<DEngineLogStore> {
        self.log.clone()
    }

    fn meta_store(&self) -> Arc<DEngineMetaStore> {
        self.meta.clone()
    }
}

/// Maps a tierlog error onto the closest d-engine storage error, keeping the path and message.
pub fn to_d_engine_error(e: Error) -> DError {
    let storage = match e {
        Error::Io { path, source } => StorageError::PathError { path, source },
        Error::Corruption {
            path,
            offset,
            offset_kind,
            reason,
        } => StorageError::DataCorruption {
            location: format!(
                "{}{}: {reason}",
                path.display(),
                crate::error::position(offset_kind, offset)
            ),
        },
        Error::Database { .. } => StorageError::DbError(e.to_string()),
        other => StorageError::LogStorage(other.to_string()),
    };
    DError::from(storage)
}

/// Converts a d-engine entry into a tierlog entry: the payload message is encoded once.
pub fn entry_to_tierlog(e: DEntry) -> Entry {
    let payload = match e.payload {
        Some(p) => Bytes::from(p.encode_to_vec()),
        None => Bytes::new(),
    };
    Entry {
        index: e.index,
        term: e.term,
        payload,
    }
}

/// Converts a tierlog entry into a d-engine entry: the payload is decoded once (command bytes are
/// sliced from the stored buffer, not copied).
pub fn entry_from_tierlog(e: Entry) -> Result<DEntry, DError> {
    let payload = if e.payload.is_empty() {
        None
    } else {
        let index = e.index;
        Some(EntryPayload::decode(e.payload).map_err(|err| {
            DError::from(StorageError::DataCorruption {
                location: format!("payload of log entry {index} is not a d-engine EntryPayload: {err}"),
            })
        })?)
    };
    Ok(DEntry {
        index: e.index,
        term: e.term,
        payload,
    })
}

/// Converts a d-engine log id.
pub fn log_id_to_tierlog(id: DLogId) -> LogId {
    LogId::new(id.term, id.index)
}

/// Converts a tierlog log id.
pub fn log_id_from_tierlog(id: LogId) -> DLogId {
    DLogId {
        term: id.term,
        index: id.index,
    }
}

/// Converts d-engine's hard state (its `voted_for_id` is a `u32`, tierlog's a `u64`).
pub fn hard_state_to_tierlog(s: &DHardState) -> HardState {
    HardState {
        current_term: s.current_term,
        voted_for: s.voted_for.map(|v| VotedFor {
            voted_for_id: u64::from(v.voted_for_id),
            voted_for_term: v.voted_for_term,
            committed: v.committed,
        }),
    }
}

/// Converts tierlog's hard state; a vote for a node id above `u32::MAX` cannot come from d-engine
/// and is reported as corruption.
pub fn hard_state_from_tierlog(s: HardState) -> Result<DHardState, DError> {
    let voted_for = match s.voted_for {
        None => None,
        Some(v) => Some(DVotedFor {
            voted_for_id: u32::try_from(v.voted_for_id).map_err(|_| {
                DError::from(StorageError::DataCorruption {
                    location: format!(
                        "hard state votes for node {}, beyond d-engine's u32 node ids",
                        v.voted_for_id
                    ),
                })
            })?,
            voted_for_term: v.voted_for_term,
            committed: v.committed,
        }),
    };
    Ok(DHardState {
        current_term: s.current_term,
        voted_for,
    })
}

#[async_trait]
impl d_engine::LogStore for DEngineLogStore {
    async fn persist_entries(&self, entries: Vec<DEntry>) -> Result<(), DError> {
        let entries = entries.into_iter().map(entry_to_tierlog).collect();
        self.inner
            .persist_entries(entries)
            .await
            .map_err(to_d_engine_error)
    }

    async fn entry(&self, index: u64) -> Result<Option<DEntry>, DError> {
        match self.inner.entry(index).await.map_err(to_d_engine_error)? {
            Some(e) => Ok(Some(entry_from_tierlog(e)?)),
            None => Ok(None),
        }
    }

    fn get_entries(&self, range: RangeInclusive<u64>) -> Result<Vec<DEntry>, DError> {
        self.inner
            .get_entries(range)
            .map_err(to_d_engine_error)?
            .into_iter()
            .map(entry_from_tierlog)
            .collect()
    }

    async fn purge(&self, cutoff_index: DLogId) -> Result<(), DError> {
        self.inner
            .purge(log_id_to_tierlog(cutoff_index))
            .await
            .map_err(to_d_engine_error)
    }

    async fn truncate(&self, from_index: u64) -> Result<(), DError> {
        self.inner.truncate(from_index).await.map_err(to_d_engine_error)
    }

    async fn replace_range(&self, from_index: u64, new_entries: Vec<DEntry>) -> Result<(), DError> {
        // d-engine's default runs truncate and persist separately; tierlog does both in one record.
        let entries = new_entries.into_iter().map(entry_to_tierlog).collect();
        self.inner
            .replace_range(from_index, entries)
            .await
            .map_err(to_d_engine_error)
    }

    fn is_write_durable(&self) -> bool {
        self.inner.is_write_durable()
    }

    fn flush(&self) -> Result<(), DError> {
        self.inner.flush().map_err(to_d_engine_error)
    }

    async fn flush_async(&self) -> Result<(), DError> {
        // The sync flush is the one whose durability tierlog guarantees; d-engine 0.2.4 drives storage
        // from its own IO thread, so blocking here stalls nothing else.
        self.inner.flush().map_err(to_d_engine_error)
    }

    async fn reset(&self) -> Result<(), DError> {
        self.inner.reset().await.map_err(to_d_engine_error)
    }

    fn last_index(&self) -> u64 {
        self.inner.last_index()
    }

    fn load_purge_boundary(&self) -> Result<Option<DLogId>, DError> {
        Ok(self
            .inner
            .load_purge_boundary()
            .map_err(to_d_engine_error)?
            .map(log_id_from_tierlog))
    }
}

#[async_trait]
impl d_engine::MetaStore for DEngineMetaStore {
    fn save_hard_state(&self, state: &DHardState) -> Result<(), DError> {
        self.inner
            .save_hard_state(&hard_state_to_tierlog(state))
            .map_err(to_d_engine_error)
    }

    fn load_hard_state(&self) -> Result<Option<DHardState>, DError> {
        match self.inner.load_hard_state().map_err(to_d_engine_error)? {
            Some(s) => Ok(Some(hard_state_from_tierlog(s)?)),
            None => Ok(None),
        }
    }

    fn flush(&self) -> Result<(), DError> {
        self.inner.flush().map_err(to_d_engine_error)
    }

    async fn flush_async(&self) -> Result<(), DError> {
        self.inner.flush().map_err(to_d_engine_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use d_engine::common::entry_payload::Payload;

    fn command_entry(index: u64, term: u64, cmd: &'static [u8]) -> DEntry {
        DEntry {
            index,
            term,
            payload: Some(EntryPayload {
                payload: Some(Payload::Command(Bytes::from_static(cmd))),
            }),
        }
    }

    #[test]
    fn encoded_tierlog_entry_equals_encoded_d_engine_entry() {
        let d = command_entry(42, 7, b"put k v");
        let t = entry_to_tierlog(d.clone());
        assert_eq!(prost::Message::encode_to_vec(&t), d.encode_to_vec());
    }

    #[test]
    fn entries_round_trip_with_and_without_payload() {
        let with = command_entry(3, 2, b"x");
        assert_eq!(entry_from_tierlog(entry_to_tierlog(with.clone())).unwrap(), with);
        let without = DEntry {
            index: 4,
            term: 2,
            payload: None,
        };
        let stored = entry_to_tierlog(without.clone());
        assert!(stored.payload.is_empty());
        assert_eq!(entry_from_tierlog(stored).unwrap(), without);
    }

    #[test]
    fn garbage_payload_is_corruption_not_panic() {
        let bad = Entry::new(9, 1, Bytes::from_static(b"\xff\xff\xff"));
        let err = entry_from_tierlog(bad).unwrap_err();
        assert!(err.to_string().contains("corruption") || format!("{err:?}").contains("DataCorruption"));
    }

    #[test]
    fn hard_state_round_trips_and_rejects_wide_node_ids() {
        let d = DHardState {
            current_term: 9,
            voted_for: Some(DVotedFor {
                voted_for_id: 3,
                voted_for_term: 9,
                committed: true,
            }),
        };
        let t = hard_state_to_tierlog(&d);
        assert_eq!(t.voted_for.unwrap().voted_for_id, 3);
        assert!(t.voted_for.unwrap().committed);
        let back = hard_state_from_tierlog(t).unwrap();
        assert_eq!(back.current_term, 9);
        assert_eq!(back.voted_for, d.voted_for);

        let wide = HardState {
            current_term: 1,
            voted_for: Some(VotedFor {
                voted_for_id: u64::from(u32::MAX) + 1,
                voted_for_term: 1,
                committed: false,
            }),
        };
        assert!(hard_state_from_tierlog(wide).is_err());
    }

    #[test]
    fn io_errors_keep_their_path() {
        let e = to_d_engine_error(Error::Io {
            path: "/x/y".into(),
            source: std::io::Error::other("boom"),
        });
        assert!(format!("{e:?}").contains("/x/y"));
    }
}
