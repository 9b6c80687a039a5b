//! Helpers shared by the contract tests of issue 2: deterministic entries, the engine
//! configurations the tests run under, and a harness that reopens or compacts between operations.
#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use tempfile::TempDir;
use tierlog::{Config, Entry, LogId, LogStore, StorageEngine, TierLogStore, TierMetaStore, TieredEngine};

/// The payload of entry (`index`, `term`): derivable from both, so any reader can check an entry it
/// got back without knowing the writer's history. Lengths vary (40..104 bytes) so cold blocks of
/// 1 KiB hold roughly ten entries and block boundaries fall at irregular indexes.
pub fn payload(index: u64, term: u64) -> Bytes {
    let len = 40 + (index.wrapping_mul(7919) % 64) as usize;
    let seed = format!("i{index}t{term}|");
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        out.extend_from_slice(seed.as_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// Entry `index` written in `term`.
pub fn ent(index: u64, term: u64) -> Entry {
    Entry::new(index, term, payload(index, term))
}

/// Entries `range` all written in `term`.
pub fn ents(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| ent(i, term)).collect()
}

/// Entries with explicit indexes (for malformed batches).
pub fn ents_at(indexes: &[u64], term: u64) -> Vec<Entry> {
    indexes.iter().map(|&i| ent(i, term)).collect()
}

/// True when `e` carries the payload its index and term imply.
pub fn is_intact(e: &Entry) -> bool {
    e.payload == payload(e.index, e.term)
}

/// Smallest write-ahead segments (64 KiB): test logs span several segments, so rollover and
/// segment retirement are exercised, and each engine does not preallocate 64 MiB files.
pub const TEST_SEGMENT_BYTES: u64 = 64 << 10;

/// No automatic compaction at all: everything stays in the hot tier unless `compact_now` is called.
pub fn cfg_hot_only() -> Config {
    Config {
        compaction_trigger_bytes: u64::MAX,
        compaction_interval_ms: 3_600_000,
        segment_bytes: TEST_SEGMENT_BYTES,
        ..Config::default()
    }
}

/// Small cold blocks (1 KiB, ~10 test entries each) and no protected hot tail, so `compact_now`
/// moves every entry to the cold tier; automatic compaction stays off, so what is cold is exactly
/// what the test compacted.
pub fn cfg_manual_compaction() -> Config {
    Config {
        block_target_bytes: 1024,
        hot_tail_entries: 0,
        ..cfg_hot_only()
    }
}

/// Small cold blocks and an eager background compactor (4 KiB trigger, 1 ms interval): compaction
/// runs at arbitrary points between and during operations.
pub fn cfg_eager_compaction() -> Config {
    Config {
        block_target_bytes: 1024,
        compaction_trigger_bytes: 4096,
        hot_tail_entries: 0,
        compaction_interval_ms: 1,
        segment_bytes: TEST_SEGMENT_BYTES,
        ..Config::default()
    }
}

/// The smallest memory budget the config accepts (1 MiB), with eager compaction, so older entries
/// are evicted from the ring and reads must go to the cold tier.
pub fn cfg_tiny_memory() -> Config {
    Config {
        memory_budget_bytes: 1 << 20,
        ..cfg_eager_compaction()
    }
}

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
            Mode::Hot | Mode::Reopen => cfg_hot_only(),
            Mode::Compacted | Mode::CompactedReopen => cfg_manual_compaction(),
            Mode::BackgroundReopen => cfg_eager_compaction(),
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
#[macro_export]
macro_rules! in_every_mode {
    ($name:ident) => {
        mod $name {
            use super::common::Mode;
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
