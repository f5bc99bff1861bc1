//! (h) The commit hand-off: group commit with at most one generation in flight (design.md §4,
//! §10.10, §10.15; `engine/src/durable/pipeline.rs`).
//!
//! The engine's own `Pipeline::hand_off` runs here over a toy writer (the open generation,
//! the generation of the last commit) and a fake flush that records, outside the model,
//! which generations it wrote and whether it failed. A commit takes the writer lock,
//! "publishes" in the open generation and hands off with the guard held, as `txn/write.rs` does;
//! `Db::flush` reads the last commit's generation and hands off without the guard.
//!
//! Invariants, in every interleaving: a call that waits returns `Ok` only after a flush
//! covering its generation completed; at most one flush is in flight; no generation is
//! flushed twice and every flushed generation holds a commit (so flushes ≤ generations ≤
//! commits); after a failed flush no flush starts, the failed leader gets the I/O error and
//! every commit in a later generation an error, never `Ok`. The passing models also assert
//! that loom reached a shared flush (3 commits, 2 flushes) as well as unshared ones.
//!
//! The broken variant is the classic group-commit bug: a waiter returns when the flush it
//! waited on ends, without checking that it covered its generation (a commit that joined G
//! is acknowledged by G−1's flush). loom finds the interleaving where a commit joins G while
//! G−1 is being flushed.
#![cfg(loom)]

use std::sync::Mutex as GhostMutex;

use arbor::commit::{DurableMark, DurableState, Handoff, Pipeline};
use arbor::sync::{lock, thread, Arc, AtomicUsize, Condvar, Mutex, Ordering};
use arbor::{Error, Result};
use arbor_loom_tests::Outcomes;

/// The writer state behind the writer lock.
struct Toy {
    /// The open generation: commits publish in it, a freeze closes it.
    gen: u64,
    /// The generation of the last commit (what `Db::flush` makes durable).
    last_commit_gen: u64,
    /// The generation of every commit, in commit order.
    published: Vec<u64>,
}

/// What the fake device did. Ghost state, outside the model: plain std, never contended
/// (loom runs one thread at a time and no loom operation happens while it is held).
#[derive(Default)]
struct Ghost {
    /// Generations whose flush completed successfully, in completion order.
    flushed: Vec<u64>,
    /// The generation whose flush failed, if one did.
    failed: Option<u64>,
}

/// A fake device: `write_out` "writes" and flushes a frozen generation (a bare number).
struct Disk {
    /// Flushes between their start and their end. A loom atomic, so the flush is a window
    /// in which loom can run the other threads.
    in_flight: AtomicUsize,
    ghost: GhostMutex<Ghost>,
    /// The generation whose flush fails.
    fail_gen: Option<u64>,
}

impl Disk {
    fn ghost(&self) -> std::sync::MutexGuard<'_, Ghost> {
        self.ghost.lock().expect("ghost state is never poisoned")
    }

    /// Whether a completed flush covers generation `gen` (each flush writes the open
    /// generation, which holds every commit not yet durable).
    fn covers(&self, gen: u64) -> bool {
        self.ghost().flushed.last().is_some_and(|&g| g >= gen)
    }
}

impl Handoff for Disk {
    type Writer = Toy;
    type Frozen = u64;

    fn open_gen(&self, w: &Toy) -> u64 {
        w.gen
    }

    fn freeze(&self, w: &mut Toy, durable: DurableMark) -> Result<u64> {
        assert!(durable.gen < w.gen, "the open generation is newer than the durable one");
        let gen = w.gen;
        w.gen += 1;
        Ok(gen)
    }

