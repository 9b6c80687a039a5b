//! Crash loop with real `SIGKILL`s.
//!
//! This test binary has its own `main` (`harness = false`). Run plainly, it is the *parent*: it
//! starts itself again as a *child* (selected by the `TIERLOG_CRASH_CHILD` variable), which opens a
//! store in a tiny configuration (64 KiB segments, 1 MiB memory budget, a compaction round every
//! 16 KiB) and runs random appends, overwrites, flushes, purges, truncates, `replace_range`s, resets,
//! hard-state saves and forced compactions forever. Before each operation the child prints
//! `B <op>` and after it returns `A` on stdout; the parent mirrors every acknowledged operation in a
//! model and kills the child with `SIGKILL` at a random moment: after a random number of lines plus
//! a random sub-millisecond delay, while a compaction or purge is in flight, or during open/recovery.
//! Then it reopens the directory itself and checks the log against the model.
//!
//! What is checked after each kill:
//! - `open` succeeds (a torn tail is never a reason to refuse);
//! - the log equals, entry by entry and byte by byte (index, term, payload), the model after the
//!   last acknowledged operation — or, if an operation was in flight (`B` seen, `A` not), the model
//!   after that operation. Nothing in between is accepted: a batch append, `replace_range`,
//!   `truncate`, `purge` and `reset` are each one write-ahead record, so a crash keeps all of it or
//!   none of it, never a prefix of a batch;
//! - so no hole, no duplicate, no entry of a truncated/overwritten range (each write uses a fresh
//!   term, so a stale entry has the wrong term), nothing at or below the purge boundary;
//! - `last_index()`, `load_purge_boundary()` and `load_hard_state()` equal the model's.
//!
//! This is a *process* crash: the page cache survives, so every operation that returned is expected
//! back, flushed or not (the contract: `persist_entries` hands the bytes to the OS before returning).
//! Power loss (losing what was not fdatasync'ed) is simulated separately.
//!
//! Default: 120 kills (well under a minute in debug). More:
//! `TIERLOG_CRASH_KILLS=5000 cargo test --release --test crash`; replay one run with
//! `TIERLOG_CRASH_SEED=<seed printed by the failing run>`.

#[path = "../support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{Model, Rng, config, copy_dir, diff_entries, env_u64};
use tierlog::{Config, HardState, LogId, LogStore, MetaStore, StorageEngine, TieredEngine, VotedFor};

const CHILD_ENV: &str = "TIERLOG_CRASH_CHILD";
const TEST_NAME: &str = "crash_loop";

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child_main(PathBuf::from(dir));
    }
    // Behave like a libtest binary for the arguments cargo passes through.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{TEST_NAME}: test");
        return;
    }
    if let Some(filter) = args.iter().find(|a| !a.starts_with('-'))
        && !TEST_NAME.contains(filter.as_str())
    {
        println!("{TEST_NAME}: 0 passed, 0 failed, 1 skipped");
        return;
    }
    if args.iter().any(|a| a == "--ignored") {
        // Nothing here is ignored; `--ignored` runs of the suite must not repeat the loop.
        println!("{TEST_NAME}: 0 passed, 0 failed, 1 skipped");
        return;
    }
    parent_main();
    println!("{TEST_NAME}: 1 passed, 0 failed");
}

// ---------------------------------------------------------------------------------------------
// The operations and their one-line encoding on the pipe.

#[derive(Clone, Debug, PartialEq)]
enum Op {
    Persist { first: u64, len: u64, term: u64 },
    Truncate { from: u64 },
    Replace { from: u64, len: u64, term: u64 },
    Purge { cutoff: LogId },
    Reset,
    Hard(HardState),
    Flush,
    Compact,
}

impl Op {
    fn encode(&self) -> String {
        match self {
            Op::Persist { first, len, term } => format!("P {first} {len} {term}"),
            Op::Truncate { from } => format!("T {from}"),
            Op::Replace { from, len, term } => format!("R {from} {len} {term}"),
            Op::Purge { cutoff } => format!("G {} {}", cutoff.index, cutoff.term),
            Op::Reset => "X".into(),
            Op::Hard(h) => match h.voted_for {
                None => format!("H {} -", h.current_term),
                Some(v) => format!(
                    "H {} {} {} {}",
                    h.current_term, v.voted_for_id, v.voted_for_term, v.committed as u8
                ),
            },
            Op::Flush => "F".into(),
            Op::Compact => "C".into(),
        }
    }

