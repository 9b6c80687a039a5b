//! `tierlog bench`: open a directory, run the workload's phases, reopen and verify, report.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tierlog::{Config, StorageEngine, TieredEngine};

use super::metrics::{Sampler, Shared};
use super::model::Model;
use super::payload::{PayloadGen, Rng};
use super::report::{Disk, Memory, Report, Tiers, table};
use super::runner::{PhaseReport, Run, Shape, phase_bar};
use super::verify::verify;
use super::workload::{Workload, run_phase};
use super::{BenchArgs, CliResult, groups, plot, sys};

/// Entry point of `tierlog bench`; returns the exit code (1 when verification failed).
pub fn main(args: BenchArgs) -> CliResult<i32> {
    if args.batch == 0 || args.flush_every == 0 || args.entry_size == 0 || args.entries == Some(0) {
        return Err("--batch, --flush-every, --entry-size and --entries must be at least 1".into());
    }
    let mut config = match &args.config {
        Some(path) => Config::from_toml_file(path)?,
        None => Config::default(),
    };
    if let Some(budget) = args.memory_budget {
        config.memory_budget_bytes = budget;
        config.validate()?;
    }
    let many_groups = args.workload == Workload::ManyGroups;
    if many_groups {
        if args.plot.is_some() {
            return Err("--plot draws one log's phases; many-groups has none (use --json)".into());
        }
        if args.groups == 0 || args.concurrency == 0 {
            return Err("--groups and --concurrency must be at least 1".into());
        }
        if args.flush_every != 1 {
            return Err("many-groups flushes after every batch: --flush-every must be 1".into());
        }
    }
    if let Some(path) = &args.plot {
        check_writable(path)?;
    }
    let payloads = PayloadGen::new(args.payload.clone(), args.seed, args.entry_size)?;
    if let Some(addr) = args.metrics_addr {
        serve_metrics(addr)?;
    }
    let (dir, temp) = match &args.dir {
        Some(d) => (prepare_dir(d)?, None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("tierlog-bench-")
                .tempdir()
                .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let on_signal = match &temp {
        Some(t) => Some(RemoveOnSignal::install(t.path())?),
        None => None, // the user's --dir is kept whatever happens
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    if many_groups {
        let report = groups::run(&args, config, &dir, payloads, temp.is_none(), &runtime)?;
        drop(on_signal);
        drop(temp);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", groups::table(&report));
        }
        linger(&args);
        return Ok(if report.verification.ok { 0 } else { 1 });
    }
    let report = runtime.block_on(run_bench(&args, config, &dir, payloads, temp.is_none()))?;
    drop(on_signal);
    drop(temp); // removes the temporary directory
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    if let Some(path) = &args.plot {
        plot::draw(path, &report.timeline, report.config.memory_budget_bytes)?;
        eprintln!("plot written to {}", path.display());
    }
    linger(&args);
    Ok(if report.verification.ok { 0 } else { 1 })
}

/// With `--metrics-linger`, keeps serving the metrics until standard input is closed.
fn linger(args: &BenchArgs) {
    if let (true, Some(addr)) = (args.metrics_linger, args.metrics_addr) {
        eprintln!("metrics: serving at http://{addr}/metrics until standard input is closed");
        // Any end of input, an error included, ends the wait.
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    }
}

/// Installs the Prometheus exporter as the process's metrics recorder, with its HTTP listener on
/// `addr` (on a thread of its own, outside the bench's runtime). Latencies get buckets, so
/// Prometheus can aggregate them (the exporter's default would be a summary).
fn serve_metrics(addr: std::net::SocketAddr) -> CliResult<()> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    // 10 us to ~10 s, x2 per bucket (an fdatasync takes ~0.1-10 ms, a compaction round up to seconds).
    let buckets: Vec<f64> = (0..21).map(|i| 10e-6 * f64::powi(2.0, i)).collect();
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
        .map_err(|e| format!("--metrics-addr: {e}"))?
        .install()
        .map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
    Ok(())
}

/// Removes bench's temporary directory when SIGINT (Ctrl-C) or SIGTERM arrives, then ends the
/// process by that signal as it would have ended without the handler. Dropping it uninstalls it.
struct RemoveOnSignal {
    handle: signal_hook::iterator::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RemoveOnSignal {
    fn install(dir: &Path) -> CliResult<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
            .map_err(|e| format!("cannot install the SIGINT/SIGTERM handler: {e}"))?;
        let handle = signals.handle();
        let dir = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("tierlog-signals".into())
            .spawn(move || {
                // Ends without a signal when the handle is closed (the bench finished).
                if let Some(signal) = signals.forever().next() {
                    eprintln!(
                        "\ninterrupted: removing the temporary directory {}",
                        dir.display()
                    );
                    remove_dir_while_written(&dir);
                    let _ = signal_hook::low_level::emulate_default_handler(signal);
                    std::process::exit(128 + signal); // only if the default action did not end it
                }
            })
            .map_err(|e| format!("cannot start the signal thread: {e}"))?;
        Ok(RemoveOnSignal {
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for RemoveOnSignal {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `remove_dir_all` while the engine's threads still run: one of them may create a file (a new
/// segment, a spare) after the directory was listed, so the directory is not empty when it is
/// finally removed. Tries again a few times; reports what is left.
fn remove_dir_while_written(dir: &Path) {
    let mut last = None;
    for _ in 0..20 {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Some(e) = last {
        eprintln!("could not remove {}: {e}", dir.display());
    }
}

/// Fails now, not after the whole workload, when the `--plot` file could not be written: the path is
/// a directory, its directory is missing, or it is not writable. Leaves the path as it was.
fn check_writable(path: &Path) -> CliResult<()> {
    let refused = |e: &dyn std::fmt::Display| format!("cannot write the plot to {}: {e}", path.display());
    if path.is_dir() {
        return Err(refused(&"it is a directory").into());
    }
    if path.exists() {
        // Opening for writing without truncating checks the permission and changes nothing.
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| refused(&e))?;
    } else {
        // Create it and remove it again: what the plot will do, and the OS names the problem.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| refused(&e))?;
        std::fs::remove_file(path).map_err(|e| refused(&e))?;
    }
    Ok(())
}

/// Accepts an absent or empty directory only, so a bench never mixes with existing data.
fn prepare_dir(dir: &Path) -> CliResult<PathBuf> {
    if dir.exists() {
        if !dir.is_dir() {
            return Err(format!("{} exists and is not a directory", dir.display()).into());
        }
        let mut it = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        if it.next().is_some() {
            return Err(format!(
                "{} is not empty: bench needs an empty or new directory (it never writes into existing data)",
                dir.display()
            )
            .into());
        }
    } else {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    Ok(dir.to_path_buf())
}

async fn run_bench(
    args: &BenchArgs,
    config: Config,
    dir: &Path,
    payloads: PayloadGen,
    dir_kept: bool,
) -> CliResult<Report> {
    let progress = std::io::stderr().is_terminal();
    let shared = Arc::new(Shared::default());
    let sampler = Sampler::start(shared.clone(), Duration::from_millis(200));
    let engine = TieredEngine::open(dir, config.clone()).await?;
    *shared.engine.lock() = Some(engine.clone());
    let shape = Shape {
        batch: args.batch,
        flush_every: args.flush_every,
        entries: args.entries,
    };
    let mut run = Run {
        log: engine.log_store(),
        engine,
        payloads: Arc::new(payloads),
        model: Model::new(),
        term: 1,
        shared: shared.clone(),
        rng: Rng::new(args.seed ^ 0x5EED),
        shape: shape.clone(),
        progress,
    };
    let mut phases = Vec::new();
    for phase in args.workload.phases() {
        let result = run_phase(&mut run, phase).await;
        phases.push(result?);
    }
    let final_stats = run.engine.stats();
    let peak_rss_workload = sys::peak_rss_bytes();
    let disk = Disk::measure(&final_stats, dir);

    // Close everything, reopen the directory and read every retained entry back.
    *shared.engine.lock() = None;
    let Run {
        engine,
        log,
        model,
        payloads,
        ..
    } = run;
    drop(log);
    engine.close().await?;
    let bar = phase_bar(&shared, progress, "verify", model.len());
    let t = Instant::now();
    let engine = TieredEngine::open(dir, config.clone()).await?;
    let reopen = t.elapsed().as_secs_f64();
    *shared.engine.lock() = Some(engine.clone());
    let verification = verify(&engine, &model, &payloads, &bar, reopen)?;
    bar.finish();
    *shared.engine.lock() = None;
    engine.close().await?;
    let timeline = sampler.finish();

    let mut total = PhaseReport::new("total");
    for p in &phases {
        total.absorb(p);
    }
    let wall: f64 = phases.iter().map(|p| p.seconds).sum();
    total.finish(Duration::from_secs_f64(wall), &Default::default(), &final_stats);
    Ok(Report {
        workload: args.workload,
        dir: dir.display().to_string(),
        dir_kept,
        payload: payloads.label(),
        entry_size: args.entry_size,
        shape,
        seed: args.seed,
        memory: Memory {
            peak_rss_bytes: sys::peak_rss_bytes(),
            peak_rss_workload_bytes: peak_rss_workload,
            max_sampled_rss_bytes: shared.max_rss.load(std::sync::atomic::Ordering::Relaxed),
            budget_bytes: config.memory_budget_bytes,
            peak_rss_to_budget: sys::peak_rss_bytes() as f64 / config.memory_budget_bytes as f64,
            at_sampled_peak: timeline
                .iter()
                .max_by_key(|s| s.rss)
                .map(|s| (s.rss, s.accounted)),
        },
        config,
        phases,
        total,
        tiers: Tiers::from_stats(&final_stats),
        disk,
        verification,
        final_stats,
        timeline,
    })
}
