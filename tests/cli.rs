//! Runs the `tierlog` binary end to end on tiny workloads.

use std::path::Path;
use std::process::{Command, Output};

fn tierlog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tierlog"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the tierlog binary runs")
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
