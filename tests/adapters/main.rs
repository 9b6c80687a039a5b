//! The Raft-library adapters, one binary; each part is compiled only with its feature:
//!
//! - `--features openraft-tests`: `openraft_suite` (openraft's own log-storage suite),
//!   `openraft_reopen` (what that suite never checks: reopening), `openraft_cluster` (three nodes
//!   in one process);
//! - `--features d-engine-tests` (needs `PROTOC=$(cargo xtask protoc)`): `d_engine_suite`
//!   (d-engine's own storage suite), `d_engine_cluster` (three nodes over gRPC on 127.0.0.1).
//!
//! Without either feature the binary holds no test. Run one adapter's part with a filter, e.g.
//! `cargo test --features openraft-tests --test adapters openraft`.

#[cfg(feature = "d-engine-tests")]
mod d_engine_cluster;
#[cfg(feature = "d-engine-tests")]
mod d_engine_suite;
#[cfg(feature = "openraft-tests")]
mod openraft_cluster;
#[cfg(feature = "openraft-tests")]
mod openraft_reopen;
#[cfg(feature = "openraft-tests")]
mod openraft_suite;
