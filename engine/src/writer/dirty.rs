//! The open generation's dirty blocks: their images (in slots readers can share), reads
//! and unlogged edits of them. Logged edits and copy-on-write are in `edit.rs`.
//!
//! Invariants (design.md §4, §10.2, §10.5):
//! * every block whose generation is the open one lives in `dirty`; a block of an older
//!   (frozen or durable) generation is never changed: the first change copies it to a fresh
//!   address (`make_writable`), and its old address is freed through `defer_free`;
//! * a dirty block the open transaction allocated is *private* (no published root reaches it)
//!   and changes without logging; a dirty block a committed transaction of this generation
//!   published is changed only together with a mod-log entry holding the pre-image;
//! * frees are deferred to commit: the open transaction counts as an outstanding reader at
//!   its first seq (§10.5), so `abort` never meets an address that was reused meanwhile.

use std::mem::offset_of;

use arbor_format::header::BlockHeader;
use arbor_format::node::Node;
use arbor_format::{ChildPtr, NodeMut};

use crate::addr_map::AddrMap;
use crate::error::corrupt;
use crate::io::AlignedBuf;
use crate::mvcc::{Image, Slot};
use crate::store::{
    prefetch_lines_n, prefetch_search_lines, prefetch_slice, slots_end, NodeBuf, Store,
};
use crate::sync::Arc;
use crate::Result;

/// A block of the open generation. Its image lives in a shared [`Slot`] so that snapshot
/// readers can copy it (under the slot's lock) once it is published.
pub(crate) struct Dirty {
    pub slot: Arc<Slot>,
    /// Allocated by the open transaction: not reachable from any published root.
    pub private: bool,
    /// Private, but a savepoint of the open transaction was taken after it was allocated: a
    /// rollback may need its image as of then, so its changes are logged like a published
    /// block's (and it is never written back early). Cleared when the transaction ends.
    pub sealed: bool,
    /// Seq of the commit that published it (its identity's allocation seq for pinning,
    /// design.md §10.5); meaningless while private.
    pub seq_alloc: u64,
    /// Where the image's bytes were when the block became dirty: a prefetch hint that lets
    /// a descent start loading the image before it has reached it through the slot
    /// (design.md §4.1). Never dereferenced; stale once the image is replaced, which only
    /// wastes the hint.
    pub image_at: usize,
}

/// What a descent loads ahead of reading a node (`DirtySet::peek_resident`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefetch {
    /// Nothing (nodes high in the tree, which stay cached).
    No,
    /// The header and slot array.
    Search,
    /// As `Search`, and for a leaf the lines an insert writes next (below its heap's start).
    Insert,
}

/// Every block of the open generation, by address.
#[derive(Default)]
pub(crate) struct DirtySet {
    /// The open generation.
    pub gen: u64,
    pub map: AddrMap<Dirty>,
    /// Bytes of the images held in memory (written-back blocks not counted).
    pub bytes: u64,
    hints: Hints,
}

/// Entries of [`Hints`]: 1 MiB of `(slot, image)` addresses.
const HINT_SLOTS: usize = 1 << 16;

/// Where each dirty block's slot and image were when it became dirty, by address modulo
/// [`HINT_SLOTS`]: read as soon as a descent knows a child's address, it starts the loads of
/// the child's slot and image lines while `map` is probed for the child, instead of after
/// (the probe's bucket, the slot and the image are each a memory latency for a cold leaf;
/// design.md §4.1). Only ever prefetched: a stale or colliding entry wastes loads, nothing
/// else.
#[derive(Default)]
struct Hints(Vec<[usize; 2]>);

impl Hints {
    fn note(&mut self, addr: u64, slot: usize, image: usize) {
        if self.0.is_empty() {
            self.0 = vec![[0, 0]; HINT_SLOTS];
        }
        if let Some(h) = self.0.get_mut(addr as usize % HINT_SLOTS) {
            *h = [slot, image];
        }
    }

    #[inline]
    fn prefetch(&self, addr: u64) {
        if let Some(&[slot, image]) = self.0.get(addr as usize % HINT_SLOTS) {
            if slot != 0 {
                prefetch_lines_n(slot & !63, SLOT_LINES);
                prefetch_lines(image);
            }
        }
    }
}

/// Cache lines a [`Slot`] spans at most (its lock and image pointer are what a read needs).
const SLOT_LINES: usize = std::mem::size_of::<Slot>().div_ceil(64) + 1;

