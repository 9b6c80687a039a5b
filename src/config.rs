//! Engine configuration: one struct, loadable from TOML, every key optional.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How much damage recovery tolerates in the write-ahead log (modelled on raft-engine's modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryMode {
    /// Any bad record, even a torn one at the very tail, fails `open`.
    AbsoluteConsistency,
    /// A bad record at the tail of the newest segment (a crash mid-write) is cut off; a bad record
    /// anywhere else fails `open` with the file and offset.
    #[default]
    TolerateTornTail,
    /// The log is cut at the first bad record, wherever it is, and everything after it is dropped
    /// (logged at `warn`). Use only to salvage a damaged directory.
    TolerateAnyCorruption,
}

/// Tuning knobs of a [`TieredEngine`](crate::TieredEngine). `Config::default()` is what
/// `config/default.toml` spells out.
///
/// Each field says its default and the values [`Config::validate`] accepts (which `open` and the TOML
/// loaders call); a value outside its range is an [`Error::Config`] naming the key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Bound on the engine's memory: hot ring + decompressed-block cache + block index.
    ///
    /// Default: 268435456 (256 MiB). Accepted: at least 1048576 (1 MiB).
    pub memory_budget_bytes: u64,
    /// Share of the memory budget given to the decompressed-block cache; the rest is the ring's.
    /// A sixteenth of this share (at most 4 MiB) holds the cold reader's reusable frame buffers.
    ///
    /// Default: 0.25. Accepted: 0.0 to 0.9, both included.
    pub block_cache_fraction: f64,
    /// If true, `persist_entries` fdatasyncs before returning and `is_write_durable()` is true.
    ///
    /// Default: false. Accepted: true or false.
    pub sync_on_persist: bool,
    /// Most bytes of one write-ahead segment file. A segment file grows with the records written to
    /// it (zero-filled a few MiB ahead of the writer), and is retired whole once the cold tier covers
    /// it: the log keeps about one or two segments beyond the entries not yet compacted.
    ///
    /// Default: 4194304 (4 MiB). Accepted: 65536 (64 KiB) to 4294967296 (4 GiB), both included.
    pub segment_bytes: u64,
    /// Most retired segment files kept for reuse (writing into already-allocated space makes
    /// fdatasync cheaper, and a recycled file needs no zero-filling); see also `recycle_bytes`.
    ///
    /// Default: 4. Accepted: any value; 0 deletes every retired segment.
    pub recycle_segments: usize,
    /// Most bytes of retired segment files kept for reuse, all together; spares beyond it (or beyond
    /// `recycle_segments`) are deleted, also at open.
    ///
    /// Default: 4194304 (4 MiB). Accepted: any value; 0 deletes every retired segment.
    pub recycle_bytes: u64,
    /// Largest uncompressed size of one cold block; a block also ends before its stored form
    /// outgrows a 64 KiB redb page bucket. A point read decompresses one ~16 KiB frame of a
    /// block, whatever this is.
    ///
    /// Default: 262144 (256 KiB). Accepted: 1024 (1 KiB) to 16777216 (16 MiB), both included.
    pub block_target_bytes: u64,
    /// zstd level for cold blocks (1 measured best on KV payloads: 4.3x at ~880 MB/s).
    ///
    /// Default: 1. Accepted: -7 to 22, both included (negative levels are zstd's fast modes).
    pub compression_level: i32,
    /// Uncompacted hot bytes that trigger a compaction round (one redb transaction).
    ///
    /// Default: 4194304 (4 MiB). Accepted: any value; a normal round moves only full blocks, so it
    /// waits for at least `block_target_bytes` whatever this says.
    pub compaction_trigger_bytes: u64,
    /// Newest entries never compacted unless memory pressure forces it (they may still be overwritten).
    ///
    /// Default: 1024. Accepted: any value; 0 lets every entry move to the cold tier.
    pub hot_tail_entries: u64,
    /// Longest the compactor sleeps between checks, in milliseconds.
    ///
    /// Default: 200. Accepted: at least 1.
    pub compaction_interval_ms: u64,
    /// What recovery does with a damaged write-ahead record.
    ///
    /// Default: [`RecoveryMode::TolerateTornTail`]. Accepted: the three [`RecoveryMode`]s, in TOML
    /// `"absolute_consistency"`, `"tolerate_torn_tail"` or `"tolerate_any_corruption"`.
    pub recovery_mode: RecoveryMode,
    /// Share of the cold-tier file's bytes on disk that must be free (estimated: its allocated
    /// bytes minus the pages the live blocks occupy) before the compactor gives the space back
    /// with a brief exclusive compaction of the file, during which cold reads wait. redb reuses
    /// freed pages for new blocks, so in a steady state of appends and purges the free share stays
    /// small; it grows when retention shrinks for good (large purges, truncations).
    ///
    /// Default: 0.5. Accepted: 0.0 to 1.0, both included; 1.0 never reclaims.
    pub reclaim_free_share: f64,
    /// Free bytes the cold-tier file must also hold before a reclamation.
    ///
    /// Default: 33554432 (32 MiB). Accepted: any value.
    pub reclaim_min_bytes: u64,
    /// Shortest time between two reclamations, in milliseconds.
    ///
    /// Default: 60000 (one minute). Accepted: any value.
    pub reclaim_interval_ms: u64,
    /// Largest zstd dictionary trained for the cold tier's frames (one per store, trained once
    /// from the store's own frames, then used by the blocks written after it, except in rounds the
    /// writers force, which compress faster without it); 0: none.
    ///
    /// Default: 16384 (16 KiB; 32 and 64 KiB measured no better on KV payloads). Accepted: 0, or
    /// 1024 (1 KiB) to 131072 (128 KiB), both included.
    pub dictionary_bytes: u64,
    /// Raw bytes of cold blocks the store must hold before its dictionary is trained (the newest
    /// this many raw bytes of frames are the samples; zstd advises about 100 times the
    /// dictionary's size). A smaller store writes its blocks without a dictionary.
    ///
    /// Default: 2097152 (2 MiB; training takes ~0.1 s once). Accepted: at least 8 times
    /// `dictionary_bytes`.
    pub dictionary_training_bytes: u64,
}

