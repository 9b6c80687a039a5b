//! The directory layout: the names of the files in a tierlog directory, the format marker, the
//! directory lock, and creating or checking a directory. Shared by the engine and the offline tools.

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};
use crate::wal::sync_dir;

pub(crate) const MARKER_FILE: &str = "TIERLOG";
pub(crate) const MARKER_TEXT: &str = "tierlog directory, format 1\n";
/// The marker is written here, fsynced, then renamed to `TIERLOG`.
pub(crate) const MARKER_TMP_FILE: &str = "TIERLOG.tmp";
pub(crate) const WAL_DIR: &str = "wal";
pub(crate) const COLD_FILE: &str = "cold.redb";
pub(crate) const HARD_STATE_FILE: &str = "hardstate";
pub(crate) const APP_META_FILE: &str = "appmeta";
pub(crate) const LOCK_FILE: &str = "LOCK";

/// Creates `dir` and any missing ancestor, then fsyncs the parent of each directory it created, so
/// the new entries survive a power cut.
fn create_dir_durably(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut p = dir;
    while !p.exists() {
        missing.push(p.to_path_buf());
        match p.parent() {
            Some(q) if !q.as_os_str().is_empty() => p = q,
            _ => break,
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for created in missing.iter().rev() {
        sync_dir(parent_of(created))?;
    }
    Ok(())
}

fn parent_of(p: &Path) -> &Path {
    p.parent()
        .filter(|q| !q.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes the marker so that no partial `TIERLOG` can ever exist: the text goes to a temporary
/// file, which is fsynced and then renamed over `TIERLOG`; the directory and its parent are then
/// fsynced, so the marker and the directory's own entry survive a power cut.
fn write_marker(dir: &Path) -> Result<()> {
    use std::io::Write;
    let tmp = dir.join(MARKER_TMP_FILE);
    let marker = dir.join(MARKER_FILE);
    (|| {
        let mut f = File::create(&tmp)?;
        crate::failpoints::torn_write("engine::marker::torn", &f, MARKER_TEXT.as_bytes(), 0)?;
        f.write_all(MARKER_TEXT.as_bytes())?;
        crate::failpoints::io_fault("engine::marker::sync")?;
        f.sync_all()
    })()
    .map_err(|e| Error::io(&tmp, e))?;
    crate::failpoints::io_fault("engine::marker::rename")
        .and_then(|_| std::fs::rename(&tmp, &marker))
        .map_err(|e| Error::io(&marker, e))?;
    sync_dir(dir)?;
    sync_dir(parent_of(dir))
}

/// What an interrupted in-place write of the marker (releases before the marker was renamed into
/// place) can leave: nothing, zeroes, or a strict prefix of the text possibly followed by zeroes.
fn is_damaged_marker(bytes: &[u8]) -> bool {
    let text = MARKER_TEXT.as_bytes();
    let kept = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    bytes.len() <= text.len() && kept < text.len() && bytes[..kept] == text[..kept]
}

/// True when `dir` holds anything besides what creating it makes before any data: the marker, its
/// temporary file, `LOCK`, and an empty `wal/`.
fn holds_data(dir: &Path) -> Result<bool> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let empty_wal = name == WAL_DIR
            && std::fs::read_dir(entry.path())
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
        if !(name == MARKER_FILE || name == MARKER_TMP_FILE || name == LOCK_FILE || empty_wal) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Creates the directory or checks that it is a tierlog directory, and takes its lock.
///
/// The marker decides: `TIERLOG` with the expected text is an existing directory (never rewritten);
/// no marker is a new directory, which must be empty but for a `TIERLOG.tmp` left by an interrupted
/// creation; a damaged marker (empty, zeroes, a prefix of the text: what a power cut during an
/// older release's creation could leave) is finished like a new directory when nothing else but
/// `LOCK` and an empty `wal/` is there, and refused when data is there (see `docs/reliability.md`);
/// any other marker is refused.
pub(crate) fn prepare_dir(dir: &Path) -> Result<File> {
    create_dir_durably(dir)?;
    let marker = dir.join(MARKER_FILE);
    match std::fs::read(&marker) {
        Ok(text) if text == MARKER_TEXT.as_bytes() => {}
        Ok(text) if is_damaged_marker(&text) => {
            if holds_data(dir)? {
                return Err(Error::corruption_of_file(
                    &marker,
                    format!(
                        "the directory holds data but its marker is damaged ({} bytes, not the \
                         expected {MARKER_TEXT:?}), as a power cut while an older release created the \
                         directory can leave it; not re-created automatically: check the directory, \
                         then write the expected text to {}",
                        text.len(),
                        marker.display()
                    ),
                ));
            }
            write_marker(dir)?;
        }
        Ok(_) => {
            return Err(Error::NotATierlogDirectory {
                path: dir.to_path_buf(),
                reason: format!("unknown format marker in {MARKER_FILE}"),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
                let entry = entry.map_err(|e| Error::io(dir, e))?;
                if entry.file_name() != MARKER_TMP_FILE {
                    return Err(Error::NotATierlogDirectory {
                        path: dir.to_path_buf(),
                        reason: format!("it is not empty and has no {MARKER_FILE} file"),
                    });
                }
            }
            write_marker(dir)?;
        }
        Err(e) => return Err(Error::io(&marker, e)),
    }
    let lock = lock(dir)?;
    let wal = dir.join(WAL_DIR);
    std::fs::create_dir_all(&wal).map_err(|e| Error::io(&wal, e))?;
    sync_dir(dir)?;
    Ok(lock)
}

/// Takes the directory lock (`LOCK`, held until the returned file is dropped): one engine, or one
/// offline tool that writes, per directory.
pub(crate) fn lock(dir: &Path) -> Result<File> {
    let lock_path = dir.join(LOCK_FILE);
    let lock = File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
    lock.try_lock().map_err(|_| Error::AlreadyOpen {
        path: dir.to_path_buf(),
    })?;
    Ok(lock)
}

/// Checks, without changing anything, that `dir` is a tierlog directory (for the offline tools).
pub(crate) fn check_dir(dir: &Path) -> Result<()> {
    let not = |reason: String| {
        Err(Error::NotATierlogDirectory {
            path: dir.to_path_buf(),
            reason,
        })
    };
    if !dir.is_dir() {
        return not("no such directory".into());
    }
    match std::fs::read(dir.join(MARKER_FILE)) {
        Ok(t) if t == MARKER_TEXT.as_bytes() => Ok(()),
        Ok(_) => not(format!("unknown or damaged {MARKER_FILE} marker")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => not(format!("no {MARKER_FILE} marker")),
        Err(e) => Err(Error::io(dir.join(MARKER_FILE), e)),
    }
}
