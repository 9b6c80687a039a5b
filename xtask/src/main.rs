//! Project tasks, run as `cargo xtask <task>` (the alias is in `.cargo/config.toml`).
//!
//! `cargo xtask test` is the one test command for a fresh machine: it needs nothing but cargo, because
//! the `protoc` that d-engine's build script requires comes from the `protoc-bin-vendored` crate.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  test [ARGS...]   cargo fmt --check, cargo clippy -D warnings, cargo doc -D warnings and cargo
                   test for the whole workspace with all features; ARGS go to `cargo test`
                   (e.g. `--test contract model::`)
  protoc           print the path of the vendored protoc (for `PROTOC=$(cargo xtask protoc) cargo ...`)";

fn main() -> ExitCode {
    let mut args = env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    let result = match task.as_deref() {
        Some("test") => test(&rest),
        Some("protoc") => protoc().map(|p| println!("{}", p.display())),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown or missing task\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("xtask: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn protoc() -> Result<PathBuf, String> {
    protoc_bin_vendored::protoc_bin_path().map_err(|e| format!("no vendored protoc for this platform: {e}"))
}

fn workspace_root() -> PathBuf {
    // xtask lives one level below the workspace root.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn test(extra: &[String]) -> Result<(), String> {
    let protoc = protoc()?;
    let root = workspace_root();
    let mut test_args = vec!["test", "--workspace", "--all-features"];
    test_args.extend(extra.iter().map(String::as_str));
    let steps: [&[&str]; 4] = [
        &["fmt", "--all", "--", "--check"],
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
        // Broken intra-doc links are docs that no longer match the code.
        &["doc", "--no-deps", "--all-features", "-p", "tierlog"],
        &test_args,
    ];
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    for step in steps {
        eprintln!("xtask: cargo {}", step.join(" "));
        let mut cmd = Command::new(&cargo);
        cmd.args(step).current_dir(&root).env("PROTOC", &protoc);
        if step[0] == "doc" {
            cmd.env("RUSTDOCFLAGS", "-D warnings");
        }
        let status = cmd.status().map_err(|e| format!("could not run cargo: {e}"))?;
        if !status.success() {
            return Err(format!("`cargo {}` failed ({status})", step.join(" ")));
        }
    }
    eprintln!("xtask: all checks passed");
    Ok(())
}
