//! `arbor check [--repair [--rollback]]`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use arbor::check::{
    check_device, plan_rollback, repair_free_space, repair_superblocks, roll_back, DeviceCheck,
    JournalTail,
};
use arbor::BlockDevice;
use serde_json::json;

use crate::device::{open_writable, ReadOnlyDevice, SharedDevice};
use crate::error::{CliError, Result, EXIT_PROBLEMS};
use crate::info::slot_json;
use crate::rollback::{plan_json, plan_lines};
use crate::util::{progress, show_progress};

/// Cache of the store opened only to size `check`'s bar: its allocator, not its blocks.
const BAR_OPEN_CACHE_BYTES: u64 = 1 << 20;

/// Blocks the walk will visit: those in use outside the superblock area, as the newest
/// durable generation's allocator counts them (`Db::stats`). The store is opened read-only
/// and without a lock (the caller holds one). `None` when it does not open (damage): the
/// bar then uses the device's block count, an upper bound.
fn blocks_in_use(path: &Path) -> Option<u64> {
    let dev = ReadOnlyDevice::open(path, false).ok()?;
    let opts = arbor::Options {
        cache_bytes: BAR_OPEN_CACHE_BYTES,
        warm_on_open: false,
        ..arbor::Options::default()
    };
    let st = arbor::Db::open_on(Box::new(dev), opts).ok()?.stats();
    let reserved = st.blocks_reserved;
    Some(st.blocks_total.saturating_sub(st.blocks_free).saturating_sub(reserved))
}

fn run_check(path: &Path, dev: SharedDevice) -> Result<DeviceCheck> {
    let total =
        if show_progress() { blocks_in_use(path).unwrap_or(dev.len_bytes() / 4096) } else { 0 };
    let bar = progress(total, "check");
    let mut tick = |n: u64| bar.set_position(n.min(bar.length().unwrap_or(n)));
    let report = check_device(Box::new(dev), &mut tick).map_err(|e| CliError::store(path, e))?;
    bar.finish_and_clear();
    Ok(report)
}

pub fn check(path: &Path, repair: bool, rollback: bool, as_json: bool) -> Result<ExitCode> {
    let dev = if repair {
        open_writable(path)?
    } else {
        SharedDevice(Arc::new(ReadOnlyDevice::open(path, true)?))
    };
    let before = run_check(path, dev.clone())?;
    if !repair || before.is_ok() {
        print_report(&before, as_json, None)?;
        return Ok(exit_for(&before));
    }
    if !as_json {
        print_text(&before);
    }
    let mut rep = Repair::default();
    if !before.problems.is_empty() {
        match repair_superblocks(&dev, &before) {
            Ok(r) => rep.actions.extend(r.actions),
            Err(e) => rep.actions.push(format!("superblock repair not possible: {e}")),
        }
    }
    rep.rollback(path, &dev, &before, rollback, as_json);
    let mid = run_check(path, dev.clone())?;
    let newest = mid.generations.first();
    if newest.is_some_and(|g| g.data_intact() && !g.report.is_ok()) {
        let db = arbor::Db::open_on(Box::new(dev.clone()), arbor::Options::default())
            .map_err(|e| CliError::store(path, e))?;
        match repair_free_space(&db) {
            Ok((freed, marked)) => rep.actions.push(format!(
                "rebuilt the free-space map: freed {freed} leaked block(s), marked {marked} \
                 block(s) in use"
            )),
            Err(e) => rep.actions.push(format!("free-space repair not possible: {e}")),
        }
        db.flush().map_err(|e| CliError::store(path, e))?;
    }
    let after = run_check(path, dev)?;
    print_report(&before, as_json, Some((&rep, &after)))?;
    Ok(exit_for(&after))
}

/// What `--repair` did, and the rollback it did or would do.
#[derive(Default)]
struct Repair {
    actions: Vec<String>,
    /// The rollback's loss report (JSON), when the newest generation's data is damaged.
    plan: Option<serde_json::Value>,
}

impl Repair {
    /// Rolls back with `--rollback` after printing what it loses; without it, says what
    /// `--rollback` would lose and changes nothing (design.md §11.8).
    fn rollback(
        &mut self,
        path: &Path,
        dev: &SharedDevice,
        before: &DeviceCheck,
        rollback: bool,
        as_json: bool,
    ) {
        let plan = match plan_rollback(Box::new(dev.clone()), before) {
            Ok(Some(plan)) => plan,
            Ok(None) if rollback => {
                let msg =
                    "--rollback: nothing to roll back (the newest generation's data is intact)";
                return self.actions.push(msg.into());
            }
            Ok(None) => return,
            Err(e) => return self.actions.push(format!("rollback not possible: {e}")),
        };
        self.plan = Some(plan_json(&plan, rollback));
        if !as_json {
            plan_lines(&plan, rollback).iter().for_each(|l| println!("{l}"));
        }
        if rollback {
            match roll_back(dev, before, &plan) {
                Ok(r) => self.actions.extend(r.actions),
                Err(e) => self.actions.push(format!("rollback failed: {e}")),
            }
            return;
        }
        self.actions.push(format!(
            "not rolled back: generation {} (the newest) has damaged data and the only repair \
             is to discard it (see above); `arbor check {} --repair --rollback` does that",
            plan.discarded,
            path.display()
        ));
        let changed = if self.actions.len() > 1 { "nothing else" } else { "nothing" };
        self.actions.push(format!("{changed} was changed"));
    }
}

