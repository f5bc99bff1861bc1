//! `arbor check --repair`: the only repairs that invent nothing.
//!
//! 1. **Superblocks** ([`repair_superblocks`]): restore a damaged or missing copy from its
//!    verified twin. Loses nothing.
//! 2. **Free space** ([`repair_free_space`]): on an open store whose trees all verify, free
//!    leaked blocks and mark allocated the blocks a tree reaches that the bitmap calls free,
//!    then commit once (the allocator persists its dirty chunks with the commit).
//! 3. **Rollback**, only when asked (`--rollback`; design.md §11.8: nothing rolls back
//!    silently): when the newest checkpoint's data is damaged and an older one's is intact,
//!    [`plan_rollback`] reports what going back would lose (each tree's entries in both
//!    states as far as readable, the journal records after the newest checkpoint) and
//!    [`roll_back`] does it: a *new* superblock carrying the older checkpoint's roots under a
//!    generation number larger than any slot has seen (design.md §10.11: a generation number
//!    is never reused, so stale blocks of the abandoned generation can never pass for current
//!    ones), written into the alternation the damaged generation held — never over the intact
//!    one — with its journal replay start moved to the journal's end: the records between the
//!    older checkpoint's replay start and the end belong to the abandoned history (the ring
//!    may have reused part of it, and replaying the rest onto the older roots could stop at
//!    the gap and fail open), so none is replayed (design.md §11.7).
//!
//! Anything else (a bad tree block, keys out of order, a block used twice, a wrong entry
//! count) is reported and left alone: fixing it would mean guessing at data.

use std::collections::{BTreeMap, BTreeSet};

use arbor_format::constants::{JOURNAL_LSN_FIRST, SUPERBLOCK_BYTES};
use arbor_format::journal::JournalBlock;
use arbor_format::superblock::{alternation, alternation_slots, slot_offset, Superblock};
use arbor_format::JournalRegion;

use super::{DeviceCheck, GenerationCheck, ProblemKind, Source, TreeStat, Walk};
use crate::durable::journal_scan;
use crate::io::{dev_error, AlignedBuf, BlockDevice, WriteOp};
use crate::store::Store;
use crate::{Db, Error, Result};

/// Cache budget of the store [`plan_rollback`] reads the journal through (it reads uncached).
const ROLLBACK_CACHE_BYTES: u64 = 1 << 20;
/// Journal slots read per device read while looking for the journal's end.
const RING_SLOTS_PER_READ: u64 = 128;

/// What [`repair_superblocks`] or [`roll_back`] did.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SuperblockRepair {
    /// One line per action taken.
    pub actions: Vec<String>,
    /// `(abandoned generation, generation whose roots now stand)` when it rolled back.
    pub rolled_back: Option<(u64, u64)>,
}

/// Restores damaged or missing superblock copies from their verified twins: the newest
/// generation of each alternation (see the module comment). Never rolls back (that is
/// [`roll_back`]). `check` must be a fresh [`super::check_device`] of `dev`, which must be
/// open for writing (exclusively). Writes nothing when nothing needs it.
pub fn repair_superblocks(dev: &dyn BlockDevice, check: &DeviceCheck) -> Result<SuperblockRepair> {
    let mut out = SuperblockRepair::default();
    let mut writes: Vec<(u8, Superblock)> = Vec::new();
    let mut done = [false; 2];
    for g in &check.generations {
        let Some(&slot) = g.slots.first() else { continue };
        let alt = usize::from(alternation(slot));
        if !std::mem::replace(&mut done[alt], true) {
            restore_twins(g, &mut writes, &mut out);
        }
    }
    write_superblocks(dev, &writes)?;
    Ok(out)
}

