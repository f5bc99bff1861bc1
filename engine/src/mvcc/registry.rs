//! The seq registry (design.md §5, §10.3, §10.7): the published root record, every outstanding
//! snapshot's seq, and expiry. Registration, the minimum computation, pinning decisions and
//! pruning all happen under its one lock, so a snapshot can never register at a seq whose
//! history is being released.
//!
//! Expiry without races (§10.7): the writer marks a snapshot `expired` (under the lock) and
//! only then reads its `active` count; a reader increments `active` and only then reads
//! `expired` (both `SeqCst`). In every interleaving either the writer sees the reader active
//! (and keeps the snapshot's history for now) or the reader sees the flag (and returns
//! `SnapshotExpired` before touching a block). A snapshot that is expired and inactive is
//! swept: its seq stops holding history back.
//!
//! That is the store-buffering (Dekker) pattern: each side stores one flag, then loads the
//! other's. `SeqCst` on all four accesses suffices in the C++ model, but each side also
//! issues a `fence(SeqCst)` between its store and its load: loom treats `SeqCst` accesses
//! as `AcqRel` (and then finds the interleaving where both loads miss, a false alarm) but
//! models `SeqCst` fences exactly, so with the fences `loom-tests` model (g) checks this
//! protocol. On the reader's path the fence follows a locked RMW, so it costs little next
//! to the block fetch it guards.

use std::collections::BTreeMap;

use arbor_format::ChildPtr;

use crate::sync::{fence, lock, Arc, AtomicBool, AtomicU32, Condvar, Mutex, MutexGuard, Ordering};
use crate::{Error, Result};

/// What a commit publishes (§10.3): immutable once built. A snapshot copies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootRecord {
    /// The commit's seq: every change with seq ≤ this is visible.
    pub seq: u64,
    /// The generation open when the commit was published. Blocks of older generations are
    /// frozen: nothing newer than `seq` changed them.
    pub gen: u64,
    /// The catalog root as of `seq`.
    pub catalog: ChildPtr,
}

/// One registered snapshot.
pub struct SnapState {
    pub seq: u64,
    id: u64,
    expired: AtomicBool,
    /// Reader operations in progress (each pins the snapshot's history, §10.7).
    active: AtomicU32,
    owner: std::thread::ThreadId,
}

/// Proof that a reader operation is in progress on a live snapshot; released on drop.
pub struct ActiveGuard<'a>(&'a SnapState);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl SnapState {
    /// Starts one reader operation (a get, one iterator step, one block fetch).
    #[inline]
    pub fn enter(&self) -> Result<ActiveGuard<'_>> {
        self.active.fetch_add(1, Ordering::SeqCst);
        let guard = ActiveGuard(self);
        // Between our store (active) and our load (expired): see the module comment.
        fence(Ordering::SeqCst);
        if self.expired.load(Ordering::SeqCst) {
            return Err(Error::SnapshotExpired { what: String::new() });
        }
        Ok(guard)
    }

    pub fn is_expired(&self) -> bool {
        self.expired.load(Ordering::SeqCst)
    }
}

/// The registry's state; the writer works on it through [`Registry::lock`].
pub struct RegInner {
    root: RootRecord,
    /// Outstanding snapshots by (seq, id): expired ones stay until swept.
    snaps: BTreeMap<(u64, u64), Arc<SnapState>>,
    next_id: u64,
    /// Snapshots expired so far.
    pub expirations: u64,
    /// Which bound the last expiry reached, for the expired snapshots' error.
    pub expiry_reason: String,
    /// Bumped whenever a snapshot leaves (drop or sweep): pins may be releasable.
    pub departures: u64,
    /// Writers waiting on `Registry::departed` (`SnapshotPolicy::WriterWaits`): a snapshot's
    /// drop signals the condvar only when there is one (a signal is a system call).
    pub departure_waiters: usize,
    /// Test-only switches that break the rules on purpose, so tests and loom models can show
    /// they detect the breakage: prune with `<=`, and never pin. Off unless a test sets them;
    /// built only for tests, loom and the `fault-injection` feature.
    #[cfg(any(test, loom, feature = "fault-injection"))]
    pub broken_prune_inclusive: bool,
    #[cfg(any(test, loom, feature = "fault-injection"))]
    pub broken_no_pinning: bool,
}

pub struct Registry {
    inner: Mutex<RegInner>,
    /// Signalled when a snapshot is dropped (for `SnapshotPolicy::WriterWaits`).
    pub departed: Condvar,
}

