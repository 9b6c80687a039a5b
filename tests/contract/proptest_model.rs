//! Property test of issue 2: random operation sequences (append, overwrite, truncate, replace_range,
//! purge, reset, hard-state saves, rejected input, reopen, forced compaction) against a simple
//! in-memory model; after every operation the whole observable state must equal the model's.
//!
//! 64 cases by default; raise with e.g. `PROPTEST_CASES=1000 cargo test --test proptest_model`.
//! (The longer model checker of issue 5 lives elsewhere; this one stays small and fast.)

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use tierlog::{Config, Entry, Error, HardState, LogId, LogStore, MetaStore, VotedFor};

use crate::support::{Harness, Mode, config};

/// One step; indexes are chosen relative to the model's state when the step runs.
#[derive(Clone, Debug)]
enum Op {
    /// Persist `len` new entries right after the last one (in a new term if `bump`).
    Append {
        len: u8,
        bump: bool,
    },
    /// Persist `len` entries starting at an existing index (upsert), in a new term.
    Overwrite {
        at: u16,
        len: u8,
    },
    /// truncate(from), from anywhere in 1..=last+2.
    Truncate {
        at: u16,
    },
    /// replace_range(from, len entries), from in boundary+1..=last+1.
    Replace {
        at: u16,
        len: u8,
    },
    /// purge up to an index in boundary+1..=last+3 (possibly past the end).
    Purge {
        at: u16,
    },
    /// purge(LogId { index: 0 }): a no-op.
    PurgeZero,
    Reset,
    SaveHardState {
        term: u8,
        vote: Option<(u8, bool)>,
    },
    /// A call the contract rejects (kind picks which); nothing may change.
    Rejected {
        kind: u8,
        at: u16,
    },
    /// A random range read checked against the model.
    Read {
        a: u16,
        b: u16,
    },
    Reopen,
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..=40, any::<bool>()).prop_map(|(len, bump)| Op::Append { len, bump }),
        2 => (any::<u16>(), 1u8..=12).prop_map(|(at, len)| Op::Overwrite { at, len }),
        2 => any::<u16>().prop_map(|at| Op::Truncate { at }),
        2 => (any::<u16>(), 0u8..=12).prop_map(|(at, len)| Op::Replace { at, len }),
        2 => any::<u16>().prop_map(|at| Op::Purge { at }),
        1 => Just(Op::PurgeZero),
        1 => Just(Op::Reset),
        1 => (any::<u8>(), proptest::option::of((any::<u8>(), any::<bool>())))
            .prop_map(|(term, vote)| Op::SaveHardState { term, vote }),
        2 => (0u8..7, any::<u16>()).prop_map(|(kind, at)| Op::Rejected { kind, at }),
        2 => (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Op::Read { a, b }),
        2 => Just(Op::Reopen),
        3 => Just(Op::Compact),
    ]
}

/// The reference: a map from index to entry, the purge boundary and the hard state.
#[derive(Default)]
struct Model {
    entries: BTreeMap<u64, Entry>,
    boundary: Option<LogId>,
    hard_state: Option<HardState>,
    term: u64,
    version: u64,
}

impl Model {
    fn boundary_index(&self) -> u64 {
        self.boundary.map_or(0, |b| b.index)
    }
    fn last(&self) -> u64 {
        self.entries
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.boundary_index())
    }
    /// Entries `from..from+len` in `term`, with payloads unique to this write.
    fn batch(&mut self, from: u64, len: u64, term: u64) -> Vec<Entry> {
        self.version += 1;
        let v = self.version;
        (from..from + len)
            .map(|i| {
                let body = format!("{i}/{term}/{v};").repeat(1 + (i + v) as usize % 9);
                Entry::new(i, term, Bytes::from(body))
            })
            .collect()
    }
    fn upsert(&mut self, batch: &[Entry]) {
        for e in batch {
            self.entries.insert(e.index, e.clone());
        }
    }
    fn truncate(&mut self, from: u64) {
        self.entries.split_off(&from);
    }
}