fn exit_for(report: &DeviceCheck) -> ExitCode {
    if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROBLEMS as u8)
    }
}

fn report_json(r: &DeviceCheck) -> serde_json::Value {
    let gens: Vec<_> = r
        .generations
        .iter()
        .map(|g| {
            let rep = &g.report;
            json!({
                "generation": g.generation,
                "slots": g.slots,
                "full_check": g.full,
                "trees": rep.trees,
                "entries": rep.entries,
                "tree_blocks": rep.tree_blocks,
                "overflow_blocks": rep.overflow_blocks,
                "allocator_blocks": rep.allocator_blocks,
                "pending_blocks": rep.pending_blocks,
                "free_blocks": rep.free_blocks,
                "underfull_nodes": rep.underfull_nodes,
                "ok": rep.is_ok(),
            })
        })
        .collect();
    let problems: Vec<_> = r
        .findings()
        .map(|p| json!({"kind": p.kind.name(), "block": p.addr, "detail": p.detail}))
        .collect();
    json!({
        "ok": r.is_ok(),
        "block_bytes": r.block_bytes,
        "device_bytes": r.device_bytes,
        "slots": r.slots.iter().map(slot_json).collect::<Vec<_>>(),
        "generations": gens,
        "opens_at": r.opens_at,
        "open_error": r.open_error,
        "journal": r.journal.as_ref().map(|j| json!({
            "records": j.records,
            "last_seq": j.last_seq,
            "skipped": j.skipped,
            "dropped": j.dropped,
        })),
        "problems": problems,
    })
}

/// What open would replay of the journal, in one line.
fn journal_line(j: &JournalTail) -> String {
    let mut line = match j.records {
        0 => format!("journal: no commits past the checkpoint (seq {})", j.last_seq),
        n => format!(
            "journal: {n} commit(s) past the checkpoint, replayed at open (through seq {})",
            j.last_seq
        ),
    };
    if j.skipped > 0 {
        let n = j.skipped;
        line += &format!("; {n} after an unfinished large-transaction checkpoint, skipped");
    }
    if j.dropped > 0 {
        line += &format!("; {} of a torn last batch (never acknowledged), dropped", j.dropped);
    }
    line
}

type Repaired<'a> = Option<(&'a Repair, &'a DeviceCheck)>;

/// Prints the report; after a repair, text mode has printed `r` (and the rollback's loss
/// report) already and adds what was done and the check after it.
fn print_report(r: &DeviceCheck, as_json: bool, repaired: Repaired<'_>) -> Result<()> {
    if as_json {
        let mut out = report_json(r);
        if let Some((rep, after)) = repaired {
            out["repair"] = json!({
                "actions": rep.actions,
                "rollback": rep.plan,
                "after": report_json(after),
            });
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let Some((rep, after)) = repaired else {
        print_text(r);
        return Ok(());
    };
    println!("repair:");
    for a in &rep.actions {
        println!("  {a}");
    }
    if rep.actions.is_empty() {
        println!("  nothing this tool can repair without inventing data");
    }
    println!("after repair:");
    print_text(after);
    Ok(())
}

fn print_text(r: &DeviceCheck) {
    for s in &r.slots {
        let state = match (&s.state, s.generation()) {
            (_, Some(g)) => format!("valid, generation {g}"),
            (arbor::check::SlotState::Empty, None) => "empty".into(),
            (arbor::check::SlotState::Invalid(why), None) => format!("invalid: {why}"),
            _ => "unknown".into(),
        };
        println!("slot {} (offset {}): {state}", s.slot, s.offset);
    }
    for g in &r.generations {
        let rep = &g.report;
        let verdict = if rep.is_ok() {
            "ok".to_string()
        } else {
            format!("{} problem(s)", rep.findings.len())
        };
        if !g.full {
            println!(
                "generation {} (slots {:?}, fallback): {} trees, {} blocks not shared with the \
                 newest verified, allocator loads: {verdict}",
                g.generation, g.slots, rep.trees, rep.tree_blocks
            );
            continue;
        }
        println!(
            "generation {} (slots {:?}, full check): {} trees, {} entries, {} tree blocks, {} \
             overflow blocks, {} allocator blocks, {} pending, {} free, {} underfull nodes: \
             {verdict}",
            g.generation,
            g.slots,
            rep.trees,
            rep.entries,
            rep.tree_blocks,
            rep.overflow_blocks,
            rep.allocator_blocks,
            rep.pending_blocks,
            rep.free_blocks,
            rep.underfull_nodes
        );
    }
    match (r.opens_at, &r.open_error) {
        (Some(g), _) => println!("open recovers generation {g}"),
        (None, Some(e)) => println!("open fails: {e}"),
        _ => {}
    }
    if let Some(j) = &r.journal {
        println!("{}", journal_line(j));
    }
    let problems: Vec<_> = r.findings().collect();
    if problems.is_empty() {
        println!("no problems found");
        return;
    }
    println!("{} problem(s):", problems.len());
    for p in problems {
        println!("  {p}");
    }
}
