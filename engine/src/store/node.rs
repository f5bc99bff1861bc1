//! Node images as the tree code reads them: from a writer's dirty block or an immutable
//! image, decoded with only the header re-checked.

use arbor_format::constants::{HEADER_BYTES, SLOT_BYTES};
use arbor_format::header::BlockHeader;
use arbor_format::node::Node;

use crate::error::corrupt;
use crate::mvcc::SlotState;
use crate::store::Block;
use crate::sync::RwLockReadGuard;
use crate::Result;

/// A node image to read: the writer's dirty block (under its slot's read lock, which
/// readers share; the writer's own edits need `&mut Writer`, so borrowck guarantees the
/// writer never waits on a guard it holds) or a clean block.
pub(crate) enum NodeBuf<'a> {
    Dirty(RwLockReadGuard<'a, SlotState>),
    Clean(Block<'a>),
}

impl std::ops::Deref for NodeBuf<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            NodeBuf::Dirty(g) => g.image.bytes(),
            NodeBuf::Clean(b) => b,
        }
    }
}

/// A view of a node image already validated in full: when it was read from the device
/// (`Store::read_uncached`) or because the writer built it. Only the header is re-checked,
/// so a lookup costs a binary search, not a validation of the whole block. Debug builds
/// (every test) re-validate in full to catch writer bugs.
#[inline]
pub(crate) fn decode(buf: &[u8], addr: u64) -> Result<Node<'_>> {
    debug_assert!(Node::decode(buf).is_ok(), "block {addr} fails full validation");
    Node::decode_trusted(buf).map_err(|e| corrupt(addr, e))
}

/// Loads the cache lines of a node image that a search reads: the header and the slot
/// array (whose order hints decide almost every comparison, design.md §4.1, §12.4), all at
/// once (independent loads the processor overlaps), before the search reads them one after
/// the other. A cold node then costs about two memory latencies (the header, then the slots)
/// rather than one per line the search touches, and the lines a search does not need (the
/// heap of keys and values, most of the block) are not fetched. Safe reads of the image:
/// a count past the block only shortens the range.
#[inline]
pub(crate) fn load_search_lines(buf: &[u8]) {
    const LINE: usize = 64;
    let end = slots_end(buf);
    let mut x = 0u8;
    for at in (LINE..end).step_by(LINE) {
        x ^= buf[at];
    }
    std::hint::black_box(x);
}

/// Where a node image's slot array ends (header included), from its item count, read
/// without validation and clamped to the image: for prefetching, never for decoding.
#[inline]
pub(crate) fn slots_end(buf: &[u8]) -> usize {
    let at = std::mem::offset_of!(BlockHeader, item_count);
    let count = buf.get(at..at + 2).map_or(0, |c| usize::from(u16::from_le_bytes([c[0], c[1]])));
    (HEADER_BYTES + count * SLOT_BYTES).min(buf.len())
}
