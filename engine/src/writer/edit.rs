//! Changes to the open generation's blocks, as the tree code makes them: copy-on-write,
//! allocation within the reserve, and in-place edits that log their pre-image when the
//! block is published.
//!
//! Invariants (design.md §4, §10.2, §10.5):
//! * every block whose generation is the open one lives in the dirty set; a block of an
//!   older (frozen or durable) generation is never changed: the first change copies it to a
//!   fresh address (`make_writable`), and its old address is freed through `defer_free`;
//! * a dirty block the open transaction allocated is *private* (no published root reaches it)
//!   and changes without logging; a dirty block a committed transaction of this generation
//!   published is changed only together with a mod-log entry holding the pre-image;
//! * frees are deferred to commit: the open transaction counts as an outstanding reader at
//!   its first seq (§10.5), so `abort` never meets an address that was reused meanwhile.

use arbor_format::constants::HEADER_BYTES;
use arbor_format::header::BlockHeader;
use arbor_format::node::{Node, ValueRef};
use arbor_format::{BlockKind, ChildPtr, NodeMut};

use crate::alloc::{AllocError, Allocator};
use crate::error::corrupt;
use crate::io::{dev_error, AlignedBuf};
use crate::mvcc::modlog::{self, Entry, ItemValue, Op};
use crate::store::{NodeBuf, Store};
use crate::sync::Arc;
use crate::writer::dirty::DirtySet;
use crate::writer::retention::History;
use crate::writer::scratch::TxnScratch;
use crate::{Error, Result};

/// How much an operation may dip into the reserve.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Inserts must leave the whole reserve.
    Grow,
    /// Removals may use the part kept for them.
    Shrink,
}

/// The parts of the writer a tree change uses, borrowed from [`crate::writer::Writer`]:
/// the dirty set, the allocator, the seq counter, the log order kept for retention and the
/// transaction scratch. The tree code never sees the catalog or the pinned set.
pub(crate) struct Edit<'a> {
    pub dirty: &'a mut DirtySet,
    pub alloc: &'a mut Allocator,
    /// The last seq handed out.
    pub seq: &'a mut u64,
    pub hist: &'a mut History,
    pub txn: &'a mut TxnScratch,
    pub reserve_blocks: u64,
    /// Leaves fill a private sibling before they split (`Options::fill_siblings`).
    pub fill_siblings: bool,
}

