//! `peers`: the same Raft-log workloads on tierlog, raft-engine, raft-log, a plain redb store, d-engine's
//! `FileStorageEngine` and the raw disk, in one command, with every figure as a ratio to tierlog.
//! The many-groups workload compares tierlog's groups in one engine with raft-engine's regions in
//! one engine and with one tierlog directory per group (`src/groups.rs`).
//!
//! Every (store, workload) pair runs in a child process of this binary (so peak RSS is that
//! pair's alone, and a crash of one store does not hide the others); the parent orchestrates,
//! rotates the order between rounds, and prints markdown tables.
#![forbid(unsafe_code)]

mod groups;
mod native;
mod others;
#[allow(dead_code)] // shared with the tierlog CLI; the labels are unused here
#[path = "../../../cli/src/cli/payload.rs"]
mod payload;
mod peer;
mod raftlog;
mod table;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{Parser, Subcommand};
use peer::{Peer, R};
use workloads::{Outcome, Params};

/// Compare tierlog with raft-engine, raft-log, redb, d-engine's file store and the raw disk.
#[derive(Parser, Debug)]
#[command(name = "peers")]
struct Cli {
    #[command(subcommand)]
    child: Option<Child>,
    /// Stores to run (comma-separated): tierlog, raft-engine, raft-log, redb, d-engine, raw-append,
    /// raw-prealloc, tierlog-dirs (one tierlog directory per group; many-groups only). many-groups
    /// runs only tierlog, raft-engine and tierlog-dirs.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "tierlog,raft-engine,raft-log,redb,d-engine,raw-append,raw-prealloc,tierlog-dirs"
    )]
    peers: Vec<String>,
    /// Workloads to run (comma-separated): leader-append, follower-catchup, long-retention,
    /// many-groups (not run unless named).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "leader-append,follower-catchup,long-retention"
    )]
    workloads: Vec<String>,
    /// Rounds of leader-append (median reported; the order of stores rotates each round).
    #[arg(long, default_value_t = 3)]
    rounds: u64,
    /// Rounds of the read and retention workloads.
    #[arg(long, default_value_t = 1)]
    read_rounds: u64,
    /// Parent directory for the stores' directories (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Payload bytes per entry.
    #[arg(long, default_value_t = 256)]
    entry_size: usize,
    /// Entries per batch.
    #[arg(long, default_value_t = 64)]
    batch: u64,
    /// leader-append: durable batches per round.
    #[arg(long, default_value_t = 2000)]
    append_batches: u64,
    /// follower-catchup: entries written before the reads.
    #[arg(long, default_value_t = 300_000)]
    catchup_entries: u64,
    /// Entries per range read.
    #[arg(long, default_value_t = 10_000)]
    range: u64,
    /// Range reads per measurement.
    #[arg(long, default_value_t = 30)]
    range_calls: u64,
    /// long-retention: entries written.
    #[arg(long, default_value_t = 2_000_000)]
    retention_entries: u64,
    /// tierlog's memory budget in long-retention (bytes).
    #[arg(long, default_value_t = 64 << 20)]
    tierlog_budget: u64,
    /// kv or random.
    #[arg(long, default_value = "kv")]
    payload: String,
    /// Payload seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// many-groups: the group counts to run, one child per (store, count) (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    groups: Vec<u64>,
    /// many-groups: durable 64-entry batches written, all groups together (each group writes at
    /// least 4).
    #[arg(long, default_value_t = 16_000)]
    group_batches: u64,
    /// many-groups: writer threads (durable appends in flight), each cycling over its share of the groups.
    #[arg(long, default_value_t = 64)]
    concurrency: u64,
    /// many-groups: tierlog's memory budget for all groups (bytes); tierlog-dirs gives each engine
    /// its share, at least 1 MiB.
    #[arg(long, default_value_t = 256 << 20)]
    groups_budget: u64,
    /// many-groups: rounds per (store, group count).
    #[arg(long, default_value_t = 1)]
    group_rounds: u64,
}

#[derive(Subcommand, Debug)]
enum Child {
    /// (internal) Runs one store on one workload and prints its outcome as JSON.
    #[command(hide = true)]
    Child {
        #[arg(long)]
        peer: String,
        #[arg(long)]
        workload: String,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        params: String,
    },
}

fn open_peer(name: &str, dir: &Path, p: &Params, workload: &str) -> R<Box<dyn Peer>> {
    let budget = if workload == "long-retention" {
        p.tierlog_budget
    } else {
        tierlog::Config::default().memory_budget_bytes
    };
    let stride = 12 + p.entry_size as u64;
    Ok(match name {
        "tierlog" => Box::new(peer::Tierlog::open(dir, budget)?),
        "raft-engine" => Box::new(others::RaftEngine::open(dir)?),
        "raft-log" => Box::new(raftlog::RaftLogStore::open(dir)?),
        "redb" => Box::new(native::RedbStore::open(dir)?),
        "d-engine" => Box::new(others::DEngineFile::open(dir)?),
        "raw-append" => Box::new(native::Raw::open(
            dir,
            p.entry_size,
            0,
            workload == "follower-catchup",
        )?),
        "raw-prealloc" => {
            let bytes = (p.append_batches * p.batch * stride).next_multiple_of(1 << 20);
            Box::new(native::Raw::open(dir, p.entry_size, bytes, false)?)
        }
        other => return Err(format!("unknown store {other}").into()),
    })
}

