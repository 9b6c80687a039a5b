//! The storage contract, one binary: what a Raft library may rely on, checked through the public
//! API (and the tools in `tierlog::offline`).
//!
//! - `semantics`, `purge_truncate`, `bad_input`: the rules of the log contract, each run in every
//!   harness [`support::Mode`] (hot, reopened, compacted, compacted and reopened, background
//!   compaction with reopen); `reopen`: hard state, lifecycle, durability flags and stats;
//!   `smoke`: an end-to-end pass through both tiers and the offline tools.
//! - `model`: random operation sequences against [`support::Model`] (proptest, shrunk on failure).
//! - `concurrency`: readers racing a writer, the compactor, purge and truncate.
//! - `recovery_cases`, `recovery_regressions`, `engine_drop_hang`: fixed reproductions of bugs the
//!   random tests and the crash loop found, and the first release's on-disk format.
//! - `groups`: many Raft groups in one engine: each group's log, hard state and metadata are its
//!   own (in every harness mode), creation is idempotent, removal is final and closes the group's
//!   handles, every group comes back after a reopen.
//! - `dictionary`: the cold tier's compression dictionary (before/after training, reopen, damage).
//! - `offline`: `verify` and `open` agree on damaged stores. (The decoders of bytes from disk are
//!   fuzzed inside the crate, `src/fuzz_tests.rs`, where they are not public.)
//!
//! Run one part with a filter: `cargo test --test contract model::`.

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod bad_input;
mod concurrency;
mod dictionary;
mod engine_drop_hang;
mod groups;
mod model;
mod offline;
mod purge_truncate;
mod reclaim;
mod recovery_cases;
mod recovery_regressions;
mod reopen;
mod semantics;
mod smoke;
