//! The harness of the contract tests: an engine in a temporary directory that a test reopens or
//! compacts between two operations ([`Mode`]), and assertions on everything a reader can observe.

use std::sync::Arc;

use tempfile::TempDir;
use tierlog::{Config, Entry, LogId, LogStore, StorageEngine, TierLogStore, TierMetaStore, TieredEngine};

use super::config;

/// What a harness does between two operations of a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing: one engine, hot tier only.
    Hot,
    /// Drop and reopen the same directory; compaction never started.
    Reopen,
    /// `compact_now` (everything goes cold), same engine.
    Compacted,
    /// `compact_now`, then drop and reopen (reads after it come from the cold tier).
    CompactedReopen,
    /// Background compaction running at random points, and reopen: the engine may be dropped with a
    /// compaction round half done.
    BackgroundReopen,
}

impl Mode {
    fn config(self) -> Config {
        match self {
            Mode::Hot | Mode::Reopen => config::hot_only(),
            Mode::Compacted | Mode::CompactedReopen => config::on_demand_compaction(),
            Mode::BackgroundReopen => config::eager_compaction(),
        }
    }
}

/// An engine in a temporary directory that can be reopened in place.
pub struct Harness {
    pub dir: TempDir,
    pub cfg: Config,
    pub mode: Mode,
    engine: Option<TieredEngine>,
    steps: u32,
}

/// The observable state of a log: everything a reader can ask for.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub entries: Vec<Entry>,
    pub last_index: u64,
    pub boundary: Option<LogId>,
}

impl Harness {
    /// A fresh engine run in `mode`.
    pub async fn new(mode: Mode) -> Harness {
        Harness::with_config(mode, mode.config()).await
    }

    /// A fresh engine with an explicit config; `mode` still decides what `step` does.
    pub async fn with_config(mode: Mode, cfg: Config) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = TieredEngine::open(dir.path(), cfg.clone())
            .await
            .expect("open fresh engine");
        Harness {
            dir,
            cfg,
            mode,
            engine: Some(engine),
            steps: 0,
        }
    }

    pub fn engine(&self) -> &TieredEngine {
        self.engine.as_ref().expect("engine is open")
    }

    pub fn log(&self) -> Arc<TierLogStore> {
        self.engine().log_store()
    }

    pub fn meta(&self) -> Arc<TierMetaStore> {
        self.engine().meta_store()
    }

    /// Drops every handle and opens the same directory again at once.
    pub async fn reopen(&mut self) {
        drop(self.engine.take());
        let engine = TieredEngine::open(self.dir.path(), self.cfg.clone())
            .await
            .unwrap_or_else(|e| panic!("reopen after drop failed: {e}"));
        self.engine = Some(engine);
    }

    pub async fn compact(&self) {
        self.engine().compact_now().await.expect("compact_now");
    }

    /// The log must read the same after a reopen, and again after a compaction and another reopen.
    pub async fn assert_log_survives_reopen_and_compaction(
        &mut self,
        expected: &[Entry],
        last_index: u64,
        boundary: Option<LogId>,
        ctx: &str,
    ) {
        self.reopen().await;
        self.assert_log(expected, last_index, boundary, &format!("{ctx}, reopened"))
            .await;
        self.compact().await;
        self.reopen().await;
        self.assert_log(
            expected,
            last_index,
            boundary,
            &format!("{ctx}, compacted and reopened"),
        )
        .await;
    }

    /// The mode's action between two operations.
    pub async fn step(&mut self) {
        self.steps += 1;
        match self.mode {
            Mode::Hot => {}
            Mode::Reopen => self.reopen().await,
            Mode::Compacted => self.compact().await,
            Mode::CompactedReopen => {
                self.compact().await;
                self.reopen().await;
            }
            Mode::BackgroundReopen => {
                // Vary how far the background round got before the drop.
                if self.steps.is_multiple_of(2) {
                    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
                }
                self.reopen().await;
            }
        }
    }

    /// Everything a reader can observe (entries 0..=last_index+64, last index, purge boundary).
    pub fn snapshot(&self) -> Snapshot {
        let log = self.log();
        let last_index = log.last_index();
        let entries = log
            .get_entries(0..=last_index.saturating_add(64))
            .expect("get_entries");
        Snapshot {
            entries,
            last_index,
            boundary: log.load_purge_boundary().expect("load_purge_boundary"),
        }
    }

    /// Asserts the log holds exactly `expected` (ascending), reports `last_index` and `boundary`,
    /// and that `entry` agrees with `get_entries` for every present index and the ones around them.
    pub async fn assert_log(&self, expected: &[Entry], last_index: u64, boundary: Option<LogId>, ctx: &str) {
        let ctx = format!("[{:?}] {ctx}", self.mode);
        let log = self.log();
        assert_eq!(log.last_index(), last_index, "{ctx}: last_index");
        assert_eq!(
            log.load_purge_boundary().expect("load_purge_boundary"),
            boundary,
            "{ctx}: load_purge_boundary"
        );
        let got = log.get_entries(0..=last_index + 64).expect("get_entries");
        assert_eq!(
            indexes(&got),
            indexes(expected),
            "{ctx}: indexes from get_entries"
        );
        assert_eq!(got, expected, "{ctx}: entries from get_entries");
        for e in expected {
            let one = log.entry(e.index).await.expect("entry");
            assert_eq!(one.as_ref(), Some(e), "{ctx}: entry({})", e.index);
        }
        let first = expected.first().map_or(last_index + 1, |e| e.index);
        for absent in [0, first.saturating_sub(1), last_index + 1, last_index + 2] {
            if expected.iter().any(|e| e.index == absent) {
                continue;
            }
            assert_eq!(
                log.entry(absent).await.expect("entry"),
                None,
                "{ctx}: entry({absent}) is absent"
            );
        }
    }
}

/// Indexes of a slice of entries (for readable assertion failures).
pub fn indexes(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.index).collect()
}

/// Concatenates entry lists.
pub fn cat(parts: &[Vec<Entry>]) -> Vec<Entry> {
    parts.iter().flatten().cloned().collect()
}

/// One `#[tokio::test]` per [`Mode`] for a contract rule written as `async fn(Mode)`, grouped in a
/// module named after the rule, so a failure reads `rule::mode`.
macro_rules! in_every_mode {
    ($name:ident) => {
        mod $name {
            use $crate::support::Mode;
            #[tokio::test]
            async fn hot() {
                super::$name(Mode::Hot).await
            }
            #[tokio::test]
            async fn reopen() {
                super::$name(Mode::Reopen).await
            }
            #[tokio::test]
            async fn compacted() {
                super::$name(Mode::Compacted).await
            }
            #[tokio::test]
            async fn compacted_reopen() {
                super::$name(Mode::CompactedReopen).await
            }
            #[tokio::test]
            async fn background_reopen() {
                super::$name(Mode::BackgroundReopen).await
            }
        }
    };
}
