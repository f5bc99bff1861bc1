//! Ending a write transaction: publishing it (catalog entries, the readers' table, the root
//! record, deferred frees through the pinning rule, pruning), aborting it, and freeing the
//! blocks of deleted trees (at once for the open generation, through the orphan list for
//! older ones).

use arbor_format::constants::TREE_ID_CATALOG;
use arbor_format::node::LeafValue;
use arbor_format::ChildPtr;

use crate::mvcc::modlog::ItemValue;
use crate::mvcc::{Registry, RootRecord};
use crate::options::Options;
use crate::store::Store;
use crate::sync::Arc;
use crate::tree;
use crate::tree::catalog;
use crate::tree::walk::{node_of, Walk};
use crate::writer::bound;
use crate::writer::retention;
use crate::writer::{TxnScratch, Writer};
use crate::Result;

/// Writes changed tree metadata into the catalog, publishes the transaction (its private
/// blocks join the readers' table, then the root record makes its seq visible), applies
/// deferred frees through the pinning rule, and prunes history. Returns the commit's seq.
pub(super) fn publish(
    w: &mut Writer,
    s: &Store,
    registry: &Registry,
    opts: &Options,
) -> Result<u64> {
    let changed = std::mem::take(&mut w.trees.changed);
    for name in &changed {
        let mut root = w.trees.catalog;
        match w.trees.map.get(name).copied() {
            Some(meta) => {
                let v = ItemValue::Inline(catalog::encode(&meta).to_vec());
                tree::write::insert(&mut w.edit(), s, &mut root, TREE_ID_CATALOG, name, v)?;
            }
            None => {
                tree::write::remove(&mut w.edit(), s, &mut root, name)?;
            }
        }
        w.trees.catalog = root;
    }
    free_some_orphans(w, s)?;
    let commit_seq = w.next_seq();
    debug_assert!(
        commit_seq > registry.root().seq,
        "commit seq {commit_seq} not past the visible one"
    );
    // The transaction's blocks become published: readers of the new root find them in the
    // table, and from now on every change to them is logged.
    for &(addr, _) in &w.txn.allocated {
        if let Some(d) = w.dirty.map.get_mut(&addr) {
            if d.private {
                d.private = false;
                d.sealed = false;
                d.seq_alloc = commit_seq;
                // A block written back early is read from the device until it changes
                // again (`Writer::make_resident` adds it to the table then).
                if !d.slot.read().image.is_on_disk() {
                    s.table.insert(addr, Arc::clone(&d.slot));
                }
            }
        }
    }
    debug_assert!(w.dirty.map.values().all(|d| !d.private), "a commit publishes every block");
    debug_assert_eq!(
        w.hist.open_gen(),
        w.gen(),
        "retention and writer disagree on the open generation"
    );
    let mut frees = std::mem::take(&mut w.txn.frees);
    // In address order, each run lands at the end of its pending list's sorted runs (or
    // merges with the last), instead of being spliced into the middle: a large removal frees
    // tens of thousands of scattered blocks.
    frees.sort_unstable_by_key(|&(addr, _, _)| addr);
    let mut r = registry.lock();
    r.sweep();
    let mut discard = Vec::new();
    for (addr, count, gen) in frees {
        let freed = classify_free(w, s, addr, count, gen, commit_seq);
        w.hist.apply_free(&mut w.alloc, s, &r, commit_seq, freed, &mut discard);
    }
    // Before the writer can allocate these addresses again (it holds the writer lock).
    s.pool.discard_many(&discard);
    r.publish(RootRecord { seq: commit_seq, gen: w.gen(), catalog: w.trees.catalog });
    w.hist.release_and_prune(&mut w.alloc, s, &r, w.seq);
    let held = bound::Held { hist: &mut w.hist, alloc: &mut w.alloc, store: s, last_seq: w.seq };
    bound::expire_if_over(held, opts, &mut r);
    drop(r);
    w.txn = TxnScratch::default();
    Ok(commit_seq)
}

/// What a freed run is, for the pinning rule: its allocation seq and its slot, if any.
fn classify_free(
    w: &mut Writer,
    s: &Store,
    addr: u64,
    count: u64,
    gen: u64,
    commit_seq: u64,
) -> retention::Freed {
    let block_bytes = u64::from(s.block_bytes);
    if gen == w.gen() {
        if let Some(d) = w.dirty.take(s, addr) {
            // A block this transaction allocated was never reachable by any snapshot.
            let seq_alloc = if d.private { commit_seq } else { d.seq_alloc };
            let slot = if d.private { None } else { Some(d.slot) };
            return retention::Freed { addr, count, gen, seq_alloc, slot };
        }
        // An overflow extent of the open generation.
        let private = w.txn.allocated.iter().any(|&(a, _)| a == addr);
        let seq_alloc = if private { commit_seq } else { w.hist.alloc_seq_lower(gen) };
        return retention::Freed { addr, count, gen, seq_alloc, slot: None };
    }
    let slot = if count == 1 { w.hist.take_retained(addr, block_bytes) } else { None };
    retention::Freed { addr, count, gen, seq_alloc: w.hist.alloc_seq_lower(gen), slot }
}

