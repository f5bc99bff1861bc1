//! The checkpoint pipeline: at most one generation in flight (design.md §4, §10.10, §11.6).
//!
//! Commits become durable through the journal (`durable::journal`); a checkpoint writes the
//! open generation G so that the journal's records up to it are no longer needed. Whoever
//! needs G checkpointed (the background checkpointer, `Db::flush`, close, a large
//! transaction, a full journal) becomes the *leader* if no checkpoint is running: with the
//! writer lock held (a commit boundary) it freezes G, releases the lock — the next
//! transaction starts in G+1 at once — then writes G, flushes, writes the superblock and
//! flushes again. If a checkpoint of G−1 is running, it releases the writer lock and waits;
//! when that one ends one waiter becomes the leader of G. A failed write or flush is
//! recorded and every later commit gets `Error::PreviousIo` (fail-stop) until reopened.
//!
//! A panic is recorded the same way ([`Failure::Panic`], `Error::Poisoned`), and stricter:
//! the writer is then refused to everyone until the store is reopened. Two paths lead there,
//! both ending in the one record `DurableState::failed`: a panic that unwinds while a guard
//! of the writer is alive poisons the writer's mutex, which [`Pipeline::lock_writer`] — the
//! only way the engine takes the writer — turns into the record; a panic in a leader's
//! freeze or write-out ends its flush as failed (`Leading`), so that no waiter waits for a
//! flush that will never end.
//!
//! The hand-off ([`Pipeline::hand_off`]) is generic over the work it hands to a leader
//! ([`Handoff`]): the engine's is `Flush` (`freeze::freeze`, then `freeze::write_out`),
//! and `loom-tests/` drives the same hand-off with a toy writer and a fake flush. Exported
//! `#[doc(hidden)]` for that reason only.

use crate::durable::freeze::{self, Frozen, SuperblockInputs};
use crate::durable::journal::Journal;
use crate::store::Store;
use crate::sync::{self, Condvar, Mutex, MutexGuard, TryLockError};
use crate::writer::Writer;
use crate::{Error, Result};

/// What the pipeline knows about durability, under `Pipeline::state`.
pub struct DurableState {
    /// Newest generation whose flush completed.
    pub durable_gen: u64,
    /// A leader is freezing or writing a generation.
    pub flushing: bool,
    /// Why the handle is fail-stop, if it is (see [`DurableState::fail`]).
    pub failed: Option<Failure>,
    /// Alternation of the newest durable superblock (never overwritten).
    pub durable_alternation: u8,
    /// Crc of the newest durable superblock (the next one records it).
    pub prev_crc: u32,
    /// The writer lock was last released by a transaction that a panic in the caller's own
    /// code unwound through, after it aborted cleanly: the lock's poison then means nothing
    /// (see [`Pipeline::lock_writer`]).
    pub released_whole: bool,
}

/// Why a handle is fail-stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A write or flush failed, or an abort found the log and a block disagreeing (the
    /// error's text). Writes get `Error::PreviousIo`; checks still run.
    Io(String),
    /// A panic unwound through the engine (`Error::Poisoned`'s `what`). The writer may be
    /// half changed: writes, flushes and checks are all refused.
    Panic(&'static str),
}

impl Failure {
    pub fn error(&self) -> Error {
        match self {
            Failure::Io(original) => Error::PreviousIo { original: original.clone() },
            Failure::Panic(what) => Error::Poisoned { what: (*what).to_string() },
        }
    }
}

/// Where a panic struck, for `Error::Poisoned`.
pub(crate) const PANIC_HOLDING_WRITER: &str = "inside the engine while it held the writer";
const PANIC_IN_FLUSH: &str = "inside the engine during a generation's flush";
const PANIC_HOLDING_PIPELINE: &str = "inside the engine while it held the commit pipeline";

impl DurableState {
    /// The state of a store whose newest durable superblock is generation `gen`, in
    /// `alternation`, with crc `crc`.
    pub(crate) fn at(gen: u64, alternation: u8, crc: u32) -> DurableState {
        DurableState {
            durable_gen: gen,
            flushing: false,
            failed: None,
            durable_alternation: alternation,
            prev_crc: crc,
            released_whole: false,
        }
    }

    /// Makes the handle fail-stop. The first I/O failure is kept (later ones are its
    /// consequences), but a panic replaces it: a panic refuses more than an I/O error does.
    pub fn fail(&mut self, failure: Failure) {
        match (&self.failed, &failure) {
            (None, _) | (Some(Failure::Io(_)), Failure::Panic(_)) => self.failed = Some(failure),
            (Some(_), _) => {}
        }
    }

