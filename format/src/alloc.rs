//! The allocator's persisted blocks (design.md §10.13). All are owned by `TREE_ID_ALLOCATOR`.
//!
//! ```text
//! Bitmap chunk (kind 4, level 0):  | header 64 (aux64 = first block covered) | bits ... |
//!     (block − 64) × 8 bits, bit i (byte 64 + i/8, bit i%8, LSB first) set = block
//!     aux64 + i allocated. Chunk k covers blocks [k × bits, (k+1) × bits).
//! Index (kind 5, level ≥ 1):       | header 64 (aux64 = first block covered) | ChildPtr × n |
//!     level 1 points at bitmap chunks, level L at index blocks of level L−1; a null entry
//!     is a chunk never written (all its blocks free).
//! Pending list (kind 6, level 0):  | header 64 (aux64 = freed generation G) | next ChildPtr 24 |
//!     Extent × n |   blocks freed in G: allocated in the bitmap, free once G+1 is durable.
//! Orphan list (kind 7, level 0):   | header 64 | next ChildPtr 24 | ChildPtr × n |
//!     roots of deleted trees still to be freed.
//! ```
//!
//! Each view is generic over its buffer (`&[u8]`, `&mut [u8]`, `Vec<u8>`): `decode` validates
//! bytes from disk, `init` formats a fresh block, mutators need `AsMut<[u8]>`. The engine
//! seals the block (`seal_block`) before writing it.

mod bitmap;
mod lists;

pub use bitmap::BitmapChunk;
pub use lists::{AllocIndex, OrphanList, PendingList};

use crate::constants::{check_block_len, is_valid_block_bytes, HEADER_BYTES, TREE_ID_ALLOCATOR};
use crate::error::FormatError;
use crate::header::{parse_header, BlockHeader, BlockKind};

/// Checks the parts of an allocator block header shared by all four kinds and returns the
/// block size and a copy of the header.
fn check_alloc_header(buf: &[u8], kind: BlockKind) -> Result<(u32, BlockHeader), FormatError> {
    let block_bytes = check_block_len(buf.len())?;
    let header = *parse_header(buf)?;
    let found = header.kind()?;
    let corrupt = |reason: String| Err(FormatError::corrupt(format!("{kind:?} block: {reason}")));
    if found != kind {
        return corrupt(format!("block kind is {found:?}"));
    }
    if header.owner() != TREE_ID_ALLOCATOR {
        return corrupt(format!("owner {} is not the allocator", header.owner()));
    }
    if header.flags.get() != 0 || header.heap_start() != 0 {
        return corrupt("reserved header fields are not zero".into());
    }
    Ok((block_bytes, header))
}

/// Formats `buf` as an empty allocator block of `kind`. Panics if `buf` is not a valid block
/// size (a caller bug that would write an undecodable block).
fn init_alloc_block(buf: &mut [u8], header: BlockHeader) {
    let len = buf.len();
    assert!(u32::try_from(len).is_ok_and(is_valid_block_bytes), "allocator block of {len} bytes");
    buf.fill(0);
    if let Some(dst) = buf.get_mut(..HEADER_BYTES) {
        dst.copy_from_slice(bytemuck::bytes_of(&header));
    }
}

fn header_of(buf: &[u8]) -> BlockHeader {
    BlockHeader::from_block(buf).copied().unwrap_or_else(|_| bytemuck::Zeroable::zeroed())
}

fn update_header(buf: &mut [u8], update: impl FnOnce(&mut BlockHeader)) {
    if let Ok(header) = BlockHeader::from_block_mut(buf) {
        update(header);
    }
}
