//! Encoding and validating decoding of the allocator's blocks (`docs/format.md`,
//! "Allocator"): bitmap chunks (kind 4), index blocks (kind 5), pending lists (kind 6).
//!
//! Encoders return sealed blocks (crc filled in). Decoders take a block the engine has
//! already verified against its pointer (address, generation, crc) and check everything the
//! allocator relies on: kind, owner, level, first block covered, item counts. They never
//! panic on bad bytes; the reason goes into `Error::Corrupt`.

use crate::io::AlignedBuf;
use arbor_format::{
    pending_list_capacity, seal_block, BlockHeader, BlockKind, ChildPtr, U16Le, U64Le,
    CHILD_PTR_BYTES, EXTENT_BYTES, HEADER_BYTES, TREE_ID_ALLOCATOR,
};

/// A zeroed block with a header of `kind` at `addr`, generation `gen`, owned by the allocator.
fn block_with_header(
    block_bytes: u32,
    kind: BlockKind,
    level: u8,
    addr: u64,
    gen: u64,
    item_count: usize,
    aux64: u64,
) -> AlignedBuf {
    let mut buf = AlignedBuf::zeroed(block_bytes as usize, block_bytes as usize);
    let mut header = BlockHeader::new(kind, level, addr, gen, TREE_ID_ALLOCATOR);
    let item_count = u16::try_from(item_count).expect("item count fits the block");
    header.item_count = U16Le::new(item_count);
    header.aux64 = U64Le::new(aux64);
    buf[..HEADER_BYTES].copy_from_slice(bytemuck::bytes_of(&header));
    buf
}

/// A bitmap chunk covering blocks from `first_block`; `words` are the chunk's bits.
pub(super) fn encode_chunk(
    block_bytes: u32,
    addr: u64,
    gen: u64,
    first_block: u64,
    words: &[u64],
) -> AlignedBuf {
    let mut buf =
        block_with_header(block_bytes, BlockKind::AllocBitmap, 0, addr, gen, 0, first_block);
    let body = &mut buf[HEADER_BYTES..];
    assert_eq!(body.len(), words.len() * 8, "a chunk fills its block");
    for (dst, w) in body.chunks_exact_mut(8).zip(words) {
        dst.copy_from_slice(&w.to_le_bytes());
    }
    seal_block(&mut buf);
    buf
}

/// An index block of `level` covering blocks from `first_block`, pointing at `children`.
pub(super) fn encode_index(
    block_bytes: u32,
    addr: u64,
    gen: u64,
    level: u8,
    first_block: u64,
    children: &[ChildPtr],
) -> AlignedBuf {
    let kind = BlockKind::AllocIndex;
    let mut buf =
        block_with_header(block_bytes, kind, level, addr, gen, children.len(), first_block);
    let body = &mut buf[HEADER_BYTES..];
    assert!(children.len() * CHILD_PTR_BYTES <= body.len(), "index fanout exceeded");
    for (dst, child) in body.chunks_exact_mut(CHILD_PTR_BYTES).zip(children) {
        dst.copy_from_slice(child.as_bytes());
    }
    seal_block(&mut buf);
    buf
}

/// A pending list of the runs freed in `freed_gen`, linked to `next`.
pub(super) fn encode_pending(
    block_bytes: u32,
    addr: u64,
    gen: u64,
    freed_gen: u64,
    next: ChildPtr,
    runs: &[super::pending::Run],
) -> AlignedBuf {
    assert!(runs.len() <= pending_list_capacity(block_bytes), "pending list overfull");
    let kind = BlockKind::PendingList;
    let mut buf = block_with_header(block_bytes, kind, 0, addr, gen, runs.len(), freed_gen);
    let body = &mut buf[HEADER_BYTES..];
    body[..CHILD_PTR_BYTES].copy_from_slice(next.as_bytes());
    let extents = body[CHILD_PTR_BYTES..].chunks_exact_mut(EXTENT_BYTES);
    for (dst, run) in extents.zip(runs) {
        dst[..8].copy_from_slice(&run.start.to_le_bytes());
        dst[8..].copy_from_slice(&run.count.to_le_bytes());
    }
    seal_block(&mut buf);
    buf
}

