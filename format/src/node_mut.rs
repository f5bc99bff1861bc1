//! The mutable view of a slotted node: insert, remove, replace, split and merge on a plain
//! block buffer. Layout: see [`crate::node`].
//!
//! Every operation keeps the buffer decodable: `Node::decode` succeeds after any sequence of
//! successful operations (for internal nodes, once item 0's key is empty again). An operation
//! that does not fit returns [`NodeFull`] and leaves the node unchanged. Bytes freed by an
//! operation are zeroed, so a block's contents never carry stale data to disk.

use crate::constants::{
    is_valid_block_bytes, key_bytes_max, value_inline_bytes_max, HEADER_BYTES, SLOT_BYTES,
    TREE_DEPTH_MAX,
};
use crate::error::FormatError;
use crate::header::{seal_block, BlockHeader, BlockKind};
use crate::le::{U16Le, U32Le, U64Le};
use crate::node::{
    check_node_header, read_slot, slot_offset, validate, Check, Node, Slot, ValueRef,
};
use crate::ptr::ChildPtr;
use core::fmt;
use core::ops::Range;

/// The node has too little space for the operation; nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeFull;

impl fmt::Display for NodeFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("node full")
    }
}

impl std::error::Error for NodeFull {}

/// A mutable view of a leaf or internal node over one block buffer.
pub struct NodeMut<'a> {
    buf: &'a mut [u8],
    kind: BlockKind,
}

impl<'a> NodeMut<'a> {
    /// Formats `buf` (one block) as an empty node. Panics on a buffer that is not a valid
    /// block size or a kind/level that is not a node: both are caller bugs that would
    /// otherwise write an undecodable block.
    pub fn init(
        buf: &'a mut [u8],
        kind: BlockKind,
        level: u8,
        address: u64,
        generation: u64,
        owner: u64,
    ) -> Self {
        buf.fill(0);
        Self::init_zeroed(buf, BlockHeader::new(kind, level, address, generation, owner))
    }

    /// [`NodeMut::init`] of a buffer that is all zero already (a fresh zeroed allocation),
    /// with `header` from [`BlockHeader::new`]: writes the header only, not the block's bytes
    /// a second time. Panics as `init` does; a buffer that is not zero would keep its old
    /// bytes as the node's free space.
    pub fn init_zeroed(buf: &'a mut [u8], mut header: BlockHeader) -> Self {
        let len = buf.len();
        assert!(u32::try_from(len).is_ok_and(is_valid_block_bytes), "node buffer of {len} bytes");
        let (kind, level) = (header.kind(), header.level);
        assert!(
            matches!(kind, Ok(BlockKind::Leaf) if level == 0)
                || matches!(kind, Ok(BlockKind::Internal) if (1..=TREE_DEPTH_MAX).contains(&level)),
            "NodeMut::init: {kind:?} at level {level}"
        );
        let kind = if level == 0 { BlockKind::Leaf } else { BlockKind::Internal };
        debug_assert!(buf.iter().all(|&b| b == 0), "NodeMut::init_zeroed of a used buffer");
        header.heap_start = U32Le::new(len as u32);
        if let Some(dst) = buf.get_mut(..HEADER_BYTES) {
            dst.copy_from_slice(bytemuck::bytes_of(&header));
        }
        Self { buf, kind }
    }

    /// Opens an existing node for editing after validating it like `Node::decode` (except
    /// that an internal node may be empty or have a non-empty first key, see `move_tail_to`).
    pub fn open(buf: &'a mut [u8]) -> Result<Self, FormatError> {
        let kind = validate(buf, Check::Open)?.kind();
        Ok(Self { buf, kind })
    }

    /// Opens a buffer this process produced with `NodeMut` (or validated with `open`) after
    /// O(1) header checks only, skipping `open`'s per-item validation on the hot write path.
    /// Editing a buffer that does not meet `Node::decode`'s invariants may panic (an assertion
    /// or arithmetic check), so never use this on bytes read from disk without `decode`.
    pub fn open_trusted(buf: &'a mut [u8]) -> Result<Self, FormatError> {
        let (kind, _) = check_node_header(buf)?;
        Ok(Self { buf, kind })
    }

