//! Slotted B-tree nodes (leaf and internal): the read view [`Node`] and its validating decoder.
//! The mutable view is in [`crate::node_mut`].
//!
//! ```text
//! | header 64 | slot 0 | slot 1 | ... | slot n-1 | free ... | heap (grows down) ... | end
//! Slot (12): back u16 | key_len u16 | val_len u16 | flags u8 | 0 u8 | hint [u8; 4]
//!            (flags bit 0: the value is an OverflowRef)
//! ```
//!
//! Item *i*'s key bytes start `back` bytes before the block's end (`offset = block bytes −
//! back`, which fits 16 bits for every block size) and run for `key_len`; its value bytes
//! follow immediately. `hint` is the key's first four bytes, zero-padded (since format
//! version 3): compared as a big-endian integer, two different hints order like their keys,
//! so a binary search reads the slot array and touches a key's bytes only where the hints
//! are equal.
//! Keys are strictly increasing (unsigned bytes, a prefix sorts first). Leaf values are inline
//! bytes or a 32-byte `OverflowRef`. Internal values are 24-byte `ChildPtr`s; item *i*'s key is
//! the lower bound of child *i*, and item 0's key is empty (minus infinity).
//!
//! `header.heap_start` is the lowest offset used by key/value bytes; the contiguous free space
//! is `[64 + 12·n, heap_start)`. Removing or shrinking an item leaves a hole in the heap that
//! compaction reclaims, so `free_bytes()` (all reclaimable space) can exceed the gap.

use crate::constants::{
    check_block_len, key_bytes_max, overflow_block_count, value_inline_bytes_max, BLOCK_BYTES_MAX,
    CHILD_PTR_BYTES, HEADER_BYTES, OVERFLOW_REF_BYTES, SLOT_BYTES, SLOT_FLAG_OVERFLOW,
    TREE_DEPTH_MAX, VALUE_BYTES_MAX,
};
use crate::error::FormatError;
use crate::header::{parse_header, BlockHeader, BlockKind};
use crate::le::U16Le;
use crate::ptr::{ChildPtr, OverflowRef};
use bytemuck::{Pod, Zeroable};
use core::cmp::Ordering;
use core::ops::Range;

/// One entry of the slot array as stored (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct SlotBytes {
    /// Block bytes minus the offset of the key bytes.
    pub back: U16Le,
    /// Key length.
    pub key_len: U16Le,
    /// Value length (24 for internal items, 32 for overflow references).
    pub val_len: U16Le,
    /// Bit 0 (`SLOT_FLAG_OVERFLOW`): the value is an `OverflowRef`.
    pub flags: u8,
    /// Zero.
    pub pad: u8,
    /// The key's first four bytes, zero-padded ([`key_hint`], big-endian).
    pub hint: [u8; 4],
}

const _: () = assert!(core::mem::size_of::<SlotBytes>() == SLOT_BYTES);
const _: () = assert!(core::mem::align_of::<SlotBytes>() == 1);
/// Every offset and length a slot stores fits its 16 bits.
const _: () = assert!(BLOCK_BYTES_MAX as usize - 1 <= u16::MAX as usize);

/// The order hint of a key: its first four bytes, zero-padded, as a big-endian integer.
/// If `key_hint(a) < key_hint(b)` then `a < b` (the bytes differ at a position both keys
/// have, or `a` ends there and is a prefix of `b`); equal hints decide nothing.
#[inline]
pub fn key_hint(key: &[u8]) -> u32 {
    match key.first_chunk::<4>() {
        Some(head) => u32::from_be_bytes(*head),
        None => {
            let mut head = [0u8; 4];
            for (to, from) in head.iter_mut().zip(key) {
                *to = *from;
            }
            u32::from_be_bytes(head)
        }
    }
}

/// One entry of the slot array, decoded (offsets in bytes from the block start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Offset of the key bytes in the block.
    pub start: usize,
    /// Key length.
    pub key_len: usize,
    /// Value length.
    pub val_len: usize,
    /// Bit 0 (`SLOT_FLAG_OVERFLOW`): the value is an `OverflowRef`.
    pub flags: u8,
    /// Zero in a valid slot.
    pub pad: u8,
    /// The key's order hint ([`key_hint`]).
    pub hint: u32,
}

