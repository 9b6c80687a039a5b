//! Several openraft groups on 3 nodes in one process, each node's groups all on ONE tierlog engine
//! (one write-ahead stream, one cold tier, one 1 MiB memory budget per node), through
//! `OpenraftLogStore::with_group`. The network (`openraft_net`) routes by (group, node).
//!
//! Scenario: initialize every group (from different nodes, so leaders are spread); write entries;
//! in every group stop one follower's `Raft` (its node and engine keep serving the other groups);
//! write several MiB more in every group, so each leader's copies of what its stopped follower
//! lacks move to the cold tier and out of the memory budget; then, one group at a time, restart
//! that follower on the same engine with an empty state machine and check that it catches up and
//! that its leader's engine served the catch-up from the cold tier (`Stats::cold_reads` of that engine
//! grows while only this group has traffic). Then restart a whole node: shut its `Raft`s down,
//! close its engine, reopen the directory, re-create each group's store with `engine.group(id)`,
//! check each group's vote and log came back as they were, and write once more in every group: the
//! write commits and is applied on all three nodes, and every group's state machines are equal and
//! hold exactly that group's writes.
//!
//! Run: `cargo test -p tierlog-adapter-tests openraft_groups` (the binary needs `protoc`, see main.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::Raft;
use openraft::async_runtime::WatchReceiver;
use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft_memstore::{BlockConfig, ClientRequest, MemStateMachine};
use tierlog::adapters::openraft::OpenraftLogStore;
use tierlog::{Group, GroupStats, Stats, TieredEngine};
use tokio::task::JoinSet;
use tokio::time::sleep;

use crate::openraft_net::{C, GroupId, RaftNode, Router, raft_config, tier_config, wait_applied};

/// Group 0 (the one every engine has, what `open` / `with_engine` serve) and three created groups.
const GROUPS: [GroupId; 4] = [0, 1, 2, 3];
const NODES: [u64; 3] = [1, 2, 3];
const BEFORE_STOP: u64 = 200;
const WHILE_STOPPED: u64 = 1000;
const WRITERS: u64 = 4;

/// One node's tierlog engine, hosting that node's replica of every group, and each group's store
/// (built once per open, as a node process would; clones share it).
struct NodeLog {
    dir: PathBuf,
    engine: TieredEngine,
    stores: BTreeMap<GroupId, OpenraftLogStore<C>>,
}

impl NodeLog {
    /// Opens the node's engine in `dir` and creates every group (a first start).
    async fn create(dir: &Path) -> NodeLog {
        let engine = open_engine(dir).await;
        let mut stores = BTreeMap::new();
        for group in GROUPS {
            let handles = engine.create_group(group).await.unwrap();
            stores.insert(group, group_store(dir, handles).await);
        }
        NodeLog {
            dir: dir.to_path_buf(),
            engine,
            stores,
        }
    }

    /// Reopens the node's engine in `dir` after a restart: the groups must be there already.
    async fn reopen(dir: &Path) -> NodeLog {
        let engine = open_engine(dir).await;
        assert_eq!(
            engine.groups(),
            GROUPS.to_vec(),
            "{}: groups after reopen",
            dir.display()
        );
        let mut stores = BTreeMap::new();
        for group in GROUPS {
            let handles = engine.group(group).unwrap();
            stores.insert(group, group_store(dir, handles).await);
        }
        NodeLog {
            dir: dir.to_path_buf(),
            engine,
            stores,
        }
    }

    fn store(&self, group: GroupId) -> OpenraftLogStore<C> {
        self.stores[&group].clone()
    }

    /// Rebuilds `group`'s store from the running engine, as a node does when it restarts one
    /// group's `Raft` (whose previous store must be dropped already).
    async fn reopen_store(&mut self, group: GroupId) {
        let handles = self.engine.group(group).unwrap();
        let store = group_store(&self.dir, handles).await;
        self.stores.insert(group, store);
    }

    fn stats(&self) -> Stats {
        self.engine.stats()
    }

    fn group_stats(&self, group: GroupId) -> GroupStats {
        self.engine.group(group).unwrap().stats()
    }

