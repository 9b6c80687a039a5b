//! Adapters that plug a [`TieredEngine`](crate::TieredEngine) into existing Raft libraries.
//!
//! Each adapter sits behind its own cargo feature so the core crate builds without the Raft library
//! (and, for d-engine, without `protoc`):
//!
//! | feature    | module                | library and version pinned        |
//! |------------|-----------------------|-----------------------------------|
//! | `d-engine` | [`d_engine`]          | d-engine `=0.2.4`                  |
//! | `openraft` | [`openraft`]          | openraft `=0.10.0-alpha.37`       |
//!
//! `docs/integrations.md` shows how to use each and what the cluster tests prove.

#[cfg(feature = "d-engine")]
pub mod d_engine;
#[cfg(feature = "openraft")]
pub mod openraft;
