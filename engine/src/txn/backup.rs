//! Copying a snapshot into another store in key order: `Db::backup_to`, which `arbor
//! backup` and `arbor compact` use.

use crate::options::Durability;
use crate::txn::snapshot::Snapshot;
use crate::txn::write::WriteTxn;
use crate::txn::Shared;
use crate::Result;

/// Key and value bytes one copying transaction holds before it commits (each commit is
/// `Durability::None`; the copy is flushed once at the end).
const BACKUP_BATCH_BYTES: u64 = 64 << 20;

/// What `Db::backup_to` copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupInfo {
    /// The seq of the commit the copy holds (its snapshot's).
    pub seq: u64,
    /// Trees copied.
    pub trees: usize,
    /// Entries copied, over all trees.
    pub entries: u64,
}

/// Copies every tree of `snap` into the empty store `dst`, in key order: each insert
/// appends, so leaves split at their end and fill (the copy is compact). Reads go through
/// the snapshot, so writers of the source keep running; a snapshot the bound expires
/// mid-copy ends it with `SnapshotExpired` and leaves `dst` partly written.
pub(crate) fn copy(snap: &Snapshot, dst: &Shared) -> Result<BackupInfo> {
    let names = snap.tree_names()?;
    let mut tx = WriteTxn::begin(dst)?;
    let (mut batch_bytes, mut entries) = (0u64, 0u64);
    for name in &names {
        let Some(tree) = snap.tree(name)? else { continue };
        tx.tree(name)?;
        for item in tree.iter()? {
            let (k, v) = item?;
            tx.tree(name)?.insert(&k, &v)?;
            entries += 1;
            batch_bytes += (k.len() + v.len()) as u64;
            if batch_bytes >= BACKUP_BATCH_BYTES {
                tx.set_durability(Durability::None);
                tx.commit()?;
                tx = WriteTxn::begin(dst)?;
                batch_bytes = 0;
            }
        }
    }
    tx.set_durability(Durability::None);
    tx.commit()?;
    Ok(BackupInfo { seq: snap.seq(), trees: names.len(), entries })
}