/// `lo + at mod (hi - lo + 1)`: an index in lo..=hi chosen by `at`.
fn pick(lo: u64, hi: u64, at: u16) -> u64 {
    lo + u64::from(at) % (hi - lo + 1)
}

async fn check(h: &Harness, m: &Model, ctx: &str) {
    let log = h.log();
    let want: Vec<Entry> = m.entries.values().cloned().collect();
    assert_eq!(log.last_index(), m.last(), "{ctx}: last_index");
    assert_eq!(
        log.load_purge_boundary().unwrap(),
        m.boundary,
        "{ctx}: purge boundary"
    );
    let got = log.get_entries(0..=m.last() + 5).unwrap();
    assert_eq!(
        crate::support::indexes(&got),
        crate::support::indexes(&want),
        "{ctx}: indexes"
    );
    assert_eq!(got, want, "{ctx}: entries");
    for i in [m.boundary_index(), m.boundary_index() + 1, m.last(), m.last() + 1] {
        assert_eq!(
            log.entry(i).await.unwrap().as_ref(),
            m.entries.get(&i),
            "{ctx}: entry({i})"
        );
    }
    assert_eq!(
        h.meta().load_hard_state().unwrap(),
        m.hard_state,
        "{ctx}: hard state"
    );
}

async fn apply(h: &mut Harness, m: &mut Model, op: &Op) {
    let log = h.log();
    let (b, last) = (m.boundary_index(), m.last());
    match *op {
        Op::Append { len, bump } => {
            m.term += u64::from(bump);
            let batch = m.batch(last + 1, u64::from(len), m.term.max(1));
            log.persist_entries(batch.clone()).await.unwrap();
            m.upsert(&batch);
        }
        Op::Overwrite { at, len } if last > b => {
            m.term += 1;
            let from = pick(b + 1, last, at);
            let batch = m.batch(from, u64::from(len), m.term);
            log.persist_entries(batch.clone()).await.unwrap();
            m.upsert(&batch);
        }
        Op::Truncate { at } => {
            let from = pick(1, last + 2, at);
            log.truncate(from).await.unwrap();
            m.truncate(from);
        }
        Op::Replace { at, len } => {
            m.term += 1;
            let from = pick(b + 1, last + 1, at);
            let batch = m.batch(from, u64::from(len), m.term);
            log.replace_range(from, batch.clone()).await.unwrap();
            m.truncate(from);
            m.upsert(&batch);
        }
        Op::Purge { at } => {
            // Purge terms never decrease, as in Raft, so "highest LogId" is unambiguous.
            let cut = LogId::new(m.term.max(1), pick(b + 1, last + 3, at));
            log.purge(cut).await.unwrap();
            m.entries = m.entries.split_off(&(cut.index + 1));
            m.boundary = Some(cut);
        }
        Op::PurgeZero => log.purge(LogId::new(m.term, 0)).await.unwrap(),
        Op::Reset => {
            log.reset().await.unwrap();
            m.entries.clear();
            m.boundary = None;
        }
        Op::SaveHardState { term, vote } => {
            let s = HardState {
                current_term: u64::from(term),
                voted_for: vote.map(|(id, committed)| VotedFor {
                    voted_for_id: u64::from(id),
                    voted_for_term: u64::from(term),
                    committed,
                }),
            };
            h.meta().save_hard_state(&s).unwrap();
            m.hard_state = Some(s);
        }
        Op::Rejected { kind, at } => {
            let x = pick(b + 1, last + 1, at);
            let t = m.term + 1;
            let (what, result) = match kind {
                0 => ("index 0", log.persist_entries(m.batch(0, 2, t)).await),
                // On an empty log any start above the boundary is valid, so a hole needs entries.
                1 if !m.entries.is_empty() => (
                    "hole after last",
                    log.persist_entries(m.batch(last + 2, 3, t)).await,
                ),
                2 => {
                    let mut v = m.batch(x, 3, t);
                    v.swap(1, 2);
                    ("out of order", log.persist_entries(v).await)
                }
                3 => {
                    let mut v = m.batch(x, 3, t);
                    v[2] = v[1].clone();
                    ("duplicate", log.persist_entries(v).await)
                }
                4 if b > 0 => ("at the boundary", log.persist_entries(m.batch(b, 2, t)).await),
                5 => (
                    "replace_range not at from",
                    log.replace_range(x, m.batch(x + 1, 2, t)).await,
                ),
                _ => {
                    let mut v = m.batch(x, 3, t);
                    v.remove(1);
                    ("hole inside", log.persist_entries(v).await)
                }
            };
            assert!(
                matches!(result, Err(Error::InvalidInput(_))),
                "{what}: {result:?}"
            );
        }
        Op::Read { a, b: bb } => {
            let (lo, hi) = (u64::from(a) % (last + 8), u64::from(bb) % (last + 8));
            let got = log.get_entries(lo..=hi).unwrap();
            let want: Vec<Entry> = if lo <= hi {
                m.entries.range(lo..=hi).map(|(_, e)| e.clone()).collect()
            } else {
                Vec::new()
            };
            assert_eq!(got, want, "get_entries({lo}..={hi})");
        }
        Op::Reopen => {
            drop(log);
            h.reopen().await;
        }
        Op::Compact => h.compact().await,
        // Overwrite on an empty log: nothing to overwrite.
        Op::Overwrite { .. } => {}
    }
}

