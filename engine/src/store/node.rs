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

/// Asks for the cache lines of a node image that a search reads: the slot array (whose order
/// hints decide almost every comparison, design.md §4.1, §12.4), all at once, as soon as the
/// header (already read: its checks come first) says how long it is. A cold node then costs
/// about two memory latencies (the header, then the slots) rather than one per line the
/// search touches, and the lines a search does not need (the heap of keys and values, most
/// of the block) are not fetched. Prefetches, not loads (design.md §12.4): a load the search
/// does not need still holds up retirement until its line arrives. A count past the block
/// only shortens the range.
#[inline]
pub(crate) fn prefetch_search_lines(buf: &[u8]) {
    if let Some(slots) = buf.get(HEADER_BYTES..slots_end(buf)) {
        prefetch_slice(slots);
    }
}

/// Where a node image's slot array ends (header included), from its item count, read
/// without validation and clamped to the image: for prefetching, never for decoding.
#[inline]
pub(crate) fn slots_end(buf: &[u8]) -> usize {
    let at = std::mem::offset_of!(BlockHeader, item_count);
    let count = buf.get(at..at + 2).map_or(0, |c| usize::from(u16::from_le_bytes([c[0], c[1]])));
    (HEADER_BYTES + count * SLOT_BYTES).min(buf.len())
}

/// Asks the processor to start loading the cache lines of `bytes`: a hint, never a read.
#[inline]
pub(crate) fn prefetch_slice(bytes: &[u8]) {
    let (start, len) = (bytes.as_ptr() as usize, bytes.len());
    let first = start & !63;
    prefetch_lines_n(first, (start + len).saturating_sub(first).div_ceil(64));
}

/// Asks the processor to start loading `lines` cache lines from `addr`: a hint, never a
/// read (a stale or wild address only loads a useless line).
#[inline]
pub(crate) fn prefetch_lines_n(addr: usize, lines: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in 0..lines {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = addr.wrapping_add(line * 64) as *const i8;
        // SAFETY: a prefetch reads nothing into the program and cannot fault, whatever the
        // address (a stale hint only loads a useless line); SSE is part of x86_64.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (addr, lines);
}
