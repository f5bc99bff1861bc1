//! One seed: a sequence of *lives* (a store created on a fresh simulated device), each a
//! sequence of sessions (an open handle) ended by a simulated power loss and checked by a
//! recovery. A life ends when its device was damaged behind the engine's back (bit rot,
//! lost or misdirected writes): the recovery after the damage is judged with the damage
//! in mind, then the seed goes on with a new store.

use std::panic::{self, AssertUnwindSafe};

use arbor::check::{Problem, ProblemKind};
use arbor::io::{RandomFaults, SimDevice, SplitMix64};
use arbor::{Db, Error};

use crate::config::{Config, Flags};
use crate::ev;
use crate::faults;
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
        match recover(sim, image) {
            Some((next_db, next_dev)) => (db, dev) = (next_db, next_dev),
            None => return,
        }
    }
}

fn sim_opts(sim: &Sim) -> arbor::Options {
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

/// Reopens a crashed device and judges what it recovered. `None` ends the life: the
/// device was damaged (after the damage was judged), or a failure was recorded.
fn recover(sim: &mut Sim, image: SimDevice) -> Option<(Db, SimDevice)> {
    sim.counters.crashes += 1;
    let damaged = !image.damage().is_empty();
    let read_faults = sim.rng.chance(20);
    if read_faults {
        let faults = RandomFaults { read_eio_ppm: 30_000, ..RandomFaults::default() };
        image.set_random_faults(faults, sim.rng.next_u64());
    }
    let mut opened = guarded(sim, |s| Db::open_on(Box::new(image.clone()), sim_opts(s)))?;
    if let Err(Error::Io(e)) = &opened {
        if image.fault_counts().read_errors == 0 {
            sim.fail("open", format!("open failed with I/O error {e} that no fault explains"));
            return None;
        }
        ev!(sim.trace, "open: read error, retrying without read faults");
        image.set_random_faults(RandomFaults::default(), 0);
        opened = guarded(sim, |s| Db::open_on(Box::new(image.clone()), sim_opts(s)))?;
    }
    let read_errors = image.fault_counts().read_errors;
    image.set_random_faults(RandomFaults::default(), 0);
    ev!(sim.trace, "open with read faults {read_faults}: {read_errors} read errors");
    let db = match opened {
        Ok(db) => db,
        Err(Error::Corrupt { addr, reason }) if damaged => {
            ev!(sim.trace, "open refused: corrupt at {addr}: {reason}");
            sim.counters.corrupt_detected += 1;
            return None;
        }
        Err(e) => {
            sim.fail("open", format!("reopen after a crash failed: {e}"));
            return None;
        }
    };
    let ok = guarded(sim, |s| judge_recovery(s, &db, &image)).unwrap_or(false);
    if !ok || damaged {
        let _ = guarded(sim, move |_| drop(db));
        return None;
    }
    Some((db, image))
}

/// Compares the recovered store with the history and checks it. Returns whether the life
/// can go on (false after a failure or detected damage).
fn judge_recovery(sim: &mut Sim, db: &Db, dev: &SimDevice) -> bool {
    let stats = db.stats();
    let (fallbacks, rejected) = (stats.recovery_fallbacks, stats.rejected_superblock_copies);
    ev!(
        sim.trace,
        "recovered generation {}, fallbacks {fallbacks}, rejected copies {}",
        stats.generation_durable,
        stats.rejected_superblock_copies
    );
    let damage = dev.damage();
    let got = match crate::session::dump_snapshot(&db.snapshot().expect("snapshot")) {
        Ok(got) => got,
        Err(Error::Corrupt { addr, reason }) if faults::explains(&damage, addr, &sim.cfg) => {
            ev!(sim.trace, "recovered store: corrupt at {addr} ({reason}), damage explains it");
            sim.counters.corrupt_detected += 1;
            return false;
        }
        Err(e) => {
            sim.fail("recovery-read", format!("reading the recovered store: {e}"));
            return false;
        }
    };
    let h = &sim.history;
    let (acked, count) = (h.acked, h.states.len());
    let got_index = h.position(&got);
    match got_index {
        Some(i) if i >= acked => {
            ev!(
                sim.trace,
                "recovered commit {i} of {count} (acked {acked}), fallbacks {fallbacks}"
            );
        }
        // The known defect: damage to the newest generation (a block of it, or every copy
        // of its superblock) makes open take an older one without an error.
        Some(i) if !damage.is_empty() && (fallbacks > 0 || rejected > 0) => {
            let line = format!(
                "step {}: recovered commit {i} of {count} but commit {acked} was acknowledged; \
                 {fallbacks} fallback(s), {rejected} rejected superblock copies after injected \
                 damage",
                sim.trace.step
            );
            ev!(sim.trace, "KNOWN {line}");
            sim.counters.known += 1;
            sim.known.push((sim.trace.step, line));
            return false;
        }
        // A write the device acknowledged and never stored (or stored elsewhere) for every
        // copy of the newest superblock leaves the older superblock looking newest: no
        // single-device store can tell. Counted apart, like KNOWN, never as a pass.
        Some(i) if faults::hits_superblocks(&damage, &sim.cfg) && lost_writes(dev) => {
            let line = format!(
                "step {}: recovered commit {i} of {count} but commit {acked} was acknowledged; \
                 the device lost or misdirected the newest superblock's writes",
                sim.trace.step
            );
            ev!(sim.trace, "LOST-WRITE {line}");
            sim.counters.lost_write += 1;
            sim.known.push((sim.trace.step, format!("(lost superblock write) {line}")));
            return false;
        }
        Some(i) => {
            let detail = format!(
                "recovered commit {i} of {count}, but commit {acked} was acknowledged \
                 (fallbacks {fallbacks}, damage {})",
                damage.len()
            );
            sim.fail("lost-ack", detail);
            return false;
        }
        None => {
            let newest = h.last().diff(&got);
            sim.fail("wrong-state", format!("recovered state is no committed state: {newest}"));
            return false;
        }
    }
    if !check_store(sim, db, dev) {
        return false;
    }
    sim.history.recovered(got_index.expect("matched"));
    true
}

/// Whether the device lost or misdirected writes (in this life: the record survives crashes
/// as damage, the counters do not, so damage beyond bit flips is the sign).
fn lost_writes(dev: &SimDevice) -> bool {
    dev.damage().iter().any(|d| d.end - d.start > 1)
}

/// `db.check()` must be clean, unless injected damage explains every finding. A check that
/// met injected read errors (its findings then follow from the unreadable blocks) is run
/// again with read faults paused, and that one must be clean.
pub fn check_store(sim: &mut Sim, db: &Db, dev: &SimDevice) -> bool {
    sim.counters.ops += 1;
    let read_errors = dev.fault_counts().read_errors;
    let result = db.check();
    if dev.fault_counts().read_errors > read_errors {
        let clean = match &result {
            Ok(report) => report.findings.iter().all(|p| p.detail.contains("I/O error")),
            Err(e) => matches!(e, Error::Io(_)),
        };
        ev!(sim.trace, "check met read errors (only their findings: {clean}); again without");
        dev.pause_random_faults(true);
        let again = check_store(sim, db, dev);
        dev.pause_random_faults(false);
        return again;
    }
    let damage = dev.damage();
    match result {
        Ok(report) if report.is_ok() => true,
        Ok(report) => {
            // A damaged block hides what lies below it: the blocks only it reached look
            // leaked and its tree's entry count looks wrong. Those follow from it.
            let explained = |p: &&Problem| faults::explains(&damage, p.addr, &sim.cfg);
            let root_cause = report.findings.iter().any(|p| {
                explained(&p) && matches!(p.kind, ProblemKind::Block | ProblemKind::Allocator)
            });
            let follows = |p: &&Problem| {
                root_cause && matches!(p.kind, ProblemKind::Leaked | ProblemKind::EntryCount)
            };
            let unexplained: Vec<_> = report
                .findings
                .iter()
                .filter(|p| !explained(p) && !follows(p))
                .map(|p| format!("{} at {}: {}", p.kind.name(), p.addr, p.detail))
                .collect();
            if unexplained.is_empty() {
                sim.counters.corrupt_detected += 1;
                ev!(sim.trace, "check: {} finding(s), damage explains them", report.findings.len());
                return false;
            }
            sim.fail("check", format!("check found {:?}", unexplained));
            false
        }
        Err(Error::Corrupt { addr, .. }) if faults::explains(&damage, addr, &sim.cfg) => {
            sim.counters.corrupt_detected += 1;
            false
        }
        Err(e) => {
            sim.fail("check", format!("check failed: {e}"));
            false
        }
    }
}
