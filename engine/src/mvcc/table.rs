//! The table readers consult for blocks of the generation their snapshot was taken in:
//! published dirty blocks of the open generation, frozen blocks whose log entries older
//! snapshots still need, and freed blocks a snapshot pins that were never written.
//!
//! A block of an older generation than the snapshot's is never here: it was frozen before
//! the snapshot was taken, so nothing newer than the snapshot changed it (design.md §10.1).
//! The writer removes a slot only after the block's final image is reachable through the
//! store (in flight or cached) or once no snapshot can reach the block, and `len` is
//! published with Release after those steps, so a reader that sees an empty table (Acquire)
//! reads the block's final image from the store.

use crate::addr_map::AddrMap;
use crate::mvcc::slot::Slot;
use crate::sync::{read, write, Arc, AtomicUsize, Ordering, RwLock};

#[derive(Default)]
pub struct SlotTable {
    map: RwLock<AddrMap<Arc<Slot>>>,
    len: AtomicUsize,
}

impl SlotTable {
    pub fn get(&self, addr: u64) -> Option<Arc<Slot>> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        read(&self.map).get(&addr).cloned()
    }

    pub fn insert(&self, addr: u64, slot: Arc<Slot>) {
        let mut map = write(&self.map);
        assert_eq!(slot.addr, addr, "slot of block {} filed under {addr}", slot.addr);
        let old = map.insert(addr, slot);
        debug_assert!(old.is_none(), "block {addr}: two identities in the slot table");
        self.len.store(map.len(), Ordering::Release);
    }

    /// Removes `addr` if it still maps to `slot` (a later identity is left alone).
    pub fn remove(&self, addr: u64, slot: &Arc<Slot>) {
        let mut map = write(&self.map);
        debug_assert_eq!(slot.addr, addr, "removing the slot of block {} as {addr}", slot.addr);
        if map.get(&addr).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            map.remove(&addr);
        }
        self.len.store(map.len(), Ordering::Release);
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