impl Dirty {
    /// Changes to the block need no log entry: private and not sealed by a savepoint.
    pub(crate) fn unlogged(&self) -> bool {
        self.private && !self.sealed
    }
}

impl DirtySet {
    pub(crate) fn new(gen: u64) -> DirtySet {
        DirtySet { gen, map: AddrMap::default(), bytes: 0, hints: Hints::default() }
    }

    pub(crate) fn is_private(&self, addr: u64) -> bool {
        self.map.get(&addr).is_some_and(|d| d.private)
    }

    /// Reads the node `ptr` names if the open transaction allocated it, changes it without
    /// logging (no savepoint sealed it) and holds it in memory (not written back early): a
    /// block whose items can move without a log entry or a read. One lookup, one read lock;
    /// `None` for any other block.
    pub(crate) fn peek_unlogged_resident<R>(
        &self,
        ptr: ChildPtr,
        f: impl FnOnce(&Node<'_>) -> Result<R>,
    ) -> Option<Result<R>> {
        if ptr.generation() != self.gen {
            return None;
        }
        let d = self.map.get(&ptr.address()).filter(|d| d.unlogged())?;
        let st = d.slot.read();
        let Image::Mutable(buf) = &st.image else { return None };
        Some(Node::decode_trusted(buf).map_err(|e| corrupt(ptr.address(), e)).and_then(|n| f(&n)))
    }

    /// Whether `ptr` names a block of the open generation that is dirty.
    pub(crate) fn holds(&self, ptr: ChildPtr) -> bool {
        ptr.generation() == self.gen && self.map.contains_key(&ptr.address())
    }

    /// Reads a node for the writer: its dirty image if it belongs to the open generation,
    /// else the verified clean image.
    pub(crate) fn node<'a>(&'a self, s: &'a Store, ptr: ChildPtr) -> Result<NodeBuf<'a>> {
        debug_assert!(ptr.generation() <= self.gen, "pointer {ptr:?} from a future generation");
        if ptr.generation() == self.gen {
            if let Some(d) = self.map.get(&ptr.address()) {
                let st = d.slot.read();
                if let Image::OnDisk { crc } = st.image {
                    // Written back early: its clean image (not made resident; only edits
                    // do that).
                    return Ok(NodeBuf::Clean(s.read_block(ChildPtr::new(
                        ptr.address(),
                        self.gen,
                        crc,
                    ))?));
                }
                return Ok(NodeBuf::Dirty(st));
            }
        }
        Ok(NodeBuf::Clean(s.read_block(ptr)?))
    }

    /// A dirty block. Every caller got `addr` from the dirty set or a dirty parent, so a
    /// missing block is a writer bug, not a bad disk.
    pub(crate) fn slot(&self, addr: u64) -> &Dirty {
        match self.map.get(&addr) {
            Some(d) => d,
            None => panic!("block {addr} is not dirty in generation {}", self.gen),
        }
    }

    /// Reads the node `ptr` names if it is dirty and resident (not written back early), with
    /// one lookup and under one read lock: the descent's fast path (design.md §4.1).
    /// `None` when it is not, and the caller takes the copy-on-write path. Unless `prefetch`
    /// is [`Prefetch::No`], the header and slot array lines are asked for first
    /// ([`prefetch_search_lines`]; with [`Prefetch::Insert`] also the heap's top,
    /// [`prefetch_heap_top`]): for nodes likely cold (leaves and their parents); the few
    /// nodes above them stay cached.
    pub(crate) fn peek_resident<R>(
        &self,
        ptr: ChildPtr,
        prefetch: Prefetch,
        f: impl FnOnce(&Node<'_>) -> Result<R>,
    ) -> Option<Result<R>> {
        if ptr.generation() != self.gen {
            return None;
        }
        if prefetch != Prefetch::No {
            self.hints.prefetch(ptr.address());
        }
        let d = self.map.get(&ptr.address())?;
        if prefetch != Prefetch::No {
            // The image's first lines load while the slot (its lock and image pointer) does.
            prefetch_lines(d.image_at);
        }
        let st = d.slot.read();
        let Image::Mutable(buf) = &st.image else { return None };
        if prefetch != Prefetch::No {
            prefetch_search_lines(buf);
            if prefetch == Prefetch::Insert {
                prefetch_heap_top(buf);
            }
        }
        Some(Node::decode_trusted(buf).map_err(|e| corrupt(ptr.address(), e)).and_then(|n| f(&n)))
    }

    /// Reads a dirty node.
    pub(crate) fn peek<R>(&self, addr: u64, f: impl FnOnce(&Node<'_>) -> Result<R>) -> Result<R> {
        let st = self.slot(addr).slot.read();
        let node = Node::decode_trusted(st.image.bytes()).map_err(|e| corrupt(addr, e))?;
        f(&node)
    }

    /// Edits a dirty node without a log entry: only for private nodes (design.md §10.2) and for
    /// derived fields (crcs, §10.12). Takes the slot's write lock, like every edit.
    pub(crate) fn edit_unlogged<R>(
        &mut self,
        addr: u64,
        f: impl FnOnce(&mut NodeMut<'_>) -> Result<R>,
    ) -> Result<R> {
        let mut st = self.slot(addr).slot.write();
        let mut node = NodeMut::open_trusted(st.buf_mut(addr)?).map_err(|e| corrupt(addr, e))?;
        f(&mut node)
    }

    /// Seals a dirty block's header (its crc) for write-out; returns the crc.
    pub(crate) fn seal(&self, addr: u64) -> Result<u32> {
        let mut st = self.slot(addr).slot.write();
        Ok(arbor_format::header::seal_block(st.buf_mut(addr)?))
    }

    /// Adds a fresh image at `addr`, which must not be dirty already.
    pub(crate) fn insert(&mut self, addr: u64, buf: AlignedBuf, private: bool) {
        debug_assert_eq!(buf.len() as u64 % 512, 0, "block image of {} bytes", buf.len());
        self.bytes += buf.len() as u64;
        let image_at = buf.as_ptr() as usize;
        let slot = Arc::new(Slot::new(addr, buf));
        self.hints.note(addr, &*slot as *const Slot as usize, image_at);
        let dirty = Dirty { slot, private, sealed: false, seq_alloc: 0, image_at };
        let old = self.map.insert(addr, dirty);
        assert!(old.is_none(), "fresh address {addr} is already dirty");
    }

    /// Removes a dirty block, keeping `bytes` and the store's record of written-back crcs
    /// right.
    pub(crate) fn take(&mut self, s: &Store, addr: u64) -> Option<Dirty> {
        let d = self.map.remove(&addr)?;
        if d.slot.read().image.is_on_disk() {
            s.forget_written_back(addr);
        } else {
            let block_bytes = u64::from(s.block_bytes);
            assert!(self.bytes >= block_bytes, "dirty bytes {} below a block", self.bytes);
            self.bytes -= block_bytes;
        }
        Some(d)
    }

    /// The crc a written-back block was sealed with, if it is on disk.
    pub(crate) fn on_disk_crc(&self, addr: u64) -> Option<u32> {
        match self.map.get(&addr)?.slot.read().image {
            Image::OnDisk { crc } => Some(crc),
            _ => None,
        }
    }

    /// The pointer a parent stores for a dirty child: its crc is derived at write-out
    /// (design.md §10.12), so until then it carries the "crc not yet valid" mark.
    pub(crate) fn ptr(&self, addr: u64) -> ChildPtr {
        ChildPtr::pending(addr, self.gen)
    }
}

/// Asks the processor to start loading the header and the first slots of the image at
/// `addr` (the lines a search of a leaf reads first): a hint, never a read.
#[inline]
fn prefetch_lines(addr: usize) {
    prefetch_lines_n(addr, 5);
}

/// Asks for a leaf's lines just below its heap's start: an insert writes its item there,
/// and the release of the slot's write lock after the edit waits for those writes.
fn prefetch_heap_top(buf: &[u8]) {
    let (level, heap) = (offset_of!(BlockHeader, level), offset_of!(BlockHeader, heap_start));
    if buf.get(level) != Some(&0) {
        return;
    }
    let end = slots_end(buf);
    let heap = buf.get(heap..heap + 4).map_or(0, |h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]));
    let heap = (heap as usize).min(buf.len());
    if let Some(top) = buf.get(end.max(heap.saturating_sub(HEAP_TOP_BYTES))..heap) {
        prefetch_slice(top);
    }
}

/// Bytes below a leaf's heap start that an insert's prefetch asks for: an item of 24-byte
/// key and 150-byte value spans up to four lines.
const HEAP_TOP_BYTES: usize = 256;
