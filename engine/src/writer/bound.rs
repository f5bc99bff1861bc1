//! The snapshot bound (design.md §5, §10.7): mod-log entries plus images kept for readers are
//! limited by `Options::modlog_max_bytes`, pinned blocks by `Options::pinned_max_blocks`.
//! Past either limit the policy applies: `ExpireOldest` expires the oldest snapshots at a
//! commit (their next read returns `SnapshotExpired`; their history is released once no
//! reader operation is using it); `WriterWaits` makes the next transaction wait at
//! `begin_write` for snapshots to be dropped, and fail after the timeout — at once if every
//! outstanding snapshot belongs to the waiting thread.

use std::time::Instant;

use crate::alloc::Allocator;
use crate::mvcc::{RegInner, Registry};
use crate::options::{Options, SnapshotPolicy};
use crate::store::Store;
use crate::writer::retention::History;
use crate::{Error, Result};

fn over(hist: &History, opts: &Options) -> bool {
    hist.memory_bytes() > opts.modlog_max_bytes || hist.pinned_blocks > opts.pinned_max_blocks
}

/// Names the bound that was reached, its value, what was held, and the option to raise.
fn describe(hist: &History, opts: &Options) -> String {
    let mut hits = Vec::new();
    if hist.memory_bytes() > opts.modlog_max_bytes {
        hits.push(format!(
            "{} bytes of mod log and retained images held for snapshots, over \
             Options::modlog_max_bytes = {}",
            hist.memory_bytes(),
            opts.modlog_max_bytes
        ));
    }
    if hist.pinned_blocks > opts.pinned_max_blocks {
        hits.push(format!(
            "{} freed blocks pinned by snapshots, over Options::pinned_max_blocks = {}",
            hist.pinned_blocks, opts.pinned_max_blocks
        ));
    }
    format!("{}; raise that option, or drop old snapshots sooner", hits.join(", and "))
}

/// What the bound works on: the writer's retention and allocator, the read path, and the
/// last seq handed out.
pub(crate) struct Held<'a> {
    pub hist: &'a mut History,
    pub alloc: &'a mut Allocator,
    pub store: &'a Store,
    pub last_seq: u64,
}

/// `ExpireOldest`, at a commit: expires oldest-first while over the bound. A snapshot with
/// a reader operation in progress is released at a later commit (§10.7 grace), so the loop
/// stops there rather than expiring every younger snapshot too.
pub(crate) fn expire_if_over(h: Held<'_>, opts: &Options, r: &mut RegInner) {
    if opts.snapshot_policy != SnapshotPolicy::ExpireOldest {
        return;
    }
    if over(h.hist, opts) {
        r.expiry_reason = describe(h.hist, opts);
    }
    while over(h.hist, opts) && r.expire_oldest() {
        let before = r.departures;
        h.hist.settle(h.alloc, h.store, r, h.last_seq);
        if r.departures == before {
            break;
        }
    }
}

/// `WriterWaits`, at `begin_write`: waits until under the bound or the timeout passes.
pub(crate) fn enforce(h: Held<'_>, opts: &Options, registry: &Registry) -> Result<()> {
    let SnapshotPolicy::WriterWaits { timeout } = opts.snapshot_policy else { return Ok(()) };
    let deadline = Instant::now() + timeout;
    let mut r = registry.lock();
    loop {
        h.hist.settle(h.alloc, h.store, &mut r, h.last_seq);
        if !over(h.hist, opts) {
            return Ok(());
        }
        let now = Instant::now();
        if r.all_held_by_caller() || now >= deadline {
            return Err(Error::SnapshotBoundReached { what: describe(h.hist, opts) });
        }
        // Counted under the lock that `deregister` reads it under: no departure is missed.
        r.departure_waiters += 1;
        r = match registry.departed.wait_timeout(r, deadline - now) {
            Ok((g, _)) => g,
            Err(poisoned) => poisoned.into_inner().0,
        };
        r.departure_waiters -= 1;
    }
}
