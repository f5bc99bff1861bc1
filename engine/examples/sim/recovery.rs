//! Recovery after a simulated power loss: reopen the crashed image (sometimes with read
//! faults, which must give an I/O error, never a silent fallback), read everything, place
//! the recovered state in commit order, check the store.

use std::ops::Range;

use arbor::check::{Problem, ProblemKind};
use arbor::io::{RandomFaults, SimDevice};
use arbor::{Db, Error};

use crate::ev;
use crate::faults;
use crate::model::State;
use crate::run::{guarded, sim_opts, Sim};
use crate::session::dump_snapshot;

/// Reopens a crashed device and judges what it recovered. `None` ends the life: the
/// device was damaged (after the damage was judged), or a failure was recorded.
pub fn recover(sim: &mut Sim, image: SimDevice) -> Option<(Db, SimDevice)> {
    sim.counters.crashes += 1;
    let damaged = !image.damage().is_empty();
    let read_faults = sim.rng.chance(20);
    if read_faults {
        let faults = RandomFaults { read_eio_ppm: 30_000, ..RandomFaults::default() };
        image.set_random_faults(faults, sim.rng.next_u64());
    }
    let mut opened = guarded(sim, |s| Db::open_on(Box::new(image.clone()), sim_opts(s)))?;
    if let Err(e @ Error::Io { .. }) = &opened {
        if image.fault_counts().read_errors == 0 {
            sim.fail("open", format!("open failed with I/O error {e} that no fault explains"));
            return None;
        }
        ev!(sim.trace, "open: read error, retrying without read faults");
        image.set_random_faults(RandomFaults::default(), 0);
        opened = guarded(sim, |s| Db::open_on(Box::new(image.clone()), sim_opts(s)))?;
    }
    let read_errors = image.fault_counts().read_errors;
    image.set_random_faults(RandomFaults::default(), 0);
    ev!(sim.trace, "open with read faults {read_faults}: {read_errors} read errors");
    let db = match opened {
        Ok(db) => db,
        Err(Error::Corrupt { addr, reason }) if damaged => {
            ev!(sim.trace, "open refused: corrupt at {addr}: {reason}");
            sim.counters.corrupt_detected += 1;
            return None;
        }
        Err(e) => {
            sim.fail("open", format!("reopen after a crash failed: {e}"));
            return None;
        }
    };
    let ok = guarded(sim, |s| judge_recovery(s, &db, &image)).unwrap_or(false);
    if !ok || damaged {
        let _ = guarded(sim, move |_| drop(db));
        return None;
    }
    Some((db, image))
}

/// What open reported about a recovery, and the damage the device carries.
struct Recovered {
    rejected: u32,
    damage: Vec<Range<u64>>,
}

/// Records a KNOWN event (see the crate doc): counted and printed, never a pass.
fn known(sim: &mut Sim, line: String) {
    ev!(sim.trace, "KNOWN {line}");
    sim.counters.known += 1;
    sim.known.push((sim.trace.step, line));
}

/// Compares the recovered store with the history and checks it. Returns whether the life
/// can go on (false after a failure or detected damage).
fn judge_recovery(sim: &mut Sim, db: &Db, dev: &SimDevice) -> bool {
    let stats = db.stats();
    let r = Recovered { rejected: stats.rejected_superblock_copies, damage: dev.damage() };
    let (generation, rejected) = (stats.generation_durable, r.rejected);
    let replayed = stats.records_replayed;
    ev!(sim.trace, "recovered generation {generation}, replayed {replayed}, rejected {rejected}");
    let Some(got) = read_recovered(sim, db, &r) else { return false };
    let Some(index) = place_in_history(sim, &got, &r, dev) else { return false };
    if !check_store(sim, db, dev) {
        return false;
    }
    sim.history.recovered(index);
    true
}

/// Reads the whole recovered store; `None` when it cannot be read (a failure unless the
/// damage explains it).
fn read_recovered(sim: &mut Sim, db: &Db, r: &Recovered) -> Option<State> {
    let step = sim.trace.step;
    match dump_snapshot(&db.snapshot().expect("snapshot")) {
        Ok(got) => Some(got),
        Err(Error::Corrupt { addr, reason }) if faults::explains(&r.damage, addr, &sim.cfg) => {
            ev!(sim.trace, "recovered store: corrupt at {addr} ({reason}), damage explains it");
            sim.counters.corrupt_detected += 1;
            None
        }
        // Every copy of the newest superblock damaged: open takes the older one, whose
        // blocks may have been reused since (see `place_in_history`).
        Err(Error::Corrupt { addr, reason }) if !r.damage.is_empty() && r.rejected > 0 => {
            let rejected = r.rejected;
            known(
                sim,
                format!(
                    "step {step}: {rejected} damaged superblock copies; the older checkpoint \
                     is unreadable (corrupt at {addr}: {reason})"
                ),
            );
            None
        }
        Err(e) => {
            sim.fail("recovery-read", format!("reading the recovered store: {e}"));
            None
        }
    }
}

