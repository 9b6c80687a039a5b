//! raft-log 0.4, the write-ahead log the openraft authors publish (Databend runs it under
//! openraft), driven through its `RaftLogWriter` API the way its README and examples do.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};

use raft_log::api::raft_log_writer::RaftLogWriter;
use raft_log::{Config, RaftLog, Types};

use crate::peer::{Ent, Peer, R};

/// The type parameters of the log: `(term, index)` log ids, raw payload bytes, and a channel
/// sender as the flush callback (the callback the crate's README uses).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerTypes;

impl Types for PeerTypes {
    type LogId = (u64, u64);
    type LogPayload = Vec<u8>;
    type Vote = (u64, u64);
    type UserData = ();
    type Callback = SyncSender<io::Result<()>>;

    fn log_index(log_id: &(u64, u64)) -> u64 {
        log_id.1
    }

    fn payload_size(payload: &Vec<u8>) -> u64 {
        payload.len() as u64
    }
}

/// raft-log with its default configuration (`Config::new(dir)`: payload cache of 100,000 items or
/// 1 GiB, 1 Mi-record / 1 GiB chunks, 1 ms flush batching wait).
pub struct RaftLogStore {
    config: Arc<Config>,
    log: Option<RaftLog<PeerTypes>>,
}

impl RaftLogStore {
    /// Opens (and replays) the log in `dir`.
    pub fn open(dir: &Path) -> R<RaftLogStore> {
        let config = Arc::new(Config::new(dir.display()));
        let log = RaftLog::open(config.clone())?;
        Ok(RaftLogStore {
            config,
            log: Some(log),
        })
    }

    fn log(&mut self) -> R<&mut RaftLog<PeerTypes>> {
        self.log.as_mut().ok_or_else(|| "raft-log is closed".into())
    }

    /// Hands everything written so far to the flush worker and waits for its callback; with
    /// `sync` the worker calls `fdatasync` before the callback runs.
    fn flush_wait(&mut self, sync: bool) -> R<()> {
        let (tx, rx) = sync_channel(1);
        self.log()?.flush(sync, Some(tx))?;
        rx.recv()
            .map_err(|_| "raft-log's flush worker dropped the callback")??;
        Ok(())
    }
}

impl Peer for RaftLogStore {
    fn append(&mut self, batch: &[Ent], sync: bool) -> R<()> {
        let entries = batch.iter().map(|e| ((e.term, e.index), e.payload.to_vec()));
        self.log()?.append(entries)?;
        if sync {
            self.flush_wait(true)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> R<()> {
        self.flush_wait(true)
    }

    fn read_range(&mut self, lo: u64, hi: u64) -> R<(u64, u64)> {
        let (mut n, mut bytes) = (0, 0);
        for e in self.log()?.read(lo, hi + 1) {
            let (_, payload) = e?;
            n += 1;
            bytes += payload.len() as u64;
        }
        Ok((n, bytes))
    }

    fn read_one(&mut self, index: u64) -> R<Option<usize>> {
        match self.log()?.read(index, index + 1).next() {
            Some(e) => Ok(Some(e?.1.len())),
            None => Ok(None),
        }
    }

    fn purge(&mut self, upto: u64) -> R<()> {
        // The crate's documented sequence: the purge record, then a syncing flush, behind which
        // the flush worker unlinks the chunks that hold only purged entries (a flush without
        // sync never removes a chunk, so that no file disappears before its purge is durable).
        self.log()?.purge((1, upto))?;
        self.flush_wait(true)
    }

    fn settle(&mut self) -> R<()> {
        // A flush's callback runs before the worker carries out the chunk removals queued
        // behind it; wait for those so that the disk figure counts what the store keeps.
        Ok(self.log()?.wait_worker_idle()?)
    }

    fn reopen(&mut self) -> R<()> {
        // Dropping the log joins its flush worker and releases the directory lock.
        self.log = None;
        self.log = Some(RaftLog::open(self.config.clone())?);
        Ok(())
    }
}
