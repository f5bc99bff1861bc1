//! Write transactions: `WriteTxn` and its tree handle `WriteTree`.

use std::ops::{Bound, RangeBounds};

use arbor_format::constants::{
    key_bytes_max, overflow_block_count, value_inline_bytes_max, TREE_ID_CATALOG, VALUE_BYTES_MAX,
};
use arbor_format::node::LeafValue;
use arbor_format::{overflow, ChildPtr, OverflowRef};

use crate::bound;
use crate::btree::{self, owned_bound, Range};
use crate::btree_write;
use crate::catalog;
use crate::commit;
use crate::db::Shared;
use crate::history;
use crate::io::AlignedBuf;
use crate::modlog::ItemValue;
use crate::mvcc::RootRecord;
use crate::options::Durability;
use crate::store::Store;
use crate::sync::{lock, Arc, MutexGuard};
use crate::writer::{decode, TreeMeta, TxnScratch, Writer};
use crate::{Error, Result};

/// What a commit produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitInfo {
    /// The seq at which the commit became visible.
    pub seq: u64,
    /// The generation that holds the commit.
    pub generation: u64,
    /// Whether the commit was durable when `commit` returned.
    pub durable: bool,
}

/// The one write transaction. Dropping it without `commit` aborts it.
pub struct WriteTxn<'db> {
    db: &'db Shared,
    w: Option<MutexGuard<'db, Writer>>,
    durability: Durability,
}

impl<'db> WriteTxn<'db> {
    pub(crate) fn begin(db: &'db Shared) -> Result<WriteTxn<'db>> {
        db.pipeline.check_failed()?;
        let mut w = lock(&db.writer);
        let durable = db.pipeline.durable_gen();
        w.alloc.note_durable(durable);
        w.txn = TxnScratch {
            trees_at_start: Some(w.trees.clone()),
            catalog_at_start: w.catalog,
            next_tree_id_at_start: w.next_tree_id,
            orphans_at_start: w.alloc.orphans().len(),
            ..TxnScratch::default()
        };
        w.trees_changed.clear();
        // Past the snapshot bound, `WriterWaits` waits here (nothing of this transaction
        // exists yet, so its error loses nothing); `ExpireOldest` acts at commit.
        bound::enforce(&mut w, db)?;
        Ok(WriteTxn { db, w: Some(w), durability: db.opts.durability })
    }

    fn parts(&mut self) -> Result<(&mut Writer, &'db Store)> {
        let w =
            self.w.as_deref_mut().ok_or_else(|| Error::InvalidInput("transaction ended".into()))?;
        if let Some(failed) = &w.txn.failed {
            return Err(failed_txn(failed, "abort it"));
        }
        Ok((w, &self.db.store))
    }

    /// Marks the transaction failed after a change returned `e`, unless `e` is one that
    /// changing calls return before they change anything (a key or value over the limit,
    /// `NoSpace` from the up-front reservation). Other errors can come part-way through a
    /// change — a read error while copying the path, reading the old overflow value, the
    /// undo cap, an early write-back — and leave the tree half-changed: a root copied but not
    /// recorded, a block queued for freeing that the tree still uses. Committing that would
    /// free live blocks, so from then on the transaction refuses everything but abort.
    fn note_failure(&mut self, e: Error) -> Error {
        let before_any_change =
            matches!(e, Error::KeyTooLarge { .. } | Error::ValueTooLarge { .. } | Error::NoSpace);
        if !before_any_change {
            if let Some(w) = self.w.as_deref_mut() {
                w.txn.failed.get_or_insert_with(|| e.to_string());
            }
        }
        e
    }

    /// The named tree, created (empty) if it does not exist.
    pub fn tree(&mut self, name: &str) -> Result<WriteTree<'_, 'db>> {
        let max = key_bytes_max(self.db.store.block_bytes);
        if name.len() > max {
            return Err(Error::KeyTooLarge { len: name.len(), max });
        }
        let (w, s) = self.parts()?;
        let key = name.as_bytes().to_vec();
        if !w.trees.contains_key(&key) {
            let id = w.next_tree_id;
            w.next_tree_id += 1;
            let root = w.new_node(s, arbor_format::BlockKind::Leaf, 0, id)?;
            let meta = TreeMeta { id, root: w.dirty_ptr(root), entries: 0 };
            w.trees.insert(key.clone(), meta);
            w.trees_changed.insert(key.clone());
        }
        Ok(WriteTree { txn: self, name: key })
    }

    /// Deletes a tree and frees its blocks; returns whether it existed.
    pub fn delete_tree(&mut self, name: &str) -> Result<bool> {
        let r = self.delete_tree_inner(name);
        r.map_err(|e| self.note_failure(e))
    }

    fn delete_tree_inner(&mut self, name: &str) -> Result<bool> {
        let (w, s) = self.parts()?;
        let key = name.as_bytes().to_vec();
        let Some(meta) = w.trees.remove(&key) else { return Ok(false) };
        w.trees_changed.insert(key);
        free_tree(w, s, meta.root)?;
        Ok(true)
    }

    /// Names of every tree, sorted.
    pub fn tree_names(&mut self) -> Result<Vec<String>> {
        let (w, _) = self.parts()?;
        Ok(w.trees.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect())
    }

    pub fn set_durability(&mut self, durability: Durability) {
        self.durability = durability;
    }

    /// Publishes the transaction; with `Durability::Immediate` returns after its flush.
    pub fn commit(mut self) -> Result<CommitInfo> {
        let mut w = self.w.take().ok_or_else(|| Error::InvalidInput("transaction ended".into()))?;
        if let Some(failed) = w.txn.failed.take() {
            abort_writer(&mut w, self.db)?;
            return Err(failed_txn(&failed, "it was rolled back"));
        }
        let seq = match finish(&mut w, self.db) {
            Ok(seq) => seq,
            Err(e) => {
                // The catalog update failed before anything was published: roll back.
                let undo = abort_writer(&mut w, self.db);
                return Err(undo.err().unwrap_or(e));
            }
        };
        let gen = w.gen;
        w.last_commit_gen = gen;
        let over_dirty = w.dirty_bytes > self.db.opts.dirty_max_bytes;
        let db = self.db;
        let durable = match self.durability {
            Durability::Immediate => {
                commit::make_durable(db, Some(w), gen, true)?;
                true
            }
            Durability::Eventual => {
                let due =
                    lock(&db.pipeline.state).last_durable_at.elapsed() >= db.opts.eventual_interval;
                if due || over_dirty {
                    commit::make_durable(db, Some(w), gen, false)?;
                }
                db.pipeline.durable_gen() >= gen
            }
            Durability::None => {
                if over_dirty {
                    commit::make_durable(db, Some(w), gen, false)?;
                }
                false
            }
        };
        Ok(CommitInfo { seq, generation: gen, durable })
    }

    /// Discards every change of the transaction.
    pub fn abort(mut self) -> Result<()> {
        match self.w.take() {
            Some(mut w) => abort_writer(&mut w, self.db),
            None => Ok(()),
        }
    }
}

impl Drop for WriteTxn<'_> {
    fn drop(&mut self) {
        if let Some(mut w) = self.w.take() {
            // Errors here mean the log and a block disagree: the handle turns fail-stop.
            if let Err(e) = abort_writer(&mut w, self.db) {
                lock(&self.db.pipeline.state).failed.get_or_insert(e.to_string());
            }
        }
    }
}

