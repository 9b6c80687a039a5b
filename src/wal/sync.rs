//! Group commit and directory sync.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    crate::failpoints::io_fault("wal::sync_dir")
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
    /// fdatasyncs that succeeded (`Stats::wal_syncs`).
    count: std::sync::atomic::AtomicU64,
    /// Bumped whenever a group commit ends (synced or failed), for `sync_async` waiters.
    ended: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct SyncState {
    /// The active segment and its path.
    file: Option<(Arc<File>, PathBuf)>,
    written: u64,
    synced: u64,
    syncing: bool,
    failed: Option<Failure>,
}

/// The fdatasync failure that poisoned the log, kept so every later call can report it.
struct Failure {
    path: PathBuf,
    os_code: Option<i32>,
    kind: std::io::ErrorKind,
    message: String,
}

impl Failure {
    fn new(path: &Path, e: &std::io::Error) -> Self {
        Failure {
            path: path.to_path_buf(),
            os_code: e.raw_os_error(),
            kind: e.kind(),
            message: e.to_string(),
        }
    }

    fn error(&self) -> Error {
        let source = match self.os_code {
            Some(code) => std::io::Error::from_raw_os_error(code),
            None => std::io::Error::new(self.kind, self.message.clone()),
        };
        Error::Poisoned {
            path: self.path.clone(),
            source,
        }
    }
}

impl SyncPoint {
    pub(super) fn reset(&self, file: Arc<File>, path: PathBuf, synced_upto: u64) {
        let mut s = self.state.lock();
        s.file = Some((file, path));
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

    /// `Err(Error::Poisoned)` once an fdatasync has failed.
    pub(super) fn check_healthy(&self) -> Result<()> {
        match &self.state.lock().failed {
            Some(f) => Err(f.error()),
            None => Ok(()),
        }
    }

    /// fdatasyncs `file` outside the group commit (a segment being sealed, or a zero-filled step;
    /// `point` names the failpoint) and counts everything up to `upto` as durable.
    pub(super) fn sync_file(&self, point: &str, file: &File, upto: u64, path: &Path) -> Result<()> {
        match crate::failpoints::io_fault(point).and_then(|_| file.sync_data()) {
            Ok(()) => {
                crate::failpoints::synced();
                self.count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut s = self.state.lock();
                s.synced = s.synced.max(upto);
                Ok(())
            }
            Err(e) => {
                self.state.lock().failed = Some(Failure::new(path, &e));
                Err(Error::io(path, e))
            }
        }
    }

    /// fdatasyncs of the log that succeeded so far.
    pub(super) fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `sync` for async callers: a caller arriving while a group commit is in flight awaits its end
    /// without holding a thread (so thousands of groups flushing at once on a few runtime threads
    /// still share one fdatasync); one that finds none runs it on the runtime's blocking pool.
    pub(super) async fn sync_async(self: Arc<Self>) -> Result<()> {
        let mut ended = self.ended.subscribe();
        let target = self.state.lock().written;
        loop {
            let lead = {
                let mut s = self.state.lock();
                if let Some(f) = &s.failed {
                    return Err(f.error());
                }
                if s.synced >= target {
                    return Ok(());
                }
                // Claimed here, before the blocking task starts: callers arriving meanwhile wait
                // for this commit instead of each starting a blocking task of their own.
                !std::mem::replace(&mut s.syncing, true)
            };
            if lead {
                let claim = Claim(Some(self.clone()));
                return tokio::task::spawn_blocking(move || claim.lead(target))
                    .await
                    .unwrap_or_else(|e| Err(Error::Closed(format!("the flush task failed: {e}"))));
            }
            // Subscribed before the look above, so a commit ending since is not missed.
            if ended.changed().await.is_err() {
                return Err(Error::Closed("the write-ahead log was closed".into()));
            }
        }
    }

    /// Returns once every record written before the call is on stable storage.
    pub(super) fn sync(&self) -> Result<()> {
        let target = self.state.lock().written;
        self.sync_to(target)
    }

    /// Returns once every record up to `target` is on stable storage: waits for a commit in flight,
    /// or runs one.
    fn sync_to(&self, target: u64) -> Result<()> {
        let mut s = self.state.lock();
        loop {
            if let Some(f) = &s.failed {
                return Err(f.error());
            }
            if s.synced >= target {
                return Ok(());
            }
            if s.syncing {
                self.cv.wait(&mut s);
                continue;
            }
            s.syncing = true;
            s = self.commit(s)?;
        }
    }

    /// One group commit: fdatasyncs everything written so far with the lock released, then ends
    /// the commit (`syncing` was set by the caller, who leads it) and wakes every waiter.
    fn commit<'a>(&'a self, mut s: MutexGuard<'a, SyncState>) -> Result<MutexGuard<'a, SyncState>> {
        // Let writers that are appending right now join this commit: give up the CPU while the log
        // keeps growing, a few times at most.
        for _ in 0..LINGER_YIELDS {
            let before = s.written;
            drop(s);
            std::thread::yield_now();
            s = self.state.lock();
            if s.written == before {
                break;
            }
        }
        let upto = s.written;
        let file = s.file.clone();
        drop(s);
        let res = match &file {
            Some((f, _)) => crate::failpoints::io_fault("wal::sync")
                .and_then(|_| f.sync_data())
                .inspect(|_| crate::failpoints::synced()),
            None => Ok(()),
        };
        let mut s = self.state.lock();
        s.syncing = false;
        self.cv.notify_all();
        self.ended.send_modify(|n| *n += 1);
        match (res, &file) {
            (Ok(()), f) => {
                s.synced = s.synced.max(upto);
                if f.is_some() {
                    self.count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            (Err(e), Some((_, path))) => {
                s.failed = Some(Failure::new(path, &e));
                // The caller whose fsync failed gets the OS error itself.
                return Err(Error::io(path, e));
            }
            (Err(_), None) => {}
        }
        Ok(s)
    }
}

/// How many times a commit's leader yields while other writers keep appending before it syncs.
const LINGER_YIELDS: usize = 4;

/// A group commit claimed by `sync_async` for a blocking task: the task leads it, and if the task
/// never runs (its runtime shutting down), dropping the claim ends the commit, so no later `sync`
/// waits forever for it.
struct Claim(Option<Arc<SyncPoint>>);

impl Claim {
    fn lead(mut self, target: u64) -> Result<()> {
        let Some(point) = self.0.take() else {
            return Ok(());
        };
        let s = point.state.lock();
        drop(point.commit(s)?);
        point.sync_to(target)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(point) = self.0.take() {
            point.state.lock().syncing = false;
            point.cv.notify_all();
            point.ended.send_modify(|n| *n += 1);
        }
    }
}