fn run_case(ops: &[Op], eager: bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cfg: Config = if eager {
            config::eager_compaction()
        } else {
            config::on_demand_compaction()
        };
        let mut h = Harness::with_config(Mode::Hot, cfg).await;
        let mut m = Model::default();
        for (n, op) in ops.iter().enumerate() {
            apply(&mut h, &mut m, op).await;
            check(&h, &m, &format!("after op #{n} {op:?}")).await;
        }
        h.reopen().await;
        check(&h, &m, "final reopen").await;
        h.compact().await;
        h.reopen().await;
        check(&h, &m, "final compaction and reopen").await;
    });
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// The engine equals the model after every operation of a random sequence.
    #[test]
    fn engine_matches_model(ops in proptest::collection::vec(op(), 1..48), eager in any::<bool>()) {
        run_case(&ops, eager);
    }
}

/// A fixed sequence through every operation kind, so the model itself is exercised even with
/// `PROPTEST_CASES=0`.
#[test]
fn model_smoke_sequence() {
    let ops = vec![
        Op::Append { len: 40, bump: true },
        Op::Append { len: 40, bump: false },
        Op::Compact,
        Op::Overwrite { at: 17, len: 5 },
        Op::Reopen,
        Op::Purge { at: 22 },
        Op::Truncate { at: 60 },
        Op::Compact,
        Op::Replace { at: 10, len: 7 },
        Op::SaveHardState {
            term: 3,
            vote: Some((2, true)),
        },
        Op::Rejected { kind: 1, at: 0 },
        Op::Rejected { kind: 4, at: 0 },
        Op::Reopen,
        Op::Read { a: 3, b: 90 },
        Op::PurgeZero,
        Op::Purge { at: 500 },
        Op::Append { len: 3, bump: true },
        Op::Reset,
        Op::Append { len: 5, bump: false },
        Op::Reopen,
    ];
    run_case(&ops, false);
    run_case(&ops, true);
}

/// Shrunk failure found by `engine_matches_model`: 12 entries compacted, reopen, 2 appended, index 3
/// overwritten (deep in the cold tier), reset, reopen: recovery must give an empty log.
#[test]
fn regression_reset_after_deep_cold_overwrite() {
    let ops = vec![
        Op::Append { len: 12, bump: false },
        Op::Compact,
        Op::Reopen,
        Op::Append { len: 2, bump: false },
        Op::Overwrite { at: 19686, len: 1 },
        Op::Reset,
    ];
    run_case(&ops, false);
}
