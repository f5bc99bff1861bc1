//! The background checkpoint thread (design.md §11.6): checkpoints off the commit path when
//! commits ask for one (the journal half full, dirty bytes past the bound) and every
//! `checkpoint_interval` while journal records are pending; between checkpoints it flushes
//! `Eventual` records once `eventual_interval` has passed. It holds the store weakly and is
//! stopped and joined by the last `Db`'s close, before the close's own checkpoint.

use std::time::{Duration, Instant};

use crate::sync::{self, Arc, Condvar, Mutex, Weak};
use crate::txn::Shared;

/// The thread's controls, in `Shared`.
pub(crate) struct Checkpointer {
    ctl: Mutex<Ctl>,
    cv: Condvar,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct Ctl {
    running: bool,
    /// A commit asked for a checkpoint.
    wake: bool,
    stop: bool,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer").field("running", &sync::lock(&self.ctl).running).finish()
    }
}

impl Checkpointer {
    /// Controls with no thread yet (`start` spawns it).
    pub(crate) fn idle() -> Checkpointer {
        Checkpointer {
            ctl: Mutex::new(Ctl::default()),
            cv: Condvar::new(),
            thread: Mutex::new(None),
        }
    }

    /// Asks the thread for a checkpoint now; `false` if there is no thread.
    pub(crate) fn wake(&self) -> bool {
        let mut ctl = sync::lock(&self.ctl);
        if !ctl.running || ctl.stop {
            return false;
        }
        ctl.wake = true;
        drop(ctl);
        self.cv.notify_all();
        true
    }

    /// Spawns the thread for `shared`, checkpointing every `interval` while records wait.
    pub(crate) fn start(shared: &Arc<Shared>, interval: Duration) {
        let weak = sync::downgrade(shared);
        sync::lock(&shared.checkpointer.ctl).running = true;
        let spawned = std::thread::Builder::new()
            .name("arbor-checkpoint".into())
            .spawn(move || run(&weak, interval));
        match spawned {
            Ok(handle) => *sync::lock(&shared.checkpointer.thread) = Some(handle),
            Err(e) => {
                // Checkpoints then run in committing threads, as without an interval.
                log::warn!("arbor: no background checkpoint thread ({e}); commits checkpoint");
                sync::lock(&shared.checkpointer.ctl).running = false;
            }
        }
    }

    /// Stops the thread and waits for it (a checkpoint it is running completes first).
    pub(crate) fn stop(&self) {
        sync::lock(&self.ctl).stop = true;
        self.cv.notify_all();
        let handle = sync::lock(&self.thread).take();
        if let Some(handle) = handle {
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }

    /// Waits up to `tick` for a wake-up; returns (asked for a checkpoint, stop).
    fn wait(&self, tick: Duration) -> (bool, bool) {
        let mut ctl = sync::lock(&self.ctl);
        if !ctl.wake && !ctl.stop {
            ctl = match self.cv.wait_timeout(ctl, tick) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        (std::mem::take(&mut ctl.wake), ctl.stop)
    }
}

fn run(weak: &Weak<Shared>, interval: Duration) {
    let mut last_checkpoint = Instant::now();
    loop {
        let Some(shared) = weak.upgrade() else { return };
        let tick = interval.min(shared.opts.eventual_interval).max(Duration::from_millis(1));
        let checkpointer = &shared.checkpointer;
        // Not holding the store while asleep would let it close under us: the close joins
        // this thread after setting `stop`, which ends the wait at once.
        let (asked, stop) = checkpointer.wait(tick);
        if stop {
            return;
        }
        let j = &shared.journal;
        let due = asked
            || j.wants_checkpoint()
            || (last_checkpoint.elapsed() >= interval && j.has_records_since_checkpoint());
        if due {
            // Errors make the handle fail-stop; commits report them.
            let _ = shared.checkpoint();
            last_checkpoint = Instant::now();
        } else if let Some(seq) = j.eventual_due(shared.opts.eventual_interval) {
            let _ = shared.journal_durable(seq, false);
        }
    }
}
