//! The zero writes of a file growth step, on a helper thread (design.md §10.16).
//!
//! `grow` allocates a step with `fallocate` before it returns, so the new space already
//! belongs to the file and reads as zeros. The zero writes only turn its unwritten extents
//! into written ones, so that later commits' data syncs do not pay for the conversion; they
//! need not hold up the writer that asked for the space (a bulk load paid for every doubling
//! step in its own time). They run on a helper thread, low addresses first, one pass at a
//! time, and a write into the part not yet zeroed waits for it ([`Zeroing::wait_for`]), so a
//! zero write never lands on data. Nothing else waits: a data sync makes the new size and
//! extents durable by itself (fdatasync writes the metadata needed to read the data back),
//! and space not yet zeroed reads as zeros either way. A failed zero write is logged and
//! ends the pass: the space stays allocated and correct, only unconverted.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::AlignedBuf;
use crate::sync::{self, thread, Arc, AtomicU64, Condvar, Mutex, Ordering};

/// Size of each zero write: small enough that a commit's flush queued behind one waits
/// little.
pub(super) const ZERO_WRITE_BYTES: usize = 512 << 10;

/// The pass's pace while no write waits for it: one zero write per this interval (256 MiB/s).
/// A flush makes durable whatever was written before it, so an unpaced pass makes every
/// commit's flush in its time carry megabytes of zeros; paced, a flush carries a few
/// hundred KiB at most. A write that needs the space makes the pass go at full speed.
const ZERO_PACE: std::time::Duration = std::time::Duration::from_millis(2);

/// `[zeroed, end)`: the part of the running pass not yet zeroed (empty when none runs).
#[derive(Default)]
struct Progress {
    zeroed: u64,
    end: u64,
}

#[derive(Default)]
struct State {
    progress: Mutex<Progress>,
    advanced: Condvar,
    /// `Progress::end` while a pass runs, else 0: the writes' check without the lock.
    pending_end: AtomicU64,
    /// Writes waiting for the pass (`Zeroing::wait_for`): while any waits, no pacing.
    waiting: AtomicU64,
}

/// The background zeroing of one file.
#[derive(Default)]
pub(super) struct Zeroing {
    state: Arc<State>,
    pass: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Zeroing {
    /// Zeroes `[from, to)` through `file` (a descriptor of its own) on a helper thread, once
    /// the pass before it, if any, has ended.
    pub(super) fn start(&self, file: File, path: &Path, from: u64, to: u64, align: usize) {
        let mut pass = sync::lock(&self.pass);
        if let Some(running) = pass.take() {
            let _ = running.join();
        }
        *sync::lock(&self.state.progress) = Progress { zeroed: from, end: to };
        self.state.pending_end.store(to, Ordering::Release);
        let state = Arc::clone(&self.state);
        let path = path.to_owned();
        *pass = Some(thread::spawn(move || state.run(&file, &path, from, to, align)));
    }

    /// Waits for the running pass, if any, to end (before the file is cut or closed).
    pub(super) fn finish(&self) {
        if let Some(running) = sync::lock(&self.pass).take() {
            self.state.waiting.fetch_add(1, Ordering::AcqRel);
            let _ = running.join();
            self.state.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Ends the running pass, if any, at `at` (the file is about to be cut there): the bytes
    /// past it are not zeroed, those before it are; returns once the pass has ended, so no
    /// zero write lands past `at` afterwards.
    pub(super) fn cut(&self, at: u64) {
        {
            let mut p = sync::lock(&self.state.progress);
            if p.end > at {
                p.end = at.max(p.zeroed);
            }
        }
        self.finish();
    }

    /// Waits until no byte of `[lo, hi)` is still to be zeroed.
    pub(super) fn wait_for(&self, lo: u64, hi: u64) {
        if self.state.pending_end.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut p = sync::lock(&self.state.progress);
        self.state.waiting.fetch_add(1, Ordering::AcqRel);
        while lo < p.end && hi > p.zeroed {
            p = match self.state.advanced.wait(p) {
                Ok(p) => p,
                Err(poisoned) => poisoned.into_inner(),
            };
        }
        self.state.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl State {
    fn run(&self, file: &File, path: &Path, from: u64, to: u64, align: usize) {
        let chunk = ZERO_WRITE_BYTES.min(usize::try_from(to - from).unwrap_or(usize::MAX));
        let zeros = AlignedBuf::zeroed(chunk, align);
        let mut at = from;
        let mut result = Ok(());
        // The end is read again before each write: `Zeroing::cut` may bring it down.
        let end = || sync::lock(&self.progress).end;
        while at < end() && result.is_ok() {
            let n = usize::try_from(end() - at).unwrap_or(usize::MAX).min(chunk);
            result = file.write_all_at(&zeros[..n], at);
            at += n as u64;
            sync::lock(&self.progress).zeroed = at;
            self.advanced.notify_all();
            if at < end() && self.waiting.load(Ordering::Acquire) == 0 {
                std::thread::sleep(ZERO_PACE);
            }
        }
        let result = result.and_then(|()| file.sync_all());
        if let Err(e) = result {
            log::warn!(
                "{}: zeroing grown space [{from}, {to}) stopped: {e}; the space stays \
                 allocated, and commits that write into it may sync slower",
                path.display()
            );
        }
        self.pending_end.store(0, Ordering::Release);
        *sync::lock(&self.progress) = Progress::default();
        self.advanced.notify_all();
    }
}
