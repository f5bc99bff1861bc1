//! The one sync facade (design.md §8): every lock, atomic, condvar and `Arc`
//! in the engine's shared state is imported from here, so that `--cfg loom` swaps them all
//! for loom's model-checked versions and `loom-tests/` checks the code that ships.

#[cfg(not(loom))]
mod imp {
    pub use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
    pub use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};
    pub use std::sync::{RwLockWriteGuard, WaitTimeoutResult, Weak};
    pub use std::thread;
}

#[cfg(loom)]
mod imp {
    pub use loom::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
    pub use loom::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};
    pub use loom::sync::{RwLockWriteGuard, WaitTimeoutResult};
    pub use loom::thread;
}

pub use imp::*;

/// Locks a mutex, recovering the data from a poisoned lock. A panic on another thread is a
/// bug we surface through that thread's own panic; this thread keeps the state it finds,
/// which every critical section keeps consistent before anything that can panic.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
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