    async fn close(self) {
        drop(self.stores);
        self.engine.close().await.unwrap();
    }
}

async fn open_engine(dir: &Path) -> TieredEngine {
    TieredEngine::open(dir.join("log"), tier_config()).await.unwrap()
}

async fn group_store(dir: &Path, group: Group) -> OpenraftLogStore<C> {
    let hint = dir.join(format!("committed-{}.json", group.id()));
    OpenraftLogStore::with_group(group, hint).await.unwrap()
}

/// A node: its engine and, per group, its running `Raft` (if any) and state machine.
struct Node {
    id: u64,
    log: NodeLog,
    rafts: BTreeMap<GroupId, (RaftNode, Arc<MemStateMachine>)>,
}

impl Node {
    async fn start_group(&mut self, group: GroupId, router: &Router) {
        let sm = Arc::new(MemStateMachine::new(BlockConfig::default()));
        let raft = Raft::new(
            self.id,
            raft_config(),
            router.group(group),
            self.log.store(group),
            sm.clone(),
        )
        .await
        .unwrap();
        router.register(group, self.id, raft.clone());
        self.rafts.insert(group, (raft, sm));
    }

    async fn stop_group(&mut self, group: GroupId, router: &Router) {
        router.unregister(group, self.id);
        let (raft, _) = self.rafts.remove(&group).expect("the group is running");
        raft.shutdown().await.unwrap();
    }

    fn raft(&self, group: GroupId) -> &RaftNode {
        &self.rafts[&group].0
    }
}

/// One group's write number `i`: distinct per group and per entry, about 1 KiB.
fn request(group: GroupId, i: u64) -> ClientRequest {
    ClientRequest {
        client: format!("g{group}-client-{i:06}"),
        serial: i,
        status: format!("g{group}-status-{i}-{}", "s".repeat(1000 + (i % 17) as usize)),
    }
}

/// The node that leads `group` now, as some running member sees it.
async fn leader_of(nodes: &[Node], group: GroupId) -> u64 {
    let any = nodes
        .iter()
        .find_map(|n| n.rafts.get(&group))
        .map(|(r, _)| r.clone())
        .expect("a running member");
    any.wait(Some(Duration::from_secs(30)))
        .metrics(
            |m| m.current_leader.is_some(),
            format!("group {group} has a leader"),
        )
        .await
        .unwrap()
        .current_leader
        .unwrap()
}

fn node(nodes: &[Node], id: u64) -> &Node {
    nodes.iter().find(|n| n.id == id).unwrap()
}

/// The running `Raft`s of `group`, by node id.
fn members(nodes: &[Node], group: GroupId) -> BTreeMap<u64, RaftNode> {
    nodes
        .iter()
        .filter_map(|n| n.rafts.get(&group).map(|(r, _)| (n.id, r.clone())))
        .collect()
}

/// Writes `range` into every group at once.
async fn write_all(nodes: &[Node], range: std::ops::Range<u64>) {
    let mut groups = JoinSet::new();
    for group in GROUPS {
        groups.spawn(write_range(members(nodes, group), group, range.clone()));
    }
    while let Some(r) = groups.join_next().await {
        r.unwrap();
    }
}