/// Rolls back as `plan` (from [`plan_rollback`] on the same `check`) describes: writes a
/// superblock with the roots of the generation rolled back to, under generation
/// `plan.new_generation`, with `replay_lsn` = `plan.replay_lsn` (no journal record written
/// before the rollback is replayed), into the alternation the discarded generation held —
/// never over the one rolled back to — and restores the target's missing twin. The
/// discarded generation's commits and the journal records after it are lost.
pub fn roll_back(
    dev: &dyn BlockDevice,
    check: &DeviceCheck,
    plan: &RollbackPlan,
) -> Result<SuperblockRepair> {
    let target = check
        .generations
        .iter()
        .find(|g| g.generation == plan.target)
        .ok_or_else(|| Error::InvalidInput("the plan does not match the check".into()))?;
    let target_slot = target.slots.first().copied().unwrap_or(0);
    let mut sb = target.superblock;
    sb.set_generation(plan.new_generation);
    sb.set_prev_crc(target.superblock.crc());
    sb.set_replay_lsn(plan.replay_lsn);
    let slots = alternation_slots(1 - alternation(target_slot));
    let mut writes: Vec<(u8, Superblock)> = slots.iter().map(|&s| (s, sb)).collect();
    let mut out = SuperblockRepair::default();
    out.actions.push(format!(
        "rolled back: discarded generation {}; wrote generation {} with the roots of generation \
         {} to slots {slots:?}, journal replay starting at lsn {} (the journal's end)",
        plan.discarded, plan.new_generation, plan.target, plan.replay_lsn
    ));
    out.rolled_back = Some((plan.discarded, plan.target));
    restore_twins(target, &mut writes, &mut out);
    write_superblocks(dev, &writes)?;
    Ok(out)
}

/// One tree's entries in one state, as far as its blocks read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TreeCount {
    /// The entry count the catalog records.
    pub recorded: u64,
    /// Blocks of the tree that failed to read or verify (0: the whole tree reads).
    pub bad_blocks: u64,
    /// Entries counted in the blocks that read (all of them when `bad_blocks` is 0).
    pub readable: u64,
}

/// One tree in a [`RollbackPlan`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TreeLoss {
    /// The tree's name.
    pub name: Vec<u8>,
    /// In the discarded (newest) state; `None` when it has no such tree.
    pub discarded: Option<TreeCount>,
    /// In the state rolled back to; `None` when it has no such tree.
    pub kept: Option<u64>,
}

/// The journal records after the discarded checkpoint: acknowledged commits that a rollback
/// loses too, since it replays nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalLoss {
    /// Complete records past the discarded checkpoint's last seq.
    pub records: u64,
    /// Their first and last seq.
    pub seqs: Option<(u64, u64)>,
    /// Why the journal past the checkpoint could not be read in full, if it could not.
    pub error: Option<String>,
}

/// What [`roll_back`] would do and lose (see the module comment).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RollbackPlan {
    /// The generation discarded: the newest, whose data is damaged.
    pub discarded: u64,
    /// The newest generation whose data is intact: its roots stand after the rollback.
    pub target: u64,
    /// The generation number the rollback writes (larger than any slot has seen).
    pub new_generation: u64,
    /// Every tree of either state, in name order.
    pub trees: Vec<TreeLoss>,
    /// Damaged blocks of the discarded state's catalog: trees named only there are missing
    /// from `trees`.
    pub catalog_bad_blocks: u64,
    /// The journal records after the discarded checkpoint.
    pub journal: JournalLoss,
    /// Where the new superblock starts journal replay: the journal's end.
    pub replay_lsn: u64,
}

