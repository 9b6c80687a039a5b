//! tierlog: a tiered Raft log store.
//!
//! Recent entries live in an in-memory ring backed by a checksummed write-ahead log (the hot tier);
//! a background compactor moves older ranges into zstd-compressed blocks stored in redb (the cold
//! tier). Reads merge both tiers. See `docs/design.md` for the data flow and invariants and
//! `docs/format.md` for the on-disk formats.
//!
//! ```no_run
//! use tierlog::{Config, Entry, LogStore, StorageEngine, TieredEngine};
//! # async fn demo() -> tierlog::Result<()> {
//! let engine = TieredEngine::open("/tmp/my-log", Config::default()).await?;
//! let log = engine.log_store();
//! log.persist_entries(vec![Entry::new(1, 1, "hello"), Entry::new(2, 1, "world")]).await?;
//! log.flush()?; // now both entries survive power loss
//! assert_eq!(log.get_entries(1..=2)?.len(), 2);
//! # Ok(()) }
//! ```
//!
//! Payloads are [`bytes::Bytes`], re-exported as [`tierlog::bytes`](crate::bytes) so that a caller
//! needs no `bytes` dependency of its own:
//!
//! ```
//! use tierlog::Entry;
//! use tierlog::bytes::Bytes;
//!
//! let payload = Bytes::from(vec![1, 2, 3]);
//! let entry = Entry::new(7, 2, payload.clone()); // shares the buffer, no copy
//! assert_eq!(entry.payload, payload);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(feature = "d-engine", feature = "openraft"))]
pub mod adapters;
mod backpressure;
mod budget;
mod cold;
mod compactor;
mod config;
mod core;
mod engine;
mod error;
mod failpoints;
#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod fuzzing;
mod group;
mod hot;
mod layout;
mod le;
mod limits;
mod log_store;
mod meta;
pub mod metrics;
pub mod offline;
pub mod proto;
mod recovery;
mod state;
mod stats;
mod traits;
mod wal;

/// The `bytes` crate, re-exported: [`Entry::payload`] and application metadata are [`bytes::Bytes`].
pub use bytes;
pub use config::{Config, RecoveryMode};
pub use engine::{Group, TieredEngine};
pub use error::{Error, OffsetKind, Result};
pub use limits::{BATCH_ENTRY_OVERHEAD_BYTES, MAX_BATCH_BYTES, MAX_ENTRY_BYTES, batch_bytes};
pub use log_store::{TierLogStore, TierMetaStore};
pub use proto::{Entry, GroupId, HardState, LogId, VotedFor};
pub use stats::{GroupStats, Stats};
pub use traits::{LogStore, MetaStore, StorageEngine};
