//! Freezing the open generation (design.md §4, §10.9–§10.13): derive every dirty block's crc
//! bottom-up (children before parents, tree roots into catalog entries, the catalog root
//! into the superblock), persist the allocator, build the superblock copies, and hand the
//! immutable images to the write-out. After a freeze the generation's blocks never change
//! again: the next change to any of them copies it (the "frozen" rule of §4).

use arbor_format::constants::{SUPERBLOCK_BYTES, TREE_ID_CATALOG};
use arbor_format::node::{LeafValue, ValueRef};
use arbor_format::superblock::{self, Superblock};
use arbor_format::{header, ChildPtr, JournalRegion};

use crate::addr_map::AddrMap;
use crate::io::{dev_error, AlignedBuf};
use crate::mvcc::Slot;
use crate::store::Store;
use crate::sync::Arc;
use crate::tree::catalog;
use crate::tree::walk::{catalog_entries, is_catalog_leaf, node_of, Walk};
use crate::writer::{DirtySet, Writer};
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
    /// The checkpoint's last seq and the journal lsn replay starts at (design.md §11.6).
    pub checkpoint_seq: u64,
    pub replay_lsn: u64,
}

/// Durable-state facts the freeze needs from the commit pipeline.
pub(crate) struct SuperblockInputs {
    pub uuid: [u8; 16],
    /// Newest generation whose flush has completed.
    pub flushed_gen: u64,
    /// The alternation that holds the newest durable superblock: never overwritten.
    pub durable_alternation: u8,
    pub prev_crc: u32,
    /// The store's journal region (fixed at create).
    pub journal: JournalRegion,
    /// Where replay of this checkpoint starts (`Journal::replay_lsn_for_checkpoint`).
    pub replay_lsn: u64,
    /// The last seq it covers, when not the writer's (`Journal::checkpoint_seq_override`).
    pub checkpoint_seq: Option<u64>,
}

/// Crcs of a generation's sealed blocks, by address (looked up for every child pointer of
/// every sealed node: not SipHash).
type Crcs = AddrMap<u32>;

/// Seals every dirty block reachable from `root` (the catalog), children before parents,
/// and returns the crc of every dirty block. The walk lists the dirty blocks parents first;
/// sealing runs over the list backwards, so a block's children are sealed (their crcs
/// known) when it is. Blocks written back early keep the crc they were sealed with.
fn seal_all(d: &mut DirtySet, s: &Store, root: ChildPtr) -> Result<Crcs> {
    let mut crcs = Crcs::with_capacity_and_hasher(d.map.len(), Default::default());
    let mut order = Vec::with_capacity(d.map.len());
    let mut walk = Walk::new(d.map.len() as u64);
    follow(d, &mut walk, &mut crcs, root, None);
    let mut next = Vec::new();
    while let Some((edge, buf)) = walk.next(|ptr| d.node(s, ptr)) {
        let addr = edge.ptr.address();
        // Dirty images were built by the writer: a bad one is a writer bug, not a bad disk.
        let buf = buf.unwrap_or_else(|e| panic!("dirty block {addr} does not decode: {e}"));
        let node = node_of(&buf, edge.ptr).expect("a walked node decodes");
        if node.level() > 0 {
            next.extend((0..node.len()).map(|i| (node.child(i), Some(node.level() - 1))));
        } else if is_catalog_leaf(&node) {
            for entry in catalog_entries(&node, addr) {
                next.push((entry?.1.root, None));
            }
        }
        drop(buf);
        for (child, level) in next.drain(..) {
            follow(d, &mut walk, &mut crcs, child, level);
        }
        order.push(addr);
    }
    for &addr in order.iter().rev() {
        seal_one(d, &crcs, addr)?;
        let crc = d.seal(addr)?;
        crcs.insert(addr, crc);
    }
    Ok(crcs)
}

/// Seals the pointers the writer keeps outside the blocks: the catalog root and its own
/// copy of every tree's root (`Trees::map`, which the next transaction starts from). None
/// may stay crc-pending past its generation's freeze (§10.12): a pending pointer trusts any
/// image with the right address and generation, and a block written back early can leave
/// an older image of both on the device (its later write lost or misdirected).
fn seal_roots(w: &mut Writer, crcs: &Crcs) {
    let d = &w.dirty;
    w.trees.catalog = sealed_ptr(d, crcs, w.trees.catalog);
    for (name, meta) in w.trees.map.iter_mut() {
        meta.root = sealed_ptr(d, crcs, meta.root);
        assert!(
            !meta.root.is_crc_pending(),
            "tree {:?}: root {:?} is crc-pending but not a dirty block of generation {}",
            String::from_utf8_lossy(name),
            meta.root,
            d.gen
        );
    }
    assert!(!w.trees.catalog.is_crc_pending(), "the catalog root stays crc-pending");
}

