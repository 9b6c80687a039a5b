//! Group commit and directory sync.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    crate::fuzzing::io_fault("wal::sync_dir")
        .and_then(|_| File::open(dir))
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Group commit: many `flush()` callers share one fdatasync; an fdatasync failure poisons the log
/// (after a failed fsync the kernel may have dropped the dirty pages, so nothing written since the
/// last good sync can be trusted).
#[derive(Default)]
pub(crate) struct SyncPoint {
    state: Mutex<SyncState>,
    cv: Condvar,
}

#[derive(Default)]
struct SyncState {
    file: Option<Arc<File>>,
    written: u64,
    synced: u64,
    syncing: bool,
    failed: Option<String>,
}

impl SyncPoint {
    pub(super) fn reset(&self, file: Arc<File>, synced_upto: u64) {
        let mut s = self.state.lock();
        s.file = Some(file);
        s.written = s.written.max(synced_upto);
        s.synced = s.synced.max(synced_upto);
    }

    pub(super) fn note_written(&self, seq: u64) {
        self.state.lock().written = seq;
    }

    /// Highest sequence number known to be on stable storage.
    pub(super) fn synced(&self) -> u64 {
        self.state.lock().synced
    }

    pub(crate) fn check_healthy(&self) -> Result<()> {
        match &self.state.lock().failed {
            Some(msg) => Err(Error::Closed(format!("write-ahead log failed earlier: {msg}"))),
            None => Ok(()),
        }
    }

    pub(super) fn sync_file(&self, file: &File, upto: u64, path: &Path) -> Result<()> {
        match crate::fuzzing::io_fault("wal::sync").and_then(|_| file.sync_data()) {
            Ok(()) => {
                crate::fuzzing::synced();
                let mut s = self.state.lock();
                s.synced = s.synced.max(upto);
                Ok(())
            }
            Err(e) => {
                self.state.lock().failed = Some(e.to_string());
                Err(Error::io(path, e))
            }
        }
    }

    /// Returns once every record written before the call is on stable storage.
    pub(crate) fn sync(&self, dir: &Path) -> Result<()> {
        let mut s = self.state.lock();
        let target = s.written;
        loop {
            if let Some(msg) = &s.failed {
                return Err(Error::Closed(format!("write-ahead log failed earlier: {msg}")));
            }
            if s.synced >= target {
                return Ok(());
            }
            if s.syncing {
                self.cv.wait(&mut s);
                continue;
            }
            s.syncing = true;
            let upto = s.written;
            let file = s.file.clone();
            drop(s);
            let res = match &file {
                Some(f) => crate::fuzzing::io_fault("wal::sync")
                    .and_then(|_| f.sync_data())
                    .inspect(|_| crate::fuzzing::synced()),
                None => Ok(()),
            };
            s = self.state.lock();
            s.syncing = false;
            match res {
                Ok(()) => s.synced = s.synced.max(upto),
                Err(e) => s.failed = Some(e.to_string()),
            }
            self.cv.notify_all();
            if s.failed.is_some() && s.synced < target {
                let msg = s.failed.clone().unwrap_or_default();
                return Err(Error::io(dir, std::io::Error::other(msg)));
            }
        }
    }
}
