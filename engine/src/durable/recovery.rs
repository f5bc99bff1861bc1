//! Opening a store: read every superblock copy, and take the newest generation whose
//! blocks verify (design.md §3, §4, §10.9, §10.11).
//!
//! A generation G is accepted if any copy of its superblock verifies and every block it
//! reaches through pointers with `flushed_gen < gen ≤ G` verifies — exactly the blocks the
//! commits since the last completed flush wrote (overflow extents included). Blocks of
//! older generations were covered by a completed flush before that superblock was built.
//! If a block of G fails verification, the previous generation is tried; an I/O error is
//! returned as is. The next generation written is one more
//! than the largest generation seen in any slot, so a torn newer superblock is never reused.

use std::collections::BTreeMap;

use arbor_format::node::LeafValue;
use arbor_format::superblock::Superblock;
use arbor_format::ChildPtr;

use crate::alloc::Allocator;
use crate::durable::superblock::Found;
use crate::io::target_name;
use crate::store::{NodeBuf, Store};
use crate::sync::Arc;
use crate::tree::walk::{catalog_entries, is_catalog_leaf, node_of, Walk};
use crate::writer::TreeMeta;
use crate::{Error, Result};

/// Verifies every block the generations in (`lo`, `hi`] wrote under the catalog root: the
/// blocks reached through pointers of those generations, overflow extents included.
fn verify_recent(s: &Store, catalog: ChildPtr, lo: u64, hi: u64) -> Result<()> {
    let recent = |gen: u64| gen > lo && gen <= hi;
    let mut walk = Walk::new(s.block_count());
    if !catalog.is_null() && recent(catalog.generation()) {
        walk.push(catalog, None, ());
    }
    while let Some((edge, buf)) =
        walk.next(|ptr| Ok(NodeBuf::Clean(Arc::new(s.read_uncached(ptr)?))))
    {
        let buf = buf?;
        let node = node_of(&buf, edge.ptr)?;
        if node.level() > 0 {
            for i in 0..node.len() {
                let child = node.child(i);
                if recent(child.generation()) {
                    walk.push(child, Some(node.level() - 1), ());
                }
            }
        } else if is_catalog_leaf(&node) {
            for entry in catalog_entries(&node, edge.ptr.address()) {
                let (_, meta) = entry?;
                if !meta.root.is_null() && recent(meta.root.generation()) {
                    walk.push(meta.root, None, ());
                }
            }
        } else {
            for i in 0..node.len() {
                if let LeafValue::Overflow(r) = node.leaf_value(i) {
                    if recent(r.generation()) {
                        s.read_overflow(&r)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Reads every catalog entry.
pub(crate) fn load_catalog(s: &Store, root: ChildPtr) -> Result<BTreeMap<Vec<u8>, TreeMeta>> {
    let mut out = BTreeMap::new();
    let mut walk = Walk::new(s.block_count());
    walk.push(root, None, ());
    while let Some((edge, buf)) = walk.next(|ptr| Ok(NodeBuf::Clean(s.read_block(ptr)?))) {
        let buf = buf?;
        let node = node_of(&buf, edge.ptr)?;
        if node.level() > 0 {
            for i in 0..node.len() {
                walk.push(node.child(i), Some(node.level() - 1), ());
            }
            continue;
        }
        for entry in catalog_entries(&node, edge.ptr.address()) {
            let (name, meta) = entry?;
            out.insert(name.to_vec(), meta);
        }
    }
    Ok(out)
}

/// The durable state a store opened at.
pub(crate) struct Opened {
    pub sb: Superblock,
    pub slot: u8,
    pub alloc: Allocator,
    pub trees: BTreeMap<Vec<u8>, TreeMeta>,
    pub max_generation_seen: u64,
    pub rejected_copies: u32,
    pub fallbacks: u32,
}

/// Picks the newest generation that verifies.
pub(crate) fn recover(s: &Store, found: Found) -> Result<Opened> {
    let mut last_err = None;
    let mut tried = Vec::new();
    let mut fallbacks = 0;
    for (slot, sb) in &found.copies {
        let gen = sb.generation();
        if tried.contains(&gen) {
            continue;
        }
        if sb.block_bytes() != s.block_bytes {
            continue;
        }
        match try_generation(s, sb) {
            Ok((alloc, trees)) => {
                debug_assert!(gen <= found.max_generation_seen, "opened {gen} past every slot");
                return Ok(Opened {
                    sb: *sb,
                    slot: *slot,
                    alloc,
                    trees,
                    max_generation_seen: found.max_generation_seen,
                    rejected_copies: found.rejected,
                    fallbacks,
                });
            }
            // Only a block that fails verification sends recovery to the previous slot. An
            // I/O error says nothing about the generation's blocks: falling back on it would
            // drop acknowledged commits because of a transient read error, so it is returned
            // (the caller may retry the open).
            Err(e @ Error::Corrupt { .. }) => {
                tried.push(gen);
                fallbacks += 1;
                last_err = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| Error::NotAnArborStore { target: target_name(&*s.dev) }))
}

fn try_generation(s: &Store, sb: &Superblock) -> Result<(Allocator, BTreeMap<Vec<u8>, TreeMeta>)> {
    let block_count = sb.block_count();
    if block_count * u64::from(s.block_bytes) > s.dev.len_bytes() {
        return Err(Error::corrupt(0, "the device is smaller than the store it holds"));
    }
    let (lo, hi) = (sb.flushed_gen(), sb.generation());
    verify_recent(s, sb.catalog_root(), lo, hi)?;
    let mut read = |ptr: ChildPtr| s.read_uncached(ptr);
    let alloc = Allocator::load_superblock(sb, hi, &mut read)?;
    let trees = load_catalog(s, sb.catalog_root())?;
    Ok((alloc, trees))
}
