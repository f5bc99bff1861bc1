//! The writer's state: the open generation's dirty blocks, copy-on-write, logged in-place
//! changes, and the transaction scratch that `abort` rewinds.
//!
//! Invariants (DESIGN §4, §10.2, §10.5):
//! * every block whose generation is the open one lives in `dirty`; a block of an older
//!   (frozen or durable) generation is never changed: the first change copies it to a fresh
//!   address (`make_writable`), and its old address is freed through `defer_free`;
//! * a dirty block the open transaction allocated is *private* (no published root reaches it)
//!   and changes without logging; a dirty block a committed transaction of this generation
//!   published is changed only together with a mod-log entry holding the pre-image;
//! * frees are deferred to commit: the open transaction counts as an outstanding reader at
//!   its first seq (§10.5), so `abort` never meets an address that was reused meanwhile.

use std::collections::BTreeMap;

use arbor_format::node::{Node, ValueRef};
use arbor_format::NodeMut;
use arbor_format::{BlockKind, ChildPtr};

use crate::addr_map::AddrMap;
use crate::alloc::{AllocError, Allocator};
use crate::history::History;
use crate::io::AlignedBuf;
use crate::modlog::{self, Entry, ItemValue, Op};
use crate::mvcc::{Image, Slot, SlotState};
use crate::store::{corrupt, Store};
use crate::sync::{Arc, RwLockReadGuard};
use crate::{Error, Result};

/// A block of the open generation. Its image lives in a shared [`Slot`] so that snapshot
/// readers can copy it (under the slot's lock) once it is published.
pub(crate) struct Dirty {
    pub slot: Arc<Slot>,
    /// Allocated by the open transaction: not reachable from any published root.
    pub private: bool,
    /// Seq of the commit that published it (its identity's allocation seq for pinning,
    /// DESIGN §10.5); meaningless while private.
    pub a: u64,
}

/// A named tree's metadata as the writer sees it in the open transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TreeMeta {
    pub id: u64,
    pub root: ChildPtr,
    pub entries: u64,
}

/// What the open transaction did that `abort` must reverse or `commit` must finish.
pub(crate) struct TxnScratch {
    /// Runs the transaction allocated (blocks and overflow extents): freed on abort.
    pub allocated: Vec<(u64, u64)>,
    /// Runs the transaction freed, with the generation of the freed block: applied at commit.
    pub frees: Vec<(u64, u64, u64)>,
    /// (address, seq) of every log entry this transaction appended, in order (for abort).
    pub logged: Vec<(u64, u64)>,
    /// Bytes of the log entries this transaction appended (its own undo, capped apart from
    /// snapshot retention, §10.8).
    pub undo_bytes: u64,
    /// Tree metadata as of the transaction's start, restored on abort.
    pub trees_at_start: Option<BTreeMap<Vec<u8>, TreeMeta>>,
    pub catalog_at_start: ChildPtr,
    pub next_tree_id_at_start: u64,
    /// Length of the orphan list when the transaction started (abort drops what it added).
    pub orphans_at_start: usize,
    /// How far early write-back has walked `allocated` (it writes the oldest first).
    pub writeback_cursor: usize,
    /// A change failed part-way (see `WriteTxn::note_failure`): the transaction can only be
    /// aborted.
    pub failed: Option<String>,
}

impl Default for TxnScratch {
    fn default() -> TxnScratch {
        TxnScratch {
            allocated: Vec::new(),
            frees: Vec::new(),
            logged: Vec::new(),
            undo_bytes: 0,
            trees_at_start: None,
            catalog_at_start: ChildPtr::NULL,
            next_tree_id_at_start: 0,
            orphans_at_start: 0,
            writeback_cursor: 0,
            failed: None,
        }
    }
}

