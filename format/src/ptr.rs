//! Pointers stored inside blocks and the superblock.
//!
//! ```text
//! ChildPtr (24):    address u64 | generation u64 | crc u32 | flags u32 (bit 0: CRC_PENDING)
//! OverflowRef (32): address u64 | value_len u64 | generation u64 | crc u32 | block_count u32
//! Extent (16):      start u64 | count u64
//! ```
//!
//! A `ChildPtr` with `CRC_PENDING` was written before its child's final write-out
//! (design.md §10.12): the reader checks the child's own header (self-crc, address, generation)
//! instead of the crc in the pointer.

use crate::constants::{CHILD_PTR_BYTES, EXTENT_BYTES, OVERFLOW_REF_BYTES};
use crate::le::{U32Le, U64Le};
use bytemuck::{Pod, Zeroable};
use core::fmt;

/// A pointer to a child block: the triple every read is checked against.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Pod, Zeroable)]
#[repr(C)]
pub struct ChildPtr {
    address: U64Le,
    generation: U64Le,
    crc: U32Le,
    flags: U32Le,
}

const _: () = assert!(core::mem::size_of::<ChildPtr>() == CHILD_PTR_BYTES);
const _: () = assert!(core::mem::align_of::<ChildPtr>() == 1);

impl ChildPtr {
    /// Flag bit: the crc is not valid yet; check the child's own header instead.
    pub const CRC_PENDING: u32 = 1;
    /// Every flag bit this version knows.
    pub const FLAGS_KNOWN: u32 = Self::CRC_PENDING;
    /// The null pointer (address 0 lies in the superblock area).
    pub const NULL: ChildPtr = ChildPtr {
        address: U64Le::ZERO,
        generation: U64Le::ZERO,
        crc: U32Le::ZERO,
        flags: U32Le::ZERO,
    };

    /// A pointer whose crc is final.
    pub const fn new(address: u64, generation: u64, crc: u32) -> Self {
        Self {
            address: U64Le::new(address),
            generation: U64Le::new(generation),
            crc: U32Le::new(crc),
            flags: U32Le::new(0),
        }
    }

    /// A pointer to a child not yet written out: crc 0 with `CRC_PENDING`.
    pub const fn pending(address: u64, generation: u64) -> Self {
        Self {
            address: U64Le::new(address),
            generation: U64Le::new(generation),
            crc: U32Le::new(0),
            flags: U32Le::new(Self::CRC_PENDING),
        }
    }

    /// True for the null pointer (address 0).
    pub const fn is_null(&self) -> bool {
        self.address.get() == 0
    }
    /// Child block address.
    pub const fn address(&self) -> u64 {
        self.address.get()
    }
    /// Generation that wrote the child.
    pub const fn generation(&self) -> u64 {
        self.generation.get()
    }
    /// The child's crc (meaningless while `CRC_PENDING`).
    pub const fn crc(&self) -> u32 {
        self.crc.get()
    }
    /// Raw flags.
    pub const fn flags(&self) -> u32 {
        self.flags.get()
    }
    /// True while the crc is not valid yet.
    pub const fn is_crc_pending(&self) -> bool {
        self.flags.get() & Self::CRC_PENDING != 0
    }
    /// Stores the final crc and clears `CRC_PENDING`.
    pub fn set_crc(&mut self, crc: u32) {
        self.crc.set(crc);
        self.flags.set(self.flags.get() & !Self::CRC_PENDING);
    }

    /// Reads a pointer from exactly `CHILD_PTR_BYTES` bytes (any alignment).
    #[inline]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytemuck::try_pod_read_unaligned(bytes).ok()
    }
    /// The on-disk bytes.
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }
}

impl fmt::Debug for ChildPtr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildPtr")
            .field("address", &self.address())
            .field("generation", &self.generation())
            .field("crc", &format_args!("{:#010x}", self.crc()))
            .field("flags", &self.flags())
            .finish()
    }
}

/// A leaf value stored in an overflow extent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Pod, Zeroable)]
#[repr(C)]
pub struct OverflowRef {
    address: U64Le,
    value_len: U64Le,
    generation: U64Le,
    crc: U32Le,
    block_count: U32Le,
}

const _: () = assert!(core::mem::size_of::<OverflowRef>() == OVERFLOW_REF_BYTES);
const _: () = assert!(core::mem::align_of::<OverflowRef>() == 1);

