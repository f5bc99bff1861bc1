//! Encoding and validating decoding of the allocator's blocks (`docs/format.md`,
//! "Allocator"): bitmap chunks (kind 4), index blocks (kind 5), pending lists (kind 6).
//!
//! A thin layer over `arbor_format`'s views (`BitmapChunk`, `AllocIndex`, `PendingList`).
//! Encoders return sealed blocks (crc filled in). Decoders take a block the engine has
//! already verified against its pointer (address, generation, crc); on top of the format
//! crate's checks (kind, owner, counts, pointer flags, extent sanity) they check what only
//! the allocator knows: the level and first block a block must have at its place in the
//! index, and its exact child count. They never panic on bad bytes; the reason goes into
//! `Error::Corrupt`.

use super::pending::Run;
use crate::io::AlignedBuf;
use arbor_format::{
    seal_block, AllocIndex, BitmapChunk, ChildPtr, Extent, PendingList, HEADER_BYTES,
};

/// A zeroed buffer of one block, aligned for O_DIRECT.
fn block(block_bytes: u32) -> AlignedBuf {
    AlignedBuf::zeroed(block_bytes as usize, block_bytes as usize)
}

/// A bitmap chunk covering blocks from `first_block`; `words` are the chunk's bits.
pub(super) fn encode_chunk(
    block_bytes: u32,
    addr: u64,
    gen: u64,
    first_block: u64,
    words: &[u64],
) -> AlignedBuf {
    let mut buf = block(block_bytes);
    BitmapChunk::init(&mut buf[..], addr, gen, first_block);
    // The layout is bit i at byte i/8, bit i%8: little-endian 64-bit words, copied whole.
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
    let mut buf = block(block_bytes);
    let mut index = AllocIndex::init(&mut buf[..], addr, gen, level, first_block);
    for child in children {
        index.push(*child).expect("index fanout exceeded");
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
    runs: &[Run],
) -> AlignedBuf {
    let mut buf = block(block_bytes);
    let mut list = PendingList::init(&mut buf[..], addr, gen, freed_gen);
    list.set_next(next);
    for run in runs {
        list.push(Extent::new(run.start, run.count)).expect("pending list overfull");
    }
    seal_block(&mut buf);
    buf
}

/// The words of a bitmap chunk that must cover blocks from `first_block`.
pub(super) fn decode_chunk(buf: &[u8], first_block: u64) -> Result<Vec<u64>, String> {
    let chunk = BitmapChunk::decode(buf).map_err(|e| e.reason)?;
    if chunk.first_block() != first_block {
        let found = chunk.first_block();
        return Err(format!("bitmap chunk covers {found} but belongs at {first_block}"));
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
    let index = AllocIndex::decode(buf).map_err(|e| e.reason)?;
    if index.level() != level {
        return Err(format!("index block at level {}, expected {level}", index.level()));
    }
    if index.first_block() != first_block {
        let found = index.first_block();
        return Err(format!("index block covers {found} but belongs at {first_block}"));
    }
    if index.len() != expected {
        return Err(format!("index block has {} children, expected {expected}", index.len()));
    }
    Ok((0..expected).map(|i| index.child(i)).collect())
}

/// A decoded pending list block.
pub(super) struct DecodedList {
    pub freed_gen: u64,
    pub next: ChildPtr,
    /// `(start, count)`, non-empty and not wrapping; range-checked by the caller.
    pub extents: Vec<(u64, u64)>,
}

pub(super) fn decode_pending(buf: &[u8]) -> Result<DecodedList, String> {
    let list = PendingList::decode(buf).map_err(|e| e.reason)?;
    let extents = (0..list.len()).map(|i| list.extent(i)).map(|e| (e.start(), e.count()));
    Ok(DecodedList {
        freed_gen: list.freed_generation(),
        next: list.next(),
        extents: extents.collect(),
    })
}