impl Edit<'_> {
    pub(crate) fn next_seq(&mut self) -> u64 {
        *self.seq += 1;
        *self.seq
    }

    /// Reads a node: its dirty image if it belongs to the open generation, else the clean one.
    pub(crate) fn node<'b>(&'b self, s: &'b Store, ptr: ChildPtr) -> Result<NodeBuf<'b>> {
        self.dirty.node(s, ptr)
    }

    /// Reads a dirty node.
    pub(crate) fn peek<R>(&self, addr: u64, f: impl FnOnce(&Node<'_>) -> Result<R>) -> Result<R> {
        self.dirty.peek(addr, f)
    }

    /// The pointer a parent stores for a dirty child (crc pending, design.md §10.12).
    pub(crate) fn dirty_ptr(&self, addr: u64) -> ChildPtr {
        self.dirty.ptr(addr)
    }

    /// Edits a dirty node and, if it is published, appends the entry that undoes the edit,
    /// both under the slot's write lock (design.md §10.1). `f` returns `None` when it changed
    /// nothing (the item did not fit), else its result and the undo op. `f` is told whether
    /// the op will be logged: an unlogged (private) edit may return any op without building
    /// the pre-image, which is then dropped.
    fn edit_logged<R>(
        &mut self,
        addr: u64,
        f: impl FnOnce(&mut NodeMut<'_>, bool) -> Result<Option<(R, Op)>>,
    ) -> Result<Option<R>> {
        // The slot is borrowed, not cloned: an `Arc` count taken and dropped around the edit
        // cost two atomics per insert, the second waiting for the edit's stores to drain.
        let Edit { dirty, seq, hist, txn, .. } = self;
        let d = dirty.slot(addr);
        let unlogged = d.unlogged();
        let counter = if unlogged { None } else { Some(&mut **seq) };
        let Some((r, logged)) = d.slot.edit_logged(counter, |node| f(node, !unlogged))? else {
            return Ok(None);
        };
        if let Some(l) = logged {
            debug_assert_eq!(l.seq, **seq, "a logged edit takes the newest seq");
            hist.note_logged(l.seq, &d.slot, l.bytes);
            txn.undo_bytes += l.bytes;
            txn.logged.push((addr, l.seq));
        }
        Ok(Some(r))
    }

    /// Ensures enough free blocks for an operation touching `blocks` blocks, growing the
    /// device if it can. Checked before anything changes, so an operation either has every
    /// block it may need or fails with `NoSpace` leaving the tree untouched.
    pub(crate) fn reserve_for(&mut self, s: &Store, blocks: u64, need: Need) -> Result<()> {
        let keep = match need {
            Need::Grow => self.reserve_blocks,
            Need::Shrink => self.reserve_blocks / 2,
        };
        let wanted = blocks + keep;
        if self.alloc.free_blocks() >= wanted {
            return Ok(());
        }
        self.grow_device(s, wanted)?;
        if self.alloc.free_blocks() >= wanted {
            Ok(())
        } else {
            Err(Error::NoSpace)
        }
    }

    /// Asks the device for room for `blocks` more free blocks (files grow in steps).
    pub(crate) fn grow_device(&mut self, s: &Store, blocks: u64) -> Result<()> {
        let block_bytes = u64::from(s.block_bytes);
        let target = (self.alloc.block_count() + blocks).saturating_mul(block_bytes);
        let new_len = s.dev.grow(target).map_err(dev_error(&*s.dev, "grow"))?;
        let new_count = new_len / block_bytes;
        if new_count > self.alloc.block_count() {
            self.alloc.grow(new_count);
        }
        Ok(())
    }

    /// Allocates a run of `count` blocks for the open transaction.
    pub(crate) fn alloc_run(&mut self, s: &Store, count: u64) -> Result<u64> {
        let addr = match self.alloc.alloc(count) {
            Ok(a) => a,
            Err(AllocError::NoSpace) => {
                self.grow_device(s, count)?;
                self.alloc.alloc(count).map_err(|_| Error::NoSpace)?
            }
        };
        debug_assert!(self.alloc.is_allocated(addr), "run at {addr} allocated but free");
        self.txn.allocated.push((addr, count));
        Ok(addr)
    }

    /// A new, empty, private node.
    pub(crate) fn new_node(
        &mut self,
        s: &Store,
        kind: BlockKind,
        level: u8,
        owner: u64,
    ) -> Result<u64> {
        let addr = self.alloc_run(s, 1)?;
        // `new_block` is zeroed: only the header is written.
        let mut buf = s.new_block();
        let header = BlockHeader::new(kind, level, addr, self.dirty.gen, owner);
        NodeMut::init_zeroed(&mut buf, header);
        self.dirty.insert(addr, buf, true);
        Ok(addr)
    }

    /// Returns the address of a writable image of `ptr`'s block: itself when it belongs to
    /// the open generation, else a private copy at a fresh address (the old one is freed).
    /// The caller must store the new address in the parent (`set_child`) or root.
    pub(crate) fn make_writable(&mut self, s: &Store, ptr: ChildPtr) -> Result<u64> {
        let old = ptr.address();
        if self.dirty.holds(ptr) {
            // Every edit path starts here, so a block written back early is read back in
            // before anything looks at it by address (`peek`, the edits).
            self.dirty.make_resident(s, old)?;
            return Ok(old);
        }
        let src = s.read_block(ptr)?;
        let addr = self.alloc_run(s, 1)?;
        let mut buf = AlignedBuf::from_slice(&src, s.align);
        {
            // `read_block` validated the node in full when it came from the device (an image
            // from memory was made by `NodeMut`): the copy needs the header checks only.
            let mut node = NodeMut::open_trusted(&mut buf).map_err(|e| corrupt(old, e))?;
            node.set_address(addr);
            node.set_generation(self.dirty.gen);
        }
        self.dirty.insert(addr, buf, true);
        self.defer_free(old, 1, ptr.generation());
        debug_assert!(self.dirty.is_private(addr), "a fresh copy {addr} of {old} is private");
        Ok(addr)
    }

    /// Frees a run at commit (see the module comment).
    pub(crate) fn defer_free(&mut self, addr: u64, count: u64, gen: u64) {
        debug_assert!(count > 0, "deferred free of no blocks at {addr}");
        debug_assert!(gen <= self.dirty.gen, "free of block {addr} from future generation {gen}");
        self.txn.frees.push((addr, count, gen));
    }

    // ---- logged node edits: every in-place change to a dirty node goes through these ----

    pub(crate) fn node_insert(
        &mut self,
        addr: u64,
        slot: usize,
        key: &[u8],
        v: ValueRef<'_>,
    ) -> Result<bool> {
        let done = self.edit_logged(addr, |node, _| {
            Ok(node.insert(slot, key, v).ok().map(|()| ((), Op::Insert { slot: slot as u16 })))
        })?;
        Ok(done.is_some())
    }

    pub(crate) fn node_remove(&mut self, addr: u64, slot: usize) -> Result<(Vec<u8>, ItemValue)> {
        let removed = self.edit_logged(addr, |node, logging| {
            let len = node.as_node().len();
            assert!(slot < len, "remove of item {slot} of block {addr}, which has {len}");
            let (key, value) = modlog::owned_item(node, slot, addr)?;
            node.remove(slot);
            let op = if logging {
                Op::Remove { slot: slot as u16, key: key.clone(), value: value.clone() }
            } else {
                Op::Insert { slot: slot as u16 } // dropped unlogged
            };
            Ok(Some(((key, value), op)))
        })?;
        Ok(removed.expect("a removal always changes the node"))
    }

    /// [`Edit::node_remove`] of an item the caller does not need: nothing is copied unless
    /// the node is published (its log entry holds the item).
    pub(crate) fn node_drop(&mut self, addr: u64, slot: usize) -> Result<()> {
        self.edit_logged(addr, |node, logging| {
            let len = node.as_node().len();
            assert!(slot < len, "remove of item {slot} of block {addr}, which has {len}");
            let op = if logging {
                let (key, value) = modlog::owned_item(node, slot, addr)?;
                Op::Remove { slot: slot as u16, key, value }
            } else {
                Op::Insert { slot: slot as u16 } // dropped unlogged
            };
            node.remove(slot);
            Ok(Some(((), op)))
        })?;
        Ok(())
    }

    /// [`Edit::node_remove`] returning only the value (a private node's key is not copied)
    /// and the bytes the node's items use afterwards (for the rebalance that follows).
    pub(crate) fn node_remove_value(
        &mut self,
        addr: u64,
        slot: usize,
    ) -> Result<(ItemValue, usize)> {
        let used = |node: &NodeMut<'_>| node.as_node().used_bytes() - HEADER_BYTES;
        let removed = self.edit_logged(addr, |node, logging| {
            let len = node.as_node().len();
            assert!(slot < len, "remove of item {slot} of block {addr}, which has {len}");
            if logging {
                let (key, value) = modlog::owned_item(node, slot, addr)?;
                node.remove(slot);
                let op = Op::Remove { slot: slot as u16, key, value: value.clone() };
                return Ok(Some(((value, used(node)), op)));
            }
            let n = node.as_node();
            let value = match (n.level(), n.value(slot)) {
                (0, ValueRef::Inline(v)) => ItemValue::Inline(v.to_vec()),
                (_, ValueRef::Overflow(r)) => ItemValue::Overflow(r),
                (_, v) => panic!("removal from block {addr} at level {} of {v:?}", n.level()),
            };
            node.remove(slot);
            // The op is dropped unlogged.
            Ok(Some(((value, used(node)), Op::Insert { slot: slot as u16 })))
        })?;
        Ok(removed.expect("a removal always changes the node"))
    }

    /// Replaces a value; `Ok(None)` when the new value does not fit (nothing changed).
    pub(crate) fn node_replace(
        &mut self,
        addr: u64,
        slot: usize,
        v: ValueRef<'_>,
    ) -> Result<Option<ItemValue>> {
        self.edit_logged(addr, |node, logging| {
            let (_, old) = modlog::owned_item(node, slot, addr)?;
            if node.replace_value(slot, v).is_err() {
                return Ok(None);
            }
            let op = if logging {
                Op::Replace { slot: slot as u16, old: old.clone() }
            } else {
                Op::Insert { slot: slot as u16 } // dropped unlogged
            };
            Ok(Some((old, op)))
        })
    }

    pub(crate) fn set_child(&mut self, addr: u64, slot: usize, child: ChildPtr) -> Result<()> {
        self.edit_logged(addr, |node, _| {
            let old = node.as_node().child(slot);
            node.set_child(slot, child);
            Ok(Some(((), Op::Replace { slot: slot as u16, old: ItemValue::Child(old) })))
        })?;
        Ok(())
    }

    /// Removes items `[at..]` of `addr` (logged as one op) and returns them.
    pub(crate) fn truncate_tail(
        &mut self,
        addr: u64,
        at: usize,
    ) -> Result<Vec<(Vec<u8>, ItemValue)>> {
        let items = self.dirty.peek(addr, |node| {
            assert!(at <= node.len(), "truncate of block {addr} at {at} of {}", node.len());
            (at..node.len())
                .map(|slot| modlog::owned_node_item(node, slot))
                .collect::<Result<Vec<_>>>()
        })?;
        let logged = &items;
        self.edit_logged(addr, |node, logging| {
            node.truncate(at);
            let items = if logging { logged.clone() } else { Vec::new() };
            Ok(Some(((), Op::TruncateTail { items })))
        })?;
        Ok(items)
    }

    /// Moves items `[at..]` of `addr` to the end of the (private, empty) node `right`: copied
    /// node to node, then cut from `addr` (the cut logged with its items if `addr` is
    /// published; nothing else is copied).
    pub(crate) fn move_tail(&mut self, addr: u64, at: usize, right: u64) -> Result<()> {
        debug_assert!(self.dirty.is_private(right), "split sibling {right} is private");
        let src = Arc::clone(&self.dirty.slot(addr).slot);
        // The right node is private: a reader can only reach these items through `addr`,
        // whose entry restores them.
        self.dirty.edit_unlogged(right, |r| {
            debug_assert!(r.as_node().is_empty(), "split sibling {right} starts empty");
            let st = src.read();
            let node = Node::decode_trusted(st.image.bytes()).map_err(|e| corrupt(addr, e))?;
            assert!(at <= node.len(), "split of block {addr} at {at} of {}", node.len());
            let fits = r.append_run(&node, at..node.len()).is_ok();
            assert!(fits, "split: items moved from {addr} do not fit empty block {right}");
            Ok(())
        })?;
        let logging = !self.dirty.slot(addr).unlogged();
        if logging {
            self.truncate_tail(addr, at)?;
        } else {
            self.dirty.edit_unlogged(addr, |node| {
                node.truncate(at);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Appends every item of the dirty node `src` at the end of `addr` (a merge), copied node
    /// to node and logged as one op (its undo removes them again: no item is copied for the
    /// log). For internal nodes `sep` is the key of `src`'s first item, whose own key is empty.
    pub(crate) fn append_node(&mut self, addr: u64, src: u64, sep: Option<&[u8]>) -> Result<()> {
        let from = Arc::clone(&self.dirty.slot(src).slot);
        self.edit_logged(addr, |node, _| {
            let st = from.read();
            let right = Node::decode_trusted(st.image.bytes()).map_err(|e| corrupt(src, e))?;
            let mut first = 0;
            if let (Some(sep), false) = (sep, right.is_empty()) {
                let fits = node.insert(node.len(), sep, right.value(0)).is_ok();
                assert!(fits, "merge: the first item of {src} does not fit block {addr}");
                first = 1;
            }
            let fits = node.append_run(&right, first..right.len()).is_ok();
            assert!(fits, "merge: the items of {src} do not fit block {addr}");
            Ok(Some(((), Op::AppendTail { count: right.len() as u16 })))
        })?;
        Ok(())
    }

    /// Appends `items` at the end of `addr` (a merge), logged as one op.
    pub(crate) fn append_items(&mut self, addr: u64, items: &[(Vec<u8>, ItemValue)]) -> Result<()> {
        self.edit_logged(addr, |node, _| {
            for (key, value) in items {
                let len = node.as_node().len();
                let fits = node.insert(len, key, value.as_ref()).is_ok();
                assert!(fits, "merge: items do not fit block {addr}");
            }
            Ok(Some(((), Op::AppendTail { count: items.len() as u16 })))
        })?;
        Ok(())
    }

    /// Frees a dirty or clean node the tree no longer references (at commit, through the
    /// pinning rule of design.md §6).
    pub(crate) fn free_node(&mut self, ptr: ChildPtr) {
        self.defer_free(ptr.address(), 1, ptr.generation());
    }

    /// Undoes the logged change `seq` of `addr` (abort) and appends its compensation entry
    /// with a fresh seq, so a reader that copied the block meanwhile still rewinds it right.
    pub(crate) fn undo_logged(&mut self, addr: u64, seq: u64) -> Result<()> {
        let slot = Arc::clone(&self.dirty.slot(addr).slot);
        let mut st = slot.write();
        let op = st.log.iter().find(|e| e.seq == seq).map(|e| e.op.clone());
        let op = op.unwrap_or_else(|| panic!("abort: entry {seq} of block {addr} is not logged"));
        let mut node = NodeMut::open_trusted(st.buf_mut(addr)?).map_err(|e| corrupt(addr, e))?;
        let compensation = modlog::undo(&mut node, addr, &op)?;
        let cseq = self.next_seq();
        let bytes = compensation.bytes() as u64;
        let last = st.log.last().map_or(0, |e| e.seq);
        assert!(last < cseq, "block {addr}: compensation seq {cseq} after {last}");
        st.log.push(Entry { seq: cseq, op: compensation });
        drop(st);
        self.hist.note_logged(cseq, &slot, bytes);
        debug_assert_eq!(*self.seq, cseq, "the compensation entry took the newest seq");
        Ok(())
    }
}
