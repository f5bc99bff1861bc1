//! The one sync facade (design.md §8): every lock, atomic, condvar and `Arc`
//! in the engine's shared state is imported from here, so that `--cfg loom` swaps them all
//! for loom's model-checked versions and `loom-tests/` checks the code that ships.

#[cfg(not(loom))]
mod imp {
    pub use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
    pub use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};
    pub use std::sync::{RwLockWriteGuard, TryLockError, WaitTimeoutResult, Weak};
    pub use std::thread;
}

#[cfg(loom)]
mod imp {
    pub use loom::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
    pub use loom::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};
    pub use loom::sync::{RwLockWriteGuard, WaitTimeoutResult};
    pub use loom::thread;
    // loom's locks report `try_lock` failures with std's type.
    pub use std::sync::TryLockError;

    /// loom has no weak references: under loom a `Weak` is a strong one that always
    /// upgrades (the models never close a store).
    pub struct Weak<T>(Arc<T>);

    impl<T> Weak<T> {
        pub fn upgrade(&self) -> Option<Arc<T>> {
            Some(Arc::clone(&self.0))
        }
    }

    /// `Arc::downgrade` for the loom `Weak` above.
    pub fn downgrade<T>(a: &Arc<T>) -> Weak<T> {
        Weak(Arc::clone(a))
    }
}

pub use imp::*;

/// `Arc::downgrade`, through the facade (loom has no weak references; see `imp`).
#[cfg(not(loom))]
pub fn downgrade<T>(a: &Arc<T>) -> Weak<T> {
    Arc::downgrade(a)
}

/// Locks a mutex, recovering the data from a poisoned lock. Only for state a panic cannot
/// leave half changed in a way that matters: the cache, the readers' table, block slots,
/// the stats figures, and the snapshot registry (whose writer-side changes happen under the
/// writer lock, so a panic there also fails the handle). The writer and the commit
/// pipeline's state are never recovered this way: a panic while either is held makes the
/// handle fail-stop (`commit::Pipeline::lock_writer`, `commit::Pipeline::state`).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// `Condvar::wait` with the same poisoning rule as [`lock`].
pub fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    match cv.wait(guard) {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// `Condvar::wait_timeout` with the same poisoning rule as [`lock`] (the caller re-checks
/// its condition and the time).
pub fn wait_timeout<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    dur: std::time::Duration,
) -> MutexGuard<'a, T> {
    match cv.wait_timeout(guard, dur) {
        Ok((g, _)) => g,
        Err(poisoned) => poisoned.into_inner().0,
    }
}

/// `RwLock::read` with the same poisoning rule as [`lock`].
pub fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    match l.read() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// `RwLock::write` with the same poisoning rule as [`lock`].
pub fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    match l.write() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Clears a mutex's poison, for the one release the engine knows left the data whole (a
/// clean abort while the caller's panic unwinds). loom's mutex never poisons.
pub fn clear_poison<T>(m: &Mutex<T>) {
    #[cfg(not(loom))]
    m.clear_poison();
    #[cfg(loom)]
    let _ = m;
}