/// Walks into `ptr` if it is a resident dirty block; a block written back early is sealed
/// already and is not read.
fn follow(d: &DirtySet, walk: &mut Walk<()>, crcs: &mut Crcs, ptr: ChildPtr, level: Option<u8>) {
    if !d.holds(ptr) {
        return;
    }
    match d.on_disk_crc(ptr.address()) {
        Some(crc) => {
            crcs.insert(ptr.address(), crc);
        }
        None => walk.push(ptr, level, ()),
    }
}

/// The pointer to store for `ptr` once its block is sealed (unchanged if it is not dirty).
fn sealed_ptr(d: &DirtySet, crcs: &Crcs, ptr: ChildPtr) -> ChildPtr {
    if ptr.generation() != d.gen {
        return ptr;
    }
    match crcs.get(&ptr.address()) {
        Some(&crc) if d.holds(ptr) => ChildPtr::new(ptr.address(), d.gen, crc),
        _ => ptr,
    }
}

/// Fills the crcs of `addr`'s sealed children (or, in a catalog leaf, its trees' roots).
/// Not logged: crcs are derived at write-out (§10.12).
fn seal_one(d: &mut DirtySet, crcs: &Crcs, addr: u64) -> Result<()> {
    let (level, owner, len) = d.peek(addr, |n| Ok((n.level(), n.header().owner(), n.len())))?;
    if level > 0 {
        let children = d.peek(addr, |n| Ok((0..len).map(|i| n.child(i)).collect::<Vec<_>>()))?;
        for (i, child) in children.into_iter().enumerate() {
            let sealed = sealed_ptr(d, crcs, child);
            if sealed != child {
                d.edit_unlogged(addr, |n| {
                    n.set_child(i, sealed);
                    Ok(())
                })?;
            }
        }
    } else if owner == TREE_ID_CATALOG {
        for i in 0..len {
            let bytes = d.peek(addr, |n| match n.leaf_value(i) {
                LeafValue::Inline(v) => Ok(v.to_vec()),
                // The writer stores catalog entries inline (48 bytes).
                LeafValue::Overflow(_) => {
                    panic!("dirty catalog block {addr} holds an overflow value")
                }
            })?;
            let mut meta = catalog::decode(&bytes, addr)?;
            let sealed = sealed_ptr(d, crcs, meta.root);
            if sealed != meta.root {
                meta.root = sealed;
                let enc = catalog::encode(&meta);
                d.edit_unlogged(addr, |n| {
                    let replaced = n.replace_value(i, ValueRef::Inline(&enc));
                    assert!(replaced.is_ok(), "catalog entry {i} of {addr} changed size");
                    Ok(())
                })?;
            }
        }
    }
    Ok(())
}