    fn write_out(&self, gen: u64) -> Result<DurableMark> {
        assert_eq!(self.in_flight.fetch_add(1, Ordering::SeqCst), 0, "two flushes in flight");
        {
            let g = self.ghost();
            assert!(g.failed.is_none(), "a flush started after a failed one");
            assert!(!g.flushed.contains(&gen), "generation {gen} flushed twice");
        }
        let ok = self.fail_gen != Some(gen);
        {
            let mut g = self.ghost();
            if ok {
                g.flushed.push(gen);
            } else {
                g.failed = Some(gen);
            }
        }
        assert_eq!(self.in_flight.fetch_sub(1, Ordering::SeqCst), 1, "two flushes in flight");
        if ok {
            Ok(DurableMark { gen, alternation: 0, superblock_crc: 0 })
        } else {
            Err(Error::from(std::io::Error::other("injected flush failure")))
        }
    }
}

struct Sys {
    writer: Mutex<Toy>,
    pipeline: Pipeline,
    disk: Disk,
}

impl Sys {
    fn new(fail_gen: Option<u64>) -> Sys {
        let state = DurableState {
            durable_gen: 0,
            flushing: false,
            failed: None,
            durable_alternation: 0,
            prev_crc: 0,
            released_whole: false,
        };
        Sys {
            writer: Mutex::new(Toy { gen: 1, last_commit_gen: 0, published: Vec::new() }),
            pipeline: Pipeline { state: Mutex::new(state), changed: Condvar::new() },
            disk: Disk { in_flight: AtomicUsize::new(0), ghost: GhostMutex::default(), fail_gen },
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    /// `Durability::Immediate` commit.
    Immediate,
    /// `Durability::Eventual` commit that is due: hands off without waiting.
    Eventual,
    /// `Db::flush`: hands off the last commit's generation without the writer guard.
    Flush,
    /// An Immediate commit through the broken hand-off.
    BrokenImmediate,
}

/// Runs one call; returns the generation it made (or asked to make) durable, and its result.
fn run(sys: &Sys, call: Call) -> (u64, Result<()>) {
    let (writer, pipeline, disk) = (&sys.writer, &sys.pipeline, &sys.disk);
    if call == Call::Flush {
        let target = lock(writer).last_commit_gen;
        let result = pipeline.hand_off(writer, None, disk, target, true);
        if result.is_ok() && target > 0 {
            assert!(disk.covers(target), "Db::flush returned Ok before {target} was durable");
        }
        return (target, result);
    }
    let mut w = lock(writer);
    let gen = w.gen;
    w.published.push(gen);
    w.last_commit_gen = gen;
    let result = match call {
        Call::Immediate => pipeline.hand_off(writer, Some(w), disk, gen, true),
        Call::Eventual => pipeline.hand_off(writer, Some(w), disk, gen, false),
        Call::BrokenImmediate => {
            pipeline.hand_off_broken_waiter_trusts_any_flush(writer, Some(w), disk, gen)
        }
        Call::Flush => unreachable!("handled above"),
    };
    if result.is_ok() && call != Call::Eventual {
        assert!(
            disk.covers(gen),
            "a commit in generation {gen} returned Ok before a flush covering it completed"
        );
    }
    (gen, result)
}

/// Runs `calls` on three threads (the first on the main thread) and checks every invariant
/// that holds at the end; returns (generation, result) per call and the flush count.
fn three(sys: &Arc<Sys>, calls: [Call; 3]) -> ([(u64, Result<()>); 3], usize) {
    let spawn = |call: Call| {
        let sys = Arc::clone(sys);
        thread::spawn(move || run(&sys, call))
    };
    let (t1, t2) = (spawn(calls[1]), spawn(calls[2]));
    let r0 = run(sys, calls[0]);
    let results = [r0, t1.join().expect("thread 1"), t2.join().expect("thread 2")];

    let w = lock(&sys.writer);
    let d = lock(&sys.pipeline.state);
    let g = sys.disk.ghost();
    assert!(!d.flushing, "a flush left running");
    assert_eq!(sys.disk.in_flight.load(Ordering::SeqCst), 0);
    assert!(g.flushed.windows(2).all(|p| p[0] < p[1]), "flushes out of order: {:?}", g.flushed);
    for gen in &g.flushed {
        assert!(w.published.contains(gen), "generation {gen} flushed without a commit");
    }
    assert_eq!(d.durable_gen, g.flushed.last().copied().unwrap_or(0), "durable_gen");
    assert_eq!(d.failed.is_some(), g.failed.is_some(), "the failure is recorded");
    (results, g.flushed.len())
}

static SHARED: Outcomes = Outcomes::new();

fn immediate_model(call: Call) {
    arbor_loom_tests::model(move || {
        let sys = Arc::new(Sys::new(None));
        let (results, flushes) = three(&sys, [call; 3]);
        for (gen, result) in &results {
            assert!(result.is_ok(), "commit in generation {gen} failed without a failure");
        }
        // Three commits: every one leads its own flush, or two share one.
        assert!((2..=3).contains(&flushes), "{flushes} flushes for three commits");
        SHARED.note(flushes);
    });
}

#[test]
fn every_commit_waits_for_its_flush_and_commits_share_flushes() {
    immediate_model(Call::Immediate);
    SHARED.assert_seen(&[2, 3], "flushes for three Immediate commits");
}

/// A waiter that trusts any flush's end: loom finds a commit acknowledged by the flush of
/// the generation before its own.
#[test]
#[should_panic(expected = "returned Ok before a flush covering it completed")]
fn broken_waiter_trusts_any_flush_is_caught() {
    immediate_model(Call::BrokenImmediate);
}

static MIXED: Outcomes = Outcomes::new();

/// An Immediate commit, a due Eventual commit (never waits) and `Db::flush` (no guard).
#[test]
fn flush_call_and_eventual_commit_share_the_pipeline() {
    arbor_loom_tests::model(|| {
        let sys = Arc::new(Sys::new(None));
        let calls = [Call::Immediate, Call::Eventual, Call::Flush];
        let (results, flushes) = three(&sys, calls);
        for (gen, result) in &results {
            assert!(result.is_ok(), "call for generation {gen} failed without a failure");
        }
        let eventual_gen = results[1].0;
        // 0: the Eventual commit's generation was left for a later flush; 1: it was flushed.
        MIXED.note(usize::from(sys.disk.covers(eventual_gen)));
        // 2 + n: `Db::flush` had n commits to cover (it reads the last commit's generation).
        MIXED.note(2 + usize::from(results[2].0 > 0));
        assert!(flushes <= 2, "{flushes} flushes for two commits");
    });
    MIXED.assert_seen(&[0, 1, 2, 3], "Eventual durable or not, Db::flush with work or none");
}

static FAILURE: Outcomes = Outcomes::new();

/// The flush of generation 2 fails: the first commit (generation 1) succeeds, and every
/// commit of generation 2 or later gets an error — the leader the I/O error, the rest
/// `PreviousIo` — whether it waited on the failed flush or started after it.
#[test]
fn a_failed_flush_fails_every_later_commit() {
    arbor_loom_tests::model(|| {
        let sys = Arc::new(Sys::new(Some(2)));
        let (results, _) = three(&sys, [Call::Immediate; 3]);
        assert_eq!(sys.disk.ghost().failed, Some(2), "generation 2 is always flushed");
        let mut io_errors = 0;
        for (gen, result) in &results {
            match result {
                Ok(()) => assert!(*gen < 2, "commit in generation {gen} Ok after the failure"),
                Err(Error::Io { .. }) => io_errors += 1,
                Err(Error::PreviousIo { .. }) => FAILURE.note(usize::try_from(*gen).expect("s")),
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert_eq!(io_errors, 1, "exactly the failed flush's leader gets the I/O error");
    });
    // PreviousIo in generation 2 (joined the failed flush) and in 3 (committed after it).
    FAILURE.assert_seen(&[2, 3], "PreviousIo in the failed generation and after it");
}
