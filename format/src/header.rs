//! The 64-byte header at the start of every tree block, the block kinds, and the block
//! checksum (crc32 of the whole block, or of the whole extent for overflow, with the crc
//! field taken as zero).
//!
//! ```text
//!  0 magic        u32   b"ArBk"
//!  4 version      u16
//!  6 kind         u8    1 leaf, 2 internal, 3 overflow, 4 alloc bitmap, 5 alloc index,
//!                       6 pending list, 7 orphan list, 8 journal
//!  7 level        u8    0 for leaves, height above the leaves for internal nodes
//!  8 item_count   u16
//! 10 flags        u16   reserved, 0
//! 12 crc          u32   crc32 of the whole block (whole extent for overflow) with this field 0
//! 16 address      u64   the block's own address (catches misdirected writes)
//! 24 generation   u64   the generation that wrote it
//! 32 owner        u64   tree id (0 catalog, 1 allocator; user trees from 16)
//! 40 heap_start   u32   slotted nodes: lowest offset used by key/value bytes
//! 44 aux32        u32   overflow: block count of the extent
//! 48 aux64        u64   overflow: value length; pending list: the freed generation;
//!                       alloc bitmap: first block number covered; alloc index: first block covered
//! 56 reserved     [u8;8]
//! ```

use crate::constants::{FORMAT_VERSION, HEADER_BYTES};
use crate::error::FormatError;
use crate::le::{U16Le, U32Le, U64Le};
use crate::ptr::ChildPtr;
use bytemuck::{Pod, Zeroable};

/// Magic bytes at offset 0 of every tree block.
pub const BLOCK_MAGIC: [u8; 4] = *b"ArBk";

/// Byte range of the crc field inside the header.
const CRC_OFFSET: usize = 12;
const CRC_END: usize = 16;

/// What a block holds. Stored as a `u8` (offset 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BlockKind {
    /// Slotted B-tree leaf: keys and values.
    Leaf = 1,
    /// Slotted B-tree internal node: keys and child pointers.
    Internal = 2,
    /// First block of an overflow extent.
    Overflow = 3,
    /// Allocator bitmap chunk.
    AllocBitmap = 4,
    /// Allocator index block.
    AllocIndex = 5,
    /// List of extents freed in one generation.
    PendingList = 6,
    /// List of roots of deleted trees still to be freed.
    OrphanList = 7,
    /// Commit journal block (design.md §11.2): a piece of the record stream, written twice.
    Journal = 8,
}

impl TryFrom<u8> for BlockKind {
    type Error = FormatError;

    fn try_from(value: u8) -> Result<Self, FormatError> {
        Ok(match value {
            1 => Self::Leaf,
            2 => Self::Internal,
            3 => Self::Overflow,
            4 => Self::AllocBitmap,
            5 => Self::AllocIndex,
            6 => Self::PendingList,
            7 => Self::OrphanList,
            8 => Self::Journal,
            other => return Err(FormatError::corrupt(format!("unknown block kind {other}"))),
        })
    }
}

impl From<BlockKind> for u8 {
    #[inline]
    fn from(kind: BlockKind) -> u8 {
        kind as u8
    }
}

/// The header at the start of every tree block (see the module diagram).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockHeader {
    /// `BLOCK_MAGIC`.
    pub magic: [u8; 4],
    /// `FORMAT_VERSION` of the writer.
    pub version: U16Le,
    /// `BlockKind` as a byte.
    pub kind: u8,
    /// 0 for leaves and non-tree blocks; height above the leaves otherwise.
    pub level: u8,
    /// Items in the block (slots, pointers or extents).
    pub item_count: U16Le,
    /// Reserved, zero.
    pub flags: U16Le,
    /// crc32 of the block (extent) with this field zero.
    pub crc: U32Le,
    /// The block's own address.
    pub address: U64Le,
    /// The generation that wrote the block.
    pub generation: U64Le,
    /// Owning tree id.
    pub owner: U64Le,
    /// Slotted nodes: lowest offset used by key/value bytes.
    pub heap_start: U32Le,
    /// Overflow: block count of the extent.
    pub aux32: U32Le,
    /// Overflow: value length; pending: freed generation; bitmap/index: first block covered.
    pub aux64: U64Le,
    /// Reserved, zero.
    pub reserved: [u8; 8],
}

const _: () = assert!(core::mem::size_of::<BlockHeader>() == HEADER_BYTES);
const _: () = assert!(core::mem::align_of::<BlockHeader>() == 1);
const _: () = assert!(core::mem::offset_of!(BlockHeader, crc) == CRC_OFFSET);

