//! Wires the tiers together. (Skeleton: bodies land in the next commit.)

use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{Config, Entry, Error, HardState, LogId, LogStore, MetaStore, Result, Stats, StorageEngine};

/// The tiered engine. Cloning handles is cheap; all handles share one state.
#[derive(Clone)]
pub struct TieredEngine {
    log: Arc<TierLogStore>,
    meta: Arc<TierMetaStore>,
}

/// The engine's [`LogStore`] handle.
pub struct TierLogStore {}

/// The engine's [`MetaStore`] handle.
pub struct TierMetaStore {}

impl TieredEngine {
    /// Opens (or creates) the engine in `dir`, recovering whatever a previous run left.
    pub async fn open(_dir: impl AsRef<Path>, _config: Config) -> Result<TieredEngine> {
        todo!()
    }

    /// Stops the background compactor, syncs the write-ahead log and releases the files.
    pub async fn close(self) -> Result<()> {
        todo!()
    }

    /// A snapshot of the engine's figures.
    pub fn stats(&self) -> Stats {
        todo!()
    }

    /// Runs one compaction round now, moving every compactable hot entry to the cold tier and
    /// applying pending cold-tier deletions; returns when the round is durable.
    pub async fn compact_now(&self) -> Result<()> {
        todo!()
    }
}

impl StorageEngine for TieredEngine {
    type LogStore = TierLogStore;
    type MetaStore = TierMetaStore;
    fn log_store(&self) -> Arc<TierLogStore> {
        self.log.clone()
    }
    fn meta_store(&self) -> Arc<TierMetaStore> {
        self.meta.clone()
    }
}

#[async_trait]
impl LogStore for TierLogStore {
    async fn persist_entries(&self, _entries: Vec<Entry>) -> Result<()> {
        todo!()
    }
    async fn entry(&self, _index: u64) -> Result<Option<Entry>> {
        todo!()
    }
    fn get_entries(&self, _range: RangeInclusive<u64>) -> Result<Vec<Entry>> {
        todo!()
    }
    async fn purge(&self, _cutoff: LogId) -> Result<()> {
        todo!()
    }
    async fn truncate(&self, _from: u64) -> Result<()> {
        todo!()
    }
    async fn replace_range(&self, _from: u64, _entries: Vec<Entry>) -> Result<()> {
        todo!()
    }
    async fn reset(&self) -> Result<()> {
        todo!()
    }
    fn last_index(&self) -> u64 {
        todo!()
    }
    fn is_write_durable(&self) -> bool {
        todo!()
    }
}

#[async_trait]
impl MetaStore for TierMetaStore {
    fn save_hard_state(&self, _state: &HardState) -> Result<(), Error> {
        todo!()
    }
    fn load_hard_state(&self) -> Result<Option<HardState>> {
        todo!()
    }
}
