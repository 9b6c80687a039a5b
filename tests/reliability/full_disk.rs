//! A real full disk, not an injected error: the engine runs on a small filesystem
//! mounted for the test (a size-limited tmpfs, and an ext4 image on a loop device), a filler file
//! and the engine's own appends use up the space while the background compactor runs, and then:
//! - while the disk is full, every read of either tier works and returns what was acknowledged;
//!   appends fail with an `Error::Io` carrying ENOSPC, never a panic or a silent loss, and the
//!   engine is not poisoned (`Error::Closed`) by a plain write that found no space;
//! - once the filler is deleted, appends, flushes and compaction resume in the same engine (no
//!   restart), and the compactor moves what piled up meanwhile;
//! - a clean reopen holds every acknowledged entry, byte for byte, and the hard state.
//!
//! Mounting needs root (or CAP_SYS_ADMIN) and, for ext4, `mkfs.ext4` and a loop device; where that
//! is not possible each test prints why and passes without running (the CI image runs as root).
//!
//! Run: `cargo test --features failpoints --test reliability full_disk -- --nocapture`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Model, batch, config, diff_entries};
use tierlog::{Error, HardState, LogStore, MetaStore, StorageEngine, TieredEngine};

const SEED: u64 = 0xD15C;
const ENOSPC: i32 = 28;

/// A filesystem mounted on a fresh temporary directory, unmounted on drop (also when the test
/// panics; the engine, declared after the guard, is dropped first).
struct Mounted {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Busy (a file still open): detach it so the temporary directory can go.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("{cmd:?} could not run: {e}")),
    }
}

fn mount_tmpfs(bytes: u64) -> Result<Mounted, String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path().join("mnt");
    std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
    run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
        .arg("tmpfs")
        .arg(&dir))?;
    Ok(Mounted { dir, _tmp: tmp })
}

fn mount_ext4(bytes: u64) -> Result<Mounted, String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let img = tmp.path().join("fs.img");
    let dir = tmp.path().join("mnt");
    std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(bytes))
        .map_err(|e| e.to_string())?;
    // -m 0: no blocks reserved for root (the test runs as root and would otherwise get them).
    run(Command::new("mkfs.ext4").args(["-q", "-F", "-m", "0"]).arg(&img))?;
    run(Command::new("mount").args(["-o", "loop"]).arg(&img).arg(&dir))?;
    Ok(Mounted { dir, _tmp: tmp })
}

fn os_code(e: &Error) -> Option<i32> {
    match e {
        Error::Io { source, .. } => source.raw_os_error(),
        _ => None,
    }
}

/// Writes 64 KiB chunks into `path` until the filesystem refuses, then gives `slack` bytes back
/// (so the engine's own writes use up the rest); returns the filler's size.
fn fill(path: &Path, slack: u64) -> u64 {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open filler");
    let chunk = vec![0xA5u8; 64 << 10];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(ENOSPC), "filler: {e}");
                break;
            }
        }
    }
    let len = f.metadata().expect("filler metadata").len();
    let keep = len.saturating_sub(slack);
    f.set_len(keep).expect("shrink filler");
    f.sync_all().expect("sync filler");
    keep
}