    /// The error for a handle a panic made fail-stop, if one did.
    fn panicked(&self) -> Option<Error> {
        self.failed.as_ref().filter(|f| matches!(f, Failure::Panic(_))).map(Failure::error)
    }
}

/// The hand-off between committers: its state, and the condvar a flush's end signals.
pub struct Pipeline {
    pub state: Mutex<DurableState>,
    pub changed: Condvar,
}

/// The newest durable superblock, as the hand-off records it: what a leader's freeze
/// starts from, and what its flush made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurableMark {
    pub gen: u64,
    pub alternation: u8,
    pub superblock_crc: u32,
}

/// The work a leader does for its generation. The hand-off calls `freeze` with the writer
/// lock held and `write_out` with no lock held, once per generation.
pub trait Handoff {
    /// The state behind the writer lock.
    type Writer;
    /// A frozen generation: immutable, ready to write.
    type Frozen;

    /// The open generation: the one `freeze` would take.
    fn open_gen(&self, w: &Self::Writer) -> u64;

    /// Freezes the open generation and opens the next one. `durable` is the newest durable
    /// superblock, which no other flush can change while this leader runs.
    fn freeze(&self, w: &mut Self::Writer, durable: DurableMark) -> Result<Self::Frozen>;

    /// Writes the frozen generation and issues one flush; returns what is now durable.
    fn write_out(&self, frozen: Self::Frozen) -> Result<DurableMark>;
}

/// The engine's work: a checkpoint — freeze the writer's open generation into the store,
/// write it out, and tell the journal what it covers (design.md §11.6).
pub(crate) struct Flush<'a> {
    pub store: &'a Store,
    pub uuid: [u8; 16],
    pub journal: &'a Journal,
}

impl Handoff for Flush<'_> {
    type Writer = Writer;
    type Frozen = Frozen;

    fn open_gen(&self, w: &Writer) -> u64 {
        w.gen()
    }

    fn freeze(&self, w: &mut Writer, durable: DurableMark) -> Result<Frozen> {
        let inputs = SuperblockInputs {
            uuid: self.uuid,
            flushed_gen: durable.gen,
            durable_alternation: durable.alternation,
            prev_crc: durable.superblock_crc,
            journal: self.journal.region,
            replay_lsn: self.journal.replay_lsn_for_checkpoint(),
            checkpoint_seq: self.journal.checkpoint_seq_override(),
        };
        w.alloc.note_durable(inputs.flushed_gen);
        freeze::freeze(w, self.store, &inputs)
    }

    fn write_out(&self, frozen: Frozen) -> Result<DurableMark> {
        if let Err(e) = freeze::write_out(self.store, &frozen) {
            self.journal.fail(e.with_sources());
            return Err(e);
        }
        self.journal.checkpointed(frozen.checkpoint_seq, frozen.replay_lsn);
        Ok(DurableMark {
            gen: frozen.gen,
            alternation: frozen.alternation,
            superblock_crc: frozen.superblock_crc,
        })
    }
}

/// The running flush, owned by its leader from setting `flushing` to `finish`. Dropped
/// without [`Leading::end`] only when a panic unwinds out of the leader's freeze or
/// write-out: the flush then ends as failed, so its waiters (commits, `Db::flush`, drop) wake
/// to the error instead of waiting forever, and no later flush builds on a generation that
/// may be half frozen or half written.
struct Leading<'p>(&'p Pipeline);

impl Leading<'_> {
    fn end(self, outcome: Option<std::result::Result<DurableMark, Failure>>) {
        let pipeline = self.0;
        std::mem::forget(self);
        pipeline.finish(outcome);
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.0.finish(Some(Err(Failure::Panic(PANIC_IN_FLUSH))));
    }
}

