//! I/O failpoints (`fail` crate): every I/O site the reliability tests attack calls one of these.
//! They compile to nothing unless the `fail` crate's `failpoints` feature is on (this crate's
//! `failpoints` feature, used by the `reliability` tests in `tests/reliability/`).

use std::fs::File;
// Used only where the `fail` crate's own `failpoints` feature is on, which another crate in the
// build (the peers bench) can switch on even when this crate's feature is off.
#[allow(unused_imports)]
use std::os::unix::fs::FileExt;

/// The I/O error a configured failpoint injects: `return(28)` gives ENOSPC, `return` alone EIO.
#[allow(dead_code)]
fn injected(arg: Option<String>) -> std::io::Error {
    std::io::Error::from_raw_os_error(arg.and_then(|a| a.parse().ok()).unwrap_or(5))
}

/// An I/O site's failpoint: `Err` when the failpoint `name` is configured to `return`; a no-op
/// (compiled away) without the `failpoints` feature.
#[allow(unused_variables)]
pub(crate) fn io_fault(name: &str) -> std::io::Result<()> {
    fail::fail_point!(name, |arg| Err(injected(arg)));
    Ok(())
}

/// Marks a completed write-ahead fdatasync: the `wal::synced` failpoint, which the power-loss
/// simulation (`tests/reliability/power_loss.rs`) configures with a callback that records what is on disk.
pub(crate) fn synced() {
    fail::fail_point!("wal::synced");
}

/// A torn write: when the failpoint `name` fires, the first half of `buf` reaches `file` at `offset`
/// and the call fails, as a full disk or a crash in the middle of `pwrite` would leave it.
#[allow(unused_variables)]
pub(crate) fn torn_write(name: &str, file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    fail::fail_point!(name, |arg| {
        let _ = file.write_all_at(&buf[..buf.len() / 2], offset);
        Err(injected(arg))
    });
    Ok(())
}