/// Every entry the model holds reads back from the engine, byte for byte, in one range read and in
/// point reads of the oldest (cold) entries.
async fn check_reads(e: &TieredEngine, m: &Model, what: &str) {
    let log = e.log_store();
    assert_eq!(log.last_index(), m.last_index(), "{what}: last_index");
    let got = log
        .get_entries(0..=m.last_index() + 10)
        .unwrap_or_else(|err| panic!("{what}: reading the whole log failed: {err}"));
    if let Some(d) = diff_entries(&got, &m.slice(0, m.last_index() + 10, SEED)) {
        panic!("{what}: {d}");
    }
    for i in (1..=m.last_index()).step_by(97) {
        let got = log
            .entry(i)
            .await
            .unwrap_or_else(|err| panic!("{what}: entry({i}) failed: {err}"));
        assert_eq!(got, m.slice(i, i, SEED).pop(), "{what}: entry({i})");
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["", "wal"] {
        for ent in std::fs::read_dir(dir.join(sub)).expect("read_dir").flatten() {
            let len = ent.metadata().map_or(0, |m| m.len());
            if ent.path().is_file() {
                out.push(format!(
                    "{}{} ({len})",
                    if sub.is_empty() { "" } else { "wal/" },
                    ent.file_name().to_string_lossy()
                ));
            }
        }
    }
    out.sort();
    out
}

async fn full_disk(mnt: &Path, kind: &str) {
    let dir = mnt.join("store");
    let filler = mnt.join("filler");
    let e = TieredEngine::open(&dir, config::tiny()).await.unwrap();
    let log = e.log_store();
    let meta = e.meta_store();
    let mut m = Model::default();
    let mut term = 0;
    let mut next = |m: &Model, n: u64| {
        term += 1;
        (m.last_index() + 1, n, term)
    };

    // A log with cold blocks and a hot tail.
    for _ in 0..100 {
        let (first, n, t) = next(&m, 20);
        log.persist_entries(batch(first, n, t, SEED)).await.unwrap();
        m.persist(first, n, t);
    }
    e.compact_now().await.unwrap();
    log.flush().unwrap();
    let hs = HardState {
        current_term: 3,
        voted_for: None,
    };
    meta.save_hard_state(&hs).unwrap();

    // Fill the disk but 1 MiB, then let the engine's appends (with the background compactor moving
    // them into redb, and reads of both tiers in between) use up the rest.
    let filled = fill(&filler, 1 << 20);
    let mut failures = Vec::new();
    let mut acked_while_filling = 0;
    for k in 0..100_000u64 {
        let (first, n, t) = next(&m, 10);
        match log.persist_entries(batch(first, n, t, SEED)).await {
            Ok(()) => {
                m.persist(first, n, t);
                acked_while_filling += 1;
                // On a full disk the flush may only fail by refusing (ENOSPC, or a poisoned log), but
                // tmpfs and ext4 have no dirty data to lose at fdatasync: it must succeed.
                log.flush()
                    .unwrap_or_else(|err| panic!("{kind}: flush after an acknowledged append: {err}"));
            }
            Err(err) => {
                assert_eq!(
                    os_code(&err),
                    Some(ENOSPC),
                    "{kind}: an append on a full disk failed with something other than ENOSPC: {err}"
                );
                failures.push(err);
                // Keep trying a while: the compactor may free segments and let some through.
                if failures.len() >= 50 {
                    break;
                }
            }
        }
        if k % 25 == 0 {
            check_reads(&e, &m, &format!("{kind}: while filling")).await;
        }
    }
    eprintln!(
        "{kind}: filler {filled} bytes, then {acked_while_filling} appends acknowledged, {} refused; first refusal: {}",
        failures.len(),
        failures[0]
    );
    assert!(
        acked_while_filling > 0,
        "{kind}: the engine had 1 MiB but wrote nothing"
    );
    eprintln!("{kind}: files while full: {:?}", files(&dir));

    // Full: reads of both tiers, also after a compaction that may fail.
    let misses = e.stats().block_cache_misses;
    check_reads(&e, &m, &format!("{kind}: full disk")).await;
    match e.compact_now().await {
        Ok(()) => eprintln!("{kind}: compact_now on the full disk succeeded"),
        Err(err) => {
            eprintln!("{kind}: compact_now on the full disk: {err}");
            assert_eq!(
                os_code(&err),
                Some(ENOSPC),
                "{kind}: compact_now on a full disk: {err}"
            );
        }
    }
    check_reads(&e, &m, &format!("{kind}: full disk, after compact_now")).await;
    let stats = e.stats();
    assert!(
        stats.block_cache_misses > misses,
        "{kind}: the reads on the full disk never reached redb"
    );
    let (first, n, t) = next(&m, 10);
    let err = log
        .persist_entries(batch(first, n, t, SEED))
        .await
        .expect_err("an append on the full disk succeeded");
    assert_eq!(
        os_code(&err),
        Some(ENOSPC),
        "{kind}: append on the full disk: {err}"
    );
    let hs4 = HardState {
        current_term: 4,
        voted_for: None,
    };
    let hard = match meta.save_hard_state(&hs4) {
        Ok(()) => hs4,
        Err(err) => {
            assert_eq!(os_code(&err), Some(ENOSPC), "{kind}: save_hard_state: {err}");
            hs
        }
    };
    assert_eq!(meta.load_hard_state().unwrap(), Some(hard));

    // Space comes back: the same engine writes, flushes and compacts again.
    std::fs::remove_file(&filler).unwrap();
    let rounds = stats.compactions;
    for _ in 0..200 {
        let (first, n, t) = next(&m, 10);
        log.persist_entries(batch(first, n, t, SEED))
            .await
            .unwrap_or_else(|err| panic!("{kind}: append after space came back: {err}"));
        m.persist(first, n, t);
    }
    log.flush()
        .unwrap_or_else(|err| panic!("{kind}: flush after space came back: {err}"));
    e.compact_now()
        .await
        .unwrap_or_else(|err| panic!("{kind}: compact_now after space came back: {err}"));
    let stats = e.stats();
    assert!(
        stats.compactions > rounds,
        "{kind}: no round after space came back"
    );
    assert_eq!(
        stats.compaction_high_water,
        m.last_index(),
        "{kind}: compact_now after space came back left entries hot"
    );
    check_reads(&e, &m, &format!("{kind}: after space came back")).await;
    meta.save_hard_state(&hs4).unwrap();
    eprintln!("{kind}: files after: {:?}", files(&dir));
    drop((log, meta));
    e.close().await.unwrap();

    let e = TieredEngine::open(&dir, config::tiny())
        .await
        .unwrap_or_else(|err| panic!("{kind}: reopen failed: {err}"));
    check_reads(&e, &m, &format!("{kind}: after reopen")).await;
    assert_eq!(e.meta_store().load_hard_state().unwrap(), Some(hs4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tmpfs_full_disk() {
    let _fp = crate::failpoints_off();
    let mnt = match mount_tmpfs(16 << 20) {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED tmpfs_full_disk: cannot mount a tmpfs here ({why})");
            return;
        }
    };
    full_disk(&mnt.dir, "tmpfs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext4_full_disk() {
    let _fp = crate::failpoints_off();
    let mnt = match mount_ext4(24 << 20) {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED ext4_full_disk: cannot mount an ext4 image here ({why})");
            return;
        }
    };
    full_disk(&mnt.dir, "ext4").await;
}
