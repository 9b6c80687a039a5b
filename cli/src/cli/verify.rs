//! The end of every bench run: reopen the directory and check every retained entry against the model.

use std::time::Instant;

use indicatif::ProgressBar;
use serde::Serialize;
use tierlog::{LogStore, StorageEngine, TierLogStore, TieredEngine};

use super::CliResult;
use super::model::Model;
use super::payload::PayloadGen;

/// Result of the verification pass.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Verification {
    /// True when every check passed.
    pub ok: bool,
    /// Entries read back and compared.
    pub entries_checked: u64,
    /// Expected first retained index.
    pub first_index: u64,
    /// Expected last index.
    pub last_index: u64,
    /// Expected purge boundary index (0 = none).
    pub purged_through: u64,
    /// Seconds to reopen the directory.
    pub reopen_seconds: f64,
    /// Seconds to read and check everything.
    pub check_seconds: f64,
    /// The first problem found, if any.
    pub error: Option<String>,
}

/// Checks the reopened `engine` against `model`; a mismatch is reported in the result, an I/O
/// error is returned.
pub fn verify(
    engine: &TieredEngine,
    model: &Model,
    payloads: &PayloadGen,
    bar: &ProgressBar,
    reopen_seconds: f64,
) -> CliResult<Verification> {
    let start = Instant::now();
    let mut v = Verification {
        first_index: model.first(),
        last_index: model.last(),
        purged_through: model.purged(),
        reopen_seconds,
        ..Verification::default()
    };
    let result = check(engine, model, payloads, bar, &mut v.entries_checked);
    v.check_seconds = start.elapsed().as_secs_f64();
    match result {
        Ok(Ok(())) => v.ok = true,
        Ok(Err(mismatch)) => v.error = Some(mismatch),
        Err(e) => return Err(e),
    }
    Ok(v)
}

/// Outer error: the engine failed; inner error: the content is not what was written.
fn check(
    engine: &TieredEngine,
    model: &Model,
    payloads: &PayloadGen,
    bar: &ProgressBar,
    checked: &mut u64,
) -> CliResult<Result<(), String>> {
    check_log(&engine.log_store(), model, payloads, bar, checked)
}

/// Checks one log (a group's, for many-groups) against its model: last index, purge boundary,
/// purged entries gone, every retained entry's index, term and payload. Outer error: the engine
/// failed; inner error: the content is not what was written.
pub fn check_log(
    log: &TierLogStore,
    model: &Model,
    payloads: &PayloadGen,
    bar: &ProgressBar,
    checked: &mut u64,
) -> CliResult<Result<(), String>> {
    if log.last_index() != model.last() {
        return Ok(Err(format!(
            "last_index() is {} after reopen, expected {}",
            log.last_index(),
            model.last()
        )));
    }
    let boundary = log.load_purge_boundary()?.map_or(0, |b| b.index);
    if boundary != model.purged() {
        return Ok(Err(format!(
            "purge boundary is {boundary} after reopen, expected {}",
            model.purged()
        )));
    }
    if model.purged() > 0 && !log.get_entries(1..=model.purged())?.is_empty() {
        return Ok(Err(format!(
            "purged entries (<= {}) came back after reopen",
            model.purged()
        )));
    }
    const CHUNK: u64 = 8192;
    let mut pos = model.first();
    while pos <= model.last() {
        let hi = model.last().min(pos + CHUNK - 1);
        let got = log.get_entries(pos..=hi)?;
        if got.len() as u64 != hi - pos + 1 {
            return Ok(Err(format!(
                "get_entries({pos}..={hi}) returned {} entries, expected {}",
                got.len(),
                hi - pos + 1
            )));
        }
        for (k, e) in got.iter().enumerate() {
            let index = pos + k as u64;
            let term = model.term(index).unwrap_or(0);
            if e.index != index || e.term != term {
                return Ok(Err(format!(
                    "expected entry {index} of term {term}, found entry {} of term {}",
                    e.index, e.term
                )));
            }
            if e.payload != payloads.payload(index, term) {
                return Ok(Err(format!(
                    "entry {index}: payload differs from what was written"
                )));
            }
        }
        *checked += got.len() as u64;
        bar.inc(got.len() as u64);
        pos = hi + 1;
    }
    Ok(Ok(()))
}