/// Writes changed tree metadata into the catalog, publishes the transaction (its private
/// blocks join the readers' table, then the root record makes its seq visible), applies
/// deferred frees through the pinning rule, and prunes history. Returns the commit's seq.
fn finish(w: &mut Writer, db: &Shared) -> Result<u64> {
    let s = &db.store;
    let changed = std::mem::take(&mut w.trees_changed);
    for name in &changed {
        let mut root = w.catalog;
        match w.trees.get(name).copied() {
            Some(meta) => {
                let v = ItemValue::Inline(catalog::encode(&meta).to_vec());
                btree_write::insert(w, s, &mut root, TREE_ID_CATALOG, name, v)?;
            }
            None => {
                btree_write::remove(w, s, &mut root, name)?;
            }
        }
        w.catalog = root;
    }
    free_some_orphans(w, s)?;
    let commit_seq = w.next_seq();
    // The transaction's blocks become published: readers of the new root find them in the
    // table, and from now on every change to them is logged.
    for &(addr, _) in &w.txn.allocated {
        if let Some(d) = w.dirty.get_mut(&addr) {
            if d.private {
                d.private = false;
                d.a = commit_seq;
                // A block written back early is read from the device until it changes
                // again (`Writer::make_resident` adds it to the table then).
                if !d.slot.read().image.is_on_disk() {
                    s.table.insert(addr, Arc::clone(&d.slot));
                }
            }
        }
    }
    let frees = std::mem::take(&mut w.txn.frees);
    let mut r = db.registry.lock();
    r.sweep();
    for (addr, count, gen) in frees {
        let freed = classify_free(w, s, addr, count, gen, commit_seq);
        history::apply_free(w, s, &r, commit_seq, freed);
    }
    r.publish(RootRecord { seq: commit_seq, gen: w.gen, catalog: w.catalog });
    history::release_and_prune(w, s, &r);
    bound::expire_if_over(w, db, &mut r);
    drop(r);
    w.txn = TxnScratch::default();
    note_figures(w, db);
    Ok(commit_seq)
}