pub(crate) struct Writer {
    /// The open generation.
    pub gen: u64,
    pub dirty: AddrMap<Dirty>,
    pub dirty_bytes: u64,
    pub alloc: Allocator,
    /// What snapshots may still need: log order, retained images, pinned runs.
    pub hist: History,
    /// The last seq handed out.
    pub seq: u64,
    /// Catalog root in the open transaction.
    pub catalog: ChildPtr,
    /// Every named tree (loaded from the catalog at open; the catalog is rewritten from the
    /// changed entries at commit).
    pub trees: BTreeMap<Vec<u8>, TreeMeta>,
    /// Names whose metadata changed since the last commit (written to the catalog then).
    pub trees_changed: std::collections::BTreeSet<Vec<u8>>,
    pub next_tree_id: u64,
    pub txn: TxnScratch,
    /// Blocks kept free for commit-time metadata and for removals, so that a full store can
    /// still commit and can still delete (see `reserve_for`).
    pub reserve_blocks: u64,
    /// Generation of the last commit (what `Db::flush` makes durable).
    pub last_commit_gen: u64,
}

/// A node image to read: the writer's dirty block (under its slot's read lock, which
/// readers share; the writer's own edits need `&mut Writer`, so borrowck guarantees the
/// writer never waits on a guard it holds) or an immutable image.
pub(crate) enum NodeBuf<'a> {
    Dirty(RwLockReadGuard<'a, SlotState>),
    Clean(Arc<AlignedBuf>),
}

impl std::ops::Deref for NodeBuf<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            NodeBuf::Dirty(g) => g.image.bytes(),
            NodeBuf::Clean(b) => b,
        }
    }
}

/// How much an operation may dip into the reserve.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Inserts must leave the whole reserve.
    Grow,
    /// Removals may use the part kept for them.
    Shrink,
}

impl Writer {
    pub(crate) fn is_private(&self, addr: u64) -> bool {
        self.dirty.get(&addr).is_some_and(|d| d.private)
    }

