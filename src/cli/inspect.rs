//! Operator commands: `inspect`, `verify`, `dump`, `compact`. The directory checks live here; the
//! reading itself is done by the library's read-only `tierlog::offline` tools.

use std::fmt::Write;
use std::path::Path;

use tierlog::Entry;

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

/// `tierlog inspect DIR`.
pub fn inspect(dir: &Path) -> CliResult<i32> {
    check_dir(dir)?;
    print!("{}", offline::inspect(dir)?);
    Ok(0)
}

/// `tierlog verify DIR`: exit code 0 when clean, 2 when corruption was found.
pub fn verify(dir: &Path) -> CliResult<i32> {
    check_dir(dir)?;
    let (text, clean) = offline::verify(dir)?;
    print!("{text}");
    Ok(if clean { 0 } else { 2 })
}

/// `tierlog dump DIR --from A --to B`.
pub fn dump(args: &DumpArgs) -> CliResult<i32> {
    check_dir(&args.dir)?;
    if let (Some(a), Some(b)) = (args.from, args.to)
        && a > b
    {
        return Err(format!("--from {a} is above --to {b}").into());
    }
    let mut out = std::io::stdout().lock();
    offline::dump(&args.dir, args.from, args.to, &mut |e: &Entry| {
        use std::io::Write as _;
        // A closed pipe (e.g. `| head`) ends the dump quietly.
        writeln!(out, "{}", format_entry(e, args.hex)).is_ok()
    })?;
    Ok(0)
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

/// The calls into the library's offline tools, kept in one place so they are easy to rewire.
mod offline {
    use std::path::Path;

    use tierlog::Entry;

    use crate::cli::CliResult;

    fn unavailable(what: &str) -> Box<dyn std::error::Error + Send + Sync> {
        format!("`tierlog {what}` needs tierlog::offline, which this build of the library does not have yet")
            .into()
    }

    /// Report text of `inspect`.
    pub fn inspect(_dir: &Path) -> CliResult<String> {
        Err(unavailable("inspect"))
    }

    /// Report text of `verify` and whether the directory is clean.
    pub fn verify(_dir: &Path) -> CliResult<(String, bool)> {
        Err(unavailable("verify"))
    }

    /// Calls `sink` for every entry in the range until it returns false.
    pub fn dump(
        _dir: &Path,
        _from: Option<u64>,
        _to: Option<u64>,
        _sink: &mut dyn FnMut(&Entry) -> bool,
    ) -> CliResult<()> {
        Err(unavailable("dump"))
    }

    /// Report text of `compact`.
    pub fn compact(_dir: &Path) -> CliResult<String> {
        Err(unavailable("compact"))
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
