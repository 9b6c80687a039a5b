//! The Raft-library adapters, one binary:
//!
//! - `openraft_suite` (openraft's own log-storage suite), `openraft_reopen` (what that suite never
//!   checks: reopening), `openraft_cluster` (three nodes in one process), `openraft_groups` (several
//!   Raft groups on three nodes, one tierlog engine per node); `openraft_net` is their network;
//! - `d_engine_suite` (d-engine's own storage suite), `d_engine_cluster` (three nodes over gRPC on
//!   127.0.0.1).
//!
//! Building it needs `protoc` for d-engine (`PROTOC=$(cargo xtask protoc)`; `cargo xtask test` sets
//! it). Run one adapter's part with a filter, e.g. `cargo test -p tierlog-adapter-tests openraft`.

mod d_engine_cluster;
mod d_engine_suite;
mod openraft_cluster;
mod openraft_groups;
mod openraft_net;
mod openraft_reopen;
mod openraft_suite;
