//! The catalog's entry: the value stored under a tree's name in the catalog tree (owner
//! `TREE_ID_CATALOG`), describing one named tree.
//!
//! ```text
//!  0 id        u64        the tree's id (its blocks' owner; never reused)
//!  8 root      ChildPtr   the tree's root block (address, generation, crc, flags: 24 bytes)
//! 32 entries   u64        number of keys in the tree
//! 40 reserved  u64        zero
//! 48
//! ```

use bytemuck::{Pod, Zeroable};

use crate::constants::CHILD_PTR_BYTES;
use crate::error::FormatError;
use crate::le::U64Le;
use crate::ptr::ChildPtr;

/// Bytes of one catalog entry (the catalog leaf's inline value).
pub const CATALOG_ENTRY_BYTES: usize = 48;

/// One catalog entry, as stored (see the module diagram).
#[derive(Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct CatalogEntry {
    id: U64Le,
    root: ChildPtr,
    entries: U64Le,
    reserved: U64Le,
}

const _: () = assert!(core::mem::size_of::<CatalogEntry>() == CATALOG_ENTRY_BYTES);
const _: () = assert!(core::mem::align_of::<CatalogEntry>() == 1);
const _: () = assert!(core::mem::offset_of!(CatalogEntry, root) + CHILD_PTR_BYTES == 32);

impl CatalogEntry {
    /// Byte offset of `root` inside an entry (tools that edit a root in place).
    pub const ROOT_OFFSET: usize = core::mem::offset_of!(CatalogEntry, root);

    pub fn new(id: u64, root: ChildPtr, entries: u64) -> CatalogEntry {
        CatalogEntry {
            id: U64Le::new(id),
            root,
            entries: U64Le::new(entries),
            reserved: U64Le::ZERO,
        }
    }

    /// Decodes an entry read from the device: exactly `CATALOG_ENTRY_BYTES` bytes.
    pub fn decode(bytes: &[u8]) -> Result<CatalogEntry, FormatError> {
        if bytes.len() != CATALOG_ENTRY_BYTES {
            return Err(FormatError::corrupt(format!(
                "catalog entry is {} bytes, not {CATALOG_ENTRY_BYTES}",
                bytes.len()
            )));
        }
        bytemuck::try_pod_read_unaligned(bytes)
            .map_err(|_| FormatError::corrupt("catalog entry: cannot read record"))
    }

    pub fn id(&self) -> u64 {
        self.id.get()
    }

    pub fn root(&self) -> ChildPtr {
        self.root
    }

    pub fn entries(&self) -> u64 {
        self.entries.get()
    }

    /// The on-disk bytes.
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }
}

impl core::fmt::Debug for CatalogEntry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CatalogEntry")
            .field("id", &self.id())
            .field("root", &self.root)
            .field("entries", &self.entries())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn field_offsets_match_the_diagram() {
        assert_eq!(offset_of!(CatalogEntry, id), 0);
        assert_eq!(offset_of!(CatalogEntry, root), 8);
        assert_eq!(offset_of!(CatalogEntry, entries), 32);
        assert_eq!(offset_of!(CatalogEntry, reserved), 40);
    }

    #[test]
    fn round_trip_and_length_check() {
        let e = CatalogEntry::new(17, ChildPtr::new(99, 4, 0xdead_beef), 12345);
        assert_eq!(CatalogEntry::decode(e.as_bytes()).ok(), Some(e));
        assert!(CatalogEntry::decode(&[0u8; 47]).is_err());
        assert!(CatalogEntry::decode(&[0u8; 49]).is_err());
    }
}