/// Undoes the open transaction: published blocks by their log entries (appending
/// compensation entries, design.md §10.6), private blocks by freeing them.
pub(super) fn abort(w: &mut Writer, s: &Store, registry: &Registry) -> Result<()> {
    let logged = std::mem::take(&mut w.txn.logged);
    for (addr, seq) in logged.into_iter().rev() {
        w.edit().undo_logged(addr, seq)?;
    }
    let allocated = std::mem::take(&mut w.txn.allocated);
    for (addr, count) in allocated {
        w.alloc.free_now(addr, count);
        w.dirty.take(s, addr);
    }
    let txn = std::mem::take(&mut w.txn);
    w.alloc.truncate_orphans(txn.orphans_at_start);
    if let Some(trees) = txn.trees_at_start {
        w.trees.map = trees;
    }
    w.trees.catalog = txn.catalog_at_start;
    w.trees.next_id = txn.next_tree_id_at_start;
    w.trees.changed.clear();
    // Every private block was allocated by this transaction, and is gone again.
    debug_assert!(w.dirty.map.values().all(|d| !d.private), "abort left a private block");
    w.hist.settle(&mut w.alloc, s, &mut registry.lock(), w.seq);
    Ok(())
}

/// Frees a deleted tree's blocks of the open generation now (they live in memory and must
/// not reach the write-out) and hands each subtree of an older generation to the orphan list
/// (design.md §10.17), which later commits free a bounded number of blocks at a time.
pub(super) fn free_tree(w: &mut Writer, s: &Store, root: ChildPtr) -> Result<()> {
    if !w.dirty.holds(root) {
        w.alloc.push_orphan(root);
        return Ok(());
    }
    let mut walk = Walk::new(w.alloc.block_count());
    walk.push(root, None, ());
    free_walk(w, s, &mut walk, u64::MAX, true)
}

/// Frees up to `budget` nodes `walk` reaches, with their leaves' overflow extents (all at
/// commit, through the pinning rule of design.md §6). With `dirty_only`, a child of an older
/// generation is not walked but handed to the orphan list whole.
fn free_walk(
    w: &mut Writer,
    s: &Store,
    walk: &mut Walk<()>,
    budget: u64,
    dirty_only: bool,
) -> Result<()> {
    let mut extents = Vec::new();
    let mut children = Vec::new();
    for _ in 0..budget {
        let Some((edge, buf)) = walk.next(|ptr| w.dirty.node(s, ptr)) else { break };
        {
            let buf = buf?;
            let node = node_of(&buf, edge.ptr)?;
            for i in 0..node.len() {
                if node.level() > 0 {
                    children.push((node.child(i), node.level() - 1));
                } else if let LeafValue::Overflow(r) = node.leaf_value(i) {
                    extents.push((r.address(), u64::from(r.block_count()), r.generation()));
                }
            }
        }
        w.txn.frees.append(&mut extents);
        w.edit().free_node(edge.ptr);
        for (child, level) in children.drain(..) {
            if dirty_only && !w.dirty.holds(child) {
                w.alloc.push_orphan(child);
            } else {
                walk.push(child, Some(level), ());
            }
        }
    }
    Ok(())
}

/// Blocks of orphaned subtrees one commit frees at most (the rest waits for later commits).
const ORPHAN_BLOCKS_PER_COMMIT: u64 = 512;

/// Takes up to `ORPHAN_BLOCKS_PER_COMMIT` blocks off the orphan list; their frees go through
/// the commit's pinning like any other.
fn free_some_orphans(w: &mut Writer, s: &Store) -> Result<()> {
    if w.alloc.orphans().is_empty() {
        return Ok(());
    }
    // A read error part-way must leave the list as it was (the commit then aborts).
    let saved = w.alloc.orphans().to_vec();
    let result = free_orphan_blocks(w, s);
    if result.is_err() {
        w.alloc.set_orphans(saved);
    }
    result
}

/// The orphan list is the walk's stack, kept in the allocator (and persisted) between
/// commits: this commit walks up to the budget and leaves the rest on the list.
fn free_orphan_blocks(w: &mut Writer, s: &Store) -> Result<()> {
    let mut walk = Walk::new(w.alloc.block_count());
    for &ptr in w.alloc.orphans() {
        walk.push(ptr, None, ());
    }
    w.alloc.set_orphans(Vec::new());
    free_walk(w, s, &mut walk, ORPHAN_BLOCKS_PER_COMMIT, false)?;
    // Orphans pushed during the walk's budget are on `walk`'s stack, not the list.
    debug_assert!(w.alloc.orphans().is_empty(), "orphan freeing pushed to the orphan list");
    w.alloc.set_orphans(walk.into_edges().map(|e| e.ptr).collect());
    Ok(())
}