impl Slot {
    /// The slot of an item whose key starts at `start`.
    pub(crate) fn new(start: usize, key: &[u8], flags: u8, val_len: usize) -> Self {
        Self { start, key_len: key.len(), val_len, flags, pad: 0, hint: key_hint(key) }
    }
    /// The slot as stored in a block of `block_len` bytes; panics if a field does not fit
    /// (the node's own bounds keep them inside the block).
    pub(crate) fn encode(&self, block_len: usize) -> SlotBytes {
        let back = block_len.wrapping_sub(self.start);
        let max = usize::from(u16::MAX);
        assert!(
            self.start <= block_len && back <= max && self.key_len <= max && self.val_len <= max,
            "slot {self:?} does not fit a {block_len}-byte block"
        );
        SlotBytes {
            back: U16Le::new(back as u16),
            key_len: U16Le::new(self.key_len as u16),
            val_len: U16Le::new(self.val_len as u16),
            flags: self.flags,
            pad: self.pad,
            hint: self.hint.to_be_bytes(),
        }
    }
    #[inline]
    fn decode(raw: &SlotBytes, block_len: usize) -> Self {
        Self {
            start: block_len.saturating_sub(usize::from(raw.back.get())),
            key_len: usize::from(raw.key_len.get()),
            val_len: usize::from(raw.val_len.get()),
            flags: raw.flags,
            pad: raw.pad,
            hint: u32::from_be_bytes(raw.hint),
        }
    }
    /// Bytes of key plus value.
    #[inline]
    pub fn kv_len(&self) -> usize {
        self.key_len + self.val_len
    }
    #[inline]
    pub(crate) fn start(&self) -> usize {
        self.start
    }
    #[inline]
    pub(crate) fn key_range(&self) -> Range<usize> {
        self.start..self.start.saturating_add(self.key_len)
    }
    #[inline]
    pub(crate) fn val_range(&self) -> Range<usize> {
        let start = self.key_range().end;
        start..start.saturating_add(self.val_len)
    }
    #[inline]
    pub(crate) fn kv_range(&self) -> Range<usize> {
        self.start()..self.val_range().end
    }
}

#[inline]
pub(crate) const fn slot_offset(index: usize) -> usize {
    HEADER_BYTES + index * SLOT_BYTES
}

/// Slot `index` of `buf`, or an all-zero slot if it lies outside the buffer.
#[inline]
pub(crate) fn read_slot(buf: &[u8], index: usize) -> Slot {
    let at = slot_offset(index);
    let raw = buf
        .get(at..at + SLOT_BYTES)
        .and_then(|bytes| bytemuck::try_pod_read_unaligned(bytes).ok())
        .unwrap_or_else(SlotBytes::zeroed);
    Slot::decode(&raw, buf.len())
}

/// Key plus value length of one encoded slot (`SLOT_BYTES` bytes).
#[inline]
fn slot_kv_len(raw: &[u8]) -> usize {
    let field = |at: usize| {
        raw.get(at..at + 2)
            .and_then(|b| b.first_chunk::<2>())
            .map_or(0, |b| usize::from(u16::from_le_bytes(*b)))
    };
    field(core::mem::offset_of!(SlotBytes, key_len))
        + field(core::mem::offset_of!(SlotBytes, val_len))
}

/// The first slot whose hint is not below `hint` (`slots.len()` if none), found without a
/// branch per step: the hints' order is as random as the keys', so a branch would be
/// mispredicted half the time (`select_unpredictable` keeps the step a conditional move).
#[inline]
fn hint_lower_bound(slots: &[SlotBytes], hint: u32) -> usize {
    let below = |slot: &SlotBytes| u32::from_be_bytes(slot.hint) < hint;
    let (mut base, mut size) = (0usize, slots.len());
    if size == 0 {
        return 0;
    }
    // The answer lies in `base..=base + size`, and `base + size <= slots.len()` throughout:
    // every index below is in bounds. (With `get`, the compiler turns the selection back
    // into a branch around the `None` case.)
    #[allow(clippy::indexing_slicing)]
    {
        while size > 1 {
            let half = size / 2;
            base = core::hint::select_unpredictable(below(&slots[base + half]), base + half, base);
            size -= half;
        }
        base + usize::from(below(&slots[base]))
    }
}

/// A leaf value as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafValue<'a> {
    /// The value bytes, inline in the leaf.
    Inline(&'a [u8]),
    /// A reference to an overflow extent.
    Overflow(OverflowRef),
}

