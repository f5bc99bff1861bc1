//! One seed: a sequence of *lives* (a store created on a fresh simulated device), each a
//! sequence of sessions (an open handle) ended by a simulated power loss and checked by a
//! recovery. A life ends when its device was damaged behind the engine's back (bit rot,
//! lost or misdirected writes): the recovery after the damage is judged with the damage
//! in mind, then the seed goes on with a new store.

use std::panic::{self, AssertUnwindSafe};

use arbor::io::{FaultCounts, SimDevice, SplitMix64};
use arbor::Db;

use crate::config::{Config, Flags};
use crate::ev;
use crate::model::{History, State};
use crate::session::{Session, SessionEnd};
use crate::trace::Trace;

/// Counts one seed adds to the run's summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub steps: u64,
    /// Simulated power losses followed by a recovery.
    pub crashes: u64,
    /// Calls into the public API.
    pub ops: u64,
    pub commits: u64,
    pub lives: u64,
    /// Recoveries that lost acknowledged commits through the known silent fallback.
    pub known: u64,
    /// Recoveries that lost acknowledged commits because the device lost every copy of
    /// the newest superblock (undetectable on one device).
    pub lost_write: u64,
    /// `Error::Corrupt` (or check findings) that injected damage explained.
    pub corrupt_detected: u64,
    pub no_space: u64,
    pub expired: u64,
    pub io_errors: u64,
}

impl Counters {
    pub fn add(&mut self, c: &Counters) {
        self.steps += c.steps;
        self.crashes += c.crashes;
        self.ops += c.ops;
        self.commits += c.commits;
        self.lives += c.lives;
        self.known += c.known;
        self.lost_write += c.lost_write;
        self.corrupt_detected += c.corrupt_detected;
        self.no_space += c.no_space;
        self.expired += c.expired;
        self.io_errors += c.io_errors;
    }
}

/// What went wrong, with the step it happened at.
#[derive(Clone, Debug)]
pub struct Failure {
    pub step: u64,
    pub class: &'static str,
    pub detail: String,
}

/// One seed's outcome.
pub struct SeedResult {
    pub seed: u64,
    pub counters: Counters,
    pub failure: Option<Failure>,
    /// One line per KNOWN event: its step and what was lost.
    pub known: Vec<(u64, String)>,
    pub trace_hash: u64,
}

/// Failure reports are cut to this length (a key or tree name may be 1 KiB).
const DETAIL_CHARS_MAX: usize = 300;

/// State shared by every session of a seed.
pub struct Sim {
    pub flags: Flags,
    pub cfg: Config,
    pub rng: SplitMix64,
    pub trace: Trace,
    pub steps_max: u64,
    pub counters: Counters,
    pub history: History,
    pub failure: Option<Failure>,
    pub known: Vec<(u64, String)>,
}

impl Sim {
    pub fn fail(&mut self, class: &'static str, mut detail: String) {
        if detail.len() > DETAIL_CHARS_MAX {
            let cut = (0..=DETAIL_CHARS_MAX).rev().find(|&i| detail.is_char_boundary(i));
            detail.truncate(cut.unwrap_or(0));
            detail.push('…');
        }
        ev!(self.trace, "FAIL {class}: {detail}");
        if self.failure.is_none() {
            self.failure = Some(Failure { step: self.trace.step, class, detail });
        }
    }
}

/// Runs one seed for `steps` steps.
pub fn run_seed(seed: u64, steps: u64, flags: Flags) -> SeedResult {
    let mut rng = SplitMix64(seed);
    let cfg = Config::draw(&mut rng, flags);
    let mut sim = Sim {
        flags,
        cfg,
        rng,
        trace: Trace::new(flags.trace),
        steps_max: steps,
        counters: Counters::default(),
        history: History::new(State::default()),
        failure: None,
        known: Vec::new(),
    };
    ev!(sim.trace, "config {:?}", sim.cfg);
    if flags.trace {
        println!("config: {:#?}", sim.cfg);
    }
    while sim.trace.step < sim.steps_max && sim.failure.is_none() {
        run_life(&mut sim);
    }
    sim.counters.steps = sim.trace.step;
    SeedResult {
        seed,
        counters: sim.counters,
        failure: sim.failure,
        known: sim.known,
        trace_hash: sim.trace.hash(),
    }
}

/// One store from creation until its device is damaged, the steps run out or a failure.
fn run_life(sim: &mut Sim) {
    sim.counters.lives += 1;
    let dev = SimDevice::new(sim.cfg.device_bytes, sim.cfg.sector_bytes, sim.rng.next_u64());
    let db = match guarded(sim, |s| Db::create_on(Box::new(dev.clone()), sim_opts(s))) {
        Some(Ok(db)) => db,
        Some(Err(e)) => return sim.fail("create", format!("create failed: {e}")),
        None => return,
    };
    ev!(sim.trace, "life {} created", sim.counters.lives);
    if sim.cfg.break_pinning {
        db.testing_disable_pinning();
    }
    sim.history = History::new(State::default());
    let (mut db, mut dev) = (db, dev);
    loop {
        let end = Session::new(sim, &db, &dev).run();
        let image = match end {
            SessionEnd::Crash(image) => image,
            SessionEnd::Close => {
                let image = close_cleanly(sim, db, &dev);
                match crate::recovery::recover(sim, image) {
                    Some((next_db, next_dev)) => (db, dev) = (next_db, next_dev),
                    None => return,
                }
                continue;
            }
            SessionEnd::Done => return drop_db(sim, db),
            SessionEnd::Failed => return drop_db(sim, db),
            SessionEnd::Panicked => {
                // The handle may be inconsistent after a panic inside the engine: never
                // touch it again (dropping it would flush).
                std::mem::forget(db);
                return;
            }
        };
        drop_db(sim, db);
        match crate::recovery::recover(sim, image) {
            Some((next_db, next_dev)) => (db, dev) = (next_db, next_dev),
            None => return,
        }
    }
}

/// Drops the handle and returns the device image to reopen. A clean close makes every
/// commit durable, so when the device saw no fault at all in this session (none that could
/// have made the handle fail-stop or its closing flush fail) and no power cut came during
/// the close, every commit counts as acknowledged.
fn close_cleanly(sim: &mut Sim, db: Db, dev: &SimDevice) -> SimDevice {
    let untouched = dev.fault_counts() == FaultCounts::default();
    drop_db(sim, db);
    if let Some(cut) = dev.take_power_cut() {
        ev!(sim.trace, "power cut during the close");
        return cut;
    }
    if untouched && dev.fault_counts() == FaultCounts::default() && dev.damage().is_empty() {
        sim.history.ack_all();
    }
    dev.crash()
}

pub fn sim_opts(sim: &Sim) -> arbor::Options {
    sim.cfg.opts.clone()
}

/// Drops a handle whose device was already crashed (its closing flush goes to the old
/// device), under `catch_unwind` like every engine call.
fn drop_db(sim: &mut Sim, db: Db) {
    let _ = guarded(sim, move |_| drop(db));
}

/// Runs `f` and turns a panic into a failure of the seed (`None`).
pub fn guarded<T>(sim: &mut Sim, f: impl FnOnce(&mut Sim) -> T) -> Option<T> {
    match panic::catch_unwind(AssertUnwindSafe(|| f(sim))) {
        Ok(v) => Some(v),
        Err(payload) => {
            let msg = crate::panic_message(payload);
            sim.fail("panic", msg);
            None
        }
    }
}
