//! Command-line interface of the `tierlog` binary: argument definitions and dispatch.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub mod bench;
pub mod groups;
pub mod inspect;
pub mod metrics;
pub mod model;
pub mod payload;
pub mod plot;
pub mod report;
pub mod runner;
pub mod sys;
pub mod verify;
pub mod workload;

/// Result type of the CLI: any error becomes a one-line message on stderr and a non-zero exit.
pub type CliResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// tierlog: a tiered Raft log store (hot write-ahead ring + zstd/redb cold tier).
#[derive(Parser, Debug)]
#[command(name = "tierlog", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a realistic Raft log workload and report what happened in both tiers.
    Bench(BenchArgs),
    /// Show tiers, index ranges, blocks, compression, purge boundary and hard state of a directory
    /// (exit code 0; 2 when --recovery-mode tolerate-any-corruption skipped damage; 1 on an error).
    Inspect(InspectArgs),
    /// Check every write-ahead record and cold block checksum, that the index ranges are contiguous
    /// and that the metadata files are readable. Exit code 0: clean; 2: damage found (named with its
    /// file and byte offset or log index); 1: the directory could not be checked. With --json the
    /// report is JSON in every case.
    Verify(ReportArgs),
    /// Print entries (index, term, payload size, payload as UTF-8 or hex). Exit code 0; 2 when
    /// --recovery-mode tolerate-any-corruption skipped damage (named on stderr); 1 on an error.
    Dump(DumpArgs),
    /// Compact the redb file of a closed directory, reporting bytes before and after.
    Compact(DirArgs),
}

/// Options of `tierlog bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Workload to run.
    #[arg(long, value_enum, default_value = "mixed")]
    pub workload: workload::Workload,
    /// Directory for the log (must be empty or absent; kept afterwards). Default: a temporary directory,
    /// removed at the end and on Ctrl-C (SIGINT) or SIGTERM.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Engine configuration file (TOML, see config/default.toml). Default: the built-in defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Entries written by each phase (default: 1.5M, 1.5M and 4M for the three phases); for
    /// many-groups, by all groups together (default 2M; each group writes at least 4 batches).
    #[arg(long)]
    pub entries: Option<u64>,
    /// Average payload size in bytes.
    #[arg(long, default_value_t = 256)]
    pub entry_size: usize,
    /// Entries per persist_entries batch.
    #[arg(long, default_value_t = 64)]
    pub batch: u64,
    /// Batches between two flush() calls (1 = group commit after every batch).
    #[arg(long, default_value_t = 1)]
    pub flush_every: u64,
    /// Engine memory budget in bytes (overrides the configuration file).
    #[arg(long)]
    pub memory_budget: Option<u64>,
    /// Payloads: kv (realistic KV commands), random (incompressible), or a file path (one payload per line).
    #[arg(long, default_value = "kv", value_parser = payload::PayloadKind::parse)]
    pub payload: payload::PayloadKind,
    /// Seed of payloads and read positions (same seed, same bytes).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// many-groups: Raft groups created in the engine (ids 1..=G; group 0 stays empty).
    #[arg(long, default_value_t = 100)]
    pub groups: u64,
    /// many-groups: writer tasks (on the bench's two runtime threads), each cycling over its share
    /// of the groups, so up to this many flushes are in flight and share the write-ahead log's
    /// fdatasyncs (at most --groups).
    #[arg(long, default_value_t = 64)]
    pub concurrency: u64,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Draw throughput, RSS and tier sizes over time into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Serve the engine's metrics (docs/metrics.md) for Prometheus at http://HOST:PORT/metrics
    /// while the bench runs.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// After the report, keep serving the metrics until standard input is closed (for tests and
    /// one last scrape).
    #[arg(long, hide = true, requires = "metrics_addr")]
    pub metrics_linger: bool,
}

/// A directory argument.
#[derive(Args, Debug, Clone)]
pub struct DirArgs {
    /// A tierlog directory.
    pub dir: PathBuf,
}

/// A directory argument for a command that can also answer in JSON.
#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// A tierlog directory.
    pub dir: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How `inspect` and `dump` treat damage (the engine's `recovery_mode`).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryModeArg {
    /// Any damage, even a torn write at the tail of the newest segment, is an error.
    #[value(alias = "absolute_consistency")]
    AbsoluteConsistency,
    /// A torn write at the tail of the newest segment is cut off (what a crash leaves); any other
    /// damage is an error. What the engine does by default.
    #[value(alias = "tolerate_torn_tail")]
    TolerateTornTail,
    /// Salvage: read the log up to the first bad write-ahead record, leave out unreadable cold
    /// blocks and metadata files, and name what was skipped.
    #[value(alias = "tolerate_any_corruption")]
    TolerateAnyCorruption,
}

impl From<RecoveryModeArg> for tierlog::RecoveryMode {
    fn from(m: RecoveryModeArg) -> Self {
        match m {
            RecoveryModeArg::AbsoluteConsistency => tierlog::RecoveryMode::AbsoluteConsistency,
            RecoveryModeArg::TolerateTornTail => tierlog::RecoveryMode::TolerateTornTail,
            RecoveryModeArg::TolerateAnyCorruption => tierlog::RecoveryMode::TolerateAnyCorruption,
        }
    }
}

/// Options of `tierlog inspect`.
#[derive(Args, Debug, Clone)]
pub struct InspectArgs {
    /// A tierlog directory.
    pub dir: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// How to treat damage; tolerate-any-corruption shows the good part of a damaged directory.
    #[arg(long, value_enum, default_value = "tolerate-torn-tail")]
    pub recovery_mode: RecoveryModeArg,
}

/// Options of `tierlog dump`.
#[derive(Args, Debug, Clone)]
pub struct DumpArgs {
    /// A tierlog directory.
    pub dir: PathBuf,
    /// How to treat damage; tolerate-any-corruption prints the entries that are still readable.
    #[arg(long, value_enum, default_value = "tolerate-torn-tail")]
    pub recovery_mode: RecoveryModeArg,
    /// First index to print (default: the first entry).
    #[arg(long)]
    pub from: Option<u64>,
    /// Last index to print (default: the last entry).
    #[arg(long)]
    pub to: Option<u64>,
    /// Always print payloads as hex, even when they are valid UTF-8.
    #[arg(long)]
    pub hex: bool,
}

/// Runs a parsed command; returns the process exit code.
pub fn run(cli: Cli) -> CliResult<i32> {
    match cli.command {
        Command::Bench(args) => bench::main(args),
        Command::Inspect(a) => inspect::inspect(&a.dir, a.json, a.recovery_mode.into()),
        Command::Verify(a) => inspect::verify(&a.dir, a.json),
        Command::Dump(a) => inspect::dump(&a),
        Command::Compact(a) => inspect::compact(&a.dir),
    }
}