impl Registry {
    pub fn new(root: RootRecord) -> Registry {
        Registry {
            inner: Mutex::new(RegInner {
                root,
                snaps: BTreeMap::new(),
                next_id: 0,
                expirations: 0,
                expiry_reason: String::new(),
                departures: 0,
                departure_waiters: 0,
                #[cfg(any(test, loom, feature = "fault-injection"))]
                broken_prune_inclusive: false,
                #[cfg(any(test, loom, feature = "fault-injection"))]
                broken_no_pinning: false,
            }),
            departed: Condvar::new(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, RegInner> {
        lock(&self.inner)
    }

    /// Registers a snapshot at the published record's seq.
    pub fn register(&self) -> (RootRecord, Arc<SnapState>) {
        let mut r = self.lock();
        let root = r.root;
        let id = r.next_id;
        r.next_id += 1;
        let state = Arc::new(SnapState {
            seq: root.seq,
            id,
            expired: AtomicBool::new(false),
            active: AtomicU32::new(0),
            owner: std::thread::current().id(),
        });
        let old = r.snaps.insert((root.seq, id), Arc::clone(&state));
        debug_assert!(old.is_none(), "snapshot id {id} registered twice");
        (root, state)
    }

    /// Releases a snapshot's seq (its `Drop`). Pruning happens later, at a commit.
    pub fn deregister(&self, state: &SnapState) {
        let mut r = self.lock();
        if r.snaps.remove(&(state.seq, state.id)).is_some() {
            r.departures += 1;
        }
        debug_assert!(state.seq <= r.root.seq, "snapshot at {} newer than the root", state.seq);
        let waiters = r.departure_waiters;
        drop(r);
        if waiters > 0 {
            self.departed.notify_all();
        }
    }

    /// The current record (what a snapshot taken now would see).
    pub fn root(&self) -> RootRecord {
        self.lock().root
    }
}

impl RegInner {
    /// Makes a commit visible: readers registering from now on start from `root`.
    pub fn publish(&mut self, root: RootRecord) {
        debug_assert!(root.seq >= self.root.seq, "published seqs never go back");
        debug_assert!(root.gen >= self.root.gen, "published generations never go back");
        self.root = root;
    }

    pub fn root(&self) -> RootRecord {
        self.root
    }

    /// Drops expired snapshots that no reader operation is using any more.
    pub fn sweep(&mut self) {
        // Between the writer's store (expired, maybe at an earlier commit) and its loads of
        // `active`: see the module comment.
        fence(Ordering::SeqCst);
        let before = self.snaps.len();
        debug_assert!(self.snaps.keys().all(|(seq, _)| *seq <= self.root.seq));
        self.snaps.retain(|_, s| !(s.is_expired() && s.active.load(Ordering::SeqCst) == 0));
        self.departures += (before - self.snaps.len()) as u64;
    }

    /// Log entries with seq below this are needed by no outstanding snapshot: the oldest
    /// outstanding seq, or `next` (the next seq to hand out) when there is none. Entries are
    /// pruned strictly below it (design.md §5).
    pub fn prune_bound(&self, next: u64) -> u64 {
        let min = self.snaps.keys().next().map_or(next, |(seq, _)| *seq);
        debug_assert!(min <= next, "snapshot at seq {min} is newer than the next seq {next}");
        if self.prune_inclusive() {
            min + 1
        } else {
            min
        }
    }

    /// Whether an outstanding snapshot has a seq in `[a, f)`: a block identity allocated at
    /// `a` and freed at `f` is pinned while this holds (design.md §10.5).
    pub fn any_in(&self, a: u64, f: u64) -> bool {
        !self.no_pinning() && a < f && self.snaps.range((a, 0)..(f, 0)).next().is_some()
    }

    #[cfg(any(test, loom, feature = "fault-injection"))]
    fn prune_inclusive(&self) -> bool {
        self.broken_prune_inclusive
    }

    #[cfg(not(any(test, loom, feature = "fault-injection")))]
    fn prune_inclusive(&self) -> bool {
        false
    }

    #[cfg(any(test, loom, feature = "fault-injection"))]
    fn no_pinning(&self) -> bool {
        self.broken_no_pinning
    }

    #[cfg(not(any(test, loom, feature = "fault-injection")))]
    fn no_pinning(&self) -> bool {
        false
    }

    /// Live (not yet swept) snapshots and the oldest seq among them.
    pub fn live(&self) -> (usize, Option<u64>) {
        (self.snaps.len(), self.snaps.keys().next().map(|(s, _)| *s))
    }

    /// Expires the oldest snapshot not expired yet; false if there is none.
    pub fn expire_oldest(&mut self) -> bool {
        let oldest = self.snaps.values().find(|s| !s.is_expired()).cloned();
        match oldest {
            Some(s) => {
                s.expired.store(true, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                self.expirations += 1;
                true
            }
            None => false,
        }
    }

    /// Whether every outstanding snapshot belongs to the calling thread (a writer that
    /// waited for them would wait for itself, §10.7).
    pub fn all_held_by_caller(&self) -> bool {
        let me = std::thread::current().id();
        self.snaps.values().all(|s| s.owner == me)
    }
}