/// What a freed run is, for the pinning rule: its allocation seq and its slot, if any.
fn classify_free(
    w: &mut Writer,
    s: &Store,
    addr: u64,
    count: u64,
    gen: u64,
    commit_seq: u64,
) -> history::Freed {
    let block_bytes = u64::from(s.block_bytes);
    if gen == w.gen {
        if let Some(d) = w.take_dirty(s, addr) {
            // A block this transaction allocated was never reachable by any snapshot.
            let a = if d.private { commit_seq } else { d.a };
            let slot = if d.private { None } else { Some(d.slot) };
            return history::Freed { addr, count, gen, a, slot };
        }
        // An overflow extent of the open generation.
        let private = w.txn.allocated.iter().any(|&(a, _)| a == addr);
        let a = if private { commit_seq } else { w.hist.alloc_seq_lower(gen) };
        return history::Freed { addr, count, gen, a, slot: None };
    }
    let slot = if count == 1 { w.hist.take_retained(addr, block_bytes) } else { None };
    history::Freed { addr, count, gen, a: w.hist.alloc_seq_lower(gen), slot }
}

/// Undoes the open transaction: published blocks by their log entries (appending
/// compensation entries, DESIGN §10.6), private blocks by freeing them.
fn abort_writer(w: &mut Writer, db: &Shared) -> Result<()> {
    let logged = std::mem::take(&mut w.txn.logged);
    for (addr, seq) in logged.into_iter().rev() {
        w.undo_logged(addr, seq)?;
    }
    let allocated = std::mem::take(&mut w.txn.allocated);
    for (addr, count) in allocated {
        w.alloc.free_now(addr, count);
        w.take_dirty(&db.store, addr);
    }
    let txn = std::mem::take(&mut w.txn);
    w.alloc.truncate_orphans(txn.orphans_at_start);
    if let Some(trees) = txn.trees_at_start {
        w.trees = trees;
    }
    w.catalog = txn.catalog_at_start;
    w.next_tree_id = txn.next_tree_id_at_start;
    w.trees_changed.clear();
    history::settle(w, &db.store, &mut db.registry.lock());
    note_figures(w, db);
    Ok(())
}

/// Refreshes the figures `Db::stats` reports while a transaction holds the writer.
fn note_figures(w: &Writer, db: &Shared) {
    let mut f = lock(&db.figures);
    *f = w.figures(false, f.largest_free_run());
}

/// Frees a deleted tree's blocks of the open generation now (they live in memory and must
/// not reach the write-out) and hands each subtree of an older generation to the orphan list
/// (DESIGN §10.17), which later commits free a bounded number of blocks at a time.
fn free_tree(w: &mut Writer, s: &Store, root: ChildPtr) -> Result<()> {
    let mut stack = vec![root];
    let mut visited = 0u64;
    while let Some(ptr) = stack.pop() {
        if !(ptr.generation() == w.gen && w.dirty.contains_key(&ptr.address())) {
            w.alloc.push_orphan(ptr);
            continue;
        }
        visited += 1;
        if visited > w.alloc.block_count() {
            return Err(Error::corrupt(ptr.address(), "tree walk visits more blocks than exist"));
        }
        free_node_and_extents(w, s, ptr, &mut stack)?;
    }
    Ok(())
}

/// Frees one node of a dropped subtree and its leaf's overflow extents; pushes an internal
/// node's children onto `children`.
fn free_node_and_extents(
    w: &mut Writer,
    s: &Store,
    ptr: ChildPtr,
    children: &mut Vec<ChildPtr>,
) -> Result<()> {
    let mut extents = Vec::new();
    {
        let buf = w.node(s, ptr)?;
        let node = decode(&buf, ptr.address())?;
        for i in 0..node.len() {
            if node.level() > 0 {
                children.push(node.child(i));
            } else if let LeafValue::Overflow(r) = node.leaf_value(i) {
                extents.push((r.address(), u64::from(r.block_count()), r.generation()));
            }
        }
    }
    w.txn.frees.extend(extents);
    w.free_node(ptr);
    Ok(())
}