/// Where the recovered state sits in commit order; `None` (after recording why) unless it
/// is a commit no older than the last acknowledged one.
fn place_in_history(sim: &mut Sim, got: &State, r: &Recovered, dev: &SimDevice) -> Option<usize> {
    let (step, h) = (sim.trace.step, &sim.history);
    let (acked, count, rejected) = (h.acked, h.states.len(), r.rejected);
    let lost = |i: usize| format!("recovered commit {i} of {count} but {acked} was acknowledged");
    match h.position(got) {
        Some(i) if i >= acked => {
            ev!(sim.trace, "recovered commit {i} of {count} (acked {acked})");
            return Some(i);
        }
        // Damage to every copy of the newest superblock looks like a torn superblock write
        // (both copies go out in one write): open takes the older checkpoint. The one case
        // the journal cannot tell apart (design.md §11.8); counted as KNOWN, never a pass.
        // Likewise damage to both copies of a block of the last journal batch: exactly what
        // a torn last batch looks like (never acknowledged, dropped, design.md §11.7).
        Some(i)
            if !r.damage.is_empty()
                && (rejected > 0 || faults::hits_journal(&r.damage, &sim.cfg)) =>
        {
            let why = format!("{rejected} rejected superblock copies, or journal damage");
            known(sim, format!("step {step}: {}; {why} after injected damage", lost(i)));
        }
        // A write the device acknowledged and never stored (or stored elsewhere) for every
        // copy of the newest superblock leaves the older superblock looking newest: no
        // single-device store can tell. Counted apart, like KNOWN, never as a pass.
        // The same for a lost write of the last journal batch (both copies go out in one
        // write): it looks exactly like a torn last batch, which was never acknowledged.
        Some(i)
            if faults::hits_superblocks(&r.damage, &sim.cfg) && lost_writes(dev)
                || faults::hits_journal(&r.damage, &sim.cfg) && lost_writes(dev) =>
        {
            let line = format!(
                "step {step}: {}; the newest superblock's or journal batch's writes were lost",
                lost(i)
            );
            ev!(sim.trace, "LOST-WRITE {line}");
            sim.counters.lost_write += 1;
            sim.known.push((step, format!("(lost superblock write) {line}")));
        }
        Some(i) => {
            let detail = format!("{} (rejected {rejected}, damage {})", lost(i), r.damage.len());
            sim.fail("lost-ack", detail);
        }
        None => {
            let newest = h.last().diff(got);
            sim.fail("wrong-state", format!("recovered state is no committed state: {newest}"));
        }
    }
    None
}

/// Whether the device lost or misdirected writes (in this life: the record survives crashes
/// as damage, the counters do not, so damage beyond bit flips is the sign).
fn lost_writes(dev: &SimDevice) -> bool {
    dev.damage().iter().any(|d| d.end - d.start > 1)
}

/// `db.check()` must be clean, unless injected damage explains every finding. A check that
/// met injected read errors (its findings then follow from the unreadable blocks) is run
/// again with read faults paused, and that one must be clean.
pub fn check_store(sim: &mut Sim, db: &Db, dev: &SimDevice) -> bool {
    sim.counters.ops += 1;
    let read_errors = dev.fault_counts().read_errors;
    let result = db.check();
    if dev.fault_counts().read_errors > read_errors {
        let clean = match &result {
            Ok(report) => report.findings.iter().all(|p| p.detail.contains("I/O error")),
            Err(e) => matches!(e, Error::Io { .. }),
        };
        ev!(sim.trace, "check met read errors (only their findings: {clean}); again without");
        dev.pause_random_faults(true);
        let again = check_store(sim, db, dev);
        dev.pause_random_faults(false);
        return again;
    }
    let damage = dev.damage();
    match result {
        Ok(report) if report.is_ok() => true,
        Ok(report) => {
            // A damaged block hides what lies below it: the blocks only it reached look
            // leaked and its tree's entry count looks wrong. Those follow from it.
            let explained = |p: &&Problem| faults::explains(&damage, p.addr, &sim.cfg);
            let root_cause = report.findings.iter().any(|p| {
                explained(&p) && matches!(p.kind, ProblemKind::Block | ProblemKind::Allocator)
            });
            let follows = |p: &&Problem| {
                root_cause && matches!(p.kind, ProblemKind::Leaked | ProblemKind::EntryCount)
            };
            let unexplained: Vec<_> = report
                .findings
                .iter()
                .filter(|p| !explained(p) && !follows(p))
                .map(|p| format!("{} at {}: {}", p.kind.name(), p.addr, p.detail))
                .collect();
            if unexplained.is_empty() {
                sim.counters.corrupt_detected += 1;
                ev!(sim.trace, "check: {} finding(s), damage explains them", report.findings.len());
                return false;
            }
            sim.fail("check", format!("check found {:?}", unexplained));
            false
        }
        Err(Error::Corrupt { addr, .. }) if faults::explains(&damage, addr, &sim.cfg) => {
            sim.counters.corrupt_detected += 1;
            false
        }
        Err(e) => {
            sim.fail("check", format!("check failed: {e}"));
            false
        }
    }
}
