//! Savepoints inside the open transaction: a mark of how far its scratch has grown, and a
//! rollback to it by the same undo machinery `abort` uses (design.md §10.6).
//!
//! What a transaction changes after a mark, and how the rollback reverses it:
//! * published blocks (a committed transaction of this generation reaches them) were
//!   changed with a log entry each: undone newest first, with compensation entries, as by
//!   `abort`;
//! * private blocks allocated before the mark are *sealed* by it (`Dirty::sealed`): from
//!   then on their changes are logged too, so they are undone the same way — without the
//!   seal a private block changes in place with no record of its earlier image;
//! * runs allocated after the mark (new nodes, copies, overflow extents) are freed at once:
//!   nothing outside the rolled-back changes reaches them;
//! * frees recorded after the mark are forgotten (they are only applied at commit), and so
//!   are orphans pushed after it (a `delete_tree`);
//! * the tree metadata (roots, counts, the changed set, the next tree id) is restored from
//!   the copy the mark holds.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::Store;
use crate::writer::record::TxnRecordMark;
use crate::writer::{TreeMeta, Writer};
use crate::Result;

/// Where the open transaction stood when a savepoint was taken.
#[derive(Clone)]
pub(crate) struct Mark {
    allocated: usize,
    frees: usize,
    logged: usize,
    orphans: usize,
    trees: BTreeMap<Vec<u8>, TreeMeta>,
    changed: BTreeSet<Vec<u8>>,
    next_tree_id: u64,
    record: TxnRecordMark,
}

impl Writer {
    /// Marks the open transaction's state and seals its private blocks (see the module
    /// comment). Costs a copy of the tree metadata and one pass over the allocated runs.
    pub(crate) fn mark(&mut self) -> Mark {
        for &(addr, _) in &self.txn.allocated {
            if let Some(d) = self.dirty.map.get_mut(&addr) {
                if d.private {
                    d.sealed = true;
                }
            }
        }
        Mark {
            allocated: self.txn.allocated.len(),
            frees: self.txn.frees.len(),
            logged: self.txn.logged.len(),
            orphans: self.alloc.orphans().len(),
            trees: self.trees.map.clone(),
            changed: self.trees.changed.clone(),
            next_tree_id: self.trees.next_id,
            record: self.record.mark(),
        }
    }

    /// Whether `m` can still be rolled back to: nothing it recorded was undone since.
    pub(crate) fn mark_valid(&self, m: &Mark) -> bool {
        self.txn.allocated.len() >= m.allocated
            && self.txn.frees.len() >= m.frees
            && self.txn.logged.len() >= m.logged
            && self.alloc.orphans().len() >= m.orphans
    }

    /// Undoes everything the transaction did after `m`; the transaction stays open.
    pub(crate) fn rollback_to(&mut self, s: &Store, m: &Mark) -> Result<()> {
        assert!(self.mark_valid(m), "rollback to a savepoint past the transaction's state");
        let logged = self.txn.logged.split_off(m.logged);
        for (addr, seq) in logged.into_iter().rev() {
            self.edit().undo_logged(addr, seq)?;
        }
        let allocated = self.txn.allocated.split_off(m.allocated);
        for (addr, count) in allocated {
            debug_assert!(
                self.dirty.map.get(&addr).is_none_or(|d| d.private),
                "block {addr} allocated after the savepoint is private"
            );
            self.alloc.free_now(addr, count);
            self.dirty.take(s, addr);
        }
        self.txn.writeback_cursor = self.txn.writeback_cursor.min(m.allocated);
        self.txn.frees.truncate(m.frees);
        self.alloc.truncate_orphans(m.orphans);
        self.trees.map = m.trees.clone();
        self.trees.changed = m.changed.clone();
        self.trees.next_id = m.next_tree_id;
        self.record.truncate(m.record);
        debug_assert_eq!(self.txn.logged.len(), m.logged, "the rollback undid its entries");
        Ok(())
    }
}
