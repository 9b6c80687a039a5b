//! The common face of every store under test, and the tierlog adapter.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tierlog::{Config, Entry, LogId, LogStore, StorageEngine, TierLogStore, TieredEngine};
use tokio::runtime::Runtime;

/// Error type of the harness.
pub type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One entry as the harness hands it out; each store converts it to its own type (timed).
#[derive(Clone, Debug)]
pub struct Ent {
    /// Log index.
    pub index: u64,
    /// Term.
    pub term: u64,
    /// Payload bytes.
    pub payload: Bytes,
}

/// What a Raft log store must do for these workloads.
pub trait Peer {
    /// Appends a contiguous batch; with `sync`, it survives power loss when this returns.
    fn append(&mut self, batch: &[Ent], sync: bool) -> R<()>;
    /// Makes everything appended so far durable.
    fn flush(&mut self) -> R<()>;
    /// Reads `[lo, hi]` and returns the number of entries and payload bytes seen.
    fn read_range(&mut self, lo: u64, hi: u64) -> R<(u64, u64)>;
    /// Reads one entry; returns its payload length, `None` when absent.
    fn read_one(&mut self, index: u64) -> R<Option<usize>>;
    /// Removes every entry `<= upto`.
    fn purge(&mut self, upto: u64) -> R<()>;
    /// Brings the store to its steady state (tierlog: compact everything compactable now).
    fn settle(&mut self) -> R<()> {
        Ok(())
    }
    /// Closes the store and opens it again from its directory.
    fn reopen(&mut self) -> R<()>;
}

/// A multi-thread runtime like a Raft node's, for the async stores.
pub fn runtime() -> R<Arc<Runtime>> {
    Ok(Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?,
    ))
}

/// tierlog, through its `LogStore` trait.
pub struct Tierlog {
    rt: Arc<Runtime>,
    dir: PathBuf,
    config: Config,
    engine: Option<TieredEngine>,
    log: Option<Arc<TierLogStore>>,
}

impl Tierlog {
    /// Opens a tierlog engine in `dir` with the given memory budget.
    pub fn open(dir: &Path, memory_budget: u64) -> R<Tierlog> {
        let rt = runtime()?;
        let config = Config {
            memory_budget_bytes: memory_budget,
            ..Config::default()
        };
        let engine = rt.block_on(TieredEngine::open(dir, config.clone()))?;
        Ok(Tierlog {
            log: Some(engine.log_store()),
            engine: Some(engine),
            rt,
            dir: dir.to_path_buf(),
            config,
        })
    }

    fn log(&self) -> R<&Arc<TierLogStore>> {
        self.log.as_ref().ok_or_else(|| "tierlog is closed".into())
    }
}

impl Peer for Tierlog {
    fn append(&mut self, batch: &[Ent], sync: bool) -> R<()> {
        let entries: Vec<Entry> = batch
            .iter()
            .map(|e| Entry::new(e.index, e.term, e.payload.clone()))
            .collect();
        let log = self.log()?;
        self.rt.block_on(log.persist_entries(entries))?;
        if sync {
            log.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> R<()> {
        Ok(self.log()?.flush()?)
    }

    fn read_range(&mut self, lo: u64, hi: u64) -> R<(u64, u64)> {
        let got = self.log()?.get_entries(lo..=hi)?;
        Ok((got.len() as u64, got.iter().map(|e| e.payload.len() as u64).sum()))
    }

    fn read_one(&mut self, index: u64) -> R<Option<usize>> {
        let log = self.log()?;
        Ok(self.rt.block_on(log.entry(index))?.map(|e| e.payload.len()))
    }

    fn purge(&mut self, upto: u64) -> R<()> {
        let log = self.log()?;
        Ok(self.rt.block_on(log.purge(LogId::new(1, upto)))?)
    }

    fn settle(&mut self) -> R<()> {
        let engine = self.engine.as_ref().ok_or("tierlog is closed")?;
        Ok(self.rt.block_on(engine.compact_now())?)
    }

    fn reopen(&mut self) -> R<()> {
        self.log = None;
        if let Some(engine) = self.engine.take() {
            self.rt.block_on(engine.close())?;
        }
        let engine = self
            .rt
            .block_on(TieredEngine::open(&self.dir, self.config.clone()))?;
        self.log = Some(engine.log_store());
        self.engine = Some(engine);
        Ok(())
    }
}