fn child(peer_name: &str, workload: &str, dir: &Path, params: &str) -> R<Outcome> {
    let mut p: Params = serde_json::from_str(params)?;
    std::fs::create_dir_all(dir)?;
    if let Some(n) = workload.strip_prefix("many-groups-") {
        p.groups = n.parse()?;
        let mut store = groups::open(peer_name, dir, &p)?;
        let mut out = groups::many_groups(store.as_mut(), &p, dir)?;
        drop(store);
        out.peer = peer_name.to_string();
        out.workload = workload.to_string();
        out.peak_rss = peak_rss();
        return Ok(out);
    }
    let mut peer = open_peer(peer_name, dir, &p, workload)?;
    let mut out = match workload {
        "leader-append" => workloads::leader_append(peer.as_mut(), &p, dir)?,
        "follower-catchup" => workloads::follower_catchup(peer.as_mut(), &p, dir)?,
        "long-retention" => workloads::long_retention(peer.as_mut(), &p, dir)?,
        other => return Err(format!("unknown workload {other}").into()),
    };
    drop(peer);
    out.peer = peer_name.to_string();
    out.workload = workload.to_string();
    out.peak_rss = peak_rss();
    Ok(out)
}

fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Runs one child; an error or crash becomes an `Err` with the child's stderr.
fn spawn(peer: &str, workload: &str, base: &Path, params: &str) -> Result<Outcome, String> {
    let dir = base.join(format!("{peer}-{workload}"));
    let _ = std::fs::remove_dir_all(&dir);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args([
            "child",
            "--peer",
            peer,
            "--workload",
            workload,
            "--params",
            params,
            "--dir",
        ])
        .arg(&dir)
        .output()
        .map_err(|e| format!("cannot start a child: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    // The next child starts on a quiet disk: without this it shared the disk with the kernel's
    // writeback of what this one left (1,000 tierlog directories leave over a GiB), which cost
    // whichever store ran next (tierlog at 1,000 groups: 0.51x raft-engine's entries/s with
    // tierlog-dirs in the rotation, 0.65x without it).
    let _ = Command::new("sync").status();
    let out = out?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return Err(format!("{} ({})", last.trim(), out.status));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("bad child output: {e}"))
}

fn main() {
    let cli = Cli::parse();
    if let Some(Child::Child {
        peer,
        workload,
        dir,
        params,
    }) = &cli.child
    {
        match child(peer, workload, dir, params) {
            Ok(out) => println!("{}", serde_json::to_string(&out).unwrap_or_default()),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let params = Params {
        entry_size: cli.entry_size,
        batch: cli.batch,
        append_batches: cli.append_batches,
        catchup_entries: cli.catchup_entries,
        range: cli.range,
        range_calls: cli.range_calls,
        retention_entries: cli.retention_entries,
        tierlog_budget: cli.tierlog_budget,
        seed: cli.seed,
        payload: cli.payload.clone(),
        groups: 0,
        group_batches: cli.group_batches,
        concurrency: cli.concurrency,
        groups_budget: cli.groups_budget,
    };
    let params_json = serde_json::to_string(&params).unwrap_or_default();
    let base = cli
        .dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("tierlog-peers-{}", std::process::id()));
    let mut results = table::Results::default();
    // many-groups runs once per group count, each its own "workload" many-groups-<G>.
    let workloads: Vec<String> = cli
        .workloads
        .iter()
        .flat_map(|w| match w.as_str() {
            "many-groups" => cli.groups.iter().map(|g| format!("many-groups-{g}")).collect(),
            _ => vec![w.clone()],
        })
        .collect();
    for workload in &workloads {
        let many = workload.starts_with("many-groups-");
        let rounds = if workload == "leader-append" {
            cli.rounds
        } else if many {
            cli.group_rounds
        } else {
            cli.read_rounds
        };
        let peers: Vec<&String> = cli
            .peers
            .iter()
            .filter(|p| match p.as_str() {
                _ if many => groups::PEERS.contains(&p.as_str()),
                "raw-prealloc" => workload == "leader-append",
                "tierlog-dirs" => false,
                _ => true,
            })
            .collect();
        for round in 0..rounds {
            for k in 0..peers.len() {
                let peer = peers[(k + round as usize) % peers.len()];
                eprintln!("[{workload} round {}/{rounds}] {peer} ...", round + 1);
                let r = spawn(peer, workload, &base, &params_json);
                if let Err(e) = &r {
                    eprintln!("    {peer} failed: {e}");
                }
                results.add(workload, peer, r);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&base);
    print!("{}", table::render(&results, &params, &cli.peers, &cli.groups));
}