/// A value to store in a node: leaves take `Inline` or `Overflow`, internal nodes `Child`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueRef<'a> {
    /// Inline leaf value bytes.
    Inline(&'a [u8]),
    /// Leaf value in an overflow extent.
    Overflow(OverflowRef),
    /// Internal node child.
    Child(ChildPtr),
}

impl<'a> ValueRef<'a> {
    /// Bytes the value takes in the node.
    pub fn len(&self) -> usize {
        match self {
            ValueRef::Inline(bytes) => bytes.len(),
            ValueRef::Overflow(_) => OVERFLOW_REF_BYTES,
            ValueRef::Child(_) => CHILD_PTR_BYTES,
        }
    }
    /// True for an empty inline value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The bytes as stored.
    pub fn bytes(&self) -> &[u8] {
        match self {
            ValueRef::Inline(bytes) => bytes,
            ValueRef::Overflow(r) => r.as_bytes(),
            ValueRef::Child(c) => c.as_bytes(),
        }
    }
    /// The slot flags for this value.
    pub(crate) fn slot_flags(&self) -> u8 {
        match self {
            ValueRef::Overflow(_) => SLOT_FLAG_OVERFLOW,
            _ => 0,
        }
    }
}

impl<'a> From<LeafValue<'a>> for ValueRef<'a> {
    fn from(value: LeafValue<'a>) -> Self {
        match value {
            LeafValue::Inline(bytes) => ValueRef::Inline(bytes),
            LeafValue::Overflow(r) => ValueRef::Overflow(r),
        }
    }
}

/// How strictly to validate: `Strict` for bytes from disk, `Open` for a node being edited
/// (an internal node may be empty, or have a non-empty first key between `move_tail_to`
/// and the caller's `set_key(0, b"")`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    Strict,
    Open,
}

/// A read view of a slotted node over one block. Built by [`Node::decode`], which validates
/// the whole structure, so the accessors are infallible; they still never panic or read out
/// of bounds on any input (an out-of-range index yields an empty key / null pointer and a
/// debug assertion).
#[derive(Clone, Copy)]
pub struct Node<'a> {
    buf: &'a [u8],
    kind: BlockKind,
    count: usize,
}

impl<'a> Node<'a> {
    /// Validates the structure of a leaf or internal node (not its crc: see `verify_block`):
    /// kind, level (0 iff leaf, ≤ `TREE_DEPTH_MAX`), item count, slot array below
    /// `heap_start` ≤ block end, every key and value inside `[heap_start, end)`, key and value
    /// limits, slot flags, keys strictly increasing, internal item 0's key empty, child
    /// pointers non-null, overflow references consistent.
    pub fn decode(buf: &'a [u8]) -> Result<Node<'a>, FormatError> {
        validate(buf, Check::Strict)
    }

    /// O(1) checks only (block size, magic, version, kind leaf/internal, level, slot array
    /// below `heap_start` ≤ block end), for a buffer already validated by `decode` or
    /// maintained by `NodeMut` (a cached or dirty block). The accessors still never panic or
    /// read out of bounds whatever the bytes; only the per-item invariants go unchecked.
    #[inline]
    pub fn decode_trusted(buf: &'a [u8]) -> Result<Node<'a>, FormatError> {
        let (kind, count) = check_node_header(buf)?;
        Ok(Self::unchecked(buf, kind, count))
    }

    /// The view `decode` or `decode_trusted` returned for `buf` before, rebuilt from its
    /// kind and item count without re-reading the header (a cursor stepping through a leaf
    /// it holds). The accessors stay in bounds whatever the bytes.
    #[inline]
    pub fn assume(buf: &'a [u8], kind: BlockKind, count: usize) -> Self {
        Self::unchecked(buf, kind, count)
    }

    /// A view without validation, for buffers this crate's `NodeMut` maintains.
    #[inline]
    pub(crate) fn unchecked(buf: &'a [u8], kind: BlockKind, count: usize) -> Self {
        Self { buf, kind, count }
    }

    /// Leaf or internal.
    #[inline]
    pub fn kind(&self) -> BlockKind {
        self.kind
    }
    /// True for a leaf.
    #[inline]
    pub fn is_leaf(&self) -> bool {
        self.kind == BlockKind::Leaf
    }
    /// Level: 0 for leaves.
    #[inline]
    pub fn level(&self) -> u8 {
        // One byte, not the header's copy: every level of every descent asks.
        let at = core::mem::offset_of!(BlockHeader, level);
        self.buf.get(at).copied().unwrap_or(0)
    }
    /// Number of items.
    #[inline]
    pub fn len(&self) -> usize {
        self.count
    }
    /// True when the node has no items.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// The block bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.buf
    }
    /// The block size.
    pub fn block_bytes(&self) -> u32 {
        self.buf.len() as u32
    }
    /// The header.
    #[inline]
    pub fn header(&self) -> BlockHeader {
        BlockHeader::from_block(self.buf).copied().unwrap_or_else(|_| BlockHeader::zeroed())
    }
    /// Slot `index`.
    #[inline]
    pub fn slot(&self, index: usize) -> Slot {
        debug_assert!(index < self.count, "slot {index} of {}", self.count);
        read_slot(self.buf, index)
    }

    /// Key of item `index`.
    #[inline]
    pub fn key(&self, index: usize) -> &'a [u8] {
        self.buf.get(self.slot(index).key_range()).unwrap_or(&[])
    }

