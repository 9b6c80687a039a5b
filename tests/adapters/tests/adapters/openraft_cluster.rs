//! A 3-node openraft 0.10.0-alpha.37 cluster in one process, every node's log on tierlog (through
//! `OpenraftLogStore`) with a 1 MiB memory budget, openraft-memstore's state machine, and an
//! in-process network (`openraft_net`) that calls the target node's `Raft` handle directly.
//!
//! Scenario: write entries; stop a follower; write several MiB more, so the leader's copies of
//! the entries that follower lacks are compacted into the cold tier and evicted from the hot ring;
//! restart the follower on its directory with an empty state machine; check that it catches up, that
//! the leader served the catch-up from its cold tier (`Stats::cold_reads` grows while it happens), and
//! that all three state machines end equal and hold every write.
//!
//! Run: `cargo test -p tierlog-adapter-tests openraft_cluster` (the binary needs `protoc`, see main.rs).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::Raft;
use openraft::async_runtime::WatchReceiver;
use openraft_memstore::{BlockConfig, ClientRequest, MemStateMachine};
use tierlog::adapters::openraft::OpenraftLogStore;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep};

use crate::openraft_net::{C, RaftNode, Router, raft_config, tier_config};

/// The only Raft group of this cluster (the network routes by group).
const GROUP: u64 = 0;
const BEFORE_STOP: u64 = 1000;
const WHILE_STOPPED: u64 = 3000;
const WRITERS: u64 = 8;

struct Node {
    id: u64,
    raft: RaftNode,
    store: OpenraftLogStore<C>,
    sm: Arc<MemStateMachine>,
}

/// Starts (or restarts) a node on `dir` with a fresh in-memory state machine. A just-stopped node may
/// release its directory a moment after `shutdown` returns, so opening is retried for a while.
async fn start_node(id: u64, dir: &Path, router: &Router) -> Node {
    let deadline = Instant::now() + Duration::from_secs(30);
    let store = loop {
        match OpenraftLogStore::<C>::open(dir, tier_config()).await {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("node {id}: open failed ({e}), retrying");
                sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("node {id}: open failed: {e}"),
        }
    };
    let sm = Arc::new(MemStateMachine::new(BlockConfig::default()));
    let raft = Raft::new(id, raft_config(), router.group(GROUP), store.clone(), sm.clone())
        .await
        .unwrap();
    router.register(GROUP, id, raft.clone());
    Node { id, raft, store, sm }
}

fn request(i: u64) -> ClientRequest {
    ClientRequest {
        client: format!("client-{i:06}"),
        serial: i,
        // About 1 KiB per entry, distinct per entry.
        status: format!("status-{i}-{}", "s".repeat(1000 + (i % 17) as usize)),
    }
}

async fn write_range(leader: &RaftNode, range: std::ops::Range<u64>) {
    let mut tasks = JoinSet::new();
    for w in 0..WRITERS {
        let raft = leader.clone();
        let range = range.clone();
        tasks.spawn(async move {
            for i in range.filter(|i| i % WRITERS == w) {
                // A fresh leader refuses writes (ForwardToLeader, LeaseExpired) until its lease is
                // established; only acknowledged writes count, so retry those refusals.
                let mut attempts = 0;
                while let Err(e) = raft.client_write(request(i)).await {
                    attempts += 1;
                    assert!(attempts < 100, "write {i} kept failing: {e}");
                    sleep(Duration::from_millis(50)).await;
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

async fn wait_applied(node: &Node, index: u64) {
    crate::openraft_net::wait_applied(&node.raft, index, &format!("node {}", node.id)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_node_openraft_cluster_catch_up_from_cold_tier() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |id: u64| tmp.path().join(format!("node{id}"));
    let router = Router::default();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(start_node(id, &dir(id), &router).await);
    }
    nodes[0]
        .raft
        .initialize(BTreeSet::from([1u64, 2, 3]))
        .await
        .unwrap();
    let metrics = nodes[0]
        .raft
        .wait(Some(Duration::from_secs(30)))
        .metrics(|m| m.current_leader.is_some(), "a leader is elected")
        .await
        .unwrap();
    let leader_id = metrics.current_leader.unwrap();
    let leader = nodes.iter().position(|n| n.id == leader_id).unwrap();

    write_range(&nodes[leader].raft, 0..BEFORE_STOP).await;

    // Stop a follower and release its directory.
    let follower = (leader + 1) % nodes.len();
    let stopped = nodes.remove(follower);
    let stopped_id = stopped.id;
    let leader = nodes.iter().position(|n| n.id == leader_id).unwrap();
    router.unregister(GROUP, stopped_id);
    stopped.raft.shutdown().await.unwrap();
    drop(stopped);

    write_range(&nodes[leader].raft, BEFORE_STOP..BEFORE_STOP + WHILE_STOPPED).await;
    let leader_store = nodes[leader].store.clone();
    leader_store.engine().compact_now().await.unwrap();
    let before = leader_store.engine().stats();
    eprintln!("leader before catch-up: {before:?}");
    assert!(
        before.cold_blocks > 0 && before.compaction_high_water > BEFORE_STOP,
        "the entries the follower lacks should be in the leader's cold tier: {before:?}"
    );
    assert!(
        before.hot_bytes <= before.memory_budget_bytes,
        "hot tier over the memory budget: {before:?}"
    );

    let last_applied = nodes[leader]
        .raft
        .metrics()
        .borrow_watched()
        .last_applied
        .expect("leader applied entries")
        .index;
    let restarted = start_node(stopped_id, &dir(stopped_id), &router).await;
    wait_applied(&restarted, last_applied).await;
    let after = leader_store.engine().stats();
    eprintln!("leader after catch-up: {after:?}");
    assert!(
        after.cold_reads > before.cold_reads,
        "the catch-up was not served from the leader's cold tier: cold reads {} -> {}",
        before.cold_reads,
        after.cold_reads
    );
    nodes.push(restarted);

    // Every state machine holds every write, and all three are equal.
    let total = BEFORE_STOP + WHILE_STOPPED;
    for n in &nodes {
        wait_applied(n, last_applied).await;
    }
    let reference = nodes[0].sm.get_state_machine().await;
    assert_eq!(reference.client_status.len() as u64, total);
    for i in (0..total).step_by(101).chain([total - 1]) {
        let r = request(i);
        assert_eq!(
            reference.client_status.get(&r.client),
            Some(&r.status),
            "entry {i}"
        );
    }
    for n in &nodes[1..] {
        let sm = n.sm.get_state_machine().await;
        assert_eq!(sm.last_applied_log, reference.last_applied_log, "node {}", n.id);
        assert_eq!(
            sm.client_status, reference.client_status,
            "node {} diverged",
            n.id
        );
    }
    for n in &nodes {
        let stats = n.store.engine().stats();
        assert!(stats.last_index > last_applied, "node {}: {stats:?}", n.id);
    }

    for n in nodes {
        router.unregister(GROUP, n.id);
        n.raft.shutdown().await.unwrap();
    }
}
