//! How writers and the compactor wait for each other. A writer that finds the ring over its budget
//! asks for room and waits; the compactor, woken early, moves everything movable and announces
//! room after every round. If the compactor's last run failed, waiting could last forever, so the
//! writer goes ahead over the budget instead (the failure is logged).

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

#[derive(Default)]
pub(crate) struct Backpressure {
    /// A writer waits for memory: the next run moves the protected tail and partial blocks too.
    urgent: AtomicBool,
    /// Wakes the compactor before its timer.
    wake: Notify,
    /// Announced after every round and every run: writers waiting for memory look again.
    room: Notify,
    /// The compactor's last run failed with this.
    last_error: Mutex<Option<String>>,
}

impl Backpressure {
    /// Wakes the compactor (new data past its trigger, a purge, a reset, shutdown).
    pub(crate) fn wake_compactor(&self) {
        self.wake.notify_one();
    }

    /// Resolves when someone wakes the compactor.
    pub(crate) fn woken(&self) -> Notified<'_> {
        self.wake.notified()
    }

    /// A writer is out of room: the next run is urgent, and starts now.
    pub(crate) fn ask_for_room(&self) {
        self.urgent.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Whether a writer asked for room since the last call (the run that takes it serves it).
    pub(crate) fn take_urgent(&self) -> bool {
        self.urgent.swap(false, Ordering::AcqRel)
    }

    /// Resolves at the next announcement of room; create it before checking for room, so an
    /// announcement in between is not missed.
    pub(crate) fn room_announced(&self) -> Notified<'_> {
        self.room.notified()
    }

    /// After a round (or at shutdown): waiting writers look again.
    pub(crate) fn announce_room(&self) {
        self.room.notify_waiters();
    }

    /// After a run: remembers whether it failed, and announces room.
    pub(crate) fn run_finished(&self, result: &crate::Result<()>) {
        *self.last_error.lock() = result.as_ref().err().map(|e| {
            tracing::error!(error = %e, "compaction run failed");
            e.to_string()
        });
        self.announce_room();
    }

    /// Whether the compactor's last run failed (a writer then does not wait for it).
    pub(crate) fn compactor_failing(&self) -> bool {
        self.last_error.lock().is_some()
    }
}
