//! The catalog: a B-tree (owner `TREE_ID_CATALOG`) mapping tree names to their metadata.
//! The entry layout is `arbor_format::CatalogEntry` (diagram in `docs/format.md`).

use arbor_format::{CatalogEntry, CATALOG_ENTRY_BYTES};

use crate::writer::TreeMeta;
use crate::Result;

pub(crate) fn encode(meta: &TreeMeta) -> [u8; CATALOG_ENTRY_BYTES] {
    let mut out = [0u8; CATALOG_ENTRY_BYTES];
    out.copy_from_slice(CatalogEntry::new(meta.id, meta.root, meta.entries).as_bytes());
    out
}

/// Decodes the entry in catalog block `addr` (bytes from the device).
pub(crate) fn decode(bytes: &[u8], addr: u64) -> Result<TreeMeta> {
    let e = CatalogEntry::decode(bytes).map_err(|e| crate::error::corrupt(addr, e))?;
    Ok(TreeMeta { id: e.id(), root: e.root(), entries: e.entries() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbor_format::ChildPtr;

    #[test]
    fn round_trip() {
        let meta = TreeMeta { id: 17, root: ChildPtr::new(99, 4, 0xdead_beef), entries: 12345 };
        assert_eq!(decode(&encode(&meta), 0).ok(), Some(meta));
        assert!(decode(&[0u8; 47], 0).is_err());
    }
}
