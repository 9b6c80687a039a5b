//! The read-only tools (`tierlog::offline`) against damaged stores: `verify` reports every damage
//! that `open` refuses, as `Error::Corruption`; the messages say whether a number is a byte offset
//! or a log index.
//!
//! The store (`crate::support::offline_store`): entries 1..=3000, about 2000 of them in cold blocks, the rest
//! in several write-ahead segments only; a hard state and an application-metadata blob each saved
//! twice (both slots of their files written).

use std::path::{Path, PathBuf};

use crate::support::{config, copy_dir, damage_block, offline_store};
use tierlog::{Error, TieredEngine};

const SEED: u64 = 0x0FF1;

/// A copy of the pristine store to damage.
fn copy(root: &Path, pristine: &Path, name: &str) -> PathBuf {
    let d = root.join(name);
    copy_dir(pristine, &d);
    d
}

async fn pristine(root: &Path) -> PathBuf {
    let p = root.join("pristine");
    offline_store(&p, SEED).await;
    let r = tierlog::offline::verify(&p).expect("the pristine store verifies");
    assert_eq!(r.entries, 3000);
    assert!(r.cold_blocks > 0, "{r:?}");
    p
}

/// What `open` (default recovery mode) says about a directory, on a copy: open repairs files.
async fn open_result(root: &Path, dir: &Path, name: &str) -> Result<(), Error> {
    let d = copy(root, dir, name);
    let r = TieredEngine::open(&d, config::offline_store()).await;
    match r {
        Ok(e) => {
            e.close().await.unwrap();
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_a_truncated_cold_file_as_corruption_as_open_refuses_it() {
    let root = tempfile::tempdir().unwrap();
    let p = pristine(root.path()).await;
    let len = std::fs::metadata(p.join("cold.redb")).unwrap().len();
    for cut in [512, 4096, len / 2, len - 1] {
        let d = copy(root.path(), &p, &format!("cut{cut}"));
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("cold.redb"))
            .unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        let opened = open_result(root.path(), &d, &format!("cut{cut}-open")).await;
        let verified = tierlog::offline::verify(&d);
        let Err(open_err) = opened else {
            // open accepted the file; then verify must too.
            verified
                .unwrap_or_else(|e| panic!("cold.redb cut to {cut} of {len}: open accepts it, verify: {e}"));
            continue;
        };
        assert!(
            open_err.is_corruption(),
            "cold.redb cut to {cut} of {len}: open refuses it, but not as corruption: {open_err}"
        );
        match verified {
            Err(e) if e.is_corruption() => {
                assert!(e.to_string().contains("cold.redb"), "{e}");
            }
            other => {
                panic!("cold.redb cut to {cut} of {len}: open refuses it ({open_err}), verify: {other:?}")
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_metadata_files_with_both_slots_damaged_as_open_refuses_them() {
    let root = tempfile::tempdir().unwrap();
    let p = pristine(root.path()).await;
    // Slot sizes from docs/format.md; a byte inside each slot's checksummed part.
    for (file, slot) in [("hardstate", 64usize), ("appmeta", 4096)] {
        let d = copy(root.path(), &p, file);
        let path = d.join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 2 * slot, "{file}: both slots written");
        bytes[14] ^= 0xff;
        bytes[slot + 14] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let open_err = open_result(root.path(), &d, &format!("{file}-open"))
            .await
            .expect_err("open refuses a metadata file with no valid slot");
        assert!(open_err.is_corruption(), "{file}: {open_err}");
        match tierlog::offline::verify(&d) {
            Err(e) if e.is_corruption() => assert!(e.to_string().contains(file), "{e}"),
            other => panic!("{file}: open refuses it ({open_err}), verify: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_messages_say_whether_the_number_is_a_log_index_or_a_byte_offset() {
    let root = tempfile::tempdir().unwrap();
    let p = pristine(root.path()).await;

    let d = copy(root.path(), &p, "block");
    let first = damage_block(&d, 1000);
    let err = tierlog::offline::verify(&d).expect_err("a damaged block fails verify");
    let msg = err.to_string();
    assert!(err.is_corruption(), "{msg}");
    assert!(
        msg.contains(&format!("at log index {first}")),
        "a cold block is named by its first log index: {msg}"
    );
    assert!(!msg.contains("offset"), "a log index is not an offset: {msg}");

    let d = copy(root.path(), &p, "wal");
    let report = tierlog::offline::inspect(&d).unwrap();
    let oldest = report
        .segments
        .iter()
        .find(|s| s.records > 0)
        .expect("a live segment");
    assert!(report.segments.len() > 1, "{report:?}");
    let mut bytes = std::fs::read(&oldest.path).unwrap();
    let off = oldest.used_bytes as usize / 2;
    bytes[off] ^= 0x10;
    std::fs::write(&oldest.path, &bytes).unwrap();
    let err = tierlog::offline::verify(&d).expect_err("a damaged record in an older segment fails verify");
    let msg = err.to_string();
    assert!(err.is_corruption(), "{msg}");
    assert!(msg.contains("at byte offset "), "{msg}");
    match err {
        Error::Corruption { path, offset, .. } => {
            assert_eq!(path, oldest.path);
            assert!(offset <= off as u64, "{msg}");
        }
        other => panic!("{other}"),
    }
}