impl BlockHeader {
    /// A header with magic, version, kind, level, address, generation and owner set and every
    /// other field zero.
    pub fn new(kind: BlockKind, level: u8, address: u64, generation: u64, owner: u64) -> Self {
        let mut header = Self::zeroed();
        header.magic = BLOCK_MAGIC;
        header.version = U16Le::new(FORMAT_VERSION);
        header.kind = kind.into();
        header.level = level;
        header.address = U64Le::new(address);
        header.generation = U64Le::new(generation);
        header.owner = U64Le::new(owner);
        header
    }

    /// The kind, if the byte is a known kind.
    pub fn kind(&self) -> Result<BlockKind, FormatError> {
        BlockKind::try_from(self.kind)
    }
    /// Format version of the writer.
    #[inline]
    pub fn version(&self) -> u16 {
        self.version.get()
    }
    /// Level (0 for leaves).
    #[inline]
    pub fn level(&self) -> u8 {
        self.level
    }
    /// Item count.
    #[inline]
    pub fn item_count(&self) -> u16 {
        self.item_count.get()
    }
    /// Stored crc.
    pub fn crc(&self) -> u32 {
        self.crc.get()
    }
    /// The block's own address.
    #[inline]
    pub fn address(&self) -> u64 {
        self.address.get()
    }
    /// The generation that wrote the block.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }
    /// Owning tree id.
    pub fn owner(&self) -> u64 {
        self.owner.get()
    }
    /// Lowest heap offset (slotted nodes).
    #[inline]
    pub fn heap_start(&self) -> u32 {
        self.heap_start.get()
    }
    /// Kind-specific 32-bit field.
    pub fn aux32(&self) -> u32 {
        self.aux32.get()
    }
    /// Kind-specific 64-bit field.
    pub fn aux64(&self) -> u64 {
        self.aux64.get()
    }

    /// The on-disk bytes.
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }

    /// The header of a block buffer, without any check but the length.
    #[inline]
    pub fn from_block(buf: &[u8]) -> Result<&BlockHeader, FormatError> {
        buf.get(..HEADER_BYTES)
            .and_then(|bytes| bytemuck::try_from_bytes::<BlockHeader>(bytes).ok())
            .ok_or_else(|| {
                FormatError::corrupt(format!(
                    "block of {} bytes is shorter than its header",
                    buf.len()
                ))
            })
    }

    /// The header of a block buffer, mutable, without any check but the length.
    pub fn from_block_mut(buf: &mut [u8]) -> Result<&mut BlockHeader, FormatError> {
        let len = buf.len();
        buf.get_mut(..HEADER_BYTES)
            .and_then(|bytes| bytemuck::try_from_bytes_mut::<BlockHeader>(bytes).ok())
            .ok_or_else(|| {
                FormatError::corrupt(format!("block of {len} bytes is shorter than its header"))
            })
    }
}

/// The header of `buf` after checking length, magic, version and kind; no crc, no address.
/// A newer version yields `FormatErrorKind::UnsupportedVersion`.
pub fn parse_header(buf: &[u8]) -> Result<&BlockHeader, FormatError> {
    let header = BlockHeader::from_block(buf)?;
    if header.magic != BLOCK_MAGIC {
        return Err(FormatError::bad_magic("block", &header.magic));
    }
    let version = header.version();
    if version > FORMAT_VERSION {
        return Err(FormatError::unsupported_version("block", version));
    }
    if version == 0 {
        return Err(FormatError::corrupt("block: format version 0"));
    }
    header.kind()?;
    Ok(header)
}

/// crc32 over `buf` with the header's crc field taken as zero; `buf` is not modified.
pub fn block_crc(buf: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    match (buf.get(..CRC_OFFSET), buf.get(CRC_END..)) {
        (Some(head), Some(tail)) => {
            hasher.update(head);
            hasher.update(&[0; CRC_END - CRC_OFFSET]);
            hasher.update(tail);
        }
        // Too short to hold a header: never a valid block; hash what is there.
        _ => hasher.update(buf),
    }
    hasher.finalize()
}

/// Computes the block crc and stores it in the header. Returns the crc (for the parent's
/// `ChildPtr`). `buf` must hold at least a header.
pub fn seal_block(buf: &mut [u8]) -> u32 {
    assert!(buf.len() >= HEADER_BYTES, "seal_block: buffer shorter than a header");
    let crc = block_crc(buf);
    if let Some(field) = buf.get_mut(CRC_OFFSET..CRC_END) {
        field.copy_from_slice(&crc.to_le_bytes());
    }
    crc
}

