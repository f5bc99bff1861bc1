//! Gathering a batch (design.md §11.4): the leader of the next batch waits, at most about
//! one flush cycle, for the committers whose commits the last batch acknowledged, so that
//! many committing threads share one flush instead of alternating between two half-size
//! batches (one flushing while the other fills).
//!
//! The leader expects the distinct threads of the pending records and of the last batch;
//! it never waits for itself (a single committer's next record is its own: no wait). The
//! wait ends when that many records are pending or when the time is up, whichever is
//! first; other committers meanwhile leave the leading to it. Under loom the wait is not
//! built (loom models no timeouts): gathering only ever delays a batch, it does not change
//! what a batch acknowledges.

use std::time::{Duration, Instant};

use crate::sync::thread::{self, ThreadId};
use crate::sync::{Arc, Condvar};

/// A gathering wait never exceeds this, whatever the last cycle took.
const GATHER_MAX: Duration = Duration::from_millis(1);

/// Who committed what since the last batch, and the leader's wait, if one is gathering.
#[derive(Default)]
pub(crate) struct Gather {
    /// The committer of each pending record, in order.
    pending_by: Vec<ThreadId>,
    /// The committers of the last batch taken.
    last_by: Vec<ThreadId>,
    /// The gathering leader's condvar and the pending count it waits for.
    waiting: Option<(usize, Arc<Condvar>)>,
    /// From the last batch's take to its end (write and flush).
    pub last_cycle: Duration,
}

impl Gather {
    /// Notes the committer of a record just appended; returns the gathering leader to wake
    /// if `pending` records are now what it waits for.
    pub(crate) fn appended(&mut self, pending: usize) -> Option<Arc<Condvar>> {
        self.pending_by.push(thread::current().id());
        match &self.waiting {
            Some((target, cv)) if pending >= *target => Some(Arc::clone(cv)),
            _ => None,
        }
    }

    /// The first `taken` pending records form a batch.
    pub(crate) fn taken(&mut self, taken: usize) {
        let rest = self.pending_by.split_off(taken.min(self.pending_by.len()));
        self.last_by = std::mem::replace(&mut self.pending_by, rest);
    }

    /// Whether a leader is gathering (the others leave the next batch to it).
    pub(crate) fn busy(&self) -> bool {
        self.waiting.is_some()
    }

    /// How many records a leader on this thread should wait for, and for how long: `None`
    /// if none should be waited for (no committer of the last batch is missing, or the
    /// cycle is unknown).
    pub(crate) fn plan(&self, pending: usize) -> Option<(usize, Instant)> {
        if cfg!(loom) || self.last_cycle.is_zero() {
            return None;
        }
        let me = thread::current().id();
        let mut expected: Vec<ThreadId> = self.pending_by.clone();
        for t in self.last_by.iter().chain(std::iter::once(&me)) {
            if !expected.contains(t) {
                expected.push(*t);
            }
        }
        // The leader's own next record comes after this batch: it is not waited for.
        let target = expected.len() - usize::from(!self.pending_by.contains(&me));
        (target > pending).then(|| (target, Instant::now() + self.last_cycle.min(GATHER_MAX)))
    }

    /// Starts a gathering wait on `cv` for `target` pending records.
    pub(crate) fn start(&mut self, target: usize, cv: Arc<Condvar>) {
        self.waiting = Some((target, cv));
    }

    /// Ends the gathering wait.
    pub(crate) fn stop(&mut self) {
        self.waiting = None;
    }
}
