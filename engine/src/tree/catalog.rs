//! The catalog: a B-tree (owner `TREE_ID_CATALOG`) mapping tree names to their metadata.
//!
//! Value layout (48 bytes, little-endian):
//! ```text
//!  0 id       u64
//!  8 root     ChildPtr (24)   the tree's root block
//! 32 entries  u64             number of keys
//! 40 reserved u64             zero
//! ```

use arbor_format::ChildPtr;

use crate::writer::TreeMeta;
use crate::{Error, Result};

pub(crate) const META_BYTES: usize = 48;

pub(crate) fn encode(meta: &TreeMeta) -> [u8; META_BYTES] {
    let mut out = [0u8; META_BYTES];
    out[0..8].copy_from_slice(&meta.id.to_le_bytes());
    out[8..32].copy_from_slice(bytemuck::bytes_of(&meta.root));
    out[32..40].copy_from_slice(&meta.entries.to_le_bytes());
    out
}

pub(crate) fn decode(bytes: &[u8], addr: u64) -> Result<TreeMeta> {
    let bad = || Error::corrupt(addr, "catalog entry is not 48 bytes");
    if bytes.len() != META_BYTES {
        return Err(bad());
    }
    let u64_at = |at: usize| -> Result<u64> {
        let b: [u8; 8] = bytes.get(at..at + 8).and_then(|s| s.try_into().ok()).ok_or_else(bad)?;
        Ok(u64::from_le_bytes(b))
    };
    let root: ChildPtr =
        bytemuck::try_pod_read_unaligned(bytes.get(8..32).ok_or_else(bad)?).map_err(|_| bad())?;
    Ok(TreeMeta { id: u64_at(0)?, root, entries: u64_at(32)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let meta = TreeMeta { id: 17, root: ChildPtr::new(99, 4, 0xdead_beef), entries: 12345 };
        assert_eq!(decode(&encode(&meta), 0).ok(), Some(meta));
        assert!(decode(&[0u8; 47], 0).is_err());
    }
}
