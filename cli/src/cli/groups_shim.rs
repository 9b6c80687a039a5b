//! WAITING FOR THE GROUPS API (issue 11 items 1-3, the lead's commit "groups: API" on main).
//!
//! Stands in for `TieredEngine::create_group` and `tierlog::Group` so that the rest of the
//! `tierlog bench --workload many-groups` builds before the API lands: every `create_group` fails,
//! so the workload ends with that error until this file is deleted (after
//! `git merge main`, the inherent method of the real API takes its place with no other change).

use std::future::Future;
use std::sync::Arc;

use tierlog::{Error, TierLogStore, TieredEngine};

/// The group handles of the spec; uninhabited here, since no group can be created yet.
pub enum Group {}

impl Group {
    /// The group's log (spec: `StorageEngine::log_store` on `tierlog::Group`).
    pub fn log_store(&self) -> Arc<TierLogStore> {
        match *self {}
    }
}

/// `TieredEngine::create_group` of the spec.
pub trait CreateGroup {
    /// Always fails until the API is merged.
    fn create_group(&self, id: u64) -> impl Future<Output = tierlog::Result<Group>> + Send;
}

impl CreateGroup for TieredEngine {
    async fn create_group(&self, id: u64) -> tierlog::Result<Group> {
        Err(Error::InvalidInput(format!(
            "group {id}: the groups API (TieredEngine::create_group) is not merged into this branch yet"
        )))
    }
}

/// `TieredEngine::group` of the spec.
pub trait GroupOf {
    /// Always fails until the API is merged.
    fn group(&self, id: u64) -> tierlog::Result<Group>;
}

impl GroupOf for TieredEngine {
    fn group(&self, id: u64) -> tierlog::Result<Group> {
        Err(Error::InvalidInput(format!(
            "group {id}: the groups API (TieredEngine::group) is not merged into this branch yet"
        )))
    }
}

/// fdatasyncs of the write-ahead stream so far: the lead adds `Stats::wal_syncs`; until then the
/// engine does not count them and the benchmark reports "not measured".
pub fn wal_syncs(_stats: &tierlog::Stats) -> Option<u64> {
    None
}
