//! The fault-chain driver that `power_loss` (one log) and `groups` (several groups) share: one
//! directory goes through 2-4 faults (process crash, power cut, I/O errors for a few operations,
//! clean restart), each between random workloads, and every reopen is checked against a history
//! of the states the store went through.
//!
//! What differs between the suites is the history ([`Tracked`]): which random operations run, what
//! a state is, how the store is compared with one, and what a reopen keeps of a state.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::power_loss::{
    Mode, Snapshot, crash, power_cut, read_wal, record_synced_wal, record_synced_wal_from,
};
use crate::support::{Rng, config};
use tierlog::{Error, TieredEngine};

/// One event of a fault chain.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Event {
    /// kill -9: the next process sees the files as the page cache holds them; the disk still holds
    /// only what was synced.
    ProcessCrash,
    /// The machine stops: every segment file reverts to its synced bytes plus some of the rest.
    PowerCut(Mode),
    /// A failpoint returns this OS error for a few operations, then the disk recovers.
    IoErrors(&'static str, i32),
    /// `close()` and open again.
    CleanRestart,
}

pub(crate) fn pick_event(rng: &mut Rng) -> Event {
    const IO: [(&str, i32); 7] = [
        ("wal::append", 28),
        ("wal::segment_create", 28),
        ("wal::sync_dir", 5),
        ("wal::sync", 5),
        ("wal::segment_retire", 5),
        ("wal::spare_create", 28),
        ("cold::commit", 28),
    ];
    match rng.below(10) {
        0..=2 => Event::ProcessCrash,
        3..=5 => Event::PowerCut([Mode::Synced, Mode::InOrder, Mode::AnyPages][rng.below(3) as usize]),
        6..=8 => {
            let (point, code) = IO[rng.below(IO.len() as u64) as usize];
            Event::IoErrors(point, code)
        }
        _ => Event::CleanRestart,
    }
}

/// The history of a directory under test: the states the store went through since the last reopen,
/// one per acknowledged operation, and what a reopen must find.
pub(crate) trait Tracked: Sized {
    /// The history of a store just opened, fresh, as `e`, named `what` in failure messages; it may
    /// set the store up first.
    async fn start(e: &TieredEngine, what: String) -> Self;

    /// Names the directory's story in failure messages; every event of a chain is added to it.
    fn what(&mut self) -> &mut String;

    /// The indexes of the last state a `flush()` (or an open) made durable and of the latest.
    fn span(&self) -> (usize, usize);

    /// The store `e` holds state `k`, or the difference.
    fn matches(&self, e: &TieredEngine, k: usize) -> Result<(), String>;

    /// The store `e` reopened in state `k`: checks what does not depend on the state (and panics
    /// with `what` if it is wrong), then keeps state `k` as the only one, durable.
    fn keep(&mut self, e: &TieredEngine, k: usize);

    /// One random operation on `e`, recorded when the engine acknowledged it.
    async fn random_op(&mut self, e: &TieredEngine, rng: &mut Rng, term: u64) -> tierlog::Result<()>;

    /// Told when a failpoint starts returning errors (`Some`) and when it stops (`None`).
    fn io_errors(&mut self, _point: Option<&str>) {}

    /// Opens `dir` and checks it holds a state at or after the last durable one (exactly the latest
    /// when `exact`); the recovered state is the only one from then on. Returns how many of the
    /// states after the durable one were lost.
    async fn reopen(&mut self, dir: &Path, exact: bool) -> (TieredEngine, usize) {
        let what = self.what().clone();
        let e = TieredEngine::open(dir, config::quiet())
            .await
            .unwrap_or_else(|err| panic!("{what}: open failed: {err}"));
        let (durable, last) = self.span();
        let from = if exact { last } else { durable };
        let k = (from..=last)
            .rev()
            .find(|&k| self.matches(&e, k).is_ok())
            .unwrap_or_else(|| {
                panic!(
                    "{what}: the store matches no state at or after {from} of {last}: {}",
                    self.matches(&e, from).unwrap_err()
                )
            });
        self.keep(&e, k);
        (e, last - k)
    }
}

/// A directory under a chain of faults: its write-ahead "disk" state, its engine and its history.
struct Chain<H> {
    root: PathBuf,
    dir: PathBuf,
    copies: u64,
    snap: Snapshot,
    engine: Option<TieredEngine>,
    h: H,
}

impl<H: Tracked> Chain<H> {
    /// Stops the engine as a crash (`None`) or a power cut would and continues on the copy it left.
    fn leave_dir(&mut self, power: Option<(Mode, &mut Rng)>) {
        let next = self.root.join(format!("gen{}", self.copies + 1));
        self.copies += 1;
        let e = self.engine.take().expect("engine open");
        let on_disk = match power {
            Some((mode, rng)) => {
                power_cut(e, &self.dir, &next, &self.snap, mode, rng);
                read_wal(&next.join("wal"))
            }
            None => crash(e, &self.dir, &next, &self.snap),
        };
        std::fs::remove_dir_all(&self.dir).ok();
        self.dir = next;
        self.snap = record_synced_wal_from(&self.dir, on_disk);
    }