/// What rolling back would lose, when the newest generation's data is damaged: `Ok(None)`
/// when it is intact (nothing to roll back), `InvalidInput` when no older generation's data
/// is intact either. `check` must be a fresh [`super::check_device`] of `dev`. Reads only.
pub fn plan_rollback(
    dev: Box<dyn BlockDevice>,
    check: &DeviceCheck,
) -> Result<Option<RollbackPlan>> {
    let Some(newest) = check.generations.first() else {
        return Err(Error::InvalidInput("no superblock copy verifies".into()));
    };
    if newest.data_intact() {
        return Ok(None);
    }
    let target = check.generations.iter().find(|g| g.data_intact()).ok_or_else(|| {
        Error::InvalidInput("no generation has intact data: nothing safe to roll back to".into())
    })?;
    let region = match newest.superblock.journal() {
        Ok(Some(region)) => region,
        _ => return Err(Error::corrupt(0, "the superblock records no valid journal region")),
    };
    let store = Store::new(dev, check.block_bytes, ROLLBACK_CACHE_BYTES);
    store.set_first_data(region.end_block());
    let sb = &newest.superblock;
    let journal = journal_loss(&store, region, sb);
    let end = journal_end(&store, &region, &sb.uuid())?;
    let replay_lsn = [end, sb.replay_lsn(), target.superblock.replay_lsn()]
        .into_iter()
        .fold(JOURNAL_LSN_FIRST, u64::max);
    let catalog_bad_blocks = newest.report.tree_stats.first().map_or(0, |t| t.bad_blocks);
    Ok(Some(RollbackPlan {
        discarded: newest.generation,
        target: target.generation,
        new_generation: check.max_generation_seen() + 1,
        trees: tree_losses(newest, target),
        catalog_bad_blocks,
        journal,
        replay_lsn,
    }))
}

/// Every named tree of the discarded and the kept state, in name order. The newest
/// generation's walk is a full one, so its counts are its own; the kept state's data is
/// intact, so its catalog's counts are exact.
fn tree_losses(newest: &GenerationCheck, target: &GenerationCheck) -> Vec<TreeLoss> {
    let named = |g: &GenerationCheck| -> BTreeMap<Vec<u8>, TreeStat> {
        let stats = g.report.tree_stats.iter().filter(|t| t.catalog_entries.is_some());
        stats.map(|t| (t.name.clone(), t.clone())).collect()
    };
    let (gone, kept) = (named(newest), named(target));
    let names: BTreeSet<&Vec<u8>> = gone.keys().chain(kept.keys()).collect();
    names
        .into_iter()
        .map(|name| TreeLoss {
            name: name.clone(),
            discarded: gone.get(name).map(|t| TreeCount {
                recorded: t.catalog_entries.unwrap_or(0),
                bad_blocks: t.bad_blocks,
                readable: t.entries,
            }),
            kept: kept.get(name).and_then(|t| t.catalog_entries),
        })
        .collect()
}

/// The complete journal records past checkpoint `sb` (design.md §11.7's scan from its
/// replay start), or why they cannot be read.
fn journal_loss(store: &Store, region: JournalRegion, sb: &Superblock) -> JournalLoss {
    match journal_scan::scan(store, region, sb.uuid(), sb.replay_lsn()) {
        Ok(scanned) => {
            let seqs: Vec<u64> = scanned
                .records
                .iter()
                .map(|r| r.seq)
                .filter(|&seq| seq > sb.checkpoint_seq())
                .collect();
            let range = seqs.first().zip(seqs.last()).map(|(&a, &b)| (a, b));
            JournalLoss { records: seqs.len() as u64, seqs: range, error: None }
        }
        Err(e) => JournalLoss { error: Some(e.to_string()), ..JournalLoss::default() },
    }
}

/// One past the largest lsn of any verifying journal block of store `uuid` in the ring
/// (`JOURNAL_LSN_FIRST` for an empty ring): no block at or past it was ever written, so a
/// replay starting there reads nothing old, and nothing in the ring is from a later batch.
fn journal_end(store: &Store, region: &JournalRegion, uuid: &[u8; 16]) -> Result<u64> {
    let block_bytes = region.block_bytes() as usize;
    let mut end = JOURNAL_LSN_FIRST;
    let mut slot = 0;
    while slot < region.slot_count() {
        let count = RING_SLOTS_PER_READ.min(region.slot_count() - slot);
        let mut buf = AlignedBuf::zeroed(2 * count as usize * block_bytes, store.align);
        // The slots of lsns 0..slot_count are the slots themselves.
        let offset = region.byte_offset(region.address(slot));
        store.dev.read_at(offset, &mut buf).map_err(dev_error(&*store.dev, "read the journal"))?;
        for (i, twin) in buf.chunks_exact(2 * block_bytes).enumerate() {
            let address = region.address(slot + i as u64);
            for copy in twin.chunks_exact(block_bytes) {
                match JournalBlock::decode(copy, address) {
                    Ok(b) if &b.journal().store_uuid() == uuid => end = end.max(b.lsn() + 1),
                    _ => {}
                }
            }
        }
        slot += count;
    }
    Ok(end)
}