    /// The read view.
    pub fn as_node(&self) -> Node<'_> {
        Node::unchecked(self.buf, self.kind, self.len())
    }
    /// The block bytes.
    pub fn bytes(&self) -> &[u8] {
        self.buf
    }
    /// Leaf or internal.
    pub fn kind(&self) -> BlockKind {
        self.kind
    }
    /// Number of items.
    pub fn len(&self) -> usize {
        usize::from(self.header().item_count())
    }
    /// True when the node has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes an insert could use after compaction.
    pub fn free_bytes(&self) -> usize {
        self.as_node().free_bytes()
    }
    /// Whether an item with these key and value lengths fits (compacting if needed).
    pub fn fits(&self, key_len: usize, value_len: usize) -> bool {
        SLOT_BYTES + key_len + value_len <= self.free_bytes()
    }

    /// Sets the header's address.
    pub fn set_address(&mut self, address: u64) {
        self.update_header(|h| h.address = U64Le::new(address));
    }
    /// Sets the header's generation.
    pub fn set_generation(&mut self, generation: u64) {
        self.update_header(|h| h.generation = U64Le::new(generation));
    }
    /// Sets the header's owner tree id.
    pub fn set_owner(&mut self, owner: u64) {
        self.update_header(|h| h.owner = U64Le::new(owner));
    }
    /// Sets the level (internal nodes: 1..=TREE_DEPTH_MAX; leaves stay at 0).
    pub fn set_level(&mut self, level: u8) {
        assert!(
            (self.kind == BlockKind::Leaf && level == 0)
                || (self.kind == BlockKind::Internal && (1..=TREE_DEPTH_MAX).contains(&level)),
            "set_level: {:?} at level {level}",
            self.kind
        );
        self.update_header(|h| h.level = level);
    }
    /// Computes and stores the block crc; returns it for the parent's `ChildPtr`.
    pub fn seal(&mut self) -> u32 {
        seal_block(self.buf)
    }

    /// Inserts an item at `index` (0..=len), compacting the heap if the contiguous gap is too
    /// small but the total free space suffices. The caller keeps keys strictly increasing and
    /// within `key_bytes_max` / `value_inline_bytes_max` (the engine checks user input first).
    pub fn insert(
        &mut self,
        index: usize,
        key: &[u8],
        value: ValueRef<'_>,
    ) -> Result<(), NodeFull> {
        let count = self.len();
        assert!(index <= count, "insert at {index} of {count}");
        self.check_item_limits(key, &value);
        debug_assert!(index == 0 || self.as_node().key(index - 1) < key, "insert breaks order");
        debug_assert!(index == count || key < self.as_node().key(index), "insert breaks order");
        let kv_len = key.len() + value.len();
        // The contiguous gap usually suffices: only then is the (per-slot) free space summed.
        if SLOT_BYTES + kv_len > self.as_node().gap_bytes() {
            if SLOT_BYTES + kv_len > self.free_bytes() {
                return Err(NodeFull);
            }
            self.compact();
        }
        let heap = self.heap_start() - kv_len;
        self.write(heap, key);
        self.write(heap + key.len(), value.bytes());
        self.buf.copy_within(slot_offset(index)..slot_offset(count), slot_offset(index + 1));
        let slot = Slot::new(heap, key, value.slot_flags(), value.len());
        self.write_slot(index, &slot);
        self.set_len(count + 1);
        self.set_heap_start(heap);
        Ok(())
    }

    /// Removes item `index`. Its bytes are zeroed; the hole is reclaimed by compaction (or at
    /// once when it sits at the bottom of the heap).
    pub fn remove(&mut self, index: usize) {
        let count = self.len();
        assert!(index < count, "remove {index} of {count}");
        self.free_item(index);
        self.buf.copy_within(slot_offset(index + 1)..slot_offset(count), slot_offset(index));
        self.zero(slot_offset(count - 1)..slot_offset(count));
        self.set_len(count - 1);
    }

    /// Removes items `at..len` (their bytes zeroed).
    pub fn truncate(&mut self, at: usize) {
        // In one pass: what removing them one by one from the end leaves (their bytes and
        // slots zeroed), without shifting or re-reading the header per item.
        let count = self.len();
        let at = at.min(count);
        for index in at..count {
            let range = self.slot(index).kv_range();
            self.zero(range);
        }
        self.zero(slot_offset(at)..slot_offset(count));
        self.set_len(at);
        let heap = (0..self.len()).map(|i| self.slot(i).start()).min().unwrap_or(self.buf.len());
        self.set_heap_start(heap);
    }

    /// Replaces item `index`'s value (the kind of value must match the node kind).
    pub fn replace_value(&mut self, index: usize, value: ValueRef<'_>) -> Result<(), NodeFull> {
        let slot = self.slot(index);
        self.check_value_kind(&value);
        let old_len = slot.val_len;
        if value.len() <= old_len {
            let start = slot.val_range().start;
            self.write(start, value.bytes());
            self.zero(start + value.len()..start + old_len);
            let new_slot = Slot { flags: value.slot_flags(), val_len: value.len(), ..slot };
            self.write_slot(index, &new_slot);
            return Ok(());
        }
        self.check_item_limits(self.as_node().key(index), &value);
        if value.len() - old_len > self.free_bytes() {
            return Err(NodeFull);
        }
        let mut kv = self.as_node().key(index).to_vec();
        kv.extend_from_slice(value.bytes());
        self.place(index, &kv, slot.key_len, value.slot_flags());
        Ok(())
    }

    /// Replaces item `index`'s key (separator updates). The caller keeps keys ordered.
    pub fn set_key(&mut self, index: usize, key: &[u8]) -> Result<(), NodeFull> {
        let slot = self.slot(index);
        assert!(key.len() <= key_bytes_max(self.buf.len() as u32), "key of {} bytes", key.len());
        debug_assert!(index == 0 || self.as_node().key(index - 1) < key, "set_key breaks order");
        debug_assert!(index + 1 >= self.len() || key < self.as_node().key(index + 1));
        let (old_key_len, val_len) = (slot.key_len, slot.val_len);
        if key.len() <= old_key_len {
            let start = slot.start();
            self.buf.copy_within(slot.val_range(), start + key.len());
            self.write(start, key);
            self.zero(start + key.len() + val_len..slot.kv_range().end);
            self.write_slot(index, &Slot::new(start, key, slot.flags, val_len));
            return Ok(());
        }
        if key.len() - old_key_len > self.free_bytes() {
            return Err(NodeFull);
        }
        let mut kv = key.to_vec();
        kv.extend_from_slice(self.as_node().value_bytes(index));
        self.place(index, &kv, key.len(), slot.flags);
        Ok(())
    }

    /// Overwrites internal item `index`'s child pointer in place.
    pub fn set_child(&mut self, index: usize, child: ChildPtr) {
        assert!(self.kind == BlockKind::Internal, "set_child on a leaf");
        let start = self.slot(index).val_range().start;
        self.write(start, child.as_bytes());
    }

    /// Packs all keys and values at the end of the block (item 0 highest) and zeroes the gap.
    pub fn compact(&mut self) {
        let snapshot = self.buf.to_vec();
        let count = self.len();
        let mut heap = self.buf.len();
        for index in 0..count {
            let slot = read_slot(&snapshot, index);
            let kv = snapshot.get(slot.kv_range()).unwrap_or(&[]);
            heap -= kv.len();
            self.write(heap, kv);
            self.write_slot(index, &Slot { start: heap, ..slot });
        }
        self.zero(slot_offset(count)..heap);
        self.set_heap_start(heap);
    }

    /// The index that splits the used bytes (slots, keys, values) most evenly, with both sides
    /// non-empty. Needs at least two items.
    pub fn split_point(&self) -> usize {
        let count = self.len();
        debug_assert!(count >= 2, "split_point of {count} items");
        if count < 2 {
            return count;
        }
        let sizes: Vec<usize> = (0..count).map(|i| SLOT_BYTES + self.slot(i).kv_len()).collect();
        balanced_split(&sizes)
    }

    /// The split for inserting an item of `key_len` + `value_len` bytes at `index` into this
    /// full node: returns `(at, left)` such that after `move_tail_to(at, right)` the item fits
    /// in the left node at `index` (when `left`) or in the right node at `index - at`. Both
    /// nodes keep at least one item. `None` if no split works (the item is over the limits).
    pub fn split_point_for_insert(
        &self,
        index: usize,
        key_len: usize,
        value_len: usize,
    ) -> Option<(usize, bool)> {
        let count = self.len();
        let mut sizes: Vec<usize> =
            (0..count).map(|i| SLOT_BYTES + self.slot(i).kv_len()).collect();
        sizes.insert(index.min(count), SLOT_BYTES + key_len + value_len);
        let capacity = self.buf.len() - HEADER_BYTES;
        let total: usize = sizes.iter().sum();
        // prefix[cut] = bytes of the first `cut` items of the combined sequence.
        let prefix: Vec<usize> = core::iter::once(0)
            .chain(sizes.iter().scan(0, |sum, size| {
                *sum += size;
                Some(*sum)
            }))
            .collect();
        let bytes_before = |cut: usize| prefix.get(cut).copied().unwrap_or(total);
        let mut cuts: Vec<usize> = (1..sizes.len()).collect();
        cuts.sort_by_key(|&cut| (2 * bytes_before(cut)).abs_diff(total));
        let cut = cuts
            .into_iter()
            .find(|&cut| bytes_before(cut) <= capacity && total - bytes_before(cut) <= capacity)?;
        // Combined items before the cut end up left; the new item is combined item `index`.
        let goes_left = index < cut;
        Some((if goes_left { cut - 1 } else { cut }, goes_left))
    }

    /// Moves items `at..len` to the end of `right` (same kind). For internal nodes the caller
    /// then takes `right.key(first moved)` as the separator for the parent and sets the moved
    /// first key to empty with `set_key`.
    pub fn move_tail_to(&mut self, at: usize, right: &mut NodeMut<'_>) -> Result<(), NodeFull> {
        assert!(
            self.kind == right.kind,
            "move_tail_to between {:?} and {:?}",
            self.kind,
            right.kind
        );
        let count = self.len();
        assert!(at <= count, "move_tail_to at {at} of {count}");
        right.append_run(&self.as_node(), at..count)?;
        self.truncate(at);
        Ok(())
    }

    /// Appends items `range` of `src` (same kind and block size, keys above this node's)
    /// after this node's items: each item's key and value bytes copied in one piece, the
    /// header written once. Nothing changes when they do not fit.
    pub fn append_run(&mut self, src: &Node<'_>, range: Range<usize>) -> Result<(), NodeFull> {
        assert!(self.kind == src.kind(), "append_run of {:?} into {:?}", src.kind(), self.kind);
        assert!(range.end <= src.len(), "append_run of {range:?} from {} items", src.len());
        assert!(src.bytes().len() == self.buf.len(), "append_run between block sizes");
        let need: usize = range.clone().map(|i| SLOT_BYTES + src.slot(i).kv_len()).sum();
        if need > self.as_node().gap_bytes() {
            if need > self.free_bytes() {
                return Err(NodeFull);
            }
            self.compact();
        }
        debug_assert!(
            self.is_empty()
                || range.is_empty()
                || self.as_node().key(self.len() - 1) < src.key(range.start),
            "append_run breaks order"
        );
        let count = self.len();
        let mut heap = self.heap_start();
        for (k, index) in range.clone().enumerate() {
            let slot = src.slot(index);
            let kv = src.bytes().get(slot.kv_range()).unwrap_or(&[]);
            heap -= kv.len();
            self.write(heap, kv);
            self.write_slot(count + k, &Slot { start: heap, ..slot });
        }
        self.set_len(count + range.len());
        self.set_heap_start(heap);
        Ok(())
    }

    /// Appends every item of `src` (same kind) after this node's items (merge). For internal
    /// nodes use [`NodeMut::append_from_with_separator`], since `src`'s first key is empty.
    pub fn append_from(&mut self, src: &Node<'_>) -> Result<(), NodeFull> {
        self.append_items(src, None)
    }

    /// Internal-node merge: appends `src`'s items, giving its first item (whose key is empty)
    /// the key `separator` (the parent's separator between the two nodes).
    pub fn append_from_with_separator(
        &mut self,
        src: &Node<'_>,
        separator: &[u8],
    ) -> Result<(), NodeFull> {
        self.append_items(src, Some(separator))
    }

    fn append_items(&mut self, src: &Node<'_>, first_key: Option<&[u8]>) -> Result<(), NodeFull> {
        assert!(self.kind == src.kind(), "append_from {:?} into {:?}", src.kind(), self.kind);
        let mut need = src.used_bytes() - HEADER_BYTES;
        if let (Some(key), false) = (first_key, src.is_empty()) {
            need = need - src.key(0).len() + key.len();
        }
        if need > self.free_bytes() {
            return Err(NodeFull);
        }
        for index in 0..src.len() {
            let key = match first_key {
                Some(key) if index == 0 => key,
                _ => src.key(index),
            };
            self.insert(self.len(), key, src.value(index))?;
        }
        Ok(())
    }

    /// Writes `kv` (key then value) for item `index` at a new heap position, freeing the old
    /// bytes first. The caller has checked that the total free space suffices.
    fn place(&mut self, index: usize, kv: &[u8], key_len: usize, flags: u8) {
        self.free_item(index);
        let len = self.buf.len();
        self.write_slot(index, &Slot::new(len, &[], 0, 0));
        if kv.len() > self.as_node().gap_bytes() {
            self.compact();
        }
        let heap = self.heap_start() - kv.len();
        self.write(heap, kv);
        let key = kv.get(..key_len).unwrap_or(&[]);
        self.write_slot(index, &Slot::new(heap, key, flags, kv.len() - key_len));
        self.set_heap_start(heap);
    }

    /// Zeroes item `index`'s bytes; reclaims them at once if they sit at the heap bottom.
    fn free_item(&mut self, index: usize) {
        let slot = self.slot(index);
        let range = slot.kv_range();
        self.zero(range.clone());
        if range.start == self.heap_start() {
            self.set_heap_start(range.end);
        }
    }

    fn check_value_kind(&self, value: &ValueRef<'_>) {
        let is_child = matches!(value, ValueRef::Child(_));
        assert!(is_child == (self.kind == BlockKind::Internal), "{value:?} in a {:?}", self.kind);
    }

    fn check_item_limits(&self, key: &[u8], value: &ValueRef<'_>) {
        self.check_value_kind(value);
        let block_bytes = self.buf.len() as u32;
        assert!(key.len() <= key_bytes_max(block_bytes), "key of {} bytes", key.len());
        if let ValueRef::Inline(bytes) = value {
            assert!(bytes.len() <= value_inline_bytes_max(block_bytes), "inline value too large");
        }
    }

    fn slot(&self, index: usize) -> Slot {
        debug_assert!(index < self.len());
        read_slot(self.buf, index)
    }

    fn write_slot(&mut self, index: usize, slot: &Slot) {
        // An item with no bytes (empty key, empty value) always points at the block end, so
        // reclaiming the heap bottom (`free_item`) can never leave it below `heap_start`.
        let mut slot = *slot;
        if slot.kv_len() == 0 {
            slot.start = self.buf.len();
        }
        let raw = slot.encode(self.buf.len());
        self.write(slot_offset(index), bytemuck::bytes_of(&raw));
    }

    fn header(&self) -> BlockHeader {
        BlockHeader::from_block(self.buf).copied().unwrap_or_else(|_| bytemuck::Zeroable::zeroed())
    }

    fn update_header(&mut self, update: impl FnOnce(&mut BlockHeader)) {
        // `init` and `open` checked the length, so the header is always there.
        if let Ok(header) = BlockHeader::from_block_mut(self.buf) {
            update(header);
        }
    }

    fn heap_start(&self) -> usize {
        self.header().heap_start() as usize
    }

    fn set_heap_start(&mut self, heap: usize) {
        self.update_header(|h| h.heap_start = U32Le::new(heap as u32));
    }

    fn set_len(&mut self, count: usize) {
        self.update_header(|h| h.item_count = U16Le::new(count as u16));
    }

    fn write(&mut self, at: usize, bytes: &[u8]) {
        let dst = self.buf.get_mut(at..at + bytes.len());
        debug_assert!(dst.is_some(), "write {at}+{} outside the block", bytes.len());
        if let Some(dst) = dst {
            dst.copy_from_slice(bytes);
        }
    }

    fn zero(&mut self, range: core::ops::Range<usize>) {
        if let Some(dst) = self.buf.get_mut(range) {
            dst.fill(0);
        }
    }
}

