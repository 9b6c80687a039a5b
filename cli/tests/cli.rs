//! Runs the `tierlog` binary end to end on tiny workloads.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Longer than any of these tiny runs takes on a loaded 2-core machine in debug, and far below CI's
/// budget: a hang fails this test instead of stalling the whole run.
const WATCHDOG: Duration = Duration::from_secs(300);

fn tierlog(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_tierlog"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tierlog binary runs");
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let out = child.wait_with_output();
        let _ = done.send(());
        out
    });
    if finished.recv_timeout(WATCHDOG).is_err() {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        panic!("`tierlog {}` did not finish within {WATCHDOG:?}", args.join(" "));
    }
    waiter.join().unwrap().expect("the tierlog binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A configuration small enough that a few thousand entries reach the cold tier.
fn tiny_config(dir: &Path) -> String {
    let path = dir.join("tiny.toml");
    std::fs::write(
        &path,
        "memory_budget_bytes = 1048576\nblock_target_bytes = 8192\ncompaction_trigger_bytes = 65536\n\
         hot_tail_entries = 64\ncompaction_interval_ms = 10\nsegment_bytes = 1048576\n",
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn mixed_bench_reports_json_and_verifies_every_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config(tmp.path());
    let dir = tmp.path().join("log");
    let dir_s = dir.display().to_string();
    let out = tierlog(&[
        "bench",
        "--entries",
        "4000",
        "--batch",
        "16",
        "--json",
        "--config",
        &config,
        "--dir",
        &dir_s,
    ]);
    assert!(out.status.success(), "bench failed: {}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(report["workload"], "mixed");
    let phases: Vec<&str> = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["leader-append", "follower-catchup", "long-retention"]);
    for p in report["phases"].as_array().unwrap() {
        assert!(p["entries_written"].as_u64().unwrap() >= 4000, "{p}");
        assert!(p["entries_per_sec"].as_f64().unwrap() > 0.0);
    }
    assert!(report["phases"][0]["flush"]["count"].as_u64().unwrap() >= 250);
    assert!(report["phases"][1]["entries_read"].as_u64().unwrap() >= 4000);
    assert!(report["phases"][2]["purges"].as_u64().unwrap() >= 1);
    let v = &report["verification"];
    assert_eq!(v["ok"], true, "verification: {v}");
    assert!(v["entries_checked"].as_u64().unwrap() > 3000);
    assert!(v["error"].is_null());
    // 12k+ entries of ~256 B under a 1 MiB budget: the cold tier must have been used and read.
    assert!(
        report["final_stats"]["cold_blocks"].as_u64().unwrap() > 0,
        "{}",
        report["final_stats"]
    );
    assert!(
        report["tiers"]["cold_reads"].as_u64().unwrap() > 0,
        "{}",
        report["tiers"]
    );
    assert!(report["memory"]["peak_rss_bytes"].as_u64().unwrap() > 0);
    assert_eq!(report["memory"]["budget_bytes"], 1048576);
    assert!(report["disk"]["dir_apparent_bytes"].as_u64().unwrap() > 0);
    assert!(dir.is_dir(), "--dir is kept");
}

#[test]
fn single_workloads_random_payloads_table_and_plot() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config(tmp.path());
    let svg = tmp.path().join("run.svg");
    let svg_s = svg.display().to_string();
    for workload in ["leader-append", "follower-catchup", "long-retention"] {
        let out = tierlog(&[
            "bench",
            "--workload",
            workload,
            "--entries",
            "2000",
            "--payload",
            "random",
            "--entry-size",
            "100",
            "--config",
            &config,
            "--plot",
            &svg_s,
        ]);
        assert!(out.status.success(), "{workload}: {}", stderr(&out));
        let table = String::from_utf8(out.stdout).unwrap();
        assert!(table.contains(workload), "{table}");
        assert!(
            table.contains("verification") && table.contains(": OK"),
            "{table}"
        );
        let plot = std::fs::read_to_string(&svg).unwrap();
        assert!(
            plot.starts_with("<svg") && plot.contains("resident memory"),
            "not an SVG plot"
        );
    }
}

#[test]
fn payload_file_is_replayed() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("payloads.txt");
    std::fs::write(&file, "SET a 1\nSET b 2\n\nDEL a\n").unwrap();
    let out = tierlog(&[
        "bench",
        "--workload",
        "leader-append",
        "--entries",
        "500",
        "--payload",
        file.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verification"]["ok"], true);
    // three lines of 7, 7 and 5 bytes replayed in turn
    let bytes = report["phases"][0]["bytes_written"].as_u64().unwrap();
    assert!((500 * 5..=500 * 7).contains(&bytes), "{bytes}");
}

#[test]
fn bench_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("existing"), b"data").unwrap();
    let dir = tmp.path().display().to_string();
    let out = tierlog(&["bench", "--entries", "10", "--dir", &dir]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    assert_eq!(std::fs::read(tmp.path().join("existing")).unwrap(), b"data");

    let out = tierlog(&["bench", "--entries", "10", "--payload", "/no/such/payload/file"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot read payload file"),
        "{}",
        stderr(&out)
    );

    let out = tierlog(&["bench", "--entries", "10", "--config", "/no/such/config.toml"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/no/such/config.toml"), "{}", stderr(&out));

    let out = tierlog(&["bench", "--batch", "0"]);
    assert!(!out.status.success());

    // many-groups has no timeline to plot, and needs a group and a writer.
    let out = tierlog(&["bench", "--workload", "many-groups", "--plot", "x.svg"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--plot"), "{}", stderr(&out));
    for bad in [["--groups", "0"], ["--concurrency", "0"], ["--flush-every", "2"]] {
        let out = tierlog(&["bench", "--workload", "many-groups", bad[0], bad[1]]);
        assert_eq!(out.status.code(), Some(1), "{bad:?}");
        assert!(stderr(&out).contains(bad[0]), "{bad:?}: {}", stderr(&out));
    }
}

/// A `--plot` path that cannot be written is refused before the workload runs: no log directory is
/// created, no report is printed, and nothing is left at the plot path.
#[test]
fn bench_refuses_an_unwritable_plot_path_before_the_workload() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config(tmp.path());
    let missing_parent = tmp.path().join("no/such/dir/run.svg");
    let a_directory = tmp.path().join("a-directory");
    std::fs::create_dir(&a_directory).unwrap();
    for (case, plot) in [("missing parent", &missing_parent), ("a directory", &a_directory)] {
        let dir = tmp.path().join(format!("log-{}", case.replace(' ', "-")));
        let out = tierlog(&[
            "bench",
            "--entries",
            "4000",
            "--json",
            "--config",
            &config,
            "--dir",
            dir.to_str().unwrap(),
            "--plot",
            plot.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1), "{case}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&plot.display().to_string()),
            "{case}: the error names the plot path: {}",
            stderr(&out)
        );
        assert!(
            out.stdout.is_empty(),
            "{case}: no report: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!dir.exists(), "{case}: the workload never started");
    }
    assert!(!missing_parent.exists());
    assert_eq!(std::fs::read_dir(&a_directory).unwrap().count(), 0);
}

/// SIGINT (Ctrl-C) or SIGTERM during `tierlog bench` on its temporary directory removes that directory
/// (it held 162 MiB after an interrupted default run), and the process still ends by the signal.
#[test]
fn interrupted_bench_removes_its_temporary_directory() {
    use std::os::unix::process::ExitStatusExt;
    for (signal, number) in [("INT", 2), ("TERM", 15)] {
        let tmp = tempfile::tempdir().unwrap();
        let config = tiny_config(tmp.path());
        let scratch = tmp.path().join("tmpdir");
        std::fs::create_dir(&scratch).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tierlog"))
            .args(["bench", "--entries", "100000000", "--config", &config])
            .env("TMPDIR", &scratch)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let kill = |child: &mut std::process::Child| {
            let _ = child.kill();
            let _ = child.wait();
        };
        // Wait until the engine writes into the temporary directory.
        let started = std::time::Instant::now();
        let bench_dir = loop {
            let dir = std::fs::read_dir(&scratch)
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.join("wal").is_dir());
            if let Some(dir) = dir {
                break dir;
            }
            if started.elapsed() > Duration::from_secs(60) || child.try_wait().unwrap().is_some() {
                kill(&mut child);
                panic!(
                    "SIG{signal}: the bench never started writing under {}",
                    scratch.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(300)); // let it write, compact and rotate a little
        assert!(
            child.try_wait().unwrap().is_none(),
            "SIG{signal}: the bench ended early"
        );
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(60) {
                kill(&mut child);
                panic!("SIG{signal}: the bench did not stop within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let err = child.stderr.take().map(std::io::read_to_string).unwrap().unwrap();
        assert_eq!(
            status.signal(),
            Some(number),
            "SIG{signal}: {status:?}, stderr: {err}"
        );
        assert!(
            !bench_dir.exists(),
            "SIG{signal}: {} was left behind (stderr: {err})",
            bench_dir.display()
        );
        assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0, "SIG{signal}");
    }
}

#[test]
fn operator_commands_name_a_missing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("absent");
    let m = missing.display().to_string();
    for cmd in [
        vec!["inspect", m.as_str()],
        vec!["verify", m.as_str()],
        vec!["dump", m.as_str(), "--from", "1", "--to", "5"],
        vec!["compact", m.as_str()],
    ] {
        let out = tierlog(&cmd);
        assert!(!out.status.success(), "{cmd:?} succeeded");
        let err = stderr(&out);
        assert!(
            err.contains("no such directory") && err.contains("absent"),
            "{cmd:?}: {err}"
        );
    }
    assert!(!missing.exists(), "a read-only command created the directory");
    let out = tierlog(&["inspect", tmp.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a tierlog directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn every_command_has_help() {
    for cmd in ["bench", "inspect", "verify", "dump", "compact"] {
        let out = tierlog(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd} --help");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: tierlog"));
    }
}

/// Every file under `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            if md.is_dir() {
                stack.push(e.path());
            } else {
                out.insert(
                    e.path(),
                    (std::fs::read(e.path()).unwrap(), md.modified().unwrap()),
                );
            }
        }
    }
    out
}

#[test]
fn operator_commands_read_a_bench_directory_without_changing_it() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config(tmp.path());
    let dir = tmp.path().join("log");
    let d = dir.display().to_string();
    let out = tierlog(&[
        "bench",
        "--workload",
        "long-retention",
        "--entries",
        "6000",
        "--config",
        &config,
        "--dir",
        &d,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = snapshot(&dir);

    let out = tierlog(&["inspect", &d]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    for field in [
        "index range",
        "purge boundary",
        "hard state",
        "cold tier",
        "redb file",
        "write-ahead",
    ] {
        assert!(text.contains(field), "inspect lacks {field}: {text}");
    }
    assert!(
        text.contains("purge boundary   index"),
        "long-retention purges: {text}"
    );

    let out = tierlog(&["verify", &d]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("OK"));
    let out = tierlog(&["inspect", &d, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let i: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(i["last_index"], 6000);
    assert!(i["purge_boundary"]["index"].as_u64().unwrap() > 0);
    let out = tierlog(&["verify", &d, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert!(v["report"]["entries"].as_u64().unwrap() > 0);

    let out = tierlog(&["dump", &d, "--from", "5990", "--to", "7000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 11, "entries 5990..=6000 exist");
    let first: Vec<&str> = lines[0].split('\t').collect();
    assert_eq!(first[0], "5990");
    assert_eq!(
        first[3].len(),
        first[2].parse::<usize>().unwrap(),
        "payload size column"
    );
    assert!(first[3].starts_with("PUT ") || first[3].starts_with("CAS ") || first[3].starts_with("DEL "));

    assert!(
        before == snapshot(&dir),
        "a read-only command changed the directory"
    );

    let out = tierlog(&["compact", &d]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("compacted"));
    let out = tierlog(&["verify", &d]);
    assert!(out.status.success(), "verify after compact: {}", stderr(&out));
}

#[test]
fn verify_names_the_corrupt_file_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.display().to_string();
    let out = tierlog(&[
        "bench",
        "--workload",
        "leader-append",
        "--entries",
        "4000",
        "--dir",
        &d,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let seg = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .expect("a write-ahead segment");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[200_000] ^= 0xFF; // inside the ~1 MB of records, far from the tail
    std::fs::write(&seg, bytes).unwrap();
    let out = tierlog(&["verify", &d]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("CORRUPT") && report.contains(seg.file_name().unwrap().to_str().unwrap()),
        "{report}"
    );
    assert!(report.contains("offset"), "{report}");
}

/// Regression test for an engine bug the bench found: after a clean `close()`, stale bytes of a
/// recycled write-ahead segment after the last record were read back as a torn record (a WARN in
/// the default mode, a failed reopen with "record length N runs past the segment" in
/// `absolute_consistency`), although nothing was ever torn.
#[test]
fn clean_close_reopens_in_absolute_consistency_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("abs.toml");
    std::fs::write(
        &config,
        "segment_bytes = 1048576\nrecovery_mode = \"absolute_consistency\"\nmemory_budget_bytes = 8388608\n",
    )
    .unwrap();
    let out = tierlog(&[
        "bench",
        "--workload",
        "leader-append",
        "--entries",
        "20000",
        "--json",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "reopen after a clean close failed: {}",
        stderr(&out)
    );
}

#[macro_use]
#[path = "../../tests/support/mod.rs"]
mod common;

/// `common::offline_store` (1..=3000, about 2000 of them cold, the rest in several write-ahead
/// segments; hard state and application metadata in both slots) in `root/pristine`.
fn offline_store(root: &Path) -> std::path::PathBuf {
    let dir = root.join("pristine");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(common::offline_store(&dir, 0xC11));
    dir
}

fn copy_of(root: &Path, pristine: &Path, name: &str) -> (std::path::PathBuf, String) {
    let d = root.join(name);
    common::copy_dir(pristine, &d);
    let s = d.display().to_string();
    (d, s)
}

/// Runs `args`, checks the exit code and that stdout is one JSON document; returns it.
fn json_of(args: &[&str], code: i32) -> serde_json::Value {
    let out = tierlog(args);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: stdout is not JSON ({e}): {:?}; stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        )
    })
}

/// The documented exit codes of `verify` (0 clean, 2 damage found, 1 could not check), each with a
/// well-formed `--json` report: also for damage that surfaces while opening (a truncated redb file,
/// a hard-state file with no valid slot) and for a directory that cannot be checked at all.
#[test]
fn verify_json_is_well_formed_with_its_exit_code_for_every_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let pristine = offline_store(root);
    let p = pristine.display().to_string();

    let v = json_of(&["verify", &p, "--json"], 0);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["report"]["entries"], 3000, "{v}");

    let (d, s) = copy_of(root, &pristine, "truncated-cold");
    let cold = d.join("cold.redb");
    let len = std::fs::metadata(&cold).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&cold).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let v = json_of(&["verify", &s, "--json"], 2);
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["corruption"].as_str().unwrap().contains("cold.redb"), "{v}");
    assert_eq!(v["path"].as_str().unwrap(), cold.display().to_string(), "{v}");

    let (d, s) = copy_of(root, &pristine, "hardstate");
    std::fs::write(d.join("hardstate"), [0x5A; 128]).unwrap();
    let v = json_of(&["verify", &s, "--json"], 2);
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["corruption"].as_str().unwrap().contains("hardstate"), "{v}");

    let (d, s) = copy_of(root, &pristine, "block");
    let first = common::damage_block(&d, 1000);
    let v = json_of(&["verify", &s, "--json"], 2);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["log_index"], first, "{v}");
    assert!(v["byte_offset"].is_null(), "{v}");

    let other = root.join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("x"), "y").unwrap();
    let v = json_of(&["verify", other.to_str().unwrap(), "--json"], 1);
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("not a tierlog directory"),
        "{v}"
    );

    let missing = root.join("absent").display().to_string();
    let v = json_of(&["verify", &missing, "--json"], 1);
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["error"].as_str().unwrap().contains("no such directory"), "{v}");
}

/// A usage error must not exit with 2, which is `verify`'s "damage found" (clap's default is 2).
#[test]
fn usage_errors_exit_with_1_not_the_damage_code() {
    for args in [
        &["verify"][..],
        &["verify", "/tmp", "--no-such-flag"],
        &["dump", "/tmp", "--recovery-mode", "bogus"],
    ] {
        let out = tierlog(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).starts_with("error: "), "{args:?}: {}", stderr(&out));
    }
}

