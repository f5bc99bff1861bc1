//! Opening a store: read every superblock copy, and take the newest generation whose
//! blocks verify (DESIGN §3, §4, §10.9, §10.11).
//!
//! A generation G is accepted if any copy of its superblock verifies and every block it
//! reaches through pointers with `flushed_gen < gen ≤ G` verifies — exactly the blocks the
//! commits since the last completed flush wrote (overflow extents included). Blocks of
//! older generations were covered by a completed flush before that superblock was built.
//! If a block of G fails verification, the previous generation is tried; an I/O error is
//! returned as is. The next generation written is one more
//! than the largest generation seen in any slot, so a torn newer superblock is never reused.

use std::collections::BTreeMap;

use arbor_format::constants::{
    FORMAT_VERSION, SUPERBLOCK_AREA_BYTES, SUPERBLOCK_BYTES, SUPERBLOCK_SLOT_COUNT,
    SUPERBLOCK_SLOT_STRIDE_BYTES, TREE_DEPTH_MAX, TREE_ID_CATALOG,
};
use arbor_format::node::LeafValue;
use arbor_format::superblock::Superblock;
use arbor_format::ChildPtr;

use crate::alloc::Allocator;
use crate::btree::check_child;
use crate::catalog;
use crate::io::{AlignedBuf, BlockDevice};
use crate::store::Store;
use crate::writer::{decode, TreeMeta};
use crate::{Error, Result};

const SUPERBLOCK_MAGIC: &[u8; 8] = b"ARBORSB\0";

/// The verified superblock copies found on a device.
pub(crate) struct Found {
    /// Valid copies, newest generation first.
    pub copies: Vec<(u8, Superblock)>,
    /// Copies that carried the magic but failed verification.
    pub rejected: u32,
    pub max_generation_seen: u64,
}

/// Reads and decodes the four superblock slots.
pub(crate) fn read_superblocks(dev: &dyn BlockDevice) -> Result<Found> {
    if dev.len_bytes() < SUPERBLOCK_AREA_BYTES {
        return Err(Error::NotAnArborStore);
    }
    let align = (dev.sector_bytes() as usize).max(SUPERBLOCK_BYTES);
    let mut area = AlignedBuf::zeroed(SUPERBLOCK_AREA_BYTES as usize, align);
    dev.read_at(0, &mut area)?;
    let mut copies = Vec::new();
    let mut rejected = 0;
    let mut newer_version = None;
    let mut max_generation_seen = 0;
    for slot in 0..SUPERBLOCK_SLOT_COUNT {
        let at = (u64::from(slot) * SUPERBLOCK_SLOT_STRIDE_BYTES) as usize;
        let bytes = &area[at..at + SUPERBLOCK_BYTES];
        if &bytes[..8] != SUPERBLOCK_MAGIC {
            continue;
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version > FORMAT_VERSION {
            newer_version = Some(version);
            continue;
        }
        match Superblock::decode(bytes) {
            Ok(sb) if sb.slot() == slot => {
                max_generation_seen = max_generation_seen.max(sb.generation());
                copies.push((slot, sb));
            }
            _ => rejected += 1,
        }
    }
    if copies.is_empty() {
        if let Some(found) = newer_version {
            return Err(Error::UnsupportedVersion { found, supported: FORMAT_VERSION });
        }
        if rejected > 0 {
            return Err(Error::corrupt(0, "every superblock copy failed verification"));
        }
        return Err(Error::NotAnArborStore);
    }
    copies.sort_by_key(|(_, sb)| std::cmp::Reverse(sb.generation()));
    Ok(Found { copies, rejected, max_generation_seen })
}

/// Verifies every block the generations in (flushed_gen, gen] wrote under `ptr`.
fn verify_recent(
    s: &Store,
    ptr: ChildPtr,
    lo: u64,
    hi: u64,
    expect: Option<u8>,
    depth: usize,
) -> Result<()> {
    if ptr.is_null() || ptr.generation() <= lo || ptr.generation() > hi {
        return Ok(());
    }
    if depth > 2 * usize::from(TREE_DEPTH_MAX) + 2 {
        return Err(Error::corrupt(ptr.address(), "verification exceeded the depth limit"));
    }
    let buf = s.read_uncached(ptr)?;
    let node = decode(&buf, ptr.address())?;
    check_child(&node, ptr.address(), expect)?;
    let addr = ptr.address();
    for i in 0..node.len() {
        if node.level() > 0 {
            verify_recent(s, node.child(i), lo, hi, Some(node.level() - 1), depth + 1)?;
            continue;
        }
        match node.leaf_value(i) {
            LeafValue::Overflow(r) => {
                if r.generation() > lo && r.generation() <= hi {
                    s.read_overflow(&r)?;
                }
            }
            LeafValue::Inline(v) if node.header().owner() == TREE_ID_CATALOG => {
                let meta = catalog::decode(v, addr)?;
                verify_recent(s, meta.root, lo, hi, None, depth + 1)?;
            }
            LeafValue::Inline(_) => {}
        }
    }
    Ok(())
}

/// Reads every catalog entry.
pub(crate) fn load_catalog(s: &Store, root: ChildPtr) -> Result<BTreeMap<Vec<u8>, TreeMeta>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(root, None::<u8>)];
    let mut visited = 0u64;
    while let Some((ptr, expect)) = stack.pop() {
        visited += 1;
        if visited > 1 << 32 {
            return Err(Error::corrupt(ptr.address(), "catalog walk does not end"));
        }
        let buf = s.read_block(ptr)?;
        let node = decode(&buf, ptr.address())?;
        check_child(&node, ptr.address(), expect)?;
        for i in 0..node.len() {
            if node.level() > 0 {
                stack.push((node.child(i), Some(node.level() - 1)));
            } else if let LeafValue::Inline(v) = node.leaf_value(i) {
                out.insert(node.key(i).to_vec(), catalog::decode(v, ptr.address())?);
            } else {
                return Err(Error::corrupt(ptr.address(), "overflow value in the catalog"));
            }
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
    Err(last_err.unwrap_or(Error::NotAnArborStore))
}

fn try_generation(s: &Store, sb: &Superblock) -> Result<(Allocator, BTreeMap<Vec<u8>, TreeMeta>)> {
    let block_count = sb.block_count();
    if block_count * u64::from(s.block_bytes) > s.dev.len_bytes() {
        return Err(Error::corrupt(0, "the device is smaller than the store it holds"));
    }
    let (lo, hi) = (sb.flushed_gen(), sb.generation());
    verify_recent(s, sb.catalog_root(), lo, hi, None, 0)?;
    let mut read = |ptr: ChildPtr| s.read_uncached(ptr);
    let alloc = Allocator::load_superblock(sb, hi, &mut read)?;
    let trees = load_catalog(s, sb.catalog_root())?;
    Ok((alloc, trees))
}