    fn decode(s: &str) -> Option<Op> {
        let mut it = s.split(' ');
        let tag = it.next()?;
        let mut num = || -> Option<u64> { it.next()?.parse().ok() };
        Some(match tag {
            "P" => Op::Persist {
                first: num()?,
                len: num()?,
                term: num()?,
            },
            "T" => Op::Truncate { from: num()? },
            "R" => Op::Replace {
                from: num()?,
                len: num()?,
                term: num()?,
            },
            "G" => {
                let index = num()?;
                let term = num()?;
                Op::Purge {
                    cutoff: LogId::new(term, index),
                }
            }
            "X" => Op::Reset,
            "H" => {
                let current_term = num()?;
                let rest: Vec<&str> = it.collect();
                let voted_for = match rest.as_slice() {
                    ["-"] => None,
                    [id, term, c] => Some(VotedFor {
                        voted_for_id: id.parse().ok()?,
                        voted_for_term: term.parse().ok()?,
                        committed: *c == "1",
                    }),
                    _ => return None,
                };
                Op::Hard(HardState {
                    current_term,
                    voted_for,
                })
            }
            "F" => Op::Flush,
            "C" => Op::Compact,
            _ => return None,
        })
    }

    fn apply(&self, m: &mut Model) {
        match *self {
            Op::Persist { first, len, term } => m.persist(first, len, term),
            Op::Truncate { from } => m.truncate(from),
            Op::Replace { from, len, term } => {
                m.truncate(from);
                m.persist(from, len, term);
            }
            Op::Purge { cutoff } => m.purge(cutoff),
            Op::Reset => m.reset(),
            Op::Hard(h) => m.hard = Some(h),
            Op::Flush | Op::Compact => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Child: random operations until killed.

fn child_config(sync: bool) -> Config {
    Config {
        sync_on_persist: sync,
        ..config::tiny()
    }
}

/// Writes one whole line with a single `write` call, so the parent never sees half a line from a
/// kill (pipe writes up to PIPE_BUF bytes are atomic).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    // A broken pipe means the parent is gone; nothing useful is left to do.
    if out.write_all(buf.as_bytes()).and_then(|_| out.flush()).is_err() {
        std::process::exit(4);
    }
}

fn child_main(dir: PathBuf) -> ! {
    let seed = env_u64("TIERLOG_CRASH_SEED").unwrap_or(0);
    let term_base = env_u64("TIERLOG_CRASH_TERM_BASE").unwrap_or(1);
    let sync = env_u64("TIERLOG_CRASH_SYNC") == Some(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(child_loop(&dir, seed, term_base, sync));
    // Only an error gets here: the loop runs until the parent kills the process.
    say(&format!("E {}", result.unwrap_err().replace('\n', " ")));
    std::process::exit(3);
}

async fn load_model(engine: &TieredEngine) -> tierlog::Result<Model> {
    let log = engine.log_store();
    let last = log.last_index();
    let mut m = Model {
        boundary: log.load_purge_boundary()?,
        hard: engine.meta_store().load_hard_state()?,
        ..Model::default()
    };
    for e in log.get_entries(0..=last)? {
        m.entries.insert(e.index, e.term);
    }
    Ok(m)
}

async fn child_loop(dir: &Path, seed: u64, term_base: u64, sync: bool) -> Result<(), String> {
    let engine = TieredEngine::open(dir, child_config(sync))
        .await
        .map_err(|e| format!("open: {e}"))?;
    let log = engine.log_store();
    let meta = engine.meta_store();
    let mut m = load_model(&engine).await.map_err(|e| format!("load: {e}"))?;
    say(&format!("O {} {}", m.last_index(), m.boundary_index()));
    let mut rng = Rng::new(seed ^ term_base);
    let mut term = term_base;
    loop {
        term += 1;
        let op = pick_op(&mut rng, &m, term, &log).await?;
        say(&format!("B {}", op.encode()));
        let res = match &op {
            Op::Persist { first, len, term } => {
                log.persist_entries(support::batch(*first, *len, *term, seed))
                    .await
            }
            Op::Truncate { from } => log.truncate(*from).await,
            Op::Replace { from, len, term } => {
                log.replace_range(*from, support::batch(*from, *len, *term, seed))
                    .await
            }
            Op::Purge { cutoff } => log.purge(*cutoff).await,
            Op::Reset => log.reset().await,
            Op::Hard(h) => meta.save_hard_state(h),
            Op::Flush => log.flush(),
            Op::Compact => engine.compact_now().await,
        };
        res.map_err(|e| format!("{}: {e}", op.encode()))?;
        op.apply(&mut m);
        if log.last_index() != m.last_index() {
            return Err(format!(
                "after {}: last_index() = {}, expected {}",
                op.encode(),
                log.last_index(),
                m.last_index()
            ));
        }
        say("A");
    }
}

async fn pick_op(rng: &mut Rng, m: &Model, term: u64, log: &tierlog::TierLogStore) -> Result<Op, String> {
    let last = m.last_index();
    let b = m.boundary_index();
    let has = !m.entries.is_empty();
    let roll = rng.below(1000);
    // Keep the retained log short so each check after a kill stays cheap.
    if m.entries.len() > 3_000 && roll < 100 {
        return purge_op(m, last - 500, term, log).await;
    }
    Ok(match roll {
        0..=449 => {
            let first = if has { last + 1 } else { b + 1 + rng.below(3) };
            let len = if rng.chance(1, 4) {
                rng.range(17, 64)
            } else {
                rng.range(1, 16)
            };
            Op::Persist { first, len, term }
        }
        450..=529 if has => {
            // An overwrite must start inside the log: below its first entry it would leave a hole.
            let lo = m.first_index().unwrap_or(b + 1).max(last.saturating_sub(50));
            Op::Persist {
                first: rng.range(lo, last),
                len: rng.range(1, 20),
                term,
            }
        }
        530..=679 => Op::Flush,
        680..=729 if has => {
            let lo = (b + 1).max(last.saturating_sub(30));
            Op::Truncate {
                from: rng.range(lo, last + 1),
            }
        }
        730..=789 => {
            let from = if has {
                rng.range((b + 1).max(last.saturating_sub(30)), last + 1)
            } else {
                b + 1
            };
            Op::Replace {
                from,
                len: rng.range(0, 20),
                term,
            }
        }
        790..=849 if has || rng.chance(1, 4) => {
            let cutoff = if !has || rng.chance(1, 20) {
                last + rng.range(1, 5)
            } else {
                rng.range(b + 1, b + 1 + (last - b) / 2)
            };
            purge_op(m, cutoff, term, log).await?
        }
        850..=899 => {
            let voted_for = rng.chance(2, 3).then(|| VotedFor {
                voted_for_id: rng.range(1, 5),
                voted_for_term: term,
                committed: rng.chance(1, 2),
            });
            Op::Hard(HardState {
                current_term: term,
                voted_for,
            })
        }
        900..=929 => Op::Compact,
        930..=933 => Op::Reset,
        _ => Op::Flush,
    })
}

/// A purge at `index` whose log id never sorts below the current boundary, so "highest purged"
/// is unambiguous whichever way the engine orders log ids.
async fn purge_op(m: &Model, index: u64, term: u64, log: &tierlog::TierLogStore) -> Result<Op, String> {
    let entry_term = log
        .entry(index)
        .await
        .map_err(|e| format!("entry({index}) before purge: {e}"))?
        .map_or(term, |e| e.term);
    let t = entry_term.max(m.boundary.map_or(0, |x| x.term));
    Ok(Op::Purge {
        cutoff: LogId::new(t, index),
    })
}

// ---------------------------------------------------------------------------------------------
// Parent: kill, reopen, compare.

#[derive(Default, Debug)]
struct Tally {
    kills: u64,
    acked: u64,
    in_flight_kept: u64,
    in_flight_dropped: u64,
    in_flight_either: u64,
    killed_during_open: u64,
    killed_mid_compaction: u64,
    killed_mid_purge: u64,
    killed_mid_truncate_or_replace: u64,
    killed_mid_append: u64,
    verified_entries: u64,
    /// Reopens that found a compression dictionary in the store.
    with_dictionary: u64,
}

enum Trigger {
    /// Kill this long after spawning, whatever the child is doing (often inside open/recovery).
    Timer(Duration),
    /// Kill after this many lines, then a random delay below 500 µs.
    Lines(u64),
    /// Kill while an operation with this tag is in flight.
    InFlight(&'static str),
}

fn parent_main() {
    let kills = env_u64("TIERLOG_CRASH_KILLS").unwrap_or(120);
    let seed = env_u64("TIERLOG_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(7, |d| d.as_nanos() as u64)
    });
    eprintln!("{TEST_NAME}: seed {seed} (replay with TIERLOG_CRASH_SEED={seed}), {kills} kills");
    let tmp = tempfile::tempdir().expect("tempdir");
    // TIERLOG_CRASH_DIR keeps the store (and a copy of it as the last kill left it, in
    // `<dir>.killed`) for a post-mortem.
    let keep = std::env::var_os("TIERLOG_CRASH_DIR").map(PathBuf::from);
    let dir = keep.clone().unwrap_or_else(|| tmp.path().join("store"));
    let exe = std::env::current_exe().expect("current_exe");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rng = Rng::new(seed);
    let mut model = Model::default();
    let mut tally = Tally::default();
    let started = Instant::now();

    for round in 0..kills {
        let sync = rng.chance(1, 4);
        let trigger = match rng.below(10) {
            0 => Trigger::Timer(Duration::from_micros(rng.below(40_000))),
            1 => Trigger::InFlight("C"),
            2 => Trigger::InFlight("G"),
            3 => Trigger::InFlight(if rng.chance(1, 2) { "T" } else { "R" }),
            _ => Trigger::Lines(rng.range(1, 600)),
        };
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, &dir)
            .env("TIERLOG_CRASH_SEED", seed.to_string())
            .env("TIERLOG_CRASH_TERM_BASE", ((round + 1) << 32).to_string())
            .env("TIERLOG_CRASH_SYNC", (sync as u8).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn crash child");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    // A line cut by the kill has no newline: it was never said.
                    Ok(0) | Err(_) => break,
                    Ok(_) if !line.ends_with('\n') => break,
                    Ok(_) => {
                        line.pop();
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });

        let spawned = Instant::now();
        let mut pending: Option<Op> = None;
        let mut opened = false;
        let mut lines = 0u64;
        let mut round_log: Vec<String> = Vec::new();
        let mut handle = |line: String,
                          pending: &mut Option<Op>,
                          model: &mut Model,
                          opened: &mut bool,
                          tally: &mut Tally| {
            if keep.is_some() {
                round_log.push(line.clone());
            }
            if let Some(rest) = line.strip_prefix("B ") {
                let op = Op::decode(rest)
                    .unwrap_or_else(|| panic!("round {round}: bad line from child: {line:?}"));
                assert!(pending.is_none(), "round {round}: B while an op is pending");
                *pending = Some(op);
            } else if line == "A" {
                let op = pending
                    .take()
                    .unwrap_or_else(|| panic!("round {round}: A without B"));
                op.apply(model);
                tally.acked += 1;
            } else if line.starts_with("O ") {
                *opened = true;
            } else if let Some(msg) = line.strip_prefix("E ") {
                if let Some(k) = &keep {
                    let _ = std::fs::write(k.with_extension("failops"), round_log.join("\n"));
                }
                panic!("round {round} (seed {seed}): child failed: {msg}");
            } else {
                panic!("round {round}: unexpected line from child: {line:?}");
            }
        };
        loop {
            let wait = match trigger {
                Trigger::Timer(d) => d.saturating_sub(spawned.elapsed()),
                _ => Duration::from_secs(60),
            };
            match rx.recv_timeout(wait) {
                Ok(line) => {
                    lines += 1;
                    handle(line, &mut pending, &mut model, &mut opened, &mut tally);
                    let fire = match trigger {
                        Trigger::Lines(n) => lines >= n,
                        Trigger::InFlight(tag) => {
                            pending.as_ref().is_some_and(|p| p.encode().starts_with(tag))
                        }
                        Trigger::Timer(_) => false,
                    } || lines >= 3_000;
                    if fire {
                        busy_wait(Duration::from_micros(rng.below(500)));
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if matches!(trigger, Trigger::Timer(_)) {
                        break;
                    }
                    panic!("round {round}: child silent for 60 s");
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().expect("wait child");
                    panic!("round {round} (seed {seed}): child exited by itself: {status}");
                }
            }
        }
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("wait child");
        assert!(
            status.code().is_none(),
            "round {round} (seed {seed}): child ended on its own ({status})"
        );
        // Lines written before the kill are still in the pipe: they were acknowledged.
        while let Ok(line) = rx.recv() {
            handle(line, &mut pending, &mut model, &mut opened, &mut tally);
        }
        reader.join().expect("reader thread");
        tally.kills += 1;
        if !opened {
            tally.killed_during_open += 1;
        }
        match pending.as_ref().map(|p| p.encode()) {
            Some(s) if s.starts_with('C') => tally.killed_mid_compaction += 1,
            Some(s) if s.starts_with('G') => tally.killed_mid_purge += 1,
            Some(s) if s.starts_with('T') || s.starts_with('R') => tally.killed_mid_truncate_or_replace += 1,
            Some(s) if s.starts_with('P') => tally.killed_mid_append += 1,
            _ => {}
        }

        if let Some(k) = &keep {
            let copy = k.with_extension("killed");
            let prev = k.with_extension("prev");
            let _ = std::fs::remove_dir_all(&prev);
            let _ = std::fs::rename(&copy, &prev);
            copy_dir(&dir, &copy);
            let _ = std::fs::rename(k.with_extension("ops"), k.with_extension("prevops"));
            let _ = std::fs::write(k.with_extension("ops"), round_log.join("\n"));
        }
        let before = model.clone();
        let after = pending.as_ref().map(|op| {
            let mut m = model.clone();
            op.apply(&mut m);
            m
        });
        let outcome = rt.block_on(async {
            let engine = TieredEngine::open(&dir, config::tiny())
                .await
                .unwrap_or_else(|e| panic!("round {round} (seed {seed}): open after SIGKILL failed: {e}"));
            let with_dictionary = engine.stats().dictionary_bytes > 0;
            let r_before = check(&engine, &before, seed).await;
            let r_after = match &after {
                Some(a) if r_before.is_err() => Some(check(&engine, a, seed).await),
                _ => None,
            };
            drop(engine);
            (r_before, r_after, with_dictionary)
        });
        let (r_before, r_after, with_dictionary) = outcome;
        tally.with_dictionary += u64::from(with_dictionary);
        let outcome = (r_before, r_after);
        match outcome {
            (Ok(n), _) => {
                tally.verified_entries += n;
                if let Some(a) = &after {
                    if *a == before {
                        tally.in_flight_either += 1;
                    } else {
                        tally.in_flight_dropped += 1;
                    }
                }
            }
            (Err(_), Some(Ok(n))) => {
                tally.verified_entries += n;
                tally.in_flight_kept += 1;
                model = after.expect("after state");
            }
            (Err(eb), ra) => panic!(
                "round {round} (seed {seed}): after SIGKILL the log matches neither the state \
                 before the in-flight op ({eb}) nor after it ({}); in flight: {:?}",
                match ra {
                    Some(Err(ea)) => ea,
                    _ => "no op in flight".into(),
                },
                pending
            ),
        }
    }
    eprintln!(
        "{TEST_NAME}: {} kills survived in {:.1}s: {} ops acknowledged, {} entries verified; \
         in flight at the kill: {} kept, {} dropped, {} no-ops; killed during open {}, \
         mid-compaction {}, mid-purge {}, mid-truncate/replace {}, mid-append {}; final last_index {}; \
         {} reopens found a compression dictionary",
        tally.kills,
        started.elapsed().as_secs_f64(),
        tally.acked,
        tally.verified_entries,
        tally.in_flight_kept,
        tally.in_flight_dropped,
        tally.in_flight_either,
        tally.killed_during_open,
        tally.killed_mid_compaction,
        tally.killed_mid_purge,
        tally.killed_mid_truncate_or_replace,
        tally.killed_mid_append,
        model.last_index(),
        tally.with_dictionary,
    );
    // The tiny configuration trains a dictionary once 32 KiB are cold: the loop must reopen such
    // stores, not only stores without one.
    assert!(
        tally.kills < 50 || tally.with_dictionary > 0,
        "{TEST_NAME}: no reopen found a compression dictionary in {} kills",
        tally.kills
    );
}

fn busy_wait(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Compares the reopened store with `m`; returns the number of entries compared.
async fn check(engine: &TieredEngine, m: &Model, seed: u64) -> Result<u64, String> {
    let log = engine.log_store();
    let last = log.last_index();
    if last != m.last_index() {
        return Err(format!("last_index {last}, expected {}", m.last_index()));
    }
    let boundary = log
        .load_purge_boundary()
        .map_err(|e| format!("load_purge_boundary: {e}"))?;
    if boundary != m.boundary {
        return Err(format!("purge boundary {boundary:?}, expected {:?}", m.boundary));
    }
    let hard = engine
        .meta_store()
        .load_hard_state()
        .map_err(|e| format!("load_hard_state: {e}"))?;
    if hard != m.hard {
        return Err(format!("hard state {hard:?}, expected {:?}", m.hard));
    }
    let got = log
        .get_entries(0..=last + 64)
        .map_err(|e| format!("get_entries: {e}"))?;
    let want = m.slice(0, last + 64, seed);
    if let Some(d) = diff_entries(&got, &want) {
        return Err(format!("get_entries(0..={}): {d}", last + 64));
    }
    // Point reads at the edges: the boundary itself, just past the end, first and last entries.
    let mut probes = vec![m.boundary_index(), last + 1];
    probes.extend(m.first_index());
    probes.push(last);
    for i in probes {
        let got = log.entry(i).await.map_err(|e| format!("entry({i}): {e}"))?;
        let want = m.entries.get(&i).map(|t| support::entry(i, *t, seed));
        if got != want {
            return Err(format!(
                "entry({i}) = {:?}, expected {:?}",
                got.map(|e| (e.index, e.term)),
                want.map(|e| (e.index, e.term))
            ));
        }
    }
    Ok(got.len() as u64)
}
