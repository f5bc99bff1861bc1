//! Freezing the open generation (DESIGN §4, §10.9–§10.13): derive every dirty block's crc
//! bottom-up (children before parents, tree roots into catalog entries, the catalog root
//! into the superblock), persist the allocator, build the superblock copies, and hand the
//! immutable images to the write-out. After a freeze the generation's blocks never change
//! again: the next change to any of them copies it (the "frozen" rule of §4).

use arbor_format::constants::{SUPERBLOCK_BYTES, TREE_ID_CATALOG};
use arbor_format::node::{LeafValue, ValueRef};
use arbor_format::superblock::{self, Superblock};
use arbor_format::{header, ChildPtr};

use crate::catalog;
use crate::io::AlignedBuf;
use crate::store::{corrupt, Store};
use crate::sync::Arc;
use crate::writer::Writer;
use crate::{Error, Result};

/// Everything one generation writes: sealed blocks and the superblock copies.
pub(crate) struct Frozen {
    pub gen: u64,
    /// (block address, sealed image), sorted by address.
    pub blocks: Vec<(u64, Arc<AlignedBuf>)>,
    /// (byte offset, superblock image) for both copies of the chosen alternation.
    pub superblocks: Vec<(u64, AlignedBuf)>,
    pub alternation: u8,
    pub superblock_crc: u32,
}

/// Durable-state facts the freeze needs from the commit pipeline.
pub(crate) struct SuperblockInputs {
    pub uuid: [u8; 16],
    /// Newest generation whose flush has completed.
    pub flushed_gen: u64,
    /// The alternation that holds the newest durable superblock: never overwritten.
    pub durable_alternation: u8,
    pub prev_crc: u32,
}

/// Seals the subtree under `ptr` if it belongs to the open generation; returns the pointer
/// with its crc filled in. Recursion depth is bounded by the tree depth (checked on read)
/// plus one level for catalog → tree.
fn seal(w: &mut Writer, ptr: ChildPtr, depth: usize) -> Result<ChildPtr> {
    if ptr.generation() != w.gen || !w.dirty.contains_key(&ptr.address()) {
        return Ok(ptr);
    }
    if depth > 2 * usize::from(arbor_format::constants::TREE_DEPTH_MAX) + 2 {
        return Err(Error::corrupt(ptr.address(), "seal: depth limit"));
    }
    let addr = ptr.address();
    if let Some(crc) = w.on_disk_crc(addr) {
        // Written back early (a leaf, unchanged since): its seal stands.
        return Ok(ChildPtr::new(addr, w.gen, crc));
    }
    // Collect the children (or catalog tree roots) that need sealing first.
    let (level, owner, len) = w.peek(addr, |n| Ok((n.level(), n.header().owner(), n.len())))?;
    if level > 0 {
        // Sealing a child changes only the crc stored for it here, never which children
        // this node has: read them once.
        let children = w.peek(addr, |n| Ok((0..len).map(|i| n.child(i)).collect::<Vec<_>>()))?;
        for (i, child) in children.into_iter().enumerate() {
            if child.is_crc_pending() || child.generation() == w.gen {
                let sealed = seal(w, child, depth + 1)?;
                // Not logged: crcs are derived at write-out (§10.12).
                w.edit_unlogged(addr, |n| {
                    n.set_child(i, sealed);
                    Ok(())
                })?;
            }
        }
    } else if owner == TREE_ID_CATALOG {
        for i in 0..len {
            let bytes = w.peek(addr, |n| match n.leaf_value(i) {
                LeafValue::Inline(v) => Ok(v.to_vec()),
                LeafValue::Overflow(_) => Err(Error::corrupt(addr, "overflow in catalog")),
            })?;
            let mut meta = catalog::decode(&bytes, addr)?;
            if meta.root.is_crc_pending() || meta.root.generation() == w.gen {
                meta.root = seal(w, meta.root, depth + 1)?;
                let enc = catalog::encode(&meta);
                // Same length: never fails. Not logged: crcs are derived (§10.12).
                w.edit_unlogged(addr, |n| {
                    n.replace_value(i, ValueRef::Inline(&enc))
                        .map_err(|_| Error::corrupt(addr, "catalog entry changed size"))
                })?;
            }
        }
    }
    let crc = w.seal_dirty(addr)?;
    Ok(ChildPtr::new(addr, w.gen, crc))
}