/// Verifies a block read from `expected_address`: magic, version, kind, self crc, address.
/// Returns a copy of its header. This is the check the engine runs on every block it reads.
pub fn verify_block(buf: &[u8], expected_address: u64) -> Result<BlockHeader, FormatError> {
    let header = *parse_header(buf)?;
    let computed = block_crc(buf);
    if computed != header.crc() {
        return Err(FormatError::checksum("block", header.crc(), computed));
    }
    if header.address() != expected_address {
        return Err(FormatError::misdirected("block", expected_address, header.address()));
    }
    Ok(header)
}

/// Verifies a block reached through `ptr`: everything `verify_block` checks, plus the
/// generation and, unless the pointer carries `CRC_PENDING`, the crc the parent expects
/// (lost and misdirected writes, design.md §3 and §10.12).
pub fn verify_child(buf: &[u8], ptr: &ChildPtr) -> Result<BlockHeader, FormatError> {
    let header = verify_block(buf, ptr.address())?;
    if header.generation() != ptr.generation() {
        return Err(FormatError::corrupt(format!(
            "block {}: generation {} but its parent expects {}",
            ptr.address(),
            header.generation(),
            ptr.generation()
        )));
    }
    if !ptr.is_crc_pending() && header.crc() != ptr.crc() {
        return Err(FormatError::checksum("block (crc in parent)", ptr.crc(), header.crc()));
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FormatErrorKind;
    use core::mem::offset_of;

    #[test]
    fn field_offsets() {
        assert_eq!(offset_of!(BlockHeader, magic), 0);
        assert_eq!(offset_of!(BlockHeader, version), 4);
        assert_eq!(offset_of!(BlockHeader, kind), 6);
        assert_eq!(offset_of!(BlockHeader, level), 7);
        assert_eq!(offset_of!(BlockHeader, item_count), 8);
        assert_eq!(offset_of!(BlockHeader, flags), 10);
        assert_eq!(offset_of!(BlockHeader, crc), 12);
        assert_eq!(offset_of!(BlockHeader, address), 16);
        assert_eq!(offset_of!(BlockHeader, generation), 24);
        assert_eq!(offset_of!(BlockHeader, owner), 32);
        assert_eq!(offset_of!(BlockHeader, heap_start), 40);
        assert_eq!(offset_of!(BlockHeader, aux32), 44);
        assert_eq!(offset_of!(BlockHeader, aux64), 48);
        assert_eq!(offset_of!(BlockHeader, reserved), 56);
        assert_eq!(core::mem::size_of::<BlockHeader>(), 64);
    }

    #[test]
    fn kinds_round_trip() {
        for byte in 0..=255u8 {
            match BlockKind::try_from(byte) {
                Ok(kind) => assert_eq!(u8::from(kind), byte),
                Err(_) => assert!(byte == 0 || byte > 8),
            }
        }
    }

    fn sealed_block() -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let header = BlockHeader::new(BlockKind::Leaf, 0, 77, 5, 16);
        buf[..64].copy_from_slice(bytemuck::bytes_of(&header));
        buf[100] = 0xab;
        seal_block(&mut buf);
        buf
    }

    #[test]
    fn seal_and_verify() {
        let buf = sealed_block();
        let header = verify_block(&buf, 77).unwrap();
        assert_eq!(header.kind().unwrap(), BlockKind::Leaf);
        assert_eq!(header.crc(), block_crc(&buf));
        let err = verify_block(&buf, 78).unwrap_err();
        assert_eq!(err.kind, FormatErrorKind::Misdirected { expected: 78, found: 77 });

        let mut flipped = buf.clone();
        flipped[2000] ^= 1;
        let err = verify_block(&flipped, 77).unwrap_err();
        assert!(matches!(err.kind, FormatErrorKind::ChecksumMismatch { .. }));

        let mut newer = buf.clone();
        newer[4..6].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        assert!(verify_block(&newer, 77).unwrap_err().is_unsupported_version());

        let mut magic = buf.clone();
        magic[0] = b'x';
        assert!(verify_block(&magic, 77).unwrap_err().is_bad_magic());
        assert!(verify_block(&buf[..10], 77).is_err());
    }

    #[test]
    fn verify_child_checks_generation_and_crc() {
        let buf = sealed_block();
        let crc = block_crc(&buf);
        assert!(verify_child(&buf, &ChildPtr::new(77, 5, crc)).is_ok());
        assert!(verify_child(&buf, &ChildPtr::new(77, 6, crc)).is_err());
        assert!(verify_child(&buf, &ChildPtr::new(77, 5, crc ^ 1)).is_err());
        assert!(verify_child(&buf, &ChildPtr::pending(77, 5)).is_ok());
    }
}
