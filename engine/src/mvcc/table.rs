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
use crate::io::AlignedBuf;
use crate::mvcc::slot::Slot;
use crate::sync::{read, write, Arc, AtomicUsize, Ordering, RwLock};

/// Shards of the table: readers of different blocks take different locks (a reader takes
/// one per block of the open generation it reaches).
const SHARDS: usize = 64;

/// See [`SlotTable::lookup`].
pub enum Lookup {
    Absent,
    Image(Arc<AlignedBuf>),
    Slot(Arc<Slot>),
}

pub struct SlotTable {
    shards: [RwLock<AddrMap<Arc<Slot>>>; SHARDS],
    len: AtomicUsize,
}

impl Default for SlotTable {
    fn default() -> SlotTable {
        let shards = std::array::from_fn(|_| RwLock::new(AddrMap::default()));
        SlotTable { shards, len: AtomicUsize::new(0) }
    }
}

impl SlotTable {
    fn shard(&self, addr: u64) -> &RwLock<AddrMap<Arc<Slot>>> {
        // Consecutive blocks (a tree's siblings) land in different shards.
        &self.shards[(addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % SHARDS]
    }

    pub fn get(&self, addr: u64) -> Option<Arc<Slot>> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        read(self.shard(addr)).get(&addr).cloned()
    }

    /// What a reader at `seq` finds for `addr`: nothing (the store has the block's image),
    /// the shared image as of `seq` (looked up under the shard's lock, so the common case
    /// clones one `Arc`, not two), or the slot, whose image the reader must rewind.
    pub fn lookup(&self, addr: u64, seq: u64) -> Lookup {
        if self.len.load(Ordering::Acquire) == 0 {
            return Lookup::Absent;
        }
        let map = read(self.shard(addr));
        match map.get(&addr) {
            None => Lookup::Absent,
            Some(slot) => match slot.shared_image_at(seq) {
                Some(image) => Lookup::Image(image),
                None => Lookup::Slot(Arc::clone(slot)),
            },
        }
    }

    pub fn insert(&self, addr: u64, slot: Arc<Slot>) {
        let mut map = write(self.shard(addr));
        assert_eq!(slot.addr, addr, "slot of block {} filed under {addr}", slot.addr);
        let old = map.insert(addr, slot);
        debug_assert!(old.is_none(), "block {addr}: two identities in the slot table");
        if old.is_none() {
            self.len.fetch_add(1, Ordering::Release);
        }
    }

    /// Removes `addr` if it still maps to `slot` (a later identity is left alone).
    pub fn remove(&self, addr: u64, slot: &Arc<Slot>) {
        let mut map = write(self.shard(addr));
        debug_assert_eq!(slot.addr, addr, "removing the slot of block {} as {addr}", slot.addr);
        if map.get(&addr).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            map.remove(&addr);
            self.len.fetch_sub(1, Ordering::Release);
        }
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