/// Freezes the open generation. On success the writer's generation has advanced and its
/// dirty map is empty; the returned images are immutable and owned by the write-out.
pub(crate) fn freeze(w: &mut Writer, s: &Store, inputs: &SuperblockInputs) -> Result<Frozen> {
    let gen = w.gen;
    w.catalog = seal(w, w.catalog, 0)?;
    // Dirty blocks the walk did not reach would be leaks: every dirty block must hang off
    // the catalog once frees are applied at commit.
    for (addr, d) in &w.dirty {
        let st = d.slot.read();
        if st.image.is_on_disk() {
            continue;
        }
        let hdr = header::verify_block(st.image.bytes(), *addr).map_err(|e| corrupt(*addr, e))?;
        if hdr.generation() != gen {
            return Err(Error::corrupt(*addr, "dirty block not reached from the catalog"));
        }
    }
    let persisted = match w.alloc.persist(gen) {
        Ok(p) => p,
        Err(_) => {
            // The allocator's own blocks did not fit: grow the device (files grow in steps)
            // and try once more before giving up.
            w.grow_device(s, 1024)?;
            w.alloc.persist(gen).map_err(|_| Error::NoSpace)?
        }
    };

    // Each image becomes frozen in its slot (readers keep using the slot while it has log
    // entries they may need) and goes to the write-out.
    let mut slots = Vec::with_capacity(w.dirty.len());
    let mut blocks: Vec<(u64, Arc<AlignedBuf>)> = Vec::with_capacity(w.dirty.len());
    for (addr, d) in w.dirty.drain() {
        let (image, has_log) = {
            let mut st = d.slot.write();
            if st.image.is_on_disk() {
                // Already written (early write-back); the flush below covers it.
                (None, false)
            } else {
                (Some(st.freeze_image(addr)?), !st.log.is_empty())
            }
        };
        if let Some(image) = image {
            blocks.push((addr, image));
        }
        slots.push((addr, d.slot, has_log));
    }
    w.dirty_bytes = 0;
    // The seal above put every written-back block's crc into its parent.
    s.clear_written_back();
    for (addr, buf) in persisted.blocks {
        blocks.push((addr, Arc::new(buf)));
    }
    blocks.sort_unstable_by_key(|(addr, _)| *addr);

    let alternation = 1 - inputs.durable_alternation.min(1);
    let device_bytes = w.alloc.block_count() * u64::from(s.block_bytes);
    let mut sb = Superblock::new(s.block_bytes, inputs.uuid, device_bytes);
    sb.set_generation(gen);
    sb.set_flushed_gen(inputs.flushed_gen);
    sb.set_prev_crc(inputs.prev_crc);
    sb.set_catalog_root(w.catalog);
    sb.set_alloc_root(persisted.alloc_root);
    sb.set_pending_root(persisted.pending_root);
    sb.set_orphan_root(persisted.orphan_root);
    sb.set_next_tree_id(w.next_tree_id);
    let align = s.align.max(SUPERBLOCK_BYTES);
    let mut superblocks = Vec::new();
    let mut superblock_crc = 0;
    for slot in superblock::alternation_slots(alternation) {
        superblock_crc = sb.seal(slot);
        let len = SUPERBLOCK_BYTES.max(s.dev.sector_bytes() as usize);
        let mut buf = AlignedBuf::zeroed(len, align);
        buf[..SUPERBLOCK_BYTES].copy_from_slice(bytemuck::bytes_of(&sb));
        superblocks.push((superblock::slot_offset(slot), buf));
    }
    // Until their writes complete, reads of these addresses are served from the images
    // (never from the device mid-write, DESIGN §10.14).
    s.start_in_flight(&blocks);
    // Only now may a block leave the readers' table: its final image is reachable through
    // the store. A block with entries stays until they are pruned.
    let block_bytes = u64::from(s.block_bytes);
    for (addr, slot, has_log) in slots {
        if has_log {
            w.hist.retain(addr, slot, block_bytes);
        } else {
            s.table.remove(addr, &slot);
        }
    }
    w.gen += 1;
    w.hist.open_generation(w.gen, w.seq);
    Ok(Frozen { gen, blocks, superblocks, alternation, superblock_crc })
}

/// Writes a frozen generation: every block and the superblock copies in one batch (adjacent
/// blocks coalesced by the device), then exactly one flush (DESIGN §4). The superblock may
/// share the batch: recovery verifies the newest generation's blocks, so a superblock that
/// landed without its blocks is detected and the previous one used.
pub(crate) fn write_out(s: &Store, frozen: &Frozen) -> Result<()> {
    use crate::io::WriteOp;
    let mut ops = Vec::with_capacity(frozen.blocks.len() + frozen.superblocks.len());
    for (addr, buf) in &frozen.blocks {
        ops.push(WriteOp { offset: s.block_offset(*addr), data: buf });
    }
    for (offset, buf) in &frozen.superblocks {
        ops.push(WriteOp { offset: *offset, data: buf });
    }
    s.dev.write_batch(&ops)?;
    s.dev.flush()?;
    use crate::sync::Ordering;
    s.counters.blocks_written.fetch_add(frozen.blocks.len() as u64, Ordering::Relaxed);
    s.counters.flushes.fetch_add(1, Ordering::Relaxed);
    s.finish_in_flight(frozen.blocks.iter().map(|(addr, _)| *addr));
    Ok(())
}
