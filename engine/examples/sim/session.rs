//! One open handle, from open (or create) to the next simulated power loss: the step loop,
//! the clients' turns, and the judgement of every answer the engine gives.
//!
//! Concurrency is logical: several clients take turns the seed picks, on one thread. A
//! client that owns the write transaction runs its operations one per turn, while the other
//! clients take, read and drop snapshots, call `stats`, and wait for the writer (a turn
//! of a client that wants to write while another owns the transaction is spent on reads,
//! as a blocked `begin_write` would be). So snapshot readers interleave with the writer's
//! in-place changes of published blocks at every operation boundary. Not concurrent: two
//! threads inside the engine at once (group commit of several committers, a reader racing a
//! writer inside one operation); the loom models and the threaded tests cover those.

use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;

use arbor::io::{FaultCounts, RandomFaults, SimDevice};
use arbor::{Db, Durability, Error, Snapshot, SnapshotPolicy, WriteTxn};

use crate::ev;
use crate::faults;
use crate::model::{State, Tree, Val};
use crate::recovery::check_store;
use crate::run::Sim;

/// How a session ended.
pub enum SessionEnd {
    /// Power loss: the device image to recover from.
    Crash(SimDevice),
    /// The seed's steps ran out.
    Done,
    /// A failure was recorded.
    Failed,
    /// The engine panicked; the handle must not be used (or dropped) again.
    Panicked,
    /// A clean close: the handle is dropped (its drop flushes), then the device reopened.
    Close,
}

/// A snapshot a client holds, with the model state it must show.
pub struct Held {
    pub client: u64,
    pub snap: Snapshot,
    pub state: Rc<State>,
}

/// The write transaction and the model of what it has done so far.
pub struct OpenTxn<'a> {
    pub owner: u64,
    pub tx: WriteTxn<'a>,
    pub working: State,
}

/// Answers allowed besides the ones every call may give under injected faults.
#[derive(Clone, Copy, Default)]
pub struct Allow {
    pub no_space: bool,
    pub expired: bool,
    pub too_large_txn: bool,
    pub bound: bool,
}

pub struct Session<'a> {
    pub sim: &'a mut Sim,
    pub db: &'a Db,
    pub dev: &'a SimDevice,
    pub open: Option<OpenTxn<'a>>,
    pub snaps: Vec<Held>,
    /// A write or flush failed: the handle must refuse writes; the next step crashes.
    pub failstop: bool,
    /// Steps left before a forced crash (after damage, to recover from it soon).
    pub crash_in: Option<u32>,
    pub random: RandomFaults,
    /// Seq of the newest commit (what a snapshot taken now sees).
    pub last_seq: u64,
    /// A `NoSpace` was answered: the next idle turn deletes the largest tree, which must
    /// succeed on a full store.
    pub room_wanted: bool,
    /// Inside that deletion `NoSpace` is a failure.
    pub making_room: bool,
    /// The seed chose a clean close at this step.
    close_requested: bool,
}

pub const SNAPSHOTS_HELD_MAX: usize = 12;

/// Chance per step of a clean close, in 1/1000.
const CLOSE_PER_MILLE: u64 = 3;

