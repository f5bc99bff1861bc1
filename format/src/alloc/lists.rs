//! Allocator index blocks (kind 5), pending lists (kind 6) and orphan lists (kind 7): arrays
//! of fixed-size entries after the header (and after a `next` pointer for the lists).

use super::{check_alloc_header, header_of, init_alloc_block, update_header};
use crate::constants::{
    alloc_index_fanout, bitmap_bits_per_chunk, orphan_list_capacity, pending_list_capacity,
    CHILD_PTR_BYTES, EXTENT_BYTES, HEADER_BYTES, TREE_DEPTH_MAX, TREE_ID_ALLOCATOR,
};
use crate::error::FormatError;
use crate::header::{BlockHeader, BlockKind};
use crate::le::{U16Le, U64Le};
use crate::node_mut::NodeFull;
use crate::ptr::{ChildPtr, Extent};

/// Offset of the `next` pointer in list blocks, and of their first entry.
const NEXT_OFFSET: usize = HEADER_BYTES;
const LIST_ENTRIES_OFFSET: usize = HEADER_BYTES + CHILD_PTR_BYTES;

fn read_at<T: bytemuck::Pod>(buf: &[u8], at: usize) -> Option<T> {
    buf.get(at..at + core::mem::size_of::<T>())
        .and_then(|bytes| bytemuck::try_pod_read_unaligned(bytes).ok())
}

