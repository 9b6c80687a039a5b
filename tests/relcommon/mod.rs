//! Only for `tests/cli.rs`, which includes this file as its `common` module and is about to move
//! into the CLI's own crate: the helpers themselves live in `tests/support/`. Delete this file when
//! nothing includes it any more.

#[path = "../support/mod.rs"]
mod support;

#[allow(unused_imports)]
pub use support::*;