    /// Raw value bytes of item `index` (inline bytes, OverflowRef or ChildPtr bytes).
    #[inline]
    pub fn value_bytes(&self, index: usize) -> &'a [u8] {
        self.buf.get(self.slot(index).val_range()).unwrap_or(&[])
    }

    /// The value of item `index` in the form `insert` takes.
    pub fn value(&self, index: usize) -> ValueRef<'a> {
        match self.kind {
            BlockKind::Internal => ValueRef::Child(self.child(index)),
            _ => self.leaf_value(index).into(),
        }
    }

    /// Value of leaf item `index`.
    #[inline]
    pub fn leaf_value(&self, index: usize) -> LeafValue<'a> {
        debug_assert!(self.is_leaf());
        let slot = self.slot(index);
        let bytes = self.buf.get(slot.val_range()).unwrap_or(&[]);
        if slot.flags & SLOT_FLAG_OVERFLOW != 0 {
            if let Some(r) = OverflowRef::from_bytes(bytes) {
                return LeafValue::Overflow(r);
            }
        }
        LeafValue::Inline(bytes)
    }

    /// Child pointer of internal item `index`.
    #[inline]
    pub fn child(&self, index: usize) -> ChildPtr {
        debug_assert!(!self.is_leaf());
        ChildPtr::from_bytes(self.value_bytes(index)).unwrap_or(ChildPtr::NULL)
    }

    /// Binary search in unsigned-byte order: `Ok(index)` of an equal key, or `Err(index)`
    /// where it would be inserted.
    /// The slots' hints decide most comparisons; a key's bytes are read only where its
    /// hint equals the sought key's. The hints are searched without branches (their order
    /// is as random as the keys', so a branch per step would be mispredicted half the
    /// time); keys are compared only in the run of slots whose hint is the sought key's.
    #[inline]
    pub fn search(&self, key: &[u8]) -> Result<usize, usize> {
        let hint = key_hint(key);
        let slots = self.slot_array();
        let hint_at = |i: usize| slots.get(i).map_or(0, |s| u32::from_be_bytes(s.hint));
        let lo = hint_lower_bound(slots, hint);
        if lo >= self.count || hint_at(lo) != hint {
            return Err(lo);
        }
        if lo + 1 == self.count || hint_at(lo + 1) != hint {
            // The one key with this hint: the common case of a found key.
            return match compare_keys(self.key(lo), key) {
                Ordering::Less => Err(lo + 1),
                Ordering::Equal => Ok(lo),
                Ordering::Greater => Err(lo),
            };
        }
        // Keys sharing their first four bytes: a binary search over them, from `lo`.
        let (mut low, mut high) = (lo, self.count);
        while low < high {
            let mid = low + (high - low) / 2;
            let order = match hint_at(mid).cmp(&hint) {
                Ordering::Equal => compare_keys(self.key(mid), key),
                order => order,
            };
            match order {
                Ordering::Less => low = mid + 1,
                Ordering::Greater => high = mid,
                Ordering::Equal => return Ok(mid),
            }
        }
        Err(low)
    }

    /// The slot array as stored (a decoded node's lies within its block; empty otherwise).
    #[inline]
    fn slot_array(&self) -> &'a [SlotBytes] {
        self.buf
            .get(HEADER_BYTES..slot_offset(self.count))
            .map_or(&[], bytemuck::cast_slice::<u8, SlotBytes>)
    }

    /// Internal nodes: the child to descend into for `key`, the largest `i` with
    /// `key(i) <= key` (item 0's key is minus infinity).
    #[inline]
    pub fn child_index(&self, key: &[u8]) -> usize {
        match self.search(key) {
            Ok(index) => index,
            Err(index) => index.saturating_sub(1),
        }
    }

    /// Bytes in use: header, slot array, keys and values.
    pub fn used_bytes(&self) -> usize {
        // Over the slot array as one slice: no per-slot bounds check or full slot decode
        // (every removal asks, for its rebalance).
        let items: usize = match self.buf.get(HEADER_BYTES..slot_offset(self.count)) {
            Some(slots) => slots.chunks_exact(SLOT_BYTES).map(slot_kv_len).sum(),
            None => (0..self.count).map(|i| read_slot(self.buf, i).kv_len()).sum(),
        };
        HEADER_BYTES + self.count * SLOT_BYTES + items
    }

    /// Bytes an insert could use after compaction.
    pub fn free_bytes(&self) -> usize {
        self.buf.len().saturating_sub(self.used_bytes())
    }

    /// The contiguous gap between the slot array and the heap.
    pub fn gap_bytes(&self) -> usize {
        (self.header().heap_start() as usize).saturating_sub(slot_offset(self.count))
    }
}