impl Pipeline {
    /// The pipeline's state. A panic inside one of its critical sections (an invariant
    /// `finish` asserts) leaves the durability bookkeeping in doubt: the state is taken over
    /// and the handle made fail-stop.
    pub fn state(&self) -> MutexGuard<'_, DurableState> {
        match self.state.lock() {
            Ok(d) => d,
            Err(poisoned) => {
                let mut d = poisoned.into_inner();
                d.fail(Failure::Panic(PANIC_HOLDING_PIPELINE));
                d
            }
        }
    }

    /// Takes the writer lock: the one way the engine does, so that one place decides what a
    /// panic means. A panic that unwound while a guard of `writer` was alive may have left
    /// it half changed (a commit half applied, an allocator run freed twice): the lock is
    /// then poisoned, the handle becomes fail-stop and every caller gets
    /// `Error::Poisoned` — as after any panic the pipeline recorded — until the store is
    /// reopened. An I/O failure alone does not refuse the lock (checks still run).
    pub fn lock_writer<'a, W>(&self, writer: &'a Mutex<W>) -> Result<MutexGuard<'a, W>> {
        if let Some(taken) = spin_for(writer) {
            return self.try_vetted(writer, taken);
        }
        let (guard, poisoned) = match writer.lock() {
            Ok(g) => (g, false),
            Err(poisoned) => (poisoned.into_inner(), true),
        };
        self.vet_writer(writer, guard, poisoned)
    }

    /// [`Pipeline::lock_writer`] without waiting: `Ok(None)` while another holds the writer.
    pub fn try_lock_writer<'a, W>(
        &self,
        writer: &'a Mutex<W>,
    ) -> Result<Option<MutexGuard<'a, W>>> {
        match writer.try_lock() {
            Err(TryLockError::WouldBlock) => Ok(None),
            taken => self.try_vetted(writer, taken).map(Some),
        }
    }

    /// Vets a `try_lock` that did not find the lock held.
    fn try_vetted<'a, W>(
        &self,
        writer: &'a Mutex<W>,
        taken: Taken<'a, W>,
    ) -> Result<MutexGuard<'a, W>> {
        let (guard, poisoned) = match taken {
            Ok(g) => (g, false),
            Err(TryLockError::Poisoned(p)) => (p.into_inner(), true),
            Err(TryLockError::WouldBlock) => unreachable!("a lock found held is not vetted"),
        };
        self.vet_writer(writer, guard, poisoned)
    }

    /// The poison rule shared by both ways of taking the writer.
    fn vet_writer<'a, W>(
        &self,
        writer: &'a Mutex<W>,
        guard: MutexGuard<'a, W>,
        poisoned: bool,
    ) -> Result<MutexGuard<'a, W>> {
        let mut d = self.state();
        // Set just before such a release, under this lock: whoever takes the writer next
        // sees it with the poison that release left, and only then.
        let released_whole = std::mem::take(&mut d.released_whole);
        if poisoned && released_whole {
            sync::clear_poison(writer);
        } else if poisoned {
            d.fail(Failure::Panic(PANIC_HOLDING_WRITER));
        }
        match d.panicked() {
            Some(e) => Err(e),
            None => Ok(guard),
        }
    }

    /// Notes that the writer lock is about to be released, by a panic unwinding through a
    /// transaction that aborted cleanly (the poison this leaves is cleared by the next
    /// [`Pipeline::lock_writer`]).
    pub(crate) fn note_released_whole(&self) {
        self.state().released_whole = true;
    }

    /// Makes the handle fail-stop for a panic that unwound while the writer was held
    /// (`what`: where, for `Error::Poisoned`).
    pub(crate) fn fail_on_panic(&self, what: &'static str) {
        self.state().fail(Failure::Panic(what));
    }

    /// The newest durable generation, unless the handle is fail-stop.
    pub(crate) fn writable(&self) -> Result<u64> {
        let d = self.state();
        match &d.failed {
            Some(failure) => Err(failure.error()),
            None => Ok(d.durable_gen),
        }
    }

    /// Makes generation `target` durable, leading its flush or waiting for the one that
    /// covers it. `guard`, if given, is `writer` held by the committing transaction; it is
    /// released before any wait or I/O. With `wait == false` (Eventual commits) the call
    /// returns at once if another flush is running.
    pub fn hand_off<'a, H: Handoff>(
        &self,
        writer: &'a Mutex<H::Writer>,
        guard: Option<MutexGuard<'a, H::Writer>>,
        work: &H,
        target: u64,
        wait: bool,
    ) -> Result<()> {
        self.hand_off_inner(writer, guard, work, target, wait, false)
    }

    /// Test-only, for the loom model's broken variant: a waiter returns `Ok` as soon as the
    /// flush it waited on ends, without checking that the flush covered `target` — the
    /// classic group-commit bug (a commit that joined G acknowledged by G−1's flush).
    #[doc(hidden)]
    #[cfg(any(test, loom, feature = "fault-injection"))]
    pub fn hand_off_broken_waiter_trusts_any_flush<'a, H: Handoff>(
        &self,
        writer: &'a Mutex<H::Writer>,
        guard: Option<MutexGuard<'a, H::Writer>>,
        work: &H,
        target: u64,
    ) -> Result<()> {
        self.hand_off_inner(writer, guard, work, target, true, true)
    }

    fn hand_off_inner<'a, H: Handoff>(
        &self,
        writer: &'a Mutex<H::Writer>,
        mut guard: Option<MutexGuard<'a, H::Writer>>,
        work: &H,
        target: u64,
        wait: bool,
        broken_waiter: bool,
    ) -> Result<()> {
        // Bounded: each round either returns or waits for a flush to end; a flush that ends
        // without covering `target` leaves `flushing` false, so the next round leads.
        loop {
            let mut d = self.state();
            // Durable first: a commit whose generation a flush covered is durable even if a
            // later generation's flush then failed (reporting an error would invite the
            // caller to apply it twice).
            if d.durable_gen >= target {
                return Ok(());
            }
            if let Some(failure) = &d.failed {
                return Err(failure.error());
            }
            if d.flushing {
                drop(guard.take());
                if !wait {
                    return Ok(());
                }
                while d.flushing && d.failed.is_none() && d.durable_gen < target {
                    d = match self.changed.wait(d) {
                        Ok(g) => g,
                        Err(poisoned) => {
                            let mut g = poisoned.into_inner();
                            g.fail(Failure::Panic(PANIC_HOLDING_PIPELINE));
                            g
                        }
                    };
                }
                if broken_waiter {
                    return Ok(());
                }
                continue;
            }
            d.flushing = true;
            let durable = DurableMark {
                gen: d.durable_gen,
                alternation: d.durable_alternation,
                superblock_crc: d.prev_crc,
            };
            drop(d);
            match self.lead(writer, guard.take(), work, target, durable) {
                Some(outcome) => return outcome,
                None => continue,
            }
        }
    }

    /// Leads the flush of the open generation, which holds `target` unless another leader
    /// froze it already (then `None`: the caller goes round again). Freezes it with the
    /// writer held (`guard`, else taken here), then writes it out with no lock held.
    fn lead<'a, H: Handoff>(
        &self,
        writer: &'a Mutex<H::Writer>,
        guard: Option<MutexGuard<'a, H::Writer>>,
        work: &H,
        target: u64,
        durable: DurableMark,
    ) -> Option<Result<()>> {
        let leading = Leading(self);
        let mut w = match guard {
            Some(g) => g,
            None => match self.lock_writer(writer) {
                Ok(g) => g,
                Err(e) => {
                    leading.end(None);
                    return Some(Err(e));
                }
            },
        };
        if work.open_gen(&w) > target {
            // Someone froze `target` already; its leader reports the outcome.
            drop(w);
            leading.end(None);
            return None;
        }
        let frozen = work.freeze(&mut w, durable);
        debug_assert!(
            frozen.is_err() || work.open_gen(&w) > target,
            "a freeze closes the open generation, which holds `target`"
        );
        drop(w);
        Some(match frozen.and_then(|f| work.write_out(f)) {
            Ok(mark) => {
                assert!(mark.gen >= target, "the flush covers the leader's generation");
                leading.end(Some(Ok(mark)));
                Ok(())
            }
            Err(e) => {
                leading.end(Some(Err(Failure::Io(e.with_sources()))));
                Err(e)
            }
        })
    }

    /// Ends the running flush (`None`: it froze nothing) and wakes every waiter.
    fn finish(&self, outcome: Option<std::result::Result<DurableMark, Failure>>) {
        let mut d = self.state();
        assert!(d.flushing, "finish ends the running flush");
        d.flushing = false;
        match outcome {
            Some(Ok(mark)) => {
                assert!(mark.gen > d.durable_gen, "no generation is flushed twice");
                d.durable_gen = mark.gen;
                d.durable_alternation = mark.alternation;
                d.prev_crc = mark.superblock_crc;
            }
            Some(Err(failure)) => d.fail(failure),
            None => {}
        }
        drop(d);
        self.changed.notify_all();
    }
}

/// A `try_lock` of the writer that did not find it held (taken, or poisoned).
type Taken<'a, W> = std::result::Result<MutexGuard<'a, W>, TryLockError<MutexGuard<'a, W>>>;

/// How long a thread that finds the writer held spins before it sleeps on the lock.
const WRITER_SPIN: std::time::Duration = std::time::Duration::from_micros(40);

/// Tries the writer lock for up to [`WRITER_SPIN`] (design.md §11.4): a commit holds it for
/// some microseconds, while a sleep on the lock costs a wake-up through the scheduler (on
/// this VM, an inter-processor interrupt and tens of microseconds) at every hand-over, and
/// the committers of a batch take the lock one after another. `None`: still held (or under
/// loom, which models no time), so sleep on it.
fn spin_for<W>(writer: &Mutex<W>) -> Option<Taken<'_, W>> {
    if cfg!(loom) {
        return None;
    }
    let until = std::time::Instant::now() + WRITER_SPIN;
    loop {
        match writer.try_lock() {
            Err(TryLockError::WouldBlock) => {}
            taken => return Some(taken),
        }
        for _ in 0..64 {
            std::hint::spin_loop();
        }
        if std::time::Instant::now() >= until {
            return None;
        }
    }
}
