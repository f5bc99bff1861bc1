//! The snapshot bound (DESIGN §5, §10.7): mod-log entries plus images kept for readers are
//! limited by `Options::modlog_max_bytes`, pinned blocks by `Options::pinned_max_blocks`.
//! Past either limit the policy applies: `ExpireOldest` expires the oldest snapshots at a
//! commit (their next read returns `SnapshotExpired`; their history is released once no
//! reader operation is using it); `WriterWaits` makes the next transaction wait at
//! `begin_write` for snapshots to be dropped, and fail after the timeout — at once if every
//! outstanding snapshot belongs to the waiting thread.

use std::time::Instant;

use crate::db::Shared;
use crate::mvcc::RegInner;
use crate::options::{Options, SnapshotPolicy};
use crate::writer::retention;
use crate::writer::Writer;
use crate::{Error, Result};

fn over(w: &Writer, opts: &Options) -> bool {
    w.hist.memory_bytes() > opts.modlog_max_bytes || w.hist.pinned_blocks > opts.pinned_max_blocks
}

fn describe(w: &Writer, opts: &Options) -> String {
    format!(
        "{} history bytes of {} allowed, {} pinned blocks of {} allowed",
        w.hist.memory_bytes(),
        opts.modlog_max_bytes,
        w.hist.pinned_blocks,
        opts.pinned_max_blocks
    )
}

/// `ExpireOldest`, at a commit: expires oldest-first while over the bound. A snapshot with
/// a reader operation in progress is released at a later commit (§10.7 grace), so the loop
/// stops there rather than expiring every younger snapshot too.
pub(crate) fn expire_if_over(w: &mut Writer, db: &Shared, r: &mut RegInner) {
    if db.opts.snapshot_policy != SnapshotPolicy::ExpireOldest {
        return;
    }
    while over(w, &db.opts) && r.expire_oldest() {
        let before = r.departures;
        retention::settle(w, &db.store, r);
        if r.departures == before {
            break;
        }
    }
}

/// `WriterWaits`, at `begin_write`: waits until under the bound or the timeout passes.
pub(crate) fn enforce(w: &mut Writer, db: &Shared) -> Result<()> {
    let SnapshotPolicy::WriterWaits { timeout } = db.opts.snapshot_policy else { return Ok(()) };
    let deadline = Instant::now() + timeout;
    let mut r = db.registry.lock();
    loop {
        retention::settle(w, &db.store, &mut r);
        if !over(w, &db.opts) {
            return Ok(());
        }
        let now = Instant::now();
        if r.all_held_by_caller() || now >= deadline {
            return Err(Error::SnapshotBoundReached { what: describe(w, &db.opts) });
        }
        r = match db.registry.departed.wait_timeout(r, deadline - now) {
            Ok((g, _)) => g,
            Err(poisoned) => poisoned.into_inner().0,
        };
    }
}
