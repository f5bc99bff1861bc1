//! The zero writes of a file growth step (design.md §10.16).
//!
//! `grow` allocates a step with `fallocate` before it returns, so the new space already
//! belongs to the file and reads as zeros. Writing it once turns its unwritten extents into
//! written ones, so that later data syncs do not pay for the conversion. That write is
//! deferred until a write batch first reaches the space: the batch then *claims* the
//! pending range from its start up to the batch's own end ([`Zeroing::claim`]) and writes
//! all of it — its own blocks, and zeros in the gaps between them, in the same batch
//! (`DevFile::zero_fill`) — so a checkpoint that writes a grown region writes it once,
//! instead of zeroing it first and then writing its blocks over the zeros. While a claim
//! is held, other writes into the pending range wait for it to end, so a zero write never
//! lands on data. Until a write reaches it nothing is written: commits that only allocate
//! addresses (their blocks go out at a checkpoint) cause no I/O — an eager pass made every
//! commit's flush in its time carry megabytes of zeros. A data sync makes the new size and
//! extents durable by itself, and space not yet written reads as zeros either way. A step
//! no write reached before the handle closes stays unconverted (correct, only slower to
//! sync into later); so does the range of a batch whose write failed.

use crate::sync::{self, AtomicU64, Condvar, Mutex, MutexGuard, Ordering};

/// Largest zero write: the size of a fill's buffer of zeros, reused for every gap.
pub(super) const ZERO_WRITE_BYTES: usize = 4 << 20;

/// `[zeroed, end)`: the part of the growth no write has reached (empty when none is
/// pending), and whether a batch holds a claim on its start.
#[derive(Default)]
struct Progress {
    zeroed: u64,
    end: u64,
    claimed: bool,
}

/// The deferred zeroing of one file.
#[derive(Default)]
pub(super) struct Zeroing {
    progress: Mutex<Progress>,
    /// Notified when a claim ends.
    released: Condvar,
    /// `Progress::end` while a range is pending, else 0: the writes' check without the lock.
    pending_end: AtomicU64,
}

/// A write batch's claim on the start of the pending range (see [`Zeroing::claim`]).
#[derive(Debug)]
pub(super) struct Claim {
    /// The claimed range `[from, to)`: the batch writes all of it.
    pub from: u64,
    pub to: u64,
}

impl Zeroing {
    /// The step `[from, to)` was allocated: a write batch that reaches it fills it. Growth
    /// appends, so a step continues the pending range, which then simply grows.
    pub(super) fn defer(&self, from: u64, to: u64) {
        let mut p = sync::lock(&self.progress);
        if p.end == from && p.end != 0 {
            // A claim holds on to its own end: the range may grow under it.
            p.end = to;
        } else {
            // Not contiguous (not expected): the old range stays unconverted.
            p = self.unclaimed(p);
            *p = Progress { zeroed: from, end: to, claimed: false };
        }
        self.pending_end.store(p.end, Ordering::Release);
    }

    /// Ends the pending range at `at` (the file is about to be cut there): returns once no
    /// write of a claim can land past `at`.
    pub(super) fn cut(&self, at: u64) {
        let mut p = self.unclaimed(sync::lock(&self.progress));
        p.end = p.end.min(at.max(p.zeroed));
        self.settle(&mut p);
    }

    /// Drops the pending range (the handle closes: a later open could write there); returns
    /// once no claim's write is in flight. The rest stays unconverted.
    pub(super) fn finish(&self) {
        let mut p = self.unclaimed(sync::lock(&self.progress));
        *p = Progress::default();
        self.pending_end.store(0, Ordering::Release);
    }

    /// For a write batch spanning `[lo, hi)`: when part of it is still pending, claims the
    /// pending range from its start up to `hi` (the caller writes all of it: its blocks,
    /// and zeros in the gaps between them) and returns the claim, which
    /// [`Zeroing::release`] must end. Meanwhile other writes into the pending range wait
    /// here. `None`: nothing of `[lo, hi)` is pending (any more).
    pub(super) fn claim(&self, lo: u64, hi: u64) -> Option<Claim> {
        if self.pending_end.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut p = sync::lock(&self.progress);
        // A batch outside the pending range (the journal's, one below it) never waits.
        while lo < p.end && hi > p.zeroed {
            if !p.claimed {
                p.claimed = true;
                return Some(Claim { from: p.zeroed, to: hi.min(p.end) });
            }
            p = sync::wait(&self.released, p);
        }
        None
    }

    /// Ends `claim`: with `written`, all of its range was written; else (a failed write)
    /// it stays pending. A cut or close that came meanwhile waited for this.
    pub(super) fn release(&self, claim: Claim, written: bool) {
        let mut p = sync::lock(&self.progress);
        assert!(
            p.claimed && p.zeroed == claim.from && claim.to <= p.end,
            "zeroing claim {claim:?} ended while the pending range was [{}, {}) (claimed {})",
            p.zeroed,
            p.end,
            p.claimed
        );
        if written {
            p.zeroed = claim.to;
        }
        p.claimed = false;
        self.settle(&mut p);
        self.released.notify_all();
    }

    /// Waits until no claim is held.
    fn unclaimed<'a>(&'a self, mut p: MutexGuard<'a, Progress>) -> MutexGuard<'a, Progress> {
        while p.claimed {
            p = sync::wait(&self.released, p);
        }
        p
    }

    /// Nothing left pending: back to the empty range.
    fn settle(&self, p: &mut Progress) {
        if p.zeroed >= p.end && !p.claimed {
            *p = Progress::default();
            self.pending_end.store(0, Ordering::Release);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::Zeroing;
    use crate::sync::{thread, Arc, AtomicBool, Ordering};

    /// A claim takes the pending range from its start to the batch's end; a failed batch
    /// leaves it pending; growth extends the range under a claim; a cut settles it.
    #[test]
    fn claims_advance_the_pending_range() {
        let z = Zeroing::default();
        assert!(z.claim(0, 4096).is_none(), "nothing pending");
        z.defer(100, 200);
        let c = z.claim(150, 160).expect("reaches the pending range");
        assert_eq!((c.from, c.to), (100, 160));
        z.defer(200, 300);
        z.release(c, true);
        let c = z.claim(250, 400).expect("still pending");
        assert_eq!((c.from, c.to), (160, 300), "up to the batch's end, within the range");
        z.release(c, false);
        let c = z.claim(161, 170).expect("a failed batch leaves its range pending");
        assert_eq!((c.from, c.to), (160, 170));
        z.release(c, true);
        z.cut(170);
        assert!(z.claim(0, 1 << 20).is_none(), "the cut ended the range");
    }

    /// A batch that does not reach the pending range (the journal's) goes on while a
    /// checkpoint's batch holds a claim, instead of waiting for its write-out.
    #[test]
    fn a_batch_outside_the_range_does_not_wait_for_a_claim() {
        let z = Arc::new(Zeroing::default());
        z.defer(1 << 20, 2 << 20);
        let held = z.claim(1 << 20, 3 << 19).expect("claimed");
        let done = Arc::new(AtomicBool::new(false));
        let (z2, done2) = (Arc::clone(&z), Arc::clone(&done));
        let other = thread::spawn(move || {
            assert!(z2.claim(0, 4096).is_none());
            done2.store(true, Ordering::Release);
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !done.load(Ordering::Acquire) {
            assert!(std::time::Instant::now() < deadline, "a batch below the range waited");
            thread::yield_now();
        }
        other.join().unwrap();
        z.release(held, true);
    }
}