/// Queues a copy of `g` for every slot of its alternation that does not hold it.
fn restore_twins(
    g: &GenerationCheck,
    writes: &mut Vec<(u8, Superblock)>,
    out: &mut SuperblockRepair,
) {
    let Some(&slot) = g.slots.first() else { return };
    for twin in alternation_slots(alternation(slot)) {
        if !g.slots.contains(&twin) && !writes.iter().any(|(s, _)| *s == twin) {
            writes.push((twin, g.superblock));
            out.actions.push(format!(
                "rewrote superblock slot {twin} from its verified twin \
                 (slot {slot}, generation {})",
                g.generation
            ));
        }
    }
}

/// Seals each record for its slot, writes them in one batch and flushes.
fn write_superblocks(dev: &dyn BlockDevice, writes: &[(u8, Superblock)]) -> Result<()> {
    if writes.is_empty() {
        return Ok(());
    }
    let len = SUPERBLOCK_BYTES.max(dev.sector_bytes() as usize);
    let bufs: Vec<(u64, AlignedBuf)> = writes
        .iter()
        .map(|&(slot, mut sb)| {
            sb.seal(slot);
            let mut buf = AlignedBuf::zeroed(len, len);
            if let Some(dst) = buf.get_mut(..SUPERBLOCK_BYTES) {
                dst.copy_from_slice(sb.encode());
            }
            (slot_offset(slot), buf)
        })
        .collect();
    let ops: Vec<WriteOp<'_>> =
        bufs.iter().map(|(offset, buf)| WriteOp { offset: *offset, data: buf }).collect();
    dev.write_batch(&ops).map_err(dev_error(dev, "write superblocks"))?;
    dev.flush().map_err(dev_error(dev, "flush"))?;
    Ok(())
}

/// Rebuilds the free-space map of an open store: frees leaked blocks (reachable from no tree,
/// no orphaned subtree of a deleted tree and no allocator structure), marks allocated the
/// blocks a tree reaches that the bitmap calls free, and commits. Returns
/// `(blocks freed, blocks marked allocated)`. Refuses (`InvalidInput`) when the store has
/// damage beyond free space: rebuilding the map from a broken tree would free live data.
pub fn repair_free_space(db: &Db) -> Result<(u64, u64)> {
    let shared = &db.shared;
    let (freed, marked) = {
        let mut w = shared.lock_writer()?;
        let mut quiet = |_: u64| {};
        let (report, leaked, used_but_free) = {
            let mut walk = Walk::new(Source::Writer(&w), &shared.store, &mut quiet);
            walk.alloc = Some(&w.alloc);
            walk.store(w.trees.catalog, w.alloc.orphans());
            walk.cross_check(&w.alloc, Some(&w.dirty.map));
            (walk.report, walk.leaked, walk.used_but_free)
        };
        if let Some(p) = report.findings.iter().find(|p| !p.kind.is_free_space_only()) {
            return Err(Error::InvalidInput(format!(
                "not rebuilding free space: the store has other damage ({p})"
            )));
        }
        debug_assert!(report
            .findings
            .iter()
            .all(|p| matches!(p.kind, ProblemKind::Leaked | ProblemKind::UsedButFree)));
        for &(addr, count) in &leaked {
            w.alloc.free_now(addr, count);
        }
        for &(addr, count) in &used_but_free {
            w.alloc.mark_allocated(addr, count);
        }
        let sum = |runs: &[(u64, u64)]| runs.iter().map(|(_, n)| n).sum::<u64>();
        (sum(&leaked), sum(&used_but_free))
    };
    if freed + marked > 0 {
        // An empty transaction: its commit freezes a generation whose only dirty blocks are
        // the allocator's, and writes them with a new superblock and one flush.
        db.begin_write()?.commit()?;
    }
    Ok((freed, marked))
}

#[cfg(test)]
#[path = "repair_tests.rs"]
mod tests;
