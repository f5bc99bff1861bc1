//! `sim`: a deterministic whole-system simulator for Arbor, in the spirit of TigerBeetle's
//! VOPR. One seed drives everything: the workload of several logical clients (every public
//! operation: named trees, `delete_tree`, inserts with empty, inline, overflow, maximum-size
//! and oversized keys and values, removes, gets, ranges both ways, commits of every
//! durability, aborts, dropped transactions, `flush`, snapshots held across commits and
//! read later, small snapshot bounds so snapshots expire), the simulated device's faults
//! (torn and reordered unflushed writes at every crash, power cuts in the middle of a
//! device operation sequence, EIO on reads, writes and flushes, lost and misdirected
//! writes, bit rot at rest, full devices) and many simulated power losses, each followed by
//! `Db::open_on` on the crashed image.
//!
//! After every step the answers are checked against a model (a `BTreeMap` per tree and the
//! committed states in commit order): every acknowledged commit survives recovery and the
//! recovered state is the state after some commit no older than the last acknowledged one;
//! every snapshot read equals the model at that snapshot's commit (or `SnapshotExpired`
//! once the bound expired it); `db.check()` is clean after every recovery and now and then;
//! no panic (each step runs under `catch_unwind`); `Error::Corrupt` only where an injected
//! fault changed the bytes; a failed write or flush leaves the handle fail-stop.
//!
//! KNOWN: damage to every copy of the newest superblock (bit rot in both, or both writes lost
//! or misdirected) looks like a torn superblock write, so open takes the older checkpoint and
//! may lose acknowledged commits; damage anywhere else must be reported as `Corrupt` (the
//! journal's twin blocks and the no-fallback rule of design.md §11.8). Such recoveries are
//! counted and printed as KNOWN, never as passes and never as failures;
//! `--no-known-faults` leaves out the faults that cause them.
//!
//! Run one seed, a range, or as many seeds as fit a time budget:
//!
//! ```text
//! cargo run --release -p arbor --example sim -- --seed 7 --steps 5000
//! cargo run --release -p arbor --example sim -- --seeds 0..200 --steps 3000
//! cargo run --release -p arbor --example sim -- --time-budget 3600 --base-seed abc123 --jobs 2
//! ```
//!
//! Options: `--steps M` (per seed, default 3000), `--jobs N` (seeds run on N threads; each
//! seed stays single-threaded and deterministic), `--no-known-faults`, `--trace` (print every
//! event of one seed), `--paranoid` (scan the transaction's whole view after each of its
//! steps, to find the first operation that goes wrong), `--self-test-broken-pinning` (switch
//! the engine's pinned set off: the run must fail). `--base-seed S` (or `ARBOR_SIM_BASE_SEED`)
//! picks the seeds of a `--time-budget` run. A failure prints a one-line reproduction and
//! the exit status is 1; a step that makes no progress for two minutes counts as a failure.
//! The trace hash printed at the end is the same for every run of the same seeds.
//!
//! A crash/restart point is one simulated power loss followed by a recovery (reopen, full
//! read, placement in commit order, `check`).

mod client;
mod config;
mod faults;
mod model;
mod recovery;
mod run;
mod session;
mod trace;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use config::Flags;
use run::{Counters, SeedResult};

/// Steps run so far by every job (the watchdog's sign of life).
pub static PROGRESS: AtomicU64 = AtomicU64::new(0);

/// Seeds being run, for the watchdog's report.
static IN_FLIGHT: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// KNOWN events printed with their reproduction (the rest are counted).
const KNOWN_SHOWN: usize = 5;

/// A run with no step done for this long is hung: a deadlock inside the engine.
const HANG_SECS: u64 = 120;

/// Reports a hang (no step for `HANG_SECS`) with the seeds in flight and exits with 1: a
/// deadlock would otherwise eat the whole CI budget.
fn spawn_watchdog(steps: u64, flags: Flags) {
    std::thread::spawn(move || {
        let mut last = (PROGRESS.load(Ordering::Relaxed), Instant::now());
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = PROGRESS.load(Ordering::Relaxed);
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() >= Duration::from_secs(HANG_SECS) {
                let seeds = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner()).clone();
                println!("FAIL hang: no step for {HANG_SECS} s; seeds in flight {seeds:?}");
                for seed in seeds {
                    println!("  repro: {} --trace", repro(seed, steps, flags));
                }
                std::process::exit(1);
            }
        }
    });
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The message and place of the panic `payload` came from (recorded by the hook).
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let recorded = LAST_PANIC.with(|p| p.borrow_mut().take());
    recorded.unwrap_or_else(|| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into())
    })
}

#[derive(Clone)]
struct Args {
    seeds: SeedSource,
    steps: u64,
    jobs: usize,
    flags: Flags,
}

#[derive(Clone)]
enum SeedSource {
    List(std::ops::Range<u64>),
    Budget { secs: u64, base: u64 },
}

fn usage(msg: &str) -> ! {
    eprintln!("sim: {msg}");
    eprintln!(
        "usage: sim (--seed N | --seeds A..B | --time-budget SECS [--base-seed S]) \
         [--steps M] [--jobs N] [--no-known-faults] [--trace]"
    );
    std::process::exit(2)
}

fn number(v: Option<String>, what: &str) -> u64 {
    v.and_then(|s| s.parse().ok()).unwrap_or_else(|| usage(&format!("{what} needs a number")))
}

