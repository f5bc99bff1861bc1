//! `arbor check --repair`: the only two repairs that invent nothing.
//!
//! 1. **Superblocks** ([`repair_superblocks`]): restore a damaged or missing copy from its
//!    verified twin, and, when the newest generation's data is damaged but an older
//!    generation's is intact, roll back to the older one. A rollback writes a *new*
//!    superblock carrying the older generation's roots under a generation number larger than
//!    any slot has seen (design.md §10.11: a generation number is never reused, so stale blocks
//!    of the abandoned generation can never pass for current ones) into the alternation the
//!    damaged generation held — never over the intact one. The commits of the abandoned
//!    generation are lost; that is what rolling back means.
//! 2. **Free space** ([`repair_free_space`]): on an open store whose trees all verify, free
//!    leaked blocks and mark allocated the blocks a tree reaches that the bitmap calls free,
//!    then commit once (the allocator persists its dirty chunks with the commit).
//!
//! Anything else (a bad tree block, keys out of order, a block used twice, a wrong entry
//! count) is reported and left alone: fixing it would mean guessing at data.

use arbor_format::constants::SUPERBLOCK_BYTES;
use arbor_format::superblock::{alternation, alternation_slots, slot_offset, Superblock};

use super::{DeviceCheck, GenerationCheck, ProblemKind, Source, Walk};
use crate::io::{dev_error, AlignedBuf, BlockDevice, WriteOp};
use crate::{Db, Error, Result};

/// What [`repair_superblocks`] did.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SuperblockRepair {
    /// One line per action taken.
    pub actions: Vec<String>,
    /// `(abandoned generation, generation whose roots now stand)` when it rolled back.
    pub rolled_back: Option<(u64, u64)>,
}

/// Restores superblock copies and rolls back to the newest generation whose data is intact
/// (see the module comment). `check` must be a fresh [`super::check_device`] of `dev`, which
/// must be open for writing (exclusively). Writes nothing when nothing needs it.
pub fn repair_superblocks(dev: &dyn BlockDevice, check: &DeviceCheck) -> Result<SuperblockRepair> {
    let target = check.generations.iter().find(|g| g.data_intact()).ok_or_else(|| {
        Error::InvalidInput("no generation has intact data: nothing safe to roll back to".into())
    })?;
    let newest = check.generations.first().map_or(0, |g| g.generation);
    let target_slot = target.slots.first().copied().unwrap_or(0);
    let mut out = SuperblockRepair::default();
    let mut writes: Vec<(u8, Superblock)> = Vec::new();
    if target.generation < newest {
        let mut sb = target.superblock;
        let gen = check.max_generation_seen() + 1;
        sb.set_generation(gen);
        sb.set_prev_crc(target.superblock.crc());
        let slots = alternation_slots(1 - alternation(target_slot));
        writes.extend(slots.iter().map(|&s| (s, sb)));
        out.actions.push(format!(
            "rolled back: generation {newest} has damaged data; wrote generation {gen} with the \
             roots of generation {} to slots {slots:?} (the commits after generation {} are lost)",
            target.generation, target.generation
        ));
        out.rolled_back = Some((newest, target.generation));
    } else {
        // No rollback: restore the other alternation's missing copy too, if it is intact.
        let other = check.generations.iter().skip(1).find(|g| {
            g.data_intact() && g.slots.iter().all(|&s| alternation(s) != alternation(target_slot))
        });
        if let Some(g) = other {
            restore_twins(g, &mut writes, &mut out);
        }
    }
    restore_twins(target, &mut writes, &mut out);
    write_superblocks(dev, &writes)?;
    Ok(out)
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
