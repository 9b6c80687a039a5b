//! The `tierlog` command: `bench` runs a realistic Raft log workload; `inspect`, `verify`, `dump`
//! and `compact` are read-only operator tools for a log directory. `RUST_LOG` controls log output.
#![forbid(unsafe_code)]

mod cli;

/// The library leaves the allocator to the application. This one uses mimalloc: under glibc's
/// malloc the bench's threads (writer, follower reader, compactor) each kept freed block and batch
/// buffers in their own arena, which showed as ~100 MiB of RSS above the engine's budget.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc's options this binary sets, unless the user set them (see `tune_the_allocator`).
const ALLOCATOR_OPTIONS: [(&str, &str); 2] = [
    // mimalloc 3 keeps freed memory committed for 1 s before giving it back. The engine decodes
    // cold blocks at a high rate (every cache miss allocates a block-sized buffer that the cache
    // frees later), so a second's worth of freed buffers stayed resident: 20-35 MiB of the default
    // bench's peak (docs/performance.md, "Where the RSS goes"). 10 ms (mimalloc 2's default) kept
    // throughput and reopen time; 0 made the bench's reopen 15-30x slower.
    ("MIMALLOC_PURGE_DELAY", "10"),
    // Committing each new arena whole up front showed as resident memory the engine never used:
    // `bench --workload many-groups --groups 1000` peaked at 1.15-1.19x its budget with it and at
    // 1.04-1.05x without (and wrote faster), the default bench at 255.0 against 234.5 MiB.
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
];

/// mimalloc reads its options from the environment when it starts, before `main`, and setting
/// them from inside needs `unsafe`; so the process starts itself once more with them set, unless
/// the user set the first one (then the user's environment is taken as it is). If that fails it
/// just goes on.
fn tune_the_allocator() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(ALLOCATOR_OPTIONS[0].0).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    for (var, value) in ALLOCATOR_OPTIONS {
        if std::env::var_os(var).is_none() {
            cmd.env(var, value);
        }
    }
    // Only returns on failure.
    let _ = cmd.args(args).exec();
}

fn main() {
    tune_the_allocator();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    // A usage error exits with 1, not clap's 2: 2 is `verify`'s "damage found" (see `tierlog --help`).
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let code = match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    };
    std::process::exit(code);
}
