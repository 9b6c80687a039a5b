//! A real 3-node d-engine 0.2.4 cluster in one process on 127.0.0.1, every node's Raft log and hard
//! state on tierlog (through `DEngineStorage`), d-engine's `FileStateMachine` as state machine, gRPC
//! between the nodes.
//!
//! Scenario: elect a leader; write a few thousand keys and read all of them back from every node;
//! stop a follower, keep writing, restart it on the same directories and check it catches up and
//! serves the new keys; stop the leader, check a new leader is elected and that no acknowledged write
//! is lost. Snapshot and purge thresholds are small so d-engine purges tierlog during the run.
//!
//! Run: `PROTOC=$(cargo xtask protoc) cargo test --features d-engine-tests --test adapters d_engine_cluster`
//! (about 10-20 s; `cargo xtask test` runs it with everything else). `TIERLOG_CLUSTER_KEEP=1` keeps
//! the nodes' directories for a post-mortem (`tierlog inspect`/`dump` read them).
//!
//! Keys are written by one client at a time. With 8 concurrent clients, d-engine 0.2.4 itself
//! sometimes leaves a follower with a hole of a few dozen consecutive entries (its state machine
//! then never serves those keys), on d-engine's own `FileStorageEngine` as well as on tierlog: see
//! docs/integrations.md. The ignored test below keeps that scenario as a
//! reproducer for when upstream fixes it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use d_engine::{EmbeddedEngine, FileStateMachine};
use tierlog::adapters::d_engine::DEngineStorage;
use tierlog::{Config, LogStore, StorageEngine};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep};

/// Fixed loopback ports for this test only (other tests use other ranges).
const PORTS: [u16; 3] = [47311, 47312, 47313];
const FIRST_BATCH: usize = 2000;
const WHILE_FOLLOWER_DOWN: usize = 1000;
const AFTER_FAILOVER: usize = 200;

fn key(i: usize) -> String {
    format!("key-{i:06}")
}

fn value(i: usize) -> Vec<u8> {
    // About 200 bytes, different for every key, so a wrong or stale entry cannot pass.
    format!("value-{i:06}-{}", "x".repeat(i % 64 + 160)).into_bytes()
}

fn tier_config() -> Config {
    // A small budget and eager compaction so entries reach the cold tier during the run.
    Config {
        memory_budget_bytes: 2 << 20,
        compaction_trigger_bytes: 64 << 10,
        hot_tail_entries: 128,
        compaction_interval_ms: 50,
        ..Config::default()
    }
}

struct NodeDirs {
    root: PathBuf,
}

impl NodeDirs {
    fn log(&self) -> PathBuf {
        self.root.join("tierlog")
    }
    fn sm(&self) -> PathBuf {
        self.root.join("state-machine")
    }
    fn config_file(&self) -> PathBuf {
        self.root.join("node.toml")
    }
}

