//! Test-only fault points: a test arms one on its own thread, and the next time engine code
//! running on that thread reaches the point, it panics, as a bug there would. Armed per
//! thread, so tests running in parallel never trip each other's faults. Public (hidden) only
//! with the `fault-injection` feature, which the engine's own tests enable; in other builds
//! [`hit`] compiles to nothing.

/// Where an armed fault panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultPoint {
    /// The allocator frees a run (a commit applying its frees, an abort, a repair).
    AllocatorFree,
    /// A flush leader has written a generation's blocks and superblock but not flushed them
    /// (no engine lock is held there).
    WriteOut,
    /// An insert into a tree is about to change it.
    TreeInsert,
    /// A journal leader has written its batch but not flushed it (no engine lock is held).
    JournalWrite,
}

#[cfg(any(test, feature = "fault-injection"))]
mod armed {
    use std::cell::Cell;

    use super::FaultPoint;

    thread_local! {
        static ARMED: Cell<Option<FaultPoint>> = const { Cell::new(None) };
    }

    /// Arms `point` on this thread: the next time this thread reaches it, it panics.
    pub fn arm_panic(point: FaultPoint) {
        ARMED.with(|a| a.set(Some(point)));
    }

    /// Disarms this thread's fault, if one is armed and not yet hit.
    pub fn disarm() {
        ARMED.with(|a| a.set(None));
    }

    pub(crate) fn hit(point: FaultPoint) {
        if ARMED.with(|a| a.get()) == Some(point) {
            disarm();
            panic!("fault injection: panic at {point:?}");
        }
    }
}

#[cfg(any(test, feature = "fault-injection"))]
pub use armed::{arm_panic, disarm};

#[cfg(any(test, feature = "fault-injection"))]
pub(crate) use armed::hit;

#[cfg(not(any(test, feature = "fault-injection")))]
#[inline(always)]
pub(crate) fn hit(_point: FaultPoint) {}