/// Blocks of orphaned subtrees one commit frees at most (the rest waits for later commits).
const ORPHAN_BLOCKS_PER_COMMIT: u64 = 512;

/// Takes up to `ORPHAN_BLOCKS_PER_COMMIT` blocks off the orphan list; their frees go through
/// the commit's pinning like any other.
fn free_some_orphans(w: &mut Writer, s: &Store) -> Result<()> {
    if w.alloc.orphans().is_empty() {
        return Ok(());
    }
    // A read error part-way must leave the list as it was (the commit then aborts).
    let saved = w.alloc.orphans().to_vec();
    let result = free_orphan_blocks(w, s);
    if result.is_err() {
        w.alloc.set_orphans(saved);
    }
    result
}

fn free_orphan_blocks(w: &mut Writer, s: &Store) -> Result<()> {
    let mut budget = ORPHAN_BLOCKS_PER_COMMIT;
    while budget > 0 {
        let Some(ptr) = w.alloc.pop_orphan() else { break };
        let mut children = Vec::new();
        free_node_and_extents(w, s, ptr, &mut children)?;
        for child in children {
            w.alloc.push_orphan(child);
        }
        budget -= 1;
    }
    Ok(())
}

/// A tree inside the write transaction.
pub struct WriteTree<'t, 'db> {
    txn: &'t mut WriteTxn<'db>,
    name: Vec<u8>,
}

impl WriteTree<'_, '_> {
    fn meta(&self) -> Result<TreeMeta> {
        let w =
            self.txn.w.as_deref().ok_or_else(|| Error::InvalidInput("transaction ended".into()))?;
        w.trees.get(&self.name).copied().ok_or_else(|| Error::InvalidInput("tree deleted".into()))
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        let max = key_bytes_max(self.txn.db.store.block_bytes);
        if key.len() > max {
            return Err(Error::KeyTooLarge { len: key.len(), max });
        }
        Ok(())
    }

    /// Inserts or replaces; returns the old value. After an error other than `KeyTooLarge`,
    /// `ValueTooLarge` or `NoSpace` the transaction can only be aborted.
    pub fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        let r = self.insert_inner(key, value);
        r.map_err(|e| self.txn.note_failure(e))
    }

    fn insert_inner(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_key(key)?;
        if value.len() as u64 > VALUE_BYTES_MAX {
            return Err(Error::ValueTooLarge { len: value.len() as u64, max: VALUE_BYTES_MAX });
        }
        let mut meta = self.meta()?;
        let name = self.name.clone();
        let db = self.txn.db;
        let (w, s) = self.txn.parts()?;
        let item = if value.len() > value_inline_bytes_max(s.block_bytes) {
            match write_overflow(w, s, meta.id, value) {
                Ok(r) => ItemValue::Overflow(r),
                Err(e) => return Err(fail_on_io(db, e)),
            }
        } else {
            ItemValue::Inline(value.to_vec())
        };
        let old = match btree_write::insert(w, s, &mut meta.root, meta.id, key, item.clone()) {
            Ok(old) => old,
            Err(e) => {
                if let ItemValue::Overflow(r) = item {
                    // Never linked into the tree: give its blocks back now.
                    w.alloc.free_now(r.address(), u64::from(r.block_count()));
                    w.txn.allocated.retain(|(a, _)| *a != r.address());
                }
                return Err(e);
            }
        };
        let old = match old {
            None => {
                meta.entries += 1;
                None
            }
            Some(v) => Some(take_value(w, s, v)?),
        };
        w.trees.insert(name.clone(), meta);
        w.trees_changed.insert(name);
        check_undo_cap(w, db)?;
        write_back_if_over(w, db)?;
        Ok(old)
    }

    /// Removes a key; returns its value. After an error other than `KeyTooLarge` the
    /// transaction can only be aborted.
    pub fn remove(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let r = self.remove_inner(key);
        r.map_err(|e| self.txn.note_failure(e))
    }

    fn remove_inner(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_key(key)?;
        let mut meta = self.meta()?;
        let name = self.name.clone();
        let db = self.txn.db;
        let (w, s) = self.txn.parts()?;
        let Some(old) = btree_write::remove(w, s, &mut meta.root, key)? else {
            return Ok(None);
        };
        meta.entries = meta.entries.saturating_sub(1);
        let old = take_value(w, s, old)?;
        w.trees.insert(name.clone(), meta);
        w.trees_changed.insert(name);
        check_undo_cap(w, db)?;
        write_back_if_over(w, db)?;
        Ok(Some(old))
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if key.len() > key_bytes_max(self.txn.db.store.block_bytes) {
            return Ok(None);
        }
        let meta = self.meta()?;
        let w =
            self.txn.w.as_deref().ok_or_else(|| Error::InvalidInput("transaction ended".into()))?;
        btree::get(&w.read_view(&self.txn.db.store), meta.root, key)
    }

    /// Iterates a key range in order; `.rev()` iterates backwards.
    pub fn range<'a, R: RangeBounds<&'a [u8]>>(&self, range: R) -> Result<Range<'_>> {
        let start = owned_bound(range.start_bound().map(|k| *k));
        let end = owned_bound(range.end_bound().map(|k| *k));
        self.range_owned(start, end)
    }

    /// Iterates the whole tree.
    pub fn iter(&self) -> Result<Range<'_>> {
        self.range_owned(Bound::Unbounded, Bound::Unbounded)
    }

    fn range_owned(&self, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Result<Range<'_>> {
        let meta = self.meta()?;
        let w =
            self.txn.w.as_deref().ok_or_else(|| Error::InvalidInput("transaction ended".into()))?;
        Ok(Range::new(Box::new(w.read_view(&self.txn.db.store)), meta.root, start, end))
    }

    pub fn len(&self) -> Result<u64> {
        Ok(self.meta()?.entries)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.meta()?.entries == 0)
    }

    pub fn first(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.iter()?.next().transpose()
    }

    pub fn last(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.iter()?.next_back().transpose()
    }
}