impl OverflowRef {
    /// A reference to an extent already written (extents are write-once, so the crc is final).
    pub const fn new(
        address: u64,
        value_len: u64,
        generation: u64,
        crc: u32,
        block_count: u32,
    ) -> Self {
        Self {
            address: U64Le::new(address),
            value_len: U64Le::new(value_len),
            generation: U64Le::new(generation),
            crc: U32Le::new(crc),
            block_count: U32Le::new(block_count),
        }
    }
    /// First block of the extent.
    pub const fn address(&self) -> u64 {
        self.address.get()
    }
    /// Value length in bytes.
    pub const fn value_len(&self) -> u64 {
        self.value_len.get()
    }
    /// Generation that wrote the extent.
    pub const fn generation(&self) -> u64 {
        self.generation.get()
    }
    /// crc of the whole extent.
    pub const fn crc(&self) -> u32 {
        self.crc.get()
    }
    /// Blocks in the extent.
    pub const fn block_count(&self) -> u32 {
        self.block_count.get()
    }
    /// The extent as (start, count), e.g. to free it.
    pub const fn extent(&self) -> Extent {
        Extent::new(self.address(), self.block_count() as u64)
    }
    /// Reads a reference from exactly `OVERFLOW_REF_BYTES` bytes (any alignment).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytemuck::try_pod_read_unaligned(bytes).ok()
    }
    /// The on-disk bytes.
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }
}

impl fmt::Debug for OverflowRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverflowRef")
            .field("address", &self.address())
            .field("value_len", &self.value_len())
            .field("generation", &self.generation())
            .field("crc", &format_args!("{:#010x}", self.crc()))
            .field("block_count", &self.block_count())
            .finish()
    }
}

/// A run of `count` blocks starting at `start`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Pod, Zeroable)]
#[repr(C)]
pub struct Extent {
    start: U64Le,
    count: U64Le,
}

const _: () = assert!(core::mem::size_of::<Extent>() == EXTENT_BYTES);
const _: () = assert!(core::mem::align_of::<Extent>() == 1);

impl Extent {
    /// The run `[start, start + count)`.
    pub const fn new(start: u64, count: u64) -> Self {
        Self { start: U64Le::new(start), count: U64Le::new(count) }
    }
    /// First block.
    pub const fn start(&self) -> u64 {
        self.start.get()
    }
    /// Number of blocks.
    pub const fn count(&self) -> u64 {
        self.count.get()
    }
    /// One past the last block, or `None` if that overflows (corrupt).
    pub const fn end(&self) -> Option<u64> {
        self.start().checked_add(self.count())
    }
    /// Reads an extent from exactly `EXTENT_BYTES` bytes (any alignment).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytemuck::try_pod_read_unaligned(bytes).ok()
    }
}

impl fmt::Debug for Extent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Extent({}+{})", self.start(), self.count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn field_offsets() {
        assert_eq!(offset_of!(ChildPtr, address), 0);
        assert_eq!(offset_of!(ChildPtr, generation), 8);
        assert_eq!(offset_of!(ChildPtr, crc), 16);
        assert_eq!(offset_of!(ChildPtr, flags), 20);
        assert_eq!(offset_of!(OverflowRef, address), 0);
        assert_eq!(offset_of!(OverflowRef, value_len), 8);
        assert_eq!(offset_of!(OverflowRef, generation), 16);
        assert_eq!(offset_of!(OverflowRef, crc), 24);
        assert_eq!(offset_of!(OverflowRef, block_count), 28);
        assert_eq!(offset_of!(Extent, start), 0);
        assert_eq!(offset_of!(Extent, count), 8);
    }

    #[test]
    fn child_ptr_flags() {
        assert!(ChildPtr::NULL.is_null());
        let mut p = ChildPtr::pending(9, 3);
        assert!(!p.is_null() && p.is_crc_pending());
        p.set_crc(0xdead_beef);
        assert!(!p.is_crc_pending());
        assert_eq!(p, ChildPtr::new(9, 3, 0xdead_beef));
        assert_eq!(ChildPtr::from_bytes(p.as_bytes()), Some(p));
        assert_eq!(ChildPtr::from_bytes(&[0; 23]), None);
        assert_eq!(&p.as_bytes()[..8], &9u64.to_le_bytes());
    }

    #[test]
    fn overflow_ref_and_extent() {
        let r = OverflowRef::new(100, 5000, 7, 1, 2);
        assert_eq!(OverflowRef::from_bytes(r.as_bytes()), Some(r));
        assert_eq!(r.extent(), Extent::new(100, 2));
        assert_eq!(Extent::new(u64::MAX, 1).end(), None);
        assert_eq!(Extent::new(5, 3).end(), Some(8));
    }
}
