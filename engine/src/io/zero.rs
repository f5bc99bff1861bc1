//! The zero writes of a file growth step (design.md §10.16).
//!
//! `grow` allocates a step with `fallocate` before it returns, so the new space already
//! belongs to the file and reads as zeros. The zero writes only turn its unwritten extents
//! into written ones, so that later data syncs do not pay for the conversion. They are
//! deferred until a write first needs the space ([`Zeroing::wait_for`]): then a pass on a
//! helper thread zeroes the step, low addresses first, while the write waits only for its
//! own range, so a zero write never lands on data. Until then nothing is written: commits
//! that only allocate addresses (their blocks go out at a checkpoint) cause no I/O — an
//! eager pass made every commit's flush in its time carry megabytes of zeros. Nothing else
//! waits: a data sync makes the new size and extents durable by itself, and space not yet
//! zeroed reads as zeros either way. A step never written before the handle closes stays
//! unconverted (correct, only slower to sync into later). A failed zero write is logged and
//! ends the pass: the space stays allocated and correct, only unconverted.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::AlignedBuf;
use crate::sync::{self, thread, Arc, AtomicU64, Condvar, Mutex, Ordering};

/// Size of each zero write.
pub(super) const ZERO_WRITE_BYTES: usize = 4 << 20;

/// The descriptor a deferred pass writes through, until a write starts it.
struct Deferred {
    file: File,
    path: PathBuf,
    align: usize,
}

/// `[zeroed, end)`: the part of the growth not yet zeroed (empty when none is pending), and
/// the pass: deferred (not started), or active on its thread.
#[derive(Default)]
struct Progress {
    zeroed: u64,
    end: u64,
    deferred: Option<Deferred>,
    /// A pass thread is writing (set at its start, cleared by the thread as it ends).
    active: bool,
    running: Option<thread::JoinHandle<()>>,
}

#[derive(Default)]
struct State {
    progress: Mutex<Progress>,
    advanced: Condvar,
    /// `Progress::end` while a range is pending, else 0: the writes' check without the lock.
    pending_end: AtomicU64,
}

/// The deferred zeroing of one file.
#[derive(Default)]
pub(super) struct Zeroing {
    state: Arc<State>,
}

impl Zeroing {
    /// The step `[from, to)` was allocated: it is zeroed through `file` (a descriptor of its
    /// own) once a write needs it. Growth appends, so a step continues the pending range,
    /// which then simply grows (an active pass reads its end before each write).
    pub(super) fn defer(&self, file: File, path: &Path, from: u64, to: u64, align: usize) {
        let mut p = sync::lock(&self.state.progress);
        if p.end == from && p.end != 0 {
            p.end = to;
            self.state.pending_end.store(to, Ordering::Release);
            return;
        }
        // Not contiguous (not expected): the old range stays unconverted.
        p = self.stop(p, 0);
        let deferred = Some(Deferred { file, path: path.to_owned(), align });
        *p = Progress { zeroed: from, end: to, deferred, active: false, running: None };
        self.state.pending_end.store(to, Ordering::Release);
    }

    /// Ends zeroing at `at` (the file is about to be cut there): the bytes past it are not
    /// zeroed; returns once no zero write can land past `at`.
    pub(super) fn cut(&self, at: u64) {
        drop(self.stop(sync::lock(&self.state.progress), at));
    }

    /// Stops zeroing (the handle closes: a later open could write where a pass writes); the
    /// rest of the range stays unconverted.
    pub(super) fn finish(&self) {
        drop(self.stop(sync::lock(&self.state.progress), 0));
    }

    /// Lowers the end to `at` (not below what is zeroed) and waits until an active pass has
    /// ended (after at most the write it is making, when `at` is behind it); `at == 0` also
    /// drops a deferred pass.
    fn stop<'a>(
        &'a self,
        mut p: sync::MutexGuard<'a, Progress>,
        at: u64,
    ) -> sync::MutexGuard<'a, Progress> {
        if p.end > at {
            p.end = at.max(p.zeroed);
        }
        if at == 0 {
            p.deferred = None;
        }
        while p.active {
            p = match p.running.take() {
                Some(running) => {
                    drop(p);
                    let _ = running.join();
                    sync::lock(&self.state.progress)
                }
                None => sync::wait(&self.state.advanced, p),
            };
        }
        p
    }

    /// Waits until no byte of `[lo, hi)` is still to be zeroed, starting the pass if it was
    /// deferred.
    pub(super) fn wait_for(&self, lo: u64, hi: u64) {
        if self.state.pending_end.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut p = sync::lock(&self.state.progress);
        if lo < p.end && hi > p.zeroed {
            if let Some(d) = p.deferred.take() {
                let (from, state) = (p.zeroed, Arc::clone(&self.state));
                p.active = true;
                p.running = Some(thread::spawn(move || state.run(&d.file, &d.path, from, d.align)));
            }
        }
        // Without an active pass nothing will zero the range (`finish` dropped it): go on.
        while p.active && lo < p.end && hi > p.zeroed {
            p = sync::wait(&self.state.advanced, p);
        }
    }
}

impl State {
    fn run(&self, file: &File, path: &Path, from: u64, align: usize) {
        let zeros = AlignedBuf::zeroed(ZERO_WRITE_BYTES, align);
        let mut at = from;
        let mut result = Ok(());
        loop {
            let end = {
                let mut p = sync::lock(&self.progress);
                // The end is read again before each write: growth extends it, a cut lowers it.
                if at >= p.end || result.is_err() {
                    // Done (or given up): nothing is pending any more.
                    *p = Progress::default();
                    self.pending_end.store(0, Ordering::Release);
                    self.advanced.notify_all();
                    break;
                }
                p.end
            };
            let n = usize::try_from(end - at).unwrap_or(usize::MAX).min(ZERO_WRITE_BYTES);
            result = file.write_all_at(&zeros[..n], at);
            at += n as u64;
            sync::lock(&self.progress).zeroed = at;
            self.advanced.notify_all();
        }
        let result = result.and_then(|()| file.sync_all());
        if let Err(e) = result {
            log::warn!(
                "{}: zeroing grown space from {from} stopped at {at}: {e}; the space stays \
                 allocated, and writes into it may sync slower",
                path.display()
            );
        }
    }
}