/// Turns a removed or replaced item into its bytes, freeing an overflow extent.
fn take_value(w: &mut Writer, s: &Store, v: ItemValue) -> Result<Vec<u8>> {
    match v {
        ItemValue::Inline(v) => Ok(v),
        ItemValue::Overflow(r) => {
            let bytes = s.read_overflow(&r)?;
            w.defer_free(r.address(), u64::from(r.block_count()), r.generation());
            Ok(bytes)
        }
        ItemValue::Child(_) => Err(Error::corrupt(0, "child pointer in a leaf")),
    }
}

/// Writes a large value to a fresh extent (write-once, DESIGN §10.4).
fn write_overflow(w: &mut Writer, s: &Store, owner: u64, value: &[u8]) -> Result<OverflowRef> {
    let blocks = overflow_block_count(value.len() as u64, s.block_bytes);
    w.reserve_for(s, blocks, crate::writer::Need::Grow)?;
    let addr = w.alloc_run(s, blocks)?;
    let len = usize::try_from(blocks * u64::from(s.block_bytes))
        .map_err(|_| Error::ValueTooLarge { len: value.len() as u64, max: VALUE_BYTES_MAX })?;
    let mut buf = AlignedBuf::zeroed(len, s.align);
    let r = overflow::overflow_write(&mut buf, s.block_bytes, addr, w.gen, owner, value)
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    s.dev.write_at(s.block_offset(addr), &buf)?;
    Ok(r)
}

/// The transaction's own undo entries are capped (DESIGN §10.8): past the cap a write
/// returns an error (the caller aborts or commits what it has) instead of growing the log
/// without bound or waiting on itself.
fn check_undo_cap(w: &Writer, db: &Shared) -> Result<()> {
    let undo_bytes = w.txn.undo_bytes;
    let max = db.opts.txn_undo_max_bytes;
    if undo_bytes > max {
        return Err(Error::TransactionTooLarge { undo_bytes, max });
    }
    Ok(())
}

/// Past `Options::dirty_max_bytes` in memory, writes private leaves back to half of it.
fn write_back_if_over(w: &mut Writer, db: &Shared) -> Result<()> {
    let max = db.opts.dirty_max_bytes;
    if w.dirty_bytes > max {
        w.write_back(&db.store, max / 2).map_err(|e| fail_on_io(db, e))?;
    }
    Ok(())
}

/// The error of every call on a transaction after one of its changes failed.
fn failed_txn(failed: &str, what_now: &str) -> Error {
    Error::InvalidInput(format!(
        "a change in this transaction failed earlier ({failed}); {what_now}"
    ))
}

/// A device error during a transaction makes the handle fail-stop.
fn fail_on_io(db: &Shared, e: Error) -> Error {
    if let Error::Io(io) = &e {
        lock(&db.pipeline.state).failed.get_or_insert(io.to_string());
    }
    e
}
