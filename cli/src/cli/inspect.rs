//! Operator commands: `inspect`, `verify`, `dump`, `compact`. The directory checks live here; the
//! reading itself is done by the library's read-only `tierlog::offline` tools.

use std::fmt::Write;
use std::path::Path;

use tierlog::{Entry, RecoveryMode};

use super::{CliResult, DumpArgs};

/// Refuses a path that is missing, not a directory, or empty, with a message naming it.
pub fn check_dir(dir: &Path) -> CliResult<()> {
    let md = std::fs::metadata(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("no such directory: {}", dir.display()),
        _ => format!("cannot access {}: {e}", dir.display()),
    })?;
    if !md.is_dir() {
        return Err(format!("{} is not a directory", dir.display()).into());
    }
    let mut entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    if entries.next().is_none() {
        return Err(format!("{} is empty: not a tierlog directory", dir.display()).into());
    }
    Ok(())
}

/// Exit code of `inspect` and `dump` when the recovery mode skipped damage, and of `verify` when it
/// found damage.
pub const EXIT_DAMAGE: i32 = 2;

/// `tierlog inspect DIR`: exit code 0, or 2 when the recovery mode skipped damage (listed in the
/// report).
pub fn inspect(dir: &Path, json: bool, mode: RecoveryMode) -> CliResult<i32> {
    check_dir(dir)?;
    let (text, damaged) = offline::inspect(dir, json, mode)?;
    print!("{text}");
    Ok(if damaged { EXIT_DAMAGE } else { 0 })
}

/// `tierlog verify DIR`: exit code 0 when clean, 2 when damage was found, 1 when the directory could
/// not be checked. With `json`, stdout is one JSON document in all three cases.
pub fn verify(dir: &Path, json: bool) -> CliResult<i32> {
    match check_dir(dir).and_then(|()| offline::verify(dir, json)) {
        Ok((text, clean)) => {
            print!("{text}");
            Ok(if clean { 0 } else { EXIT_DAMAGE })
        }
        Err(e) if json => {
            let doc = serde_json::json!({"ok": false, "error": e.to_string()});
            println!("{}", serde_json::to_string_pretty(&doc)?);
            eprintln!("error: {e}");
            Ok(1)
        }
        Err(e) => Err(e),
    }
}

/// `tierlog dump DIR --from A --to B`: exit code 0, or 2 when the recovery mode skipped damage
/// (named on stderr).
pub fn dump(args: &DumpArgs) -> CliResult<i32> {
    check_dir(&args.dir)?;
    if let (Some(a), Some(b)) = (args.from, args.to)
        && a > b
    {
        return Err(format!("--from {a} is above --to {b}").into());
    }
    let mut out = std::io::stdout().lock();
    let report = tierlog::offline::dump_with(
        &args.dir,
        args.from.unwrap_or(0),
        args.to.unwrap_or(u64::MAX),
        args.recovery_mode.into(),
        &mut |e: &Entry| {
            use std::io::Write as _;
            // A closed pipe (e.g. `| head`) ends the dump quietly.
            writeln!(out, "{}", format_entry(e, args.hex)).is_ok()
        },
    )?;
    for d in &report.damage {
        eprintln!("skipped: {d}");
    }
    Ok(if report.damage.is_empty() { 0 } else { EXIT_DAMAGE })
}

/// `tierlog compact DIR`.
pub fn compact(dir: &Path) -> CliResult<i32> {
    check_dir(dir)?;
    print!("{}", offline::compact(dir)?);
    Ok(0)
}

/// One dump line: index, term, payload size, then the payload as UTF-8 (if it is printable) or hex.
pub fn format_entry(e: &Entry, force_hex: bool) -> String {
    let mut line = format!("{}\t{}\t{}\t", e.index, e.term, e.payload.len());
    match std::str::from_utf8(&e.payload) {
        Ok(text) if !force_hex && !text.chars().any(|c| c.is_control() && c != '\t') => line.push_str(text),
        _ => {
            line.push_str("0x");
            for b in e.payload.iter() {
                let _ = write!(line, "{b:02x}");
            }
        }
    }
    line
}