impl core::fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node")
            .field("kind", &self.kind)
            .field("level", &self.level())
            .field("len", &self.count)
            .field("used_bytes", &self.used_bytes())
            .finish()
    }
}

/// `check_node_header`'s verdict on a good node, without building an error: small enough
/// to inline into every lookup (the checks are the same; a `None` is explained by
/// `check_node_header`).
#[inline]
fn node_shape(buf: &[u8]) -> Option<(BlockKind, usize)> {
    let len = u32::try_from(buf.len()).ok()?;
    if !crate::constants::is_valid_block_bytes(len) {
        return None;
    }
    let header = BlockHeader::from_block(buf).ok()?;
    let version = header.version();
    if header.magic != crate::header::BLOCK_MAGIC
        || version == 0
        || version > crate::constants::FORMAT_VERSION
    {
        return None;
    }
    let kind = match (header.kind, header.level) {
        (k, 0) if k == u8::from(BlockKind::Leaf) => BlockKind::Leaf,
        (k, 1..=TREE_DEPTH_MAX) if k == u8::from(BlockKind::Internal) => BlockKind::Internal,
        _ => return None,
    };
    let count = usize::from(header.item_count());
    let heap_start = header.heap_start() as usize;
    (slot_offset(count) <= heap_start && heap_start <= buf.len()).then_some((kind, count))
}

/// The O(1) header checks of a slotted node; returns its kind and item count.
#[inline]
pub(crate) fn check_node_header(buf: &[u8]) -> Result<(BlockKind, usize), FormatError> {
    match node_shape(buf) {
        Some(shape) => Ok(shape),
        None => node_header_error(buf),
    }
}

/// Why `node_shape` refused `buf`.
#[cold]
#[inline(never)]
fn node_header_error(buf: &[u8]) -> Result<(BlockKind, usize), FormatError> {
    check_block_len(buf.len())?;
    let header = parse_header(buf)?;
    let kind = header.kind()?;
    let level = header.level;
    match kind {
        BlockKind::Leaf if level == 0 => {}
        BlockKind::Internal if (1..=TREE_DEPTH_MAX).contains(&level) => {}
        BlockKind::Leaf | BlockKind::Internal => {
            return Err(FormatError::corrupt(format!("node: {kind:?} at level {level}")));
        }
        _ => return Err(FormatError::corrupt(format!("node: block kind {kind:?} is not a node"))),
    }
    let count = usize::from(header.item_count());
    let heap_start = header.heap_start() as usize;
    if slot_offset(count) > heap_start || heap_start > buf.len() {
        return Err(FormatError::corrupt(format!(
            "node: {count} slots end at {} but heap_start is {heap_start} in a {}-byte block",
            slot_offset(count),
            buf.len()
        )));
    }
    // `node_shape` accepts exactly what passes the checks above.
    debug_assert!(false, "node_shape refused a header check_node_header accepts");
    Ok((kind, count))
}