/// The index column of `dump` output.
fn dumped_indexes(out: &Output) -> Vec<u64> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').next().unwrap().parse().unwrap())
        .collect()
}

/// An operator salvages a damaged store: the default mode refuses, `--recovery-mode
/// tolerate-any-corruption` prints the good part, names what it skipped on stderr and exits 2.
#[test]
fn dump_and_inspect_salvage_a_damaged_store() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let pristine = offline_store(root);
    const SALVAGE: [&str; 2] = ["--recovery-mode", "tolerate-any-corruption"];

    // A damaged cold block: every other entry is still readable.
    let (d, s) = copy_of(root, &pristine, "block");
    let first = common::damage_block(&d, 1000);
    let out = tierlog(&["dump", &s]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("log index {first}")),
        "{}",
        stderr(&out)
    );
    let out = tierlog(&[&["dump", &s][..], &SALVAGE].concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let got = dumped_indexes(&out);
    let missing: Vec<u64> = (1..=3000).filter(|i| !got.contains(i)).collect();
    assert!(got.windows(2).all(|w| w[0] < w[1]), "dump is in index order");
    assert_eq!(missing.first(), Some(&first), "{}", stderr(&out));
    let last = *missing.last().unwrap();
    assert_eq!(
        missing.len() as u64,
        last - first + 1,
        "one block's range is missing"
    );
    assert!(last < 2000, "only that block is skipped: {missing:?}");
    assert!(
        stderr(&out).contains(&format!("{first}..={last}")),
        "the skipped range is named: {}",
        stderr(&out)
    );

    // A damaged record in an older write-ahead segment: the log up to it is readable.
    let (d, s) = copy_of(root, &pristine, "wal");
    let out = tierlog(&["inspect", &s, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let i: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let seg = i["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["records"].as_u64().unwrap() > 0)
        .unwrap()
        .clone();
    assert!(i["segments"].as_array().unwrap().len() > 1, "{i}");
    let path = seg["path"].as_str().unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    let off = seg["used_bytes"].as_u64().unwrap() as usize / 2;
    bytes[off] ^= 0x10;
    std::fs::write(path, &bytes).unwrap();
    let _ = d;
    let out = tierlog(&["inspect", &s]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("byte offset"), "{}", stderr(&out));
    let out = tierlog(&[&["inspect", &s, "--json"][..], &SALVAGE].concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let i: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (lo, hi) = (
        i["index_range"][0].as_u64().unwrap(),
        i["index_range"][1].as_u64().unwrap(),
    );
    assert_eq!(lo, 1, "{i}");
    let cold_hi = i["cold_high_water"].as_u64().unwrap();
    assert!(
        cold_hi > 1000 && (cold_hi..3000).contains(&hi),
        "cut inside the write-ahead part: {i}"
    );
    assert!(i["damage"][0].as_str().unwrap().contains(path), "{i}");
    let out = tierlog(&[&["dump", &s][..], &SALVAGE].concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(dumped_indexes(&out), (1..=hi).collect::<Vec<_>>());
    assert!(stderr(&out).contains(path), "{}", stderr(&out));

    // A hard-state file with no valid slot: inspect refuses, and in the salvage mode says so and
    // shows the rest.
    let (d, s) = copy_of(root, &pristine, "hardstate");
    std::fs::write(d.join("hardstate"), [0x5A; 128]).unwrap();
    let out = tierlog(&["inspect", &s]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = tierlog(&[&["inspect", &s][..], &SALVAGE].concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("hard state       damaged"), "{text}");
    assert!(text.contains("index range      1..=3000"), "{text}");
}

/// A port nobody listens on right now (the OS picks it; the listener is closed before bench binds it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One plain HTTP/1.0 GET; returns the body.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("the metrics endpoint accepts connections");
    s.set_read_timeout(Some(WATCHDOG)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.") && head.contains(" 200 "), "{head}");
    body.to_string()
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
fn sample(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{exposition}"))
}

/// `bench --metrics-addr` serves the engine's metrics while it runs: scraped once (while the bench
/// lingers after its report, so the figures are final), the append and flush counters equal what
/// the bench's own report counted, and the other families are there with plausible values.
#[test]
fn bench_serves_metrics_for_prometheus() {
    use std::io::{BufRead, BufReader, Read};
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config(tmp.path());
    let dir = tmp.path().join("log").display().to_string();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_tierlog"))
        .args([
            "bench",
            "--workload",
            "leader-append",
            "--entries",
            "4000",
            "--batch",
            "16",
        ])
        .args([
            "--json",
            "--config",
            &config,
            "--dir",
            &dir,
            "--metrics-addr",
            &addr,
            "--metrics-linger",
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tierlog binary runs");
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(WATCHDOG).is_err() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    });
    // stdout is read only after the scrape: the JSON report is far below a pipe's capacity.
    let mut stderr_lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        match stderr_lines.next() {
            Some(Ok(line)) if line.starts_with("metrics: serving at") => break,
            Some(Ok(line)) => seen.push(line),
            _ => panic!(
                "bench ended before serving its final metrics:\n{}",
                seen.join("\n")
            ),
        }
    }
    let body = http_get(&addr, "/metrics");
    drop(child.stdin.take()); // lets bench exit
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let status = child.wait().unwrap();
    let _ = done.send(());
    watchdog.join().unwrap();
    assert!(status.success(), "bench failed: {status}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    let phase = &report["phases"][0];

    assert!(
        body.contains("# HELP tierlog_flush_seconds "),
        "descriptions missing:\n{body}"
    );
    assert_eq!(
        sample(&body, "tierlog_append_entries_total"),
        phase["entries_written"].as_u64().unwrap() as f64
    );
    assert_eq!(
        sample(&body, "tierlog_append_bytes_total"),
        phase["bytes_written"].as_u64().unwrap() as f64
    );
    let flushes = phase["flush"]["count"].as_u64().unwrap() as f64;
    assert!(flushes > 0.0);
    assert_eq!(sample(&body, "tierlog_flushes_total"), flushes);
    assert_eq!(sample(&body, "tierlog_flush_seconds_count"), flushes);
    assert!(sample(&body, "tierlog_flush_seconds_sum") > 0.0);
    // The tiny configuration moves most of the 4000 entries (~1 MB) to the cold tier.
    let rounds = sample(&body, "tierlog_compaction_rounds_total");
    assert!(rounds >= 1.0, "{body}");
    assert_eq!(sample(&body, "tierlog_compaction_round_seconds_count"), rounds);
    assert!(sample(&body, "tierlog_compaction_entries_total") >= 1.0);
    assert!(sample(&body, "tierlog_cold_bytes") > 0.0);
    assert!(sample(&body, "tierlog_compaction_lag_entries") <= 4000.0);
    assert_eq!(sample(&body, "tierlog_memory_budget_bytes"), 1048576.0);
    assert!(body.contains("tierlog_disk_bytes{file=\"wal\"}"), "{body}");
    assert!(body.contains("tierlog_disk_bytes{file=\"redb\"}"), "{body}");
    assert_eq!(
        sample(&body, "tierlog_open_seconds_count"),
        2.0,
        "the run's open and the reopen"
    );
}

#[test]
fn many_groups_bench_reports_consistent_json() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config(tmp.path());
    let dir = tmp.path().join("log").display().to_string();
    // 8 groups x 16 batches of 64 entries (~2 MB) under the tiny 1 MiB budget: the lagging
    // follower's old ranges reach the cold tier and every group purges.
    let out = tierlog(&[
        "bench",
        "--workload",
        "many-groups",
        "--groups",
        "8",
        "--entries",
        "8192",
        "--json",
        "--config",
        &config,
        "--dir",
        &dir,
    ]);
    assert!(out.status.success(), "bench failed: {}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let u = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"));
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    assert_eq!(r["workload"], "many-groups");
    assert_eq!(u(&r["groups"]), 8);
    assert_eq!(u(&r["concurrency"]), 8, "no more writers than groups");
    assert_eq!(u(&r["batches_per_group"]), 16);
    assert_eq!(u(&r["entries_written"]), 8 * 16 * 64);
    assert!(
        u(&r["bytes_written"]) > 8 * 16 * 64 * 100,
        "kv payloads average ~256 B"
    );
    assert!(f(&r["entries_per_sec"]) > 0.0);
    assert!(f(&r["seconds"]) > 0.0);
    // One durable batch = one persist_entries and one flush, 16 per group.
    assert_eq!(u(&r["append"]["count"]), 8 * 16);
    assert_eq!(u(&r["flush"]["count"]), 8 * 16);
    // The write phase's fdatasyncs (group commits, and the zero-filled steps and sealed segments
    // of the write-ahead log): some, and no more than the engine counted since it opened.
    let syncs = u(&r["wal_syncs"]);
    assert!(syncs >= 1);
    assert!(syncs <= u(&r["final_stats"]["wal_syncs"]));
    assert!((f(&r["wal_syncs_per_sec"]) - syncs as f64 / f(&r["seconds"])).abs() < 1e-6);
    // Group 1 is the lagging one; every entry it read was served by one tier or the other.
    let lag = &r["lag_reads"];
    assert_eq!(u(&lag["groups"]), 1);
    assert!(u(&lag["entries"]) > 0);
    assert_eq!(u(&lag["hot_reads"]) + u(&lag["cold_reads"]), u(&lag["entries"]));
    assert!(u(&r["purges"]) >= 8, "every group purges at least once");
    let retained = u(&r["retained_logical_bytes"]);
    assert!(
        retained > 0 && retained < u(&r["bytes_written"]),
        "purges drop a prefix"
    );
    let allocated = u(&r["disk"]["dir_allocated_bytes"]);
    assert!(allocated > 0);
    assert!((f(&r["disk_per_retained_byte"]) - allocated as f64 / retained as f64).abs() < 1e-9);
    assert_eq!(u(&r["memory"]["budget_bytes"]), 1048576);
    assert!(u(&r["memory"]["peak_rss_bytes"]) > 0);
    let v = &r["verification"];
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["error"].is_null());
    assert_eq!(u(&v["groups_checked"]), 8);
    let checked = u(&v["entries_checked"]);
    assert!(checked > 0 && checked < 8 * 16 * 64, "{checked} entries checked");
    assert!(f(&v["reopen_seconds"]) > 0.0);
}