/// The calls into the library's offline tools, kept in one place.
mod offline {
    use std::fmt::Write;
    use std::path::Path;

    use tierlog::offline::{self, Inspection, VerifyReport};
    use tierlog::{Error, OffsetKind, RecoveryMode};

    use crate::cli::CliResult;
    use crate::cli::sys::human_bytes;

    /// Report text of `inspect`, and whether damage was skipped.
    pub fn inspect(dir: &Path, json: bool, mode: RecoveryMode) -> CliResult<(String, bool)> {
        let i = offline::inspect_with(dir, mode)?;
        let text = if json {
            serde_json::to_string_pretty(&i)? + "\n"
        } else {
            render_inspection(&i)
        };
        Ok((text, !i.damage.is_empty()))
    }

    fn range(r: Option<(u64, u64)>) -> String {
        r.map_or("empty".into(), |(a, b)| {
            format!("{a}..={b} ({} entries)", b + 1 - a)
        })
    }

    fn render_inspection(i: &Inspection) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "directory        {}", i.dir.display());
        let _ = writeln!(
            s,
            "index range      {} (last_index {})",
            range(i.index_range),
            i.last_index
        );
        let _ = writeln!(
            s,
            "purge boundary   {}",
            i.purge_boundary
                .map_or("none".into(), |b| format!("index {} (term {})", b.index, b.term))
        );
        let _ = writeln!(
            s,
            "hard state       {}",
            i.hard_state
                .map_or(damaged_or_none(i.hard_state_damaged), |h| format!(
                    "term {}, voted for {}",
                    h.current_term,
                    h.voted_for.map_or("nobody".into(), |v| format!(
                        "{} in term {}{}",
                        v.voted_for_id,
                        v.voted_for_term,
                        if v.committed { " (committed)" } else { "" }
                    ))
                ))
        );
        let _ = writeln!(
            s,
            "app metadata     {}",
            i.app_meta_bytes
                .map_or(damaged_or_none(i.app_meta_damaged), |n| format!("{n} bytes"))
        );
        let _ = writeln!(
            s,
            "hot tier         {} entries replayed from the write-ahead log",
            i.hot_entries
        );
        let _ = writeln!(
            s,
            "cold tier        {} blocks covering {}, high water {}; {} raw -> {} stored ({:.2}x)",
            i.cold_blocks,
            range(i.cold_index_range),
            i.cold_high_water,
            human_bytes(i.cold_raw_bytes),
            human_bytes(i.cold_stored_bytes),
            i.compression_ratio
        );
        let _ = writeln!(
            s,
            "dictionary       {}",
            match i.dictionary_bytes {
                Some(b) => format!(
                    "{} zstd dictionary in use (blocks written before it was trained have none)",
                    human_bytes(b)
                ),
                None => "none (blocks are compressed without one)".into(),
            }
        );
        let _ = writeln!(
            s,
            "redb file        {} on disk, {} of it live cold blocks, {} fragmented ({} of it free pages, estimated: `tierlog compact` gives them back)",
            human_bytes(i.redb_file_bytes),
            human_bytes(i.cold_stored_bytes),
            human_bytes(i.redb_fragmented_bytes),
            human_bytes(i.redb_free_bytes)
        );
        if i.redb_not_closed_cleanly {
            s.push_str(NOT_CLOSED_CLEANLY);
        }
        let _ = writeln!(
            s,
            "write-ahead      {} segments in use, {} spare",
            i.segments.len(),
            i.spare_segments
        );
        for seg in &i.segments {
            let _ = writeln!(
                s,
                "  segment {:>6}  {:>8} records  seq {:<24} {} used of {}  {}",
                seg.id,
                seg.records,
                seg.seq_range.map_or("-".into(), |(a, b)| format!("{a}..={b}")),
                human_bytes(seg.used_bytes),
                human_bytes(seg.file_bytes),
                seg.tail
            );
        }
        for d in &i.damage {
            let _ = writeln!(s, "damage skipped   {d}");
        }
        s
    }

    fn damaged_or_none(damaged: bool) -> String {
        if damaged {
            "damaged: no valid slot (see \"damage skipped\")".into()
        } else {
            "none".into()
        }
    }

    /// Report text of `verify` and whether the directory is clean; corruption is a finding
    /// (exit code 2), any other error is returned.
    pub fn verify(dir: &Path, json: bool) -> CliResult<(String, bool)> {
        match offline::verify(dir) {
            Ok(r) if json => Ok((
                serde_json::to_string_pretty(&serde_json::json!({"ok": true, "report": r}))? + "\n",
                true,
            )),
            Ok(r) => Ok((render_verify(&r), true)),
            Err(e) if e.is_corruption() && json => {
                Ok((serde_json::to_string_pretty(&corruption_json(&e))? + "\n", false))
            }
            Err(e) if e.is_corruption() => Ok((format!("CORRUPT: {e}\n"), false)),
            Err(e) => Err(e.into()),
        }
    }

    /// `{"ok": false, "corruption": message, "path": file}`, plus `"byte_offset"` or `"log_index"`
    /// when the damage has one place.
    fn corruption_json(e: &Error) -> serde_json::Value {
        let mut doc = serde_json::json!({"ok": false, "corruption": e.to_string()});
        if let Error::Corruption {
            path,
            offset,
            offset_kind,
            ..
        } = e
        {
            doc["path"] = path.display().to_string().into();
            match offset_kind {
                OffsetKind::ByteOffset => doc["byte_offset"] = (*offset).into(),
                OffsetKind::LogIndex => doc["log_index"] = (*offset).into(),
                _ => {}
            }
        }
        doc
    }

    const NOT_CLOSED_CLEANLY: &str = "note: the redb file was not closed cleanly (the engine crashed or is still running); \
        read through a repaired scratch copy, the directory was not modified (the engine repairs the file on its next open)\n";

    fn render_verify(r: &VerifyReport) -> String {
        let mut s = format!(
            "OK: {} write-ahead records and {} cold blocks pass their checksums; {} entries present and contiguous\n",
            r.wal_records, r.cold_blocks, r.entries
        );
        if r.redb_not_closed_cleanly {
            s.push_str(NOT_CLOSED_CLEANLY);
        }
        for t in &r.torn_tails {
            let _ = writeln!(
                s,
                "note: torn tail record (a crash mid-write; cut off when opened): {t}"
            );
        }
        s
    }

    /// Report text of `compact`.
    pub fn compact(dir: &Path) -> CliResult<String> {
        let (before, after) = offline::compact(dir)?;
        Ok(format!(
            "redb file compacted: {} -> {} ({} freed)\n",
            human_bytes(before),
            human_bytes(after),
            human_bytes(before.saturating_sub(after))
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_lines_show_text_or_hex() {
        let e = Entry::new(7, 2, "PUT k v");
        assert_eq!(format_entry(&e, false), "7\t2\t7\tPUT k v");
        assert_eq!(format_entry(&e, true), "7\t2\t7\t0x505554206b2076");
        let bin = Entry::new(8, 2, vec![0u8, 255]);
        assert_eq!(format_entry(&bin, false), "8\t2\t2\t0x00ff");
    }

    #[test]
    fn missing_file_and_empty_paths_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        assert!(
            check_dir(&missing)
                .unwrap_err()
                .to_string()
                .contains("no such directory")
        );
        let file = tmp.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(
            check_dir(&file)
                .unwrap_err()
                .to_string()
                .contains("not a directory")
        );
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(check_dir(&empty).unwrap_err().to_string().contains("empty"));
    }
}
