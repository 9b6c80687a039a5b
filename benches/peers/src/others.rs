//! The two peers that are other projects' engines: TiKV's raft-engine and d-engine's file store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use d_engine::common::{Entry as DEntry, EntryPayload, LogId as DLogId, entry_payload};
use d_engine::{FileStorageEngine, LogStore as _, StorageEngine as _};
use protobuf::well_known_types::BytesValue;
use raft_engine::{Config as ReConfig, Engine, LogBatch, MessageExt};
use tokio::runtime::Runtime;

use crate::peer::{Ent, Peer, R, runtime};

/// raft-engine's entry type here: a protobuf `BytesValue` holding `[index u64][term u64][payload]`.
///
/// TiKV stores `eraftpb::Entry`, but the `raft-proto` crate that provides it runs a build script
/// that panics when `PROTOC` names a protoc other than 3.x, and the workspace's `cargo xtask`
/// sets `PROTOC` to a newer protoc for d-engine. raft-engine treats entries as opaque protobuf
/// messages with an index, so a one-field message carrying the same bytes exercises the same
/// engine path (encode into the batch, LZ4 above 8 KiB, per-entry index, decode on read).
#[derive(Clone)]
pub struct EntryMsg;

impl MessageExt for EntryMsg {
    type Entry = BytesValue;
    fn index(e: &BytesValue) -> u64 {
        e.value
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    }
}

/// Bytes of an entry's payload (what follows index and term).
pub fn payload_len(e: &BytesValue) -> usize {
    e.value.len().saturating_sub(16)
}

/// raft-engine's form of a batch (see [`EntryMsg`]).
pub fn messages(batch: &[Ent]) -> Vec<BytesValue> {
    batch
        .iter()
        .map(|e| {
            let mut value = Vec::with_capacity(16 + e.payload.len());
            value.extend_from_slice(&e.index.to_le_bytes());
            value.extend_from_slice(&e.term.to_le_bytes());
            value.extend_from_slice(&e.payload);
            BytesValue {
                value,
                ..BytesValue::default()
            }
        })
        .collect()
}

/// One Raft group, as TiKV uses the engine.
const REGION: u64 = 1;

/// raft-engine 0.4 with its default configuration (only `dir` set).
pub struct RaftEngine {
    cfg: ReConfig,
    engine: Option<Engine>,
}

impl RaftEngine {
    /// Opens the engine in `dir`.
    pub fn open(dir: &Path) -> R<RaftEngine> {
        let cfg = ReConfig {
            dir: dir.display().to_string(),
            ..ReConfig::default()
        };
        let engine = Engine::open(cfg.clone())?;
        Ok(RaftEngine {
            cfg,
            engine: Some(engine),
        })
    }

    fn engine(&self) -> R<&Engine> {
        self.engine.as_ref().ok_or_else(|| "raft-engine is closed".into())
    }
}

impl Peer for RaftEngine {
    fn append(&mut self, batch: &[Ent], sync: bool) -> R<()> {
        let entries = messages(batch);
        let mut lb = LogBatch::default();
        lb.add_entries::<EntryMsg>(REGION, &entries)?;
        self.engine()?.write(&mut lb, sync)?;
        Ok(())
    }

    fn flush(&mut self) -> R<()> {
        Ok(self.engine()?.sync()?)
    }

    fn read_range(&mut self, lo: u64, hi: u64) -> R<(u64, u64)> {
        let mut out = Vec::with_capacity((hi + 1 - lo) as usize);
        self.engine()?
            .fetch_entries_to::<EntryMsg>(REGION, lo, hi + 1, None, &mut out)?;
        Ok((out.len() as u64, out.iter().map(|e| payload_len(e) as u64).sum()))
    }

    fn read_one(&mut self, index: u64) -> R<Option<usize>> {
        Ok(self
            .engine()?
            .get_entry::<EntryMsg>(REGION, index)?
            .as_ref()
            .map(payload_len))
    }

    fn purge(&mut self, upto: u64) -> R<()> {
        // What TiKV does after a snapshot: mark the prefix compacted, then let the engine drop
        // whole files that no group needs any more.
        let engine = self.engine()?;
        engine.compact_to(REGION, upto + 1);
        engine.purge_expired_files()?;
        Ok(())
    }

    fn reopen(&mut self) -> R<()> {
        self.engine = None;
        self.engine = Some(Engine::open(self.cfg.clone())?);
        Ok(())
    }
}

/// d-engine 0.2.4's `FileStorageEngine`, through d-engine's own `LogStore` trait.
pub struct DEngineFile {
    rt: Arc<Runtime>,
    dir: PathBuf,
    engine: Option<FileStorageEngine>,
}

impl DEngineFile {
    /// Opens (and loads) the store in `dir`.
    pub fn open(dir: &Path) -> R<DEngineFile> {
        Ok(DEngineFile {
            rt: runtime()?,
            dir: dir.to_path_buf(),
            engine: Some(FileStorageEngine::new(dir.to_path_buf()).map_err(|e| e.to_string())?),
        })
    }

    fn log(&self) -> R<Arc<d_engine::storage::FileLogStore>> {
        Ok(self.engine.as_ref().ok_or("d-engine is closed")?.log_store())
    }
}

fn de(e: d_engine::Error) -> Box<dyn std::error::Error + Send + Sync> {
    e.to_string().into()
}

fn command_len(e: &DEntry) -> usize {
    match e.payload.as_ref().and_then(|p| p.payload.as_ref()) {
        Some(entry_payload::Payload::Command(c)) => c.len(),
        _ => 0,
    }
}

impl Peer for DEngineFile {
    fn append(&mut self, batch: &[Ent], sync: bool) -> R<()> {
        let entries: Vec<DEntry> = batch
            .iter()
            .map(|e| DEntry {
                index: e.index,
                term: e.term,
                payload: Some(EntryPayload {
                    payload: Some(entry_payload::Payload::Command(e.payload.clone())),
                }),
            })
            .collect();
        let log = self.log()?;
        self.rt.block_on(log.persist_entries(entries)).map_err(de)?;
        if sync {
            log.flush().map_err(de)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> R<()> {
        self.log()?.flush().map_err(de)
    }

    fn read_range(&mut self, lo: u64, hi: u64) -> R<(u64, u64)> {
        let got = self.log()?.get_entries(lo..=hi).map_err(de)?;
        Ok((got.len() as u64, got.iter().map(|e| command_len(e) as u64).sum()))
    }

    fn read_one(&mut self, index: u64) -> R<Option<usize>> {
        let log = self.log()?;
        Ok(self
            .rt
            .block_on(log.entry(index))
            .map_err(de)?
            .as_ref()
            .map(command_len))
    }

    fn purge(&mut self, upto: u64) -> R<()> {
        let log = self.log()?;
        self.rt
            .block_on(log.purge(DLogId { term: 1, index: upto }))
            .map_err(de)
    }

    fn reopen(&mut self) -> R<()> {
        self.engine = None;
        self.engine = Some(FileStorageEngine::new(self.dir.clone()).map_err(de)?);
        Ok(())
    }
}
