//! Opening a store: take the newest superblock with a verifying copy (design.md §11.7). A
//! checkpoint writes its superblock only after its blocks are flushed, so no tree walk
//! verifies them and nothing falls back: a damaged block of the newest checkpoint is
//! corruption (`Error::Corrupt` when read, and in `check`), never a reason to open an older
//! one and silently drop acknowledged commits (§11.8). A torn superblock write leaves no
//! verifying copy of its generation, and the previous one is the newest. The next
//! generation written is one more than the largest generation seen in any slot, so a torn
//! newer superblock is never reused. The journal is replayed afterwards (`Db::open_on`).

use std::collections::BTreeMap;

use arbor_format::constants::FORMAT_VERSION;
use arbor_format::superblock::Superblock;
use arbor_format::{ChildPtr, JournalRegion};

use crate::alloc::Allocator;
use crate::durable::superblock::Found;
use crate::store::{NodeBuf, Store};
use crate::tree::walk::{catalog_entries, Walk};
use crate::writer::TreeMeta;
use crate::{Error, Result};

/// Reads every catalog entry.
pub(crate) fn load_catalog(s: &Store, root: ChildPtr) -> Result<BTreeMap<Vec<u8>, TreeMeta>> {
    let mut out = BTreeMap::new();
    let mut walk = Walk::new(s.block_count());
    walk.push(root, None, ());
    let read = |ptr| Ok(NodeBuf::Clean(s.read_block(ptr)?));
    walk.each_leaf(read, |node, ptr| {
        for entry in catalog_entries(node, ptr.address()) {
            let (name, meta) = entry?;
            out.insert(name.to_vec(), meta);
        }
        Ok(())
    })?;
    Ok(out)
}

/// The durable state a store opened at.
pub(crate) struct Opened {
    pub sb: Superblock,
    pub slot: u8,
    pub alloc: Allocator,
    pub trees: BTreeMap<Vec<u8>, TreeMeta>,
    pub journal: JournalRegion,
    pub max_generation_seen: u64,
    pub rejected_copies: u32,
}

/// Opens the newest checkpoint: its allocator and catalog. Its other blocks are verified
/// when read.
pub(crate) fn recover(s: &Store, found: Found) -> Result<Opened> {
    let (slot, sb) = *found
        .copies
        .first()
        .ok_or_else(|| Error::NotAnArborStore { target: crate::io::target_name(&*s.dev) })?;
    // Older stores lay their nodes out differently (design.md §11.1, §12.4).
    if sb.version() < FORMAT_VERSION {
        return Err(Error::UnsupportedVersion { found: sb.version(), supported: FORMAT_VERSION });
    }
    if sb.block_bytes() != s.block_bytes {
        return Err(Error::corrupt(0, "superblock copies disagree on the block size"));
    }
    let journal = match sb.journal() {
        Ok(Some(region)) => region,
        _ => return Err(Error::corrupt(0, "the superblock records no valid journal region")),
    };
    s.set_first_data(journal.end_block());
    let mut read = |ptr: ChildPtr| s.read_uncached(ptr);
    let alloc = Allocator::load_superblock(&sb, sb.generation(), &mut read)?;
    fits_device(&alloc, s.dev.len_bytes() / u64::from(s.block_bytes))?;
    let trees = load_catalog(s, sb.catalog_root())?;
    Ok(Opened {
        sb,
        slot,
        alloc,
        trees,
        journal,
        max_generation_seen: found.max_generation_seen,
        rejected_copies: found.rejected,
    })
}

/// Whether a store's allocator fits a device of `device_blocks` blocks. The superblock may
/// name more blocks than the device has: a checkpoint cut the file's unused tail and a crash
/// came before the next superblock (design.md §10.16). That is accepted when every block
/// past the device's end is free; one in use there means the device is not the store's (or
/// was cut short), which is `Corrupt`.
pub(crate) fn fits_device(alloc: &Allocator, device_blocks: u64) -> Result<()> {
    match alloc.last_allocated() {
        Some(last) if last >= device_blocks => Err(Error::corrupt(
            0,
            format!(
                "the device is smaller than the store it holds: block {last} is in use, the \
                 device has {device_blocks} blocks"
            ),
        )),
        _ => Ok(()),
    }
}
