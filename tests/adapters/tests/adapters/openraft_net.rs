//! The in-process openraft network of the cluster tests: every `Raft` instance is registered under
//! (Raft group, node id), and an RPC calls the target instance's handle directly. Several Raft groups
//! on the same nodes are simply several `Raft` instances per node, each with the network factory of
//! its own group (openraft's multi-raft shape: groups share the transport, not their state). An
//! instance that is not registered (stopped) is unreachable.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use openraft::{Raft, RaftNetworkFactory, RaftNetworkV2, SnapshotPolicy};
use openraft_memstore::{MemStateMachine, TypeConfig};
use parking_lot::Mutex;

pub type C = TypeConfig;
pub type RaftNode = Raft<C, Arc<MemStateMachine>>;
/// A Raft group's id; the same number as its tierlog group id in the tests that share an engine.
pub type GroupId = u64;

/// Routes RPCs to whichever (group, node) instances are running.
#[derive(Clone, Default)]
pub struct Router {
    rafts: Arc<Mutex<HashMap<(GroupId, u64), RaftNode>>>,
}

impl Router {
    /// Makes `raft` reachable as node `node` of `group`.
    pub fn register(&self, group: GroupId, node: u64, raft: RaftNode) {
        self.rafts.lock().insert((group, node), raft);
    }

    /// Makes node `node` of `group` unreachable; returns its handle if it was registered.
    pub fn unregister(&self, group: GroupId, node: u64) -> Option<RaftNode> {
        self.rafts.lock().remove(&(group, node))
    }

    fn get(&self, group: GroupId, node: u64) -> Option<RaftNode> {
        self.rafts.lock().get(&(group, node)).cloned()
    }

    /// The network factory for the `Raft` instances of `group`.
    pub fn group(&self, group: GroupId) -> GroupNetwork {
        GroupNetwork {
            group,
            router: self.clone(),
        }
    }
}

/// One group's view of the [`Router`].
#[derive(Clone)]
pub struct GroupNetwork {
    group: GroupId,
    router: Router,
}

pub struct Connection {
    group: GroupId,
    target: u64,
    router: Router,
}

impl RaftNetworkFactory<C> for GroupNetwork {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, _node: &()) -> Connection {
        Connection {
            group: self.group,
            target,
            router: self.router.clone(),
        }
    }
}

impl Connection {
    fn target(&self) -> Result<RaftNode, Unreachable<C>> {
        self.router.get(self.group, self.target).ok_or_else(|| {
            Unreachable::new(&std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                format!("node {} of group {} is stopped", self.target, self.group),
            ))
        })
    }
}

impl RaftNetworkV2<C> for Connection {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        self.target()?
            .append_entries(rpc)
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        _option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.target()?
            .vote(rpc)
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Cursor<Vec<u8>>>,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        self.target()?
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))
    }
}

/// Short timeouts for an in-process cluster, and no snapshots: a lagging follower must be fed from
/// the log (and so from the leader's cold tier), never from a snapshot.
pub fn raft_config() -> Arc<openraft::Config> {
    let config = openraft::Config {
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        snapshot_policy: SnapshotPolicy::Never,
        max_payload_entries: 128,
        ..Default::default()
    };
    Arc::new(config.validate().unwrap())
}

/// The engine of every node: a 1 MiB budget and eager compaction, so a follower that fell behind
/// is fed from the leader's cold tier.
pub fn tier_config() -> tierlog::Config {
    tierlog::Config {
        memory_budget_bytes: 1 << 20,
        compaction_trigger_bytes: 64 << 10,
        hot_tail_entries: 64,
        compaction_interval_ms: 50,
        ..tierlog::Config::default()
    }
}

/// Waits until `raft` (described by `what`) has applied up to `index`.
pub async fn wait_applied(raft: &RaftNode, index: u64, what: &str) {
    raft.wait(Some(Duration::from_secs(60)))
        .applied_index_at_least(Some(index), format!("{what} applies up to {index}"))
        .await
        .unwrap();
}