/// The validation shared by `Node::decode` and `NodeMut::open`.
pub(crate) fn validate(buf: &[u8], check: Check) -> Result<Node<'_>, FormatError> {
    let (kind, count) = check_node_header(buf)?;
    let block_bytes = buf.len() as u32;
    let heap_start = BlockHeader::from_block(buf)?.heap_start() as usize;
    if kind == BlockKind::Internal && count == 0 && check == Check::Strict {
        return Err(FormatError::corrupt("node: internal node with no items"));
    }
    let node = Node::unchecked(buf, kind, count);
    for index in 0..count {
        check_item(&node, index, heap_start, block_bytes, check)?;
    }
    check_heap_use(&node, heap_start, check)?;
    Ok(node)
}

/// Items must not claim more bytes than the heap holds (so `used_bytes() <= len` and a
/// rebuild or compaction always fits). A node opened for editing must also have no two items
/// sharing bytes, since editing one zeroes its old bytes. Reading needs neither (every range
/// was checked to lie inside the block), and the overlap check costs a sort, so `decode`
/// skips it.
fn check_heap_use(node: &Node<'_>, heap_start: usize, check: Check) -> Result<(), FormatError> {
    let kv_total: usize = (0..node.count).map(|i| read_slot(node.buf, i).kv_len()).sum();
    if kv_total > node.buf.len() - heap_start {
        return Err(FormatError::corrupt(format!(
            "node: items claim {kv_total} bytes but the heap holds {}",
            node.buf.len() - heap_start
        )));
    }
    if check == Check::Open {
        let mut ranges: Vec<(usize, usize)> = (0..node.count)
            .map(|i| read_slot(node.buf, i).kv_range())
            .filter(|range| !range.is_empty())
            .map(|range| (range.start, range.end))
            .collect();
        ranges.sort_unstable();
        if ranges.windows(2).any(|pair| matches!(pair, [a, b] if b.0 < a.1)) {
            return Err(FormatError::corrupt("node: two items share heap bytes"));
        }
    }
    Ok(())
}

fn check_item(
    node: &Node<'_>,
    index: usize,
    heap_start: usize,
    block_bytes: u32,
    check: Check,
) -> Result<(), FormatError> {
    let slot = read_slot(node.buf, index);
    let corrupt =
        |reason: String| Err(FormatError::corrupt(format!("node item {index}: {reason}")));
    let (key_len, val_len) = (slot.key_len, slot.val_len);
    let range = slot.kv_range();
    if range.start < heap_start || range.end > node.buf.len() {
        return corrupt(format!(
            "bytes {range:?} outside the heap [{heap_start}, {})",
            node.buf.len()
        ));
    }
    if key_len > key_bytes_max(block_bytes) {
        return corrupt(format!("key of {key_len} bytes exceeds {}", key_bytes_max(block_bytes)));
    }
    if slot.pad != 0 {
        return corrupt(format!("slot padding {} is not zero", slot.pad));
    }
    if slot.hint != key_hint(node.key(index)) {
        return corrupt(format!("slot hint {:#010x} does not match its key", slot.hint));
    }
    if node.kind == BlockKind::Internal {
        check_internal_item(node, index, &slot, check)?;
    } else if slot.flags == SLOT_FLAG_OVERFLOW {
        check_overflow_item(node, index, val_len, block_bytes)?;
    } else if slot.flags != 0 {
        return corrupt(format!("unknown slot flags {:#x}", slot.flags));
    } else if val_len > value_inline_bytes_max(block_bytes) {
        return corrupt(format!(
            "inline value of {val_len} bytes exceeds {}",
            value_inline_bytes_max(block_bytes)
        ));
    }
    if index > 0 && node.key(index - 1) >= node.key(index) {
        return corrupt("keys are not strictly increasing".into());
    }
    Ok(())
}

fn check_internal_item(
    node: &Node<'_>,
    index: usize,
    slot: &Slot,
    check: Check,
) -> Result<(), FormatError> {
    let corrupt =
        |reason: String| Err(FormatError::corrupt(format!("node item {index}: {reason}")));
    if slot.flags != 0 {
        return corrupt(format!("internal slot flags {:#x}", slot.flags));
    }
    if slot.val_len != CHILD_PTR_BYTES {
        return corrupt(format!("internal value of {} bytes, need 24", slot.val_len));
    }
    if index == 0 && slot.key_len != 0 && check == Check::Strict {
        return corrupt("first key of an internal node is not empty".into());
    }
    let child = node.child(index);
    if child.is_null() {
        return corrupt("null child pointer".into());
    }
    if child.flags() & !ChildPtr::FLAGS_KNOWN != 0 {
        return corrupt(format!("child pointer flags {:#x}", child.flags()));
    }
    Ok(())
}