/// Bounds of `dictionary_bytes` (when not 0).
const DICTIONARY_BYTES: std::ops::RangeInclusive<u64> = 1 << 10..=128 << 10;
/// `dictionary_training_bytes` is at least this many times `dictionary_bytes`: zstd's trainer
/// fails on fewer samples.
const MIN_TRAINING_FACTOR: u64 = 8;

/// Largest `block_target_bytes` accepted (16 MiB); [`crate::MAX_ENTRY_BYTES`] leaves room for a block
/// filled to it plus one entry at the limit.
pub(crate) const MAX_BLOCK_TARGET_BYTES: u64 = 16 << 20;

impl Default for Config {
    fn default() -> Self {
        Config {
            memory_budget_bytes: 256 << 20,
            block_cache_fraction: 0.25,
            sync_on_persist: false,
            segment_bytes: 4 << 20,
            recycle_segments: 4,
            recycle_bytes: 4 << 20,
            block_target_bytes: 256 << 10,
            compression_level: 1,
            compaction_trigger_bytes: 4 << 20,
            hot_tail_entries: 1024,
            compaction_interval_ms: 200,
            recovery_mode: RecoveryMode::TolerateTornTail,
            reclaim_free_share: 0.5,
            reclaim_min_bytes: 32 << 20,
            reclaim_interval_ms: 60_000,
            dictionary_bytes: 16 << 10,
            dictionary_training_bytes: 2 << 20,
        }
    }
}