fn write_node_config(node_id: u32, dirs: &NodeDirs) {
    let members = PORTS
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let id = i + 1;
            // role 1 = voter (follower at start), status 3 = ACTIVE in d-engine 0.2.x.
            format!("{{ id = {id}, name = 'n{id}', address = '127.0.0.1:{p}', role = 1, status = 3 }}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let root = dirs.root.display();
    let port = PORTS[node_id as usize - 1];
    let toml = format!(
        r#"
[cluster]
node_id = {node_id}
listen_address = '127.0.0.1:{port}'
initial_cluster = [{members}]
db_root_dir = '{root}/db'
log_dir = '{root}/logs'

[raft.snapshot]
enable = true
max_log_entries_before_snapshot = 200
snapshot_cool_down_since_last_check = {{ secs = 1, nanos = 0 }}
retained_log_entries = 20
snapshots_dir = '{root}/snapshots'
"#
    );
    std::fs::create_dir_all(&dirs.root).unwrap();
    std::fs::write(dirs.config_file(), toml).unwrap();
}

struct Node {
    id: u32,
    engine: EmbeddedEngine,
    storage: Arc<DEngineStorage>,
}

/// Starts (or restarts) a node on its directories. A just-stopped node may still hold its files or
/// port for a moment while d-engine's threads wind down, so opening is retried for a while.
async fn start_node(node_id: u32, dirs: &NodeDirs) -> Node {
    let deadline = Instant::now() + Duration::from_secs(30);
    let storage = loop {
        match DEngineStorage::open(dirs.log(), tier_config()).await {
            Ok(s) => break Arc::new(s),
            Err(e) if Instant::now() < deadline => {
                eprintln!("node {node_id}: tierlog open failed ({e}), retrying");
                sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("node {node_id}: tierlog open failed: {e}"),
        }
    };
    let config_path = dirs.config_file().to_str().unwrap().to_string();
    loop {
        let sm = Arc::new(FileStateMachine::new(dirs.sm()).await.unwrap());
        match EmbeddedEngine::start_custom(storage.clone(), sm, Some(&config_path)).await {
            Ok(engine) => {
                return Node {
                    id: node_id,
                    engine,
                    storage,
                };
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("node {node_id}: start failed ({e:?}), retrying");
                sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("node {node_id}: start failed: {e:?}"),
        }
    }
}

/// Waits until one of `nodes` is leader with its no-op committed, and returns its position.
async fn wait_for_leader(nodes: &[Node], not: Option<u32>) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for (i, n) in nodes.iter().enumerate() {
            if n.engine.is_leader() && Some(n.id) != not {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no leader elected within 60 s");
        sleep(Duration::from_millis(100)).await;
    }
}

/// Writes keys `range` through `leader` with `writers` concurrent clients; returns once every put is
/// acknowledged (a put that fails is retried, so only acknowledged writes count).
async fn write_keys(leader: &Node, range: std::ops::Range<usize>, writers: usize) {
    let mut tasks = JoinSet::new();
    for w in 0..writers {
        let client = leader.engine.client();
        let range = range.clone();
        tasks.spawn(async move {
            for i in range.filter(|i| i % writers == w) {
                let mut attempts = 0;
                loop {
                    match client.put(key(i), value(i)).await {
                        Ok(()) => break,
                        Err(e) => {
                            attempts += 1;
                            assert!(attempts < 50, "put {} kept failing: {e:?}", key(i));
                            sleep(Duration::from_millis(100)).await;
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

/// Checks that `node` serves every key in `range` with the value written. Reads are eventual and
/// concurrent writers commit keys out of order, so a key still missing is polled until a deadline; a
/// wrong value fails at once.
async fn assert_serves(node: &Node, range: std::ops::Range<usize>) {
    let client = node.engine.client();
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in range {
        loop {
            match client.get_eventual(key(i)).await {
                Ok(Some(v)) => {
                    assert_eq!(
                        &v[..],
                        &value(i)[..],
                        "node {} serves a wrong value for {}",
                        node.id,
                        key(i)
                    );
                    break;
                }
                _ if Instant::now() < deadline => sleep(Duration::from_millis(50)).await,
                other => panic!("node {} never served {}: {other:?}", node.id, key(i)),
            }
        }
    }
}

async fn wait_for_purge(node: &Node) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while node
        .storage
        .engine()
        .log_store()
        .load_purge_boundary()
        .unwrap()
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "node {}: d-engine never purged tierlog (snapshot threshold 200 entries)",
            node.id
        );
        sleep(Duration::from_millis(100)).await;
    }
}

fn dirs_for(base: &Path) -> Vec<NodeDirs> {
    (1..=3)
        .map(|id| NodeDirs {
            root: base.join(format!("node{id}")),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_node_d_engine_cluster_on_tierlog() {
    run_cluster(1).await;
}

/// d-engine 0.2.4 loses entries on followers under concurrent proposals, whatever its storage (see
/// the module doc); run with `-- --ignored` to check whether an upgrade fixed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "d-engine 0.2.4 upstream bug: followers can miss entries under 8 concurrent writers"]
async fn three_node_d_engine_cluster_with_concurrent_writers() {
    run_cluster(8).await;
}

async fn run_cluster(writers: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let base = if std::env::var_os("TIERLOG_CLUSTER_KEEP").is_some() {
        let kept = tmp.keep();
        eprintln!("keeping the cluster's directories in {}", kept.display());
        kept
    } else {
        tmp.path().to_path_buf()
    };
    let dirs = dirs_for(&base);
    for (i, d) in dirs.iter().enumerate() {
        write_node_config(i as u32 + 1, d);
    }
    let mut nodes = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        nodes.push(start_node(i as u32 + 1, d).await);
    }

    // 1. Elect, write, read back everywhere.
    let leader = wait_for_leader(&nodes, None).await;
    write_keys(&nodes[leader], 0..FIRST_BATCH, writers).await;
    for n in &nodes {
        assert_serves(n, 0..FIRST_BATCH).await;
    }
    wait_for_purge(&nodes[leader]).await;

    // 2. Stop a follower, keep writing, restart it on the same directories.
    let follower = (leader + 1) % nodes.len();
    let stopped = nodes.remove(follower);
    let stopped_id = stopped.id;
    let stopped_last_index = stopped.storage.engine().log_store().last_index();
    stopped.engine.stop().await.unwrap();
    drop(stopped);
    let leader = nodes
        .iter()
        .position(|n| n.engine.is_leader())
        .expect("leader still leads");
    let total = FIRST_BATCH + WHILE_FOLLOWER_DOWN;
    write_keys(&nodes[leader], FIRST_BATCH..total, writers).await;
    let leader_boundary = nodes[leader]
        .storage
        .engine()
        .log_store()
        .load_purge_boundary()
        .unwrap();
    eprintln!(
        "follower {stopped_id} stopped at log index {stopped_last_index}; leader purged up to {leader_boundary:?}"
    );

    let restarted = start_node(stopped_id, &dirs[stopped_id as usize - 1]).await;
    nodes.push(restarted);
    let restarted = nodes.last().unwrap();
    assert_serves(restarted, 0..total).await;
    assert!(
        restarted.storage.engine().log_store().last_index() > stopped_last_index,
        "the restarted follower's tierlog did not grow"
    );

    // 3. Stop the leader; a new one must be elected and every acknowledged key must survive.
    let leader = nodes.iter().position(|n| n.engine.is_leader()).expect("a leader");
    let old = nodes.remove(leader);
    let old_id = old.id;
    old.engine.stop().await.unwrap();
    drop(old);
    let new_leader = wait_for_leader(&nodes, Some(old_id)).await;
    let end = total + AFTER_FAILOVER;
    write_keys(&nodes[new_leader], total..end, writers).await;
    let client = nodes[new_leader].engine.client();
    for i in (0..end).step_by(97).chain([end - 1]) {
        assert_eq!(
            client.get_linearizable(key(i)).await.unwrap().as_deref(),
            Some(&value(i)[..]),
            "acknowledged write {} lost after failover",
            key(i)
        );
    }
    for n in &nodes {
        assert_serves(n, 0..end).await;
        let stats = n.storage.engine().stats();
        assert!(stats.last_index >= end as u64, "node {}: {stats:?}", n.id);
    }

    for n in nodes {
        n.engine.stop().await.unwrap();
    }
}