/// Writes `range` into `group` through its current leader; only acknowledged writes count, so a
/// refusal (no leader yet, lease not established, leader changed) is retried through whoever leads.
async fn write_range(members: BTreeMap<u64, RaftNode>, group: GroupId, range: std::ops::Range<u64>) {
    let mut tasks = JoinSet::new();
    for w in 0..WRITERS {
        let members = members.clone();
        let range = range.clone();
        tasks.spawn(async move {
            for i in range.filter(|i| i % WRITERS == w) {
                let mut attempts = 0;
                loop {
                    let leader = members
                        .values()
                        .find_map(|r| r.metrics().borrow_watched().current_leader)
                        .and_then(|id| members.get(&id));
                    let result = match leader {
                        Some(r) => r
                            .client_write(request(group, i))
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string()),
                        None => Err("no leader".to_string()),
                    };
                    match result {
                        Ok(()) => break,
                        Err(e) => {
                            attempts += 1;
                            assert!(attempts < 200, "group {group}: write {i} kept failing: {e}");
                            sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

/// The highest index a running member of `group` has applied to its state machine: once every write
/// was acknowledged (applied on the leader that took it) and none is in flight, that is the index
/// every member must reach. Read from the state machines, not from the metrics, which may lag them.
async fn group_applied(nodes: &[Node], group: GroupId) -> u64 {
    let mut applied = 0;
    for n in nodes {
        if let Some((_, sm)) = n.rafts.get(&group) {
            let last = sm.get_state_machine().await.last_applied_log;
            applied = applied.max(last.map_or(0, |id| id.index));
        }
    }
    applied
}

/// Waits until every running member of `group` applied `index`, then checks that their state
/// machines are equal and hold exactly writes `0..writes` of this group.
async fn check_group(nodes: &[Node], group: GroupId, index: u64, writes: u64) {
    for n in nodes {
        if let Some((raft, _)) = n.rafts.get(&group) {
            wait_applied(raft, index, &format!("node {} of group {group}", n.id)).await;
        }
    }
    let mut members = nodes
        .iter()
        .filter_map(|n| n.rafts.get(&group).map(|(_, sm)| (n.id, sm)));
    let (first, reference) = members.next().expect("a running member");
    let reference = reference.get_state_machine().await;
    assert_eq!(
        reference.client_status.len() as u64,
        writes,
        "group {group}, node {first}: number of writes applied"
    );
    for i in (0..writes).step_by(97).chain([writes - 1]) {
        let r = request(group, i);
        assert_eq!(
            reference.client_status.get(&r.client),
            Some(&r.status),
            "group {group}, node {first}: write {i}"
        );
    }
    for (id, sm) in members {
        let sm = sm.get_state_machine().await;
        assert_eq!(
            sm.last_applied_log, reference.last_applied_log,
            "group {group}, node {id}"
        );
        assert!(
            sm.client_status == reference.client_status,
            "group {group}: node {id} diverged from node {first}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openraft_groups_share_one_engine_per_node_catch_up_from_cold_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |id: u64| tmp.path().join(format!("node{id}"));
    let router = Router::default();
    let mut nodes = Vec::new();
    for id in NODES {
        nodes.push(Node {
            id,
            log: NodeLog::create(&dir(id)).await,
            rafts: BTreeMap::new(),
        });
    }
    for n in &mut nodes {
        for group in GROUPS {
            n.start_group(group, &router).await;
        }
    }
    // Initialize each group from a different node, so the leaders (and the cold reads of the
    // catch-ups) are spread over the engines.
    for group in GROUPS {
        let init = NODES[group as usize % NODES.len()];
        node(&nodes, init)
            .raft(group)
            .initialize(BTreeSet::from(NODES))
            .await
            .unwrap();
    }

    write_all(&nodes, 0..BEFORE_STOP).await;

    // In every group, stop the Raft of one follower; its node keeps serving the other groups.
    let mut stopped = BTreeMap::new();
    for group in GROUPS {
        let leader = leader_of(&nodes, group).await;
        let follower = NODES[(NODES.iter().position(|&n| n == leader).unwrap() + 1) % NODES.len()];
        let n = nodes.iter_mut().find(|n| n.id == follower).unwrap();
        n.stop_group(group, &router).await;
        let mut store = n.log.store(group);
        let had = store.get_log_state().await.unwrap().last_log_id.unwrap().index;
        stopped.insert(group, (follower, had));
    }
    write_all(&nodes, BEFORE_STOP..BEFORE_STOP + WHILE_STOPPED).await;
    let total = BEFORE_STOP + WHILE_STOPPED;

    // Let every running replica apply everything, so that the engines are idle but for the
    // catch-up under test, then push everything to the cold tier.
    let mut applied = BTreeMap::new();
    for group in GROUPS {
        let index = group_applied(&nodes, group).await;
        check_group(&nodes, group, index, total).await;
        applied.insert(group, index);
    }
    for n in &nodes {
        n.log.engine.compact_now().await.unwrap();
        let stats = n.log.stats();
        eprintln!("node {} before the catch-ups: {stats:?}", n.id);
        assert_eq!(stats.groups, GROUPS.len() as u64, "node {}", n.id);
        assert!(
            stats.hot_bytes <= stats.memory_budget_bytes,
            "node {}: hot tier over the memory budget: {stats:?}",
            n.id
        );
    }
    // In every group, the entries the stopped follower lacks are in its leader's cold tier and the
    // first of them is no longer in the leader's hot ring, so the catch-up has to read cold blocks.
    for group in GROUPS {
        let leader = leader_of(&nodes, group).await;
        let (follower, had) = stopped[&group];
        let gs = node(&nodes, leader).log.group_stats(group);
        eprintln!("group {group} on leader node {leader} (node {follower} has up to {had}): {gs:?}");
        // openraft index i is tierlog index i + 1.
        let first_missing = had + 2;
        assert!(
            gs.cold_blocks > 0 && gs.compaction_high_water >= first_missing,
            "group {group}: node {follower}'s missing entries from tierlog index {first_missing} are not \
             in leader node {leader}'s cold tier: {gs:?}"
        );
        assert!(
            gs.last_index - gs.hot_entries >= first_missing,
            "group {group}: leader node {leader}'s hot ring still holds tierlog index {first_missing}: {gs:?}"
        );
    }

    // One group at a time, so each engine's cold reads are this group's catch-up.
    for group in GROUPS {
        let leader = leader_of(&nodes, group).await;
        let (follower, _) = stopped[&group];
        let before = node(&nodes, leader).log.stats().cold_reads;
        let n = nodes.iter_mut().find(|n| n.id == follower).unwrap();
        // As a node restarting one group does: the group's store is built again from the engine.
        n.log.reopen_store(group).await;
        n.start_group(group, &router).await;
        wait_applied(
            n.raft(group),
            applied[&group],
            &format!("restarted node {follower} of group {group}"),
        )
        .await;
        let after = node(&nodes, leader).log.stats().cold_reads;
        eprintln!(
            "group {group}: leader node {leader} cold reads {before} -> {after} while node {follower} caught up"
        );
        assert!(
            after > before,
            "group {group}: node {follower}'s catch-up was not served from leader node {leader}'s cold tier \
             (cold reads {before} -> {after})"
        );
        check_group(&nodes, group, applied[&group], total).await;
    }

    // Restart a whole node: the one that leads group 0.
    let restart = leader_of(&nodes, 0).await;
    let pos = nodes.iter().position(|n| n.id == restart).unwrap();
    let mut old = nodes.remove(pos);
    let mut recorded = BTreeMap::new();
    for group in GROUPS {
        old.stop_group(group, &router).await;
        let mut store = old.log.store(group);
        let vote = store.read_vote().await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert!(
            vote.is_some() && state.last_log_id.is_some(),
            "group {group}: {vote:?} {state:?}"
        );
        recorded.insert(group, (vote, state.last_log_id, state.last_purged_log_id));
    }
    old.log.close().await;
    let mut reopened = Node {
        id: restart,
        log: NodeLog::reopen(&dir(restart)).await,
        rafts: BTreeMap::new(),
    };
    for group in GROUPS {
        let mut store = reopened.log.store(group);
        let vote = store.read_vote().await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(
            (vote, state.last_log_id, state.last_purged_log_id),
            recorded[&group],
            "group {group}: vote, last log id and purged log id after the restart of node {restart}"
        );
        reopened.start_group(group, &router).await;
    }
    nodes.push(reopened);

    // Every group continues: a write after the restart commits and is applied on all three nodes.
    write_all(&nodes, total..total + 1).await;
    for group in GROUPS {
        let index = group_applied(&nodes, group).await;
        assert!(
            index > applied[&group],
            "group {group}: nothing committed after the restart"
        );
        check_group(&nodes, group, index, total + 1).await;
    }

    for mut n in nodes {
        for group in GROUPS {
            n.stop_group(group, &router).await;
        }
        n.log.close().await;
    }
}