/// Freezes the open generation. On success the writer's generation has advanced and its
/// dirty map is empty; the returned images are immutable and owned by the write-out.
pub(crate) fn freeze(writer: &mut Writer, s: &Store, inputs: &SuperblockInputs) -> Result<Frozen> {
    let gen = writer.gen();
    let crcs = seal_all(&mut writer.dirty, s, writer.trees.catalog)?;
    seal_roots(writer, &crcs);
    assert_all_sealed(&writer.dirty, &crcs);
    writer.trim_tail(s);
    let persisted = match writer.alloc.persist(gen) {
        Ok(p) => p,
        Err(_) => {
            // The allocator's own blocks did not fit: grow the device (files grow in steps)
            // and try once more before giving up.
            writer.edit().grow_device(s, 1024)?;
            writer.alloc.persist(gen).map_err(|_| Error::NoSpace)?
        }
    };
    let (mut blocks, slots) = freeze_images(&mut writer.dirty)?;
    // The seal put every written-back block's crc into its parent.
    s.clear_written_back();
    for (addr, buf) in persisted.blocks {
        blocks.push((addr, Arc::new(buf)));
    }
    blocks.sort_unstable_by_key(|(addr, _)| *addr);
    debug_assert!(blocks.windows(2).all(|p| p[0].0 < p[1].0), "a block written twice in one batch");

    let alternation = 1 - inputs.durable_alternation.min(1);
    let device_bytes = writer.alloc.block_count() * u64::from(s.block_bytes);
    let mut sb = Superblock::new(s.block_bytes, inputs.uuid, device_bytes);
    sb.set_generation(gen);
    sb.set_flushed_gen(inputs.flushed_gen);
    sb.set_prev_crc(inputs.prev_crc);
    sb.set_catalog_root(writer.trees.catalog);
    sb.set_alloc_root(persisted.alloc_root);
    sb.set_pending_root(persisted.pending_root);
    sb.set_orphan_root(persisted.orphan_root);
    sb.set_next_tree_id(writer.trees.next_id);
    sb.set_journal(&inputs.journal);
    sb.set_replay_lsn(inputs.replay_lsn);
    let checkpoint_seq = inputs.checkpoint_seq.unwrap_or(writer.seq);
    sb.set_checkpoint_seq(checkpoint_seq);
    let (superblocks, superblock_crc) = superblock_copies(s, &mut sb, alternation);
    // Until their writes complete, reads of these addresses are served from the images
    // (never from the device mid-write, design.md §10.14).
    s.start_in_flight(&blocks);
    // Only now may a block leave the readers' table: its final image is reachable through
    // the store. A block with entries stays until they are pruned.
    let block_bytes = u64::from(s.block_bytes);
    for (addr, slot, has_log) in slots {
        if has_log {
            writer.hist.retain(addr, slot, block_bytes);
        } else {
            s.table.remove(addr, &slot);
        }
    }
    writer.dirty.gen += 1;
    writer.hist.open_generation(writer.dirty.gen, writer.seq);
    assert!(writer.dirty.map.is_empty(), "a freeze leaves no dirty block");
    let replay_lsn = inputs.replay_lsn;
    Ok(Frozen { gen, blocks, superblocks, alternation, superblock_crc, checkpoint_seq, replay_lsn })
}

/// Dirty blocks the seal did not reach would be leaks: every dirty block must hang off the
/// catalog once frees are applied at commit, so each was sealed (`crcs` holds every block
/// `seal_all` sealed) and is of its generation. The crc itself is verified again only in
/// debug builds: in release that was a third crc pass over every block a checkpoint writes.
fn assert_all_sealed(d: &DirtySet, crcs: &Crcs) {
    for (addr, dirty) in &d.map {
        let st = dirty.slot.read();
        if st.image.is_on_disk() {
            continue;
        }
        let gen = header::parse_header(st.image.bytes()).map(|h| h.generation());
        assert!(
            crcs.contains_key(addr) && gen.is_ok_and(|g| g == d.gen),
            "dirty block {addr} of generation {} not reached from the catalog",
            d.gen
        );
        debug_assert!(
            header::verify_block(st.image.bytes(), *addr).is_ok(),
            "dirty block {addr} changed after its seal"
        );
    }
}

/// A freeze's slots: (address, slot, whether it has log entries readers may need).
type FrozenSlots = Vec<(u64, Arc<Slot>, bool)>;

/// Sealed images to write: (block address, image).
type Images = Vec<(u64, Arc<AlignedBuf>)>;

/// Empties the dirty set: each image becomes frozen in its slot (readers keep using the
/// slot while it has log entries they may need) and goes to the write-out.
fn freeze_images(d: &mut DirtySet) -> Result<(Images, FrozenSlots)> {
    let mut slots = Vec::with_capacity(d.map.len());
    let mut blocks: Images = Vec::with_capacity(d.map.len());
    for (addr, dirty) in d.map.drain() {
        let (image, has_log) = {
            let mut st = dirty.slot.write();
            if st.image.is_on_disk() {
                // Already written (early write-back); the freeze's flush covers it.
                (None, false)
            } else {
                (Some(st.freeze_image(addr)?), !st.log.is_empty())
            }
        };
        if let Some(image) = image {
            blocks.push((addr, image));
        }
        slots.push((addr, dirty.slot, has_log));
    }
    d.bytes = 0;
    Ok((blocks, slots))
}