/// Checks the header fields every allocator block shares; returns the header.
fn check_header(buf: &[u8], kind: BlockKind, level: u8) -> Result<BlockHeader, String> {
    let header = *arbor_format::parse_header(buf).map_err(|e| e.reason)?;
    let found = header.kind().map_err(|e| e.reason)?;
    if found != kind {
        return Err(format!("expected a {kind:?} block, found {found:?}"));
    }
    if header.owner() != TREE_ID_ALLOCATOR {
        return Err(format!("allocator block owned by tree {}", header.owner()));
    }
    if header.level() != level {
        return Err(format!("{kind:?} block at level {}, expected {level}", header.level()));
    }
    Ok(header)
}

/// The words of a bitmap chunk that must cover blocks from `first_block`.
pub(super) fn decode_chunk(buf: &[u8], first_block: u64) -> Result<Vec<u64>, String> {
    let header = check_header(buf, BlockKind::AllocBitmap, 0)?;
    if header.aux64() != first_block {
        return Err(format!("bitmap chunk covers {} but belongs at {first_block}", header.aux64()));
    }
    let body = buf.get(HEADER_BYTES..).unwrap_or_default();
    let words = body.chunks_exact(8).map(|b| {
        let mut w = [0u8; 8];
        w.copy_from_slice(b);
        u64::from_le_bytes(w)
    });
    Ok(words.collect())
}

/// The children of an index block of `level` covering blocks from `first_block`; exactly
/// `expected` of them. A null child is a subtree never written: all its blocks are free.
pub(super) fn decode_index(
    buf: &[u8],
    level: u8,
    first_block: u64,
    expected: usize,
) -> Result<Vec<ChildPtr>, String> {
    let header = check_header(buf, BlockKind::AllocIndex, level)?;
    if header.aux64() != first_block {
        return Err(format!("index block covers {} but belongs at {first_block}", header.aux64()));
    }
    let count = usize::from(header.item_count());
    if count != expected {
        return Err(format!("index block has {count} children, expected {expected}"));
    }
    let body = buf.get(HEADER_BYTES..).unwrap_or_default();
    let ptrs: Vec<ChildPtr> =
        body.chunks_exact(CHILD_PTR_BYTES).take(count).filter_map(ChildPtr::from_bytes).collect();
    if ptrs.len() != count {
        return Err(format!("index block too short for {count} children"));
    }
    Ok(ptrs)
}

/// A decoded pending list: `(freed_gen, next, runs)`; runs are not range-checked here.
pub(super) fn decode_pending(buf: &[u8]) -> Result<(u64, ChildPtr, Vec<(u64, u64)>), String> {
    let header = check_header(buf, BlockKind::PendingList, 0)?;
    let count = usize::from(header.item_count());
    let body = buf.get(HEADER_BYTES..).unwrap_or_default();
    let capacity = body.len().saturating_sub(CHILD_PTR_BYTES) / EXTENT_BYTES;
    if count > capacity {
        return Err(format!("pending list holds {count} extents, capacity {capacity}"));
    }
    let next = body
        .get(..CHILD_PTR_BYTES)
        .and_then(ChildPtr::from_bytes)
        .ok_or("pending list too short for its next pointer")?;
    let extents = body.get(CHILD_PTR_BYTES..).unwrap_or_default().chunks_exact(EXTENT_BYTES);
    let runs = extents.take(count).filter_map(arbor_format::Extent::from_bytes);
    let runs: Vec<(u64, u64)> = runs.map(|e| (e.start(), e.count())).collect();
    Ok((header.aux64(), next, runs))
}