    async fn reopen(&mut self, exact: bool) {
        let (e, _) = self.h.reopen(&self.dir, exact).await;
        self.engine = Some(e);
    }

    /// Random operations; with `faulty`, an operation may fail, and then must have changed nothing
    /// (or what the history followed). `Err` when writes are refused after a failed fdatasync.
    async fn work(&mut self, rng: &mut Rng, term: &mut u64, ops: u64, faulty: bool) -> Result<(), Error> {
        let e = self.engine.as_ref().expect("engine open");
        for _ in 0..ops {
            *term += 1;
            match self.h.random_op(e, rng, *term).await {
                Ok(()) => {}
                Err(err) if faulty => {
                    if let Err(d) = self.h.matches(e, self.h.span().1) {
                        panic!(
                            "{}: a failed operation ({err}) changed the store: {d}",
                            self.h.what()
                        );
                    }
                    if matches!(err, Error::Poisoned { .. }) {
                        return Err(err);
                    }
                }
                Err(err) => panic!(
                    "{}: operation failed with no fault injected: {err}",
                    self.h.what()
                ),
            }
        }
        Ok(())
    }
}

/// Which chains a suite runs.
pub(crate) struct Chains {
    /// Names a chain in failure messages, with its number and seed.
    pub name: &'static str,
    /// Chains `first..first + trials`; chain `k` is the same in every run with the same seed.
    pub first: u64,
    pub trials: u64,
    pub seed: u64,
    /// How many random operations run before each event: from `ops.0` to `ops.1`.
    pub ops: (u64, u64),
}

impl Chains {
    /// Runs the chains, each on a fresh directory with a fresh history `H`, checking every reopen;
    /// `after_work` sees the history after each workload. Returns how many events of each kind ran.
    pub(crate) async fn run<H: Tracked>(&self, mut after_work: impl FnMut(&H)) -> HashMap<String, u64> {
        let root = tempfile::tempdir().unwrap();
        let mut tally: HashMap<String, u64> = HashMap::new();
        for trial in self.first..self.first + self.trials {
            let mut rng = Rng::new(self.seed ^ trial.wrapping_mul(0x9E37));
            let tdir = root.path().join(format!("chain{trial}"));
            let dir = tdir.join("gen0");
            let snap = record_synced_wal(&dir);
            let engine = TieredEngine::open(&dir, config::quiet()).await.unwrap();
            let h = H::start(&engine, format!("{} {trial} (seed {})", self.name, self.seed)).await;
            let mut c = Chain {
                root: tdir.clone(),
                dir,
                copies: 0,
                snap,
                engine: Some(engine),
                h,
            };
            let mut term = 0;
            let events = rng.range(2, 4);
            for _ in 0..events {
                let ops = rng.range(self.ops.0, self.ops.1);
                c.work(&mut rng, &mut term, ops, false).await.unwrap();
                after_work(&c.h);
                let ev = pick_event(&mut rng);
                let what = c.h.what();
                *what = format!("{what} → {ev:?}");
                *tally
                    .entry(format!("{ev:?}").split('(').next().unwrap().to_string())
                    .or_default() += 1;
                match ev {
                    Event::ProcessCrash => {
                        c.leave_dir(None);
                        c.reopen(true).await;
                    }
                    Event::PowerCut(mode) => {
                        c.leave_dir(Some((mode, &mut rng)));
                        c.reopen(false).await;
                    }
                    Event::CleanRestart => {
                        c.engine.take().unwrap().close().await.unwrap();
                        c.reopen(true).await;
                    }
                    Event::IoErrors(point, code) => {
                        fail::cfg(point, &format!("return({code})")).unwrap();
                        c.h.io_errors(Some(point));
                        let ops = rng.range(3, 15);
                        let poisoned = c.work(&mut rng, &mut term, ops, true).await.is_err();
                        c.h.io_errors(None);
                        fail::remove(point);
                        // The disk is back: writes work again without a restart, unless an
                        // fdatasync failed (then the log refuses writes and the application
                        // restarts).
                        let ops = rng.range(3, 10);
                        if poisoned || c.work(&mut rng, &mut term, ops, true).await.is_err() {
                            assert_eq!(
                                point,
                                "wal::sync",
                                "{}: writes refused after the fault",
                                c.h.what()
                            );
                            c.engine.take();
                            c.reopen(true).await;
                        }
                    }
                }
            }
            c.engine.take().unwrap().close().await.unwrap();
            c.reopen(true).await;
            drop(c.engine.take());
            std::fs::remove_dir_all(&tdir).ok();
        }
        tally
    }
}