/// Seals `sb` for both slots of `alternation`: (byte offset, image) per copy, and the crc.
fn superblock_copies(
    s: &Store,
    sb: &mut Superblock,
    alternation: u8,
) -> (Vec<(u64, AlignedBuf)>, u32) {
    let align = s.align.max(SUPERBLOCK_BYTES);
    let mut superblocks = Vec::new();
    let mut superblock_crc = 0;
    for slot in superblock::alternation_slots(alternation) {
        superblock_crc = sb.seal(slot);
        let len = SUPERBLOCK_BYTES.max(s.dev.sector_bytes() as usize);
        let mut buf = AlignedBuf::zeroed(len, align);
        buf[..SUPERBLOCK_BYTES].copy_from_slice(bytemuck::bytes_of(&*sb));
        superblocks.push((superblock::slot_offset(slot), buf));
    }
    assert_eq!(superblocks.len(), 2, "a generation writes both copies of its superblock");
    (superblocks, superblock_crc)
}

/// Writes a frozen generation as a checkpoint (design.md §11.6): its blocks (adjacent blocks
/// coalesced by the device), a flush, then both superblock copies, a second flush. The
/// superblock is written only once its blocks are durable, so recovery trusts the newest
/// verifying superblock without walking its trees, and a damaged block of it is
/// corruption, never a torn write to fall back from (§11.8).
pub(crate) fn write_out(s: &Store, frozen: &Frozen) -> Result<()> {
    use crate::io::WriteOp;
    use crate::sync::Ordering;
    let mut installed = false;
    if !frozen.blocks.is_empty() {
        installed = write_blocks(s, &frozen.blocks)?;
        crate::fault::hit(crate::fault::FaultPoint::WriteOut);
        s.dev.flush().map_err(dev_error(&*s.dev, "flush"))?;
        s.counters.flushes.fetch_add(1, Ordering::Relaxed);
    }
    let ops: Vec<WriteOp<'_>> = frozen
        .superblocks
        .iter()
        .map(|(offset, buf)| WriteOp { offset: *offset, data: buf })
        .collect();
    s.dev.write_batch(&ops).map_err(dev_error(&*s.dev, "write the superblock"))?;
    s.dev.flush().map_err(dev_error(&*s.dev, "flush the superblock"))?;
    s.counters.blocks_written.fetch_add(frozen.blocks.len() as u64, Ordering::Relaxed);
    s.counters.flushes.fetch_add(1, Ordering::Relaxed);
    s.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
    if !installed {
        s.install_written(&frozen.blocks);
    }
    s.end_in_flight(frozen.blocks.iter().map(|(addr, _)| *addr));
    Ok(())
}

/// Blocks from which a generation's write is pipelined with their installs
/// (`write_blocks`), and the batches it is cut into.
const PIPELINE_MIN_BLOCKS: usize = 8192;
const PIPELINE_BATCHES: usize = 8;

/// A generation's blocks (ascending) as a slice of (address, image).
type Blocks<'a> = &'a [(u64, Arc<AlignedBuf>)];

/// Writes `blocks`; returns whether it also installed them into the buffer pool (else the
/// caller installs them once the checkpoint is durable), then the caller ends them all in
/// flight (`Store::end_in_flight`). Many blocks are written
/// in batches, each installed on another thread while the next is written
/// (`Store::install_written`: they stay in flight, reads are served their images until the
/// flush), so their copies into frames backed in bulk overlap the device's writes
/// (design.md §11.6).
fn write_blocks(s: &Store, blocks: Blocks<'_>) -> Result<bool> {
    let write = |part: Blocks<'_>| {
        let ops: Vec<crate::io::WriteOp<'_>> = part
            .iter()
            .map(|(addr, buf)| crate::io::WriteOp { offset: s.block_offset(*addr), data: buf })
            .collect();
        s.dev.write_batch(&ops).map_err(dev_error(&*s.dev, "write"))
    };
    if cfg!(loom) || blocks.len() < PIPELINE_MIN_BLOCKS {
        write(blocks)?;
        return Ok(false);
    }
    let mut written: Blocks<'_> = &[];
    for batch in blocks.chunks(blocks.len().div_ceil(PIPELINE_BATCHES)) {
        let result = std::thread::scope(|scope| {
            let installing = scope.spawn(|| s.install_written(written));
            let result = write(batch);
            if let Err(panic) = installing.join() {
                std::panic::resume_unwind(panic);
            }
            result
        });
        result?;
        written = batch;
    }
    s.install_written(written);
    Ok(true)
}