/// A seed base from any string (a commit hash, a date): FNV-1a of its bytes.
fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn parse_args() -> Args {
    let mut args = std::env::args().skip(1);
    let mut out = Args {
        seeds: SeedSource::List(0..1),
        steps: 3000,
        jobs: 1,
        flags: Flags { known_faults: true, trace: false, paranoid: false, break_pinning: false },
    };
    let mut budget = None;
    let mut base = std::env::var("ARBOR_SIM_BASE_SEED").ok().map(|s| hash_str(&s)).unwrap_or(0);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seed" => {
                let n = number(args.next(), "--seed");
                out.seeds = SeedSource::List(n..n + 1);
            }
            "--seeds" => {
                let v = args.next().unwrap_or_else(|| usage("--seeds needs A..B"));
                let (a, b) = v.split_once("..").unwrap_or_else(|| usage("--seeds needs A..B"));
                out.seeds =
                    SeedSource::List(number(Some(a.into()), "A")..number(Some(b.into()), "B"));
            }
            "--time-budget" => budget = Some(number(args.next(), "--time-budget")),
            "--base-seed" => base = hash_str(&args.next().unwrap_or_else(|| usage("--base-seed"))),
            "--steps" => out.steps = number(args.next(), "--steps"),
            "--jobs" => out.jobs = number(args.next(), "--jobs").max(1) as usize,
            "--no-known-faults" => out.flags.known_faults = false,
            "--trace" => out.flags.trace = true,
            "--paranoid" => out.flags.paranoid = true,
            "--self-test-broken-pinning" => out.flags.break_pinning = true,
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    if let Some(secs) = budget {
        out.seeds = SeedSource::Budget { secs, base };
    }
    out
}

/// The `index`-th seed of a budgeted run from `base` (splitmix64 of the pair).
fn derived_seed(base: u64, index: u64) -> u64 {
    let mut rng = arbor::io::SplitMix64(base ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.next_u64() >> 1
}

fn repro(seed: u64, steps: u64, flags: Flags) -> String {
    let mut extra = if flags.known_faults { "" } else { " --no-known-faults" }.to_string();
    if flags.break_pinning {
        extra.push_str(" --self-test-broken-pinning");
    }
    format!("cargo run --release -p arbor --example sim -- --seed {seed} --steps {steps}{extra}")
}

/// Runs the seeds the arguments name on `jobs` threads; results in seed-index order.
fn run_all(args: &Args) -> Vec<SeedResult> {
    let start = Instant::now();
    let next = AtomicU64::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..args.jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let seed = match &args.seeds {
                    SeedSource::List(r) if r.start + i < r.end => r.start + i,
                    SeedSource::List(_) => break,
                    SeedSource::Budget { secs, base } => {
                        if start.elapsed() >= Duration::from_secs(*secs) {
                            break;
                        }
                        derived_seed(*base, i)
                    }
                };
                IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner()).push(seed);
                let result = run::run_seed(seed, args.steps, args.flags);
                IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner()).retain(|&s| s != seed);
                if let Some(f) = &result.failure {
                    println!("FAIL seed {seed} step {}: {}: {}", f.step, f.class, f.detail);
                    println!("  repro: {}", repro(seed, f.step, args.flags));
                }
                results.lock().unwrap_or_else(|e| e.into_inner()).push((i, result));
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

fn main() {
    let args = parse_args();
    std::panic::set_hook(Box::new(|info| {
        let msg = info.to_string().replace('\n', " ");
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(msg));
    }));
    spawn_watchdog(args.steps, args.flags);
    let start = Instant::now();
    let results = run_all(&args);
    let failures = summarize(&args, &results, start.elapsed().as_secs_f64());
    if failures > 0 {
        std::process::exit(1);
    }
}

/// Prints the KNOWN events (the first few with their reproductions) and the summary line;
/// returns the number of failed seeds.
fn summarize(args: &Args, results: &[SeedResult], secs: f64) -> usize {
    let mut total = Counters::default();
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut failures = 0;
    let mut known_lines = Vec::new();
    for r in results {
        total.add(&r.counters);
        hash = (hash ^ r.trace_hash).wrapping_mul(0x100_0000_01b3);
        failures += usize::from(r.failure.is_some());
        for (step, line) in &r.known {
            let repro = repro(r.seed, *step, args.flags);
            known_lines.push(format!("seed {} {line}\n  repro: {repro}", r.seed));
        }
    }
    for line in known_lines.iter().take(KNOWN_SHOWN) {
        println!("KNOWN {line}");
    }
    if known_lines.len() > KNOWN_SHOWN {
        println!("KNOWN ... {} more", known_lines.len() - KNOWN_SHOWN);
    }
    println!(
        "sim: {} seeds, {} steps, {} crash/restart points, {} ops, {} commits, {} stores, \
         KNOWN {} (+{} lost superblock writes), corrupt detected {}, NoSpace {}, expired {}, \
         I/O errors {}, failures {}, \
         {:.1} s ({:.0} points/s), trace hash {:016x}",
        results.len(),
        total.steps,
        total.crashes,
        total.ops,
        total.commits,
        total.lives,
        total.known,
        total.lost_write,
        total.corrupt_detected,
        total.no_space,
        total.expired,
        total.io_errors,
        failures,
        secs,
        total.crashes as f64 / secs.max(1e-9),
        hash
    );
    failures
}
