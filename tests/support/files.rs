//! Files of a store: copies (for post-mortems and for damaging a copy), a ready-made store for the
//! offline tools, and a damaged cold block.

use tierlog::{HardState, LogStore, MetaStore, StorageEngine, TieredEngine};

use super::{batch, config};

/// Copies a store directory (for post-mortems and for damaging a copy). A live engine's background
/// round may rename a file while it is copied (a segment retired to a spare, a spare put in place);
/// a copy taken while the file names changed is taken again, so the copy never lacks a file that
/// existed under one name or the other throughout.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for _ in 0..100 {
        std::fs::remove_dir_all(to).ok();
        let before = names(from);
        match try_copy_dir(from, to) {
            Ok(()) if names(from) == before => return,
            Ok(()) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("copy {} to {}: {e}", from.display(), to.display()),
        }
    }
    panic!("copy {}: files kept vanishing", from.display());
}

/// Every path under `dir`, sorted.
fn names(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for ent in rd.flatten() {
            out.push(ent.path());
            if ent.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(names(&ent.path()));
            }
        }
    }
    out.sort();
    out
}

fn try_copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for ent in std::fs::read_dir(from)? {
        let ent = ent?;
        let target = to.join(ent.file_name());
        if ent.file_type()?.is_dir() {
            try_copy_dir(&ent.path(), &target)?;
        } else {
            std::fs::copy(ent.path(), &target)?;
        }
    }
    Ok(())
}

/// A store for the offline tools' tests: entries 1..=3000 (the term of each 25-entry batch is its
/// number), those up to about 2000 in cold blocks (one compaction after 2000 was written), the rest
/// in several write-ahead segments only, all flushed; a hard state (terms 7, 8) and an
/// application-metadata blob saved twice each, so both slots of their files are written. Closed
/// cleanly.
pub async fn offline_store(dir: &std::path::Path, seed: u64) {
    let e = TieredEngine::open(dir, config::offline_store()).await.unwrap();
    let log = e.log_store();
    for (term, first) in (1..=3000).step_by(25).enumerate() {
        log.persist_entries(batch(first, 25, term as u64 + 1, seed))
            .await
            .unwrap();
        if first == 1976 {
            e.compact_now().await.unwrap();
        }
    }
    log.flush().unwrap();
    let meta = e.meta_store();
    for term in [7, 8] {
        meta.save_hard_state(&HardState {
            current_term: term,
            voted_for: None,
        })
        .unwrap();
        meta.save_app_meta(format!("blob of term {term}").as_bytes())
            .unwrap();
    }
    e.close().await.unwrap();
}

/// Flips a byte in the middle of the cold block holding `index`; returns the block's first index.
pub fn damage_block(dir: &std::path::Path, index: u64) -> u64 {
    let db = redb::Database::open(dir.join("cold.redb")).unwrap();
    let tx = db.begin_write().unwrap();
    let first = {
        use redb::ReadableTable;
        let mut t = tx
            .open_table(redb::TableDefinition::<u64, &[u8]>::new("blocks"))
            .unwrap();
        let first = t
            .range(..=index)
            .unwrap()
            .next_back()
            .expect("a block at or below the index")
            .unwrap()
            .0
            .value();
        let mut v = t.get(first).unwrap().unwrap().value().to_vec();
        let mid = v.len() / 2;
        v[mid] ^= 0x10;
        t.insert(first, v.as_slice()).unwrap();
        first
    };
    tx.commit().unwrap();
    first
}