    pub(crate) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Reads a node for the writer: its dirty image if it belongs to the open generation,
    /// else the verified clean image.
    pub(crate) fn node<'a>(&'a self, s: &Store, ptr: ChildPtr) -> Result<NodeBuf<'a>> {
        if ptr.generation() == self.gen {
            if let Some(d) = self.dirty.get(&ptr.address()) {
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

    pub(crate) fn slot(&self, addr: u64) -> Result<&Dirty> {
        self.dirty.get(&addr).ok_or_else(|| Error::corrupt(addr, "writer lost a dirty block"))
    }

    /// Reads a dirty node.
    pub(crate) fn peek<R>(&self, addr: u64, f: impl FnOnce(&Node<'_>) -> Result<R>) -> Result<R> {
        let st = self.slot(addr)?.slot.read();
        let node = Node::decode_trusted(st.image.bytes()).map_err(|e| corrupt(addr, e))?;
        f(&node)
    }

    /// Edits a dirty node without a log entry: only for private nodes (DESIGN §10.2) and for
    /// derived fields (crcs, §10.12). Takes the slot's write lock, like every edit.
    pub(crate) fn edit_unlogged<R>(
        &mut self,
        addr: u64,
        f: impl FnOnce(&mut NodeMut<'_>) -> Result<R>,
    ) -> Result<R> {
        let mut st = self.slot(addr)?.slot.write();
        let mut node = NodeMut::open_trusted(st.buf_mut(addr)?).map_err(|e| corrupt(addr, e))?;
        f(&mut node)
    }

    /// Seals a dirty block's header (its crc) for write-out; returns the crc.
    pub(crate) fn seal_dirty(&self, addr: u64) -> Result<u32> {
        let mut st = self.slot(addr)?.slot.write();
        let buf = st.buf_mut(addr)?;
        arbor_format::header::seal_block(buf);
        Ok(arbor_format::header::block_crc(buf))
    }

    /// Edits a dirty node and, if it is published, appends the entry that undoes the edit,
    /// both under the slot's write lock (DESIGN §10.1). `f` returns `None` when it changed
    /// nothing (the item did not fit), else its result and the undo op.
    fn edit_logged<R>(
        &mut self,
        addr: u64,
        f: impl FnOnce(&mut NodeMut<'_>) -> Result<Option<(R, Op)>>,
    ) -> Result<Option<R>> {
        let d = self.slot(addr)?;
        let (slot, private) = (Arc::clone(&d.slot), d.private);
        let counter = if private { None } else { Some(&mut self.seq) };
        let Some((r, logged)) = slot.edit_logged(counter, f)? else { return Ok(None) };
        if let Some(l) = logged {
            self.hist.note_logged(l.seq, &slot, l.bytes);
            self.txn.undo_bytes += l.bytes;
            self.txn.logged.push((addr, l.seq));
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
        let new_len = s.dev.grow(target)?;
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
        let mut buf = s.new_block();
        NodeMut::init(&mut buf, kind, level, addr, self.gen, owner);
        self.insert_dirty(addr, buf, true);
        Ok(addr)
    }

    fn insert_dirty(&mut self, addr: u64, buf: AlignedBuf, private: bool) {
        self.dirty_bytes += buf.len() as u64;
        let slot = Arc::new(Slot::new(addr, buf));
        let old = self.dirty.insert(addr, Dirty { slot, private, a: 0 });
        debug_assert!(old.is_none(), "a fresh address is not already dirty");
    }

    /// Returns the address of a writable image of `ptr`'s block: itself when it belongs to
    /// the open generation, else a private copy at a fresh address (the old one is freed).
    /// The caller must store the new address in the parent (`set_child`) or root.
    pub(crate) fn make_writable(&mut self, s: &Store, ptr: ChildPtr) -> Result<u64> {
        let old = ptr.address();
        if ptr.generation() == self.gen && self.dirty.contains_key(&old) {
            // Every edit path starts here, so a block written back early is read back in
            // before anything looks at it by address (`peek`, the edits).
            self.make_resident(s, old)?;
            return Ok(old);
        }
        let src = s.read_block(ptr)?;
        let addr = self.alloc_run(s, 1)?;
        let mut buf = AlignedBuf::from_slice(&src, s.align);
        {
            let mut node = NodeMut::open(&mut buf).map_err(|e| corrupt(old, e))?;
            node.set_address(addr);
            node.set_generation(self.gen);
        }
        self.insert_dirty(addr, buf, true);
        self.defer_free(old, 1, ptr.generation());
        Ok(addr)
    }

    /// Frees a run at commit (see the module comment).
    pub(crate) fn defer_free(&mut self, addr: u64, count: u64, gen: u64) {
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
        let done = self.edit_logged(addr, |node| {
            Ok(node.insert(slot, key, v).ok().map(|()| ((), Op::Insert { slot: slot as u16 })))
        })?;
        Ok(done.is_some())
    }

    pub(crate) fn node_remove(&mut self, addr: u64, slot: usize) -> Result<(Vec<u8>, ItemValue)> {
        let removed = self.edit_logged(addr, |node| {
            if slot >= node.as_node().len() {
                return Err(Error::corrupt(addr, "remove: slot out of range"));
            }
            let (key, value) = modlog::owned_item(node, slot, addr)?;
            node.remove(slot);
            let op = Op::Remove { slot: slot as u16, key: key.clone(), value: value.clone() };
            Ok(Some(((key, value), op)))
        })?;
        removed.ok_or_else(|| Error::corrupt(addr, "remove changed nothing"))
    }

    /// Replaces a value; `Ok(None)` when the new value does not fit (nothing changed).
    pub(crate) fn node_replace(
        &mut self,
        addr: u64,
        slot: usize,
        v: ValueRef<'_>,
    ) -> Result<Option<ItemValue>> {
        self.edit_logged(addr, |node| {
            let (_, old) = modlog::owned_item(node, slot, addr)?;
            if node.replace_value(slot, v).is_err() {
                return Ok(None);
            }
            Ok(Some((old.clone(), Op::Replace { slot: slot as u16, old })))
        })
    }

    pub(crate) fn set_child(&mut self, addr: u64, slot: usize, child: ChildPtr) -> Result<()> {
        self.edit_logged(addr, |node| {
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
        let items = self.peek(addr, |node| {
            (at..node.len())
                .map(|slot| modlog::owned_node_item(node, slot))
                .collect::<Result<Vec<_>>>()
        })?;
        let logged = items.clone();
        self.edit_logged(addr, |node| {
            node.truncate(at);
            Ok(Some(((), Op::TruncateTail { items: logged })))
        })?;
        Ok(items)
    }

    /// Moves items `[at..]` of `addr` to the end of the (private, empty) node `right`.
    pub(crate) fn move_tail(&mut self, addr: u64, at: usize, right: u64) -> Result<()> {
        debug_assert!(self.is_private(right));
        // The right node is private: a reader can only reach these items through `addr`,
        // whose entry restores them.
        let items = self.truncate_tail(addr, at)?;
        self.edit_unlogged(right, |r| {
            for (key, value) in &items {
                let len = r.as_node().len();
                r.insert(len, key, value.as_ref())
                    .map_err(|_| Error::corrupt(right, "split: moved items do not fit"))?;
            }
            Ok(())
        })
    }

    /// Appends `items` at the end of `addr` (a merge), logged as one op.
    pub(crate) fn append_items(&mut self, addr: u64, items: &[(Vec<u8>, ItemValue)]) -> Result<()> {
        self.edit_logged(addr, |node| {
            for (key, value) in items {
                let len = node.as_node().len();
                node.insert(len, key, value.as_ref())
                    .map_err(|_| Error::corrupt(addr, "merge: items do not fit"))?;
            }
            Ok(Some(((), Op::AppendTail { count: items.len() as u16 })))
        })?;
        Ok(())
    }

    /// Frees a dirty or clean node the tree no longer references (at commit, through the
    /// pinning rule of DESIGN §6).
    pub(crate) fn free_node(&mut self, ptr: ChildPtr) {
        self.defer_free(ptr.address(), 1, ptr.generation());
    }

    /// Undoes the logged change `seq` of `addr` (abort) and appends its compensation entry
    /// with a fresh seq, so a reader that copied the block meanwhile still rewinds it right.
    pub(crate) fn undo_logged(&mut self, addr: u64, seq: u64) -> Result<()> {
        let slot = Arc::clone(&self.slot(addr)?.slot);
        let mut st = slot.write();
        let op = st.log.iter().find(|e| e.seq == seq).map(|e| e.op.clone());
        let op = op.ok_or_else(|| Error::corrupt(addr, "abort: log entry missing"))?;
        let mut node = NodeMut::open_trusted(st.buf_mut(addr)?).map_err(|e| corrupt(addr, e))?;
        let compensation = modlog::undo(&mut node, addr, &op)?;
        let cseq = self.next_seq();
        let bytes = compensation.bytes() as u64;
        st.log.push(Entry { seq: cseq, op: compensation });
        drop(st);
        self.hist.note_logged(cseq, &slot, bytes);
        Ok(())
    }

    /// The pointer a parent stores for a dirty child: its crc is derived at write-out
    /// (DESIGN §10.12), so until then it carries the "crc not yet valid" mark.
    pub(crate) fn dirty_ptr(&self, addr: u64) -> ChildPtr {
        ChildPtr::pending(addr, self.gen)
    }

    pub(crate) fn read_view<'a>(&'a self, s: &'a Store) -> WriterView<'a> {
        WriterView { w: self, s }
    }
}

/// The writer's tree view as a `NodeSource` for lookups and iteration.
pub(crate) struct WriterView<'a> {
    pub w: &'a Writer,
    pub s: &'a Store,
}

impl<'a> crate::btree::NodeSource<'a> for WriterView<'a> {
    fn node(&self, ptr: ChildPtr) -> Result<NodeBuf<'a>> {
        self.w.node(self.s, ptr)
    }
    fn overflow(&self, r: &arbor_format::OverflowRef) -> Result<Vec<u8>> {
        self.s.read_overflow(r)
    }
}

/// A view of a node image already validated in full: when it was read from the device
/// (`Store::read_uncached`) or because the writer built it. Only the header is re-checked,
/// so a lookup costs a binary search, not a validation of the whole block. Debug builds
/// (every test) re-validate in full to catch writer bugs.
pub(crate) fn decode(buf: &[u8], addr: u64) -> Result<Node<'_>> {
    debug_assert!(Node::decode(buf).is_ok(), "block {addr} fails full validation");
    Node::decode_trusted(buf).map_err(|e| corrupt(addr, e))
}
