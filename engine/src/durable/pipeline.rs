//! The durability pipeline: group commit with at most one generation in flight
//! (design.md §4, §10.10, §10.15).
//!
//! A committing transaction publishes its changes in the open generation G and then needs
//! G durable. If no flush is running it becomes the *leader*: with the writer lock held (a
//! commit boundary) it freezes G, releases the lock — the next transaction starts in G+1 at
//! once — then writes G and issues one flush. If a flush of G−1 is running, it releases the
//! writer lock and waits; when that flush ends one waiter becomes the leader of G and every
//! commit that joined G meanwhile shares its single flush. A failed write or flush is
//! recorded and every later commit gets `Error::PreviousIo` (fail-stop) until reopened.
//!
//! The hand-off ([`Pipeline::hand_off`]) is generic over the work it hands to a leader
//! ([`Handoff`]): the engine's is [`Flush`] (`freeze::freeze`, then `freeze::write_out`),
//! and `loom-tests/` drives the same hand-off with a toy writer and a fake flush. Exported
//! `#[doc(hidden)]` for that reason only.

use std::time::Instant;

use crate::durable::freeze::{self, Frozen, SuperblockInputs};
use crate::store::Store;
use crate::sync::{lock, Condvar, Mutex, MutexGuard};
use crate::writer::Writer;
use crate::{Error, Result};

/// What the pipeline knows about durability, under `Pipeline::state`.
pub struct DurableState {
    /// Newest generation whose flush completed.
    pub durable_gen: u64,
    /// A leader is freezing or writing a generation.
    pub flushing: bool,
    /// The first write or flush error, if any: the handle is fail-stop.
    pub failed: Option<String>,
    /// Alternation of the newest durable superblock (never overwritten).
    pub durable_alternation: u8,
    /// Crc of the newest durable superblock (the next one records it).
    pub prev_crc: u32,
    pub last_durable_at: Instant,
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

/// The engine's work: freeze the writer's open generation into the store, write it out.
pub(crate) struct Flush<'a> {
    pub store: &'a Store,
    pub uuid: [u8; 16],
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
        };
        w.alloc.note_durable(inputs.flushed_gen);
        freeze::freeze(w, self.store, &inputs)
    }

    fn write_out(&self, frozen: Frozen) -> Result<DurableMark> {
        freeze::write_out(self.store, &frozen)?;
        Ok(DurableMark {
            gen: frozen.gen,
            alternation: frozen.alternation,
            superblock_crc: frozen.superblock_crc,
        })
    }
}

impl Pipeline {
    pub(crate) fn check_failed(&self) -> Result<()> {
        match &lock(&self.state).failed {
            Some(original) => Err(Error::PreviousIo { original: original.clone() }),
            None => Ok(()),
        }
    }

    pub(crate) fn durable_gen(&self) -> u64 {
        lock(&self.state).durable_gen
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
            let mut d = lock(&self.state);
            // Durable first: a commit whose generation a flush covered is durable even if a
            // later generation's flush then failed (reporting an error would invite the
            // caller to apply it twice).
            if d.durable_gen >= target {
                return Ok(());
            }
            if let Some(original) = &d.failed {
                return Err(Error::PreviousIo { original: original.clone() });
            }
            if d.flushing {
                drop(guard.take());
                if !wait {
                    return Ok(());
                }
                while d.flushing && d.failed.is_none() && d.durable_gen < target {
                    d = match self.changed.wait(d) {
                        Ok(g) => g,
                        Err(poisoned) => poisoned.into_inner(),
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
            if let Some(outcome) = self.lead(writer, guard.take(), work, target, durable) {
                return outcome;
            }
        }
    }

    /// The leader's part of [`Pipeline::hand_off`], with `flushing` set: freezes the open
    /// generation under the writer lock and writes it with no lock held. `None` when a
    /// leader before it froze `target` already (the caller goes round again).
    fn lead<'a, H: Handoff>(
        &self,
        writer: &'a Mutex<H::Writer>,
        guard: Option<MutexGuard<'a, H::Writer>>,
        work: &H,
        target: u64,
        durable: DurableMark,
    ) -> Option<Result<()>> {
        let mut w = match guard {
            Some(g) => g,
            None => lock(writer),
        };
        if work.open_gen(&w) > target {
            // Someone froze `target` already; its leader reports the outcome.
            drop(w);
            self.finish(None);
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
                self.finish(Some(Ok(mark)));
                Ok(())
            }
            Err(e) => {
                self.finish(Some(Err(e.to_string())));
                Err(e)
            }
        })
    }

    /// Ends the running flush (`None`: it froze nothing) and wakes every waiter.
    fn finish(&self, outcome: Option<std::result::Result<DurableMark, String>>) {
        let mut d = lock(&self.state);
        assert!(d.flushing, "finish ends the running flush");
        d.flushing = false;
        match outcome {
            Some(Ok(mark)) => {
                assert!(mark.gen > d.durable_gen, "no generation is flushed twice");
                d.durable_gen = mark.gen;
                d.durable_alternation = mark.alternation;
                d.prev_crc = mark.superblock_crc;
                d.last_durable_at = Instant::now();
            }
            Some(Err(msg)) => {
                d.failed.get_or_insert(msg);
            }
            None => {}
        }
        drop(d);
        self.changed.notify_all();
    }
}