fn write_at<T: bytemuck::Pod>(buf: &mut [u8], at: usize, value: &T) {
    let bytes = bytemuck::bytes_of(value);
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn check_ptr(
    what: &str,
    index: usize,
    ptr: &ChildPtr,
    allow_null: bool,
) -> Result<(), FormatError> {
    if ptr.flags() & !ChildPtr::FLAGS_KNOWN != 0 || (ptr.is_null() && !allow_null) {
        return Err(FormatError::corrupt(format!("{what}: bad pointer {index}: {ptr:?}")));
    }
    Ok(())
}

fn check_count(what: &str, header: &BlockHeader, capacity: usize) -> Result<usize, FormatError> {
    let count = usize::from(header.item_count());
    if count > capacity {
        return Err(FormatError::corrupt(format!("{what}: {count} entries exceed {capacity}")));
    }
    Ok(count)
}

macro_rules! common_accessors {
    () => {
        /// The header.
        pub fn header(&self) -> BlockHeader {
            header_of(self.buf.as_ref())
        }
        /// The block bytes.
        pub fn bytes(&self) -> &[u8] {
            self.buf.as_ref()
        }
        /// Number of entries.
        pub fn len(&self) -> usize {
            usize::from(self.header().item_count())
        }
        /// True when there are no entries.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }
        /// True when no entry can be added.
        pub fn is_full(&self) -> bool {
            self.len() >= self.capacity()
        }
    };
}

macro_rules! common_mutators {
    () => {
        /// Sets the header's address and generation (the block was COWed to a new address).
        pub fn set_location(&mut self, address: u64, generation: u64) {
            update_header(self.buf.as_mut(), |h| {
                h.address = U64Le::new(address);
                h.generation = U64Le::new(generation);
            });
        }
        /// Mutable block bytes (to seal).
        pub fn bytes_mut(&mut self) -> &mut [u8] {
            self.buf.as_mut()
        }
        /// The buffer.
        pub fn into_inner(self) -> B {
            self.buf
        }
        /// Keeps the first `len` entries and zeroes the rest.
        pub fn truncate(&mut self, len: usize) {
            let count = self.len().min(len);
            let start = Self::ENTRIES_OFFSET + count * Self::ENTRY_BYTES;
            if let Some(rest) = self.buf.as_mut().get_mut(start..) {
                rest.fill(0);
            }
            update_header(self.buf.as_mut(), |h| h.item_count = U16Le::new(count as u16));
        }
        fn push_bytes<T: bytemuck::Pod>(&mut self, entry: &T) -> Result<(), NodeFull> {
            if self.is_full() {
                return Err(NodeFull);
            }
            let count = self.len();
            write_at(self.buf.as_mut(), Self::ENTRIES_OFFSET + count * Self::ENTRY_BYTES, entry);
            update_header(self.buf.as_mut(), |h| h.item_count = U16Le::new(count as u16 + 1));
            Ok(())
        }
    };
}

/// Allocator index block: `ChildPtr`s to bitmap chunks (level 1) or index blocks (level L−1).
pub struct AllocIndex<B> {
    buf: B,
}

impl<B: AsRef<[u8]>> AllocIndex<B> {
    const ENTRIES_OFFSET: usize = HEADER_BYTES;
    const ENTRY_BYTES: usize = CHILD_PTR_BYTES;

    /// Validates an index block from disk: kind, owner, level in 1..=TREE_DEPTH_MAX, entry
    /// count ≤ fanout, first block a multiple of the bits per chunk, pointer flags known.
    pub fn decode(buf: B) -> Result<Self, FormatError> {
        let (block_bytes, header) = check_alloc_header(buf.as_ref(), BlockKind::AllocIndex)?;
        let count = check_count("alloc index", &header, alloc_index_fanout(block_bytes))?;
        if header.level() == 0 || header.level() > TREE_DEPTH_MAX || header.aux32() != 0 {
            return Err(FormatError::corrupt(format!(
                "alloc index: level {} (need 1..={TREE_DEPTH_MAX}), aux32 {}",
                header.level(),
                header.aux32()
            )));
        }
        if header.aux64() % bitmap_bits_per_chunk(block_bytes) != 0 {
            return Err(FormatError::corrupt(format!(
                "alloc index: first block {} is not a chunk boundary",
                header.aux64()
            )));
        }
        let index = Self { buf };
        for i in 0..count {
            check_ptr("alloc index", i, &index.child(i), true)?;
        }
        Ok(index)
    }

    common_accessors!();

    /// Entries that fit in the block.
    pub fn capacity(&self) -> usize {
        self.buf.as_ref().len().saturating_sub(HEADER_BYTES) / CHILD_PTR_BYTES
    }
    /// Level: 1 above bitmap chunks.
    pub fn level(&self) -> u8 {
        self.header().level()
    }
    /// First block number covered.
    pub fn first_block(&self) -> u64 {
        self.header().aux64()
    }
    /// Blocks covered by each child: bits per chunk × fanout^(level − 1), saturating.
    pub fn blocks_per_child(&self) -> u64 {
        let block_bytes = self.buf.as_ref().len() as u32;
        let fanout = self.capacity() as u64;
        let below = u32::from(self.level().saturating_sub(1));
        fanout.saturating_pow(below).saturating_mul(bitmap_bits_per_chunk(block_bytes))
    }
    /// Child `index` (null if unset or out of range).
    pub fn child(&self, index: usize) -> ChildPtr {
        debug_assert!(index < self.len());
        read_at(self.buf.as_ref(), HEADER_BYTES + index * CHILD_PTR_BYTES).unwrap_or(ChildPtr::NULL)
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> AllocIndex<B> {
    /// Formats `buf` as an empty index block of `level` (≥ 1) covering from `first_block`.
    pub fn init(mut buf: B, address: u64, generation: u64, level: u8, first_block: u64) -> Self {
        assert!((1..=TREE_DEPTH_MAX).contains(&level), "alloc index level {level}");
        let mut header =
            BlockHeader::new(BlockKind::AllocIndex, level, address, generation, TREE_ID_ALLOCATOR);
        header.aux64 = U64Le::new(first_block);
        init_alloc_block(buf.as_mut(), header);
        Self { buf }
    }

    common_mutators!();

    /// Appends a child pointer.
    pub fn push(&mut self, child: ChildPtr) -> Result<(), NodeFull> {
        self.push_bytes(&child)
    }
    /// Overwrites child `index` (< len).
    pub fn set_child(&mut self, index: usize, child: ChildPtr) {
        assert!(index < self.len(), "set_child {index} of {}", self.len());
        write_at(self.buf.as_mut(), HEADER_BYTES + index * CHILD_PTR_BYTES, &child);
    }
}

/// Pending list block: extents freed in generation `freed_generation()`, chained by `next`.
pub struct PendingList<B> {
    buf: B,
}

impl<B: AsRef<[u8]>> PendingList<B> {
    const ENTRIES_OFFSET: usize = LIST_ENTRIES_OFFSET;
    const ENTRY_BYTES: usize = EXTENT_BYTES;

    /// Validates a pending list from disk: kind, owner, level 0, count ≤ capacity, `next`
    /// flags, every extent non-empty, not at block 0 and not wrapping.
    pub fn decode(buf: B) -> Result<Self, FormatError> {
        let (block_bytes, header) = check_alloc_header(buf.as_ref(), BlockKind::PendingList)?;
        let count = check_count("pending list", &header, pending_list_capacity(block_bytes))?;
        if header.level() != 0 || header.aux32() != 0 {
            return Err(FormatError::corrupt("pending list: level or aux32 not zero"));
        }
        let list = Self { buf };
        check_ptr("pending list next", 0, &list.next(), true)?;
        for i in 0..count {
            let extent = list.extent(i);
            if extent.start() == 0 || extent.count() == 0 || extent.end().is_none() {
                return Err(FormatError::corrupt(format!("pending list: bad {extent:?} at {i}")));
            }
        }
        Ok(list)
    }

    common_accessors!();

    /// Extents that fit in the block.
    pub fn capacity(&self) -> usize {
        self.buf.as_ref().len().saturating_sub(LIST_ENTRIES_OFFSET) / EXTENT_BYTES
    }
    /// The generation that freed these extents.
    pub fn freed_generation(&self) -> u64 {
        self.header().aux64()
    }
    /// The next list block (null at the end).
    pub fn next(&self) -> ChildPtr {
        read_at(self.buf.as_ref(), NEXT_OFFSET).unwrap_or(ChildPtr::NULL)
    }
    /// Extent `index`.
    pub fn extent(&self, index: usize) -> Extent {
        debug_assert!(index < self.len());
        read_at(self.buf.as_ref(), LIST_ENTRIES_OFFSET + index * EXTENT_BYTES)
            .unwrap_or(Extent::new(0, 0))
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> PendingList<B> {
    /// Formats `buf` as an empty pending list for generation `freed_generation`.
    pub fn init(mut buf: B, address: u64, generation: u64, freed_generation: u64) -> Self {
        let mut header =
            BlockHeader::new(BlockKind::PendingList, 0, address, generation, TREE_ID_ALLOCATOR);
        header.aux64 = U64Le::new(freed_generation);
        init_alloc_block(buf.as_mut(), header);
        Self { buf }
    }

    common_mutators!();

    /// Sets the next list block.
    pub fn set_next(&mut self, next: ChildPtr) {
        write_at(self.buf.as_mut(), NEXT_OFFSET, &next);
    }
    /// Appends an extent.
    pub fn push(&mut self, extent: Extent) -> Result<(), NodeFull> {
        self.push_bytes(&extent)
    }
}

/// Orphan list block: roots of deleted trees still to be freed, chained by `next`.
pub struct OrphanList<B> {
    buf: B,
}

impl<B: AsRef<[u8]>> OrphanList<B> {
    const ENTRIES_OFFSET: usize = LIST_ENTRIES_OFFSET;
    const ENTRY_BYTES: usize = CHILD_PTR_BYTES;

    /// Validates an orphan list from disk: kind, owner, level 0, count ≤ capacity, pointer
    /// flags, every root non-null.
    pub fn decode(buf: B) -> Result<Self, FormatError> {
        let (block_bytes, header) = check_alloc_header(buf.as_ref(), BlockKind::OrphanList)?;
        let count = check_count("orphan list", &header, orphan_list_capacity(block_bytes))?;
        if header.level() != 0 || header.aux32() != 0 || header.aux64() != 0 {
            return Err(FormatError::corrupt("orphan list: level, aux32 or aux64 not zero"));
        }
        let list = Self { buf };
        check_ptr("orphan list next", 0, &list.next(), true)?;
        for i in 0..count {
            check_ptr("orphan list", i, &list.get(i), false)?;
        }
        Ok(list)
    }

    common_accessors!();

    /// Roots that fit in the block.
    pub fn capacity(&self) -> usize {
        self.buf.as_ref().len().saturating_sub(LIST_ENTRIES_OFFSET) / CHILD_PTR_BYTES
    }
    /// The next list block (null at the end).
    pub fn next(&self) -> ChildPtr {
        read_at(self.buf.as_ref(), NEXT_OFFSET).unwrap_or(ChildPtr::NULL)
    }
    /// Root `index`.
    pub fn get(&self, index: usize) -> ChildPtr {
        debug_assert!(index < self.len());
        read_at(self.buf.as_ref(), LIST_ENTRIES_OFFSET + index * CHILD_PTR_BYTES)
            .unwrap_or(ChildPtr::NULL)
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> OrphanList<B> {
    /// Formats `buf` as an empty orphan list.
    pub fn init(mut buf: B, address: u64, generation: u64) -> Self {
        let header =
            BlockHeader::new(BlockKind::OrphanList, 0, address, generation, TREE_ID_ALLOCATOR);
        init_alloc_block(buf.as_mut(), header);
        Self { buf }
    }

    common_mutators!();

    /// Sets the next list block.
    pub fn set_next(&mut self, next: ChildPtr) {
        write_at(self.buf.as_mut(), NEXT_OFFSET, &next);
    }
    /// Appends a root (non-null).
    pub fn push(&mut self, root: ChildPtr) -> Result<(), NodeFull> {
        assert!(!root.is_null(), "orphan list: null root");
        self.push_bytes(&root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::seal_block;

    #[test]
    fn index_round_trip() {
        let mut index = AllocIndex::init(vec![0u8; 4096], 80, 2, 1, 0);
        assert_eq!(index.capacity(), 168);
        index.push(ChildPtr::new(81, 2, 9)).unwrap();
        index.push(ChildPtr::NULL).unwrap();
        index.set_child(1, ChildPtr::pending(82, 2));
        assert_eq!(index.blocks_per_child(), 32_256);
        seal_block(index.bytes_mut());
        let bytes = index.into_inner();
        let back = AllocIndex::decode(&bytes[..]).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back.child(1), ChildPtr::pending(82, 2));
        let mut bad = bytes.clone();
        bad[7] = 0; // level 0
        assert!(AllocIndex::decode(&bad[..]).is_err());
        let mut full = AllocIndex::init(vec![0u8; 4096], 80, 2, 2, 0);
        for _ in 0..168 {
            full.push(ChildPtr::new(90, 1, 1)).unwrap();
        }
        assert_eq!(full.push(ChildPtr::new(90, 1, 1)), Err(NodeFull));
        assert_eq!(full.blocks_per_child(), 32_256 * 168);
    }

    #[test]
    fn pending_round_trip() {
        let mut list = PendingList::init(vec![0u8; 4096], 90, 5, 4);
        list.push(Extent::new(100, 3)).unwrap();
        list.push(Extent::new(200, 1)).unwrap();
        list.set_next(ChildPtr::new(91, 4, 7));
        let bytes = list.into_inner();
        let back = PendingList::decode(&bytes[..]).unwrap();
        assert_eq!((back.len(), back.freed_generation()), (2, 4));
        assert_eq!(back.extent(0), Extent::new(100, 3));
        assert_eq!(back.next(), ChildPtr::new(91, 4, 7));
        let mut bad = bytes.clone();
        bad[88..104].copy_from_slice(&[0; 16]);
        assert!(PendingList::decode(&bad[..]).is_err());
        let mut list = PendingList::decode(bytes).unwrap();
        list.truncate(1);
        assert_eq!(list.len(), 1);
        assert!(list.bytes()[104..].iter().all(|&b| b == 0));
    }

    #[test]
    fn orphan_round_trip() {
        let mut list = OrphanList::init(vec![0u8; 8192], 90, 5);
        assert_eq!(list.capacity(), orphan_list_capacity(8192));
        list.push(ChildPtr::new(300, 3, 1)).unwrap();
        let bytes = list.into_inner();
        let back = OrphanList::decode(&bytes[..]).unwrap();
        assert_eq!(back.get(0), ChildPtr::new(300, 3, 1));
        assert!(back.next().is_null());
        assert!(PendingList::decode(&bytes[..]).is_err());
    }
}
