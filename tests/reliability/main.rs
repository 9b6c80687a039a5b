//! Reliability, one binary (`--features failpoints`): the engine under injected I/O faults, power
//! cuts, damaged files and a really full disk.
//!
//! - `faults`: a `fail` failpoint at every I/O site, ENOSPC and EIO: the error, the state right
//!   after, usability or a clear `Error::Closed`, and a reopen.
//! - `power_loss`: only what was fdatasync'ed survives a simulated power cut; fault chains.
//! - `corruption`: random damage to segments and cold blocks is detected, never read as valid.
//! - `groups`: several groups in one engine through power cuts, crashes, I/O errors and chains of
//!   them: every group's flushed operations survive, creation and removal are durable, one group's
//!   truncate never touches another's log.
//! - `full_disk`: a small tmpfs and ext4 filesystem run full (as root; skipped otherwise).
//! - `chain`: the fault-chain driver `power_loss` and `groups` share (crash, power cut, I/O
//!   errors, clean restart on one directory, each reopen checked against a history).
//!
//! Failpoints are process-wide, and the tests of this binary share a process: a test that
//! configures failpoints holds [`failpoints_exclusive`] (and `fail::FailScenario`) so it runs
//! alone, every other test holds [`failpoints_off`] so it never meets a failpoint meant for
//! another test.

// The two guards below are held for a whole test on purpose, across its awaits: every test runs
// its own runtime, and no task of it takes them.
#![allow(clippy::await_holding_lock)]

#[path = "../support/mod.rs"]
mod support;

mod chain;
mod corruption;
mod faults;
mod full_disk;
mod groups;
mod power_loss;

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static FAILPOINTS: RwLock<()> = RwLock::new(());

/// Held by a test that configures failpoints: no other test of this binary runs meanwhile.
pub fn failpoints_exclusive() -> RwLockWriteGuard<'static, ()> {
    // A test that failed while holding the lock poisons it; the next one may still run.
    FAILPOINTS.write().unwrap_or_else(|e| e.into_inner())
}

/// Held by a test that configures no failpoint: it never runs while one is configured.
pub fn failpoints_off() -> RwLockReadGuard<'static, ()> {
    FAILPOINTS.read().unwrap_or_else(|e| e.into_inner())
}
