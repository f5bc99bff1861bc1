//! The durability pipeline: group commit with at most one generation in flight
//! (DESIGN §4, §10.10, §10.15).
//!
//! A committing transaction publishes its changes in the open generation G and then needs
//! G durable. If no flush is running it becomes the *leader*: with the writer lock held (a
//! commit boundary) it freezes G, releases the lock — the next transaction starts in G+1 at
//! once — then writes G and issues one flush. If a flush of G−1 is running, it releases the
//! writer lock and waits; when that flush ends one waiter becomes the leader of G and every
//! commit that joined G meanwhile shares its single flush. A failed write or flush is
//! recorded and every later commit gets `Error::PreviousIo` (fail-stop) until reopened.

use std::time::Instant;

use crate::freeze::{self, SuperblockInputs};
use crate::sync::{lock, Condvar, Mutex, MutexGuard};
use crate::writer::Writer;
use crate::{Error, Result};

pub(crate) struct DurableState {
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

pub(crate) struct Pipeline {
    pub state: Mutex<DurableState>,
    pub changed: Condvar,
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
}

/// Makes generation `target` durable. `guard`, if given, is the writer lock held by the
/// committing transaction; it is released before any wait or I/O. With `wait == false`
/// (Eventual commits) the call returns at once if another flush is running.
pub(crate) fn make_durable<'a>(
    db: &'a crate::db::Shared,
    mut guard: Option<MutexGuard<'a, Writer>>,
    target: u64,
    wait: bool,
) -> Result<()> {
    // Bounded: each round either returns or waits for a flush to end; a flush that ends
    // without covering `target` leaves `flushing` false, so the next round leads.
    loop {
        let mut d = lock(&db.pipeline.state);
        if let Some(original) = &d.failed {
            return Err(Error::PreviousIo { original: original.clone() });
        }
        if d.durable_gen >= target {
            return Ok(());
        }
        if d.flushing {
            drop(guard.take());
            if !wait {
                return Ok(());
            }
            while d.flushing && d.failed.is_none() && d.durable_gen < target {
                d = match db.pipeline.changed.wait(d) {
                    Ok(g) => g,
                    Err(poisoned) => poisoned.into_inner(),
                };
            }
            continue;
        }
        d.flushing = true;
        let inputs = SuperblockInputs {
            uuid: db.uuid,
            flushed_gen: d.durable_gen,
            durable_alternation: d.durable_alternation,
            prev_crc: d.prev_crc,
        };
        drop(d);
        let mut w = match guard.take() {
            Some(g) => g,
            None => lock(&db.writer),
        };
        if w.gen > target {
            // Someone froze `target` already; its leader reports the outcome.
            drop(w);
            finish(db, None);
            continue;
        }
        w.alloc.note_durable(inputs.flushed_gen);
        let frozen = freeze::freeze(&mut w, &db.store, &inputs);
        drop(w);
        let result = frozen.and_then(|f| freeze::write_out(&db.store, &f).map(|()| f));
        return match result {
            Ok(f) => {
                finish(db, Some(Ok((f.gen, f.alternation, f.superblock_crc))));
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                finish(db, Some(Err(msg)));
                Err(e)
            }
        };
    }
}

type Outcome = std::result::Result<(u64, u8, u32), String>;

fn finish(db: &crate::db::Shared, outcome: Option<Outcome>) {
    let mut d = lock(&db.pipeline.state);
    d.flushing = false;
    match outcome {
        Some(Ok((gen, alternation, crc))) => {
            d.durable_gen = gen;
            d.durable_alternation = alternation;
            d.prev_crc = crc;
            d.last_durable_at = Instant::now();
        }
        Some(Err(msg)) => {
            d.failed.get_or_insert(msg);
        }
        None => {}
    }
    drop(d);
    db.pipeline.changed.notify_all();
}