impl<'a> Session<'a> {
    pub fn new(sim: &'a mut Sim, db: &'a Db, dev: &'a SimDevice) -> Session<'a> {
        let last_seq = db.stats().visible_seq;
        Session {
            sim,
            db,
            dev,
            open: None,
            snaps: Vec::new(),
            failstop: false,
            crash_in: None,
            random: RandomFaults::default(),
            last_seq,
            room_wanted: false,
            making_room: false,
            close_requested: false,
        }
    }

    pub fn run(mut self) -> SessionEnd {
        loop {
            if self.sim.trace.step >= self.sim.steps_max {
                return self.close(SessionEnd::Done);
            }
            self.sim.trace.step += 1;
            crate::PROGRESS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let acked_before = self.sim.history.acked;
            let crash = match panic::catch_unwind(AssertUnwindSafe(|| self.step())) {
                Ok(crash) => crash,
                Err(payload) => {
                    self.sim.fail("panic", crate::panic_message(payload));
                    std::mem::forget(self.open.take());
                    std::mem::forget(std::mem::take(&mut self.snaps));
                    return SessionEnd::Panicked;
                }
            };
            if self.sim.failure.is_some() {
                return self.close(SessionEnd::Failed);
            }
            if let Some(image) = self.dev.take_power_cut() {
                // The cut came during this step: whatever it acknowledged was never seen.
                self.sim.history.acked = acked_before;
                ev!(self.sim.trace, "power cut inside the step");
                return self.close(SessionEnd::Crash(image));
            }
            if let Some(image) = crash {
                return self.close(SessionEnd::Crash(image));
            }
            if self.close_requested {
                ev!(self.sim.trace, "clean close");
                return self.close(SessionEnd::Close);
            }
        }
    }

    /// Drops the transaction and the snapshots (a panic there is a failure too).
    fn close(mut self, end: SessionEnd) -> SessionEnd {
        let open = self.open.take();
        let snaps = std::mem::take(&mut self.snaps);
        if panic::catch_unwind(AssertUnwindSafe(move || drop((open, snaps)))).is_err() {
            self.sim.fail("panic", "dropping a transaction or snapshots panicked".into());
        }
        end
    }

    fn step(&mut self) -> Option<SimDevice> {
        if self.failstop {
            self.probe_failstop();
            return Some(self.crash("after fail-stop"));
        }
        if let Some(n) = self.crash_in.as_mut() {
            if *n == 0 {
                return Some(self.crash("after damage"));
            }
            *n -= 1;
        }
        if self.sim.rng.below(1000) < self.sim.cfg.crash_per_mille {
            return Some(self.crash("power loss"));
        }
        if self.sim.rng.below(1000) < CLOSE_PER_MILLE {
            self.close_requested = true;
            return None;
        }
        if self.sim.rng.below(1000) < self.sim.cfg.fault_per_mille {
            self.inject_fault();
        }
        let client = self.sim.rng.below(self.sim.cfg.clients);
        match &self.open {
            Some(o) if o.owner == client => self.txn_step(),
            Some(_) => self.reader_step(client),
            None => self.idle_step(client),
        }
        None
    }

    /// After a failed write or flush the handle refuses writes with `PreviousIo`, while
    /// snapshots still read correctly.
    fn probe_failstop(&mut self) {
        if let Some(client) = self.snaps.first().map(|h| h.client) {
            self.snap_read(client);
        }
        if self.open.is_some() {
            return;
        }
        self.sim.counters.ops += 1;
        match self.db.begin_write() {
            Err(Error::PreviousIo { .. }) => ev!(self.sim.trace, "fail-stop: PreviousIo"),
            Err(e) => self.sim.fail("fail-stop", format!("begin after a failed write: {e}")),
            Ok(tx) => {
                drop(tx);
                self.sim.fail("fail-stop", "begin_write succeeded after a failed write".into());
            }
        }
    }

    fn crash(&mut self, why: &str) -> SimDevice {
        let (writes, flushes) = (self.dev.write_count(), self.dev.flush_count());
        ev!(self.sim.trace, "crash: {why} (device writes {writes}, flushes {flushes})");
        self.dev.crash()
    }

    /// A client's turn while another client owns the write transaction.
    fn reader_step(&mut self, client: u64) {
        match self.sim.rng.below(100) {
            0..=19 => self.snap_take(client),
            20..=74 => self.snap_read(client),
            75..=89 => self.snap_drop(client),
            _ => self.stats(),
        }
    }

    /// A client's turn while no transaction is open.
    fn idle_step(&mut self, client: u64) {
        if self.room_wanted {
            return self.make_room(client);
        }
        match self.sim.rng.below(100) {
            0..=49 => self.begin(client),
            50..=59 => self.snap_take(client),
            60..=79 => self.snap_read(client),
            80..=87 => self.snap_drop(client),
            88..=91 => self.flush(),
            92..=93 => {
                self.sim.counters.ops += 1;
                if !check_store(self.sim, self.db, self.dev) && self.sim.failure.is_none() {
                    self.crash_in = Some(0);
                }
            }
            94..=96 => self.verify_current(),
            _ => self.stats(),
        }
    }

    /// Deletes the largest tree in an Immediate transaction of its own: a full store must
    /// still take deletions (the engine keeps blocks in reserve for them).
    fn make_room(&mut self, client: u64) {
        self.room_wanted = false;
        let last = std::rc::Rc::clone(self.sim.history.last());
        let Some((name, _)) = last.trees.iter().max_by_key(|(_, t)| t.len()) else { return };
        self.sim.counters.ops += 2;
        let before = self.dev.fault_counts();
        let mut tx = match self.db.begin_write() {
            Ok(tx) => tx,
            Err(e) => {
                self.room_wanted = true;
                return self.begin_failed("begin (make room)", &e, before);
            }
        };
        tx.set_durability(Durability::Immediate);
        let mut working = (*last).clone();
        working.trees.remove(name);
        let deleted = tx.delete_tree(name);
        ev!(self.sim.trace, "c{client} make room: delete_tree {}", crate::model::show_name(name));
        self.making_room = true;
        match deleted {
            Ok(true) => self.open = Some(OpenTxn { owner: client, tx, working }),
            Ok(false) => self.sim.fail("wrong-data", "delete_tree of a listed tree: false".into()),
            Err(e) => {
                self.judge("delete_tree (make room)", &e, before, Allow::default());
            }
        }
        if self.open.is_some() {
            self.txn_commit();
        }
        self.making_room = false;
    }

    fn stats(&mut self) {
        self.sim.counters.ops += 1;
        let s = self.db.stats();
        if self.open.is_none() && s.visible_seq != self.last_seq {
            let detail = format!(
                "stats: visible seq {} but the last commit was {}",
                s.visible_seq, self.last_seq
            );
            self.sim.fail("stats", detail);
        }
        ev!(self.sim.trace, "stats seq {} live {}", s.visible_seq, s.snapshots_live);
    }

    fn begin(&mut self, client: u64) {
        self.sim.counters.ops += 1;
        let before = self.dev.fault_counts();
        match self.db.begin_write() {
            Ok(mut tx) => {
                match self.sim.rng.below(4) {
                    0 => tx.set_durability(Durability::Immediate),
                    1 => tx.set_durability(Durability::Eventual),
                    2 => tx.set_durability(Durability::None),
                    _ => {} // the store's default
                }
                let working = (**self.sim.history.last()).clone();
                self.open = Some(OpenTxn { owner: client, tx, working });
                ev!(self.sim.trace, "c{client} begin");
            }
            Err(e) => self.begin_failed("begin", &e, before),
        }
    }

    /// `begin_write` failed: under `WriterWaits` the bound waits on this thread's own
    /// snapshots, so the oldest is dropped (the next turn retries).
    fn begin_failed(&mut self, what: &str, e: &Error, before: FaultCounts) {
        let policy = self.sim.cfg.opts.snapshot_policy;
        let bound = matches!(policy, SnapshotPolicy::WriterWaits { .. });
        let allow = Allow { bound, ..Allow::default() };
        let judged = self.judge(what, e, before, allow);
        if judged && matches!(e, Error::SnapshotBoundReached { .. }) && !self.snaps.is_empty() {
            drop(self.snaps.remove(0));
        }
    }

    fn flush(&mut self) {
        self.sim.counters.ops += 1;
        let before = self.dev.fault_counts();
        match self.db.flush() {
            Ok(()) => {
                self.no_write_error_swallowed("flush", before);
                self.sim.history.ack_all();
                ev!(self.sim.trace, "flush ok");
            }
            Err(e) => {
                self.judge("flush", &e, before, Allow::default());
                self.failstop = true;
            }
        }
    }

    /// Faults injected since `before`.
    pub fn delta(&self, before: FaultCounts) -> FaultCounts {
        let now = self.dev.fault_counts();
        FaultCounts {
            read_errors: now.read_errors - before.read_errors,
            write_errors: now.write_errors - before.write_errors,
            flush_errors: now.flush_errors - before.flush_errors,
            lost_writes: now.lost_writes - before.lost_writes,
            misdirected_writes: now.misdirected_writes - before.misdirected_writes,
            bit_flips: now.bit_flips - before.bit_flips,
        }
    }

    /// A call that returned `Ok` must not have met a failed write or flush.
    pub fn no_write_error_swallowed(&mut self, what: &str, before: FaultCounts) {
        let d = self.delta(before);
        if d.write_errors + d.flush_errors > 0 {
            let detail = format!("{what} returned Ok after a failed write or flush ({d:?})");
            self.sim.fail("swallowed-io", detail);
        }
    }

    /// Whether error `e` of `what` is an allowed answer; records a failure if not.
    pub fn judge(&mut self, what: &str, e: &Error, before: FaultCounts, allow: Allow) -> bool {
        let d = self.delta(before);
        let all = self.dev.fault_counts();
        let wrote_err = d.write_errors + d.flush_errors > 0;
        if wrote_err {
            self.failstop = true;
        }
        let ok = match e {
            Error::Io { .. } => {
                self.sim.counters.io_errors += 1;
                d.read_errors > 0 || wrote_err
            }
            Error::PreviousIo { .. } => {
                self.failstop = true;
                all.read_errors + all.write_errors + all.flush_errors > 0
            }
            Error::Corrupt { addr, .. } => {
                let ok = faults::explains(&self.dev.damage(), *addr, &self.sim.cfg);
                if ok {
                    self.sim.counters.corrupt_detected += 1;
                    self.crash_in = Some(self.crash_in.unwrap_or(0).min(3));
                }
                ok
            }
            Error::NoSpace => {
                self.sim.counters.no_space += 1;
                self.room_wanted = true;
                allow.no_space && !self.making_room
            }
            Error::SnapshotExpired { .. } => {
                self.sim.counters.expired += 1;
                allow.expired
            }
            Error::TransactionTooLarge { .. } => allow.too_large_txn,
            Error::SnapshotBoundReached { .. } => allow.bound,
            _ => false,
        };
        ev!(self.sim.trace, "{what}: error {}", short_error(e));
        if !ok {
            self.sim.fail("unexpected-error", format!("{what}: {e} (faults in the call: {d:?})"));
        }
        ok
    }

    /// The committed state as a fresh snapshot reads it must be the newest commit.
    fn verify_current(&mut self) {
        self.sim.counters.ops += 1;
        let snap = match self.db.snapshot() {
            Ok(s) => s,
            Err(e) => return self.sim.fail("snapshot", format!("snapshot failed: {e}")),
        };
        let before = self.dev.fault_counts();
        match dump_snapshot(&snap) {
            Ok(got) => {
                if got != **self.sim.history.last() {
                    let diff = self.sim.history.last().diff(&got);
                    self.sim.fail(
                        "wrong-state",
                        format!("current state differs from the model: {diff}"),
                    );
                }
                ev!(self.sim.trace, "verify current: {} entries", got.entries());
            }
            Err(e) => {
                let allow = Allow { expired: snap.is_expired(), ..Allow::default() };
                self.judge("verify current", &e, before, allow);
            }
        }
    }

    /// Sets the random faults of the device (and remembers them).
    pub fn set_random(&mut self, faults: RandomFaults) {
        self.random = faults;
        self.dev.set_random_faults(faults, self.sim.rng.next_u64());
    }
}

/// Reads every tree of a snapshot into a model state.
pub fn dump_snapshot(snap: &Snapshot) -> arbor::Result<State> {
    let mut out = State::default();
    for name in snap.tree_names()? {
        let Some(t) = snap.tree(&name)? else {
            return Err(Error::InvalidInput(format!("listed tree {name} is missing")));
        };
        let mut items = Tree::new();
        for item in t.iter()? {
            let (k, v) = item?;
            items.insert(k.into_vec(), Val::from(v.into_vec()));
        }
        let len = t.len()?;
        if items.len() as u64 != len {
            let msg = format!("tree {name}: len {len} but {} items", items.len());
            return Err(Error::InvalidInput(msg));
        }
        out.trees.insert(name, Rc::new(items));
    }
    Ok(out)
}

/// An error's variant name (the trace holds no OS message text).
pub fn short_error(e: &Error) -> &'static str {
    match e {
        Error::Io { .. } => "Io",
        Error::Corrupt { .. } => "Corrupt",
        Error::NoSpace => "NoSpace",
        Error::KeyTooLarge { .. } => "KeyTooLarge",
        Error::ValueTooLarge { .. } => "ValueTooLarge",
        Error::SnapshotExpired { .. } => "SnapshotExpired",
        Error::PreviousIo { .. } => "PreviousIo",
        Error::TransactionTooLarge { .. } => "TransactionTooLarge",
        Error::SnapshotBoundReached { .. } => "SnapshotBoundReached",
        Error::InvalidInput(_) => "InvalidInput",
        _ => "other",
    }
}