fn check_overflow_item(
    node: &Node<'_>,
    index: usize,
    val_len: usize,
    block_bytes: u32,
) -> Result<(), FormatError> {
    let corrupt =
        |reason: String| Err(FormatError::corrupt(format!("node item {index}: {reason}")));
    if val_len != OVERFLOW_REF_BYTES {
        return corrupt(format!("overflow reference of {val_len} bytes, need 32"));
    }
    let Some(r) = OverflowRef::from_bytes(node.value_bytes(index)) else {
        return corrupt("unreadable overflow reference".into());
    };
    if r.address() == 0 || r.value_len() > VALUE_BYTES_MAX {
        return corrupt(format!("bad overflow reference {r:?}"));
    }
    if u64::from(r.block_count()) != overflow_block_count(r.value_len(), block_bytes) {
        return corrupt(format!("overflow reference {r:?}: block count does not fit length"));
    }
    Ok(())
}

/// Unsigned-byte order of two keys, deciding on the first eight bytes with one integer
/// comparison when both have them (most keys differ there), else as slices.
#[inline]
fn compare_keys(a: &[u8], b: &[u8]) -> Ordering {
    if let (Some(ha), Some(hb)) = (a.first_chunk::<8>(), b.first_chunk::<8>()) {
        let (x, y) = (u64::from_be_bytes(*ha), u64::from_be_bytes(*hb));
        if x != y {
            return x.cmp(&y);
        }
    }
    a.cmp(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn slot_offsets() {
        assert_eq!(offset_of!(SlotBytes, back), 0);
        assert_eq!(offset_of!(SlotBytes, key_len), 2);
        assert_eq!(offset_of!(SlotBytes, val_len), 4);
        assert_eq!(offset_of!(SlotBytes, flags), 6);
        assert_eq!(offset_of!(SlotBytes, pad), 7);
        assert_eq!(offset_of!(SlotBytes, hint), 8);
    }

    #[test]
    fn hints_order_like_keys() {
        let keys: [&[u8]; 12] = [
            b"",
            b"\0",
            b"\0\0\0\0",
            b"\0\0\0\0\x01",
            b"\x01",
            b"a",
            b"a\0",
            b"ab",
            b"abc",
            b"abcd",
            b"abcdz",
            b"b",
        ];
        for a in keys {
            for b in keys {
                if key_hint(a) != key_hint(b) {
                    assert_eq!(key_hint(a).cmp(&key_hint(b)), a.cmp(b), "{a:?} vs {b:?}");
                }
            }
        }
        assert_eq!(key_hint(b"ab"), 0x6162_0000);
    }

    #[test]
    fn a_hint_that_does_not_match_its_key_is_corrupt() {
        use crate::node_mut::NodeMut;
        let mut buf = vec![0u8; 4096];
        let mut node = NodeMut::init(&mut buf, BlockKind::Leaf, 0, 70, 1, 16);
        for key in [&b"apple"[..], b"b", b"cherry"] {
            let at = node.as_node().search(key).unwrap_err();
            node.insert(at, key, ValueRef::Inline(b"v")).unwrap();
        }
        let node = Node::decode(&buf).unwrap();
        assert_eq!(node.slot(0).hint, key_hint(b"apple"));
        assert_eq!(node.slot(1).hint, 0x6200_0000);
        assert_eq!(node.search(b"b"), Ok(1));
        assert_eq!(node.search(b"a"), Err(0));
        assert_eq!(node.search(b"c"), Err(2));
        // A hint of "c" on "b" would order the keys wrongly for the search.
        let hint_at = slot_offset(1) + core::mem::offset_of!(SlotBytes, hint);
        buf[hint_at] = b'c';
        let err = Node::decode(&buf).unwrap_err();
        assert!(err.to_string().contains("hint"), "{err}");
    }

    #[test]
    fn rejects_non_nodes() {
        assert!(Node::decode(&[0u8; 4096]).is_err());
        assert!(Node::decode(&[0u8; 100]).is_err());
        let mut buf = vec![0u8; 4096];
        let header = BlockHeader::new(BlockKind::Overflow, 0, 70, 1, 16);
        buf[..64].copy_from_slice(bytemuck::bytes_of(&header));
        assert!(Node::decode(&buf).is_err());
    }
}