impl Config {
    /// Parses a TOML document; keys it does not set keep their defaults, unknown keys are an error.
    pub fn from_toml_str(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a TOML file (see [`Config::from_toml_str`]).
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Config::from_toml_str(&text).map_err(|e| match e {
            Error::Config(msg) => Error::Config(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// Checks that the values can work together.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Config(msg));
        if self.memory_budget_bytes < 1 << 20 {
            return bad(format!(
                "memory_budget_bytes = {} is below 1 MiB",
                self.memory_budget_bytes
            ));
        }
        if !(0.0..=0.9).contains(&self.block_cache_fraction) {
            return bad(format!(
                "block_cache_fraction = {} is outside 0.0..=0.9",
                self.block_cache_fraction
            ));
        }
        if self.segment_bytes < 64 << 10 || self.segment_bytes > 1 << 32 {
            return bad(format!(
                "segment_bytes = {} is outside 64 KiB..=4 GiB",
                self.segment_bytes
            ));
        }
        if self.block_target_bytes < 1 << 10 || self.block_target_bytes > MAX_BLOCK_TARGET_BYTES {
            return bad(format!(
                "block_target_bytes = {} is outside 1 KiB..=16 MiB",
                self.block_target_bytes
            ));
        }
        if !(-7..=22).contains(&self.compression_level) {
            return bad(format!(
                "compression_level = {} is outside -7..=22",
                self.compression_level
            ));
        }
        if self.compaction_interval_ms == 0 {
            return bad("compaction_interval_ms must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.reclaim_free_share) {
            return bad(format!(
                "reclaim_free_share = {} is outside 0.0..=1.0",
                self.reclaim_free_share
            ));
        }
        if self.dictionary_bytes != 0 && !DICTIONARY_BYTES.contains(&self.dictionary_bytes) {
            return bad(format!(
                "dictionary_bytes = {} is neither 0 nor within 1 KiB..=128 KiB",
                self.dictionary_bytes
            ));
        }
        if self.dictionary_training_bytes < MIN_TRAINING_FACTOR.saturating_mul(self.dictionary_bytes) {
            return bad(format!(
                "dictionary_training_bytes = {} is below {MIN_TRAINING_FACTOR} x dictionary_bytes ({})",
                self.dictionary_training_bytes, self.dictionary_bytes
            ));
        }
        Ok(())
    }

    /// Bytes the decompressed-block cache may hold.
    pub fn block_cache_bytes(&self) -> u64 {
        (self.memory_budget_bytes as f64 * self.block_cache_fraction) as u64
    }

    /// Bytes the hot ring (plus block index) may hold before eviction and back-pressure.
    pub fn ring_budget_bytes(&self) -> u64 {
        self.memory_budget_bytes - self.block_cache_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_toml_file_parses_to_default_config() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml");
        assert_eq!(Config::from_toml_file(path).unwrap(), Config::default());
    }

    /// The ranges the field docs (and config/default.toml) state are the ones `validate` applies:
    /// each bound is accepted, one step past it is not.
    #[test]
    fn documented_ranges_are_the_validated_ones() {
        type Set = fn(&mut Config);
        let cases: &[(&str, Set, Option<Set>)] = &[
            (
                "memory_budget_bytes min",
                |c| c.memory_budget_bytes = 1 << 20,
                Some(|c| c.memory_budget_bytes = (1 << 20) - 1),
            ),
            (
                "block_cache_fraction min",
                |c| c.block_cache_fraction = 0.0,
                Some(|c| c.block_cache_fraction = -0.01),
            ),
            (
                "block_cache_fraction max",
                |c| c.block_cache_fraction = 0.9,
                Some(|c| c.block_cache_fraction = 0.91),
            ),
            (
                "block_cache_fraction NaN",
                |c| c.block_cache_fraction = 0.5,
                Some(|c| c.block_cache_fraction = f64::NAN),
            ),
            (
                "segment_bytes min",
                |c| c.segment_bytes = 64 << 10,
                Some(|c| c.segment_bytes = (64 << 10) - 1),
            ),
            (
                "segment_bytes max",
                |c| c.segment_bytes = 1 << 32,
                Some(|c| c.segment_bytes = (1 << 32) + 1),
            ),
            ("recycle_segments 0", |c| c.recycle_segments = 0, None),
            ("recycle_bytes 0", |c| c.recycle_bytes = 0, None),
            (
                "reclaim_free_share min",
                |c| c.reclaim_free_share = 0.0,
                Some(|c| c.reclaim_free_share = -0.01),
            ),
            (
                "reclaim_free_share max",
                |c| c.reclaim_free_share = 1.0,
                Some(|c| c.reclaim_free_share = 1.01),
            ),
            (
                "reclaim_free_share NaN",
                |c| c.reclaim_free_share = 0.5,
                Some(|c| c.reclaim_free_share = f64::NAN),
            ),
            ("reclaim_min_bytes 0", |c| c.reclaim_min_bytes = 0, None),
            ("reclaim_interval_ms 0", |c| c.reclaim_interval_ms = 0, None),
            ("dictionary_bytes 0", |c| c.dictionary_bytes = 0, None),
            (
                "dictionary_bytes min",
                |c| c.dictionary_bytes = 1 << 10,
                Some(|c| c.dictionary_bytes = (1 << 10) - 1),
            ),
            (
                "dictionary_bytes max",
                |c| c.dictionary_bytes = 128 << 10,
                Some(|c| c.dictionary_bytes = (128 << 10) + 1),
            ),
            (
                "dictionary_training_bytes min",
                |c| c.dictionary_training_bytes = 8 * c.dictionary_bytes,
                Some(|c| c.dictionary_training_bytes = 8 * c.dictionary_bytes - 1),
            ),
            (
                "block_target_bytes min",
                |c| c.block_target_bytes = 1 << 10,
                Some(|c| c.block_target_bytes = (1 << 10) - 1),
            ),
            (
                "block_target_bytes max",
                |c| c.block_target_bytes = 16 << 20,
                Some(|c| c.block_target_bytes = (16 << 20) + 1),
            ),
            (
                "compression_level min",
                |c| c.compression_level = -7,
                Some(|c| c.compression_level = -8),
            ),
            (
                "compression_level max",
                |c| c.compression_level = 22,
                Some(|c| c.compression_level = 23),
            ),
            (
                "compaction_trigger_bytes 0",
                |c| c.compaction_trigger_bytes = 0,
                None,
            ),
            ("hot_tail_entries 0", |c| c.hot_tail_entries = 0, None),
            (
                "compaction_interval_ms min",
                |c| c.compaction_interval_ms = 1,
                Some(|c| c.compaction_interval_ms = 0),
            ),
        ];
        for (name, accepted, refused) in cases {
            let mut c = Config::default();
            accepted(&mut c);
            assert!(c.validate().is_ok(), "{name}: the documented bound is refused");
            if let Some(refused) = refused {
                let mut c = Config::default();
                refused(&mut c);
                assert!(
                    matches!(c.validate(), Err(Error::Config(_))),
                    "{name}: past the bound is accepted"
                );
            }
        }
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let c = Config::from_toml_str("memory_budget_bytes = 33554432\n").unwrap();
        assert_eq!(c.memory_budget_bytes, 32 << 20);
        assert_eq!(c.segment_bytes, Config::default().segment_bytes);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_config_errors() {
        assert!(matches!(
            Config::from_toml_str("memory_budget = 1"),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Config::from_toml_str("memory_budget_bytes = 10"),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Config::from_toml_str("recovery_mode = \"maybe\""),
            Err(Error::Config(_))
        ));
    }
}