/// The cut of `sizes` closest to half the total, clamped so both sides are non-empty.
fn balanced_split(sizes: &[usize]) -> usize {
    let total: usize = sizes.iter().sum();
    let (mut best_diff, mut best_cut, mut prefix) = (usize::MAX, 1, 0);
    for cut in 1..sizes.len() {
        prefix += sizes.get(cut - 1).copied().unwrap_or(0);
        let diff = (2 * prefix).abs_diff(total);
        if diff < best_diff {
            (best_diff, best_cut) = (diff, cut);
        }
    }
    best_cut
}

impl fmt::Debug for NodeMut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.as_node(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::value_inline_bytes_max;

    fn leaf(buf: &mut [u8]) -> NodeMut<'_> {
        NodeMut::init(buf, BlockKind::Leaf, 0, 100, 1, 16)
    }

    #[test]
    fn insert_search_remove() {
        let mut buf = vec![0u8; 4096];
        let mut node = leaf(&mut buf);
        node.insert(0, b"b", ValueRef::Inline(b"2")).unwrap();
        node.insert(0, b"a", ValueRef::Inline(b"1")).unwrap();
        node.insert(2, b"c", ValueRef::Inline(b"")).unwrap();
        let view = node.as_node();
        assert_eq!((view.len(), view.key(1), view.value_bytes(0)), (3, &b"b"[..], &b"1"[..]));
        assert_eq!(view.search(b"bb"), Err(2));
        assert_eq!(view.search(b""), Err(0));
        node.remove(1);
        assert_eq!(node.as_node().search(b"c"), Ok(1));
        assert_eq!(node.free_bytes(), 4096 - 64 - 2 * SLOT_BYTES - 3);
        assert!(Node::decode(&buf).is_ok());
    }

    #[test]
    fn full_node_is_unchanged_and_compaction_is_automatic() {
        let mut buf = vec![0u8; 4096];
        let mut node = leaf(&mut buf);
        let value = vec![9u8; value_inline_bytes_max(4096)];
        let mut count = 0u8;
        while node.fits(1, value.len()) {
            node.insert(usize::from(count), &[count], ValueRef::Inline(&value)).unwrap();
            count += 1;
        }
        let before = node.bytes().to_vec();
        assert_eq!(node.insert(0, b"", ValueRef::Inline(&value)), Err(NodeFull));
        assert_eq!(node.bytes(), &before[..]);
        // Free two holes in the middle; an insert needing both compacts first.
        node.replace_value(1, ValueRef::Inline(b"x")).unwrap();
        node.replace_value(2, ValueRef::Inline(b"y")).unwrap();
        assert!(node.as_node().gap_bytes() < value.len());
        node.insert(usize::from(count), &[count], ValueRef::Inline(&value)).unwrap();
        assert!(Node::decode(&buf).is_ok());
    }

    #[test]
    fn split_and_merge_internal() {
        let mut buf = vec![0u8; 4096];
        let mut right_buf = vec![0u8; 4096];
        let mut node = NodeMut::init(&mut buf, BlockKind::Internal, 1, 5, 1, 16);
        node.insert(0, b"", ValueRef::Child(ChildPtr::new(70, 1, 1))).unwrap();
        for i in 1..20u8 {
            let child = ValueRef::Child(ChildPtr::new(70 + u64::from(i), 1, 1));
            node.insert(usize::from(i), &[i], child).unwrap();
        }
        let at = node.split_point();
        assert!(at > 0 && at < 20);
        let mut right = NodeMut::init(&mut right_buf, BlockKind::Internal, 1, 6, 1, 16);
        node.move_tail_to(at, &mut right).unwrap();
        let separator = right.as_node().key(0).to_vec();
        right.set_key(0, b"").unwrap();
        assert_eq!(node.as_node().child_index(&[200]), at - 1);
        node.append_from_with_separator(&right.as_node(), &separator).unwrap();
        let merged = Node::decode(&buf).unwrap();
        assert_eq!(merged.len(), 20);
        assert_eq!(merged.child(at).address(), 70 + at as u64);
        assert_eq!(merged.child_index(&[7, 1]), 7);
    }

    #[test]
    fn append_run_copies_items_and_compacts_first_when_needed() {
        let (mut src_buf, mut dst_buf) = (vec![0u8; 4096], vec![0u8; 4096]);
        let mut src = leaf(&mut src_buf);
        for i in 0..12u8 {
            src.insert(usize::from(i), &[b'k', i], ValueRef::Inline(&[i; 200])).unwrap();
        }
        let mut dst = leaf(&mut dst_buf);
        for i in 0..17u8 {
            dst.insert(usize::from(i), &[b'a', i], ValueRef::Inline(&[i; 200])).unwrap();
        }
        // Holes in the middle of the heap: the run fits only after compaction.
        for _ in 0..5 {
            dst.remove(2);
        }
        assert!(dst.as_node().gap_bytes() < 6 * (SLOT_BYTES + 202));
        let before = dst.bytes().to_vec();
        assert_eq!(dst.append_run(&src.as_node(), 0..12), Err(NodeFull));
        assert_eq!(dst.bytes(), &before[..]);
        dst.append_run(&src.as_node(), 6..12).unwrap();
        let view = Node::decode(&dst_buf).unwrap();
        assert_eq!(view.len(), 18);
        assert_eq!(view.key(2), &[b'a', 7][..]);
        for i in 0..6u8 {
            assert_eq!(view.key(12 + usize::from(i)), &[b'k', 6 + i][..]);
            assert_eq!(view.value_bytes(12 + usize::from(i)), &[6 + i; 200][..]);
        }
    }
}
